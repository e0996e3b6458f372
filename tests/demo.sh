#!/bin/sh
# The quick start's last step: with the plugin built (./configure && make
# in this tree, or top_builddir=DIR for another build directory), start a
# local stand-in for Microsoft Entra ID and a private Dovecot that only
# accepts OAuth 2.0 tokens, then log in with Cyrus imtest through the
# freshly built plugin. Nothing is installed; everything lives in a
# temporary directory and disappears at the end. Exit 0 on success.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
: "${top_srcdir:=$(cd "$here/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
if [ ! -f "$top_builddir/.libs/libsasl-oauth2.so" ]; then
	echo "demo: the plugin is not built yet: run ./configure && make first" \
		"(or set top_builddir to your build directory)" >&2
	exit 1
fi
. "$here/lib.sh"

say() { printf '\n>>> %s\n' "$*"; }

say "Making a test CA and a certificate for 127.0.0.1 (openssl)"
make_ca
say "Starting the Entra ID stand-in (tests/tokend.py) on https://127.0.0.1:..."
start_tokend
echo "    token endpoint: https://127.0.0.1:$TOKEND_PORT/$TENANT/oauth2/v2.0/token"
echo "    registered app: client_id $CLIENT with a generated client secret"
say "Starting a private Dovecot (IMAPS) that accepts only XOAUTH2/OAUTHBEARER"
start_dovecot
echo "    imaps://127.0.0.1:$IMAPS_PORT, tokens checked against the stand-in's signing key"
say "Writing the plugin's configuration ($T/etc/sasl-oauth2.conf)"
LOG_LEVEL=info write_config
sed 's/^/    | /' "$CONF"
echo "    SASL_PATH=$SASL_PATH"
echo "    (libsasl2 loads the freshly built $PLUGIN from there)"

say "imtest -m XOAUTH2 -a $USER1: imtest knows no password and no OAuth;"
echo "    the plugin finds the account for the mailbox, fetches a token with"
echo "    the client-credentials grant, caches it, and sends it to Dovecot"
if ! imtest_login "$USER1" XOAUTH2 || ! grep -q "Authenticated\." "$T/imtest.out"; then
	echo "demo: the login FAILED. imtest said:" >&2
	sed 's/^/    | /' "$T/imtest.out" >&2
	echo "Dovecot's log:" >&2
	tail -n 20 "$T/dovecot/log" | sed 's/^/    | /' >&2
	exit 1
fi
grep -v '^[SC]: ' "$T/imtest.out" | grep -v 'verify error' | sed 's/^/    | /'
echo "    token requests so far: $(token_requests)"
echo "    Dovecot: $(grep -m 1 'Login: user=' "$T/dovecot/log" | sed 's/.*\(imap-login: \)/\1/')"

say "A second login, OAUTHBEARER this time, reuses the cached token"
if ! imtest_ok "$USER1" OAUTHBEARER; then
	echo "demo: the second login FAILED:" >&2
	sed 's/^/    | /' "$T/imtest.out" >&2
	exit 1
fi
echo "    $(grep -m 1 'Authenticated\.' "$T/imtest.out")  (token requests so far: $(token_requests))"

say "Done: both logins went through the plugin."
grep -m 1 'Authenticated\.' "$T/imtest.out"
