/*
 * Where tokens come from: memory, then the disk cache, then the token
 * endpoint. The disk cache holds one file per credential; a lock file
 * beside it (flock) makes many processes that start together ask the
 * endpoint once; files are written to a temporary name, fsync'ed and
 * renamed, so a reader never sees a torn file, and a writer killed
 * half-way leaves the previous file (and the kernel drops its lock).
 * A permanent refusal is kept in the same file for failure_backoff
 * seconds, so that a busy MTA does not hammer the endpoint.
 */
#include "config.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <dirent.h>
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
	return cache_path(acct, ".token");
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

/*
 * What a cache file holds: a token, or a refusal of the token endpoint
 * remembered until retry_at by the config file config_id.
 */
struct entry {
	struct oa2_token tok;		/* access_token NULL: none */
	time_t	retry_at;		/* 0: no refusal */
	char	config_id[80];
	char	refused[OA2_ERRMSG_MAX];
	int	corrupt;		/* the file exists but is invalid */
};

static void
entry_clear(struct entry *e)
{
	oa2_token_clear(&e->tok);
	e->retry_at = 0;
	e->config_id[0] = '\0';
	e->refused[0] = '\0';
	e->corrupt = 0;
}

/*
 * Read the cache file into e. Its first line is a JSON object: "version"
 * 1, "account" (for people), and a token ("expires_at", "token_length")
 * or a remembered refusal ("refused", "retry_at", "config") or both;
 * the token's own bytes follow the line. The token stays out of the JSON
 * so that it never passes through jansson, which can neither wipe the
 * buffers it lexes into nor be told to without touching the host
 * application's jansson, and because lexing it there was most of what a
 * fresh process spent on a cached login. OA2_ERR_CACHE when absent or
 * invalid.
 */
static int
disk_read(const struct oa2_account *acct, struct entry *e,
    struct oa2_error *err)
{
	json_t *root = NULL, *exp, *tlen, *ref, *until, *cid;
	char *path, *text = NULL, *nl, *tok;
	size_t len = 0, toklen;
	int r;

