/*
 * sasl-oauth2 tunnel: log in to an IMAP or POP3 server with the token
 * of the mailbox's account, then hand the client a session that is
 * already authenticated (IMAP "* PREAUTH", POP3 "+OK") on stdin and
 * stdout, and relay bytes both ways until either side closes.
 *
 * TLS is OpenSSL used directly, not libcurl's CONNECT_ONLY: libcurl
 * would do the login itself and hide what the tunnel must see and
 * control (the post-login capabilities, the STARTTLS upgrade of the same
 * socket, SSL_pending, a close_notify when the client closes first), and
 * curl_easy_recv/send cannot say whether a TLS read waits for the socket
 * to become writable. Verification is never off: the system's CA store
 * or --ca-file, the host name (or IP address) checked, SNI sent.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cache.h"
#include "conf.h"
#include "error.h"
#include "secret.h"
#include "token.h"
#include "wire.h"
#include "tool.h"
#include "tunnel.h"

#define TUN_IMAP		1
#define TUN_POP3		2
#define TUN_LOGIN_TIMEOUT	30	/* s: connect, TLS and login */
#define TUN_DRAIN_TIMEOUT	5	/* s: a server silent that long after
					   the client closed is done */
#define TUN_LINE_MAX		16384	/* a server line during the login */
#define TUN_BUF			(128 * 1024)	/* each relay direction */
#define TUN_POP3_LINE		255	/* RFC 2449: a command line, CRLF
					   included */
#define TUN_MAX_CHALLENGES	3

struct tun {
	int		proto;		/* TUN_IMAP or TUN_POP3 */
	const char	*pname;		/* "IMAP" or "POP3" */
	const char	*user;
	const char	*mech;		/* "XOAUTH2" or "OAUTHBEARER" */
	char		host[256];	/* no brackets */
	char		port[8];
	int		implicit_tls;
	int		fd;
	SSL_CTX		*ctx;
	SSL		*ssl;
	time_t		deadline;	/* of the login phase */

	char		in[TUN_LINE_MAX + 1];	/* read, not yet a line */
	size_t		inlen;
	char		line[TUN_LINE_MAX + 1];	/* the last line, no CRLF */

	char		caps[TUN_LINE_MAX + 1];	/* space-separated */
	int		have_caps;
	char		challenge[160];		/* a decoded error challenge */

	int		ex;			/* the failure: sysexits code */
	char		why[OA2_ERRMSG_MAX];	/* and its sentence */
};

/* Record the (first) failure; returns -1. */
static int __attribute__((format(printf, 3, 4)))
fail(struct tun *t, int ex, const char *fmt, ...)
{
	va_list ap;

	if (t->ex != EX_OK)
		return -1;
	t->ex = ex;
	va_start(ap, fmt);
	vsnprintf(t->why, sizeof(t->why), fmt, ap);
	va_end(ap);
	return -1;
}

/* Server text for a sentence: printable ASCII, at most 200 characters. */
static const char *
clean(const char *s, char *buf, size_t len)
{
	oa2_sanitize(buf, len, s, strlen(s), 200);
	return buf;
}

/* The first OpenSSL error in a few words (the queue is cleared). */
static const char *
ssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *r;

	ERR_clear_error();
	if (e == 0)
		return errno != 0 ? strerror(errno) : "connection closed";
	if ((r = ERR_reason_error_string(e)) != NULL)
		snprintf(buf, len, "%s", r);
	else
		ERR_error_string_n(e, buf, len);
	return buf;
}

/* ---- the login phase: blocking with a deadline ----------------------- */

/* Wait until fd is ready for events, or fail at the deadline. */
static int
wait_fd(struct tun *t, short events)
{
	struct pollfd p;
	time_t now;
	int r;

	for (;;) {
		now = time(NULL);
		if (now >= t->deadline)
			return fail(t, EX_TEMPFAIL, "%s:%s did not answer "
			    "within %d s", t->host, t->port,
			    TUN_LOGIN_TIMEOUT);
		p.fd = t->fd;
		p.events = events;
		p.revents = 0;
		r = poll(&p, 1, (int)(t->deadline - now) * 1000);
		if (r > 0)
			return 0;
		if (r == -1 && errno != EINTR)
			return fail(t, EX_OSERR, "poll: %s", strerror(errno));
	}
}

