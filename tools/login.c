/*
 * sasl-oauth2 login and logout (one family): a delegated account's
 * mailbox signs in once, and its refresh token is kept in token_file.
 *
 * Microsoft: the device authorization grant (RFC 8628). Google (whose
 * device flow does not allow the mail scope): the authorization-code
 * grant with PKCE S256 (RFC 7636) and a loopback redirect (RFC 8252).
 * Neither the refresh token nor an access token is ever printed.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <pwd.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conf.h"
#include "cache.h"
#include "cred.h"
#include "http.h"
#include "refresh.h"
#include "secret.h"
#include "token.h"
#include "tool.h"
#include "wire.h"

#define DEVICE_GRANT	"urn:ietf:params:oauth:grant-type:device_code"
#define BROWSER_WAIT	600		/* seconds for the redirect */

extern char **environ;

struct login {
	const char	*user;
	const struct oa2_account *a;
	const struct oa2_refresh *rd;
	const struct oa2_log *lg;
	int		no_browser;
	uid_t		uid;		/* (uid_t)-1: the effective user */
	gid_t		gid;
};

static int __attribute__((format(printf, 1, 2)))
login_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nusage: %s login [-c CONFIG] [-v] [--no-browser] "
	    "[--owner USER] MAILBOX\n       %s logout [-c CONFIG] [-v] "
	    "MAILBOX\n", progname, progname);
	return EX_USAGE;
}

static int __attribute__((format(printf, 1, 2)))
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EX_UNAVAILABLE;
}

static void
log_stderr(void *ctx, int level, const char *msg)
{
	(void)ctx;
	(void)level;
	fprintf(stderr, "%s: %s\n", progname, msg);
}

/* n random bytes as base64url, a new string (NULL on failure). */
static char *
random_b64(size_t n)
{
	unsigned char buf[64];
	char *s;

	if (n > sizeof(buf) || RAND_bytes(buf, (int)n) != 1)
		return NULL;
	s = oa2_b64url_encode(buf, n);
	oa2_wipe(buf, sizeof(buf));
	return s;
}

/* The scope asked for at sign-in: the account's, plus who signed in. */
static char *
login_scope(const struct login *l)
{
	char *s;

	if (asprintf(&s, "%s %s", l->a->scope,
	    l->rd->provider == OA2_PROVIDER_GOOGLE ? "openid email" :
	    "openid profile") == -1)
		return NULL;
	return s;
}

/* Save the sign-in: only if it is the account's own mailbox. */
static int
save(const struct login *l, struct oa2_refresh_file *rf, time_t now)
{
	struct oa2_error err;
	char *cf;

	if (rf->refresh_token == NULL)
		return fail("the provider sent no refresh token: check that "
		    "the scope holds offline_access (Microsoft) or that the "
		    "app may be granted offline access (Google)");
	if (rf->email != NULL && strcasecmp(rf->email, l->user) != 0)
		return fail("signed in as %s, not as %s: sign in again as %s "
		    "(nothing was saved)", rf->email, l->user, l->user);
	rf->signed_in = now;
	rf->refreshed = now;
	if (oa2_refresh_write(l->rd->token_file, rf, l->uid, l->gid,
	    &err) != 0)
		return fail("%s", err.msg);
	/* a refusal remembered before this sign-in no longer holds */
	if ((cf = oa2_cache_file(l->a)) != NULL) {
		(void)unlink(cf);
		free(cf);
	}
	printf("signed in as %s; the refresh token is in %s (mode 0600)\n",
	    rf->email != NULL ? rf->email : l->user, l->rd->token_file);
	printf("next: sasl-oauth2 test %s\n", l->user);
	return EX_OK;
}

static const char *
jstr(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static long
jint(json_t *o, const char *name, long dflt, long lo, long hi)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_integer(v) || json_integer_value(v) < lo ||
	    json_integer_value(v) > hi)
		return dflt;
	return (long)json_integer_value(v);
}

