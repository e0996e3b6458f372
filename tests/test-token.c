/*
 * Unit test for token.c and http.c: Entra's answers (data files under
 * tests/data/token/ and inline cases), the form encoding, the mapping
 * of transport failures against real local sockets, and whole grant
 * requests against a small in-process HTTPS server (libssl is loaded
 * with dlopen: the test links only what the core links).
 */
#include "config.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "jwt.h"
#include "secret.h"
#include "token.h"
#include "tap.h"

#define NOW	((time_t)1715678467)

static char datadir[PATH_MAX];

static double
mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}


static char *
slurp(const char *name, size_t *len)
{
	char path[PATH_MAX + 64], *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", datadir, name);
	if ((f = fopen(path, "rb")) == NULL) {
		printf("# cannot open %s\n", path);
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf != NULL) {
		buf[n] = '\0';
		*len = (size_t)n;
	}
	return buf;
}

/* ------------------------------------------------------------------ */
/* Parsing Entra's answers                                             */

struct parse_case {
	const char	*name;
	long		status;
	const char	*file;		/* under tests/data/token, or NULL */
	const char	*body;		/* inline, when file is NULL */
	int		code;
	const char	*want;		/* substring of the sentence */
	const char	*token;		/* expected (OK) or never to be shown */
};

#define BEARER	"\"token_type\":\"Bearer\""
#define TOK	"eyJhbGciOiJSUzI1NiJ9.tok3n.c2ln"

