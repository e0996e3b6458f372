/*
 * The token cache: memory, disk, expiry, permissions, corruption,
 * forgetting, stale fallback, single flight across processes, the
 * back-off after a refusal, and writers or lock holders killed with
 * SIGKILL. The token endpoint is replaced by a counting stub of
 * oa2_token_fetch, and rename by a version that can stop a writer in
 * the middle of its write.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <jansson.h>

#include "cache.h"
#include "conf.h"
#include "cred.h"
#include "secret.h"
#include "tap.h"

/*
 * The seeds given to jansson (issue 16: the cache seeds it from
 * getrandom before a token request's first JSON object, not jansson
 * from /dev/urandom). Defined in the executable, it comes before
 * libjansson's for the core; jansson's own calls with 0 are not counted.
 */
static int seeds_given;
static size_t seed_given;

__attribute__((visibility("default"))) void
json_object_seed(size_t seed)
{
	static void (*real)(size_t);

	if (seed != 0) {
		seeds_given++;
		seed_given = seed;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "json_object_seed");
	if (real != NULL)
		real(seed);
}

static char dir[] = "/tmp/oa2-cache-XXXXXX";
static char counter[300];
static int stub_result = OA2_OK;
static long stub_lifetime = 3600;
static int stub_sleep_ms;
/* A request for client_id stub_block_client waits until stub_block[1] closes. */
static const char *stub_block_client;
static int stub_block[2] = { -1, -1 };

