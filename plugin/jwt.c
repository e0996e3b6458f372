/*
 * Certificate credentials and the signed client assertion (RFC 7523):
 * load and check certificate and key, compute the thumbprints, and sign
 * {"alg":"PS256","typ":"JWT","x5t#S256":…} or {"alg":"RS256",…,"x5t":…}
 * with OpenSSL EVP.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "jwt.h"
#include "secret.h"
#include "wire.h"

#define MAX_PEM		(1024 * 1024)
#define EXPIRY_WARNING	(30 * 86400)

struct oa2_cert {
	X509		*x509;
	EVP_PKEY	*key;
	time_t		not_after;
	char		sha1_hex[41];
	char		*x5t;
	char		*x5t_s256;
	char		subject[256];
};

/* OpenSSL's latest error reason, for a sentence; never key material. */
static const char *
ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	return r != NULL ? r : "unknown OpenSSL error";
}

/* A passphrase callback that never prompts on a terminal. */
static int
pass_cb(char *buf, int size, int rwflag, void *u)
{
	const char *pass = u;
	size_t len;

	if (pass == NULL || (len = strlen(pass)) >= (size_t)size)
		return -1;
	memcpy(buf, pass, len);
	return (int)len;
}

static time_t
asn1_to_time(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

static int
thumbprints(struct oa2_cert *c, struct oa2_error *err)
{
	unsigned char sha1[EVP_MAX_MD_SIZE], sha256[EVP_MAX_MD_SIZE];
	unsigned int n1, n256, i;

	if (X509_digest(c->x509, EVP_sha1(), sha1, &n1) != 1 ||
	    X509_digest(c->x509, EVP_sha256(), sha256, &n256) != 1)
		return oa2_seterr(err, OA2_ERR_INTERNAL,
		    "cannot compute the certificate thumbprint");
	for (i = 0; i < n1; i++)
		snprintf(c->sha1_hex + 2 * i, 3, "%02X", sha1[i]);
	if ((c->x5t = oa2_b64url_encode(sha1, n1)) == NULL ||
	    (c->x5t_s256 = oa2_b64url_encode(sha256, n256)) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	return OA2_OK;
}

/* The first certificate of a PEM (or DER) buffer. */
static X509 *
read_x509(const char *data, size_t len)
{
	const unsigned char *p = (const unsigned char *)data;
	X509 *x = NULL;
	BIO *bio;

	if ((bio = BIO_new_mem_buf(data, (int)len)) == NULL)
		return NULL;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (x == NULL)
		x = d2i_X509(NULL, &p, (long)len);
	return x;
}

static int
load_pem(const struct oa2_cert_source *src, struct oa2_cert *c,
    struct oa2_error *err)
{
	char *certdata = NULL, *keydata = NULL, *pass = NULL;
	size_t certlen = 0, keylen = 0;
	BIO *bio = NULL;
	int r;

	if ((r = oa2_read_file(src->certificate, "certificate", 0, MAX_PEM,
	    &certdata, &certlen, err)) != 0) {
		err->code = r = OA2_ERR_CREDENTIAL;
		goto out;
	}
	if ((c->x509 = read_x509(certdata, certlen)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "%s holds no X.509 "
		    "certificate (%s)", src->certificate, ssl_reason());
		goto out;
	}
	if ((r = oa2_read_file(src->private_key, "private key file", 1,
	    MAX_PEM, &keydata, &keylen, err)) != 0)
		goto out;
	if (src->passphrase_file != NULL && (r = oa2_read_secret_file(
	    src->passphrase_file, "passphrase file", &pass, err)) != 0)
		goto out;
	r = OA2_ERR_CREDENTIAL;
	if ((bio = BIO_new_mem_buf(keydata, (int)keylen)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	ERR_clear_error();
	c->key = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, pass);
	if (c->key == NULL) {
		if (strstr(keydata, "ENCRYPTED") != NULL && pass == NULL)
			oa2_seterr(err, r, "private key %s is encrypted: set "
			    "private_key_passphrase_file", src->private_key);
		else if (strstr(keydata, "ENCRYPTED") != NULL)
			oa2_seterr(err, r, "wrong passphrase for private key "
			    "%s (from %s)", src->private_key,
			    src->passphrase_file);
		else
			oa2_seterr(err, r, "%s holds no PEM private key (%s)",
			    src->private_key, ssl_reason());
		goto out;
	}
	r = OA2_OK;
 out:
	BIO_free(bio);
	/* certificate and private_key may name one file: it holds the key */
	if (certdata != NULL)
		oa2_freezero(certdata, certlen);
	if (keydata != NULL)
		oa2_freezero(keydata, keylen);
	oa2_freezero_str(&pass);
	ERR_clear_error();
	return r;
}

static int
load_pkcs12(const struct oa2_cert_source *src, struct oa2_cert *c,
    struct oa2_error *err)
{
	const unsigned char *p;
	char *data = NULL, *pass = NULL;
	size_t len = 0;
	PKCS12 *p12 = NULL;
	int r;

	if ((r = oa2_read_file(src->pkcs12, "PKCS#12 file", 1, MAX_PEM,
	    &data, &len, err)) != 0)
		return r;
	if (src->pkcs12_passphrase_file != NULL && (r = oa2_read_secret_file(
	    src->pkcs12_passphrase_file, "passphrase file", &pass, err)) != 0)
		goto out;
	r = OA2_ERR_CREDENTIAL;
	p = (const unsigned char *)data;
	if ((p12 = d2i_PKCS12(NULL, &p, (long)len)) == NULL) {
		oa2_seterr(err, r, "%s is not a PKCS#12 file (%s)",
		    src->pkcs12, ssl_reason());
		goto out;
	}
	if (PKCS12_parse(p12, pass != NULL ? pass : "", &c->key, &c->x509,
	    NULL) != 1 || c->key == NULL || c->x509 == NULL) {
		oa2_seterr(err, r, "cannot open PKCS#12 file %s: %s",
		    src->pkcs12, pass == NULL ? "it needs a passphrase: set "
		    "pkcs12_passphrase_file" : "wrong passphrase, or no key "
		    "and certificate in it");
		goto out;
	}
	r = OA2_OK;
 out:
	PKCS12_free(p12);
	oa2_freezero(data, len);
	oa2_freezero_str(&pass);
	ERR_clear_error();
	return r;
}

int
oa2_cert_load(const struct oa2_cert_source *src, const struct oa2_log *lg,
    struct oa2_cert **out, struct oa2_error *err)
{
	const char *name = src->pkcs12 != NULL ? src->pkcs12 :
	    src->certificate;
	struct oa2_cert *c;
	time_t now = time(NULL), not_before;
	int r, bits;

	*out = NULL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	if (src->pkcs12 != NULL)
		r = load_pkcs12(src, c, err);
	else if (src->certificate != NULL && src->private_key != NULL)
		r = load_pem(src, c, err);
	else
		r = oa2_seterr(err, OA2_ERR_CREDENTIAL, "a certificate "
		    "credential needs certificate and private_key, or pkcs12");
	if (r != 0)
		goto out;
	r = OA2_ERR_CREDENTIAL;
	if (EVP_PKEY_get_base_id(c->key) != EVP_PKEY_RSA) {
		oa2_seterr(err, r, "the private key of %s is not an RSA key: "
		    "Entra client assertions need RSA", name);
		goto out;
	}
	if ((bits = EVP_PKEY_get_bits(c->key)) < 2048) {
		oa2_seterr(err, r, "the RSA key of %s has %d bits: at least "
		    "2048 are needed", name, bits);
		goto out;
	}
	if (X509_check_private_key(c->x509, c->key) != 1) {
		oa2_seterr(err, r, "the private key does not match the "
		    "certificate %s", name);
		goto out;
	}
	ERR_clear_error();
	X509_NAME_oneline(X509_get_subject_name(c->x509), c->subject,
	    sizeof(c->subject));
	c->not_after = asn1_to_time(X509_get0_notAfter(c->x509));
	not_before = asn1_to_time(X509_get0_notBefore(c->x509));
	if (c->not_after <= now) {
		oa2_seterr(err, r, "certificate %s expired on %.24s UTC", name,
		    asctime(gmtime(&c->not_after)));
		goto out;
	}
	if (not_before > now) {
		oa2_seterr(err, r, "certificate %s is not valid before "
		    "%.24s UTC: check the clock", name,
		    asctime(gmtime(&not_before)));
		goto out;
	}
	if ((r = thumbprints(c, err)) != 0)
		goto out;
	if (c->not_after - now < EXPIRY_WARNING)
		oa2_log(lg, OA2_LOG_WARNING, "certificate %s (thumbprint %s) "
		    "expires in %ld days: upload a new one to the app "
		    "registration", name, c->sha1_hex,
		    (long)((c->not_after - now) / 86400));
	*out = c;
	c = NULL;	/* transferred */
	r = OA2_OK;
 out:
	oa2_cert_free(&c);
	return r;
}

void
oa2_cert_free(struct oa2_cert **certp)
{
	struct oa2_cert *c;

	if (certp == NULL || (c = *certp) == NULL)
		return;
	EVP_PKEY_free(c->key);	/* OpenSSL clears key material it frees */
	X509_free(c->x509);
	free(c->x5t);
	free(c->x5t_s256);
	free(c);
	*certp = NULL;
}

const char *
oa2_cert_sha1_hex(const struct oa2_cert *c)
{
	return c->sha1_hex;
}

const char *
oa2_cert_x5t(const struct oa2_cert *c)
{
	return c->x5t;
}

const char *
oa2_cert_x5t_s256(const struct oa2_cert *c)
{
	return c->x5t_s256;
}

time_t
oa2_cert_not_after(const struct oa2_cert *c)
{
	return c->not_after;
}

const char *
oa2_cert_subject(const struct oa2_cert *c)
{
	return c->subject;
}

int
oa2_cert_file_thumbprints(const char *path, char sha1hex[41], char x5t[28],
    char x5t256[44], struct oa2_error *err)
{
	struct oa2_cert c;
	char *data;
	size_t len;
	int r;

	memset(&c, 0, sizeof(c));
	if ((r = oa2_read_file(path, "certificate", 0, MAX_PEM, &data, &len,
	    err)) != 0)
		return r;
	c.x509 = read_x509(data, len);
	oa2_freezero(data, len);	/* the file may hold a key too */
	if (c.x509 == NULL) {
		ERR_clear_error();
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "%s holds no X.509 "
		    "certificate", path);
	}
	if ((r = thumbprints(&c, err)) == 0) {
		memcpy(sha1hex, c.sha1_hex, 41);
		snprintf(x5t, 28, "%s", c.x5t);
		snprintf(x5t256, 44, "%s", c.x5t_s256);
	}
	X509_free(c.x509);
	free(c.x5t);
	free(c.x5t_s256);
	return r;
}

/* A random (version 4) UUID. */
static int
uuid4(char out[37])
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
	    b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

/* Compact JSON of v, base64url'ed; the dump is wiped. NULL on failure. */
static char *
b64_json(json_t *v)
{
	char *s, *b;

	if (v == NULL || (s = json_dumps(v, JSON_COMPACT |
	    JSON_PRESERVE_ORDER)) == NULL)
		return NULL;
	b = oa2_b64url_encode(s, strlen(s));
	oa2_freezero(s, strlen(s));
	return b;
}

/*
 * header.claims.signature: the header and claims as compact JSON, in
 * the order given, base64url'ed, signed with key by alg (RS256: PKCS#1
 * v1.5; PS256: PSS with MGF1-SHA-256 and a salt of the digest's length),
 * all with SHA-256. what names the JWT in messages. *out is a secret.
 */
static int
sign_jwt(EVP_PKEY *key, int alg, json_t *header, json_t *claims,
    const char *what, char **out, struct oa2_error *err)
{
	EVP_MD_CTX *md = NULL;
	EVP_PKEY_CTX *pctx;
	unsigned char *sig = NULL;
	size_t siglen = 0, inlen;
	char *h = NULL, *c = NULL, *input = NULL, *s = NULL;
	int r = OA2_ERR_NOMEM, pss = alg == OA2_ALG_PS256;

	*out = NULL;
	if ((h = b64_json(header)) == NULL || (c = b64_json(claims)) == NULL ||
	    asprintf(&input, "%s.%s", h, c) == -1) {
		input = NULL;
		oa2_seterr(err, r, "out of memory");
		goto out;
	}
	inlen = strlen(input);
	r = OA2_ERR_INTERNAL;
	if ((md = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestSignInit(md, &pctx, EVP_sha256(), NULL, key) != 1 ||
	    (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx,
	    RSA_PKCS1_PSS_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1)) ||
	    EVP_DigestSign(md, NULL, &siglen, (unsigned char *)input,
	    inlen) != 1 ||
	    (sig = malloc(siglen)) == NULL ||
	    EVP_DigestSign(md, sig, &siglen, (unsigned char *)input,
	    inlen) != 1 ||
	    (s = oa2_b64url_encode(sig, siglen)) == NULL ||
	    asprintf(out, "%s.%s", input, s) == -1) {
		*out = NULL;
		oa2_seterr(err, r, "cannot sign the %s (%s)", what,
		    ssl_reason());
		ERR_clear_error();
		goto out;
	}
	r = OA2_OK;
 out:
	EVP_MD_CTX_free(md);
	free(h);
	oa2_freezero_str(&c);
	oa2_freezero_str(&input);
	oa2_freezero_str(&s);
	if (sig != NULL)
		oa2_freezero(sig, siglen);
	return r;
}

/* A JSON string member of o into dst, sanitised; "" when absent. */
static int
peek_string(json_t *o, const char *key, char *dst, size_t len)
{
	json_t *v = json_object_get(o, key);

	*dst = '\0';
	if (v == NULL)
		return 0;
	if (json_is_array(v))
		v = json_array_get(v, 0);
	if (!json_is_string(v))
		return -1;
	oa2_sanitize(dst, len, json_string_value(v), json_string_length(v),
	    len - 1);
	return 0;
}

/* A NumericDate member (RFC 7519, 2) into *t; 0 when absent. */
static int
peek_time(json_t *o, const char *key, time_t *t)
{
	json_t *v = json_object_get(o, key);
	double d;

	*t = 0;
	if (v == NULL)
		return 0;
	if (!json_is_number(v))
		return -1;
	d = json_number_value(v);
	if (d < 1 || d > 253402300799.0)	/* 9999-12-31 */
		return -1;
	*t = (time_t)d;
	return 0;
}

int
oa2_jwt_peek(const char *jwt, size_t len, struct oa2_jwt_info *out,
    struct oa2_error *err)
{
	const char *dot1, *dot2, *alg;
	unsigned char *hdec = NULL, *cdec = NULL;
	size_t hlen, clen, i, dots = 0;
	json_t *head = NULL, *claims = NULL;
	int d, r = OA2_ERR_CREDENTIAL;

	memset(out, 0, sizeof(*out));
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)jwt[i];

		if (ch == '.')
			dots++;
		else if (!isalnum(ch) && ch != '-' && ch != '_') {
			oa2_seterr(err, r, "it holds a character that is not "
			    "base64url (at byte %zu)", i + 1);
			goto out;
		}
	}
	if (dots != 2) {
		oa2_seterr(err, r, "it has %zu part%s, not the three of a "
		    "signed JWT (header.claims.signature)", dots + 1,
		    dots == 0 ? "" : "s");
		goto out;
	}
	dot1 = memchr(jwt, '.', len);
	dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - jwt));
	if (dot1 == jwt || dot2 == dot1 + 1 || dot2 + 1 == jwt + len) {
		oa2_seterr(err, r, "one of its three parts is empty (an "
		    "unsigned token cannot be used)");
		goto out;
	}
	if ((d = oa2_b64url_decode(jwt, (size_t)(dot1 - jwt), &hdec,
	    &hlen)) == 0)
		d = oa2_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1),
		    &cdec, &clen);
	if (d != 0) {
		if (d == OA2_ERR_NOMEM) {
			r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
			goto out;
		}
		oa2_seterr(err, r, "its header or claims are not base64url");
		goto out;
	}
	if ((head = json_loadb((char *)hdec, hlen, JSON_REJECT_DUPLICATES,
	    NULL)) == NULL || !json_is_object(head) ||
	    (claims = json_loadb((char *)cdec, clen, JSON_REJECT_DUPLICATES,
	    NULL)) == NULL || !json_is_object(claims)) {
		oa2_seterr(err, r, "its header or claims are not a JSON "
		    "object");
		goto out;
	}
	alg = json_string_value(json_object_get(head, "alg"));
	if (alg == NULL || strcasecmp(alg, "none") == 0) {
		oa2_seterr(err, r, "its header names no signing algorithm");
		goto out;
	}
	if (peek_string(claims, "iss", out->iss, sizeof(out->iss)) != 0 ||
	    peek_string(claims, "sub", out->sub, sizeof(out->sub)) != 0 ||
	    peek_string(claims, "aud", out->aud, sizeof(out->aud)) != 0 ||
	    peek_time(claims, "exp", &out->exp) != 0 ||
	    peek_time(claims, "nbf", &out->nbf) != 0) {
		oa2_seterr(err, r, "its iss, sub, aud, exp or nbf claim has "
		    "the wrong type");
		goto out;
	}
	r = OA2_OK;
 out:
	json_decref(head);
	json_decref(claims);
	if (hdec != NULL)
		oa2_freezero(hdec, hlen);
	if (cdec != NULL)
		oa2_freezero(cdec, clen);
	return r;
}

