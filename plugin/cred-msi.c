/*
 * Azure managed identity: the host's own identity (system-assigned) or
 * one assigned to it (user-assigned, named by its client id) gets the
 * token, from an endpoint on the host or beside it; no secret anywhere.
 *
 * Three endpoints, each with its protocol (MSAL's managed_identity.py
 * and Microsoft's pages on each, cited in sasl-oauth2.conf(5)):
 *
 *   IMDS (Azure VMs): GET http://169.254.169.254/metadata/identity/
 *     oauth2/token?api-version=2018-02-01&resource=R[&client_id=C] with
 *     "Metadata: true"; the answer has expires_in.
 *   App Service, Functions: GET $IDENTITY_ENDPOINT?api-version=
 *     2019-08-01&resource=R[&client_id=C] with "X-IDENTITY-HEADER:
 *     $IDENTITY_HEADER"; the answer has expires_on (epoch seconds).
 *   Azure Arc (servers outside Azure): GET $IDENTITY_ENDPOINT?
 *     api-version=2020-06-01&resource=R with "Metadata: true"; the agent
 *     answers 401 "WWW-Authenticate: Basic realm=PATH", PATH a key file
 *     in /var/opt/azcmagent/tokens/ that only root and the himds group
 *     can read; the request is repeated with "Authorization: Basic KEY".
 *     System-assigned only.
 *
 * These endpoints are plain HTTP: http.c allows it here only, and only
 * to a loopback or link-local address (allow_http).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "msi.h"
#include "secret.h"
#include "token.h"

#define MAX_ANSWER	(64 * 1024)
#define MAX_EXPIRES	(366L * 86400)
#define IMDS_URL	"http://169.254.169.254/metadata/identity/oauth2/token"
#define ARC_URL		"http://localhost:40342/metadata/identity/oauth2/token"
#define ARC_HIMDS	"/var/opt/azcmagent/bin/himds"

const char *
oa2_msi_protocol_name(int protocol)
{
	switch (protocol) {
	case OA2_MSI_IMDS:
		return "the instance metadata service (IMDS)";
	case OA2_MSI_APP_SERVICE:
		return "the App Service identity endpoint";
	case OA2_MSI_ARC:
		return "the Azure Arc agent";
	default:
		return "no managed-identity endpoint";
	}
}

const char *
oa2_msi_arc_dir(void)
{
	const char *d = secure_getenv("SASL_OAUTH2_ARC_TOKEN_DIR");

	return d != NULL && *d == '/' ? d : OA2_MSI_ARC_DIR;
}

int
oa2_msi_check_endpoint(const char *url, struct oa2_error *err)
{
	const char *host, *end;
	char h[80];
	size_t n;

	if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else
		return oa2_seterr(err, OA2_ERR_CONFIG, "an http:// or "
		    "https:// URL is needed");
	if (strpbrk(url, " \t\r\n") != NULL || strlen(url) >= 400)
		return oa2_seterr(err, OA2_ERR_CONFIG, "a URL without "
		    "blanks, shorter than 400 characters, is needed");
	if (strchr(url, '#') != NULL)
		return oa2_seterr(err, OA2_ERR_CONFIG, "a URL without "
		    "a #fragment is needed");
	if (url[4] == 's' || url[4] == 'S')
		return OA2_OK;
	/* host[:port]: a bracketed IPv6 address keeps its colons */
	end = host + strcspn(host, "/?");
	if (memchr(host, '@', (size_t)(end - host)) != NULL)
		return oa2_seterr(err, OA2_ERR_CONFIG, "a URL without a "
		    "user name or password is needed");
	if (*host == '[') {
		const char *rb = memchr(host, ']', (size_t)(end - host));

		n = rb != NULL ? (size_t)(rb + 1 - host) : 0;
	} else {
		const char *colon = memchr(host, ':', (size_t)(end - host));

		n = (size_t)((colon != NULL ? colon : end) - host);
	}
	if (n == 0 || n >= sizeof(h))
		return oa2_seterr(err, OA2_ERR_CONFIG, "the URL has no "
		    "host");
	memcpy(h, host, n);
	h[n] = '\0';
	if (oa2_http_local_address(h) == 0) {
		char s[80];

		oa2_sanitize(s, sizeof(s), h, n, 60);
		return oa2_seterr(err, OA2_ERR_CONFIG, "plain http:// to "
		    "%s, which is neither loopback nor link-local, is "
		    "refused: http:// is allowed only to the host itself "
		    "(App Service, the Arc agent) or 169.254.169.254 (IMDS); "
		    "use https:// for anything else", s);
	}
	return OA2_OK;
}

