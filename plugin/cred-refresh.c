/*
 * Delegated accounts: provider = "microsoft" | "google". The mailbox
 * signed in once with `sasl-oauth2 login` (tools/login.c); its refresh
 * token lives in token_file. Each token request is a refresh-token
 * grant (RFC 6749, 6); a new refresh token in the answer (Microsoft
 * rotates them) is written back atomically before the access token is
 * handed out, so that a process killed at any moment leaves token_file
 * holding a refresh token the provider still accepts.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "refresh.h"
#include "secret.h"
#include "token.h"
#include "wire.h"

#define MAX_FILE	(64 * 1024)
#define MAX_ANSWER	(64 * 1024)

#define MS_SCOPE	"https://outlook.office.com/IMAP.AccessAsUser.All " \
	"https://outlook.office.com/POP.AccessAsUser.All " \
	"https://outlook.office.com/SMTP.Send offline_access"
#define GOOGLE_SCOPE	"https://mail.google.com/"
#define GOOGLE_AUTH	"https://accounts.google.com/o/oauth2/v2/auth"
#define GOOGLE_TOKEN	"https://oauth2.googleapis.com/token"
#define GOOGLE_REVOKE	"https://oauth2.googleapis.com/revoke"

static const char *const keys[] = { "provider", NULL };
static const char *const more_keys[] = {
	"token_file", "client_secret_file", "client_secret",
	"authorization_endpoint", "token_endpoint",
	"device_authorization_endpoint", "revocation_endpoint", NULL
};
/* token_file is read for each refresh, not at load */
static const char *const files[] = { "client_secret_file", NULL };

/*
 * Why a refresh token is refused (invalid_grant), from Microsoft's
 * "Microsoft Entra authentication and authorization error codes"
 * reference and its refresh-token lifetime documentation.
 */
static const struct {
	long		code;
	const char	*meaning;
} refused[] = {
	{ 70000, "the grant is not valid: revoked, or issued to another "
	    "client" },
	{ 70008, "the refresh token has expired after a time of "
	    "inactivity" },
	{ 700082, "the refresh token has expired after 90 days of "
	    "inactivity" },
	{ 700084, "the refresh token has reached its fixed lifetime" },
	{ 50173, "the grant was revoked, e.g. the password was changed or "
	    "reset" },
	{ 50132, "the session is no longer valid after a password change "
	    "or expiry" },
	{ 50133, "the session is no longer valid after a password change "
	    "or expiry" },
	{ 65001, "the user or an administrator has not consented to the "
	    "application, or withdrew consent" },
	{ 50076, "multi-factor authentication is now required" },
	{ 50079, "multi-factor authentication registration is required" },
	{ 53003, "blocked by a Conditional Access policy" },
	{ 54005, "the authorization code was already redeemed" },
};

const char *
oa2_refresh_provider_name(int provider)
{
	return provider == OA2_PROVIDER_GOOGLE ? "google" : "microsoft";
}

const struct oa2_refresh *
oa2_refresh_of(const struct oa2_account *a)
{
	if (a == NULL || a->kind != &oa2_cred_refresh)
		return NULL;
	return a->data;
}

void
oa2_refresh_file_clear(struct oa2_refresh_file *rf)
{
	if (rf == NULL)
		return;
	oa2_freezero_str(&rf->refresh_token);
	free(rf->email);
	free(rf->scope);
	memset(rf, 0, sizeof(*rf));
}

static int
dup_str(char **dst, const char *src)
{
	char *s;

	if ((s = strdup(src)) == NULL)
		return -1;
	free(*dst);
	*dst = s;
	return 0;
}

/* A JSON integer member as time_t, 0 when absent or not an integer. */
static time_t
get_time(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_integer(v) && json_integer_value(v) > 0 ?
	    (time_t)json_integer_value(v) : 0;
}

int
oa2_refresh_read(const char *path, struct oa2_refresh_file *rf,
    struct oa2_error *err)
{
	json_t *root = NULL, *v;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	int r;

