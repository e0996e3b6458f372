/*
 * The config loader: every error names file:line and the key; account
 * matching; defaults and inheritance.
 */
#include "config.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <malloc.h>
#include <pwd.h>
#include <unistd.h>

#include <jansson.h>

#include "conf.h"
#include "cred.h"
#include "jwt.h"
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
	int broken;		/* the error disables the account, not all */
} cases[] = {
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\n", NULL, 0 },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\nfoo = ;\n",
	  ":6: syntax error", 0 },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\nbogus = 1;\n",
	  ":6: unknown key \"bogus\" in the file", 0 },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\n  @include \"/etc/x\"\n",
	  ":6: @include is not allowed", 0 },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") " );\n# @include \"x\"\n",
	  NULL, 0 },
	{ "version = 2;\n" "accounts = ( " ACCT("*") " );\n",
	  ":1: version must be between 1 and 1", 0 },
	{ "defaults = { timeout = \"15\"; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: timeout must be an integer", 0 },
	{ "defaults = { timeout = 0; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: timeout must be between 1 and 300", 0 },
	{ "defaults = { failure_backoff = 3601; };\naccounts = ( " ACCT("*")
	  " );\n", ":1: failure_backoff must be between 0 and 3600", 0 },
	{ "defaults = { log_level = \"loud\"; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: log_level must be", 0 },
	{ "defaults = { authority = \"http://login.example\"; };\n"
	  "accounts = ( " ACCT("*") " );\n", ":1: authority must be an https://", 0 },
	{ "defaults = { colour = 1; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: unknown key \"colour\" in defaults", 0 },
	{ "defaults = { cache_dir = \"relative\"; };\naccounts = ( " ACCT("*") " );\n",
	  ":1: cache_dir must be an absolute path", 0 },
	{ "defaults = { ca_file = \"/nonexistent/ca.pem\"; };\n"
	  "accounts = ( " ACCT("*") " );\n",
	  "ca_file: cannot open CA file /nonexistent/ca.pem", 0 },
	{ HEAD "\n", "no accounts", 0 },
	{ HEAD "accounts = ();\n", ":3: accounts is empty", 0 },
	{ HEAD "accounts = ( " ACCT("*@contoso.com") ",\n " ACCT("*@CONTOSO.com") " );\n",
	  ":6: match \"*@CONTOSO.com\" is already used by the account at line 3", 0 },
	{ HEAD "accounts = ( { tenant = \"t\"; client_id = \"c\"; client_secret = \"s\"; } );\n",
	  ":3: account without \"match\"", 0 },
	{ HEAD "accounts = ( { match = \"a@@b\"; tenant = \"t\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "match \"a@@b\" is not a mailbox", 0 },
	{ HEAD "accounts = ( { match = \"a*@b\"; tenant = \"t\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "is not a mailbox", 0 },
	{ HEAD "accounts = ( { match = \"*\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", ":3: account \"*\" has no tenant", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"common\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "tenant \"common\" cannot be used", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t/x\"; client_id = \"c\";"
	  " client_secret = \"s\"; } );\n", "tenant \"t/x\" is not a tenant id", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\";"
	  " client_secret = \"s\"; } );\n", "has no client_id", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\"; } );\n",
	  ":3: account \"*\" has no credential", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret = \"s\"; client_secret_file = \"@S@\"; } );\n",
	  ":3: account \"*\" has more than one credential", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret = \"\"; } );\n", ":4: client_secret must not be empty", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret = 5; } );\n", ":4: client_secret must be a string", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"/nonexistent\"; } );\n",
	  ":4: client_secret_file: cannot open secret file /nonexistent", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; private_key = \"/k\"; } );\n",
	  "a client secret takes no key", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; color = 1; } );\n",
	  ":4: unknown key \"color\" in an account", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; assertion_alg = \"HS256\"; } );\n",
	  ":4: assertion_alg must be \"PS256\" or \"RS256\"", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " certificate = \"/c.pem\"; } );\n", "certificate needs private_key", 1 },
	/* Azure managed identity (issue 12) */
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " managed_identity_endpoint = \"http://127.0.0.1:9/t\"; } );\n", NULL, 0 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\"; } );\n",
	  NULL, 0 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"mine\"; } );\n",
	  ":3: account \"*\": managed_identity is \"system\" or the client id", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " client_id = \"00000000-0000-0000-0000-000000000001\"; } );\n",
	  ":4: account \"*\" uses a managed identity: it takes no client_id", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " client_secret_file = \"@S@\"; } );\n", "more than one credential", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " managed_identity_endpoint = \"http://10.1.2.3/t\"; } );\n",
	  ":4: managed_identity_endpoint: plain http:// to 10.1.2.3, which is "
	  "neither loopback nor link-local, is refused", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " managed_identity_endpoint = \"ftp://127.0.0.1/t\"; } );\n",
	  "an http:// or https:// URL is needed", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " managed_identity_protocol = \"arc\"; } );\n",
	  "managed_identity_protocol goes with managed_identity_endpoint", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " managed_identity_endpoint = \"http://127.0.0.1:9/t\";\n"
	  " managed_identity_protocol = \"azure\"; } );\n",
	  ":5: managed_identity_protocol is \"imds\", \"app-service\" or \"arc\"", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " managed_identity_endpoint = \"http://127.0.0.1:9/t\";\n"
	  " managed_identity_protocol = \"app-service\"; } );\n",
	  "the App Service protocol needs managed_identity_header_file", 1 },
	{ HEAD "accounts = ( { match = \"*\";\n"
	  " managed_identity = \"6f1c0a3e-0000-4000-8000-00000000a002\";\n"
	  " managed_identity_endpoint = \"http://localhost:40342/t\"; } );\n",
	  ":4: account \"*\": the Azure Arc agent serves only the machine's "
	  "system-assigned identity", 1 },
	{ HEAD "accounts = ( { match = \"*\"; managed_identity = \"system\";\n"
	  " managed_identity_endpoint = \"http://127.0.0.1:9/t\";\n"
	  " managed_identity_header_file = \"/nonexistent\"; } );\n",
	  ":5: managed_identity_header_file: cannot open", 1 },
	/* rollover and expiry (issue 17) */
	{ "defaults = { expiry_warning = 400; };\naccounts = ( " ACCT("*")
	  " );\n", ":1: expiry_warning must be between 0 and 365", 0 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; client_secret_expires = \"2027-13-01\"; } );\n",
	  ":4: client_secret_expires must be a date \"YYYY-MM-DD\"", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; next_client_secret_expires = \"1.1.2027\"; } );\n",
	  ":4: next_client_secret_expires must be a date", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; next_certificate = \"/c.pem\"; } );\n",
	  ":4: account \"*\" uses a client secret: its next credential is "
	  "next_client_secret_file or next_client_secret", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; next_client_secret = \"n\";\n"
	  " next_client_secret_file = \"@S@\"; } );\n",
	  ":4: account \"*\": keep one of next_client_secret_file and "
	  "next_client_secret", 1 },
	{ HEAD "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	  " client_secret_file = \"@S@\"; next_client_secret = 5; } );\n",
	  ":4: next_client_secret must be a string", 1 },
	{ HEAD "accounts = ( 5 );\n", ":3: each entry of accounts must be a group", 0 },
	{ HEAD "accounts = { a = 1; };\n", ":3: accounts must be a list", 0 },
};

/* The log, kept for a check. */
static char logged[4096];

