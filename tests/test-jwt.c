/*
 * Certificate credentials and client assertions.  Keys and certificates
 * are made here with OpenSSL; format conversions and one signature check
 * per algorithm use the openssl command, so that what we sign is judged
 * by code that is not ours.
 */
#include "config.h"

#include <sys/stat.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "secret.h"
#include "tap.h"
#include "wire.h"

static char dir[] = "/tmp/oa2-jwt-XXXXXX";
static char logged[1024];

static void
catch_log(void *ctx, int level, const char *msg)
{
	(void)ctx;
	if (level <= OA2_LOG_WARNING)
		snprintf(logged, sizeof(logged), "%s", msg);
}

static const struct oa2_log lg = { catch_log, NULL, OA2_LOG_DEBUG };

static const char *
path(const char *name)
{
	static char buf[8][300];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static int
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static EVP_PKEY *
new_key(const char *type, int bits)
{
	if (strcmp(type, "EC") == 0)
		return EVP_EC_gen("P-256");
	return EVP_RSA_gen((unsigned)bits);
}

/* A self-signed certificate valid from now+from to now+to seconds. */
static void
write_cert(const char *name, EVP_PKEY *key, long from, long to)
{
	X509 *x = X509_new();
	X509_NAME *n;
	FILE *f;

	if (x == NULL)
		abort();
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 4711);
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_set_pubkey(x, key);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)"sasl-oauth2 test", -1, -1, 0);
	X509_set_issuer_name(x, n);
	if (X509_sign(x, key, EVP_sha256()) == 0 ||
	    (f = fopen(path(name), "w")) == NULL)
		abort();
	PEM_write_X509(f, x);
	fclose(f);
	X509_free(x);
}

static void
write_key(const char *name, EVP_PKEY *key, mode_t mode)
{
	FILE *f = fopen(path(name), "w");

	if (f == NULL || PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL,
	    NULL) != 1)
		abort();
	fclose(f);
	chmod(path(name), mode);
}

static void
write_text(const char *name, const char *text, mode_t mode)
{
	FILE *f = fopen(path(name), "w");

	if (f == NULL)
		abort();
	fputs(text, f);
	fclose(f);
	chmod(path(name), mode);
}

/* Load a PEM credential; returns the error code, err holds the sentence. */
static int
load(const char *cert, const char *key, const char *pass,
    struct oa2_cert **c, struct oa2_error *err)
{
	struct oa2_cert_source src = { 0 };

	src.certificate = cert != NULL ? path(cert) : NULL;
	src.private_key = key != NULL ? path(key) : NULL;
	src.passphrase_file = pass != NULL ? path(pass) : NULL;
	oa2_clearerr(err);
	return oa2_cert_load(&src, &lg, c, err);
}

static int
load_p12(const char *p12, const char *pass, struct oa2_cert **c,
    struct oa2_error *err)
{
	struct oa2_cert_source src = { 0 };

	src.pkcs12 = path(p12);
	src.pkcs12_passphrase_file = pass != NULL ? path(pass) : NULL;
	oa2_clearerr(err);
	return oa2_cert_load(&src, &lg, c, err);
}

/* base64url without padding to bytes, with OpenSSL's decoder. */
static unsigned char *
unb64url(const char *s, size_t len, size_t *outlen)
{
	char *t = malloc(len + 4);
	unsigned char *out = malloc(len + 4);
	size_t i, n = len;
	int r;

	for (i = 0; i < len; i++)
		t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
	while (n % 4 != 0)
		t[n++] = '=';
	r = EVP_DecodeBlock(out, (unsigned char *)t, (int)n);
	free(t);
	if (r < 0) {
		free(out);
		return NULL;
	}
	*outlen = (size_t)r - (n - len);	/* minus the padding */
	out[*outlen] = '\0';
	return out;
}

struct jwt {
	json_t		*header, *claims;
	unsigned char	*sig;
	size_t		siglen;
	char		*input;		/* header.claims, as signed */
};