/* The stub endpoint: one line in the counter file per request. */
int
oa2_token_fetch(const struct oa2_account *acct, const struct oa2_log *lg,
    time_t now, struct oa2_token *out, struct oa2_error *err)
{
	char tok[64];
	int fd, n;

	memset(out, 0, sizeof(*out));
	fd = open(counter, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (fd == -1 || write(fd, "x\n", 2) != 2)
		abort();
	close(fd);
	if (stub_sleep_ms)
		usleep(stub_sleep_ms * 1000);
	if (stub_block_client != NULL &&
	    strcmp(acct->client_id, stub_block_client) == 0) {
		char c;

		while (read(stub_block[0], &c, 1) == -1 && errno == EINTR)
			continue;
	}
	if (stub_result != 0)
		return oa2_seterr(err, stub_result, "stub failure");
	if (acct->mailbox != NULL)	/* a per-mailbox account's child */
		n = snprintf(tok, sizeof(tok), "tok-%s-%d", acct->mailbox,
		    rand());
	else
		n = snprintf(tok, sizeof(tok), "tok-%ld-%d", (long)getpid(),
		    rand());
	out->access_token = strndup(tok, (size_t)n);
	out->expires_at = now + stub_lifetime;
	return OA2_OK;
}

static int
requests(void)
{
	struct stat st;

	return stat(counter, &st) == 0 ? (int)(st.st_size / 2) : 0;
}

/*
 * rename, as the cache calls it to put the written temporary file in
 * place. When rename_stop is set (in a child), it tears the file in
 * half, tells the parent through rename_stop, and waits to be killed:
 * a writer caught in the middle of its write, its lock held. When
 * rename_fail is set, it fails with EIO, as on a disk that is going
 * away.
 */
static int rename_stop = -1, rename_fail;

int
rename(const char *from, const char *to)
{
	struct stat st;

	if (rename_fail) {
		errno = EIO;
		return -1;
	}
	if (rename_stop != -1) {
		if (stat(from, &st) == 0 && truncate(from, st.st_size / 2) == 0 &&
		    write(rename_stop, "w", 1) == 1)
			for (;;)
				pause();
		_exit(3);
	}
	return (int)syscall(SYS_rename, from, to);
}

static char logged[2048];

static void
sink(void *ctx, int level, const char *msg)
{
	snprintf(logged + strlen(logged), sizeof(logged) - strlen(logged),
	    "%d:%s\n", level, msg);
}

static void
put_bytes(const char *path, const char *data, size_t len, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
	chmod(path, mode);
}

/*
 * The "sum" a cache file's line must carry (docs/cache.md), computed
 * here on its own: SHA-256 over "oa2-cache-sum\0", the key (the file's
 * name) and "\n" and the bytes after the line; 32 hex digits.
 */
static void
file_sum(const char *path, const char *after, size_t len, char hex[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	const char *base = strrchr(path, '/') != NULL ?
	    strrchr(path, '/') + 1 : path;
	size_t klen = strcspn(base, ".");
	unsigned int mdlen;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int i;

	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(ctx, "oa2-cache-sum", 14) ||
	    !EVP_DigestUpdate(ctx, base, klen) ||
	    !EVP_DigestUpdate(ctx, "\n", 1) ||
	    !EVP_DigestUpdate(ctx, after, len) ||
	    !EVP_DigestFinal_ex(ctx, md, &mdlen))
		abort();
	EVP_MD_CTX_free(ctx);
	for (i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/*
 * Write text to path; a cache file's JSON line ("{...}\n...") gets
 * the right sum first, so that what a test makes wrong in it is the
 * only thing wrong. Returns what was written (until the next put).
 */
static const char *
put(const char *path, const char *text, mode_t mode)
{
	static char out[4096];
	const char *nl = strchr(text, '\n');
	size_t n = strlen(text);
	char hex[33];

	if (*text == '{' && nl != NULL && strstr(path, ".token") != NULL &&
	    strstr(text, "\"sum\"") == NULL) {
		file_sum(path, nl + 1, n - (size_t)(nl + 1 - text), hex);
		snprintf(out, sizeof(out), "{\"sum\":\"%s\",%s", hex,
		    text + 1);
	} else
		snprintf(out, sizeof(out), "%s", text);
	put_bytes(path, out, strlen(out), mode);
	return out;
}

/* A cache file holding token until exp, laid out as disk_write does. */
static const char *
put_token(const char *path, const char *token, time_t exp, mode_t mode)
{
	char text[1024];

	snprintf(text, sizeof(text), "{\"version\":1,\"account\":\"*\","
	    "\"expires_at\":%ld,\"token_length\":%zu}\n%s", (long)exp,
	    strlen(token), token);
	return put(path, text, mode);
}

/* A cache file holding a refusal remembered until `until`. */
static void
put_refusal(const char *path, const char *sentence, time_t until,
    const char *config_id)
{
	char text[1024];

	snprintf(text, sizeof(text), "{\"version\":1,\"refused\":\"%s\","
	    "\"retry_at\":%ld,\"config\":\"%s\"}\n", sentence, (long)until,
	    config_id);
	put(path, text, 0600);
}

static int
file_mode(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static double
mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* The whole of a small file, in a static buffer ("" when absent). */
static const char *
slurp(const char *path)
{
	static char buf[8192];
	ssize_t n;
	int fd;

	buf[0] = '\0';
	if ((fd = open(path, O_RDONLY)) == -1)
		return buf;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* How many temporary files (".KEY.XXXXXX") lie in the cache directory. */
static int
temp_files(const struct oa2_account *a)
{
	struct dirent *de;
	DIR *d = opendir(a->cache_dir);
	int n = 0;

	while (d != NULL && (de = readdir(d)) != NULL)
		if (de->d_name[0] == '.' &&
		    strncmp(de->d_name + 1, a->cache_key, 32) == 0)
			n++;
	if (d != NULL)
		closedir(d);
	return n;
}

/* Whether another process holds the account's lock file. */
static int
lock_held(const struct oa2_account *a)
{
	char path[400];
	int fd, held;

	snprintf(path, sizeof(path), "%s/%s.lock", a->cache_dir, a->cache_key);
	if ((fd = open(path, O_RDWR)) == -1)
		return 0;
	held = flock(fd, LOCK_EX | LOCK_NB) == -1;
	close(fd);
	return held;
}

/*
 * A config in dir/b.conf with one account "*" whose secret is secret,
 * cache_dir dir/bcache (cache_dir = "" with memory), and more settings
 * for defaults.
 */
static struct oa2_config *
conf_with(const char *settings, const char *secret, int memory)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_error err;
	char path[300], text[1024];

	snprintf(path, sizeof(path), "%s/b.conf", dir);
	snprintf(text, sizeof(text), "defaults = { ca_file = \"%s/ca.pem\"; "
	    "cache_dir = \"%s%s\"; refresh_margin = 600; timeout = 5; %s };\n"
	    "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\"; "
	    "client_secret = \"%s\"; } );\n", dir, memory ? "" : dir,
	    memory ? "" : "/bcache", settings, secret);
	put(path, text, 0600);
	if (oa2_config_load(path, &lg, &cfg, &err) != 0) {
		printf("# %s\n", err.msg);
		exit(1);
	}
	return cfg;
}

/*
 * oa2_token_get in a child process (no log, no error buffer): its exit
 * status says 0 (a token) or 1.
 */
static pid_t
get_in_child(struct oa2_account *a)
{
	pid_t pid;

	if ((pid = fork()) == 0) {
		struct oa2_token kt = { NULL, 0 };

		_exit(oa2_token_get(a, NULL, &kt, NULL, NULL) == 0 ? 0 : 1);
	}
	return pid;
}

/* Whether 20 children asking at once were all refused (status 1). */
static int
all_refused_in_children(struct oa2_account *a)
{
	pid_t kids[20];
	int k, st, status = 0;

	for (k = 0; k < 20; k++)
		kids[k] = get_in_child(a);
	for (k = 0; k < 20; k++) {
		waitpid(kids[k], &st, 0);
		status |= !WIFEXITED(st) || WEXITSTATUS(st) != 1;
	}
	return status == 0;
}

/*
 * A permanent refusal is remembered (disk, then memory-only accounts)
 * for failure_backoff seconds; transient failures are not; a new
 * config, a new credential, or removing the file drops it.
 */
static void
test_backoff(void)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg, *cfg2;
	struct oa2_account *a;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	/*
	 * static: the children this test forks exit holding it, and
	 * under valgrind a pointer left only on a dead frame is a leak
	 */
	static char *file;
	char key[33];
	time_t exp;
	int i, from;

	cfg = conf_with("", "B4ckoff-s3cret", 0);
	a = &cfg->accounts[0];
	ok(a->failure_backoff == 60, "failure_backoff defaults to 60 s");
	file = oa2_cache_file(a);

	/* a refusal: asked once, then remembered */
	mkdir(a->cache_dir, 0700);
	stub_result = OA2_ERR_DENIED;
	logged[0] = '\0';
	i = requests();
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 1, "a refusal fails");
	is_str(err.msg, "stub failure", "with the endpoint's sentence alone");
	has_str(logged, "not asking the token endpoint again for account * "
	    "for 60 s (failure_backoff)", "the back-off is logged");
	has_str(slurp(file), "\"refused\":\"stub failure\"",
	    "the refusal is in the cache file");
	ok(strstr(slurp(file), "B4ckoff") == NULL &&
	    strstr(slurp(file), "token_length") == NULL,
	    "which holds no secret and no token");
	ok(file_mode(file) == 0600, "and is private");
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 1 && t.access_token == NULL,
	    "the next attempt fails without a request");
	has_str(err.msg, "stub failure (remembered; next attempt in ",
	    "with the remembered sentence");
	{
		/* 60, less the seconds since the refusal (a slow build: more) */
		const char *p = strstr(err.msg, "next attempt in ");
		long left = p != NULL ? strtol(p + 16, NULL, 10) : -1;

		ok(left <= 60 && left >= 59 - slow(), "and the seconds left");
	}
	ok(oa2_cache_peek(a, &exp, &err) == OA2_ERR_DENIED && exp == 0,
	    "cache list sees the refusal");
	has_str(err.msg, "(remembered; next attempt in", "and says so");

	/* 20 processes with the refusal on disk: no request at all */
	ok(all_refused_in_children(a) && requests() == i + 1,
	    "20 more processes fail at once, without a request");

	/* ... and 20 processes that meet a refusal together: one request */
	unlink(file);
	stub_sleep_ms = 300;
	ok(all_refused_in_children(a) && requests() == i + 2,
	    "20 processes refused together made one request");
	stub_sleep_ms = 0;

	/* forgetting a token leaves the refusal alone */
	oa2_token_forget(a, &lg, "some-token");
	ok(strstr(slurp(file), "\"refused\"") != NULL,
	    "forget keeps a refusal");

	/* a record from the future (the clock went back) is not trusted */
	put_refusal(file, "old", time(NULL) + 3600, a->config_id);
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 3 && strcmp(err.msg, "stub failure") == 0,
	    "a refusal further ahead than failure_backoff is ignored");

	/* nor an expired one */
	put_refusal(file, "old", time(NULL) - 1, a->config_id);
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 4, "an expired refusal is asked again");

	/* corrupt refusal records are replaced */
	{
		static const char *const bad[] = {
			"{\"version\":1,\"refused\":\"x\"}\n",
			"{\"version\":1,\"refused\":\"x\",\"retry_at\":\"9\","
			"\"config\":\"c\"}\n",
			"{\"version\":1,\"refused\":\"\",\"retry_at\":9999999999,"
			"\"config\":\"c\"}\n",
			"{\"version\":1,\"refused\":7,\"retry_at\":9999999999,"
			"\"config\":\"c\"}\n",
			"{\"version\":1,\"retry_at\":9999999999}\n",
			/* a refusal and nothing else: no bytes after the line */
			"{\"version\":1,\"refused\":\"x\",\"retry_at\":9999999999,"
			"\"config\":\"c\"}\nstray",
		};
		size_t k;

		for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			put(file, bad[k], 0600);
			ok(oa2_cache_peek(a, &exp, &err) == OA2_ERR_CACHE,
			    "a corrupt refusal record is refused");
		}
	}

	/* the refusal is dropped by a changed config file ... */
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 5, "refused again (the corrupt file replaced)");
	memcpy(key, a->cache_key, sizeof(key));
	usleep(20000);
	cfg2 = conf_with("", "B4ckoff-s3cret", 0);
	ok(strcmp(cfg2->accounts[0].cache_key, key) == 0 &&
	    strcmp(cfg2->accounts[0].config_id, a->config_id) != 0,
	    "a rewritten config: same cache file, another config identity");
	ok(oa2_token_get(&cfg2->accounts[0], &lg, &t, &from, &err) ==
	    OA2_ERR_DENIED && requests() == i + 6 &&
	    strcmp(err.msg, "stub failure") == 0,
	    "a changed config file asks again");
	oa2_config_free(&cfg2);

	/* ... by a new credential, which has a cache file of its own ... */
	cfg2 = conf_with("", "a-new-s3cret", 0);
	ok(strcmp(cfg2->accounts[0].cache_key, key) != 0,
	    "a new secret: another cache file");
	stub_result = OA2_OK;
	ok(oa2_token_get(&cfg2->accounts[0], &lg, &t, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && requests() == i + 7,
	    "a new secret asks again at once");
	oa2_token_clear(&t);
	oa2_config_free(&cfg2);
	oa2_config_free(&cfg);

	/* ... and by removing the file (sasl-oauth2 cache clear) */
	cfg = conf_with("", "B4ckoff-s3cret", 0);
	a = &cfg->accounts[0];
	stub_result = OA2_ERR_DENIED;
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 8, "(refused and remembered again)");
	unlink(file);
	stub_result = OA2_OK;
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 &&
	    requests() == i + 9, "without the file, the endpoint is asked");
	ok(strstr(slurp(file), "refused") == NULL &&
	    strstr(slurp(file), "token_length") != NULL,
	    "a token replaces the refusal");
	oa2_token_clear(&t);

	/* transient failures are not remembered */
	oa2_token_clear(&a->mem);
	unlink(file);
	for (int k = 0; k < 2; k++) {
		stub_result = k == 0 ? OA2_ERR_NETWORK : OA2_ERR_TRANSIENT;
		ok(oa2_token_get(a, &lg, &t, &from, &err) == stub_result &&
		    requests() == i + 10 + k &&
		    strstr(slurp(file), "\"refused\"") == NULL,
		    k == 0 ? "a network failure is not remembered" :
		    "a transient refusal is not remembered");
	}
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_TRANSIENT &&
	    requests() == i + 12, "and the next attempt asks again");

	/* a still-valid token survives a transient refusal, not a denial */
	put_token(file, "stale2", time(NULL) + 300, 0600);
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 &&
	    strcmp(t.access_token, "stale2") == 0,
	    "a transient refusal: the still-valid token is used");
	oa2_token_clear(&t);
	oa2_token_clear(&a->mem);
	oa2_config_free(&cfg);

	/* failure_backoff = 0: nothing remembered */
	cfg = conf_with("failure_backoff = 0;", "B4ckoff-s3cret", 0);
	a = &cfg->accounts[0];
	unlink(file);
	i = requests();
	stub_result = OA2_ERR_DENIED;
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 2 && strstr(slurp(file), "\"refused\"") ==
	    NULL, "failure_backoff = 0: every attempt asks (the refusal is "
	    "kept only for the callers that waited for its request)");
	oa2_config_free(&cfg);

	/* no disk cache: remembered in memory, for that config only */
	cfg = conf_with("failure_backoff = 30;", "B4ckoff-s3cret", 1);
	a = &cfg->accounts[0];
	ok(a->cache_dir == NULL && a->failure_backoff == 30,
	    "memory only, failure_backoff = 30");
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_DENIED &&
	    requests() == i + 3, "memory only: a refusal is remembered");
	has_str(err.msg, "stub failure (remembered; next attempt in 30 s)",
	    "with the same sentence");
	oa2_config_free(&cfg);
	cfg = conf_with("failure_backoff = 30;", "B4ckoff-s3cret", 1);
	a = &cfg->accounts[0];
	stub_result = OA2_ERR_TRANSIENT;
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_TRANSIENT &&
	    oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_TRANSIENT &&
	    requests() == i + 5,
	    "a reloaded config asks again; transient is not remembered");
	stub_result = OA2_OK;
	oa2_config_free(&cfg);
	free(file);
}

