/*
 * One HTTPS request with libcurl (POST or GET): verified TLS, timeouts,
 * a capped body; plain http:// only where a caller allows it, and then
 * only to a loopback or link-local peer (Azure's managed-identity
 * endpoints).
 */
#ifndef OA2_HTTP_H
#define OA2_HTTP_H

#include <stddef.h>
#include "error.h"

#define OA2_HTTP_POST	0
#define OA2_HTTP_GET	1

struct oa2_http_request {
	const char	*url;		/* https only (see allow_http) */
	int		method;		/* OA2_HTTP_POST (0) or OA2_HTTP_GET */
	const char	*body;		/* POST: x-www-form-urlencoded */
	size_t		bodylen;
	/*
	 * Extra request headers, "Name: value" each, NULL-terminated, or
	 * NULL. Values may be secrets (a key, an Authorization): the
	 * copies libcurl makes are wiped before they are freed.
	 */
	const char *const *headers;
	/*
	 * 1: an http:// URL is allowed, but only when the address actually
	 * connected to is loopback (127.0.0.0/8, ::1) or link-local
	 * (169.254.0.0/16, fe80::/10); never through a proxy. https:// URLs
	 * are unaffected. 0: https only.
	 */
	int		allow_http;
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
	/*
	 * The WWW-Authenticate header's value (the last one), trimmed, or
	 * "" when there was none or it was longer than the buffer.
	 */
	char	www_authenticate[512];
};

/*
 * Send req (POST or GET) and fill resp (cleared on entry). Redirects are
 * never followed. Transport failures (DNS, connect, TLS, timeout, body
 * too large) return OA2_ERR_NETWORK or OA2_ERR_RESPONSE with a sentence;
 * a URL that is not https:// (or, with allow_http, http://) and an
 * http:// peer that is neither loopback nor link-local are
 * OA2_ERR_CONFIG; any HTTP status is OA2_OK.
 * In a setuid or setgid process no proxy is taken from the environment,
 * and while SSLKEYLOGFILE is set nothing is sent (OA2_ERR_CONFIG).
 */
int oa2_http_post(const struct oa2_http_request *req,
    struct oa2_http_response *resp, struct oa2_error *err);

/*
 * Whether the numeric address text (IPv4 or IPv6, brackets allowed) is
 * loopback or link-local: 1 yes, 0 no, -1 not a numeric address.
 */
int oa2_http_local_address(const char *host);

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
