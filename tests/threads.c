/*
 * A threaded SASL host, for tests/e2e-threads.sh: what the plugin does
 * to a process that logs in from several threads at once, and to one
 * whose configuration file breaks while it runs.
 *
 *   threads --conf FILE wait HANGUSER MARKER USER...
 *	One thread logs in as HANGUSER (an account whose token endpoint
 *	never answers); once MARKER exists (the endpoint saw the
 *	connection), one thread per USER logs in at the same time. Prints
 *	"others-first: yes" when every other login ended while the
 *	hanging one was still waiting, "others-first: no" otherwise, and
 *	one line per login with its result.
 *
 *   threads --conf FILE reload USER BROKEN N
 *	Logs in as USER, copies the file BROKEN over FILE, logs in N more
 *	times, and prints how often the plugin logged that it keeps the
 *	configuration loaded before ("kept: K") and how often FILE was
 *	opened ("opened: K").
 *
 *   threads --conf FILE broken USER N
 *	Logs in N times as USER with FILE broken from the start and
 *	prints how often FILE was opened ("opened: K").
 *
 *   threads --conf FILE chmod USER PATH MODE N
 *	Logs in as USER, changes PATH (FILE or a directory above it) to
 *	the octal MODE, then logs in N more times.
 *
 * The config is named through the SASL option oauth2_config. open() is
 * interposed (the program is linked with -export-dynamic) to count the
 * opens of FILE: the plugin reads its configuration with open().
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sasl/sasl.h>

static const char *conf;
static int opens, kept;
static pthread_mutex_t count_lock = PTHREAD_MUTEX_INITIALIZER;

static void
count_open(const char *path)
{
	if (conf != NULL && path != NULL && strcmp(path, conf) == 0) {
		pthread_mutex_lock(&count_lock);
		opens++;
		pthread_mutex_unlock(&count_lock);
	}
}

/*
 * open() and open64(), counted, then passed on to the C library's. A
 * mode is read only where the flags say there is one.
 */
#define INTERPOSE(fn)							\
__attribute__((visibility("default"))) int				\
fn(const char *path, int flags, ...)					\
{									\
	static int (*real)(const char *, int, ...);			\
	mode_t mode = 0;						\
	va_list ap;							\
									\
	if (flags & (O_CREAT | O_TMPFILE)) {				\
		va_start(ap, flags);					\
		mode = (mode_t)va_arg(ap, int);				\
		va_end(ap);						\
	}								\
	if (real == NULL)						\
		real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #fn); \
	count_open(path);						\
	return real(path, flags, mode);					\
}

INTERPOSE(open)
INTERPOSE(open64)

static int
getopt_cb(void *ctx, const char *plugin, const char *option,
    const char **result, unsigned *len)
{
	if (strcmp(option, "oauth2_config") != 0)
		return SASL_FAIL;
	*result = conf;
	if (len != NULL)
		*len = (unsigned)strlen(conf);
	return SASL_OK;
}

static int
log_cb(void *ctx, int level, const char *msg)
{
	if (strstr(msg, "keeping the configuration loaded before") != NULL) {
		pthread_mutex_lock(&count_lock);
		kept++;
		pthread_mutex_unlock(&count_lock);
	}
	if (getenv("THREADS_DEBUG") != NULL)
		fprintf(stderr, "log[%d]: %s\n", level, msg);
	return SASL_OK;
}

static int
get_user(void *ctx, int id, const char **result, unsigned *len)
{
	*result = ctx;
	if (len != NULL)
		*len = (unsigned)strlen(*result);
	return SASL_OK;
}

struct login {
	pthread_t	thread;
	const char	*user;
	int		result;
	char		detail[512];
	volatile int	done;
};

