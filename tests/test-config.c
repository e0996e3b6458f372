/*
 * The config loader: every error names file:line and the key; account
 * matching; defaults and inheritance.
 */
#include "config.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "conf.h"
#include "secret.h"
#include "tap.h"

static char dir[] = "/tmp/oa2-config-XXXXXX";
static char conf[300], secret[300], ca[300];

static void
put(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");

	if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0)
		abort();
	chmod(path, mode);
}

/* Expand @S@ (secret file) and @CA@ (CA file) in a template. */
static void
write_conf(const char *tmpl, mode_t mode)
{
	char buf[8192], *o = buf;
	const char *p;

	for (p = tmpl; *p != '\0'; p++) {
		if (strncmp(p, "@S@", 3) == 0) {
			o += sprintf(o, "%s", secret);
			p += 2;
		} else if (strncmp(p, "@CA@", 4) == 0) {
			o += sprintf(o, "%s", ca);
			p += 3;
		} else
			*o++ = *p;
	}
	*o = '\0';
	put(conf, buf, mode);
}

#define HEAD "version = 1;\ndefaults = { ca_file = \"@CA@\"; cache_dir = \"\"; };\n"
#define ACCT(m) "{ match = \"" m "\"; tenant = \"contoso.onmicrosoft.com\";\n" \
	"  client_id = \"00000000-0000-0000-0000-000000000001\";\n" \
	"  client_secret_file = \"@S@\"; }"

static const struct {
	const char *text;
	const char *want;	/* error substring; NULL: loads */
} cases[] = {
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\n", NULL },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\nfoo = ;\n",
	  ":6: syntax error" },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\nbogus = 1;\n",
	  ":6: unknown key \"bogus\" in the file" },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\n  @include \"/etc/x\"\n",
	  ":6: @include is not allowed" },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\n# @include \"x\"\n",
	  NULL },
	{ "version = 2;\n" "accounts = ( " ACCT("*") " );\n",
	  ":1: version must be between 1 and 1" },
	{ "defaults = { timeout = \"15\"; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: timeout must be an integer" },
	{ "defaults = { timeout = 0; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: timeout must be between 1 and 300" },
	{ "defaults = { failure_backoff = 3601; };\naccounts = ( " ACCT("*")
	  " );\n", ":1: failure_backoff must be between 0 and 3600" },
	{ "defaults = { log_level = \"loud\"; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: log_level must be" },
	{ "defaults = { authority = \"http://login.example\"; };\n"
	  "accounts = ( " ACCT("*") " );\n", ":1: authority must be an https://" },
	{ "defaults = { colour = 1; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: unknown key \"colour\" in defaults" },
	{ "defaults = { cache_dir = \"relative\"; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: cache_dir must be an absolute path" },
	{ "defaults = { ca_file = \"/nonexistent/ca.pem\"; };\n"
	  "accounts = ( " ACCT("*") " );\n",
	  "ca_file: cannot open CA file /nonexistent/ca.pem" },
	{ HEAD "\n", "no accounts" },
	{ HEAD "accounts = ();\n", ":3: accounts is empty" },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") ",\n " ACCT("*@CONTOSO.com") " );\n",
	  ":6: match \"*@CONTOSO.com\" is already used by the account at line 3" },
	{ HEAD "accounts = ( { tenant = \"t\"; client_id = \"c\"; client_secret = \"s\"; } );\n",
	  ":3: account without \"match\"" },
	{ HEAD "accounts = ( { match = \"a@@b\"; tenant = \"t\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "match \"a@@b\" is not a mailbox" },
	{ HEAD "accounts = ( { match = \"a*@b\"; tenant = \"t\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "is not a mailbox" },
	{ HEAD "accounts = ( { match = \"*\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", ":3: account \"*\" has no tenant" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"common\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "tenant \"common\" cannot be used" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t/x\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "tenant \"t/x\" is not a tenant id" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\";"
	  " client_secret = \"s\"; } );\n", "has no client_id" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\"; } );\n",
	  ":3: account \"*\" has no credential" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret = \"s\"; client_secret_file = \"@S@\"; } );\n",
	  ":3: account \"*\" has more than one credential" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret = \"\"; } );\n", ":4: client_secret must not be empty" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret = 5; } );\n", ":4: client_secret must be a string" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"/nonexistent\"; } );\n",
	  ":4: client_secret_file: cannot open secret file /nonexistent" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; private_key = \"/k\"; } );\n",
	  "a client secret takes no key" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; color = 1; } );\n",
	  ":4: unknown key \"color\" in an account" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; assertion_alg = \"HS256\"; } );\n",
	  ":4: assertion_alg must be \"PS256\" or \"RS256\"" },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " certificate = \"/c.pem\"; } );\n", "certificate needs private_key" },
	{ HEAD "accounts = ( 5 );\n", ":3: each entry of accounts must be a group" },
	{ HEAD "accounts = { a = 1; };\n", ":3: accounts must be a list" },
};