	memset(rf, 0, sizeof(*rf));
	/* root reads the sign-in `login --owner` gave to another user */
	if ((r = oa2_read_file_st(path, "token file", OA2_PRIVATE_ANY_OWNER,
	    MAX_FILE, &buf, &len, &st, err)) != 0)
		return r;
	rf->uid = st.st_uid;
	rf->gid = st.st_gid;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "token file %s is not a "
	    "sign-in written by sasl-oauth2 login: run sasl-oauth2 login "
	    "again", path);
	if (!json_is_object(root))
		goto out;
	v = json_object_get(root, "refresh_token");
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		goto out;
	if ((rf->refresh_token = strdup(json_string_value(v))) == NULL)
		goto nomem;
	v = json_object_get(root, "email");
	if (json_is_string(v) &&
	    (rf->email = strdup(json_string_value(v))) == NULL)
		goto nomem;
	v = json_object_get(root, "scope");
	if (json_is_string(v) &&
	    (rf->scope = strdup(json_string_value(v))) == NULL)
		goto nomem;
	rf->signed_in = get_time(root, "signed_in");
	rf->refreshed = get_time(root, "refreshed");
	r = OA2_OK;
	oa2_clearerr(err);
	goto out;
 nomem:
	r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
 out:
	if (root != NULL) {
		v = json_object_get(root, "refresh_token");
		if (json_is_string(v))
			oa2_wipe((char *)json_string_value(v),
			    json_string_length(v));
		json_decref(root);
	}
	oa2_freezero(buf, len + 1);
	if (r != 0)
		oa2_refresh_file_clear(rf);
	return r;
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Remove what writers killed between mkstemp and rename left beside
 * path (NAME.XXXXXX, ours, over min_age seconds old; min_age < 0: all
 * of them, and as root those of any owner: logout of a sign-in given
 * to another user): each holds a refresh token that was never used.
 */
static void
sweep_temps(int dfd, const char *path, long min_age)
{
	const char *base = strrchr(path, '/') != NULL ?
	    strrchr(path, '/') + 1 : path;
	size_t blen = strlen(base);
	struct dirent *de;
	struct stat st;
	DIR *d;
	int fd;

	if ((fd = dup(dfd)) == -1)
		return;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) != blen + 7 ||
		    strncmp(de->d_name, base, blen) != 0 ||
		    de->d_name[blen] != '.')
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISREG(st.st_mode) && (st.st_uid == geteuid() ||
		    (min_age < 0 && geteuid() == 0)) &&
		    (min_age < 0 || st.st_mtime + min_age < time(NULL)))
			(void)unlinkat(dfd, de->d_name, 0);
	}
	closedir(d);
}