static int
split(const char *s, struct jwt *j)
{
	const char *d1 = strchr(s, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	unsigned char *h, *c;
	size_t hl, cl;

	memset(j, 0, sizeof(*j));
	if (d2 == NULL || strchr(d2 + 1, '.') != NULL ||
	    strpbrk(s, "=+/ \n") != NULL)
		return -1;
	h = unb64url(s, (size_t)(d1 - s), &hl);
	c = unb64url(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
	j->sig = unb64url(d2 + 1, strlen(d2 + 1), &j->siglen);
	j->header = h ? json_loadb((char *)h, hl, 0, NULL) : NULL;
	j->claims = c ? json_loadb((char *)c, cl, 0, NULL) : NULL;
	j->input = strndup(s, (size_t)(d2 - s));
	free(h);
	free(c);
	return j->header && j->claims && j->sig ? 0 : -1;
}

static void
jwt_free(struct jwt *j)
{
	json_decref(j->header);
	json_decref(j->claims);
	free(j->sig);
	free(j->input);
}

/* Verify with the certificate's public key; PSS salt must be 32. */
static int
verify(const struct jwt *j, const char *certfile, int pss)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx;
	FILE *f = fopen(certfile, "r");
	X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	int ok_ = 0;

	if (f != NULL)
		fclose(f);
	if (x != NULL && md != NULL &&
	    EVP_DigestVerifyInit(md, &pctx, EVP_sha256(), NULL,
	    X509_get0_pubkey(x)) == 1 &&
	    (!pss || (EVP_PKEY_CTX_set_rsa_padding(pctx,
	    RSA_PKCS1_PSS_PADDING) == 1 &&
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) == 1 &&
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1)))
		ok_ = EVP_DigestVerify(md, j->sig, j->siglen,
		    (unsigned char *)j->input, strlen(j->input)) == 1;
	EVP_MD_CTX_free(md);
	X509_free(x);
	return ok_;
}

/* The same check by the openssl command. */
static int
verify_cli(const struct jwt *j, const char *certfile, int pss)
{
	FILE *f;

	if ((f = fopen(path("sig.bin"), "w")) == NULL)
		abort();
	fwrite(j->sig, 1, j->siglen, f);
	fclose(f);
	write_text("input.txt", j->input, 0600);
	return sh("openssl x509 -in %s -pubkey -noout > %s && "
	    "openssl dgst -sha256 -verify %s %s -signature %s %s > /dev/null",
	    certfile, path("pub.pem"), path("pub.pem"),
	    pss ? "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32" :
	    "", path("sig.bin"), path("input.txt")) == 0;
}

/* "SHA1 Fingerprint=AB:CD:..." from the openssl command, colons dropped. */
static void
cli_thumbprint(const char *certfile, const char *md, char *out, size_t len)
{
	char cmd[512], line[256], *p, *o = out;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s -noout -fingerprint "
	    "-%s", certfile, md);
	if ((f = popen(cmd, "r")) == NULL || fgets(line, sizeof(line), f) ==
	    NULL)
		abort();
	pclose(f);
	for (p = strchr(line, '=') + 1; *p != '\0' && *p != '\n' &&
	    (size_t)(o - out) < len - 1; p++)
		if (*p != ':')
			*o++ = *p;
	*o = '\0';
}

