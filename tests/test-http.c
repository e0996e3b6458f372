/*
 * Unit test for http.c's plain-HTTP side (Azure managed identity): GET,
 * extra headers, WWW-Authenticate, and http:// allowed only to a
 * loopback or link-local peer, judged by the address connected to.
 * A plain HTTP server on 127.0.0.1 answers; nothing is ever sent
 * elsewhere (a non-local address is refused before a socket exists).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "error.h"
#include "http.h"
#include "tap.h"

struct server {
	int		fd;
	int		port;
	pthread_t	thread;
	pthread_mutex_t	mu;
	int		stop;
	int		nconn;		/* connections finished */
	char		reply[2048];
	char		req[8192];	/* the last request */
};

static int
listen_local(int *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(fd, 8) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == -1) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

static void *
serve(void *arg)
{
	struct server *sv = arg;
	struct timeval tv = { 5, 0 };
	char req[8192], reply[2048], *end;
	size_t len;
	ssize_t n;
	int fd;

	for (;;) {
		if ((fd = accept(sv->fd, NULL, NULL)) == -1)
			continue;
		pthread_mutex_lock(&sv->mu);
		if (sv->stop) {
			pthread_mutex_unlock(&sv->mu);
			close(fd);
			break;
		}
		memcpy(reply, sv->reply, sizeof(reply));
		pthread_mutex_unlock(&sv->mu);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		len = 0;
		req[0] = '\0';
		while (len + 1 < sizeof(req) &&
		    (n = read(fd, req + len, sizeof(req) - 1 - len)) > 0) {
			len += (size_t)n;
			req[len] = '\0';
			/* a TLS ClientHello: answer at once (and fail) */
			if ((unsigned char)req[0] == 0x16)
				break;
			/* headers only: GETs, and POSTs with short bodies */
			if ((end = strstr(req, "\r\n\r\n")) != NULL &&
			    (strncmp(req, "GET ", 4) == 0 ||
			    strlen(end + 4) > 0))
				break;
		}
		/* the client may have gone: nothing to do about it */
		(void)!write(fd, reply, strlen(reply));
		close(fd);
		pthread_mutex_lock(&sv->mu);
		memcpy(sv->req, req, len + 1);
		sv->nconn++;
		pthread_mutex_unlock(&sv->mu);
	}
	return NULL;
}

static void
set_reply(struct server *sv, int status, const char *headers,
    const char *body)
{
	pthread_mutex_lock(&sv->mu);
	snprintf(sv->reply, sizeof(sv->reply), "HTTP/1.1 %d X\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n%s\r\n%s", status, strlen(body), headers,
	    body);
	sv->req[0] = '\0';
	pthread_mutex_unlock(&sv->mu);
}

/* Wait until the server has finished n connections in all (a guard). */
static void
wait_conn(struct server *sv, int n)
{
	int i, done = 0;

	for (i = 0; i < 500 * slow() && !done; i++) {
		pthread_mutex_lock(&sv->mu);
		done = sv->nconn >= n;
		pthread_mutex_unlock(&sv->mu);
		if (!done)
			usleep(10000);
	}
}

static int
request(const char *url, int method, const char *const *headers,
    int allow_http, struct oa2_http_response *resp, struct oa2_error *err)
{
	struct oa2_http_request req;

	memset(&req, 0, sizeof(req));
	req.url = url;
	req.method = method;
	req.body = method == OA2_HTTP_POST ? "a=b" : NULL;
	req.bodylen = method == OA2_HTTP_POST ? 3 : 0;
	req.headers = headers;
	req.allow_http = allow_http;
	req.timeout = 5 * slow();
	req.max_body = 4096;
	oa2_clearerr(err);
	return oa2_http_post(&req, resp, err);
}