int
oa2_refresh_write(const char *path, const struct oa2_refresh_file *rf,
    uid_t uid, gid_t gid, struct oa2_error *err)
{
	json_t *root;
	char *text = NULL, *tmp = NULL, *dcopy = NULL;
	const char *dir;
	int fd = -1, dfd = -1, r, e;

	if ((root = json_object()) == NULL ||
	    json_object_set_new(root, "version", json_integer(1)) != 0 ||
	    json_object_set_new(root, "refresh_token",
	    json_string(rf->refresh_token)) != 0 ||
	    (rf->email != NULL && json_object_set_new(root, "email",
	    json_string(rf->email)) != 0) ||
	    (rf->scope != NULL && json_object_set_new(root, "scope",
	    json_string(rf->scope)) != 0) ||
	    json_object_set_new(root, "signed_in",
	    json_integer((json_int_t)rf->signed_in)) != 0 ||
	    json_object_set_new(root, "refreshed",
	    json_integer((json_int_t)rf->refreshed)) != 0 ||
	    (text = json_dumps(root, JSON_COMPACT)) == NULL ||
	    (dcopy = strdup(path)) == NULL ||
	    (tmp = malloc(strlen(path) + 8)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* mkstemp: O_EXCL, mode 0600, in the same directory */
	snprintf(tmp, strlen(path) + 8, "%s.XXXXXX", path);
	if ((fd = mkstemp(tmp)) == -1) {
		e = errno;
		free(tmp);
		tmp = NULL;
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot create a new "
		    "token file beside %s: %s", path, strerror(e));
		goto out;
	}
	if (fchmod(fd, 0600) == -1 ||
	    (uid != (uid_t)-1 && fchown(fd, uid, gid) == -1) ||
	    write_all(fd, text, strlen(text)) == -1 ||
	    write_all(fd, "\n", 1) == -1 || fsync(fd) == -1) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot write a new "
		    "token file beside %s: %s", path, strerror(errno));
		goto out;
	}
	if (close(fd) == -1) {
		fd = -1;
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot write a new "
		    "token file beside %s: %s", path, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot replace token "
		    "file %s: %s", path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;		/* renamed: nothing to remove */
	/*
	 * The new file is in place, whole and synced. Syncing its
	 * directory makes the rename itself survive a power cut; where
	 * that fails (EINVAL: a file system that cannot sync a directory;
	 * EIO) the token is saved all the same, and saying it was not
	 * would fail a login that holds a good token. A power cut could
	 * then bring back the previous file.
	 */
	dir = dirname(dcopy);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(dfd);
		sweep_temps(dfd, path, 60);
	}
	r = OA2_OK;
 out:
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	if (tmp != NULL) {
		(void)unlink(tmp);
		free(tmp);
	}
	free(dcopy);
	if (text != NULL)
		oa2_freezero(text, strlen(text) + 1);
	if (root != NULL) {
		json_t *v = json_object_get(root, "refresh_token");

		if (json_is_string(v))
			oa2_wipe((char *)json_string_value(v),
			    json_string_length(v));
		json_decref(root);
	}
	return r;
}

int
oa2_refresh_remove(const char *path, struct oa2_error *err)
{
	char *dcopy;
	const char *dir;
	int dfd, r = OA2_OK;

	if ((dcopy = strdup(path)) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	dir = dirname(dcopy);
	/*
	 * The temporary files first: a rotation under way then fails its
	 * rename rather than put the file back (one that begins after
	 * this still can: logout does not take the cache lock).
	 */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1)
		sweep_temps(dfd, path, -1);
	if (unlink(path) == -1 && errno != ENOENT)
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot delete %s: %s",
		    path, strerror(errno));
	else if (dfd != -1)
		(void)fsync(dfd);
	if (dfd != -1)
		close(dfd);
	free(dcopy);
	return r;
}

/* The email an id_token names (not verified: for display and checks). */
static char *
id_token_email(const char *idt)
{
	const char *p, *q, *names[] = { "email", "preferred_username", "upn" };
	unsigned char *raw = NULL;
	size_t rawlen, i;
	json_t *claims, *v;
	char *email = NULL;

	if ((p = strchr(idt, '.')) == NULL || (q = strchr(p + 1, '.')) == NULL)
		return NULL;
	if (oa2_b64url_decode(p + 1, (size_t)(q - p - 1), &raw, &rawlen) != 0)
		return NULL;
	claims = json_loadb((char *)raw, rawlen, 0, NULL);
	free(raw);
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		v = json_object_get(claims, names[i]);
		if (json_is_string(v) && strchr(json_string_value(v), '@') !=
		    NULL && json_string_length(v) < 256 &&
		    strpbrk(json_string_value(v), " \t\r\n\"\\") == NULL) {
			email = strdup(json_string_value(v));
			break;
		}
	}
	json_decref(claims);
	return email;
}

/* "the sign-in for USER is no longer valid (...): run ..." */
static int
grant_refused(const struct oa2_account *a, json_t *root, long *codep,
    struct oa2_error *err)
{
	const char *desc = "", *meaning = NULL, *p;
	char d[200];
	size_t dlen, i;
	json_t *v;
	long code = 0;

