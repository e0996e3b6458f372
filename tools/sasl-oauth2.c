/*
 * sasl-oauth2: the administrator's side of the plugin. Checks the
 * configuration, prints tokens for programs that take a token command,
 * tests a whole login step by step and explains each failure, prints
 * certificate thumbprints, and lists or clears the token cache. It links
 * the same core as the plugin, so it reads the same file, uses the same
 * cache and the same lock, and sends the same requests.
 */
#include "config.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <ctype.h>
#include <fcntl.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <libconfig.h>

#include "cache.h"
#include "conf.h"
#include "cred.h"
#include "error.h"
#include "jwt.h"
#include "refresh.h"
#include "secret.h"
#include "token.h"
#include "wire.h"
#include "tool.h"
#include "tunnel.h"

#ifndef OA2_VERSION
#define OA2_VERSION	PACKAGE_VERSION
#endif

#define LOGIN_TIMEOUT	30L
#define GREETING_TIMEOUT 10L	/* seconds for each server response */
#define PROBE_TIMEOUT	10L	/* seconds: connect, then first bytes */
#define ROLE_IMAP	"IMAP.AccessAsApp"
#define ROLE_SMTP	"SMTP.SendAsApp"
/* check-config --expiring DAYS: a credential expires within DAYS */
#define EX_EXPIRING	EX_UNAVAILABLE

const char *progname = "sasl-oauth2";

/* Options of all subcommands, set by getopt. */
struct opts {
	const char	*config;	/* -c */
	int		verbose;	/* -v, repeatable */
	int		json;		/* token --json */
	const char	*imap;		/* test --imap; "" = the default */
	const char	*smtp;		/* test --smtp */
	const char	*ca_file;	/* test --ca-file: the mail server's CA */
	int		no_login;	/* test --no-login */
	int		no_cache;	/* test --no-cache */
	const char	*mech;		/* tunnel --mech */
	long		expiring;	/* check-config --expiring; -1: none */
};

/* ---- messages -------------------------------------------------------- */

/*
 * The one error sentence of a command, on stderr. When stderr is not a
 * terminal (a mail client ran the command: mutt paints over what it
 * prints, others drop it) the sentence also goes to syslog, facility
 * mail, so that the administrator finds it. Callers never pass a
 * secret or a token: the same sentence is shown to the user.
 */
static void __attribute__((format(printf, 1, 2)))
warnx_(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: %s\n", progname, msg);
	fflush(stderr);
	if (!isatty(STDERR_FILENO)) {
		openlog(progname, LOG_PID, LOG_MAIL);
		syslog(LOG_ERR, "%s", msg);
		closelog();
	}
}

static void
log_stderr(void *ctx, int level, const char *msg)
{
	static const char *const names[] = {
		"error", "warning", "info", "debug"
	};

	fprintf(stderr, "%s: %s: %s\n", progname,
	    level >= 0 && level <= 3 ? names[level] : "log", msg);
}

static void
usage_line(FILE *f)
{
	fprintf(f,
	    "usage: %s [-v] [-c FILE] check-config\n"
	    "       %s [-v] [-c FILE] token [--json] USER\n"
	    "       %s [-v] [-c FILE] test USER [--imap [HOST[:PORT]]] "
	    "[--smtp [HOST[:PORT]]]\n"
	    "                  [--ca-file FILE] [--no-login] [--no-cache]\n"
	    "       %s thumbprint CERT\n"
	    "       %s [-v] [-c FILE] cache list|clear [USER]\n"
	    "       %s [-v] [-c FILE] tunnel imap|pop3 USER [HOST[:PORT]]\n"
	    "                  [--mech XOAUTH2|OAUTHBEARER] [--ca-file FILE]\n"
	    "       %s login [-v] [-c FILE] [--no-browser] [--owner USER] "
	    "USER\n"
	    "       %s logout [-v] [-c FILE] USER\n"
	    "       %s --help | --version\n",
	    progname, progname, progname, progname, progname, progname,
	    progname, progname, progname);
}

int
usage(const char *fmt, ...)
{
	va_list ap;

	if (fmt != NULL) {
		fprintf(stderr, "%s: ", progname);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
		fprintf(stderr, " (see %s --help)\n", progname);
	} else
		usage_line(stderr);
	return EX_USAGE;
}

static int
help(void)
{
	usage_line(stdout);
	printf("\n"
	    "Commands:\n"
	    "  check-config       validate every account; one verdict line "
	    "each\n"
	    "  token USER         print the access token for USER's account "
	    "(cached)\n"
	    "  test USER          config, credential, token and claims, then "
	    "a real\n"
	    "                     IMAP and/or SMTP login (default: the "
	    "account's\n"
	    "                     hosts, outlook.office365.com and "
	    "smtp.office365.com\n"
	    "                     for Office 365), explaining failures\n"
	    "  thumbprint CERT    SHA-1 thumbprint as Azure shows it, x5t, "
	    "x5t#S256\n"
	    "  certificate new PREFIX [--bits N] [--days N] [--subject CN] "
	    "[--owner U]\n"
	    "                     write PREFIX.key and PREFIX.crt for an "
	    "app registration\n"
	    "  cache list [USER]  cached tokens: account and expiry, never "
	    "the token\n"
	    "  cache clear [USER] drop cached tokens\n"
	    "  tunnel imap|pop3 USER [HOST[:PORT]]\n"
	    "                     log in (default the account's host, "
	    ":993 or :995;\n"
	    "                     143 and 110: STARTTLS) and relay a "
	    "pre-authenticated\n"
	    "                     session on stdin/stdout (fetchmail, mutt, "
	    "mbsync)\n"
	    "  login USER         a delegated account (provider): sign the "
	    "mailbox in once\n"
	    "                     (Microsoft: a code to enter; Google: a "
	    "browser sign-in)\n"
	    "                     and keep its refresh token in token_file\n"
	    "  logout USER        revoke the sign-in where the provider can, "
	    "delete token_file\n"
	    "\n"
	    "Options:\n"
	    "  -c, --config FILE  configuration (default: $SASL_OAUTH2_CONF "
	    "or %s)\n"
	    "  -v, --verbose      more log output on stderr (twice: debug)\n"
	    "  --json             token: print token, expiry and account as "
	    "JSON\n"
	    "  --imap [HOST[:PORT]], --smtp [HOST[:PORT]]\n"
	    "                     test: log in there; imaps://, imap:// "
	    "(STARTTLS),\n"
	    "                     smtp:// (STARTTLS) and smtps:// select the "
	    "mode\n"
	    "  --ca-file FILE     test, tunnel: CA bundle for the mail "
	    "server's certificate\n"
	    "  --mech MECH        tunnel: XOAUTH2 (default) or OAUTHBEARER\n"
	    "  --expiring DAYS    check-config: exit 69 when a credential "
	    "expires within DAYS\n"
	    "  --no-login         test: stop after the token\n"
	    "  --no-cache         test: ask the token endpoint, bypassing the "
	    "cache\n"
	    "  --no-browser       login: print the address, read the one the "
	    "browser lands on\n"
	    "  --owner USER       login, certificate new (as root): the "
	    "files' owner\n"
	    "  -h, --help         this text;  -V, --version  the version\n"
	    "\nSee sasl-oauth2(1) and sasl-oauth2.conf(5).\n",
	    OA2_DEFAULT_CONF);
	return fflush(stdout) == 0 && !ferror(stdout) ? EX_OK : EX_IOERR;
}

/* The sysexits code for a core error code. */
int
exit_code(int code)
{
	switch (code) {
	case OA2_OK:			return EX_OK;
	case OA2_ERR_CONFIG:		return EX_CONFIG;
	case OA2_ERR_CREDENTIAL:	return EX_CONFIG;
	case OA2_ERR_NOACCOUNT:		return EX_NOUSER;
	case OA2_ERR_NETWORK:		return EX_TEMPFAIL;
	case OA2_ERR_TRANSIENT:		return EX_TEMPFAIL;
	case OA2_ERR_RESPONSE:		return EX_UNAVAILABLE;
	case OA2_ERR_DENIED:		return EX_NOPERM;
	case OA2_ERR_REJECTED:		return EX_NOPERM;
	case OA2_ERR_CACHE:		return EX_CANTCREAT;
	case OA2_ERR_NOMEM:		return EX_OSERR;
	default:			return EX_SOFTWARE;
	}
}

static const char *
fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (t <= 0 || localtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
		snprintf(buf, len, "unknown");
	return buf;
}

static const char *
fmt_duration(long s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "expired");
	else if (s < 120)
		snprintf(buf, len, "in %ld s", s);
	else if (s < 2 * 3600)
		snprintf(buf, len, "in %ld min", s / 60);
	else if (s < 2 * 86400)
		snprintf(buf, len, "in %ld h", s / 3600);
	else
		snprintf(buf, len, "in %ld days", s / 86400);
	return buf;
}