static void
sleep_s(long s)
{
	struct timespec ts = { s, 0 };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* RFC 8628: the device authorization grant. */
static int
device_flow(const struct login *l)
{
	struct oa2_http_response resp = { .retry_after = -1 };
	struct oa2_refresh_file rf;
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	json_t *root = NULL, *ans;
	char *form = NULL, *scope = NULL, *dc = NULL, uc[64], uri[256];
	const char *e;
	size_t formlen = 0;
	long interval, expires, code;
	time_t start, deadline;
	int ex = EX_UNAVAILABLE, r;

	memset(&rf, 0, sizeof(rf));
	if ((scope = login_scope(l)) == NULL ||
	    oa2_form_add(&form, &formlen, "client_id", l->a->client_id) != 0 ||
	    oa2_form_add(&form, &formlen, "scope", scope) != 0) {
		ex = fail("out of memory");
		goto out;
	}
	if (oa2_refresh_post(l->a, l->rd->device_endpoint, form, formlen,
	    l->a->timeout, l->lg, &resp, &err) != 0) {
		ex = fail("%s", err.msg);
		goto out;
	}
	root = resp.body != NULL ? json_loadb(resp.body, resp.len, 0, NULL) :
	    NULL;
	if (resp.status != 200 || jstr(root, "device_code") == NULL ||
	    jstr(root, "user_code") == NULL ||
	    jstr(root, "verification_uri") == NULL) {
		char d[200] = "";

		e = jstr(root, "error_description");
		if (e != NULL)
			oa2_sanitize(d, sizeof(d), e, strcspn(e, "\r\n"), 160);
		ex = fail("the device authorization endpoint answered HTTP "
		    "%ld%s%s%s", resp.status, jstr(root, "error") != NULL ?
		    ": " : "", *d != '\0' ? d : "",
		    resp.status == 200 ? " without a device code" : "");
		goto out;
	}
	oa2_sanitize(uc, sizeof(uc), jstr(root, "user_code"),
	    strlen(jstr(root, "user_code")), 40);
	oa2_sanitize(uri, sizeof(uri), jstr(root, "verification_uri"),
	    strlen(jstr(root, "verification_uri")), 200);
	if ((dc = strdup(jstr(root, "device_code"))) == NULL) {
		ex = fail("out of memory");
		goto out;
	}
	interval = jint(root, "interval", 5, 1, 60);
	expires = jint(root, "expires_in", 900, 1, 3600);
	json_decref(root);
	root = NULL;
	oa2_http_response_clear(&resp);
	printf("To sign in as %s, open %s in a browser and enter the code "
	    "%s\n", l->user, uri, uc);
	fflush(stdout);

	oa2_freezero(form, formlen + 1);
	form = NULL;
	formlen = 0;
	if (oa2_form_add(&form, &formlen, "grant_type", DEVICE_GRANT) != 0 ||
	    oa2_form_add(&form, &formlen, "client_id", l->a->client_id) != 0 ||
	    oa2_form_add(&form, &formlen, "device_code", dc) != 0 ||
	    (l->rd->client_secret != NULL && oa2_form_add(&form, &formlen,
	    "client_secret", l->rd->client_secret) != 0)) {
		ex = fail("out of memory");
		goto out;
	}
	start = time(NULL);
	deadline = start + expires;
	for (;;) {
		sleep_s(interval);
		if (time(NULL) > deadline + interval) {
			ex = fail("the code %s has expired: run sasl-oauth2 "
			    "login %s again", uc, l->user);
			goto out;
		}
		if (oa2_refresh_post(l->a, NULL, form, formlen, l->a->timeout,
		    l->lg, &resp, &err) != 0) {
			ex = fail("%s", err.msg);
			goto out;
		}
		ans = resp.body != NULL && resp.status >= 400 ?
		    json_loadb(resp.body, resp.len, 0, NULL) : NULL;
		e = jstr(ans, "error");
		if (e != NULL && strcmp(e, "authorization_pending") == 0) {
			json_decref(ans);
			oa2_http_response_clear(&resp);
			continue;
		}
		if (e != NULL && strcmp(e, "slow_down") == 0) {
			interval += 5;		/* RFC 8628, 3.5 */
			json_decref(ans);
			oa2_http_response_clear(&resp);
			continue;
		}
		if (e != NULL && strcmp(e, "expired_token") == 0) {
			json_decref(ans);
			ex = fail("the code %s has expired before the sign-in: "
			    "run sasl-oauth2 login %s again", uc, l->user);
			goto out;
		}
		if (e != NULL && (strcmp(e, "access_denied") == 0 ||
		    strcmp(e, "authorization_declined") == 0)) {
			json_decref(ans);
			ex = fail("the sign-in as %s was declined", l->user);
			goto out;
		}
		json_decref(ans);
		r = oa2_refresh_answer(l->a, resp.status, resp.body, resp.len,
		    time(NULL), &tok, &rf, &code, &err);
		oa2_http_response_clear(&resp);
		if (r != 0) {
			ex = fail("%s", err.msg);
			goto out;
		}
		ex = save(l, &rf, time(NULL));
		goto out;
	}
 out:
	json_decref(root);
	oa2_http_response_clear(&resp);
	oa2_token_clear(&tok);
	oa2_refresh_file_clear(&rf);
	if (form != NULL)
		oa2_freezero(form, formlen + 1);
	free(scope);
	oa2_freezero_str(&dc);
	return ex;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * The URL-decoded value of parameter name in query q (up to the end,
 * a space or '#'), a new string; NULL when absent.
 */
static char *
query_get(const char *q, const char *name)
{
	size_t nl = strlen(name), i, j, len;
	const char *p = q, *v;
	char *out;

	while (*p != '\0' && *p != ' ' && *p != '#') {
		len = strcspn(p, "& #");
		if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			v = p + nl + 1;
			len -= nl + 1;
			if ((out = malloc(len + 1)) == NULL)
				return NULL;
			for (i = j = 0; i < len; i++) {
				if (v[i] == '%' && i + 2 < len &&
				    hexval(v[i + 1]) >= 0 &&
				    hexval(v[i + 2]) >= 0) {
					out[j++] = (char)(hexval(v[i + 1]) * 16 +
					    hexval(v[i + 2]));
					i += 2;
				} else
					out[j++] = v[i] == '+' ? ' ' : v[i];
			}
			out[j] = '\0';
			return out;
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return NULL;
}

/* Open url in the user's browser (xdg-open), when there is a display. */
static void
open_browser(const char *url)
{
	char *argv[3];
	pid_t pid;

	if (getenv("DISPLAY") == NULL && getenv("WAYLAND_DISPLAY") == NULL)
		return;
	argv[0] = (char *)"xdg-open";
	argv[1] = (char *)url;
	argv[2] = NULL;
	if (posix_spawnp(&pid, "xdg-open", NULL, NULL, argv, environ) == 0)
		printf("(opening it with xdg-open)\n");
}

/* One redirected request on the loopback socket: its request line. */
static char *
await_redirect(int lfd)
{
	static const char page[] = "HTTP/1.1 200 OK\r\nContent-Type: "
	    "text/plain\r\nConnection: close\r\n\r\nsasl-oauth2: the "
	    "sign-in is complete; you may close this window.\r\n";
	struct pollfd pfd = { lfd, POLLIN, 0 };
	char buf[8192], *line = NULL;
	size_t len = 0;
	ssize_t n;
	int fd;

	for (;;) {
		if (poll(&pfd, 1, BROWSER_WAIT * 1000) <= 0)
			return NULL;
		if ((fd = accept(lfd, NULL, NULL)) == -1)
			continue;
		len = 0;
		while (len < sizeof(buf) - 1 && memchr(buf, '\n', len) == NULL) {
			struct pollfd cp = { fd, POLLIN, 0 };

			if (poll(&cp, 1, 10000) <= 0 ||
			    (n = read(fd, buf + len, sizeof(buf) - 1 - len)) <= 0)
				break;
			len += (size_t)n;
		}
		buf[len] = '\0';
		if (strncmp(buf, "GET /", 5) == 0 && strchr(buf, '\n') != NULL) {
			(void)!write(fd, page, sizeof(page) - 1);
			close(fd);
			buf[strcspn(buf, "\r\n")] = '\0';
			line = strdup(buf + 4);
			oa2_wipe(buf, sizeof(buf));
			return line;
		}
		close(fd);	/* a favicon, a probe: wait on */
	}
}

/* RFC 6749 4.1 + RFC 7636 (S256) + RFC 8252 (loopback redirect). */
static int
code_flow(const struct login *l)
{
	struct oa2_http_response resp = { .retry_after = -1 };
	struct oa2_refresh_file rf;
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	unsigned char md[32];
	char *verifier = NULL, *challenge = NULL, *state = NULL, *q = NULL;
	char *url = NULL, *scope = NULL, *got = NULL, *code = NULL;
	char *gstate = NULL, *gerr = NULL, *form = NULL, redirect[64];
	char line[8192];
	size_t qlen = 0, formlen = 0;
	long acode;
	int lfd = -1, ex = EX_UNAVAILABLE;

	memset(&rf, 0, sizeof(rf));
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		ex = fail("cannot open a loopback socket: %s", strerror(errno));
		goto out;
	}
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 4) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) == -1) {
		ex = fail("cannot listen on 127.0.0.1: %s", strerror(errno));
		goto out;
	}
	snprintf(redirect, sizeof(redirect), "http://127.0.0.1:%u/",
	    (unsigned)ntohs(sin.sin_port));
	if ((verifier = random_b64(32)) == NULL ||
	    (state = random_b64(16)) == NULL ||
	    EVP_Digest(verifier, strlen(verifier), md, NULL, EVP_sha256(),
	    NULL) != 1 || (challenge = oa2_b64url_encode(md, 32)) == NULL ||
	    (scope = login_scope(l)) == NULL ||
	    oa2_form_add(&q, &qlen, "client_id", l->a->client_id) != 0 ||
	    oa2_form_add(&q, &qlen, "response_type", "code") != 0 ||
	    oa2_form_add(&q, &qlen, "redirect_uri", redirect) != 0 ||
	    oa2_form_add(&q, &qlen, "scope", scope) != 0 ||
	    oa2_form_add(&q, &qlen, "state", state) != 0 ||
	    oa2_form_add(&q, &qlen, "code_challenge", challenge) != 0 ||
	    oa2_form_add(&q, &qlen, "code_challenge_method", "S256") != 0 ||
	    oa2_form_add(&q, &qlen, "login_hint", l->user) != 0 ||
	    (l->rd->provider == OA2_PROVIDER_GOOGLE &&
	    (oa2_form_add(&q, &qlen, "access_type", "offline") != 0 ||
	    oa2_form_add(&q, &qlen, "prompt", "consent") != 0)) ||
	    asprintf(&url, "%s%s%s", l->rd->authorization_endpoint,
	    strchr(l->rd->authorization_endpoint, '?') != NULL ? "&" : "?",
	    q) == -1) {
		url = NULL;
		ex = fail("cannot prepare the sign-in (out of memory or no "
		    "randomness)");
		goto out;
	}
	printf("To sign in as %s, open this address in a browser:\n\n%s\n\n",
	    l->user, url);
	if (l->no_browser) {
		printf("then paste here the address the browser was sent to "
		    "at the end (%s...; the page itself will not load):\n",
		    redirect);
		fflush(stdout);
		if (fgets(line, sizeof(line), stdin) == NULL) {
			ex = fail("no address was pasted");
			goto out;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if (strncmp(line, redirect, strlen(redirect) - 1) != 0) {
			ex = fail("the address pasted does not start with %s",
			    redirect);
			goto out;
		}
		got = strdup(line + strlen(redirect) - 1);
		oa2_wipe(line, sizeof(line));
	} else {
		open_browser(url);
		printf("waiting for the browser to come back to %s\n",
		    redirect);
		fflush(stdout);
		got = await_redirect(lfd);
	}
	if (got == NULL) {
		ex = fail("the browser did not come back to %s", redirect);
		goto out;
	}
	if (strchr(got, '?') == NULL) {
		ex = fail("the address the browser came back to has no "
		    "answer in it");
		goto out;
	}
	gstate = query_get(strchr(got, '?') + 1, "state");
	gerr = query_get(strchr(got, '?') + 1, "error");
	code = query_get(strchr(got, '?') + 1, "code");
	if (gstate == NULL || strcmp(gstate, state) != 0) {
		ex = fail("the answer's state does not match this sign-in "
		    "(an answer to another request, or forged): run "
		    "sasl-oauth2 login %s again", l->user);
		goto out;
	}
	if (gerr != NULL || code == NULL) {
		char e[64];

		oa2_sanitize(e, sizeof(e), gerr != NULL ? gerr : "no code",
		    gerr != NULL ? strlen(gerr) : 7, 48);
		ex = fail("the sign-in as %s was refused (%s)", l->user, e);
		goto out;
	}
	if (oa2_form_add(&form, &formlen, "grant_type",
	    "authorization_code") != 0 ||
	    oa2_form_add(&form, &formlen, "client_id", l->a->client_id) != 0 ||
	    oa2_form_add(&form, &formlen, "code", code) != 0 ||
	    oa2_form_add(&form, &formlen, "redirect_uri", redirect) != 0 ||
	    oa2_form_add(&form, &formlen, "code_verifier", verifier) != 0 ||
	    (l->rd->client_secret != NULL && oa2_form_add(&form, &formlen,
	    "client_secret", l->rd->client_secret) != 0)) {
		ex = fail("out of memory");
		goto out;
	}
	if (oa2_refresh_post(l->a, NULL, form, formlen, l->a->timeout, l->lg,
	    &resp, &err) != 0 || oa2_refresh_answer(l->a, resp.status,
	    resp.body, resp.len, time(NULL), &tok, &rf, &acode, &err) != 0) {
		ex = fail("%s", err.msg);
		goto out;
	}
	ex = save(l, &rf, time(NULL));
 out:
	if (lfd != -1)
		close(lfd);
	oa2_http_response_clear(&resp);
	oa2_token_clear(&tok);
	oa2_refresh_file_clear(&rf);
	oa2_freezero_str(&verifier);
	oa2_freezero_str(&code);
	oa2_freezero_str(&got);
	free(challenge);
	free(state);
	free(gstate);
	free(gerr);
	free(scope);
	free(url);
	if (q != NULL)
		oa2_freezero(q, qlen + 1);
	if (form != NULL)
		oa2_freezero(form, formlen + 1);
	return ex;
}