static int
open_fds(void)
{
	struct dirent *de;
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d != NULL && (de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	if (d != NULL)
		closedir(d);
	return n;
}

/*
 * A cache file that cannot be put in place (rename fails): the login
 * goes on with the token, the failure is logged, and nothing is left
 * behind, not a temporary file, not a descriptor.
 */
static void
test_write_fails(void)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	int from, fds, i;

	cfg = conf_with("", "rename-s3cret", 0);
	fds = open_fds();
	i = requests();
	rename_fail = 1;
	logged[0] = '\0';
	ok(oa2_token_get(&cfg->accounts[0], &lg, &t, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && requests() == i + 1,
	    "rename fails: the token is still used");
	rename_fail = 0;
	has_str(logged, "cannot rename ", "and it is logged");
	has_str(logged, "Input/output error", "with the reason");
	ok(temp_files(&cfg->accounts[0]) == 0, "no temporary file is left");
	ok(open_fds() == fds, "no descriptor is left open");
	oa2_token_clear(&t);
	oa2_config_free(&cfg);
}

/*
 * A writer killed with SIGKILL in the middle of its write (the
 * temporary file torn in half, the lock held): the cache file is the
 * previous one, intact, and the next process is not blocked.
 */
static void
test_killed_writer(void)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	struct pollfd pfd;
	char text[1024], before[1024], *file;
	int pfds[2], from, i, st;
	double t0;
	time_t exp;
	pid_t pid;

	cfg = conf_with("", "k1ll-s3cret", 0);
	a = &cfg->accounts[0];
	file = oa2_cache_file(a);
	mkdir(a->cache_dir, 0700);
	/* a valid token inside the margin: the next get rewrites it */
	snprintf(before, sizeof(before), "%s", put_token(file,
	    "before-the-kill", time(NULL) + 500, 0600));

	if (pipe(pfds) == -1)
		abort();
	i = requests();
	if ((pid = fork()) == 0) {
		close(pfds[0]);
		rename_stop = pfds[1];
		_exit(oa2_token_get(a, NULL, &t, NULL, &err) == 0 ? 0 : 2);
	}
	close(pfds[1]);
	pfd.fd = pfds[0];
	pfd.events = POLLIN;
	ok(poll(&pfd, 1, 20000) == 1 && read(pfds[0], text, 1) == 1,
	    "a writer stopped in the middle of its write");
	close(pfds[0]);
	ok(lock_held(a) && temp_files(a) == 1 && requests() == i + 1,
	    "holding the lock, a torn temporary file beside the cache");
	is_str(slurp(file), before, "the cache file is still the old one");
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "killed (SIGKILL)");
	is_str(slurp(file), before, "after the kill: the old file, intact");
	ok(oa2_cache_peek(a, &exp, &err) == 0 && exp > time(NULL),
	    "and readable");
	ok(!lock_held(a), "the dead writer's lock is gone");

	t0 = mono();
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && requests() == i + 2,
	    "the next process refreshes the token");
	/* waiting for it would last timeout + 0.5 s (5.5 s) */
	ok(mono() - t0 < 5, "without waiting for the dead lock holder");
	ok(temp_files(a) == 0, "and removes the torn temporary file");
	ok(strcmp(slurp(file), before) != 0 &&
	    oa2_cache_peek(a, &exp, &err) == 0 &&
	    exp >= time(NULL) + 3590, "the new file is complete");
	oa2_token_clear(&t);
	oa2_token_clear(&a->mem);
	oa2_config_free(&cfg);
	free(file);
}

/*
 * A process that dies (SIGKILL) while it holds the lock and waits for
 * the endpoint does not block the others; and a writer killed at random
 * moments, many times over, never leaves a torn or unreadable file.
 */
static void
test_killed_holder(void)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	char *file;
	int i, k, from, st, bad = 0, kills = 0, midway = 0;
	double t0;
	time_t exp;
	pid_t pid, waiter;

	cfg = conf_with("", "h0lder-s3cret", 0);
	a = &cfg->accounts[0];
	file = oa2_cache_file(a);
	unlink(file);
	i = requests();
	stub_sleep_ms = 30000;
	pid = get_in_child(a);
	stub_sleep_ms = 0;
	for (k = 0; k < 2000 * slow() && (requests() == i || !lock_held(a));
	    k++)
		usleep(5000);
	ok(requests() == i + 1 && lock_held(a),
	    "a process holds the lock, waiting for the endpoint");
	waiter = get_in_child(a);
	usleep(300000);
	ok(waitpid(waiter, &st, WNOHANG) == 0,
	    "another process waits for it (single flight)");
	t0 = mono();
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	waitpid(waiter, &st, 0);
	/*
	 * (exit status 0: it did not give up after timeout + 0.5 s; a slow
	 * build's child may take seconds to exit)
	 */
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && mono() - t0 < 2 * slow() &&
	    requests() == i + 2,
	    "killing the holder lets the waiting process go on at once");
	ok(oa2_cache_peek(a, &exp, &err) == 0 && exp > time(NULL),
	    "which wrote a complete file");
	oa2_token_clear(&a->mem);

	/*
	 * A child that refreshes over and over (every token is inside the
	 * margin), killed at a random moment: 40 times.
	 */
	stub_lifetime = 600;
	put_token(file, "x", time(NULL) + 500, 0600);
	i = requests();
	for (k = 0; k < 40; k++) {
		if ((pid = fork()) == 0) {
			for (;;) {
				oa2_token_get(a, NULL, &t, NULL, &err);
				oa2_token_clear(&t);
				oa2_token_clear(&a->mem);
			}
		}
		usleep((useconds_t)(rand() % 30000));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		kills += WIFSIGNALED(st);
		midway += temp_files(a) > 0;
		if (oa2_cache_peek(a, &exp, &err) != 0 || exp <= time(NULL)) {
			bad++;
			printf("# after kill %d: %s\n", k, err.msg);
		}
	}
	stub_lifetime = 3600;
	printf("# %d refreshes by the 40 killed writers; %d kills left a "
	    "temporary file behind\n", requests() - i, midway);
	ok(kills == 40 && bad == 0, "40 writers killed at random moments: "
	    "the cache file was whole and readable after every kill");
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 && !lock_held(a) &&
	    temp_files(a) == 0, "the next process gets a token, and sweeps");
	oa2_token_clear(&t);
	oa2_token_clear(&a->mem);
	oa2_config_free(&cfg);
	free(file);
}


/*
 * A config of n accounts uK@x.test, each its own credential (client cK,
 * secret sK-tag), the odd ones in memory only, with timeout and more
 * settings for defaults.
 */
static struct oa2_config *
conf_accounts(int n, long timeout, const char *tag, const char *settings)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_error err;
	char path[300], text[8192];
	size_t len;
	int k;

	snprintf(path, sizeof(path), "%s/t.conf", dir);
	len = (size_t)snprintf(text, sizeof(text), "defaults = { ca_file = "
	    "\"%s/ca.pem\"; cache_dir = \"%s/tcache\"; refresh_margin = 600; "
	    "timeout = %ld; %s };\naccounts = (", dir, dir, timeout, settings);
	for (k = 0; k < n; k++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
		    "%s { match = \"u%d@x.test\"; tenant = \"t\"; client_id = "
		    "\"c%d\"; client_secret = \"s%d-%s\";%s }", k ? "," : "",
		    k, k, k, tag, k % 2 ? " cache_dir = \"\";" : "");
	snprintf(text + len, sizeof(text) - len, " );\n");
	put(path, text, 0600);
	if (oa2_config_load(path, &lg, &cfg, &err) != 0) {
		printf("# %s\n", err.msg);
		exit(1);
	}
	return cfg;
}

/* A thread's login: a token for a, or (a NULL) a mailbox matched. */
struct job {
	struct oa2_config *cfg;
	struct oa2_account *a;
	const char *mailbox;
	int	done_fd;
	pthread_t thread;
	int	r;
	char	msg[OA2_ERRMSG_MAX];
	char	tok[64];
};

static void *
job_run(void *arg)
{
	struct job *j = arg;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err = { 0, "" };

	if (j->a == NULL)
		j->r = oa2_config_match(j->cfg, j->mailbox) == NULL ?
		    OA2_ERR_NOACCOUNT : OA2_OK;
	else {
		j->r = oa2_token_get(j->a, NULL, &t, NULL, &err);
		snprintf(j->msg, sizeof(j->msg), "%s", err.msg);
		snprintf(j->tok, sizeof(j->tok), "%s",
		    t.access_token != NULL ? t.access_token : "");
		oa2_token_clear(&t);
	}
	if (write(j->done_fd, "d", 1) != 1)
		abort();
	return NULL;
}

