#!/bin/sh
# Transient versus permanent: a permanent refusal of the token endpoint
# (a wrong secret) is asked once and then remembered for failure_backoff
# seconds in the cache file, so that the next processes fail at once
# with the same sentence; a new secret, a changed config file and
# `sasl-oauth2 cache clear` end it; it expires; failure_backoff = 0
# turns it off; transient refusals are never remembered.
set -eu
. "$(dirname "$0")/lib.sh"
testbed

# login NAME: saslclient as $USER1; its output in $T/NAME.out
login() {
	SASLCLIENT_DEBUG=1 saslclient -m XOAUTH2 -u "$USER1" > "$T/$1.out" 2>&1
}
refusals() { token_requests "error:7000215"; }
tool() {
	# shellcheck disable=SC2086
	timeout $((30 * SLOW)) $VALGRIND "$TOOL" "$@" </dev/null
}
remembered="(remembered; next attempt in"

printf 'not-the-secret\n' > "$T/etc/contoso.secret"
if login first; then fail "a wrong secret fails"; else pass "a wrong secret fails"; fi
check "with Entra's sentence" grep -q "AADSTS7000215 (the client secret is wrong" "$T/first.out"
check "after one token request" [ "$(refusals)" = 1 ]
check "the log says it is remembered" \
	grep -q "not asking the token endpoint again for account \*@contoso.com for 60 s" "$T/first.out"

login second || true
check "the next process fails at once with the same sentence" \
	grep -q "AADSTS7000215 (the client secret is wrong.*$remembered [0-9][0-9]* s)" "$T/second.out"
if imtest_ok "$USER1" XOAUTH2; then fail "imtest fails too"; else pass "imtest fails too"; fi
tool token "$USER1" > "$T/token.out" 2>&1 && st=0 || st=$?
check "sasl-oauth2 token fails with EX_NOPERM ($st)" [ "$st" = 77 ]
check "and the remembered sentence" grep -qF "$remembered" "$T/token.out"
check "none of them asked the endpoint" [ "$(refusals)" = 1 ]

tool cache list > "$T/list.out" 2>&1 || true
check "cache list shows the refusal" grep -qF "$remembered" "$T/list.out"
check "the cache file holds neither secret nor token" \
	sh -c "! grep -rqF -e not-the-secret -e '$SECRET' -e access_token '$T/cache'"

tool cache clear > "$T/clear.out" 2>&1
login cleared || true
check "cache clear ends the back-off: one more request" [ "$(refusals)" = 2 ]
check "and a fresh sentence" sh -c "! grep -qF '$remembered' '$T/cleared.out'"

login again || true
check "remembered again" grep -qF "$remembered" "$T/again.out"
touch "$CONF"
login touched || true
check "a changed config file ends the back-off" [ "$(refusals)" = 3 ]

printf '%s\n' "$SECRET" > "$T/etc/contoso.secret"
n=$(token_requests)
check "the right secret logs in at once (another cache file)" imtest_ok "$USER1" XOAUTH2
check "with one token request" [ "$(token_requests)" = $((n + 1)) ]

# A short back-off expires: 3 + 2 * SLACK s (tests/lib.sh; 7, more for
# slow builds: a second process must start and read it in time).
short=$((3 + 2 * SLACK))
printf 'not-the-secret\n' > "$T/etc/contoso.secret"
sed -i "s/^\ttimeout = \(.*\);\$/\ttimeout = \1;\n\tfailure_backoff = $short;/" "$CONF"
login short1 || true
login short2 || true
check "failure_backoff = $short: remembered" \
	grep -q "$remembered [0-9][0-9]* s)" "$T/short2.out"
check "(one request)" [ "$(refusals)" = 4 ]
sleep "$short"
login short3 || true
check "and asked again after $short s" [ "$(refusals)" = 5 ]

# failure_backoff = 0: every process asks.
sed -i "s/failure_backoff = $short;/failure_backoff = 0;/" "$CONF"
login off1 || true
login off2 || true
check "failure_backoff = 0: nothing remembered" [ "$(refusals)" = 7 ]
check "(and nothing said)" sh -c "! grep -qF '$remembered' '$T/off2.out'"
printf '%s\n' "$SECRET" > "$T/etc/contoso.secret"
sed -i '/failure_backoff/d' "$CONF"

# Transient refusals are never remembered: 503 with a Retry-After past
# the timeout fails at once, and the next process asks again.
rm -rf "$T/cache"
tokend_mode "503:60"
n=$(token_requests "transient:503")
login busy1 || true
login busy2 || true
check "a 503 fails" grep -q "(HTTP 503): temporarily_unavailable" "$T/busy2.out"
check "and is not remembered: two processes, two requests" \
	[ "$(token_requests "transient:503")" = $((n + 2)) ]
check "(nothing said)" sh -c "! grep -qF '$remembered' '$T/busy1.out' '$T/busy2.out'"
tokend_mode ""
check "the endpoint back: the next login succeeds" imtest_ok "$USER1" OAUTHBEARER

check "the secret appears in no output" \
	sh -c "! grep -rqF -- '$SECRET' '$T'/*.out '$T/cache' '$T/dovecot/log' '$T/tokend.log'"
finish