/* Wait as an SSL call returning r asks; -1 when it failed for good. */
static int
ssl_wait(struct tun *t, int r, const char *what)
{
	char buf[160];

	switch (SSL_get_error(t->ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return wait_fd(t, POLLIN);
	case SSL_ERROR_WANT_WRITE:
		return wait_fd(t, POLLOUT);
	case SSL_ERROR_ZERO_RETURN:
		return fail(t, EX_UNAVAILABLE, "%s:%s closed the connection "
		    "during the login", t->host, t->port);
	default:
		return fail(t, EX_UNAVAILABLE, "%s with %s:%s failed: %s",
		    what, t->host, t->port, ssl_reason(buf, sizeof(buf)));
	}
}

static int
io_write(struct tun *t, const char *buf, size_t len)
{
	ssize_t n;
	int r;

	while (len > 0) {
		if (t->ssl != NULL) {
			ERR_clear_error();
			if ((r = SSL_write(t->ssl, buf, (int)len)) > 0) {
				buf += r;
				len -= (size_t)r;
			} else if (ssl_wait(t, r, "writing") != 0)
				return -1;
			continue;
		}
		if ((n = write(t->fd, buf, len)) > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (n == -1 && errno == EAGAIN) {
			if (wait_fd(t, POLLOUT) != 0)
				return -1;
		} else if (n == -1 && errno != EINTR)
			return fail(t, EX_TEMPFAIL, "cannot write to %s:%s: "
			    "%s", t->host, t->port, strerror(errno));
	}
	return 0;
}

/* Read what is there (at least one byte) into t->in. */
static int
io_read(struct tun *t)
{
	size_t room = TUN_LINE_MAX - t->inlen;
	ssize_t n;
	int r;

	if (room == 0)
		return fail(t, EX_PROTOCOL, "%s:%s sent a line longer than "
		    "%d bytes", t->host, t->port, TUN_LINE_MAX);
	for (;;) {
		if (t->ssl != NULL) {
			ERR_clear_error();
			if ((r = SSL_read(t->ssl, t->in + t->inlen,
			    (int)room)) > 0) {
				t->inlen += (size_t)r;
				return 0;
			}
			if (SSL_get_error(t->ssl, r) == SSL_ERROR_SYSCALL &&
			    ERR_peek_error() == 0)
				return fail(t, EX_UNAVAILABLE, "%s:%s closed "
				    "the connection during the login",
				    t->host, t->port);
			if (ssl_wait(t, r, "reading") != 0)
				return -1;
			continue;
		}
		if ((n = read(t->fd, t->in + t->inlen, room)) > 0) {
			t->inlen += (size_t)n;
			return 0;
		}
		if (n == 0)
			return fail(t, EX_UNAVAILABLE, "%s:%s closed the "
			    "connection during the login", t->host, t->port);
		if (errno == EAGAIN) {
			if (wait_fd(t, POLLIN) != 0)
				return -1;
		} else if (errno != EINTR)
			return fail(t, EX_TEMPFAIL, "cannot read from %s:%s: "
			    "%s", t->host, t->port, strerror(errno));
	}
}

/* The next line from the server into t->line, without its CRLF. */
static int
read_line(struct tun *t)
{
	char *nl;
	size_t n;

	/*
	 * Every login loop reads a line per turn: the deadline holds for a
	 * server that never stops talking (endless untagged lines or CAPA)
	 * as for one that is silent.
	 */
	if (time(NULL) >= t->deadline)
		return fail(t, EX_TEMPFAIL, "%s:%s did not finish the %s "
		    "login within %d s", t->host, t->port, t->pname,
		    TUN_LOGIN_TIMEOUT);
	while ((nl = memchr(t->in, '\n', t->inlen)) == NULL)
		if (io_read(t) != 0)
			return -1;
	n = (size_t)(nl - t->in);
	memcpy(t->line, t->in, n);
	if (n > 0 && t->line[n - 1] == '\r')
		n--;
	t->line[n] = '\0';
	n = (size_t)(nl - t->in) + 1;
	memmove(t->in, t->in + n, t->inlen - n);
	t->inlen -= n;
	return 0;
}

static int
write_str(struct tun *t, const char *s)
{
	return io_write(t, s, strlen(s));
}

/* ---- connecting ------------------------------------------------------ */

static int
tcp_connect(struct tun *t)
{
	struct addrinfo hints, *res = NULL, *ai;
	socklen_t sl;
	int r, fd = -1, e = 0, one = 1;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(t->host, t->port, &hints, &res)) != 0)
		return fail(t, r == EAI_AGAIN ? EX_TEMPFAIL : EX_NOHOST,
		    "cannot resolve %s: %s", t->host, r == EAI_SYSTEM ?
		    strerror(errno) : gai_strerror(r));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, ai->ai_protocol);
		if (fd == -1) {
			e = errno;
			continue;
		}
		t->fd = fd;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			if (wait_fd(t, POLLOUT) != 0) {
				freeaddrinfo(res);
				return -1;
			}
			sl = sizeof(e);
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) == 0 &&
			    e == 0)
				break;
		} else
			e = errno;
		close(fd);
		t->fd = fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		return fail(t, e == ETIMEDOUT || e == ENETUNREACH ||
		    e == EHOSTUNREACH ? EX_TEMPFAIL : EX_UNAVAILABLE,
		    "cannot connect to %s:%s: %s", t->host, t->port,
		    strerror(e != 0 ? e : ECONNREFUSED));
	/* Commands are small and interactive: no Nagle delay. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
}

static int
tls_start(struct tun *t, const char *ca_file)
{
	unsigned char ip[16];
	char buf[160];
	long v;
	int r, isip;

	if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION) != 1)
		return fail(t, EX_SOFTWARE, "cannot set up TLS: %s",
		    ssl_reason(buf, sizeof(buf)));
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1)
			return fail(t, EX_CONFIG, "cannot load the CA "
			    "certificates of --ca-file %s: %s", ca_file,
			    ssl_reason(buf, sizeof(buf)));
	} else if (SSL_CTX_set_default_verify_paths(t->ctx) != 1)
		return fail(t, EX_CONFIG, "cannot load the system's CA "
		    "certificates: %s", ssl_reason(buf, sizeof(buf)));
	SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
	    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
	/* Servers often close without close_notify: that is an EOF. */
	SSL_CTX_set_options(t->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
	if ((t->ssl = SSL_new(t->ctx)) == NULL ||
	    SSL_set_fd(t->ssl, t->fd) != 1)
		return fail(t, EX_SOFTWARE, "cannot set up TLS: %s",
		    ssl_reason(buf, sizeof(buf)));
	isip = inet_pton(AF_INET, t->host, ip) == 1 ||
	    inet_pton(AF_INET6, t->host, ip) == 1;
	if (isip)
		r = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl),
		    t->host);
	else
		r = SSL_set1_host(t->ssl, t->host) == 1 &&
		    SSL_set_tlsext_host_name(t->ssl, t->host) == 1;
	if (r != 1)
		return fail(t, EX_SOFTWARE, "cannot set up TLS for %s: %s",
		    t->host, ssl_reason(buf, sizeof(buf)));
	for (;;) {
		ERR_clear_error();
		if ((r = SSL_connect(t->ssl)) == 1)
			break;
		if ((v = SSL_get_verify_result(t->ssl)) != X509_V_OK)
			return fail(t, EX_UNAVAILABLE, "the TLS certificate of "
			    "%s:%s cannot be trusted: %s (for a private CA "
			    "pass --ca-file FILE; verification is never "
			    "switched off)", t->host, t->port,
			    X509_verify_cert_error_string(v));
		switch (SSL_get_error(t->ssl, r)) {
		case SSL_ERROR_WANT_READ:
			if (wait_fd(t, POLLIN) != 0)
				return -1;
			break;
		case SSL_ERROR_WANT_WRITE:
			if (wait_fd(t, POLLOUT) != 0)
				return -1;
			break;
		default:
			return fail(t, EX_UNAVAILABLE, "TLS with %s:%s "
			    "failed: %s%s", t->host, t->port,
			    ssl_reason(buf, sizeof(buf)), t->implicit_tls ?
			    " (does the port speak implicit TLS?)" : "");
		}
	}
	return 0;
}