static int
set_url(struct oa2_msi_target *t, const char *url, struct oa2_error *err)
{
	if (strlen(url) >= sizeof(t->url))
		return oa2_seterr(err, OA2_ERR_CONFIG, "the managed-identity "
		    "endpoint URL is longer than %zu characters",
		    sizeof(t->url) - 1);
	memcpy(t->url, url, strlen(url) + 1);
	return OA2_OK;
}

int
oa2_msi_target(const struct oa2_msi *m, struct oa2_msi_target *t,
    struct oa2_error *err)
{
	const char *ie, *ih, *imds;
	struct oa2_error bad;

	memset(t, 0, sizeof(*t));
	if (m->endpoint != NULL) {
		t->protocol = m->protocol;
		t->header = m->header;
		t->source = "from managed_identity_endpoint";
		return set_url(t, m->endpoint, err);
	}
	ie = secure_getenv("IDENTITY_ENDPOINT");
	ih = secure_getenv("IDENTITY_HEADER");
	imds = secure_getenv("IMDS_ENDPOINT");
	if (ie != NULL && *ie != '\0' && ih != NULL && *ih != '\0') {
		t->protocol = OA2_MSI_APP_SERVICE;
		t->header = ih;
		t->source = "from IDENTITY_ENDPOINT and IDENTITY_HEADER";
	} else if (ie != NULL && *ie != '\0' && imds != NULL &&
	    *imds != '\0') {
		t->protocol = OA2_MSI_ARC;
		t->source = "from IDENTITY_ENDPOINT and IMDS_ENDPOINT";
	} else if (access(ARC_HIMDS, F_OK) == 0) {
		t->protocol = OA2_MSI_ARC;
		t->source = "the Arc agent is installed: " ARC_HIMDS;
		return set_url(t, ARC_URL, err);
	} else {
		t->protocol = OA2_MSI_IMDS;
		t->source = "the default: no IDENTITY_ENDPOINT in the "
		    "environment";
		return set_url(t, IMDS_URL, err);
	}
	if (oa2_msi_check_endpoint(ie, &bad) != 0)
		return oa2_seterr(err, OA2_ERR_CONFIG, "IDENTITY_ENDPOINT in "
		    "the environment: %s", bad.msg);
	return set_url(t, ie, err);
}

/* A number of seconds, JSON integer or string of digits; -1 if not. */
static long long
json_seconds(const json_t *v)
{
	const char *s;
	char *end;
	long long n;

	if (json_is_integer(v))
		return json_integer_value(v) >= 0 ?
		    (long long)json_integer_value(v) : -1;
	if (!json_is_string(v))
		return -1;
	s = json_string_value(v);
	if (*s < '0' || *s > '9' || json_string_length(v) > 19)
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	return n;
}

/* The error text of the three answer shapes, sanitised. */
static void
error_text(json_t *root, char *code, size_t codelen, char *desc,
    size_t desclen)
{
	const json_t *e, *d;

	*code = *desc = '\0';
	e = json_object_get(root, "error");
	d = json_object_get(root, "error_description");
	if (json_is_object(e)) {		/* {"error":{"code","message"}} */
		d = json_object_get(e, "message");
		e = json_object_get(e, "code");
	} else if (e == NULL) {			/* {"statusCode","message"} */
		d = json_object_get(root, "message");
		if (d == NULL)
			d = json_object_get(root, "Message");
	}
	if (json_is_string(e))
		oa2_sanitize(code, codelen, json_string_value(e),
		    json_string_length(e), 48);
	if (json_is_string(d))
		oa2_sanitize(desc, desclen, json_string_value(d),
		    strcspn(json_string_value(d), "\r\n"), 160);
}

static int
parse_error(int protocol, const char *identity, long status, json_t *root,
    struct oa2_error *err)
{
	const char *p = oa2_msi_protocol_name(protocol);
	char code[64], desc[200], who[80];
	int transient;

