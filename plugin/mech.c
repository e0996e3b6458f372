/*
 * The SASL glue: the only file that knows SASL. Two mechanisms, XOAUTH2
 * and OAUTHBEARER, share one step function chosen by glob_context.
 *
 * step 0: mailbox from the authzid, else the authid (callbacks or
 *	   SASL_INTERACT prompts); token from the cache or the endpoint;
 *	   send the initial response, return SASL_CONTINUE.
 * step 1: no data: the server said OK, return SASL_OK. Data: the
 *	   server's error challenge: drop the token, answer "" (XOAUTH2)
 *	   or "\1" (OAUTHBEARER), and report why.
 * step 2: anything more is a protocol error.
 */
#include "config.h"

#include <sys/stat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "cache.h"
#include "conf.h"
#include "http.h"
#include "mech.h"
#include "secret.h"
#include "wire.h"

#define MECH_XOAUTH2		1
#define MECH_OAUTHBEARER	2

/*
 * A loaded configuration and the number of connections using it. A
 * connection holds it from its first step to its disposal, so that a
 * reload by another thread never frees what a login is still using,
 * and no lock is held while a token is fetched.
 */
struct loaded {
	struct oa2_config	*cfg;
	unsigned		users;
};

/*
 * Who a file is, to tell whether it changed since we last read it: a
 * chmod or chown (the fix a sentence names) changes ctime and mode.
 */
struct file_id {
	int			valid;
	dev_t			dev;
	ino_t			ino;
	off_t			size;
	mode_t			mode;
	uid_t			uid;
	struct timespec		mtime;
	struct timespec		ctime;
	int			unsafe;	/* failed the owner/mode rule */
};

/* Shared by both mechanisms and every connection of the process. */
static struct {
	pthread_mutex_t		lock;		/* guards this struct only */
	int			refs;		/* one per mechanism in use */
	char			*path;
	struct loaded		*cur;		/* NULL: no usable config */
	struct oa2_error	load_err;	/* why cur is NULL */
	struct file_id		failed;		/* the file that failed to load */
	struct oa2_snapshot	*snap;		/* read at init, to parse on
						   first use */
} plugin = { PTHREAD_MUTEX_INITIALIZER, 0, NULL, NULL, { 0, "" },
    { 0, 0, 0, 0, 0, 0, { 0, 0 }, { 0, 0 }, 0 }, NULL };

struct mech_context {
	int	kind;			/* MECH_* */
	int	state;
	struct loaded *ld;		/* held from step 0 to dispose */
	struct oa2_account *acct;	/* in ld->cfg */
	char	*mailbox;		/* for forgetting a refused token */
	char	*out;			/* the last response; a secret */
	size_t	outlen;
	size_t	toklen;			/* the token we sent: the last */
					/* toklen bytes of out before "\1\1" */
};

/* What first_step asks oa2_token_use to build from the cached token. */
struct build {
	struct mech_context *c;
	const char	*host;
	const char	*port;
	char		*out;		/* the response; a secret */
	size_t		outlen;
	size_t		toklen;
	int		r;		/* the builder's own failure */
};

static const int mech_xoauth2 = MECH_XOAUTH2;
static const int mech_oauthbearer = MECH_OAUTHBEARER;

static void
log_to_sasl(void *ctx, int level, const char *msg)
{
	static const int sasl_level[] = {
		SASL_LOG_ERR, SASL_LOG_WARN, SASL_LOG_NOTE, SASL_LOG_DEBUG
	};
	const sasl_utils_t *utils = ctx;

	utils->log(utils->conn, sasl_level[level], "sasl-oauth2: %s", msg);
}

/* A log sink at cfg's level (info without a configuration). */
static struct oa2_log
make_log(const sasl_utils_t *utils, const struct oa2_config *cfg)
{
	struct oa2_log lg = { log_to_sasl, (void *)utils, OA2_LOG_INFO };

	if (cfg != NULL)
		lg.level = cfg->log_level;
	return lg;
}

/*
 * One sentence to sasl_seterror (for sasl_errdetail) and to the log at
 * error level (for clients that print only sasl_errstring). Formatted
 * here because utils->seterror has a small printf of its own.
 */
