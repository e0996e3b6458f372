#!/bin/sh
# Credential lifecycle (issue 17): `sasl-oauth2 certificate new` (files,
# modes, O_EXCL, key and certificate agree with openssl, thumbprints),
# a new certificate registered with the Entra stand-in logging in
# through imtest, rollover to next_* credentials within one login (and
# never sending the next one while the current one works), expiry
# warnings and `check-config --expiring` exit codes.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || { echo "tool not built: $TOOL"; exit 99; }
need openssl

TOOL_TIMEOUT=120
hex() { tr -d ':\n' | sed 's/.*=//'; }

# --- certificate new ------------------------------------------------------
# 2048 bits here: key generation under valgrind is slow (40 s on a busy
# machine); the default (3072) and --owner are checked outside valgrind.
run new certificate new --bits 2048 --days 20 --subject CN=mail.contoso.com "$T/new"
expect new 0 out "thumbprint   SHA-1" "certificate new: exit 0, thumbprints printed"
check "the key is mode 0600, the certificate 0644" \
	[ "$(stat -c %a "$T/new.key") $(stat -c %a "$T/new.crt")" = "600 644" ]
check "the key is PKCS#8 PEM" [ "$(head -n 1 "$T/new.key")" = "-----BEGIN PRIVATE KEY-----" ]
check "openssl pkey -check: the key is valid" sh -c "openssl pkey -in '$T/new.key' -check -noout | grep -q 'Key is valid'"
check "the key matches the certificate (public keys equal)" sh -c \
	"[ \"\$(openssl x509 -in '$T/new.crt' -noout -pubkey)\" = \"\$(openssl pkey -in '$T/new.key' -pubout)\" ]"
openssl x509 -in "$T/new.crt" -noout -text > "$O/new.text"
check "RSA 2048, SHA-256 signature, CN from --subject, self-signed" sh -c \
	"grep -q 'Public-Key: (2048 bit)' '$O/new.text' && grep -q 'Signature Algorithm: sha256WithRSAEncryption' '$O/new.text' &&
	 grep -q 'Subject: CN = mail.contoso.com' '$O/new.text' && grep -q 'Issuer: CN = mail.contoso.com' '$O/new.text'"
check "valid for --days 20" sh -c "openssl x509 -in '$T/new.crt' -noout -checkend $((19 * 86400)) >/dev/null &&
	! openssl x509 -in '$T/new.crt' -noout -checkend $((21 * 86400)) >/dev/null"
sha1=$(openssl x509 -in "$T/new.crt" -noout -fingerprint -sha1 | hex)
sha256=$(openssl x509 -in "$T/new.crt" -noout -fingerprint -sha256 | hex)
check "SHA-1 thumbprint agrees with openssl x509 -fingerprint -sha1" grep -q "SHA-1   $sha1 " "$O/new.out"
check "SHA-256 thumbprint agrees with openssl x509 -fingerprint -sha256" grep -q "SHA-256 $sha256\$" "$O/new.out"
check "the config lines name both files" sh -c "grep -qF 'certificate = \"$T/new.crt\";' '$O/new.out' &&
	grep -qF 'private_key = \"$T/new.key\";' '$O/new.out'"
check "no key material printed" sh -c "! grep -q 'PRIVATE KEY' '$O/new.out' '$O/new.err'"

sum=$(cat "$T/new.key" "$T/new.crt" | cksum)
run again certificate new --bits 2048 "$T/new"
expect again 73 err "never overwritten" "an existing pair: EX_CANTCREAT (73), never overwritten"
check "both files unchanged" [ "$(cat "$T/new.key" "$T/new.crt" | cksum)" = "$sum" ]
: > "$T/half.crt"
run half certificate new --bits 2048 "$T/half"
expect half 73 err "no half-written pair is left" "the .crt exists: 73, and the .key made is removed"
check "no half.key left" [ ! -e "$T/half.key" ]
run badbits certificate new --bits 1024 "$T/x"
expect badbits 64 err "--bits takes 2048, 3072 or 4096" "--bits 1024: EX_USAGE"
run baddays certificate new --days 0 "$T/x"
expect baddays 64 err "--days takes" "--days 0: EX_USAGE"
check "a usage error creates nothing" [ ! -e "$T/x.key" ]
if [ -z "$VALGRIND" ]; then
	run default certificate new "$T/default"
	expect default 0 out "RSA 3072 bits" "default: RSA 3072"
	check "default subject: the host name" sh -c "openssl x509 -in '$T/default.crt' -noout -subject | grep -qF \"CN = \$(hostname)\""
fi
if [ "$(id -u)" = 0 ] && [ -z "$VALGRIND" ]; then
	run owner certificate new --bits 2048 --owner nobody "$T/owned"
	check "--owner nobody (as root): both files are nobody's" \
		[ "$(stat -c %U "$T/owned.key") $(stat -c %U "$T/owned.crt")" = "nobody nobody" ]
fi