static const struct parse_case parse_cases[] = {
	{ "success", 200, "success.json", NULL, OA2_OK, NULL,
	    "eyJ0eXAiOiJKV1QiLCJub25jZSI6IkFCQyIsImFsZyI6IlJTMjU2In0.eyJhdW"
	    "QiOiJodHRwczovL291dGxvb2sub2ZmaWNlMzY1LmNvbSIsInRvazNuIjoxfQ.c2l"
	    "nbmF0dXJlLXRvazNuLW5vdC1yZWFs" },
	{ "expires_in as a string (v1 endpoint shape)", 200,
	    "success-string-expires.json", NULL, OA2_OK, NULL,
	    "eyJ0eXAiOiJKV1QifQ.eyJ2MSI6InRvazNuIn0.djEtdG9rM24tc2lnbmF0dXJl" },
	{ "token_type bearer in lower case", 200, NULL,
	    "{\"token_type\":\"bearer\",\"expires_in\":60,\"access_token\":\""
	    TOK "\"}", OA2_OK, NULL, TOK },
	{ "expires_in of one year", 200, NULL,
	    "{" BEARER ",\"expires_in\":31622400,\"access_token\":\"" TOK
	    "\"}", OA2_OK, NULL, TOK },
	{ "expires_in \"1\"", 200, NULL,
	    "{" BEARER ",\"expires_in\":\"1\",\"access_token\":\"" TOK "\"}",
	    OA2_OK, NULL, TOK },

	/* Entra's refusals, as Microsoft documents them */
	{ "7000215 bad secret", 401, "7000215.json", NULL, OA2_ERR_DENIED,
	    "token request refused (HTTP 401): invalid_client: AADSTS7000215 "
	    "(the client secret is wrong", NULL },
	{ "7000215 carries the description's first line", 401,
	    "7000215.json", NULL, OA2_ERR_DENIED,
	    "): Invalid client secret provided. Ensure", NULL },
	{ "7000222 expired secret", 401, "7000222.json", NULL,
	    OA2_ERR_DENIED, "invalid_client: AADSTS7000222 (the client secret "
	    "has expired", NULL },
	{ "700016 unknown application", 400, "700016.json", NULL,
	    OA2_ERR_DENIED, "unauthorized_client: AADSTS700016 (no "
	    "application with this client_id", NULL },
	{ "90002 unknown tenant", 400, "90002.json", NULL, OA2_ERR_DENIED,
	    "invalid_request: AADSTS90002 (the tenant does not exist", NULL },
	{ "700027 signature or thumbprint", 401, "700027.json", NULL,
	    OA2_ERR_DENIED, "AADSTS700027 (the assertion's signature or "
	    "certificate thumbprint", NULL },
	{ "700024 clock", 400, "700024.json", NULL, OA2_ERR_DENIED,
	    "AADSTS700024 (the assertion is not within its valid time range: "
	    "check the clock", NULL },
	{ "700213 federated subject", 400, NULL,
	    "{\"error\":\"invalid_request\",\"error_description\":"
	    "\"AADSTS700213: No matching federated identity record found for "
	    "presented assertion subject 'system:serviceaccount:mail:x'.\\r\\n"
	    "Trace ID: x\",\"error_codes\":[700213]}", OA2_ERR_DENIED,
	    "invalid_request: AADSTS700213 (no federated credential of the "
	    "application has the token's subject (compared exactly, case "
	    "included)): No matching federated identity record found for "
	    "presented assertion subject 'system:serviceaccount:mail:x'.",
	    NULL },
	{ "9001023 /common", 400, "9001023.json", NULL, OA2_ERR_DENIED,
	    "AADSTS9001023 (this grant cannot use the /common", NULL },
	{ "7000218 no credential", 401, "7000218.json", NULL,
	    OA2_ERR_DENIED, "AADSTS7000218 (neither client_secret nor "
	    "client_assertion", NULL },
	{ "70011 scope", 400, "70011.json", NULL, OA2_ERR_DENIED,
	    "invalid_scope: AADSTS70011 (the scope is invalid", NULL },
	{ "temporarily_unavailable on 503", 503,
	    "temporarily_unavailable.json", NULL, OA2_ERR_TRANSIENT,
	    "(HTTP 503): temporarily_unavailable: AADSTS90024", NULL },
	{ "temporarily_unavailable on 400", 400, NULL,
	    "{\"error\":\"temporarily_unavailable\"}", OA2_ERR_TRANSIENT,
	    "(HTTP 400): temporarily_unavailable", NULL },
	{ "429 with an error body", 429, NULL,
	    "{\"error\":\"invalid_request\",\"error_description\":\"AADSTS90055"
	    ": Too many requests.\",\"error_codes\":[90055]}",
	    OA2_ERR_TRANSIENT, "AADSTS90055 (too many requests", NULL },
	{ "500 with server_error", 500, NULL,
	    "{\"error\":\"server_error\"}", OA2_ERR_TRANSIENT,
	    "(HTTP 500): server_error", NULL },

	/* a redirect is a wrong authority: never a refusal to remember */
	{ "302 with an Entra-shaped body", 302, NULL,
	    "{\"error\":\"invalid_client\",\"error_codes\":[7000215]}",
	    OA2_ERR_CONFIG, "answered HTTP 302 (a redirect, not followed): "
	    "the authority is wrong", NULL },
	{ "301 with an HTML body", 301, NULL, "<html>Moved</html>",
	    OA2_ERR_CONFIG, "HTTP 301 (a redirect", NULL },
	{ "308 with an empty body", 308, NULL, "", OA2_ERR_CONFIG,
	    "the authority is wrong", NULL },
	{ "unknown code: no meaning, still the code", 400, NULL,
	    "{\"error\":\"invalid_grant\",\"error_description\":\"AADSTS12345"
	    ": Something new.\\r\\nTrace ID: x\",\"error_codes\":[12345]}",
	    OA2_ERR_DENIED, "invalid_grant: AADSTS12345: Something new.",
	    NULL },
	{ "code from the description when error_codes is absent", 401, NULL,
	    "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215"
	    ": Invalid client secret provided.\"}", OA2_ERR_DENIED,
	    "AADSTS7000215 (the client secret is wrong", NULL },
	{ "no error member", 400, NULL, "{}", OA2_ERR_DENIED,
	    "(HTTP 400): unknown_error", NULL },
	{ "hostile description sanitised", 400, NULL,
	    "{\"error\":\"invalid_request\\u001b[31m\",\"error_description\":"
	    "\"bad\\u0007\\u00e9 stuff\"}", OA2_ERR_DENIED,
	    "invalid_request?[31m: bad??? stuff", NULL },
	{ "long description cut", 400, NULL,
	    "{\"error\":\"invalid_request\",\"error_description\":\""
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	    "\"}", OA2_ERR_DENIED, "AAAA...", NULL },
	{ "HTML 500 page", 500, "error-500.html", NULL, OA2_ERR_TRANSIENT,
	    "the token endpoint answered HTTP 500 with a non-JSON body", NULL },
	{ "HTML 404 page", 404, NULL, "<html>Not Found</html>",
	    OA2_ERR_RESPONSE, "HTTP 404 with a non-JSON body (check authority",
	    NULL },
	{ "302 empty", 302, NULL, "", OA2_ERR_CONFIG,
	    "HTTP 302 (a redirect, not followed)", NULL },

	/* a 200 that is not a usable token */
	{ "garbage", 200, NULL, "access_token=" TOK, OA2_ERR_RESPONSE,
	    "not a JSON object", TOK },
	{ "empty body", 200, NULL, "", OA2_ERR_RESPONSE,
	    "not a JSON object", NULL },
	{ "JSON array", 200, NULL, "[\"" TOK "\"]", OA2_ERR_RESPONSE,
	    "not a JSON object", TOK },
	{ "truncated JSON", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"" TOK,
	    OA2_ERR_RESPONSE, "not a JSON object", TOK },
	{ "duplicate access_token", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"" TOK "\","
	    "\"access_token\":\"other\"}", OA2_ERR_RESPONSE,
	    "not a JSON object", TOK },
	{ "no access_token", 200, NULL, "{" BEARER ",\"expires_in\":3599}",
	    OA2_ERR_RESPONSE, "has no access_token", NULL },
	{ "access_token a number", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":42}",
	    OA2_ERR_RESPONSE, "has no access_token", NULL },
	{ "access_token empty", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"\"}",
	    OA2_ERR_RESPONSE, "access_token that is empty", NULL },
	{ "access_token with a space", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"tok3n x\"}",
	    OA2_ERR_RESPONSE, "holds spaces or control characters", "tok3n x" },
	{ "access_token with CR LF", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":"
	    "\"tok3n\\r\\nA01 LOGOUT\"}", OA2_ERR_RESPONSE,
	    "holds spaces or control characters", "tok3n" },
	{ "access_token with \\x01", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":"
	    "\"tok3n\\u0001auth=x\"}", OA2_ERR_RESPONSE,
	    "holds spaces or control characters", "tok3n" },
	{ "access_token with a tab", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"tok3n\\tx\"}",
	    OA2_ERR_RESPONSE, "holds spaces or control characters", "tok3n" },
	{ "access_token with DEL", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"tok3n\\u007f\"}",
	    OA2_ERR_RESPONSE, "holds spaces or control characters", "tok3n" },
	{ "access_token not ASCII", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"tok3n\\u00e9\"}",
	    OA2_ERR_RESPONSE, "holds spaces or control characters", "tok3n" },
	{ "access_token with NUL", 200, NULL,
	    "{" BEARER ",\"expires_in\":3599,\"access_token\":\"tok3n\\u0000x\"}",
	    OA2_ERR_RESPONSE, "not a JSON object", "tok3n" },
	{ "token_type mac", 200, NULL,
	    "{\"token_type\":\"mac\",\"expires_in\":3599,\"access_token\":\""
	    TOK "\"}", OA2_ERR_RESPONSE, "token_type other than Bearer: \"mac\"",
	    TOK },
	{ "token_type missing", 200, NULL,
	    "{\"expires_in\":3599,\"access_token\":\"" TOK "\"}",
	    OA2_ERR_RESPONSE, "has no token_type", TOK },
	{ "token_type not a string", 200, NULL,
	    "{\"token_type\":1,\"expires_in\":3599,\"access_token\":\"" TOK
	    "\"}", OA2_ERR_RESPONSE, "has no token_type", TOK },
	{ "expires_in missing", 200, NULL,
	    "{" BEARER ",\"access_token\":\"" TOK "\"}", OA2_ERR_RESPONSE,
	    "has no expires_in", TOK },
#define EXP(name, v) \
	{ "expires_in " name, 200, NULL, "{" BEARER ",\"expires_in\":" v \
	    ",\"access_token\":\"" TOK "\"}", OA2_ERR_RESPONSE, \
	    "expires_in that is not a number of seconds between 1 and one " \
	    "year", TOK }
	EXP("0", "0"),
	EXP("\"0\"", "\"0\""),
	EXP("-1", "-1"),
	EXP("\"-1\"", "\"-1\""),
	EXP("one year + 1 s", "31622401"),
	EXP("\"one year + 1 s\"", "\"31622401\""),
	{ "expires_in huge (beyond JSON integers)", 200, NULL, "{" BEARER
	    ",\"expires_in\":99999999999999999999,\"access_token\":\"" TOK
	    "\"}", OA2_ERR_RESPONSE, "(or not valid JSON)", TOK },
	EXP("\"huge\"", "\"99999999999999999999\""),
	EXP("\"abc\"", "\"abc\""),
	EXP("\"12abc\"", "\"12abc\""),
	EXP("\" 12\"", "\" 12\""),
	EXP("\"+12\"", "\"+12\""),
	EXP("\"0x10\"", "\"0x10\""),
	EXP("\"\"", "\"\""),
	EXP("3599.5", "3599.5"),
	EXP("true", "true"),
	EXP("null", "null"),
	EXP("[3599]", "[3599]"),
#undef EXP
};

