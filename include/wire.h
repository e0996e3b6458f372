/*
 * What goes over the wire: the XOAUTH2 and OAUTHBEARER client
 * responses, the server's error challenge, base64url.
 */
#ifndef OA2_WIRE_H
#define OA2_WIRE_H

#include <stddef.h>
#include "error.h"

/*
 * A value that goes into a SASL response (what: "mailbox", "server
 * name", ...) must hold no control character (0x00-0x1f, 0x7f): \001
 * separates the fields, so one in a mailbox could add an
 * "auth=Bearer" of the caller's choosing. OA2_OK, or OA2_ERR_CONFIG
 * with a sentence showing the value sanitised.
 */
int oa2_wire_check(const char *what, const char *s, struct oa2_error *err);

/*
 * "user=M\1auth=Bearer T\1\1". *out is a new buffer holding the token:
 * free with oa2_freezero(*out, *outlen). Returns OA2_OK, OA2_ERR_NOMEM, or
 * OA2_ERR_CONFIG when user or token holds a control character.
 */
int oa2_xoauth2_response(const char *user, const char *token,
    char **out, size_t *outlen);

/*
 * RFC 7628: "n,a=Z,\1host=H\1port=P\1auth=Bearer T\1\1" with '=' and ','
 * in the authzid escaped; host and port are left out when NULL or "".
 * Ownership and errors as for oa2_xoauth2_response (any of the four
 * fields with a control character: OA2_ERR_CONFIG).
 */
int oa2_oauthbearer_response(const char *authzid, const char *host,
    const char *port, const char *token, char **out, size_t *outlen);

/*
 * The same two responses from a token of toklen bytes (not necessarily
 * NUL-terminated), as the token cache stores it, built in one
 * allocation with the token copied once; *out ends with the token and
 * "\1\1". Only the other fields are checked for control characters:
 * the token must come from the cache, which admits only printable ASCII
 * without spaces (oa2_token_parse, and the disk cache's reader), so the
 * warm path does not scan a 2 KB token on every login. Ownership and
 * errors as above.
 */
int oa2_xoauth2_response_len(const char *user, const char *token,
    size_t toklen, char **out, size_t *outlen);
int oa2_oauthbearer_response_len(const char *authzid, const char *host,
    const char *port, const char *token, size_t toklen, char **out,
    size_t *outlen);

/*
 * Describe a server's error challenge (JSON such as
 * {"status":"401","schemes":"bearer","scope":"mail"}) in dst as
 * "status 401, scope mail", sanitised; unparsable input is described
 * as such. Always NUL-terminates dst.
 */
void oa2_challenge_describe(const char *in, size_t len, char *dst,
    size_t dstlen);

/* Unpadded base64url of len bytes; a new string, NULL when out of memory. */
char *oa2_b64url_encode(const void *data, size_t len);

/*
 * Decode unpadded (or padded) base64url into a new NUL-terminated
 * buffer. Returns OA2_OK, OA2_ERR_NOMEM, or OA2_ERR_RESPONSE when the
 * input is not base64url.
 */
int oa2_b64url_decode(const char *in, size_t len, unsigned char **out,
    size_t *outlen);

#endif