/* Hex to base64url, as the hand steps did with a web converter. */
static char *
hex_to_b64url(const char *hex)
{
	unsigned char bin[64], b64[100];
	size_t i, n = strlen(hex) / 2;
	char *out;
	int len;

	for (i = 0; i < n; i++)
		sscanf(hex + 2 * i, "%2hhx", &bin[i]);
	len = EVP_EncodeBlock(b64, bin, (int)n);
	while (len > 0 && b64[len - 1] == '=')
		len--;
	out = strndup((char *)b64, (size_t)len);
	for (i = 0; out[i]; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	return out;
}

static const char *
jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static json_int_t
jint(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void
test_assertions(void)
{
	static const char aud[] = "https://login.microsoftonline.com/"
	    "contoso.onmicrosoft.com/oauth2/v2.0/token";
	static const char cid[] = "11111111-2222-3333-4444-555555555555";
	struct oa2_cert *c = NULL;
	struct oa2_error err;
	struct jwt j, j2;
	char *a = NULL, *a2 = NULL, hex1[64], hex256[100], *want;
	time_t now = time(NULL);

	ok(load("app.crt", "app.key", NULL, &c, &err) == OA2_OK,
	    "PKCS#8 key and certificate load");
	if (c == NULL) {
		printf("#   %s\n", err.msg);
		return;
	}
	cli_thumbprint(path("app.crt"), "sha1", hex1, sizeof(hex1));
	is_str(oa2_cert_sha1_hex(c), hex1, "SHA-1 thumbprint as openssl "
	    "x509 -fingerprint prints it (and Azure shows it)");
	want = hex_to_b64url(hex1);
	is_str(oa2_cert_x5t(c), want, "x5t is the base64url SHA-1 thumbprint");
	free(want);
	cli_thumbprint(path("app.crt"), "sha256", hex256, sizeof(hex256));
	want = hex_to_b64url(hex256);
	is_str(oa2_cert_x5t_s256(c), want,
	    "x5t#S256 is the base64url SHA-256 thumbprint");
	free(want);
	has_str(oa2_cert_subject(c), "CN=sasl-oauth2 test", "subject kept");
	ok(oa2_cert_not_after(c) > now + 399 * 86400 &&
	    oa2_cert_not_after(c) <= now + 400 * 86400 + 5, "notAfter read");

	/* PS256 */
	ok(oa2_jwt_assertion(c, OA2_ALG_PS256, cid, aud, now, 600, &a,
	    &err) == OA2_OK && a != NULL, "PS256 assertion signed");
	ok(a != NULL && split(a, &j) == 0, "three base64url parts of JSON");
	if (j.header != NULL && j.claims != NULL) {
		is_str(jstr(j.header, "alg"), "PS256", "alg PS256");
		is_str(jstr(j.header, "typ"), "JWT", "typ JWT");
		is_str(jstr(j.header, "x5t#S256"), oa2_cert_x5t_s256(c),
		    "x5t#S256 in the header");
		ok(json_object_get(j.header, "x5t") == NULL,
		    "no x5t beside x5t#S256");
		ok(json_object_size(j.header) == 3, "nothing else in header");
		is_str(jstr(j.claims, "aud"), aud, "aud is the token endpoint");
		is_str(jstr(j.claims, "iss"), cid, "iss is the client id");
		is_str(jstr(j.claims, "sub"), cid, "sub is the client id");
		ok(jint(j.claims, "iat") == now && jint(j.claims, "nbf") == now,
		    "iat = nbf = now, as integers");
		ok(jint(j.claims, "exp") == now + 600, "exp = now + lifetime");
		ok(jstr(j.claims, "jti") != NULL &&
		    strlen(jstr(j.claims, "jti")) == 36 &&
		    jstr(j.claims, "jti")[14] == '4', "jti is a v4 UUID");
		ok(j.siglen == 256, "2048-bit signature");
		ok(verify(&j, path("app.crt"), 1),
		    "PS256 verifies with PSS, SHA-256, MGF1-SHA-256, salt 32");
		ok(!verify(&j, path("app.crt"), 0),
		    "and is not a PKCS#1 v1.5 signature");
		ok(verify_cli(&j, path("app.crt"), 1),
		    "openssl dgst -verify accepts the PS256 signature");
		ok(!verify(&j, path("other.crt"), 1),
		    "another certificate's key does not verify it");
		j.input[5] ^= 1;
		ok(!verify(&j, path("app.crt"), 1), "a changed header fails");
	}
	ok(oa2_jwt_assertion(c, OA2_ALG_PS256, cid, aud, now, 600, &a2,
	    &err) == OA2_OK && split(a2, &j2) == 0, "second assertion");
	if (j.claims != NULL && j2.claims != NULL)
		ok(strcmp(jstr(j.claims, "jti"), jstr(j2.claims, "jti")) != 0,
		    "every assertion has a fresh jti");
	jwt_free(&j);
	jwt_free(&j2);
	oa2_freezero_str(&a);
	oa2_freezero_str(&a2);

	/* RS256 */
	ok(oa2_jwt_assertion(c, OA2_ALG_RS256, cid, aud, now, 300, &a,
	    &err) == OA2_OK && a != NULL && split(a, &j) == 0,
	    "RS256 assertion signed");
	if (j.header != NULL) {
		is_str(jstr(j.header, "alg"), "RS256", "alg RS256");
		is_str(jstr(j.header, "x5t"), oa2_cert_x5t(c),
		    "x5t (SHA-1) in the header");
		ok(json_object_get(j.header, "x5t#S256") == NULL,
		    "no x5t#S256 with RS256");
		ok(jint(j.claims, "exp") == now + 300, "lifetime honoured");
		ok(verify(&j, path("app.crt"), 0), "RS256 verifies (PKCS#1 v1.5)");
		ok(verify_cli(&j, path("app.crt"), 0),
		    "openssl dgst -verify accepts the RS256 signature");
		ok(!verify(&j, path("app.crt"), 1), "and is not PSS");
		ok(j.siglen == 256,
		    "RS256 signature length");
	}
	jwt_free(&j);
	oa2_freezero_str(&a);
	oa2_cert_free(&c);
	ok(c == NULL, "free clears the pointer");
	oa2_cert_free(&c);
	oa2_cert_free(NULL);
	ok(1, "free accepts NULL");
}

static void
expect_fail(int r, const struct oa2_error *err, struct oa2_cert *c,
    const char *want, const char *name)
{
	ok(r == OA2_ERR_CREDENTIAL && c == NULL, name);
	has_str(err->msg, want, name);
}

static void
test_formats(void)
{
	struct oa2_cert *c = NULL;
	struct oa2_error err;
	char sha1[41], x5t[28], x5t256[44];
	int r;

	r = load("app.crt", "app-pkcs1.key", NULL, &c, &err);
	ok(r == OA2_OK && c != NULL, "PKCS#1 (BEGIN RSA PRIVATE KEY) loads");
	oa2_cert_free(&c);

	r = load("both.pem", "both.pem", NULL, &c, &err);
	ok(r == OA2_OK && c != NULL, "certificate and key in one file");
	oa2_cert_free(&c);

	r = load("chain.pem", "app.key", NULL, &c, &err);
	ok(r == OA2_OK && c != NULL, "a chain file: the first is ours");
	oa2_cert_free(&c);

	r = load("app.crt", "app-enc.key", "pass.txt", &c, &err);
	ok(r == OA2_OK && c != NULL, "encrypted key with its passphrase");
	oa2_cert_free(&c);

	r = load("app.crt", "app-enc.key", NULL, &c, &err);
	expect_fail(r, &err, c, "is encrypted: set private_key_passphrase_file",
	    "encrypted key without passphrase");
	r = load("app.crt", "app-enc.key", "wrong.txt", &c, &err);
	expect_fail(r, &err, c, "wrong passphrase for private key",
	    "encrypted key with the wrong passphrase");
	ok(strstr(err.msg, "hunter2") == NULL && strstr(err.msg, "wrong-pass")
	    == NULL, "no passphrase in the sentence");

	r = load_p12("app.p12", "pass.txt", &c, &err);
	ok(r == OA2_OK && c != NULL, "PKCS#12 with passphrase");
	if (c != NULL) {
		oa2_cert_file_thumbprints(path("app.crt"), sha1, x5t, x5t256,
		    &err);
		is_str(oa2_cert_sha1_hex(c), sha1, "same thumbprint from .p12");
	}
	oa2_cert_free(&c);
	r = load_p12("app.p12", NULL, &c, &err);
	expect_fail(r, &err, c, "it needs a passphrase", "PKCS#12 without "
	    "its passphrase");
	r = load_p12("app.p12", "wrong.txt", &c, &err);
	expect_fail(r, &err, c, "wrong passphrase", "PKCS#12, wrong pass");
	r = load_p12("nopass.p12", NULL, &c, &err);
	ok(r == OA2_OK && c != NULL, "PKCS#12 without a passphrase");
	oa2_cert_free(&c);
	r = load_p12("private.crt", NULL, &c, &err);
	expect_fail(r, &err, c, "is not a PKCS#12 file", "PEM as PKCS#12");

	/* The tool's thumbprint path, no key needed. */
	ok(oa2_cert_file_thumbprints(path("app.der"), sha1, x5t, x5t256,
	    &err) == OA2_OK, "thumbprints of a DER certificate");
	ok(strlen(sha1) == 40 && strlen(x5t) == 27 && strlen(x5t256) == 43,
	    "thumbprint lengths (hex 40, x5t 27, x5t#S256 43)");
	r = oa2_cert_file_thumbprints(path("pass.txt"), sha1, x5t, x5t256,
	    &err);
	ok(r == OA2_ERR_CREDENTIAL, "a text file has no thumbprint");
	has_str(err.msg, "holds no X.509 certificate", "and says so");
}

static void
test_refusals(void)
{
	struct oa2_cert *c = NULL;
	struct oa2_error err;
	int r;

	r = load("app.crt", "other.key", NULL, &c, &err);
	expect_fail(r, &err, c, "does not match the certificate",
	    "key of another certificate");
	r = load("small.crt", "small.key", NULL, &c, &err);
	expect_fail(r, &err, c, "has 1024 bits: at least 2048",
	    "1024-bit RSA refused");
	r = load("ec.crt", "ec.key", NULL, &c, &err);
	expect_fail(r, &err, c, "is not an RSA key", "EC key refused");
	r = load("expired.crt", "app.key", NULL, &c, &err);
	expect_fail(r, &err, c, "expired on", "expired certificate refused");
	r = load("future.crt", "app.key", NULL, &c, &err);
	expect_fail(r, &err, c, "check the clock", "not yet valid refused");
	r = load("app.crt", "readable.key", NULL, &c, &err);
	expect_fail(r, &err, c, "accessible by group or others",
	    "group-readable key refused");
	r = load("app.crt", "missing.key", NULL, &c, &err);
	expect_fail(r, &err, c, "missing.key", "missing key file named");
	r = load("missing.crt", "app.key", NULL, &c, &err);
	expect_fail(r, &err, c, "missing.crt", "missing certificate named");
	r = load("pass.txt", "app.key", NULL, &c, &err);
	expect_fail(r, &err, c, "holds no X.509 certificate",
	    "text as certificate");
	r = load("app.crt", "private.crt", NULL, &c, &err);
	expect_fail(r, &err, c, "holds no PEM private key",
	    "certificate as key");
	r = load("app.crt", NULL, NULL, &c, &err);
	expect_fail(r, &err, c, "needs certificate and private_key",
	    "key missing from the source");
	ok(strstr(err.msg, "PRIVATE KEY") == NULL, "no key bytes in errors");

	logged[0] = '\0';
	r = load("soon.crt", "app.key", NULL, &c, &err);
	ok(r == OA2_OK && c != NULL, "certificate expiring in 10 days loads");
	has_str(logged, "expires in 9 days", "with a warning");
	has_str(logged, "upload a new one", "saying what to do");
	oa2_cert_free(&c);
	logged[0] = '\0';
	r = load("app.crt", "app.key", NULL, &c, &err);
	ok(r == OA2_OK && logged[0] == '\0', "no warning for 400 days");
	oa2_cert_free(&c);
}

/*
 * Issue 12: a federated token's claims, read without checking its
 * signature; what is not a signed JWT is refused with a reason that
 * quotes none of it.
 */
static char *
mkjwt(const char *head, const char *claims, const char *sig)
{
	char *h = oa2_b64url_encode(head, strlen(head));
	char *c = oa2_b64url_encode(claims, strlen(claims));
	char *out;

	if (h == NULL || c == NULL || asprintf(&out, "%s.%s.%s", h, c,
	    sig) == -1)
		abort();
	free(h);
	free(c);
	return out;
}

static void
test_peek(void)
{
	static const struct {
		const char *head, *claims, *sig, *want;
	} bad[] = {
		{ "{\"alg\":\"none\"}", "{}", "c2ln", "names no signing "
		    "algorithm" },
		{ "{\"typ\":\"JWT\"}", "{}", "c2ln", "names no signing" },
		{ "[1]", "{}", "c2ln", "not a JSON object" },
		{ "{\"alg\":\"RS256\"}", "\"text\"", "c2ln",
		    "not a JSON object" },
		{ "{\"alg\":\"RS256\"}", "{\"exp\":\"soon\"}", "c2ln",
		    "has the wrong type" },
		{ "{\"alg\":\"RS256\"}", "{\"sub\":5}", "c2ln",
		    "has the wrong type" },
		{ "{\"alg\":\"RS256\"}", "{\"exp\":1,\"exp\":2}", "c2ln",
		    "not a JSON object" },
		{ "{\"alg\":\"RS256\"}", "{}", "", "is empty" },
	};
	static const struct {
		const char *text, *want;
	} junk[] = {
		{ "just-a-password", "has 1 part, not the three" },
		{ "a.b", "has 2 parts" },
		{ "a.b.c.d.e", "has 5 parts" },
		{ "eyJh bGc.eyJ.c2ln", "not base64url (at byte 5)" },
		{ "-----BEGIN CERTIFICATE-----", "not base64url (at byte 11)" },
		{ "!!!!.eyJ9.c2ln", "not base64url" },
		{ "a.b.c", "not base64url" },
	};
	struct oa2_jwt_info info;
	struct oa2_error err;
	char *t, name[200];
	size_t i;

	t = mkjwt("{\"alg\":\"RS256\",\"kid\":\"k\"}",
	    "{\"iss\":\"https://oidc.example/abc/\",\"sub\":"
	    "\"system:serviceaccount:mail:postfix\",\"aud\":"
	    "[\"api://AzureADTokenExchange\",\"x\"],\"exp\":2000000000,"
	    "\"nbf\":1999996400,\"iat\":1999996400}", "c2lnbmF0dXJl");
	ok(oa2_jwt_peek(t, strlen(t), &info, &err) == 0,
	    "peek: a Kubernetes-style token decodes");
	is_str(info.iss, "https://oidc.example/abc/", "peek: iss");
	is_str(info.sub, "system:serviceaccount:mail:postfix", "peek: sub");
	is_str(info.aud, "api://AzureADTokenExchange",
	    "peek: the first audience of a list");
	ok(info.exp == 2000000000 && info.nbf == 1999996400,
	    "peek: exp and nbf");
	free(t);
	t = mkjwt("{\"alg\":\"ES256\"}", "{\"aud\":\"a\\u0001b\","
	    "\"exp\":1.5e9}", "c2ln");
	ok(oa2_jwt_peek(t, strlen(t), &info, &err) == 0 && info.exp ==
	    1500000000 && info.iss[0] == '\0' && info.nbf == 0,
	    "peek: absent claims are empty, a fractional exp is read");
	ok(strchr(info.aud, '\x01') == NULL, "peek: claims are sanitised");
	free(t);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = mkjwt(bad[i].head, bad[i].claims, bad[i].sig);
		snprintf(name, sizeof(name), "peek refuses: %s", bad[i].want);
		ok(oa2_jwt_peek(t, strlen(t), &info, &err) ==
		    OA2_ERR_CREDENTIAL, name);
		has_str(err.msg, bad[i].want, "with its reason");
		free(t);
	}
	for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		snprintf(name, sizeof(name), "peek refuses \"%s\"",
		    junk[i].text);
		ok(oa2_jwt_peek(junk[i].text, strlen(junk[i].text), &info,
		    &err) == OA2_ERR_CREDENTIAL, name);
		has_str(err.msg, junk[i].want, "with its reason");
		ok(strstr(err.msg, junk[i].text) == NULL,
		    "and none of the text");
	}
}

