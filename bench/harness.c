/*
 * bench/harness: the measuring end of `make bench` (bench/run.sh drives
 * it). One SASL client with real callbacks (USER, AUTHNAME, PASS, a LOG
 * that drops everything), so that the plugin's mechanisms and Debian's
 * PLAIN run through exactly the same code around them.
 *
 *   harness warm  -m MECH[,MECH...] [-n ITER] [-r ROUNDS]
 *	in-process authentications (sasl_client_new, start, steps,
 *	dispose) after one untimed warm-up each; per mechanism the median
 *	over ROUNDS of the mean time of ITER authentications. Under
 *	callgrind (--collect-atstart=no) only the timed loops are counted.
 *   harness once  -m MECH [-L]
 *	the first authentication of a fresh process, and the time of its
 *	sasl_client_start split into libcurl (TLS handshake, HTTP and
 *	teardown), signing (EVP_DigestSign*), random bytes (RAND_bytes)
 *	and fsync, with the page faults of sasl_client_start (start_flt)
 *	and of the libcurl, signing and random calls in it (lib_flt);
 *	under callgrind only this authentication is counted.
 *	With -L, first an untimed start of MECH for a mailbox of no
 *	account: the plugin parses its configuration on the first use of
 *	a mechanism in a process, once (issue 16; before, a root process
 *	did it at sasl_client_init), and what is measured is then one
 *	token request alone; its time is printed as config_ns.
 *   harness pagefault
 *	what a first touch of a fresh page costs on this machine: the
 *	mean time of one page fault over 256 anonymous pages.
 *   harness mem   [-m MECH]
 *	VmHWM, VmRSS, RssAnon and RssFile at start, after
 *	sasl_client_init, after one and after two authentications.
 *   harness imap  -m MECH -p PORT [-n COUNT | -c CLIENTS -s SECONDS]
 *	real logins (AUTHENTICATE with SASL-IR, LOGOUT) over plaintext
 *	IMAP on 127.0.0.1: COUNT in a row, or CLIENTS processes for
 *	SECONDS, counting the logins.
 *   harness spawn -n N COMMAND [ARG...]
 *	fork N processes, release them together to exec COMMAND, and
 *	time until the last one has exited.
 *
 * Common options: -u USER (authentication name, default
 * user@contoso.com), -w PASSWORD (for PLAIN; default $BENCH_PASSWORD).
 * Results go to stdout as "key=value" words on one line per
 * measurement. Exit 0 when every authentication succeeded.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <err.h>
#include <link.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sasl/sasl.h>
#include <sasl/saslutil.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define HAVE_CALLGRIND	1
#endif
#endif
#ifndef HAVE_CALLGRIND
#define HAVE_CALLGRIND	0
#define CALLGRIND_TOGGLE_COLLECT
#endif

#define EXPORT		__attribute__((visibility("default")))
#define LINE_MAX_	16384

static const char *user = "user@contoso.com";
static const char *password;
static int load_first;		/* -L */
static sasl_secret_t *secret;

/* ---- time ------------------------------------------------------------ */

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Page faults of this process so far (minor and major). */
static uint64_t
faults(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) == -1)
		return 0;
	return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* ---- where the cold path spends its time ------------------------------- */

/*
 * The harness is linked with -export-dynamic and defines these
 * functions, so the plugin (dlopen'ed by libsasl2) binds to them and
 * they forward to the real ones in the libraries the plugin loaded.
 * They only add up time; nothing else changes.
 */
static struct {
	uint64_t	curl;		/* curl_easy_perform + curl_easy_cleanup */
	uint64_t	tls;		/* CURLINFO_APPCONNECT_TIME_T: connect + TLS */
	uint64_t	sign;		/* EVP_DigestSign* outside libcurl */
	uint64_t	rand;		/* RAND_bytes outside libcurl (the jti) */
	uint64_t	fsync;		/* fsync (the disk cache write) */
	uint64_t	flt;		/* page faults in curl, sign and rand */
	int		in_curl;
	int		requests;
} split;

