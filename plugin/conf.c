/*
 * The libconfig file: parse, validate, load credentials, match accounts.
 * Every error names file:line and the key at fault.
 */
#include "config.h"

#include <sys/stat.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libconfig.h>
#include <openssl/evp.h>

#include "conf.h"
#include "cred.h"
#include "secret.h"

#define DEFAULT_AUTHORITY	"https://login.microsoftonline.com"
#define DEFAULT_SCOPE		"https://outlook.office365.com/.default"
#define DEFAULT_CA_FILE		"/etc/ssl/certs/ca-certificates.crt"
#define DEFAULT_CACHE_DIR	"/var/cache/sasl-oauth2"
#define MAX_CONFIG_SIZE		(1024 * 1024)
#define MAX_CA_SIZE		(8 * 1024 * 1024)
#define MAX_SNAP_FILE		(1024 * 1024)	/* jwt.c's MAX_PEM */

/*
 * The national clouds: the key cloud sets authority, scope and the
 * default hosts of `sasl-oauth2 test` and `tunnel` in one word. The
 * values and the Microsoft pages they come from are in
 * sasl-oauth2.conf(5), CLOUDS.
 */
struct cloud {
	const char	*name;
	const char	*authority;
	const char	*scope;
	const char	*imap_host;
	const char	*smtp_host;
};

static const struct cloud clouds[] = {
	{ "global", DEFAULT_AUTHORITY, DEFAULT_SCOPE,
	    "outlook.office365.com", "smtp.office365.com" },
	/* GCC High */
	{ "usgov", "https://login.microsoftonline.us",
	    "https://outlook.office365.us/.default",
	    "outlook.office365.us", "outlook.office365.us" },
	{ "usgov-dod", "https://login.microsoftonline.us",
	    "https://outlook-dod.office365.us/.default",
	    "outlook-dod.office365.us", "outlook-dod.office365.us" },
	/* Office 365 operated by 21Vianet */
	{ "china", "https://login.partner.microsoftonline.cn",
	    "https://partner.outlook.cn/.default",
	    "partner.outlook.cn", "smtp.partner.outlook.cn" },
};

/* Settings an account inherits from defaults. */
struct settings {
	const struct cloud *cloud;
	const char	*authority;
	const char	*scope;
	const char	*ca_file;
	const char	*cache_dir;
	long		refresh_margin;
	long		timeout;
	long		failure_backoff;
	int		assertion_alg;
	long		assertion_lifetime;
	int		ca_file_set;	/* explicitly configured */
	long		expiry_warning;	/* days */
};

/* The keys each group may hold; anything else is an error. */
static const char *const setting_keys[] = {
	"cloud", "authority", "scope", "ca_file", "cache_dir", "refresh_margin",
	"timeout", "failure_backoff", "assertion_alg", "assertion_lifetime",
	"expiry_warning", NULL
};
/* An account's own keys; each credential source adds its own (cred.h). */
static const char *const account_keys[] = {
	"match", "tenant", "client_id",
	/* rollover and expiry */
	"next_client_secret", "next_client_secret_file", "next_certificate",
	"next_private_key", "next_private_key_passphrase_file", "next_pkcs12",
	"next_pkcs12_passphrase_file", "client_secret_expires",
	"next_client_secret_expires", NULL
};

/* The path of the sample configuration installed with the package. */
#ifndef OA2_SAMPLE_CONF
#define OA2_SAMPLE_CONF	"/usr/local/share/doc/sasl-oauth2/sasl-oauth2.conf"
#endif

static int
vfail(struct oa2_loader *ld, const config_setting_t *s, int code,
    const char *fmt, va_list ap)
{
	char msg[OA2_ERRMSG_MAX];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (s != NULL && config_setting_source_line(s) > 0)
		return oa2_seterr(ld->err, code, "%s:%u: %s", ld->path,
		    config_setting_source_line(s), msg);
	return oa2_seterr(ld->err, code, "%s: %s", ld->path, msg);
}

static int __attribute__((format(printf, 4, 5)))
fail(struct oa2_loader *ld, const config_setting_t *s, int code,
    const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vfail(ld, s, code, fmt, ap);
	va_end(ap);
	return r;
}

/* The same for the credential sources (cred.h). */
int
oa2_conf_fail(struct oa2_loader *ld, const config_setting_t *s, int code,
    const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vfail(ld, s, code, fmt, ap);
	va_end(ap);
	return r;
}

/* Prefix the sentence already in ld->err with file:line: key:. */
static int
fail_wrap(struct oa2_loader *ld, const config_setting_t *s, int code)
{
	char msg[OA2_ERRMSG_MAX];

	snprintf(msg, sizeof(msg), "%s", ld->err->msg);
	return fail(ld, s, code, "%s: %s", config_setting_name(s), msg);
}

static int
is_one_of(const char *name, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(name, *list) == 0)
			return 1;
	return 0;
}

/* Whether name is a key of some credential source. */
static const struct oa2_cred_kind *
cred_key(const char *name)
{
	const struct oa2_cred_kind *const *k;

	for (k = oa2_cred_kinds; *k != NULL; k++)
		if (is_one_of(name, (*k)->keys) || ((*k)->more_keys != NULL &&
		    is_one_of(name, (*k)->more_keys)))
			return *k;
	return NULL;
}

/* Every key of group is in a or b (or a source's, with creds set). */
static int
check_keys(struct oa2_loader *ld, const config_setting_t *group,
    const char *const *a, const char *const *b, int creds,
    const char *where)
{
	int i, n = config_setting_length(group);

	for (i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(group, i);
		const char *name = config_setting_name(s);

		if (name == NULL || is_one_of(name, a) ||
		    (b != NULL && is_one_of(name, b)) ||
		    (creds && cred_key(name) != NULL))
			continue;
		return fail(ld, s, OA2_ERR_CONFIG, "unknown key "
		    "\"%s\" in %s", name, where);
	}
	return OA2_OK;
}

/* A string member: *out is NULL when absent. Wrong type or "" fails. */
static int
get_string(struct oa2_loader *ld, const config_setting_t *group,
    const char *key, const char **out)
{
	config_setting_t *s = config_setting_get_member(group, key);

	if (s == NULL)
		return OA2_OK;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return fail(ld, s, OA2_ERR_CONFIG, "%s must be a string", key);
	*out = config_setting_get_string(s);
	if (**out == '\0')
		return fail(ld, s, OA2_ERR_CONFIG, "%s must not be empty", key);
	return OA2_OK;
}

int
oa2_conf_fail_wrap(struct oa2_loader *ld, const config_setting_t *s,
    int code)
{
	return fail_wrap(ld, s, code);
}