	v = json_object_get(root, "error_description");
	if (json_is_string(v))
		desc = json_string_value(v);
	dlen = strcspn(desc, "\r\n");
	v = json_array_get(json_object_get(root, "error_codes"), 0);
	if (json_is_integer(v) && json_integer_value(v) > 0 &&
	    json_integer_value(v) < 100000000)
		code = (long)json_integer_value(v);
	else if (strncmp(desc, "AADSTS", 6) == 0)
		code = strtol(desc + 6, NULL, 10);
	if (code < 0 || code >= 100000000)
		code = 0;
	*codep = code;
	for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (refused[i].code == code)
			meaning = refused[i].meaning;
	if (strncmp(desc, "AADSTS", 6) == 0 &&
	    (p = strstr(desc, ": ")) != NULL && (size_t)(p - desc) < dlen) {
		dlen -= (size_t)(p + 2 - desc);
		desc = p + 2;
	}
	oa2_sanitize(d, sizeof(d), desc, dlen, 120);
	if (code > 0)
		return oa2_seterr(err, OA2_ERR_DENIED, "the sign-in for %s is "
		    "no longer valid (AADSTS%ld: %s): run sasl-oauth2 login %s",
		    a->match, code, meaning != NULL ? meaning : d, a->match);
	return oa2_seterr(err, OA2_ERR_DENIED, "the sign-in for %s is no "
	    "longer valid (invalid_grant%s%s): run sasl-oauth2 login %s",
	    a->match, *d != '\0' ? ": " : "", d, a->match);
}

int
oa2_refresh_post(const struct oa2_account *a, const char *url,
    const char *form, size_t formlen, long timeout,
    const struct oa2_log *lg, struct oa2_http_response *resp,
    struct oa2_error *err)
{
	struct oa2_http_request req;

	memset(&req, 0, sizeof(req));
	req.url = url != NULL ? url : a->token_url;
	req.body = form;
	req.bodylen = formlen;
	if (a->ca != NULL) {
		req.ca_data = a->ca->data;
		req.ca_len = a->ca->len;
		req.ca_name = a->ca->path;
	}
	req.timeout = timeout > 0 ? timeout : 1;
	req.max_body = MAX_ANSWER;
	oa2_log(lg, OA2_LOG_DEBUG, "posting a request for %s (%s) to %s",
	    a->match, a->kind->name, req.url);
	return oa2_http_post(&req, resp, err);
}

int
oa2_refresh_answer(const struct oa2_account *a, long status,
    const char *body, size_t len, time_t now, struct oa2_token *tok,
    struct oa2_refresh_file *rf, long *code, struct oa2_error *err)
{
	json_t *root = NULL, *v;
	char *email;
	int r;

	memset(tok, 0, sizeof(*tok));
	*code = 0;
	if (body != NULL)
		root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
	v = json_object_get(root, "error");
	if (status >= 400 && status < 500 && json_is_string(v) &&
	    strcmp(json_string_value(v), "invalid_grant") == 0) {
		r = grant_refused(a, root, code, err);
		goto out;
	}
	if ((r = oa2_token_parse(status, body, len, now, tok, err)) != 0)
		goto out;
	v = json_object_get(root, "refresh_token");
	if (json_is_string(v) && json_string_length(v) > 0 &&
	    strlen(json_string_value(v)) == json_string_length(v) &&
	    (rf->refresh_token == NULL ||
	    strcmp(rf->refresh_token, json_string_value(v)) != 0)) {
		oa2_freezero_str(&rf->refresh_token);
		if ((rf->refresh_token = strdup(json_string_value(v))) ==
		    NULL)
			goto nomem;
		rf->refreshed = now;
	}
	v = json_object_get(root, "scope");
	if (json_is_string(v) && dup_str(&rf->scope,
	    json_string_value(v)) != 0)
		goto nomem;
	v = json_object_get(root, "id_token");
	if (json_is_string(v) &&
	    (email = id_token_email(json_string_value(v))) != NULL) {
		free(rf->email);
		rf->email = email;
	}
	r = OA2_OK;
	goto out;
 nomem:
	r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	oa2_token_clear(tok);
 out:
	if (root != NULL) {
		const char *names[] = { "access_token", "refresh_token",
		    "id_token" };
		size_t i;

		for (i = 0; i < 3; i++) {
			v = json_object_get(root, names[i]);
			if (json_is_string(v))
				oa2_wipe((char *)json_string_value(v),
				    json_string_length(v));
		}
		json_decref(root);
	}
	return r;
}