/* The path of the loaded library whose path holds name, for real(). */
struct find {
	const char	*name;
	char		path[1024];
};

static int
find_cb(struct dl_phdr_info *info, size_t size, void *arg)
{
	struct find *f = arg;

	if (info->dlpi_name != NULL && strstr(info->dlpi_name, f->name)) {
		snprintf(f->path, sizeof(f->path), "%s", info->dlpi_name);
		return 1;
	}
	return 0;
}

/*
 * The real sym, from the already loaded library whose path holds lib;
 * NULL when that library is not loaded (yet).
 */
static void *
real(const char *lib, const char *sym)
{
	struct find f = { lib, "" };
	void *h;

	if (dl_iterate_phdr(find_cb, &f) == 0 ||
	    (h = dlopen(f.path, RTLD_NOLOAD | RTLD_LAZY)) == NULL)
		return NULL;
	return dlsym(h, sym);
}

/* The real functions behind the wrappers below. */
static struct {
	CURLcode	(*perform)(CURL *);
	CURLcode	(*getinfo)(CURL *, CURLINFO, ...);
	void		(*cleanup)(CURL *);
	int		(*sign_init)(EVP_MD_CTX *, EVP_PKEY_CTX **,
			    const EVP_MD *, ENGINE *, EVP_PKEY *);
	int		(*sign)(EVP_MD_CTX *, unsigned char *, size_t *,
			    const unsigned char *, size_t);
	int		(*rand)(unsigned char *, int);
	int		(*fsync)(int);
} reals;

/*
 * Look up the real functions of the libraries loaded so far. cmd_once
 * calls it before the timed login (the plugin has loaded libcurl and
 * libcrypto by then, unless its loader waits for the first login), so
 * that the lookups, tens of microseconds in a fresh process, are not
 * counted as the plugin's own time (they were, before). A wrapper
 * called before its library was looked up does it itself, and then
 * the lookup still counts as its caller's time.
 */
static void
bind_reals(void)
{
	if (reals.perform == NULL)
		reals.perform = (CURLcode (*)(CURL *))real("/libcurl",
		    "curl_easy_perform");
	if (reals.getinfo == NULL)
		reals.getinfo = (CURLcode (*)(CURL *, CURLINFO, ...))real(
		    "/libcurl", "curl_easy_getinfo");
	if (reals.cleanup == NULL)
		reals.cleanup = (void (*)(CURL *))real("/libcurl",
		    "curl_easy_cleanup");
	if (reals.sign_init == NULL)
		reals.sign_init = (int (*)(EVP_MD_CTX *, EVP_PKEY_CTX **,
		    const EVP_MD *, ENGINE *, EVP_PKEY *))real("/libcrypto",
		    "EVP_DigestSignInit");
	if (reals.sign == NULL)
		reals.sign = (int (*)(EVP_MD_CTX *, unsigned char *, size_t *,
		    const unsigned char *, size_t))real("/libcrypto",
		    "EVP_DigestSign");
	if (reals.rand == NULL)
		reals.rand = (int (*)(unsigned char *, int))real("/libcrypto",
		    "RAND_bytes");
	if (reals.fsync == NULL)
		reals.fsync = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
}

/* The real fn, looked up now if it was not yet; exits when it cannot be. */
#define REAL(fn, name)	do {						\
	if (reals.fn == NULL)						\
		bind_reals();						\
	if (reals.fn == NULL)						\
		errx(EX_SOFTWARE, "cannot find the real %s", name);	\
} while (0)