/* logout, with the credential's lock held. */
static int
logout_locked(const struct login *l)
{
	struct oa2_http_response resp = { .retry_after = -1 };
	struct oa2_refresh_file rf;
	struct oa2_error err;
	char *form = NULL, *cf;
	size_t formlen = 0;
	int ex = EX_OK;

	if (oa2_refresh_read(l->rd->token_file, &rf, &err) != 0) {
		if (access(l->rd->token_file, F_OK) == -1 && errno == ENOENT) {
			/* a killed first login may have left a temporary */
			(void)oa2_refresh_remove(l->rd->token_file, &err);
			printf("%s is not signed in (no %s)\n", l->user,
			    l->rd->token_file);
			return EX_OK;
		}
		return fail("%s", err.msg);
	}
	if (l->rd->revocation_endpoint == NULL)
		printf("%s has no revocation endpoint: the refresh token "
		    "stays valid until it expires; withdraw the app's "
		    "access in the account's settings to end it now\n",
		    oa2_refresh_provider_name(l->rd->provider));
	else if (oa2_form_add(&form, &formlen, "token",
	    rf.refresh_token) != 0 ||
	    oa2_form_add(&form, &formlen, "token_type_hint",
	    "refresh_token") != 0)
		ex = fail("out of memory");
	else if (oa2_refresh_post(l->a, l->rd->revocation_endpoint, form,
	    formlen, l->a->timeout, l->lg, &resp, &err) != 0)
		ex = fail("%s (the token file is kept)", err.msg);
	else if (resp.status != 200)
		ex = fail("the revocation endpoint answered HTTP %ld (the "
		    "token file is kept)", resp.status);
	else
		printf("revoked the refresh token of %s\n", l->user);
	oa2_http_response_clear(&resp);
	if (form != NULL)
		oa2_freezero(form, formlen + 1);
	oa2_refresh_file_clear(&rf);
	if (ex != EX_OK)
		return ex;
	/* with what killed rotations left beside it (refresh tokens too) */
	if (oa2_refresh_remove(l->rd->token_file, &err) != 0)
		return fail("%s", err.msg);
	if ((cf = oa2_cache_file(l->a)) != NULL) {
		(void)unlink(cf);
		free(cf);
	}
	printf("deleted %s\n", l->rd->token_file);
	return EX_OK;
}

