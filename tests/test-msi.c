/*
 * Unit test for cred-msi.c: the managed-identity answer parser (the
 * three endpoints' shapes, expires_in and expires_on, the refusals as
 * sentences), the Arc challenge's key-file rules, the endpoint check,
 * and how the endpoint is found from the environment. No network.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "msi.h"
#include "secret.h"
#include "tap.h"

#define NOW	((time_t)1800000000)

static const struct {
	int		proto;
	const char	*identity;
	long		status;
	const char	*body;
	int		code;		/* expected */
	long		expires_in;	/* on success */
	const char	*want;		/* substring of the sentence */
} parse_cases[] = {
	/* IMDS: strings, as IMDS sends them */
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"eyJ0.a.b\","
	    "\"expires_in\":\"3599\",\"expires_on\":\"1800003599\","
	    "\"resource\":\"https://outlook.office365.com\","
	    "\"token_type\":\"Bearer\"}", 0, 3599, NULL },
	/* Arc: expires_in a number */
	{ OA2_MSI_ARC, NULL, 200, "{\"access_token\":\"t\",\"expires_in\":"
	    "86399,\"token_type\":\"Bearer\"}", 0, 86399, NULL },
	/* App Service: expires_on only, a number, then a string */
	{ OA2_MSI_APP_SERVICE, NULL, 200, "{\"access_token\":\"t\","
	    "\"expires_on\":1800001000,\"token_type\":\"Bearer\"}", 0, 1000,
	    NULL },
	{ OA2_MSI_APP_SERVICE, NULL, 200, "{\"access_token\":\"t\","
	    "\"expires_on\":\"1800001000\"}", 0, 1000, NULL },
	/* expires_in wins over a disagreeing expires_on (clock skew) */
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"t\",\"expires_in\":"
	    "\"600\",\"expires_on\":\"1700000000\"}", 0, 600, NULL },
	{ OA2_MSI_APP_SERVICE, NULL, 200, "{\"access_token\":\"t\","
	    "\"expires_on\":1799999999}", OA2_ERR_RESPONSE, 0,
	    "check the clock" },
	{ OA2_MSI_APP_SERVICE, NULL, 200, "{\"access_token\":\"t\","
	    "\"expires_on\":\"06/20/2019 02:57:58 +00:00\"}",
	    OA2_ERR_RESPONSE, 0, "not a time between" },
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"t\"}",
	    OA2_ERR_RESPONSE, 0, "neither expires_in nor expires_on" },
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"t\",\"expires_in\":"
	    "\"-5\"}", OA2_ERR_RESPONSE, 0, "not a time" },
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"t\",\"expires_in\":"
	    "99999999999999999999}", OA2_ERR_RESPONSE, 0, NULL },
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"a b\",\"expires_in\":"
	    "60}", OA2_ERR_RESPONSE, 0, "spaces or control" },
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"t\",\"token_type\":"
	    "\"pop\",\"expires_in\":60}", OA2_ERR_RESPONSE, 0, "Bearer" },
	{ OA2_MSI_IMDS, NULL, 200, "{\"expires_in\":60}", OA2_ERR_RESPONSE, 0,
	    "no access_token" },
	{ OA2_MSI_IMDS, NULL, 200, "not json", OA2_ERR_RESPONSE, 0,
	    "not a JSON object" },
	{ OA2_MSI_IMDS, NULL, 200, "{\"access_token\":\"t\",\"access_token\":"
	    "\"u\",\"expires_in\":60}", OA2_ERR_RESPONSE, 0, NULL },
	/* IMDS's and App Service's "no such identity" */
	{ OA2_MSI_IMDS, NULL, 400, "{\"error\":\"invalid_request\","
	    "\"error_description\":\"Identity not found\"}", OA2_ERR_DENIED, 0,
	    "no managed identity is assigned to this host" },
	{ OA2_MSI_IMDS, "6f1c0a3e-0000-4000-8000-00000000dead", 400,
	    "{\"error\":\"invalid_request\",\"error_description\":\"Identity "
	    "not found\"}", OA2_ERR_DENIED, 0, "no managed identity with "
	    "client id 6f1c0a3e-0000-4000-8000-00000000dead" },
	{ OA2_MSI_APP_SERVICE, "6f1c0a3e-0000-4000-8000-00000000dead", 400,
	    "{\"statusCode\":400,\"message\":\"No Managed Identity found for "
	    "specified ClientId/ResourceId/PrincipalId.\"}", OA2_ERR_DENIED, 0,
	    "is assigned to this host" },
	{ OA2_MSI_IMDS, NULL, 400, "{\"error\":\"invalid_request\","
	    "\"error_description\":\"Required metadata header not "
	    "specified\"}", OA2_ERR_DENIED, 0, "(HTTP 400): invalid_request: "
	    "Required metadata header not specified" },
	{ OA2_MSI_APP_SERVICE, NULL, 401, "{\"statusCode\":401,\"message\":"
	    "\"bad\\u0001header\\nsecond line\"}", OA2_ERR_DENIED, 0,
	    "(HTTP 401): bad?header" },
	{ OA2_MSI_ARC, NULL, 400, "{\"error\":{\"code\":\"BadRequest\","
	    "\"message\":\"nope\"}}", OA2_ERR_DENIED, 0, "BadRequest: nope" },
	{ OA2_MSI_IMDS, NULL, 404, "{\"error\":\"not_found\"}",
	    OA2_ERR_TRANSIENT, 0, "HTTP 404" },
	{ OA2_MSI_IMDS, NULL, 429, "{}", OA2_ERR_TRANSIENT, 0, "HTTP 429" },
	{ OA2_MSI_IMDS, NULL, 503, "<html>busy</html>", OA2_ERR_TRANSIENT, 0,
	    "not a JSON object" },
	{ OA2_MSI_IMDS, NULL, 302, "", OA2_ERR_CONFIG, 0, "not followed" },
};

