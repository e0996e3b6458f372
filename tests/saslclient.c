/*
 * A small Cyrus SASL client with real callbacks (unlike imtest and
 * mbsync, which answer SASL_INTERACT prompts), for the tests: it runs
 * the client side of an authentication without a network and prints
 * what the plugin sends and why it fails.
 *
 *   saslclient [-m|--mech MECH] -u|--user USER [-z|--authzid AUTHZID]
 *              [-H|--host HOST] [-P|--port PORT] [-n|--count COUNT]
 *              [-c|--challenge BASE64] [-p|--print] [-s|--stats]
 *              [-o|--option NAME=VALUE] [-L|--plugin-path DIR]
 *
 * --print prints the initial response in base64 ("initial: ...");
 * --challenge feeds a server error challenge to the second step and
 * prints the plugin's answer in base64 ("answer: ..."); --count repeats
 * the whole authentication (sasl_client_new, start, step, dispose)
 * COUNT times in one process (with --challenge, every round is refused
 * and the loop goes on). Without --challenge the second step gets no
 * data, as after a server's success. --stats prints the resident set
 * size and the number of open descriptors after the tenth round and
 * after the last ("stats: round=N rss_kb=N fds=N"). Exit 0 on success,
 * 1 on a SASL failure (errdetail printed), 2 on bad usage. Set
 * SASLCLIENT_DEBUG to see every SASL log line. --option answers the
 * SASL getopt callback, as an application's SASL config file would.
 * --plugin-path answers the SASL getpath callback: the plugin directory
 * for a setuid copy of this program, where libsasl2 ignores SASL_PATH.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sasl/sasl.h>
#include <sasl/saslutil.h>

static const char *user, *authzid, *optname, *optvalue, *pluginpath;

static int
get_simple(void *ctx, int id, const char **result, unsigned *len)
{
	*result = id == SASL_CB_USER ? (authzid ? authzid : user) : user;
	if (len != NULL)
		*len = (unsigned)strlen(*result);
	return SASL_OK;
}

static int
getopt_cb(void *ctx, const char *plugin, const char *option,
    const char **result, unsigned *len)
{
	if (optname == NULL || strcmp(option, optname) != 0)
		return SASL_FAIL;
	*result = optvalue;
	if (len != NULL)
		*len = (unsigned)strlen(optvalue);
	return SASL_OK;
}

static int
getpath_cb(void *ctx, const char **path)
{
	*path = pluginpath;
	return SASL_OK;
}

static int
log_cb(void *ctx, int level, const char *msg)
{
	if (level <= SASL_LOG_WARN || getenv("SASLCLIENT_DEBUG") != NULL)
		fprintf(stderr, "log[%d]: %s\n", level, msg);
	return SASL_OK;
}

static void
print64(const char *label, const char *data, unsigned len)
{
	char buf[16384];
	unsigned outlen;

	if (sasl_encode64(data, len, buf, sizeof(buf), &outlen) != SASL_OK)
		strcpy(buf, "(too long)");
	printf("%s %s\n", label, buf);
}

/* VmRSS and open descriptors of this process, from /proc. */
static void
print_stats(int round)
{
	char line[256];
	long rss = -1;
	int fds = 0;
	FILE *f;
	DIR *d;

	if ((f = fopen("/proc/self/status", "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "VmRSS: %ld", &rss) == 1)
				break;
		fclose(f);
	}
	if ((d = opendir("/proc/self/fd")) != NULL) {
		while (readdir(d) != NULL)
			fds++;
		closedir(d);
		fds -= 3;	/* ".", ".." and the directory itself */
	}
	fprintf(stderr, "stats: round=%d rss_kb=%ld fds=%d\n", round, rss, fds);
}

static const struct option longopts[] = {
	{ "mech", required_argument, NULL, 'm' },
	{ "user", required_argument, NULL, 'u' },
	{ "authzid", required_argument, NULL, 'z' },
	{ "host", required_argument, NULL, 'H' },
	{ "port", required_argument, NULL, 'P' },
	{ "count", required_argument, NULL, 'n' },
	{ "challenge", required_argument, NULL, 'c' },
	{ "print", no_argument, NULL, 'p' },
	{ "stats", no_argument, NULL, 's' },
	{ "option", required_argument, NULL, 'o' },
	{ "plugin-path", required_argument, NULL, 'L' },
	{ NULL, 0, NULL, 0 },
};

static int
usage(void)
{
	fprintf(stderr, "usage: saslclient [--mech MECH] --user USER "
	    "[--authzid AUTHZID] [--host HOST]\n"
	    "                  [--port PORT] [--count N] "
	    "[--challenge BASE64] [--print] [--stats]\n"
	    "                  [--option NAME=VALUE] [--plugin-path DIR]\n");
	return 2;
}

int
main(int argc, char **argv)
{
	sasl_callback_t cbs[] = {
		{ SASL_CB_LOG, (int (*)(void))(void *)log_cb, NULL },
		{ SASL_CB_GETOPT, (int (*)(void))(void *)getopt_cb, NULL },
		{ SASL_CB_USER, (int (*)(void))(void *)get_simple, NULL },
		{ SASL_CB_AUTHNAME, (int (*)(void))(void *)get_simple, NULL },
		{ SASL_CB_LIST_END, NULL, NULL },	/* or GETPATH */
		{ SASL_CB_LIST_END, NULL, NULL },
	};
	const char *mech = "XOAUTH2", *host = "mail.example.test", *port = NULL;
	const char *challenge = NULL, *out, *chosen;
	char remote[128], chal[4096];
	unsigned outlen, challen = 0;
	int c, r, i, n = 1, print = 0, stats = 0;
	long count;
	char *end;
	sasl_conn_t *conn;

	while ((c = getopt_long(argc, argv, "m:u:z:H:P:n:c:pso:L:", longopts,
	    NULL)) != -1)
		switch (c) {
		case 'm': mech = optarg; break;
		case 'u': user = optarg; break;
		case 'z': authzid = optarg; break;
		case 'H': host = optarg; break;
		case 'P': port = optarg; break;
		case 'n':
			errno = 0;
			count = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || count < 1 ||
			    count > 1000000)
				return usage();
			n = (int)count;
			break;
		case 'c': challenge = optarg; break;
		case 'p': print = 1; break;
		case 's': stats = 1; break;
		case 'o':
			optname = optarg;
			if ((end = strchr(optarg, '=')) == NULL)
				return usage();
			*end = '\0';
			optvalue = end + 1;
			break;
		case 'L':
			pluginpath = optarg;
			cbs[4].id = SASL_CB_GETPATH;
			cbs[4].proc = (int (*)(void))(void *)getpath_cb;
			break;
		default: return usage();
		}
	if (user == NULL || optind != argc)
		return usage();
	if (challenge != NULL && sasl_decode64(challenge,
	    (unsigned)strlen(challenge), chal, sizeof(chal), &challen) != SASL_OK)
		return usage();
	if ((r = sasl_client_init(cbs)) != SASL_OK) {
		fprintf(stderr, "sasl_client_init: %s\n", sasl_errstring(r, NULL,
		    NULL));
		return 1;
	}
	snprintf(remote, sizeof(remote), "127.0.0.1;%s", port ? port : "143");
	for (i = 0; i < n; i++) {
		r = sasl_client_new("imap", host, "127.0.0.1;50000",
		    port ? remote : NULL, NULL, 0, &conn);
		if (r != SASL_OK)
			break;
		r = sasl_client_start(conn, mech, NULL, &out, &outlen, &chosen);
		if (r == SASL_CONTINUE || r == SASL_OK) {
			if (print)
				print64("initial:", out, outlen);
			r = sasl_client_step(conn, challenge ? chal : NULL,
			    challen, NULL, &out, &outlen);
			if (challenge != NULL && r == SASL_CONTINUE) {
				print64("answer:", out, outlen);
				r = SASL_FAIL;
				if (i + 1 < n) {	/* refused: next round */
					sasl_dispose(&conn);
					if (stats && (i + 1 == 10))
						print_stats(i + 1);
					continue;
				}
			}
		}
		if (r != SASL_OK) {
			fprintf(stderr, "saslclient: %s: %s\n",
			    sasl_errstring(r, NULL, NULL), sasl_errdetail(conn));
			sasl_dispose(&conn);
			break;
		}
		sasl_dispose(&conn);
		if (stats && (i + 1 == 10 || i + 1 == n))
			print_stats(i + 1);
	}
	if (stats && r != SASL_OK && challenge != NULL)
		print_stats(i + 1);
	sasl_client_done();
	return r == SASL_OK ? 0 : 1;
}