/*
 * A Google service account key file as Google Cloud makes it, for key
 * (NULL: "private_key" is left out), with one field set to value
 * (NULL value: left out; field NULL: none changed).
 */
static void
write_gsa(const char *name, EVP_PKEY *key, const char *field,
    const char *value, mode_t mode)
{
	BIO *b = BIO_new(BIO_s_mem());
	json_t *o;
	char *pem = NULL, *text;
	long n;

	if (b == NULL || (key != NULL && PEM_write_bio_PKCS8PrivateKey(b, key,
	    NULL, NULL, 0, NULL, NULL) != 1))
		abort();
	n = BIO_get_mem_data(b, &pem);
	o = json_pack("{s:s, s:s, s:s, s:s#, s:s, s:s, s:s, s:s}",
	    "type", "service_account", "project_id", "mail-relay-4711",
	    "private_key_id", "0123456789abcdef0123456789abcdef01234567",
	    "private_key", pem != NULL ? pem : "", (int)n,
	    "client_email", "relay@mail-relay-4711.iam.gserviceaccount.com",
	    "client_id", "112233445566778899001",
	    "auth_uri", "https://accounts.google.com/o/oauth2/auth",
	    "token_uri", "https://127.0.0.1:4711/token");
	if (o == NULL)
		abort();
	if (key == NULL)
		json_object_del(o, "private_key");
	if (field != NULL && value == NULL)
		json_object_del(o, field);
	else if (field != NULL)
		json_object_set_new(o, field, json_string(value));
	text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	write_text(name, text, mode);
	free(text);
	json_decref(o);
	BIO_free(b);
}

