/*
 * The client responses of XOAUTH2 and OAUTHBEARER (RFC 7628), the
 * server's error challenge, and base64url.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "secret.h"
#include "wire.h"

/* One piece of a response: n bytes at s. */
struct part {
	const char	*s;
	size_t		n;
};

/*
 * Concatenate the n parts into one new buffer of exactly their total
 * length (no NUL counted in *outlen, one added): one allocation.
 */
static int
concat(char **out, size_t *outlen, const struct part *parts, size_t n)
{
	size_t i, len = 0;
	char *p;

	*out = NULL;
	*outlen = 0;
	for (i = 0; i < n; i++)
		len += parts[i].n;
	if ((p = malloc(len + 1)) == NULL)
		return OA2_ERR_NOMEM;
	*out = p;
	*outlen = len;
	for (i = 0; i < n; i++) {
		memcpy(p, parts[i].s, parts[i].n);
		p += parts[i].n;
	}
	*p = '\0';
	return OA2_OK;
}

#define PART(lit)	{ lit, sizeof(lit) - 1 }
#define STR(s)		{ s, strlen(s) }

/* The first control character (0x00-0x1f, 0x7f) in s, or NULL. */
static const char *
control_char(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return s;
	return NULL;
}

int
oa2_wire_check(const char *what, const char *s, struct oa2_error *err)
{
	char shown[128];
	const char *c;

	if (s == NULL || (c = control_char(s)) == NULL)
		return OA2_OK;
	oa2_sanitize(shown, sizeof(shown), s, strlen(s), 100);
	return oa2_seterr(err, OA2_ERR_CONFIG, "the %s \"%s\" holds a control "
	    "character (0x%02x at offset %zu): refused, since it could add "
	    "fields to the SASL response", what, shown, (unsigned char)*c,
	    (size_t)(c - s));
}

int
oa2_xoauth2_response_len(const char *user, const char *token, size_t toklen,
    char **out, size_t *outlen)
{
	const struct part parts[] = {
		PART("user="), STR(user), PART("\001auth=Bearer "),
		{ token, toklen }, PART("\001\001")
	};

	*out = NULL;
	*outlen = 0;
	if (control_char(user) != NULL)
		return OA2_ERR_CONFIG;
	return concat(out, outlen, parts, sizeof(parts) / sizeof(parts[0]));
}

int
oa2_xoauth2_response(const char *user, const char *token, char **out,
    size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (control_char(token) != NULL)
		return OA2_ERR_CONFIG;
	return oa2_xoauth2_response_len(user, token, strlen(token), out,
	    outlen);
}

int
oa2_oauthbearer_response_len(const char *authzid, const char *host,
    const char *port, const char *token, size_t toklen, char **out,
    size_t *outlen)
{
	int has_host = host != NULL && *host != '\0';
	int has_port = port != NULL && *port != '\0';
	const struct part tail[] = {
		PART(",\001"),
		PART("host="), STR(has_host ? host : ""), PART("\001"),
		PART("port="), STR(has_port ? port : ""), PART("\001"),
		PART("auth=Bearer "), { token, toklen }, PART("\001\001")
	};
	size_t alen, len, i;
	char *p;

	*out = NULL;
	*outlen = 0;
	if (control_char(authzid) != NULL ||
	    (has_host && control_char(host) != NULL) ||
	    (has_port && control_char(port) != NULL))
		return OA2_ERR_CONFIG;
	/* "n,a=" and the authzid as an RFC 5801 saslname, escaped */
	alen = strlen(authzid);
	len = 4 + alen;
	for (i = 0; i < alen; i++)
		if (authzid[i] == '=' || authzid[i] == ',')
			len += 2;
	for (i = 0; i < sizeof(tail) / sizeof(tail[0]); i++)
		if ((has_host || i < 1 || i > 3) && (has_port || i < 4 || i > 6))
			len += tail[i].n;
	if ((p = malloc(len + 1)) == NULL)
		return OA2_ERR_NOMEM;
	*out = p;
	*outlen = len;
	memcpy(p, "n,a=", 4);
	p += 4;
	for (i = 0; i < alen; i++) {
		if (authzid[i] == '=' || authzid[i] == ',') {
			memcpy(p, authzid[i] == '=' ? "=3D" : "=2C", 3);
			p += 3;
		} else
			*p++ = authzid[i];
	}
	for (i = 0; i < sizeof(tail) / sizeof(tail[0]); i++)
		if ((has_host || i < 1 || i > 3) && (has_port || i < 4 || i > 6)) {
			memcpy(p, tail[i].s, tail[i].n);
			p += tail[i].n;
		}
	*p = '\0';
	return OA2_OK;
}

