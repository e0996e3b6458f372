/*
 * Where tokens come from: the in-memory cache, the disk cache (one
 * file per credential, flock single flight, atomic rename), and only
 * then the token endpoint.
 */
#ifndef OA2_CACHE_H
#define OA2_CACHE_H

#include <time.h>
#include "error.h"
#include "token.h"

struct oa2_account;

#define OA2_FROM_MEMORY	1
#define OA2_FROM_DISK	2
#define OA2_FROM_SERVER	3

/*
 * A token for acct valid for at least refresh_margin more seconds, into
 * out (a copy; clear it with oa2_token_clear). *from (if not NULL) says
 * where it came from; err may be NULL. Thread-safe: one request at a
 * time per account, and per credential across processes (flock); a
 * caller that waited for another's request takes its outcome, and
 * every caller returns within acct->timeout + 1 s.
 *
 * A permanent refusal of the token endpoint (OA2_ERR_DENIED) is
 * remembered for acct->failure_backoff seconds, in the disk cache (or in
 * memory without one): until then every call fails at once with the
 * same sentence and "(remembered; next attempt in N s)". A different
 * credential has another cache file, a changed config file does not
 * honour the record, and `sasl-oauth2 cache clear` removes it.
 * Any other failure (transient or not) is kept only for the callers
 * that waited for its request, never for a call that begins after it.
 */
int oa2_token_get(struct oa2_account *acct, const struct oa2_log *lg,
    struct oa2_token *out, int *from, struct oa2_error *err);

/*
 * As oa2_token_get, but instead of copying the token out, call
 * use(arg, token, len) once with the cached token and its stored length
 * while the account is locked: the token is valid only during the call
 * (never keep the pointer), holds only printable ASCII without spaces,
 * and is not NUL-terminated as far as use may know. A nonzero return of
 * use (an OA2_ERR_* code) is returned as it is (OA2_ERR_NOMEM with "out
 * of memory" in err). This is how the
 * plugin builds its response straight from the cache: one copy of the
 * token per login, and one wipe.
 */
typedef int (*oa2_token_use_fn)(void *arg, const struct oa2_token *tok,
    size_t len);
int oa2_token_use(struct oa2_account *acct, const struct oa2_log *lg,
    oa2_token_use_fn use, void *arg, int *from, struct oa2_error *err);

/*
 * The mail server refused token. A token that came from the endpoint
 * less than acct->failure_backoff seconds ago is kept: a new one would
 * be refused alike (a missing permission, SMTP AUTH turned off), so no
 * new token is asked for until it is that old; returns the seconds
 * left. An older one is dropped from memory and disk (only if the cache
 * still holds that same token): returns 0, and the next login asks.
 */
long oa2_token_forget(struct oa2_account *acct, const struct oa2_log *lg,
    const char *token);

/* The same for a token of toklen bytes, not necessarily NUL-terminated. */
long oa2_token_forget_len(struct oa2_account *acct,
    const struct oa2_log *lg, const char *token, size_t toklen);

/*
 * Hold the lock file of acct's credential (docs/cache.md), as a token
 * request does while it asks the endpoint and writes what it got,
 * waiting up to acct's timeout: for `sasl-oauth2 logout`, so that a
 * refresh running in another process ends before the token file is
 * revoked and removed, and cannot put it back. *lock goes to
 * oa2_cache_unlock. OA2_OK, also without a disk cache or a usable lock
 * file (nothing to wait for); OA2_ERR_TRANSIENT with the sentence when
 * another process held it throughout.
 */
int oa2_cache_lock(const struct oa2_account *acct, int *lock,
    struct oa2_error *err);
void oa2_cache_unlock(int lock);

/* Path of acct's cache file in a new string, or NULL (memory only). */
char *oa2_cache_file(const struct oa2_account *acct);

/*
 * The directory holding acct's cache files, in a new string, or NULL
 * (memory only): cache_dir itself when it is private (owned by the
 * effective uid, not sticky), else its subdirectory "uid-N" for the
 * effective uid N (docs/cache.md, "The directory").
 */
char *oa2_cache_dir(const struct oa2_account *acct);

/*
 * Whether the plugin would use cache directory dir (configured path),
 * creating nothing: OA2_OK when usable or when what is missing would be
 * made on first use; else OA2_ERR_CACHE with the sentence.
 */
int oa2_cache_check(const char *dir, struct oa2_error *err);

/*
 * Read acct's disk cache entry (for `sasl-oauth2 cache list`): expiry
 * into *expires_at (0 when the file holds no token). OA2_OK;
 * OA2_ERR_DENIED with the sentence in err while the file holds a
 * remembered refusal and no token; OA2_ERR_CACHE when absent or
 * unreadable.
 */
int oa2_cache_peek(const struct oa2_account *acct, time_t *expires_at,
    struct oa2_error *err);

#endif
