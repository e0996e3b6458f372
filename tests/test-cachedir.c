/*
 * The token cache directory with real users: one cache_dir shared by
 * every user of the machine (root-owned, mode 1733), each effective uid
 * in its own uid-N subdirectory made 0700; another user's uid-N or a
 * symlink in its place refused (memory only, one warning, nothing
 * written through the link); the shared directory itself checked; a
 * private cache_dir used as before; missing parents made 0700 inside
 * the home directory and named outside it. Parts run as root, parts as
 * nobody (fork, setgroups, setresgid, setresuid): needs root, else
 * skipped. The token endpoint is a counting stub of oa2_token_fetch.
 */
#include "config.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "cache.h"
#include "conf.h"
#include "tap.h"

/* Weak: the test also links against a libcore without them (old main). */
extern char *oa2_cache_dir(const struct oa2_account *)
    __attribute__((weak));
extern int oa2_cache_check(const char *, struct oa2_error *)
    __attribute__((weak));

static char dir[] = "/tmp/oa2-cachedir-XXXXXX";
static char counter[300];
static uid_t nuid;
static gid_t ngid;
static int child_failures;	/* a child that did not exit 0 (valgrind: 99) */

int
oa2_token_fetch(const struct oa2_account *acct, const struct oa2_log *lg,
    time_t now, struct oa2_token *out, struct oa2_error *err)
{
	char tok[64];
	int fd, n;

	memset(out, 0, sizeof(*out));
	fd = open(counter, O_WRONLY | O_APPEND);
	if (fd == -1 || write(fd, "x\n", 2) != 2)
		abort();
	close(fd);
	n = snprintf(tok, sizeof(tok), "tok-%ld-%lu", (long)getpid(),
	    (unsigned long)geteuid());
	out->access_token = strndup(tok, (size_t)n);
	out->expires_at = now + 3600;
	return OA2_OK;
}

static int
requests(void)
{
	struct stat st;

	return stat(counter, &st) == 0 ? (int)(st.st_size / 2) : 0;
}

static char logged[4096];

static void
sink(void *ctx, int level, const char *msg)
{
	snprintf(logged + strlen(logged), sizeof(logged) - strlen(logged),
	    "%d:%s\n", level, msg);
}

/* dir, then a, then b, in one of 64 static buffers. */
static const char *
path(const char *a, const char *b)
{
	static char buf[64][400];
	static int i;

	i = (i + 1) % 64;
	snprintf(buf[i], sizeof(buf[i]), "%s%s%s", dir, a, b);
	return buf[i];
}

/* A directory made by root, then given to uid with mode. */
static void
mkdir_as(const char *p, uid_t uid, mode_t mode)
{
	if (mkdir(p, 0700) == -1 || chown(p, uid, uid == 0 ? 0 : ngid) ==
	    -1 || chmod(p, mode) == -1)
		abort();
}

/* Mode, or -1; *uid the owner. lstat: a symlink is not followed. */
static int
mode_of(const char *p, uid_t *uid)
{
	struct stat st;

	if (lstat(p, &st) == -1)
		return -1;
	if (uid != NULL)
		*uid = st.st_uid;
	return (int)(st.st_mode & 07777);
}