static void
test_parse(void)
{
	const struct parse_case *c;
	struct oa2_token tok;
	struct oa2_error err;
	char name[200], *file;
	size_t i, len;
	int r;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		c = &parse_cases[i];
		file = NULL;
		if (c->file != NULL && (file = slurp(c->file, &len)) == NULL) {
			snprintf(name, sizeof(name), "%s: data file", c->name);
			ok(0, name);
			continue;
		}
		if (file == NULL)
			len = strlen(c->body);
		oa2_clearerr(&err);
		memset(&tok, 0xa5, sizeof(tok));
		r = oa2_token_parse(c->status, file != NULL ? file : c->body,
		    len, NOW, &tok, &err);
		snprintf(name, sizeof(name), "%s: code %d", c->name, c->code);
		if (!ok(r == c->code && err.code == (r == 0 ? 0 : r), name))
			printf("#   got %d (%s)\n", r, err.msg);
		if (c->code == OA2_OK) {
			snprintf(name, sizeof(name), "%s: token", c->name);
			is_str(tok.access_token, c->token, name);
			snprintf(name, sizeof(name), "%s: expiry", c->name);
			ok(tok.expires_at > NOW &&
			    tok.expires_at <= NOW + 31622400, name);
			ok(err.msg[0] == '\0', "success leaves no message");
		} else {
			snprintf(name, sizeof(name), "%s: message", c->name);
			has_str(err.msg, c->want, name);
			snprintf(name, sizeof(name), "%s: no token out", c->name);
			ok(tok.access_token == NULL && tok.expires_at == 0, name);
			snprintf(name, sizeof(name), "%s: no token in the "
			    "message", c->name);
			ok(strstr(err.msg, "tok3n") == NULL &&
			    strstr(err.msg, "Trace ID") == NULL &&
			    strchr(err.msg, '\r') == NULL &&
			    strchr(err.msg, '\n') == NULL, name);
		}
		oa2_token_clear(&tok);
		free(file);
	}

	/* a NULL body is an empty one */
	r = oa2_token_parse(503, NULL, 0, NOW, &tok, &err);
	ok(r == OA2_ERR_TRANSIENT && tok.access_token == NULL,
	    "NULL body on 503 is transient");

	/* expires_at follows now */
	r = oa2_token_parse(200, "{" BEARER ",\"expires_in\":\"3599\","
	    "\"access_token\":\"" TOK "\"}", strlen("{" BEARER ",\"expires_in"
	    "\":\"3599\",\"access_token\":\"" TOK "\"}"), NOW, &tok, &err);
	ok(r == 0 && tok.expires_at == NOW + 3599, "expires_at = now + 3599");
	oa2_token_clear(&tok);
}

static void
test_meaning_copy(void)
{
	static const long known[] = { 7000215, 7000222, 700016, 90002,
	    700027, 700024, 7000218, 9001023, 1002012, 70011, 500011,
	    7000112, 70021, 700211, 700212, 700213, 70025, 700223 };
	struct oa2_token a = { NULL, 0 }, b = { NULL, 0 };
	size_t i;
	int all = 1;

	for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (oa2_aadsts_meaning(known[i]) == NULL) {
			printf("# no meaning for %ld\n", known[i]);
			all = 0;
		}
	ok(all, "every documented AADSTS code has a meaning");
	ok(oa2_aadsts_meaning(12345) == NULL, "unknown code: NULL");
	ok(oa2_aadsts_meaning(0) == NULL, "code 0: NULL");
	has_str(oa2_aadsts_meaning(700024), "clock", "700024 names the clock");
	/* rollover: which refusals make the next credential worth a try */
	ok(oa2_aadsts_credential(7000215) && oa2_aadsts_credential(7000222) &&
	    oa2_aadsts_credential(700027) && oa2_aadsts_credential(700030) &&
	    oa2_aadsts_credential(70002),
	    "wrong or expired secret, unknown certificate: credential codes");
	ok(!oa2_aadsts_credential(700016) && !oa2_aadsts_credential(90002) &&
	    !oa2_aadsts_credential(700024) && !oa2_aadsts_credential(1002012) &&
	    !oa2_aadsts_credential(0),
	    "unknown app or tenant, clock, scope: not the credential's fault");

	a.access_token = strdup(TOK);
	a.expires_at = NOW;
	ok(oa2_token_copy(&b, &a) == 0 && b.access_token != a.access_token,
	    "copy duplicates");
	is_str(b.access_token, TOK, "copy holds the token");
	ok(b.expires_at == NOW, "copy holds the expiry");
	oa2_token_clear(&a);
	ok(oa2_token_copy(&b, &a) == 0 && b.access_token == NULL,
	    "copy of an empty token");
	oa2_token_clear(&b);
	ok(a.access_token == NULL && a.expires_at == 0, "clear zeroes");
	oa2_token_clear(NULL);
	ok(1, "clear accepts NULL");
}

/* ------------------------------------------------------------------ */
/* The form                                                            */

static void
test_form(void)
{
	char *form = NULL;
	size_t len = 0;

	ok(oa2_form_add(&form, &len, "grant_type", "client_credentials") == 0,
	    "form: first pair");
	is_str(form, "grant_type=client_credentials", "form: no leading &");
	ok(len == strlen(form), "form: length");
	ok(oa2_form_add(&form, &len, "client_secret",
	    "a b&c=d+e%f/g~h-i.j_k") == 0, "form: reserved characters");
	ok(oa2_form_add(&form, &len, "scope",
	    "https://outlook.office365.com/.default") == 0, "form: scope");
	ok(oa2_form_add(&form, &len, "x", "caf\xc3\xa9\x01") == 0,
	    "form: non-ASCII");
	ok(oa2_form_add(&form, &len, "empty", "") == 0, "form: empty value");
	is_str(form, "grant_type=client_credentials"
	    "&client_secret=a%20b%26c%3Dd%2Be%25f%2Fg~h-i.j_k"
	    "&scope=https%3A%2F%2Foutlook.office365.com%2F.default"
	    "&x=caf%C3%A9%01&empty=", "form: URL-encoded");
	ok(len == strlen(form), "form: final length");
	ok(oa2_form_add(&form, &len, "n", NULL) == OA2_ERR_INTERNAL,
	    "form: NULL value refused");
	oa2_freezero(form, len + 1);

	/* every byte escaped as curl_easy_escape escapes it */
	{
		char all[256], *want, *got;
		int i;

		for (i = 1; i < 256; i++)
			all[i - 1] = (char)i;
		all[255] = '\0';
		form = NULL;
		len = 0;
		want = curl_easy_escape(NULL, all, 0);
		ok(want != NULL && oa2_form_add(&form, &len, "v", all) == 0 &&
		    strncmp(form, "v=", 2) == 0, "form: bytes 1 to 255");
		got = form != NULL ? form + 2 : NULL;
		is_str(got, want, "form: as curl_easy_escape escapes them");
		curl_free(want);
		oa2_freezero(form, len + 1);
	}
}

/* ------------------------------------------------------------------ */
/* Certificates for the local HTTPS server, made in memory            */

struct pki {
	EVP_PKEY	*key;
	X509		*cert;
};

static int
add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int r;

	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL)
		return -1;
	r = X509_add_ext(cert, ext, -1) == 1 ? 0 : -1;
	X509_EXTENSION_free(ext);
	return r;
}

