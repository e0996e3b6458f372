/*
 * The SASL glue: the XOAUTH2 and OAUTHBEARER client mechanisms.
 */
#ifndef OA2_MECH_H
#define OA2_MECH_H

#include <sasl/sasl.h>
#include <sasl/saslplug.h>

/*
 * Load the configuration (errors are kept and reported when a
 * connection tries a mechanism: never fails because of it) and hand out
 * the mechanism table.
 */
int oa2_mech_init(const sasl_utils_t *utils, sasl_client_plug_t **plugs,
    int *count);

#endif