/* One step of `test`: "OK    what: text" and so on. */
static void __attribute__((format(printf, 2, 3)))
step(const char *verdict, const char *fmt, ...)
{
	va_list ap;

	printf("%-5s ", verdict);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* The indented "likely cause / fix" lines under a FAIL or WARN. */
static void
advise(const char *cause, const char *fix)
{
	if (cause != NULL)
		printf("      likely cause: %s\n", cause);
	if (fix != NULL)
		printf("      fix: %s\n", fix);
	fflush(stdout);
}

/* ---- loading --------------------------------------------------------- */

static const char *
config_path(const struct opts *o)
{
	return oa2_config_path(o->config);
}

static int
load_config(const struct opts *o, const struct oa2_log *lg,
    struct oa2_config **cfg, struct oa2_error *err)
{
	return oa2_config_load(config_path(o), lg, cfg, err);
}

/* ---- check-config ---------------------------------------------------- */

/*
 * Which credential key account i uses, read again with libconfig (the
 * loaded struct keeps the secret, not where it came from). Inline
 * secrets in the parsed tree are wiped before it is destroyed.
 */
static void
credential_keys(const char *path, size_t n, const char **kind,
    const char **file, int next)
{
	static const char *const cur[] = {
		"client_secret_file", "client_secret", "certificate",
		"pkcs12", NULL
	}, *const nxt[] = {
		"next_client_secret_file", "next_client_secret",
		"next_certificate", "next_pkcs12", NULL
	};
	const char *const *keys = next ? nxt : cur;
	config_t lc;
	config_setting_t *list, *g, *s;
	size_t i;
	int k;

	for (i = 0; i < n; i++) {
		kind[i] = NULL;
		file[i] = NULL;
	}
	config_init(&lc);
	if (!config_read_file(&lc, path)) {
		config_destroy(&lc);
		return;
	}
	list = config_lookup(&lc, "accounts");
	for (i = 0; list != NULL && i < n; i++) {
		if ((g = config_setting_get_elem(list, (unsigned)i)) == NULL)
			break;
		for (k = 0; keys[k] != NULL; k++) {
			if ((s = config_setting_get_member(g, keys[k])) == NULL ||
			    config_setting_type(s) != CONFIG_TYPE_STRING)
				continue;
			kind[i] = keys[k];
			if (k != 1)
				file[i] = strdup(config_setting_get_string(s));
			break;
		}
		for (k = 0; k < 2; k++) {
			const char *v;

			if ((s = config_setting_get_member(g, k == 0 ?
			    "client_secret" : "next_client_secret")) != NULL &&
			    config_setting_type(s) == CONFIG_TYPE_STRING &&
			    (v = config_setting_get_string(s)) != NULL)
				oa2_wipe((char *)v, strlen(v));
		}
	}
	config_destroy(&lc);
}

/*
 * A cache directory the plugin would refuse: say so (a warning). The
 * plugin's own check (oa2_cache_check), creating nothing: a missing
 * directory, or a shared one's missing uid-N, is made on first use.
 */
static const char *
cache_dir_problem(const char *dir, char *buf, size_t len)
{
	struct oa2_error err;

	if (dir == NULL || oa2_cache_check(dir, &err) == 0)
		return NULL;
	snprintf(buf, len, "%.400s; the plugin keeps tokens in memory only",
	    err.msg);
	return buf;
}

/*
 * How many of a's credentials (in use, next) expire within `within`
 * seconds (or have expired); with print, one line for each. A secret
 * without client_secret_expires has no known date: not counted.
 */
static int
expiry_lines(const struct oa2_account *a, time_t now, long within, int print)
{
	char t[64];
	time_t exp;
	int i, n = 0;

	if (a->broken)
		return 0;
	for (i = 0; i < 2; i++) {
		if ((exp = oa2_account_expires(a, i)) == 0 ||
		    exp - now >= within)
			continue;
		n++;
		if (!print)
			continue;
		if (exp <= now)
			printf("      %s expired on %s\n",
			    oa2_account_cred_name(a, i),
			    fmt_time(exp, t, sizeof(t)));
		else
			printf("      %s expires in %ld days, on %s "
			    "(expiry_warning %ld)\n",
			    oa2_account_cred_name(a, i),
			    (long)((exp - now) / 86400),
			    fmt_time(exp, t, sizeof(t)),
			    a->expiry_warning / 86400);
	}
	return n;
}

/* The next credential of a (rollover), as check-config shows it. */
static void
show_next(const struct oa2_account *a, const char *kind, const char *file,
    time_t now)
{
	char t[64], d[32];
	const struct oa2_cert *c;

	if (a->next_err.code != 0) {
		printf("      %s is unusable (%s is used): %s\n",
		    oa2_account_cred_name(a, 1), oa2_account_cred_name(a, 0),
		    a->next_err.msg);
		return;
	}
	if (!oa2_account_has_next(a))
		return;
	if (a->kind == &oa2_cred_secret) {
		printf("      next: %s%s, loaded; used when the current one "
		    "is refused\n", kind != NULL && file != NULL ?
		    "secret file " : "inline next_client_secret",
		    kind != NULL && file != NULL ? file : "");
		return;
	}
	c = a->next_cert;
	printf("      next: certificate %s thumbprint %s expires %s (%s), "
	    "loaded; used when the current one is refused\n",
	    file != NULL ? file : "?", oa2_cert_sha1_hex(c),
	    fmt_time(oa2_cert_not_after(c), t, sizeof(t)),
	    fmt_duration((long)(oa2_cert_not_after(c) - now), d, sizeof(d)));
}

static int
cmd_check_config(const struct opts *o, const struct oa2_log *lg_)
{
	struct oa2_log quiet = *lg_, *lg = &quiet;
	struct oa2_config *cfg = NULL;
	struct oa2_error err, fede;
	struct oa2_jwt_info fedi;
	const char **kind = NULL, **file = NULL, **nkind = NULL, **nfile = NULL;
	char t[64], d[32], why[512], desc[512];
	const char *problem;
	time_t now = time(NULL);
	size_t i;
	int r, fed, expiring = 0;

	/* The verdict lines carry the warnings (expiry) unless -v. */
	if (o->verbose == 0)
		quiet.level = OA2_LOG_ERROR;
	oa2_clearerr(&err);
	if ((r = load_config(o, lg, &cfg, &err)) != 0) {
		warnx_("%s", err.msg);
		return exit_code(r) == EX_OSERR ? EX_OSERR : EX_CONFIG;
	}
	if ((kind = calloc(cfg->naccounts, sizeof(*kind))) == NULL ||
	    (file = calloc(cfg->naccounts, sizeof(*file))) == NULL ||
	    (nkind = calloc(cfg->naccounts, sizeof(*nkind))) == NULL ||
	    (nfile = calloc(cfg->naccounts, sizeof(*nfile))) == NULL) {
		free(kind);
		free(file);
		free(nkind);
		oa2_config_free(&cfg);
		warnx_("out of memory");
		return EX_OSERR;
	}
	credential_keys(cfg->path, cfg->naccounts, kind, file, 0);
	credential_keys(cfg->path, cfg->naccounts, nkind, nfile, 1);
	for (i = 0; i < cfg->naccounts; i++) {
		struct oa2_account *a = &cfg->accounts[i];
		const char *verdict = "OK";

		/* A broken account: its sentence; the others still load. */
		if (a->broken) {
			printf("FAIL  %s  line %d: cannot be used (the reason "
			    "is on standard error)\n", a->match, a->line);
			warnx_("%s", a->load_err.msg);
			continue;
		}
		problem = cache_dir_problem(a->cache_dir, why, sizeof(why));
		/* a federated token: what the next request would read */
		fed = 0;
		if (a->kind == &oa2_cred_federated) {
			char *ft = NULL;
			size_t ftlen = 0;

			fed = oa2_federated_read(oa2_federated_path(a), now,
			    &ft, &ftlen, &fedi, &fede) == 0 ? 1 : 2;
			if (ft != NULL)
				oa2_freezero(ft, ftlen + 1);
			if (fed == 2)
				verdict = "WARN";
		}
		if (expiry_lines(a, now, a->expiry_warning, 0) > 0 ||
		    a->next_err.code != 0)
			verdict = "WARN";
		if (problem != NULL)
			verdict = "WARN";
		printf("%-4s  %s  ", verdict, a->match);
		if (a->kind->flags & OA2_CRED_CLIENT)
			printf("tenant %s  client %s  ", a->tenant,
			    a->client_id);
		if (a->kind != &oa2_cred_secret && a->kind != &oa2_cred_cert) {
			a->kind->describe(a, desc, sizeof(desc));
			printf("%s", desc);
		} else if (a->kind == &oa2_cred_secret) {
			if (kind[i] != NULL &&
			    strcmp(kind[i], "client_secret_file") == 0 &&
			    file[i] != NULL)
				printf("secret file %s", file[i]);
			else
				printf("inline client_secret");
		} else {
			printf("certificate %s thumbprint %s %s expires %s (%s)",
			    file[i] != NULL ? file[i] : "?",
			    oa2_cert_sha1_hex(a->cert),
			    a->assertion_alg == OA2_ALG_RS256 ? "RS256" :
			    "PS256", fmt_time(oa2_cert_not_after(a->cert), t,
			    sizeof(t)), fmt_duration((long)(oa2_cert_not_after(
			    a->cert) - now), d, sizeof(d)));
		}
		printf("  token_url %s  scope %s  imap %s  smtp %s\n",
		    a->token_url != NULL ? a->token_url : "(none)", a->scope,
		    a->imap_host, a->smtp_host);
		if (problem != NULL)
			printf("      %s\n", problem);
		if (fed == 2)
			printf("      %s\n", fede.msg);
		else if (fed == 1)
			printf("      federated token: issuer %s  subject %s  "
			    "audience %s  expires %s\n", fedi.iss, fedi.sub,
			    fedi.aud, fedi.exp != 0 ? fmt_time(fedi.exp, t,
			    sizeof(t)) : "never");
		show_next(a, nkind[i], nfile[i], now);
		if (expiry_lines(a, now, a->expiry_warning, 1) > 0)
			printf("      %s\n", a->kind == &oa2_cred_cert ?
			    "the certificate expires soon: make a new one "
			    "(sasl-oauth2 certificate new), upload it to the "
			    "app registration, set it as next_certificate" :
			    "the client secret expires soon: create a new one "
			    "in the app registration and set it as "
			    "next_client_secret_file");
		if (o->expiring >= 0)
			expiring += expiry_lines(a, now, o->expiring * 86400L,
			    0);
	}
	for (i = 0; i < cfg->naccounts; i++) {
		free((char *)file[i]);
		free((char *)nfile[i]);
	}
	free(kind);
	free(file);
	free(nkind);
	free(nfile);
	if (o->expiring >= 0)
		printf("%d credential%s expire%s within %ld days\n", expiring,
		    expiring == 1 ? "" : "s", expiring == 1 ? "s" : "",
		    o->expiring);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		oa2_config_free(&cfg);
		return EX_IOERR;
	}
	r = cfg->nbroken > 0 ? EX_CONFIG : expiring > 0 ? EX_EXPIRING : EX_OK;
	oa2_config_free(&cfg);
	return r;
}

/* ---- token ----------------------------------------------------------- */

static const char *
from_name(int from)
{
	switch (from) {
	case OA2_FROM_MEMORY:	return "memory";
	case OA2_FROM_DISK:	return "cache";
	case OA2_FROM_SERVER:	return "endpoint";
	default:		return "unknown";
	}
}

static int
cmd_token(const struct opts *o, const struct oa2_log *lg, const char *user)
{
	struct oa2_config *cfg = NULL;
	struct oa2_account *acct;
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	json_t *root = NULL;
	char *text = NULL;
	int r, from = 0, ex;

	oa2_clearerr(&err);
	if ((r = load_config(o, lg, &cfg, &err)) != 0) {
		warnx_("%s", err.msg);
		return exit_code(r) == EX_OSERR ? EX_OSERR : EX_CONFIG;
	}
	if ((acct = oa2_config_match(cfg, user)) == NULL) {
		warnx_("no account in %s matches mailbox %s", cfg->path, user);
		oa2_config_free(&cfg);
		return EX_NOUSER;
	}
	if (acct->broken) {
		warnx_("%s", acct->load_err.msg);
		oa2_config_free(&cfg);
		return EX_CONFIG;
	}
	if ((acct = oa2_account_for(acct, user, &err)) == NULL ||
	    (r = oa2_token_get(acct, lg, &tok, &from, &err)) != 0) {
		if (acct == NULL)
			r = err.code;
		warnx_("%s", err.msg);
		oa2_config_free(&cfg);
		return exit_code(r);
	}
	if (o->json) {
		root = json_pack("{s:s, s:I, s:I, s:s, s:s, s:s}",
		    "access_token", tok.access_token,
		    "expires_at", (json_int_t)tok.expires_at,
		    "expires_in", (json_int_t)(tok.expires_at - time(NULL)),
		    "account", acct->parent != NULL ?
		    acct->parent->match : acct->match, "mailbox", user,
		    "from", from_name(from));
		if (root == NULL ||
		    (text = json_dumps(root, JSON_INDENT(2))) == NULL) {
			warnx_("out of memory");
			ex = EX_OSERR;
			goto out;
		}
		fputs(text, stdout);
		putchar('\n');
	} else
		printf("%s\n", tok.access_token);
	ex = EX_OK;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		warnx_("cannot write the token to standard output: %s",
		    strerror(errno));
		ex = EX_IOERR;
	}
 out:
	if (text != NULL)
		oa2_freezero(text, strlen(text));
	if (root != NULL) {
		json_t *v = json_object_get(root, "access_token");

		if (json_is_string(v))
			oa2_wipe((char *)json_string_value(v),
			    json_string_length(v));
		json_decref(root);
	}
	oa2_token_clear(&tok);
	oa2_config_free(&cfg);
	return ex;
}

