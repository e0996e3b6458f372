/*
 * The client secret: client_secret_file or an inline client_secret,
 * sent as client_secret in the client-credentials grant.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "secret.h"

static const char *const keys[] = {
	"client_secret_file", "client_secret", NULL
};
static const char *const files[] = { "client_secret_file", NULL };

static int
secret_load(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	static const char *const wrong[] = {
		"private_key", "private_key_passphrase_file",
		"pkcs12_passphrase_file", NULL
	};
	const config_setting_t *s;
	const char *v;
	int i, r;

	for (i = 0; wrong[i] != NULL; i++)
		if (config_setting_get_member(g, wrong[i]) != NULL)
			return oa2_conf_fail(ld, config_setting_get_member(g,
			    wrong[i]), OA2_ERR_CONFIG, "account \"%s\": a "
			    "client secret takes no key or passphrase file",
			    a->match);
	if ((s = config_setting_get_member(g, "client_secret")) != NULL) {
		if ((r = oa2_conf_string(ld, g, "client_secret", &v)) != 0)
			return r;
		ld->has_inline_secret = 1;
		if ((a->client_secret = strdup(v)) == NULL)
			return oa2_seterr(ld->err, OA2_ERR_NOMEM,
			    "out of memory");
		return OA2_OK;
	}
	s = config_setting_get_member(g, "client_secret_file");
	if ((r = oa2_conf_string(ld, g, "client_secret_file", &v)) != 0)
		return r;
	if ((r = oa2_read_secret_file(v, "secret file", &a->client_secret,
	    ld->err)) != 0)
		return oa2_conf_fail_wrap(ld, s, r);
	return OA2_OK;
}

static void
secret_clear(struct oa2_account *a)
{
	oa2_freezero_str(&a->client_secret);
	oa2_freezero_str(&a->next_client_secret);
}

/* A digest of the secret, so that a new secret never reuses a token. */
static int
secret_cache_id(const struct oa2_account *a, EVP_MD_CTX *ctx)
{
	unsigned char sec[EVP_MAX_MD_SIZE];
	unsigned int seclen;
	int ok;

	if (a->client_secret == NULL)
		return 0;
	ok = EVP_Digest(a->client_secret, strlen(a->client_secret), sec,
	    &seclen, EVP_sha256(), NULL) &&
	    EVP_DigestUpdate(ctx, "secret", 7) &&
	    EVP_DigestUpdate(ctx, sec, seclen);
	oa2_wipe(sec, sizeof(sec));
	return ok;
}

static int
secret_grant(const struct oa2_account *a, const char *mailbox, time_t now,
    struct oa2_grant *g, struct oa2_error *err)
{
	int r;

	(void)mailbox;
	(void)now;
	if (a->client_secret == NULL)
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "account %s has no "
		    "client secret", a->match);
	if ((r = oa2_grant_client_credentials(a, g, err)) != 0)
		return r;
	if (oa2_form_add(&g->form, &g->formlen, "client_secret",
	    a->client_secret) != 0)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	return OA2_OK;
}

static void
secret_describe(const struct oa2_account *a, char *buf, size_t len)
{
	(void)a;
	snprintf(buf, len, "client secret");
}

const struct oa2_cred_kind oa2_cred_secret = {
	.name = "client secret",
	.keys = keys,
	.files = files,
	.flags = OA2_CRED_CLIENT | OA2_CRED_ROLLOVER,
	.load = secret_load,
	.clear = secret_clear,
	.cache_id = secret_cache_id,
	.grant = secret_grant,
	.describe = secret_describe,
};
