/*
 * Where tokens come from: memory, then the disk cache, then the token
 * endpoint. The disk cache holds one file per credential; a lock file
 * beside it (flock) makes many processes that start together ask the
 * endpoint once; files are written to a temporary name and renamed, so
 * a reader never sees a torn file, and a writer killed half-way leaves
 * the previous file (and the kernel drops its lock); each file carries
 * a digest of its key and token, so that what a power cut may leave (a
 * file empty, zeroed, or holding stale blocks) is never taken for a
 * token: the cache costs one token request then, not a wrong token.
 * A permanent refusal is kept in the same file for failure_backoff
 * seconds, so that a busy MTA does not hammer the endpoint.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "cache.h"
#include "conf.h"
#include "cred.h"
#include "secret.h"

#ifndef O_PATH
#define O_PATH		O_RDONLY	/* needs read permission on dir */
#endif

#define CACHE_MAX	(64 * 1024)

static int
fresh(const struct oa2_token *t, const struct oa2_account *acct, time_t now)
{
	return t->access_token != NULL &&
	    t->expires_at - acct->refresh_margin > now;
}

static int
usable(const struct oa2_token *t, time_t now)
{
	return t->access_token != NULL && t->expires_at > now + 30;
}

/*
 * The cache directory (docs/cache.md, "The directory"). cache_dir is
 * either private, owned by the effective uid without the sticky bit,
 * and holds the files itself (mode 0700, as it always did); or shared
 * by the users of the machine, owned by root (or by us) and sticky when
 * others may write to it (/var/cache/sasl-oauth2, mode 1733), and then
 * each effective uid's files lie in its own subdirectory "uid-N", made
 * 0700 on first use and held to the private rule.
 */
static int
dir_shared(const struct stat *st)
{
	return S_ISDIR(st->st_mode) &&
	    (st->st_uid != geteuid() || (st->st_mode & S_ISVTX) != 0);
}

char *
oa2_cache_dir(const struct oa2_account *acct)
{
	struct stat st;
	char *p;

	if (acct->cache_dir == NULL)
		return NULL;
	if (lstat(acct->cache_dir, &st) == 0 && dir_shared(&st)) {
		if (asprintf(&p, "%s/uid-%lu", acct->cache_dir,
		    (unsigned long)geteuid()) == -1)
			return NULL;
		return p;
	}
	return strdup(acct->cache_dir);
}

/*
 * "dir/PREFIXKEYSUFFIX" for acct's KEY, in a new string or NULL. dir is
 * oa2_cache_dir's answer, resolved once per token request and passed
 * down, rather than examined again for every file name.
 */
static char *
in_dir(const char *dir, const struct oa2_account *acct, const char *prefix,
    const char *suffix)
{
	char *p;

	if (asprintf(&p, "%s/%s%s%s", dir, prefix, acct->cache_key, suffix) ==
	    -1)
		return NULL;
	return p;
}

char *
oa2_cache_file(const struct oa2_account *acct)
{
	char *d, *p;

	if ((d = oa2_cache_dir(acct)) == NULL)
		return NULL;
	p = in_dir(d, acct, "", ".token");
	free(d);
	return p;
}

/*
 * The effective user's home directory into *home (a new string), or
 * NULL: $HOME unless the process is setuid or setgid (secure_getenv),
 * else the passwd entry; only a directory owned by the effective uid.
 */
static int
home_dir(char **home)
{
	struct passwd pw, *res = NULL;
	struct stat st;
	const char *h;
	char *buf = NULL, *nbuf;
	size_t len = 4096;
	int e;

	*home = NULL;
	if ((h = secure_getenv("HOME")) == NULL || *h != '/') {
		for (;;) {
			if ((nbuf = realloc(buf, len)) == NULL)
				goto out;
			buf = nbuf;
			e = getpwuid_r(geteuid(), &pw, buf, len, &res);
			if (e != ERANGE || len >= 1024 * 1024)
				break;
			len *= 2;
		}
		if (res == NULL || pw.pw_dir == NULL || *pw.pw_dir != '/')
			goto out;
		h = pw.pw_dir;
	}
	if (stat(h, &st) == 0 && S_ISDIR(st.st_mode) &&
	    st.st_uid == geteuid())
		*home = strdup(h);
 out:
	free(buf);
	return *home != NULL;
}

/*
 * Whether path lies below home: home's components, then at least one
 * more, none of them "." or "..".
 */
static int
below(const char *path, const char *home)
{
	size_t n = strlen(home);
	const char *c;

	while (n > 0 && home[n - 1] == '/')
		n--;
	if (n == 0 || strncmp(path, home, n) != 0 || path[n] != '/')
		return 0;
	for (c = path + n; *c != '\0'; ) {
		while (*c == '/')
			c++;
		if ((c[0] == '.' && (c[1] == '/' || c[1] == '\0')) ||
		    (c[0] == '.' && c[1] == '.' &&
		    (c[2] == '/' || c[2] == '\0')))
			return 0;
		while (*c != '/' && *c != '\0')
			c++;
	}
	return 1;
}

/*
 * dir does not exist. OA2_OK when its parent does (the caller makes
 * it), or when dir lies inside the effective user's home directory:
 * then, with create, its missing parents are made 0700. Otherwise the
 * sentence names the first missing parent.
 */