/* ---- thumbprint ------------------------------------------------------ */

static int
cmd_thumbprint(const char *path)
{
	struct oa2_error err;
	char sha1[41], x5t[28], x5t256[44];
	int r;

	oa2_clearerr(&err);
	if ((r = oa2_cert_file_thumbprints(path, sha1, x5t, x5t256,
	    &err)) != 0) {
		warnx_("%s", err.msg);
		if (r == OA2_ERR_NOMEM)
			return EX_OSERR;
		return access(path, R_OK) == 0 ? EX_DATAERR : EX_NOINPUT;
	}
	printf("thumbprint  %s\n", sha1);
	printf("x5t         %s\n", x5t);
	printf("x5t#S256    %s\n", x5t256);
	return fflush(stdout) == 0 && !ferror(stdout) ? EX_OK : EX_IOERR;
}

/* ---- cache ----------------------------------------------------------- */

/*
 * "0123...ef.token": a file the token cache made (".json": the token
 * file of development builds before 0.1.0, which the plugin no longer
 * reads and `cache clear` removes). A "KEY.lock" is never removed: a
 * process may hold its flock, and a new lock file beside it would let
 * a second process ask the token endpoint meanwhile (it is empty).
 */
static int
is_cache_name(const char *name)
{
	size_t i;

	for (i = 0; i < 32; i++)
		if (!isxdigit((unsigned char)name[i]) ||
		    isupper((unsigned char)name[i]))
			return 0;
	return strcmp(name + 32, ".token") == 0 ||
	    strcmp(name + 32, ".json") == 0;
}

/*
 * Open the directory holding the cache files of cache_dir dir, never
 * through a symbolic link: dir itself when private, else its "uid-N"
 * opened relative to dir's descriptor (docs/cache.md, "The
 * directory"); each is checked on its descriptor against the rule the
 * plugin applies, so whatever replaces a name after oa2_cache_check is
 * either refused or not reached. Returns the descriptor (the caller
 * closes it) and the directory's name in *name (a new string); -1 with
 * *name NULL when there is nothing there (dir or uid-N missing); -1
 * with *name set and the sentence in err when it is not used.
 */
static int
cache_dir_open(const char *dir, char **name, struct oa2_error *err)
{
	struct stat st;
	char sub[32];
	int top, fd = -1;
	uid_t euid = geteuid();

	*name = NULL;
	/* O_PATH: a shared 1733 directory cannot be read, only searched */
	if ((top = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return -1;
		if ((*name = strdup(dir)) != NULL)
			oa2_seterr(err, OA2_ERR_CACHE, "cannot open token "
			    "cache directory %s: %s", dir, strerror(errno));
		return -1;
	}
	if (fstat(top, &st) == -1)
		goto fail_top;
	if (st.st_uid == euid && (st.st_mode & S_ISVTX) == 0) {
		/* private: the files lie in dir itself */
		if ((st.st_mode & 077) != 0) {
			errno = EPERM;
			goto fail_top;
		}
		fd = openat(top, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd == -1)
			goto fail_top;
		close(top);
		if ((*name = strdup(dir)) == NULL) {
			close(fd);
			oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			return -1;
		}
		return fd;
	}
	/* shared: only root or we may replace what lies in it */
	if ((st.st_uid != 0 && st.st_uid != euid) ||
	    ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0)) {
		errno = EPERM;
		goto fail_top;
	}
	snprintf(sub, sizeof(sub), "uid-%lu", (unsigned long)euid);
	fd = openat(top, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC);
	close(top);
	if (fd == -1 && errno == ENOENT)
		return -1;	/* made on first use: nothing in it */
	if (asprintf(name, "%s/%s", dir, sub) == -1) {
		*name = NULL;
		if (fd != -1)
			close(fd);
		oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		return -1;
	}
	if (fd == -1 || fstat(fd, &st) == -1) {
		oa2_seterr(err, OA2_ERR_CACHE, "cannot open token cache "
		    "directory %s: %s", *name, errno == ELOOP ||
		    errno == ENOTDIR ? "not a directory but a symbolic link "
		    "or a file" : strerror(errno));
		goto fail;
	}
	if (st.st_uid != euid || (st.st_mode & 077) != 0) {
		oa2_seterr(err, OA2_ERR_CACHE, "token cache directory %s is "
		    "not owned by uid %lu alone (owner uid %lu, mode %04o)",
		    *name, (unsigned long)euid, (unsigned long)st.st_uid,
		    (unsigned)(st.st_mode & 07777));
		goto fail;
	}
	return fd;
 fail_top:
	if ((*name = strdup(dir)) != NULL)
		oa2_seterr(err, OA2_ERR_CACHE, "token cache directory %s "
		    "changed since it was checked (%s)", dir, strerror(errno));
	close(top);
	return -1;
 fail:
	if (fd != -1)
		close(fd);
	return -1;
}

/*
 * `cache clear` without a mailbox: also the files of credentials no
 * longer in the config (an old secret, a removed account).
 */
static int
clear_stale(const struct oa2_config *cfg)
{
	struct oa2_error err;
	struct dirent *de;
	size_t i, j, n;
	char *d;
	DIR *dir;
	int fd, ex = EX_OK;

	for (i = 0; i < cfg->naccounts; i++) {
		const char *cd = cfg->accounts[i].cache_dir;

		if (cd == NULL)
			continue;
		for (j = 0; j < i; j++)
			if (cfg->accounts[j].cache_dir != NULL &&
			    strcmp(cfg->accounts[j].cache_dir, cd) == 0)
				break;
		if (j < i || oa2_cache_check(cd, &err) != 0)
			continue;
		/* this user's files: a shared cache_dir's uid-N */
		oa2_clearerr(&err);
		if ((fd = cache_dir_open(cd, &d, &err)) == -1) {
			if (d != NULL) {
				warnx_("%s: not clearing it", err.msg);
				ex = EX_NOPERM;
			}
			free(d);
			continue;
		}
		if ((dir = fdopendir(fd)) == NULL) {
			close(fd);
			free(d);
			continue;
		}
		n = 0;
		while ((de = readdir(dir)) != NULL)
			if (is_cache_name(de->d_name) &&
			    unlinkat(dirfd(dir), de->d_name, 0) == 0)
				n++;
		closedir(dir);
		if (n > 0)
			printf("%-24s  removed %zu stale file(s) from %s\n",
			    "(no account)", n, d);
		free(d);
	}
	return ex;
}

static int
cmd_cache(const struct opts *o, const struct oa2_log *lg, const char *verb,
    const char *user)
{
	struct oa2_config *cfg = NULL;
	struct oa2_account *only = NULL;
	struct oa2_error err;
	char t[64], dur[32], name[40], *path, *d;
	time_t exp, now = time(NULL);
	size_t i;
	int fd, r, ex = EX_OK;

	oa2_clearerr(&err);
	if ((r = load_config(o, lg, &cfg, &err)) != 0) {
		warnx_("%s", err.msg);
		return exit_code(r) == EX_OSERR ? EX_OSERR : EX_CONFIG;
	}
	if (user != NULL && (only = oa2_config_match(cfg, user)) == NULL) {
		warnx_("no account in %s matches mailbox %s", cfg->path, user);
		oa2_config_free(&cfg);
		return EX_NOUSER;
	}
	if (only != NULL && (only = oa2_account_for(only, user, &err)) ==
	    NULL) {
		warnx_("%s", err.msg);
		oa2_config_free(&cfg);
		return exit_code(err.code);
	}
	for (i = 0; i < cfg->naccounts; i++) {
		struct oa2_account *a = &cfg->accounts[i];

		if (only != NULL && a != only && a != only->parent)
			continue;
		if (only != NULL)
			a = only;	/* a mailbox's own, per mailbox */
		else if (!a->broken && a->kind != NULL &&
		    (a->kind->flags & OA2_CRED_PER_MAILBOX)) {
			if (strcmp(verb, "list") == 0)
				printf("%-24s  one token per mailbox: name "
				    "the mailbox (cache list MAILBOX)\n",
				    a->match);
			else
				printf("%-24s  one token per mailbox: their "
				    "files are removed below\n", a->match);
			continue;
		}
		if (a->broken) {
			printf("%-24s  not loaded: %s\n", a->match,
			    a->load_err.msg);
			continue;
		}
		/* a delegated account: who signed in, when, which scopes */
		if (strcmp(verb, "list") == 0 && oa2_refresh_of(a) != NULL) {
			char desc[512];

			a->kind->describe(a, desc, sizeof(desc));
			printf("%-24s  %s\n", a->match, desc);
		}
		if ((path = oa2_cache_file(a)) == NULL) {
			printf("%-24s  memory only (cache_dir = \"\")\n",
			    a->match);
			continue;
		}
		/* never through a directory the plugin would not use */
		if (oa2_cache_check(a->cache_dir, &err) != 0) {
			if (strcmp(verb, "list") == 0)
				printf("%-24s  memory only: %s\n", a->match,
				    err.msg);
			else {
				warnx_("%s: not clearing it", err.msg);
				ex = EX_NOPERM;
			}
			free(path);
			continue;
		}
		if (strcmp(verb, "list") == 0) {
			/* a missing uid-N holds nothing: not looked into */
			if ((fd = cache_dir_open(a->cache_dir, &d, &err)) ==
			    -1) {
				if (d == NULL)
					printf("%-24s  no cached token  %s\n",
					    a->match, path);
				else
					printf("%-24s  memory only: %s\n",
					    a->match, err.msg);
				free(d);
				free(path);
				continue;
			}
			close(fd);
			free(d);
			r = oa2_cache_peek(a, &exp, &err);
			if (r == 0 && exp != 0)
				printf("%-24s  expires %s (%s)  %s\n", a->match,
				    fmt_time(exp, t, sizeof(t)),
				    fmt_duration((long)(exp - now), dur,
				    sizeof(dur)), path);
			else if (r == OA2_ERR_DENIED)
				printf("%-24s  %s  %s\n", a->match, err.msg,
				    path);
			else if (r == 0 || access(path, F_OK) == -1)
				printf("%-24s  no cached token  %s\n",
				    a->match, path);
			else {
				printf("%-24s  unreadable: %s\n", a->match,
				    err.msg);
				ex = EX_NOPERM;
			}
			free(path);
			continue;
		}
		/*
		 * clear: the token file, relative to the directory as
		 * checked; never the lock file (see is_cache_name)
		 */
		free(path);
		oa2_clearerr(&err);
		if ((fd = cache_dir_open(a->cache_dir, &d, &err)) == -1) {
			if (d == NULL)
				printf("%-24s  no cached token\n", a->match);
			else {
				warnx_("%s: not clearing it", err.msg);
				ex = EX_NOPERM;
			}
			free(d);
			continue;
		}
		snprintf(name, sizeof(name), "%s.token", a->cache_key);
		if (unlinkat(fd, name, 0) == 0)
			printf("%-24s  removed %s/%s\n", a->match, d, name);
		else if (errno == ENOENT)
			printf("%-24s  no cached token\n", a->match);
		else {
			warnx_("cannot remove %s/%s: %s", d, name,
			    strerror(errno));
			ex = EX_NOPERM;
		}
		/* and the next credential's (rollover), if it has one */
		snprintf(name, sizeof(name), "%s.token", a->next_cache_key);
		if (oa2_account_has_next(a) && unlinkat(fd, name, 0) == 0)
			printf("%-24s  removed %s/%s (next credential)\n",
			    a->match, d, name);
		close(fd);
		free(d);
	}
	if (only == NULL && strcmp(verb, "clear") == 0 &&
	    (r = clear_stale(cfg)) != EX_OK)
		ex = r;
	oa2_config_free(&cfg);
	if (fflush(stdout) != 0 || ferror(stdout))
		return EX_IOERR;
	return ex;
}

