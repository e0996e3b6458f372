/*
 * Secrets in memory (wiped before free) and private files on disk
 * (refused when others could read them), after OpenSSH authfile.c.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#include <openssl/evp.h>

#include "secret.h"

/*
 * Volatile stores, 16 bytes at a time: the compiler must perform every
 * one (they are observable behaviour, so no dead-store elimination and
 * no call to memset, which the rep stosb of large sizes would make as
 * slow as byte stores under valgrind), at a quarter of the instructions
 * of OPENSSL_cleanse's 8-byte loop: a 2 KB token is wiped on every
 * login (issue 16). Every byte from p to p + n is written with zero.
 */
typedef unsigned char oa2_v16 __attribute__((vector_size(16), aligned(1)));

void
oa2_wipe(void *p, size_t n)
{
	volatile oa2_v16 *v = p;
	volatile unsigned char *c;
	const oa2_v16 zero = { 0 };

	if (p == NULL || n == 0)
		return;
	for (; n >= 64; n -= 64, v += 4) {
		v[0] = zero;
		v[1] = zero;
		v[2] = zero;
		v[3] = zero;
	}
	for (; n >= 16; n -= 16)
		*v++ = zero;
	for (c = (volatile unsigned char *)v; n > 0; n--)
		*c++ = 0;
}

void
oa2_freezero(void *p, size_t n)
{
	if (p == NULL)
		return;
	oa2_wipe(p, n);
	free(p);
}

void
oa2_freezero_str(char **p)
{
	if (p == NULL || *p == NULL)
		return;
	oa2_freezero(*p, strlen(*p));
	*p = NULL;
}

/*
 * The private-file rule for st, read by euid; any_owner: root takes a
 * file of any owner.
 */
static int
check_private_st(const struct stat *st, uid_t euid, const char *path,
    const char *what, int any_owner, struct oa2_error *err)
{
	if (!S_ISREG(st->st_mode))
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "%s %s is not a regular file", what, path);
	if (st->st_uid != 0 && st->st_uid != euid &&
	    !(any_owner && euid == 0))
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "%s %s is owned by uid %lu, not by root or by uid %lu",
		    what, path, (unsigned long)st->st_uid,
		    (unsigned long)euid);
	if ((st->st_mode & 077) != 0)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "%s %s is accessible by group or others (mode %04o): "
		    "run chmod 600 %s", what, path,
		    (unsigned)(st->st_mode & 07777), path);
	return OA2_OK;
}

/* oa2_check_private_fd; any_owner: root takes a file of any owner */
static int
check_private(int fd, const char *path, const char *what, int any_owner,
    struct oa2_error *err)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "cannot examine %s %s: %s", what, path, strerror(errno));
	return check_private_st(&st, geteuid(), path, what, any_owner, err);
}

/* ---- snapshots --------------------------------------------------------- */

struct snap_file {
	struct snap_file	*next;
	char			*path;
	int			stat_errno;	/* of stat(path); 0: st_path */
	struct stat		st_path;
	int			open_errno;	/* of open and fstat; 0: st */
	struct stat		st;
	char			*data;		/* the contents, or NULL */
	size_t			len;
	char			*safe_what;	/* oa2_check_safe_path's what */
	struct oa2_error	safe;		/* and its answer */
};

struct oa2_snapshot {
	struct snap_file	*files;
	uid_t			euid;		/* who read them */
};

static __thread const struct oa2_snapshot *snap_in_use;

static struct snap_file *
snap_find(const struct oa2_snapshot *snap, const char *path)
{
	struct snap_file *f;

	for (f = snap != NULL ? snap->files : NULL; f != NULL; f = f->next)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

/* f's contents: the regular file, whole, when it has at most max bytes. */
static void
snap_read(struct snap_file *f, size_t max)
{
	ssize_t n;
	int fd;

	/* the flags of oa2_read_file_st */
	if ((fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOCTTY |
	    O_NONBLOCK)) == -1) {
		f->open_errno = errno;
		return;
	}
	if (fstat(fd, &f->st) == -1)
		f->open_errno = errno;
	else if (S_ISREG(f->st.st_mode) && (size_t)f->st.st_size <= max &&
	    (f->data = malloc((size_t)f->st.st_size + 1)) != NULL) {
		while (f->len < (size_t)f->st.st_size) {
			n = read(fd, f->data + f->len,
			    (size_t)f->st.st_size - f->len);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			f->len += (size_t)n;
		}
		if (f->len < (size_t)f->st.st_size) {
			/* left to the disk when used, as it failed now */
			oa2_freezero(f->data, (size_t)f->st.st_size + 1);
			f->data = NULL;
		} else
			f->data[f->len] = '\0';
	}
	close(fd);
}