static void
log_keep(void *ctx, int level, const char *msg)
{
	size_t n = strlen(logged);

	snprintf(logged + n, sizeof(logged) - n, "%s\n", msg);
}

static const struct oa2_log keep_log = { log_keep, NULL, OA2_LOG_DEBUG };

static int
sh(const char *cmd)
{
	return system(cmd) == 0;
}

/*
 * Issue 17: a next secret is loaded with its own cache key; rotation
 * swaps the two; a next one that cannot be loaded leaves the account
 * working with the current one; dates and expiry_warning are read.
 */
static void
rollover(void)
{
	struct oa2_config *cfg = NULL;
	struct oa2_account *a;
	struct oa2_error err;
	char key[33];

	write_conf("version = 1;\ndefaults = { ca_file = \"@CA@\"; "
	    "cache_dir = \"\"; expiry_warning = 20; };\n"
	    "accounts = ( { match = \"a@b.c\"; tenant = \"t\"; "
	    "client_id = \"c\";\n client_secret_file = \"@S@\";\n"
	    " next_client_secret = \"next-one\";\n"
	    " client_secret_expires = \"2030-01-02\";\n"
	    " next_client_secret_expires = \"2031-02-03\"; },\n"
	    "{ match = \"d@b.c\"; tenant = \"t\"; client_id = \"c\";\n"
	    " client_secret_file = \"@S@\";\n"
	    " next_client_secret_file = \"/nonexistent\"; },\n"
	    "{ match = \"e@b.c\"; tenant = \"t\"; client_id = \"c\";\n"
	    " client_secret_file = \"/nonexistent\";\n"
	    " next_client_secret = \"next-two\"; } );\n", 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 0,
	    "rollover: accounts with next secrets load");
	if (cfg == NULL) {
		printf("#   %s\n", err.msg);
		return;
	}
	a = &cfg->accounts[0];
	ok(oa2_account_has_next(a) && strlen(a->next_cache_key) == 32 &&
	    strcmp(a->cache_key, a->next_cache_key) != 0,
	    "rollover: the next secret has a cache key of its own");
	ok(a->expiry_warning == 20 * 86400, "expiry_warning in days");
	ok(oa2_account_expires(a, 0) == 1893542400 &&
	    oa2_account_expires(a, 1) == 1927843200,
	    "client_secret_expires dates: 00:00 UTC");
	is_str(oa2_account_cred_name(a, 0), "the current client secret",
	    "the one in use is the current one");
	memcpy(key, a->next_cache_key, sizeof(key));
	oa2_account_rotate(a);
	ok(a->rotated && strcmp(a->client_secret, "next-one") == 0 &&
	    strcmp(a->next_client_secret, "not-a-real-secret") == 0 &&
	    strcmp(a->cache_key, key) == 0 &&
	    oa2_account_expires(a, 0) == 1927843200,
	    "rotate: the next secret, its cache key and date in use");
	is_str(oa2_account_cred_name(a, 0), "the next client secret",
	    "and it is called the next one");
	oa2_account_rotate(a);
	ok(!a->rotated && strcmp(a->client_secret, "not-a-real-secret") == 0,
	    "rotate again: back");
	a = &cfg->accounts[1];
	ok(!a->broken && !oa2_account_has_next(a) &&
	    a->client_secret != NULL, "an unreadable next secret: the "
	    "account works with the current one");
	has_str(a->next_err.msg, ":10: next_client_secret_file: cannot open "
	    "secret file /nonexistent", "and the next one's sentence is kept");
	a = &cfg->accounts[2];
	ok(!a->broken && a->rotated && !oa2_account_has_next(a) &&
	    a->client_secret != NULL && strcmp(a->client_secret, "next-two")
	    == 0 && strlen(a->cache_key) == 32, "an unusable current secret "
	    "with a usable next one: the account uses the next one");
	has_str(a->next_err.msg, ":12: client_secret_file: cannot open secret "
	    "file /nonexistent", "and keeps the current one's sentence");
	is_str(oa2_account_cred_name(a, 1), "the current client secret",
	    "which is called the current one");
	oa2_config_free(&cfg);
}

/*
 * Issue 12, item 3: cloud sets authority and scope in one word (the
 * token URL, and so a certificate assertion's aud, follows); an
 * authority or scope set beside it, or in an account over a cloud in
 * defaults, wins; an unknown cloud breaks the account or the file.
 */
static void
clouds(void)
{
	static const struct {
		const char *cloud, *url, *scope;
	} want[] = {
		{ "global", "https://login.microsoftonline.com/t/oauth2/v2.0/"
		    "token", "https://outlook.office365.com/.default" },
		{ "usgov", "https://login.microsoftonline.us/t/oauth2/v2.0/"
		    "token", "https://outlook.office365.us/.default" },
		{ "usgov-dod", "https://login.microsoftonline.us/t/oauth2/v2.0/"
		    "token", "https://outlook-dod.office365.us/.default" },
		{ "china", "https://login.partner.microsoftonline.cn/t/oauth2/"
		    "v2.0/token", "https://partner.outlook.cn/.default" },
	};
	struct oa2_config *cfg = NULL;
	struct oa2_account *a;
	struct oa2_error err;
	char text[2048], name[80];
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(text, sizeof(text), HEAD "accounts = ( { match = "
		    "\"*\"; cloud = \"%s\"; tenant = \"t\"; client_id = "
		    "\"c\"; client_secret_file = \"@S@\"; } );\n",
		    want[i].cloud);
		write_conf(text, 0600);
		snprintf(name, sizeof(name), "cloud %s: the token URL",
		    want[i].cloud);
		if (oa2_config_load(conf, NULL, &cfg, &err) != 0 ||
		    cfg->nbroken != 0) {
			ok(0, name);
			printf("#   %s\n", err.msg);
			oa2_config_free(&cfg);
			continue;
		}
		is_str(cfg->accounts[0].token_url, want[i].url, name);
		snprintf(name, sizeof(name), "cloud %s: the scope",
		    want[i].cloud);
		is_str(cfg->accounts[0].scope, want[i].scope, name);
		oa2_config_free(&cfg);
	}
	write_conf("version = 1;\ndefaults = { ca_file = \"@CA@\"; "
	    "cache_dir = \"\"; cloud = \"china\"; };\naccounts = (\n"
	    "{ match = \"a@b.c\"; tenant = \"t\"; client_id = \"c\";"
	    " client_secret_file = \"@S@\"; },\n"
	    "{ match = \"d@b.c\"; tenant = \"t\"; client_id = \"c\";"
	    " client_secret_file = \"@S@\"; cloud = \"usgov\";"
	    " authority = \"https://127.0.0.1:4443/\"; },\n"
	    "{ match = \"e@b.c\"; tenant = \"t\"; client_id = \"c\";"
	    " client_secret_file = \"@S@\"; scope = \"https://x/.default\"; }"
	    " );\n", 0600);
	if (oa2_config_load(conf, NULL, &cfg, &err) != 0) {
		ok(0, "clouds in defaults and accounts load");
		printf("#   %s\n", err.msg);
		return;
	}
	a = &cfg->accounts[0];
	ok(strcmp(a->token_url, "https://login.partner.microsoftonline.cn/t/"
	    "oauth2/v2.0/token") == 0 && strcmp(a->scope,
	    "https://partner.outlook.cn/.default") == 0,
	    "a cloud in defaults is inherited");
	a = &cfg->accounts[1];
	ok(strcmp(a->token_url, "https://127.0.0.1:4443/t/oauth2/v2.0/token")
	    == 0 && strcmp(a->scope, "https://outlook.office365.us/.default")
	    == 0, "an authority beside cloud wins; the cloud's scope stays");
	a = &cfg->accounts[2];
	ok(strcmp(a->token_url, "https://login.partner.microsoftonline.cn/t/"
	    "oauth2/v2.0/token") == 0 && strcmp(a->scope,
	    "https://x/.default") == 0,
	    "an account's scope wins over the cloud of defaults");
	oa2_config_free(&cfg);
	write_conf(HEAD "accounts = ( { match = \"*\"; tenant = \"t\";\n"
	    " client_id = \"c\"; cloud = \"germany\";"
	    " client_secret_file = \"@S@\"; } );\n", 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 1,
	    "an unknown cloud breaks the account");
	if (cfg != NULL)
		has_str(cfg->accounts[0].load_err.msg, ":4: cloud must be "
		    "\"global\", \"usgov\", \"usgov-dod\" or \"china\"",
		    "with a sentence naming the four");
	oa2_config_free(&cfg);
	write_conf("version = 1;\ndefaults = { cloud = 1; };\naccounts = ( "
	    ACCT("*") " );\n", 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == OA2_ERR_CONFIG,
	    "a cloud that is not a string in defaults fails the file");
	has_str(err.msg, ":2: cloud must be a string", "and says so");
	oa2_config_free(&cfg);
}