static int __attribute__((format(printf, 3, 4)))
fail(const sasl_utils_t *utils, int code, const char *fmt, ...)
{
	char msg[OA2_ERRMSG_MAX + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	utils->seterror(utils->conn, SASL_NOLOG, "%s", msg);
	utils->log(utils->conn, SASL_LOG_ERR, "sasl-oauth2: %s", msg);
	return code;
}

static int
sasl_code(int oa2)
{
	switch (oa2) {
	case OA2_ERR_NOMEM:	return SASL_NOMEM;
	case OA2_ERR_NETWORK:
	case OA2_ERR_TRANSIENT:	return SASL_TRYAGAIN;
	case OA2_ERR_NOACCOUNT:	return SASL_NOUSER;
	default:		return SASL_FAIL;
	}
}

static void
file_id_get(const char *path, struct file_id *id)
{
	struct stat st;

	memset(id, 0, sizeof(*id));
	if (oa2_stat(path, &st) == -1)
		return;
	id->valid = 1;
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mode = st.st_mode;
	id->uid = st.st_uid;
	id->mtime = st.st_mtim;
	id->ctime = st.st_ctim;
}

static int
file_id_same(const struct file_id *a, const struct file_id *b)
{
	return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino &&
	    a->size == b->size && a->mode == b->mode && a->uid == b->uid &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec &&
	    a->ctime.tv_sec == b->ctime.tv_sec &&
	    a->ctime.tv_nsec == b->ctime.tv_nsec;
}

/* Whether path now passes the owner/mode rule (a few stat calls). */
static int
path_safe(const char *path)
{
	struct oa2_error err;
	struct stat st;

	return oa2_stat(path, &st) == 0 &&
	    oa2_check_safe_path(path, &st, "configuration file", &err) == 0;
}

/* Drop a connection's hold on l; free it when it is no longer current. */
static void
loaded_release(struct loaded *l)
{
	if (l == NULL)
		return;
	if (--l->users == 0 && l != plugin.cur) {
		oa2_config_free(&l->cfg);
		free(l);
	}
}

/* Make cfg the current configuration. */
static int
loaded_replace(struct oa2_config *cfg)
{
	struct loaded *l, *old = plugin.cur;

	if (cfg != NULL) {
		if ((l = calloc(1, sizeof(*l))) == NULL)
			return -1;
		l->cfg = cfg;
	} else
		l = NULL;
	plugin.cur = l;
	if (old != NULL && old->users == 0) {
		oa2_config_free(&old->cfg);
		free(old);
	}
	return 0;
}

/*
 * (Re)load the configuration. At init only its files are read (a
 * snapshot, oa2_config_snapshot): a process that never logs in with the
 * mechanisms never parses a key or a certificate, and a Postfix smtp
 * process that chroots after init parses them on its first login from
 * what was read before (issue 16). A file that cannot be read or fails
 * the owner/mode rule at init is loaded at once instead, for its
 * sentence. Later, the file is loaded again only when it is readable
 * and has changed (inside a chroot it is not, and the copy read at
 * init stays). A file that failed to load is not read again until it
 * changes: its error is reported (or the configuration loaded before
 * is kept) without parsing it on every login. Called with plugin.lock
 * held.
 */
static void
config_refresh(const sasl_utils_t *utils, int init)
{
	struct oa2_config *cfg = NULL;
	struct oa2_log lg = make_log(utils, plugin.cur ? plugin.cur->cfg :
	    NULL);
	struct oa2_error err;
	struct file_id id;
	int first, r;

	if (init && oa2_config_snapshot(plugin.path, &plugin.snap) == 0)
		return;
	/* the first load: at init, or from the snapshot */
	first = init || plugin.snap != NULL;
	if (!first && plugin.cur != NULL &&
	    oa2_config_changed(plugin.cur->cfg) != 1)
		return;
	if (!first && plugin.cur == NULL && access(plugin.path, R_OK) == -1)
		return;
	oa2_snapshot_use(plugin.snap);
	file_id_get(plugin.path, &id);
	/*
	 * The same file that failed: not read again, unless it failed
	 * the owner/mode rule and a directory on its path was fixed since.
	 */
	if (!first && file_id_same(&id, &plugin.failed) &&
	    (!plugin.failed.unsafe || !path_safe(plugin.path)))
		return;
	r = oa2_config_load(plugin.path, &lg, &cfg, &err);
	if (r != 0) {
		plugin.failed = id;
		plugin.failed.unsafe = !path_safe(plugin.path);
	}
	oa2_snapshot_use(NULL);
	oa2_snapshot_free(&plugin.snap);
	if (r != 0) {
		if (plugin.cur != NULL) {
			oa2_log(&lg, OA2_LOG_ERROR, "%s; keeping the "
			    "configuration loaded before until the file "
			    "changes again", err.msg);
			return;
		}
		plugin.load_err = err;
		if (init)
			oa2_log(&lg, OA2_LOG_WARNING, "%s", err.msg);
		return;
	}
	if (loaded_replace(cfg) != 0) {
		oa2_config_free(&cfg);
		oa2_seterr(&plugin.load_err, OA2_ERR_NOMEM, "out of memory");
		return;
	}
	memset(&plugin.failed, 0, sizeof(plugin.failed));
	oa2_clearerr(&plugin.load_err);
	lg.level = cfg->log_level;
	oa2_log(&lg, OA2_LOG_DEBUG, "loaded %s: %zu account(s)", plugin.path,
	    cfg->naccounts);
}

/* The answer to prompt id: from an answered prompt, else a callback. */
static int
get_value(sasl_client_params_t *params, sasl_interact_t *prompts,
    unsigned long id, const char **out)
{
	sasl_getsimple_t *cb;
	void *cbctx;
	int r;

	*out = NULL;
	for (; prompts != NULL && prompts->id != SASL_CB_LIST_END; prompts++)
		if (prompts->id == id) {
			*out = prompts->result;
			return SASL_OK;
		}
	r = params->utils->getcallback(params->utils->conn, id,
	    (sasl_callback_ft *)&cb, &cbctx);
	if (r == SASL_OK && cb != NULL) {
		/*
		 * A callback that cannot answer gives no value: a program
		 * given only an authorization id (sasl-sample-client -u)
		 * fails its authentication-name callback, and that id is
		 * then the mailbox.
		 */
		if ((r = cb(cbctx, (int)id, out, NULL)) == SASL_FAIL) {
			*out = NULL;
			r = SASL_OK;
		}
		return r;
	}
	return r == SASL_FAIL ? SASL_OK : r;	/* no callback: no value */
}

static int
make_prompts(sasl_client_params_t *params, sasl_interact_t **prompt_need,
    int want_user, int want_auth)
{
	sasl_interact_t *p;
	int n = want_user + want_auth;

	p = params->utils->malloc(sizeof(*p) * (size_t)(n + 1));
	if (p == NULL)
		return SASL_NOMEM;
	memset(p, 0, sizeof(*p) * (size_t)(n + 1));
	*prompt_need = p;
	if (want_user) {
		p->id = SASL_CB_USER;
		p->challenge = "Authorization Name";
		p->prompt = "Mailbox (authorization id)";
		p++;
	}
	if (want_auth) {
		p->id = SASL_CB_AUTHNAME;
		p->challenge = "Authentication Name";
		p->prompt = "Mailbox";
		p++;
	}
	p->id = SASL_CB_LIST_END;
	return SASL_INTERACT;
}

/* Refuse a value with a control character before it goes anywhere. */
static int
check_field(const sasl_utils_t *utils, const char *what, const char *value)
{
	struct oa2_error err;

	if (oa2_wire_check(what, value, &err) != 0)
		return fail(utils, SASL_BADPARAM, "%s", err.msg);
	return SASL_OK;
}

/* Set oparams' user and authid the way every Cyrus client plugin does. */
static int
get_mailbox(sasl_client_params_t *params, sasl_interact_t **prompt_need,
    sasl_out_params_t *oparams)
{
	const sasl_utils_t *utils = params->utils;
	const char *authzid = NULL, *authid = NULL;
	int ru, ra, r;

	ru = get_value(params, prompt_need ? *prompt_need : NULL,
	    SASL_CB_USER, &authzid);
	ra = get_value(params, prompt_need ? *prompt_need : NULL,
	    SASL_CB_AUTHNAME, &authid);
	if (ru != SASL_OK && ru != SASL_INTERACT)
		return ru;
	if (ra != SASL_OK && ra != SASL_INTERACT)
		return ra;
	if (ru == SASL_INTERACT || ra == SASL_INTERACT) {
		if (prompt_need != NULL && *prompt_need != NULL) {
			utils->free(*prompt_need);
			*prompt_need = NULL;
		}
		if (prompt_need == NULL)
			return fail(utils, SASL_BADPARAM, "the application "
			    "gave no mailbox name and cannot be asked for one");
		return make_prompts(params, prompt_need, ru == SASL_INTERACT,
		    ra == SASL_INTERACT);
	}
	if (prompt_need != NULL && *prompt_need != NULL) {
		utils->free(*prompt_need);
		*prompt_need = NULL;
	}
	if (authid == NULL || *authid == '\0') {
		if (authzid == NULL || *authzid == '\0')
			return fail(utils, SASL_BADPARAM, "no mailbox name: "
			    "give the mailbox as the login name");
		authid = authzid;
	}
	if ((r = check_field(utils, "mailbox", authid)) != SASL_OK ||
	    (authzid != NULL && (r = check_field(utils, "authorization id",
	    authzid)) != SASL_OK))
		return r;
	if (authzid != NULL && *authzid != '\0' &&
	    strcmp(authzid, authid) != 0) {
		if ((r = params->canon_user(utils->conn, authzid, 0,
		    SASL_CU_AUTHZID, oparams)) != SASL_OK)
			return r;
		return params->canon_user(utils->conn, authid, 0,
		    SASL_CU_AUTHID, oparams);
	}
	return params->canon_user(utils->conn, authid, 0,
	    SASL_CU_AUTHID | SASL_CU_AUTHZID, oparams);
}

/* The port of "ip;port" (ipremoteport), or NULL. */
static const char *
remote_port(const sasl_client_params_t *params)
{
	const char *semi;

	if (params->ipremoteport == NULL)
		return NULL;
	semi = strrchr(params->ipremoteport, ';');
	return semi != NULL && semi[1] != '\0' ? semi + 1 : NULL;
}

static void
set_out(struct mech_context *c, char *out, size_t len)
{
	oa2_freezero(c->out, c->outlen);
	c->out = out;
	c->outlen = len;
}

/*
 * The response, straight from the cached token and its stored length
 * (oa2_token_use): one allocation, one copy of the token, wiped once
 * when the connection is disposed.
 */
static int
build_response(void *arg, const struct oa2_token *tok, size_t len)
{
	struct build *b = arg;

	b->toklen = len;
	if (b->c->kind == MECH_XOAUTH2)
		b->r = oa2_xoauth2_response_len(b->c->mailbox,
		    tok->access_token, len, &b->out, &b->outlen);
	else
		b->r = oa2_oauthbearer_response_len(b->c->mailbox, b->host,
		    b->port, tok->access_token, len, &b->out, &b->outlen);
	return b->r;
}

static int
first_step(struct mech_context *c, sasl_client_params_t *params,
    sasl_interact_t **prompt_need, const char **clientout,
    unsigned *clientoutlen, sasl_out_params_t *oparams)
{
	const sasl_utils_t *utils = params->utils;
	struct oa2_account *acct;
	struct oa2_error err;
	struct oa2_log lg;
	const char *port = remote_port(params);
	struct build b = { c, params->serverFQDN, port, NULL, 0, 0, 0 };
	int r;

	if ((r = get_mailbox(params, prompt_need, oparams)) != SASL_OK)
		return r;
	free(c->mailbox);
	if ((c->mailbox = strndup(oparams->user, oparams->ulen)) == NULL)
		return SASL_NOMEM;
	if ((r = check_field(utils, "mailbox", c->mailbox)) != SASL_OK ||
	    (r = check_field(utils, "server name", params->serverFQDN)) !=
	    SASL_OK || (r = check_field(utils, "port", port)) != SASL_OK)
		return r;

	/* Only the choice of configuration is made under the lock. */
	pthread_mutex_lock(&plugin.lock);
	config_refresh(utils, 0);
	if (plugin.cur == NULL) {
		err = plugin.load_err;
		pthread_mutex_unlock(&plugin.lock);
		return fail(utils, SASL_FAIL, "%s", err.msg);
	}
	if (c->ld != NULL)		/* a step 0 repeated after a failure */
		loaded_release(c->ld);
	c->ld = plugin.cur;
	c->ld->users++;
	pthread_mutex_unlock(&plugin.lock);

	lg = make_log(utils, c->ld->cfg);
	if ((acct = oa2_config_match(c->ld->cfg, c->mailbox)) == NULL)
		return fail(utils, SASL_NOUSER, "no account in %s matches "
		    "mailbox %s: add one with match = \"%s\", \"*@domain\" or "
		    "\"*\"", c->ld->cfg->path, c->mailbox, c->mailbox);
	if (acct->broken)
		return fail(utils, SASL_FAIL, "no token for %s (account %s): "
		    "%s (a long-running program reads the configuration again "
		    "when the file changes: after the fix, touch %s)",
		    c->mailbox, acct->match, acct->load_err.msg,
		    c->ld->cfg->path);
	/* a token bound to the mailbox: that mailbox's own account */
	if ((acct = oa2_account_for(acct, c->mailbox, &err)) == NULL)
		return fail(utils, sasl_code(err.code), "no token for %s: %s",
		    c->mailbox, err.msg);
	r = oa2_token_use(acct, &lg, build_response, &b, NULL, &err);
	if (b.r != 0)
		return b.r == OA2_ERR_NOMEM ? SASL_NOMEM : fail(utils,
		    SASL_BADPARAM, "cannot build the %s response for %s",
		    c->kind == MECH_XOAUTH2 ? "XOAUTH2" : "OAUTHBEARER",
		    c->mailbox);
	if (r != 0)
		return fail(utils, sasl_code(r), "no token for %s (account "
		    "%s): %s", c->mailbox, acct->match, err.msg);
	oa2_log(&lg, OA2_LOG_DEBUG, "sending a %s response for %s (account "
	    "%s)", c->kind == MECH_XOAUTH2 ? "XOAUTH2" : "OAUTHBEARER",
	    c->mailbox, acct->match);
	c->acct = acct;
	set_out(c, b.out, b.outlen);
	c->toklen = b.toklen;
	*clientout = c->out;
	*clientoutlen = (unsigned)c->outlen;
	c->state = 1;
	return SASL_CONTINUE;
}

/* The server sent an error challenge: forget the token, answer, report. */
static int
refused(struct mech_context *c, sasl_client_params_t *params,
    const char *in, unsigned inlen, const char **clientout,
    unsigned *clientoutlen)
{
	const sasl_utils_t *utils = params->utils;
	struct oa2_log lg = make_log(utils, c->ld->cfg);
	char why[256], *ans;
	long kept;

	oa2_challenge_describe(in, inlen, why, sizeof(why));
	/* before set_out frees the response that holds the token */
	kept = oa2_token_forget_len(c->acct, &lg, c->out + c->outlen - 2 -
	    c->toklen, c->toklen);

	if ((ans = strdup(c->kind == MECH_XOAUTH2 ? "" : "\001")) == NULL)
		return SASL_NOMEM;
	set_out(c, ans, strlen(ans));
	*clientout = c->out;
	*clientoutlen = (unsigned)c->outlen;
	c->state = 2;
	if (kept > 0)
		fail(utils, SASL_BADAUTH, "the server rejected the token for %s "
		    "(%s), though it came fresh from the token endpoint: a new "
		    "one would be refused alike, so none is asked for in the "
		    "next %ld s (failure_backoff); the server must accept this "
		    "application (permissions, SMTP AUTH)", c->mailbox, why,
		    kept);
	else
		fail(utils, SASL_BADAUTH, "the server rejected the token for "
		    "%s (%s); the cached token was dropped and the next "
		    "attempt fetches a new one", c->mailbox, why);
	return SASL_CONTINUE;
}

static int
mech_new(void *glob, sasl_client_params_t *params, void **conn_context)
{
	struct mech_context *c;

	if ((c = params->utils->malloc(sizeof(*c))) == NULL)
		return SASL_NOMEM;
	memset(c, 0, sizeof(*c));
	c->kind = *(const int *)glob;
	*conn_context = c;
	return SASL_OK;
}

static int
mech_step(void *conn_context, sasl_client_params_t *params,
    const char *serverin, unsigned serverinlen,
    sasl_interact_t **prompt_need, const char **clientout,
    unsigned *clientoutlen, sasl_out_params_t *oparams)
{
	struct mech_context *c = conn_context;

	*clientout = NULL;
	*clientoutlen = 0;
	switch (c->state) {
	case 0:
		return first_step(c, params, prompt_need, clientout,
		    clientoutlen, oparams);
	case 1:
		if (serverinlen > 0)
			return refused(c, params, serverin, serverinlen,
			    clientout, clientoutlen);
		oparams->doneflag = 1;
		oparams->mech_ssf = 0;
		oparams->maxoutbuf = 0;
		oparams->encode_context = NULL;
		oparams->encode = NULL;
		oparams->decode_context = NULL;
		oparams->decode = NULL;
		oparams->param_version = 0;
		c->state = 3;
		return SASL_OK;
	case 2:
		return fail(params->utils, SASL_BADAUTH, "the server rejected "
		    "the token for %s", c->mailbox);
	default:
		return fail(params->utils, SASL_BADPROT, "unexpected step "
		    "after the end of authentication");
	}
}

static void
mech_dispose(void *conn_context, const sasl_utils_t *utils)
{
	struct mech_context *c = conn_context;

	if (c == NULL)
		return;
	oa2_freezero(c->out, c->outlen);	/* and the token in it */
	free(c->mailbox);
	if (c->ld != NULL) {
		pthread_mutex_lock(&plugin.lock);
		loaded_release(c->ld);
		pthread_mutex_unlock(&plugin.lock);
	}
	utils->free(c);
}

static void
mech_free(void *glob, const sasl_utils_t *utils)
{
	pthread_mutex_lock(&plugin.lock);
	if (plugin.refs > 0 && --plugin.refs == 0) {
		/* a connection not yet disposed frees it when it is */
		(void)loaded_replace(NULL);
		oa2_snapshot_free(&plugin.snap);
		memset(&plugin.failed, 0, sizeof(plugin.failed));
		free(plugin.path);
		plugin.path = NULL;
		oa2_http_global_cleanup();
	}
	pthread_mutex_unlock(&plugin.lock);
}

static const unsigned long prompts[] = {
	SASL_CB_AUTHNAME, SASL_CB_LIST_END
};

/*
 * A bearer token is plaintext-equivalent: no SASL_SEC_NOPLAINTEXT, so
 * an application that forbids plaintext mechanisms without TLS does not
 * pick these. Not anonymous, and not open to a dictionary attack.
 */
static sasl_client_plug_t plugs[] = {
	{
		"XOAUTH2", 0, SASL_SEC_NOANONYMOUS | SASL_SEC_NODICTIONARY,
		SASL_FEAT_WANT_CLIENT_FIRST | SASL_FEAT_ALLOWS_PROXY,
		prompts, (void *)&mech_xoauth2, mech_new, mech_step,
		mech_dispose, mech_free, NULL, NULL, NULL
	},
	{
		"OAUTHBEARER", 0, SASL_SEC_NOANONYMOUS | SASL_SEC_NODICTIONARY,
		SASL_FEAT_WANT_CLIENT_FIRST | SASL_FEAT_ALLOWS_PROXY,
		prompts, (void *)&mech_oauthbearer, mech_new, mech_step,
		mech_dispose, mech_free, NULL, NULL, NULL
	},
};

int
oa2_mech_init(const sasl_utils_t *utils, sasl_client_plug_t **pluglist,
    int *plugcount)
{
	const char *opt = NULL;
	unsigned optlen;

	pthread_mutex_lock(&plugin.lock);
	if (plugin.refs == 0) {
		/*
		 * Reference counted and thread-safe in libcurl >= 7.84;
		 * skipped in a setuid host with SSLKEYLOGFILE set.
		 */
		(void)oa2_http_global_init();
		if (utils->getopt != NULL && utils->getopt(
		    utils->getopt_context, "XOAUTH2", "oauth2_config", &opt,
		    &optlen) != SASL_OK)
			opt = NULL;
		plugin.path = strdup(oa2_config_path(opt));
		if (plugin.path == NULL) {
			oa2_http_global_cleanup();
			pthread_mutex_unlock(&plugin.lock);
			return SASL_NOMEM;
		}
		config_refresh(utils, 1);
	}
	plugin.refs += 2;	/* mech_free is called once per mechanism */
	pthread_mutex_unlock(&plugin.lock);
	*pluglist = plugs;
	*plugcount = 2;
	return SASL_OK;
}