static void
test_addresses(void)
{
	ok(oa2_http_local_address("127.0.0.1") == 1, "127.0.0.1 is local");
	ok(oa2_http_local_address("127.1.2.3") == 1, "127/8 is local");
	ok(oa2_http_local_address("169.254.169.254") == 1,
	    "169.254.169.254 is link-local");
	ok(oa2_http_local_address("::1") == 1, "::1 is local");
	ok(oa2_http_local_address("[::1]") == 1, "[::1] is local");
	ok(oa2_http_local_address("fe80::1") == 1, "fe80::1 is link-local");
	ok(oa2_http_local_address("febf::1") == 1, "febf::1 is link-local");
	ok(oa2_http_local_address("fec0::1") == 0, "fec0::1 is not");
	ok(oa2_http_local_address("::ffff:127.0.0.1") == 1,
	    "v4-mapped loopback is local");
	ok(oa2_http_local_address("::ffff:10.0.0.1") == 0,
	    "v4-mapped 10/8 is not");
	ok(oa2_http_local_address("10.0.0.1") == 0, "10.0.0.1 is not");
	ok(oa2_http_local_address("169.253.1.1") == 0, "169.253/16 is not");
	ok(oa2_http_local_address("128.0.0.1") == 0, "128.0.0.1 is not");
	ok(oa2_http_local_address("2001:db8::1") == 0, "2001:db8:: is not");
	ok(oa2_http_local_address("localhost") == -1, "a name is no address");
	ok(oa2_http_local_address("") == -1, "empty is no address");
}

