/*
 * Delegated accounts: the token file (atomic, private, kill-safe) and
 * the config keys of provider = "microsoft" | "google".
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "cred.h"
#include "refresh.h"
#include "tap.h"

static char dir[] = "/tmp/oa2-refresh-XXXXXX";

/*
 * fsync, failing with EIO for a directory while dir_fsync_fails is set:
 * defined in the executable, it comes before libc's for the core.
 */
static int dir_fsync_fails;

__attribute__((visibility("default"))) int
fsync(int fd)
{
	static int (*real)(int);
	struct stat st;

	if (dir_fsync_fails && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		errno = EIO;
		return -1;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "fsync");
	return real != NULL ? real(fd) : -1;
}

static void
put(const char *path, const char *text, mode_t mode)
{
	FILE *f;

	unlink(path);
	if ((f = fopen(path, "w")) == NULL || fputs(text, f) == EOF ||
	    fclose(f) != 0)
		abort();
	chmod(path, mode);
}

static struct oa2_config *
load(const char *accounts, struct oa2_error *err)
{
	char conf[300], text[4096];
	struct oa2_config *cfg = NULL;

	snprintf(conf, sizeof(conf), "%s/sasl-oauth2.conf", dir);
	snprintf(text, sizeof(text), "version = 1;\naccounts = (\n%s\n);\n",
	    accounts);
	put(conf, text, 0600);
	if (oa2_config_load(conf, NULL, &cfg, err) != 0)
		return NULL;
	return cfg;
}