static void
job_start(struct job *j, struct oa2_config *cfg, struct oa2_account *a,
    const char *mailbox, int done_fd)
{
	memset(j, 0, sizeof(*j));
	j->cfg = cfg;
	j->a = a;
	j->mailbox = mailbox;
	j->done_fd = done_fd;
	if (pthread_create(&j->thread, NULL, job_run, j) != 0)
		abort();
}

/* How many jobs said they were done on fd within secs (of n wanted). */
static int
jobs_done(int fd, int n, double secs)
{
	struct pollfd p = { fd, POLLIN, 0 };
	double t0 = mono();
	int got = 0;
	char c;

	while (got < n && mono() - t0 < secs)
		if (poll(&p, 1, 50) == 1 && read(fd, &c, 1) == 1)
			got++;
	return got;
}

/* Until n requests have reached the stub (a guard of 30 s, slow builds more). */
static int
await_requests(int n)
{
	double t0 = mono();

	while (requests() < n && mono() - t0 < 30 * slow())
		usleep(5000);
	return requests() >= n;
}

/*
 * Threads: one account's request hangs (the stub blocks until the test
 * lets it go); logins for 8 other accounts, half with a disk cache and
 * half in memory, and for a mailbox no account matches, all finish
 * while it still hangs. A second thread for the hanging account waits
 * and takes its token (one request); a transient failure is taken the
 * same way; a thread that waits longer than timeout gives up with a
 * sentence. Deterministic: nothing is released before the others have
 * finished, and on a process-wide lock the wait ends after its guard
 * as a failed check rather than a hang.
 */
static void
test_threads(void)
{
	struct oa2_config *cfg;
	struct job jobs[10], same, late;
	int done[2], k, i, n, good;

	if (pipe(done) == -1 || pipe(stub_block) == -1)
		abort();
	cfg = conf_accounts(9, 5, "threads", "");
	i = requests();
	stub_block_client = "c0";
	job_start(&jobs[0], cfg, &cfg->accounts[0], NULL, done[1]);
	ok(await_requests(i + 1), "a thread's request hangs");
	for (k = 1; k < 9; k++)
		job_start(&jobs[k], cfg, &cfg->accounts[k], NULL, done[1]);
	job_start(&jobs[9], cfg, NULL, "nobody@y.test", done[1]);
	n = jobs_done(done[0], 9, 30 * slow());
	for (k = 1, good = 0; k < 9; k++)
		good += jobs[k].r == 0 && jobs[k].tok[0] != '\0';
	ok(n == 9 && good == 8 && jobs[9].r == OA2_ERR_NOACCOUNT,
	    "meanwhile 8 threads on other accounts (disk and memory) and one "
	    "for a mailbox no account matches all finish");
	ok(requests() == i + 9, "each of them with its own request");
	job_start(&same, cfg, &cfg->accounts[0], NULL, done[1]);
	ok(jobs_done(done[0], 1, 0.3) == 0,
	    "a second thread for the hanging account waits for it");
	close(stub_block[1]);
	ok(jobs_done(done[0], 2, 30 * slow()) == 2, "both finish when it "
	    "answers");
	for (k = 0; k < 10; k++)
		pthread_join(jobs[k].thread, NULL);
	pthread_join(same.thread, NULL);
	ok(jobs[0].r == 0 && same.r == 0 && strcmp(jobs[0].tok, same.tok) ==
	    0 && requests() == i + 9, "the waiting thread took its token: "
	    "one request");
	close(stub_block[0]);

	/* a transient failure: the waiting thread takes it, asks nothing */
	if (pipe(stub_block) == -1)
		abort();
	stub_block_client = "c1";
	stub_result = OA2_ERR_NETWORK;
	oa2_token_clear(&cfg->accounts[1].mem);
	i = requests();
	job_start(&jobs[0], cfg, &cfg->accounts[1], NULL, done[1]);
	await_requests(i + 1);
	job_start(&same, cfg, &cfg->accounts[1], NULL, done[1]);
	ok(jobs_done(done[0], 1, 0.3) == 0, "(a second thread waits)");
	close(stub_block[1]);
	jobs_done(done[0], 2, 30 * slow());
	pthread_join(jobs[0].thread, NULL);
	pthread_join(same.thread, NULL);
	close(stub_block[0]);
	ok(jobs[0].r == OA2_ERR_NETWORK && same.r == OA2_ERR_NETWORK &&
	    requests() == i + 1, "a transient failure is the waiting "
	    "thread's answer too, without a second request");
	has_str(same.msg, "stub failure (asked by another process or thread "
	    "at the same time)", "with the same sentence");
	stub_block_client = NULL;
	job_start(&late, cfg, &cfg->accounts[1], NULL, done[1]);
	jobs_done(done[0], 1, 30 * slow());
	pthread_join(late.thread, NULL);
	ok(late.r == OA2_ERR_NETWORK && requests() == i + 2 &&
	    strstr(late.msg, "same time") == NULL,
	    "a thread that comes after the failure asks again");
	stub_result = OA2_OK;
	oa2_config_free(&cfg);

	/* timeout = 1: a thread that waits longer gives up, with a sentence */
	if (pipe(stub_block) == -1)
		abort();
	cfg = conf_accounts(1, 1, "busy", "");
	stub_block_client = "c0";
	i = requests();
	job_start(&jobs[0], cfg, &cfg->accounts[0], NULL, done[1]);
	await_requests(i + 1);
	job_start(&same, cfg, &cfg->accounts[0], NULL, done[1]);
	ok(jobs_done(done[0], 1, 30 * slow()) == 1 &&
	    same.r == OA2_ERR_TRANSIENT && requests() == i + 1,
	    "timeout = 1: a thread waiting for a request that hangs gives up");
	has_str(same.msg, "another process or thread is asking the token "
	    "endpoint for account u0@x.test and had no answer within 1 s",
	    "and says why");
	close(stub_block[1]);
	jobs_done(done[0], 1, 30 * slow());
	pthread_join(jobs[0].thread, NULL);
	pthread_join(same.thread, NULL);
	close(stub_block[0]);
	stub_block_client = NULL;
	oa2_config_free(&cfg);
	close(done[0]);
	close(done[1]);
}

/*
 * Processes and a hanging endpoint (timeout = 5, slow builds more; the
 * stub answers a network failure after timeout, as a hanging endpoint
 * ends): 8 processes
 * at once make one request, and each has the sentence, its own or the
 * holder's, within timeout + 1 s. A process that comes later asks
 * again. A lock holder that never returns: the next process gives up at
 * timeout + 1 s with a sentence, and asks nothing.
 */
static void
test_hanging_endpoint(void)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	int k, i, st, code, took = 0, gaveup = 0, asked = 0, late = 0, from;
	double t0, waited;
	pid_t kids[8], holder;
	char want[200];
	/*
	 * timeout = 5 s, more in slow builds: all 8 processes must be
	 * waiting before the one request ends (with 2 s, on a busy machine
	 * a late one asked again, as a process that comes later does)
	 */
	long to = 3 + 2 * slow();

	cfg = conf_accounts(1, to, "hang", "");
	a = &cfg->accounts[0];
	i = requests();
	stub_result = OA2_ERR_NETWORK;
	stub_sleep_ms = 1000 * (int)to;
	for (k = 0; k < 8; k++)
		if ((kids[k] = fork()) == 0) {
			struct oa2_token kt = { NULL, 0 };
			int r;

			t0 = mono();
			r = oa2_token_get(a, NULL, &kt, NULL, &err);
			/* 0: took the holder's outcome, 1: gave up, 2: asked */
			if (r != OA2_ERR_NETWORK && r != OA2_ERR_TRANSIENT)
				code = 3;
			else if (strstr(err.msg, "another process or thread "
			    "is asking") != NULL)
				code = 1;
			else if (strcmp(err.msg, "stub failure (asked by "
			    "another process or thread at the same time)") == 0)
				code = 0;
			else
				code = strcmp(err.msg, "stub failure") == 0 ? 2 : 3;
			/* timeout + 1 s, + 1 s (slow builds more): load */
			if (mono() - t0 > to + 1 + slow())
				code |= 4;
			_exit(code);
		}
	for (k = 0; k < 8; k++) {
		waitpid(kids[k], &st, 0);
		code = WIFEXITED(st) ? WEXITSTATUS(st) : 3;
		took += (code & 3) == 0;
		gaveup += (code & 3) == 1;
		asked += (code & 3) == 2;
		late += (code & 4) != 0;
	}
	stub_sleep_ms = 0;
	printf("# of 8 processes, %d asked, %d took its outcome, %d gave up "
	    "waiting\n", asked, took, gaveup);
	ok(requests() == i + 1, "8 processes and a hanging endpoint: one "
	    "request");
	ok(asked == 1 && took + gaveup == 7, "one asked and failed; each of "
	    "the others took its outcome or said another process is asking");
	ok(late == 0, "each within timeout + 1 s");
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_NETWORK &&
	    requests() == i + 2 && strstr(err.msg, "same time") == NULL,
	    "a process that comes later asks again");
	stub_result = OA2_OK;

	/* a lock holder that never returns */
	if (pipe(stub_block) == -1)
		abort();
	stub_block_client = "c0";
	i = requests();
	if ((holder = fork()) == 0)
		_exit(oa2_token_get(a, NULL, &t, NULL, &err) == 0 ? 0 : 1);
	stub_block_client = NULL;
	ok(await_requests(i + 1), "a process holds the lock, its request "
	    "hanging");
	t0 = mono();
	ok(oa2_token_get(a, &lg, &t, &from, &err) == OA2_ERR_TRANSIENT &&
	    requests() == i + 1, "the next process gives up without asking");
	waited = mono() - t0;
	snprintf(want, sizeof(want), "another process or thread is asking the "
	    "token endpoint for account u0@x.test and had no answer within "
	    "%ld s", to);
	has_str(err.msg, want, "and says why");
	ok(waited >= to && waited < to + 1 + slow(), "after waiting timeout, "
	    "within timeout + 1 s");
	oa2_token_clear(&t);
	kill(holder, SIGKILL);
	waitpid(holder, &st, 0);
	close(stub_block[0]);
	close(stub_block[1]);
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 &&
	    requests() == i + 2, "the holder killed: the next one asks");
	oa2_token_clear(&t);
	oa2_config_free(&cfg);
}

