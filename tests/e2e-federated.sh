#!/bin/sh
# No secret on disk (issue 12): an account with client_assertion_file
# (workload identity federation) logs in through imtest and mbsync with
# no secret or key in its config, the federated token being re-read on
# every token request and checked by the Entra stand-in as Entra checks
# it (issuer, subject, audience api://AzureADTokenExchange, signature by
# the issuer's key, times); the faults a user meets each get their
# sentence. And the national clouds: cloud sets the authority and scope
# (an explicit authority still wins), check-config shows the resolved
# values of all four.
set -eu
. "$(dirname "$0")/lib.sh"
need mbsync
[ -x "$TOOL" ] || { echo "tool not built: $TOOL"; exit 99; }

FED_CLIENT=00000000-aaaa-bbbb-cccc-000000000003
ISSUER=https://oidc.test.invalid/cluster-1/
SUBJECT=system:serviceaccount:mail:postfix
FED_USER=fed@contoso.com
GOV_USER=gov@contoso.com
US_SCOPE=https://outlook.office365.us/.default

openssl genrsa -out "$T/fed-issuer.key" 2048 2>/dev/null
openssl rsa -in "$T/fed-issuer.key" -pubout -out "$T/fed-issuer.pub" 2>/dev/null
# fedtoken FILE [SUBJECT [OPTION...]]: a token of the issuer, written the
# way the kubelet does (a new file renamed into place), mode 0600.
fedtoken() {
	_f=$1 _s=${2:-$SUBJECT}; shift; [ $# -eq 0 ] || shift
	( umask 077
	  "$PYTHON3" "$here/fedtoken.py" "$T/fed-issuer.key" "$ISSUER" "$_s" "$@" > "$_f.new" )
	mv -f "$_f.new" "$_f"
}
mkdir -p "$T/fed"
fedtoken "$T/fed/token"

TOKEND_EXTRA=' "federation_issuers": { "'$ISSUER'": "'$T/fed-issuer.pub'" },
  "scope": [ "https://outlook.office365.com/.default", "'$US_SCOPE'" ],'
TOKEND_CLIENTS=',
    "'$FED_CLIENT'": { "tenant": "'$TENANT'", "federated": [
      { "issuer": "'$ISSUER'", "subject": "'$SUBJECT'", "audiences": ["api://AzureADTokenExchange"] },
      { "issuer": "'$ISSUER'", "subject": "'$SUBJECT'-next", "audiences": ["api://AzureADTokenExchange"] } ] }'
make_ca
start_tokend
start_dovecot
fed_account() { # fed_account MATCH FILE
	printf ',\n\t{ match = "%s";\n\t  tenant = "%s";\n\t  client_id = "%s";\n\t  client_assertion_file = "%s"; }' \
		"$1" "$TENANT" "$FED_CLIENT" "$2"
}
write_config "$(fed_account "$FED_USER" "$T/fed/token")$(fed_account missing@contoso.com "$T/fed/missing")$(fed_account open@contoso.com "$T/fed/open")$(fed_account expired@contoso.com "$T/fed/expired")$(fed_account junk@contoso.com "$T/fed/junk")$(fed_account wrongsub@contoso.com "$T/fed/wrongsub")$(printf ',\n\t{ match = "%s";\n\t  cloud = "usgov";\n\t  authority = "https://127.0.0.1:%s";\n\t  tenant = "%s";\n\t  client_id = "%s";\n\t  client_secret_file = "%s"; }' \
	"$GOV_USER" "$TOKEND_PORT" "$TENANT" "$CLIENT" "$T/etc/contoso.secret")"
fed_reqs() { grep -c "client=$FED_CLIENT result=${1:-ok}" "$T/tokend.log" || true; }

## Workload identity federation: logins with no secret or key.
check "the federated account's block holds no secret and no key" sh -c \
	"sed -n '/match = \"$FED_USER\"/,/}/p' '$CONF' | grep -q client_assertion_file &&
	 ! sed -n '/match = \"$FED_USER\"/,/}/p' '$CONF' | grep -Eq 'secret|private_key|certificate|pkcs12'"
for mech in XOAUTH2 OAUTHBEARER; do
	if imtest_ok "$FED_USER" "$mech"; then
		pass "imtest $mech logs in with a federated token"
	else
		fail "imtest $mech logs in with a federated token"; cat "$T/imtest.out"
	fi
done
check "the stand-in accepted the federated token of $SUBJECT" \
	grep -q "client=$FED_CLIENT result=ok credential=federated n=1 scope=.* sub=$SUBJECT\$" "$T/tokend.log"
check "the file's token was sent as it is, as client_assertion" \
	grep -qxF "client_assertion $(cat "$T/fed/token")" "$T/tokend.record"
