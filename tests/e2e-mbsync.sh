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

# The mbsync snippets of README.md and docs/clients.md, as a user copies
# them, work with this mbsync (isync 1.4 knows SSLType, not TLSType):
# only the host becomes the test bed's, and the test CA is added.
for doc in README.md docs/clients.md; do
	name=$(echo "$doc" | tr '/.' '--')
	sed -n '/^ *IMAPAccount work$/,/^ *```$/p' "$top_srcdir/$doc" | sed 's/^ *//; /^```$/d' |
		sed "s|^Host outlook.office365.com\$|Host 127.0.0.1|; /^Port /d; /^User /s/.*/User $USER1/" \
		> "$T/snippet-$name"
	mkdir -p "$T/local-$name"
	{ sed '/^IMAPStore/,$d; /^$/d' "$T/snippet-$name"
	  printf 'Port %s\nCertificateFile %s\n\nIMAPStore remote\nAccount work\n\n' "$IMAPS_PORT" "$T/ca.pem"
	  printf 'MaildirStore local\nPath %s/\nInbox %s/INBOX\n\n' "$T/local-$name" "$T/local-$name"
	  printf 'Channel inbox\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSyncState *\n'
	} > "$T/mbsyncrc-$name"
	check "$doc: its mbsync snippet has SSLType and AuthMechs" \
		sh -c "grep -q '^SSLType IMAPS' '$T/snippet-$name' && grep -q '^AuthMechs' '$T/snippet-$name'"
	# shellcheck disable=SC2086
	if timeout $((30 * SLOW)) $WRAP mbsync -c "$T/mbsyncrc-$name" -a > "$T/mbsync.out" 2>&1 </dev/null; then
		pass "$doc: its mbsync snippet syncs INBOX"
	else
		fail "$doc: its mbsync snippet syncs INBOX"; cat "$T/mbsync.out"; cat "$T/mbsyncrc-$name"
	fi
done
finish