static void
test_parse(void)
{
	struct oa2_token tok;
	struct oa2_error err;
	char name[200];
	size_t i;
	int r;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		oa2_clearerr(&err);
		r = oa2_msi_parse(parse_cases[i].proto,
		    parse_cases[i].identity, parse_cases[i].status,
		    parse_cases[i].body, strlen(parse_cases[i].body), NOW,
		    &tok, &err);
		snprintf(name, sizeof(name), "parse %zu: code %d", i,
		    parse_cases[i].code);
		if (!ok(r == parse_cases[i].code, name))
			printf("#   got %d: %s\n", r, err.msg);
		if (r == 0) {
			snprintf(name, sizeof(name), "parse %zu: expiry", i);
			ok(tok.access_token != NULL && tok.expires_at ==
			    NOW + parse_cases[i].expires_in, name);
		} else {
			snprintf(name, sizeof(name), "parse %zu: no token", i);
			ok(tok.access_token == NULL, name);
		}
		if (parse_cases[i].want != NULL) {
			snprintf(name, sizeof(name), "parse %zu: sentence", i);
			has_str(err.msg, parse_cases[i].want, name);
		}
		oa2_token_clear(&tok);
	}
	r = oa2_msi_parse(OA2_MSI_IMDS, NULL, 200, NULL, 0, NOW, &tok, &err);
	ok(r == OA2_ERR_RESPONSE && tok.access_token == NULL, "parse: no body");
}

static void
put(const char *path, const char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);

	if (fd == -1 || write(fd, data, len) != (ssize_t)len)
		printf("# cannot write %s: %s\n", path, strerror(errno));
	if (fd != -1)
		close(fd);
}

