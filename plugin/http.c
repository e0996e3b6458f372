/*
 * One HTTPS request with libcurl (POST, or GET): TLS always verified
 * (CA bundle from memory, read before any chroot), https only, no
 * redirects, a timeout for the whole request, and a hard cap on the
 * answer.
 *
 * The one exception to https: Azure's managed-identity endpoints are
 * plain HTTP on the host itself (App Service, the Arc agent) or on the
 * link-local metadata address (169.254.169.254). A caller may allow
 * http:// (allow_http); the address libcurl is about to connect to is
 * then checked (CURLOPT_OPENSOCKETFUNCTION) and must be loopback or
 * link-local, whatever name the URL gave, and no proxy is used.
 *
 * The request body holds the client secret or the signed assertion and
 * the answer holds the access token: neither ever reaches a message,
 * CURLOPT_VERBOSE is never set, and every buffer that held either is
 * wiped before it is freed.
 *
 * In a setuid or setgid host (AT_SECURE) the invoking user controls the
 * environment: libcurl takes no proxy from it, and no token is fetched
 * while SSLKEYLOGFILE is set (libcurl would write the TLS session keys
 * to that file, opened when libcurl is initialised).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/auxv.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "error.h"
#include "http.h"
#include "secret.h"

static const char *const hdrs[] = {
	"Accept: application/json",
	"Expect:",	/* no 100-continue round trip for long assertions */
	"Content-Type: application/x-www-form-urlencoded",	/* POST */
};

/* Whether libcurl was initialised by oa2_http_global_init(). */
static int curl_inited;

int
oa2_http_secure(void)
{
	return getauxval(AT_SECURE) != 0;
}

/*
 * SSLKEYLOGFILE set in a setuid or setgid process. getenv, not
 * secure_getenv: the point is to see what the invoking user set.
 */
static int
keylog_refused(void)
{
	return oa2_http_secure() && getenv("SSLKEYLOGFILE") != NULL;
}

static int
keylog_error(struct oa2_error *err)
{
	return oa2_seterr(err, OA2_ERR_CONFIG, "no token is fetched while "
	    "SSLKEYLOGFILE is set in the environment of this setuid or "
	    "setgid program: libcurl would write the TLS session keys of "
	    "the token request (which holds the client secret or assertion) "
	    "to a file the invoking user chose; unset SSLKEYLOGFILE");
}

int
oa2_http_global_init(void)
{
	/* libcurl opens SSLKEYLOGFILE in curl_global_init: do not call it */
	if (keylog_refused())
		return OA2_OK;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return OA2_ERR_INTERNAL;
	curl_inited = 1;
	return OA2_OK;
}

void
oa2_http_global_cleanup(void)
{
	if (curl_inited)
		curl_global_cleanup();
	curl_inited = 0;
}

/* The answer as it arrives, capped at max bytes. */
struct sink {
	char	*buf;
	size_t	len;
	size_t	cap;
	size_t	max;
	int	too_big;
	int	nomem;
	long	retry_after;
	char	location[128];	/* host of a Location header */
	char	www_auth[512];	/* WWW-Authenticate, trimmed */
	int	plain;		/* http://: check the peer's address */
	int	bad_peer;	/* refused an address that is not local */
	char	peer[INET6_ADDRSTRLEN];	/* that address */
};

static void url_host(const char *url, char *dst, size_t dstlen);

/* Grow without realloc: the old buffer may hold a token, so wipe it. */
static size_t
on_body(char *data, size_t size, size_t nmemb, void *userp)
{
	struct sink *s = userp;
	size_t n = size * nmemb, cap;
	char *nb;

	if (n > s->max - s->len) {
		s->too_big = 1;
		return 0;		/* aborts the transfer */
	}
	if (s->len + n + 1 > s->cap) {
		cap = s->cap == 0 ? 4096 : s->cap;
		while (cap < s->len + n + 1)
			cap *= 2;
		if (cap > s->max + 1)
			cap = s->max + 1;
		if ((nb = malloc(cap)) == NULL) {
			s->nomem = 1;
			return 0;
		}
		if (s->len > 0)
			memcpy(nb, s->buf, s->len);
		oa2_freezero(s->buf, s->cap);
		s->buf = nb;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, n);
	s->len += n;
	s->buf[s->len] = '\0';
	return n;
}