/* A P-256 certificate for cn, signed by ca (self-signed when NULL). */
static int
make_cert(struct pki *out, const char *cn, const struct pki *ca,
    const char *san, int rsa)
{
	static long serial = 1;
	X509_NAME *name;
	X509 *c;

	out->key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
	if (out->key == NULL || (c = X509_new()) == NULL)
		return -1;
	out->cert = c;
	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 365);
	X509_set_pubkey(c, out->key);
	name = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c, ca != NULL ? X509_get_subject_name(ca->cert) :
	    name);
	if (ca == NULL) {
		if (add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE") ||
		    add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign")
		    || add_ext(c, c, NID_subject_key_identifier, "hash"))
			return -1;
	} else {
		if (add_ext(c, ca->cert, NID_basic_constraints, "CA:FALSE") ||
		    add_ext(c, ca->cert, NID_ext_key_usage, "serverAuth") ||
		    (san != NULL &&
		    add_ext(c, ca->cert, NID_subject_alt_name, san)))
			return -1;
	}
	return X509_sign(c, ca != NULL ? ca->key : out->key, EVP_sha256()) > 0 ?
	    0 : -1;
}

static void
pki_free(struct pki *p)
{
	EVP_PKEY_free(p->key);
	X509_free(p->cert);
}

static char *
cert_pem(X509 *cert, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (b != NULL && PEM_write_bio_X509(b, cert) == 1 &&
	    (n = BIO_get_mem_data(b, &data)) > 0 &&
	    (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
		*len = (size_t)n;
	}
	BIO_free(b);
	return out;
}

/* ------------------------------------------------------------------ */
/* libssl, through dlopen                                              */

static struct {
	void	*h;
	__typeof__(TLS_server_method)		*server_method;
	__typeof__(SSL_CTX_new)			*ctx_new;
	__typeof__(SSL_CTX_free)		*ctx_free;
	__typeof__(SSL_CTX_use_certificate)	*use_cert;
	__typeof__(SSL_CTX_use_PrivateKey)	*use_key;
	__typeof__(SSL_new)			*new_;
	__typeof__(SSL_free)			*free_;
	__typeof__(SSL_set_fd)			*set_fd;
	__typeof__(SSL_accept)			*accept_;
	__typeof__(SSL_read)			*read_;
	__typeof__(SSL_write)			*write_;
	__typeof__(SSL_shutdown)		*shutdown_;
} ssl;

static int
ssl_load(void)
{
	if ((ssl.h = dlopen("libssl.so.3", RTLD_NOW)) == NULL &&
	    (ssl.h = dlopen("libssl.so", RTLD_NOW)) == NULL)
		return -1;
#define SYM(f, n) if ((*(void **)&ssl.f = dlsym(ssl.h, n)) == NULL) return -1
	SYM(server_method, "TLS_server_method");
	SYM(ctx_new, "SSL_CTX_new");
	SYM(ctx_free, "SSL_CTX_free");
	SYM(use_cert, "SSL_CTX_use_certificate");
	SYM(use_key, "SSL_CTX_use_PrivateKey");
	SYM(new_, "SSL_new");
	SYM(free_, "SSL_free");
	SYM(set_fd, "SSL_set_fd");
	SYM(accept_, "SSL_accept");
	SYM(read_, "SSL_read");
	SYM(write_, "SSL_write");
	SYM(shutdown_, "SSL_shutdown");
#undef SYM
	return 0;
}

/* ------------------------------------------------------------------ */
/* A one-connection-at-a-time HTTPS server with a script of answers    */

#define MAXSCRIPT	4

struct server {
	int		fd;
	int		port;
	SSL_CTX		*ctx;
	pthread_t	thread;
	pthread_mutex_t	mu;
	int		stop;
	char		*script[MAXSCRIPT];	/* NULL: close without answer */
	int		nscript;
	int		nreq;			/* requests answered */
	int		nconn;			/* connections accepted */
	int		ndone;			/* connections finished */
	char		reqs[16384];		/* requests, concatenated */
	size_t		reqlen;
};

static int
listen_local(int *port, int backlog)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd, one = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1 ||
	    listen(fd, backlog) == -1 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) == -1) {
		close(fd);
		return -1;
	}
	*port = ntohs(sa.sin_port);
	return fd;
}

/* Read one request (headers and Content-Length body) into buf. */
static size_t
read_request(SSL *s, char *buf, size_t cap)
{
	size_t len = 0;
	char *end, *cl;
	long want = -1;
	int n;

	while (len + 1 < cap) {
		if ((n = ssl.read_(s, buf + len, (int)(cap - 1 - len))) <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) == NULL)
			continue;
		if (want < 0) {
			cl = strcasestr(buf, "\r\nContent-Length:");
			want = (long)(end + 4 - buf) +
			    (cl != NULL && cl < end ? atol(cl + 17) : 0);
		}
		if ((long)len >= want)
			break;
	}
	buf[len] = '\0';
	return len;
}

static void *
serve(void *arg)
{
	struct server *sv = arg;
	char req[8192], *reply;
	struct timeval tv = { 5, 0 };
	size_t len, off;
	int fd, n, i;
	SSL *s;

	for (;;) {
		if ((fd = accept(sv->fd, NULL, NULL)) == -1)
			continue;
		pthread_mutex_lock(&sv->mu);
		if (sv->stop) {
			pthread_mutex_unlock(&sv->mu);
			close(fd);
			break;
		}
		sv->nconn++;
		pthread_mutex_unlock(&sv->mu);
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if ((s = ssl.new_(sv->ctx)) == NULL) {
			close(fd);
			continue;
		}
		ssl.set_fd(s, fd);
		if (ssl.accept_(s) == 1) {
			len = read_request(s, req, sizeof(req));
			pthread_mutex_lock(&sv->mu);
			if (len < sizeof(sv->reqs) - sv->reqlen) {
				memcpy(sv->reqs + sv->reqlen, req, len + 1);
				sv->reqlen += len;
			}
			i = sv->nreq < sv->nscript ? sv->nreq : sv->nscript - 1;
			reply = i >= 0 && sv->script[i] != NULL ?
			    strdup(sv->script[i]) : NULL;
			if (len > 0)
				sv->nreq++;
			pthread_mutex_unlock(&sv->mu);
			for (off = 0; reply != NULL && off < strlen(reply);
			    off += (size_t)n)
				if ((n = ssl.write_(s, reply + off,
				    (int)(strlen(reply) - off))) <= 0)
					break;
			free(reply);
			ssl.shutdown_(s);
		}
		ssl.free_(s);
		close(fd);
		pthread_mutex_lock(&sv->mu);
		sv->ndone++;
		pthread_mutex_unlock(&sv->mu);
	}
	return NULL;
}

static int
server_start(struct server *sv, const struct pki *id)
{
	memset(sv, 0, sizeof(*sv));
	pthread_mutex_init(&sv->mu, NULL);
	if ((sv->ctx = ssl.ctx_new(ssl.server_method())) == NULL ||
	    ssl.use_cert(sv->ctx, id->cert) != 1 ||
	    ssl.use_key(sv->ctx, id->key) != 1 ||
	    (sv->fd = listen_local(&sv->port, 16)) == -1)
		return -1;
	return pthread_create(&sv->thread, NULL, serve, sv) == 0 ? 0 : -1;
}