EXPORT CURLcode
curl_easy_perform(CURL *curl)
{
	curl_off_t us = 0;
	uint64_t t0, f0;
	CURLcode rc;

	REAL(perform, "curl_easy_perform");
	REAL(getinfo, "curl_easy_getinfo");
	split.in_curl++;
	f0 = faults();
	t0 = now_ns();
	rc = reals.perform(curl);
	split.curl += now_ns() - t0;
	split.flt += faults() - f0;
	split.in_curl--;
	if (reals.getinfo(curl, CURLINFO_APPCONNECT_TIME_T, &us) == CURLE_OK)
		split.tls += (uint64_t)us * 1000u;
	split.requests++;
	return rc;
}

EXPORT void
curl_easy_cleanup(CURL *curl)
{
	uint64_t t0, f0;

	REAL(cleanup, "curl_easy_cleanup");
	split.in_curl++;
	f0 = faults();
	t0 = now_ns();
	reals.cleanup(curl);
	split.curl += now_ns() - t0;
	split.flt += faults() - f0;
	split.in_curl--;
}

EXPORT int
EVP_DigestSignInit(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx, const EVP_MD *type,
    ENGINE *e, EVP_PKEY *pkey)
{
	uint64_t t0, f0;
	int r;

	REAL(sign_init, "EVP_DigestSignInit");
	f0 = faults();
	t0 = now_ns();
	r = reals.sign_init(ctx, pctx, type, e, pkey);
	if (!split.in_curl) {
		split.sign += now_ns() - t0;
		split.flt += faults() - f0;
	}
	return r;
}

EXPORT int
EVP_DigestSign(EVP_MD_CTX *ctx, unsigned char *sig, size_t *siglen,
    const unsigned char *tbs, size_t tbslen)
{
	uint64_t t0, f0;
	int r;

	REAL(sign, "EVP_DigestSign");
	f0 = faults();
	t0 = now_ns();
	r = reals.sign(ctx, sig, siglen, tbs, tbslen);
	if (!split.in_curl) {
		split.sign += now_ns() - t0;
		split.flt += faults() - f0;
	}
	return r;
}

EXPORT int
RAND_bytes(unsigned char *buf, int num)
{
	uint64_t t0, f0;
	int r;

	REAL(rand, "RAND_bytes");
	f0 = faults();
	t0 = now_ns();
	r = reals.rand(buf, num);
	if (!split.in_curl) {
		split.rand += now_ns() - t0;
		split.flt += faults() - f0;
	}
	return r;
}

EXPORT int
fsync(int fd)
{
	uint64_t t0;
	int r;

	REAL(fsync, "fsync");
	t0 = now_ns();
	r = reals.fsync(fd);
	split.fsync += now_ns() - t0;
	return r;
}

/* ---- SASL ------------------------------------------------------------- */

static int
cb_log(void *ctx, int level, const char *msg)
{
	if (getenv("HARNESS_DEBUG") != NULL)
		fprintf(stderr, "log[%d]: %s\n", level, msg);
	return SASL_OK;
}

static int
cb_simple(void *ctx, int id, const char **result, unsigned *len)
{
	*result = user;
	if (len != NULL)
		*len = (unsigned)strlen(user);
	return SASL_OK;
}

static int
cb_pass(sasl_conn_t *conn, void *ctx, int id, sasl_secret_t **psecret)
{
	*psecret = secret;
	return secret != NULL ? SASL_OK : SASL_FAIL;
}

static sasl_callback_t callbacks[] = {
	{ SASL_CB_LOG, (int (*)(void))(void *)cb_log, NULL },
	{ SASL_CB_USER, (int (*)(void))(void *)cb_simple, NULL },
	{ SASL_CB_AUTHNAME, (int (*)(void))(void *)cb_simple, NULL },
	{ SASL_CB_PASS, (int (*)(void))(void *)cb_pass, NULL },
	{ SASL_CB_LIST_END, NULL, NULL },
};