# --- the test bed: a client with one secret and the new certificate --------
ROT_CLIENT=00000000-aaaa-bbbb-cccc-000000000017
NEW_SECRET="e2e~New.$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
OLD_SECRET="e2e~Old.$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
TOKEND_CLIENTS=",
    \"$ROT_CLIENT\": { \"tenant\": \"$TENANT\", \"secrets\": [\"$NEW_SECRET\"],
      \"expired_secrets\": [\"$OLD_SECRET\"], \"certs\": [\"$T/new.crt\"] }"
# a certificate the app registration does not know
openssl req -x509 -newkey rsa:2048 -nodes -days 400 -subj "/CN=old" \
	-keyout "$T/old.key" -out "$T/old.crt" 2>/dev/null
chmod 600 "$T/old.key"
( umask 077; printf '%s\n' "$NEW_SECRET" > "$T/new.secret" )
# the same key in a certificate that expired yesterday
"$PYTHON3" - "$T/old.key" "$T/expired.crt" <<'PY'
import datetime, sys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired")])
now = datetime.datetime.utcnow()
cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256()))
open(sys.argv[2], "wb").write(cert.public_bytes(serialization.Encoding.PEM))
PY
SOON=$(date -u -d '+10 days' +%Y-%m-%d)
acct() { # acct MATCH BODY: an account block of ROT_CLIENT
	printf ',\n\t{ match = "%s"; tenant = "%s"; client_id = "%s";\n\t  %s }' "$1" "$TENANT" "$ROT_CLIENT" "$2"
}
testbed "$(acct rotsecret@contoso.com "client_secret = \"$OLD_SECRET\"; next_client_secret_file = \"$T/new.secret\"; client_secret_expires = \"$SOON\";")$(
	acct rotcert@contoso.com "certificate = \"$T/old.crt\"; private_key = \"$T/old.key\"; next_certificate = \"$T/new.crt\"; next_private_key = \"$T/new.key\";")$(
	acct certnew@contoso.com "certificate = \"$T/new.crt\"; private_key = \"$T/new.key\";")$(
	acct expired@contoso.com "certificate = \"$T/expired.crt\"; private_key = \"$T/old.key\"; next_certificate = \"$T/new.crt\"; next_private_key = \"$T/new.key\";")$(
	acct bothbad@contoso.com "client_secret = \"$OLD_SECRET\"; next_client_secret = \"e2e-not-registered\";")$(
	printf ',\n\t{ match = "steady@contoso.com"; tenant = "%s"; client_id = "%s";\n\t  client_secret_file = "%s"; next_client_secret = "e2e-never-sent"; }' \
	"$TENANT" "$CLIENT" "$T/etc/contoso.secret")"
reqs() { grep -c "client=$1 result=$2" "$T/tokend.log" || true; }

# --- a new certificate, from zero to a login --------------------------------
check "imtest logs in with the certificate made by certificate new" imtest_ok certnew@contoso.com XOAUTH2
check "the stand-in verified an assertion of that certificate" [ "$(reqs "$ROT_CLIENT" "ok credential=PS256 n=1")" = 1 ]

# --- rollover: the current secret refused, the next one in the same login ---
rm -rf "$T/cache"; : > "$T/tokend.log"
if SASLCLIENT_DEBUG=1 saslclient -m XOAUTH2 -u rotsecret@contoso.com > "$O/rot.out" 2>&1; then
	pass "saslclient: the login succeeds with the next secret"