int
oa2_jwt_assertion(const struct oa2_cert *cert, int alg,
    const char *client_id, const char *aud, time_t now, long lifetime,
    char **out, struct oa2_error *err)
{
	json_t *header, *claims;
	char jti[37];
	int r, pss = alg == OA2_ALG_PS256;

	*out = NULL;
	if (uuid4(jti) != 0)
		return oa2_seterr(err, OA2_ERR_INTERNAL, "no random numbers "
		    "for the assertion's jti");
	header = json_pack("{s:s, s:s, s:s}", "alg", pss ? "PS256" : "RS256",
	    "typ", "JWT", pss ? "x5t#S256" : "x5t",
	    pss ? cert->x5t_s256 : cert->x5t);
	claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "aud", aud,
	    "iss", client_id, "sub", client_id, "jti", jti,
	    "nbf", (json_int_t)now, "iat", (json_int_t)now,
	    "exp", (json_int_t)(now + lifetime));
	if (header == NULL || claims == NULL)
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	else
		r = sign_jwt(cert->key, alg, header, claims,
		    "client assertion", out, err);
	json_decref(header);
	json_decref(claims);
	return r;
}

/*
 * Google service account keys: the JSON key file Google Cloud hands out
 * (type, project_id, private_key_id, private_key, client_email,
 * client_id, auth_uri, token_uri, ...).
 */
