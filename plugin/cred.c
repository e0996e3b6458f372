/*
 * The credential sources, in one table, and what their grants share.
 */
#include "config.h"

#include <string.h>

#include "conf.h"
#include "cred.h"
#include "http.h"
#include "secret.h"

/*
 * Every source the config may name. An account holds exactly one
 * source's selecting keys (conf.c): the order is only that of the
 * lists in messages.
 */
const struct oa2_cred_kind *const oa2_cred_kinds[] = {
	&oa2_cred_secret,
	&oa2_cred_cert,
	&oa2_cred_federated,
	&oa2_cred_google_sa,
	&oa2_cred_msi,
	&oa2_cred_refresh,
	NULL
};

void
oa2_grant_clear(struct oa2_grant *g)
{
	if (g == NULL)
		return;
	free(g->url);
	if (g->form != NULL)
		oa2_freezero(g->form, g->formlen + 1);
	memset(g, 0, sizeof(*g));
}

int
oa2_grant_client_credentials(const struct oa2_account *a,
    struct oa2_grant *g, struct oa2_error *err)
{
	if (oa2_form_add(&g->form, &g->formlen, "grant_type",
	    "client_credentials") != 0 ||
	    oa2_form_add(&g->form, &g->formlen, "client_id",
	    a->client_id) != 0 ||
	    oa2_form_add(&g->form, &g->formlen, "scope", a->scope) != 0)
		return oa2_seterr(err, OA2_ERR_NOMEM, "out of memory");
	return OA2_OK;
}