	error_text(root, code, sizeof(code), desc, sizeof(desc));
	if (identity != NULL)
		oa2_sanitize(who, sizeof(who), identity, strlen(identity), 64);
	/* IMDS and Arc: "Identity not found"; App Service: "No Managed
	 * Identity found for specified ClientId/ResourceId/PrincipalId." */
	if (status == 400 && (strcasestr(desc, "identity not found") != NULL ||
	    strcasestr(desc, "no managed identity found") != NULL)) {
		if (identity != NULL)
			return oa2_seterr(err, OA2_ERR_DENIED, "no managed "
			    "identity with client id %s is assigned to this "
			    "host (%s answered: %s): check managed_identity, "
			    "or assign that user-assigned identity to the VM",
			    who, p, desc);
		return oa2_seterr(err, OA2_ERR_DENIED, "no managed identity "
		    "is assigned to this host (%s answered: %s): turn on its "
		    "system-assigned identity, or name a user-assigned one by "
		    "its client id in managed_identity", p, desc);
	}
	transient = status == 404 || status == 410 || status == 429 ||
	    status >= 500;
	return oa2_seterr(err, transient ? OA2_ERR_TRANSIENT : OA2_ERR_DENIED,
	    "%s refused the token request (HTTP %ld)%s%s%s%s", p, status,
	    *code != '\0' ? ": " : "", code, *desc != '\0' ? ": " : "", desc);
}

int
oa2_msi_parse(int protocol, const char *identity, long status,
    const char *body, size_t len, time_t now, struct oa2_token *out,
    struct oa2_error *err)
{
	const char *p = oa2_msi_protocol_name(protocol);
	json_t *root, *tok, *type;
	long long in, on;
	int r;

	memset(out, 0, sizeof(*out));
	if (status >= 300 && status < 400)
		return oa2_seterr(err, OA2_ERR_CONFIG, "%s answered HTTP %ld "
		    "(a redirect, not followed): managed_identity_endpoint "
		    "names something else", p, status);
	root = body != NULL ?
	    json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
	if (!json_is_object(root)) {
		json_decref(root);
		return oa2_seterr(err, status == 429 || status >= 500 ?
		    OA2_ERR_TRANSIENT : OA2_ERR_RESPONSE, "%s answered HTTP "
		    "%ld with a body that is not a JSON object%s", p, status,
		    status == 404 ? " (is managed_identity_endpoint the "
		    "token URL?)" : "");
	}
	if (status != 200) {
		r = parse_error(protocol, identity, status, root, err);
		goto out;
	}
	r = OA2_ERR_RESPONSE;
	tok = json_object_get(root, "access_token");
	type = json_object_get(root, "token_type");
	if (!json_is_string(tok)) {
		oa2_seterr(err, r, "%s's answer has no access_token", p);
		goto out;
	}
	if (!oa2_token_printable(json_string_value(tok),
	    json_string_length(tok))) {
		oa2_seterr(err, r, "%s sent an access_token that is empty, "
		    "too long, or holds spaces or control characters", p);
		goto out;
	}
	if (type != NULL && (!json_is_string(type) ||
	    strcasecmp(json_string_value(type), "Bearer") != 0)) {
		oa2_seterr(err, r, "%s sent a token_type other than Bearer", p);
		goto out;
	}
	/* expires_in first: it does not depend on the two clocks agreeing */
	in = json_seconds(json_object_get(root, "expires_in"));
	on = json_seconds(json_object_get(root, "expires_on"));
	if (in < 0 && on >= 0)
		in = on - (long long)now;
	if (json_object_get(root, "expires_in") == NULL &&
	    json_object_get(root, "expires_on") == NULL) {
		oa2_seterr(err, r, "%s's answer has neither expires_in nor "
		    "expires_on", p);
		goto out;
	}
	if (in < 1 || in > MAX_EXPIRES) {
		oa2_seterr(err, r, "%s sent an expiry (expires_in or "
		    "expires_on) that is not a time between 1 second and one "
		    "year from now: check the clock", p);
		goto out;
	}
	if ((out->access_token = strdup(json_string_value(tok))) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	out->expires_at = now + (time_t)in;
	r = OA2_OK;
 out:
	/* ours alone: wipe the token inside the tree before it is freed */
	tok = json_object_get(root, "access_token");
	if (json_is_string(tok))
		oa2_wipe((char *)json_string_value(tok),
		    json_string_length(tok));
	json_decref(root);
	return r;
}

int
oa2_msi_arc_key(const char *dir, const char *www_auth, char **key,
    struct oa2_error *err)
{
	char path[512], realm[160], *buf = NULL;
	const char *v, *base;
	size_t dlen, vlen, i;
	struct stat st;
	ssize_t n;
	int dfd = -1, fd = -1, r;

