/*
 * Shared by the libFuzzer targets: a private scratch directory (0700,
 * under $TMPDIR, removed at exit), files written into it with a given
 * mode, and the checks every target makes on what the core returns.
 * A failed check aborts, which libFuzzer reports as a crash.
 */
#ifndef OA2_FUZZ_H
#define OA2_FUZZ_H

#include <sys/stat.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char fuzz_dir[PATH_MAX];

/* Print why and abort: libFuzzer saves the input as a crash. */
#define fuzz_assert(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "%s:%d: check failed: %s\n",		\
		    __FILE__, __LINE__, #cond);				\
		abort();						\
	}								\
} while (0)

static inline int
fuzz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static inline void
fuzz_cleanup(void)
{
	if (fuzz_dir[0] != '\0')
		nftw(fuzz_dir, fuzz_rm, 8, FTW_DEPTH | FTW_PHYS);
}

/* Create the private scratch directory once. */
static inline void
fuzz_mkdir(void)
{
	const char *tmp = getenv("TMPDIR");

	if (fuzz_dir[0] != '\0')
		return;
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/oa2-fuzz-XXXXXX",
	    tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(fuzz_dir) == NULL) {
		perror(fuzz_dir);
		abort();
	}
	atexit(fuzz_cleanup);
}

/*
 * Write len bytes to name in the scratch directory with mode (set even
 * when the file exists); the full path goes to path[PATH_MAX].
 */
static inline void
fuzz_put(const char *name, const void *data, size_t len, mode_t mode,
    char *path)
{
	const char *p = data;
	ssize_t n;
	int fd;

	fuzz_mkdir();
	snprintf(path, PATH_MAX, "%s/%s", fuzz_dir, name);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    mode)) == -1 || fchmod(fd, mode) == -1) {
		perror(path);
		abort();
	}
	while (len > 0) {
		if ((n = write(fd, p, len)) <= 0) {
			perror(path);
			abort();
		}
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

/* Read a committed seed (OA2_FUZZ_CORPUS/rel) into a new buffer. */
static inline char *
fuzz_slurp(const char *rel, size_t *len)
{
	char path[PATH_MAX], *buf;
	long n;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", OA2_FUZZ_CORPUS, rel);
	if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) != 0 ||
	    (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0 ||
	    (buf = malloc((size_t)n + 1)) == NULL ||
	    fread(buf, 1, (size_t)n, f) != (size_t)n) {
		perror(path);
		abort();
	}
	fclose(f);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* A sentence for an admin: NUL-terminated in its buffer, non-empty. */
static inline void
fuzz_check_sentence(const struct oa2_error *err, int code)
{
	fuzz_assert(err->code == code);
	fuzz_assert(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
	fuzz_assert(err->msg[0] != '\0');
}

/* Only printable ASCII: what sanitised untrusted text must become. */
static inline void
fuzz_check_printable(const char *s)
{
	for (; *s != '\0'; s++)
		fuzz_assert(*s >= 0x20 && *s < 0x7f);
}

#endif
