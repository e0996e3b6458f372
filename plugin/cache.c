/*
 * Where tokens come from: memory, then the disk cache, then the token
 * endpoint. The disk cache holds one file per credential; a lock file
 * beside it (flock) makes many processes that start together ask the
 * endpoint once; files are written to a temporary name, fsync'ed and
 * renamed, so a reader never sees a torn file.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cache.h"
#include "conf.h"
#include "secret.h"

#define CACHE_MAX	(64 * 1024)
#define TOKEN_MAX	(32 * 1024)

/* One token request at a time in this process. */
static pthread_mutex_t cache_mutex = PTHREAD_MUTEX_INITIALIZER;

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

static char *
cache_path(const struct oa2_account *acct, const char *suffix)
{
	char *p;

	if (acct->cache_dir == NULL)
		return NULL;
	if (asprintf(&p, "%s/%s%s", acct->cache_dir, acct->cache_key,
	    suffix) == -1)
		return NULL;
	return p;
}

char *
oa2_cache_file(const struct oa2_account *acct)
{
	return cache_path(acct, ".json");
}

/*
 * The cache directory must be ours alone: create it 0700 if missing,
 * and refuse a symlink, another owner, or group/other access.
 */
static int
check_dir(const struct oa2_account *acct, struct oa2_error *err)
{
	const char *dir = acct->cache_dir;
	struct stat st;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST)
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "cannot create token cache directory %s: %s", dir,
		    strerror(errno));
	if (lstat(dir, &st) == -1)
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "cannot examine token cache directory %s: %s", dir,
		    strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "token cache directory %s is not a directory%s", dir,
		    S_ISLNK(st.st_mode) ? " but a symbolic link" : "");
	if (st.st_uid != geteuid())
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "token cache directory %s is owned by uid %lu, not by "
		    "uid %lu", dir, (unsigned long)st.st_uid,
		    (unsigned long)geteuid());
	if ((st.st_mode & 077) != 0)
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "token cache directory %s is accessible by group or "
		    "others (mode %04o): run chmod 700 %s", dir,
		    (unsigned)(st.st_mode & 07777), dir);
	if (access(dir, W_OK | X_OK) == -1)
		return oa2_seterr(err, OA2_ERR_CACHE,
		    "token cache directory %s is not writable: %s", dir,
		    strerror(errno));
	return OA2_OK;
}

static int
valid_token_text(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > TOKEN_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return 0;
	return 1;
}

/* Wipe a jansson string value in place before it is released. */
static void
wipe_json_string(json_t *v)
{
	if (json_is_string(v))
		oa2_wipe((char *)json_string_value(v), json_string_length(v));
}

/* Read the cache file into out. OA2_ERR_CACHE when absent or invalid. */
static int
disk_read(const struct oa2_account *acct, struct oa2_token *out,
    struct oa2_error *err)
{
	json_t *root = NULL, *tok, *exp;
	char *path, *text = NULL;
	size_t len = 0;
	int r;