	*key = NULL;
	/* "Basic realm=PATH", the value possibly quoted */
	if (strncasecmp(www_auth, "Basic", 5) != 0 ||
	    (www_auth[5] != ' ' && www_auth[5] != '\t'))
		return oa2_seterr(err, OA2_ERR_RESPONSE, "the Azure Arc agent "
		    "answered 401 without a \"Basic realm=\" challenge: is "
		    "managed_identity_endpoint the Arc agent?");
	v = www_auth + 6 + strspn(www_auth + 6, " \t");
	if (strncasecmp(v, "realm=", 6) != 0)
		return oa2_seterr(err, OA2_ERR_RESPONSE, "the Azure Arc "
		    "agent's challenge has no realm");
	v += 6;
	vlen = strlen(v);
	if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') {
		v++;
		vlen -= 2;
	}
	oa2_sanitize(realm, sizeof(realm), v, vlen, 120);
	dlen = strlen(dir);
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	if (vlen >= sizeof(path) || vlen <= dlen + 1 ||
	    strncmp(v, dir, dlen) != 0 || v[dlen] != '/')
		return oa2_seterr(err, OA2_ERR_RESPONSE, "the Azure Arc agent "
		    "named the key file %s, which is not in %.*s: refused",
		    realm, (int)dlen, dir);
	memcpy(path, v, vlen);
	path[vlen] = '\0';
	base = path + dlen + 1;
	if (strchr(base, '/') != NULL || strcmp(base, ".key") == 0 ||
	    vlen - dlen - 1 < 5 || strcmp(path + vlen - 4, ".key") != 0)
		return oa2_seterr(err, OA2_ERR_RESPONSE, "the Azure Arc agent "
		    "named the key file %s, which is not a NAME.key directly "
		    "in %.*s: refused", realm, (int)dlen, dir);
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot open the Arc "
		    "key directory %.*s: %s (is this user in the himds group?)",
		    (int)dlen, dir, strerror(errno));
		goto out;
	}
	/* no symbolic link, no FIFO to block on */
	if ((fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC)) == -1) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot open the Arc "
		    "key file %s: %s", realm, errno == ELOOP ?
		    "it is a symbolic link" : strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "the Arc key file %s "
		    "is not a regular file", realm);
		goto out;
	}
	if (st.st_size < 1 || st.st_size > OA2_MSI_ARC_KEY_MAX) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "the Arc key file %s "
		    "holds %lld bytes; a key is 1 to %d", realm,
		    (long long)st.st_size, OA2_MSI_ARC_KEY_MAX);
		goto out;
	}
	if ((buf = malloc(OA2_MSI_ARC_KEY_MAX + 2)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* read one byte more than allowed: the file may have grown */
	for (vlen = 0; vlen < OA2_MSI_ARC_KEY_MAX + 1; vlen += (size_t)n) {
		n = read(fd, buf + vlen, OA2_MSI_ARC_KEY_MAX + 1 - vlen);
		if (n == -1 && errno == EINTR) {
			n = 0;
			continue;
		}
		if (n <= 0)
			break;
	}
	if (n == -1 || vlen < 1 || vlen > OA2_MSI_ARC_KEY_MAX) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "cannot read the Arc "
		    "key file %s (or it is larger than %d bytes)", realm,
		    OA2_MSI_ARC_KEY_MAX);
		goto out;
	}
	if (buf[vlen - 1] == '\n')
		vlen--;
	if (vlen > 0 && buf[vlen - 1] == '\r')
		vlen--;
	buf[vlen] = '\0';
	for (i = 0; i < vlen; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			break;
	if (vlen == 0 || i < vlen) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "the Arc key file %s "
		    "is empty or holds control characters", realm);
		goto out;
	}
	*key = buf;
	buf = NULL;		/* transferred */
	r = OA2_OK;
 out:
	if (buf != NULL)
		oa2_freezero(buf, OA2_MSI_ARC_KEY_MAX + 2);
	if (fd != -1)
		close(fd);
	if (dfd != -1)
		close(dfd);
	return r;
}

