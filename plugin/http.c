/*
 * One HTTPS POST with libcurl: TLS always verified (CA bundle from
 * memory, read before any chroot), https only, no redirects, a timeout
 * for the whole request, and a hard cap on the answer.
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
#include <time.h>

#include <curl/curl.h>

#include "error.h"
#include "http.h"
#include "secret.h"

static const char *const hdrs[] = {
	"Content-Type: application/x-www-form-urlencoded",
	"Accept: application/json",
	"Expect:",	/* no 100-continue round trip for long assertions */
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
		    "%s is not an https:// URL", host);
	case CURLE_OUT_OF_MEMORY:
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	default:
		return oa2_seterr(err, OA2_ERR_NETWORK, "the token request to "
		    "%s failed: %s", host, detail);
	}
}

int
oa2_http_post(const struct oa2_http_request *req,
    struct oa2_http_response *resp, struct oa2_error *err)
{
	struct sink s = { NULL, 0, 0, req->max_body, 0, 0, -1, "" };
	struct curl_slist *headers = NULL, *h;
	struct curl_blob ca;
	char ebuf[CURL_ERROR_SIZE] = "";
	long timeout = req->timeout > 0 ? req->timeout : 1;
	CURLcode rc;
	CURL *curl;
	size_t i;
	int r;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	if (strncasecmp(req->url, "https://", 8) != 0)
		return oa2_seterr(err, OA2_ERR_CONFIG, "the token endpoint "
		    "must be an https:// URL");
	/* before curl_easy_init, which may initialise libcurl itself */
	if (keylog_refused())
		return keylog_error(err);
	if ((curl = curl_easy_init()) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "cannot start libcurl");
	for (i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		if ((h = curl_slist_append(headers, hdrs[i])) == NULL) {
			r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
		headers = h;
	}

	/* What keeps the request safe: refuse to go on without it. */
	if (curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https") !=
	    CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "https") !=
	    CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_SSLVERSION,
	    (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK) {
		r = oa2_seterr(err, OA2_ERR_INTERNAL, "this libcurl cannot "
		    "restrict the token request to verified HTTPS");
		goto out;
	}
	/*
	 * Outside setuid hosts, libcurl's https_proxy, HTTPS_PROXY,
	 * ALL_PROXY and NO_PROXY are honoured (documented); inside, none.
	 */
	if (oa2_http_secure() &&
	    (curl_easy_setopt(curl, CURLOPT_PROXY, "") != CURLE_OK ||
	    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*") != CURLE_OK)) {
		r = oa2_seterr(err, OA2_ERR_INTERNAL, "this libcurl cannot "
		    "be told to ignore the proxy settings of the environment "
		    "in a setuid or setgid program");
		goto out;
	}
	if (req->ca_data != NULL) {
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
	/* never NULL: that would make libcurl read the body from stdin */
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS,
	    req->body != NULL ? req->body : "");
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)(req->body != NULL ? req->bodylen : 0));
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, &s);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, ebuf);

	rc = curl_easy_perform(curl);
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
	s.buf = NULL;		/* transferred */
	s.cap = 0;
	r = OA2_OK;
 out:
	oa2_freezero(s.buf, s.cap);
	curl_slist_free_all(headers);
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

int
oa2_form_add(char **form, size_t *len, const char *name, const char *value)
{
	char *esc, *nf;
	size_t n, esclen;

	if (value == NULL)
		return OA2_ERR_INTERNAL;
	if ((esc = curl_easy_escape(NULL, value, 0)) == NULL)
		return OA2_ERR_NOMEM;
	esclen = strlen(esc);
	n = *len + (*len > 0) + strlen(name) + 1 + esclen;
	if ((nf = malloc(n + 1)) == NULL) {
		oa2_wipe(esc, esclen);
		curl_free(esc);
		return OA2_ERR_NOMEM;
	}
	snprintf(nf, n + 1, "%s%s%s=%s", *form != NULL ? *form : "",
	    *len > 0 ? "&" : "", name, esc);
	oa2_wipe(esc, esclen);
	curl_free(esc);
	if (*form != NULL)
		oa2_freezero(*form, *len + 1);
	*form = nf;
	*len = n;
	return OA2_OK;
}