/* ---- capabilities ---------------------------------------------------- */

static void
set_caps(struct tun *t, const char *s, size_t len)
{
	size_t i;

	if (len > TUN_LINE_MAX)
		len = TUN_LINE_MAX;
	for (i = 0; i < len; i++)
		t->caps[i] = isprint((unsigned char)s[i]) ? s[i] : ' ';
	t->caps[len] = '\0';
	t->have_caps = 1;
}

/* Whether the capability list holds word (case-insensitive). */
static int
has_word(const char *list, const char *word)
{
	size_t n = strlen(word), k;
	const char *p = list;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		k = strcspn(p, " ");
		if (k == n && strncasecmp(p, word, n) == 0)
			return 1;
		p += k;
	}
	return 0;
}

/* "[CAPABILITY a b c] text" anywhere in s: the capabilities. */
static int
bracket_caps(struct tun *t, const char *s)
{
	const char *p = strstr(s, "[CAPABILITY "), *e;

	if (p == NULL)
		p = strcasestr(s, "[CAPABILITY ");
	if (p == NULL || (e = strchr(p, ']')) == NULL)
		return 0;
	p += strlen("[CAPABILITY ");
	set_caps(t, p, (size_t)(e - p));
	return 1;
}

/* A tagged response: "TAG OK|NO|BAD text"; returns the status word. */
static const char *
tagged(const char *line, const char *tag)
{
	size_t n = strlen(tag);

	if (strncmp(line, tag, n) != 0 || line[n] != ' ')
		return NULL;
	return line + n + 1;
}

/* IMAP CAPABILITY with tag: t->caps. */
static int
imap_capability(struct tun *t, const char *tag)
{
	char cmd[32], buf[256];
	const char *st;

	t->have_caps = 0;
	snprintf(cmd, sizeof(cmd), "%s CAPABILITY\r\n", tag);
	if (write_str(t, cmd) != 0)
		return -1;
	for (;;) {
		if (read_line(t) != 0)
			return -1;
		if (strncasecmp(t->line, "* CAPABILITY ", 13) == 0)
			set_caps(t, t->line + 13, strlen(t->line + 13));
		else if (strncasecmp(t->line, "* BYE", 5) == 0)
			return fail(t, EX_UNAVAILABLE, "%s:%s closed the "
			    "session: %s", t->host, t->port,
			    clean(t->line, buf, sizeof(buf)));
		else if ((st = tagged(t->line, tag)) != NULL) {
			if (strncasecmp(st, "OK", 2) != 0)
				return fail(t, EX_PROTOCOL, "%s:%s refused "
				    "CAPABILITY: %s", t->host, t->port,
				    clean(t->line, buf, sizeof(buf)));
			bracket_caps(t, st);
			if (!t->have_caps)
				set_caps(t, "", 0);
			return 0;
		}
	}
}

/* ---- the SASL response ----------------------------------------------- */

/*
 * The base64 of the client response for the token, a new string to be
 * freed with oa2_freezero_str.
 */
static char *
sasl_b64(struct tun *t, const char *token)
{
	char *resp = NULL, *b64;
	size_t rlen = 0, blen;
	struct oa2_error err;
	int r;

	if (strcasecmp(t->mech, "OAUTHBEARER") == 0)
		r = oa2_oauthbearer_response(t->user, t->host, t->port,
		    token, &resp, &rlen);
	else
		r = oa2_xoauth2_response(t->user, token, &resp, &rlen);
	if (r != 0) {
		/*
		 * OA2_ERR_CONFIG: a control character in a field (the
		 * mailbox and host were checked before the token).
		 */
		oa2_clearerr(&err);
		if (r != OA2_ERR_CONFIG)
			fail(t, EX_OSERR, "out of memory");
		else if (oa2_wire_check("mailbox", t->user, &err) != OA2_OK ||
		    oa2_wire_check("server name", t->host, &err) != OA2_OK)
			fail(t, EX_USAGE, "%s", err.msg);
		else
			fail(t, EX_USAGE, "the %s response cannot carry the "
			    "token: it holds a control character", t->mech);
		return NULL;
	}
	blen = 4 * ((rlen + 2) / 3) + 1;
	if ((b64 = malloc(blen)) == NULL)
		fail(t, EX_OSERR, "out of memory");
	else
		EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)resp,
		    (int)rlen);
	oa2_freezero(resp, rlen);
	return b64;
}

/*
 * A continuation after the response was sent is an error challenge
 * (base64 JSON): remember what it says and answer as RFC 7628 and
 * Microsoft want, "" for XOAUTH2 and %x01 for OAUTHBEARER.
 */
static int
answer_challenge(struct tun *t, const char *b64)
{
	unsigned char *dec;
	size_t len = strlen(b64);
	int n;

	while (*b64 == ' ')
		b64++, len--;
	if (len > 0 && len % 4 == 0 && (dec = malloc(len / 4 * 3 + 1)) !=
	    NULL) {
		if ((n = EVP_DecodeBlock(dec, (const unsigned char *)b64,
		    (int)len)) > 0) {
			while (n > 0 && len > 0 && b64[len - 1] == '=')
				n--, len--;
			oa2_challenge_describe((char *)dec, (size_t)n,
			    t->challenge, sizeof(t->challenge));
		}
		free(dec);
	}
	return write_str(t, strcasecmp(t->mech, "OAUTHBEARER") == 0 ?
	    "AQ==\r\n" : "\r\n");
}

