/*
 * The implementation object's only exported symbol: plugin/init.c (the
 * SASL plugin libsasl2 loads) dlopen()s this object and calls it, at
 * plug_init or on the first use of a mechanism (docs/loading.md).
 * Not a SASL plugin: it has no sasl_client_plug_init, so libsasl2
 * would ignore it even if it found it.
 */
#include "config.h"

#include "mech.h"

int oa2_impl_plug_init(const sasl_utils_t *, int, int *,
    sasl_client_plug_t **, int *);

__attribute__((visibility("default"))) int
oa2_impl_plug_init(const sasl_utils_t *utils, int maxversion,
    int *out_version, sasl_client_plug_t **pluglist, int *plugcount)
{
	if (maxversion < SASL_CLIENT_PLUG_VERSION) {
		utils->seterror(utils->conn, 0, "sasl-oauth2: libsasl2 is "
		    "too old (client plugin version %d < %d)", maxversion,
		    SASL_CLIENT_PLUG_VERSION);
		return SASL_BADVERS;
	}
	*out_version = SASL_CLIENT_PLUG_VERSION;
	return oa2_mech_init(utils, pluglist, plugcount);
}
