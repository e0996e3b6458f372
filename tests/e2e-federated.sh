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
expect clouds 0 out "token_url https://login.microsoftonline.com/t/oauth2/v2.0/token  scope https://outlook.office365.com/.default" \
	"check-config: cloud global resolved"
expect clouds 0 out "token_url https://login.microsoftonline.us/t/oauth2/v2.0/token  scope https://outlook.office365.us/.default" \
	"check-config: cloud usgov resolved"
expect clouds 0 out "token_url https://login.microsoftonline.us/t/oauth2/v2.0/token  scope https://outlook-dod.office365.us/.default" \
	"check-config: cloud usgov-dod resolved"
expect clouds 0 out "token_url https://login.partner.microsoftonline.cn/t/oauth2/v2.0/token  scope https://partner.outlook.cn/.default" \
	"check-config: cloud china resolved"

finish