/* target URL + "?api-version=V&resource=R[&client_id=C]" */
static int
make_url(const struct oa2_msi *m, const struct oa2_msi_target *t,
    char **url, struct oa2_error *err)
{
	const char *ver = t->protocol == OA2_MSI_APP_SERVICE ? "2019-08-01" :
	    t->protocol == OA2_MSI_ARC ? "2020-06-01" : "2018-02-01";
	char *q = NULL;
	size_t qlen = 0;
	int r;

	*url = NULL;
	if ((r = oa2_form_add(&q, &qlen, "api-version", ver)) != 0 ||
	    (r = oa2_form_add(&q, &qlen, "resource", m->resource)) != 0 ||
	    (m->identity != NULL &&
	    (r = oa2_form_add(&q, &qlen, "client_id", m->identity)) != 0))
		goto out;
	if (asprintf(url, "%s%c%s", t->url, strchr(t->url, '?') != NULL ?
	    '&' : '?', q) == -1) {
		*url = NULL;
		r = OA2_ERR_NOMEM;
	}
 out:
	free(q);
	return r != 0 ? oa2_seterr(err, r == OA2_ERR_NOMEM ? r :
	    OA2_ERR_INTERNAL, "out of memory") : OA2_OK;
}

static double
elapsed(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	    (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* "Name: value" into a new buffer (wiped and freed by the caller). */
static char *
header_line(const char *name, const char *value)
{
	size_t n = strlen(name) + strlen(value) + 3;
	char *h = malloc(n);

	if (h != NULL)
		snprintf(h, n, "%s: %s", name, value);
	return h;
}

static int
valid_header_value(const char *v)
{
	for (; *v != '\0'; v++)
		if ((unsigned char)*v < 0x20 || *v == 0x7f)
			return 0;
	return 1;
}

/* One GET of url with headers; the answer in resp. */
static int
get(const struct oa2_msi *m, const char *url, const char *const *headers,
    long timeout, struct oa2_http_response *resp, struct oa2_error *err)
{
	struct oa2_http_request req;

	memset(&req, 0, sizeof(req));
	req.ca_data = m->ca_data;
	req.ca_len = m->ca_len;
	req.ca_name = m->ca_name;
	req.url = url;
	req.method = OA2_HTTP_GET;
	req.headers = headers;
	req.allow_http = 1;
	req.timeout = timeout > 0 ? timeout : 1;
	req.max_body = MAX_ANSWER;
	return oa2_http_post(&req, resp, err);
}

/* A transport failure: "not on Azure" when nothing answers. */
static int
unreachable(const struct oa2_msi_target *t, struct oa2_error *err)
{
	char was[OA2_ERRMSG_MAX];

	if (err->code != OA2_ERR_NETWORK)
		return err->code;
	memcpy(was, err->msg, sizeof(was));
	return oa2_seterr(err, OA2_ERR_NETWORK, "%s (%s) did not answer: "
	    "%s; %s", oa2_msi_protocol_name(t->protocol),
	    t->source, was, t->protocol == OA2_MSI_ARC ? "is the Arc agent "
	    "(himds) running?" : t->protocol == OA2_MSI_IMDS ? "is this "
	    "host an Azure VM?" : "is this an App Service with a managed "
	    "identity?");
}

/*
 * One attempt: the request (and, for Arc, the challenge round) and the
 * answer parsed; *wait is the answer's Retry-After, or -1.
 */
static int
attempt(const struct oa2_msi *m, const struct oa2_msi_target *t,
    const char *url, const char *const *first, const struct timespec *t0,
    time_t now, long timeout, struct oa2_token *out, long *wait,
    struct oa2_error *err)
{
	struct oa2_http_response resp;
	const char *hdrs[3] = { NULL, NULL, NULL };
	char *h1 = NULL, *key = NULL;
	int r;

	memset(&resp, 0, sizeof(resp));
	*wait = -1;
	hdrs[0] = first[0];
	if ((r = get(m, url, hdrs, timeout - (long)elapsed(t0), &resp,
	    err)) != 0) {
		r = unreachable(t, err);
		goto out;
	}
	if (t->protocol == OA2_MSI_ARC && resp.status == 401) {
		if ((r = oa2_msi_arc_key(oa2_msi_arc_dir(),
		    resp.www_authenticate, &key, err)) != 0)
			goto out;
		oa2_http_response_clear(&resp);
		/* the key as it is: the agent compares it, no base64 */
		if ((h1 = malloc(strlen(key) + 22)) == NULL) {
			r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
		snprintf(h1, strlen(key) + 22, "Authorization: Basic %s", key);
		hdrs[1] = h1;
		if ((r = get(m, url, hdrs, timeout - (long)elapsed(t0), &resp,
		    err)) != 0) {
			r = unreachable(t, err);
			goto out;
		}
	}
	*wait = resp.retry_after;
	r = oa2_msi_parse(t->protocol, m->identity, resp.status, resp.body,
	    resp.len, now, out, err);
 out:
	oa2_http_response_clear(&resp);
	oa2_freezero_str(&h1);
	oa2_freezero_str(&key);
	return r;
}

/*
 * One token request, and one more after a transient refusal (IMDS
 * answers 429, 5xx, and 404 or 410 while it is updating) when the wait
 * (Retry-After, else 1 s) and another request fit within the timeout.
 */
int
oa2_msi_fetch(const struct oa2_msi *m, const struct oa2_log *lg,
    time_t now, long timeout, struct oa2_token *out, struct oa2_error *err)
{
	struct oa2_msi_target t;
	struct timespec t0, ts;
	const char *first[1] = { "Metadata: true" };
	char *url = NULL, *h0 = NULL;
	long wait;
	int r, n;

	memset(out, 0, sizeof(*out));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((r = oa2_msi_target(m, &t, err)) != 0)
		goto out;
	if (t.protocol == OA2_MSI_ARC && m->identity != NULL) {
		r = oa2_seterr(err, OA2_ERR_CONFIG, "the Azure Arc agent "
		    "(%s) serves only the machine's "
		    "system-assigned identity: set managed_identity = "
		    "\"system\"", t.source);
		goto out;
	}
	if ((r = make_url(m, &t, &url, err)) != 0)
		goto out;
	if (t.protocol == OA2_MSI_APP_SERVICE) {
		if (t.header == NULL) {
			r = oa2_seterr(err, OA2_ERR_CONFIG, "the App Service "
			    "endpoint needs managed_identity_header_file");
			goto out;
		}
		if (!valid_header_value(t.header)) {
			r = oa2_seterr(err, OA2_ERR_CONFIG, "the App Service "
			    "identity header (from %s) holds control "
			    "characters", t.header == m->header ?
			    "managed_identity_header_file" : "IDENTITY_HEADER");
			goto out;
		}
		if ((h0 = header_line("X-IDENTITY-HEADER", t.header)) ==
		    NULL) {
			r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
		first[0] = h0;
	}
	for (n = 0; n < 2; n++) {
		oa2_log(lg, OA2_LOG_DEBUG, "requesting a managed-identity "
		    "token from %s at %s (%s)",
		    oa2_msi_protocol_name(t.protocol), t.url, t.source);
		r = attempt(m, &t, url, first, &t0, now, timeout, out, &wait,
		    err);
		if (wait < 0 || wait > 60)
			wait = 1;
		if (r != OA2_ERR_TRANSIENT || n == 1 ||
		    elapsed(&t0) + (double)wait + 1 >= (double)timeout)
			break;
		oa2_log(lg, OA2_LOG_WARNING, "%s; retrying in %ld s", err->msg,
		    wait);
		ts.tv_sec = wait;
		ts.tv_nsec = 0;
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
		now += (time_t)(elapsed(&t0) + 0.5);
	}
	if (r == 0)
		oa2_log(lg, OA2_LOG_INFO, "got a managed-identity token from "
		    "%s, expires in %ld s", oa2_msi_protocol_name(t.protocol),
		    (long)(out->expires_at - now));
 out:
	free(url);
	oa2_freezero_str(&h0);
	return r;
}

void
oa2_msi_clear(struct oa2_msi *m)
{
	if (m == NULL)
		return;
	free(m->identity);
	free(m->endpoint);
	free(m->header_file);
	oa2_freezero_str(&m->header);
	free(m->resource);
	memset(m, 0, sizeof(*m));
}

/* ------------------------------------------------------------------ */
/* The credential source (include/cred.h)                             */

static const char *const keys[] = { "managed_identity", NULL };
static const char *const more_keys[] = {
	"managed_identity_endpoint", "managed_identity_protocol",
	"managed_identity_header_file", NULL
};
static const char *const files[] = { "managed_identity_header_file", NULL };

/* A client id: a GUID, 8-4-4-4-12 hex digits. */
static int
is_guid(const char *s)
{
	size_t i;

	if (strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++)
		if (i == 8 || i == 13 || i == 18 || i == 23 ? s[i] != '-' :
		    !isxdigit((unsigned char)s[i]))
			return 0;
	return 1;
}

/* The port of an http(s) URL, or 0 when it names none. */
static long
url_port(const char *url)
{
	const char *h = strstr(url, "://"), *end, *c;
	char *e;
	long p;

	if (h == NULL)
		return 0;
	h += 3;
	end = h + strcspn(h, "/?#");
	if (*h == '[' && (h = memchr(h, ']', (size_t)(end - h))) == NULL)
		return 0;
	if ((c = memchr(h, ':', (size_t)(end - h))) == NULL)
		return 0;
	errno = 0;
	p = strtol(c + 1, &e, 10);
	return errno == 0 && e == end && p > 0 && p < 65536 ? p : 0;
}

static int
msi_load(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	const char *id = NULL, *ep = NULL, *proto = NULL, *hf = NULL;
	const config_setting_t *s;
	struct oa2_msi *m;
	size_t n;
	int r;

	if ((m = calloc(1, sizeof(*m))) == NULL)
		return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
	a->data = m;
	if ((r = oa2_conf_string(ld, g, "managed_identity", &id)) != 0 ||
	    (r = oa2_conf_string(ld, g, "managed_identity_endpoint",
	    &ep)) != 0 ||
	    (r = oa2_conf_string(ld, g, "managed_identity_protocol",
	    &proto)) != 0 ||
	    (r = oa2_conf_string(ld, g, "managed_identity_header_file",
	    &hf)) != 0)
		return r;
	s = config_setting_get_member(g, "managed_identity");
	if (strcmp(id, "system") != 0) {
		if (!is_guid(id))
			return oa2_conf_fail(ld, s, OA2_ERR_CONFIG, "account "
			    "\"%s\": managed_identity is \"system\" or the "
			    "client id (a GUID) of a user-assigned identity",
			    a->match);
		if ((m->identity = strdup(id)) == NULL)
			goto nomem;
	}
	if (ep == NULL && (proto != NULL || hf != NULL))
		return oa2_conf_fail(ld, config_setting_get_member(g,
		    proto != NULL ? "managed_identity_protocol" :
		    "managed_identity_header_file"), OA2_ERR_CONFIG,
		    "account \"%s\": %s goes with managed_identity_endpoint",
		    a->match, proto != NULL ? "managed_identity_protocol" :
		    "managed_identity_header_file");
	if (ep != NULL) {
		s = config_setting_get_member(g, "managed_identity_endpoint");
		if ((r = oa2_msi_check_endpoint(ep, ld->err)) != 0)
			return oa2_conf_fail_wrap(ld, s, r);
		if ((m->endpoint = strdup(ep)) == NULL)
			goto nomem;
		/* the protocol follows from the form (sasl-oauth2.conf(5)) */
		if (proto == NULL)
			m->protocol = hf != NULL ? OA2_MSI_APP_SERVICE :
			    url_port(ep) == 40342 ? OA2_MSI_ARC : OA2_MSI_IMDS;
		else if (strcmp(proto, "imds") == 0)
			m->protocol = OA2_MSI_IMDS;
		else if (strcmp(proto, "app-service") == 0)
			m->protocol = OA2_MSI_APP_SERVICE;
		else if (strcmp(proto, "arc") == 0)
			m->protocol = OA2_MSI_ARC;
		else
			return oa2_conf_fail(ld, config_setting_get_member(g,
			    "managed_identity_protocol"), OA2_ERR_CONFIG,
			    "managed_identity_protocol is \"imds\", "
			    "\"app-service\" or \"arc\"");
		if ((m->protocol == OA2_MSI_APP_SERVICE) != (hf != NULL))
			return oa2_conf_fail(ld, config_setting_get_member(g,
			    hf != NULL ? "managed_identity_header_file" :
			    "managed_identity_endpoint"), OA2_ERR_CONFIG,
			    "account \"%s\": %s", a->match, hf != NULL ?
			    "managed_identity_header_file is for the App "
			    "Service protocol only" : "the App Service "
			    "protocol needs managed_identity_header_file (a "
			    "private file holding IDENTITY_HEADER's value)");
		if (m->protocol == OA2_MSI_ARC && m->identity != NULL)
			return oa2_conf_fail(ld, config_setting_get_member(g,
			    "managed_identity"), OA2_ERR_CONFIG, "account "
			    "\"%s\": the Azure Arc agent serves only the "
			    "machine's system-assigned identity: set "
			    "managed_identity = \"system\"", a->match);
	}
	if (hf != NULL) {
		s = config_setting_get_member(g,
		    "managed_identity_header_file");
		if ((m->header_file = strdup(hf)) == NULL)
			goto nomem;
		if ((r = oa2_read_secret_file(hf, "managed_identity_header_"
		    "file", &m->header, ld->err)) != 0)
			return oa2_conf_fail_wrap(ld, s, r);
		if (!valid_header_value(m->header))
			return oa2_conf_fail(ld, s, OA2_ERR_CONFIG,
			    "managed_identity_header_file holds control "
			    "characters");
	}
	/* the resource is the scope without "/.default" */
	n = strlen(a->scope);
	if (n > 9 && strcmp(a->scope + n - 9, "/.default") == 0)
		n -= 9;
	if ((m->resource = strndup(a->scope, n)) == NULL)
		goto nomem;
	if (a->ca != NULL) {
		m->ca_data = a->ca->data;
		m->ca_len = a->ca->len;
		m->ca_name = a->ca->path;
	}
	free(a->token_url);
	if ((a->token_url = strdup(m->endpoint != NULL ? m->endpoint :
	    "(the managed-identity endpoint of the environment)")) == NULL)
		goto nomem;
	return OA2_OK;
 nomem:
	return oa2_seterr(ld->err, OA2_ERR_NOMEM, "out of memory");
}

static void
msi_clear(struct oa2_account *a)
{
	struct oa2_msi *m = a->data;

	oa2_msi_clear(m);
	free(m);
	a->data = NULL;
}

/* The identity and the endpoint name the token; the header does not. */
static int
msi_cache_id(const struct oa2_account *a, EVP_MD_CTX *ctx)
{
	const struct oa2_msi *m = a->data;
	const char *id = m->identity != NULL ? m->identity : "system";
	const char *ep = m->endpoint != NULL ? m->endpoint : "";
	char proto = (char)('0' + m->protocol);

	return EVP_DigestUpdate(ctx, "managed-identity", 17) &&
	    EVP_DigestUpdate(ctx, id, strlen(id) + 1) &&
	    EVP_DigestUpdate(ctx, ep, strlen(ep) + 1) &&
	    EVP_DigestUpdate(ctx, &proto, 1);
}

static int
msi_fetch(const struct oa2_account *a, const char *mailbox,
    const struct oa2_log *lg, time_t now, long timeout,
    struct oa2_token *out, long *code, struct oa2_error *err)
{
	(void)mailbox;
	*code = 0;
	if (a->data == NULL)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "account %s has no "
		    "usable managed identity", a->match);
	return oa2_msi_fetch(a->data, lg, now, timeout, out, err);
}

/*
 * "managed identity (system-assigned) from the instance metadata
 * service at URL (from ...)", or why no endpoint was found.
 */
static void
msi_describe(const struct oa2_account *a, char *buf, size_t len)
{
	const struct oa2_msi *m = a->data;
	struct oa2_msi_target t;
	struct oa2_error e;
	char who[80];

	if (m == NULL) {
		snprintf(buf, len, "managed identity (not loaded)");
		return;
	}
	if (m->identity != NULL)
		snprintf(who, sizeof(who), "user-assigned, client id %s",
		    m->identity);
	else
		snprintf(who, sizeof(who), "system-assigned");
	if (oa2_msi_target(m, &t, &e) != 0)
		snprintf(buf, len, "managed identity (%s), no endpoint: %s",
		    who, e.msg);
	else
		snprintf(buf, len, "managed identity (%s) from %s at %s "
		    "(%s)", who,
		    oa2_msi_protocol_name(t.protocol), t.url, t.source);
}

const struct oa2_cred_kind oa2_cred_msi = {
	.name = "managed identity",
	.keys = keys,
	.more_keys = more_keys,
	.files = files,
	.flags = 0,
	.load = msi_load,
	.clear = msi_clear,
	.cache_id = msi_cache_id,
	.fetch = msi_fetch,
	.describe = msi_describe,
};