static void
server_stop(struct server *sv)
{
	struct sockaddr_in sa;
	int fd, i;

	pthread_mutex_lock(&sv->mu);
	sv->stop = 1;
	pthread_mutex_unlock(&sv->mu);
	/* wake the accept() */
	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) != -1) {
		memset(&sa, 0, sizeof(sa));
		sa.sin_family = AF_INET;
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((unsigned short)sv->port);
		connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
	}
	pthread_join(sv->thread, NULL);
	close(sv->fd);
	ssl.ctx_free(sv->ctx);
	for (i = 0; i < MAXSCRIPT; i++)
		free(sv->script[i]);
	pthread_mutex_destroy(&sv->mu);
}

/* An HTTP answer: status, extra header lines ("" or "X: y\r\n"), body. */
static char *
answer(int status, const char *headers, const char *body)
{
	size_t n = strlen(headers) + strlen(body) + 200;
	char *a = malloc(n);

	if (a != NULL)
		snprintf(a, n, "HTTP/1.1 %d Whatever\r\nContent-Type: "
		    "application/json; charset=utf-8\r\nContent-Length: %zu\r\n"
		    "Connection: close\r\n%s\r\n%s", status, strlen(body),
		    headers, body);
	return a;
}

/* Set the script: n answers (char * each, owned by the server now). */
static void
script(struct server *sv, int n, ...)
{
	va_list ap;
	int i;

	/* let the server finish the last connection first (a guard) */
	for (i = 0; i < 500 * slow(); i++) {
		pthread_mutex_lock(&sv->mu);
		if (sv->ndone >= sv->nconn)
			break;
		pthread_mutex_unlock(&sv->mu);
		usleep(10000);
	}
	if (i == 500 * slow())
		pthread_mutex_lock(&sv->mu);
	for (i = 0; i < MAXSCRIPT; i++) {
		free(sv->script[i]);
		sv->script[i] = NULL;
	}
	va_start(ap, n);
	for (i = 0; i < n && i < MAXSCRIPT; i++)
		sv->script[i] = va_arg(ap, char *);
	va_end(ap);
	sv->nscript = n;
	sv->nreq = 0;
	sv->nconn = 0;
	sv->ndone = 0;
	sv->reqlen = 0;
	sv->reqs[0] = '\0';
	pthread_mutex_unlock(&sv->mu);
}

/*
 * Wait (up to 5 s, slow builds longer) until the server has finished n
 * connections since the last script(): the client may return before the
 * server is done.
 */
static int
server_wait(struct server *sv, int n)
{
	int i, done = 0;

	for (i = 0; i < 500 * slow() && !done; i++) {
		pthread_mutex_lock(&sv->mu);
		done = sv->ndone >= n;
		pthread_mutex_unlock(&sv->mu);
		if (!done)
			usleep(10000);
	}
	return done;
}

/*
 * libcurl hands its CA directory to OpenSSL here: count the calls, to
 * show that a configured CA bundle is the only trust (no /etc/ssl/certs
 * looked up beside it). Defined in the executable, it comes before
 * libcrypto's for libcurl.
 */
static int load_path_calls;

__attribute__((visibility("default"))) int
X509_STORE_load_path(X509_STORE *store, const char *path)
{
	static int (*real)(X509_STORE *, const char *);

	load_path_calls++;
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "X509_STORE_load_path");
	return real != NULL ? real(store, path) : 0;
}

/* ------------------------------------------------------------------ */
/* Transport failures and the HTTP client                             */

/*
 * A request with timeout seconds; a timeout above 1 s is a guard, not
 * what is tested, and scales for slow builds (the silent server's 1 s
 * is measured).
 */
static int
post(const char *url, const char *ca, size_t calen, const char *caname,
    long timeout, size_t max, struct oa2_http_response *resp,
    struct oa2_error *err)
{
	struct oa2_http_request req;
	static const char body[] = "grant_type=client_credentials&"
	    "client_secret=s3cr3t-in-body";

	memset(&req, 0, sizeof(req));
	req.url = url;
	req.body = body;
	req.bodylen = sizeof(body) - 1;
	req.ca_data = ca;
	req.ca_len = calen;
	req.ca_name = caname;
	req.timeout = timeout > 1 ? timeout * slow() : timeout;
	req.max_body = max;
	oa2_clearerr(err);
	return oa2_http_post(&req, resp, err);
}

static void
no_secret(const struct oa2_error *err, const char *what)
{
	char name[160];

	snprintf(name, sizeof(name), "%s: no request body in the message",
	    what);
	ok(strstr(err->msg, "s3cr3t") == NULL &&
	    strstr(err->msg, "grant_type") == NULL, name);
}

static void
test_transport(const char *ca, size_t calen)
{
	struct oa2_http_response resp;
	struct oa2_error err;
	char url[128];
	double t0;
	int fd, port, r;

	r = post("http://127.0.0.1:1/token", ca, calen, NULL, 2, 1024, &resp,
	    &err);
	ok(r == OA2_ERR_CONFIG, "http:// refused");
	has_str(err.msg, "https://", "http://: sentence");
	ok(resp.body == NULL && resp.retry_after == -1, "http://: empty");
	r = post("ftp://127.0.0.1/token", ca, calen, NULL, 2, 1024, &resp,
	    &err);
	ok(r == OA2_ERR_CONFIG, "ftp:// refused");

	/* a port with nothing listening */
	if ((fd = listen_local(&port, 1)) == -1) {
		ok(0, "a free port");
		return;
	}
	close(fd);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/t/oauth2/v2.0/token",
	    port);
	r = post(url, ca, calen, NULL, 5, 1024, &resp, &err);
	ok(r == OA2_ERR_NETWORK, "refused: OA2_ERR_NETWORK");
	has_str(err.msg, "connection to the token endpoint 127.0.0.1:",
	    "refused: sentence names the host");
	has_str(err.msg, "refused", "refused: sentence says refused");
	no_secret(&err, "refused");

	/* a socket that accepts (in the kernel) and never answers */
	if ((fd = listen_local(&port, 4)) == -1) {
		ok(0, "a listening socket");
		return;
	}
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/t/oauth2/v2.0/token",
	    port);
	t0 = mono();
	r = post(url, ca, calen, NULL, 1, 1024, &resp, &err);
	t0 = mono() - t0;
	close(fd);
	ok(r == OA2_ERR_NETWORK, "silent server: OA2_ERR_NETWORK");
	snprintf(url, sizeof(url), "no answer from the token endpoint "
	    "127.0.0.1:%d within 1 seconds", port);
	has_str(err.msg, url, "silent server: sentence");
	/* the timeout, and up to 1.5 s (more in slow builds) to notice it */
	if (!ok(t0 >= 0.9 && t0 < 1 + 1.5 * slow(),
	    "silent server: 1 s timeout honoured"))
		printf("#   took %.2f s\n", t0);

	/* DNS */
	t0 = mono();
	r = post("https://nonexistent.invalid/t/oauth2/v2.0/token", ca, calen,
	    NULL, 3, 1024, &resp, &err);
	ok(r == OA2_ERR_NETWORK, "unresolvable: OA2_ERR_NETWORK");
	has_str(err.msg, "cannot resolve the token endpoint's host "
	    "nonexistent.invalid (DNS)", "unresolvable: sentence");
	no_secret(&err, "unresolvable");

	/* userinfo never reaches a message */
	r = post("https://user:pa55@nonexistent.invalid/t", ca, calen, NULL, 3,
	    1024, &resp, &err);
	ok(r == OA2_ERR_NETWORK && strstr(err.msg, "pa55") == NULL &&
	    strstr(err.msg, "user") == NULL, "userinfo left out of messages");
}