int
oa2_conf_string(struct oa2_loader *ld, const config_setting_t *g,
    const char *key, const char **out)
{
	return get_string(ld, g, key, out);
}

static int
get_long(struct oa2_loader *ld, const config_setting_t *group, const char *key,
    long lo, long hi, long *out)
{
	config_setting_t *s = config_setting_get_member(group, key);
	long long v;

	if (s == NULL)
		return OA2_OK;
	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64)
		return fail(ld, s, OA2_ERR_CONFIG,
		    "%s must be an integer (seconds)", key);
	v = config_setting_get_int64(s);
	if (v < lo || v > hi)
		return fail(ld, s, OA2_ERR_CONFIG,
		    "%s must be between %ld and %ld", key, lo, hi);
	*out = (long)v;
	return OA2_OK;
}

static int
read_settings(struct oa2_loader *ld, const config_setting_t *g,
    struct settings *st)
{
	const config_setting_t *s;
	const char *alg = NULL, *cloud = NULL;
	size_t i;
	int r;

	/*
	 * A cloud named here sets authority and scope; an authority or
	 * scope set in the same group (read next) wins over it, and so
	 * does one in an account over a cloud in defaults.
	 */
	if ((r = get_string(ld, g, "cloud", &cloud)) != 0)
		return r;
	if (cloud != NULL) {
		for (i = 0; i < sizeof(clouds) / sizeof(clouds[0]); i++)
			if (strcmp(cloud, clouds[i].name) == 0)
				break;
		if (i == sizeof(clouds) / sizeof(clouds[0]))
			return fail(ld, config_setting_get_member(g, "cloud"),
			    OA2_ERR_CONFIG, "cloud must be \"global\", "
			    "\"usgov\", \"usgov-dod\" or \"china\"");
		st->cloud = &clouds[i];
		st->authority = clouds[i].authority;
		st->scope = clouds[i].scope;
	}
	if ((r = get_string(ld, g, "authority", &st->authority)) != 0 ||
	    (r = get_string(ld, g, "scope", &st->scope)) != 0 ||
	    (r = get_string(ld, g, "ca_file", &st->ca_file)) != 0 ||
	    (r = get_long(ld, g, "refresh_margin", 0, 86400,
	    &st->refresh_margin)) != 0 ||
	    (r = get_long(ld, g, "timeout", 1, 300, &st->timeout)) != 0 ||
	    (r = get_long(ld, g, "failure_backoff", 0, 3600,
	    &st->failure_backoff)) != 0 ||
	    (r = get_long(ld, g, "assertion_lifetime", 60, 600,
	    &st->assertion_lifetime)) != 0 ||
	    (r = get_long(ld, g, "expiry_warning", 0, 365,
	    &st->expiry_warning)) != 0 ||
	    (r = get_string(ld, g, "assertion_alg", &alg)) != 0)
		return r;
	if (config_setting_get_member(g, "ca_file") != NULL)
		st->ca_file_set = 1;
	/* cache_dir = "" means: keep tokens in memory only. */
	if ((s = config_setting_get_member(g, "cache_dir")) != NULL) {
		if (config_setting_type(s) != CONFIG_TYPE_STRING)
			return fail(ld, s, OA2_ERR_CONFIG,
			    "cache_dir must be a string");
		st->cache_dir = config_setting_get_string(s);
		if (*st->cache_dir != '\0' && *st->cache_dir != '/')
			return fail(ld, s, OA2_ERR_CONFIG,
			    "cache_dir must be an absolute path");
	}
	if (alg != NULL) {
		s = config_setting_get_member(g, "assertion_alg");
		if (strcmp(alg, "PS256") == 0)
			st->assertion_alg = OA2_ALG_PS256;
		else if (strcmp(alg, "RS256") == 0)
			st->assertion_alg = OA2_ALG_RS256;
		else
			return fail(ld, s, OA2_ERR_CONFIG,
			    "assertion_alg must be \"PS256\" or \"RS256\"");
	}
	if (st->authority != NULL) {
		s = config_setting_get_member(g, "authority");
		if (strncasecmp(st->authority, "https://", 8) != 0 ||
		    st->authority[8] == '\0' || st->authority[8] == '/')
			return fail(ld, s, OA2_ERR_CONFIG,
			    "authority must be an https:// URL");
		if (strpbrk(st->authority, " \t\r\n?#") != NULL)
			return fail(ld, s, OA2_ERR_CONFIG,
			    "authority must be a plain URL without spaces, "
			    "query or fragment");
	}
	return OA2_OK;
}

/* The blob already read from the file with this identity, or NULL. */
static const struct oa2_blob *
find_ca(const struct oa2_config *cfg, dev_t dev, ino_t ino)
{
	size_t i;

	for (i = 0; i < cfg->ncas; i++)
		if (cfg->cas[i].dev == dev && cfg->cas[i].ino == ino)
			return &cfg->cas[i];
	return NULL;
}

/* The sentence in ld->err about ca_file s (NULL: inherited), located. */
static int
ca_fail(struct oa2_loader *ld, const config_setting_t *s, int r)
{
	if (s != NULL)
		return fail_wrap(ld, s, r);
	return fail(ld, NULL, r, "ca_file: %s", ld->err->msg);
}

/*
 * The CA bundle for path, read once per config and shared: one file
 * named through several paths (symbolic links, "./", "//") is one
 * device and inode, and one copy in memory. A ca_file decides who may
 * receive the client secret: it is held to the rule of the config
 * itself (oa2_check_safe_path: owned by root or the effective user,
 * and so the directories on its path, none writable by others); being
 * readable by others is fine. The system bundle used without a
 * ca_file (explicit_ 0) is not checked.
 */
