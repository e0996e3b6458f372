/*
 * libFuzzer target: the config loader (oa2_config_load) and account
 * matching. The input is a config file. Before it is written to the
 * scratch directory (mode 0600; 0644 when the input's size is odd, so
 * that the refusal of an inline secret in a readable file is reached
 * too) these names in it become the paths of fixture files:
 *
 *   @S@       a client secret file         @PASS@    a passphrase file
 *   @CA@      a CA bundle (PEM)            @P12@     a PKCS#12 bundle
 *   @CERT@, @KEY@  certificate and key (one PEM file)
 *   @ENCKEY@  the same with the key encrypted under @PASS@
 *
 * The certificate fixtures are seeds of the cert target.
 *
 * Checked: on success every account is complete, within its ranges,
 * and found by its own match, and the file is not seen as changed; on
 * failure there is no config but a sentence; the fixture secrets never
 * reach a sentence or a log line (unless the input holds them itself).
 */
#include "config.h"

#include <strings.h>

#include "conf.h"
#include "cred.h"
#include "fuzz.h"

#define SECRET		"fixture-secret-6b7e"
#define PASSPHRASE	"fuzz-passphrase-7c1e"

static const struct {
	const char	*name;		/* in the input */
	const char	*file;		/* in the scratch directory */
} fixtures[] = {
	{ "@S@", "client.secret" },
	{ "@PASS@", "key.pass" },
	{ "@CA@", "ca.pem" },
	{ "@P12@", "bundle.p12" },
	{ "@CERT@", "cert-key.pem" },
	{ "@KEY@", "cert-key.pem" },
	{ "@ENCKEY@", "cert-enckey.pem" },
};
#define NFIXTURES	(sizeof(fixtures) / sizeof(fixtures[0]))

static char paths[NFIXTURES][PATH_MAX];
static int input_has_secret;	/* the input itself spells one out */

static void
no_secret(const char *s)
{
	if (input_has_secret)
		return;
	fuzz_assert(strstr(s, SECRET) == NULL);
	fuzz_assert(strstr(s, PASSPHRASE) == NULL);
}

static void
log_sink(void *ctx, int level, const char *msg)
{
	fuzz_assert(level >= OA2_LOG_ERROR && level <= OA2_LOG_DEBUG);
	no_secret(msg);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char *data, *end, path[PATH_MAX];
	size_t len, i;

	fuzz_put("client.secret", SECRET "\n", strlen(SECRET) + 1, 0600,
	    path);
	fuzz_put("key.pass", PASSPHRASE "\n", strlen(PASSPHRASE) + 1, 0600,
	    path);
	data = fuzz_slurp("cert/cert-key.pem", &len);
	fuzz_put("cert-key.pem", data, len, 0600, path);
	/* the CA bundle: the certificate alone */
	if ((end = strstr(data, "-----END CERTIFICATE-----\n")) == NULL)
		abort();
	end += strlen("-----END CERTIFICATE-----\n");
	fuzz_put("ca.pem", data, (size_t)(end - data), 0644, path);
	free(data);
	data = fuzz_slurp("cert/cert-enckey.pem", &len);
	fuzz_put("cert-enckey.pem", data, len, 0600, path);
	free(data);
	data = fuzz_slurp("cert/bundle.p12", &len);
	fuzz_put("bundle.p12", data, len, 0600, path);
	free(data);
	for (i = 0; i < NFIXTURES; i++)
		snprintf(paths[i], PATH_MAX, "%s/%s", fuzz_dir,
		    fixtures[i].file);
	return 0;
}

/* The input with the fixture names replaced; a new buffer. */
static char *
expand(const uint8_t *data, size_t size, size_t *outlen)
{
	char *out = NULL;
	size_t pass, i, j, n = 0;

	for (pass = 0; pass < 2; pass++) {
		if (pass == 1 && (out = malloc(n + 1)) == NULL)
			abort();
		for (i = 0, n = 0; i < size; ) {
			for (j = 0; j < NFIXTURES; j++) {
				size_t k = strlen(fixtures[j].name);

				if (size - i >= k && memcmp(data + i,
				    fixtures[j].name, k) == 0)
					break;
			}
			if (j == NFIXTURES) {
				if (out != NULL)
					out[n] = (char)data[i];
				n++;
				i++;
				continue;
			}
			if (out != NULL)
				memcpy(out + n, paths[j], strlen(paths[j]));
			n += strlen(paths[j]);
			i += strlen(fixtures[j].name);
		}
	}
	out[n] = '\0';
	*outlen = n;
	return out;
}

