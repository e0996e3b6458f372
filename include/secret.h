/*
 * Secrets in memory and private files on disk.
 */
#ifndef OA2_SECRET_H
#define OA2_SECRET_H

#include <stddef.h>
#include "error.h"

/* Wipe n bytes at p (never optimised away). Accepts NULL. */
void oa2_wipe(void *p, size_t n);

/* Wipe n bytes at p and free it. Accepts NULL. */
void oa2_freezero(void *p, size_t n);

/* Wipe and free a NUL-terminated string and clear the caller's pointer. */
void oa2_freezero_str(char **p);

/*
 * Check that the open file fd (named path in messages, described as
 * what, e.g. "secret file") is a regular file owned by root or by the
 * effective user, with no group or other permission bits.
 */
int oa2_check_private_fd(int fd, const char *path, const char *what,
    struct oa2_error *err);

/*
 * Read a whole file of at most max bytes into a new NUL-terminated
 * buffer *out (length in *outlen if not NULL). With private set the
 * file must pass oa2_check_private_fd and the caller frees *out with
 * oa2_freezero(*out, *outlen); otherwise with free(). what names the
 * file in messages ("CA file"). *out is NULL on failure.
 */
int oa2_read_file(const char *path, const char *what, int private_,
    size_t max, char **out, size_t *outlen, struct oa2_error *err);

/*
 * Read a secret from a private file: trailing CR/LF and blanks are
 * trimmed, an empty secret is an error. The caller frees *out with
 * oa2_freezero_str.
 */
int oa2_read_secret_file(const char *path, const char *what, char **out,
    struct oa2_error *err);

#endif
