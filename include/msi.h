/*
 * Azure managed identity (plugin/cred-msi.c): the three endpoints and
 * their protocols, for the credential source and for its tests.
 *
 * Internal to the plugin and the command; not installed.
 */
#ifndef OA2_MSI_H
#define OA2_MSI_H

#include <stddef.h>
#include <time.h>
#include "error.h"
#include "token.h"

#define OA2_MSI_IMDS		1	/* Azure VM instance metadata service */
#define OA2_MSI_APP_SERVICE	2	/* App Service, Functions */
#define OA2_MSI_ARC		3	/* the Azure Arc agent (himds) */

/* The Arc agent's key files; SASL_OAUTH2_ARC_TOKEN_DIR in tests. */
#define OA2_MSI_ARC_DIR		"/var/opt/azcmagent/tokens"
#define OA2_MSI_ARC_KEY_MAX	4096

/* What an account says (its keys, sasl-oauth2.conf(5)). */
struct oa2_msi {
	char	*identity;	/* NULL: system-assigned; else a client id */
	char	*endpoint;	/* managed_identity_endpoint; NULL: environment */
	int	protocol;	/* OA2_MSI_* for endpoint; 0 without one */
	char	*header_file;	/* App Service: managed_identity_header_file */
	char	*header;	/* its value, read at load; a secret */
	char	*resource;	/* the scope without "/.default" */
	const char *ca_data;	/* an https:// endpoint's ca_file (the */
	size_t	ca_len;		/* config's), or NULL: the system's */
	const char *ca_name;
};

/* Where a request goes: the endpoint found, and why. */
struct oa2_msi_target {
	int		protocol;	/* OA2_MSI_* */
	char		url[512];	/* without the query */
	const char	*header;	/* App Service: the header value; or NULL */
	const char	*source;	/* "from managed_identity_endpoint", ... */
};

/*
 * The endpoint m's requests go to: its managed_identity_endpoint, else
 * the environment (IDENTITY_ENDPOINT and IDENTITY_HEADER: App Service;
 * IDENTITY_ENDPOINT and IMDS_ENDPOINT, or an installed Arc agent: Arc;
 * else the instance metadata service), read with secure_getenv (a
 * setuid or setgid program uses none). t->header points into m (the
 * header file's value, read at load) or the environment.
 */
int oa2_msi_target(const struct oa2_msi *m, struct oa2_msi_target *t,
    struct oa2_error *err);

/* "the instance metadata service (IMDS)", ...: for sentences. */
const char *oa2_msi_protocol_name(int protocol);

/*
 * Parse an endpoint's answer (HTTP status and body) to a token request
 * of protocol for identity (NULL: system-assigned). On success out
 * holds the token, its expiry from expires_in, else expires_on (epoch
 * seconds, a number or a string). Failures are sentences: no identity
 * assigned, an unknown client id, a refusal (OA2_ERR_DENIED), a
 * transient failure (404, 410, 429, 5xx: OA2_ERR_TRANSIENT), garbage
 * (OA2_ERR_RESPONSE); server text sanitised.
 */
int oa2_msi_parse(int protocol, const char *identity, long status,
    const char *body, size_t len, time_t now, struct oa2_token *out,
    struct oa2_error *err);

/*
 * The Arc challenge's key: www_auth must be "Basic realm=PATH" with
 * PATH a file directly in dir (OA2_MSI_ARC_DIR), named *.key, regular,
 * not a symbolic link, of 1..OA2_MSI_ARC_KEY_MAX bytes without control
 * characters (one trailing newline is dropped). *key is freed by the
 * caller with oa2_freezero_str.
 */
int oa2_msi_arc_key(const char *dir, const char *www_auth, char **key,
    struct oa2_error *err);

/* The Arc key directory: OA2_MSI_ARC_DIR, or the test override. */
const char *oa2_msi_arc_dir(void);

/*
 * Check a managed_identity_endpoint value: an http:// or https:// URL
 * without blanks, and an http:// one to a numeric address only when
 * that is loopback or link-local (names are checked when connecting).
 */
int oa2_msi_check_endpoint(const char *url, struct oa2_error *err);

/* One token request, through the endpoint oa2_msi_target finds. */
int oa2_msi_fetch(const struct oa2_msi *m, const struct oa2_log *lg,
    time_t now, long timeout, struct oa2_token *out, struct oa2_error *err);

/* Wipe and free m's strings and zero it. */
void oa2_msi_clear(struct oa2_msi *m);

#endif
