/*
 * libFuzzer target: a managed-identity endpoint's answer
 * (oa2_msi_parse), as the answer of each of the three protocols, for a
 * system-assigned and a user-assigned identity, to HTTP 200, 400, 401,
 * 404, 429 and 503; and the same bytes as the Arc agent's
 * WWW-Authenticate challenge (oa2_msi_arc_key) against a scratch key
 * directory holding one key.
 *
 * Checked: a token only from HTTP 200, printable, of sane lifetime; no
 * token and a printable sentence (server text sanitised) on failure; a
 * key only from a realm naming a file directly in the key directory,
 * and then that file's key.
 */
#include "config.h"

#include "msi.h"
#include "secret.h"
#include "fuzz.h"

#define NOW		((time_t)1715678467)
#define YEAR		(366L * 86400)
#define KEY		"arc-fuzz-key"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 400, 401, 404, 429, 503 };
	static const int protos[] = { OA2_MSI_IMDS, OA2_MSI_APP_SERVICE,
	    OA2_MSI_ARC };
	static const char *const ids[] = { NULL,
	    "6f1c0a3e-0000-4000-8000-00000000a002" };
	static char keydir[PATH_MAX];
	const char *body = (const char *)data;	/* exactly size bytes */
	char path[PATH_MAX], *www, *key = NULL;
	struct oa2_token tok;
	struct oa2_error err;
	size_t i, j, k;
	int r;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
	for (j = 0; j < sizeof(protos) / sizeof(protos[0]); j++)
	for (k = 0; k < 2; k++) {
		memset(&err, 'x', sizeof(err));
		r = oa2_msi_parse(protos[j], ids[k], statuses[i], body, size,
		    NOW, &tok, &err);
		if (r == OA2_OK) {
			fuzz_assert(statuses[i] == 200);
			fuzz_assert(tok.access_token != NULL);
			fuzz_assert(tok.access_token[0] != '\0');
			fuzz_assert(strpbrk(tok.access_token, " \t\r\n") == NULL);
			fuzz_check_printable(tok.access_token);
			fuzz_assert(tok.expires_at > NOW);
			fuzz_assert(tok.expires_at <= NOW + YEAR);
		} else {
			fuzz_assert(r == OA2_ERR_RESPONSE ||
			    r == OA2_ERR_DENIED || r == OA2_ERR_TRANSIENT ||
			    r == OA2_ERR_NOMEM);
			fuzz_assert(tok.access_token == NULL);
			fuzz_check_sentence(&err, r);
			fuzz_check_printable(err.msg);
		}
		oa2_token_clear(&tok);
	}

	/* the same bytes as the Arc challenge */
	if (keydir[0] == '\0') {
		fuzz_mkdir();
		snprintf(keydir, sizeof(keydir), "%s/tokens", fuzz_dir);
		if (mkdir(keydir, 0700) == -1) {
			perror(keydir);
			abort();
		}
		fuzz_put("tokens/k.key", KEY "\n", sizeof(KEY), 0600, path);
	}
	if ((www = malloc(size + 1)) == NULL)
		return 0;
	memcpy(www, data, size);
	www[size] = '\0';
	memset(&err, 'x', sizeof(err));
	r = oa2_msi_arc_key(keydir, www, &key, &err);
	if (r == OA2_OK) {
		fuzz_assert(key != NULL && strcmp(key, KEY) == 0);
		fuzz_assert(strstr(www, "/tokens/") != NULL);
	} else {
		fuzz_assert(key == NULL);
		fuzz_assert(r == OA2_ERR_RESPONSE || r == OA2_ERR_CREDENTIAL ||
		    r == OA2_ERR_NOMEM);
		fuzz_check_sentence(&err, r);
		fuzz_check_printable(err.msg);
	}
	oa2_freezero_str(&key);
	free(www);
	return 0;
}
