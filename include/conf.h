/*
 * The libconfig file: validated accounts with their credentials loaded.
 */
#ifndef OA2_CONF_H
#define OA2_CONF_H

#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include "confpath.h"
#include "error.h"
#include "jwt.h"
#include "token.h"

struct oa2_cred_kind;


/* A CA bundle read into memory at load time (before any chroot). */
struct oa2_blob {
	char	*path;			/* as first named */
	char	*data;
	size_t	len;
	dev_t	dev;			/* the file's identity: one copy */
	ino_t	ino;			/* per file, whatever its path */
};

/*
 * An account whose credential or a value failed to load is kept,
 * broken: match and line are set, load_err holds its file:line
 * sentence, and it has no credential (kind, data, client_secret and cert NULL,
 * cache_key empty; other fields may be unset). oa2_config_match still
 * returns it for its mailboxes, so that they never fall through to
 * "*@domain" or "*": a caller checks broken first and fails with
 * load_err (never asks for a token with a broken account).
 */
struct oa2_account {
	char	*match;			/* "user@dom", "*@dom" or "*" */
	int	line;			/* where the account starts in the file */
	int	broken;			/* 1: not loaded, see load_err */
	struct oa2_error load_err;	/* why (file:line: ...), if broken */
	char	*authority;		/* https://login.microsoftonline.com */
	char	*tenant;
	char	*client_id;
	char	*scope;
	char	*token_url;		/* {authority}/{tenant}/oauth2/v2.0/token */
	const struct oa2_blob *ca;	/* owned by the config; NULL: system default */
	char	*cache_dir;		/* NULL: memory only */
	long	refresh_margin;		/* seconds */
	long	timeout;		/* seconds, whole token request */
	long	failure_backoff;	/* seconds a refusal is remembered; 0: never */

	/*
	 * Where the token comes from (include/cred.h). The secret and
	 * certificate sources keep their credential in the fields below
	 * (rollover swaps them); any other source keeps its own in data.
	 */
	const struct oa2_cred_kind *kind;	/* NULL while broken */
	void	*data;			/* the source's; freed by kind->clear */
	const char *mailbox;		/* OA2_CRED_PER_MAILBOX: whose token */
	/*
	 * OA2_CRED_PER_MAILBOX (plugin/account.c): an account of the file
	 * has a child per mailbox seen (oa2_account_for); a child has
	 * parent set, mailbox and match its own, and shares every other
	 * pointer with the parent, which owns them.
	 */
	struct oa2_account *parent;	/* NULL: an account of the file */
	struct oa2_account **children;
	size_t	nchildren;
	size_t	maxchildren;
	const char *imap_host;		/* test's and tunnel's default */
	const char *pop_host;		/* hosts (static strings) */
	const char *smtp_host;
	char	*client_secret;		/* oa2_cred_secret; wiped at free */
	struct oa2_cert *cert;		/* oa2_cred_cert */
	int	assertion_alg;		/* OA2_ALG_* */
	long	assertion_lifetime;	/* seconds */

	/*
	 * Rollover and expiry (sasl-oauth2.conf(5), "ROTATION"). The
	 * next credential is of the same kind as the one above; the fields
	 * above hold the one in use. When the one in use is refused for a
	 * credential reason, token.c swaps the two (oa2_account_rotate,
	 * under the account's lock): rotated then says that the next one
	 * is in use, and the refused one sits in next_*.
	 */
	char	*next_client_secret;	/* wiped at free; NULL: none */
	struct oa2_cert *next_cert;	/* NULL: none */
	char	next_cache_key[33];	/* "" when there is no next one */
	struct oa2_error next_err;	/* why a configured next one is unusable */
	int	rotated;		/* 1: the next one is in use */
	time_t	secret_expires;		/* client_secret_expires; 0: unknown */
	time_t	next_secret_expires;	/* next_client_secret_expires */
	long	expiry_warning;		/* seconds (expiry_warning days) */
	time_t	expiry_warned;		/* when the plugin last warned */

	char	cache_key[33];		/* hex; names the disk cache file */
	char	config_id[80];		/* identity of the config file loaded */
#define OA2_REFUSAL_ID_MAX	160	/* config_id "|" a source's input_id */
	struct oa2_token mem;		/* the in-memory cache */
	int	cache_warned;		/* "cache dir unusable" logged once */
	char	refused[OA2_ERRMSG_MAX];	/* memory only: a remembered */
	time_t	refused_until;			/* refusal, until then, */
	char	refused_id[OA2_REFUSAL_ID_MAX];	/* for this input */
	/* plugin/cache.c's own, one set per account (docs/cache.md) */
	pthread_mutex_t	lock;		/* one token request at a time */
	size_t	mem_len;		/* strlen(mem.access_token) */
	time_t	mem_fetched;		/* when mem came from the endpoint */
	long long failed_at;		/* ns: the last failure, kept */
	int	failed_code;		/* for the threads that waited */
	char	failed[OA2_ERRMSG_MAX];	/* for it (see cache.c) */
};