static void
sasl_setup(void)
{
	size_t n;
	int r;

	if (password == NULL)
		password = getenv("BENCH_PASSWORD");
	if (password != NULL) {
		n = strlen(password);
		if ((secret = malloc(sizeof(*secret) + n)) == NULL)
			err(EX_OSERR, "malloc");
		secret->len = n;
		memcpy(secret->data, password, n + 1);
	}
	if ((r = sasl_client_init(callbacks)) != SASL_OK)
		errx(EX_SOFTWARE, "sasl_client_init: %s",
		    sasl_errstring(r, NULL, NULL));
}

static void
sasl_fail(sasl_conn_t *conn, const char *what, int r)
{
	fprintf(stderr, "harness: %s: %s: %s\n", what,
	    sasl_errstring(r, NULL, NULL), conn != NULL ?
	    sasl_errdetail(conn) : "");
}

/*
 * One authentication as a client that got the server's success: new,
 * start, a last empty step when the mechanism wants one, dispose.
 * *start_ns (if not NULL) gets the time of sasl_client_start.
 */
static uint64_t start_flt;	/* page faults of the last sasl_client_start */

static int
auth_once(const char *mech, uint64_t *start_ns)
{
	sasl_conn_t *conn = NULL;
	const char *out, *chosen;
	unsigned outlen;
	uint64_t t0;
	int r;

	r = sasl_client_new("imap", "localhost", "127.0.0.1;50000",
	    "127.0.0.1;143", NULL, 0, &conn);
	if (r != SASL_OK) {
		sasl_fail(conn, "sasl_client_new", r);
		return -1;
	}
	start_flt = faults();
	t0 = now_ns();
	r = sasl_client_start(conn, mech, NULL, &out, &outlen, &chosen);
	if (start_ns != NULL)
		*start_ns = now_ns() - t0;
	start_flt = faults() - start_flt;
	if (r == SASL_CONTINUE)
		r = sasl_client_step(conn, NULL, 0, NULL, &out, &outlen);
	if (r != SASL_OK) {
		sasl_fail(conn, mech, r);
		sasl_dispose(&conn);
		return -1;
	}
	sasl_dispose(&conn);
	return 0;
}

/* ---- warm, once, mem ----------------------------------------------------- */

static int
cmd_warm(char *mechs, long iter, long rounds)
{
	char *mv[16], *p;
	uint64_t *res[16], t0;
	int nm = 0, i, m;
	long k;

	for (p = strtok(mechs, ","); p != NULL && nm < 16;
	    p = strtok(NULL, ","))
		mv[nm++] = p;
	sasl_setup();
	for (m = 0; m < nm; m++) {
		if (auth_once(mv[m], NULL) != 0)	/* warm-up */
			return 1;
		if ((res[m] = calloc((size_t)rounds, sizeof(uint64_t))) == NULL)
			err(EX_OSERR, "calloc");
	}
	/* interleaved, so that a noisy moment hits every mechanism */
	for (i = 0; i < rounds; i++)
		for (m = 0; m < nm; m++) {
			CALLGRIND_TOGGLE_COLLECT;
			t0 = now_ns();
			for (k = 0; k < iter; k++)
				if (auth_once(mv[m], NULL) != 0)
					return 1;
			res[m][i] = (now_ns() - t0) / (uint64_t)iter;
			CALLGRIND_TOGGLE_COLLECT;
		}
	for (m = 0; m < nm; m++) {
		qsort(res[m], (size_t)rounds, sizeof(uint64_t), cmp_u64);
		printf("warm mech=%s iterations=%ld rounds=%ld ns=%llu "
		    "min_ns=%llu max_ns=%llu\n", mv[m], iter, rounds,
		    (unsigned long long)res[m][rounds / 2],
		    (unsigned long long)res[m][0],
		    (unsigned long long)res[m][rounds - 1]);
		free(res[m]);
	}
	sasl_client_done();
	return 0;
}

/*
 * The plugin's first use in this process, which parses its
 * configuration, without a token request: MECH started for a mailbox
 * that no account of the bench's config matches. Its time in ns.
 */
