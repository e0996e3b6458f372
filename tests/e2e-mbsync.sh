#!/bin/sh
# mbsync (isync) lists and syncs a Dovecot mailbox through the plugin,
# with AuthMechs XOAUTH2 and OAUTHBEARER, for a client-secret account and
# for certificate accounts signing PS256 and RS256 client assertions.
set -eu
. "$(dirname "$0")/lib.sh"
need mbsync
testbed "$(cert_account ps@contoso.com PS256)$(cert_account rs@contoso.com RS256)"

for mech in XOAUTH2 OAUTHBEARER; do
	if mbsync_run "$mech"; then
		pass "mbsync $mech syncs INBOX"
	else
		fail "mbsync $mech syncs INBOX"; cat "$T/mbsync.out"
	fi
	check "mbsync $mech created the local INBOX" [ -d "$T/local-$mech/INBOX/cur" ]
	check "Dovecot logged the $mech login" \
		grep -q "Login: user=<$USER1>, method=$mech" "$T/dovecot/log"
done
check "both runs shared one token request" [ "$(token_requests)" = 1 ]

# Certificate accounts: each algorithm, each mechanism; one token request
# per certificate account, signed by the plugin and verified by tokend.
for acct in ps:PS256 rs:RS256; do
	u=${acct%%:*}@contoso.com alg=${acct#*:}
	before=$(grep -c "client=$CERT_CLIENT result=ok credential=$alg" "$T/tokend.log" || true)
	for mech in XOAUTH2 OAUTHBEARER; do
		if mbsync_run "$mech" "$u"; then
			pass "mbsync $mech syncs INBOX with a $alg client assertion"
		else
			fail "mbsync $mech syncs INBOX with a $alg client assertion"
			cat "$T/mbsync.out"; tail -n 3 "$T/tokend.log"
		fi
		check "Dovecot logged $u's $mech login" \
			grep -q "Login: user=<$u>, method=$mech" "$T/dovecot/log"
	done
	check "tokend accepted one $alg assertion for both runs" \
		[ "$(grep -c "client=$CERT_CLIENT result=ok credential=$alg" "$T/tokend.log")" = $((before + 1)) ]
	rm -rf "$T/cache"	# so that the next algorithm must sign its own
done
check "no assertion was refused" sh -c "! grep -q 'error:' '$T/tokend.log'"
finish