/*
 * Issue 12, item 1: client_assertion_file loads without reading the
 * file (read on every request), with tenant and client_id and no other
 * credential; its cache key names the path, not the token; a request
 * reads the file afresh, refuses one that is not private, not a JWT or
 * expired, and sends it as a client assertion.
 */
static void
federated(void)
{
	static const char jwt[] = "eyJhbGciOiJSUzI1NiJ9."
	    /* {"iss":"https://i/","sub":"s","aud":"api://AzureADTokenExchange","exp":2000000000} */
	    "eyJpc3MiOiJodHRwczovL2kvIiwic3ViIjoicyIsImF1ZCI6ImFwaTovL0F6dXJl"
	    "QURUb2tlbkV4Y2hhbmdlIiwiZXhwIjoyMDAwMDAwMDAwfQ.c2ln";
	struct oa2_config *cfg = NULL;
	struct oa2_account *a, *b;
	struct oa2_grant g;
	struct oa2_error err;
	struct oa2_jwt_info info;
	char text[2048], tok[300], tok2[300], *t = NULL;
	size_t len;

	snprintf(tok, sizeof(tok), "%s/fed.token", dir);
	snprintf(tok2, sizeof(tok2), "%s/fed2.token", dir);
	snprintf(text, sizeof(text), HEAD "accounts = (\n"
	    "{ match = \"a@b.c\"; tenant = \"t\"; client_id = \"c\";"
	    " client_assertion_file = \"%s\"; },\n"
	    "{ match = \"d@b.c\"; tenant = \"t\"; client_id = \"c\";"
	    " client_assertion_file = \"%s\"; } );\n", tok, tok2);
	write_conf(text, 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 0,
	    "federated: loads while the token file does not exist yet");
	if (cfg == NULL) {
		printf("#   %s\n", err.msg);
		return;
	}
	a = &cfg->accounts[0];
	b = &cfg->accounts[1];
	ok(a->kind == &oa2_cred_federated && strlen(a->cache_key) == 32 &&
	    strcmp(a->cache_key, b->cache_key) != 0,
	    "federated: the cache key names the file's path");
	is_str(oa2_federated_path(a), tok, "federated: the path is kept");
	memset(&g, 0, sizeof(g));
	ok(a->kind->grant(a, NULL, 1900000000, &g, &err) ==
	    OA2_ERR_CREDENTIAL && g.form == NULL, "federated: no file, no "
	    "request");
	has_str(err.msg, "cannot open federated token file", "its sentence");
	has_str(err.msg, "is the token projector", "asks for the projector");
	put(tok, jwt, 0644);
	ok(a->kind->grant(a, NULL, 1900000000, &g, &err) ==
	    OA2_ERR_CREDENTIAL, "federated: a file others may read is "
	    "refused");
	has_str(err.msg, "is accessible by group or others", "its sentence");
	put(tok, "not a token\n", 0600);
	ok(a->kind->grant(a, NULL, 1900000000, &g, &err) ==
	    OA2_ERR_CREDENTIAL, "federated: not a JWT");
	has_str(err.msg, "the federated token in ", "its sentence");
	has_str(err.msg, "is not a JWT: it holds a character", "and reason");
	put(tok, jwt, 0600);
	ok(a->kind->grant(a, NULL, 2000000000, &g, &err) ==
	    OA2_ERR_CREDENTIAL, "federated: expired at exp");
	has_str(err.msg, "expired at 2033-05-18 03:33:20 UTC: is the token "
	    "projector running?", "its sentence, with the time");
	snprintf(text, sizeof(text), "%s\n", jwt);
	put(tok, text, 0600);
	ok(a->kind->grant(a, NULL, 1900000000, &g, &err) == 0 &&
	    g.form != NULL, "federated: a good token gives a form");
	has_str(g.form, "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
	    "client-assertion-type%3Ajwt-bearer", "the assertion type");
	snprintf(text, sizeof(text), "&client_assertion=%s", jwt);
	ok(g.form != NULL && strlen(g.form) >= strlen(text) &&
	    strcmp(g.form + strlen(g.form) - strlen(text), text) == 0,
	    "the token as it is, without its newline");
	has_str(g.form, "grant_type=client_credentials&client_id=c&",
	    "in the client-credentials grant");
	oa2_grant_clear(&g);
	ok(oa2_federated_read(tok, 1900000000, &t, &len, &info, &err) == 0 &&
	    len == strlen(jwt) && strcmp(info.sub, "s") == 0 &&
	    info.exp == 2000000000, "oa2_federated_read: token and claims");
	if (t != NULL)
		oa2_freezero(t, len + 1);
	oa2_config_free(&cfg);

	/* what the account may not hold */
	snprintf(text, sizeof(text), HEAD "accounts = ( { match = \"*\";"
	    " client_id = \"c\";\n client_assertion_file = \"%s\"; } );\n",
	    tok);
	write_conf(text, 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 1,
	    "federated: no tenant breaks the account");
	if (cfg != NULL)
		has_str(cfg->accounts[0].load_err.msg, "has no tenant",
		    "and says so");
	oa2_config_free(&cfg);
	snprintf(text, sizeof(text), HEAD "accounts = ( { match = \"*\";"
	    " tenant = \"t\"; client_id = \"c\";\n client_assertion_file ="
	    " \"%s\"; client_secret_file = \"@S@\"; } );\n", tok);
	write_conf(text, 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 1,
	    "federated and a secret: the account is broken");
	oa2_config_free(&cfg);
	write_conf(HEAD "accounts = ( { match = \"*\"; tenant = \"t\";"
	    " client_id = \"c\";\n client_assertion_file = \"token\"; } );\n",
	    0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 1,
	    "federated: a relative path breaks the account");
	if (cfg != NULL)
		has_str(cfg->accounts[0].load_err.msg, ":4: "
		    "client_assertion_file must be an absolute path",
		    "with file:line");
	oa2_config_free(&cfg);
	write_conf(HEAD "accounts = ( { match = \"*\"; tenant = \"t\";"
	    " client_id = \"c\";\n client_assertion_file = \"/x\";"
	    " next_client_secret = \"n\"; } );\n", 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 1,
	    "federated: no next_* (nothing to roll over)");
	oa2_config_free(&cfg);
	unlink(tok);
}