int
oa2_refresh_exchange(const struct oa2_account *a, const char *form,
    size_t formlen, const struct oa2_log *lg, time_t now, long timeout,
    struct oa2_token *tok, struct oa2_refresh_file *rf, long *code,
    struct oa2_error *err)
{
	struct oa2_http_response resp = { .retry_after = -1 };
	int r;

	memset(tok, 0, sizeof(*tok));
	*code = 0;
	if ((r = oa2_refresh_post(a, NULL, form, formlen, timeout, lg, &resp,
	    err)) == 0)
		r = oa2_refresh_answer(a, resp.status, resp.body, resp.len,
		    now, tok, rf, code, err);
	oa2_http_response_clear(&resp);
	return r;
}

/* An endpoint: the key's value (https only) or the provider's default. */
static int
endpoint(struct oa2_loader *ld, const config_setting_t *g, const char *key,
    const char *dflt, char **out)
{
	const char *v = NULL;
	int r;

	if ((r = oa2_conf_string(ld, g, key, &v)) != 0)
		return r;
	if (v != NULL && strncasecmp(v, "https://", 8) != 0)
		return oa2_conf_fail(ld, config_setting_get_member(g, key),
		    OA2_ERR_CONFIG, "%s must be an https:// URL", key);
	if (v == NULL)
		v = dflt;
	if (v == NULL)
		return OA2_OK;
	if ((*out = strdup(v)) == NULL)
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	return OA2_OK;
}