int
oa2_snapshot_add(struct oa2_snapshot **snap, const char *path, size_t max,
    const char *safe_what)
{
	struct snap_file *f;

	if (*snap == NULL) {
		if ((*snap = calloc(1, sizeof(**snap))) == NULL)
			return -1;
		(*snap)->euid = geteuid();
	}
	if (snap_find(*snap, path) != NULL)
		return 0;
	if ((f = calloc(1, sizeof(*f))) == NULL ||
	    (f->path = strdup(path)) == NULL ||
	    (safe_what != NULL && (f->safe_what = strdup(safe_what)) == NULL)) {
		if (f != NULL)
			free(f->path);
		free(f);
		return -1;
	}
	if (stat(path, &f->st_path) == -1)
		f->stat_errno = errno;
	snap_read(f, max);
	if (safe_what != NULL && f->open_errno == 0)
		(void)oa2_check_safe_path(path, &f->st, safe_what, &f->safe);
	f->next = (*snap)->files;
	(*snap)->files = f;
	return 0;
}

const char *
oa2_snapshot_data(const struct oa2_snapshot *snap, const char *path)
{
	struct snap_file *f = snap_find(snap, path);

	return f != NULL && f->safe.code == 0 ? f->data : NULL;
}

void
oa2_snapshot_use(const struct oa2_snapshot *snap)
{
	snap_in_use = snap;
}

void
oa2_snapshot_free(struct oa2_snapshot **snap)
{
	struct snap_file *f, *next;

	if (snap == NULL || *snap == NULL)
		return;
	for (f = (*snap)->files; f != NULL; f = next) {
		next = f->next;
		if (f->data != NULL)
			oa2_freezero(f->data, f->len + 1);
		free(f->path);
		free(f->safe_what);
		free(f);
	}
	free(*snap);
	*snap = NULL;
}

int
oa2_stat(const char *path, struct stat *st)
{
	struct snap_file *f = snap_find(snap_in_use, path);

	if (f == NULL)
		return stat(path, st);
	if (f->stat_errno != 0) {
		errno = f->stat_errno;
		return -1;
	}
	*st = f->st_path;
	return 0;
}

/*
 * oa2_read_file_st from a snapshot's file f: the same checks on the
 * fstat of then, in the same order, with the same sentences.
 */
static int
snap_read_file(const struct snap_file *f, uid_t euid, const char *what,
    int private_, size_t max, char **out, size_t *outlen, struct stat *stp,
    struct oa2_error *err)
{
	int r = private_ ? OA2_ERR_CREDENTIAL : OA2_ERR_CONFIG;

	if (f->open_errno != 0)
		return oa2_seterr(err, r, "cannot open %s %s: %s", what,
		    f->path, strerror(f->open_errno));
	if (private_ && (r = check_private_st(&f->st, euid, f->path, what,
	    private_ == OA2_PRIVATE_ANY_OWNER, err)) != 0)
		return r;
	r = private_ ? OA2_ERR_CREDENTIAL : OA2_ERR_CONFIG;
	if (!S_ISREG(f->st.st_mode))
		return oa2_seterr(err, r, "%s %s is not a regular file", what,
		    f->path);
	if ((size_t)f->st.st_size > max)
		return oa2_seterr(err, r, "%s %s is larger than %zu bytes",
		    what, f->path, max);
	if ((*out = malloc(f->len + 1)) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	memcpy(*out, f->data, f->len + 1);
	if (outlen != NULL)
		*outlen = f->len;
	if (stp != NULL)
		*stp = f->st;
	oa2_clearerr(err);
	return OA2_OK;
}

int
oa2_check_private_fd(int fd, const char *path, const char *what,
    struct oa2_error *err)
{
	return check_private(fd, path, what, 0, err);
}

/*
 * strerror(e), but for a missing file, what every empty token cache
 * meets twice per token request, the same text without the call: the
 * first strerror of a process (libc's message lookup) cost 30-240 us,
 * more than the open itself.
 */
static const char *
open_strerror(int e)
{
	return e == ENOENT ? "No such file or directory" : strerror(e);
}

int
oa2_read_file(const char *path, const char *what, int private_,
    size_t max, char **out, size_t *outlen, struct oa2_error *err)
{
	return oa2_read_file_st(path, what, private_, max, out, outlen, NULL,
	    err);
}

int
oa2_read_file_st(const char *path, const char *what, int private_,
    size_t max, char **out, size_t *outlen, struct stat *stp,
    struct oa2_error *err)
{
	const struct snap_file *f;
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, r;