check "one token request for both logins (the access token is cached)" [ "$(fed_reqs)" = 1 ]
rm -rf "$T/cache"
if mbsync_run XOAUTH2 "$FED_USER"; then
	pass "mbsync XOAUTH2 syncs INBOX with a federated token"
else
	fail "mbsync XOAUTH2 syncs INBOX with a federated token"; cat "$T/mbsync.out"
fi
check "Dovecot logged the federated logins" \
	grep -q "Login: user=<$FED_USER>, method=XOAUTH2" "$T/dovecot/log"

## Rotated between two logins: the kubelet renames a new token into
## place; the old one's record is gone (refuse_sub), so only a fresh
## read of the file can log in. (The access token is dropped as if it
## had expired.)
fedtoken "$T/fed/token" "$SUBJECT-next"
tokend_mode "refuse_sub:$SUBJECT"
rm -rf "$T/cache"
if imtest_ok "$FED_USER" XOAUTH2; then
	pass "after rotation, imtest logs in with the new file's token"
else
	fail "after rotation, imtest logs in with the new file's token"; cat "$T/imtest.out"
fi
check "the stand-in saw the new token's subject" \
	grep -q "client=$FED_CLIENT result=ok .* sub=$SUBJECT-next\$" "$T/tokend.log"
check "three federated token requests in all (two logins, one after rotation)" \
	[ "$(fed_reqs)" = 3 ]
tokend_mode ""

## What a user meets: each its own sentence.
n=$(fed_reqs "")
run missing token missing@contoso.com
expect missing 78 err "cannot open federated token file $T/fed/missing: No such file or directory: is the token projector" \
	"a missing file: its sentence, 78"
fedtoken "$T/fed/open"; chmod 644 "$T/fed/open"
run open token open@contoso.com
expect open 78 err "federated token file $T/fed/open is accessible by group or others (mode 0644)" \
	"a file readable by others is refused, 78"
fedtoken "$T/fed/expired" "$SUBJECT" --exp-in -600
run expired token expired@contoso.com
expect expired 78 err "the federated token in $T/fed/expired expired at " "an expired token: its own sentence"
expect expired 78 err "is the token projector running?" "which asks for the projector"
( umask 077; printf 'hunter2\n' > "$T/fed/junk" )
run junk token junk@contoso.com
expect junk 78 err "the federated token in $T/fed/junk is not a JWT: it has 1 part, not the three" \
	"a file that is not a JWT: its sentence"
check "no request for a file that could not be used" [ "$(fed_reqs "")" = "$n" ]
check "and no sentence quotes the file" sh -c "! grep -q hunter2 '$O/junk.err'"
fedtoken "$T/fed/wrongsub" system:serviceaccount:mail:other
run wrongsub token wrongsub@contoso.com
expect wrongsub 77 err "AADSTS700213 (no federated credential of the application has the token's subject" \
	"a subject without a federated credential: AADSTS700213 with its meaning"
run wrongsubtest test wrongsub@contoso.com --no-login
expect wrongsubtest 77 out "subject system:serviceaccount:mail:other" \
	"sasl-oauth2 test decodes the federated token's subject"
expect wrongsubtest 77 out "add a federated credential" "and says how to fix it"
# The refusal is remembered for failure_backoff, for that file only: the
# kubelet's next token is asked about at once.
n=$(fed_reqs "")
run wrongsub-again token wrongsub@contoso.com
expect wrongsub-again 77 err "(remembered; next attempt in " \
	"the refusal is remembered while the file stays the same"
check "without a request" [ "$(fed_reqs "")" = "$n" ]
fedtoken "$T/fed/wrongsub"
run wrongsub-rotated token wrongsub@contoso.com
check "a new token in the file (a subject the app trusts) is asked about at once, and logs in" \
	[ "$(rc wrongsub-rotated)" = 0 ]
check "with one request" [ "$(fed_reqs "")" = $((n + 1)) ]
run ccfed check-config
expect ccfed 0 out "WARN  expired@contoso.com  tenant $TENANT  client $FED_CLIENT  federated token file $T/fed/expired" \
	"check-config: an expired federated token is a WARN (not a broken account)"
expect ccfed 0 out "the federated token in $T/fed/expired expired at " "with its sentence"
expect ccfed 0 out "federated token: issuer $ISSUER  subject $SUBJECT-next  audience api://AzureADTokenExchange  expires " \
	"check-config: a good federated token's issuer, subject, audience and expiry"
for f in "$T/fed/token" "$T/fed/wrongsub" "$T/fed/expired"; do
	tok=$(cat "$f")
	check "the federated token of ${f##*/} is in no output, log or cache" sh -c "
		! grep -rqF -- '$tok' '$O' '$T/dovecot/log' '$T/cache' '$T/imtest.out' '$T/mbsync.out' 2>/dev/null"
done