static int
refresh_load(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	struct oa2_refresh *rd;
	const config_setting_t *s;
	const char *prov = NULL, *file = NULL, *v = NULL;
	char *ms_auth = NULL, *ms_token = NULL, *ms_device = NULL;
	int r;

	if ((rd = calloc(1, sizeof(*rd))) == NULL)
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	a->data = rd;
	s = config_setting_get_member(g, "provider");
	if ((r = oa2_conf_string(ld, g, "provider", &prov)) != 0)
		return r;
	if (strcmp(prov, "microsoft") == 0)
		rd->provider = OA2_PROVIDER_MICROSOFT;
	else if (strcmp(prov, "google") == 0)
		rd->provider = OA2_PROVIDER_GOOGLE;
	else
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG, "provider must be "
		    "\"microsoft\" or \"google\"");
	if (strchr(a->match, '*') != NULL)
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG, "account \"%s\": "
		    "a delegated account is one person's: match must name "
		    "one mailbox", a->match);
	if ((r = oa2_conf_string(ld, g, "token_file", &file)) != 0)
		return r;
	if (file == NULL)
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG, "account \"%s\" "
		    "has no token_file (where sasl-oauth2 login keeps the "
		    "sign-in)", a->match);
	if (*file != '/')
		return oa2_conf_fail(ld, config_setting_get_member(g,
		    "token_file"), OA2_ERR_CONFIG, "token_file must be an "
		    "absolute path");
	if ((rd->token_file = strdup(file)) == NULL)
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	if (config_setting_get_member(g, "client_secret") != NULL) {
		if ((r = oa2_conf_string(ld, g, "client_secret", &v)) != 0)
			return r;
		ld->has_inline_secret = 1;
		if ((rd->client_secret = strdup(v)) == NULL)
			return oa2_seterr(ld->err, OA2_ERR_NOMEM,
			    "out of memory");
	} else if ((s = config_setting_get_member(g,
	    "client_secret_file")) != NULL) {
		if ((r = oa2_conf_string(ld, g, "client_secret_file",
		    &v)) != 0)
			return r;
		if ((r = oa2_read_secret_file(v, "secret file",
		    &rd->client_secret, ld->err)) != 0)
			return oa2_conf_fail_wrap(ld, s, r);
	}
	/* the scope of the provider, unless the account names one */
	if (config_setting_get_member(g, "scope") == NULL) {
		free(a->scope);
		if ((a->scope = strdup(rd->provider == OA2_PROVIDER_GOOGLE ?
		    GOOGLE_SCOPE : MS_SCOPE)) == NULL)
			return oa2_seterr(ld->err, OA2_ERR_NOMEM,
			    "out of memory");
	}
	if (rd->provider == OA2_PROVIDER_GOOGLE) {
		if (a->tenant != NULL)
			return oa2_conf_fail(ld, config_setting_get_member(g,
			    "tenant"), OA2_ERR_CONFIG, "account \"%s\": a "
			    "Google account takes no tenant", a->match);
		a->imap_host = "imap.gmail.com";
		a->pop_host = "pop.gmail.com";
		a->smtp_host = "smtp.gmail.com";
		if ((r = endpoint(ld, g, "authorization_endpoint", GOOGLE_AUTH,
		    &rd->authorization_endpoint)) != 0 ||
		    (r = endpoint(ld, g, "token_endpoint", GOOGLE_TOKEN,
		    &rd->token_endpoint)) != 0 ||
		    (r = endpoint(ld, g, "device_authorization_endpoint", NULL,
		    &rd->device_endpoint)) != 0 ||
		    (r = endpoint(ld, g, "revocation_endpoint", GOOGLE_REVOKE,
		    &rd->revocation_endpoint)) != 0)
			return r;
	} else {
		v = a->tenant != NULL ? a->tenant : "common";
		if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
		    "VWXYZ0123456789.-") != strlen(v))
			return oa2_conf_fail(ld, config_setting_get_member(g,
			    "tenant"), OA2_ERR_CONFIG, "tenant \"%s\" is not "
			    "common, consumers, organizations, a tenant id or "
			    "a domain name", v);
		if (asprintf(&ms_auth, "%s/%s/oauth2/v2.0/authorize",
		    a->authority, v) == -1)
			ms_auth = NULL;
		if (asprintf(&ms_token, "%s/%s/oauth2/v2.0/token",
		    a->authority, v) == -1)
			ms_token = NULL;
		if (asprintf(&ms_device, "%s/%s/oauth2/v2.0/devicecode",
		    a->authority, v) == -1)
			ms_device = NULL;
		if (ms_auth == NULL || ms_token == NULL || ms_device == NULL)
			r = oa2_seterr(ld->err, OA2_ERR_NOMEM,
			    "out of memory");
		else if ((r = endpoint(ld, g, "authorization_endpoint",
		    ms_auth, &rd->authorization_endpoint)) == 0 &&
		    (r = endpoint(ld, g, "token_endpoint", ms_token,
		    &rd->token_endpoint)) == 0 &&
		    (r = endpoint(ld, g, "device_authorization_endpoint",
		    ms_device, &rd->device_endpoint)) == 0)
			r = endpoint(ld, g, "revocation_endpoint", NULL,
			    &rd->revocation_endpoint);
		free(ms_auth);
		free(ms_token);
		free(ms_device);
		if (r != 0)
			return r;
	}
	free(a->token_url);
	if ((a->token_url = strdup(rd->token_endpoint)) == NULL)
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	return OA2_OK;
}

static void
refresh_clear(struct oa2_account *a)
{
	struct oa2_refresh *rd = a->data;

	if (rd == NULL)
		return;
	free(rd->token_file);
	oa2_freezero_str(&rd->client_secret);
	free(rd->authorization_endpoint);
	free(rd->token_endpoint);
	free(rd->device_endpoint);
	free(rd->revocation_endpoint);
	free(rd);
	a->data = NULL;
}

