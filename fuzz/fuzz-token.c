/*
 * libFuzzer target: the token endpoint's answer (oa2_token_parse). The
 * input is the HTTP body; each one is parsed as the answer to HTTP 200,
 * 400, 401, 404, 429 and 503, so the seeds are plain Entra bodies.
 *
 * Checked: a token only from HTTP 200, printable, of sane lifetime; no
 * token and a printable sentence (server text sanitised) on failure.
 */
#include "config.h"

#include "token.h"
#include "fuzz.h"

#define NOW		((time_t)1715678467)
#define YEAR		(366L * 86400)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 400, 401, 404, 429, 503 };
	const char *body = (const char *)data;	/* exactly size bytes */
	struct oa2_token tok;
	struct oa2_error err;
	size_t i;
	int r;

	for (i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		memset(&err, 'x', sizeof(err));
		r = oa2_token_parse(statuses[i], body, size, NOW, &tok, &err);
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
	/* A transfer that ended without a body. */
	r = oa2_token_parse(200, NULL, 0, NOW, &tok, &err);
	fuzz_assert(r == OA2_ERR_RESPONSE && tok.access_token == NULL);
	return 0;
}