static int
entries(const char *p)
{
	struct dirent *de;
	DIR *d = opendir(p);
	int n = 0;

	while (d != NULL && (de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	if (d != NULL)
		closedir(d);
	return n;
}

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

static void
become_nobody(void)
{
	if (setgroups(0, NULL) == -1 || setresgid(ngid, ngid, ngid) == -1 ||
	    setresuid(nuid, nuid, nuid) == -1)
		_exit(98);
}

/* A config whose one account "*" keeps its tokens in cache_dir. */
static struct oa2_config *
conf_for(const char *cache_dir)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_error err;
	char text[1024];
	const char *conf = path("/c.conf", "");
	int fd;

	snprintf(text, sizeof(text), "defaults = { ca_file = \"%s/ca.pem\"; "
	    "cache_dir = \"%s\"; };\naccounts = ( { match = \"*\"; tenant = "
	    "\"t\"; client_id = \"c\"; client_secret = \"s\"; } );\n", dir,
	    cache_dir);
	fd = open(conf, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd == -1 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
	if (oa2_config_load(conf, &lg, &cfg, &err) != 0) {
		printf("# %s\n", err.msg);
		exit(1);
	}
	return cfg;
}

/*
 * Two oa2_token_get in a child process, as root or as nobody, with HOME
 * home (NULL: unset), the memory cache dropped in between (a fresh
 * process); what each returned and where from, and the log.
 */
struct res {
	int	r1, from1, r2, from2;
	char	log[4096];
};

static void
get_as(int as_nobody, const char *home, struct oa2_account *a,
    struct res *res)
{
	struct oa2_log lg = { sink, NULL, OA2_LOG_DEBUG };
	struct oa2_token t = { NULL, 0 };
	struct oa2_error err;
	ssize_t n;
	size_t off = 0;
	int fd[2], st;
	pid_t pid;

	memset(res, 0, sizeof(*res));
	res->r1 = res->r2 = -1;
	if (pipe(fd) == -1 || (pid = fork()) == -1)
		abort();
	if (pid == 0) {
		char head[64];

		close(fd[0]);
		if (home != NULL)
			setenv("HOME", home, 1);
		else
			unsetenv("HOME");
		if (as_nobody)
			become_nobody();
		logged[0] = '\0';
		res->from1 = res->from2 = 0;
		res->r1 = oa2_token_get(a, &lg, &t, &res->from1, &err);
		oa2_token_clear(&t);
		oa2_token_clear(&a->mem);
		res->r2 = oa2_token_get(a, &lg, &t, &res->from2, &err);
		oa2_token_clear(&t);
		snprintf(head, sizeof(head), "%d %d %d %d\n", res->r1,
		    res->from1, res->r2, res->from2);
		if (write(fd[1], head, strlen(head)) == -1 ||
		    write(fd[1], logged, strlen(logged)) == -1)
			_exit(97);
		_exit(0);
	}
	close(fd[1]);
	while (off < sizeof(res->log) - 1 &&
	    (n = read(fd[0], res->log + off, sizeof(res->log) - 1 - off)) > 0)
		off += (size_t)n;
	res->log[off] = '\0';
	close(fd[0]);
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
	    sscanf(res->log, "%d %d %d %d", &res->r1, &res->from1, &res->r2,
	    &res->from2) != 4) {
		printf("# child failed (status %d): %s\n", st, res->log);
		child_failures++;
	}
}

/* Something done as nobody in a child: mkdir or symlink; 0 when done. */
static int
nobody_do(const char *what, const char *p, const char *target)
{
	int st;
	pid_t pid;

	if ((pid = fork()) == 0) {
		become_nobody();
		if (strcmp(what, "mkdir") == 0)
			_exit(mkdir(p, 0700) == 0 ? 0 : 1);
		_exit(symlink(target, p) == 0 ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 99;
}

/* The KEY.token of a in subdirectory sub of cache directory top. */
static const char *
token_in(const struct oa2_account *a, const char *top, const char *sub)
{
	static char buf[2][600];
	static int i;

	i = !i;
	snprintf(buf[i], sizeof(buf[i]), "%s%s%s/%s.token", top,
	    *sub != '\0' ? "/" : "", sub, a->cache_key);
	return buf[i];
}

static void
test_shared(void)
{
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct res r;
	char nsub[32], *f;
	const char *top = path("/shared", ""), *rootfile, *nfile;
	uid_t o;
	int n;

	snprintf(nsub, sizeof(nsub), "uid-%lu", (unsigned long)nuid);
	mkdir_as(top, 0, 01733);
	cfg = conf_for(top);
	a = &cfg->accounts[0];
	rootfile = token_in(a, top, "uid-0");
	nfile = token_in(a, top, nsub);

	n = requests();
	get_as(0, NULL, a, &r);
	ok(r.r1 == 0 && r.from1 == OA2_FROM_SERVER && r.r2 == 0 &&
	    r.from2 == OA2_FROM_DISK && requests() == n + 1,
	    "shared 1733 directory: root's token is cached on disk");
	ok(strstr(r.log, "memory only") == NULL, "without a warning");
	ok(mode_of(path("/shared/uid-0", ""), &o) == 0700 && o == 0,
	    "root's subdirectory uid-0 made 0700, owned by root");
	ok(mode_of(rootfile, &o) == 0600 && o == 0,
	    "root's token file lies in uid-0");
	f = oa2_cache_file(a);
	is_str(f, rootfile, "oa2_cache_file names root's file in uid-0");
	free(f);

	get_as(1, NULL, a, &r);
	ok(r.r1 == 0 && r.from1 == OA2_FROM_SERVER && r.r2 == 0 &&
	    r.from2 == OA2_FROM_DISK && requests() == n + 2,
	    "the same directory: nobody's token is cached on disk");
	ok(strstr(r.log, "memory only") == NULL, "without a warning");
	ok(mode_of(path("/shared/", nsub), &o) == 0700 && o == nuid,
	    "nobody's subdirectory made 0700, owned by nobody");
	ok(mode_of(nfile, &o) == 0600 && o == nuid,
	    "nobody's token file lies in its own subdirectory");
	ok(entries(top) == 2 && mode_of(top, &o) == 01733 && o == 0,
	    "nothing else in the shared directory, its mode unchanged");
	get_as(0, NULL, a, &r);
	ok(r.r1 == 0 && r.from1 == OA2_FROM_DISK && requests() == n + 2,
	    "root still reads its own token from disk");
	oa2_config_free(&cfg);

	/* root-owned 0711 with nobody's uid-N made by the admin */
	top = path("/premade", "");
	mkdir_as(top, 0, 0711);
	mkdir_as(path("/premade/", nsub), nuid, 0700);
	cfg = conf_for(top);
	a = &cfg->accounts[0];
	get_as(1, NULL, a, &r);
	ok(r.r1 == 0 && r.r2 == 0 && r.from2 == OA2_FROM_DISK &&
	    mode_of(token_in(a, top, nsub), NULL) == 0600,
	    "root-owned 0711 with uid-N made by the admin: used");
	oa2_config_free(&cfg);
}

static void
test_attacks(void)
{
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct res r;
	const char *top;
	char want[600];
	uid_t o;
	int n;

	/* nobody made root's uid-0 first */
	top = path("/pre", "");
	mkdir_as(top, 0, 01733);
	ok(nobody_do("mkdir", path("/pre/uid-0", ""), NULL) == 0,
	    "nobody can make uid-0 in the shared directory");
	cfg = conf_for(top);
	a = &cfg->accounts[0];
	n = requests();
	get_as(0, NULL, a, &r);
	ok(r.r1 == 0 && r.from1 == OA2_FROM_SERVER && r.r2 == 0 &&
	    r.from2 == OA2_FROM_SERVER && requests() == n + 2,
	    "uid-0 made by nobody: root still gets tokens, from memory only");
	snprintf(want, sizeof(want), "%s/pre/uid-0 is owned by uid %lu, not "
	    "by uid 0", dir, (unsigned long)nuid);
	has_str(r.log, want, "the cause logged");
	ok(count(r.log, "keeping tokens in memory only") == 1,
	    "one warning");
	ok(entries(path("/pre/uid-0", "")) == 0 &&
	    mode_of(path("/pre/uid-0", ""), &o) == 0700 && o == nuid,
	    "nothing written into nobody's directory");
	oa2_config_free(&cfg);

	/* nobody put a symlink uid-0 -> a directory of its own */
	top = path("/sym", "");
	mkdir_as(top, 0, 01733);
	mkdir_as(path("/elsewhere", ""), nuid, 0777);
	ok(nobody_do("symlink", path("/sym/uid-0", ""),
	    path("/elsewhere", "")) == 0,
	    "nobody can put a symlink uid-0 in the shared directory");
	cfg = conf_for(top);
	a = &cfg->accounts[0];
	n = requests();
	get_as(0, NULL, a, &r);
	ok(r.r1 == 0 && r.r2 == 0 && r.from2 == OA2_FROM_SERVER &&
	    requests() == n + 2, "symlinked uid-0: memory only");
	has_str(r.log, "uid-0 is not a directory but a symbolic link",
	    "the cause logged");
	ok(count(r.log, "keeping tokens in memory only") == 1,
	    "one warning");
	ok(entries(path("/elsewhere", "")) == 0,
	    "nothing written through the link");
	oa2_config_free(&cfg);

	/* the shared directory itself: writable by others without sticky */
	top = path("/open", "");
	mkdir_as(top, 0, 0777);
	cfg = conf_for(top);
	get_as(1, NULL, &cfg->accounts[0], &r);
	ok(r.r1 == 0 && r.r2 == 0 && r.from2 == OA2_FROM_SERVER,
	    "root-owned 0777 without sticky bit: memory only");
	has_str(r.log, "writable by group or others without the sticky bit "
	    "(mode 0777): run chmod 1733", "the cause logged");
	ok(entries(top) == 0, "nothing made in it");
	oa2_config_free(&cfg);

	/* ... or owned by another user */
	top = path("/theirs", "");
	mkdir_as(top, nuid, 01733);
	cfg = conf_for(top);
	get_as(0, NULL, &cfg->accounts[0], &r);
	ok(r.r1 == 0 && r.r2 == 0 && r.from2 == OA2_FROM_SERVER,
	    "a sticky directory owned by nobody, used by root: memory only");
	snprintf(want, sizeof(want), "is owned by uid %lu, not by root or "
	    "by uid 0", (unsigned long)nuid);
	has_str(r.log, want, "the cause logged");
	ok(entries(top) == 0, "nothing made in it");
	oa2_config_free(&cfg);
}

static void
test_private(void)
{
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct res r;
	const char *top = path("/mine", "");

	/* a private cache_dir (nobody's, 0700) holds the files itself */
	mkdir_as(top, nuid, 0700);
	cfg = conf_for(top);
	a = &cfg->accounts[0];
	get_as(1, NULL, a, &r);
	ok(r.r1 == 0 && r.r2 == 0 && r.from2 == OA2_FROM_DISK &&
	    strstr(r.log, "memory only") == NULL,
	    "a private 0700 cache_dir works as before");
	ok(mode_of(token_in(a, top, ""), NULL) == 0600 && entries(top) == 2,
	    "the token and lock files lie in it, no uid-N");
	oa2_config_free(&cfg);
}

static void
test_parents(void)
{
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_error err;
	struct res r;
	const char *home = path("/home", ""), *cd;
	char want[600];
	uid_t o;

	/* a fresh account: no ~/.cache */
	mkdir_as(home, nuid, 0700);
	cd = path("/home/.cache/sasl-oauth2", "");
	cfg = conf_for(cd);
	a = &cfg->accounts[0];
	if (oa2_cache_check != NULL) {
		/* as root, with HOME root's own */
		setenv("HOME", path("/roothome", ""), 1);
		ok(oa2_cache_check(path("/roothome/.cache/x", ""), &err) == 0 &&
		    mode_of(path("/roothome/.cache", ""), NULL) == -1,
		    "check: missing parents inside home pass, none made");
	} else
		ok(0, "check: oa2_cache_check exists");
	get_as(1, home, a, &r);
	ok(r.r1 == 0 && r.r2 == 0 && r.from2 == OA2_FROM_DISK &&
	    strstr(r.log, "memory only") == NULL,
	    "~/.cache/sasl-oauth2 on a fresh account: cached on disk");
	ok(mode_of(path("/home/.cache", ""), &o) == 0700 && o == nuid,
	    "~/.cache made 0700, owned by the user");
	ok(mode_of(cd, &o) == 0700 && o == nuid,
	    "~/.cache/sasl-oauth2 made 0700, owned by the user");
	ok(mode_of(token_in(a, cd, ""), NULL) == 0600,
	    "the token file lies in it");
	oa2_config_free(&cfg);

	/* outside home: named, not made (even where root could) */
	cd = path("/nowhere/deeper/sasl-oauth2", "");
	cfg = conf_for(cd);
	get_as(1, home, &cfg->accounts[0], &r);
	ok(r.r1 == 0 && r.r2 == 0 && r.from2 == OA2_FROM_SERVER,
	    "a missing parent outside home: memory only");
	snprintf(want, sizeof(want), "its parent %s/nowhere does not exist",
	    dir);
	has_str(r.log, want, "the missing parent named");
	ok(count(r.log, "keeping tokens in memory only") == 1,
	    "one warning");
	if (oa2_cache_check != NULL) {
		ok(oa2_cache_check(cd, &err) != 0 &&
		    strstr(err.msg, "/nowhere does not exist") != NULL,
		    "check: a missing parent outside home is named");
	} else
		ok(0, "check: oa2_cache_check exists");
	get_as(0, path("/roothome", ""), &cfg->accounts[0], &r);
	has_str(r.log, want, "root: the missing parent named");
	ok(mode_of(path("/nowhere", ""), NULL) == -1,
	    "and not made");
	oa2_config_free(&cfg);

	/* a HOME that is not the user's own: nothing made in it */
	cd = path("/home/.other/sasl-oauth2", "");
	cfg = conf_for(cd);
	get_as(0, home, &cfg->accounts[0], &r);
	snprintf(want, sizeof(want), "its parent %s/home/.other does not "
	    "exist", dir);
	has_str(r.log, want,
	    "root with HOME owned by nobody: the missing parent named");
	ok(mode_of(path("/home/.other", ""), NULL) == -1, "and not made");
	oa2_config_free(&cfg);
}

static void
test_check(void)
{
	struct oa2_error err;
	const char *top = path("/fresh", "");

	if (oa2_cache_check == NULL || oa2_cache_dir == NULL) {
		ok(0, "oa2_cache_check and oa2_cache_dir exist");
		return;
	}
	mkdir_as(top, 0, 01733);
	ok(oa2_cache_check(top, &err) == 0 && entries(top) == 0,
	    "check: a fresh shared directory passes, nothing made");
	ok(oa2_cache_check(path("/open", ""), &err) != 0 &&
	    strstr(err.msg, "accessible by group or others") != NULL,
	    "check: root's own 0777 directory is refused");
	ok(oa2_cache_check(path("/pre", ""), &err) != 0 &&
	    strstr(err.msg, "uid-0 is owned by uid") != NULL,
	    "check: another user's uid-0 is refused");
}

int
main(void)
{
	struct passwd *pw;
	struct group *gr;
	char text[300];
	int fd;

	if (geteuid() != 0 || (pw = getpwnam("nobody")) == NULL) {
		printf("1..0 # SKIP needs root and the user nobody\n");
		return 77;
	}
	nuid = pw->pw_uid;
	ngid = (gr = getgrnam("nogroup")) != NULL ? gr->gr_gid : pw->pw_gid;
	umask(022);
	if (mkdtemp(dir) == NULL || chmod(dir, 0711) == -1)
		abort();
	snprintf(counter, sizeof(counter), "%s/requests", dir);
	if ((fd = open(counter, O_WRONLY | O_CREAT, 0666)) == -1 ||
	    fchmod(fd, 0666) == -1)
		abort();
	close(fd);
	snprintf(text, sizeof(text), "%s/ca.pem", dir);
	if ((fd = open(text, O_WRONLY | O_CREAT, 0644)) == -1 ||
	    write(fd, "-----BEGIN CERTIFICATE-----\n", 28) != 28)
		abort();
	close(fd);
	mkdir_as(path("/roothome", ""), 0, 0700);

	test_shared();
	test_attacks();
	test_private();
	test_parents();
	test_check();
	ok(child_failures == 0, "every child exited cleanly");

	snprintf(text, sizeof(text), "rm -rf '%s'", dir);
	if (getenv("KEEP") == NULL && system(text) != 0)
		printf("# could not remove %s\n", dir);
	return done_testing();
}
