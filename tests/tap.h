/*
 * A tiny TAP producer for the unit tests: ok(), is_str(), has_str(),
 * done_testing(). Exit status is 0 only when every check passed.
 */
#ifndef OA2_TAP_H
#define OA2_TAP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

/*
 * How much longer a slow build (valgrind, sanitizers) may take: time
 * limits that are not what a check is about scale with this, so that
 * no check depends on the machine's speed.
 */
static inline int
slow(void)
{
	const char *v = getenv("VALGRIND");

	if (v != NULL && *v != '\0')
		return 10;
#if defined(__SANITIZE_ADDRESS__)
	return 3;
#else
	return 1;
#endif
}

static inline int
tap_ok(int cond, const char *file, int line, const char *name)
{
	tap_n++;
	if (!cond)
		tap_failed++;
	printf("%sok %d - %s\n", cond ? "" : "not ", tap_n, name);
	if (!cond)
		printf("#   failed at %s:%d\n", file, line);
	fflush(stdout);
	return cond;
}

#define ok(cond, name)	tap_ok((cond) != 0, __FILE__, __LINE__, (name))

#define is_str(got, want, name) do {					\
	const char *g_ = (got), *w_ = (want);				\
	if (!ok(g_ != NULL && w_ != NULL && strcmp(g_, w_) == 0, name))	\
		printf("#   got:  \"%s\"\n#   want: \"%s\"\n",		\
		    g_ ? g_ : "(null)", w_ ? w_ : "(null)");		\
} while (0)

#define has_str(got, want, name) do {					\
	const char *g_ = (got), *w_ = (want);				\
	if (!ok(g_ != NULL && strstr(g_, w_) != NULL, name))		\
		printf("#   got:  \"%s\"\n#   want substring: \"%s\"\n",	\
		    g_ ? g_ : "(null)", w_);				\
} while (0)

static inline int
done_testing(void)
{
	printf("1..%d\n", tap_n);
	if (tap_failed)
		printf("# %d of %d checks failed\n", tap_failed, tap_n);
	return tap_failed ? 1 : 0;
}

#endif