/* The server refused the login: the sentence, and whether to drop. */
static int
refused(struct tun *t, const char *text, int temporary)
{
	char buf[256];

	return fail(t, temporary ? EX_TEMPFAIL : EX_NOPERM, "%s:%s refused "
	    "the %s login of %s with %s%s%s%s: %s", t->host, t->port,
	    t->pname, t->user, t->mech, *t->challenge != '\0' ? " (" : "",
	    t->challenge, *t->challenge != '\0' ? ")" : "",
	    clean(text, buf, sizeof(buf)));
}

/* ---- the greeting ---------------------------------------------------- */

/*
 * The end of the greeting after lead ("]" or "+OK"): the mailbox and
 * host when they fit in room (with the NUL), else a shorter sentence.
 * Returns its length; greet_write writes it, never truncated.
 */
static size_t
greet_tail(const struct tun *t, const char *lead, size_t room)
{
	int n;

	n = snprintf(NULL, 0, "%s %s logged in at %s by sasl-oauth2\r\n",
	    lead, t->user, t->host);
	if (n >= 0 && (size_t)n < room)
		return (size_t)n;
	return strlen(lead) + strlen(" logged in by sasl-oauth2\r\n");
}

static void
greet_write(const struct tun *t, const char *lead, char *dst, size_t room)
{
	int n;

	n = snprintf(dst, room, "%s %s logged in at %s by sasl-oauth2\r\n",
	    lead, t->user, t->host);
	if (n < 0 || (size_t)n >= room)
		snprintf(dst, room, "%s logged in by sasl-oauth2\r\n", lead);
}

/* ---- IMAP ------------------------------------------------------------ */

static int
imap_login(struct tun *t, const char *ca_file, const char *b64,
    char *greet, size_t greetlen)
{
	char buf[256], authcap[32], cmd[64], *p, *q;
	const char *st;
	int sent, nch = 0;
	size_t n, tail;

	if (read_line(t) != 0)
		return -1;
	if (strncasecmp(t->line, "* BYE", 5) == 0)
		return fail(t, EX_UNAVAILABLE, "%s:%s refused the connection: "
		    "%s", t->host, t->port, clean(t->line, buf, sizeof(buf)));
	if (strncasecmp(t->line, "* OK", 4) != 0)
		return fail(t, EX_PROTOCOL, "%s:%s does not greet like an "
		    "IMAP server: %s", t->host, t->port,
		    clean(t->line, buf, sizeof(buf)));
	if (!bracket_caps(t, t->line) && imap_capability(t, "C1") != 0)
		return -1;
	if (!t->implicit_tls) {
		if (!has_word(t->caps, "STARTTLS"))
			return fail(t, EX_UNAVAILABLE, "%s:%s does not offer "
			    "STARTTLS, and the tunnel never logs in without "
			    "TLS (use port 993 for implicit TLS)", t->host,
			    t->port);
		if (write_str(t, "S1 STARTTLS\r\n") != 0)
			return -1;
		do {
			if (read_line(t) != 0)
				return -1;
		} while ((st = tagged(t->line, "S1")) == NULL);
		if (strncasecmp(st, "OK", 2) != 0)
			return fail(t, EX_UNAVAILABLE, "%s:%s refused "
			    "STARTTLS: %s", t->host, t->port,
			    clean(t->line, buf, sizeof(buf)));
		if (t->inlen > 0)	/* injected before the handshake */
			return fail(t, EX_PROTOCOL, "%s:%s sent data after "
			    "its STARTTLS answer, before TLS", t->host,
			    t->port);
		if (tls_start(t, ca_file) != 0 ||
		    imap_capability(t, "C2") != 0)
			return -1;
	}
	snprintf(authcap, sizeof(authcap), "AUTH=%s", t->mech);
	if (!has_word(t->caps, authcap))
		return fail(t, EX_UNAVAILABLE, "%s:%s does not offer %s "
		    "(capabilities: %s)", t->host, t->port, authcap,
		    clean(t->caps, buf, sizeof(buf)));

	/* SASL-IR: the response on the command line (up to 8 KB). */
	sent = has_word(t->caps, "SASL-IR");
	snprintf(cmd, sizeof(cmd), "A1 AUTHENTICATE %s%s", t->mech,
	    sent ? " " : "\r\n");
	if (write_str(t, cmd) != 0 ||
	    (sent && (write_str(t, b64) != 0 || write_str(t, "\r\n") != 0)))
		return -1;
	t->have_caps = 0;	/* only the capabilities after the login */
	for (;;) {
		if (read_line(t) != 0)
			return -1;
		if (t->line[0] == '+') {
			if (!sent) {
				if (write_str(t, b64) != 0 ||
				    write_str(t, "\r\n") != 0)
					return -1;
				sent = 1;
			} else if (++nch > TUN_MAX_CHALLENGES)
				return fail(t, EX_PROTOCOL, "%s:%s keeps "
				    "sending challenges", t->host, t->port);
			else if (answer_challenge(t, t->line + 1) != 0)
				return -1;
		} else if (strncasecmp(t->line, "* CAPABILITY ", 13) == 0)
			set_caps(t, t->line + 13, strlen(t->line + 13));
		else if (strncasecmp(t->line, "* BYE", 5) == 0)
			return fail(t, EX_UNAVAILABLE, "%s:%s closed the "
			    "session during the login: %s", t->host, t->port,
			    clean(t->line, buf, sizeof(buf)));
		else if ((st = tagged(t->line, "A1")) != NULL) {
			if (strncasecmp(st, "OK", 2) == 0)
				break;
			if (strncasecmp(st, "NO", 2) == 0)
				return refused(t, st, strstr(st,
				    "[UNAVAILABLE]") != NULL);
			return fail(t, EX_PROTOCOL, "%s:%s did not accept "
			    "AUTHENTICATE %s: %s", t->host, t->port, t->mech,
			    clean(t->line, buf, sizeof(buf)));
		}
	}
	if (!bracket_caps(t, st) && !t->have_caps &&
	    imap_capability(t, "C3") != 0)
		return -1;

	/*
	 * The greeting, with what the client may use: no STARTTLS (the
	 * tunnel is the secure channel), no login capabilities.
	 */
	n = (size_t)snprintf(greet, greetlen, "* PREAUTH [CAPABILITY");
	tail = greet_tail(t, "]", greetlen - n);
	for (p = t->caps; *p != '\0'; p = q) {
		while (*p == ' ')
			p++;
		if ((q = p + strcspn(p, " ")) == p)
			break;
		if ((q - p == 8 && strncasecmp(p, "STARTTLS", 8) == 0) ||
		    (q - p == 7 && strncasecmp(p, "SASL-IR", 7) == 0) ||
		    (q - p == 12 && strncasecmp(p, "LOGINDISABLED", 12) == 0) ||
		    strncasecmp(p, "AUTH=", 5) == 0)
			continue;
		/* a capability that does not fit is left out, whole */
		if (n + (size_t)(q - p) + 1 + tail < greetlen)
			n += (size_t)snprintf(greet + n, greetlen - n, " %.*s",
			    (int)(q - p), p);
	}
	greet_write(t, "]", greet + n, greetlen - n);
	return 0;
}