/*
 * Location: the host a redirect names (an absolute URL's host:port,
 * sanitised), for the sentence; never followed.
 */
static void
on_location(struct sink *s, const char *data, size_t n)
{
	char value[512], *p;
	size_t len = n - 9;

	if (len >= sizeof(value))
		len = sizeof(value) - 1;
	memcpy(value, data + 9, len);
	value[len] = '\0';
	value[strcspn(value, "\r\n")] = '\0';
	p = value + strspn(value, " \t");
	if (strstr(p, "://") != NULL)
		url_host(p, s->location, sizeof(s->location));
}

/*
 * WWW-Authenticate: kept as it is (trimmed) for the caller, or "" when
 * it does not fit: a cut value (a path) must not pass for another.
 */
static void
on_www_auth(struct sink *s, const char *data, size_t n)
{
	const char *p = data + 17, *end = data + n;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	while (end > p && (end[-1] == '\r' || end[-1] == '\n' ||
	    end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if ((size_t)(end - p) >= sizeof(s->www_auth)) {
		s->www_auth[0] = '\0';
		return;
	}
	memcpy(s->www_auth, p, (size_t)(end - p));
	s->www_auth[end - p] = '\0';
}

/* Retry-After: delta-seconds or an HTTP-date (RFC 9110 10.2.3). */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct sink *s = userp;
	size_t n = size * nmemb, len;
	char value[128], *p, *end;
	long v;

	if (n > 9 && strncasecmp(data, "Location:", 9) == 0) {
		on_location(s, data, n);
		return n;
	}
	if (n >= 17 && strncasecmp(data, "WWW-Authenticate:", 17) == 0) {
		on_www_auth(s, data, n);
		return n;
	}
	if (n <= 12 || strncasecmp(data, "Retry-After:", 12) != 0)
		return n;
	len = n - 12;
	if (len >= sizeof(value))
		len = sizeof(value) - 1;
	memcpy(value, data + 12, len);
	value[len] = '\0';
	value[strcspn(value, "\r\n")] = '\0';
	p = value + strspn(value, " \t");
	if (*p >= '0' && *p <= '9') {
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno == 0 && (*end == '\0' || *end == ' ' || *end == '\t'))
			s->retry_after = v;
	} else if (*p != '\0') {
		time_t t = curl_getdate(p, NULL), now = time(NULL);

		if (t != -1)
			s->retry_after = t > now ? (long)(t - now) : 0;
	}
	return n;
}

static int
local_v4(const unsigned char *a)
{
	return a[0] == 127 || (a[0] == 169 && a[1] == 254);
}

static int
local_v6(const struct in6_addr *a6)
{
	const unsigned char *a = a6->s6_addr;

	if (IN6_IS_ADDR_V4MAPPED(a6))
		return local_v4(a + 12);
	return IN6_IS_ADDR_LOOPBACK(a6) ||
	    (a[0] == 0xfe && (a[1] & 0xc0) == 0x80);
}

int
oa2_http_local_address(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;
	char buf[INET6_ADDRSTRLEN + 2];
	size_t n = strlen(host);

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= sizeof(buf))
			return -1;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	if (inet_pton(AF_INET, host, &a4) == 1)
		return local_v4((const unsigned char *)&a4.s_addr);
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return local_v6(&a6);
	return -1;
}

/*
 * Every socket libcurl opens for an http:// request: only to a loopback
 * or link-local address. The address is the one resolved, so a name
 * ("localhost", or one that resolves elsewhere) is judged by what it
 * resolves to.
 */