static uint64_t
first_use(const char *mech)
{
	const char *was = user, *out, *chosen;
	sasl_conn_t *conn = NULL;
	unsigned outlen;
	uint64_t t0 = now_ns();

	user = "harness@no-account.invalid";
	if (sasl_client_new("imap", "localhost", "127.0.0.1;50000",
	    "127.0.0.1;143", NULL, 0, &conn) == SASL_OK)
		(void)sasl_client_start(conn, mech, NULL, &out, &outlen,
		    &chosen);
	sasl_dispose(&conn);
	user = was;
	if (split.requests != 0)
		errx(EX_SOFTWARE, "%s: an account matched %s", mech,
		    "harness@no-account.invalid");
	return now_ns() - t0;
}

static int
cmd_once(const char *mech)
{
	uint64_t t0, total, start = 0, config = 0;
	int r;

	sasl_setup();
	bind_reals();		/* not in the login's time */
	if (load_first)
		config = first_use(mech);
	CALLGRIND_TOGGLE_COLLECT;
	t0 = now_ns();
	r = auth_once(mech, &start);
	total = now_ns() - t0;
	CALLGRIND_TOGGLE_COLLECT;
	if (r != 0)
		return 1;
	printf("once mech=%s config_ns=%llu total_ns=%llu start_ns=%llu "
	    "curl_ns=%llu tls_ns=%llu sign_ns=%llu rand_ns=%llu fsync_ns=%llu "
	    "start_flt=%llu lib_flt=%llu requests=%d\n", mech,
	    (unsigned long long)config,
	    (unsigned long long)total,
	    (unsigned long long)start, (unsigned long long)split.curl,
	    (unsigned long long)split.tls, (unsigned long long)split.sign,
	    (unsigned long long)split.rand, (unsigned long long)split.fsync,
	    (unsigned long long)start_flt, (unsigned long long)split.flt,
	    split.requests);
	sasl_client_done();
	return 0;
}

/* Peak and current resident memory of this process in KiB. */
static void
print_mem(const char *stage)
{
	char line[256];
	long hwm = -1, rss = -1, anon = -1, file = -1;
	FILE *f;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		err(EX_OSFILE, "/proc/self/status");
	while (fgets(line, sizeof(line), f) != NULL) {
		sscanf(line, "VmHWM: %ld", &hwm);
		sscanf(line, "VmRSS: %ld", &rss);
		sscanf(line, "RssAnon: %ld", &anon);
		sscanf(line, "RssFile: %ld", &file);
	}
	fclose(f);
	printf("mem stage=%s hwm_kib=%ld rss_kib=%ld anon_kib=%ld "
	    "file_kib=%ld\n", stage, hwm, rss, anon, file);
}

static int
cmd_mem(const char *mech)
{
	print_mem("start");
	sasl_setup();
	print_mem("init");
	if (mech != NULL) {
		if (auth_once(mech, NULL) != 0)
			return 1;
		print_mem("auth1");
		if (auth_once(mech, NULL) != 0)
			return 1;
		print_mem("auth2");
	}
	sasl_client_done();
	return 0;
}

/* ---- IMAP -------------------------------------------------------------- */

struct conn {
	int	fd;
	char	buf[LINE_MAX_];
	size_t	len;
};

/* The next line without CRLF into line (NUL-terminated); -1 at EOF. */
static int
read_line(struct conn *c, char *line, size_t max)
{
	char *nl;
	ssize_t n;
	size_t l;

	for (;;) {
		if ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
			l = (size_t)(nl - c->buf);
			if (l > 0 && c->buf[l - 1] == '\r')
				l--;
			if (l >= max)
				l = max - 1;
			memcpy(line, c->buf, l);
			line[l] = '\0';
			c->len -= (size_t)(nl + 1 - c->buf);
			memmove(c->buf, nl + 1, c->len);
			return 0;
		}
		if (c->len == sizeof(c->buf))
			return -1;
		n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		c->len += (size_t)n;
	}
}