/* RFC 7009: revoke the refresh token, then delete the file. */
static int
logout(const struct login *l)
{
	struct oa2_error err;
	int ex, lock;

	/*
	 * A refresh in another process (the plugin, token, test) holds the
	 * credential's lock until it has written the rotated refresh token:
	 * wait for it, so that what is revoked and removed is the newest,
	 * and nothing puts the file back afterwards.
	 */
	if (oa2_cache_lock(l->a, &lock, &err) != 0) {
		(void)fail("%s; nothing was revoked or deleted: run "
		    "sasl-oauth2 logout %s again", err.msg, l->user);
		return EX_TEMPFAIL;
	}
	ex = logout_locked(l);
	oa2_cache_unlock(lock);
	return ex;
}

int
cmd_login(int ac, char **av)
{
	static const struct option longopts[] = {
		{ "config",	required_argument,	NULL, 'c' },
		{ "verbose",	no_argument,		NULL, 'v' },
		{ "no-browser",	no_argument,		NULL, 'n' },
		{ "owner",	required_argument,	NULL, 'o' },
		{ "help",	no_argument,		NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct oa2_log lg = { log_stderr, NULL, OA2_LOG_WARNING };
	struct oa2_config *cfg = NULL;
	struct oa2_error err;
	struct login l;
	struct passwd *pw;
	const char *config = NULL, *owner = NULL;
	int ch, out = strcmp(av[0], "logout") == 0, ex;

	memset(&l, 0, sizeof(l));
	l.uid = (uid_t)-1;
	l.gid = (gid_t)-1;
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(ac, av, ":c:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			config = optarg;
			break;
		case 'v':
			if (lg.level < OA2_LOG_DEBUG)
				lg.level++;
			break;
		case 'n':
			l.no_browser = 1;
			break;
		case 'o':
			owner = optarg;
			break;
		case 'h':
			return login_usage("%s", "sign a delegated account's "
			    "mailbox in (login) or out (logout)");
		case ':':
			return login_usage("option %s needs an argument",
			    av[optind - 1]);
		default:
			return login_usage("unknown option %s",
			    av[optind - 1]);
		}
	}
	if (ac - optind != 1)
		return login_usage("%s takes one mailbox", av[0]);
	if (out && (owner != NULL || l.no_browser))
		return login_usage("%s", "--owner and --no-browser go with "
		    "login");
	l.user = av[optind];
	if (oa2_wire_check("mailbox", l.user, &err) != 0)
		return fail("%s", err.msg);
	if (owner != NULL) {
		if (geteuid() != 0)
			return fail("--owner needs root: run sasl-oauth2 login "
			    "as the user who will use the sign-in instead");
		if ((pw = getpwnam(owner)) == NULL)
			return fail("--owner %s: no such user", owner);
		l.uid = pw->pw_uid;
		l.gid = pw->pw_gid;
	}
	l.lg = &lg;
	if (oa2_config_load(oa2_config_path(config), &lg, &cfg, &err) != 0)
		return fail("%s", err.msg);
	ex = EX_CONFIG;
	if ((l.a = oa2_config_match(cfg, l.user)) == NULL)
		fail("no account matches %s", l.user);
	else if (l.a->broken)
		fail("%s", l.a->load_err.msg);
	else if ((l.rd = oa2_refresh_of(l.a)) == NULL)
		fail("the account for %s (match \"%s\") is not a delegated "
		    "account: it has no provider", l.user, l.a->match);
	else if (out)
		ex = logout(&l);
	else if (l.rd->provider == OA2_PROVIDER_MICROSOFT &&
	    l.rd->device_endpoint != NULL)
		ex = device_flow(&l);
	else
		ex = code_flow(&l);
	oa2_config_free(&cfg);
	if (fflush(stdout) != 0 && ex == EX_OK)
		ex = EX_IOERR;
	return ex;
}