static curl_socket_t
on_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *sa)
{
	struct sink *s = clientp;
	const struct sockaddr_in *in;
	const struct sockaddr_in6 *in6;
	int local = 0;

	(void)purpose;
	if (sa->family == AF_INET) {
		in = (const struct sockaddr_in *)(void *)&sa->addr;
		local = local_v4((const unsigned char *)&in->sin_addr.s_addr);
		inet_ntop(AF_INET, &in->sin_addr, s->peer, sizeof(s->peer));
	} else if (sa->family == AF_INET6) {
		in6 = (const struct sockaddr_in6 *)(void *)&sa->addr;
		local = local_v6(&in6->sin6_addr);
		inet_ntop(AF_INET6, &in6->sin6_addr, s->peer,
		    sizeof(s->peer));
	}
	if (!local) {
		s->bad_peer = 1;
		return CURL_SOCKET_BAD;
	}
	return socket(sa->family, sa->socktype | SOCK_CLOEXEC, sa->protocol);
}

/*
 * "https://user:pw@host:port/path" -> "host:port" for messages, with
 * any userinfo left out and the text sanitised.
 */
static void
url_host(const char *url, char *dst, size_t dstlen)
{
	const char *p = strstr(url, "://"), *end, *at;

	p = p != NULL ? p + 3 : url;
	end = p + strcspn(p, "/?#");
	for (at = p; at < end; at++)
		if (*at == '@')
			p = at + 1;
	oa2_sanitize(dst, dstlen, p, (size_t)(end - p), 100);
}

/* One sentence for a failed transfer; never the request body. */
static int
transport_error(CURL *curl, CURLcode rc, const struct oa2_http_request *req,
    long timeout, const char *ebuf, struct oa2_error *err)
{
	char host[128], detail[CURL_ERROR_SIZE], ca[160];
	const char *text = ebuf[0] != '\0' ? ebuf : curl_easy_strerror(rc);
	long oserr = 0;

	url_host(req->url, host, sizeof(host));
	oa2_sanitize(detail, sizeof(detail), text, strlen(text), 200);
	if (req->ca_data == NULL)
		snprintf(ca, sizeof(ca), "the system CA bundle");
	else if (req->ca_name != NULL)
		oa2_sanitize(ca, sizeof(ca), req->ca_name,
		    strlen(req->ca_name), 150);
	else
		snprintf(ca, sizeof(ca), "the configured CA bundle");
	curl_easy_getinfo(curl, CURLINFO_OS_ERRNO, &oserr);

	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
		return oa2_seterr(err, OA2_ERR_NETWORK, "cannot resolve "
		    "the token endpoint's host %s (DNS): %s", host, detail);
	case CURLE_COULDNT_RESOLVE_PROXY:
		return oa2_seterr(err, OA2_ERR_NETWORK, "cannot resolve "
		    "the proxy for the token endpoint %s (DNS): %s", host,
		    detail);
	case CURLE_COULDNT_CONNECT:
		if (oserr == ECONNREFUSED)
			return oa2_seterr(err, OA2_ERR_NETWORK, "connection "
			    "to the token endpoint %s refused", host);
		return oa2_seterr(err, OA2_ERR_NETWORK, "cannot connect to "
		    "the token endpoint %s: %s", host, detail);
	case CURLE_OPERATION_TIMEDOUT:
		return oa2_seterr(err, OA2_ERR_NETWORK, "no answer from the "
		    "token endpoint %s within %ld seconds", host, timeout);
	case CURLE_PEER_FAILED_VERIFICATION:
		return oa2_seterr(err, OA2_ERR_NETWORK, "the TLS certificate "
		    "of %s is not trusted by %s or does not name the host: %s",
		    host, ca, detail);
	case CURLE_SSL_CACERT_BADFILE:
		return oa2_seterr(err, OA2_ERR_CONFIG, "the CA bundle %s "
		    "cannot be used to verify %s: %s", ca, host, detail);
	case CURLE_SSL_CONNECT_ERROR:
		return oa2_seterr(err, OA2_ERR_NETWORK, "the TLS handshake "
		    "with the token endpoint %s failed: %s", host, detail);
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
		return oa2_seterr(err, OA2_ERR_NETWORK, "the token endpoint "
		    "%s closed the connection: %s", host, detail);
	case CURLE_UNSUPPORTED_PROTOCOL:
		return oa2_seterr(err, OA2_ERR_CONFIG, "the token endpoint "
		    "%s is not an https:// URL%s", host, req->allow_http ?
		    " (nor an http:// one)" : "");
	case CURLE_OUT_OF_MEMORY:
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	default:
		return oa2_seterr(err, OA2_ERR_NETWORK, "the token request to "
		    "%s failed: %s", host, detail);
	}
}

