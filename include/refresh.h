/*
 * Delegated accounts (provider = "microsoft" | "google"): a mailbox
 * signs in once (`sasl-oauth2 login`), its refresh token lives in
 * token_file, and plugin/cred-refresh.c trades it for access tokens,
 * writing a rotated one back before the access token is used.
 *
 * Internal to the plugin and the command; not installed.
 */
#ifndef OA2_REFRESH_H
#define OA2_REFRESH_H

#include <sys/types.h>
#include <time.h>
#include "error.h"
#include "token.h"

struct oa2_account;

#define OA2_PROVIDER_MICROSOFT	1
#define OA2_PROVIDER_GOOGLE	2

/* A delegated account's settings (a->data of oa2_cred_refresh). */
struct oa2_refresh {
	int	provider;		/* OA2_PROVIDER_* */
	char	*token_file;
	char	*client_secret;		/* NULL: a public client */
	char	*authorization_endpoint;
	char	*token_endpoint;	/* == the account's token_url */
	char	*device_endpoint;	/* NULL: no device flow */
	char	*revocation_endpoint;	/* NULL: none */
};

/* What token_file holds; refresh_token is a secret. */
struct oa2_refresh_file {
	char	*refresh_token;
	char	*email;			/* who signed in; NULL: unknown */
	char	*scope;			/* granted; NULL: unknown */
	time_t	signed_in;		/* login */
	time_t	refreshed;		/* the refresh token was last issued */
	uid_t	uid;			/* the file's owner and group, as */
	gid_t	gid;			/* read (oa2_refresh_read) */
};

/* a's settings when it is a delegated account, else NULL. */
const struct oa2_refresh *oa2_refresh_of(const struct oa2_account *a);

/* "microsoft" or "google". */
const char *oa2_refresh_provider_name(int provider);

/*
 * Read token_file (a private file: owner root or the effective user,
 * mode 0600, a regular file, at most 64 KB) into rf (cleared on entry).
 */
int oa2_refresh_read(const char *path, struct oa2_refresh_file *rf,
    struct oa2_error *err);

/*
 * Write rf to path atomically: a new file in the same directory, mode
 * 0600 (owned by uid/gid unless they are (uid_t)-1), written, fsync'ed,
 * renamed over path, the directory fsync'ed. A process killed at any
 * moment leaves either the old file or the new one, whole.
 */
int oa2_refresh_write(const char *path, const struct oa2_refresh_file *rf,
    uid_t uid, gid_t gid, struct oa2_error *err);

/*
 * Delete the token file at path (absent: not an error) and every
 * temporary file a writer killed before its rename left beside it
 * (path.XXXXXX, owned by the effective user, or by anyone when that is
 * root), whatever its age: each may hold a refresh token.
 */
int oa2_refresh_remove(const char *path, struct oa2_error *err);

/* Wipe and free rf's contents. Accepts NULL. */
void oa2_refresh_file_clear(struct oa2_refresh_file *rf);

/*
 * POST form to a's token endpoint and read the answer: the access token
 * into tok, and into rf (not cleared: fields the answer has replace
 * those it holds) the refresh token, the scope granted and the email of
 * the id_token. An invalid_grant refusal is OA2_ERR_DENIED with "the
 * sign-in for USER is no longer valid (...): run sasl-oauth2 login
 * USER"; *code is an AADSTS code or 0.
 */
int oa2_refresh_exchange(const struct oa2_account *a, const char *form,
    size_t formlen, const struct oa2_log *lg, time_t now, long timeout,
    struct oa2_token *tok, struct oa2_refresh_file *rf, long *code,
    struct oa2_error *err);

struct oa2_http_response;

/* POST form to url (NULL: a's token endpoint) with a's CA. */
int oa2_refresh_post(const struct oa2_account *a, const char *url,
    const char *form, size_t formlen, long timeout,
    const struct oa2_log *lg, struct oa2_http_response *resp,
    struct oa2_error *err);

/* Read a token endpoint's answer as oa2_refresh_exchange does. */
int oa2_refresh_answer(const struct oa2_account *a, long status,
    const char *body, size_t len, time_t now, struct oa2_token *tok,
    struct oa2_refresh_file *rf, long *code, struct oa2_error *err);

#endif
