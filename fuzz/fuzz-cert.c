/*
 * libFuzzer target: the certificate loaders (oa2_cert_load for PEM and
 * PKCS#12, oa2_cert_file_thumbprints for PEM or DER). The input is
 * written to a private file (0600) in the scratch directory and loaded
 * as each kind of credential:
 *
 *   thumbprints of the file (the tool's `sasl-oauth2 thumbprint`)
 *   certificate = private_key = the file, without and with a passphrase
 *   pkcs12 = the file, without and with a passphrase
 *   service_account_file = the file (a Google service account key,
 *	JSON), and an assertion signed with what it loaded
 *
 * The passphrase is the one the committed encrypted seeds use.
 *
 * Checked: thumbprints of the right length and alphabet, and the same
 * from both loaders for a PEM file; a loaded credential is complete
 * and currently valid; on failure a printable sentence and no
 * credential; the passphrase never reaches a sentence or a log line.
 */
#include "config.h"

#include <time.h>

#include <jansson.h>

#include "jwt.h"
#include "secret.h"
#include "fuzz.h"

#define PASSPHRASE	"fuzz-passphrase-7c1e"

static char input[PATH_MAX], passfile[PATH_MAX];

static void
log_sink(void *ctx, int level, const char *msg)
{
	fuzz_assert(strstr(msg, PASSPHRASE) == NULL);
}

static int
b64url_of(const char *s, size_t len)
{
	return strlen(s) == len && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	    "abcdefghijklmnopqrstuvwxyz0123456789-_") == len;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_put("key.pass", PASSPHRASE "\n", strlen(PASSPHRASE) + 1, 0600,
	    passfile);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct oa2_log lg = { log_sink, NULL, OA2_LOG_DEBUG };
	struct oa2_cert_source srcs[4];
	struct oa2_cert *c;
	struct oa2_gsa_key *gk;
	struct oa2_error err;
	char *jwt = NULL;
	const char *pk;
	json_t *root;
	char sha1[41], x5t[28], x5t256[44];
	time_t now;
	size_t i;
	int r, thumbs;

	fuzz_put("input", data, size, 0600, input);

	r = oa2_cert_file_thumbprints(input, sha1, x5t, x5t256, &err);
	if ((thumbs = r == OA2_OK)) {
		fuzz_assert(strlen(sha1) == 40 &&
		    strspn(sha1, "0123456789ABCDEF") == 40);
		fuzz_assert(b64url_of(x5t, 27));
		fuzz_assert(b64url_of(x5t256, 43));
	} else {
		fuzz_check_sentence(&err, r);
		fuzz_check_printable(err.msg);
	}

	memset(srcs, 0, sizeof(srcs));
	srcs[0].certificate = srcs[0].private_key = input;
	srcs[1] = srcs[0];
	srcs[1].passphrase_file = passfile;
	srcs[2].pkcs12 = input;
	srcs[3] = srcs[2];
	srcs[3].pkcs12_passphrase_file = passfile;
	for (i = 0; i < 4; i++) {
		memset(&err, 'x', sizeof(err));
		c = (struct oa2_cert *)&err;	/* must be cleared */
		r = oa2_cert_load(&srcs[i], &lg, &c, &err);
		if (r != OA2_OK) {
			fuzz_assert(c == NULL);
			fuzz_assert(r == OA2_ERR_CREDENTIAL ||
			    r == OA2_ERR_NOMEM || r == OA2_ERR_INTERNAL);
			fuzz_check_sentence(&err, r);
			fuzz_check_printable(err.msg);
			fuzz_assert(strstr(err.msg, PASSPHRASE) == NULL);
			continue;
		}
		now = time(NULL);
		fuzz_assert(c != NULL);
		fuzz_assert(oa2_cert_not_after(c) > now);
		fuzz_assert(strlen(oa2_cert_sha1_hex(c)) == 40);
		fuzz_assert(b64url_of(oa2_cert_x5t(c), 27));
		fuzz_assert(b64url_of(oa2_cert_x5t_s256(c), 43));
		fuzz_assert(memchr(oa2_cert_subject(c), '\0', 256) != NULL);
		if (thumbs && srcs[i].pkcs12 == NULL)
			fuzz_assert(strcmp(oa2_cert_sha1_hex(c), sha1) == 0 &&
			    strcmp(oa2_cert_x5t(c), x5t) == 0 &&
			    strcmp(oa2_cert_x5t_s256(c), x5t256) == 0);
		oa2_cert_free(&c);
		fuzz_assert(c == NULL);
	}

	memset(&err, 'x', sizeof(err));
	gk = (struct oa2_gsa_key *)&err;	/* must be cleared */
	r = oa2_gsa_key_load(input, &gk, &err);
	if (r != OA2_OK) {
		fuzz_assert(gk == NULL);
		fuzz_assert(r == OA2_ERR_CREDENTIAL || r == OA2_ERR_NOMEM);
		fuzz_check_sentence(&err, r);
		fuzz_check_printable(err.msg);
		/* the key itself (what the file's private_key holds) never */
		root = json_loadb((const char *)data, size, 0, NULL);
		pk = json_string_value(json_object_get(root, "private_key"));
		fuzz_assert(pk == NULL || strlen(pk) < 16 ||
		    strstr(err.msg, pk) == NULL);
		json_decref(root);
	} else {
		fuzz_assert(strchr(oa2_gsa_key_email(gk), '@') != NULL);
		fuzz_assert(strncmp(oa2_gsa_key_token_uri(gk), "https://",
		    8) == 0);
		fuzz_assert(*oa2_gsa_key_id(gk) != '\0' &&
		    *oa2_gsa_key_client_id(gk) != '\0');
		r = oa2_jwt_google_assertion(gk, "fuzz@example.org",
		    "https://mail.google.com/", time(NULL), 0, &jwt, &err);
		fuzz_assert(r == OA2_OK && jwt != NULL &&
		    strchr(strchr(jwt, '.') + 1, '.') != NULL);
		oa2_freezero_str(&jwt);
		oa2_gsa_key_free(&gk);
		fuzz_assert(gk == NULL);
	}
	return 0;
}
