/* The only symbol the plugin module exports. */
#include "config.h"

#include "mech.h"

int sasl_client_plug_init(const sasl_utils_t *, int, int *,
    sasl_client_plug_t **, int *);

__attribute__((visibility("default"))) int
sasl_client_plug_init(const sasl_utils_t *utils, int maxversion,
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