else fail "saslclient: the login succeeds with the next secret"; sed 's/^/# /' "$O/rot.out"; fi
check "one token request pair: the current one refused (AADSTS7000222), the next one accepted" sh -c \
	"[ \"\$(grep -c 'client=$ROT_CLIENT' '$T/tokend.log')\" = 2 ] && [ \"\$(grep -c 'client=$ROT_CLIENT result=error:7000222' '$T/tokend.log')\" = 1 ] &&
	 [ \"\$(grep -c 'client=$ROT_CLIENT result=ok credential=secret n=1' '$T/tokend.log')\" = 1 ]"
check "a warning: the current secret was refused, the next one works: make it current" grep -q \
	"log\[3\]: sasl-oauth2: the current client secret of account rotsecret@contoso.com was refused (AADSTS7000222.*); the next client secret works: make it current" "$O/rot.out"
check "no secret in the plugin's output" sh -c "! grep -qF -e '$NEW_SECRET' -e '$OLD_SECRET' '$O/rot.out'"
check "imtest, another process: logs in with the cached token of the next secret" imtest_ok rotsecret@contoso.com XOAUTH2
check "... without asking the endpoint again" [ "$(grep -c "client=$ROT_CLIENT" "$T/tokend.log")" = 2 ]
run clear cache clear rotsecret@contoso.com
expect clear 0 out "(next credential)" "cache clear: the next credential's token is removed too"
check "... no token file left" sh -c "! ls '$T'/cache/*.token >/dev/null 2>&1"
: > "$T/tokend.log"

# the same for certificates: AADSTS700027, then the next certificate
rm -rf "$T/cache"; : > "$T/tokend.log"
check "imtest: the unknown current certificate is refused, the next one logs in" imtest_ok rotcert@contoso.com XOAUTH2
check "one token request pair: 700027, then the next certificate" sh -c \
	"[ \"\$(grep -c 'client=$ROT_CLIENT' '$T/tokend.log')\" = 2 ] && grep -q 'client=$ROT_CLIENT result=error:700027' '$T/tokend.log' &&
	 grep -q 'client=$ROT_CLIENT result=ok credential=PS256 n=1' '$T/tokend.log'"

# a current certificate that has expired: the next one is used at once
rm -rf "$T/cache"; : > "$T/tokend.log"
run expired token expired@contoso.com
expect expired 0 err "the current certificate of account \"expired@contoso.com\" cannot be used; the next certificate is: make it current" \
	"an expired current certificate: the next one is used, with a warning"
check "... one token request, with the next certificate" sh -c \
	"[ \"\$(grep -c 'client=$ROT_CLIENT' '$T/tokend.log')\" = 1 ] && grep -q 'client=$ROT_CLIENT result=ok credential=PS256 n=1' '$T/tokend.log'"

# both refused: one sentence naming both
rm -rf "$T/cache"; : > "$T/tokend.log"
run both token bothbad@contoso.com
expect both 77 err "both credentials of account bothbad@contoso.com were refused: the current client secret (AADSTS7000222" \
	"both refused: one sentence naming both (EX_NOPERM)"
check "... and the next one's code (AADSTS7000215)" grep -q "the next client secret (AADSTS7000215" "$O/both.err"

# no refusal: the next credential is never sent
rm -rf "$T/cache"; : > "$T/tokend.log"
run steady token steady@contoso.com
expect steady 0 out "." "the current secret works (token)"
check "the next secret is never sent: one request, accepted, no refusal" sh -c \
	"[ \"\$(grep -c 'client=$CLIENT' '$T/tokend.log')\" = 1 ] && ! grep -q 'result=error' '$T/tokend.log'"

# --- check-config and test show both ----------------------------------------
run cc check-config
expect cc 0 out "next: secret file $T/new.secret, loaded" "check-config shows the next secret"
expect cc 0 out "next: certificate $T/new.crt thumbprint $sha1" "check-config shows the next certificate"
rm -rf "$T/cache"
run testrot test --no-login rotsecret@contoso.com
expect testrot 0 out "credential used: the next client secret" "test: says which credential works (the next one)"
check "test: a second client secret is shown" grep -q "next credential: a second client secret" "$O/testrot.out"
run teststeady test --no-login steady@contoso.com
expect teststeady 0 out "WARN  the next client secret does not work: token request refused (HTTP 401): invalid_client: AADSTS7000215" \
	"test: the next secret of steady is tried and said not to work"

# --- expiry ------------------------------------------------------------------
expect cc 0 out "the next certificate expires in 19 days" "check-config: days left of the next certificate (< expiry_warning 30)"
check "check-config: days left of a secret (client_secret_expires)" grep -q "the current client secret expires in [0-9] days" "$O/cc.out"
check "check-config: WARN for those accounts" sh -c "grep -q '^WARN  rotsecret@contoso.com' '$O/cc.out' && grep -q '^WARN  certnew@contoso.com' '$O/cc.out'"
expect testrot 0 out "WARN  expiry: the current client secret of account rotsecret@contoso.com expires in" "test: the expiry warning"
SASLCLIENT_DEBUG=1 saslclient -m XOAUTH2 -u certnew@contoso.com -n 3 > "$O/exp.out" 2>&1 || true
check "the plugin's log: one warning for 3 logins in one process" [ "$(grep -c "log\[3\]: sasl-oauth2: the current certificate of account certnew@contoso.com expires in 19 days" "$O/exp.out")" = 1 ]
run exp5 check-config --expiring 5
expect exp5 0 out "0 credentials expire within 5 days" "--expiring 5: nothing that soon, exit 0"
run exp15 check-config --expiring 15
expect exp15 69 out "1 credential expires within 15 days" "--expiring 15: the secret of rotsecret, exit 69 (EX_UNAVAILABLE)"
run exp30 check-config --expiring 30
expect exp30 69 out "4 credentials expire within 30 days" "--expiring 30: the secret and three uses of the new certificate"
run expbad check-config --expiring soon
expect expbad 64 err "--expiring takes a number of days" "--expiring soon: EX_USAGE"
run expmis token --expiring 5 user@contoso.com
expect expmis 64 err "--expiring goes with check-config" "--expiring elsewhere: EX_USAGE"
sed -i "s/^\ttimeout = \(.*\);\$/\ttimeout = \1;\n\texpiry_warning = 5;/" "$CONF"
run ccquiet check-config
check "expiry_warning = 5: no expiry warning for 19 or 9 days left" sh -c "! grep -q 'expires in' '$O/ccquiet.out'"
finish