static void
test_arc_key(const char *dir)
{
	char keys[300], outside[300], path[400], www[500], big[5000];
	struct oa2_error err;
	char *key = NULL;
	int r;

	snprintf(keys, sizeof(keys), "%s/tokens", dir);
	snprintf(outside, sizeof(outside), "%s/outside", dir);
	mkdir(keys, 0750);
	mkdir(outside, 0750);
	snprintf(path, sizeof(path), "%s/good.key", keys);
	put(path, "k3y-value\n", 10);
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == 0, "arc: a key file in the directory is read");
	is_str(key, "k3y-value", "arc: its trailing newline dropped");
	oa2_freezero_str(&key);
	snprintf(www, sizeof(www), "basic  realm=\"%s\"", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == 0 && key != NULL, "arc: a quoted realm, any case of Basic");
	oa2_freezero_str(&key);

	/* outside the directory, however it is spelt */
	snprintf(path, sizeof(path), "%s/evil.key", outside);
	put(path, "stolen", 6);
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_RESPONSE && key == NULL, "arc: outside the dir");
	has_str(err.msg, "which is not in", "arc: outside: sentence");
	snprintf(www, sizeof(www), "Basic realm=%s/../outside/evil.key", keys);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_RESPONSE && key == NULL, "arc: .. refused");
	snprintf(www, sizeof(www), "Basic realm=%s/sub/x.key", keys);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_RESPONSE, "arc: a subdirectory refused");
	snprintf(www, sizeof(www), "Basic realm=%sx/a.key", keys);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_RESPONSE, "arc: a sibling dir with the same prefix");
	snprintf(www, sizeof(www), "Basic realm=%s/notakey", keys);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_RESPONSE, "arc: a name without .key refused");
	snprintf(www, sizeof(www), "Basic realm=%s/.key", keys);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_RESPONSE, "arc: \".key\" alone refused");
	r = oa2_msi_arc_key(keys, "Bearer realm=x", &key, &err);
	ok(r == OA2_ERR_RESPONSE, "arc: not Basic");
	has_str(err.msg, "Basic realm=", "arc: not Basic: sentence");
	r = oa2_msi_arc_key(keys, "", &key, &err);
	ok(r == OA2_ERR_RESPONSE, "arc: no challenge");
	r = oa2_msi_arc_key(keys, "Basic charset=x", &key, &err);
	ok(r == OA2_ERR_RESPONSE, "arc: no realm");

	/* a symbolic link in the directory to a file outside it */
	snprintf(path, sizeof(path), "%s/link.key", keys);
	{
		char target[400];

		snprintf(target, sizeof(target), "%s/evil.key", outside);
		unlink(path);
		if (symlink(target, path) != 0)
			printf("# symlink: %s\n", strerror(errno));
	}
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_CREDENTIAL && key == NULL, "arc: a symlink refused");
	has_str(err.msg, "symbolic link", "arc: symlink: sentence");

	/* size: 4096 is fine, 4097 is not, nor is 0 */
	memset(big, 'A', sizeof(big));
	snprintf(path, sizeof(path), "%s/max.key", keys);
	put(path, big, OA2_MSI_ARC_KEY_MAX);
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == 0 && key != NULL && strlen(key) == OA2_MSI_ARC_KEY_MAX,
	    "arc: a 4096-byte key is read");
	oa2_freezero_str(&key);
	snprintf(path, sizeof(path), "%s/big.key", keys);
	put(path, big, OA2_MSI_ARC_KEY_MAX + 1);
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_CREDENTIAL && key == NULL, "arc: 4097 bytes refused");
	has_str(err.msg, "holds 4097 bytes", "arc: too big: sentence");
	snprintf(path, sizeof(path), "%s/empty.key", keys);
	put(path, "", 0);
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_CREDENTIAL, "arc: an empty file refused");
	snprintf(path, sizeof(path), "%s/crlf.key", keys);
	put(path, "a\r\nAuthorization: x", 19);
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_CREDENTIAL && key == NULL,
	    "arc: a key with a line break (header injection) refused");
	ok(strstr(err.msg, "Authorization") == NULL, "arc: key not quoted");
	snprintf(path, sizeof(path), "%s/dir.key", keys);
	mkdir(path, 0700);
	snprintf(www, sizeof(www), "Basic realm=%s", path);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_CREDENTIAL, "arc: a directory refused");
	rmdir(path);
	snprintf(path, sizeof(path), "%s/fifo.key", keys);
	if (mkfifo(path, 0600) == 0) {
		snprintf(www, sizeof(www), "Basic realm=%s", path);
		r = oa2_msi_arc_key(keys, www, &key, &err);
		ok(r == OA2_ERR_CREDENTIAL, "arc: a FIFO refused, not waited "
		    "on");
	}
	snprintf(www, sizeof(www), "Basic realm=%s/missing.key", keys);
	r = oa2_msi_arc_key(keys, www, &key, &err);
	ok(r == OA2_ERR_CREDENTIAL, "arc: a missing file");

	/* clean up */
	{
		static const char *const names[] = { "good.key", "link.key",
		    "max.key", "big.key", "empty.key", "crlf.key", "fifo.key",
		    NULL };
		int i;

		for (i = 0; names[i] != NULL; i++) {
			snprintf(path, sizeof(path), "%s/%s", keys, names[i]);
			unlink(path);
		}
		snprintf(path, sizeof(path), "%s/evil.key", outside);
		unlink(path);
		rmdir(keys);
		rmdir(outside);
	}
}