#define MAX_GSA_FILE	(64 * 1024)	/* a real one is about 2.3 KB */

struct oa2_gsa_key {
	EVP_PKEY	*key;
	char		*path;
	char		*client_email;
	char		*client_id;
	char		*key_id;	/* private_key_id: the JWT's kid */
	char		*token_uri;
};

/* Printable ASCII without spaces, 1 to max bytes. */
static int
token_chars(const char *s, size_t max)
{
	size_t i;

	for (i = 0; s[i] != '\0'; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f || i >= max)
			return 0;
	return i > 0;
}

/*
 * String member name of the key file's object into a new string in
 * *out, checked by ok_chars (0 to refuse) and, when prefix is set,
 * beginning with it; want says in a few words what it should be.
 */
static int
gsa_field(const char *path, json_t *root, const char *name,
    int (*ok_chars)(const char *), const char *want, char **out,
    struct oa2_error *err)
{
	json_t *v = json_object_get(root, name);
	char shown[80];

	*out = NULL;
	if (v == NULL)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "service account "
		    "key file %s has no \"%s\": it is not a whole key file "
		    "as Google Cloud makes it", path, name);
	if (!json_is_string(v))
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "service account "
		    "key file %s: \"%s\" is not a string", path, name);
	if (!ok_chars(json_string_value(v))) {
		oa2_sanitize(shown, sizeof(shown), json_string_value(v),
		    json_string_length(v), 64);
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "service account "
		    "key file %s: \"%s\" is \"%s\", not %s", path, name, shown,
		    want);
	}
	if ((*out = strdup(json_string_value(v))) == NULL)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	return OA2_OK;
}

