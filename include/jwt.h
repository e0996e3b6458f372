/*
 * Signed assertions (RFC 7523), built with OpenSSL EVP: one signer, two
 * claim sets (Entra's client assertion from a certificate, Google's
 * service account assertion from its JSON key file).
 */
#ifndef OA2_JWT_H
#define OA2_JWT_H

#include <stddef.h>
#include <time.h>
#include "error.h"

#define OA2_ALG_PS256	1	/* header x5t#S256 (SHA-256 thumbprint) */
#define OA2_ALG_RS256	2	/* header x5t (SHA-1 thumbprint), legacy */

/* Where a certificate credential comes from: PEM files or PKCS#12. */
struct oa2_cert_source {
	const char	*certificate;		/* PEM, first cert is ours */
	const char	*private_key;		/* PEM PKCS#1/PKCS#8, may equal certificate */
	const char	*passphrase_file;	/* optional, for private_key */
	const char	*pkcs12;		/* alternative to the two above */
	const char	*pkcs12_passphrase_file; /* optional */
};

/* A loaded certificate and its private key; opaque. */
struct oa2_cert;

/*
 * Load and check a credential: key file private (not group/other
 * readable), key matches certificate, RSA >= 2048 bits, certificate
 * currently valid (a warning is logged through lg within 30 days of
 * expiry). On success *out owns the key; free with oa2_cert_free.
 */
int oa2_cert_load(const struct oa2_cert_source *src, const struct oa2_log *lg,
    struct oa2_cert **out, struct oa2_error *err);

/* Wipe the key and free; clears *certp. Accepts NULL. */
void oa2_cert_free(struct oa2_cert **certp);

/* Thumbprints of the certificate's DER, owned by cert. */
const char *oa2_cert_sha1_hex(const struct oa2_cert *cert);	/* "A1B2..." as Azure shows */
const char *oa2_cert_x5t(const struct oa2_cert *cert);		/* b64url(SHA-1) */
const char *oa2_cert_x5t_s256(const struct oa2_cert *cert);	/* b64url(SHA-256) */
time_t oa2_cert_not_after(const struct oa2_cert *cert);
const char *oa2_cert_subject(const struct oa2_cert *cert);

/*
 * Thumbprints of the first certificate in a PEM (or DER) file, for the
 * tool; no key is needed. Buffers: sha1hex[41], x5t[28], x5t256[44].
 */
int oa2_cert_file_thumbprints(const char *path, char sha1hex[41],
    char x5t[28], char x5t256[44], struct oa2_error *err);

/*
 * A signed client assertion: header {alg,typ,x5t or x5t#S256}, claims
 * aud, iss = sub = client_id, jti (fresh UUID), nbf = iat = now,
 * exp = now + lifetime. *out is a secret: free with oa2_freezero_str.
 */
int oa2_jwt_assertion(const struct oa2_cert *cert, int alg,
    const char *client_id, const char *aud, time_t now, long lifetime,
    char **out, struct oa2_error *err);

/*
 * What a federated token (a JWT another identity provider issued, such
 * as a Kubernetes service-account token) says about itself, decoded
 * without checking its signature (Entra checks it). Strings are
 * sanitised and may be cut short; "" when absent; aud is the first
 * audience of a list.
 */
struct oa2_jwt_info {
	char	iss[256];
	char	sub[256];
	char	aud[256];
	time_t	exp;		/* 0: no exp claim */
	time_t	nbf;		/* 0: no nbf claim */
};

/*
 * Decode the header and claims of the compact JWS jwt (len bytes; a
 * trailing newline is the caller's to strip) into *out. Fails with
 * OA2_ERR_CREDENTIAL and a short reason ("it has 2 parts, not 3") when
 * it is not a signed JWT: three base64url parts, a JSON header naming
 * an alg other than "none", JSON claims, numeric exp and nbf. Never
 * puts any part of the token in the reason.
 */
int oa2_jwt_peek(const char *jwt, size_t len, struct oa2_jwt_info *out,
    struct oa2_error *err);

/*
 * A Google service account key, from the JSON key file Google Cloud
 * makes: "type" = "service_account", client_email, client_id (numeric),
 * private_key_id, private_key (PEM, RSA >= 2048 bits), token_uri
 * (https). The file must be private (oa2_read_file). Opaque.
 */
struct oa2_gsa_key;

/*
 * Load and check path; a missing or wrong field is named with the
 * file (OA2_ERR_CREDENTIAL). On success *out owns the key; free with
 * oa2_gsa_key_free. The file's bytes and the PEM are wiped.
 */
int oa2_gsa_key_load(const char *path, struct oa2_gsa_key **out,
    struct oa2_error *err);

/* Free; clears *kp. Accepts NULL. */
void oa2_gsa_key_free(struct oa2_gsa_key **kp);

/* The key file's fields, owned by k. */
const char *oa2_gsa_key_email(const struct oa2_gsa_key *k);
const char *oa2_gsa_key_client_id(const struct oa2_gsa_key *k);
const char *oa2_gsa_key_id(const struct oa2_gsa_key *k);	/* kid */
const char *oa2_gsa_key_token_uri(const struct oa2_gsa_key *k);
const char *oa2_gsa_key_path(const struct oa2_gsa_key *k);

/* Google accepts assertions that live one hour at most. */
#define OA2_GOOGLE_MAX_LIFETIME	3600

/*
 * The assertion of Google's JWT bearer grant (RFC 7523 2.1): header
 * {alg RS256, typ JWT, kid = private_key_id}, claims iss = client_email,
 * sub (the mailbox), scope, aud = token_uri, iat = now, exp = now +
 * lifetime (capped at OA2_GOOGLE_MAX_LIFETIME; <= 0 means the cap).
 * *out is a secret: free with oa2_freezero_str.
 */
int oa2_jwt_google_assertion(const struct oa2_gsa_key *k, const char *sub,
    const char *scope, time_t now, long lifetime, char **out,
    struct oa2_error *err);

#endif