/* Wipe the copies of the request headers (they may hold a key). */
static void
headers_free(struct curl_slist *headers)
{
	struct curl_slist *h;

	for (h = headers; h != NULL; h = h->next)
		if (h->data != NULL)
			oa2_wipe(h->data, strlen(h->data));
	curl_slist_free_all(headers);
}

static int
add_header(struct curl_slist **headers, const char *line)
{
	struct curl_slist *h;

	if ((h = curl_slist_append(*headers, line)) == NULL)
		return -1;
	*headers = h;
	return 0;
}

int
oa2_http_post(const struct oa2_http_request *req,
    struct oa2_http_response *resp, struct oa2_error *err)
{
	struct sink s;
	struct curl_slist *headers = NULL;
	struct curl_blob ca;
	char ebuf[CURL_ERROR_SIZE] = "";
	long timeout = req->timeout > 0 ? req->timeout : 1;
	int get = req->method == OA2_HTTP_GET;
	CURLcode rc;
	CURL *curl;
	size_t i, nh;
	int r;

	memset(&s, 0, sizeof(s));
	s.max = req->max_body;
	s.retry_after = -1;
	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	if (strncasecmp(req->url, "https://", 8) != 0) {
		if (!req->allow_http)
			return oa2_seterr(err, OA2_ERR_CONFIG, "the token "
			    "endpoint must be an https:// URL");
		if (strncasecmp(req->url, "http://", 7) != 0)
			return oa2_seterr(err, OA2_ERR_CONFIG, "the token "
			    "endpoint must be an https:// or http:// URL");
		s.plain = 1;
	}
	/* before curl_easy_init, which may initialise libcurl itself */
	if (keylog_refused())
		return keylog_error(err);
	if ((curl = curl_easy_init()) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "cannot start libcurl");
	/* a GET sends no Content-Type (the last of hdrs) */
	nh = sizeof(hdrs) / sizeof(hdrs[0]) - (get ? 1 : 0);
	for (i = 0; i < nh; i++)
		if (add_header(&headers, hdrs[i]) != 0)
			break;
	for (i = 0; req->headers != NULL && req->headers[i] != NULL; i++)
		if (add_header(&headers, req->headers[i]) != 0)
			break;
	if (headers == NULL || (req->headers != NULL &&
	    req->headers[i] != NULL)) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}

	/* What keeps the request safe: refuse to go on without it. */
	if (curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, s.plain ? "http" :
	    "https") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "https") !=
	    CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_SSLVERSION,
	    (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK ||
	    (s.plain &&
	    (curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, on_open) !=
	    CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &s) !=
	    CURLE_OK))) {
		r = oa2_seterr(err, OA2_ERR_INTERNAL, "this libcurl cannot "
		    "restrict the token request to verified HTTPS");
		goto out;
	}
	/*
	 * Outside setuid hosts, libcurl's https_proxy, HTTPS_PROXY,
	 * ALL_PROXY and NO_PROXY are honoured (documented); inside, none.
	 * A plain http:// request (to the host itself or the link-local
	 * metadata address) never goes through a proxy: the peer checked
	 * must be the endpoint.
	 */
	if ((oa2_http_secure() || s.plain) &&
	    (curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*") != CURLE_OK)) {
		r = oa2_seterr(err, OA2_ERR_INTERNAL, "this libcurl cannot "
		    "be told to ignore the proxy settings of the environment");
		goto out;
	}
	if (req->ca_data != NULL && !s.plain) {
		ca.data = (void *)req->ca_data;
		ca.len = req->ca_len;
		ca.flags = CURL_BLOB_NOCOPY;
		/*
		 * never fall back silently to a wider set of trusted CAs:
		 * the blob replaces libcurl's CA file, and its CA directory
		 * (Debian: /etc/ssl/certs, looked up beside the blob) goes
		 */
		if (curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca) !=
		    CURLE_OK ||
		    curl_easy_setopt(curl, CURLOPT_CAPATH, NULL) != CURLE_OK) {
			r = oa2_seterr(err, OA2_ERR_INTERNAL, "this libcurl "
			    "cannot take a CA bundle from memory (ca_file)");
			goto out;
		}
	}
	curl_easy_setopt(curl, CURLOPT_URL, req->url);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, timeout);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, PACKAGE_NAME "/"
	    PACKAGE_VERSION);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	if (get)
		curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
	else {
		/* never NULL: that would make libcurl read stdin */
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS,
		    req->body != NULL ? req->body : "");
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)(req->body != NULL ? req->bodylen : 0));
	}
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &s);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, ebuf);

	rc = curl_easy_perform(curl);
	if (s.bad_peer && rc != CURLE_OK) {
		char host[128], peer[INET6_ADDRSTRLEN];

		url_host(req->url, host, sizeof(host));
		oa2_sanitize(peer, sizeof(peer), s.peer, strlen(s.peer), 60);
		r = oa2_seterr(err, OA2_ERR_CONFIG, "the endpoint %s is "
		    "plain http:// but its address %s is neither loopback nor "
		    "link-local: not connected (http:// is allowed only to "
		    "the host itself or 169.254.169.254)", host, peer);
		goto out;
	}
	if (s.too_big) {
		char host[128];

		url_host(req->url, host, sizeof(host));
		r = oa2_seterr(err, OA2_ERR_RESPONSE, "the token endpoint %s "
		    "sent more than %zu bytes", host, req->max_body);
		goto out;
	}
	if (s.nomem) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (rc != CURLE_OK) {
		r = transport_error(curl, rc, req, timeout, ebuf, err);
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &resp->status);
	if (s.buf == NULL && (s.buf = calloc(1, 1)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	resp->body = s.buf;
	resp->len = s.len;
	resp->retry_after = s.retry_after;
	memcpy(resp->location, s.location, sizeof(resp->location));
	memcpy(resp->www_authenticate, s.www_auth,
	    sizeof(resp->www_authenticate));
	s.buf = NULL;		/* transferred */
	s.cap = 0;
	r = OA2_OK;
 out:
	oa2_freezero(s.buf, s.cap);
	headers_free(headers);
	curl_easy_cleanup(curl);
	return r;
}

void
oa2_http_response_clear(struct oa2_http_response *resp)
{
	if (resp == NULL)
		return;
	/* the buffer may be larger than len + 1; len + 1 is what was used */
	if (resp->body != NULL)
		oa2_freezero(resp->body, resp->len + 1);
	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
}

/* Whether c stays as it is in a form value: RFC 3986's unreserved. */
static int
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	    c == '~';
}