/*
 * Issue 10, item 8: a 0644 secret file for *@contoso.com disabled
 * bob@fabrikam.com too. Now each account loads on its own.
 */
static void
one_bad_account(void)
{
	struct oa2_config *cfg = NULL;
	struct oa2_account *a;
	struct oa2_error err;
	char text[4096], sc[300], sf[300], want[1400];
	int r;

	snprintf(sc, sizeof(sc), "%s/contoso-644.secret", dir);
	snprintf(sf, sizeof(sf), "%s/fabrikam.secret", dir);
	put(sc, "contoso-secret\n", 0644);
	put(sf, "fabrikam-secret\n", 0600);
	snprintf(text, sizeof(text), "version = 1;\n"		/* 1 */
	    "defaults = { ca_file = \"%s\"; cache_dir = \"\"; };\n"
	    "accounts = (\n"
	    "{ match = \"*@contoso.com\"; tenant = \"contoso.com\";\n"	/* 4 */
	    "  client_id = \"c1\";\n"
	    "  client_secret_file = \"%s\"; },\n"		/* 6 */
	    "{ match = \"*@fabrikam.com\"; tenant = \"fabrikam.com\";\n"
	    "  client_id = \"c2\";\n"
	    "  client_secret_file = \"%s\"; },\n"		/* 9 */
	    "{ match = \"*\"; tenant = \"t3\"; client_id = \"c3\";\n"
	    "  client_secret_file = \"%s\"; }\n"
	    ");\n", ca, sc, sf, sf);
	put(conf, text, 0600);
	logged[0] = '\0';
	r = oa2_config_load(conf, &keep_log, &cfg, &err);
	ok(r == 0 && cfg != NULL, "one bad secret file: the file still loads");
	if (r != 0) {
		printf("#   %s\n", err.msg);
		return;
	}
	ok(cfg->naccounts == 3 && cfg->nbroken == 1, "one account is broken");
	a = oa2_config_match(cfg, "bob@fabrikam.com");
	ok(a != NULL && !a->broken && a->client_secret != NULL &&
	    strcmp(a->client_secret, "fabrikam-secret") == 0 &&
	    strlen(a->cache_key) == 32, "bob@fabrikam.com's account works");
	a = oa2_config_match(cfg, "alice@contoso.com");
	ok(a != NULL && a->broken && strcmp(a->match, "*@contoso.com") == 0,
	    "alice@contoso.com gets the broken account, not \"*\"");
	snprintf(want, sizeof(want), "%s:6: client_secret_file: secret file "
	    "%s is accessible by group or others (mode 0644): run chmod 600",
	    conf, sc);
	has_str(a->load_err.msg, want, "with its file:line sentence");
	ok(a->load_err.code == OA2_ERR_CREDENTIAL && a->line == 4 &&
	    a->client_secret == NULL && a->cache_key[0] == '\0',
	    "its code and line; no secret, no cache key");
	ok(strstr(a->load_err.msg, "contoso-secret") == NULL,
	    "the secret is in no sentence");
	has_str(logged, "is not used; the other accounts are",
	    "the load logs the broken account");
	has_str(logged, want, "with its sentence");
	a = oa2_config_match(cfg, "carol@example.org");
	ok(a != NULL && !a->broken && strcmp(a->match, "*") == 0,
	    "other mailboxes go to the catch-all");
	oa2_config_free(&cfg);
	chmod(sc, 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 0,
	    "fixed: no broken account");
	oa2_config_free(&cfg);
}

/*
 * The other ways an account breaks (a bad value, a bad key, a bad
 * certificate) each disable that account alone; what still fails the
 * whole file.
 */
static void
broken_kinds(int have_openssl)
{
	struct oa2_config *cfg = NULL;
	struct oa2_error err;
	char text[8192], cert[64], key[64], junk[64], both[64], cmd[1600];
	int r;

	snprintf(cert, sizeof(cert), "%s/app.crt", dir);
	snprintf(key, sizeof(key), "%s/app.key", dir);
	snprintf(junk, sizeof(junk), "%s/junk.crt", dir);
	snprintf(both, sizeof(both), "%s/both.pem", dir);
	put(junk, "not a certificate\n", 0644);
	if (have_openssl) {
		snprintf(cmd, sizeof(cmd), "openssl req -x509 -newkey rsa:2048 "
		    "-nodes -keyout %s -out %s -subj /CN=oa2-test -days 30 "
		    "> /dev/null 2>&1 && cat %s %s > %s", key, cert, cert, key,
		    both);
		if (!sh(cmd))
			abort();
		chmod(both, 0600);
		chmod(key, 0644);	/* world-readable: refused */
	} else
		put(key, "x", 0644);
	snprintf(text, sizeof(text), "version = 1;\n"
	    "defaults = { ca_file = \"%s\"; cache_dir = \"\"; };\n"
	    "accounts = (\n"
	    "{ match = \"a@x.com\"; tenant = \"t\"; client_id = \"c\";\n"	/* 4 */
	    "  timeout = 0; client_secret_file = \"%s\"; },\n"	/* 5 */
	    "{ match = \"b@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  certificate = \"%s\";\n"
	    "  private_key = \"%s\"; },\n"			/* 8 */
	    "{ match = \"c@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  certificate = \"%s\";\n"				/* 10 */
	    "  private_key = \"%s\"; },\n"
	    "{ match = \"d@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  ca_file = \"/nonexistent/ca.pem\";\n"		/* 13 */
	    "  client_secret_file = \"%s\"; },\n"
	    "{ match = \"e@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%s\"; }\n"
	    ");\n", ca, secret, cert, key, junk, both, secret, secret);
	put(conf, text, 0600);
	r = oa2_config_load(conf, NULL, &cfg, &err);
	ok(r == 0 && cfg != NULL && cfg->nbroken == 4,
	    "a bad value, key, certificate and CA file: four broken accounts");
	if (r != 0) {
		printf("#   %s\n", err.msg);
		return;
	}
	snprintf(text, sizeof(text), "%s:5: timeout must be between 1 and 300",
	    conf);
	has_str(oa2_config_match(cfg, "a@x.com")->load_err.msg, text,
	    "a bad value: file:line and the key");
	if (have_openssl) {
		/* issue 11: the key at fault is named, not certificate */
		snprintf(text, sizeof(text), "%s:8: private_key: private key "
		    "file %s is accessible by group or others", conf, key);
		has_str(oa2_config_match(cfg, "b@x.com")->load_err.msg, text,
		    "a world-readable key is reported under private_key:");
	}
	snprintf(text, sizeof(text), "%s:10: certificate: %s holds no X.509 "
	    "certificate", conf, junk);
	has_str(oa2_config_match(cfg, "c@x.com")->load_err.msg, text,
	    "a bad certificate: file:line: certificate:");
	snprintf(text, sizeof(text), "%s:13: ca_file: cannot open CA file "
	    "/nonexistent/ca.pem", conf);
	has_str(oa2_config_match(cfg, "d@x.com")->load_err.msg, text,
	    "a missing CA file of one account");
	ok(!oa2_config_match(cfg, "e@x.com")->broken &&
	    oa2_config_match(cfg, "e@x.com")->ca != NULL,
	    "the good account works, with the CA of defaults");
	ok(oa2_config_match(cfg, "z@x.com") == NULL,
	    "no catch-all: no account");
	oa2_config_free(&cfg);

	/* Still the whole file: top level, defaults, match. */
	snprintf(text, sizeof(text), "version = 1;\n"
	    "defaults = { ca_file = \"%s\"; cache_dir = \"\"; };\n"
	    "accounts = (\n"
	    "{ match = \"a@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%s\"; },\n"
	    "{ match = 7; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%s\"; }\n"
	    ");\n", ca, secret, secret);
	put(conf, text, 0600);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == OA2_ERR_CONFIG &&
	    cfg == NULL, "an account whose match is wrong fails the file");
	has_str(err.msg, ":6: match must be a string", "and says why");
}