static int
load_ca(struct oa2_loader *ld, const config_setting_t *s, const char *path,
    int explicit_, const struct oa2_blob **out)
{
	struct oa2_config *cfg = ld->cfg;
	struct oa2_blob *cas;
	struct stat st;
	char *data = NULL;
	size_t len = 0;
	int r;

	*out = NULL;
	if (oa2_stat(path, &st) == 0 &&
	    (*out = find_ca(cfg, st.st_dev, st.st_ino)) != NULL) {
		if (!explicit_ || (r = oa2_check_safe_path(path, &st,
		    "CA file", ld->err)) == 0)
			return OA2_OK;
		*out = NULL;
		return ca_fail(ld, s, r);
	}
	if (!explicit_ && oa2_stat(path, &st) == -1)
		return OA2_OK;	/* no system bundle: libcurl's default */
	/* Accounts point into the array: it is sized for all of them. */
	if (cfg->ncas >= cfg->maxcas)
		return oa2_seterr(ld->err, OA2_ERR_INTERNAL,
		    "too many CA files");
	if ((r = oa2_read_file_st(path, "CA file", 0, MAX_CA_SIZE, &data,
	    &len, &st, ld->err)) != 0)
		return ca_fail(ld, s, r);
	if (explicit_ && (r = oa2_check_safe_path(path, &st, "CA file",
	    ld->err)) != 0) {
		free(data);
		return ca_fail(ld, s, r);
	}
	/* The file may have been replaced since the stat above. */
	if ((*out = find_ca(cfg, st.st_dev, st.st_ino)) != NULL) {
		free(data);
		return OA2_OK;
	}
	if (strstr(data, "-----BEGIN CERTIFICATE-----") == NULL) {
		free(data);
		return fail(ld, s, OA2_ERR_CONFIG,
		    "ca_file: %s holds no PEM certificate", path);
	}
	cas = &cfg->cas[cfg->ncas];
	if ((cas->path = strdup(path)) == NULL) {
		free(data);
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	}
	cas->data = data;
	cas->len = len;
	cas->dev = st.st_dev;
	cas->ino = st.st_ino;
	cfg->ncas++;
	*out = cas;
	return OA2_OK;
}

static int
dup_into(struct oa2_loader *ld, char **dst, const char *src)
{
	if (src == NULL)
		return OA2_OK;
	if ((*dst = strdup(src)) == NULL)
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	return OA2_OK;
}

static int
valid_match(const char *m)
{
	const char *at;

	if (strcmp(m, "*") == 0)
		return 1;
	if (strpbrk(m, " \t\r\n") != NULL || (at = strchr(m, '@')) == NULL ||
	    strchr(at + 1, '@') != NULL || at[1] == '\0' || at == m)
		return 0;
	/* "*" only as the whole local part */
	return strchr(m, '*') == NULL || (m[0] == '*' && at == m + 1);
}

/*
 * The cache key: the first 16 bytes of a SHA-256 over the account's
 * endpoint and client and what its source says names the credential
 * (a digest of a secret, a thumbprint), into key.
 */
static int
derive_cache_key(struct oa2_loader *ld, const struct oa2_account *a,
    char key[33])
{
	const char *tenant = a->tenant != NULL ? a->tenant : "";
	const char *client_id = a->client_id != NULL ? a->client_id : "";
	EVP_MD_CTX *ctx = oa2_digest_begin("oa2-cache-v1");

	if (oa2_digest_hex(ctx, ctx != NULL &&
	    EVP_DigestUpdate(ctx, a->authority, strlen(a->authority) + 1) &&
	    EVP_DigestUpdate(ctx, tenant, strlen(tenant) + 1) &&
	    EVP_DigestUpdate(ctx, client_id, strlen(client_id) + 1) &&
	    EVP_DigestUpdate(ctx, a->scope, strlen(a->scope) + 1) &&
	    a->kind->cache_id(a, ctx), key) != 0)
		return oa2_seterr(ld->err, OA2_ERR_INTERNAL,
		    "cannot compute a SHA-256 digest");
	return OA2_OK;
}

/* Wipe and free the account's credential: it has none after. */
static void
clear_cred(struct oa2_account *a)
{
	if (a->kind != NULL)
		a->kind->clear(a);
	a->kind = NULL;
	oa2_freezero_str(&a->client_secret);
	oa2_cert_free(&a->cert);
	oa2_freezero_str(&a->next_client_secret);
	oa2_cert_free(&a->next_cert);
}

/* Swap the credential fields only (for the next one's cache key). */
static void
swap_cred(struct oa2_account *a)
{
	char *sec = a->client_secret;
	struct oa2_cert *cert = a->cert;

	a->client_secret = a->next_client_secret;
	a->next_client_secret = sec;
	a->cert = a->next_cert;
	a->next_cert = cert;
}

/*
 * With selecting keys of several sources in g: the source that takes
 * all the others' as its own further keys (a delegated account's
 * client_secret_file), or NULL.
 */
static const struct oa2_cred_kind *
owner_of_all(const config_setting_t *g)
{
	const struct oa2_cred_kind *const *k, *const *o;
	int i, all;

	for (k = oa2_cred_kinds; *k != NULL; k++) {
		for (i = 0, all = 0; (*k)->keys[i] != NULL; i++)
			if (config_setting_get_member(g, (*k)->keys[i]) != NULL)
				all = 1;
		if (!all || (*k)->more_keys == NULL)
			continue;
		for (o = oa2_cred_kinds; all && *o != NULL; o++)
			for (i = 0; *o != *k && (*o)->keys[i] != NULL; i++)
				if (config_setting_get_member(g,
				    (*o)->keys[i]) != NULL &&
				    !is_one_of((*o)->keys[i], (*k)->more_keys))
					all = 0;
		if (all)
			return *k;
	}
	return NULL;
}

/*
 * The source whose selecting key the account holds: exactly one.
 * A key only another source takes is an error (after load, so that a
 * source may say it better).
 */
static int
pick_kind(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a, const struct oa2_cred_kind **out)
{
	const struct oa2_cred_kind *const *k;
	const config_setting_t *s, *first = NULL, *second = NULL;
	char names[300];
	size_t n = 0;
	int i;

	*out = NULL;
	names[0] = '\0';
	for (k = oa2_cred_kinds; *k != NULL; k++)
		for (i = 0; (*k)->keys[i] != NULL; i++) {
			/* "a, b, c" for the messages (cut short if need be) */
			snprintf(names + n, sizeof(names) - n, "%s%s",
			    n > 0 ? ", " : "", (*k)->keys[i]);
			n = strlen(names);
			if ((s = config_setting_get_member(g,
			    (*k)->keys[i])) == NULL)
				continue;
			if (first == NULL) {
				first = s;
				*out = *k;
			} else if (second == NULL)
				second = s;
		}
	if (first == NULL)
		return fail(ld, g, OA2_ERR_CONFIG, "account \"%s\" has "
		    "no credential: set one of %s", a->match, names);
	if (second != NULL && (*out = owner_of_all(g)) == NULL)
		return fail(ld, g, OA2_ERR_CONFIG, "account "
		    "\"%s\" has more than one credential: keep exactly one "
		    "of %s", a->match, names);
	return OA2_OK;
}