/* ---- test: claims ---------------------------------------------------- */

struct claims {
	int	jwt;		/* the token is a decodable JWT */
	int	has_roles;
	int	role_imap;
	int	role_smtp;
	char	tid[80];
	char	appid[80];
};

static void
claim_str(json_t *root, const char *name, const char *alt, char *dst,
    size_t len)
{
	json_t *v = json_object_get(root, name);

	if (!json_is_string(v) && alt != NULL)
		v = json_object_get(root, alt);
	if (json_is_string(v))
		oa2_sanitize(dst, len, json_string_value(v),
		    json_string_length(v), len - 4);
	else
		snprintf(dst, len, "(none)");
}

/* Decode the token's payload (not its signature) and show the claims. */
static void
show_claims(const char *token, struct claims *c)
{
	const char *dot1, *dot2;
	unsigned char *payload = NULL;
	size_t plen = 0, i;
	json_t *root, *roles, *v;
	char aud[200], buf[120], t[64], d[32];
	time_t exp;

	memset(c, 0, sizeof(*c));
	if ((dot1 = strchr(token, '.')) == NULL ||
	    (dot2 = strchr(dot1 + 1, '.')) == NULL ||
	    oa2_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &payload,
	    &plen) != 0 ||
	    (root = json_loadb((char *)payload, plen, 0, NULL)) == NULL) {
		if (payload != NULL)
			oa2_freezero(payload, plen);
		printf("      the token is not a JWT: its claims cannot be "
		    "shown (this is not an error)\n");
		return;
	}
	oa2_freezero(payload, plen);
	if (!json_is_object(root)) {
		json_decref(root);
		printf("      the token is not a JWT: its claims cannot be "
		    "shown (this is not an error)\n");
		return;
	}
	c->jwt = 1;
	claim_str(root, "aud", NULL, aud, sizeof(aud));
	claim_str(root, "tid", NULL, c->tid, sizeof(c->tid));
	claim_str(root, "appid", "azp", c->appid, sizeof(c->appid));
	printf("      audience  %s\n", aud);
	printf("      tenant    %s\n", c->tid);
	printf("      app id    %s\n", c->appid);
	roles = json_object_get(root, "roles");
	printf("      roles    ");
	if (json_is_array(roles) && json_array_size(roles) > 0) {
		c->has_roles = 1;
		json_array_foreach(roles, i, v) {
			if (!json_is_string(v))
				continue;
			oa2_sanitize(buf, sizeof(buf), json_string_value(v),
			    json_string_length(v), 100);
			printf(" %s", buf);
			if (strcmp(json_string_value(v), ROLE_IMAP) == 0)
				c->role_imap = 1;
			if (strcmp(json_string_value(v), ROLE_SMTP) == 0)
				c->role_smtp = 1;
		}
		putchar('\n');
	} else
		printf(" (none)\n");
	v = json_object_get(root, "exp");
	if (json_is_integer(v)) {
		exp = (time_t)json_integer_value(v);
		printf("      expires   %s (%s)\n", fmt_time(exp, t, sizeof(t)),
		    fmt_duration((long)(exp - time(NULL)), d, sizeof(d)));
	} else
		printf("      expires   (no exp claim)\n");
	json_decref(root);
	fflush(stdout);
}

/* ---- test: what a token error means ---------------------------------- */

static long
aadsts_code(const char *msg)
{
	const char *p = strstr(msg, "AADSTS");

	if (p == NULL || !isdigit((unsigned char)p[6]))
		return 0;
	return strtol(p + 6, NULL, 10);
}

/*
 * What `test` read from a federated token file (iss, sub, aud), for
 * the fix of a federated refusal; iss[0] is '\0' when nothing was read.
 */
static struct oa2_jwt_info fed_seen;

/* The advice for the AADSTS codes of federated credentials; 1 if given. */
static int
advise_federated(const struct oa2_account *a, long code)
{
	char cause[700], fix[1200];

	if (a->kind != &oa2_cred_federated)
		return 0;
	snprintf(fix, sizeof(fix), "in the app registration %s, "
	    "Certificates & secrets, Federated credentials: add a federated "
	    "credential with issuer %s, subject %s and audience %s (compared "
	    "exactly); a new one takes a few minutes to apply",
	    a->client_id, fed_seen.iss[0] != '\0' ? fed_seen.iss :
	    "(the token's iss)", fed_seen.sub[0] != '\0' ? fed_seen.sub :
	    "(the token's sub)", "api://AzureADTokenExchange");
	switch (code) {
	case 70021:
	case 700211:
	case 700212:
	case 700213:
		snprintf(cause, sizeof(cause), "no federated credential of the "
		    "application matches the token's %s", code == 700211 ?
		    "issuer" : code == 700212 ? "audience (the token "
		    "projector must ask for api://AzureADTokenExchange)" :
		    code == 700213 ? "subject" : "issuer, subject and "
		    "audience");
		advise(cause, fix);
		return 1;
	case 70025:
		advise("the application has no federated credentials", fix);
		return 1;
	case 700024:
		advise("Entra finds the federated token expired or not yet "
		    "valid", "check the clock of this host and that the "
		    "token projector refreshes the file");
		return 1;
	case 700027:
		advise("Entra cannot verify the federated token's signature "
		    "with the keys its issuer publishes", "check that the "
		    "issuer's /.well-known/openid-configuration and keys are "
		    "reachable from the Internet and that the file holds "
		    "that issuer's token");
		return 1;
	case 700223:
	case 700238:
		advise("workload identity federation is restricted in this "
		    "tenant", "ask the tenant's administrator to allow this "
		    "issuer for workload identity federation");
		return 1;
	default:
		return 0;
	}
}

/*
 * A Google service account's refusal (the sentences of
 * cred-google-sa.c's explain): which step of the set-up is missing.
 */
static int
advise_google(const struct oa2_account *a, const struct oa2_error *err)
{
	char fix[512];

	if (a->kind == NULL || (a->kind->flags & OA2_CRED_PER_MAILBOX) == 0)
		return 0;
	if (strstr(err->msg, "domain-wide delegation") != NULL) {
		advise("the service account's client id has no domain-wide "
		    "delegation for the scope", NULL);
		snprintf(fix, sizeof(fix), "as a super administrator, Google "
		    "Admin console > Security > Access and data control > API "
		    "controls > Domain-wide delegation > Add new: the client "
		    "id named above, scope %s (delegation can take a few "
		    "minutes, rarely up to 24 hours, to apply)", a->scope);
		advise(NULL, fix);
	} else if (strstr(err->msg, "there is no mailbox") != NULL)
		advise("the mailbox is not a user of the Workspace domain (or "
		    "is suspended, or an alias of a group)", "log in with the "
		    "user's primary address; check it in the Admin console "
		    "> Directory > Users");
	else if (strstr(err->msg, "deleted or rotated") != NULL)
		advise("the key in service_account_file is no longer one of "
		    "the service account's keys", "Google Cloud console > IAM "
		    "& Admin > Service accounts > Keys > Add key > JSON; put "
		    "the file (mode 0600) where service_account_file points");
	else if (strstr(err->msg, "disabled or deleted") != NULL)
		advise("the service account is disabled or was deleted",
		    "enable it in the Google Cloud console (IAM & Admin > "
		    "Service accounts), or make a key of another one and "
		    "delegate its client id");
	else if (strstr(err->msg, "clock") != NULL)
		advise("the clock of this host is wrong", "synchronise the "
		    "clock (chrony, systemd-timesyncd or ntpd)");
	else
		return 0;
	return 1;
}

/* A managed identity's failure: which endpoint, and why none answered. */
static void
advise_msi(const struct oa2_error *err)
{
	switch (err->code) {
	case OA2_ERR_NETWORK:
		advise("no managed-identity endpoint answered: this host is "
		    "not on Azure, or the endpoint is not reachable", "on an "
		    "Azure VM, reach 169.254.169.254 directly (no proxy or "
		    "firewall in the way); on an Arc-enabled server, start "
		    "himds; elsewhere use a client secret or certificate");
		break;
	case OA2_ERR_DENIED:
		if (strstr(err->msg, "no managed identity") != NULL)
			advise(NULL, "in the Azure portal, the VM's Identity "
			    "page: turn on the system-assigned identity, or "
			    "assign the user-assigned one named in "
			    "managed_identity; then give it the Exchange role "
			    "(README, \"Azure managed identity\")");
		else
			advise("the managed-identity endpoint refused the "
			    "request", "check managed_identity and "
			    "managed_identity_endpoint");
		break;
	case OA2_ERR_TRANSIENT:
		advise("the managed-identity endpoint is busy or updating",
		    "try again in a minute");
		break;
	case OA2_ERR_CREDENTIAL:
		advise("the Arc agent's key file cannot be used", "run as "
		    "root or as a member of the himds group; the key file "
		    "must be a small regular file in /var/opt/azcmagent/tokens");
		break;
	case OA2_ERR_RESPONSE:
	case OA2_ERR_CONFIG:
		advise("the endpoint does not answer like this protocol's",
		    "check managed_identity_endpoint and "
		    "managed_identity_protocol (sasl-oauth2.conf(5))");
		break;
	default:
		break;
	}
}