int
main(void)
{
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_error err;
	char want[600];
	size_t i;
	int r;

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(conf, sizeof(conf), "%s/sasl-oauth2.conf", dir);
	snprintf(secret, sizeof(secret), "%s/contoso.secret", dir);
	snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
	put(secret, "not-a-real-secret\n", 0600);
	put(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	    0644);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_conf(cases[i].text, 0600);
		r = oa2_config_load(conf, NULL, &cfg, &err);
		if (cases[i].want == NULL) {
			ok(r == 0 && cfg != NULL, "valid config loads");
			if (r != 0)
				printf("#   %s\n", err.msg);
		} else {
			ok(r == OA2_ERR_CONFIG || r == OA2_ERR_CREDENTIAL,
			    cases[i].want);
			ok(cfg == NULL, "no config on failure");
			has_str(err.msg, cases[i].want, "error sentence");
			snprintf(want, sizeof(want), "%s:", conf);
			has_str(err.msg, want, "error names the file");
		}
		oa2_config_free(&cfg);
	}

	/* Secrets: group-readable secret file, inline secret in a shared file. */
	chmod(secret, 0640);
	write_conf(HEAD "accounts = ( " ACCT("*") " );\n", 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) != 0, "group-readable secret");
	has_str(err.msg, ":5: client_secret_file: secret file", "names key");
	has_str(err.msg, "accessible by group or others", "and the cause");
	chmod(secret, 0600);
	write_conf(HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; "
	    "client_id = \"c\"; client_secret = \"inline\"; } );\n", 0644);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == OA2_ERR_CONFIG,
	    "inline secret in a world-readable config is refused");
	has_str(err.msg, "holds a client_secret but is accessible", "said so");
	ok(strstr(err.msg, "inline") == NULL, "the secret is not in the message");
	write_conf(HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; "
	    "client_id = \"c\"; client_secret = \"inline\"; } );\n", 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0, "private config ok");
	is_str(cfg->accounts[0].client_secret, "inline", "inline secret kept");
	oa2_config_free(&cfg);
	ok(cfg == NULL, "free clears the pointer");

	ok(oa2_config_load("/nonexistent/sasl-oauth2.conf", NULL, &cfg,
	    &err) == OA2_ERR_CONFIG, "missing file");
	has_str(err.msg, "cannot open configuration file "
	    "/nonexistent/sasl-oauth2.conf: No such file", "missing file named");

	/* Defaults, inheritance, the token URL, matching. */
	write_conf("version = 1;\n"
	    "defaults = { authority = \"HTTPS://login.example.net/\"; "
	    "ca_file = \"@CA@\"; timeout = 7; refresh_margin = 60; "
	    "log_level = \"debug\"; cache_dir = \"/var/tmp/x\"; };\n"
	    "accounts = (\n"
	    ACCT("*@contoso.com") ",\n"
	    "{ match = \"Boss@Contoso.com\"; tenant = \"t2\"; client_id = \"c2\";"
	    " client_secret_file = \"@S@\"; timeout = 3; cache_dir = \"\";"
	    " failure_backoff = 0;"
	    " scope = \"https://x/.default\"; },\n"
	    "{ match = \"*\"; tenant = \"t3\"; client_id = \"c3\";"
	    " client_secret_file = \"@S@\"; }\n"
	    ");\n", 0600);
	r = oa2_config_load(conf, NULL, &cfg, &err);
	ok(r == 0, "three accounts load");
	if (r != 0) {
		printf("#   %s\n", err.msg);
		return done_testing();
	}
	ok(cfg->naccounts == 3 && cfg->log_level == OA2_LOG_DEBUG, "counted");
	a = &cfg->accounts[0];
	is_str(a->token_url, "https://login.example.net/contoso.onmicrosoft.com"
	    "/oauth2/v2.0/token",
	    "token URL: scheme in lower case, trailing slash dropped");
	is_str(a->scope, "https://outlook.office365.com/.default", "default scope");
	ok(a->timeout == 7 && a->refresh_margin == 60 &&
	    a->failure_backoff == 60, "inherited numbers");
	is_str(a->cache_dir, "/var/tmp/x", "inherited cache_dir");
	is_str(a->client_secret, "not-a-real-secret", "secret read, trimmed");
	ok(a->ca != NULL && a->ca == cfg->accounts[1].ca, "CA read once, shared");
	ok(strlen(a->cache_key) == 32, "cache key is 32 hex digits");
	ok(strcmp(a->cache_key, cfg->accounts[1].cache_key) != 0,
	    "cache keys differ per credential");
	a = &cfg->accounts[1];
	ok(a->timeout == 3 && a->cache_dir == NULL &&
	    a->failure_backoff == 0, "account overrides");
	ok(strcmp(a->config_id, cfg->accounts[0].config_id) == 0 &&
	    a->config_id[0] != '\0', "every account knows the file's identity");
	is_str(a->scope, "https://x/.default", "scope override");
	is_str(oa2_config_match(cfg, "boss@contoso.com")->match,
	    "boss@contoso.com", "exact match wins, case-insensitive");
	is_str(oa2_config_match(cfg, "someone@CONTOSO.COM")->match,
	    "*@contoso.com", "domain match");
	is_str(oa2_config_match(cfg, "x@fabrikam.com")->match, "*",
	    "catch-all");
	is_str(oa2_config_match(cfg, "noatsign")->match, "*",
	    "a name without domain goes to the catch-all");
	is_str(oa2_config_match(cfg, "x@sub.contoso.com")->match, "*",
	    "a subdomain is not the domain");
	ok(oa2_config_changed(cfg) == 0, "unchanged file noticed");
	sleep(0);
	write_conf("# changed\n", 0600);
	ok(oa2_config_changed(cfg) == 1, "changed file noticed");
	oa2_config_free(&cfg);

	write_conf(HEAD "accounts = ( " ACCT("a@b.c") " );\n", 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0, "one exact account");
	ok(oa2_config_match(cfg, "x@b.c") == NULL, "no match is NULL");
	oa2_config_free(&cfg);

	is_str(oa2_config_path("/opt/x.conf"), "/opt/x.conf", "SASL option wins");
	setenv("SASL_OAUTH2_CONF", "/env.conf", 1);
	is_str(oa2_config_path(NULL), "/env.conf", "then the environment");
	unsetenv("SASL_OAUTH2_CONF");
	is_str(oa2_config_path(""), OA2_DEFAULT_CONF, "then the default");

	snprintf(want, sizeof(want), "rm -rf %s", dir);
	if (system(want) != 0)
		return 1;
	return done_testing();
}