/* A key that belongs to another source than the account's: an error. */
static int
foreign_keys(struct oa2_loader *ld, const config_setting_t *g,
    const struct oa2_account *a)
{
	const struct oa2_cred_kind *k;
	int i, n = config_setting_length(g);

	for (i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(g, i);
		const char *name = config_setting_name(s);

		if (name != NULL && (k = cred_key(name)) != NULL &&
		    k != a->kind && !is_one_of(name, a->kind->keys) &&
		    (a->kind->more_keys == NULL ||
		    !is_one_of(name, a->kind->more_keys)))
			return fail(ld, s, OA2_ERR_CONFIG, "account "
			    "\"%s\" uses a %s: %s belongs to a %s", a->match,
			    a->kind->name, name, k->name);
	}
	return OA2_OK;
}

/*
 * What an account is for: a group with a valid match used by no other
 * account. A failure here fails the whole file: without its match, the
 * mailboxes of a broken account could fall through to another account.
 */
static int
account_match(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	const config_setting_t *s;
	const char *match = NULL;
	size_t i, n;
	int r;

	a->line = (int)config_setting_source_line(g);
	if (!config_setting_is_group(g))
		return fail(ld, g, OA2_ERR_CONFIG,
		    "each entry of accounts must be a group { ... }");
	if ((r = get_string(ld, g, "match", &match)) != 0)
		return r;
	if (match == NULL)
		return fail(ld, g, OA2_ERR_CONFIG, "account without \"match\": "
		    "name a mailbox, \"*@domain\" or \"*\"");
	s = config_setting_get_member(g, "match");
	if (!valid_match(match))
		return fail(ld, s, OA2_ERR_CONFIG, "match \"%s\" is not a "
		    "mailbox, \"*@domain\" or \"*\"", match);
	if ((r = dup_into(ld, &a->match, match)) != 0)
		return r;
	for (i = 0; a->match[i] != '\0'; i++)
		a->match[i] = (char)tolower((unsigned char)a->match[i]);
	for (n = 0; &ld->cfg->accounts[n] != a; n++)
		if (strcmp(ld->cfg->accounts[n].match, a->match) == 0)
			return fail(ld, s, OA2_ERR_CONFIG, "match \"%s\" is "
			    "already used by the account at line %d", match,
			    ld->cfg->accounts[n].line);
	return OA2_OK;
}

/* ---- rollover and expiry (next_*, *_expires, expiry_warning) ---- */

/* "YYYY-MM-DD" (as the Azure portal shows it) -> 00:00 UTC that day. */
static int
get_date(struct oa2_loader *ld, const config_setting_t *g, const char *key,
    time_t *out)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	const char *v = NULL;
	struct tm tm;
	char *end;
	int r;

	*out = 0;
	if ((r = get_string(ld, g, key, &v)) != 0 || v == NULL)
		return r;
	memset(&tm, 0, sizeof(tm));
	if (strlen(v) != 10 || strspn(v, "0123456789-") != 10 ||
	    (end = strptime(v, "%Y-%m-%d", &tm)) == NULL || *end != '\0' ||
	    tm.tm_year < 100 || (*out = timegm(&tm)) <= 0)
		return fail(ld, s, OA2_ERR_CONFIG, "%s must be a date "
		    "\"YYYY-MM-DD\" (the Expires column of the Azure portal)",
		    key);
	return OA2_OK;
}

/*
 * The next credential, of the same kind as the current one. A next
 * one that cannot be loaded leaves the account working with the
 * current one: the sentence is kept in next_err and logged.
 */
static int
load_next(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	struct oa2_cert_source src;
	const config_setting_t *s;
	struct oa2_error *err = ld->err;
	const char *v = NULL, *vf = NULL;
	int r;

	if ((r = get_date(ld, g, "client_secret_expires",
	    &a->secret_expires)) != 0 ||
	    (r = get_date(ld, g, "next_client_secret_expires",
	    &a->next_secret_expires)) != 0)
		return r;
	memset(&src, 0, sizeof(src));
	if ((r = get_string(ld, g, "next_client_secret", &v)) != 0 ||
	    (r = get_string(ld, g, "next_client_secret_file", &vf)) != 0 ||
	    (r = get_string(ld, g, "next_certificate",
	    &src.certificate)) != 0 ||
	    (r = get_string(ld, g, "next_private_key",
	    &src.private_key)) != 0 ||
	    (r = get_string(ld, g, "next_private_key_passphrase_file",
	    &src.passphrase_file)) != 0 ||
	    (r = get_string(ld, g, "next_pkcs12", &src.pkcs12)) != 0 ||
	    (r = get_string(ld, g, "next_pkcs12_passphrase_file",
	    &src.pkcs12_passphrase_file)) != 0)
		return r;
	if (v != NULL)
		ld->has_inline_secret = 1;
	if (!(a->kind->flags & OA2_CRED_ROLLOVER)) {
		static const char *const next_keys[] = {
			"next_client_secret", "next_client_secret_file",
			"next_certificate", "next_private_key",
			"next_private_key_passphrase_file", "next_pkcs12",
			"next_pkcs12_passphrase_file",
			"next_client_secret_expires", "client_secret_expires",
			NULL
		};
		int i;

		for (i = 0; next_keys[i] != NULL; i++)
			if ((s = config_setting_get_member(g,
			    next_keys[i])) != NULL)
				return fail(ld, s, OA2_ERR_CONFIG,
				    "account \"%s\" uses a %s, which has no "
				    "%s", a->match, a->kind->name,
				    next_keys[i]);
		return OA2_OK;
	}
	if (a->kind == &oa2_cred_secret) {
		s = config_setting_get_member(g, src.certificate != NULL ?
		    "next_certificate" : "next_pkcs12");
		if (src.certificate != NULL || src.pkcs12 != NULL ||
		    src.private_key != NULL)
			return fail(ld, s != NULL ? s : g, OA2_ERR_CONFIG,
			    "account \"%s\" uses a client secret: its next "
			    "credential is next_client_secret_file or "
			    "next_client_secret", a->match);
		if (v != NULL && vf != NULL)
			return fail(ld, config_setting_get_member(g,
			    "next_client_secret"), OA2_ERR_CONFIG, "account "
			    "\"%s\": keep one of next_client_secret_file and "
			    "next_client_secret", a->match);
		if (v == NULL && vf == NULL)
			return OA2_OK;
		if (v != NULL && (a->next_client_secret = strdup(v)) == NULL)
			return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		s = config_setting_get_member(g, v != NULL ?
		    "next_client_secret" : "next_client_secret_file");
		ld->err = &a->next_err;
		if (vf != NULL && (r = oa2_read_secret_file(vf, "secret file",
		    &a->next_client_secret, ld->err)) != 0)
			fail_wrap(ld, s, r);
		else if (a->client_secret != NULL &&
		    strcmp(a->next_client_secret, a->client_secret) == 0)
			r = fail(ld, s, OA2_ERR_CONFIG, "the next client "
			    "secret is the current one");
	} else {
		if (v != NULL || vf != NULL)
			return fail(ld, config_setting_get_member(g, v != NULL ?
			    "next_client_secret" : "next_client_secret_file"),
			    OA2_ERR_CONFIG, "account \"%s\" uses a "
			    "certificate: its next credential is "
			    "next_certificate with next_private_key, or "
			    "next_pkcs12", a->match);
		if (src.certificate == NULL && src.pkcs12 == NULL) {
			if (src.private_key != NULL)
				return fail(ld, config_setting_get_member(g,
				    "next_private_key"), OA2_ERR_CONFIG,
				    "next_private_key needs next_certificate");
			return OA2_OK;
		}
		s = config_setting_get_member(g, src.certificate != NULL ?
		    "next_certificate" : "next_pkcs12");
		if (src.certificate != NULL && src.pkcs12 != NULL)
			return fail(ld, s, OA2_ERR_CONFIG, "account \"%s\": "
			    "keep one of next_certificate and next_pkcs12",
			    a->match);
		if (src.certificate != NULL && src.private_key == NULL)
			return fail(ld, s, OA2_ERR_CONFIG, "account \"%s\": "
			    "next_certificate needs next_private_key",
			    a->match);
		ld->err = &a->next_err;
		if ((r = oa2_cert_load(&src, NULL, &a->next_cert,
		    ld->err)) != 0)
			fail_wrap(ld, s, r);
		else if (a->cert != NULL &&
		    strcmp(oa2_cert_x5t_s256(a->next_cert),
		    oa2_cert_x5t_s256(a->cert)) == 0)
			r = fail(ld, s, OA2_ERR_CONFIG, "the next certificate "
			    "is the current one");
	}
	if (r == 0)
	{
		swap_cred(a);
		r = derive_cache_key(ld, a, a->next_cache_key);
		swap_cred(a);
	}
	ld->err = err;
	if (r == OA2_ERR_NOMEM)
		return oa2_seterr(err, r, "out of memory");
	if (r != 0) {
		a->next_err.code = r;
		oa2_freezero_str(&a->next_client_secret);
		oa2_cert_free(&a->next_cert);
		a->next_cache_key[0] = '\0';
		oa2_log(ld->lg, OA2_LOG_WARNING, "%s (account \"%s\" has no "
		    "next credential; the current one is used)",
		    a->next_err.msg, a->match);
	}
	return OA2_OK;
}