/*
 * The value is escaped as curl_easy_escape escapes it ("%2F"), straight
 * into the one new buffer: no copy of it (the secret, the assertion)
 * beside the form to wipe, one allocation per pair.
 */
int
oa2_form_add(char **form, size_t *len, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *v;
	size_t n, nlen, vlen = 0;
	char *nf, *p;

	if (value == NULL)
		return OA2_ERR_INTERNAL;
	for (v = (const unsigned char *)value; *v != '\0'; v++)
		vlen += unreserved(*v) ? 1 : 3;
	nlen = strlen(name);
	n = *len + (*len > 0) + nlen + 1 + vlen;
	if ((nf = malloc(n + 1)) == NULL)
		return OA2_ERR_NOMEM;
	p = nf;
	if (*len > 0) {
		memcpy(p, *form, *len);
		p += *len;
		*p++ = '&';
	}
	memcpy(p, name, nlen);
	p += nlen;
	*p++ = '=';
	for (v = (const unsigned char *)value; *v != '\0'; v++)
		if (unreserved(*v))
			*p++ = (char)*v;
		else {
			*p++ = '%';
			*p++ = hex[*v >> 4];
			*p++ = hex[*v & 15];
		}
	*p = '\0';
	if (*form != NULL)
		oa2_freezero(*form, *len + 1);
	*form = nf;
	*len = n;
	return OA2_OK;
}
