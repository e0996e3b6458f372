/*
 * One HTTPS POST with libcurl: TLS always verified (CA bundle from
 * memory, read before any chroot), https only, no redirects, a timeout
 * for the whole request, and a hard cap on the answer.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "error.h"
#include "http.h"
#include "secret.h"

struct sink {
	char	*buf;
	size_t	len;
	size_t	cap;
	size_t	max;
	int	too_big;
	long	retry_after;
};

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
		if ((nb = malloc(cap)) == NULL)
			return 0;
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

static size_t
on_header(char *data, size_t size, size_t nmemb, void *userp)
{
	struct sink *s = userp;
	size_t n = size * nmemb;
	char value[128], *end;
	long v;

	if (n > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
		size_t len = n - 12;

		if (len >= sizeof(value))
			len = sizeof(value) - 1;
		memcpy(value, data + 12, len);
		value[len] = '\0';
		value[strcspn(value, "\r\n")] = '\0';
		end = value + strspn(value, " \t");
		if (*end >= '0' && *end <= '9') {
			v = strtol(end, &end, 10);
			if (*end == '\0' || *end == ' ')
				s->retry_after = v < 0 ? 0 : v;
		} else {
			time_t t = curl_getdate(end, NULL);

			if (t != -1)
				s->retry_after = t > time(NULL) ?
				    (long)(t - time(NULL)) : 0;
		}
	}
	return n;
}

/* "https://host:port/path" -> "host:port" for messages. */
static void
url_host(const char *url, char *dst, size_t dstlen)
{
	const char *p = strstr(url, "://"), *end;

	p = p != NULL ? p + 3 : url;
	end = p + strcspn(p, "/?#");
	oa2_sanitize(dst, dstlen, p, (size_t)(end - p), 100);
}

static int
transport_error(CURLcode rc, const char *url, long timeout,
    const char *ebuf, int ca_in_memory, struct oa2_error *err)
{
	char host[128], detail[CURL_ERROR_SIZE];

	url_host(url, host, sizeof(host));
	oa2_sanitize(detail, sizeof(detail), ebuf[0] != '\0' ? ebuf :
	    curl_easy_strerror(rc), strlen(ebuf[0] != '\0' ? ebuf :
	    curl_easy_strerror(rc)), 200);
	switch (rc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return oa2_seterr(err, OA2_ERR_NETWORK, "cannot resolve the "
		    "token endpoint's host %s (DNS): %s", host, detail);
	case CURLE_COULDNT_CONNECT:
		return oa2_seterr(err, OA2_ERR_NETWORK, "cannot connect to "
		    "the token endpoint %s: %s", host, detail);
	case CURLE_OPERATION_TIMEDOUT:
		return oa2_seterr(err, OA2_ERR_NETWORK, "no answer from the "
		    "token endpoint %s within %ld seconds", host, timeout);
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
		return oa2_seterr(err, OA2_ERR_NETWORK, "TLS with the token "
		    "endpoint %s failed: its certificate is not trusted by %s "
		    "or does not name the host (%s)", host, ca_in_memory ?
		    "ca_file" : "the system CA bundle", detail);
	case CURLE_UNSUPPORTED_PROTOCOL:
		return oa2_seterr(err, OA2_ERR_CONFIG, "the token endpoint "
		    "%s is not an https:// URL", host);
	default:
		return oa2_seterr(err, OA2_ERR_NETWORK, "token request to %s "
		    "failed: %s", host, detail);
	}
}

int
oa2_http_post(const struct oa2_http_request *req,
    struct oa2_http_response *resp, struct oa2_error *err)
{
	struct sink s = { NULL, 0, 0, req->max_body, 0, -1 };
	struct curl_slist *headers = NULL;
	struct curl_blob ca;
	char ebuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	CURL *curl;
	int r;

	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
	if (strncasecmp(req->url, "https://", 8) != 0)
		return oa2_seterr(err, OA2_ERR_CONFIG, "the token endpoint "
		    "must be an https:// URL");
	if ((curl = curl_easy_init()) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "cannot start libcurl");
	headers = curl_slist_append(headers,
	    "Content-Type: application/x-www-form-urlencoded");
	headers = curl_slist_append(headers, "Accept: application/json");
	if (headers == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_URL, req->url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, req->timeout);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, req->timeout);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (req->ca_data != NULL) {
		ca.data = (void *)req->ca_data;
		ca.len = req->ca_len;
		ca.flags = CURL_BLOB_NOCOPY;
		curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca);
	}
	curl_easy_setopt(curl, CURLOPT_USERAGENT, PACKAGE_NAME "/"
	    PACKAGE_VERSION);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req->body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)req->bodylen);
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
	if (rc != CURLE_OK) {
		r = transport_error(rc, req->url, req->timeout, ebuf,
		    req->ca_data != NULL, err);
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
	s.buf = NULL;		/* transferred */
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
	if (resp->body != NULL)
		oa2_freezero(resp->body, resp->len + 1);
	memset(resp, 0, sizeof(*resp));
	resp->retry_after = -1;
}

int
oa2_form_add(char **form, size_t *len, const char *name, const char *value)
{
	char *esc, *nf;
	size_t n;

	if ((esc = curl_easy_escape(NULL, value, 0)) == NULL)
		return OA2_ERR_NOMEM;
	n = *len + (*len > 0) + strlen(name) + 1 + strlen(esc);
	if ((nf = malloc(n + 1)) == NULL) {
		oa2_wipe(esc, strlen(esc));
		curl_free(esc);
		return OA2_ERR_NOMEM;
	}
	snprintf(nf, n + 1, "%s%s%s=%s", *form != NULL ? *form : "",
	    *len > 0 ? "&" : "", name, esc);
	oa2_wipe(esc, strlen(esc));
	curl_free(esc);
	if (*form != NULL)
		oa2_freezero(*form, *len + 1);
	*form = nf;
	*len = n;
	return OA2_OK;
}