static int
ok_email(const char *s)
{
	const char *at = strchr(s, '@');

	return token_chars(s, 255) && at != NULL && at != s &&
	    at[1] != '\0' && strchr(at + 1, '@') == NULL;
}

static int
ok_digits(const char *s)
{
	return *s != '\0' && strlen(s) <= 64 && strspn(s,
	    "0123456789") == strlen(s);
}

static int
ok_key_id(const char *s)
{
	return token_chars(s, 128);
}

static int
ok_https(const char *s)
{
	return token_chars(s, 1024) && strncmp(s, "https://", 8) == 0 &&
	    s[8] != '\0' && s[8] != '/';
}

int
oa2_gsa_key_load(const char *path, struct oa2_gsa_key **out,
    struct oa2_error *err)
{
	struct oa2_gsa_key *k = NULL;
	json_error_t jerr;
	json_t *root = NULL, *v;
	char *data = NULL, shown[80], *near;
	size_t len = 0;
	BIO *bio = NULL;
	char *trial = NULL;
	int r, bits;

	*out = NULL;
	if ((r = oa2_read_file(path, "service account key file", 1,
	    MAX_GSA_FILE, &data, &len, err)) != 0)
		return r;
	r = OA2_ERR_CREDENTIAL;
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		/*
		 * jansson's text ends with the input near the error
		 * (" near '...'"), which may be a piece of the key: only
		 * what went wrong is shown, with the line.
		 */
		if ((near = strstr(jerr.text, " near '")) != NULL)
			*near = '\0';
		oa2_sanitize(shown, sizeof(shown), jerr.text,
		    strlen(jerr.text), 60);
		if (root == NULL)
			oa2_seterr(err, r, "service account key file %s is not "
			    "JSON (line %d: %s)", path, jerr.line, shown);
		else
			oa2_seterr(err, r, "service account key file %s is not "
			    "a JSON object", path);
		goto out;
	}
	v = json_object_get(root, "type");
	if (!json_is_string(v) ||
	    strcmp(json_string_value(v), "service_account") != 0) {
		oa2_sanitize(shown, sizeof(shown), json_is_string(v) ?
		    json_string_value(v) : "", json_is_string(v) ?
		    json_string_length(v) : 0, 40);
		oa2_seterr(err, r, "%s is not a service account key file "
		    "(\"type\" is \"%s\", not \"service_account\")%s", path,
		    shown, json_is_string(v) && strcmp(json_string_value(v),
		    "authorized_user") == 0 ? ": it holds a user's sign-in, "
		    "not a service account's key" : "");
		goto out;
	}
	if ((k = calloc(1, sizeof(*k))) == NULL ||
	    (k->path = strdup(path)) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	if ((r = gsa_field(path, root, "client_email", ok_email,
	    "an e-mail address", &k->client_email, err)) != 0 ||
	    (r = gsa_field(path, root, "client_id", ok_digits,
	    "a numeric client id", &k->client_id, err)) != 0 ||
	    (r = gsa_field(path, root, "private_key_id", ok_key_id,
	    "a key id", &k->key_id, err)) != 0 ||
	    (r = gsa_field(path, root, "token_uri", ok_https,
	    "an https:// URL", &k->token_uri, err)) != 0)
		goto out;
	r = OA2_ERR_CREDENTIAL;
	v = json_object_get(root, "private_key");
	if (!json_is_string(v)) {
		oa2_seterr(err, r, "service account key file %s has no "
		    "\"private_key\" string: it is not a whole key file as "
		    "Google Cloud makes it", path);
		goto out;
	}
	if ((bio = BIO_new_mem_buf(json_string_value(v),
	    (int)json_string_length(v))) == NULL) {
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
		goto out;
	}
	ERR_clear_error();
	if ((k->key = PEM_read_bio_PrivateKey(bio, NULL, pass_cb, NULL)) ==
	    NULL) {
		oa2_seterr(err, r, "service account key file %s: "
		    "\"private_key\" is not a PEM private key (%s)", path,
		    ssl_reason());
		goto out;
	}
	if (EVP_PKEY_get_base_id(k->key) != EVP_PKEY_RSA) {
		oa2_seterr(err, r, "service account key file %s: "
		    "\"private_key\" is not an RSA key: Google signs and "
		    "checks RS256", path);
		goto out;
	}
	if ((bits = EVP_PKEY_get_bits(k->key)) < 2048) {
		oa2_seterr(err, r, "service account key file %s: the RSA key "
		    "has %d bits: at least 2048 are needed", path, bits);
		goto out;
	}
	/* a key that parses but cannot sign (damaged): now, not at login */
	if (oa2_jwt_google_assertion(k, "check@invalid", "check", 1, 60,
	    &trial, err) != OA2_OK) {
		oa2_seterr(err, r, "service account key file %s: its "
		    "\"private_key\" cannot sign (is the file damaged?)", path);
		goto out;
	}
	oa2_freezero_str(&trial);
	*out = k;
	k = NULL;	/* transferred */
	r = OA2_OK;
	oa2_clearerr(err);
 out:
	BIO_free(bio);
	ERR_clear_error();
	/*
	 * The key inside jansson's object is ours to overwrite: wipe it
	 * before it is freed (jansson's lexer frees its own scratch copy
	 * unwiped, as for the token answers in token.c).
	 */
	v = json_object_get(root, "private_key");
	if (json_is_string(v))
		oa2_wipe((char *)json_string_value(v), json_string_length(v));
	json_decref(root);
	oa2_freezero(data, len);
	oa2_gsa_key_free(&k);
	return r;
}