/*
 * A token that the mail server refuses though it came fresh from the
 * endpoint is kept for failure_backoff seconds after it was fetched, so
 * that a server refusing every token costs one request, not one per
 * login; an older token is dropped, as is any with failure_backoff = 0.
 */
static void
test_young_refused(void)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	char *file, first[64];
	long kept;
	int i, k, from, st, status = 0;
	pid_t kids[10];

	cfg = conf_accounts(1, 5, "young", "");
	a = &cfg->accounts[0];
	file = oa2_cache_file(a);
	i = requests();
	logged[0] = '\0';
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && requests() == i + 1, "a new token");
	snprintf(first, sizeof(first), "%s", t.access_token);
	kept = oa2_token_forget(a, &lg, t.access_token);
	oa2_token_clear(&t);
	ok(kept > 55 && kept <= 60, "refused by the server: kept (60 s of "
	    "failure_backoff)");
	has_str(logged, "the token of account u0@x.test came from the token "
	    "endpoint 0 s ago: kept, and no new one asked for during",
	    "and logged");
	has_str(slurp(file), "\"fetched_at\":", "the cache file says when it "
	    "was fetched");
	for (k = 0; k < 50; k++) {
		if (oa2_token_get(a, &lg, &t, &from, &err) != 0 ||
		    strcmp(t.access_token, first) != 0 ||
		    oa2_token_forget(a, &lg, t.access_token) <= 0)
			status = 1;
		oa2_token_clear(&t);
	}
	ok(status == 0 && requests() == i + 1,
	    "50 logins refused by the server: no further request");
	for (k = 0; k < 10; k++)
		if ((kids[k] = fork()) == 0) {
			struct oa2_token kt = { NULL, 0 };

			oa2_token_clear(&a->mem);	/* a new process */
			_exit(oa2_token_get(a, NULL, &kt, NULL, &err) == 0 &&
			    strcmp(kt.access_token, first) == 0 &&
			    oa2_token_forget(a, NULL, kt.access_token) > 0 ?
			    0 : 1);
		}
	for (k = 0; k < 10; k++) {
		waitpid(kids[k], &st, 0);
		status |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	ok(status == 0 && requests() == i + 1, "nor 10 processes, which "
	    "read it from the cache file");

	/* a token of unknown age (older files) is dropped */
	oa2_token_clear(&a->mem);
	put_token(file, "aged-token", time(NULL) + 3000, 0600);
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 &&
	    oa2_token_forget(a, &lg, t.access_token) == 0 &&
	    access(file, F_OK) == -1 && a->mem.access_token == NULL,
	    "a token of unknown age is dropped");
	oa2_token_clear(&t);
	oa2_config_free(&cfg);
	free(file);

	/* failure_backoff = 0: every refused token is dropped */
	cfg = conf_accounts(1, 5, "young0", "failure_backoff = 0;");
	a = &cfg->accounts[0];
	file = oa2_cache_file(a);
	i = requests();
	for (k = 0; k < 2; k++) {
		oa2_token_get(a, &lg, &t, &from, &err);
		kept = oa2_token_forget(a, &lg, t.access_token);
		oa2_token_clear(&t);
	}
	ok(kept == 0 && requests() == i + 2 && access(file, F_OK) == -1,
	    "failure_backoff = 0: a refused token is dropped at once");
	oa2_config_free(&cfg);
	free(file);
}

/*
 * A failure that is not transient (here OA2_ERR_CONFIG, as for a 3xx
 * from the endpoint) is the answer of the callers that waited for its
 * request too, code and sentence, and nobody asks a second time:
 * threads of a disk account and of a memory account, and processes.
 * The request is held (the stub blocks) until the others have begun.
 */
static void
test_waiters_failure(void)
{
	static const char took_msg[] = "stub failure (asked by another "
	    "process or thread at the same time)";
	struct oa2_config *cfg;
	struct oa2_error err;
	struct job jobs[4];
	int done[2], k, i, n, same, st, code, took = 0, asked = 0;
	pid_t kids[4];

	if (pipe(done) == -1)
		abort();
	cfg = conf_accounts(2, 3 * slow(), "waiters", "");
	stub_result = OA2_ERR_CONFIG;
	for (n = 0; n < 2; n++) {	/* account 0: disk; 1: memory */
		if (pipe(stub_block) == -1)
			abort();
		stub_block_client = n ? "c1" : "c0";
		i = requests();
		job_start(&jobs[0], cfg, &cfg->accounts[n], NULL, done[1]);
		await_requests(i + 1);
		for (k = 1; k < 4; k++)
			job_start(&jobs[k], cfg, &cfg->accounts[n], NULL,
			    done[1]);
		ok(jobs_done(done[0], 1, 0.3 * slow()) == 0,
		    "(three threads wait for a request)");
		close(stub_block[1]);
		jobs_done(done[0], 4, 30 * slow());
		for (k = 0, same = 0; k < 4; k++) {
			pthread_join(jobs[k].thread, NULL);
			same += jobs[k].r == OA2_ERR_CONFIG &&
			    strcmp(jobs[k].msg, k ? took_msg :
			    "stub failure") == 0;
		}
		close(stub_block[0]);
		ok(same == 4 && requests() == i + 1, n ? "in memory too" :
		    "a failure that is not transient (OA2_ERR_CONFIG) is the "
		    "waiting threads' answer, code and sentence: one request");
	}

	/* processes: the first one's request held until the others wait */
	if (pipe(stub_block) == -1)
		abort();
	stub_block_client = "c0";
	i = requests();
	for (k = 0; k < 4; k++) {
		if (k == 1)
			await_requests(i + 1);
		if ((kids[k] = fork()) == 0) {
			struct oa2_token kt = { NULL, 0 };
			int r;

			close(stub_block[1]);
			r = oa2_token_get(&cfg->accounts[0], NULL, &kt, NULL,
			    &err);
			/* 0: took the holder's outcome, 2: asked */
			if (r != OA2_ERR_CONFIG)
				_exit(3);
			if (strcmp(err.msg, "stub failure") == 0)
				_exit(2);
			_exit(strcmp(err.msg, took_msg) == 0 ? 0 : 3);
		}
	}
	usleep((useconds_t)(300000 * slow()));
	close(stub_block[1]);
	for (k = 0; k < 4; k++) {
		waitpid(kids[k], &st, 0);
		code = WIFEXITED(st) ? WEXITSTATUS(st) : 3;
		took += code == 0;
		asked += code == 2;
	}
	close(stub_block[0]);
	stub_block_client = NULL;
	stub_result = OA2_OK;
	printf("# of 4 processes, %d asked, %d took its outcome\n", asked,
	    took);
	ok(asked == 1 && took == 3 && requests() == i + 1, "and the waiting "
	    "processes': one request, each has OA2_ERR_CONFIG and its "
	    "sentence");
	oa2_config_free(&cfg);
	close(done[0]);
	close(done[1]);
}

/* The wall clock in nanoseconds, as cache.c stamps a failure. */
static long long
wall_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/*
 * A clock set back: a transient failure stamped an hour ahead (written
 * before an NTP step or a snapshot restore) is no call's answer; the
 * next call asks the endpoint, on disk and in memory.
 */