/* Load path as the plugin does after init: from the snapshot taken then. */
static int
load_from(struct oa2_snapshot *snap, const char *path,
    struct oa2_config **cfg, struct oa2_error *err)
{
	int r;

	oa2_snapshot_use(snap);
	r = oa2_config_load(path, NULL, cfg, err);
	oa2_snapshot_use(NULL);
	return r;
}

/* Whether a and b loaded the same accounts, credentials and sentences. */
static int
same_config(const struct oa2_config *a, const struct oa2_config *b)
{
	const struct oa2_account *x, *y;
	size_t i;

	if (a == NULL || b == NULL || a->naccounts != b->naccounts ||
	    a->nbroken != b->nbroken)
		return 0;
	for (i = 0; i < a->naccounts; i++) {
		x = &a->accounts[i];
		y = &b->accounts[i];
		if (x->broken != y->broken || x->kind != y->kind ||
		    x->rotated != y->rotated ||
		    strcmp(x->load_err.msg, y->load_err.msg) != 0 ||
		    strcmp(x->next_err.msg, y->next_err.msg) != 0 ||
		    strcmp(x->cache_key, y->cache_key) != 0 ||
		    strcmp(x->next_cache_key, y->next_cache_key) != 0 ||
		    (x->client_secret == NULL) != (y->client_secret == NULL) ||
		    (x->client_secret != NULL &&
		    strcmp(x->client_secret, y->client_secret) != 0) ||
		    (x->cert == NULL) != (y->cert == NULL) ||
		    (x->cert != NULL && strcmp(oa2_cert_sha1_hex(x->cert),
		    oa2_cert_sha1_hex(y->cert)) != 0) ||
		    (x->ca == NULL) != (y->ca == NULL)) {
			printf("#   account %zu (%s) differs: \"%s\" / \"%s\"\n",
			    i, x->match, x->load_err.msg, y->load_err.msg);
			return 0;
		}
	}
	return 1;
}

/*
 * Issue 16: the plugin reads a config's files at init (a snapshot) and
 * parses them on first use, after a chroot perhaps. A config with every
 * kind of file the load reads loads from the snapshot with the files
 * gone, exactly as from the disk; so do files that fail (the same
 * sentences), with the effective uid of the time the snapshot was
 * taken; a config that cannot be read or is unsafe is no snapshot.
 */