int
oa2_oauthbearer_response(const char *authzid, const char *host,
    const char *port, const char *token, char **out, size_t *outlen)
{
	*out = NULL;
	*outlen = 0;
	if (control_char(token) != NULL)
		return OA2_ERR_CONFIG;
	return oa2_oauthbearer_response_len(authzid, host, port, token,
	    strlen(token), out, outlen);
}

void
oa2_challenge_describe(const char *in, size_t len, char *dst, size_t dstlen)
{
	char status[64], scope[128];
	const char *st, *sc;
	json_t *root, *v;

	if (dstlen == 0)
		return;
	root = json_loadb(in, len, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(root)) {
		json_decref(root);
		oa2_sanitize(status, sizeof(status), in, len, 48);
		snprintf(dst, dstlen, "an unparsable challenge \"%s\"", status);
		return;
	}
	v = json_object_get(root, "status");
	st = json_is_string(v) ? json_string_value(v) : "unknown";
	v = json_object_get(root, "scope");
	sc = json_is_string(v) ? json_string_value(v) : NULL;
	oa2_sanitize(status, sizeof(status), st, strlen(st), 48);
	if (sc != NULL) {
		oa2_sanitize(scope, sizeof(scope), sc, strlen(sc), 100);
		snprintf(dst, dstlen, "status %s, scope %s", status, scope);
	} else
		snprintf(dst, dstlen, "status %s", status);
	json_decref(root);
}

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *
oa2_b64url_encode(const void *data, size_t len)
{
	const unsigned char *s = data;
	char *out, *p;
	size_t i;

	if ((out = malloc(len / 3 * 4 + 4 + 1)) == NULL)
		return NULL;
	p = out;
	for (i = 0; i + 2 < len; i += 3) {
		*p++ = b64url[s[i] >> 2];
		*p++ = b64url[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*p++ = b64url[((s[i + 1] & 15) << 2) | (s[i + 2] >> 6)];
		*p++ = b64url[s[i + 2] & 63];
	}
	if (len - i == 1) {
		*p++ = b64url[s[i] >> 2];
		*p++ = b64url[(s[i] & 3) << 4];
	} else if (len - i == 2) {
		*p++ = b64url[s[i] >> 2];
		*p++ = b64url[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
		*p++ = b64url[(s[i + 1] & 15) << 2];
	}
	*p = '\0';
	return out;
}

int
oa2_b64url_decode(const char *in, size_t len, unsigned char **out,
    size_t *outlen)
{
	unsigned char *buf;
	unsigned long acc = 0;
	size_t i, n = 0;
	int bits = 0;

	*out = NULL;
	*outlen = 0;
	while (len > 0 && in[len - 1] == '=')
		len--;
	if (len % 4 == 1)
		return OA2_ERR_RESPONSE;
	if ((buf = malloc(len / 4 * 3 + 3 + 1)) == NULL)
		return OA2_ERR_NOMEM;
	for (i = 0; i < len; i++) {
		const char *c = in[i] != '\0' ? strchr(b64url, in[i]) : NULL;

		if (c == NULL) {
			free(buf);
			return OA2_ERR_RESPONSE;
		}
		acc = (acc << 6) | (unsigned long)(c - b64url);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (unsigned char)(acc >> bits);
			acc &= (1UL << bits) - 1;
		}
	}
	buf[n] = '\0';
	*out = buf;
	*outlen = n;
	return OA2_OK;
}
