/*
 * Credential source: a Google Workspace service account with
 * domain-wide delegation. Its JSON key file signs an RS256 assertion
 * per mailbox (iss = client_email, sub = the mailbox, scope, aud =
 * token_uri), exchanged at token_uri with the JWT bearer grant
 * (RFC 7523 2.1). The token is the mailbox's own (OA2_CRED_PER_MAILBOX:
 * see plugin/account.c).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "jwt.h"
#include "secret.h"
#include "wire.h"

#define GSA_GRANT_TYPE	"urn:ietf:params:oauth:grant-type:jwt-bearer"
#define GSA_SCOPE_MAIL	"https://mail.google.com/"
#define GSA_SCOPE_ADMIN	"https://www.googleapis.com/auth/gmail.imap_admin"
#define GSA_ADMIN_PATH	"Google Admin console > Security > Access and " \
	"data control > API controls > Domain-wide delegation"

static const char *const gsa_keys[] = { "service_account_file", NULL };
static const char *const gsa_more_keys[] = { NULL };

static int
gsa_load(struct oa2_loader *ld, const config_setting_t *g,
    struct oa2_account *a)
{
	const config_setting_t *s;
	struct oa2_gsa_key *k = NULL;
	const char *path = NULL, *scope = NULL;
	char *dup;
	int r;

	if ((r = oa2_conf_string(ld, g, "service_account_file", &path)) != 0)
		return r;
	s = config_setting_get_member(g, "service_account_file");
	if (path == NULL || *path != '/')
		return oa2_conf_fail(ld, s, OA2_ERR_CONFIG,
		    "service_account_file must be an absolute path");
	/* scope: the account's own, else Google's for mail (not defaults') */
	if ((r = oa2_conf_string(ld, g, "scope", &scope)) != 0)
		return r;
	if (scope == NULL)
		scope = GSA_SCOPE_MAIL;
	else if (strcmp(scope, GSA_SCOPE_MAIL) != 0 &&
	    strcmp(scope, GSA_SCOPE_ADMIN) != 0)
		return oa2_conf_fail(ld, config_setting_get_member(g, "scope"),
		    OA2_ERR_CONFIG, "scope \"%s\" is not one for mail: a "
		    "service account takes \"" GSA_SCOPE_MAIL "\" (the "
		    "default) or \"" GSA_SCOPE_ADMIN "\"", scope);
	if ((dup = strdup(scope)) == NULL)
		return oa2_conf_fail(ld, g, OA2_ERR_NOMEM, "out of memory");
	free(a->scope);
	a->scope = dup;
	if ((r = oa2_gsa_key_load(path, &k, ld->err)) != 0)
		return oa2_conf_fail_wrap(ld, s, r);
	if ((dup = strdup(oa2_gsa_key_token_uri(k))) == NULL) {
		oa2_gsa_key_free(&k);
		return oa2_conf_fail(ld, g, OA2_ERR_NOMEM, "out of memory");
	}
	free(a->token_url);
	a->token_url = dup;
	a->data = k;
	a->imap_host = "imap.gmail.com";
	a->pop_host = "pop.gmail.com";
	a->smtp_host = "smtp.gmail.com";
	return OA2_OK;
}

static void
gsa_clear(struct oa2_account *a)
{
	struct oa2_gsa_key *k = a->data;

	oa2_gsa_key_free(&k);	/* OpenSSL wipes the key it frees */
	a->data = NULL;
}

static int
gsa_cache_id(const struct oa2_account *a, EVP_MD_CTX *ctx)
{
	const struct oa2_gsa_key *k = a->data;
	const char *v[6];
	size_t i;

	if (k == NULL)
		return 0;
	v[0] = "google-sa";
	v[1] = oa2_gsa_key_email(k);
	v[2] = oa2_gsa_key_client_id(k);
	v[3] = oa2_gsa_key_id(k);
	v[4] = oa2_gsa_key_token_uri(k);
	v[5] = a->scope;
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		if (EVP_DigestUpdate(ctx, v[i], strlen(v[i]) + 1) != 1)
			return 0;
	return 1;
}

static int
gsa_grant(const struct oa2_account *a, const char *mailbox, time_t now,
    struct oa2_grant *g, struct oa2_error *err)
{
	const struct oa2_gsa_key *k = a->data;
	char *assertion = NULL;
	int r;