/* ---- POP3 ------------------------------------------------------------ */

/* CAPA: one capability per line in t->caps, separated by '\n'. */
static int
pop3_capa(struct tun *t)
{
	size_t n = 0, k;
	const char *l;

	t->have_caps = 0;
	t->caps[0] = '\0';
	if (write_str(t, "CAPA\r\n") != 0 || read_line(t) != 0)
		return -1;
	if (strncmp(t->line, "+OK", 3) != 0)
		return 0;	/* no CAPA: nothing known */
	for (;;) {
		if (read_line(t) != 0)
			return -1;
		l = t->line;
		if (l[0] == '.') {
			if (l[1] == '\0')
				break;
			l++;	/* dot-stuffed */
		}
		k = strlen(l);
		if (n + k + 2 < sizeof(t->caps)) {
			memcpy(t->caps + n, l, k);
			n += k;
			t->caps[n++] = '\n';
			t->caps[n] = '\0';
		}
	}
	t->have_caps = 1;
	return 0;
}

/* Whether CAPA listed name (with sasl: the SASL line lists name). */
static int
pop3_has(const struct tun *t, const char *name, int sasl)
{
	char line[TUN_LINE_MAX + 1];
	const char *p = t->caps, *nl;
	size_t k;

	for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
		k = (size_t)(nl - p);
		memcpy(line, p, k);
		line[k] = '\0';
		if (sasl && strncasecmp(line, "SASL ", 5) == 0 &&
		    has_word(line + 5, name))
			return 1;
		if (!sasl && has_word(line, name) &&
		    strncasecmp(line, name, strlen(name)) == 0)
			return 1;
	}
	return 0;
}

static int
pop3_login(struct tun *t, const char *ca_file, const char *b64,
    char *greet, size_t greetlen)
{
	char buf[256], cmd[64];
	size_t need;
	int sent, nch = 0;

	if (read_line(t) != 0)
		return -1;
	if (strncmp(t->line, "+OK", 3) != 0)
		return fail(t, strncmp(t->line, "-ERR", 4) == 0 ?
		    EX_UNAVAILABLE : EX_PROTOCOL, "%s:%s does not greet like "
		    "a POP3 server: %s", t->host, t->port,
		    clean(t->line, buf, sizeof(buf)));
	if (pop3_capa(t) != 0)
		return -1;
	if (!t->implicit_tls) {
		if (!pop3_has(t, "STLS", 0))
			return fail(t, EX_UNAVAILABLE, "%s:%s does not offer "
			    "STLS (STARTTLS), and the tunnel never logs in "
			    "without TLS (use port 995 for implicit TLS)",
			    t->host, t->port);
		if (write_str(t, "STLS\r\n") != 0 || read_line(t) != 0)
			return -1;
		if (strncmp(t->line, "+OK", 3) != 0)
			return fail(t, EX_UNAVAILABLE, "%s:%s refused STLS: "
			    "%s", t->host, t->port,
			    clean(t->line, buf, sizeof(buf)));
		if (t->inlen > 0)
			return fail(t, EX_PROTOCOL, "%s:%s sent data after "
			    "its STLS answer, before TLS", t->host, t->port);
		if (tls_start(t, ca_file) != 0 || pop3_capa(t) != 0)
			return -1;
	}
	if (t->have_caps && !pop3_has(t, t->mech, 1))
		return fail(t, EX_UNAVAILABLE, "%s:%s does not offer SASL %s",
		    t->host, t->port, t->mech);

	/*
	 * RFC 5034: the initial response only when the AUTH line fits the
	 * 255-octet limit (never with a real token); otherwise after "+".
	 */
	need = strlen("AUTH  \r\n") + strlen(t->mech) + strlen(b64);
	sent = need <= TUN_POP3_LINE;
	snprintf(cmd, sizeof(cmd), "AUTH %s%s", t->mech, sent ? " " : "\r\n");
	if (write_str(t, cmd) != 0 ||
	    (sent && (write_str(t, b64) != 0 || write_str(t, "\r\n") != 0)))
		return -1;
	for (;;) {
		if (read_line(t) != 0)
			return -1;
		if (strncmp(t->line, "+OK", 3) == 0)
			break;
		if (strncmp(t->line, "-ERR", 4) == 0)
			return refused(t, t->line, strstr(t->line,
			    "[SYS/TEMP]") != NULL || strstr(t->line,
			    "[IN-USE]") != NULL);
		if (t->line[0] != '+' || (t->line[1] != ' ' &&
		    t->line[1] != '\0'))
			return fail(t, EX_PROTOCOL, "%s:%s answered AUTH "
			    "with: %s", t->host, t->port,
			    clean(t->line, buf, sizeof(buf)));
		if (!sent) {
			if (write_str(t, b64) != 0 || write_str(t, "\r\n") != 0)
				return -1;
			sent = 1;
		} else if (++nch > TUN_MAX_CHALLENGES)
			return fail(t, EX_PROTOCOL, "%s:%s keeps sending "
			    "challenges", t->host, t->port);
		else if (answer_challenge(t, t->line + 1) != 0)
			return -1;
	}
	greet_write(t, "+OK", greet, greetlen);
	return 0;
}

