/*
 * Secrets in memory and private files on disk.
 */
#ifndef OA2_SECRET_H
#define OA2_SECRET_H

#include <sys/types.h>
#include <sys/stat.h>
#include <stddef.h>
#include <openssl/evp.h>
#include "error.h"

/* Wipe n bytes at p (never optimised away). Accepts NULL. */
void oa2_wipe(void *p, size_t n);

/* Wipe n bytes at p and free it. Accepts NULL. */
void oa2_freezero(void *p, size_t n);

/* Wipe and free a NUL-terminated string and clear the caller's pointer. */
void oa2_freezero_str(char **p);

/*
 * Names derived from secret material (cache keys, cache file sums):
 * oa2_digest_begin() starts a SHA-256 over tag and its NUL (NULL when
 * out of memory); the caller adds its parts with EVP_DigestUpdate;
 * oa2_digest_hex() frees ctx (NULL accepted) and, when ok and the
 * digest completes, writes its first 16 bytes as 32 lower-case hex
 * digits and a NUL into hex and returns 0, else -1. The digest itself
 * is wiped.
 */
EVP_MD_CTX *oa2_digest_begin(const char *tag);
int oa2_digest_hex(EVP_MD_CTX *ctx, int ok, char hex[33]);

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
 * oa2_freezero(*out, *outlen); otherwise with free(). With private
 * OA2_PRIVATE_ANY_OWNER, root (the effective user) also takes a
 * private file another user owns: a delegated sign-in that
 * `login --owner` gave to the user of a mail program. what names the
 * file in messages ("CA file"). *out is NULL on failure.
 */
#define OA2_PRIVATE_ANY_OWNER	2
int oa2_read_file(const char *path, const char *what, int private_,
    size_t max, char **out, size_t *outlen, struct oa2_error *err);

/*
 * As oa2_read_file, and on success *stp (if not NULL) is the fstat of
 * the descriptor the contents were read from.
 */
int oa2_read_file_st(const char *path, const char *what, int private_,
    size_t max, char **out, size_t *outlen, struct stat *stp,
    struct oa2_error *err);

/*
 * The rule of OpenSSH's safe_path() for a file that decides what is
 * read and where it is sent (the configuration): the file (fst, the
 * fstat of the descriptor it was read from) and every directory from
 * its real location (symbolic links resolved) up to / must be owned by
 * root or by the effective user and not writable by group or others;
 * a directory writable by others passes with the sticky bit (/tmp).
 * what names the file in messages ("configuration file"). The error
 * (OA2_ERR_CONFIG) names the file or directory and the chown or chmod
 * that fixes it.
 */
int oa2_check_safe_path(const char *path, const struct stat *fst,
    const char *what, struct oa2_error *err);

/*
 * Read a secret from a private file: trailing CR/LF and blanks are
 * trimmed, an empty secret is an error. The caller frees *out with
 * oa2_freezero_str.
 */
int oa2_read_secret_file(const char *path, const char *what, char **out,
    struct oa2_error *err);

/*
 * A snapshot: files read while the process can still read them (at
 * plug_init, before a Postfix smtp process chroots and drops root),
 * for a configuration parsed on first use (issue 16). While a thread
 * uses one (oa2_snapshot_use), oa2_read_file_st, oa2_stat and
 * oa2_check_safe_path answer for each path it holds exactly as the
 * disk answered when it was taken, with the effective uid of then;
 * other paths go to the disk. Its contents are wiped when it is freed.
 */
struct oa2_snapshot;

/*
 * Take path into *snap (made on first use): its stat, its open and
 * fstat, its contents when it is a regular file of at most max bytes,
 * and, with safe_what set, the answer of oa2_check_safe_path(path, ...,
 * safe_what). A path already held is not taken again. -1 when out of
 * memory; an unreadable file is no failure (it is held as such).
 */
int oa2_snapshot_add(struct oa2_snapshot **snap, const char *path,
    size_t max, const char *safe_what);

/*
 * The contents held for path (NUL-terminated) when it was read whole
 * and passed the oa2_check_safe_path asked for; else NULL.
 */
const char *oa2_snapshot_data(const struct oa2_snapshot *snap,
    const char *path);

/* Use snap in this thread from now on; NULL: the disk again. */
void oa2_snapshot_use(const struct oa2_snapshot *snap);

/* Wipe and free *snap and clear the pointer. Accepts NULL. */
void oa2_snapshot_free(struct oa2_snapshot **snap);

/* stat(2), answered from the snapshot in use when it holds path. */
int oa2_stat(const char *path, struct stat *st);

/*
 * A file's identity as text into buf, "dev:ino:mtime.ns:size": another
 * file renamed into place, or the file rewritten, gives another text.
 */
void oa2_file_id_text(dev_t dev, ino_t ino, const struct timespec *mtime,
    off_t size, char *buf, size_t len);

#endif
