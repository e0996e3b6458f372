/*
 * One HTTPS POST with libcurl: verified TLS, timeouts, a capped body.
 */
#ifndef OA2_HTTP_H
#define OA2_HTTP_H

#include <stddef.h>
#include "error.h"

struct oa2_http_request {
	const char	*url;		/* https only */
	const char	*body;		/* application/x-www-form-urlencoded */
	size_t		bodylen;
	const char	*ca_data;	/* PEM bundle in memory, or NULL */
	size_t		ca_len;
	const char	*ca_name;	/* for messages (ca_file path), or NULL */
	long		timeout;	/* seconds, whole request */
	size_t		max_body;	/* larger answers are an error */
};

struct oa2_http_response {
	long	status;
	char	*body;			/* NUL-terminated; may hold a token */
	size_t	len;
	long	retry_after;		/* seconds from Retry-After, or -1 */
	char	location[128];		/* host:port a redirect names, or "" */
};

/*
 * POST req and fill resp (cleared on entry). Transport failures
 * (DNS, connect, TLS, timeout, body too large) return OA2_ERR_NETWORK
 * or OA2_ERR_RESPONSE with a sentence; any HTTP status is OA2_OK.
 * In a setuid or setgid process no proxy is taken from the environment,
 * and while SSLKEYLOGFILE is set nothing is sent (OA2_ERR_CONFIG).
 */
int oa2_http_post(const struct oa2_http_request *req,
    struct oa2_http_response *resp, struct oa2_error *err);

/*
 * Initialise libcurl for the process (curl_global_init), except in a
 * setuid or setgid process with SSLKEYLOGFILE set: libcurl would open
 * that file as it initialises. Returns OA2_OK or OA2_ERR_INTERNAL.
 * oa2_http_global_cleanup() undoes what it did. Not thread-safe: call
 * them under the caller's own lock, paired.
 */
int oa2_http_global_init(void);
void oa2_http_global_cleanup(void);

/* Whether the process is setuid or setgid (getauxval(AT_SECURE)). */
int oa2_http_secure(void);

/* Wipe and free the body. Accepts NULL. */
void oa2_http_response_clear(struct oa2_http_response *resp);

/*
 * Append "&name=value" (no '&' when *form is empty) to the growing form
 * *form of length *len, URL-encoding value. The old buffer is wiped.
 */
int oa2_form_add(char **form, size_t *len, const char *name,
    const char *value);

#endif