static void
test_https(struct server *sv, const char *ca, size_t calen,
    const char *otherca, size_t otherlen)
{
	struct oa2_http_response resp;
	struct oa2_error err;
	char url[128], date[64], want[160], *big;
	time_t t;
	int r;

	snprintf(url, sizeof(url), "https://127.0.0.1:%d/tenant/oauth2/v2.0/"
	    "token", sv->port);

	/* a plain answer, and what the server saw */
	load_path_calls = 0;
	script(sv, 1, answer(200, "", "{\"ok\":1}"));
	r = post(url, ca, calen, "/etc/test-ca.pem", 5, 1024, &resp, &err);
	if (!ok(r == 0, "https POST succeeds"))
		printf("#   %s\n", err.msg);
	ok(resp.status == 200, "status 200");
	is_str(resp.body, "{\"ok\":1}", "body");
	ok(resp.len == 8, "length");
	ok(load_path_calls == 0, "a CA bundle from memory is the only trust: "
	    "no CA directory beside it");
	ok(resp.retry_after == -1, "no Retry-After: -1");
	oa2_http_response_clear(&resp);
	ok(resp.body == NULL && resp.len == 0 && resp.retry_after == -1,
	    "response cleared");
	oa2_http_response_clear(NULL);
	has_str(sv->reqs, "POST /tenant/oauth2/v2.0/token HTTP/1.1\r\n",
	    "request line");
	has_str(sv->reqs, "\r\nContent-Type: application/x-www-form-urlencoded"
	    "\r\n", "Content-Type");
	has_str(sv->reqs, "\r\nAccept: application/json\r\n", "Accept");
	has_str(sv->reqs, "\r\nUser-Agent: " PACKAGE_NAME "/" PACKAGE_VERSION
	    "\r\n", "User-Agent");
	ok(strcasestr(sv->reqs, "\r\nExpect:") == NULL, "no Expect header");
	has_str(sv->reqs, "\r\n\r\ngrant_type=client_credentials&"
	    "client_secret=s3cr3t-in-body", "body sent as is");

	/* an error status is not a transport failure */
	script(sv, 1, answer(503, "Retry-After: 7\r\n", "{}"));
	r = post(url, ca, calen, NULL, 5, 1024, &resp, &err);
	ok(r == 0 && resp.status == 503, "503 returned as a status");
	ok(resp.retry_after == 7, "Retry-After: 7");
	oa2_http_response_clear(&resp);

	t = time(NULL) + 30;
	strftime(date, sizeof(date), "Retry-After: %a, %d %b %Y %H:%M:%S "
	    "GMT\r\n", gmtime(&t));
	script(sv, 1, answer(429, date, "{}"));
	r = post(url, ca, calen, NULL, 5, 1024, &resp, &err);
	if (!ok(r == 0 && resp.status == 429 && resp.retry_after >= 27 &&
	    resp.retry_after <= 30, "Retry-After as an HTTP-date"))
		printf("#   r %d status %ld retry_after %ld\n", r, resp.status,
		    resp.retry_after);
	oa2_http_response_clear(&resp);

	script(sv, 1, answer(429, "Retry-After: soon\r\n", "{}"));
	r = post(url, ca, calen, NULL, 5, 1024, &resp, &err);
	ok(r == 0 && resp.retry_after == -1, "unparsable Retry-After ignored");
	oa2_http_response_clear(&resp);

	/* the cap on the answer */
	script(sv, 1, answer(200, "", "0123456789"));
	r = post(url, ca, calen, NULL, 5, 10, &resp, &err);
	ok(r == 0 && resp.len == 10, "a body of exactly max_body passes");
	oa2_http_response_clear(&resp);
	script(sv, 1, answer(200, "", "0123456789A"));
	r = post(url, ca, calen, NULL, 5, 10, &resp, &err);
	ok(r == OA2_ERR_RESPONSE, "max_body + 1 refused");
	has_str(err.msg, "sent more than 10 bytes", "max_body: sentence");
	ok(resp.body == NULL, "max_body: no body");
	if ((big = malloc(200001)) != NULL) {
		memset(big, 'x', 200000);
		big[200000] = '\0';
		script(sv, 1, answer(200, "", big));
		free(big);
		r = post(url, ca, calen, NULL, 5, 65536, &resp, &err);
		ok(r == OA2_ERR_RESPONSE, "200 kB answer refused");
		has_str(err.msg, "sent more than 65536 bytes",
		    "200 kB: sentence");
	}
	script(sv, 1, answer(200, "", ""));
	r = post(url, ca, calen, NULL, 5, 1024, &resp, &err);
	ok(r == 0 && resp.body != NULL && resp.body[0] == '\0' &&
	    resp.len == 0, "empty body: empty string");
	oa2_http_response_clear(&resp);

	/* the server hangs up without answering */
	script(sv, 1, NULL);
	r = post(url, ca, calen, NULL, 5, 1024, &resp, &err);
	ok(r == OA2_ERR_NETWORK, "hang-up: OA2_ERR_NETWORK");
	has_str(err.msg, "closed the connection", "hang-up: sentence");

	/* TLS: a CA that did not sign the server's certificate */
	script(sv, 1, answer(200, "", "{}"));
	r = post(url, otherca, otherlen, "/etc/test-ca.pem", 5, 1024, &resp,
	    &err);
	ok(r == OA2_ERR_NETWORK, "untrusted certificate: OA2_ERR_NETWORK");
	snprintf(want, sizeof(want), "the TLS certificate of 127.0.0.1:%d is "
	    "not trusted by /etc/test-ca.pem", sv->port);
	has_str(err.msg, want, "untrusted certificate: sentence");
	ok(server_wait(sv, 1) && sv->nreq == 0 && sv->reqlen == 0,
	    "untrusted certificate: nothing sent");
	no_secret(&err, "untrusted");

	/* TLS: the system bundle does not know our test CA */
	script(sv, 1, answer(200, "", "{}"));
	/* reading the whole system store takes seconds under valgrind */
	r = post(url, NULL, 0, NULL, 120, 1024, &resp, &err);
	ok(r == OA2_ERR_NETWORK, "system CA bundle: OA2_ERR_NETWORK");
	ok(load_path_calls > 0, "system CA bundle: libcurl's CA directory "
	    "too (the count above is real)");
	has_str(err.msg, "not trusted by the system CA bundle",
	    "system CA bundle: sentence");

	/* TLS: a trusted certificate that names another host */
	snprintf(url, sizeof(url), "https://localhost:%d/tenant/oauth2/v2.0/"
	    "token", sv->port);
	script(sv, 1, answer(200, "", "{}"));
	r = post(url, ca, calen, "/etc/test-ca.pem", 5, 1024, &resp, &err);
	ok(r == OA2_ERR_NETWORK, "wrong host name: OA2_ERR_NETWORK");
	has_str(err.msg, "does not name the host", "wrong host name: "
	    "sentence");
	ok(server_wait(sv, 1) && sv->nreq == 0 && sv->reqlen == 0,
	    "wrong host name: nothing sent");

	/* a CA bundle that is not PEM */
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/t", sv->port);
	r = post(url, "garbage", 7, "/etc/bad-ca.pem", 5, 1024, &resp, &err);
	ok(r != 0 && resp.body == NULL, "garbage CA bundle refused");
	has_str(err.msg, "/etc/bad-ca.pem", "garbage CA bundle: named");
}