/* ---- the relay ------------------------------------------------------- */

struct rbuf {
	char	*b;
	size_t	off;	/* data is b[off, off + len) */
	size_t	len;
};

/* Room at the end of the buffer, moving the data to the front if needed. */
static size_t
room(struct rbuf *r)
{
	if (r->len == 0)
		r->off = 0;
	else if (r->off > 0 && r->off + r->len > TUN_BUF / 2) {
		memmove(r->b, r->b + r->off, r->len);
		r->off = 0;
	}
	return TUN_BUF - r->off - r->len;
}

/* How an SSL_read/SSL_write result that is not data ends: 1 EOF. */
#define SSL_EOF		1
#define SSL_WAIT_IN	2
#define SSL_WAIT_OUT	3
#define SSL_FAILED	4
static int
ssl_state(SSL *ssl, int r)
{
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return SSL_WAIT_IN;
	case SSL_ERROR_WANT_WRITE:
		return SSL_WAIT_OUT;
	case SSL_ERROR_ZERO_RETURN:
		return SSL_EOF;
	case SSL_ERROR_SYSCALL:
		if (ERR_peek_error() == 0 && (r == 0 || errno == 0))
			return SSL_EOF;
		return SSL_FAILED;
	default:
		return SSL_FAILED;
	}
}

/*
 * Relay until either side is done. first (the greeting and anything the
 * server sent after the login) goes to the client first. Returns a
 * sysexits code.
 */
static int
relay(struct tun *t, const char *first, size_t firstlen)
{
	struct rbuf up = { NULL, 0, 0 }, down = { NULL, 0, 0 };
	struct pollfd p[3];
	char buf[160];
	int fl0, fl1, in_eof = 0, srv_eof = 0, out_dead = 0;
	int wr_wait = 0, rd_wait = POLLIN, progress, r, s, ex = EX_OK;
	time_t drain_until = 0, now;
	ssize_t n;

	if ((up.b = malloc(TUN_BUF)) == NULL ||
	    (down.b = malloc(TUN_BUF)) == NULL) {
		free(up.b);
		fprintf(stderr, "%s: out of memory\n", progname);
		return EX_OSERR;
	}
	memcpy(down.b, first, firstlen);
	down.len = firstlen;
	fl0 = fcntl(0, F_GETFL);
	fl1 = fcntl(1, F_GETFL);
	if (fl0 != -1)
		(void)fcntl(0, F_SETFL, fl0 | O_NONBLOCK);
	if (fl1 != -1)
		(void)fcntl(1, F_SETFL, fl1 | O_NONBLOCK);

	for (;;) {
		progress = 0;

		/* client -> server */
		while (up.len > 0) {
			ERR_clear_error();
			if ((r = SSL_write(t->ssl, up.b + up.off,
			    (int)up.len)) > 0) {
				up.off += (size_t)r;
				up.len -= (size_t)r;
				progress = 1;
				continue;
			}
			s = ssl_state(t->ssl, r);
			if (s == SSL_WAIT_IN || s == SSL_WAIT_OUT) {
				wr_wait = s == SSL_WAIT_IN ? POLLIN : POLLOUT;
				break;
			}
			/* the server is gone: what it sent still goes out */
			if (s == SSL_FAILED && !srv_eof) {
				fprintf(stderr, "%s: the connection to %s:%s "
				    "failed: %s\n", progname, t->host, t->port,
				    ssl_reason(buf, sizeof(buf)));
				ex = EX_IOERR;
			}
			srv_eof = 1;
			up.len = 0;
		}
		if (up.len == 0)
			wr_wait = 0;
		/*
		 * The client is done and all it sent is out. OpenSSL drops
		 * what arrives after our close_notify, so the server's last
		 * words (the answer to LOGOUT or QUIT, then its close) are
		 * read first, until the server closes or stays silent for
		 * TUN_DRAIN_TIMEOUT; close_notify goes at the end.
		 */
		if (in_eof && up.len == 0 && drain_until == 0)
			drain_until = time(NULL) + TUN_DRAIN_TIMEOUT;

		/* server -> client buffer; SSL_pending is read here too */
		while (!srv_eof && room(&down) > 0) {
			ERR_clear_error();
			if ((r = SSL_read(t->ssl, down.b + down.off + down.len,
			    (int)room(&down))) > 0) {
				down.len += (size_t)r;
				progress = 1;
				if (drain_until != 0)
					drain_until = time(NULL) +
					    TUN_DRAIN_TIMEOUT;
				continue;
			}
			s = ssl_state(t->ssl, r);
			if (s == SSL_WAIT_IN || s == SSL_WAIT_OUT) {
				rd_wait = s == SSL_WAIT_IN ? POLLIN : POLLOUT;
				break;
			}
			if (s == SSL_FAILED) {
				fprintf(stderr, "%s: the connection to %s:%s "
				    "failed: %s\n", progname, t->host, t->port,
				    ssl_reason(buf, sizeof(buf)));
				ex = EX_IOERR;
			}
			srv_eof = 1;
			progress = 1;
		}

		/* client buffer -> stdout */
		while (down.len > 0 && !out_dead) {
			if ((n = write(1, down.b + down.off, down.len)) > 0) {
				down.off += (size_t)n;
				down.len -= (size_t)n;
				progress = 1;
			} else if (n == -1 && errno == EINTR)
				continue;
			else if (n == -1 && errno == EAGAIN)
				break;
			else
				out_dead = 1;	/* the client has gone */
		}

		if (out_dead || (srv_eof && down.len == 0))
			break;
		now = time(NULL);
		if (drain_until != 0 && now >= drain_until)
			break;

		/* stdin -> server buffer */
		if (!in_eof && !srv_eof && room(&up) > 0) {
			n = read(0, up.b + up.off + up.len, room(&up));
			if (n > 0) {
				up.len += (size_t)n;
				progress = 1;
			} else if (n == 0 || (errno != EAGAIN &&
			    errno != EINTR)) {
				in_eof = 1;
				progress = 1;
			}
		}
		if (progress)
			continue;

		/* Nothing moved: sleep until something can. */
		p[0].fd = !in_eof && !srv_eof && room(&up) > 0 ? 0 : -1;
		p[0].events = POLLIN;
		p[1].fd = 1;	/* POLLERR: the client closed its end */
		p[1].events = down.len > 0 ? POLLOUT : 0;
		p[2].fd = t->fd;
		p[2].events = (short)(wr_wait | (!srv_eof &&
		    room(&down) > 0 ? rd_wait : 0));
		if (p[2].events == 0)
			p[2].fd = -1;
		r = poll(p, 3, drain_until != 0 ?
		    (int)(drain_until - now) * 1000 : -1);
		if (r == -1 && errno != EINTR) {
			fprintf(stderr, "%s: poll: %s\n", progname,
			    strerror(errno));
			ex = EX_OSERR;
			break;
		}
		if (r > 0 && p[1].events == 0 &&
		    (p[1].revents & (POLLERR | POLLHUP)) != 0)
			out_dead = 1;
		if (r > 0 && ((p[0].revents | p[1].revents | p[2].revents) &
		    POLLNVAL) != 0) {
			fprintf(stderr, "%s: a descriptor was closed under "
			    "the tunnel\n", progname);
			ex = EX_OSERR;
			break;
		}
		if (out_dead)
			break;
	}
	/* A client that left first: say goodbye to the server properly. */
	if (!srv_eof) {
		ERR_clear_error();
		(void)SSL_shutdown(t->ssl);
	}
	if (fl0 != -1)
		(void)fcntl(0, F_SETFL, fl0);
	if (fl1 != -1)
		(void)fcntl(1, F_SETFL, fl1);
	free(up.b);
	free(down.b);
	return ex;
}