void
oa2_gsa_key_free(struct oa2_gsa_key **kp)
{
	struct oa2_gsa_key *k;

	if (kp == NULL || (k = *kp) == NULL)
		return;
	EVP_PKEY_free(k->key);	/* OpenSSL clears key material it frees */
	free(k->path);
	free(k->client_email);
	free(k->client_id);
	free(k->key_id);
	free(k->token_uri);
	free(k);
	*kp = NULL;
}

const char *
oa2_gsa_key_email(const struct oa2_gsa_key *k)
{
	return k->client_email;
}

const char *
oa2_gsa_key_client_id(const struct oa2_gsa_key *k)
{
	return k->client_id;
}

const char *
oa2_gsa_key_id(const struct oa2_gsa_key *k)
{
	return k->key_id;
}

const char *
oa2_gsa_key_token_uri(const struct oa2_gsa_key *k)
{
	return k->token_uri;
}

const char *
oa2_gsa_key_path(const struct oa2_gsa_key *k)
{
	return k->path;
}

int
oa2_jwt_google_assertion(const struct oa2_gsa_key *k, const char *sub,
    const char *scope, time_t now, long lifetime, char **out,
    struct oa2_error *err)
{
	json_t *header, *claims;
	int r;

	*out = NULL;
	if (lifetime <= 0 || lifetime > OA2_GOOGLE_MAX_LIFETIME)
		lifetime = OA2_GOOGLE_MAX_LIFETIME;
	header = json_pack("{s:s, s:s, s:s}", "alg", "RS256", "typ", "JWT",
	    "kid", k->key_id);
	claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "iss",
	    k->client_email, "sub", sub, "scope", scope, "aud", k->token_uri,
	    "iat", (json_int_t)now, "exp", (json_int_t)(now + lifetime));
	if (header == NULL || claims == NULL)
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	else
		r = sign_jwt(k->key, OA2_ALG_RS256, header, claims,
		    "service account assertion", out, err);
	json_decref(header);
	json_decref(claims);
	return r;
}
