/*
 * The certificate: a client assertion (RFC 7523) signed with the
 * private key of a certificate the app registration knows, from PEM
 * files or PKCS#12.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "secret.h"

static const char *const keys[] = { "certificate", "pkcs12", NULL };
static const char *const more_keys[] = {
	"private_key", "private_key_passphrase_file",
	"pkcs12_passphrase_file", NULL
};
static const char *const files[] = {
	"certificate", "private_key", "private_key_passphrase_file",
	"pkcs12", "pkcs12_passphrase_file", NULL
};

/*
 * The key that names the file a certificate credential failed on, from
 * the sentence oa2_cert_load left: "private key file K is accessible by
 * group or others" is private_key's fault, not certificate's.
 */
static const char *
error_key(const char *msg, const struct oa2_cert_source *src)
{
	if (src->pkcs12 != NULL)
		return src->pkcs12_passphrase_file != NULL &&
		    strstr(msg, "passphrase file ") != NULL ?
		    "pkcs12_passphrase_file" : "pkcs12";
	if (strstr(msg, "passphrase file ") != NULL ||
	    strstr(msg, "wrong passphrase") != NULL)
		return "private_key_passphrase_file";
	if (strstr(msg, "does not match the certificate") != NULL)
		return "certificate";
	if (strstr(msg, "private key") != NULL ||
	    strstr(msg, "RSA key") != NULL)
		return "private_key";
	return "certificate";
}

static int
cert_load(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	struct oa2_cert_source src;
	const config_setting_t *s, *at;
	int r;

	memset(&src, 0, sizeof(src));
	if ((r = oa2_conf_string(ld, g, "certificate",
	    &src.certificate)) != 0 ||
	    (r = oa2_conf_string(ld, g, "private_key",
	    &src.private_key)) != 0 ||
	    (r = oa2_conf_string(ld, g, "private_key_passphrase_file",
	    &src.passphrase_file)) != 0 ||
	    (r = oa2_conf_string(ld, g, "pkcs12", &src.pkcs12)) != 0 ||
	    (r = oa2_conf_string(ld, g, "pkcs12_passphrase_file",
	    &src.pkcs12_passphrase_file)) != 0)
		return r;
	s = config_setting_get_member(g, src.certificate != NULL ?
	    "certificate" : "pkcs12");
	if (src.certificate != NULL && src.private_key == NULL)
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG, "account \"%s\": "
		    "certificate needs private_key (it may name the same "
		    "file)", a->match);
	if (src.pkcs12 != NULL && (src.private_key != NULL ||
	    src.passphrase_file != NULL))
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG, "account \"%s\": "
		    "pkcs12 holds the key: use pkcs12_passphrase_file, not "
		    "private_key or private_key_passphrase_file", a->match);
	if (src.certificate != NULL && src.pkcs12_passphrase_file != NULL)
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG, "account \"%s\": "
		    "pkcs12_passphrase_file goes with pkcs12, not certificate",
		    a->match);
	/* its expiry warning is conf.c's, with expiry_warning */
	if ((r = oa2_cert_load(&src, NULL, &a->cert, ld->err)) != 0) {
		if (r == OA2_ERR_NOMEM)
			return r;
		if ((at = config_setting_get_member(g,
		    error_key(ld->err->msg, &src))) == NULL)
			at = s;
		return oa2_conf_fail_wrap(ld, at, r);
	}
	return OA2_OK;
}

static void
cert_clear(struct oa2_account *a)
{
	oa2_cert_free(&a->cert);
	oa2_cert_free(&a->next_cert);
}

/* The certificate's SHA-256 thumbprint: a new certificate, a new token. */
static int
cert_cache_id(const struct oa2_account *a, EVP_MD_CTX *ctx)
{
	const char *id;

	if (a->cert == NULL)
		return 0;
	id = oa2_cert_x5t_s256(a->cert);
	return EVP_DigestUpdate(ctx, id, strlen(id) + 1);
}

static int
cert_grant(const struct oa2_account *a, const char *mailbox, time_t now,
    struct oa2_grant *g, struct oa2_error *err)
{
	char *assertion = NULL;
	int r;

	(void)mailbox;
	if (a->cert == NULL)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "account %s has no "
		    "usable credential", a->match);
	if ((r = oa2_grant_client_credentials(a, g, err)) != 0)
		return r;
	/* a new assertion (fresh jti) for each request */
	if ((r = oa2_jwt_assertion(a->cert, a->assertion_alg, a->client_id,
	    a->token_url, now, a->assertion_lifetime, &assertion, err)) != 0)
		return r;
	if (oa2_form_add(&g->form, &g->formlen, "client_assertion_type",
	    OA2_ASSERTION_TYPE) != 0 ||
	    oa2_form_add(&g->form, &g->formlen, "client_assertion",
	    assertion) != 0)
		r = oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	oa2_freezero_str(&assertion);
	return r;
}

static void
cert_describe(const struct oa2_account *a, char *buf, size_t len)
{
	if (a->cert == NULL)
		snprintf(buf, len, "certificate");
	else
		snprintf(buf, len, "certificate %s (SHA-1 %s)",
		    oa2_cert_subject(a->cert), oa2_cert_sha1_hex(a->cert));
}

const struct oa2_cred_kind oa2_cred_cert = {
	.name = "certificate",
	.keys = keys,
	.more_keys = more_keys,
	.files = files,
	.flags = OA2_CRED_CLIENT | OA2_CRED_ROLLOVER,
	.load = cert_load,
	.clear = cert_clear,
	.cache_id = cert_cache_id,
	.grant = cert_grant,
	.describe = cert_describe,
};