static void
check_loaded(struct oa2_config *cfg)
{
	char *mailbox;
	size_t i;
	int r;

	fuzz_assert(cfg->naccounts > 0 && cfg->accounts != NULL);
	fuzz_assert(cfg->log_level >= OA2_LOG_ERROR &&
	    cfg->log_level <= OA2_LOG_DEBUG);
	for (i = 0; i < cfg->naccounts; i++) {
		struct oa2_account *a = &cfg->accounts[i];

		/* A broken account: its sentence, no credential, matched. */
		if (a->broken) {
			fuzz_assert(a->match != NULL && a->cache_key[0] == '\0' &&
			    a->client_secret == NULL && a->cert == NULL);
			fuzz_assert(a->load_err.code == OA2_ERR_CONFIG ||
			    a->load_err.code == OA2_ERR_CREDENTIAL);
			fuzz_check_sentence(&a->load_err, a->load_err.code);
			no_secret(a->load_err.msg);
			goto matched;
		}
		fuzz_assert(a->match != NULL && a->authority != NULL &&
		    a->kind != NULL && a->scope != NULL &&
		    a->token_url != NULL);
		/* a client's tenant and id, and only a client's */
		if (a->kind->flags & OA2_CRED_CLIENT_ID)
			fuzz_assert(a->client_id != NULL);
		else
			fuzz_assert((a->tenant != NULL &&
			    a->client_id != NULL) ==
			    ((a->kind->flags & OA2_CRED_CLIENT) != 0));
		/*
		 * a managed identity's endpoint may be local http://, its
		 * scheme in any case (RFC 3986 3.1; http.c agrees)
		 */
		if (a->kind == &oa2_cred_msi)
			fuzz_assert(a->data != NULL &&
			    (strncasecmp(a->token_url, "https://", 8) == 0 ||
			    strncasecmp(a->token_url, "http://", 7) == 0 ||
			    a->token_url[0] == '('));
		else
			fuzz_assert(strncmp(a->token_url, "https://", 8) == 0);
		fuzz_assert(strlen(a->cache_key) == 32 &&
		    strspn(a->cache_key, "0123456789abcdef") == 32);
		fuzz_assert(a->cache_dir == NULL || a->cache_dir[0] == '/');
		fuzz_assert(a->refresh_margin >= 0 &&
		    a->refresh_margin <= 86400);
		fuzz_assert(a->timeout >= 1 && a->timeout <= 300);
		fuzz_assert(a->assertion_lifetime >= 60 &&
		    a->assertion_lifetime <= 600);
		if (a->kind == &oa2_cred_secret)
			fuzz_assert(a->client_secret != NULL &&
			    a->cert == NULL);
		else if (a->kind == &oa2_cred_cert)
			fuzz_assert(a->cert != NULL && a->client_secret == NULL &&
			    (a->assertion_alg == OA2_ALG_PS256 ||
			    a->assertion_alg == OA2_ALG_RS256));
		else if (a->kind == &oa2_cred_federated)
			fuzz_assert(oa2_federated_path(a) != NULL &&
			    oa2_federated_path(a)[0] == '/' &&
			    a->client_secret == NULL && a->cert == NULL);
		/* the cloud's hosts (static strings) for test and tunnel */
		fuzz_assert(a->imap_host != NULL && a->smtp_host != NULL &&
		    a->pop_host != NULL);
		/* rollover: a next credential of the same kind, or its why */
		if (oa2_account_has_next(a))
			fuzz_assert(strlen(a->next_cache_key) == 32 &&
			    strcmp(a->next_cache_key, a->cache_key) != 0 &&
			    (a->kind == &oa2_cred_secret ?
			    a->next_client_secret != NULL && a->next_cert ==
			    NULL : a->next_cert != NULL &&
			    a->next_client_secret == NULL));
		else
			fuzz_assert(a->next_client_secret == NULL &&
			    a->next_cert == NULL);
		if (a->next_err.code != 0)
			no_secret(a->next_err.msg);
	matched:
		/*
		 * Its own match finds it: exactly, or through a mailbox
		 * with a blank local part (no exact match can hold one).
		 */
		if (strcmp(a->match, "*") == 0)
			r = asprintf(&mailbox, " ");
		else if (a->match[0] == '*')
			r = asprintf(&mailbox, " %s", a->match + 1);
		else
			r = asprintf(&mailbox, "%s", a->match);
		if (r == -1)
			abort();
		fuzz_assert(oa2_config_match(cfg, mailbox) == a);
		free(mailbox);
	}
	fuzz_assert(oa2_config_changed(cfg) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oa2_log lg = { log_sink, NULL, OA2_LOG_DEBUG };
	struct oa2_config *cfg;
	struct oa2_error err;
	char path[PATH_MAX], *text;
	size_t len;
	int r;

	/*
	 * libFuzzer learns strings from strstr: it may well put the
	 * fixture secrets into a key name, which an error then quotes.
	 */
	input_has_secret = memmem(data, size, SECRET, strlen(SECRET)) != NULL ||
	    memmem(data, size, PASSPHRASE, strlen(PASSPHRASE)) != NULL;
	text = expand(data, size, &len);
	fuzz_put("sasl-oauth2.conf", text, len, size % 2 ? 0644 : 0600,
	    path);
	free(text);
	memset(&err, 'x', sizeof(err));
	cfg = (struct oa2_config *)&err;	/* must be cleared */
	r = oa2_config_load(path, &lg, &cfg, &err);
	if (r == OA2_OK) {
		fuzz_assert(cfg != NULL && err.code == OA2_OK);
		check_loaded(cfg);
	} else {
		fuzz_assert(cfg == NULL);
		fuzz_assert(r < 0 && r >= OA2_ERR_INTERNAL);
		fuzz_check_sentence(&err, r);
		no_secret(err.msg);
	}
	oa2_config_free(&cfg);
	fuzz_assert(cfg == NULL);
	return 0;
}