static int
write_all(int fd, const char *s, size_t len)
{
	ssize_t n;

	while (len > 0) {
		if ((n = write(fd, s, len)) == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* "TAG AUTHENTICATE MECH <base64>\r\n" or a continuation line. */
static int
send_b64(int fd, const char *prefix, const char *data, unsigned len)
{
	static char line[LINE_MAX_ + 256];
	size_t pl = strlen(prefix);
	unsigned outlen;

	memcpy(line, prefix, pl);
	if (len == 0 && pl > 0)
		line[pl] = '=', outlen = 1;
	else if (sasl_encode64(data, len, line + pl, LINE_MAX_, &outlen) !=
	    SASL_OK)
		return -1;
	memcpy(line + pl + outlen, "\r\n", 2);
	return write_all(fd, line, pl + outlen + 2);
}

/* One login over IMAP at 127.0.0.1:port; 0 when the server said OK. */
static int
imap_login(const char *mech, int port)
{
	static char line[LINE_MAX_], dec[LINE_MAX_];
	char remote[64], prefix[128];
	struct sockaddr_in sin;
	sasl_conn_t *conn = NULL;
	struct conn c;
	const char *out, *chosen;
	unsigned outlen, declen;
	int r, sr, ok = -1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c.len = 0;
	if ((c.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		err(EX_OSERR, "socket");
	if (connect(c.fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		warn("connect to 127.0.0.1:%d", port);
		goto out;
	}
	if (read_line(&c, line, sizeof(line)) == -1 ||
	    strncmp(line, "* OK", 4) != 0) {
		warnx("no IMAP greeting");
		goto out;
	}
	snprintf(remote, sizeof(remote), "127.0.0.1;%d", port);
	if ((r = sasl_client_new("imap", "localhost", NULL, remote, NULL, 0,
	    &conn)) != SASL_OK) {
		sasl_fail(conn, "sasl_client_new", r);
		goto out;
	}
	sr = sasl_client_start(conn, mech, NULL, &out, &outlen, &chosen);
	if (sr != SASL_OK && sr != SASL_CONTINUE) {
		sasl_fail(conn, mech, sr);
		goto out;
	}
	snprintf(prefix, sizeof(prefix), "a AUTHENTICATE %s ", mech);
	if (send_b64(c.fd, prefix, out, outlen) == -1)
		goto out;
	for (;;) {
		if (read_line(&c, line, sizeof(line)) == -1) {
			warnx("connection closed during AUTHENTICATE");
			goto out;
		}
		if (line[0] == '*')
			continue;
		if (strncmp(line, "a OK", 4) == 0)
			break;
		if (strncmp(line, "a ", 2) == 0) {
			warnx("%s login refused: %.200s", mech, line);
			goto out;
		}
		if (line[0] != '+')
			continue;
		/* an error challenge: answer it as a real client does */
		declen = 0;
		if (strlen(line) > 2 && sasl_decode64(line + 2,
		    (unsigned)strlen(line + 2), dec, sizeof(dec), &declen) !=
		    SASL_OK)
			goto out;
		sr = sasl_client_step(conn, dec, declen, NULL, &out, &outlen);
		if (send_b64(c.fd, "", out, outlen) == -1)
			goto out;
	}
	/* the server said OK: the mechanism's last, empty step */
	if (sr == SASL_CONTINUE && (r = sasl_client_step(conn, NULL, 0, NULL,
	    &out, &outlen)) != SASL_OK) {
		sasl_fail(conn, mech, r);
		goto out;
	}
	ok = 0;
	if (write_all(c.fd, "b LOGOUT\r\n", 10) == 0)
		while (read_line(&c, line, sizeof(line)) == 0 &&
		    strncmp(line, "b ", 2) != 0)
			;
 out:
	sasl_dispose(&conn);
	close(c.fd);
	return ok;
}

/*
 * CLIENTS processes, each logging in again and again for SECONDS after
 * a common start (each first logs in once, untimed, so that every
 * process starts with its token in memory).
 */
static int
imap_parallel(const char *mech, int port, long clients, long seconds)
{
	int ready[2], go[2], res[2], status;
	long i, ok = 0, bad = 0, got[2];
	uint64_t t0, t1, deadline;
	pid_t pid;
	char b;

	if (pipe(ready) == -1 || pipe(go) == -1 || pipe(res) == -1)
		err(EX_OSERR, "pipe");
	for (i = 0; i < clients; i++) {
		if ((pid = fork()) == -1)
			err(EX_OSERR, "fork");
		if (pid != 0)
			continue;
		close(ready[0]);
		close(go[1]);
		close(res[0]);
		sasl_setup();
		got[0] = got[1] = 0;
		if (imap_login(mech, port) != 0)
			got[1]++;
		b = 'r';
		if (write(ready[1], &b, 1) != 1 || read(go[0], &b, 1) != 0)
			_exit(EX_OSERR);
		deadline = now_ns() + (uint64_t)seconds * 1000000000u;
		while (now_ns() < deadline)
			got[imap_login(mech, port) == 0 ? 0 : 1]++;
		if (write(res[1], got, sizeof(got)) != sizeof(got))
			_exit(EX_OSERR);
		sasl_client_done();
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	close(res[1]);
	for (i = 0; i < clients; i++)
		if (read(ready[0], &b, 1) != 1)
			errx(EX_SOFTWARE, "a client died before the start");
	t0 = now_ns();
	close(go[1]);
	while (read(res[0], got, sizeof(got)) == sizeof(got)) {
		ok += got[0];
		bad += got[1];
	}
	t1 = now_ns();
	while (wait(&status) > 0)
		;
	printf("imap mech=%s clients=%ld ok=%ld failed=%ld seconds=%.3f "
	    "per_second=%.1f\n", mech, clients, ok, bad,
	    (double)(t1 - t0) / 1e9, (double)ok * 1e9 / (double)(t1 - t0));
	return bad == 0 && ok > 0 ? 0 : 1;
}

static int
cmd_imap(const char *mech, int port, long count, long clients, long seconds)
{
	uint64_t t0;
	long i, ok = 0;

	signal(SIGPIPE, SIG_IGN);
	if (clients > 0)
		return imap_parallel(mech, port, clients, seconds);
	sasl_setup();
	t0 = now_ns();
	for (i = 0; i < count; i++)
		if (imap_login(mech, port) == 0)
			ok++;
	if (count > 1)
		printf("imap mech=%s clients=1 ok=%ld failed=%ld seconds=%.3f\n",
		    mech, ok, count - ok, (double)(now_ns() - t0) / 1e9);
	sasl_client_done();
	return ok == count ? 0 : 1;
}

/* ---- spawn ------------------------------------------------------------- */

static int
cmd_spawn(long n, char **argv)
{
	int go[2], status;
	long i, ok = 0, bad = 0, left = n;
	uint64_t t0, last = 0;
	pid_t pid;
	char b;

	if (pipe(go) == -1)
		err(EX_OSERR, "pipe");
	for (i = 0; i < n; i++) {
		if ((pid = fork()) == -1)
			err(EX_OSERR, "fork (%ld processes)", i);
		if (pid != 0)
			continue;
		close(go[1]);
		if (read(go[0], &b, 1) != 0)
			_exit(EX_OSERR);
		close(go[0]);
		execv(argv[0], argv);
		_exit(EX_OSERR);
	}
	close(go[0]);
	t0 = now_ns();
	close(go[1]);		/* everyone goes */
	while (left > 0 && (pid = wait(&status)) > 0) {
		left--;
		last = now_ns();
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok++;
		else
			bad++;
	}
	printf("spawn processes=%ld ok=%ld failed=%ld seconds=%.3f\n", n, ok,
	    bad, (double)(last - t0) / 1e9);
	return bad == 0 ? 0 : 1;
}

/* ---- main -------------------------------------------------------------- */

static int
usage(void)
{
	fprintf(stderr,
	    "usage: harness warm  -m MECH[,MECH...] [-n ITER] [-r ROUNDS]\n"
	    "       harness once  -m MECH [-L]\n"
	    "       harness mem   [-m MECH]\n"
	    "       harness imap  -m MECH -p PORT [-n COUNT | -c CLIENTS "
	    "-s SECONDS]\n"
	    "       harness spawn -n N COMMAND [ARG...]\n"
	    "       harness features\n"
	    "       harness pagefault\n"
	    "options: -u USER (default user@contoso.com), -w PASSWORD "
	    "(default $BENCH_PASSWORD)\n");
	return EX_USAGE;
}

/*
 * What this machine charges for a page a process touches for the first
 * time (the cold path's page faults: a new heap page, a library's code
 * page): 256 fresh anonymous pages written once each, the time and the
 * faults counted.
 */
static int
cmd_pagefault(void)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), n = 256, i;
	uint64_t t0, f0, t, f;
	char *p;

	p = mmap(NULL, n * pg, PROT_READ | PROT_WRITE, MAP_PRIVATE |
	    MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		err(EX_OSERR, "mmap");
	f0 = faults();
	t0 = now_ns();
	for (i = 0; i < n; i++)
		((volatile char *)p)[i * pg] = 1;
	t = now_ns() - t0;
	f = faults() - f0;
	printf("pagefault pages=%zu faults=%llu ns_per_fault=%llu\n", n,
	    (unsigned long long)f, (unsigned long long)(f > 0 ? t / f : 0));
	munmap(p, n * pg);
	return 0;
}

static long
number(const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || v < min || v > max)
		errx(EX_USAGE, "not a number from %ld to %ld: %s", min, max, s);
	return v;
}

int
main(int argc, char **argv)
{
	char *mech = NULL;
	const char *cmd;
	long n = -1, rounds = 5, clients = 0, seconds = 0, port = 0;
	int c;

	if (argc < 2)
		return usage();
	cmd = argv[1];
	argc--;
	argv++;
	while ((c = getopt(argc, argv, "+Lm:n:r:p:c:s:u:w:")) != -1)
		switch (c) {
		case 'L': load_first = 1; break;
		case 'm': mech = optarg; break;
		case 'n': n = number(optarg, 1, 100000000); break;
		case 'r': rounds = number(optarg, 1, 1000); break;
		case 'p': port = number(optarg, 1, 65535); break;
		case 'c': clients = number(optarg, 1, 10000); break;
		case 's': seconds = number(optarg, 1, 3600); break;
		case 'u': user = optarg; break;
		case 'w': password = optarg; break;
		default: return usage();
		}
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "features") == 0) {
		printf("features callgrind=%d\n", HAVE_CALLGRIND);
		return 0;
	}
	if (strcmp(cmd, "pagefault") == 0)
		return cmd_pagefault();
	if (strcmp(cmd, "spawn") == 0)
		return n > 0 && argc > 0 ? cmd_spawn(n, argv) : usage();
	if (argc != 0)
		return usage();
	if (strcmp(cmd, "mem") == 0)
		return cmd_mem(mech);
	if (mech == NULL)
		return usage();
	if (strcmp(cmd, "warm") == 0)
		return cmd_warm(mech, n > 0 ? n : 1000, rounds);
	if (strcmp(cmd, "once") == 0)
		return cmd_once(mech);
	if (strcmp(cmd, "imap") == 0) {
		if (port == 0 || (clients > 0) != (seconds > 0) ||
		    (clients > 0 && n > 0))
			return usage();
		return cmd_imap(mech, (int)port, n > 0 ? n : 1, clients,
		    seconds);
	}
	return usage();
}
