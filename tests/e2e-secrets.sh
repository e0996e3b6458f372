#!/bin/sh
# Nothing secret leaks: every path (client secret, PS256 and RS256
# assertions, an encrypted key, refusals, endpoint faults, the tool's
# subcommands, imtest, mbsync) runs at log_level "debug" with every SASL
# log line printed, and all that the programs, Dovecot and tokend wrote
# is searched for the secret, the passphrase, the private key, every
# assertion tokend received and every token it issued. Only the disk
# cache and `sasl-oauth2 token` (whose job it is) may hold a token.
set -eu
. "$(dirname "$0")/lib.sh"
make_ca
start_tokend
start_dovecot
PASS="pp-$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
( umask 077
  printf '%s\n' "$PASS" > "$T/app.pass"
  openssl pkey -in "$T/app.key" -aes256 -passout "file:$T/app.pass" -out "$T/app-enc.key" )
enc_account=$(cert_account enc@contoso.com RS256 | sed "s|$T/app.key\";|$T/app-enc.key\";\n\t  private_key_passphrase_file = \"$T/app.pass\";|")
LOG_LEVEL=debug write_config "$(cert_account ps@contoso.com PS256)$(cert_account rs@contoso.com RS256)$enc_account"
export SASLCLIENT_DEBUG=1
O="$T/out"
mkdir -p "$O"
n=0
# run PROGRAM ARGS...: output to $O/N.out, N.err; the status is not judged
run() { n=$((n + 1)); timeout $((60 * SLOW)) "$@" > "$O/$n.out" 2> "$O/$n.err" </dev/null || true; }
tool() { run $VALGRIND "$TOOL" "$@"; }
sc() { run $VALGRIND "$SC" "$@"; }
CHALLENGE=$(printf '{"status":"invalid_token","scope":"x"}' | base64 -w0)

# The certificate accounts share one credential, hence one cache entry:
# empty the cache for each so that each signs with its own algorithm.
for u in "$USER1" ps@contoso.com rs@contoso.com enc@contoso.com; do
	rm -rf "$T/cache"
	for mech in XOAUTH2 OAUTHBEARER; do
		imtest_login "$u" "$mech" "$O/imtest-$u-$mech" || true
		check "imtest $mech as $u logged in at debug level" \
			grep -q "Authenticated\." "$O/imtest-$u-$mech"
		sc -m "$mech" -u "$u"
		sc -m "$mech" -u "$u" -c "$CHALLENGE"
	done
	tool -v check-config
	tool -v test "$u" --imap "127.0.0.1:$IMAPS_PORT" --ca-file "$T/ca.pem"
	tool -v cache list
	tool -v token "$u" && mv "$O/$n.out" "$O/token-$n"
	tool -v token --json "$u" && mv "$O/$n.out" "$O/token-$n"
done
mbsync_run XOAUTH2 || true
cp "$T/mbsync.out" "$O/mbsync.out"
check "the token subcommand printed tokens" grep -q '^ey' "$O"/token-*
rm -rf "$T/cache"

# Refusals and faults, each with a fresh cache.
for mode in html500 badjson no_access_token token_crlf huge expires_in_absurd token_type_mac; do
	tokend_mode "$mode"
	rm -rf "$T/cache"
	sc -u "$USER1"
	sc -u ps@contoso.com
	tool -v test ps@contoso.com --no-login
done
tokend_mode ""
printf 'wrong-%s\n' "$SECRET" > "$T/etc/contoso.secret"
rm -rf "$T/cache"
sc -u "$USER1"
tool -v test "$USER1" --no-login
check "the wrong secret was refused with its AADSTS code" grep -q AADSTS7000215 "$O/$n.out" "$O/$n.err"

# What must never appear: the secrets, lines of the private key, every
# assertion and its signature, every token and its signature.
{
	printf '%s\n' "$SECRET" "$PASS"
	grep -v -- '-----' "$T/app.key" | sed -n '2,20p'
	sed -n 's/^client_assertion //p; s/^token //p' "$T/tokend.record"
	sed -n 's/^client_assertion .*\.\([^.]*\)$/\1/p; s/^token .*\.\([^.]*\)$/\1/p' "$T/tokend.record"
} | grep -v '^$' > "$T/needles"
check "tokend verified assertions of both algorithms" sh -c \
	"grep -q 'credential=PS256' '$T/tokend.log' && grep -q 'credential=RS256' '$T/tokend.log'"
echo "# $(wc -l < "$T/needles") secret strings searched for in $(ls "$O" | wc -l) outputs and the server logs"
leaks=$(grep -rlF -f "$T/needles" "$O" "$T/dovecot/log" "$T/tokend.log" "$T/tokend.err" \
	--exclude='token-*' 2>/dev/null || true)
check "no secret, key, assertion or token in any output or log" test -z "$leaks"
[ -z "$leaks" ] || echo "# leaked into: $leaks"
check "debug logging was on" grep -q "log\[" "$O/1.err"
finish