/*
 * The current credential cannot be loaded (r, its sentence in ld->err:
 * an expired certificate, a missing file): with a next one that loads,
 * the account uses that one (as after a rotation) instead of failing.
 */
static int
next_instead(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a, int r)
{
	struct oa2_error cur = *ld->err;
	int r2;

	/* only a file that cannot be used, never a mistake in the config */
	if (r != OA2_ERR_CREDENTIAL || a->kind == NULL ||
	    a->client_secret != NULL || a->cert != NULL)
		return r;
	if ((r2 = load_next(ld, g, a)) != 0)
		return r2;
	if (!oa2_account_has_next(a)) {
		*ld->err = cur;
		return r;
	}
	oa2_account_rotate(a);		/* next_cache_key becomes "" */
	a->next_err = cur;
	a->next_err.code = r;
	oa2_clearerr(ld->err);
	oa2_log(ld->lg, OA2_LOG_WARNING, "%s (%s of account \"%s\" cannot "
	    "be used; %s is: make it current)", cur.msg,
	    oa2_account_cred_name(a, 1), a->match,
	    oa2_account_cred_name(a, 0));
	return OA2_OK;
}

void
oa2_account_rotate(struct oa2_account *a)
{
	char key[sizeof(a->cache_key)], *sec = a->client_secret;
	struct oa2_cert *cert = a->cert;
	time_t t = a->secret_expires;

	a->client_secret = a->next_client_secret;
	a->next_client_secret = sec;
	a->cert = a->next_cert;
	a->next_cert = cert;
	a->secret_expires = a->next_secret_expires;
	a->next_secret_expires = t;
	memcpy(key, a->cache_key, sizeof(key));
	memcpy(a->cache_key, a->next_cache_key, sizeof(key));
	memcpy(a->next_cache_key, key, sizeof(key));
	a->rotated = !a->rotated;
}

int
oa2_account_has_next(const struct oa2_account *a)
{
	return !a->broken && a->next_cache_key[0] != '\0';
}

time_t
oa2_account_expires(const struct oa2_account *a, int next)
{
	if (a->broken || (next && !oa2_account_has_next(a)))
		return 0;
	if (a->kind == &oa2_cred_cert)
		return oa2_cert_not_after(next ? a->next_cert : a->cert);
	return next ? a->next_secret_expires : a->secret_expires;
}

const char *
oa2_account_cred_name(const struct oa2_account *a, int next)
{
	int is_next = next ? !a->rotated : a->rotated;

	if (a->kind == &oa2_cred_cert)
		return is_next ? "the next certificate" :
		    "the current certificate";
	return is_next ? "the next client secret" :
	    "the current client secret";
}

void
oa2_account_expiry_warn(struct oa2_account *a, const struct oa2_log *lg,
    time_t now)
{
	time_t exp;
	int i;

	if (a->expiry_warning <= 0 || (a->expiry_warned != 0 &&
	    now - a->expiry_warned < 86400 && now >= a->expiry_warned))
		return;
	a->expiry_warned = now;
	for (i = 0; i < 2; i++) {
		if ((exp = oa2_account_expires(a, i)) == 0 ||
		    exp - now >= a->expiry_warning)
			continue;
		if (exp <= now)
			oa2_log(lg, OA2_LOG_WARNING, "%s of account %s has "
			    "expired", oa2_account_cred_name(a, i), a->match);
		else
			oa2_log(lg, OA2_LOG_WARNING, "%s of account %s "
			    "expires in %ld days (expiry_warning is %ld): "
			    "%s", oa2_account_cred_name(a, i), a->match,
			    (long)((exp - now) / 86400),
			    a->expiry_warning / 86400,
			    a->kind == &oa2_cred_cert ? "make a new one with "
			    "`sasl-oauth2 certificate new`, upload it to the "
			    "app registration and set it as next_certificate" :
			    "create a new one in the app registration and set "
			    "it as next_client_secret_file");
	}
}