static void
test_plain(struct server *sv)
{
	static const char *const hdrs[] = { "Metadata: true",
	    "Authorization: Basic c2VjcmV0LWtleQ==", NULL };
	struct oa2_http_response resp;
	struct oa2_error err;
	char url[160], big[700];
	int r, conns = 0;

	/* http:// without allow_http: refused as before */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/t", sv->port);
	set_reply(sv, 200, "", "{}");
	r = request(url, OA2_HTTP_GET, NULL, 0, &resp, &err);
	ok(r == OA2_ERR_CONFIG, "http:// refused without allow_http");
	has_str(err.msg, "https://", "refusal names https://");

	/* GET with extra headers, to 127.0.0.1 */
	set_reply(sv, 200, "", "{\"ok\":1}");
	r = request(url, OA2_HTTP_GET, hdrs, 1, &resp, &err);
	ok(r == 0, "allow_http: GET to 127.0.0.1 works");
	if (r != 0)
		printf("# %s\n", err.msg);
	wait_conn(sv, ++conns);
	ok(resp.status == 200, "GET: status 200");
	is_str(resp.body, "{\"ok\":1}", "GET: body");
	has_str(sv->req, "GET /t HTTP/1.1\r\n", "GET: request line");
	has_str(sv->req, "\r\nMetadata: true\r\n", "GET: extra header 1");
	has_str(sv->req, "\r\nAuthorization: Basic c2VjcmV0LWtleQ==\r\n",
	    "GET: extra header 2");
	ok(strcasestr(sv->req, "Content-Type") == NULL,
	    "GET: no Content-Type");
	ok(resp.www_authenticate[0] == '\0', "GET: no WWW-Authenticate");
	oa2_http_response_clear(&resp);

	/* localhost: a name, judged by the address it resolves to */
	snprintf(url, sizeof(url), "http://localhost:%d/t", sv->port);
	set_reply(sv, 200, "", "{}");
	r = request(url, OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == 0, "allow_http: http://localhost works");
	if (r != 0)
		printf("# %s\n", err.msg);
	wait_conn(sv, ++conns);
	oa2_http_response_clear(&resp);

	/* 0x7f000001 is 127.0.0.1 in another spelling */
	snprintf(url, sizeof(url), "http://0x7f000001:%d/t", sv->port);
	set_reply(sv, 200, "", "{}");
	r = request(url, OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == 0, "allow_http: http://0x7f000001 works (the address counts)");
	wait_conn(sv, ++conns);
	oa2_http_response_clear(&resp);

	/* POST keeps its Content-Type and body */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/p", sv->port);
	set_reply(sv, 200, "", "{}");
	r = request(url, OA2_HTTP_POST, NULL, 1, &resp, &err);
	ok(r == 0, "allow_http: POST works");
	wait_conn(sv, ++conns);
	has_str(sv->req, "POST /p HTTP/1.1\r\n", "POST: request line");
	has_str(sv->req, "Content-Type: application/x-www-form-urlencoded",
	    "POST: Content-Type");
	oa2_http_response_clear(&resp);

	/* WWW-Authenticate captured, trimmed */
	set_reply(sv, 401, "WWW-Authenticate:   Basic realm=/var/opt/"
	    "azcmagent/tokens/abc.key  \r\n", "");
	r = request(url, OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == 0 && resp.status == 401, "401 is an answer");
	is_str(resp.www_authenticate, "Basic realm=/var/opt/azcmagent/"
	    "tokens/abc.key", "WWW-Authenticate captured");
	wait_conn(sv, ++conns);
	oa2_http_response_clear(&resp);
	ok(resp.www_authenticate[0] == '\0', "clear empties it");

	/* too long: none rather than a cut value */
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	{
		char h[800];

		snprintf(h, sizeof(h), "WWW-Authenticate: Basic realm=/%s\r\n",
		    big);
		set_reply(sv, 401, h, "");
	}
	r = request(url, OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == 0 && resp.www_authenticate[0] == '\0',
	    "an overlong WWW-Authenticate is dropped, not cut");
	wait_conn(sv, ++conns);
	oa2_http_response_clear(&resp);

	/* a redirect is reported, never followed */
	set_reply(sv, 302, "Location: http://127.0.0.1:1/elsewhere\r\n", "");
	r = request(url, OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == 0 && resp.status == 302, "302 not followed");
	is_str(resp.location, "127.0.0.1:1", "302: location");
	wait_conn(sv, ++conns);
	oa2_http_response_clear(&resp);

	/* a proxy in the environment is not used for http:// */
	setenv("http_proxy", "http://127.0.0.1:1", 1);
	setenv("ALL_PROXY", "http://127.0.0.1:1", 1);
	set_reply(sv, 200, "", "{}");
	r = request(url, OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == 0, "http:// ignores http_proxy and ALL_PROXY");
	if (r != 0)
		printf("# %s\n", err.msg);
	wait_conn(sv, ++conns);
	oa2_http_response_clear(&resp);
	unsetenv("http_proxy");
	unsetenv("ALL_PROXY");

	/* https:// with allow_http is still verified TLS: fails here */
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/t", sv->port);
	set_reply(sv, 200, "", "{}");
	r = request(url, OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == OA2_ERR_NETWORK, "https:// to a plain server fails");
	wait_conn(sv, ++conns);
	oa2_http_response_clear(&resp);

	/* other schemes */
	r = request("ftp://127.0.0.1/t", OA2_HTTP_GET, NULL, 1, &resp, &err);
	ok(r == OA2_ERR_CONFIG, "ftp:// refused");
	has_str(err.msg, "http://", "ftp://: sentence");

	/*
	 * Non-local addresses: refused before any socket is made, so
	 * nothing is sent (192.0.2.1 is TEST-NET-1; 3221225985 is it too).
	 */
	r = request("http://192.0.2.1:80/metadata/identity/oauth2/token",
	    OA2_HTTP_GET, hdrs, 1, &resp, &err);
	ok(r == OA2_ERR_CONFIG, "http:// to 192.0.2.1 refused");
	has_str(err.msg, "neither loopback nor link-local",
	    "non-local: sentence");
	has_str(err.msg, "192.0.2.1", "non-local: the address");
	ok(strstr(err.msg, "c2VjcmV0") == NULL, "non-local: no header value");
	r = request("http://3221225985:80/t", OA2_HTTP_GET, NULL, 1, &resp,
	    &err);
	ok(r == OA2_ERR_CONFIG, "http:// to 3221225985 (192.0.2.1) refused");
	r = request("http://[2001:db8::1]:80/t", OA2_HTTP_GET, NULL, 1, &resp,
	    &err);
	ok(r == OA2_ERR_CONFIG || r == OA2_ERR_NETWORK,
	    "http:// to 2001:db8::1 not connected");
	ok(strstr(err.msg, "2001:db8::1") != NULL, "2001:db8::1: named");
}

int
main(void)
{
	struct server sv;
	struct sockaddr_in sa;
	int fd;

	signal(SIGPIPE, SIG_IGN);
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	unsetenv("no_proxy");
	unsetenv("NO_PROXY");
	curl_global_init(CURL_GLOBAL_DEFAULT);
	test_addresses();

	memset(&sv, 0, sizeof(sv));
	pthread_mutex_init(&sv.mu, NULL);
	if ((sv.fd = listen_local(&sv.port)) == -1 ||
	    pthread_create(&sv.thread, NULL, serve, &sv) != 0) {
		ok(0, "start the HTTP server");
		goto out;
	}
	test_plain(&sv);
	pthread_mutex_lock(&sv.mu);
	sv.stop = 1;
	pthread_mutex_unlock(&sv.mu);
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) != -1) {
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((unsigned short)sv.port);
		connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
	}
	pthread_join(sv.thread, NULL);
	close(sv.fd);
 out:
	pthread_mutex_destroy(&sv.mu);
	curl_global_cleanup();
	return done_testing();
}