static void
advise_token(const struct oa2_account *a, const struct oa2_error *err)
{
	long code = aadsts_code(err->msg);
	char cause[512], fix[512];

	if (a->kind == &oa2_cred_msi) {
		advise_msi(err);
		return;
	}
	if (advise_federated(a, code) || advise_google(a, err))
		return;
	switch (code) {
	case 7000215:
		advise("the client secret is wrong (often the secret's ID was "
		    "copied instead of its Value)", "in the app registration, "
		    "Certificates & secrets, create a new client secret and "
		    "put its Value in client_secret_file");
		return;
	case 7000222:
		advise("the client secret has expired", "create a new client "
		    "secret in the app registration (Certificates & secrets) "
		    "and put its Value in client_secret_file");
		return;
	case 700016:
		snprintf(cause, sizeof(cause), "no application %s in tenant "
		    "%s: the client_id is wrong, or the app is registered in "
		    "another tenant", a->client_id, a->tenant);
		advise(cause, "copy the Application (client) ID and the "
		    "Directory (tenant) ID from the app registration's "
		    "Overview page into client_id and tenant");
		return;
	case 90002:
		snprintf(cause, sizeof(cause), "tenant %s does not exist (at "
		    "%s)", a->tenant, a->authority);
		advise(cause, "set tenant to the Directory (tenant) ID or the "
		    "tenant's .onmicrosoft.com domain; for US Government or "
		    "China clouds set cloud = \"usgov\", \"usgov-dod\" or "
		    "\"china\"");
		return;
	case 700027:
	case 700030:
		advise("Azure does not know this certificate's thumbprint for "
		    "the application, or the signature does not verify",
		    "upload the certificate to the app registration "
		    "(Certificates & secrets) and compare its thumbprint with "
		    "`sasl-oauth2 thumbprint CERT`");
		return;
	case 700024:
		advise("the clock of this host is wrong: the assertion is not "
		    "within its valid time range", "synchronise the clock "
		    "(chrony, systemd-timesyncd or ntpd) and check the time "
		    "zone");
		return;
	case 7000218:
		advise("no credential was sent", "set client_secret_file or "
		    "certificate and private_key for the account");
		return;
	case 7000112:
		advise("the application is disabled", "enable the enterprise "
		    "application (Properties, Enabled for users to sign in)");
		return;
	case 70011:
	case 1002012:
	case 700023:
		advise("the scope is not valid for an app-only token",
		    "set scope = \"https://outlook.office365.com/.default\"");
		return;
	case 500011:
		advise("Exchange Online is not available in this tenant",
		    "check that the tenant has Exchange Online licences, and "
		    "the scope");
		return;
	case 9001023:
		advise("the tenant names a shared endpoint (common, "
		    "organizations)", "set tenant to the Directory (tenant) "
		    "ID");
		return;
	case 90024:
	case 90055:
		advise("Entra is busy or throttling this tenant",
		    "try again in a few minutes");
		return;
	default:
		break;
	}
	switch (err->code) {
	case OA2_ERR_NETWORK:
		snprintf(fix, sizeof(fix), "check that this host can reach "
		    "%s (DNS, firewall, proxy) and that ca_file holds its CA",
		    a->token_url);
		advise("the token endpoint cannot be reached", fix);
		break;
	case OA2_ERR_TRANSIENT:
		advise("the token endpoint is temporarily unavailable",
		    "try again later");
		break;
	case OA2_ERR_RESPONSE:
		advise("the authority does not answer like an Entra token "
		    "endpoint", "check authority and tenant");
		break;
	case OA2_ERR_CREDENTIAL:
		advise("the credential cannot be used",
		    "see the sentence above; check the files and run "
		    "`sasl-oauth2 check-config`");
		break;
	case OA2_ERR_DENIED:
		advise("Entra refused the credentials (see the AADSTS code "
		    "above)", "check client_id, tenant and the credential "
		    "in the app registration");
		break;
	default:
		break;
	}
}

/* ---- test: a real login ---------------------------------------------- */

struct transcript {
	char	last[256];	/* the server's last line, sanitised */
	char	challenge[160];	/* a decoded error challenge */
	int	offers_xoauth2;
	int	smtp_auth_disabled;	/* Exchange's 5.7.139 */
};

static void
remember_line(struct transcript *tr, const char *s, size_t len)
{
	char line[256];
	unsigned char *dec = NULL;
	char *b64;
	size_t declen, i, off;

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	oa2_sanitize(line, sizeof(line), s, len, 200);
	if (strstr(line, "XOAUTH2") != NULL)
		tr->offers_xoauth2 = 1;
	if (strstr(line, "5.7.139") != NULL ||
	    strstr(line, "SmtpClientAuthentication") != NULL)
		tr->smtp_auth_disabled = 1;
	/* "+ eyJ..." (IMAP) or "334 eyJ..." (SMTP): an error challenge */
	off = strncmp(line, "+ ", 2) == 0 ? 2 :
	    strncmp(line, "334 ", 4) == 0 ? 4 : 0;
	if (off > 0 && strncmp(line + off, "eyJ", 3) == 0 &&
	    (b64 = strdup(line + off)) != NULL) {
		for (i = 0; b64[i] != '\0'; i++)
			if (b64[i] == '+')
				b64[i] = '-';
			else if (b64[i] == '/')
				b64[i] = '_';
		if (oa2_b64url_decode(b64, strlen(b64), &dec, &declen) == 0) {
			oa2_challenge_describe((char *)dec, declen,
			    tr->challenge, sizeof(tr->challenge));
			free(dec);
		}
		free(b64);
		*tr->last = '\0';	/* only what follows the challenge */
		return;
	}
	snprintf(tr->last, sizeof(tr->last), "%s", line);
}

/*
 * libcurl's protocol trace: keep only what the server sends. What we
 * send (HEADER_OUT) holds the token and is never looked at.
 */
static int
debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *ctx)
{
	struct transcript *tr = ctx;
	size_t i, start = 0;

	if (type != CURLINFO_HEADER_IN)
		return 0;
	for (i = 0; i <= size; i++)
		if (i == size || data[i] == '\n') {
			if (i > start)
				remember_line(tr, data + start, i - start);
			start = i + 1;
		}
	return 0;
}

struct endpoint {
	const char	*proto;		/* "IMAP" or "SMTP" */
	char		host[256];
	long		port;
	int		implicit_tls;
	char		url[320];
};

/* "[scheme://]HOST[:PORT]" -> an endpoint. */
static int
parse_endpoint(const char *proto, const char *arg, struct endpoint *ep)
{
	const char *s = arg, *colon, *rb;
	char *end;
	int scheme = -1;	/* -1 none, 0 STARTTLS, 1 implicit TLS */
	size_t hlen;

	memset(ep, 0, sizeof(*ep));
	ep->proto = proto;
	if (strcmp(proto, "IMAP") == 0) {
		if (strncasecmp(s, "imaps://", 8) == 0)
			scheme = 1, s += 8;
		else if (strncasecmp(s, "imap://", 7) == 0)
			scheme = 0, s += 7;
	} else {
		if (strncasecmp(s, "smtps://", 8) == 0)
			scheme = 1, s += 8;
		else if (strncasecmp(s, "smtp://", 7) == 0)
			scheme = 0, s += 7;
	}
	if (strstr(s, "://") != NULL)
		return -1;
	if (*s == '[') {	/* [IPv6]:port */
		if ((rb = strchr(s, ']')) == NULL)
			return -1;
		hlen = (size_t)(rb - s + 1);
		colon = rb[1] == ':' ? rb + 1 : NULL;
		if (rb[1] != '\0' && colon == NULL)
			return -1;
	} else {
		colon = strrchr(s, ':');
		hlen = colon != NULL ? (size_t)(colon - s) : strlen(s);
	}
	if (hlen == 0 || hlen >= sizeof(ep->host) ||
	    strcspn(s, "/ \t\r\n@?#") < hlen)
		return -1;
	memcpy(ep->host, s, hlen);
	if (colon != NULL) {
		errno = 0;
		ep->port = strtol(colon + 1, &end, 10);
		if (errno != 0 || end == colon + 1 || *end != '\0' ||
		    ep->port < 1 || ep->port > 65535)
			return -1;
	}
	if (strcmp(proto, "IMAP") == 0) {
		if (scheme == -1)
			scheme = ep->port != 143;
		if (ep->port == 0)
			ep->port = scheme ? 993 : 143;
	} else {
		if (scheme == -1)
			scheme = ep->port == 465;
		if (ep->port == 0)
			ep->port = scheme ? 465 : 587;
	}
	ep->implicit_tls = scheme;
	snprintf(ep->url, sizeof(ep->url), "%s%s://%s:%ld/",
	    strcmp(proto, "IMAP") == 0 ? "imap" : "smtp",
	    scheme ? "s" : "", ep->host, ep->port);
	return 0;
}

enum { PROBE_UNKNOWN, PROBE_TLS, PROBE_PLAIN };

/*
 * What does HOST:PORT speak? Connect, send a TLS ClientHello at once and
 * read the first bytes back: a TLS server answers with a TLS record (a
 * handshake or an alert), a plaintext mail server with the greeting it
 * sends unasked ("* OK", "220 ", "+OK"). Nothing secret is sent. Each
 * wait (connect, first bytes) is bounded by PROBE_TIMEOUT. For
 * PROBE_PLAIN, greeting (len bytes) gets the first line, sanitised.
 */