static void
test_google(EVP_PKEY *key, EVP_PKEY *ec, EVP_PKEY *small)
{
	static const char scope[] = "https://mail.google.com/";
	struct oa2_gsa_key *k = NULL, *k2 = NULL;
	struct oa2_error err;
	struct jwt j;
	char *a = NULL, big[70 * 1024];
	time_t now = time(NULL);
	size_t i;

	write_gsa("gsa.json", key, NULL, NULL, 0600);
	write_cert("gsa.crt", key, -60, 86400);
	ok(oa2_gsa_key_load(path("gsa.json"), &k, &err) == OA2_OK &&
	    k != NULL, "service account key file loads");
	if (k == NULL) {
		printf("#   %s\n", err.msg);
		return;
	}
	is_str(oa2_gsa_key_email(k),
	    "relay@mail-relay-4711.iam.gserviceaccount.com", "client_email");
	is_str(oa2_gsa_key_client_id(k), "112233445566778899001",
	    "client_id");
	is_str(oa2_gsa_key_id(k), "0123456789abcdef0123456789abcdef01234567",
	    "private_key_id");
	is_str(oa2_gsa_key_token_uri(k), "https://127.0.0.1:4711/token",
	    "token_uri");
	ok(oa2_jwt_google_assertion(k, "alice@example.org", scope, now, 0, &a,
	    &err) == OA2_OK && a != NULL && split(a, &j) == 0,
	    "Google assertion signed, three base64url parts of JSON");
	if (j.header != NULL && j.claims != NULL) {
		is_str(jstr(j.header, "alg"), "RS256", "alg RS256");
		is_str(jstr(j.header, "typ"), "JWT", "typ JWT");
		is_str(jstr(j.header, "kid"), oa2_gsa_key_id(k),
		    "kid is the private_key_id");
		ok(json_object_size(j.header) == 3, "nothing else in header");
		is_str(jstr(j.claims, "iss"), oa2_gsa_key_email(k),
		    "iss is the client_email");
		is_str(jstr(j.claims, "sub"), "alice@example.org",
		    "sub is the mailbox");
		is_str(jstr(j.claims, "scope"), scope, "scope");
		is_str(jstr(j.claims, "aud"), "https://127.0.0.1:4711/token",
		    "aud is the token_uri");
		ok(jint(j.claims, "iat") == now, "iat = now");
		ok(jint(j.claims, "exp") == now + 3600,
		    "exp = iat + 3600 by default");
		ok(json_object_size(j.claims) == 6,
		    "no other claim (no jti, nbf)");
		ok(verify(&j, path("gsa.crt"), 0),
		    "RS256 verifies with the key's public half");
		ok(verify_cli(&j, path("gsa.crt"), 0),
		    "openssl dgst -verify accepts it");
		ok(!verify(&j, path("gsa.crt"), 1), "and is not PSS");
		ok(!verify(&j, path("other.crt"), 0),
		    "another key does not verify it");
	}
	jwt_free(&j);
	oa2_freezero_str(&a);
	ok(oa2_jwt_google_assertion(k, "bob@example.org", scope, now, 7200,
	    &a, &err) == OA2_OK && split(a, &j) == 0 &&
	    jint(j.claims, "exp") == now + 3600,
	    "a lifetime over one hour is cut to one hour");
	jwt_free(&j);
	oa2_freezero_str(&a);
	ok(oa2_jwt_google_assertion(k, "bob@example.org", scope, now, 600,
	    &a, &err) == OA2_OK && split(a, &j) == 0 &&
	    jint(j.claims, "exp") == now + 600 &&
	    strcmp(jstr(j.claims, "sub"), "bob@example.org") == 0,
	    "a shorter lifetime is kept; sub follows the mailbox");
	jwt_free(&j);
	oa2_freezero_str(&a);
	oa2_gsa_key_free(&k);
	ok(k == NULL, "free clears the pointer");
	oa2_gsa_key_free(NULL);

	/* refusals: each names the file and, where one is wrong, the field */
#define GSA_FAIL(file, want, name) do {					\
	oa2_clearerr(&err);						\
	ok(oa2_gsa_key_load(path(file), &k2, &err) ==			\
	    OA2_ERR_CREDENTIAL && k2 == NULL, name);			\
	has_str(err.msg, want, name " (message)");			\
	has_str(err.msg, path(file), name " (names the file)");		\
} while (0)
	write_gsa("gsa-open.json", key, NULL, NULL, 0644);
	GSA_FAIL("gsa-open.json", "chmod 600", "a readable key file");
	GSA_FAIL("gsa-none.json", "cannot open", "a missing key file");
	write_gsa("gsa-noemail.json", key, "client_email", NULL, 0600);
	GSA_FAIL("gsa-noemail.json", "has no \"client_email\"",
	    "no client_email");
	write_gsa("gsa-noid.json", key, "private_key_id", NULL, 0600);
	GSA_FAIL("gsa-noid.json", "has no \"private_key_id\"",
	    "no private_key_id");
	write_gsa("gsa-nocid.json", key, "client_id", NULL, 0600);
	GSA_FAIL("gsa-nocid.json", "has no \"client_id\"", "no client_id");
	write_gsa("gsa-nouri.json", key, "token_uri", NULL, 0600);
	GSA_FAIL("gsa-nouri.json", "has no \"token_uri\"", "no token_uri");
	write_gsa("gsa-nokey.json", NULL, NULL, NULL, 0600);
	GSA_FAIL("gsa-nokey.json", "no \"private_key\"", "no private_key");
	write_gsa("gsa-http.json", key, "token_uri",
	    "http://127.0.0.1/token", 0600);
	GSA_FAIL("gsa-http.json", "not an https:// URL", "token_uri not https");
	write_gsa("gsa-user.json", key, "type", "authorized_user", 0600);
	GSA_FAIL("gsa-user.json", "a user's sign-in",
	    "a user's credentials file");
	write_gsa("gsa-email.json", key, "client_email", "relay", 0600);
	GSA_FAIL("gsa-email.json", "\"client_email\" is \"relay\", not an "
	    "e-mail address", "client_email not an address");
	write_gsa("gsa-cid.json", key, "client_id", "relay@x", 0600);
	GSA_FAIL("gsa-cid.json", "not a numeric client id",
	    "client_id not numeric");
	write_gsa("gsa-pem.json", key, "private_key", "-----BEGIN PRIVATE "
	    "KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0600);
	GSA_FAIL("gsa-pem.json", "\"private_key\" is not a PEM private key",
	    "private_key not a key");
	write_gsa("gsa-ec.json", ec, NULL, NULL, 0600);
	GSA_FAIL("gsa-ec.json", "not an RSA key", "an EC key");
	write_gsa("gsa-small.json", small, NULL, NULL, 0600);
	GSA_FAIL("gsa-small.json", "1024 bits", "a 1024-bit key");
	write_text("gsa-text.json", "not json\n", 0600);
	GSA_FAIL("gsa-text.json", "is not JSON", "not JSON");
	write_text("gsa-array.json", "[1, 2]\n", 0600);
	GSA_FAIL("gsa-array.json", "not a JSON object", "a JSON array");
	write_text("gsa-dup.json", "{\"type\": \"service_account\", "
	    "\"type\": \"service_account\"}\n", 0600);
	GSA_FAIL("gsa-dup.json", "is not JSON", "a duplicate member");
	has_str(err.msg, "duplicate", "a duplicate member (what is wrong)");
	/* jansson quotes a bad token: never the key's text */
	write_text("gsa-broken.json", "{\"type\": \"service_account\", "
	    "\"private_key\": MIIEvQKEYTEXT}\n", 0600);
	GSA_FAIL("gsa-broken.json", "is not JSON", "a key without quotes");
	has_str(err.msg, "invalid token", "a key without quotes (what is "
	    "wrong)");
	ok(strstr(err.msg, "KEYTEXT") == NULL, "a key without quotes (the "
	    "key not quoted)");
	for (i = 0; i < sizeof(big) - 1; i++)
		big[i] = ' ';
	big[0] = '{';
	big[sizeof(big) - 3] = '}';
	big[sizeof(big) - 2] = '\n';
	big[sizeof(big) - 1] = '\0';
	write_text("gsa-big.json", big, 0600);
	GSA_FAIL("gsa-big.json", "larger than", "a file over the size cap");
#undef GSA_FAIL
}

