/* XOAUTH2 and OAUTHBEARER responses against the published vectors. */
#include "config.h"

#include <openssl/evp.h>

#include "secret.h"
#include "tap.h"
#include "wire.h"

static char *
b64(const char *s, size_t len)
{
	static char buf[1024];

	EVP_EncodeBlock((unsigned char *)buf, (const unsigned char *)s,
	    (int)len);
	return buf;
}

int
main(void)
{
	static const struct {
		const char *in, *out;
	} b64cases[] = {
		{ "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" },
		{ "\xfb\xff", "-_8" }, { "\xfb\xff\xbf", "-_-_" },
	};
	static const struct {
		const char *json, *want;
	} challenges[] = {
		{ "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":\"mail\"}",
		  "status 401, scope mail" },
		{ "{\"status\":\"invalid_token\"}", "status invalid_token" },
		{ "{\"status\":\"400\",\"scope\":\"a\\u0001b\"}",
		  "status 400, scope a?b" },
		{ "not json\r\n", "an unparsable challenge \"not json??\"" },
		{ "[]", "an unparsable challenge \"[]\"" },
	};
	char *out, *s;
	unsigned char *dec;
	size_t len, i;
	char buf[256];

	/* DESIGN.md: the XOAUTH2 vector. */
	ok(oa2_xoauth2_response("test@contoso.onmicrosoft.com",
	    "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA", &out, &len) == 0,
	    "xoauth2 builds");
	is_str(b64(out, len), "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tA"
	    "WF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJD"
	    "M0VvQUEBAQ==", "xoauth2 matches the published vector");
	ok(len == strlen(out), "xoauth2 length excludes the NUL");
	oa2_freezero(out, len);

	/* RFC 7628 section 4.1. */
	ok(oa2_oauthbearer_response("user@example.com", "server.example.com",
	    "143", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", &out,
	    &len) == 0, "oauthbearer builds");
	ok(len == strlen(out) && memcmp(out, "n,a=user@example.com,\001host="
	    "server.example.com\001port=143\001auth=Bearer vF9dft4qmTc2Nvb3R"
	    "lckBhbHRhdmlzdGEuY29tCg==\001\001", len) == 0,
	    "oauthbearer matches RFC 7628 4.1");
	oa2_freezero(out, len);

	ok(oa2_oauthbearer_response("a=b,c@x", NULL, "", "T", &out, &len) == 0,
	    "oauthbearer without host and port");
	is_str(out, "n,a=a=3Db=2Cc@x,\001auth=Bearer T\001\001",
	    "authzid escaped, host and port left out");
	oa2_freezero(out, len);

	/*
	 * Issue 16: the same responses from a token given by its length,
	 * as the cache stores it (here followed by bytes that must not be
	 * sent), byte for byte what the NUL-terminated builders make.
	 */
	{
		static const struct {
			const char *user, *host, *port;
		} v[] = {
			{ "user@example.com", "server.example.com", "143" },
			{ "a=b,c@x", NULL, "" },
			{ "=,=,", "h", NULL },
			{ "u@x", "", "587" },
			{ "u@x", "imap.x", "" },
		};
		const char *tok = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==";
		char raw[128], *o2;
		size_t l2, tl = strlen(tok);
		int same = 1;

		snprintf(raw, sizeof(raw), "%sNOT-SENT", tok);
		for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
			if (oa2_oauthbearer_response(v[i].user, v[i].host,
			    v[i].port, tok, &out, &len) != 0 ||
			    oa2_oauthbearer_response_len(v[i].user, v[i].host,
			    v[i].port, raw, tl, &o2, &l2) != 0 || len != l2 ||
			    memcmp(out, o2, len + 1) != 0 ||
			    memcmp(o2 + l2 - 2 - tl, tok, tl) != 0)
				same = 0;
			oa2_freezero(out, len);
			oa2_freezero(o2, l2);
			if (oa2_xoauth2_response(v[i].user, tok, &out,
			    &len) != 0 || oa2_xoauth2_response_len(v[i].user,
			    raw, tl, &o2, &l2) != 0 || len != l2 ||
			    memcmp(out, o2, len + 1) != 0 ||
			    memcmp(o2 + l2 - 2 - tl, tok, tl) != 0)
				same = 0;
			oa2_freezero(out, len);
			oa2_freezero(o2, l2);
		}
		ok(same, "responses from a token with a stored length: the "
		    "same bytes, the token last before \\1\\1");
		out = (char *)1;
		ok(oa2_xoauth2_response_len("v@x\001auth=Bearer A", raw, tl,
		    &out, &len) == OA2_ERR_CONFIG && out == NULL &&
		    oa2_oauthbearer_response_len("v@x", "h\001", "1", raw,
		    tl, &out, &len) == OA2_ERR_CONFIG && out == NULL,
		    "stored length: the other fields are still checked");
		is_str((oa2_oauthbearer_response_len("a=b,c@x", NULL, NULL,
		    raw, 3, &out, &len), out),
		    "n,a=a=3Db=2Cc@x,\001auth=Bearer vF9\001\001",
		    "stored length: only toklen bytes of the token");
		oa2_freezero(out, len);
	}

	/* Control characters (issue 10, item 3): refused, never sent. */
	{
		static const struct {
			const char *user, *host, *port, *token;
		} bad[] = {
			{ "v@contoso.com\001auth=Bearer A\001\001", "h", "143", "T" },
			{ "v@contoso.com", "h\001auth=Bearer A", "143", "T" },
			{ "v@contoso.com", "h", "143\001auth=Bearer A", "T" },
			{ "v@contoso.com\r\n", "h", "143", "T" },
			{ "v@contoso.com\177", "h", "143", "T" },
			{ "v@contoso.com", "h", "143", "T\001" },
		};
		struct oa2_error err;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			out = (char *)1;
			ok(oa2_oauthbearer_response(bad[i].user, bad[i].host,
			    bad[i].port, bad[i].token, &out, &len) ==
			    OA2_ERR_CONFIG && out == NULL,
			    "oauthbearer refuses a control character");
		}
		for (i = 0; i < 6; i++) {
			if (i == 1 || i == 2)
				continue;
			out = (char *)1;
			ok(oa2_xoauth2_response(bad[i].user, bad[i].token, &out,
			    &len) == OA2_ERR_CONFIG && out == NULL,
			    "xoauth2 refuses a control character");
		}
		ok(oa2_wire_check("mailbox", "v@contoso.com\001x", &err) ==
		    OA2_ERR_CONFIG, "wire_check: \\001 refused");
		is_str(err.msg, "the mailbox \"v@contoso.com?x\" holds a "
		    "control character (0x01 at offset 13): refused, since it "
		    "could add fields to the SASL response",
		    "wire_check: the sentence, value sanitised");
		ok(oa2_wire_check("mailbox", "j\303\274rgen@example.com",
		    &err) == OA2_OK, "wire_check: UTF-8 is fine");
		ok(oa2_wire_check("port", NULL, &err) == OA2_OK,
		    "wire_check: no value is fine");
	}

	for (i = 0; i < sizeof(challenges) / sizeof(challenges[0]); i++) {
		oa2_challenge_describe(challenges[i].json,
		    strlen(challenges[i].json), buf, sizeof(buf));
		is_str(buf, challenges[i].want, "challenge described");
	}
	oa2_challenge_describe("x", 1, buf, 8);
	ok(strlen(buf) < 8, "challenge description fits a small buffer");

	for (i = 0; i < sizeof(b64cases) / sizeof(b64cases[0]); i++) {
		s = oa2_b64url_encode(b64cases[i].in, strlen(b64cases[i].in));
		is_str(s, b64cases[i].out, "b64url encodes");
		ok(oa2_b64url_decode(s, strlen(s), &dec, &len) == 0 &&
		    len == strlen(b64cases[i].in) &&
		    memcmp(dec, b64cases[i].in, len) == 0,
		    "b64url round trip");
		free(dec);
		free(s);
	}
	ok(oa2_b64url_decode("Zg==", 4, &dec, &len) == 0 && len == 1 &&
	    dec[0] == 'f', "b64url accepts padding");
	free(dec);
	ok(oa2_b64url_decode("Zm+v", 4, &dec, &len) == OA2_ERR_RESPONSE,
	    "b64url refuses '+'");
	ok(oa2_b64url_decode("Z", 1, &dec, &len) == OA2_ERR_RESPONSE,
	    "b64url refuses an impossible length");
	ok(oa2_b64url_decode("Zm\0v", 4, &dec, &len) == OA2_ERR_RESPONSE,
	    "b64url refuses NUL");
	return done_testing();
}