static int
probe_port(const struct endpoint *ep, char *greeting, size_t len)
{
	/*
	 * A TLS 1.2 ClientHello that servers answer with a ServerHello (or
	 * an alert): a server that finds no shared cipher or group may
	 * close without a word (Dovecot does).
	 */
	static const unsigned char hello[] = {
		0x16, 0x03, 0x01, 0x00, 0x61,	/* handshake record, 97 bytes */
		0x01, 0x00, 0x00, 0x5d,		/* ClientHello, 93 bytes */
		0x03, 0x03,			/* TLS 1.2 */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,	/* random */
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0x00,				/* no session id */
		0x00, 0x10,			/* 8 cipher suites: */
		0xc0, 0x2f, 0xc0, 0x30,		/* ECDHE-RSA-AES-GCM */
		0xc0, 0x2b, 0xc0, 0x2c,		/* ECDHE-ECDSA-AES-GCM */
		0xcc, 0xa8, 0xcc, 0xa9,		/* ECDHE-*-CHACHA20-POLY1305 */
		0x00, 0x9e, 0x00, 0x9f,		/* DHE-RSA-AES-GCM */
		0x01, 0x00,			/* no compression */
		0x00, 0x24,			/* extensions, 36 bytes: */
		0x00, 0x0a, 0x00, 0x08, 0x00, 0x06,	/* supported groups */
		0x00, 0x1d, 0x00, 0x17, 0x00, 0x18,	/* X25519, P-256, P-384 */
		0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,	/* EC points: uncompressed */
		0x00, 0x0d, 0x00, 0x0e, 0x00, 0x0c,	/* signature algorithms */
		0x08, 0x04, 0x08, 0x05, 0x04, 0x01,	/* RSA-PSS, RSA-PKCS1, */
		0x05, 0x01, 0x04, 0x03, 0x05, 0x03	/* ECDSA; SHA-256/384 */
	};
	char url[320], buf[256];
	struct timespec t0, now;
	struct pollfd pfd;
	curl_socket_t fd = CURL_SOCKET_BAD;
	size_t n = 0, got, sent, line;
	long left;
	CURLcode rc;
	CURL *h;
	int r = PROBE_UNKNOWN;

	*greeting = '\0';
	/* http:// with CONNECT_ONLY: a bare TCP connection, nothing sent */
	snprintf(url, sizeof(url), "http://%s:%ld/", ep->host, ep->port);
	if ((h = curl_easy_init()) == NULL)
		return PROBE_UNKNOWN;
	if (curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, PROBE_TIMEOUT) !=
	    CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_perform(h) != CURLE_OK ||
	    curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD ||
	    curl_easy_send(h, hello, sizeof(hello), &sent) != CURLE_OK ||
	    sent != sizeof(hello))
		goto out;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* up to the end of the first line, or 5 bytes of a TLS record */
	while (n < sizeof(buf) - 1 && memchr(buf, '\n', n) == NULL &&
	    !(n >= 5 && (unsigned char)buf[0] < 0x20)) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = PROBE_TIMEOUT * 1000 - ((long)(now.tv_sec - t0.tv_sec) *
		    1000 + (now.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0)
			break;
		pfd.fd = fd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
			break;
		rc = curl_easy_recv(h, buf + n, sizeof(buf) - 1 - n, &got);
		if (rc == CURLE_AGAIN)
			continue;
		if (rc != CURLE_OK || got == 0)
			break;	/* closed or failed */
		n += got;
	}
	if (n >= 2 && (buf[0] == 0x16 || buf[0] == 0x15) && buf[1] == 0x03)
		r = PROBE_TLS;
	else if (n > 0 && isprint((unsigned char)buf[0])) {
		for (line = 0; line < n && buf[line] != '\r' &&
		    buf[line] != '\n'; line++)
			;
		oa2_sanitize(greeting, len, buf, line, 100);
		r = PROBE_PLAIN;
	}
out:
	curl_easy_cleanup(h);
	return r;
}

/* The protocol a plaintext greeting belongs to, or NULL. */
static const char *
greeting_proto(const char *g)
{
	if (strncmp(g, "* ", 2) == 0)
		return "IMAP";
	if (strncmp(g, "+OK", 3) == 0 || strncmp(g, "-ERR", 4) == 0)
		return "POP3";
	if (isdigit((unsigned char)g[0]) && isdigit((unsigned char)g[1]) &&
	    isdigit((unsigned char)g[2]) && (g[3] == ' ' || g[3] == '-' ||
	    g[3] == '\0'))
		return "SMTP";
	return NULL;
}

/*
 * A connection that failed before the login: look at what the port
 * speaks and, when it is not what was asked for (plaintext on an
 * implicit-TLS endpoint, TLS at once on a STARTTLS endpoint, another
 * protocol), say so in one sentence. Returns 1 when it did.
 */
static int
advise_port(const struct endpoint *ep, const struct transcript *tr,
    CURLcode rc)
{
	int smtp = strcmp(ep->proto, "SMTP") == 0;
	const char *other, *opt = smtp ? "--smtp" : "--imap";
	char g[128], cause[512], fix[512];

	switch (probe_port(ep, g, sizeof(g))) {
	case PROBE_PLAIN:
		other = greeting_proto(g);
		if (other != NULL && strcmp(other, ep->proto) != 0) {
			snprintf(cause, sizeof(cause), "%s:%ld is not an %s "
			    "server: it greets with \"%s\", which is %s",
			    ep->host, ep->port, ep->proto, g, other);
			snprintf(fix, sizeof(fix), "point %s at the %s port "
			    "(%s)", opt, ep->proto, smtp ? "587 for STARTTLS, "
			    "465 for implicit TLS" : "993 for implicit TLS, "
			    "143 for STARTTLS");
			break;
		}
		if (!ep->implicit_tls)
			return 0;
		snprintf(cause, sizeof(cause), "%s:%ld speaks plaintext%s%s "
		    "(it greets with \"%s\"), not implicit TLS", ep->host,
		    ep->port, other != NULL ? " " : "", other != NULL ?
		    other : "", g);
		snprintf(fix, sizeof(fix), "for STARTTLS on this port use "
		    "%s %s://%s:%ld; for implicit TLS use port %d", opt,
		    smtp ? "smtp" : "imap", ep->host, ep->port,
		    smtp ? 465 : 993);
		break;
	case PROBE_TLS:
		if (ep->implicit_tls)
			return 0;
		snprintf(cause, sizeof(cause), "%s:%ld speaks TLS at once "
		    "(implicit TLS): it sends no %s greeting before the TLS "
		    "handshake, so STARTTLS cannot work there", ep->host,
		    ep->port, ep->proto);
		snprintf(fix, sizeof(fix), "use %s %s://%s:%ld, or port %d "
		    "for STARTTLS", opt, smtp ? "smtps" : "imaps", ep->host,
		    ep->port, smtp ? 587 : 143);
		break;
	default:
		if (rc != CURLE_OPERATION_TIMEDOUT || *tr->last != '\0')
			return 0;
		snprintf(cause, sizeof(cause), "%s:%ld accepts connections "
		    "but sends nothing: neither a greeting nor a TLS "
		    "handshake", ep->host, ep->port);
		snprintf(fix, sizeof(fix), "check the port (%s)", smtp ?
		    "SMTP: 587 STARTTLS, 465 implicit TLS" :
		    "IMAP: 993 implicit TLS, 143 STARTTLS");
		break;
	}
	advise(cause, fix);
	return 1;
}

static void
advise_login(const struct endpoint *ep, CURLcode rc,
    const struct transcript *tr, const struct claims *c)
{
	int smtp = strcmp(ep->proto, "SMTP") == 0;
	const char *role = smtp ? ROLE_SMTP : ROLE_IMAP;
	char cause[512], fix[512];
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(cause, sizeof(cause), "%s:%ld cannot be reached",
		    ep->host, ep->port);
		advise(cause, "check the host name and port, DNS and the "
		    "firewall");
		return;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
		advise("the server's TLS certificate cannot be verified, or "
		    "TLS fails", "check the host name; for a private CA pass "
		    "--ca-file FILE (verification is never switched off)");
		return;
	case CURLE_USE_SSL_FAILED:
		advise("the server does not offer STARTTLS on this port",
		    smtp ? "use port 587 (STARTTLS) or smtps://HOST:465" :
		    "use port 993 (IMAPS) or a server that offers STARTTLS");
		return;
	case CURLE_LOGIN_DENIED:
		break;
	default:
		advise("the connection failed before or during the login",
		    "run again with -vv for libcurl's details");
		return;
	}
	if (!tr->offers_xoauth2) {
		advise("the server does not offer AUTH=XOAUTH2 (after TLS)",
		    "point --imap/--smtp at a server with OAuth 2.0 login");
		return;
	}
	if (smtp && tr->smtp_auth_disabled) {
		advise("SMTP AUTH (client submission) is disabled for the "
		    "tenant or the mailbox", "in Exchange Online PowerShell "
		    "run Set-TransportConfig -SmtpClientAuthenticationDisabled "
		    "$false, or Set-CASMailbox -Identity MAILBOX "
		    "-SmtpClientAuthenticationDisabled $false");
		return;
	}
	if (c->jwt && !(smtp ? c->role_smtp : c->role_imap)) {
		snprintf(cause, sizeof(cause), "the token lacks the role %s",
		    role);
		snprintf(fix, sizeof(fix), "in the app registration add the "
		    "application permission %s (Office 365 Exchange Online, "
		    "under APIs my organization uses) and grant admin consent",
		    role);
		advise(cause, fix);
		return;
	}
	snprintf(fix, sizeof(fix), "in Exchange Online PowerShell run "
	    "New-ServicePrincipal -AppId %s -ObjectId <enterprise app object "
	    "id>, then Add-MailboxPermission -Identity MAILBOX -User "
	    "<service principal id> -AccessRights FullAccess",
	    *c->appid != '\0' && strcmp(c->appid, "(none)") != 0 ?
	    c->appid : "<client_id>");
	advise("the token is valid but the server refused the login: the "
	    "service principal is probably not registered in Exchange Online "
	    "or has no permission on this mailbox", fix);
}

/* Log in with XOAUTH2; returns a sysexits code (EX_OK on success). */
static int
try_login(const struct endpoint *ep, const char *user, const char *token,
    const struct opts *o, const struct claims *c)
{
	struct transcript tr;
	char errbuf[CURL_ERROR_SIZE] = "", what[400];
	long connected = 0;
	CURLcode rc;
	CURL *h;

	memset(&tr, 0, sizeof(tr));
	snprintf(what, sizeof(what), "%s login as %s at %s:%ld (%s)",
	    ep->proto, user, ep->host, ep->port, ep->implicit_tls ?
	    "implicit TLS" : "STARTTLS");
	if ((h = curl_easy_init()) == NULL) {
		step("FAIL", "%s: cannot start libcurl", what);
		return EX_SOFTWARE;
	}
	if (curl_easy_setopt(h, CURLOPT_URL, ep->url) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR,
	    "imap,imaps,smtp,smtps") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL) !=
	    CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    (o->ca_file != NULL &&
	    curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file) != CURLE_OK) ||
	    curl_easy_setopt(h, CURLOPT_USERNAME, user) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_XOAUTH2_BEARER, token) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_LOGIN_OPTIONS, "AUTH=XOAUTH2") !=
	    CURLE_OK ||
	    /*
	     * No SASL initial response for SMTP: a 1.5-3 KB token in the
	     * AUTH line is refused by some servers (Dovecot: "Line too
	     * long"); after the 334 it may be 8 KB. IMAP uses SASL-IR when
	     * the server announces it (lines up to 8 KB there).
	     */
	    curl_easy_setopt(h, CURLOPT_SASL_IR, 0L) != CURLE_OK ||
	    /* the protocol connect phase includes the login */
	    curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT, LOGIN_TIMEOUT) != CURLE_OK ||
	    /* a silent server (an implicit-TLS port) is not waited for long */
	    curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT,
	    GREETING_TIMEOUT) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_DEBUGDATA, &tr) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L) != CURLE_OK) {
		curl_easy_cleanup(h);
		step("FAIL", "%s: this libcurl lacks IMAP/SMTP, TLS or "
		    "XOAUTH2 support", what);
		return EX_SOFTWARE;
	}
	rc = curl_easy_perform(h);
	/* our local port: 0 when no TCP connection was made */
	if (curl_easy_getinfo(h, CURLINFO_LOCAL_PORT, &connected) !=
	    CURLE_OK)
		connected = 0;
	curl_easy_cleanup(h);
	if (rc == CURLE_OK) {
		step("OK", "%s", what);
		return EX_OK;
	}
	step("FAIL", "%s: %s", what, *errbuf != '\0' ? errbuf :
	    curl_easy_strerror(rc));
	if (*tr.challenge != '\0')
		printf("      server's error challenge: %s\n", tr.challenge);
	if (*tr.last != '\0')
		printf("      server: %s\n", tr.last);
	/* Before the login: does the port speak what was asked for? */
	if (connected > 0 && (rc == CURLE_SSL_CONNECT_ERROR ||
	    rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_WEIRD_SERVER_REPLY ||
	    rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR) &&
	    advise_port(ep, &tr, rc))
		return EX_UNAVAILABLE;
	advise_login(ep, rc, &tr, c);
	if (rc == CURLE_LOGIN_DENIED)
		return EX_NOPERM;
	return EX_UNAVAILABLE;
}

