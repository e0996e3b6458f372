/*
 * What a host that never uses OAuth pays for the plugin being
 * installed: one SASL client login (sasl_client_init, sasl_client_new,
 * start, step, dispose, sasl_client_done) with MECH (default PLAIN,
 * user and password "probe"), then one line on stdout:
 *
 *   loadprobe: mech=M result=R secure=0|1 hwm_kib=N curl=0|1 impl=0|1
 *	ossl=0|1
 *
 * hwm_kib: peak RSS (VmHWM); curl, impl, ossl: whether libcurl, the
 * plugin's implementation object (sasl-oauth2-impl.so) and libssl were
 * mapped at the end of the login (before sasl_client_done). With -i it
 * looks right after sasl_client_init instead (what plug_init loaded).
 * The detail of a failed login goes to stderr. Exit 0 when the line
 * was printed, 2 on bad usage. -u names the user (and the mailbox).
 * With -t N, N threads log in at once (the first use of a mechanism
 * from several threads) and the line ends with " threads_ok=K", the
 * number that succeeded; result is then the last failure's, or 0.
 * With -C DIR (as root) it chroots to DIR after sasl_client_init, as
 * a Postfix smtp process does; curl, impl and ossl are then -1.
 * -p DIR names the plugin directory through SASL_CB_GETPATH, and
 * -o NAME=VALUE (up to 4) answers the plugins' options through
 * SASL_CB_GETOPT: as a program does, and as a setuid program must
 * (libsasl2 ignores $SASL_PATH there). secure is AT_SECURE: 1 in a
 * setuid or setgid run.
 *
 *   loadprobe [-i] [-m MECH] [-u USER] [-t N] [-C DIR] [-p DIR]
 *	[-o NAME=VALUE]...
 */
#include <sys/auxv.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sasl/sasl.h>

static const char *user = "probe", *mech = "PLAIN", *plugin_dir;
static char *opts[4];
static int nopts;

static int
get_simple(void *ctx, int id, const char **result, unsigned *len)
{
	*result = user;
	if (len != NULL)
		*len = (unsigned)strlen(user);
	return SASL_OK;
}

static int
get_pass(sasl_conn_t *conn, void *ctx, int id, sasl_secret_t **psecret)
{
	static struct {
		sasl_secret_t s;
		char more[8];
	} pw = { { 5, { 'p' } }, "robe" };

	*psecret = &pw.s;
	return SASL_OK;
}

static int
log_cb(void *ctx, int level, const char *msg)
{
	if (level <= SASL_LOG_WARN || getenv("LOADPROBE_DEBUG") != NULL)
		fprintf(stderr, "log[%d]: %s\n", level, msg);
	return SASL_OK;
}

static int
get_path(void *ctx, const char **path)
{
	*path = plugin_dir;
	return SASL_OK;
}

/* An option given with -o NAME=VALUE, for any plugin. */
static int
get_opt(void *ctx, const char *plugin, const char *option,
    const char **result, unsigned *len)
{
	size_t n = strlen(option);
	int i;

	for (i = 0; i < nopts; i++)
		if (strncmp(opts[i], option, n) == 0 && opts[i][n] == '=') {
			*result = opts[i] + n + 1;
			if (len != NULL)
				*len = (unsigned)strlen(*result);
			return SASL_OK;
		}
	return SASL_FAIL;
}

/* Whether a mapping of this process has needle in its path. */
static int
mapped(const char *needle)
{
	char line[4096];
	int found = 0;
	FILE *f;

	if ((f = fopen("/proc/self/maps", "r")) == NULL)
		return -1;
	while (!found && fgets(line, sizeof(line), f) != NULL)
		found = strstr(line, needle) != NULL;
	fclose(f);
	return found;
}

