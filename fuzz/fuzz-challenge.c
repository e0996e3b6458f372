/*
 * libFuzzer target: the server's error challenge (oa2_challenge_describe)
 * and base64url (oa2_b64url_decode/encode). The input is what the SASL
 * library hands the plugin (the decoded challenge, JSON); it is also
 * decoded as base64url, as a server that encodes twice would send it,
 * and that is described too.
 *
 * Checked: the description is NUL-terminated within any buffer size,
 * printable, and nothing is written to a zero-sized buffer; base64url
 * decoding never produces more than 3/4 of its input, and encoding
 * round-trips every input exactly.
 */
#include "config.h"

#include "wire.h"
#include "fuzz.h"

static void
describe(const char *in, size_t len)
{
	static const size_t sizes[] = { 256, 64, 8, 1 };
	char buf[256 + 1];
	size_t i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		oa2_challenge_describe(in, len, buf, sizes[i]);
		fuzz_assert(memchr(buf, '\0', sizes[i]) != NULL);
		fuzz_assert(buf[sizes[i]] == 'x');
		fuzz_check_printable(buf);
	}
	buf[0] = 'x';
	oa2_challenge_describe(in, len, buf, 0);
	fuzz_assert(buf[0] == 'x');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *dec = NULL;
	size_t declen, n;
	char *enc;
	int r;

	describe((const char *)data, size);

	r = oa2_b64url_decode((const char *)data, size, &dec, &declen);
	if (r == OA2_OK) {
		fuzz_assert(dec != NULL && dec[declen] == '\0');
		fuzz_assert(declen <= size / 4 * 3 + 2);
		describe((const char *)dec, declen);
		free(dec);
	} else {
		fuzz_assert(r == OA2_ERR_RESPONSE || r == OA2_ERR_NOMEM);
		fuzz_assert(dec == NULL && declen == 0);
	}

	if ((enc = oa2_b64url_encode(data, size)) == NULL)
		return 0;
	n = strlen(enc);
	fuzz_assert(n == size / 3 * 4 + (size % 3 == 0 ? 0 : size % 3 + 1));
	fuzz_assert(strspn(enc, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
	    "vwxyz0123456789-_") == n);
	r = oa2_b64url_decode(enc, n, &dec, &declen);
	fuzz_assert(r == OA2_OK);
	fuzz_assert(declen == size && memcmp(dec, data, size) == 0);
	free(dec);
	free(enc);
	return 0;
}