static void
test_clock_back(void)
{
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	char text[512], *file;
	int i, k, r, asked = 0;

	cfg = conf_accounts(2, 5, "clock", "");
	a = &cfg->accounts[0];
	oa2_token_get(a, NULL, &t, NULL, &err);	/* makes the directory */
	oa2_token_clear(&t);
	file = oa2_cache_file(a);
	i = requests();
	for (k = 0; k < 3; k++) {
		/* a new process each time: nothing in memory */
		oa2_token_clear(&a->mem);
		snprintf(text, sizeof(text), "{\"version\":1,\"account\":"
		    "\"u0@x.test\",\"failed\":\"cannot connect\","
		    "\"failed_at\":%lld,\"failed_code\":%d}\n",
		    wall_ns() + 3600LL * 1000000000LL, OA2_ERR_NETWORK);
		put(file, text, 0600);
		r = oa2_token_get(a, NULL, &t, NULL, &err);
		asked += r == 0 && t.access_token != NULL &&
		    requests() == i + k + 1;
		oa2_token_clear(&t);
	}
	ok(asked == 3, "a failure on disk stamped an hour ahead (the clock "
	    "was set back): each new call asks the endpoint");
	a = &cfg->accounts[1];
	i = requests();
	a->failed_at = wall_ns() + 3600LL * 1000000000LL;
	a->failed_code = OA2_ERR_NETWORK;
	snprintf(a->failed, sizeof(a->failed), "cannot connect");
	ok(oa2_token_get(a, NULL, &t, NULL, &err) == 0 && requests() == i + 1,
	    "and in memory");
	oa2_token_clear(&t);
	free(file);
	oa2_config_free(&cfg);
}

/*
 * Issue 16: oa2_token_use lends the cached token itself, with its stored
 * length, for the plugin to build its response from (no copy per
 * login), and oa2_token_forget_len takes the token where it lies in
 * that response, followed by "\1\1" rather than a NUL.
 */
struct lent {
	int		calls;
	const char	*ptr;
	size_t		len;
	int		fail;
};

static int
lend(void *arg, const struct oa2_token *tok, size_t len)
{
	struct lent *l = arg;

	l->calls++;
	l->ptr = tok->access_token;
	l->len = len;
	return l->fail;
}

static void
test_use(struct oa2_account *a, const struct oa2_log *lg, const char *file)
{
	struct lent l = { 0, NULL, 0, 0 };
	struct oa2_error err;
	const char *resp = "auth=Bearer lent-token\001\001";
	int from = 0, n = requests();

	oa2_token_clear(&a->mem);
	put_token(file, "lent-token", time(NULL) + 3000, 0600);
	ok(oa2_token_use(a, lg, lend, &l, &from, &err) == 0 && l.calls == 1 &&
	    from == OA2_FROM_DISK && l.ptr != NULL &&
	    l.ptr == a->mem.access_token && l.len == 10 &&
	    memcmp(l.ptr, "lent-token", 10) == 0 && requests() == n,
	    "use: the cached token itself, with its length (from disk)");
	l.calls = 0;
	ok(oa2_token_use(a, lg, lend, &l, &from, &err) == 0 && l.calls == 1 &&
	    from == OA2_FROM_MEMORY && l.ptr == a->mem.access_token &&
	    l.len == 10, "use: from memory, lent without a copy");
	l.fail = OA2_ERR_NOMEM;
	err.msg[0] = '\0';
	ok(oa2_token_use(a, lg, lend, &l, &from, &err) == OA2_ERR_NOMEM &&
	    strcmp(err.msg, "out of memory") == 0 &&
	    a->mem.access_token != NULL,
	    "use: the builder's failure is returned, the token kept");
	ok(oa2_token_forget_len(a, lg, resp + 12, 9) == 0 &&
	    a->mem.access_token != NULL && access(file, F_OK) == 0,
	    "forget_len: a prefix of the token is another token");
	ok(oa2_token_forget_len(a, lg, resp + 12, 10) == 0 &&
	    a->mem.access_token == NULL && access(file, F_OK) == -1,
	    "forget_len: the token before \"\\1\\1\" is forgotten");
}

/*
 * Issue 16: the lock holder writes through ".KEY.tmp", and the scan for
 * the random-named leftovers (".KEY.XXXXXX") of writers without the
 * lock runs once a day, stamped on the lock file's mtime, instead of on
 * every token request.
 */
static void
set_mtime(const char *path, time_t t)
{
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { t, 0 } };

	if (utimensat(AT_FDCWD, path, ts, 0) == -1)
		abort();
}

static time_t
mtime_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_mtime : 0;
}

/* One more request from an empty memory and an absent cache file. */
static int
cold_get(struct oa2_account *a, const char *file)
{
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	int from = 0, n = requests(), r;

	oa2_token_clear(&a->mem);
	unlink(file);
	r = oa2_token_get(a, NULL, &t, &from, &err);
	oa2_token_clear(&t);
	return r == 0 && from == OA2_FROM_SERVER && requests() == n + 1;
}

static void
test_sweep_schedule(void)
{
	struct oa2_config *cfg = conf_with("", "sweep-s3cret", 0);
	struct oa2_account *a = &cfg->accounts[0];
	char lock[400], stale[400], tmp[400], *file = oa2_cache_file(a);
	time_t now = time(NULL);

	snprintf(lock, sizeof(lock), "%s/%s.lock", a->cache_dir, a->cache_key);
	snprintf(stale, sizeof(stale), "%s/.%s.AbC123", a->cache_dir,
	    a->cache_key);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", a->cache_dir, a->cache_key);
	ok(cold_get(a, file) && access(lock, F_OK) == 0 &&
	    access(tmp, F_OK) == -1 && file_mode(file) == 0600,
	    "sweep: a token written through the fixed temporary name");
	put(stale, "leftover", 0600);
	ok(cold_get(a, file) && access(stale, F_OK) == 0,
	    "sweep: no directory scan within a day of the lock file's mtime");
	set_mtime(lock, now - 2 * 86400);
	ok(cold_get(a, file) && access(stale, F_OK) == -1,
	    "sweep: a day after the last scan, the leftover is removed");
	ok(mtime_of(lock) >= now - 5, "sweep: the scan is stamped on the "
	    "lock file");
	put(stale, "leftover", 0600);
	set_mtime(lock, now + 3600);
	ok(cold_get(a, file) && access(stale, F_OK) == -1,
	    "sweep: a stamp in the future (clock set back) counts as due");
	put(tmp, "{\"version\":1,\"expires_at\":", 0600);
	ok(cold_get(a, file) && access(tmp, F_OK) == -1 &&
	    temp_files(a) == 0, "sweep: a killed writer's torn .KEY.tmp is "
	    "overwritten and renamed by the next");
	put(tmp, "x", 0644);
	ok(cold_get(a, file) && access(tmp, F_OK) == -1 &&
	    file_mode(file) == 0600,
	    "sweep: a .KEY.tmp readable by others is replaced, not reused");
	free(file);
	oa2_config_free(&cfg);
}

/*
 * Per-mailbox accounts (a Google service account): a child account per
 * mailbox, so that one mailbox's token is never handed out for another,
 * and N mailboxes cost N requests, no more, in memory, on disk and with
 * many threads at once.
 */
struct pm_job {
	struct oa2_account *parent;
	const char	*mailbox;
	char		token[64];
	int		r;
};

static void *
pm_run(void *arg)
{
	struct oa2_log lg = { NULL, NULL, OA2_LOG_ERROR };
	struct pm_job *j = arg;
	struct oa2_account *c;
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;

	j->r = -1;
	if ((c = oa2_account_for(j->parent, j->mailbox, &err)) != NULL &&
	    (j->r = oa2_token_get(c, &lg, &t, NULL, &err)) == 0)
		snprintf(j->token, sizeof(j->token), "%s", t.access_token);
	oa2_token_clear(&t);
	return NULL;
}

static struct oa2_config *
pm_conf(const char *path)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_error err;

	if (oa2_config_load(path, &lg, &cfg, &err) != 0) {
		printf("# %s\n", err.msg);
		exit(1);
	}
	return cfg;
}