	if (a->mailbox != NULL)
		mailbox = a->mailbox;	/* the one the cache is keyed by */
	if (k == NULL || mailbox == NULL || *mailbox == '\0')
		return oa2_seterr(err, OA2_ERR_CREDENTIAL, "account %s: a "
		    "service account needs the mailbox to sign in as",
		    a->match);
	if ((r = oa2_jwt_google_assertion(k, mailbox, a->scope, now,
	    OA2_GOOGLE_MAX_LIFETIME, &assertion, err)) != 0)
		return r;
	if ((r = oa2_form_add(&g->form, &g->formlen, "grant_type",
	    GSA_GRANT_TYPE)) != 0 ||
	    (r = oa2_form_add(&g->form, &g->formlen, "assertion",
	    assertion)) != 0)
		oa2_seterr(err, r, "out of memory");
	oa2_freezero_str(&assertion);
	return r;
}

static void
gsa_describe(const struct oa2_account *a, char *buf, size_t len)
{
	const struct oa2_gsa_key *k = a->data;

	if (k == NULL) {
		snprintf(buf, len, "service account");
		return;
	}
	snprintf(buf, len, "service account %s  client id %s  key %s  "
	    "file %s  scope %s", oa2_gsa_key_email(k),
	    oa2_gsa_key_client_id(k), oa2_gsa_key_id(k),
	    oa2_gsa_key_path(k), a->scope);
}

/*
 * Google's refusals as sentences an admin can act on (texts as Google's
 * token endpoint sends them, in error_description): err->msg holds
 * token.c's "token request refused (HTTP N): error: description".
 */
static void
gsa_explain(const struct oa2_account *a, struct oa2_error *err)
{
	const struct oa2_gsa_key *k = a->data;
	const char *m = err->msg, *mailbox = a->mailbox;

	if (k == NULL || err->code != OA2_ERR_DENIED)
		return;
	if (mailbox == NULL)
		mailbox = "(none)";
	if (strstr(m, "unauthorized_client") != NULL)
		oa2_seterr(err, OA2_ERR_DENIED, "Google refused a token for "
		    "%s: domain-wide delegation is not granted to client id "
		    "%s (service account %s) for scope %s: add it in the "
		    GSA_ADMIN_PATH " (Google: unauthorized_client)", mailbox,
		    oa2_gsa_key_client_id(k), oa2_gsa_key_email(k), a->scope);
	else if (strstr(m, "Invalid email or User ID") != NULL)
		oa2_seterr(err, OA2_ERR_DENIED, "Google refused a token for "
		    "%s: there is no mailbox %s in the Workspace (check the "
		    "address and that the user exists and is not suspended) "
		    "(Google: invalid_grant, Invalid email or User ID)", mailbox,
		    mailbox);
	else if (strstr(m, "Invalid JWT Signature") != NULL)
		oa2_seterr(err, OA2_ERR_DENIED, "Google refused the key %s of "
		    "service account %s: the key was deleted or rotated; make "
		    "a new key (Google Cloud console > IAM & Admin > Service "
		    "accounts > Keys) and point service_account_file at it "
		    "(Google: invalid_grant, Invalid JWT Signature)",
		    oa2_gsa_key_id(k), oa2_gsa_key_email(k));
	else if (strstr(m, "short-lived token") != NULL ||
	    strstr(m, "reasonable timeframe") != NULL)
		oa2_seterr(err, OA2_ERR_DENIED, "Google refused the "
		    "assertion's time: this host's clock is off by more than "
		    "a few minutes; synchronise it (NTP) (Google: invalid_grant, "
		    "Invalid JWT: Token must be a short-lived token)");
	else if (strstr(m, "account not found") != NULL ||
	    strstr(m, "is disabled") != NULL)
		oa2_seterr(err, OA2_ERR_DENIED, "Google knows no usable "
		    "service account %s: it was disabled or deleted; enable "
		    "it in the Google Cloud console (IAM & Admin > Service "
		    "accounts) or use another one's key (Google: invalid_grant, "
		    "account not found)", oa2_gsa_key_email(k));
}

const struct oa2_cred_kind oa2_cred_google_sa = {
	.name = "Google service account",
	.keys = gsa_keys,
	.more_keys = gsa_more_keys,
	.files = gsa_keys,
	.flags = OA2_CRED_PER_MAILBOX,
	.load = gsa_load,
	.clear = gsa_clear,
	.cache_id = gsa_cache_id,
	.grant = gsa_grant,
	.describe = gsa_describe,
	.explain = gsa_explain,
};