/* ---- test ------------------------------------------------------------ */

/*
 * Rollover: the token came with the credential now in use; ask once
 * more with the other one, so that the admin knows before the day it
 * is needed whether it works (test only: the plugin never sends the
 * next credential while the current one is accepted).
 */
static void
test_other(struct oa2_account *a, const struct oa2_log *lg)
{
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	long code;
	int r;

	step("OK", "credential used: %s", oa2_account_cred_name(a, 0));
	oa2_account_rotate(a);
	r = oa2_token_fetch_cred(a, lg, time(NULL), &tok, &code, &err);
	oa2_account_rotate(a);
	oa2_token_clear(&tok);
	if (r == 0)
		step("OK", "%s works too (the token endpoint accepted it)",
		    oa2_account_cred_name(a, 1));
	else
		step("WARN", "%s does not work: %s",
		    oa2_account_cred_name(a, 1), err.msg);
}

static int
cmd_test(const struct opts *o, const struct oa2_log *lg, const char *user)
{
	struct oa2_config *cfg = NULL;
	struct oa2_account *a;
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	struct endpoint eps[2];
	struct claims c;
	char t[64], d[32], fix[512];
	int r, from = OA2_FROM_SERVER, ex = EX_OK, nep = 0, i, x;
	const char *path = config_path(o);

	/*
	 * Validate the endpoints before anything is asked from anyone;
	 * "" (or none) is the account's host, filled in once it is known.
	 */
	memset(eps, 0, sizeof(eps));
	if (o->imap != NULL && *o->imap != '\0' && parse_endpoint("IMAP",
	    o->imap, &eps[nep]) != 0)
		return usage("--imap takes [imaps://|imap://]HOST[:PORT], not "
		    "\"%s\"", o->imap);
	if (o->imap != NULL)
		eps[nep++].proto = "IMAP";
	if (o->smtp != NULL && *o->smtp != '\0' && parse_endpoint("SMTP",
	    o->smtp, &eps[nep]) != 0)
		return usage("--smtp takes [smtp://|smtps://]HOST[:PORT], not "
		    "\"%s\"", o->smtp);
	if (o->smtp != NULL)
		eps[nep++].proto = "SMTP";
	if (nep == 0)
		eps[nep++].proto = "IMAP";
	if (o->no_login)
		nep = 0;

	/* 1. config and account match */
	oa2_clearerr(&err);
	if ((r = oa2_config_load(path, lg, &cfg, &err)) != 0) {
		if (r == OA2_ERR_CREDENTIAL) {
			step("FAIL", "credential: %s", err.msg);
			advise("a secret, key or certificate file is missing, "
			    "unreadable, not private (mode 0600) or does not "
			    "match", "fix the file named above; `sasl-oauth2 "
			    "check-config` checks every account");
		} else {
			step("FAIL", "config: %s", err.msg);
			advise(NULL, strstr(err.msg, ": run ch") != NULL ?
			    "run the command named above" :
			    "correct the file at the line named above");
		}
		return r == OA2_ERR_NOMEM ? EX_OSERR : EX_CONFIG;
	}
	if ((a = oa2_config_match(cfg, user)) == NULL) {
		step("FAIL", "config %s: no account matches mailbox %s",
		    cfg->path, user);
		snprintf(fix, sizeof(fix), "add an account with match = "
		    "\"%s\", \"*@%s\" or \"*\"", user, strchr(user, '@') !=
		    NULL ? strchr(user, '@') + 1 : "domain");
		advise(NULL, fix);
		oa2_config_free(&cfg);
		return EX_NOUSER;
	}
	if (a->broken) {
		step("FAIL", "account \"%s\" (line %d) matches %s but cannot "
		    "be used: %s", a->match, a->line, user, a->load_err.msg);
		advise(a->load_err.code == OA2_ERR_CREDENTIAL ? "a secret, "
		    "key or certificate file is missing, unreadable, not "
		    "private (mode 0600) or does not match" : NULL,
		    "fix what the sentence names; the other accounts work; "
		    "`sasl-oauth2 check-config` lists every account");
		oa2_config_free(&cfg);
		return EX_CONFIG;
	}
	step("OK", "config %s: account \"%s\" (line %d) matches %s",
	    cfg->path, a->match, a->line, user);
	/* a token bound to the mailbox: the mailbox's own account */
	if ((a = oa2_account_for(a, user, &err)) == NULL) {
		step("FAIL", "%s", err.msg);
		oa2_config_free(&cfg);
		return exit_code(err.code);
	}
	for (i = 0; i < nep; i++)
		if (eps[i].host[0] == '\0')
			parse_endpoint(eps[i].proto, strcmp(eps[i].proto,
			    "IMAP") == 0 ? a->imap_host : a->smtp_host,
			    &eps[i]);

	/* 2. the credential (loaded and checked with the config) */
	if (a->kind == &oa2_cred_federated) {
		char *ft = NULL;
		size_t ftlen = 0;

		a->kind->describe(a, fix, sizeof(fix));
		step("OK", "credential: %s for client %s, tenant %s", fix,
		    a->client_id, a->tenant);
		r = oa2_federated_read(oa2_federated_path(a), time(NULL), &ft,
		    &ftlen, &fed_seen, &err);
		if (ft != NULL)
			oa2_freezero(ft, ftlen + 1);
		if (r != 0) {
			step("FAIL", "federated token: %s", err.msg);
			advise(fed_seen.iss[0] != '\0' ? "the token projector "
			    "has stopped refreshing the file" : NULL,
			    "check the projector (for Azure Workload Identity: "
			    "the pod's service account and its projected "
			    "volume) and the file's path and mode (0600)");
			oa2_config_free(&cfg);
			return exit_code(r);
		}
		step("OK", "federated token: issuer %s, subject %s, audience "
		    "%s, expires %s (%s)", fed_seen.iss, fed_seen.sub,
		    fed_seen.aud, fed_seen.exp != 0 ? fmt_time(fed_seen.exp, t,
		    sizeof(t)) : "never", fed_seen.exp != 0 ? fmt_duration(
		    (long)(fed_seen.exp - time(NULL)), d, sizeof(d)) :
		    "no exp claim");
		if (strncmp(fed_seen.aud, "api://AzureADTokenExchange",
		    26) != 0)
			step("WARN", "federated token: audience %s is not "
			    "api://AzureADTokenExchange, the audience Entra "
			    "expects", fed_seen.aud);
	} else if (a->kind == &oa2_cred_secret)
		step("OK", "credential: client secret for client %s, tenant %s",
		    a->client_id, a->tenant);
	else if (a->kind != &oa2_cred_cert) {
		a->kind->describe(a, fix, sizeof(fix));
		step("OK", "credential: %s", fix);
	} else
		step("OK", "credential: certificate %s, thumbprint %s, "
		    "expires %s (%s), %s assertion", oa2_cert_subject(a->cert),
		    oa2_cert_sha1_hex(a->cert),
		    fmt_time(oa2_cert_not_after(a->cert), t, sizeof(t)),
		    fmt_duration((long)(oa2_cert_not_after(a->cert) -
		    time(NULL)), d, sizeof(d)),
		    a->assertion_alg == OA2_ALG_RS256 ? "RS256" : "PS256");

	if (a->next_err.code != 0)
		step("WARN", "%s is unusable (%s is used): %s",
		    oa2_account_cred_name(a, 1), oa2_account_cred_name(a, 0),
		    a->next_err.msg);
	else if (oa2_account_has_next(a) && a->kind == &oa2_cred_secret)
		step("OK", "next credential: a second client secret, tried "
		    "when the current one is refused");
	else if (oa2_account_has_next(a))
		step("OK", "next credential: certificate %s, thumbprint %s, "
		    "expires %s (%s), tried when the current one is refused",
		    oa2_cert_subject(a->next_cert),
		    oa2_cert_sha1_hex(a->next_cert),
		    fmt_time(oa2_cert_not_after(a->next_cert), t, sizeof(t)),
		    fmt_duration((long)(oa2_cert_not_after(a->next_cert) -
		    time(NULL)), d, sizeof(d)));
	for (i = 0; i < 2; i++) {
		time_t exp = oa2_account_expires(a, i);

		if (exp != 0 && exp - time(NULL) < a->expiry_warning)
			step("WARN", "expiry: %s of account %s %s in %ld "
			    "days (expiry_warning %ld)",
			    oa2_account_cred_name(a, i), a->match,
			    exp <= time(NULL) ? "expired" : "expires",
			    (long)((exp - time(NULL)) / 86400),
			    a->expiry_warning / 86400);
	}
	a->expiry_warned = time(NULL);	/* said above, not again in the log */

	/* 3. the token, and what it says */
	if (o->no_cache)
		r = oa2_token_fetch(a, lg, time(NULL), &tok, &err);
	else
		r = oa2_token_get(a, lg, &tok, &from, &err);
	if (r != 0) {
		step("FAIL", "token from %s: %s", a->token_url, err.msg);
		advise_token(a, &err);
		oa2_config_free(&cfg);
		return exit_code(r);
	}
	if (oa2_account_has_next(a))
		test_other(a, lg);
	step("OK", "token: %s, %zu bytes, expires %s (%s)",
	    from == OA2_FROM_SERVER ? "new from the token endpoint" :
	    "from the cache", strlen(tok.access_token),
	    fmt_time(tok.expires_at, t, sizeof(t)),
	    fmt_duration((long)(tok.expires_at - time(NULL)), d, sizeof(d)));
	show_claims(tok.access_token, &c);
	if (c.jwt && (a->kind->flags & OA2_CRED_CLIENT)) {
		for (i = 0; i < nep; i++) {
			int smtp = strcmp(eps[i].proto, "SMTP") == 0;
			const char *role = smtp ? ROLE_SMTP : ROLE_IMAP;

			if (smtp ? c.role_smtp : c.role_imap)
				continue;
			step("WARN", "roles: the token lacks %s, which %s "
			    "needs", role, eps[i].proto);
			if (a->kind == &oa2_cred_msi)
				snprintf(fix, sizeof(fix), "assign the managed "
				    "identity the app role %s of Office 365 "
				    "Exchange Online through Microsoft Graph "
				    "(README, \"Azure managed identity\")",
				    role);
			else
				snprintf(fix, sizeof(fix), "in the app "
				    "registration, API permissions, add the "
				    "application permission %s of Office 365 "
				    "Exchange Online and grant admin consent",
				    role);
			advise(c.has_roles ? NULL : "no application permission "
			    "has been granted (no roles claim)", fix);
		}
		if (a->client_id != NULL &&
		    strcasecmp(c.appid, a->client_id) != 0 &&
		    strcmp(c.appid, "(none)") != 0)
			step("WARN", "the token's app id %s is not client_id "
			    "%s", c.appid, a->client_id);
	}

	/* 4. real logins */
	for (i = 0; i < nep; i++) {
		x = try_login(&eps[i], user, tok.access_token, o, &c);
		if (x != EX_OK && ex == EX_OK)
			ex = x;
	}
	/* As the plugin does: a refused token is not offered again. */
	if (ex == EX_NOPERM)
		oa2_token_forget(a, lg, tok.access_token);
	if (ex == EX_NOPERM && (a->kind->flags & OA2_CRED_PER_MAILBOX))
		advise("Google gave a token for the mailbox but the server "
		    "refused it: IMAP may be off for the user", "turn IMAP on "
		    "for the user (Gmail settings > Forwarding and POP/IMAP, "
		    "or Admin console > Apps > Google Workspace > Gmail > End "
		    "User Access), or set scope = \"https://www.googleapis.com/"
		    "auth/gmail.imap_admin\"");
	oa2_token_clear(&tok);
	oa2_config_free(&cfg);
	if (fflush(stdout) != 0 || ferror(stdout))
		return EX_IOERR;
	return ex;
}