static void
test_endpoint(void)
{
	static const struct {
		const char	*url;
		int		ok;
	} cases[] = {
		{ "http://169.254.169.254/metadata/identity/oauth2/token", 1 },
		{ "http://localhost:40342/metadata/identity/oauth2/token", 1 },
		{ "http://127.0.0.1:8081/msi/token", 1 },
		{ "http://[::1]:8081/msi/token", 1 },
		{ "http://[fe80::1]/token", 1 },
		{ "HTTP://127.0.0.1/token?x=1", 1 },
		{ "https://identity.example.com/token", 1 },
		{ "http://some.name.internal/token", 1 },	/* at connect */
		{ "http://10.0.0.4/token", 0 },
		{ "http://192.0.2.1:80/token", 0 },
		{ "http://[2001:db8::1]/token", 0 },
		{ "ftp://127.0.0.1/token", 0 },
		{ "127.0.0.1/token", 0 },
		{ "http://127.0.0.1/to ken", 0 },
		{ "http://127.0.0.1/token#x", 0 },
		{ "http://user:pw@127.0.0.1/token", 0 },
		{ "http:///token", 0 },
	};
	struct oa2_error err;
	char name[200];
	size_t i;
	int r;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		r = oa2_msi_check_endpoint(cases[i].url, &err);
		snprintf(name, sizeof(name), "endpoint %s %s", cases[i].url,
		    cases[i].ok ? "allowed" : "refused");
		if (!ok((r == 0) == cases[i].ok, name))
			printf("#   %s\n", err.msg);
	}
	r = oa2_msi_check_endpoint("http://10.0.0.4/token", &err);
	has_str(err.msg, "neither loopback nor link-local", "non-local: why");
}

static void
test_target(void)
{
	struct oa2_msi m;
	struct oa2_msi_target t;
	struct oa2_error err;
	int r;

	memset(&m, 0, sizeof(m));
	unsetenv("IDENTITY_ENDPOINT");
	unsetenv("IDENTITY_HEADER");
	unsetenv("IMDS_ENDPOINT");
	r = oa2_msi_target(&m, &t, &err);
	if (access("/var/opt/azcmagent/bin/himds", F_OK) != 0) {
		ok(r == 0 && t.protocol == OA2_MSI_IMDS, "no environment: IMDS");
		is_str(t.url, "http://169.254.169.254/metadata/identity/oauth2/"
		    "token", "IMDS's address");
	}
	setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:41234/msi/token", 1);
	setenv("IDENTITY_HEADER", "h", 1);
	r = oa2_msi_target(&m, &t, &err);
	ok(r == 0 && t.protocol == OA2_MSI_APP_SERVICE,
	    "IDENTITY_ENDPOINT and IDENTITY_HEADER: App Service");
	is_str(t.header, "h", "App Service: the header from the environment");
	is_str(t.source, "from IDENTITY_ENDPOINT and IDENTITY_HEADER",
	    "App Service: found through");
	unsetenv("IDENTITY_HEADER");
	setenv("IMDS_ENDPOINT", "http://localhost:40342", 1);
	r = oa2_msi_target(&m, &t, &err);
	ok(r == 0 && t.protocol == OA2_MSI_ARC,
	    "IDENTITY_ENDPOINT and IMDS_ENDPOINT: Arc");
	is_str(t.url, "http://127.0.0.1:41234/msi/token", "Arc: its URL");
	setenv("IDENTITY_ENDPOINT", "http://10.1.2.3/token", 1);
	r = oa2_msi_target(&m, &t, &err);
	ok(r == OA2_ERR_CONFIG, "a non-local IDENTITY_ENDPOINT refused");
	has_str(err.msg, "IDENTITY_ENDPOINT in the environment",
	    "non-local IDENTITY_ENDPOINT: sentence");
	/* the account's endpoint wins over the environment */
	m.endpoint = "http://127.0.0.1:9/imds";
	m.protocol = OA2_MSI_IMDS;
	r = oa2_msi_target(&m, &t, &err);
	ok(r == 0 && t.protocol == OA2_MSI_IMDS &&
	    strcmp(t.url, m.endpoint) == 0 &&
	    strcmp(t.source, "from managed_identity_endpoint") == 0,
	    "managed_identity_endpoint wins over the environment");
	unsetenv("IDENTITY_ENDPOINT");
	unsetenv("IMDS_ENDPOINT");

	/* the Arc key directory: the test override, absolute only */
	unsetenv("SASL_OAUTH2_ARC_TOKEN_DIR");
	is_str(oa2_msi_arc_dir(), "/var/opt/azcmagent/tokens",
	    "Arc key directory by default");
	setenv("SASL_OAUTH2_ARC_TOKEN_DIR", "relative", 1);
	is_str(oa2_msi_arc_dir(), "/var/opt/azcmagent/tokens",
	    "a relative override is ignored");
	setenv("SASL_OAUTH2_ARC_TOKEN_DIR", "/tmp/x", 1);
	is_str(oa2_msi_arc_dir(), "/tmp/x", "an absolute override is used");
	unsetenv("SASL_OAUTH2_ARC_TOKEN_DIR");
}

int
main(void)
{
	char dir[] = "/tmp/test-msi.XXXXXX";

	test_parse();
	test_endpoint();
	test_target();
	if (mkdtemp(dir) != NULL) {
		test_arc_key(dir);
		rmdir(dir);
	} else
		ok(0, "mkdtemp");
	return done_testing();
}