static void
snapshot(int have_openssl)
{
	struct oa2_config *disk = NULL, *snapped = NULL;
	struct oa2_snapshot *snap = NULL;
	struct oa2_error err;
	char d[200], gone[220], path[300], text[8192], cmd[2048];
	const char *const good[] = {
		"s1", "s2", "s3", "pass", "pass12", "header", NULL
	};
	int i, r;

	if (!have_openssl) {
		ok(1, "# SKIP no openssl command to make keys");
		return;
	}
	snprintf(d, sizeof(d), "%s/snap", dir);
	snprintf(gone, sizeof(gone), "%s/snap-gone", dir);
	mkdir(d, 0755);
	for (i = 0; good[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", d, good[i]);
		put(path, i == 1 ? "another-secret\n" : i < 3 ?
		    "not-a-real-secret\n" : "pass-phrase\n", 0600);
	}
	snprintf(cmd, sizeof(cmd), "cd %s && openssl req -x509 -newkey "
	    "rsa:2048 -keyout app.key -passout file:pass -out app.crt "
	    "-subj /CN=oa2-snap -days 30 >/dev/null 2>&1 && openssl pkcs12 "
	    "-export -in app.crt -inkey app.key -passin file:pass "
	    "-passout file:pass12 -out app.p12 >/dev/null 2>&1 && "
	    "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
	    "-out sa.pem 2>/dev/null && chmod 600 app.key app.p12 && "
	    "cp %s ca.pem && openssl req -x509 -newkey rsa:2048 -keyout c.key "
	    "-passout file:pass -out c.crt -subj /CN=oa2-snap-next -days 30 "
	    ">/dev/null 2>&1 && openssl pkcs12 -export -in c.crt -inkey c.key "
	    "-passin file:pass -passout file:pass12 -out b.p12 >/dev/null 2>&1 "
	    "&& cp -p pass12 b.pass12 && cp -p pass c.pass && cp -p app.p12 "
	    "c.p12 && cp -p pass12 c.pass12 && chmod 600 c.key b.p12", d, ca);
	if (!sh(cmd))
		abort();
	{
		FILE *f;
		char pem[4096];
		size_t n;
		json_t *o;
		char *js;

		snprintf(path, sizeof(path), "%s/sa.pem", d);
		if ((f = fopen(path, "r")) == NULL)
			abort();
		n = fread(pem, 1, sizeof(pem) - 1, f);
		fclose(f);
		pem[n] = '\0';
		o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "type",
		    "service_account", "private_key_id", "k1", "private_key",
		    pem, "client_email", "sa@p.iam.gserviceaccount.com",
		    "client_id", "1234", "token_uri",
		    "https://127.0.0.1:1/token");
		js = json_dumps(o, 0);
		snprintf(path, sizeof(path), "%s/sa.json", d);
		put(path, js, 0600);
		free(js);
		json_decref(o);
	}
	snprintf(text, sizeof(text), "version = 1;\n"
	    "defaults = { ca_file = \"%1$s/ca.pem\"; cache_dir = \"\"; };\n"
	    "accounts = (\n"
	    "{ match = \"a@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%1$s/s1\";\n"
	    "  next_client_secret_file = \"%1$s/s2\"; },\n"
	    "{ match = \"b@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  certificate = \"%1$s/app.crt\"; private_key = \"%1$s/app.key\";\n"
	    "  private_key_passphrase_file = \"%1$s/pass\";\n"
	    "  next_pkcs12 = \"%1$s/b.p12\";\n"
	    "  next_pkcs12_passphrase_file = \"%1$s/b.pass12\"; },\n"
	    "{ match = \"c@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  pkcs12 = \"%1$s/c.p12\";\n"
	    "  pkcs12_passphrase_file = \"%1$s/c.pass12\";\n"
	    "  next_certificate = \"%1$s/c.crt\";\n"
	    "  next_private_key = \"%1$s/c.key\";\n"
	    "  next_private_key_passphrase_file = \"%1$s/c.pass\"; },\n"
	    "{ match = \"*@y.com\"; service_account_file = \"%1$s/sa.json\"; },\n"
	    "{ match = \"m@x.com\"; managed_identity = \"system\";\n"
	    "  managed_identity_endpoint = \"http://127.0.0.1:9/t\";\n"
	    "  managed_identity_protocol = \"app-service\";\n"
	    "  managed_identity_header_file = \"%1$s/header\"; },\n"
	    "{ match = \"p@gmail.com\"; provider = \"google\";\n"
	    "  client_id = \"1.apps.googleusercontent.com\";\n"
	    "  client_secret_file = \"%1$s/s3\";\n"
	    "  token_file = \"%1$s/p.token\"; }\n"
	    ");\n", d);
	snprintf(path, sizeof(path), "%s/sasl-oauth2.conf", d);
	put(path, text, 0600);
	r = oa2_config_load(path, NULL, &disk, &err);
	ok(r == 0 && disk->nbroken == 0 && disk->naccounts == 6 &&
	    oa2_account_has_next(&disk->accounts[0]) &&
	    oa2_account_has_next(&disk->accounts[1]) &&
	    oa2_account_has_next(&disk->accounts[2]),
	    "snapshot: a config with every kind of file loads from the disk");
	if (r != 0 || disk->nbroken != 0) {
		printf("#   %s\n", r != 0 ? err.msg : "");
		for (i = 0; r == 0 && (size_t)i < disk->naccounts; i++)
			printf("#   %s\n", disk->accounts[i].load_err.msg);
	}
	ok(oa2_config_snapshot(path, &snap) == 0 && snap != NULL,
	    "a snapshot of it is taken");
	ok(rename(d, gone) == 0, "(its directory moved away)");
	r = load_from(snap, path, &snapped, &err);
	ok(r == 0 && same_config(disk, snapped), "and loads from the "
	    "snapshot alone, the same accounts, credentials and cache keys");
	if (r != 0)
		printf("#   %s\n", err.msg);
	oa2_config_free(&snapped);
	oa2_config_free(&disk);
	oa2_snapshot_free(&snap);
	ok(snap == NULL, "free clears the pointer");
	ok(rename(gone, d) == 0, "(moved back)");

	/* Files that fail: the same sentences from the snapshot. */
	snprintf(cmd, sizeof(cmd), "cd %s && chmod 644 s1 && rm -f s3 && "
	    "mkfifo fifo && chmod 600 fifo && head -c 70000 /dev/zero > big "
	    "&& chmod 600 big && chmod 640 app.key", d);
	if (!sh(cmd))
		abort();
	snprintf(text, sizeof(text), "version = 1;\n"
	    "defaults = { ca_file = \"%1$s/ca.pem\"; cache_dir = \"\"; };\n"
	    "accounts = (\n"
	    "{ match = \"a@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%1$s/s1\"; },\n"
	    "{ match = \"b@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%1$s/s3\"; },\n"
	    "{ match = \"c@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%1$s/fifo\"; },\n"
	    "{ match = \"d@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  client_secret_file = \"%1$s/big\"; },\n"
	    "{ match = \"e@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  certificate = \"%1$s/app.crt\"; private_key = \"%1$s/app.key\";\n"
	    "  private_key_passphrase_file = \"%1$s/pass\"; },\n"
	    "{ match = \"f@x.com\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  ca_file = \"%1$s/nonexistent.pem\";\n"
	    "  client_secret_file = \"%1$s/s2\"; }\n"
	    ");\n", d);
	put(path, text, 0600);
	r = oa2_config_load(path, NULL, &disk, &err);
	ok(r == 0 && disk->nbroken == 6, "six broken accounts from the disk");
	ok(oa2_config_snapshot(path, &snap) == 0, "a snapshot of them");
	ok(rename(d, gone) == 0, "(moved away)");
	r = load_from(snap, path, &snapped, &err);
	ok(r == 0 && same_config(disk, snapped), "from the snapshot: the "
	    "same six broken accounts with the same sentences");
	if (snapped != NULL)
		has_str(snapped->accounts[2].load_err.msg, "is not a regular "
		    "file", "(a FIFO is still no file)");
	oa2_config_free(&snapped);
	oa2_config_free(&disk);
	oa2_snapshot_free(&snap);
	ok(rename(gone, d) == 0, "(moved back)");

	/*
	 * The owner rule of the time the snapshot was taken: root took a
	 * file of nobody's as refused, and it stays refused after the
	 * process has become nobody (as Postfix's smtp becomes postfix).
	 */
	if (geteuid() == 0) {
		snprintf(cmd, sizeof(cmd), "cd %s && chmod 600 s1 && "
		    "chown 65534 s1", d);
		if (!sh(cmd))
			abort();
		r = oa2_config_load(path, NULL, &disk, &err);
		ok(oa2_config_snapshot(path, &snap) == 0, "root: a snapshot");
		ok(seteuid(65534) == 0, "(now uid 65534)");
		r = load_from(snap, path, &snapped, &err);
		ok(seteuid(0) == 0, "(root again)");
		ok(r == 0 && same_config(disk, snapped) &&
		    snapped->accounts[0].broken, "uid 65534 loads it as root "
		    "found it: the file of uid 65534 refused");
		has_str(snapped != NULL ? snapped->accounts[0].load_err.msg :
		    "", "owned by uid 65534, not by root or by uid 0",
		    "with root's sentence");
		oa2_config_free(&snapped);
		oa2_config_free(&disk);
		oa2_snapshot_free(&snap);
	} else
		ok(1, "# SKIP not root: the owner rule of then");

	/* No snapshot of what would not load: it is loaded at once. */
	chmod(path, 0666);
	ok(oa2_config_snapshot(path, &snap) == -1 && snap == NULL,
	    "a config writable by others: no snapshot");
	chmod(path, 0600);
	snprintf(path, sizeof(path), "%s/nonexistent.conf", d);
	ok(oa2_config_snapshot(path, &snap) == -1 && snap == NULL,
	    "a missing config: no snapshot");
	snprintf(path, sizeof(path), "%s/inc.conf", d);
	put(path, "@include \"/etc/passwd\"\n", 0600);
	ok(oa2_config_snapshot(path, &snap) == -1 && snap == NULL,
	    "an @include: no snapshot");

	/* A text libconfig refuses: its sentence comes from the load. */
	snprintf(path, sizeof(path), "%s/bad.conf", d);
	put(path, "version = 1;\naccounts = ( { match = \"*\"; ", 0600);
	ok(oa2_config_snapshot(path, &snap) == 0, "a syntax error: a "
	    "snapshot all the same");
	{
		struct oa2_error e1, e2;

		r = oa2_config_load(path, NULL, &disk, &e1);
		ok(load_from(snap, path, &snapped, &e2) == r && r != 0 &&
		    strcmp(e1.msg, e2.msg) == 0, "whose load fails with the "
		    "same sentence as from the disk");
		has_str(e2.msg, "bad.conf:2: syntax error", "(its line)");
	}
	oa2_snapshot_free(&snap);
}

/* Issue 10, item 9: the certificate's buffer is wiped before free. */
static const char *watch_text;	/* a line of the key's base64 */
static size_t watch_size;	/* the size of the buffer to look at */
static int watch_seen;

#if !defined(__SANITIZE_ADDRESS__) && defined(__GLIBC__)
extern void __libc_free(void *);

void
free(void *p)
{
	size_t n;

	if (p != NULL && watch_text != NULL) {
		n = malloc_usable_size(p);
		if (n >= watch_size && n < watch_size + 64 &&
		    memmem(p, watch_size, watch_text, strlen(watch_text)) !=
		    NULL)
			watch_seen++;
	}
	__libc_free(p);
}
#define CAN_WATCH_FREE 1
#endif

