#!/bin/sh
# A long-lived host: 1,000 authentications in one process keep memory
# and descriptors flat, for the warm path (token from memory) and for
# the cold path (every round the server refuses the token, the plugin
# drops it and the next round fetches and signs anew over HTTPS).
set -eu
. "$(dirname "$0")/lib.sh"
make_ca
start_tokend
LOG_LEVEL=error write_config "$(cert_account cert@contoso.com PS256)"
# the cold path drops every refused token: failure_backoff = 0 (with it,
# a token refused right after its fetch is kept: docs/cache.md)
sed -i 's/^\(\ttimeout = .*\)$/\1\n\tfailure_backoff = 0;/' "$CONF"
grep -q 'failure_backoff = 0;' "$CONF"
WARM=1000 COLD=$((200 / SLOW))
CHALLENGE=$(printf '{"status":"invalid_token","scope":"https://outlook.office.com/.default"}' | base64 -w0)

# stat FILE ROUND KEY: a figure from saslclient --stats.
stat() { sed -n "s/^stats: round=$2 .*$3=\([0-9-]*\).*/\1/p" "$1" | head -n 1; }

# flat NAME FILE FIRST LAST: descriptors equal, RSS grown by < 256 kB
# (RSS is not judged under ASan or valgrind, which keep freed memory).
flat() {
	f1=$(stat "$2" "$3" fds) f2=$(stat "$2" "$4" fds)
	r1=$(stat "$2" "$3" rss_kb) r2=$(stat "$2" "$4" rss_kb)
	echo "# $1: round $3: $r1 kB, $f1 fds; round $4: $r2 kB, $f2 fds"
	check "$1: as many descriptors after round $4 as after round $3" \
		test "${f1:-none}" = "$f2"
	if [ -z "$SAN_PRELOAD" ] && [ -z "$VALGRIND" ]; then
		check "$1: resident memory grew by less than 256 kB" \
			test $((${r2:-999999} - ${r1:-0})) -lt 256
	fi
}

if saslclient -u "$USER1" -n "$WARM" --stats > "$T/warm.out" 2> "$T/warm.err"; then
	pass "$WARM XOAUTH2 authentications in one process"
else
	fail "$WARM XOAUTH2 authentications in one process"; tail -n 5 "$T/warm.err"
fi
check "warm: one token request for all of them" [ "$(token_requests)" = 1 ]
flat warm "$T/warm.err" 10 "$WARM"

if saslclient -m OAUTHBEARER -u cert@contoso.com -n "$COLD" -c "$CHALLENGE" \
	--stats > "$T/cold.out" 2> "$T/cold.err"; then
	fail "cold: every round refused"
else
	check "cold: every round answered the challenge" \
		[ "$(grep -c '^answer: AQ==$' "$T/cold.out")" = "$COLD" ]
fi
check "cold: $COLD PS256-signed token requests" \
	[ "$(grep -c "client=$CERT_CLIENT result=ok credential=PS256" "$T/tokend.log")" = "$COLD" ]
flat cold "$T/cold.err" 10 "$COLD"
check "no sanitizer or valgrind report" \
	sh -c "! grep -q 'Sanitizer\|runtime error:\|definitely lost' '$T/warm.err' '$T/cold.err'"
finish