/* ------------------------------------------------------------------ */
/* Whole grant requests                                                */

static char logbuf[8192];

static void
logfn(void *ctx, int level, const char *msg)
{
	size_t n = strlen(logbuf);

	snprintf(logbuf + n, sizeof(logbuf) - n, "%d %s\n", level, msg);
}

#define SECRET	"s3cr&t=+ %x"
#define SECRET_ENC	"s3cr%26t%3D%2B%20%25x"

static void
test_fetch(struct server *sv, char *ca, size_t calen)
{
	struct oa2_log lg = { logfn, NULL, OA2_LOG_DEBUG };
	struct oa2_blob blob = { .path = "/etc/test-ca.pem", .data = ca,
	    .len = calen };
	struct oa2_account acct;
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	char url[128];
	double t0;
	int r;

	snprintf(url, sizeof(url), "https://127.0.0.1:%d/contoso.com/oauth2/"
	    "v2.0/token", sv->port);
	memset(&acct, 0, sizeof(acct));
	acct.match = "*@contoso.com";
	acct.client_id = "11111111-2222-3333-4444-555555555555";
	acct.scope = "https://outlook.office365.com/.default";
	acct.token_url = url;
	acct.ca = &blob;
	acct.kind = &oa2_cred_secret;
	acct.client_secret = SECRET;
	/*
	 * A transient refusal is retried only when the wait and a second
	 * request still fit within the timeout: room enough for slow builds
	 * (where a first request may take seconds), so that the retry
	 * follows that rule, not the machine's speed.
	 */
	acct.timeout = 10 * slow();

	/* 503 with Retry-After: 1, then a token */
	script(sv, 2, answer(503, "Retry-After: 1\r\n", "{\"error\":"
	    "\"temporarily_unavailable\",\"error_description\":\"AADSTS90024: "
	    "A transient error has occurred.\",\"error_codes\":[90024]}"),
	    answer(200, "", "{" BEARER ",\"expires_in\":3599,"
	    "\"ext_expires_in\":3599,\"access_token\":\"" TOK "\"}"));
	logbuf[0] = '\0';
	t0 = mono();
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	t0 = mono() - t0;
	if (!ok(r == 0, "fetch: retried once after 503"))
		printf("#   %d %s\n", r, err.msg);
	is_str(tok.access_token, TOK, "fetch: token");
	ok(tok.expires_at >= NOW + 3599 &&
	    tok.expires_at <= NOW + 3599 + 5 * slow(), "fetch: expiry from now");
	ok(sv->nreq == 2, "fetch: two requests");
	ok(t0 >= 0.95 && t0 < 5 * slow(), "fetch: waited Retry-After");
	has_str(sv->reqs, "\r\n\r\ngrant_type=client_credentials&client_id="
	    "11111111-2222-3333-4444-555555555555&scope=https%3A%2F%2Foutlook."
	    "office365.com%2F.default&client_secret=" SECRET_ENC,
	    "fetch: the form");
	has_str(logbuf, "3 requesting a token for client_id 11111111-2222-"
	    "3333-4444-555555555555 from https://127.0.0.1:", "fetch: debug log");
	has_str(logbuf, "1 token request refused (HTTP 503): "
	    "temporarily_unavailable: AADSTS90024", "fetch: warning logged");
	has_str(logbuf, "retrying in 1 s", "fetch: retry logged");
	has_str(logbuf, "2 got a token for account *@contoso.com, expires in ",
	    "fetch: info log");
	ok(strstr(logbuf, "tok3n") == NULL && strstr(logbuf, "s3cr") == NULL &&
	    strstr(logbuf, SECRET_ENC) == NULL, "fetch: no secret or token "
	    "logged");
	oa2_token_clear(&tok);

	/* a Retry-After beyond the timeout: no retry */
	acct.timeout = 5;
	script(sv, 2, answer(429, "Retry-After: 120\r\n", "{\"error\":"
	    "\"temporarily_unavailable\"}"), answer(200, "", "{}"));
	t0 = mono();
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	t0 = mono() - t0;
	ok(r == OA2_ERR_TRANSIENT, "fetch: 429 transient");
	ok(sv->nreq == 1 && t0 < 3 * slow(), "fetch: no wait beyond the timeout");
	ok(tok.access_token == NULL, "fetch: 429 no token");

	/* two transient answers: one retry only */
	acct.timeout = 10 * slow();
	script(sv, 1, answer(500, "Retry-After: 0\r\n", "<html>oops</html>"));
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	ok(r == OA2_ERR_TRANSIENT && sv->nreq == 2, "fetch: one retry only");
	has_str(err.msg, "HTTP 500 with a non-JSON body", "fetch: 500 "
	    "sentence");

	/* a permanent refusal: no retry */
	script(sv, 1, answer(401, "", "{\"error\":\"invalid_client\","
	    "\"error_description\":\"AADSTS7000215: Invalid client secret "
	    "provided.\\r\\nTrace ID: x\",\"error_codes\":[7000215]}"));
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	ok(r == OA2_ERR_DENIED && sv->nreq == 1, "fetch: 401 not retried");
	has_str(err.msg, "invalid_client: AADSTS7000215 (the client secret is "
	    "wrong", "fetch: 401 sentence");

	/* a redirect: a configuration error naming where it pointed */
	script(sv, 1, answer(302, "Location: https://user:pw@login.example"
	    ".test:8443/x?y\r\n", "{\"error\":\"invalid_client\","
	    "\"error_codes\":[7000215]}"));
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	ok(r == OA2_ERR_CONFIG && sv->nreq == 1, "fetch: 302 is a "
	    "configuration error, not retried");
	has_str(err.msg, "the token endpoint answered HTTP 302 (a redirect to "
	    "login.example.test:8443, not followed): the authority is wrong",
	    "fetch: 302 sentence names the host");
	ok(strstr(err.msg, "pw") == NULL && strstr(err.msg, "AADSTS") ==
	    NULL, "fetch: 302 sentence: no userinfo, no body");
	script(sv, 1, answer(307, "Location: /elsewhere\r\n", ""));
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	ok(r == OA2_ERR_CONFIG, "fetch: 307 to a path: configuration error");
	has_str(err.msg, "HTTP 307 (a redirect, not followed)", "fetch: 307 "
	    "sentence");
	script(sv, 1, answer(301, "Location: https://evil\x01host/\r\n",
	    ""));
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	ok(r == OA2_ERR_CONFIG && strchr(err.msg, '\x01') == NULL,
	    "fetch: 301: the Location host is sanitised");

	/* no credential */
	acct.client_secret = NULL;
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, &err);
	ok(r == OA2_ERR_CREDENTIAL, "fetch: no secret refused");
	acct.kind = NULL;
	r = oa2_token_fetch(&acct, &lg, NOW, &tok, NULL);
	ok(r == OA2_ERR_CREDENTIAL, "fetch: no credential kind, NULL err");
}