static void
cert_buffer_wiped(int have_openssl)
{
	struct oa2_config *cfg = NULL;
	struct oa2_error err;
	char text[4096], both[300], line[80], *data = NULL;
	const char *p;
	size_t len;
	int r;

#ifndef CAN_WATCH_FREE
	printf("ok %d # SKIP free() cannot be watched in this build\n", ++tap_n);
	return;
#endif
	if (!have_openssl) {
		printf("ok %d # SKIP the openssl command is needed\n", ++tap_n);
		return;
	}
	snprintf(both, sizeof(both), "%s/both.pem", dir);
	/* A line from the middle of the key: it ends nowhere but there. */
	if (oa2_read_file(both, "file", 1, 100000, &data, &len, &err) != 0 ||
	    (p = strstr(data, "PRIVATE KEY-----\n")) == NULL)
		abort();
	p += 17;
	p = strchr(p, '\n') + 1;
	p = strchr(p, '\n') + 1;
	snprintf(line, sizeof(line), "%.60s", p);
	oa2_freezero(data, len + 1);
	snprintf(text, sizeof(text), "version = 1;\n"
	    "defaults = { ca_file = \"%s\"; cache_dir = \"\"; };\n"
	    "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";\n"
	    "  certificate = \"%s\"; private_key = \"%s\"; } );\n", ca, both,
	    both);
	put(conf, text, 0600);
	watch_seen = 0;
	watch_size = len + 1;
	watch_text = line;
	r = oa2_config_load(conf, NULL, &cfg, &err);
	watch_text = NULL;
	ok(r == 0 && cfg != NULL && cfg->nbroken == 0,
	    "certificate and private_key name one file");
	if (cfg != NULL && cfg->nbroken != 0)
		printf("#   %s\n", cfg->accounts[0].load_err.msg);
	ok(watch_seen == 0, "no buffer holding the key was freed unwiped");
	oa2_config_free(&cfg);
}

/* Issue 10, item 9: one CA file named through many paths, one copy. */
static void
ca_dedup(void)
{
	struct oa2_config *cfg = NULL;
	struct oa2_error err;
	char text[60 * 300], link[300], *o = text;
	int i, r;

	snprintf(link, sizeof(link), "%s/ca-link.pem", dir);
	unlink(link);
	if (symlink(ca, link) == -1)
		abort();
	o += sprintf(o, "version = 1;\ndefaults = { cache_dir = \"\"; };\n"
	    "accounts = (\n");
	for (i = 0; i < 60; i++) {
		const char *base = strrchr(ca, '/') + 1;

		o += sprintf(o, "%s{ match = \"u%d@x.com\"; tenant = \"t\"; "
		    "client_id = \"c\"; client_secret_file = \"%s\"; ",
		    i == 0 ? "" : ",\n", i, secret);
		switch (i % 4) {
		case 0:
			o += sprintf(o, "ca_file = \"%s\"; }", ca);
			break;
		case 1:
			o += sprintf(o, "ca_file = \"%s\"; }", link);
			break;
		case 2:
			o += sprintf(o, "ca_file = \"%.*s/./%s\"; }",
			    (int)(base - 1 - ca), ca, base);
			break;
		default:
			o += sprintf(o, "ca_file = \"/%s//x/..//%s\"; }",
			    dir, base);
			break;
		}
	}
	sprintf(o, "\n);\n");
	put(conf, text, 0600);
	/* the "x/.." path needs x */
	snprintf(link, sizeof(link), "%s/x", dir);
	mkdir(link, 0700);
	r = oa2_config_load(conf, NULL, &cfg, &err);
	ok(r == 0 && cfg != NULL && cfg->nbroken == 0, "60 accounts load");
	if (r != 0 || cfg->nbroken != 0) {
		printf("#   %s\n", r != 0 ? err.msg :
		    cfg->accounts[0].load_err.msg);
		oa2_config_free(&cfg);
		return;
	}
	ok(cfg->ncas == 1, "one CA file through four kinds of path: one copy");
	for (i = 1; i < 60; i++)
		if (cfg->accounts[i].ca != cfg->accounts[0].ca)
			break;
	ok(i == 60, "every account shares it");
	oa2_config_free(&cfg);
}

/*
 * Issue 10, item 2: the config and the directories on its path, owned
 * by root or the effective user, not writable by group or others (a
 * sticky directory may be).
 */
static void
safe_path(void)
{
	struct oa2_config *cfg = NULL;
	struct oa2_error err;
	struct passwd *pw = getpwnam("nobody");
	char text[2048], sub[300], subconf[340], want[1400], rootonly[300];

	write_conf(HEAD "accounts = ( " ACCT("*") " );\n", 0620);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == OA2_ERR_CONFIG &&
	    cfg == NULL, "a group-writable config is refused");
	snprintf(want, sizeof(want), "configuration file %s is writable by "
	    "group or others (mode 0620): run chmod go-w %s", conf, conf);
	has_str(err.msg, want, "the sentence names the file and the chmod");
	write_conf(HEAD "accounts = ( " ACCT("*") " );\n", 0602);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == OA2_ERR_CONFIG,
	    "an other-writable config is refused");
	write_conf(HEAD "accounts = ( " ACCT("*") " );\n", 0644);
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0,
	    "a 0644 config without inline secret loads");
	oa2_config_free(&cfg);

	snprintf(sub, sizeof(sub), "%s/open", dir);
	snprintf(subconf, sizeof(subconf), "%s/sasl-oauth2.conf", sub);
	mkdir(sub, 0700);
	snprintf(text, sizeof(text), HEAD "accounts = ( " ACCT("*") " );\n");
	write_conf(text, 0600);
	rename(conf, subconf);
	chmod(sub, 0777);
	ok(oa2_config_load(subconf, NULL, &cfg, &err) == OA2_ERR_CONFIG,
	    "a config in a directory anyone may write to is refused");
	snprintf(want, sizeof(want), "directory %s (on the path of "
	    "configuration file %s) is writable by group or others (mode "
	    "0777): run chmod go-w %s", sub, subconf, sub);
	has_str(err.msg, want, "the sentence names the directory");
	chmod(sub, 01777);
	ok(oa2_config_load(subconf, NULL, &cfg, &err) == 0,
	    "with the sticky bit (as /tmp) it loads");
	oa2_config_free(&cfg);
	chmod(sub, 0755);

	if (geteuid() != 0 || pw == NULL) {
		printf("ok %d # SKIP ownership needs root and user nobody\n",
		    ++tap_n);
		return;
	}
	/* The attack: root loads a config another user wrote. */
	snprintf(rootonly, sizeof(rootonly), "%s/root-only.key", dir);
	put(rootonly, "-----BEGIN OPENSSH PRIVATE KEY-----\n", 0600);
	snprintf(text, sizeof(text), "version = 1;\n"
	    "defaults = { ca_file = \"%s\"; cache_dir = \"\"; };\n"
	    "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = \"c\";"
	    " client_secret_file = \"%s\"; } );\n", ca, rootonly);
	put(subconf, text, 0600);
	if (chown(subconf, pw->pw_uid, pw->pw_gid) != 0)
		abort();
	ok(oa2_config_load(subconf, NULL, &cfg, &err) == OA2_ERR_CONFIG &&
	    cfg == NULL, "a config owned by nobody naming a root-only file "
	    "is refused");
	snprintf(want, sizeof(want), "configuration file %s is owned by "
	    "nobody (uid %lu), not by root or by the user reading it",
	    subconf, (unsigned long)pw->pw_uid);
	has_str(err.msg, want, "the sentence names the file and its owner");
	snprintf(want, sizeof(want), "run chown root %s", subconf);
	has_str(err.msg, want, "and the chown that fixes it");
	if (chown(subconf, 0, 0) != 0 || chown(sub, pw->pw_uid, 0) != 0)
		abort();
	ok(oa2_config_load(subconf, NULL, &cfg, &err) == OA2_ERR_CONFIG,
	    "a root config in a directory owned by nobody is refused");
	snprintf(want, sizeof(want), "directory %s (on the path of "
	    "configuration file %s) is owned by nobody", sub, subconf);
	has_str(err.msg, want, "the sentence names the directory");
	snprintf(want, sizeof(want), "run chown root %s", sub);
	has_str(err.msg, want, "and the chown");
	if (chown(sub, 0, 0) != 0)
		abort();
	ok(oa2_config_load(subconf, NULL, &cfg, &err) == 0,
	    "owned by root again: loads");
	oa2_config_free(&cfg);
	/* A link from a safe place to an unsafe one: the target counts. */
	snprintf(want, sizeof(want), "%s/link.conf", dir);
	unlink(want);
	if (symlink(subconf, want) == -1 ||
	    chown(sub, pw->pw_uid, 0) != 0)
		abort();
	ok(oa2_config_load(want, NULL, &cfg, &err) == OA2_ERR_CONFIG,
	    "a symbolic link to a config in an unsafe directory is refused");
	has_str(err.msg, "is owned by nobody", "the real path is checked");
	if (chown(sub, 0, 0) != 0)
		abort();
}