static int
make_parents(const char *dir, int create, struct oa2_error *err)
{
	char *p, *s, *missing = NULL, *home = NULL, who[32];
	size_t i, m;
	int r = OA2_OK;

	if ((p = strdup(dir)) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	/* the shallowest missing ancestor: cut components until one exists */
	for (;;) {
		struct stat st;

		while ((s = strrchr(p, '/')) != NULL && s > p && s[1] == '\0')
			*s = '\0';
		if ((s = strrchr(p, '/')) == NULL || s == p)
			break;		/* "/" exists */
		while (s > p && s[-1] == '/')
			s--;
		*s = '\0';
		if (stat(p, &st) == 0)
			break;
		if (errno != ENOENT) {
			r = oa2_seterr(err, OA2_ERR_CACHE, "cannot examine %s "
			    "(a parent of token cache directory %s): %s", p,
			    dir, strerror(errno));
			goto out;
		}
		free(missing);
		if ((missing = strdup(p)) == NULL) {
			r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
	}
	if (missing == NULL)
		goto out;
	if (!home_dir(&home) || !below(dir, home)) {
		snprintf(who, sizeof(who), "of uid %lu",
		    (unsigned long)geteuid());
		r = oa2_seterr(err, OA2_ERR_CACHE, "cannot create token cache "
		    "directory %s: its parent %s does not exist (missing "
		    "parents are created only inside the home directory %s)",
		    dir, missing, home != NULL ? home : who);
		goto out;
	}
	if (!create)
		goto out;
	/* missing is dir cut at a '/': make it, then each deeper parent */
	free(p);
	if ((p = strdup(dir)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	m = strlen(missing);
	for (i = m; p[i] != '\0'; i++) {
		if (p[i] != '/' || (i > m && p[i - 1] == '/'))
			continue;
		p[i] = '\0';
		if (mkdir(p, 0700) == -1 && errno != EEXIST) {
			r = oa2_seterr(err, OA2_ERR_CACHE, "cannot create %s (a "
			    "parent of token cache directory %s): %s", p, dir,
			    strerror(errno));
			goto out;
		}
		p[i] = '/';
	}
 out:
	free(p);
	free(missing);
	free(home);
	return r;
}

/*
 * The private rule, for a private cache_dir and for a shared one's
 * uid-N: a directory (not a symlink) owned by the effective uid, with
 * no group or other access.
 */
static int
own_dir(const char *name, const struct stat *st, struct oa2_error *err)
{
	if (!S_ISDIR(st->st_mode))
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "token cache directory %s is not a directory%s", name,
		    S_ISLNK(st->st_mode) ? " but a symbolic link" : "");
	if (st->st_uid != geteuid())
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "token cache directory %s is owned by uid %lu, not by "
		    "uid %lu", name, (unsigned long)st->st_uid,
		    (unsigned long)geteuid());
	if ((st->st_mode & 077) != 0)
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "token cache directory %s is accessible by group or "
		    "others (mode %04o): run chmod 700 %s", name,
		    (unsigned)(st->st_mode & 07777), name);
	return OA2_OK;
}

/*
 * Check cache directory dir as the plugin uses it (see above), and
 * with create make what is missing: dir itself 0700 (and its parents,
 * see make_parents), a shared dir's uid-N 0700. Without create, what
 * would be made on first use passes. With use (not NULL), the
 * directory that holds the files, as oa2_cache_dir names it but from
 * the examination just made, goes into *use (a new string) when dir
 * passes; OA2_ERR_NOMEM when it cannot be.
 */
static int
dir_check(const char *dir, int create, char **use, struct oa2_error *err)
{
	struct stat st, top;
	char sub[32], *name = NULL;
	int fd = -1, r;

	if (use != NULL)
		*use = NULL;

	if (lstat(dir, &st) == -1) {
		if (errno != ENOENT)
			return oa2_seterr(err, OA2_ERR_CACHE, "cannot examine "
			    "token cache directory %s: %s", dir,
			    strerror(errno));
		if ((r = make_parents(dir, create, err)) != 0 || !create)
			return r;
		if (mkdir(dir, 0700) == -1 && errno != EEXIST)
			return oa2_seterr(err, OA2_ERR_CACHE, "cannot create "
			    "token cache directory %s: %s", dir,
			    strerror(errno));
		if (lstat(dir, &st) == -1)
			return oa2_seterr(err, OA2_ERR_CACHE, "cannot examine "
			    "token cache directory %s: %s", dir,
			    strerror(errno));
	}
	if (!dir_shared(&st)) {
		if ((r = own_dir(dir, &st, err)) != 0)
			return r;
		if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == -1)
			return oa2_seterr(err, OA2_ERR_CACHE, "token cache "
			    "directory %s is not writable: %s", dir,
			    strerror(errno));
		if (use != NULL && (*use = strdup(dir)) == NULL)
			return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		return OA2_OK;
	}

	/* shared: nobody but root or us may replace what lies in it */
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return oa2_seterr(err, OA2_ERR_CACHE, "token cache directory "
		    "%s is owned by uid %lu, not by root or by uid %lu", dir,
		    (unsigned long)st.st_uid, (unsigned long)geteuid());
	if ((st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0)
		return oa2_seterr(err, OA2_ERR_CACHE, "token cache directory "
		    "%s is writable by group or others without the sticky "
		    "bit (mode %04o): run chmod 1733 %s", dir,
		    (unsigned)(st.st_mode & 07777), dir);
	snprintf(sub, sizeof(sub), "uid-%lu", (unsigned long)geteuid());
	if (asprintf(&name, "%s/%s", dir, sub) == -1) {
		name = NULL;
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* uid-N is looked at through dir as checked, never through a link */
	r = OA2_ERR_CACHE;
	if ((fd = open(dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) ==
	    -1 || fstat(fd, &top) == -1) {
		oa2_seterr(err, r, "cannot open token cache directory %s: %s",
		    dir, strerror(errno));
		goto out;
	}
	if (top.st_dev != st.st_dev || top.st_ino != st.st_ino) {
		oa2_seterr(err, r, "token cache directory %s changed while "
		    "it was examined", dir);
		goto out;
	}
	if (create && mkdirat(fd, sub, 0700) == -1 && errno != EEXIST) {
		oa2_seterr(err, r, "cannot create token cache directory %s: "
		    "%s%s%s", name, strerror(errno), errno == EACCES ?
		    "; a cache_dir shared by several users must be mode 1733: "
		    "run chmod 1733 " : "", errno == EACCES ? dir : "");
		goto out;
	}
	if (fstatat(fd, sub, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT && !create)
			r = OA2_OK;	/* made on first use */
		else
			oa2_seterr(err, r, "cannot examine token cache "
			    "directory %s: %s", name, strerror(errno));
		goto out;
	}
	if ((r = own_dir(name, &st, err)) != 0)
		goto out;
	if (faccessat(fd, sub, W_OK | X_OK, AT_EACCESS) == -1) {
		r = oa2_seterr(err, OA2_ERR_CACHE, "token cache directory %s "
		    "is not writable: %s", name, strerror(errno));
		goto out;
	}
	if (use != NULL) {
		*use = name;
		name = NULL;	/* transferred */
	}
	r = OA2_OK;
 out:
	if (fd != -1)
		close(fd);
	free(name);
	return r;
}

int
oa2_cache_check(const char *dir, struct oa2_error *err)
{
	return dir_check(dir, 0, NULL, err);
}

/*
 * The cache directory must be ours alone (see dir_check); it is made
 * on first use. The directory of the files into *dir (see dir_check).
 */
static int
check_dir(const struct oa2_account *acct, char **dir, struct oa2_error *err)
{
	return dir_check(acct->cache_dir, 1, dir, err);
}

/*
 * The file's "sum": 32 hex digits of SHA-256 over "oa2-cache-sum", the
 * cache key (the file's name) and the token bytes (none for a record
 * without a token), into hex. 0, or -1 when OpenSSL fails.
 */
static int
entry_sum(const struct oa2_account *acct, const char *tok, size_t toklen,
    char hex[33])
{
	EVP_MD_CTX *ctx = oa2_digest_begin("oa2-cache-sum");

	return oa2_digest_hex(ctx, ctx != NULL &&
	    EVP_DigestUpdate(ctx, acct->cache_key,
	    strlen(acct->cache_key)) &&
	    EVP_DigestUpdate(ctx, "\n", 1) &&
	    EVP_DigestUpdate(ctx, tok, toklen), hex);
}

/*
 * What a cache file holds: a token (and when it came from the endpoint),
 * a refusal of the token endpoint remembered until retry_at for the
 * input config_id names (refusal_id), and the transient failure of the
 * last request, for the processes that waited for it (see take_failure).
 */
struct entry {
	struct oa2_token tok;		/* access_token NULL: none */
	time_t	fetched_at;		/* 0: unknown */
	time_t	retry_at;		/* 0: no refusal */
	char	config_id[OA2_REFUSAL_ID_MAX];
	char	refused[OA2_ERRMSG_MAX];
	long long failed_at;		/* wall clock, ns; 0: none */
	int	failed_code;		/* one of kept_failure()'s codes */
	char	failed[OA2_ERRMSG_MAX];
	int	corrupt;		/* the file exists but is invalid */
};

static void
entry_clear(struct entry *e)
{
	oa2_token_clear(&e->tok);
	e->fetched_at = 0;
	e->retry_at = 0;
	e->config_id[0] = '\0';
	e->refused[0] = '\0';
	e->failed_at = 0;
	e->failed_code = 0;
	e->failed[0] = '\0';
	e->corrupt = 0;
}

/*
 * The codes of a failure kept for the callers that waited for its
 * request (see take_failure): whatever the endpoint's answer (or its
 * absence) says about every such call, not out of memory or a bug.
 */
static int
kept_failure(int code)
{
	return code == OA2_ERR_NETWORK || code == OA2_ERR_TRANSIENT ||
	    code == OA2_ERR_CONFIG || code == OA2_ERR_RESPONSE ||
	    code == OA2_ERR_CREDENTIAL || code == OA2_ERR_DENIED;
}

/* Whether a failure with this code may be answered with a stale token. */
static int
transient(int code)
{
	return code == OA2_ERR_NETWORK || code == OA2_ERR_TRANSIENT;
}

/*
 * Read the cache file into e. Its first line is a JSON object: "version"
 * 1, "account" (for people), and one or more of a token ("expires_at",
 * "token_length", and "fetched_at" when known), a remembered refusal
 * ("refused", "retry_at", "config"), the failure of the last request
 * ("failed", "failed_at", "failed_code"); the token's own bytes follow
 * the line. The token stays out of the JSON
 * so that it never passes through jansson, which can neither wipe the
 * buffers it lexes into nor be told to without touching the host
 * application's jansson, and because lexing it there was most of what a
 * fresh process spent on a cached login. OA2_ERR_CACHE when absent or
 * invalid.
 */
static int
disk_read(const struct oa2_account *acct, const char *dir, struct entry *e,
    struct oa2_error *err)
{
	json_t *root = NULL, *exp, *tlen, *ref, *until, *cid, *got, *fl,
	    *flat, *flc, *sum;
	char *path, *text = NULL, *nl, *tok, hex[33];
	size_t len = 0, toklen;
	int r;

	entry_clear(e);
	if ((path = in_dir(dir, acct, "", ".token")) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	if ((r = oa2_read_file(path, "token cache file", 1, CACHE_MAX,
	    &text, &len, err)) != 0) {
		r = OA2_ERR_CACHE;
		err->code = r;
		goto out;
	}
	r = oa2_seterr(err, OA2_ERR_CACHE, "token cache file %s is corrupt",
	    path);
	/* jansson skips some NUL bytes: the line holds none, or is corrupt */
	if ((nl = memchr(text, '\n', len)) == NULL ||
	    memchr(text, '\0', (size_t)(nl - text)) != NULL)
		goto out;
	tok = nl + 1;
	toklen = len - (size_t)(tok - text);
	root = json_loadb(text, (size_t)(nl - text), JSON_REJECT_DUPLICATES,
	    NULL);
	exp = json_object_get(root, "expires_at");
	tlen = json_object_get(root, "token_length");
	ref = json_object_get(root, "refused");
	until = json_object_get(root, "retry_at");
	cid = json_object_get(root, "config");
	got = json_object_get(root, "fetched_at");
	fl = json_object_get(root, "failed");
	flat = json_object_get(root, "failed_at");
	flc = json_object_get(root, "failed_code");
	sum = json_object_get(root, "sum");
	if (!json_is_object(root) ||
	    json_integer_value(json_object_get(root, "version")) != 1 ||
	    (exp == NULL && ref == NULL && fl == NULL))
		goto out;
	if (got != NULL && (exp == NULL || !json_is_integer(got) ||
	    json_integer_value(got) <= 0))
		goto out;
	if ((fl != NULL || flat != NULL || flc != NULL) &&
	    (!json_is_string(fl) || json_string_length(fl) == 0 ||
	    !json_is_integer(flat) || json_integer_value(flat) <= 0 ||
	    !json_is_integer(flc) ||
	    !kept_failure((int)json_integer_value(flc)) ||
	    json_integer_value(flc) != (int)json_integer_value(flc)))
		goto out;
	if (exp != NULL || tlen != NULL ? !json_is_integer(exp) ||
	    json_integer_value(exp) <= 0 || !json_is_integer(tlen) ||
	    json_integer_value(tlen) != (json_int_t)toklen ||
	    !oa2_token_printable(tok, toklen) : toklen != 0)
		goto out;
	if ((ref != NULL || until != NULL || cid != NULL) &&
	    (!json_is_string(ref) || json_string_length(ref) == 0 ||
	    !json_is_integer(until) || json_integer_value(until) <= 0 ||
	    !json_is_string(cid) ||
	    json_string_length(cid) >= sizeof(e->config_id)))
		goto out;
	/* whole, and this key's: not what a power cut left */
	if (!json_is_string(sum) || entry_sum(acct, tok, toklen, hex) != 0 ||
	    strcmp(json_string_value(sum), hex) != 0)
		goto out;
	if (exp != NULL) {
		if ((e->tok.access_token = strndup(tok, toklen)) == NULL) {
			r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
		e->tok.expires_at = (time_t)json_integer_value(exp);
		e->fetched_at = (time_t)json_integer_value(got);
	}
	if (fl != NULL) {
		oa2_sanitize(e->failed, sizeof(e->failed),
		    json_string_value(fl), json_string_length(fl),
		    sizeof(e->failed) - 1);
		e->failed_at = (long long)json_integer_value(flat);
		e->failed_code = (int)json_integer_value(flc);
	}
	if (ref != NULL) {
		oa2_sanitize(e->refused, sizeof(e->refused),
		    json_string_value(ref), json_string_length(ref),
		    sizeof(e->refused) - 1);
		e->retry_at = (time_t)json_integer_value(until);
		memcpy(e->config_id, json_string_value(cid),
		    json_string_length(cid) + 1);
	}
	r = OA2_OK;
	oa2_clearerr(err);
 out:
	e->corrupt = r == OA2_ERR_CACHE && text != NULL;
	json_decref(root);
	if (text != NULL)
		oa2_freezero(text, len);
	free(path);
	return r;
}

/*
 * How often the directory is scanned for the temporary files of
 * writers killed before their rename, at most: the lock holder writes
 * through one fixed name (".KEY.tmp", see disk_write), which the next
 * lock holder truncates and reuses, so those leftovers never pile up;
 * only a writer without the lock (a lock file that could not be opened
 * or locked) or an older version of the plugin used random names.
 */
#define SWEEP_INTERVAL	(24L * 3600)

/*
 * Whether the lock file lockfd (held) says the last scan was a
 * SWEEP_INTERVAL ago or more: its mtime is the time of the last scan
 * (the lock file is never written, so only its creation and sweep set
 * it: a new lock file is first scanned a day later, a leftover of an
 * unlocked writer holding a token no longer than the cache file does).
 * A time in the future (a clock set back) counts as due.
 */
static int
sweep_due(int lockfd, time_t now)
{
	struct stat st;

	if (fstat(lockfd, &st) == -1)
		return 1;
	return st.st_mtime > now + 60 || now - st.st_mtime >= SWEEP_INTERVAL;
}

/*
 * Remove the temporary files with random names (".KEY.XXXXXX") that a
 * writer killed before its rename left behind (they may hold a token),
 * when sweep_due says so, and stamp the lock file with the time. Only
 * with the lock held: every other writer of this credential holds it
 * too while its file is unnamed.
 */
static void
sweep(const struct oa2_account *acct, const char *dir, int lockfd)
{
	struct dirent *de;
	size_t klen = strlen(acct->cache_key);
	DIR *d;

	if (!sweep_due(lockfd, time(NULL)) || (d = opendir(dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] == '.' &&
		    strncmp(de->d_name + 1, acct->cache_key, klen) == 0 &&
		    de->d_name[klen + 1] == '.' &&
		    strlen(de->d_name + klen + 2) == 6)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	(void)futimens(lockfd, NULL);
}

/*
 * The temporary file to write: with the lock held (locked), the fixed
 * name ".KEY.tmp", made anew (O_EXCL), or a killed writer's leftover
 * truncated, since no other writer of KEY can be using it; the
 * leftover must be our private regular file. Without the lock, a new
 * file of a random name (mkstemp). The descriptor, or -1 with errno.
 */
static int
temp_open(const char *dir, const struct oa2_account *acct, int locked,
    char **tmp)
{
	struct oa2_error ignored;
	int fd, e;

	if (locked) {
		if ((*tmp = in_dir(dir, acct, ".", ".tmp")) == NULL) {
			errno = ENOMEM;
			return -1;
		}
		/* usually absent: then made now by us, 0600, nothing to check */
		if ((fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600)) != -1 || errno != EEXIST)
			return fd;
		fd = open(*tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		if (fd == -1 || oa2_check_private_fd(fd, *tmp, "token cache "
		    "file", &ignored) == 0)
			return fd;
		/* not ours as we make it: out of the way, and a new one */
		close(fd);
		if (unlink(*tmp) == -1)
			return -1;
		fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW |
		    O_CLOEXEC, 0600);
		return fd;
	}
	if ((*tmp = in_dir(dir, acct, ".", ".XXXXXX")) == NULL) {
		errno = ENOMEM;
		return -1;
	}
	if ((fd = mkstemp(*tmp)) == -1) {
		e = errno;
		free(*tmp);
		*tmp = NULL;
		errno = e;
	}
	return fd;
}

/*
 * Write e (its token, its refusal, or both) to a temporary file (see
 * temp_open; locked: we hold the lock file) and rename it into place:
 * the JSON line, with the sum (entry_sum), then the token (see
 * disk_read).
 */
static int
disk_write(const struct oa2_account *acct, const char *dir, int locked,
    const struct entry *e, struct oa2_error *err)
{
	char *path = NULL, *tmp = NULL, *head = NULL, *text = NULL, hex[33];
	json_t *root = NULL;
	size_t hlen = 0, toklen = 0, len = 0, off = 0;
	ssize_t n;
	int fd = -1, errnum, r = OA2_ERR_NOMEM;

	if (e->tok.access_token != NULL)
		toklen = strlen(e->tok.access_token);
	if (entry_sum(acct, e->tok.access_token, toklen, hex) != 0) {
		r = oa2_seterr(err, OA2_ERR_INTERNAL, "cannot compute a "
		    "SHA-256 digest");
		goto out;
	}
	root = json_pack("{s:i, s:s, s:s}", "version", 1, "account",
	    acct->match, "sum", hex);
	if (root == NULL || (e->tok.access_token != NULL &&
	    (json_object_set_new(root, "expires_at",
	    json_integer((json_int_t)e->tok.expires_at)) != 0 ||
	    json_object_set_new(root, "token_length",
	    json_integer((json_int_t)toklen)) != 0 ||
	    (e->fetched_at > 0 && json_object_set_new(root, "fetched_at",
	    json_integer((json_int_t)e->fetched_at)) != 0))) ||
	    (e->failed_at > 0 && (json_object_set_new(root, "failed",
	    json_string(e->failed)) != 0 ||
	    json_object_set_new(root, "failed_at",
	    json_integer((json_int_t)e->failed_at)) != 0 ||
	    json_object_set_new(root, "failed_code",
	    json_integer(e->failed_code)) != 0)) ||
	    (e->retry_at != 0 && (json_object_set_new(root, "refused",
	    json_string(e->refused)) != 0 ||
	    json_object_set_new(root, "retry_at",
	    json_integer((json_int_t)e->retry_at)) != 0 ||
	    json_object_set_new(root, "config",
	    json_string(e->config_id)) != 0)) ||
	    (head = json_dumps(root, JSON_COMPACT)) == NULL) {
		oa2_seterr(err, r, "out of memory");
		goto out;
	}
	hlen = strlen(head);
	if ((text = malloc(hlen + 1 + toklen)) == NULL ||
	    (path = in_dir(dir, acct, "", ".token")) == NULL) {
		oa2_seterr(err, r, "out of memory");
		goto out;
	}
	memcpy(text, head, hlen);
	text[hlen] = '\n';
	if (toklen != 0)
		memcpy(text + hlen + 1, e->tok.access_token, toklen);
	len = hlen + 1 + toklen;
	r = OA2_ERR_CACHE;
	if ((fd = temp_open(dir, acct, locked, &tmp)) == -1) {
		oa2_seterr(err, r, "cannot create a file in token cache "
		    "directory %s: %s", acct->cache_dir, strerror(errno));
		if (tmp != NULL && locked)
			free(tmp);	/* its name is not ours to unlink */
		tmp = NULL;
		goto out;
	}
	while (off < len) {
		if ((n = write(fd, text + off, len - off)) == -1 &&
		    errno == EINTR)
			continue;
		if (n <= 0) {
			oa2_seterr(err, r, "cannot write token cache file in "
			    "%s: %s", acct->cache_dir, strerror(errno));
			goto out;
		}
		off += (size_t)n;
	}
	/*
	 * No fsync: the file is a cache, its sum rejects whatever a power
	 * cut may leave of it, and a token lost that way costs one token
	 * request (docs/cache.md, "Crashes"). That is what the fsync cost
	 * on every request, and more than the rest of the disk cache's
	 * own work (bench/results.md).
	 */
	errnum = close(fd) == -1 ? errno : 0;
	fd = -1;
	if (errnum != 0) {
		oa2_seterr(err, r, "cannot write token cache file in %s: %s",
		    acct->cache_dir, strerror(errnum));
		goto out;
	}
	if (rename(tmp, path) == -1) {
		oa2_seterr(err, r, "cannot rename %s to %s: %s", tmp, path,
		    strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	r = OA2_OK;
 out:
	if (fd != -1)
		close(fd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	if (text != NULL)
		oa2_freezero(text, len);
	free(head);
	json_decref(root);
	free(path);
	return r;
}

/* The wall clock in nanoseconds: comparable between processes. */
static long long
wall_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/*
 * Whether a failure recorded at failed_at (wall clock, ns) is the
 * outcome of a request made while a call that began at start waited:
 * after start, and not in the future. A failure stamped before the
 * clock was set back (an NTP step, a restored VM snapshot) would
 * otherwise look newer than every later call, and since nobody asks
 * again nobody would replace it.
 */
static int
waited_for(long long failed_at, long long start)
{
	return failed_at > start && failed_at <= wall_ns();
}

/*
 * The moment a wait that begins now gives up: timeout seconds and a
 * half later, on the monotonic clock. Whoever holds the lock is itself
 * bounded by timeout, so every caller has its answer within timeout +
 * 1 s: a token, the holder's outcome, or the sentence of busy().
 */
static void
deadline_set(struct timespec *d, long timeout)
{
	clock_gettime(CLOCK_MONOTONIC, d);
	d->tv_sec += (time_t)timeout;
	d->tv_nsec += 500 * 1000 * 1000;
	if (d->tv_nsec >= 1000 * 1000 * 1000) {
		d->tv_sec++;
		d->tv_nsec -= 1000 * 1000 * 1000;
	}
}

/* Nanoseconds left until d, 0 when it has passed. */
static long long
ns_left(const struct timespec *d)
{
	struct timespec t;
	long long left;

	clock_gettime(CLOCK_MONOTONIC, &t);
	left = (long long)(d->tv_sec - t.tv_sec) * 1000000000LL +
	    (d->tv_nsec - t.tv_nsec);
	return left > 0 ? left : 0;
}

/*
 * Take acct's mutex, giving up at deadline d (monotonic, so that a
 * clock set forward or back does not move it): 0, or an errno value
 * (ETIMEDOUT). One token request at a time per account: the accounts
 * that share a credential share its lock file too, and a login for
 * another account never waits for this one.
 */
static int
acct_lock(struct oa2_account *acct, const struct timespec *d)
{
	return pthread_mutex_clocklock(&acct->lock, CLOCK_MONOTONIC, d);
}

#define LOCK_NONE	-1	/* no lock file: go on without it */
#define LOCK_BUSY	-2	/* another process held it until the deadline */

/*
 * Take the credential's lock file, waiting until deadline d. Returns
 * the locked descriptor, LOCK_BUSY, or LOCK_NONE when the file cannot
 * be opened or locked at all.
 */
static int
lock_take(const struct oa2_account *acct, const char *dir,
    const struct timespec *d)
{
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	char *path;
	int fd;

	if ((path = in_dir(dir, acct, "", ".lock")) == NULL)
		return LOCK_NONE;
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	free(path);
	if (fd == -1)
		return LOCK_NONE;
	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return fd;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			close(fd);
			return LOCK_NONE;
		}
		if (ns_left(d) == 0)
			break;
		nanosleep(&pause, NULL);
	}
	close(fd);
	return LOCK_BUSY;
}

static void
lock_release(int fd)
{
	if (fd >= 0)
		close(fd);	/* releases the flock */
}

/* Another thread or process held the lock until our deadline. */
static int
busy(const struct oa2_account *acct, struct oa2_error *err)
{
	return oa2_seterr(err, OA2_ERR_TRANSIENT, "another process or thread "
	    "is asking the token endpoint for account %s and had no answer "
	    "within %ld s (timeout); not asking a second time meanwhile",
	    acct->match, acct->timeout);
}

/* A token still valid for 30 s after a transient failure: use it. */
static int
use_stale(const struct oa2_account *acct, const struct oa2_log *lg,
    const char *why, time_t now, const struct oa2_token *stale,
    struct oa2_token *out)
{
	if (!usable(stale, now) || oa2_token_copy(out, stale) != 0)
		return 0;
	oa2_log(lg, OA2_LOG_WARNING, "%s; using the cached token for account "
	    "%s, valid for %ld more seconds", why, acct->match,
	    (long)(stale->expires_at - now));
	return 1;
}

/*
 * Ask the endpoint. A new token: *fetched is now. A failure: its code
 * and sentence into *failed (code 0 otherwise), for the callers that
 * waited for this request (they take it rather than ask again), except
 * a refusal that remember() keeps for failure_backoff; and after a
 * transient one (network, 429, 5xx, after token.c's one retry) a
 * still-valid stale token is used if there is one.
 */
static int
fetch(struct oa2_account *acct, const struct oa2_log *lg, time_t now,
    const struct oa2_token *stale, struct oa2_token *out, time_t *fetched,
    struct oa2_error *failed, struct oa2_error *err)
{
	int r;

	failed->code = 0;
	if ((r = oa2_token_fetch(acct, lg, now, out, err)) == 0) {
		*fetched = time(NULL);
		return OA2_OK;
	}
	if (!kept_failure(r) || (r == OA2_ERR_DENIED &&
	    acct->failure_backoff > 0))
		return r;
	failed->code = r;
	oa2_sanitize(failed->msg, sizeof(failed->msg), err->msg,
	    strlen(err->msg), sizeof(failed->msg) - 1);
	if (!transient(r) || !use_stale(acct, lg, err->msg, now, stale, out))
		return r;
	oa2_clearerr(err);
	return OA2_OK;
}

/*
 * The outcome of the request that another thread or process made while
 * this call waited for the lock (it failed after `start`, when this
 * call began): taken as ours instead of asking again, the stale token
 * if the failure was transient and the token is still usable, else the
 * same failure (code and sentence). A call that begins after a failure
 * asks again: failures are kept for the waiters of that one request,
 * never longer (a refusal is remembered apart, for failure_backoff).
 */
static int
take_failure(const struct oa2_account *acct, const struct oa2_log *lg,
    int code, const char *sentence, time_t now,
    const struct oa2_token *stale, struct oa2_token *out,
    struct oa2_error *err)
{
	if (transient(code) && use_stale(acct, lg, sentence, now, stale, out))
		return OA2_OK;
	return oa2_seterr(err, code, "%.*s (asked by another process or "
	    "thread at the same time)", OA2_ERRMSG_MAX - 64, sentence);
}

/*
 * What a refusal is remembered for: the config file loaded (config_id)
 * and, for a source that reads its input afresh for each request (a
 * federated token file), that input as it is now: "config_id|input".
 */
static void
refusal_id(const struct oa2_account *acct, char *buf, size_t len)
{
	char in[OA2_REFUSAL_ID_MAX - sizeof(acct->config_id)] = "";

	if (acct->kind != NULL && acct->kind->input_id != NULL)
		acct->kind->input_id(acct, in, sizeof(in));
	snprintf(buf, len, "%s%s%s", acct->config_id, *in != '\0' ? "|" : "",
	    in);
}

/*
 * Whether a refusal remembered until `until` for id still holds:
 * back-off on, not further ahead than failure_backoff (the clock may
 * have been set back), and the same config file and input (refusal_id:
 * a rotated federated token is asked about at once).
 */
static int
backing_off(const struct oa2_account *acct, time_t until, const char *id,
    time_t now)
{
	char cur[OA2_REFUSAL_ID_MAX];

	if (acct->failure_backoff <= 0 || until <= now ||
	    until > now + acct->failure_backoff)
		return 0;
	refusal_id(acct, cur, sizeof(cur));
	return strcmp(id, cur) == 0;
}

/* Fail with a remembered refusal. */
static int
refuse(const char *sentence, time_t until, time_t now, struct oa2_error *err)
{
	return oa2_seterr(err, OA2_ERR_DENIED, "%.*s (remembered; next "
	    "attempt in %ld s)", OA2_ERRMSG_MAX - 48, sentence,
	    (long)(until - now));
}

/*
 * The token endpoint refused (a permanent error): remember it in e for
 * failure_backoff seconds, so that the processes that come next fail
 * at once instead of asking again. Transient failures are not kept.
 */
static int
remember(struct oa2_account *acct, const struct oa2_log *lg,
    const struct oa2_error *err, struct entry *e)
{
	if (err->code != OA2_ERR_DENIED || acct->failure_backoff <= 0)
		return 0;
	oa2_sanitize(e->refused, sizeof(e->refused), err->msg,
	    sizeof(err->msg), sizeof(e->refused) - 1);
	e->retry_at = time(NULL) + acct->failure_backoff;
	refusal_id(acct, e->config_id, sizeof(e->config_id));
	oa2_log(lg, OA2_LOG_INFO, "not asking the token endpoint again for "
	    "account %s for %ld s (failure_backoff)", acct->match,
	    acct->failure_backoff);
	return 1;
}

/*
 * The disk path: read, lock (until deadline), read again, fetch, write.
 * start: when the caller began (wall clock, ns), for take_failure.
 */
static int
from_disk(struct oa2_account *acct, const char *dir, const struct oa2_log *lg,
    time_t now, long long start, const struct timespec *deadline, struct oa2_token *out,
    time_t *fetched, int *from, struct oa2_error *failed,
    struct oa2_error *err)
{
	struct entry disk = { .retry_at = 0 };
	struct oa2_error werr;
	int fd = LOCK_NONE, r, locked = 0;

	for (;;) {
		if (disk_read(acct, dir, &disk, &werr) == 0) {
			if (fresh(&disk.tok, acct, now)) {
				*out = disk.tok;
				memset(&disk.tok, 0, sizeof(disk.tok));
				*fetched = disk.fetched_at;
				*from = OA2_FROM_DISK;
				r = OA2_OK;
				goto out;
			}
			if (backing_off(acct, disk.retry_at, disk.config_id,
			    now)) {
				r = refuse(disk.refused, disk.retry_at, now,
				    err);
				goto out;
			}
			if (waited_for(disk.failed_at, start)) {
				r = take_failure(acct, lg, disk.failed_code,
				    disk.failed, now, &disk.tok, out, err);
				*fetched = disk.fetched_at;
				*from = OA2_FROM_DISK;
				goto out;
			}
		} else if (locked && disk.corrupt)
			oa2_log(lg, OA2_LOG_WARNING, "%s: replacing it with a "
			    "new token", werr.msg);
		if (locked)
			break;
		/* Another process may refresh it while we wait. */
		if ((fd = lock_take(acct, dir, deadline)) == LOCK_BUSY) {
			r = busy(acct, err);
			goto out;
		}
		if (fd == LOCK_NONE)
			oa2_log(lg, OA2_LOG_WARNING, "cannot lock the token "
			    "cache of account %s; asking the token endpoint "
			    "without it", acct->match);
		else
			sweep(acct, dir, fd);
		locked = 1;
		now = time(NULL);	/* we may have waited */
	}
	if (disk.tok.access_token == NULL && acct->mem.access_token != NULL) {
		if (oa2_token_copy(&disk.tok, &acct->mem) != 0) {
			r = OA2_ERR_NOMEM;
			goto out;
		}
		disk.fetched_at = acct->mem_fetched;
	}
	*fetched = disk.fetched_at;
	r = fetch(acct, lg, now, &disk.tok, out, fetched, failed, err);
	if (r == 0 && failed->code == 0) {
		*from = OA2_FROM_SERVER;
		entry_clear(&disk);
		disk.tok = *out;
		disk.fetched_at = *fetched;
		r = disk_write(acct, dir, fd >= 0, &disk, &werr);
		memset(&disk.tok, 0, sizeof(disk.tok));	/* still out's */
		if (r != 0)
			oa2_log(lg, OA2_LOG_WARNING, "%s", werr.msg);
		r = OA2_OK;
	} else if (failed->code != 0) {
		/* kept for the processes waiting for the lock meanwhile */
		*from = OA2_FROM_SERVER;
		disk.failed_at = wall_ns();
		disk.failed_code = failed->code;
		memcpy(disk.failed, failed->msg, sizeof(disk.failed));
		if (disk_write(acct, dir, fd >= 0, &disk, &werr) != 0)
			oa2_log(lg, OA2_LOG_WARNING, "%s", werr.msg);
	} else if (remember(acct, lg, err, &disk)) {
		/* the refused credential's token is of no further use */
		oa2_token_clear(&disk.tok);
		disk.failed_at = 0;
		if (disk_write(acct, dir, fd >= 0, &disk, &werr) != 0)
			oa2_log(lg, OA2_LOG_WARNING, "%s", werr.msg);
	}
 out:
	lock_release(fd);
	entry_clear(&disk);
	return r;
}

/* Without a disk cache: memory, and the refusal remembered in memory. */
static int
from_memory(struct oa2_account *acct, const struct oa2_log *lg, time_t now,
    struct oa2_token *out, time_t *fetched, struct oa2_error *failed,
    struct oa2_error *err)
{
	struct entry e = { .retry_at = 0 };
	int r;

	if (backing_off(acct, acct->refused_until, acct->refused_id, now))
		return refuse(acct->refused, acct->refused_until, now, err);
	*fetched = acct->mem_fetched;
	if ((r = fetch(acct, lg, now, &acct->mem, out, fetched, failed,
	    err)) != 0 && remember(acct, lg, err, &e)) {
		memcpy(acct->refused, e.refused, sizeof(acct->refused));
		acct->refused_until = e.retry_at;
		memcpy(acct->refused_id, e.config_id, sizeof(acct->refused_id));
	}
	entry_clear(&e);
	return r;
}

/* oa2_token_get's use: a copy of the token, NUL-terminated. */
static int
copy_out(void *arg, const struct oa2_token *tok, size_t len)
{
	struct oa2_token *out = arg;

	if ((out->access_token = malloc(len + 1)) == NULL)
		return OA2_ERR_NOMEM;
	memcpy(out->access_token, tok->access_token, len);
	out->access_token[len] = '\0';
	out->expires_at = tok->expires_at;
	return OA2_OK;
}

/*
 * Rollover (sasl-oauth2.conf(5)): when the credential in use has no
 * usable token on disk and the next one has, another process found the
 * one in use refused and the next one working: use the next one too,
 * rather than be refused once more. Under acct->lock.
 */
static void
next_in_use(struct oa2_account *acct, const char *dir, const struct oa2_log *lg,
    time_t now)
{
	struct entry e = { .retry_at = 0 };
	struct oa2_error werr;

	if (!oa2_account_has_next(acct) ||
	    (disk_read(acct, dir, &e, &werr) == 0 && usable(&e.tok, now)))
		goto out;
	entry_clear(&e);
	oa2_account_rotate(acct);
	if (disk_read(acct, dir, &e, &werr) == 0 && usable(&e.tok, now)) {
		oa2_log(lg, OA2_LOG_INFO, "account %s: using %s, whose token "
		    "another process cached", acct->match,
		    oa2_account_cred_name(acct, 0));
	} else
		oa2_account_rotate(acct);
 out:
	entry_clear(&e);
}

/*
 * jansson's hash seed from getrandom(2), instead of jansson's own open,
 * read and close of /dev/urandom on its first JSON object: 50-90 us in
 * a fresh process, more than the disk cache's reads. jansson keeps the
 * first seed it is given (json_object_seed), so a host that seeded it
 * before keeps its own, and one that never does gets what jansson would
 * have drawn itself. Without getrandom's bytes, jansson seeds itself.
 */
static pthread_once_t json_seeded = PTHREAD_ONCE_INIT;

static void
seed_json(void)
{
	uint32_t seed = 0;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == sizeof(seed) &&
	    seed != 0)
		json_object_seed(seed);
}

int
oa2_token_get(struct oa2_account *acct, const struct oa2_log *lg,
    struct oa2_token *out, int *from, struct oa2_error *err)
{
	memset(out, 0, sizeof(*out));
	return oa2_token_use(acct, lg, copy_out, out, from, err);
}

int
oa2_token_use(struct oa2_account *acct, const struct oa2_log *lg,
    oa2_token_use_fn use, void *arg, int *from, struct oa2_error *err)
{
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error derr, local, failed = { 0, "" };
	char *dir = NULL;
	struct timespec deadline;
	long long start = wall_ns();
	time_t now = time(NULL), fetched = 0;
	int where = OA2_FROM_MEMORY, r;

	if (err == NULL)
		err = &local;
	deadline_set(&deadline, acct->timeout);
	if ((r = acct_lock(acct, &deadline)) != 0) {
		if (r == ETIMEDOUT)
			return busy(acct, err);
		return oa2_seterr(err, OA2_ERR_INTERNAL, "cannot lock the "
		    "token cache of account %s: %s", acct->match,
		    strerror(r));
	}
	now = time(NULL);	/* we may have waited */
	oa2_account_expiry_warn(acct, lg, now);	/* once a day at most */
	if (fresh(&acct->mem, acct, now)) {
		r = use(arg, &acct->mem, acct->mem_len);
		goto out;
	}
	/* a thread of ours asked, and failed, while we waited */
	if (waited_for(acct->failed_at, start)) {
		r = take_failure(acct, lg, acct->failed_code, acct->failed,
		    now, &acct->mem, &tok, err);
		if (r == 0)
			r = use(arg, &tok, strlen(tok.access_token));
		goto out;
	}
	/* before the first JSON object of this token request */
	(void)pthread_once(&json_seeded, seed_json);
	/* the directory, checked and resolved once for every file below */
	if (acct->cache_dir != NULL && !acct->cache_warned &&
	    (r = check_dir(acct, &dir, &derr)) != 0) {
		if (r == OA2_ERR_NOMEM)
			goto out;
		oa2_log(lg, OA2_LOG_WARNING, "%s; keeping tokens in memory "
		    "only", derr.msg);
		acct->cache_warned = 1;
	}
	if (acct->cache_dir != NULL && !acct->cache_warned) {
		next_in_use(acct, dir, lg, now);
		r = from_disk(acct, dir, lg, now, start, &deadline, &tok,
		    &fetched, &where, &failed, err);
	} else {
		r = from_memory(acct, lg, now, &tok, &fetched, &failed, err);
		where = OA2_FROM_SERVER;
	}
	if (failed.code != 0) {
		acct->failed_at = wall_ns();
		acct->failed_code = failed.code;
		memcpy(acct->failed, failed.msg, sizeof(acct->failed));
	}
	if (r != 0)
		goto out;
	oa2_token_clear(&acct->mem);
	acct->mem = tok;
	acct->mem_len = strlen(tok.access_token);	/* once per token */
	memset(&tok, 0, sizeof(tok));		/* transferred */
	acct->mem_fetched = fetched;
	acct->refused_until = 0;
	r = use(arg, &acct->mem, acct->mem_len);
 out:
	pthread_mutex_unlock(&acct->lock);
	oa2_token_clear(&tok);
	free(dir);
	if (r == 0 && from != NULL)
		*from = where;
	if (r == OA2_ERR_NOMEM)
		oa2_seterr(err, r, "out of memory");
	return r;
}

/*
 * Seconds for which a token that came from the endpoint at `fetched`
 * is still young: then a refusal by the mail server is the server's
 * doing (a missing permission, SMTP AUTH turned off), and a new token
 * would be refused alike.
 */
static long
young(const struct oa2_account *acct, time_t fetched, time_t now)
{
	if (acct->failure_backoff <= 0 || fetched <= 0 || fetched > now ||
	    fetched + acct->failure_backoff <= now)
		return 0;
	return (long)(fetched + acct->failure_backoff - now);
}

long
oa2_token_forget(struct oa2_account *acct, const struct oa2_log *lg,
    const char *token)
{
	return oa2_token_forget_len(acct, lg, token, strlen(token));
}

/* Whether the NUL-terminated s is the n bytes at t. */
static int
same_token(const char *s, const char *t, size_t n)
{
	return s != NULL && strlen(s) == n && memcmp(s, t, n) == 0;
}

long
oa2_token_forget_len(struct oa2_account *acct, const struct oa2_log *lg,
    const char *token, size_t toklen)
{
	struct entry disk = { .retry_at = 0 };
	struct oa2_error err;
	struct timespec deadline;
	time_t now = time(NULL), fetched = 0;
	long kept;
	char *path, *dir = NULL;
	int fd = LOCK_NONE, in_mem, on_disk = 0;

	/* not for long: whoever holds it is replacing the token anyway */
	deadline_set(&deadline, 1);
	if (acct_lock(acct, &deadline) != 0) {
		oa2_log(lg, OA2_LOG_WARNING, "the token of account %s was "
		    "refused and is being replaced", acct->match);
		return 0;
	}
	if ((in_mem = same_token(acct->mem.access_token, token, toklen)))
		fetched = acct->mem_fetched;
	if (acct->cache_dir != NULL && !acct->cache_warned &&
	    (dir = oa2_cache_dir(acct)) != NULL &&
	    (fd = lock_take(acct, dir, &deadline)) >= 0 &&
	    disk_read(acct, dir, &disk, &err) == 0 &&
	    same_token(disk.tok.access_token, token, toklen)) {
		on_disk = 1;
		if (disk.fetched_at > fetched)
			fetched = disk.fetched_at;
	}
	if ((kept = young(acct, fetched, now)) > 0)
		oa2_log(lg, OA2_LOG_INFO, "the token of account %s came from "
		    "the token endpoint %ld s ago: kept, and no new one asked "
		    "for during %ld s (failure_backoff)", acct->match,
		    (long)(now - fetched), kept);
	else {
		if (in_mem)
			oa2_token_clear(&acct->mem);
		if (on_disk && (path = in_dir(dir, acct, "", ".token")) !=
		    NULL) {
			if (unlink(path) == -1)
				oa2_log(lg, OA2_LOG_WARNING, "cannot remove "
				    "token cache file %s: %s", path,
				    strerror(errno));
			free(path);
		}
		oa2_log(lg, OA2_LOG_INFO, "dropped the cached token of "
		    "account %s", acct->match);
	}
	lock_release(fd);
	entry_clear(&disk);
	free(dir);
	pthread_mutex_unlock(&acct->lock);
	return kept;
}

int
oa2_cache_lock(const struct oa2_account *acct, int *lock,
    struct oa2_error *err)
{
	struct timespec deadline;
	char *dir;

	*lock = LOCK_NONE;
	if (acct->cache_dir == NULL || (dir = oa2_cache_dir(acct)) == NULL)
		return OA2_OK;
	deadline_set(&deadline, acct->timeout);
	*lock = lock_take(acct, dir, &deadline);
	free(dir);
	if (*lock == LOCK_BUSY) {
		*lock = LOCK_NONE;
		return oa2_seterr(err, OA2_ERR_TRANSIENT, "another process held "
		    "the token cache lock of account %s throughout %ld s "
		    "(timeout): a token request is under way or hanging",
		    acct->match, acct->timeout);
	}
	return OA2_OK;
}

void
oa2_cache_unlock(int lock)
{
	lock_release(lock);
}

int
oa2_cache_peek(const struct oa2_account *acct, time_t *expires_at,
    struct oa2_error *err)
{
	struct entry disk = { .retry_at = 0 };
	time_t now = time(NULL);
	char *dir;
	int r;

	*expires_at = 0;
	if (acct->cache_dir == NULL)
		return oa2_seterr(err, OA2_ERR_CACHE, "account %s keeps "
		    "tokens in memory only", acct->match);
	if ((dir = oa2_cache_dir(acct)) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	r = disk_read(acct, dir, &disk, err);
	free(dir);
	if (r == 0) {
		*expires_at = disk.tok.expires_at;
		if (disk.tok.access_token == NULL &&
		    backing_off(acct, disk.retry_at, disk.config_id, now))
			r = refuse(disk.refused, disk.retry_at, now, err);
	}
	entry_clear(&disk);
	return r;
}