/* An Entra client's tenant and client_id. */
static int
check_client(struct oa2_loader *ld, const config_setting_t *g,
    const char *match, const char *tenant, const char *client_id)
{
	const config_setting_t *s;

	if (tenant == NULL)
		return fail(ld, g, OA2_ERR_CONFIG, "account \"%s\" has no "
		    "tenant (the directory id or a domain such as "
		    "contoso.onmicrosoft.com)", match);
	s = config_setting_get_member(g, "tenant");
	if (strcasecmp(tenant, "common") == 0 ||
	    strcasecmp(tenant, "organizations") == 0 ||
	    strcasecmp(tenant, "consumers") == 0)
		return fail(ld, s, OA2_ERR_CONFIG, "tenant \"%s\" cannot be "
		    "used for app-only tokens: name your tenant's id or "
		    "domain", tenant);
	if (strspn(tenant, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "0123456789.-") != strlen(tenant))
		return fail(ld, s, OA2_ERR_CONFIG, "tenant \"%s\" is not a "
		    "tenant id or domain name", tenant);
	if (client_id == NULL)
		return fail(ld, g, OA2_ERR_CONFIG, "account \"%s\" has no "
		    "client_id (the application id of the app registration)",
		    match);
	if (strpbrk(client_id, " \t\r\n") != NULL)
		return fail(ld, config_setting_get_member(g, "client_id"),
		    OA2_ERR_CONFIG, "client_id must not contain blanks");
	return OA2_OK;
}

/* The rest of an account; a failure here disables only this account. */
static int
load_account(struct oa2_loader *ld, const config_setting_t *g,
    const struct settings *defaults, struct oa2_account *a)
{
	struct settings st = *defaults;
	const config_setting_t *s;
	const char *match = a->match, *tenant = NULL, *client_id = NULL;
	size_t n;
	int r;

	if ((r = check_keys(ld, g, account_keys, setting_keys, 1,
	    "an account")) != 0 ||
	    (r = read_settings(ld, g, &st)) != 0 ||
	    (r = pick_kind(ld, g, a, &a->kind)) != 0 ||
	    (r = get_string(ld, g, "tenant", &tenant)) != 0 ||
	    (r = get_string(ld, g, "client_id", &client_id)) != 0)
		return r;
	if (a->kind->flags & OA2_CRED_CLIENT_ID) {
		if (client_id == NULL)
			return fail(ld, g, OA2_ERR_CONFIG, "account \"%s\" has "
			    "no client_id (the application's client id)", match);
		if (strpbrk(client_id, " \t\r\n") != NULL)
			return fail(ld, config_setting_get_member(g,
			    "client_id"), OA2_ERR_CONFIG, "client_id must not "
			    "contain blanks");
	} else if (!(a->kind->flags & OA2_CRED_CLIENT)) {
		if (tenant != NULL || client_id != NULL)
			return fail(ld, config_setting_get_member(g,
			    tenant != NULL ? "tenant" : "client_id"),
			    OA2_ERR_CONFIG, "account \"%s\" uses a %s: it "
			    "takes no %s", match, a->kind->name,
			    tenant != NULL ? "tenant" : "client_id");
	} else if ((r = check_client(ld, g, match, tenant, client_id)) != 0)
		return r;

	if ((r = dup_into(ld, &a->authority, st.authority)) != 0 ||
	    (tenant != NULL && (r = dup_into(ld, &a->tenant, tenant)) != 0) ||
	    (client_id != NULL &&
	    (r = dup_into(ld, &a->client_id, client_id)) != 0) ||
	    (r = dup_into(ld, &a->scope, st.scope)) != 0)
		return r;
	/*
	 * The scheme is case-insensitive (RFC 3986, 3.1); "HTTPS://" is
	 * written as "https://", the form the token URL and an
	 * assertion's aud claim are compared in.
	 */
	memcpy(a->authority, "https://", 8);
	n = strlen(a->authority);
	while (n > 0 && a->authority[n - 1] == '/')
		a->authority[--n] = '\0';
	/* a source without a tenant names its own in load */
	if (a->tenant != NULL && asprintf(&a->token_url,
	    "%s/%s/oauth2/v2.0/token", a->authority, a->tenant) == -1) {
		a->token_url = NULL;
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	}
	if (*st.cache_dir != '\0' &&
	    (r = dup_into(ld, &a->cache_dir, st.cache_dir)) != 0)
		return r;
	a->refresh_margin = st.refresh_margin;
	a->timeout = st.timeout;
	a->failure_backoff = st.failure_backoff;
	/* A remembered refusal holds only for the file that saw it. */
	oa2_file_id_text(ld->cfg->dev, ld->cfg->ino, &ld->cfg->mtime,
	    ld->cfg->size, a->config_id, sizeof(a->config_id));
	a->assertion_alg = st.assertion_alg;
	a->assertion_lifetime = st.assertion_lifetime;
	a->expiry_warning = st.expiry_warning * 86400;
	/* the cloud's hosts; Exchange serves IMAP and POP on one name */
	a->imap_host = st.cloud->imap_host;
	a->pop_host = st.cloud->imap_host;
	a->smtp_host = st.cloud->smtp_host;
	s = config_setting_get_member(g, "ca_file");
	if ((r = load_ca(ld, s, st.ca_file, st.ca_file_set, &a->ca)) != 0)
		return r;
	if ((r = a->kind->load(ld, g, a)) == 0)
		r = foreign_keys(ld, g, a);
	if (r != 0)
		return next_instead(ld, g, a, r);
	if ((r = derive_cache_key(ld, a, a->cache_key)) != 0)
		return r;
	return load_next(ld, g, a);
}

/*
 * The line of the first libconfig @include directive in text, or 0.
 * libconfig reads a directive only at the start of a line.
 */
static int
include_line(const char *text)
{
	const char *p = text;
	int line = 1;

	for (;;) {
		p += strspn(p, " \t");
		if (strncmp(p, "@include", 8) == 0)
			return line;
		if ((p = strchr(p, '\n')) == NULL)
			return 0;
		p++;
		line++;
	}
}

/* Wipe the inline secrets of the parsed tree lc before it is freed. */
static void
wipe_inline_secrets(config_t *lc)
{
	static const char *const inl[] = {
		"client_secret", "next_client_secret", NULL
	};
	config_setting_t *list = config_lookup(lc, "accounts"), *g, *s;
	int i, k, n = list != NULL ? config_setting_length(list) : 0;
	const char *v;

	for (i = 0; i < n; i++) {
		g = config_setting_get_elem(list, i);
		for (k = 0; inl[k] != NULL; k++)
			if ((s = config_setting_get_member(g, inl[k])) !=
			    NULL && config_setting_type(s) ==
			    CONFIG_TYPE_STRING &&
			    (v = config_setting_get_string(s)) != NULL)
				oa2_wipe((char *)v, strlen(v));
	}
}