int
main(void)
{
	EVP_PKEY *key, *other, *small, *ec;

	if (system("openssl version > /dev/null 2>&1") != 0) {
		printf("1..0 # SKIP the openssl command is needed\n");
		return 77;
	}
	if (mkdtemp(dir) == NULL)
		abort();
	key = new_key("RSA", 2048);
	other = new_key("RSA", 2048);
	small = new_key("RSA", 1024);
	ec = new_key("EC", 0);
	if (!key || !other || !small || !ec)
		abort();
	write_cert("app.crt", key, -60, 400L * 86400);
	write_key("app.key", key, 0600);
	write_key("readable.key", key, 0640);
	write_cert("other.crt", other, -60, 400L * 86400);
	write_key("other.key", other, 0600);
	write_cert("small.crt", small, -60, 86400);
	write_key("small.key", small, 0600);
	write_cert("ec.crt", ec, -60, 86400);
	write_key("ec.key", ec, 0600);
	write_cert("expired.crt", key, -40L * 86400, -86400);
	write_cert("future.crt", key, 86400, 40L * 86400);
	write_cert("soon.crt", key, -60, 10L * 86400 - 3600);
	write_text("pass.txt", "hunter2\n", 0600);
	write_text("wrong.txt", "wrong-pass\n", 0600);
	if (sh("cd %s && umask 077 && "
	    "openssl pkey -in app.key -traditional -out app-pkcs1.key && "
	    "grep -q 'BEGIN RSA PRIVATE KEY' app-pkcs1.key && "
	    "openssl pkey -in app.key -aes256 -passout pass:hunter2 "
	    "-out app-enc.key && "
	    "cp app.crt private.crt && cat app.crt app.key > both.pem && cat app.crt other.crt > chain.pem && "
	    "openssl x509 -in app.crt -outform DER -out app.der && "
	    "openssl pkcs12 -export -in app.crt -inkey app.key "
	    "-passout pass:hunter2 -out app.p12 && "
	    "openssl pkcs12 -export -in app.crt -inkey app.key "
	    "-passout pass: -out nopass.p12", dir) != 0)
		abort();
	test_assertions();
	test_formats();
	test_refusals();
	test_peek();
	test_google(key, ec, small);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other);
	EVP_PKEY_free(small);
	EVP_PKEY_free(ec);
	sh("rm -rf %s", dir);
	return done_testing();
}
