/*
 * The client-credentials grant: the request, the response, its errors.
 */
#ifndef OA2_TOKEN_H
#define OA2_TOKEN_H

#include <stddef.h>
#include <time.h>
#include "error.h"

struct oa2_account;

/* An access token; the string is a secret. */
struct oa2_token {
	char	*access_token;		/* NULL when empty */
	time_t	expires_at;
};

/* The longest access token taken from an endpoint or the cache. */
#define OA2_TOKEN_MAX	(32 * 1024)

/*
 * Whether s (len bytes) can be an access token: 1 to OA2_TOKEN_MAX
 * printable ASCII bytes, no space. Every token that enters the caches
 * is checked so, wherever it comes from.
 */
int oa2_token_printable(const char *s, size_t len);

/* Wipe and free the token string and zero the struct. Accepts NULL. */
void oa2_token_clear(struct oa2_token *tok);

/* Copy src into dst (dst cleared first). OA2_OK or OA2_ERR_NOMEM. */
int oa2_token_copy(struct oa2_token *dst, const struct oa2_token *src);

/*
 * Parse a token endpoint answer (HTTP status and body). On success out
 * holds the token (expires_at = now + expires_in). On an Entra error
 * body the sentence carries error, the AADSTS code and its meaning;
 * the code is OA2_ERR_DENIED (permanent) or OA2_ERR_TRANSIENT.
 */
int oa2_token_parse(long status, const char *body, size_t len, time_t now,
    struct oa2_token *out, struct oa2_error *err);

/*
 * Ask the account's token endpoint for a token (client secret or
 * signed assertion). Never logs a secret.
 */
int oa2_token_fetch(const struct oa2_account *acct, const struct oa2_log *lg,
    time_t now, struct oa2_token *out, struct oa2_error *err);

/*
 * One request with the account's credential in use only (no rollover
 * to the next one); *code is the AADSTS code of a refusal, or 0. For
 * `sasl-oauth2 test`, which tries each credential.
 */
int oa2_token_fetch_cred(const struct oa2_account *acct,
    const struct oa2_log *lg, time_t now, struct oa2_token *out, long *code,
    struct oa2_error *err);

/*
 * Whether an AADSTS code refuses the credential itself (a wrong or
 * expired secret, an unknown certificate): then a next credential is
 * worth trying (rollover).
 */
int oa2_aadsts_credential(long code);

/* What an AADSTS code means, in a few words; NULL when unknown. */
const char *oa2_aadsts_meaning(long code);

#endif