/* Take the file of setting key of group g, if any, into *snap. */
static int
snapshot_key(struct oa2_snapshot **snap, const config_setting_t *g,
    const char *key, size_t max, const char *safe_what)
{
	const config_setting_t *s = config_setting_get_member(g, key);
	const char *v;

	if (s == NULL || (v = config_setting_get_string(s)) == NULL ||
	    *v == '\0')
		return 0;
	return oa2_snapshot_add(snap, v, max, safe_what);
}

/*
 * The files of group g that oa2_config_load reads into *snap: ca_file
 * (checked as the config is), and those each credential source names
 * in its files (and their next_ forms for a source with rollover);
 * -1: out of memory. tests/test-config.c loads a config with every one
 * of them from a snapshot after removing the files.
 */
static int
snapshot_group(struct oa2_snapshot **snap, const config_setting_t *g)
{
	const struct oa2_cred_kind *const *k;
	const char *const *f;
	char next[128];

	if (g == NULL || !config_setting_is_group(g))
		return 0;
	if (snapshot_key(snap, g, "ca_file", MAX_CA_SIZE, "CA file") != 0)
		return -1;
	for (k = oa2_cred_kinds; *k != NULL; k++)
		for (f = (*k)->files; f != NULL && *f != NULL; f++) {
			if (snapshot_key(snap, g, *f, MAX_SNAP_FILE, NULL) != 0)
				return -1;
			if (((*k)->flags & OA2_CRED_ROLLOVER) == 0)
				continue;
			snprintf(next, sizeof(next), "next_%s", *f);
			if (snapshot_key(snap, g, next, MAX_SNAP_FILE,
			    NULL) != 0)
				return -1;
		}
	return 0;
}

int
oa2_config_snapshot(const char *path, struct oa2_snapshot **snap)
{
	const config_setting_t *defaults, *list;
	const char *text;
	config_t lc;
	int i, r = -1;

	*snap = NULL;
	if (oa2_snapshot_add(snap, path, MAX_CONFIG_SIZE,
	    "configuration file") != 0)
		goto out;
	/* anything but a file that reads and passes: load it now */
	if ((text = oa2_snapshot_data(*snap, path)) == NULL ||
	    include_line(text) != 0)
		goto out;
	config_init(&lc);
	/* a text libconfig refuses is refused again, with its line, later */
	r = 0;
	if (config_read_string(&lc, text)) {
		defaults = config_lookup(&lc, "defaults");
		r = snapshot_group(snap, defaults);
		if (r == 0 && (defaults == NULL ||
		    config_setting_get_member(defaults, "ca_file") == NULL))
			r = oa2_snapshot_add(snap, DEFAULT_CA_FILE, MAX_CA_SIZE,
			    NULL);
		list = config_lookup(&lc, "accounts");
		for (i = 0; r == 0 && list != NULL &&
		    i < config_setting_length(list); i++)
			r = snapshot_group(snap, config_setting_get_elem(list,
			    i));
	}
	wipe_inline_secrets(&lc);
	config_destroy(&lc);
 out:
	if (r != 0)
		oa2_snapshot_free(snap);
	return r;
}

static int
load(struct oa2_loader *ld, config_t *lc)
{
	struct oa2_config *cfg = ld->cfg;
	struct settings defaults = {
		&clouds[0], DEFAULT_AUTHORITY, DEFAULT_SCOPE, DEFAULT_CA_FILE,
		DEFAULT_CACHE_DIR, 600, 15, 60, OA2_ALG_PS256, 300, 0, 30
	};
	static const char *const top_keys[] = {
		"version", "defaults", "accounts", NULL
	};
	const config_setting_t *root = config_root_setting(lc), *s, *list;
	const struct oa2_blob *ca;
	struct oa2_error *err = ld->err;
	const char *level;
	long version = 1;
	size_t i, n;
	int r;

	if ((r = check_keys(ld, root, top_keys, NULL, 0, "the file")) != 0 ||
	    (r = get_long(ld, root, "version", 1, 1, &version)) != 0)
		return r;
	if ((s = config_setting_get_member(root, "defaults")) != NULL) {
		static const char *const log_key[] = { "log_level", NULL };

		if (!config_setting_is_group(s))
			return fail(ld, s, OA2_ERR_CONFIG,
			    "defaults must be a group { ... }");
		if ((r = check_keys(ld, s, setting_keys, log_key, 0,
		    "defaults")) != 0 ||
		    (r = read_settings(ld, s, &defaults)) != 0)
			return r;
		level = NULL;
		if ((r = get_string(ld, s, "log_level", &level)) != 0)
			return r;
		if (level != NULL &&
		    (cfg->log_level = oa2_log_level_parse(level)) < 0)
			return fail(ld, config_setting_get_member(s,
			    "log_level"), OA2_ERR_CONFIG, "log_level must be "
			    "\"error\", \"warning\", \"info\" or \"debug\"");
	}
	list = config_setting_get_member(root, "accounts");
	if (list == NULL)
		return fail(ld, NULL, OA2_ERR_CONFIG, "no accounts: add "
		    "accounts = ( { match = ...; tenant = ...; client_id = "
		    "...; ... } );");
	if (!config_setting_is_list(list) && !config_setting_is_array(list))
		return fail(ld, list, OA2_ERR_CONFIG,
		    "accounts must be a list ( { ... }, { ... } )");
	cfg->naccounts = (size_t)config_setting_length(list);
	if (cfg->naccounts == 0)
		return fail(ld, list, OA2_ERR_CONFIG, "accounts is empty");
	n = cfg->naccounts;
	cfg->naccounts = 0;	/* counts what there is to free */
	/* One CA file for defaults and at most one per account. */
	if ((cfg->accounts = calloc(n, sizeof(*cfg->accounts))) == NULL ||
	    (cfg->cas = calloc(n + 1, sizeof(*cfg->cas))) == NULL)
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	cfg->maxcas = n + 1;
	/* A CA file named in defaults is the defaults' error, for all. */
	if (defaults.ca_file_set && (r = load_ca(ld, config_setting_get_member(
	    config_setting_get_member(root, "defaults"), "ca_file"),
	    defaults.ca_file, 1, &ca)) != 0)
		return r;
	for (i = 0; i < n; i++) {
		struct oa2_account *a = &cfg->accounts[i];
		const config_setting_t *g = config_setting_get_elem(list,
		    (unsigned)i);

		pthread_mutex_init(&a->lock, NULL);	/* cache.c's */
		cfg->naccounts = i + 1;
		if ((r = account_match(ld, g, a)) != 0)
			return r;
		ld->err = &a->load_err;
		r = load_account(ld, g, &defaults, a);
		ld->err = err;
		if (r == 0)
			continue;
		if (r == OA2_ERR_NOMEM)
			return oa2_seterr(err, r, "out of memory");
		/* This account fails its own mailboxes; the others work. */
		a->broken = 1;
		a->load_err.code = r;
		clear_cred(a);
		a->cache_key[0] = '\0';
		a->next_cache_key[0] = '\0';
		cfg->nbroken++;
		oa2_log(ld->lg, OA2_LOG_WARNING, "%s (account \"%s\" is not "
		    "used; the other accounts are)", a->load_err.msg,
		    a->match);
	}
	return OA2_OK;
}