/*
 * The token file's path and the mailbox: the refresh token itself
 * rotates, and a new sign-in must not throw the cache away.
 */
static int
refresh_cache_id(const struct oa2_account *a, EVP_MD_CTX *ctx)
{
	const struct oa2_refresh *rd = a->data;
	const char *p;

	if (rd == NULL)
		return 0;
	p = oa2_refresh_provider_name(rd->provider);
	return EVP_DigestUpdate(ctx, "refresh", 8) &&
	    EVP_DigestUpdate(ctx, p, strlen(p) + 1) &&
	    EVP_DigestUpdate(ctx, rd->token_file, strlen(rd->token_file) + 1) &&
	    EVP_DigestUpdate(ctx, a->match, strlen(a->match) + 1);
}

/*
 * One refresh with the token file's refresh token; *used (if not NULL)
 * gets a copy of the one sent (a secret), when one was.
 */
static int
refresh_with_file(const struct oa2_account *a, const struct oa2_log *lg,
    time_t now, long timeout, struct oa2_token *out, long *code,
    struct oa2_error *err, char **used)
{
	const struct oa2_refresh *rd = a->data;
	struct oa2_refresh_file rf;
	struct oa2_token tok = { NULL, 0 };
	char *form = NULL, *old = NULL;
	size_t formlen = 0;
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	int r;

	memset(out, 0, sizeof(*out));
	*code = 0;
	if ((r = oa2_refresh_read(rd->token_file, &rf, err)) != 0) {
		if (access(rd->token_file, F_OK) == -1 && errno == ENOENT)
			return oa2_seterr(err, OA2_ERR_CREDENTIAL, "%s has not "
			    "signed in (no token file %s): run sasl-oauth2 "
			    "login %s", a->match, rd->token_file, a->match);
		return r;
	}
	if (rf.email != NULL && strcasecmp(rf.email, a->match) != 0) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "token file %s holds "
		    "the sign-in of %s, not of %s: run sasl-oauth2 login %s",
		    rd->token_file, rf.email, a->match, a->match);
		goto out;
	}
	if (oa2_form_add(&form, &formlen, "grant_type", "refresh_token") != 0 ||
	    oa2_form_add(&form, &formlen, "client_id", a->client_id) != 0 ||
	    oa2_form_add(&form, &formlen, "refresh_token",
	    rf.refresh_token) != 0 ||
	    (rd->provider == OA2_PROVIDER_MICROSOFT &&
	    oa2_form_add(&form, &formlen, "scope", a->scope) != 0) ||
	    (rd->client_secret != NULL && oa2_form_add(&form, &formlen,
	    "client_secret", rd->client_secret) != 0)) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((old = strdup(rf.refresh_token)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* root keeps the owner `login --owner` gave the file (Postfix) */
	if (geteuid() == 0 && rf.uid != 0) {
		uid = rf.uid;
		gid = rf.gid;
	}
	if ((r = oa2_refresh_exchange(a, form, formlen, lg, now, timeout,
	    &tok, &rf, code, err)) != 0)
		goto out;
	/* rotated: the new one is on disk before the token is used */
	if (strcmp(old, rf.refresh_token) != 0) {
		if ((r = oa2_refresh_write(rd->token_file, &rf, uid, gid,
		    err)) != 0) {
			char msg[OA2_ERRMSG_MAX];

			snprintf(msg, sizeof(msg), "%s", err->msg);
			r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "the provider "
			    "rotated the refresh token of %s but it cannot be "
			    "saved (%s): the token file's directory must be "
			    "writable by uid %lu", a->match, msg,
			    (unsigned long)geteuid());
			goto out;
		}
		oa2_log(lg, OA2_LOG_INFO, "saved the rotated refresh token of "
		    "%s in %s", a->match, rd->token_file);
	}
	*out = tok;
	memset(&tok, 0, sizeof(tok));	/* token.c logs it */
 out:
	oa2_token_clear(&tok);
	if (used != NULL) {
		*used = old;
		old = NULL;	/* transferred */
	}
	oa2_freezero_str(&old);
	if (form != NULL)
		oa2_freezero(form, formlen + 1);
	oa2_refresh_file_clear(&rf);
	return r;
}