	oa2_token_clear(out);
	if ((path = oa2_cache_file(acct)) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	if ((r = oa2_read_file(path, "token cache file", 1, CACHE_MAX,
	    &text, &len, err)) != 0) {
		r = OA2_ERR_CACHE;
		err->code = r;
		goto out;
	}
	r = oa2_seterr(err, OA2_ERR_CACHE, "token cache file %s is corrupt",
	    path);
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	tok = json_object_get(root, "access_token");
	exp = json_object_get(root, "expires_at");
	if (!json_is_object(root) ||
	    json_integer_value(json_object_get(root, "version")) != 1 ||
	    !json_is_string(tok) || !json_is_integer(exp) ||
	    !valid_token_text(json_string_value(tok),
	    json_string_length(tok)) || json_integer_value(exp) <= 0)
		goto out;
	if ((out->access_token = strdup(json_string_value(tok))) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	out->expires_at = (time_t)json_integer_value(exp);
	r = OA2_OK;
	oa2_clearerr(err);
 out:
	wipe_json_string(json_object_get(root, "access_token"));
	json_decref(root);
	if (text != NULL)
		oa2_freezero(text, len);
	free(path);
	return r;
}

/* Write the token to a temporary file and rename it into place. */
static int
disk_write(const struct oa2_account *acct, const struct oa2_token *t,
    struct oa2_error *err)
{
	char *path = NULL, *tmp = NULL, *text = NULL;
	json_t *root;
	size_t len, off = 0;
	ssize_t n;
	int fd = -1, r = OA2_ERR_NOMEM;

	root = json_pack("{s:i, s:s, s:s, s:I}", "version", 1, "account",
	    acct->match, "access_token", t->access_token, "expires_at",
	    (json_int_t)t->expires_at);
	if (root == NULL || (text = json_dumps(root, JSON_COMPACT)) == NULL ||
	    (path = oa2_cache_file(acct)) == NULL ||
	    asprintf(&tmp, "%s/.%s.XXXXXX", acct->cache_dir,
	    acct->cache_key) == -1) {
		tmp = NULL;
		oa2_seterr(err, r, "out of memory");
		goto out;
	}
	len = strlen(text);
	r = OA2_ERR_CACHE;
	if ((fd = mkstemp(tmp)) == -1) {
		oa2_seterr(err, r, "cannot create a file in token cache "
		    "directory %s: %s", acct->cache_dir, strerror(errno));
		free(tmp);
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
	if (fsync(fd) == -1 || close(fd) == -1) {
		fd = -1;
		oa2_seterr(err, r, "cannot write token cache file in %s: %s",
		    acct->cache_dir, strerror(errno));
		goto out;
	}
	fd = -1;
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
		oa2_freezero(text, strlen(text));
	wipe_json_string(json_object_get(root, "access_token"));
	json_decref(root);
	free(path);
	return r;
}

/*
 * Take the credential's lock file, waiting at most timeout seconds (a
 * holder is itself bounded by the same timeout). Returns the locked fd,
 * or -1 when it cannot (the caller goes on without the lock).
 */
static int
lock_take(const struct oa2_account *acct, long timeout)
{
	struct timespec pause = { 0, 10 * 1000 * 1000 }, t0, t;
	char *path;
	int fd;

	if ((path = cache_path(acct, ".lock")) == NULL)
		return -1;
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	free(path);
	if (fd == -1)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > timeout)
			break;
		nanosleep(&pause, NULL);
		continue;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return fd;
	close(fd);
	return -1;
}

static void
lock_release(int fd)
{
	if (fd != -1)
		close(fd);	/* releases the flock */
}

/* Fetch from the endpoint; on failure fall back to a still-valid token. */
static int
fetch(struct oa2_account *acct, const struct oa2_log *lg, time_t now,
    struct oa2_token *stale, struct oa2_token *out, struct oa2_error *err)
{
	int r;

	if ((r = oa2_token_fetch(acct, lg, now, out, err)) == 0)
		return OA2_OK;
	if ((r == OA2_ERR_NETWORK || r == OA2_ERR_TRANSIENT) &&
	    usable(stale, now)) {
		oa2_log(lg, OA2_LOG_WARNING, "%s; using the cached token for "
		    "account %s, valid for %ld more seconds", err->msg,
		    acct->match, (long)(stale->expires_at - now));
		*out = *stale;
		memset(stale, 0, sizeof(*stale));	/* transferred */
		oa2_clearerr(err);
		return OA2_OK;
	}
	return r;
}

/* The disk path: read, lock, read again, fetch, write. */
static int
from_disk(struct oa2_account *acct, const struct oa2_log *lg, time_t now,
    struct oa2_token *out, int *from, struct oa2_error *err)
{
	struct oa2_token disk = { NULL, 0 };
	struct oa2_error werr;
	int fd, r;

	if (disk_read(acct, &disk, &werr) == 0 && fresh(&disk, acct, now)) {
		*out = disk;
		*from = OA2_FROM_DISK;
		return OA2_OK;
	}
	fd = lock_take(acct, acct->timeout + 1);
	if (fd == -1)
		oa2_log(lg, OA2_LOG_WARNING, "cannot lock the token cache of "
		    "account %s; asking the token endpoint without it",
		    acct->match);
	/* Another process may have refreshed it while we waited. */
	if (disk_read(acct, &disk, &werr) == 0 && fresh(&disk, acct, now)) {
		*out = disk;
		*from = OA2_FROM_DISK;
		lock_release(fd);
		return OA2_OK;
	}
	if (disk.access_token == NULL && acct->mem.access_token != NULL)
		oa2_token_copy(&disk, &acct->mem);
	if ((r = fetch(acct, lg, now, &disk, out, err)) == 0) {
		*from = OA2_FROM_SERVER;
		if (disk_write(acct, out, &werr) != 0)
			oa2_log(lg, OA2_LOG_WARNING, "%s", werr.msg);
	}
	lock_release(fd);
	oa2_token_clear(&disk);
	return r;
}

int
oa2_token_get(struct oa2_account *acct, const struct oa2_log *lg,
    struct oa2_token *out, int *from, struct oa2_error *err)
{
	struct oa2_token tok = { NULL, 0 }, stale = { NULL, 0 };
	struct oa2_error derr;
	time_t now = time(NULL);
	int where = OA2_FROM_MEMORY, r;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&cache_mutex);
	if (fresh(&acct->mem, acct, now)) {
		r = oa2_token_copy(out, &acct->mem);
		goto out;
	}
	if (acct->cache_dir != NULL && !acct->cache_warned &&
	    check_dir(acct, &derr) != 0) {
		oa2_log(lg, OA2_LOG_WARNING, "%s; keeping tokens in memory "
		    "only", derr.msg);
		acct->cache_warned = 1;
	}
	if (acct->cache_dir != NULL && !acct->cache_warned)
		r = from_disk(acct, lg, now, &tok, &where, err);
	else {
		oa2_token_copy(&stale, &acct->mem);
		r = fetch(acct, lg, now, &stale, &tok, err);
		where = OA2_FROM_SERVER;
	}
	if (r != 0)
		goto out;
	oa2_token_clear(&acct->mem);
	acct->mem = tok;
	memset(&tok, 0, sizeof(tok));		/* transferred */
	r = oa2_token_copy(out, &acct->mem);
 out:
	pthread_mutex_unlock(&cache_mutex);
	oa2_token_clear(&tok);
	oa2_token_clear(&stale);
	if (r == 0 && from != NULL)
		*from = where;
	if (r == OA2_ERR_NOMEM)
		oa2_seterr(err, r, "out of memory");
	return r;
}

void
oa2_token_forget(struct oa2_account *acct, const struct oa2_log *lg,
    const char *token)
{
	struct oa2_token disk = { NULL, 0 };
	struct oa2_error err;
	char *path;
	int fd;

	pthread_mutex_lock(&cache_mutex);
	if (acct->mem.access_token != NULL &&
	    strcmp(acct->mem.access_token, token) == 0)
		oa2_token_clear(&acct->mem);
	if (acct->cache_dir != NULL && !acct->cache_warned &&
	    (fd = lock_take(acct, 2)) != -1) {
		if (disk_read(acct, &disk, &err) == 0 &&
		    strcmp(disk.access_token, token) == 0 &&
		    (path = oa2_cache_file(acct)) != NULL) {
			if (unlink(path) == -1)
				oa2_log(lg, OA2_LOG_WARNING, "cannot remove "
				    "token cache file %s: %s", path,
				    strerror(errno));
			free(path);
		}
		lock_release(fd);
		oa2_token_clear(&disk);
	}
	pthread_mutex_unlock(&cache_mutex);
	oa2_log(lg, OA2_LOG_INFO, "dropped the cached token of account %s",
	    acct->match);
}

int
oa2_cache_peek(const struct oa2_account *acct, time_t *expires_at,
    struct oa2_error *err)
{
	struct oa2_token disk = { NULL, 0 };
	int r;

	*expires_at = 0;
	if (acct->cache_dir == NULL)
		return oa2_seterr(err, OA2_ERR_CACHE, "account %s keeps "
		    "tokens in memory only", acct->match);
	if ((r = disk_read(acct, &disk, err)) == 0)
		*expires_at = disk.expires_at;
	oa2_token_clear(&disk);
	return r;
}