/* ---- the command ----------------------------------------------------- */

/*
 * The failure, where the client, the administrator and the mail log see
 * it: "* BYE" or "-ERR" on stdout, stderr, and syslog (LOG_MAIL) when
 * stderr is not a terminal.
 */
static void
report(const struct tun *t)
{
	char s[OA2_ERRMSG_MAX];
	size_t i;

	snprintf(s, sizeof(s), "%s", t->why);
	for (i = 0; s[i] != '\0'; i++)
		if (iscntrl((unsigned char)s[i]))
			s[i] = ' ';
	(void)dprintf(1, "%s %s\r\n", t->proto == TUN_IMAP ? "* BYE" : "-ERR",
	    s);
	fprintf(stderr, "%s: %s\n", progname, s);
	if (!isatty(2)) {
		openlog(progname, LOG_PID, LOG_MAIL);
		syslog(LOG_ERR, "tunnel: %s", s);
		closelog();
	}
}

/*
 * [SCHEME://]HOST[:PORT] or [IPV6][:PORT], and a separate PORT
 * (fetchmail's %h %p). imaps:// and pop3s:// mean implicit TLS, imap://
 * and pop3:// STARTTLS; without a scheme ports 143 and 110 use STARTTLS.
 */
static int
parse_server(struct tun *t, const char *arg, const char *portarg)
{
	const char *port = NULL, *rb, *name = t->proto == TUN_IMAP ? "imap" :
	    "pop3";
	size_t hlen, k = strlen(name);
	int scheme = -1;	/* -1 none, 0 STARTTLS, 1 implicit TLS */
	struct servent *se;
	const char *end;
	long v;

	if (strncasecmp(arg, name, k) == 0 && strncmp(arg + k, "://", 3) == 0)
		scheme = 0, arg += k + 3;
	else if (strncasecmp(arg, name, k) == 0 && (arg[k] == 's' ||
	    arg[k] == 'S') && strncmp(arg + k + 1, "://", 3) == 0)
		scheme = 1, arg += k + 4;
	if (*arg == '[') {
		if ((rb = strchr(arg, ']')) == NULL ||
		    (rb[1] != '\0' && rb[1] != ':'))
			return -1;
		arg++;
		hlen = (size_t)(rb - arg);
		if (rb[1] == ':')
			port = rb + 2;
	} else if ((rb = strchr(arg, ':')) != NULL &&
	    strchr(rb + 1, ':') == NULL) {
		hlen = (size_t)(rb - arg);
		port = rb + 1;
	} else
		hlen = strlen(arg);	/* a name, or a bare IPv6 address */
	if (hlen == 0 || hlen >= sizeof(t->host) ||
	    strcspn(arg, "/ \t\r\n@?#[]") < hlen || (port != NULL &&
	    portarg != NULL))
		return -1;
	memcpy(t->host, arg, hlen);
	t->host[hlen] = '\0';
	if (portarg != NULL)
		port = portarg;
	if (port != NULL) {
		errno = 0;
		v = strtol(port, (char **)&end, 10);
		/* a service name too: fetchmail's %p may be "imaps" */
		if ((errno != 0 || end == port || *end != '\0') &&
		    isalpha((unsigned char)*port) &&
		    (se = getservbyname(port, "tcp")) != NULL)
			v = ntohs((unsigned short)se->s_port), end = "";
		if (errno != 0 || end == port || *end != '\0' || v < 1 ||
		    v > 65535)
			return -1;
		snprintf(t->port, sizeof(t->port), "%ld", v);
	} else
		snprintf(t->port, sizeof(t->port), "%s", t->proto == TUN_IMAP ?
		    (scheme == 0 ? "143" : "993") : (scheme == 0 ? "110" :
		    "995"));
	if (scheme == -1)
		scheme = strcmp(t->port, t->proto == TUN_IMAP ? "143" :
		    "110") != 0;
	t->implicit_tls = scheme;
	return 0;
}