int
main(void)
{
	struct oa2_refresh_file rf, got;
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_error err;
	struct stat st;
	char path[300], secret[300], buf[2048], key1[33];
	int i, bad;

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(path, sizeof(path), "%s/token.json", dir);

	/* round trip, private */
	memset(&rf, 0, sizeof(rf));
	rf.refresh_token = strdup("rt-one");
	rf.email = strdup("alice@example.com");
	rf.scope = strdup("https://mail.google.com/");
	rf.signed_in = 1700000000;
	rf.refreshed = 1700000100;
	ok(oa2_refresh_write(path, &rf, (uid_t)-1, (gid_t)-1, &err) == 0,
	    "write a token file");
	ok(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600,
	    "it is mode 0600");
	ok(oa2_refresh_read(path, &got, &err) == 0 &&
	    strcmp(got.refresh_token, "rt-one") == 0 &&
	    strcmp(got.email, "alice@example.com") == 0 &&
	    got.signed_in == 1700000000 && got.refreshed == 1700000100,
	    "read it back");
	oa2_refresh_file_clear(&got);

	/* the directory cannot be synced: the file is saved all the same */
	dir_fsync_fails = 1;
	free(rf.refresh_token);
	rf.refresh_token = strdup("rt-two");
	ok(oa2_refresh_write(path, &rf, (uid_t)-1, (gid_t)-1, &err) == 0,
	    "a directory that cannot be synced: the write succeeds");
	dir_fsync_fails = 0;
	ok(oa2_refresh_read(path, &got, &err) == 0 &&
	    strcmp(got.refresh_token, "rt-two") == 0,
	    "and the new token is the one in the file");
	oa2_refresh_file_clear(&got);
	free(rf.refresh_token);
	rf.refresh_token = strdup("rt-one");
	chmod(path, 0640);
	ok(oa2_refresh_read(path, &got, &err) == OA2_ERR_CREDENTIAL &&
	    strstr(err.msg, "accessible by group or others") != NULL,
	    "a token file readable by others is refused");
	put(path, "not json", 0600);
	ok(oa2_refresh_read(path, &got, &err) == OA2_ERR_CREDENTIAL &&
	    strstr(err.msg, "run sasl-oauth2 login") != NULL,
	    "a token file that is not a sign-in: its sentence");
	put(path, "{\"email\": \"a@b\"}", 0600);
	ok(oa2_refresh_read(path, &got, &err) == OA2_ERR_CREDENTIAL,
	    "a token file without a refresh token is refused");

	/*
	 * Kill-safety: a writer killed at any moment leaves a whole file
	 * with one of the tokens it wrote (never none, never a mix).
	 */
	if (oa2_refresh_write(path, &rf, (uid_t)-1, (gid_t)-1, &err) != 0)
		abort();
	srand((unsigned)time(NULL));
	bad = 0;
	for (i = 0; i < 40; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			long n;

			for (n = 0;; n++) {
				snprintf(buf, sizeof(buf), "rt-%ld-%0900ld", n, n);
				free(rf.refresh_token);
				rf.refresh_token = strdup(buf);
				(void)oa2_refresh_write(path, &rf, (uid_t)-1,
				    (gid_t)-1, &err);
			}
		}
		usleep((useconds_t)(rand() % 20000));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		if (oa2_refresh_read(path, &got, &err) != 0 ||
		    strncmp(got.refresh_token, "rt-", 3) != 0)
			bad++;
		oa2_refresh_file_clear(&got);
	}
	ok(bad == 0, "40 writers killed mid-rotation: the file is always "
	    "whole and holds a refresh token");
	{
		struct timeval old[2] = { { 1, 0 }, { 1, 0 } };
		struct dirent *de;
		char p2[600];
		DIR *d;
		int left = 0;

		/* what killed writers left, made old; the next write sweeps */
		if ((d = opendir(dir)) == NULL)
			abort();
		while ((de = readdir(d)) != NULL)
			if (strncmp(de->d_name, "token.json.", 11) == 0) {
				snprintf(p2, sizeof(p2), "%s/%s", dir,
				    de->d_name);
				utimes(p2, old);
			}
		closedir(d);
		ok(oa2_refresh_write(path, &rf, (uid_t)-1, (gid_t)-1,
		    &err) == 0, "a write after them");
		if ((d = opendir(dir)) == NULL)
			abort();
		while ((de = readdir(d)) != NULL)
			if (strncmp(de->d_name, "token.json.", 11) == 0)
				left++;
		closedir(d);
		ok(left == 0, "removes the temporary files killed writers left");
	}
	{
		/*
		 * logout's removal: the file and every temporary file beside
		 * it, however fresh (each may hold a refresh token), nothing
		 * else
		 */
		char p2[600], p3[600], p4[600];

		if (oa2_refresh_write(path, &rf, (uid_t)-1, (gid_t)-1,
		    &err) != 0)
			abort();
		snprintf(p2, sizeof(p2), "%s.Ab12Cd", path);
		snprintf(p3, sizeof(p3), "%s.Zz99Yy", path);
		snprintf(p4, sizeof(p4), "%s.keep", path);
		put(p2, "{\"refresh_token\": \"rt-fresh\"}", 0600);
		put(p3, "", 0600);
		put(p4, "not ours", 0600);
		ok(oa2_refresh_remove(path, &err) == 0 &&
		    access(path, F_OK) == -1 && access(p2, F_OK) == -1 &&
		    access(p3, F_OK) == -1,
		    "remove: the token file and the fresh temporary files "
		    "beside it");
		ok(access(p4, F_OK) == 0, "remove: nothing else");
		unlink(p4);
		ok(oa2_refresh_remove(path, &err) == 0,
		    "remove: an absent token file is not an error");
	}
	oa2_refresh_file_clear(&rf);

	/* the config keys */
	snprintf(secret, sizeof(secret), "%s/g.secret", dir);
	put(secret, "gsecret\n", 0600);
	snprintf(buf, sizeof(buf),
	    "{ match = \"alice@outlook.test\"; provider = \"microsoft\";\n"
	    "  tenant = \"consumers\"; client_id = \"cid\";\n"
	    "  token_file = \"%s/a.json\"; },\n"
	    "{ match = \"bob@gmail.test\"; provider = \"google\";\n"
	    "  client_id = \"gid\"; client_secret_file = \"%s\";\n"
	    "  token_file = \"%s/b.json\"; }", dir, secret, dir);
	cfg = load(buf, &err);
	ok(cfg != NULL && cfg->nbroken == 0, "two delegated accounts load");
	a = cfg != NULL ? oa2_config_match(cfg, "alice@outlook.test") : NULL;
	ok(a != NULL && oa2_refresh_of(a) != NULL &&
	    strcmp(a->token_url, "https://login.microsoftonline.com/"
	    "consumers/oauth2/v2.0/token") == 0 &&
	    strstr(a->scope, "IMAP.AccessAsUser.All") != NULL &&
	    strstr(a->scope, "offline_access") != NULL,
	    "microsoft: tenant consumers allowed, token URL and scope");
	if (a != NULL)
		memcpy(key1, a->cache_key, sizeof(key1));
	a = cfg != NULL ? oa2_config_match(cfg, "bob@gmail.test") : NULL;
	ok(a != NULL && oa2_refresh_of(a) != NULL &&
	    strcmp(a->token_url, "https://oauth2.googleapis.com/token") == 0 &&
	    strcmp(a->scope, "https://mail.google.com/") == 0 &&
	    oa2_refresh_of(a)->client_secret != NULL &&
	    strcmp(oa2_refresh_of(a)->client_secret, "gsecret") == 0 &&
	    oa2_refresh_of(a)->revocation_endpoint != NULL &&
	    strcmp(a->imap_host, "imap.gmail.com") == 0,
	    "google: client_secret_file with provider, endpoints, scope, hosts");
	ok(a != NULL && strcmp(a->cache_key, key1) != 0,
	    "each token file its own cache key");
	oa2_config_free(&cfg);

	cfg = load("{ match = \"bob@gmail.test\"; provider = \"google\";\n"
	    "  tenant = \"x\"; client_id = \"g\"; token_file = \"/t\"; }",
	    &err);
	a = cfg != NULL ? oa2_config_match(cfg, "bob@gmail.test") : NULL;
	ok(a != NULL && a->broken &&
	    strstr(a->load_err.msg, "takes no tenant") != NULL,
	    "google with a tenant: refused");
	oa2_config_free(&cfg);
	cfg = load("{ match = \"*@gmail.test\"; provider = \"google\";\n"
	    "  client_id = \"g\"; token_file = \"/t\"; }", &err);
	a = cfg != NULL ? oa2_config_match(cfg, "x@gmail.test") : NULL;
	ok(a != NULL && a->broken &&
	    strstr(a->load_err.msg, "must name one mailbox") != NULL,
	    "a delegated account for a whole domain: refused");
	oa2_config_free(&cfg);
	cfg = load("{ match = \"c@x.test\"; provider = \"microsoft\";\n"
	    "  client_id = \"g\"; token_file = \"/t\"; certificate = \"/c\"; }",
	    &err);
	a = cfg != NULL ? oa2_config_match(cfg, "c@x.test") : NULL;
	ok(a != NULL && a->broken &&
	    strstr(a->load_err.msg, "more than one credential") != NULL,
	    "provider and certificate together: refused");
	oa2_config_free(&cfg);
	cfg = load("{ match = \"c@x.test\"; provider = \"yahoo\";\n"
	    "  client_id = \"g\"; token_file = \"/t\"; }", &err);
	a = cfg != NULL ? oa2_config_match(cfg, "c@x.test") : NULL;
	ok(a != NULL && a->broken &&
	    strstr(a->load_err.msg, "\"microsoft\" or \"google\"") != NULL,
	    "an unknown provider: refused");
	oa2_config_free(&cfg);
	cfg = load("{ match = \"c@x.test\"; provider = \"microsoft\";\n"
	    "  token_file = \"/t\"; }", &err);
	a = cfg != NULL ? oa2_config_match(cfg, "c@x.test") : NULL;
	ok(a != NULL && a->broken &&
	    strstr(a->load_err.msg, "no client_id") != NULL,
	    "no client_id: refused");
	oa2_config_free(&cfg);

	snprintf(buf, sizeof(buf), "rm -rf '%s'", dir);
	(void)!system(buf);
	return done_testing();
}
