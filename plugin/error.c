/* The error space and the log sink. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

const char *
oa2_strerror(int code)
{
	switch (code) {
	case OA2_OK:		return "success";
	case OA2_ERR_NOMEM:	return "out of memory";
	case OA2_ERR_CONFIG:	return "invalid configuration";
	case OA2_ERR_NOACCOUNT:	return "no account matches the mailbox";
	case OA2_ERR_CREDENTIAL: return "credential unusable";
	case OA2_ERR_NETWORK:	return "token endpoint unreachable";
	case OA2_ERR_RESPONSE:	return "invalid answer from the token endpoint";
	case OA2_ERR_DENIED:	return "token request refused";
	case OA2_ERR_TRANSIENT:	return "token endpoint temporarily unavailable";
	case OA2_ERR_CACHE:	return "token cache unusable";
	case OA2_ERR_REJECTED:	return "the mail server rejected the token";
	case OA2_ERR_INTERNAL:	return "internal error";
	default:		return "unknown error";
	}
}

int
oa2_seterr(struct oa2_error *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

void
oa2_clearerr(struct oa2_error *err)
{
	if (err == NULL)
		return;
	err->code = OA2_OK;
	err->msg[0] = '\0';
}

void
oa2_sanitize(char *dst, size_t dstlen, const char *src, size_t srclen,
    size_t max)
{
	size_t i, n = 0;

	if (dstlen == 0)
		return;
	if (max > dstlen - 4)
		max = dstlen - 4;
	for (i = 0; i < srclen && src[i] != '\0'; i++) {
		unsigned char c = (unsigned char)src[i];

		if (n == max) {
			memcpy(dst + n, "...", 3);
			n += 3;
			break;
		}
		dst[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	dst[n] = '\0';
}

void
oa2_log(const struct oa2_log *lg, int level, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	if (lg == NULL || lg->fn == NULL || level > lg->level)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	lg->fn(lg->ctx, level, buf);
}

int
oa2_log_level_parse(const char *name)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	int i;

	for (i = 0; i < 4; i++)
		if (strcmp(name, names[i]) == 0)
			return i;
	return -1;
}