/* One XOAUTH2 login: the first step, then the server's "OK". */
static void *
login(void *arg)
{
	struct login *l = arg;
	sasl_callback_t cbs[] = {
		{ SASL_CB_USER, (int (*)(void))(void *)get_user, (void *)l->user },
		{ SASL_CB_AUTHNAME, (int (*)(void))(void *)get_user, (void *)l->user },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	sasl_conn_t *conn;
	const char *out, *mech;
	unsigned outlen;
	int r;

	r = sasl_client_new("imap", "mail.example.test", NULL, NULL, cbs, 0,
	    &conn);
	if (r == SASL_OK) {
		r = sasl_client_start(conn, "XOAUTH2", NULL, &out, &outlen,
		    &mech);
		if (r == SASL_CONTINUE)
			r = sasl_client_step(conn, NULL, 0, NULL, &out, &outlen);
		snprintf(l->detail, sizeof(l->detail), "%s",
		    r == SASL_OK ? "" : sasl_errdetail(conn));
		sasl_dispose(&conn);
	}
	l->result = r;
	__atomic_store_n(&l->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void
report(const struct login *l)
{
	printf("login %s: %s%s%s\n", l->user, l->result == SASL_OK ? "ok" :
	    "failed", l->result == SASL_OK ? "" : ": ", l->detail);
}

static int
usage(void)
{
	fprintf(stderr, "usage: threads --conf FILE wait HANGUSER MARKER "
	    "USER...\n"
	    "       threads --conf FILE reload USER BROKEN N\n"
	    "       threads --conf FILE broken USER N\n"
	    "       threads --conf FILE chmod USER PATH MODE N\n");
	return 2;
}

static int
run_wait(int argc, char **argv)
{
	struct timespec pause = { 0, 20 * 1000 * 1000 };
	struct login hang = { 0 }, *others;
	struct stat st;
	int i, n = argc - 2, first = 1;

	if (n < 1)
		return usage();
	hang.user = argv[0];
	if (pthread_create(&hang.thread, NULL, login, &hang) != 0)
		return 1;
	/* until the token endpoint has the hanging login's connection */
	while (stat(argv[1], &st) == -1 && !__atomic_load_n(&hang.done,
	    __ATOMIC_SEQ_CST))
		nanosleep(&pause, NULL);
	if ((others = calloc((size_t)n, sizeof(*others))) == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		others[i].user = argv[2 + i];
		if (pthread_create(&others[i].thread, NULL, login,
		    &others[i]) != 0)
			return 1;
	}
	for (i = 0; i < n; i++)
		pthread_join(others[i].thread, NULL);
	if (__atomic_load_n(&hang.done, __ATOMIC_SEQ_CST))
		first = 0;
	printf("others-first: %s\n", first ? "yes" : "no");
	for (i = 0; i < n; i++)
		report(&others[i]);
	pthread_join(hang.thread, NULL);
	report(&hang);
	free(others);
	return 0;
}

static int
copy_file(const char *from, const char *to)
{
	char buf[8192];
	size_t n;
	FILE *in, *out;
	int r = 0;

	if ((in = fopen(from, "r")) == NULL)
		return -1;
	/* a new file (new inode), as an editor or config tool writes it */
	if (unlink(to) == -1 && errno != ENOENT) {
		fclose(in);
		return -1;
	}
	if ((out = fopen(to, "w")) == NULL) {
		fclose(in);
		return -1;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			r = -1;
	fclose(in);
	if (fclose(out) != 0)
		r = -1;
	return r;
}

/* chmod_path/chmod_mode: what run_logins changes after its first login */
static const char *chmod_path;
static mode_t chmod_mode;

static int
run_logins(const char *user, int n, const char *broken)
{
	struct login l = { 0 };
	int i;

	l.user = user;
	if (broken != NULL || chmod_path != NULL) {
		login(&l);
		report(&l);
		if (broken != NULL && copy_file(broken, conf) == -1) {
			perror(conf);
			return 1;
		}
		if (chmod_path != NULL && chmod(chmod_path, chmod_mode) == -1) {
			perror(chmod_path);
			return 1;
		}
	}
	for (i = 0; i < n; i++) {
		login(&l);
		report(&l);
	}
	pthread_mutex_lock(&count_lock);
	printf("kept: %d\nopened: %d\n", kept, opens);
	pthread_mutex_unlock(&count_lock);
	return 0;
}

int
main(int argc, char **argv)
{
	sasl_callback_t cbs[] = {
		{ SASL_CB_LOG, (int (*)(void))(void *)log_cb, NULL },
		{ SASL_CB_GETOPT, (int (*)(void))(void *)getopt_cb, NULL },
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	char *end;
	long n;
	int r;

	if (argc < 4 || strcmp(argv[1], "--conf") != 0)
		return usage();
	conf = argv[2];
	setvbuf(stdout, NULL, _IOLBF, 0);	/* the test reads it as we go */
	if ((r = sasl_client_init(cbs)) != SASL_OK) {
		fprintf(stderr, "sasl_client_init: %s\n",
		    sasl_errstring(r, NULL, NULL));
		return 1;
	}
	if (strcmp(argv[3], "wait") == 0)
		r = run_wait(argc - 4, argv + 4);
	else if ((strcmp(argv[3], "reload") == 0 && argc == 7) ||
	    (strcmp(argv[3], "broken") == 0 && argc == 6)) {
		n = strtol(argv[argc - 1], &end, 10);
		if (*end != '\0' || n < 1 || n > 1000)
			return usage();
		r = run_logins(argv[4], (int)n, argc == 7 ? argv[5] : NULL);
	} else if (strcmp(argv[3], "chmod") == 0 && argc == 8) {
		n = strtol(argv[7], &end, 10);
		if (*end != '\0' || n < 1 || n > 1000)
			return usage();
		chmod_path = argv[5];
		chmod_mode = (mode_t)strtol(argv[6], &end, 8);
		if (*end != '\0')
			return usage();
		r = run_logins(argv[4], (int)n, NULL);
	} else
		r = usage();
	sasl_client_done();
	return r;
}
