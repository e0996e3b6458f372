#!/bin/sh
# A mail server that refuses every token (issue 10, item 7). A token the
# server refuses though it came fresh from the endpoint is kept for
# failure_backoff seconds after its fetch (a new one would be refused
# alike): 50 logins make one token request (the old code made 50), each
# saying for how long no new token is asked for. An older token is
# dropped and the next login asks, as before; `sasl-oauth2 cache clear`
# ends it; failure_backoff = 0 turns it off.
set -eu
. "$(dirname "$0")/lib.sh"
testbed
# An hour of back-off (the most there is) until the part that lets it
# expire: what is counted must not depend on how long 50 logins take
# (minutes under valgrind on a busy machine).
sed -i "s/^\ttimeout = \(.*\);\$/\ttimeout = \1;\n\tfailure_backoff = 3600;/" "$CONF"
# Dovecot's XOAUTH2 error challenge, fed by saslclient itself
CHAL=eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJtYWlsIn0=
kept="though it came fresh from the token endpoint: a new one would be refused alike, so none is asked for in the next [0-9]* s (failure_backoff)"
dropped="the cached token was dropped and the next attempt fetches a new one"
refused() { # refused NAME [COUNT]: saslclient logins, each refused
	SASLCLIENT_DEBUG=1 saslclient -m XOAUTH2 -u "$USER1" -c "$CHAL" \
		-n "${2:-1}" > "$T/$1.out" 2>&1 || true
}
tool() {
	# shellcheck disable=SC2086
	timeout $((30 * SLOW)) $VALGRIND "$TOOL" "$@" </dev/null
}

refused fifty 50
n=$(token_requests)
check "50 logins refused by the server: one token request ($n; the old code made 50)" [ "$n" = 1 ]
check "all 50 were refused" [ "$(grep -c '^answer: $' "$T/fifty.out")" = 50 ]
check "each says the token came fresh and for how long none is asked for" \
	[ "$(grep -c "$kept" "$T/fifty.out")" -ge 50 ]
check "the token stays in the cache file" sh -c "ls '$T'/cache/*.token >/dev/null"
i=0
while [ $i -lt 5 ]; do refused "proc$i"; i=$((i + 1)); done
check "5 more processes, refused too: still one request" [ "$(token_requests)" = 1 ]

# A real server refusing every token: Dovecot and tokens it cannot verify
rm -rf "$T/cache"
tokend_mode wrong_key
n=$(token_requests wrong_key)
[ "$n" -gt 0 ] || n=$(token_requests)
for i in 1 2 3; do
	if imtest_ok "$USER1" XOAUTH2 "$T/imtest.$i"; then fail "imtest $i: the token is refused"; else
		pass "imtest $i: Dovecot refuses the token"; fi
done
check "3 imtest logins refused by Dovecot: one token request" [ "$(token_requests)" = $((n + 1)) ]

# cache clear ends it: the next login asks, and the endpoint is fixed
tokend_mode ""
tool cache clear > "$T/clear.out" 2>&1
check "after cache clear the next login asks for a new token and succeeds" imtest_ok "$USER1" OAUTHBEARER
check "(one more request)" [ "$(token_requests)" = $((n + 2)) ]

# failure_backoff = 2 + SLACK s (tests/lib.sh; 4, more for slow builds,
# which must fetch and be refused inside it): a token older than that
# is dropped when refused, and the next login asks
short=$((2 + SLACK))
sed -i "s/failure_backoff = 3600;/failure_backoff = $short;/" "$CONF"
rm -rf "$T/cache"
n=$(token_requests)
refused young
check "failure_backoff = $short: a fresh token refused is kept" grep -q "$kept" "$T/young.out"
sleep $((short + 1))
refused old
check "older than failure_backoff, a refused token is dropped" grep -q "$dropped" "$T/old.out"
refused next
check "and the next login asks again ($(token_requests) requests)" [ "$(token_requests)" = $((n + 2)) ]

# failure_backoff = 0: every refused token is dropped
sed -i "s/failure_backoff = $short;/failure_backoff = 0;/" "$CONF"
rm -rf "$T/cache"
n=$(token_requests)
refused off 3
check "failure_backoff = 0: 3 logins refused, 3 requests" [ "$(token_requests)" = $((n + 3)) ]
check "(each token dropped)" [ "$(grep -c "$dropped" "$T/off.out")" -ge 3 ]
finish
