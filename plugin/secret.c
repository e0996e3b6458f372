/*
 * Secrets in memory (wiped before free) and private files on disk
 * (refused when others could read them), after OpenSSH authfile.c.
 */
#include "config.h"

#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "secret.h"

void
oa2_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
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

int
oa2_check_private_fd(int fd, const char *path, const char *what,
    struct oa2_error *err)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "cannot examine %s %s: %s", what, path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "%s %s is not a regular file", what, path);
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "%s %s is owned by uid %lu, not by root or by uid %lu",
		    what, path, (unsigned long)st.st_uid,
		    (unsigned long)geteuid());
	if ((st.st_mode & 077) != 0)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL,
		    "%s %s is accessible by group or others (mode %04o): "
		    "run chmod 600 %s", what, path,
		    (unsigned)(st.st_mode & 07777), path);
	return OA2_OK;
}

int
oa2_read_file(const char *path, const char *what, int private_,
    size_t max, char **out, size_t *outlen, struct oa2_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t len = 0;
	ssize_t n;
	int fd, r;

	*out = NULL;
	if (outlen != NULL)
		*outlen = 0;
	/* O_NONBLOCK: a FIFO in place of a file must not hang us in open */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1)
		return oa2_seterr(err, private_ ? OA2_ERR_CREDENTIAL :
		    OA2_ERR_CONFIG, "cannot open %s %s: %s", what, path,
		    strerror(errno));
	if (private_ && (r = oa2_check_private_fd(fd, path, what, err)) != 0)
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