/* ---- main ------------------------------------------------------------ */

enum {
	OPT_JSON = 256, OPT_IMAP, OPT_SMTP, OPT_CA_FILE, OPT_NO_LOGIN,
	OPT_NO_CACHE, OPT_MECH, OPT_EXPIRING
};

static void
free_argv(char **av)
{
	size_t i;

	if (av == NULL)
		return;
	for (i = 0; av[i] != NULL; i++)
		free(av[i]);
	free(av);
}

/*
 * "--imap HOST" as well as "--imap=HOST" and a bare "--imap": getopt's
 * optional arguments need the "=", so glue a following word that is
 * not an option and not a mailbox (no '@') to the option. A new
 * vector of new strings: free with free_argv.
 */
static char **
glue_optional(int argc, char **argv)
{
	char **nv;
	int i, j, r;

	if ((nv = calloc((size_t)argc + 1, sizeof(*nv))) == NULL)
		return NULL;
	for (i = 0, j = 0; i < argc; i++, j++) {
		if ((strcmp(argv[i], "--imap") == 0 ||
		    strcmp(argv[i], "--smtp") == 0) && i + 1 < argc &&
		    argv[i + 1][0] != '-' && strchr(argv[i + 1], '@') ==
		    NULL) {
			r = asprintf(&nv[j], "%s=%s", argv[i], argv[i + 1]);
			i++;
		} else
			r = (nv[j] = strdup(argv[i])) == NULL ? -1 : 0;
		if (r == -1) {
			nv[j] = NULL;
			free_argv(nv);
			return NULL;
		}
	}
	nv[j] = NULL;
	return nv;
}

static int dispatch(int ac, char **av);

int
main(int argc, char **argv)
{
	const struct rlimit nocore = { 0, 0 };
	const char *slash;
	char **av;
	int ac, ex;

	/*
	 * This process holds secrets, keys and tokens: no core file, and
	 * no ptrace or /proc/PID/mem by other processes of the same user.
	 */
	(void)setrlimit(RLIMIT_CORE, &nocore);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	if (argc > 0 && argv[0] != NULL &&
	    (slash = strrchr(argv[0], '/')) != NULL && slash[1] != '\0')
		progname = slash + 1;
	else if (argc > 0 && argv[0] != NULL && *argv[0] != '\0')
		progname = argv[0];
	if ((av = glue_optional(argc, argv)) == NULL) {
		warnx_("out of memory");
		return EX_OSERR;
	}
	for (ac = 0; av[ac] != NULL; ac++)
		;
	ex = dispatch(ac, av);
	free_argv(av);
	return ex;
}

static int
dispatch(int ac, char **av)
{
	static const struct option longopts[] = {
		{ "config",	required_argument,	NULL, 'c' },
		{ "verbose",	no_argument,		NULL, 'v' },
		{ "help",	no_argument,		NULL, 'h' },
		{ "version",	no_argument,		NULL, 'V' },
		{ "json",	no_argument,		NULL, OPT_JSON },
		{ "imap",	optional_argument,	NULL, OPT_IMAP },
		{ "smtp",	optional_argument,	NULL, OPT_SMTP },
		{ "ca-file",	required_argument,	NULL, OPT_CA_FILE },
		{ "no-login",	no_argument,		NULL, OPT_NO_LOGIN },
		{ "no-cache",	no_argument,		NULL, OPT_NO_CACHE },
		{ "mech",	required_argument,	NULL, OPT_MECH },
		{ "expiring",	required_argument,	NULL, OPT_EXPIRING },
		{ NULL, 0, NULL, 0 }
	};
	struct opts o;
	struct oa2_log lg = { log_stderr, NULL, OA2_LOG_WARNING };
	const char *cmd;
	int ch, nargs, ex;

	/* a family of its own, with its own options (tools/certificate.c) */
	if (ac >= 2 && strcmp(av[1], "certificate") == 0)
		return cmd_certificate(ac - 1, av + 1);
	if (ac >= 2 && (strcmp(av[1], "login") == 0 ||
	    strcmp(av[1], "logout") == 0)) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			warnx_("cannot initialise libcurl");
			return EX_SOFTWARE;
		}
		ex = cmd_login(ac - 1, av + 1);
		curl_global_cleanup();
		return ex;
	}
	memset(&o, 0, sizeof(o));
	o.expiring = -1;
	opterr = 0;
	while ((ch = getopt_long(ac, av, ":c:vhV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o.config = optarg;
			break;
		case 'v':
			o.verbose++;
			break;
		case 'h':
			return help();
		case 'V':
			printf("sasl-oauth2 %s\n", OA2_VERSION);
			return fflush(stdout) == 0 && !ferror(stdout) ?
			    EX_OK : EX_IOERR;
		case OPT_JSON:
			o.json = 1;
			break;
		case OPT_IMAP:
			o.imap = optarg != NULL ? optarg : "";
			break;
		case OPT_SMTP:
			o.smtp = optarg != NULL ? optarg : "";
			break;
		case OPT_CA_FILE:
			o.ca_file = optarg;
			break;
		case OPT_NO_LOGIN:
			o.no_login = 1;
			break;
		case OPT_NO_CACHE:
			o.no_cache = 1;
			break;
		case OPT_MECH:
			o.mech = optarg;
			break;
		case OPT_EXPIRING: {
			char *end;

			errno = 0;
			o.expiring = strtol(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end != '\0' ||
			    errno != 0 || o.expiring > 3650)
				return usage("--expiring takes a number of "
				    "days from 0 to 3650, not \"%s\"", optarg);
			break;
		}
		case ':':
			return usage("option %s needs an argument",
			    av[optind - 1]);
		default:
			if (optopt != 0 && optopt < 256)
				return usage("unknown option -%c", optopt);
			return usage("unknown option %s", av[optind - 1]);
		}
	}
	if (optind >= ac)
		return usage("no command given");
	cmd = av[optind++];
	nargs = ac - optind;

	/* Options that only some commands take. */
	if (o.json && strcmp(cmd, "token") != 0)
		return usage("--json goes with token");
	if ((o.imap != NULL || o.smtp != NULL || o.no_login ||
	    o.no_cache) && strcmp(cmd, "test") != 0)
		return usage("--imap, --smtp, --no-login and --no-cache go "
		    "with test");
	if (o.ca_file != NULL && strcmp(cmd, "test") != 0 &&
	    strcmp(cmd, "tunnel") != 0)
		return usage("--ca-file goes with test and tunnel");
	if (o.mech != NULL && strcmp(cmd, "tunnel") != 0)
		return usage("--mech goes with tunnel");
	if (o.expiring >= 0 && strcmp(cmd, "check-config") != 0)
		return usage("--expiring goes with check-config");
	if (o.ca_file != NULL && access(o.ca_file, R_OK) == -1) {
		warnx_("cannot read --ca-file %s: %s", o.ca_file,
		    strerror(errno));
		return EX_NOINPUT;
	}

	if (strcmp(cmd, "test") == 0)
		lg.level = OA2_LOG_INFO;
	lg.level += o.verbose;
	if (lg.level > OA2_LOG_DEBUG)
		lg.level = OA2_LOG_DEBUG;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		warnx_("cannot initialise libcurl");
		return EX_SOFTWARE;
	}
	/* a mailbox with a control character could add SASL fields */
	if ((strcmp(cmd, "token") == 0 || strcmp(cmd, "test") == 0) &&
	    nargs == 1) {
		struct oa2_error werr;

		if (oa2_wire_check("mailbox", av[optind], &werr) != 0) {
			warnx_("%s", werr.msg);
			return EX_DATAERR;
		}
	}
	if (strcmp(cmd, "check-config") == 0) {
		if (nargs != 0)
			return usage("check-config takes no arguments");
		ex = cmd_check_config(&o, &lg);
	} else if (strcmp(cmd, "token") == 0) {
		if (nargs != 1)
			return usage("token takes one mailbox");
		ex = cmd_token(&o, &lg, av[optind]);
	} else if (strcmp(cmd, "test") == 0) {
		if (nargs != 1)
			return usage("test takes one mailbox");
		ex = cmd_test(&o, &lg, av[optind]);
	} else if (strcmp(cmd, "thumbprint") == 0) {
		if (nargs != 1)
			return usage("thumbprint takes one certificate file");
		ex = cmd_thumbprint(av[optind]);
	} else if (strcmp(cmd, "cache") == 0) {
		if (nargs < 1 || nargs > 2 || (strcmp(av[optind], "list") != 0 &&
		    strcmp(av[optind], "clear") != 0))
			return usage("cache takes list or clear, and "
			    "optionally a mailbox");
		ex = cmd_cache(&o, &lg, av[optind], nargs == 2 ?
		    av[optind + 1] : NULL);
	} else if (strcmp(cmd, "tunnel") == 0) {
		struct oa2_tunnel_opts to = { o.config, o.ca_file, o.mech };

		ex = oa2_tunnel(&to, &lg, nargs, av + optind);
	} else
		return usage("unknown command \"%s\"", cmd);
	curl_global_cleanup();
	return ex;
}