/*
 * Whether token_file now holds another refresh token than used (a
 * secret, compared and wiped here).
 */
static int
replaced_since(const char *token_file, const char *used)
{
	struct oa2_refresh_file rf;
	struct oa2_error ignored;
	int r;

	if (oa2_refresh_read(token_file, &rf, &ignored) != 0)
		return 0;
	r = strcmp(rf.refresh_token, used) != 0;
	oa2_refresh_file_clear(&rf);
	return r;
}

static int
refresh_fetch(const struct oa2_account *a, const char *mailbox,
    const struct oa2_log *lg, time_t now, long timeout,
    struct oa2_token *out, long *code, struct oa2_error *err)
{
	const struct oa2_refresh *rd = a->data;
	char *used = NULL;
	int r;

	(void)mailbox;
	r = refresh_with_file(a, lg, now, timeout, out, code, err, &used);
	/*
	 * Refused, while a process that did not wait for the cache lock
	 * (test --no-cache, or a lock file that could not be used)
	 * rotated the refresh token: a provider that refuses a replaced
	 * one (strict rotation) refused ours as used up. The file's new
	 * one is tried, once.
	 */
	if (r == OA2_ERR_DENIED && used != NULL &&
	    replaced_since(rd->token_file, used)) {
		oa2_log(lg, OA2_LOG_INFO, "the refresh token of %s was refused "
		    "and replaced by another process meanwhile; trying the "
		    "new one", a->match);
		r = refresh_with_file(a, lg, now, timeout, out, code, err,
		    NULL);
	}
	oa2_freezero_str(&used);
	return r;
}

static void
refresh_describe(const struct oa2_account *a, char *buf, size_t len)
{
	const struct oa2_refresh *rd = a->data;
	struct oa2_refresh_file rf;
	struct oa2_error e;
	char when[32] = "?";
	struct tm tm;
	time_t now = time(NULL);

	if (rd == NULL) {
		snprintf(buf, len, "delegated sign-in");
		return;
	}
	memset(&e, 0, sizeof(e));
	if (oa2_refresh_read(rd->token_file, &rf, &e) != 0) {
		snprintf(buf, len, "%s sign-in, token file %s: not signed in "
		    "(%s)", oa2_refresh_provider_name(rd->provider),
		    rd->token_file, e.msg);
		return;
	}
	if (rf.signed_in > 0 && gmtime_r(&rf.signed_in, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
	snprintf(buf, len, "%s sign-in of %s (token file %s), signed in %s, "
	    "refresh token %ld days old, scopes %s%s",
	    oa2_refresh_provider_name(rd->provider),
	    rf.email != NULL ? rf.email : "an unknown mailbox", rd->token_file,
	    when, rf.refreshed > 0 && rf.refreshed <= now ?
	    (long)((now - rf.refreshed) / 86400) : 0L,
	    rf.scope != NULL ? rf.scope : "unknown",
	    rf.email != NULL && strcasecmp(rf.email, a->match) != 0 ?
	    " (ERROR: not the account's mailbox)" : "");
	oa2_refresh_file_clear(&rf);
}

const struct oa2_cred_kind oa2_cred_refresh = {
	.name = "delegated sign-in",
	.keys = keys,
	.more_keys = more_keys,
	.files = files,
	.flags = OA2_CRED_CLIENT_ID,
	.load = refresh_load,
	.clear = refresh_clear,
	.cache_id = refresh_cache_id,
	.fetch = refresh_fetch,
	.describe = refresh_describe,
};
