#!/bin/sh
# imtest (Cyrus, no callbacks: SASL_INTERACT prompts) logs in to a real
# Dovecot through the freshly built plugin, with XOAUTH2 and OAUTHBEARER,
# with a client secret and with PS256/RS256 certificate assertions; the
# token cache serves later processes; saslclient (real callbacks) sends
# the same responses.
set -eu
. "$(dirname "$0")/lib.sh"
# two certificate accounts (exact matches win over *@contoso.com)
testbed "$(cert_account ps@contoso.com PS256)$(cert_account rs@contoso.com RS256)"

pluginviewer > "$T/viewer.out" || true
check "saslpluginviewer lists XOAUTH2 and OAUTHBEARER" \
	sh -c "grep -q 'Plugin \"sasl-oauth2\"' '$T/viewer.out' &&
		grep -q 'mechanism: XOAUTH2' '$T/viewer.out' &&
		grep -q 'mechanism: OAUTHBEARER' '$T/viewer.out'"

if imtest_ok "$USER1" XOAUTH2; then pass "imtest XOAUTH2 login"; else
	fail "imtest XOAUTH2 login"; cat "$T/imtest.out"; fi
check "one token request for the first login" [ "$(token_requests)" = 1 ]
check "the disk cache holds one private file" \
	sh -c "[ \$(ls '$T/cache' | grep -c '\.token\$') = 1 ] &&
		[ \$(stat -c %a '$T/cache'/*.token) = 600 ] &&
		[ \$(stat -c %a '$T/cache') = 700 ]"
check "laid out as docs/cache.md says: a JSON line, then the token" \
	cache_whole "$T/cache"

if imtest_ok "$USER1" OAUTHBEARER; then pass "imtest OAUTHBEARER login"; else
	fail "imtest OAUTHBEARER login"; cat "$T/imtest.out"; fi
check "a second process reuses the cached token" [ "$(token_requests)" = 1 ]
check "Dovecot saw the OAUTHBEARER login for the mailbox" \
	grep -q "Login: user=<$USER1>, method=OAUTHBEARER" "$T/dovecot/log"

if imtest_ok "Other.User@Contoso.com" XOAUTH2; then
	pass "another mailbox of the domain, same cached token"
else fail "another mailbox of the domain"; cat "$T/imtest.out"; fi
check "still one token request" [ "$(token_requests)" = 1 ]

# The real-callback path (SASL_CB_USER/AUTHNAME instead of prompts)
# sends the same kind of initial response, from the same cached token.
decode() { sed -n "s/^initial: //p" "$1" | base64 -d | od -An -c | tr -s ' \n' ' '; }
if saslclient -p -m XOAUTH2 -u "$USER1" > "$T/sc.out" 2>&1; then
	pass "saslclient (callbacks) XOAUTH2"; else
	fail "saslclient (callbacks) XOAUTH2"; cat "$T/sc.out"; fi
ir=$(sed -n 's/^initial: //p' "$T/sc.out" | base64 -d | tr '\001' '|')
case $ir in
"user=$USER1|auth=Bearer "*.*.*"||") pass "XOAUTH2 response: user=M^Aauth=Bearer JWT^A^A" ;;
*) fail "XOAUTH2 response: user=M^Aauth=Bearer JWT^A^A"; decode "$T/sc.out" ;;
esac
tok=${ir#*Bearer }; tok=${tok%||}
if saslclient -p -m OAUTHBEARER -u "$USER1" -H 127.0.0.1 -P "$IMAPS_PORT" > "$T/sc.out" 2>&1; then
	pass "saslclient (callbacks) OAUTHBEARER"; else
	fail "saslclient (callbacks) OAUTHBEARER"; cat "$T/sc.out"; fi
ir=$(sed -n 's/^initial: //p' "$T/sc.out" | base64 -d | tr '\001' '|')
check "OAUTHBEARER response: n,a=M,^Ahost=H^Aport=P^Aauth=Bearer (same token)^A^A" \
	[ "$ir" = "n,a=$USER1,|host=127.0.0.1|port=$IMAPS_PORT|auth=Bearer $tok||" ]
if saslclient -m XOAUTH2 -u "$USER1" -z "$USER1" -n 20 > "$T/sc.out" 2>&1; then
	pass "20 authentications in one process"; else
	fail "20 authentications in one process"; cat "$T/sc.out"; fi
check "still one token request" [ "$(token_requests)" = 1 ]

# The token the plugin handed out is one Dovecot accepts from another
# client too (curl's own XOAUTH2).
if command -v curl >/dev/null 2>&1; then
	check "Dovecot accepts the plugin's token from curl" \
		curl -sS --max-time 20 --cacert "$T/ca.pem" --user "$USER1" \
		--login-options AUTH=XOAUTH2 --oauth2-bearer "$tok" \
		-o "$T/curl.out" "imaps://127.0.0.1:$IMAPS_PORT/"
fi

# Certificate credentials: the plugin signs its own client assertion,
# which tokend verifies (thumbprint, signature, aud, iss/sub, time, jti).
for acct in ps:PS256 rs:RS256; do
	u=${acct%%:*}@contoso.com alg=${acct#*:}
	before=$(token_requests)
	rm -rf "$T/cache"
	if imtest_ok "$u" XOAUTH2; then pass "imtest login with a $alg client assertion"; else
		fail "imtest login with a $alg client assertion"; cat "$T/imtest.out"
		tail -n 3 "$T/tokend.log"; fi
	check "one token request for the certificate's app" [ "$(token_requests)" = $((before + 1)) ]
done
check "tokend verified a PS256 and an RS256 assertion" sh -c "grep -q 'client=$CERT_CLIENT result=ok credential=PS256' '$T/tokend.log' && grep -q 'client=$CERT_CLIENT result=ok credential=RS256' '$T/tokend.log'"
check "no assertion was refused" sh -c "! grep -q 'bad-assertion' '$T/tokend.log'"

check "the secret appears in no output" \
	sh -c "! grep -rqF -- '$SECRET' '$T/imtest.out' '$T/sc.out' '$T/dovecot/log' '$T/tokend.log' '$T/cache'"
finish
