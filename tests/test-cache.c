/*
 * The token cache: memory, disk, expiry, permissions, corruption,
 * forgetting, stale fallback, and single flight across processes.
 * The token endpoint is replaced by a counting stub of oa2_token_fetch.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "cache.h"
#include "conf.h"
#include "secret.h"
#include "tap.h"

static char dir[] = "/tmp/oa2-cache-XXXXXX";
static char counter[300];
static int stub_result = OA2_OK;
static long stub_lifetime = 3600;
static int stub_sleep_ms;

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
	if (stub_result != 0)
		return oa2_seterr(err, stub_result, "stub failure");
	n = snprintf(tok, sizeof(tok), "tok-%ld-%d", (long)getpid(), rand());
	out->access_token = strndup(tok, (size_t)n);
	out->expires_at = now + stub_lifetime;
	return OA2_OK;
}

static int
requests(void)
{
	char buf[4096];
	ssize_t n;
	int fd = open(counter, O_RDONLY);

	if (fd == -1)
		return 0;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	return n > 0 ? (int)n / 2 : 0;
}

static char logged[2048];

static void
sink(void *ctx, int level, const char *msg)
{
	snprintf(logged + strlen(logged), sizeof(logged) - strlen(logged),
	    "%d:%s\n", level, msg);
}

static void
put(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	chmod(path, mode);
}

static int
file_mode(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
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
	snprintf(text, sizeof(text), "{\"version\":1,\"access_token\":\"old\","
	    "\"expires_at\":%ld}", (long)time(NULL) + 599);
	put(file, text, 0600);
	oa2_token_clear(&a->mem);
	ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
	    from == OA2_FROM_SERVER && strcmp(t2.access_token, "old") != 0 &&
	    requests() == 2, "a token inside the margin is refreshed");
	oa2_token_clear(&t2);

	/* corrupt, truncated, unsafe cache files are replaced */
	{
		static const char *const bad[] = {
			"garbage", "{\"version\":1,\"access_token\":\"abc",
			"{\"version\":1,\"access_token\":\"a b\","
			"\"expires_at\":99999999999}",
			"{\"version\":2,\"access_token\":\"abc\","
			"\"expires_at\":99999999999}",
			"",
		};
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
		snprintf(text, sizeof(text), "{\"version\":1,\"access_token\":"
		    "\"abc\",\"expires_at\":%ld}", (long)time(NULL) + 9999);
		put(file, text, 0644);
		oa2_token_clear(&a->mem);
		i = requests();
		ok(oa2_token_get(a, &lg, &t2, &from, &err) == 0 &&
		    from == OA2_FROM_SERVER && requests() == i + 1 &&
		    file_mode(file) == 0600,
		    "a world-readable cache file is not trusted");
		oa2_token_clear(&t2);
	}

	/* forget: only the token that was refused */
	oa2_token_clear(&a->mem);
	oa2_token_get(a, &lg, &t2, &from, &err);
	oa2_token_forget(a, &lg, "some-other-token");
	ok(access(file, F_OK) == 0 && a->mem.access_token != NULL,
	    "forgetting another token keeps the cache");
	oa2_token_forget(a, &lg, t2.access_token);
	ok(access(file, F_OK) == -1 && a->mem.access_token == NULL,
	    "forgetting the refused token drops memory and disk");
	oa2_token_clear(&t2);

	/* a refresh that fails transiently falls back to a valid token */
	snprintf(text, sizeof(text), "{\"version\":1,\"access_token\":\"stale\","
	    "\"expires_at\":%ld}", (long)time(NULL) + 300);
	put(file, text, 0600);
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

	snprintf(text, sizeof(text), "rm -rf %s", dir);
	if (system(text) != 0)
		return 1;
	return done_testing();
}
