#!/bin/sh
# mbsync (isync) lists and syncs a Dovecot mailbox through the plugin,
# with AuthMechs XOAUTH2 and OAUTHBEARER.
set -eu
. "$(dirname "$0")/lib.sh"
need mbsync
testbed

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
finish