	*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	if ((f = snap_find(snap_in_use, path)) != NULL &&
	    (f->open_errno != 0 || f->data != NULL ||
	    !S_ISREG(f->st.st_mode) || (size_t)f->st.st_size > max))
		return snap_read_file(f, snap_in_use->euid, what, private_,
		    max, out, outlen, stp, err);
	memset(&st, 0, sizeof(st));
	/* O_NONBLOCK: a FIFO in place of a file must not hang us in open */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1)
		return oa2_seterr(err, private_ ? OA2_ERR_CREDENTIAL :
		    OA2_ERR_CONFIG, "cannot open %s %s: %s", what, path,
		    open_strerror(errno));
	if (private_ && (r = check_private(fd, path, what,
	    private_ == OA2_PRIVATE_ANY_OWNER, err)) != 0)
		goto out;
	r = oa2_seterr(err, private_ ? OA2_ERR_CREDENTIAL : OA2_ERR_CONFIG,
	    "cannot read %s %s", what, path);
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		oa2_seterr(err, r, "%s %s is not a regular file", what, path);
		goto out;
	}
	if ((size_t)st.st_size > max) {
		oa2_seterr(err, r, "%s %s is larger than %zu bytes", what,
		    path, max);
		goto out;
	}
	/* Allocated once at the final size: a secret is never realloc'ed. */
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	while (len < (size_t)st.st_size) {
		n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			oa2_seterr(err, r, "cannot read %s %s: %s", what, path,
			    n == 0 ? "file shrank while reading" :
			    strerror(errno));
			goto out;
		}
		len += (size_t)n;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;		/* transferred */
	if (outlen != NULL)
		*outlen = len;
	if (stp != NULL)
		*stp = st;
	r = OA2_OK;
	oa2_clearerr(err);
 out:
	if (buf != NULL)
		oa2_freezero(buf, (size_t)st.st_size + 1);
	close(fd);
	return r;
}

int
oa2_read_secret_file(const char *path, const char *what, char **out,
    struct oa2_error *err)
{
	char *buf;
	size_t len;
	int r;

	*out = NULL;
	if ((r = oa2_read_file(path, what, 1, 64 * 1024, &buf, &len,
	    err)) != 0)
		return r;
	while (len > 0 && strchr(" \t\r\n", buf[len - 1]) != NULL)
		buf[--len] = '\0';
	if (len == 0) {
		oa2_freezero(buf, len + 1);
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "%s %s is empty",
		    what, path);
	}
	if (strlen(buf) != len) {
		oa2_freezero(buf, len + 1);
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "%s %s contains a NUL byte", what, path);
	}
	*out = buf;
	return OA2_OK;
}

/* "nobody (uid 65534)", or "uid 65534" when the name is unknown. */
static void
uid_name(uid_t uid, char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];

	if (getpwuid_r(uid, &pw, tmp, sizeof(tmp), &res) == 0 && res != NULL)
		snprintf(buf, len, "%s (uid %lu)", res->pw_name,
		    (unsigned long)uid);
	else
		snprintf(buf, len, "uid %lu", (unsigned long)uid);
}