struct oa2_config {
	char	*path;
	int	log_level;
	struct oa2_account *accounts;
	size_t	naccounts;
	size_t	nbroken;		/* accounts with broken set */
	struct oa2_blob *cas;
	size_t	ncas;
	size_t	maxcas;			/* cas has room for this many */
	/* identity of the file when loaded, to notice changes */
	dev_t	dev;
	ino_t	ino;
	struct timespec mtime;
	struct timespec ctime;		/* a chmod or chown changes it */
	off_t	size;
};

/*
 * Load and validate path. Every error names file, line and key. On
 * success *out is the config; free with oa2_config_free. Warnings (a
 * certificate close to expiry, a broken account) go to lg.
 *
 * The file, and each directory on its real path up to /, must be owned
 * by root or the effective user and not writable by group or others
 * (a directory may be, with the sticky bit); a file holding an inline
 * client_secret must not be readable by group or others either.
 *
 * The whole load fails on a missing, unsafe or unparsable file, an
 * error in the top level or in defaults, and an account without a
 * valid, unique match. Any other error in an account only marks that
 * account broken (see struct oa2_account) and the load succeeds;
 * cfg->nbroken counts them.
 */
int oa2_config_load(const char *path, const struct oa2_log *lg,
    struct oa2_config **out, struct oa2_error *err);

/*
 * Read, without parsing anything but the libconfig text, the file at
 * path and every file its settings name that oa2_config_load reads (the
 * credentials' files, ca_file or the system CA bundle) into *snap, for
 * oa2_config_load to parse later under oa2_snapshot_use (secret.h):
 * with the same result, after a chroot too. 0 when the file could be
 * read and passed the owner/mode rule of oa2_config_load; else -1 with
 * *snap freed (the caller then loads at once, for the load's sentence).
 */
struct oa2_snapshot;
int oa2_config_snapshot(const char *path, struct oa2_snapshot **snap);

/* Wipe secrets and free; clears *cfgp. Accepts NULL. */
void oa2_config_free(struct oa2_config **cfgp);

/*
 * The account for a mailbox: exact match (case-insensitive), then
 * "*@domain", then "*". NULL when none.
 */
struct oa2_account *oa2_config_match(const struct oa2_config *cfg,
    const char *mailbox);

/*
 * Whether the file at cfg->path differs from the one loaded (returns 1),
 * is the same (0), or cannot be examined (-1, e.g. inside a chroot).
 */
int oa2_config_changed(const struct oa2_config *cfg);

/*
 * The account that holds mailbox's token: a itself, except for an
 * OA2_CRED_PER_MAILBOX source, where it is a's child for the mailbox
 * (compared case-insensitively), made on first use (thread-safe). A
 * child lives as long as the config. NULL with err set when no child
 * can be made. Every caller of oa2_token_get/use/forget asks this
 * first with the mailbox logging in.
 */
struct oa2_account *oa2_account_for(struct oa2_account *a,
    const char *mailbox, struct oa2_error *err);

/* Free a's children (oa2_config_free). */
void oa2_account_children_free(struct oa2_account *a);

/* Swap the credential in use and the next one (see struct oa2_account). */
void oa2_account_rotate(struct oa2_account *a);

/* Whether a has a usable next credential. */
int oa2_account_has_next(const struct oa2_account *a);

/*
 * When the credential in use (next 0) or the other one (next 1)
 * expires: a certificate's notAfter or client_secret_expires; 0 when
 * unknown or absent.
 */
time_t oa2_account_expires(const struct oa2_account *a, int next);

/*
 * "the current client secret", "the next certificate": what the one in
 * use (next 0) or the other (next 1) is called in the file.
 */
const char *oa2_account_cred_name(const struct oa2_account *a, int next);

/*
 * Log at warning level, through lg, each credential of a that expires
 * within its expiry_warning, at most once a day (a->expiry_warned).
 * Called on every token look-up (oa2_token_get), under a->lock.
 */
void oa2_account_expiry_warn(struct oa2_account *a, const struct oa2_log *lg,
    time_t now);

#endif