/* No file at path: say where the sample is and how to name another. */
static void
missing(const char *path, struct oa2_error *err)
{
	char msg[OA2_ERRMSG_MAX];

	snprintf(msg, sizeof(msg), "%s", err->msg);
	oa2_seterr(err, OA2_ERR_CONFIG, "%s (name another file with "
	    "SASL_OAUTH2_CONF, the SASL option oauth2_config or "
	    "sasl-oauth2 -c FILE; a commented sample is %s)", msg,
	    OA2_SAMPLE_CONF);
}

int
oa2_config_load(const char *path, const struct oa2_log *lg,
    struct oa2_config **out, struct oa2_error *err)
{
	struct oa2_loader ld = { path, lg, err, NULL, 0 };
	struct oa2_config *cfg;
	struct stat st;
	config_t lc;
	char *text = NULL;
	int r;

	*out = NULL;
	if ((cfg = calloc(1, sizeof(*cfg))) == NULL ||
	    (cfg->path = strdup(path)) == NULL) {
		free(cfg);
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	}
	cfg->log_level = OA2_LOG_INFO;
	ld.cfg = cfg;
	config_init(&lc);
	if ((r = oa2_read_file_st(path, "configuration file", 0,
	    MAX_CONFIG_SIZE, &text, NULL, &st, err)) != 0) {
		r = err->code = OA2_ERR_CONFIG;
		if (oa2_stat(path, &st) == -1 && errno == ENOENT)
			missing(path, err);
		goto out;
	}
	/*
	 * The file decides which files are read (as root at plug_init) and
	 * where their contents are sent: only root or the effective user
	 * may be able to change it, as ssh(1) and sudo require.
	 */
	if ((r = oa2_check_safe_path(path, &st, "configuration file",
	    err)) != 0)
		goto out;
	cfg->dev = st.st_dev;
	cfg->ino = st.st_ino;
	cfg->mtime = st.st_mtim;
	cfg->ctime = st.st_ctim;
	cfg->size = st.st_size;
	if ((r = include_line(text)) != 0) {
		r = oa2_seterr(err, OA2_ERR_CONFIG, "%s:%d: @include is not "
		    "allowed: an included file escapes the permission check "
		    "and change detection; put everything in this file", path,
		    r);
		goto out;
	}
	if (!config_read_string(&lc, text)) {
		r = oa2_seterr(err, OA2_ERR_CONFIG, "%s:%d: %s", path,
		    config_error_line(&lc), config_error_text(&lc));
		goto out;
	}
	if ((r = load(&ld, &lc)) != 0)
		goto out;
	if (ld.has_inline_secret && (st.st_mode & 077) != 0) {
		r = oa2_seterr(err, OA2_ERR_CONFIG, "%s holds a client_secret "
		    "but is accessible by group or others (mode %04o): run "
		    "chmod 600 %s, or move the secret to client_secret_file",
		    path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	*out = cfg;
	cfg = NULL;	/* transferred */
	oa2_clearerr(err);
 out:
	/* The parsed tree holds inline secrets: wipe it, then the text. */
	if (ld.has_inline_secret || r != 0)
		wipe_inline_secrets(&lc);
	config_destroy(&lc);
	if (text != NULL)
		oa2_freezero(text, strlen(text));
	oa2_config_free(&cfg);
	return r;
}

void
oa2_config_free(struct oa2_config **cfgp)
{
	struct oa2_config *cfg;
	size_t i;

	if (cfgp == NULL || (cfg = *cfgp) == NULL)
		return;
	for (i = 0; i < cfg->naccounts; i++) {
		struct oa2_account *a = &cfg->accounts[i];

		free(a->match);
		free(a->authority);
		free(a->tenant);
		free(a->client_id);
		free(a->scope);
		free(a->token_url);
		free(a->cache_dir);
		oa2_account_children_free(a);
		clear_cred(a);
		oa2_token_clear(&a->mem);
		pthread_mutex_destroy(&a->lock);
	}
	free(cfg->accounts);
	for (i = 0; i < cfg->ncas; i++) {
		free(cfg->cas[i].path);
		free(cfg->cas[i].data);
	}
	free(cfg->cas);
	free(cfg->path);
	free(cfg);
	*cfgp = NULL;
}

struct oa2_account *
oa2_config_match(const struct oa2_config *cfg, const char *mailbox)
{
	struct oa2_account *dom = NULL, *any = NULL;
	const char *at = strrchr(mailbox, '@');
	size_t i;

	for (i = 0; i < cfg->naccounts; i++) {
		struct oa2_account *a = &cfg->accounts[i];

		if (strcasecmp(a->match, mailbox) == 0)
			return a;
		if (strcmp(a->match, "*") == 0)
			any = a;
		else if (a->match[0] == '*' && at != NULL &&
		    strcasecmp(a->match + 1, at) == 0)
			dom = a;
	}
	return dom != NULL ? dom : any;
}

int
oa2_config_changed(const struct oa2_config *cfg)
{
	struct stat st;

	/*
	 * The same file: 0 without asking whether it is readable (one
	 * system call less on every warm login; the answer is the same,
	 * since a file that cannot be examined keeps what was loaded).
	 */
	if (stat(cfg->path, &st) == -1)
		return -1;
	if (st.st_dev == cfg->dev && st.st_ino == cfg->ino &&
	    st.st_size == cfg->size &&
	    st.st_mtim.tv_sec == cfg->mtime.tv_sec &&
	    st.st_mtim.tv_nsec == cfg->mtime.tv_nsec &&
	    st.st_ctim.tv_sec == cfg->ctime.tv_sec &&
	    st.st_ctim.tv_nsec == cfg->ctime.tv_nsec)
		return 0;
	return access(cfg->path, R_OK) == -1 ? -1 : 1;
}