/* One file or directory of the path: owner and write bits. */
static int
check_one(const char *name, const struct stat *st, int is_file,
    const char *what, const char *path, struct oa2_error *err)
{
	char owner[300], me[300], where[PATH_MAX + 128];
	uid_t euid = geteuid();

	if (is_file)
		snprintf(where, sizeof(where), "%s %s", what, name);
	else
		snprintf(where, sizeof(where), "directory %s (on the path of "
		    "%s %s)", name, what, path);
	if (st->st_uid != 0 && st->st_uid != euid) {
		uid_name(st->st_uid, owner, sizeof(owner));
		uid_name(euid, me, sizeof(me));
		return oa2_seterr(err, OA2_ERR_CONFIG, "%s is owned by %s, not "
		    "by root or by the user reading it, %s: whoever owns it "
		    "decides which files are read and where their contents "
		    "are sent; run chown root %s", where, owner, me, name);
	}
	if ((st->st_mode & 022) != 0 &&
	    (is_file || (st->st_mode & S_ISVTX) == 0))
		return oa2_seterr(err, OA2_ERR_CONFIG, "%s is writable by "
		    "group or others (mode %04o): run chmod go-w %s", where,
		    (unsigned)(st->st_mode & 07777), name);
	return OA2_OK;
}

int
oa2_check_safe_path(const char *path, const struct stat *fst,
    const char *what, struct oa2_error *err)
{
	const struct snap_file *f = snap_find(snap_in_use, path);
	struct stat st;
	char *real = NULL, *slash;
	int r;

	/* answered then, for the same file and question */
	if (f != NULL && f->safe_what != NULL && f->open_errno == 0 &&
	    strcmp(f->safe_what, what) == 0 && fst->st_dev == f->st.st_dev &&
	    fst->st_ino == f->st.st_ino) {
		if (f->safe.code != 0)
			*err = f->safe;
		return f->safe.code;
	}
	if ((r = check_one(path, fst, 1, what, path, err)) != 0)
		return r;
	/* The directories of where the file really is, after symlinks. */
	if ((real = realpath(path, NULL)) == NULL)
		return oa2_seterr(err, OA2_ERR_CONFIG, "cannot resolve %s %s: "
		    "%s", what, path, strerror(errno));
	if (stat(real, &st) == -1 || st.st_dev != fst->st_dev ||
	    st.st_ino != fst->st_ino) {
		r = oa2_seterr(err, OA2_ERR_CONFIG, "%s %s changed while it "
		    "was being checked: try again", what, path);
		goto out;
	}
	while ((slash = strrchr(real, '/')) != NULL) {
		if (slash == real)
			slash[1] = '\0';	/* "/" itself, then stop */
		else
			*slash = '\0';
		if (stat(real, &st) == -1) {
			r = oa2_seterr(err, OA2_ERR_CONFIG, "cannot examine "
			    "directory %s (on the path of %s %s): %s", real,
			    what, path, strerror(errno));
			goto out;
		}
		if ((r = check_one(real, &st, 0, what, path, err)) != 0)
			goto out;
		if (slash == real)
			break;
	}
	r = OA2_OK;
 out:
	free(real);
	return r;
}

EVP_MD_CTX *
oa2_digest_begin(const char *tag)
{
	EVP_MD_CTX *ctx;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return NULL;
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(ctx, tag, strlen(tag) + 1)) {
		EVP_MD_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

int
oa2_digest_hex(EVP_MD_CTX *ctx, int ok, char hex[33])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int i;

	ok = ok && ctx != NULL && EVP_DigestFinal_ex(ctx, md, &mdlen) &&
	    mdlen >= 16;
	EVP_MD_CTX_free(ctx);
	if (ok)
		for (i = 0; i < 16; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
	oa2_wipe(md, sizeof(md));
	return ok ? 0 : -1;
}

void
oa2_file_id_text(dev_t dev, ino_t ino, const struct timespec *mtime,
    off_t size, char *buf, size_t len)
{
	snprintf(buf, len, "%lx:%lx:%lld.%09ld:%lld", (unsigned long)dev,
	    (unsigned long)ino, (long long)mtime->tv_sec, (long)mtime->tv_nsec,
	    (long long)size);
}