/* A certificate credential: the form carries a signed assertion. */
static void
test_fetch_cert(struct server *sv, char *ca, size_t calen, const char *dir)
{
	struct oa2_log lg = { logfn, NULL, OA2_LOG_DEBUG };
	struct oa2_blob blob = { .path = "/etc/test-ca.pem", .data = ca,
	    .len = calen };
	struct oa2_cert_source src;
	struct oa2_account acct;
	struct oa2_token tok = { NULL, 0 };
	struct oa2_error err;
	struct pki me = { NULL, NULL };
	char url[128], certpath[PATH_MAX], keypath[PATH_MAX], *a;
	FILE *f;
	int r, fd;

	snprintf(certpath, sizeof(certpath), "%s/app.crt", dir);
	snprintf(keypath, sizeof(keypath), "%s/app.key", dir);
	if (make_cert(&me, "sasl-oauth2 test app", NULL, NULL, 1) != 0 ||
	    (f = fopen(certpath, "w")) == NULL) {
		ok(0, "cert: make a certificate");
		pki_free(&me);
		return;
	}
	PEM_write_X509(f, me.cert);
	fclose(f);
	if ((fd = open(keypath, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    (f = fdopen(fd, "w")) == NULL) {
		ok(0, "cert: write the key");
		pki_free(&me);
		return;
	}
	PEM_write_PrivateKey(f, me.key, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	pki_free(&me);

	memset(&src, 0, sizeof(src));
	src.certificate = certpath;
	src.private_key = keypath;
	memset(&acct, 0, sizeof(acct));
	if ((r = oa2_cert_load(&src, NULL, &acct.cert, &err)) != 0) {
		ok(0, "cert: load");
		printf("#   %s\n", err.msg);
		return;
	}
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/contoso.com/oauth2/"
	    "v2.0/token", sv->port);
	acct.match = "app@contoso.com";
	acct.client_id = "11111111-2222-3333-4444-555555555555";
	acct.scope = "https://outlook.office365.com/.default";
	acct.token_url = url;
	acct.ca = &blob;
	acct.timeout = 10 * slow();
	acct.kind = &oa2_cred_cert;
	acct.assertion_alg = OA2_ALG_PS256;
	acct.assertion_lifetime = 600;

	script(sv, 1, answer(200, "", "{" BEARER ",\"expires_in\":\"3599\","
	    "\"access_token\":\"" TOK "\"}"));
	logbuf[0] = '\0';
	r = oa2_token_fetch(&acct, &lg, time(NULL), &tok, &err);
	if (!ok(r == 0, "cert: fetch"))
		printf("#   %s\n", err.msg);
	is_str(tok.access_token, TOK, "cert: token");
	has_str(sv->reqs, "&scope=https%3A%2F%2Foutlook.office365.com%2F."
	    "default&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
	    "client-assertion-type%3Ajwt-bearer&client_assertion=eyJ",
	    "cert: assertion in the form");
	ok(strstr(sv->reqs, "client_secret") == NULL, "cert: no client_secret");
	a = strstr(sv->reqs, "client_assertion=");
	if (a != NULL) {
		a[17 + 40] = '\0';
		ok(strstr(logbuf, a + 17) == NULL, "cert: assertion not logged");
	}
	oa2_token_clear(&tok);
	oa2_cert_free(&acct.cert);
	unlink(certpath);
	unlink(keypath);
}

int
main(void)
{
	struct pki ca = { NULL, NULL }, other = { NULL, NULL },
	    srv = { NULL, NULL };
	struct server sv;
	char *capem = NULL, *otherpem = NULL, dir[] = "/tmp/test-token.XXXXXX";
	const char *top = getenv("top_srcdir"), *slash;
	size_t calen = 0, otherlen = 0;

	signal(SIGPIPE, SIG_IGN);
	/* the transport tests talk to 127.0.0.1 directly */
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTPS_PROXY");
	unsetenv("all_proxy");
	unsetenv("ALL_PROXY");
	if (top != NULL)
		snprintf(datadir, sizeof(datadir), "%s/tests/data/token", top);
	else if ((slash = strrchr(__FILE__, '/')) != NULL)
		snprintf(datadir, sizeof(datadir), "%.*s/data/token",
		    (int)(slash - __FILE__), __FILE__);
	else
		snprintf(datadir, sizeof(datadir), "data/token");
	curl_global_init(CURL_GLOBAL_DEFAULT);

	test_parse();
	test_meaning_copy();
	test_form();

	if (make_cert(&ca, "sasl-oauth2 test CA", NULL, NULL, 0) != 0 ||
	    make_cert(&other, "another test CA", NULL, NULL, 0) != 0 ||
	    make_cert(&srv, "token endpoint", &ca, "IP:127.0.0.1", 0) != 0 ||
	    (capem = cert_pem(ca.cert, &calen)) == NULL ||
	    (otherpem = cert_pem(other.cert, &otherlen)) == NULL) {
		ok(0, "make the test PKI");
		goto out;
	}
	test_transport(capem, calen);
	if (ssl_load() != 0) {
		printf("# skip: libssl cannot be loaded, no HTTPS server\n");
		goto out;
	}
	if (server_start(&sv, &srv) != 0) {
		ok(0, "start the HTTPS server");
		goto out;
	}
	test_https(&sv, capem, calen, otherpem, otherlen);
	test_fetch(&sv, capem, calen);
	if (mkdtemp(dir) != NULL) {
		test_fetch_cert(&sv, capem, calen, dir);
		rmdir(dir);
	}
	server_stop(&sv);
	dlclose(ssl.h);
 out:
	free(capem);
	free(otherpem);
	pki_free(&ca);
	pki_free(&other);
	pki_free(&srv);
	curl_global_cleanup();
	return done_testing();
}
