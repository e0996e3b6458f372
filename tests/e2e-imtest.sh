#!/bin/sh
# imtest (Cyrus, no callbacks: SASL_INTERACT prompts) logs in to a real
# Dovecot through the freshly built plugin, with XOAUTH2 and OAUTHBEARER.
set -eu
. "$(dirname "$0")/lib.sh"
testbed

check "saslpluginviewer lists XOAUTH2 and OAUTHBEARER" \
	sh -c 'saslpluginviewer -c 2>&1 | grep -q "Plugin \"sasl-oauth2\"" &&
		saslpluginviewer -c 2>&1 | grep -q "mechanism: XOAUTH2" &&
		saslpluginviewer -c 2>&1 | grep -q "mechanism: OAUTHBEARER"'

if imtest_ok "$USER1" XOAUTH2; then pass "imtest XOAUTH2 login"; else
	fail "imtest XOAUTH2 login"; cat "$T/imtest.out"; fi
check "one token request for the first login" [ "$(token_requests)" = 1 ]
check "the disk cache holds one private file" \
	sh -c "[ \$(ls '$T/cache' | grep -c '\.json\$') = 1 ] &&
		[ \$(stat -c %a '$T/cache'/*.json) = 600 ] &&
		[ \$(stat -c %a '$T/cache') = 700 ]"

if imtest_ok "$USER1" OAUTHBEARER; then pass "imtest OAUTHBEARER login"; else
	fail "imtest OAUTHBEARER login"; cat "$T/imtest.out"; fi
check "a second process reuses the cached token" [ "$(token_requests)" = 1 ]
check "Dovecot saw the OAUTHBEARER login for the mailbox" \
	grep -q "Login: user=<$USER1>, method=OAUTHBEARER" "$T/dovecot/log"

if imtest_ok "Other.User@Contoso.com" XOAUTH2; then
	pass "another mailbox of the domain, same cached token"
else fail "another mailbox of the domain"; cat "$T/imtest.out"; fi
check "still one token request" [ "$(token_requests)" = 1 ]

check "the secret appears in no output" \
	sh -c "! grep -rqF -- '$SECRET' '$T/imtest.out' '$T/dovecot/log' '$T/tokend.log' '$T/cache'"
finish