## The stand-in judges federated tokens as Entra does (hand-made
## requests): each wrong part gets Entra's code.
openssl genrsa -out "$T/other.key" 2048 2>/dev/null
post() { # post ASSERTION: the AADSTS code (or "ok") the stand-in answers
	"$PYTHON3" - "$TOKEND_PORT" "$T/ca.pem" "$TENANT" "$FED_CLIENT" "$1" <<'PY'
import json, ssl, sys, urllib.error, urllib.parse, urllib.request
port, ca, tenant, client, assertion = sys.argv[1:]
body = urllib.parse.urlencode({
    "grant_type": "client_credentials", "client_id": client,
    "scope": "https://outlook.office365.com/.default",
    "client_assertion_type":
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    "client_assertion": assertion}).encode()
req = urllib.request.Request(
    "https://127.0.0.1:%s/%s/oauth2/v2.0/token" % (port, tenant), body,
    {"Content-Type": "application/x-www-form-urlencoded"})
try:
    urllib.request.urlopen(req, context=ssl.create_default_context(cafile=ca))
    print("ok")
except urllib.error.HTTPError as e:
    print(json.load(e)["error_codes"][0])
PY
}
mk() { "$PYTHON3" "$here/fedtoken.py" "$@"; }
check "stand-in: a good federated token is accepted" \
	[ "$(post "$(mk "$T/fed-issuer.key" "$ISSUER" "$SUBJECT")")" = ok ]
check "stand-in: another issuer: AADSTS700211" \
	[ "$(post "$(mk "$T/fed-issuer.key" https://other.test.invalid/ "$SUBJECT")")" = 700211 ]
check "stand-in: another subject: AADSTS700213" \
	[ "$(post "$(mk "$T/fed-issuer.key" "$ISSUER" system:serviceaccount:x:y)")" = 700213 ]
check "stand-in: another audience: AADSTS700212" \
	[ "$(post "$(mk "$T/fed-issuer.key" "$ISSUER" "$SUBJECT" --aud api://AzureADMyOrg)")" = 700212 ]
check "stand-in: signed by another key: AADSTS700027" \
	[ "$(post "$(mk "$T/other.key" "$ISSUER" "$SUBJECT")")" = 700027 ]
check "stand-in: expired: AADSTS700024" \
	[ "$(post "$(mk "$T/fed-issuer.key" "$ISSUER" "$SUBJECT" --exp-in -600)")" = 700024 ]

## Clouds: a usgov account whose authority names the stand-in logs in,
## with the US Government scope.
if imtest_ok "$GOV_USER" XOAUTH2; then
	pass "cloud = usgov with an explicit authority: imtest logs in"
else
	fail "cloud = usgov with an explicit authority: imtest logs in"; cat "$T/imtest.out"
fi
check "the token request carried the usgov scope" \
	grep -q "client=$CLIENT result=ok credential=secret n=1 scope=$US_SCOPE" "$T/tokend.log"
mkdir -p "$T/clouds"
( umask 077; echo not-a-real-secret > "$T/clouds/s" )
cat > "$T/clouds/conf" <<CONF
version = 1;
defaults = { ca_file = "$T/ca.pem"; cache_dir = ""; };
accounts = (
	{ match = "a@global.test"; cloud = "global"; tenant = "t"; client_id = "c"; client_secret_file = "$T/clouds/s"; },
	{ match = "b@usgov.test"; cloud = "usgov"; tenant = "t"; client_id = "c"; client_secret_file = "$T/clouds/s"; },
	{ match = "c@dod.test"; cloud = "usgov-dod"; tenant = "t"; client_id = "c"; client_secret_file = "$T/clouds/s"; },
	{ match = "d@china.test"; cloud = "china"; tenant = "t"; client_id = "c"; client_secret_file = "$T/clouds/s"; }
);
CONF
chmod 600 "$T/clouds/conf"
run clouds -c "$T/clouds/conf" check-config
expect clouds 0 out "token_url https://login.microsoftonline.com/t/oauth2/v2.0/token  scope https://outlook.office365.com/.default  imap outlook.office365.com  smtp smtp.office365.com" \
	"check-config: cloud global resolved"
expect clouds 0 out "token_url https://login.microsoftonline.us/t/oauth2/v2.0/token  scope https://outlook.office365.us/.default  imap outlook.office365.us  smtp outlook.office365.us" \
	"check-config: cloud usgov resolved"
expect clouds 0 out "token_url https://login.microsoftonline.us/t/oauth2/v2.0/token  scope https://outlook-dod.office365.us/.default  imap outlook-dod.office365.us  smtp outlook-dod.office365.us" \
	"check-config: cloud usgov-dod resolved"
expect clouds 0 out "token_url https://login.partner.microsoftonline.cn/t/oauth2/v2.0/token  scope https://partner.outlook.cn/.default  imap partner.outlook.cn  smtp smtp.partner.outlook.cn" \
	"check-config: cloud china resolved"

finish