/* Load conf: its error, or its one account's when that is broken. */
static int
load_one(struct oa2_error *err)
{
	struct oa2_config *cfg = NULL;
	int r;

	if ((r = oa2_config_load(conf, NULL, &cfg, err)) != 0)
		return r;
	if (cfg->naccounts == 1 && cfg->accounts[0].broken) {
		*err = cfg->accounts[0].load_err;
		r = err->code != 0 ? err->code : OA2_ERR_CONFIG;
	}
	oa2_config_free(&cfg);
	return r;
}

/*
 * A ca_file decides who may receive the client secret: held to the
 * config's rule (owner root or the effective user, so the directories
 * on its path, none writable by others); readable by others is fine.
 */
static void
ca_owner(void)
{
	struct oa2_error err;
	struct passwd *pw = getpwnam("nobody");
	char text[2048], sub[300], subca[340], want[1400];

	snprintf(sub, sizeof(sub), "%s/cadir", dir);
	snprintf(subca, sizeof(subca), "%s/ca.pem", sub);
	mkdir(sub, 0755);
	put(subca, "-----BEGIN CERTIFICATE-----\nMIIB\n"
	    "-----END CERTIFICATE-----\n", 0644);
	snprintf(text, sizeof(text), "version = 1;\n"
	    "defaults = { cache_dir = \"\"; };\n"
	    "accounts = ( { match = \"*\"; tenant = \"t\"; client_id = "
	    "\"c\";\n  ca_file = \"%s\";\n  client_secret_file = \"%s\"; "
	    "} );\n", subca, secret);
	put(conf, text, 0600);
	ok(load_one(&err) == 0,
	    "a root-owned 0644 ca_file loads");
	chmod(subca, 0664);
	ok(load_one(&err) == OA2_ERR_CONFIG,
	    "a group-writable ca_file is refused");
	snprintf(want, sizeof(want), "%s:4: ca_file: CA file %s is writable "
	    "by group or others (mode 0664): run chmod go-w %s", conf, subca,
	    subca);
	has_str(err.msg, want, "the sentence names the file and the chmod");
	chmod(subca, 0644);
	if (geteuid() != 0 || pw == NULL) {
		printf("ok %d # SKIP ownership needs root and user nobody\n",
		    ++tap_n);
		return;
	}
	/* The attack: another user's CA decides where the secret goes. */
	if (chown(subca, pw->pw_uid, pw->pw_gid) != 0)
		abort();
	ok(load_one(&err) == OA2_ERR_CONFIG,
	    "a ca_file owned by nobody is refused");
	snprintf(want, sizeof(want), "CA file %s is owned by nobody (uid "
	    "%lu), not by root or by the user reading it", subca,
	    (unsigned long)pw->pw_uid);
	has_str(err.msg, want, "the sentence names the file and its owner");
	snprintf(want, sizeof(want), "run chown root %s", subca);
	has_str(err.msg, want, "and the chown that fixes it");
	if (chown(subca, 0, 0) != 0 || chown(sub, pw->pw_uid, 0) != 0)
		abort();
	ok(load_one(&err) == OA2_ERR_CONFIG,
	    "a root ca_file in a directory owned by nobody is refused");
	snprintf(want, sizeof(want), "directory %s (on the path of CA file "
	    "%s) is owned by nobody", sub, subca);
	has_str(err.msg, want, "the sentence names the directory");
	if (chown(sub, 0, 0) != 0)
		abort();
	ok(load_one(&err) == 0,
	    "owned by root again: loads");
}

int
main(void)
{
	struct oa2_config *cfg;
	struct oa2_account *a;
	struct oa2_error err;
	char want[600];
	size_t i;
	int r, have_openssl;

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
		} else if (cases[i].broken) {
			ok(r == 0 && cfg != NULL && cfg->naccounts == 1 &&
			    cfg->nbroken == 1 && cfg->accounts[0].broken,
			    cases[i].want);
			if (r != 0) {
				printf("#   %s\n", err.msg);
				continue;
			}
			a = &cfg->accounts[0];
			ok(a->load_err.code == OA2_ERR_CONFIG ||
			    a->load_err.code == OA2_ERR_CREDENTIAL,
			    "the account keeps its error code");
			has_str(a->load_err.msg, cases[i].want,
			    "the account keeps its sentence");
			snprintf(want, sizeof(want), "%s:", conf);
			has_str(a->load_err.msg, want, "error names the file");
			ok(oa2_config_match(cfg, "x@contoso.com") == a &&
			    a->client_secret == NULL && a->cert == NULL,
			    "a broken account still matches; no credential");
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
	ok(oa2_config_load(conf, NULL, &cfg, &err) == 0 && cfg->nbroken == 1,
	    "group-readable secret: the account is broken");
	if (cfg != NULL) {
		has_str(cfg->accounts[0].load_err.msg,
		    ":5: client_secret_file: secret file", "names key");
		has_str(cfg->accounts[0].load_err.msg,
		    "accessible by group or others", "and the cause");
	}
	oa2_config_free(&cfg);
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
	/* issue 11: how to name another file, where the sample is */
	has_str(err.msg, "SASL_OAUTH2_CONF", "the variable");
	has_str(err.msg, "-c FILE", "the tool's option");
	has_str(err.msg, OA2_SAMPLE_CONF, "the sample's installed path");
	has_str(err.msg, "/share/doc/sasl-oauth2/",
	    "under the doc directory");

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

	have_openssl = sh("openssl version > /dev/null 2>&1");
	rollover();
	clouds();
	federated();
	one_bad_account();
	broken_kinds(have_openssl);
	snapshot(have_openssl);
	cert_buffer_wiped(have_openssl);
	ca_dedup();
	safe_path();
	ca_owner();

	snprintf(want, sizeof(want), "rm -rf %s", dir);
	if (system(want) != 0)
		return 1;
	return done_testing();
}