int
oa2_tunnel(const struct oa2_tunnel_opts *o, const struct oa2_log *lg,
    int argc, char **argv)
{
	struct oa2_config *cfg = NULL;
	struct oa2_account *acct;
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	struct tun *t = NULL;
	char *b64 = NULL, *first = NULL;
	size_t glen;
	long kept;
	int r, ex;

	if (argc < 2 || argc > 4)
		return usage("tunnel takes imap or pop3, a mailbox, and "
		    "optionally HOST[:PORT]");
	if ((t = calloc(1, sizeof(*t))) == NULL) {
		fprintf(stderr, "%s: out of memory\n", progname);
		return EX_OSERR;
	}
	t->fd = -1;
	t->ex = EX_OK;
	t->user = argv[1];
	oa2_clearerr(&err);
	if (oa2_wire_check("mailbox", t->user, &err) != OA2_OK) {
		free(t);
		return usage("%s", err.msg);
	}
	if (*t->user == '\0') {
		free(t);
		return usage("tunnel takes a mailbox, not an empty word");
	}
	t->mech = o->mech != NULL ? o->mech : "XOAUTH2";
	if (strcasecmp(argv[0], "imap") == 0)
		t->proto = TUN_IMAP, t->pname = "IMAP";
	else if (strcasecmp(argv[0], "pop3") == 0)
		t->proto = TUN_POP3, t->pname = "POP3";
	else {
		free(t);
		return usage("tunnel speaks imap or pop3, not \"%s\"",
		    argv[0]);
	}
	if (strcasecmp(t->mech, "XOAUTH2") == 0)
		t->mech = "XOAUTH2";
	else if (strcasecmp(t->mech, "OAUTHBEARER") == 0)
		t->mech = "OAUTHBEARER";
	else {
		free(t);
		return usage("--mech takes XOAUTH2 or OAUTHBEARER, not \"%s\"",
		    o->mech);
	}
	/* no host: the account's (Office 365's, by default), below */
	if (argc > 2 && parse_server(t, argv[2],
	    argc > 3 ? argv[3] : NULL) != 0) {
		free(t);
		return usage("tunnel takes HOST[:PORT] or HOST PORT, not "
		    "\"%s%s%s\"", argv[2], argc > 3 ? " " : "",
		    argc > 3 ? argv[3] : "");
	}
	/* The host goes into the OAUTHBEARER response: checked before a token. */
	if (argc > 2 && oa2_wire_check("server name", t->host, &err) !=
	    OA2_OK) {
		free(t);
		return usage("%s", err.msg);
	}
	/* A client that goes away is an EPIPE, not a signal. */
	(void)signal(SIGPIPE, SIG_IGN);

	/* The token, as `sasl-oauth2 token` and the plugin get it. */
	oa2_clearerr(&err);
	if ((r = oa2_config_load(oa2_config_path(o->config), lg, &cfg,
	    &err)) != 0) {
		fail(t, r == OA2_ERR_NOMEM ? EX_OSERR : EX_CONFIG, "%s",
		    err.msg);
		goto out;
	}
	if ((acct = oa2_config_match(cfg, t->user)) == NULL) {
		fail(t, EX_NOUSER, "no account in %s matches mailbox %s",
		    cfg->path, t->user);
		goto out;
	}
	if (acct->broken) {
		fail(t, EX_CONFIG, "%s", acct->load_err.msg);
		goto out;
	}
	if (argc <= 2 && (parse_server(t, t->proto == TUN_IMAP ?
	    acct->imap_host : acct->pop_host, NULL) != 0 ||
	    oa2_wire_check("server name", t->host, &err) != OA2_OK)) {
		fail(t, EX_SOFTWARE, "account %s names no usable server",
		    acct->match);
		goto out;
	}
	if ((r = oa2_token_get(acct, lg, &tok, NULL, &err)) != 0) {
		fail(t, exit_code(r), "%s", err.msg);
		goto out;
	}
	if ((b64 = sasl_b64(t, tok.access_token)) == NULL)
		goto out;

	/* The login. */
	t->deadline = time(NULL) + TUN_LOGIN_TIMEOUT;
	glen = TUN_LINE_MAX + 512;
	if ((first = malloc(glen + TUN_LINE_MAX)) == NULL) {
		fail(t, EX_OSERR, "out of memory");
		goto out;
	}
	if (tcp_connect(t) != 0 ||
	    (t->implicit_tls && tls_start(t, o->ca_file) != 0))
		goto out;
	if (t->proto == TUN_IMAP)
		r = imap_login(t, o->ca_file, b64, first, glen);
	else
		r = pop3_login(t, o->ca_file, b64, first, glen);
	/*
	 * As the plugin does: a refused token is dropped, unless it is
	 * fresh from the endpoint (a new one would be refused alike).
	 */
	if (r != 0 && t->ex == EX_NOPERM &&
	    (kept = oa2_token_forget(acct, lg, tok.access_token)) > 0) {
		glen = strlen(t->why);
		snprintf(t->why + glen, sizeof(t->why) - glen, " (the token "
		    "is new: no other is asked for during %ld s)", kept);
	}
 out:
	/* No secret stays in memory for the session. */
	oa2_freezero_str(&b64);
	oa2_token_clear(&tok);
	oa2_config_free(&cfg);
	if (t->ex == EX_OK && first == NULL)	/* a path that forgot fail() */
		fail(t, EX_SOFTWARE, "internal error: the login ended "
		    "without a greeting");
	if (t->ex != EX_OK) {
		report(t);
		ex = t->ex;
	} else {
		/* The greeting, then what the server sent after the login. */
		glen = strlen(first);
		memcpy(first + glen, t->in, t->inlen);
		ex = relay(t, first, glen + t->inlen);
	}
	free(first);
	if (t->ssl != NULL)
		SSL_free(t->ssl);
	if (t->ctx != NULL)
		SSL_CTX_free(t->ctx);
	if (t->fd != -1)
		close(t->fd);
	free(t);
	return ex;
}