	entry_clear(e);
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
	if (!json_is_object(root) ||
	    json_integer_value(json_object_get(root, "version")) != 1 ||
	    (exp == NULL && ref == NULL))
		goto out;
	if (exp != NULL || tlen != NULL ? !json_is_integer(exp) ||
	    json_integer_value(exp) <= 0 || !json_is_integer(tlen) ||
	    json_integer_value(tlen) != (json_int_t)toklen ||
	    !valid_token_text(tok, toklen) : toklen != 0)
		goto out;
	if ((ref != NULL || until != NULL || cid != NULL) &&
	    (!json_is_string(ref) || json_string_length(ref) == 0 ||
	    !json_is_integer(until) || json_integer_value(until) <= 0 ||
	    !json_is_string(cid) ||
	    json_string_length(cid) >= sizeof(e->config_id)))
		goto out;
	if (exp != NULL) {
		if ((e->tok.access_token = strndup(tok, toklen)) == NULL) {
			r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
		e->tok.expires_at = (time_t)json_integer_value(exp);
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
 * Remove the temporary files a writer killed before its rename left
 * behind (they may hold a token). Only with the lock held: every other
 * writer of this credential holds it too while its file is unnamed.
 */
static void
sweep(const struct oa2_account *acct)
{
	struct dirent *de;
	size_t klen = strlen(acct->cache_key);
	DIR *d;

	if ((d = opendir(acct->cache_dir)) == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] == '.' &&
		    strncmp(de->d_name + 1, acct->cache_key, klen) == 0 &&
		    de->d_name[klen + 1] == '.' &&
		    strlen(de->d_name + klen + 2) == 6)
			(void)unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

/*
 * Write e (its token, its refusal, or both) to a temporary file and
 * rename it into place: the JSON line, then the token (see disk_read).
 */
static int
disk_write(const struct oa2_account *acct, const struct entry *e,
    struct oa2_error *err)
{
	char *path = NULL, *tmp = NULL, *head = NULL, *text = NULL;
	json_t *root;
	size_t hlen = 0, toklen = 0, len = 0, off = 0;
	ssize_t n;
	int fd = -1, errnum, r = OA2_ERR_NOMEM;

	if (e->tok.access_token != NULL)
		toklen = strlen(e->tok.access_token);
	root = json_pack("{s:i, s:s}", "version", 1, "account", acct->match);
	if (root == NULL || (e->tok.access_token != NULL &&
	    (json_object_set_new(root, "expires_at",
	    json_integer((json_int_t)e->tok.expires_at)) != 0 ||
	    json_object_set_new(root, "token_length",
	    json_integer((json_int_t)toklen)) != 0)) ||
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
	    (path = oa2_cache_file(acct)) == NULL ||
	    asprintf(&tmp, "%s/.%s.XXXXXX", acct->cache_dir,
	    acct->cache_key) == -1) {
		tmp = NULL;
		oa2_seterr(err, r, "out of memory");
		goto out;
	}
	memcpy(text, head, hlen);
	text[hlen] = '\n';
	if (toklen != 0)
		memcpy(text + hlen + 1, e->tok.access_token, toklen);
	len = hlen + 1 + toklen;
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
	/* closed whether or not fsync worked: the first error counts */
	errnum = fsync(fd) == -1 ? errno : 0;
	if (close(fd) == -1 && errnum == 0)
		errnum = errno;
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

/*
 * Whether a refusal remembered until `until` by the config config_id
 * still holds: back-off on, the same config file, and not further
 * ahead than failure_backoff (the clock may have been set back).
 */
static int
backing_off(const struct oa2_account *acct, time_t until,
    const char *config_id, time_t now)
{
	return acct->failure_backoff > 0 && until > now &&
	    until <= now + acct->failure_backoff &&
	    strcmp(config_id, acct->config_id) == 0;
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
	snprintf(e->config_id, sizeof(e->config_id), "%s", acct->config_id);
	oa2_log(lg, OA2_LOG_INFO, "not asking the token endpoint again for "
	    "account %s for %ld s (failure_backoff)", acct->match,
	    acct->failure_backoff);
	return 1;
}

/* The disk path: read, lock, read again, fetch, write. */
static int
from_disk(struct oa2_account *acct, const struct oa2_log *lg, time_t now,
    struct oa2_token *out, int *from, struct oa2_error *err)
{
	struct entry disk = { .retry_at = 0 };
	struct oa2_error werr;
	int fd = -1, r, locked = 0;

	for (;;) {
		if (disk_read(acct, &disk, &werr) == 0) {
			if (fresh(&disk.tok, acct, now)) {
				*out = disk.tok;
				memset(&disk.tok, 0, sizeof(disk.tok));
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
		} else if (locked && disk.corrupt)
			oa2_log(lg, OA2_LOG_WARNING, "%s: replacing it with a "
			    "new token", werr.msg);
		if (locked)
			break;
		/* Another process may refresh it while we wait. */
		if ((fd = lock_take(acct, acct->timeout + 1)) == -1)
			oa2_log(lg, OA2_LOG_WARNING, "cannot lock the token "
			    "cache of account %s; asking the token endpoint "
			    "without it", acct->match);
		else
			sweep(acct);
		locked = 1;
		now = time(NULL);	/* we may have waited */
	}
	if (disk.tok.access_token == NULL && acct->mem.access_token != NULL)
		oa2_token_copy(&disk.tok, &acct->mem);
	if ((r = fetch(acct, lg, now, &disk.tok, out, err)) == 0) {
		*from = OA2_FROM_SERVER;
		entry_clear(&disk);
		disk.tok = *out;
		r = disk_write(acct, &disk, &werr);
		memset(&disk.tok, 0, sizeof(disk.tok));	/* still out's */
		if (r != 0)
			oa2_log(lg, OA2_LOG_WARNING, "%s", werr.msg);
		r = OA2_OK;
	} else if (remember(acct, lg, err, &disk)) {
		/* the refused credential's token is of no further use */
		oa2_token_clear(&disk.tok);
		if (disk_write(acct, &disk, &werr) != 0)
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
    struct oa2_token *out, struct oa2_error *err)
{
	struct entry e = { .retry_at = 0 };
	int r;

	if (backing_off(acct, acct->refused_until, acct->config_id, now))
		return refuse(acct->refused, acct->refused_until, now, err);
	if (oa2_token_copy(&e.tok, &acct->mem) != 0)
		return OA2_ERR_NOMEM;
	if ((r = fetch(acct, lg, now, &e.tok, out, err)) != 0 &&
	    remember(acct, lg, err, &e)) {
		memcpy(acct->refused, e.refused, sizeof(acct->refused));
		acct->refused_until = e.retry_at;
	}
	entry_clear(&e);
	return r;
}

int
oa2_token_get(struct oa2_account *acct, const struct oa2_log *lg,
    struct oa2_token *out, int *from, struct oa2_error *err)
{
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error derr, local;
	time_t now = time(NULL);
	int where = OA2_FROM_MEMORY, r;

	if (err == NULL)
		err = &local;
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
		r = from_memory(acct, lg, now, &tok, err);
		where = OA2_FROM_SERVER;
	}
	if (r != 0)
		goto out;
	oa2_token_clear(&acct->mem);
	acct->mem = tok;
	memset(&tok, 0, sizeof(tok));		/* transferred */
	acct->refused_until = 0;
	r = oa2_token_copy(out, &acct->mem);
 out:
	pthread_mutex_unlock(&cache_mutex);
	oa2_token_clear(&tok);
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
	struct entry disk = { .retry_at = 0 };
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
		    disk.tok.access_token != NULL &&
		    strcmp(disk.tok.access_token, token) == 0 &&
		    (path = oa2_cache_file(acct)) != NULL) {
			if (unlink(path) == -1)
				oa2_log(lg, OA2_LOG_WARNING, "cannot remove "
				    "token cache file %s: %s", path,
				    strerror(errno));
			free(path);
		}
		lock_release(fd);
		entry_clear(&disk);
	}
	pthread_mutex_unlock(&cache_mutex);
	oa2_log(lg, OA2_LOG_INFO, "dropped the cached token of account %s",
	    acct->match);
}

int
oa2_cache_peek(const struct oa2_account *acct, time_t *expires_at,
    struct oa2_error *err)
{
	struct entry disk = { .retry_at = 0 };
	time_t now = time(NULL);
	int r;

	*expires_at = 0;
	if (acct->cache_dir == NULL)
		return oa2_seterr(err, OA2_ERR_CACHE, "account %s keeps "
		    "tokens in memory only", acct->match);
	if ((r = disk_read(acct, &disk, err)) == 0) {
		*expires_at = disk.tok.expires_at;
		if (disk.tok.access_token == NULL &&
		    backing_off(acct, disk.retry_at, disk.config_id, now))
			r = refuse(disk.refused, disk.retry_at, now, err);
	}
	entry_clear(&disk);
	return r;
}