static long
hwm_kib(void)
{
	char line[256];
	long v = -1;
	FILE *f;

	if ((f = fopen("/proc/self/status", "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %ld", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* One login with mech; *connp is left to the caller (NULL on failure). */
static int
login(sasl_conn_t **connp)
{
	const char *out, *chosen;
	unsigned outlen;
	int r;

	*connp = NULL;
	r = sasl_client_new("imap", "mail.example.test", "127.0.0.1;50000",
	    "127.0.0.1;143", NULL, 0, connp);
	if (r == SASL_OK)
		r = sasl_client_start(*connp, mech, NULL, &out, &outlen,
		    &chosen);
	if (r == SASL_CONTINUE)
		r = sasl_client_step(*connp, NULL, 0, NULL, &out, &outlen);
	if (r != SASL_OK && r != SASL_CONTINUE)
		fprintf(stderr, "loadprobe: %s: %s\n", sasl_errstring(r, NULL,
		    NULL), *connp ? sasl_errdetail(*connp) : "");
	return r;
}

static void *
thread_login(void *arg)
{
	sasl_conn_t *conn;

	*(int *)arg = login(&conn);
	if (conn != NULL)
		sasl_dispose(&conn);
	return NULL;
}

int
main(int argc, char **argv)
{
	sasl_callback_t cbs[] = {
		{ SASL_CB_LOG, (int (*)(void))(void *)log_cb, NULL },
		{ SASL_CB_USER, (int (*)(void))(void *)get_simple, NULL },
		{ SASL_CB_AUTHNAME, (int (*)(void))(void *)get_simple, NULL },
		{ SASL_CB_PASS, (int (*)(void))(void *)get_pass, NULL },
		{ SASL_CB_GETOPT, (int (*)(void))(void *)get_opt, NULL },
		{ SASL_CB_LIST_END, NULL, NULL },	/* or GETPATH (-p) */
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	pthread_t tid[64];
	int res[64];
	int c, r, i, at_init = 0, nthreads = 0, nok = 0, curl, impl, ossl;
	sasl_conn_t *conn = NULL;
	char *end, *root = NULL;

	while ((c = getopt(argc, argv, "im:u:t:C:p:o:")) != -1)
		switch (c) {
		case 'i': at_init = 1; break;
		case 'm': mech = optarg; break;
		case 'u': user = optarg; break;
		case 'C': root = optarg; break;
		case 'p':
			plugin_dir = optarg;
			cbs[5].id = SASL_CB_GETPATH;
			cbs[5].proc = (int (*)(void))(void *)get_path;
			break;
		case 'o':
			if (nopts < 4 && strchr(optarg, '=') != NULL) {
				opts[nopts++] = optarg;
				break;
			}
			goto usage;
		case 't':
			nthreads = (int)strtol(optarg, &end, 10);
			if (*end == '\0' && nthreads >= 1 && nthreads <= 64)
				break;
			/* FALLTHROUGH */
		default:
 usage:
			fprintf(stderr, "usage: loadprobe [-i] [-m MECH] "
			    "[-u USER] [-t N] [-C DIR] [-p DIR] "
			    "[-o NAME=VALUE]...\n");
			return 2;
		}
	r = sasl_client_init(cbs);
	if (root != NULL && (chroot(root) != 0 || chdir("/") != 0)) {
		perror("loadprobe: chroot");
		return 2;
	}
	if (r == SASL_OK && !at_init && nthreads == 0)
		r = login(&conn);
	else if (r == SASL_OK && !at_init) {
		for (i = 0; i < nthreads; i++)
			if (pthread_create(&tid[i], NULL, thread_login,
			    &res[i]) != 0) {
				fprintf(stderr, "loadprobe: pthread_create "
				    "failed\n");
				return 2;
			}
		for (i = 0; i < nthreads; i++) {
			pthread_join(tid[i], NULL);
			if (res[i] == SASL_OK)
				nok++;
			else
				r = res[i];
		}
	}
	curl = mapped("libcurl");
	impl = mapped("sasl-oauth2-impl");
	ossl = mapped("libssl.so");
	if (conn != NULL)
		sasl_dispose(&conn);
	sasl_client_done();
	printf("loadprobe: mech=%s result=%d secure=%d hwm_kib=%ld curl=%d "
	    "impl=%d ossl=%d", mech, r, getauxval(AT_SECURE) != 0, hwm_kib(),
	    curl, impl, ossl);
	if (nthreads > 0)
		printf(" threads_ok=%d", nok);
	printf("\n");
	return 0;
}
