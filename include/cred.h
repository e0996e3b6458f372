/*
 * Credential sources: how an account gets its token. One file per
 * source (plugin/cred-*.c), one table (oa2_cred_kinds in plugin/cred.c),
 * the way libsasl2 gives mechanisms one sasl_client_plug_t and curl
 * gives TLS backends one Curl_ssl. token.c is the generic grant runner:
 * it asks the source for its form (or lets it make the whole request),
 * posts it, parses the answer and handles retries and rollover.
 *
 * Internal to the plugin and the command; not installed.
 */
#ifndef OA2_CRED_H
#define OA2_CRED_H

#include <stddef.h>
#include <time.h>
#include <libconfig.h>
#include <openssl/evp.h>
#include "error.h"
#include "token.h"

struct oa2_account;
struct oa2_config;

/* conf.c's state while it loads one file; sources read keys through it. */
struct oa2_loader {
	const char		*path;
	const struct oa2_log	*lg;
	struct oa2_error	*err;
	struct oa2_config	*cfg;
	int			has_inline_secret;	/* file must be private */
};

/*
 * Fail at setting s (or the group) with "file:line: message"; returns
 * code. oa2_conf_fail_wrap puts "file:line: " before the sentence
 * already in ld->err.
 */
int oa2_conf_fail(struct oa2_loader *ld, const config_setting_t *s, int code,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int oa2_conf_fail_wrap(struct oa2_loader *ld, const config_setting_t *s,
    int code);

/* String member key of group g into *out (NULL when absent). */
int oa2_conf_string(struct oa2_loader *ld, const config_setting_t *g,
    const char *key, const char **out);

/* Flags of a source. */
#define OA2_CRED_CLIENT		0x01	/* needs tenant and client_id */
#define OA2_CRED_PER_MAILBOX	0x02	/* a token is one mailbox's own */
#define OA2_CRED_ROLLOVER	0x04	/* takes next_* keys (conf.c) */
#define OA2_CRED_CLIENT_ID	0x08	/* needs client_id; tenant optional,
					   checked by the source's load */

/*
 * One token request as a source describes it, for token.c to send.
 * Everything here is owned by the request and wiped and freed by
 * oa2_grant_clear: form and header values may hold secrets.
 */
struct oa2_grant {
	char	*url;		/* NULL: the account's token_url */
	char	*form;		/* POST body (x-www-form-urlencoded) */
	size_t	formlen;
};

struct oa2_cred_kind {
	const char	*name;		/* "client secret", for messages */
	/*
	 * The account keys that select this source (exactly one of all
	 * sources' keys may be present in an account), then the further
	 * keys only it may use. NULL-terminated.
	 */
	const char *const *keys;
	const char *const *more_keys;
	/*
	 * Those of its keys whose files load reads (with
	 * OA2_CRED_ROLLOVER, their next_ forms too): plug_init reads them
	 * for a load after a chroot (oa2_config_snapshot). NULL: none; a
	 * file read for each request is not one of them.
	 */
	const char *const *files;
	unsigned	flags;		/* OA2_CRED_* */

	/*
	 * Read and check the credential of group g into a, whose common
	 * fields (match, authority, tenant and client_id when
	 * OA2_CRED_CLIENT, scope, token_url, ca, timeouts) are set. On
	 * failure a sentence "file:line: ..." is in ld->err (oa2_conf_fail);
	 * OA2_ERR_CREDENTIAL says a file could not be used (not a mistake
	 * in the config).
	 */
	int	(*load)(struct oa2_loader *ld, const config_setting_t *g,
		    struct oa2_account *a);

	/* Wipe and free what load put in a. */
	void	(*clear)(struct oa2_account *a);

	/*
	 * Feed what names the credential (never a secret as it is: a
	 * digest of it) to the cache key's digest.
	 */
	int	(*cache_id)(const struct oa2_account *a, EVP_MD_CTX *ctx);

	/*
	 * The grant for one token request (mailbox: the mailbox logging
	 * in, used by OA2_CRED_PER_MAILBOX sources), for token.c to post
	 * and parse with oa2_token_parse. NULL when fetch is set.
	 */
	int	(*grant)(const struct oa2_account *a, const char *mailbox,
		    time_t now, struct oa2_grant *g, struct oa2_error *err);

	/*
	 * A whole request of the source's own (another protocol, a
	 * challenge round): fill out or fail with a sentence; *code is a
	 * provider's error code when it has one, else 0. NULL: grant.
	 */
	int	(*fetch)(const struct oa2_account *a, const char *mailbox,
		    const struct oa2_log *lg, time_t now, long timeout,
		    struct oa2_token *out, long *code, struct oa2_error *err);

	/*
	 * One line for check-config and test saying what the credential
	 * is ("secret file /etc/..., expires 2027-01-01"), into buf.
	 */
	void	(*describe)(const struct oa2_account *a, char *buf,
		    size_t len);

	/*
	 * Optional, for a source that reads its input afresh for each
	 * request (a federated token file the kubelet rotates): what that
	 * input is now ("" when it cannot be told), into buf. A refusal
	 * remembered for failure_backoff holds only while it is the same:
	 * a new file is asked about at once. NULL: the input is the
	 * configuration's.
	 */
	void	(*input_id)(const struct oa2_account *a, char *buf,
		    size_t len);

	/*
	 * Optional: turn the provider's refusal in err (OA2_ERR_DENIED, as
	 * oa2_token_parse put it) into the sentence that says which step
	 * of the set-up is missing. NULL: the parsed sentence stays.
	 */
	void	(*explain)(const struct oa2_account *a, struct oa2_error *err);
};

/* The table, NULL-terminated; plugin/cred.c. */
extern const struct oa2_cred_kind *const oa2_cred_kinds[];

extern const struct oa2_cred_kind oa2_cred_secret;	/* cred-secret.c */
extern const struct oa2_cred_kind oa2_cred_cert;	/* cred-cert.c */
extern const struct oa2_cred_kind oa2_cred_federated;	/* cred-federated.c */

/*
 * The federated token at path, read and checked as a request uses it
 * (a private file; a JWT; not expired at now): *out (freed with
 * oa2_freezero(*out, *outlen + 1)) and, if info is not NULL, what it
 * says about itself. Fails with OA2_ERR_CREDENTIAL and a sentence
 * naming path and never quoting the token.
 */
struct oa2_jwt_info;
int oa2_federated_read(const char *path, time_t now, char **out,
    size_t *outlen, struct oa2_jwt_info *info, struct oa2_error *err);
/* The federated token file of account a; NULL for another source. */
const char *oa2_federated_path(const struct oa2_account *a);
extern const struct oa2_cred_kind oa2_cred_google_sa;	/* cred-google-sa.c */
extern const struct oa2_cred_kind oa2_cred_msi;		/* cred-msi.c */
extern const struct oa2_cred_kind oa2_cred_refresh;	/* cred-refresh.c */

/* Wipe and free g's contents and zero it. */
void oa2_grant_clear(struct oa2_grant *g);

/*
 * The start of every Entra client-credentials form: grant_type,
 * client_id and scope of a, into g->form.
 */
int oa2_grant_client_credentials(const struct oa2_account *a,
    struct oa2_grant *g, struct oa2_error *err);

/* "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" */
#define OA2_ASSERTION_TYPE \
	"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

#endif