static void
test_per_mailbox(void)
{
	static const char *boxes[] = { "a@example.org", "b@example.org",
	    "c@example.org", "d@example.org" };
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_account *a, *ca, *cb, *ca2, *e;
	struct oa2_token t = { NULL, 0 }, t2 = { NULL, 0 };
	struct oa2_error err;
	struct pm_job jobs[16];
	pthread_t th[16];
	char conf[300], key[300], text[4096], cmd[1024], *pem, *f1, *f2;
	int from, base, i, same;
	FILE *p;
	size_t n;

	snprintf(key, sizeof(key), "%s/pm.json", dir);
	snprintf(cmd, sizeof(cmd), "openssl genpkey -algorithm RSA "
	    "-pkeyopt rsa_keygen_bits:2048 2>/dev/null");
	if ((p = popen(cmd, "r")) == NULL)
		abort();
	pem = calloc(1, 4096);
	n = fread(pem, 1, 4095, p);
	pclose(p);
	if (n == 0) {
		ok(1, "# SKIP no openssl command to make a key");
		free(pem);
		return;
	}
	{
		json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type",
		    "service_account", "private_key_id", "k1", "private_key",
		    pem, "client_email", "sa@p.iam.gserviceaccount.com",
		    "client_id", "1234", "token_uri",
		    "https://127.0.0.1:1/token");
		char *js = json_dumps(o, 0);

		put(key, js, 0600);
		free(js);
		json_decref(o);
	}
	free(pem);
	snprintf(conf, sizeof(conf), "%s/pm.conf", dir);
	snprintf(text, sizeof(text), "defaults = { ca_file = \"%s/ca.pem\"; "
	    "cache_dir = \"%s/pmcache\"; timeout = 5; };\n"
	    "accounts = ( { match = \"*@example.org\"; "
	    "service_account_file = \"%s\"; }, { match = \"*\"; "
	    "tenant = \"t\"; client_id = \"c\"; client_secret = \"s\"; } );\n",
	    dir, dir, key);
	put(conf, text, 0600);
	cfg = pm_conf(conf);
	a = oa2_config_match(cfg, "a@example.org");
	ok(a != NULL && !a->broken && a->kind == &oa2_cred_google_sa,
	    "a service account account loads");
	if (a == NULL || a->broken) {
		printf("# %s\n", a != NULL ? a->load_err.msg : "no account");
		oa2_config_free(&cfg);
		return;
	}
	e = oa2_config_match(cfg, "x@contoso.com");
	ok(oa2_account_for(e, "x@contoso.com", &err) == e,
	    "an account not per mailbox is its own");
	ca = oa2_account_for(a, "a@example.org", &err);
	cb = oa2_account_for(a, "b@example.org", &err);
	ca2 = oa2_account_for(a, "A@Example.ORG", &err);
	ok(ca != NULL && cb != NULL && ca != a && cb != ca,
	    "a child account per mailbox");
	ok(ca2 == ca, "the mailbox is compared case-insensitively");
	ok(ca != NULL && cb != NULL && strcmp(ca->cache_key, a->cache_key) &&
	    strcmp(cb->cache_key, a->cache_key) &&
	    strcmp(ca->cache_key, cb->cache_key),
	    "each has its own cache key");
	ok(ca != NULL && strcmp(ca->mailbox, "a@example.org") == 0 &&
	    ca->parent == a, "the child names its mailbox and parent");
	ok(oa2_account_for(a, "no-at-sign", &err) == NULL &&
	    strstr(err.msg, "needs a mailbox") != NULL,
	    "a name without @ gets no child");
	if (ca == NULL || cb == NULL) {
		oa2_config_free(&cfg);
		return;
	}

	base = requests();
	ok(oa2_token_get(ca, &lg, &t, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && requests() == base + 1 &&
	    strncmp(t.access_token, "tok-a@example.org-", 18) == 0,
	    "a's first token: one request, a's own");
	ok(oa2_token_get(cb, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && requests() == base + 2 &&
	    strncmp(t2.access_token, "tok-b@example.org-", 18) == 0,
	    "b's first token: a request of its own, never a's token");
	oa2_token_clear(&t2);
	ok(oa2_token_get(ca2, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_MEMORY && requests() == base + 2 &&
	    strcmp(t.access_token, t2.access_token) == 0,
	    "a again (another case): from memory, the same token");
	oa2_token_clear(&t2);
	f1 = oa2_cache_file(ca);
	f2 = oa2_cache_file(cb);
	ok(f1 != NULL && f2 != NULL && strcmp(f1, f2) != 0 &&
	    file_mode(f1) == 0600 && file_mode(f2) == 0600,
	    "one cache file per mailbox");
	free(f1);
	free(f2);
	/* another process: from the disk, each mailbox its own */
	oa2_config_free(&cfg);
	cfg = pm_conf(conf);
	a = oa2_config_match(cfg, "a@example.org");
	ca = oa2_account_for(a, "a@example.org", &err);
	ok(ca != NULL && oa2_token_get(ca, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_DISK && requests() == base + 2 &&
	    strcmp(t.access_token, t2.access_token) == 0,
	    "a new config: a's token from a's cache file");
	oa2_token_clear(&t2);
	oa2_token_clear(&t);

	/* 16 threads, 4 mailboxes (two new), at once: 2 more requests */
	stub_sleep_ms = 300;
	for (i = 0; i < 16; i++) {
		jobs[i].parent = a;
		jobs[i].mailbox = boxes[i % 4];
		jobs[i].token[0] = '\0';
		if (pthread_create(&th[i], NULL, pm_run, &jobs[i]) != 0)
			abort();
	}
	for (i = 0; i < 16; i++)
		pthread_join(th[i], NULL);
	stub_sleep_ms = 0;
	same = 1;
	for (i = 0; i < 16; i++) {
		char want[40];

		snprintf(want, sizeof(want), "tok-%s-", boxes[i % 4]);
		if (jobs[i].r != 0 || strncmp(jobs[i].token, want,
		    strlen(want)) != 0 || strcmp(jobs[i].token,
		    jobs[i % 4].token) != 0)
			same = 0;
	}
	ok(same, "16 threads: each got its own mailbox's token");
	ok(requests() == base + 4, "4 mailboxes, 4 requests in all (2 were "
	    "on disk), no more");
	ok(a->nchildren == 4, "4 children");
	oa2_config_free(&cfg);
}

int
main(void)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_token t = { NULL, 0 }, t2 = { NULL, 0 };
	struct oa2_error err;
	char conf[300], cache[300], link[300], text[1024], *file;
	int from, i, status;
	time_t now = time(NULL);
	pid_t kids[20];

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(counter, sizeof(counter), "%s/requests", dir);
	snprintf(cache, sizeof(cache), "%s/cache", dir);
	snprintf(conf, sizeof(conf), "%s/c.conf", dir);
	snprintf(text, sizeof(text), "%s/ca.pem", dir);
	put(text, "-----BEGIN CERTIFICATE-----\n", 0644);
	snprintf(text, sizeof(text), "defaults = { ca_file = \"%s/ca.pem\"; "
	    "cache_dir = \"%s\"; refresh_margin = 600; timeout = 5; };\n"
	    "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\"; "
	    "client_secret = \"s\"; } );\n", dir, cache);
	put(conf, text, 0600);
	if (oa2_config_load(conf, &lg, &cfg, &err) != 0) {
		printf("# %s\n", err.msg);
		return 1;
	}
	a = &cfg->accounts[0];
	file = oa2_cache_file(a);

	/* empty cache: one request, a private file in a private directory */
	ok(oa2_token_get(a, &lg, &t, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && requests() == 1, "empty cache fetches");
	ok(seeds_given == 1 && seed_given != 0, "jansson seeded by the cache, "
	    "before the first JSON object");
	ok(file_mode(cache) == 0700, "cache directory created 0700");
	ok(file_mode(file) == 0600, "cache file is 0600");
	ok(t.expires_at >= now + 3600 && t.expires_at <= time(NULL) + 3600,
	    "expiry kept");
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_MEMORY && strcmp(t.access_token,
	    t2.access_token) == 0 && requests() == 1, "then from memory");
	oa2_token_clear(&t2);
	oa2_token_clear(&a->mem);
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_DISK && strcmp(t.access_token,
	    t2.access_token) == 0 && requests() == 1,
	    "a fresh process reads the disk cache");
	oa2_token_clear(&t2);

	/* within refresh_margin of expiry: refreshed */
	put_token(file, "old", time(NULL) + 599, 0600);
	oa2_token_clear(&a->mem);
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && strcmp(t2.access_token, "old") != 0 &&
	    requests() == 2, "a token inside the margin is refreshed");
	oa2_token_clear(&t2);

	/* corrupt, truncated, unsafe cache files are replaced */
	{
		static const char *const bad[] = {
			"garbage", "",
			/* truncated: in the line, in the token */
			"{\"version\":1,\"expires_at\":9999",
			"{\"version\":1,\"expires_at\":99999999999,"
			"\"token_length\":10}\nabc",
			/* a byte too many, a space, a control character */
			"{\"version\":1,\"expires_at\":99999999999,"
			"\"token_length\":3}\nabc\n",
			"{\"version\":1,\"expires_at\":99999999999,"
			"\"token_length\":3}\na b",
			"{\"version\":1,\"expires_at\":99999999999,"
			"\"token_length\":3}\na\001b",
			/* a field missing or of the wrong type */
			"{\"version\":1,\"expires_at\":99999999999}\nabc",
			"{\"version\":1,\"token_length\":3}\nabc",
			"{\"version\":1,\"expires_at\":\"99999999999\","
			"\"token_length\":3}\nabc",
			/* another version; the token inside the JSON */
			"{\"version\":2,\"expires_at\":99999999999,"
			"\"token_length\":3}\nabc",
			"{\"version\":1,\"access_token\":\"abc\","
			"\"expires_at\":99999999999}\n",
		};
		static const char nul[] = "{\"version\":1,\"expires_at\":"
		    "99999999999,\"token_length\":3\0}\nabc";
		time_t nul_exp;
		char want[600];
		size_t k;

		for (k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
			put(file, bad[k], 0600);
			oa2_token_clear(&a->mem);
			i = requests();
			ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
			    from == OA2_FROM_SERVER && requests() == i + 1,
			    "a corrupt cache file is replaced");
			oa2_token_clear(&t2);
		}
		/* a NUL byte in the JSON line, where jansson would skip it */
		put_bytes(file, nul, sizeof(nul) - 1, 0600);
		ok(oa2_cache_peek(a, &nul_exp, &err) == OA2_ERR_CACHE,
		    "a NUL byte in the JSON line is corrupt");
		put_token(file, "abc", time(NULL) + 9999, 0644);
		ok(oa2_cache_peek(a, &nul_exp, &err) == OA2_ERR_CACHE,
		    "a world-readable cache file is unreadable");
		has_str(err.msg, "token cache file", "its sentence names it");
		has_str(err.msg, "is accessible by group or others (mode 0644)",
		    "and says why");
		oa2_token_clear(&a->mem);
		i = requests();
		ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
		    from == OA2_FROM_SERVER && requests() == i + 1 &&
		    file_mode(file) == 0600,
		    "a world-readable cache file is not trusted");
		oa2_token_clear(&t2);
		/* a missing file: strerror's text, without its first call */
		unlink(file);
		ok(oa2_cache_peek(a, &nul_exp, &err) == OA2_ERR_CACHE &&
		    nul_exp == 0, "a missing cache file: no token");
		snprintf(want, sizeof(want), "cannot open token cache file %s: "
		    "%s", file, strerror(ENOENT));
		is_str(err.msg, want, "said as strerror would say it");
		mkfifo(file, 0600);
		ok(oa2_cache_peek(a, &nul_exp, &err) == OA2_ERR_CACHE,
		    "a FIFO in its place is refused, without hanging");
		unlink(file);
	}

	/*
	 * What a power cut may leave of a file written without fsync: the
	 * sum rejects all of it (the old code took the first three).
	 */
	{
		char buf[1024], *other;
		const char *good;
		size_t n;

		/* the right file, read back whole: taken from the disk */
		good = put_token(file, "sum-token", time(NULL) + 9999, 0600);
		snprintf(buf, sizeof(buf), "%s", good);
		oa2_token_clear(&a->mem);
		i = requests();
		ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
		    from == OA2_FROM_DISK && requests() == i &&
		    strcmp(t2.access_token, "sum-token") == 0,
		    "a whole file with its sum is used");
		oa2_token_clear(&t2);
		/* one byte of the token changed, still printable */
		n = strlen(buf);
		buf[n - 1] = 'X';
		put_bytes(file, buf, n, 0600);
		oa2_token_clear(&a->mem);
		ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
		    from == OA2_FROM_SERVER && requests() == i + 1 &&
		    strcmp(t2.access_token, "sum-tokeX") != 0,
		    "a token byte that is not the one written: replaced");
		oa2_token_clear(&t2);
		/* another key's whole file (a stale block of another file) */
		other = malloc(strlen(file) + 2);
		if (other == NULL)
			abort();
		strcpy(other, file);
		other[strrchr(other, '/') + 1 - other] ^= 1;	/* another KEY */
		snprintf(buf, sizeof(buf), "%s", put_token(other,
		    "not-this-key", time(NULL) + 9999, 0600));
		put_bytes(file, buf, strlen(buf), 0600);
		unlink(other);
		free(other);
		oa2_token_clear(&a->mem);
		ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
		    from == OA2_FROM_SERVER && requests() == i + 2 &&
		    strcmp(t2.access_token, "not-this-key") != 0,
		    "another key's file under this name: replaced");
		oa2_token_clear(&t2);
		/* no sum at all */
		{
			static const char nosum[] = "{\"version\":1,"
			    "\"expires_at\":99999999999,\"token_length\":3}"
			    "\nabc";

			put_bytes(file, nosum, sizeof(nosum) - 1, 0600);
		}
		oa2_token_clear(&a->mem);
		ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
		    from == OA2_FROM_SERVER && requests() == i + 3,
		    "a file without a sum: replaced");
		oa2_token_clear(&t2);
		/* and what the writer put there carries the right sum */
		{
			char hex[33], want[48];
			const char *nl;

			snprintf(buf, sizeof(buf), "%s", slurp(file));
			if ((nl = strchr(buf, '\n')) == NULL)
				abort();
			file_sum(file, nl + 1, strlen(nl + 1), hex);
			snprintf(want, sizeof(want), "\"sum\":\"%s\"", hex);
			has_str(buf, want, "the writer's sum is the one "
			    "computed here");
		}
	}

	/* forget: only the token that was refused, and not a young one */
	oa2_token_clear(&a->mem);
	put_token(file, "old-token", time(NULL) + 3000, 0600);
	oa2_token_get(a, &lg, &t2, &from, &err);
	ok(oa2_token_forget(a, &lg, "some-other-token") == 0 &&
	    access(file, F_OK) == 0 && a->mem.access_token != NULL,
	    "forgetting another token keeps the cache");
	ok(oa2_token_forget(a, &lg, t2.access_token) == 0 &&
	    access(file, F_OK) == -1 && a->mem.access_token == NULL,
	    "forgetting the refused token drops memory and disk");
	oa2_token_clear(&t2);
	test_use(a, &lg, file);

	/* a refresh that fails transiently falls back to a valid token */
	put_token(file, "stale", time(NULL) + 300, 0600);
	oa2_token_clear(&a->mem);
	stub_result = OA2_ERR_NETWORK;
	logged[0] = '\0';
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
	    strcmp(t2.access_token, "stale") == 0,
	    "endpoint down: the still-valid token is used");
	has_str(logged, "using the cached token", "and a warning logged");
	oa2_token_clear(&t2);
	oa2_token_clear(&a->mem);
	stub_result = OA2_ERR_DENIED;
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == OA2_ERR_DENIED &&
	    t2.access_token == NULL, "a refusal is not papered over");
	has_str(err.msg, "stub failure", "the endpoint's sentence is kept");
	stub_result = OA2_OK;

	/* single flight: 20 processes, an empty cache, one request */
	unlink(file);
	oa2_token_clear(&a->mem);
	i = requests();
	stub_sleep_ms = 300;
	for (int k = 0; k < 20; k++)
		if ((kids[k] = fork()) == 0) {
			struct oa2_token kt = { NULL, 0 };

			_exit(oa2_token_get(a, NULL, &kt, NULL, &err) == 0 ?
			    0 : 1);
		}
	status = 0;
	for (int k = 0; k < 20; k++) {
		int st;

		waitpid(kids[k], &st, 0);
		status |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	ok(status == 0, "20 processes all got a token");
	ok(requests() == i + 1, "with exactly one token request");
	stub_sleep_ms = 0;

	/* an unsafe cache directory: memory only, said once */
	chmod(cache, 0755);
	oa2_token_clear(&a->mem);
	logged[0] = '\0';
	i = requests();
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER, "unsafe directory: still works");
	has_str(logged, "accessible by group or others", "the cause logged");
	has_str(logged, "keeping tokens in memory only", "and the fallback");
	oa2_token_clear(&t2);
	oa2_token_clear(&a->mem);
	logged[0] = '\0';
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
	    requests() == i + 2 && strstr(logged, "memory only") == NULL,
	    "said only once");
	oa2_token_clear(&t2);
	oa2_config_free(&cfg);

	/* a symlinked cache directory is refused */
	snprintf(link, sizeof(link), "%s/link", dir);
	symlink(cache, link);
	chmod(cache, 0700);
	snprintf(text, sizeof(text), "defaults = { ca_file = \"%s/ca.pem\"; "
	    "cache_dir = \"%s\"; };\naccounts = ( { match = \"*\"; tenant = "
	    "\"t\"; client_id = \"c\"; client_secret = \"s\"; } );\n", dir,
	    link);
	put(conf, text, 0600);
	oa2_config_load(conf, &lg, &cfg, &err);
	logged[0] = '\0';
	ok(oa2_token_get(&cfg->accounts[0], &lg, &t2, &from, &err) == 0,
	    "symlinked directory: still works");
	has_str(logged, "is not a directory but a symbolic link", "refused");
	oa2_token_clear(&t2);
	oa2_token_clear(&t);
	oa2_config_free(&cfg);
	free(file);

	test_backoff();
	test_write_fails();
	test_killed_writer();
	test_killed_holder();
	test_threads();
	test_hanging_endpoint();
	test_young_refused();
	test_clock_back();
	test_waiters_failure();
	test_sweep_schedule();
	test_per_mailbox();
	ok(seeds_given == 1, "jansson seeded once in the process, for all "
	    "the requests above");

	snprintf(text, sizeof(text), "rm -rf %s", dir);
	if (system(text) != 0)
		return 1;
	return done_testing();
}
