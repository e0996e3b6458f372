/*
 * One error space for the core: negative codes, a caller-owned detail
 * buffer that holds the sentence a mail admin reads, and a log sink.
 */
#ifndef OA2_ERROR_H
#define OA2_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#define OA2_OK			0
#define OA2_ERR_NOMEM		-1	/* out of memory */
#define OA2_ERR_CONFIG		-2	/* the configuration is invalid */
#define OA2_ERR_NOACCOUNT	-3	/* no account matches the mailbox */
#define OA2_ERR_CREDENTIAL	-4	/* secret, key or certificate unusable */
#define OA2_ERR_NETWORK		-5	/* connect, TLS, DNS or timeout */
#define OA2_ERR_RESPONSE	-6	/* the token endpoint answered garbage */
#define OA2_ERR_DENIED		-7	/* permanent OAuth error from the endpoint */
#define OA2_ERR_TRANSIENT	-8	/* 429, 5xx, temporarily_unavailable */
#define OA2_ERR_CACHE		-9	/* token cache unusable */
#define OA2_ERR_REJECTED	-10	/* the mail server refused the token */
#define OA2_ERR_INTERNAL	-11	/* a bug or a broken library */

#define OA2_ERRMSG_MAX		512

/* The detail of the last failure: code and one sentence. */
struct oa2_error {
	int	code;
	char	msg[OA2_ERRMSG_MAX];
};

/* A short generic text for a code ("out of memory"); never NULL. */
const char *oa2_strerror(int code);

/*
 * Set err (if not NULL) to code and a printf-formatted sentence.
 * Returns code, so that callers can write "return oa2_seterr(...)".
 * Never put a secret in the format arguments.
 */
int oa2_seterr(struct oa2_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clear err to OA2_OK and an empty message. */
void oa2_clearerr(struct oa2_error *err);

/*
 * Copy untrusted text (a server's error_description, a challenge) into
 * dst, replacing control and non-ASCII bytes by '?' and truncating to
 * at most max characters (with "..." when cut). dst holds dstlen bytes.
 */
void oa2_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen,
    size_t max);

/* Log levels, as in the config's log_level. */
#define OA2_LOG_ERROR	0
#define OA2_LOG_WARNING	1
#define OA2_LOG_INFO	2
#define OA2_LOG_DEBUG	3

/*
 * Where the core logs: the plugin passes the SASL log callback, the
 * tool stderr. A NULL sink or fn drops messages. level caps verbosity.
 */
struct oa2_log {
	void	(*fn)(void *ctx, int level, const char *msg);
	void	*ctx;
	int	level;
};

void oa2_log(const struct oa2_log *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "error", "warning", "info", "debug" -> level, or -1. */
int oa2_log_level_parse(const char *name);

#endif
