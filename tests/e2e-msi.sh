#!/bin/sh
# Azure managed identity, against tests/msid.py (the three endpoints on
# 127.0.0.1, plain HTTP as the real ones): imtest and mbsync log in to
# Dovecot with tokens from the instance metadata service (system- and
# user-assigned), App Service (its header from a private file) and the
# Arc agent (401 challenge, key file, Basic key), with no secret in the
# config. Fault rows: endpoint down (a closed loopback port), no identity
# assigned, an unknown client id, an Arc realm outside the key directory,
# an Arc key file too big, http:// to a non-local address refused when
# the config loads and when a name's address is connected to. `test`
# says which endpoint it found, or why none answered.
#
# Every endpoint named here is on 127.0.0.1 or localhost; nothing goes
# to 169.254.169.254, and no test writes under /var/opt (the Arc key
# directory is $T/arc through SASL_OAUTH2_ARC_TOKEN_DIR, which a setuid
# program would ignore).
set -eu
. "$(dirname "$0")/lib.sh"
need mbsync

SYSTEM_ID=6f1c0a3e-0000-4000-8000-00000000a001
UA_ID=6f1c0a3e-0000-4000-8000-00000000a002
UNKNOWN_ID=6f1c0a3e-0000-4000-8000-00000000dead
HEADER="e2e-identity-header.$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"

make_ca
make_issuer
start_dovecot
mkdir -p "$T/arc" "$T/outside" "$T/etc"
chmod 750 "$T/arc"
( umask 077; printf '%s\n' "$HEADER" > "$T/etc/identity-header" )
cat > "$T/msid.json" <<JSON
{ "issuer_key": "$T/issuer.key", "kid": "k1", "tenant_id": "$TENANT_ID",
  "domain": "contoso.com", "record": "$T/msid.record",
  "system_client_id": "$SYSTEM_ID", "user_assigned": ["$UA_ID"],
  "app_service_header": "$HEADER",
  "arc_key_dir": "$T/arc", "arc_outside_dir": "$T/outside" }
JSON
serve msid "$PYTHON3" "$here/msid.py" --config "$T/msid.json" \
	--port-file "$T/msid.port" --log "$T/msid.log" --control "$T/msid.control"
P=$SERVED_PORT
: > "$T/msid.log"
DOWN=$(free_port)	# nothing listens there: "not on Azure"
IMDS="http://127.0.0.1:$P/imds/metadata/identity/oauth2/token"
export SASL_OAUTH2_ARC_TOKEN_DIR="$T/arc"

acct() { # acct MATCH IDENTITY ENDPOINT [MORE]
	printf '\t{ match = "%s";\n\t  managed_identity = "%s";\n\t  managed_identity_endpoint = "%s";%s },\n' \
		"$1" "$2" "$3" "${4:-}"
}
CONF="$T/etc/sasl-oauth2.conf"
{
	cat <<CONF
version = 1;
defaults = {
	cache_dir = "$T/cache";
	timeout = $CONF_TIMEOUT;
	log_level = "debug";
};
accounts = (
CONF
	acct imds@contoso.com system "$IMDS"
	acct ua@contoso.com "$UA_ID" "$IMDS"
	acct app@contoso.com system "http://localhost:$P/app/token" "
	  managed_identity_header_file = \"$T/etc/identity-header\";"
	acct arc@contoso.com system "http://127.0.0.1:$P/arc/metadata/identity/oauth2/token" "
	  managed_identity_protocol = \"arc\";"
	acct arcfault@contoso.com system "http://localhost:$P/arc/metadata/identity/oauth2/token" "
	  managed_identity_protocol = \"arc\";"
	acct noid@contoso.com system "http://localhost:$P/imds/metadata/identity/oauth2/token"
	acct unknown@contoso.com "$UNKNOWN_ID" "$IMDS"
	acct down@contoso.com system "http://127.0.0.1:$DOWN/metadata/identity/oauth2/token"
	# no endpoint: lib.sh's environment (a closed loopback port), never
	# 169.254.169.254
	printf '\t{ match = "noendpoint@contoso.com";\n\t  managed_identity = "system"; },\n'
	# a name (no dotted quad) whose address, 192.0.2.1, is not local
	acct farname@contoso.com system "http://3221225985/metadata/identity/oauth2/token"
	acct far@contoso.com system "http://192.0.2.1/metadata/identity/oauth2/token"
	printf '\t{ match = "tenant@contoso.com";\n\t  managed_identity = "system";\n\t  tenant = "%s";\n\t  managed_identity_endpoint = "%s"; }\n);\n' "$TENANT" "$IMDS"
} > "$CONF"
chmod 600 "$CONF"
export SASL_OAUTH2_CONF="$CONF"
mkdir -p "$T/plugins"
ln -sf "$PLUGIN" "$T/plugins/libsasl-oauth2.so"
export SASL_PATH="$T/plugins:$SYSPLUGINS"
reqs() { grep -c "protocol=$1 identity=$2 result=$3" "$T/msid.log" || true; }

# --- the stand-in is as strict as the endpoints it stands for
"$PYTHON3" - "$P" "$HEADER" "$UA_ID" > "$T/probe.out" 2>&1 <<'PY' || true
import sys, urllib.request, urllib.error
port, header, ua = sys.argv[1], sys.argv[2], sys.argv[3]
base = "http://127.0.0.1:%s" % port
R = "resource=https%3A%2F%2Foutlook.office365.com"
def get(path, headers):
    req = urllib.request.Request(base + path, headers=headers)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
imds = "/imds/metadata/identity/oauth2/token?api-version=2018-02-01&" + R
cases = [
    ("imds ok", imds, {"Metadata": "true"}, 200, "access_token"),
    ("imds no Metadata", imds, {}, 400, "Required metadata header"),
    ("imds Metadata: True", imds, {"Metadata": "True"}, 400, "metadata"),
    ("imds X-Forwarded-For", imds, {"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}, 400, "X-Forwarded-For"),
    ("imds no api-version", "/imds/metadata/identity/oauth2/token?" + R, {"Metadata": "true"}, 400, "api-version"),
    ("imds wrong resource", "/imds/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com", {"Metadata": "true"}, 400, "AADSTS500011"),
    ("imds unknown client_id", imds + "&client_id=00000000-0000-0000-0000-000000000000", {"Metadata": "true"}, 400, "Identity not found"),
    ("imds known client_id", imds + "&client_id=" + ua, {"Metadata": "true"}, 200, "access_token"),
    ("app no header", "/app/token?api-version=2019-08-01&" + R, {}, 401, "X-IDENTITY-HEADER"),
    ("app wrong header", "/app/token?api-version=2019-08-01&" + R, {"X-IDENTITY-HEADER": "x"}, 401, "X-IDENTITY-HEADER"),
    ("app old api-version", "/app/token?api-version=2017-09-01&" + R, {"X-IDENTITY-HEADER": header}, 400, "2019-08-01"),
    ("app ok", "/app/token?api-version=2019-08-01&" + R, {"X-IDENTITY-HEADER": header}, 200, "expires_on"),
    ("arc wrong key", "/arc/metadata/identity/oauth2/token?api-version=2020-06-01&" + R, {"Metadata": "true", "Authorization": "Basic guessed"}, 401, "invalid key"),
    ("arc user-assigned", "/arc/metadata/identity/oauth2/token?api-version=2020-06-01&client_id=" + ua + "&" + R, {"Metadata": "true"}, 400, "not supported"),
]
for name, path, headers, status, text in cases:
    got, body = get(path, headers)
    print("%s %s" % ("ok" if got == status and text in body else "BAD", name), got)
PY
if grep -q '^BAD' "$T/probe.out" || [ "$(grep -c '^ok' "$T/probe.out")" != 14 ]; then
	fail "the stand-in refuses what the real endpoints refuse"; cat "$T/probe.out"
else
	pass "the stand-in refuses what the real endpoints refuse (14 probes)"
fi
: > "$T/msid.log"

# --- logins through the real clients, one per endpoint kind and client
login_pair() { # login_pair USER PROTOCOL IDENTITY WHAT
	before=$(reqs "$2" "$3" ok)
	if imtest_ok "$1" XOAUTH2; then pass "imtest XOAUTH2 with $4"; else
		fail "imtest XOAUTH2 with $4"; cat "$T/imtest.out"; tail -n 5 "$T/msid.log"; fi
	check "$4: one token request for imtest" [ "$(reqs "$2" "$3" ok)" = $((before + 1)) ]
	rm -rf "$T/cache"	# so that mbsync asks the endpoint itself
	if mbsync_run OAUTHBEARER "$1"; then pass "mbsync OAUTHBEARER with $4"; else
		fail "mbsync OAUTHBEARER with $4"; cat "$T/mbsync.out"; tail -n 5 "$T/msid.log"; fi
	check "$4: mbsync made its own token request" [ "$(reqs "$2" "$3" ok)" = $((before + 2)) ]
	check "Dovecot logged $1's logins" sh -c \
		"grep -q 'Login: user=<$1>, method=XOAUTH2' '$T/dovecot/log' &&
		 grep -q 'Login: user=<$1>, method=OAUTHBEARER' '$T/dovecot/log'"
}
login_pair imds@contoso.com imds system "IMDS, system-assigned"
login_pair ua@contoso.com imds "$UA_ID" "IMDS, user-assigned"
login_pair app@contoso.com app system "App Service"
login_pair arc@contoso.com arc system "the Arc agent"
check "Arc: a challenge before each key (2 challenges, 2 tokens)" \
	[ "$(reqs arc system challenge)" = 2 ]
check "Arc: the key files were used and removed" [ -z "$(ls "$T/arc")" ]
check "no request was refused by the stand-in" \
	sh -c "! grep -Ev 'result=(ok|challenge)' '$T/msid.log'"

# --- what `test` says
run test-imds test imds@contoso.com --no-login
expect test-imds 0 out "credential: managed identity (system-assigned) from the instance metadata service (IMDS) at $IMDS (from managed_identity_endpoint)" \
	"test names the endpoint it found and how"
run test-app test app@contoso.com --no-login --no-cache
expect test-app 0 out "from the App Service identity endpoint at http://localhost:$P/app/token" \
	"test names the App Service endpoint"
run check check-config
expect check 78 out "managed identity (user-assigned, client id $UA_ID) from the instance metadata service" \
	"check-config describes the user-assigned account"
expect check 78 err "managed_identity_endpoint: plain http:// to 192.0.2.1, which is neither loopback nor link-local, is refused" \
	"http:// to a non-local address is refused when the config loads"
expect check 78 err "uses a managed identity: it takes no tenant" \
	"a managed-identity account takes no tenant"

# --- faults, through the command (each a sentence, exit code not 0)
run down test down@contoso.com --no-login
expect down 75 out "(from managed_identity_endpoint) did not answer: connection to the token endpoint 127.0.0.1:$DOWN refused; is this host an Azure VM?" \
	"endpoint down: not on Azure, said as such"
run noep test noendpoint@contoso.com --no-login
expect noep 75 out "from the Azure Arc agent at $NOT_AZURE (from IDENTITY_ENDPOINT and IMDS_ENDPOINT)" \
	"no endpoint in the account: the test environment's closed loopback port, never 169.254.169.254"
expect noep 75 out "did not answer: connection to the token endpoint 127.0.0.1:1 refused" \
	"and it is not on Azure"
printf '{"mode": "no_identity"}\n' > "$T/msid.control"
run noid token noid@contoso.com
expect noid 77 err "no managed identity is assigned to this host (the instance metadata service (IMDS) answered: Identity not found)" \
	"no identity assigned to the host"
run noid-test test noid@contoso.com --no-login --no-cache
expect noid-test 77 out "no managed identity is assigned to this host" \
	"test explains the missing identity"
: > "$T/msid.control"
run unknown token unknown@contoso.com
expect unknown 77 err "no managed identity with client id $UNKNOWN_ID is assigned to this host" \
	"an unknown user-assigned client id"
printf '{"mode": "arc_realm_outside"}\n' > "$T/msid.control"
run outside token arcfault@contoso.com
expect outside 69 err "named the key file $T/outside/" \
	"Arc: a realm outside the key directory is refused"
check "Arc: the outside key was not sent" sh -c "! grep -q 'arcfault.*bad-key' '$T/msid.log' &&
	[ \$(grep -c 'result=bad-key' '$T/msid.log') = 0 ]"
printf '{"mode": "arc_key_big"}\n' > "$T/msid.control"
rm -rf "$T/cache"
run big token arcfault@contoso.com
expect big 78 err "holds 5043 bytes; a key is 1 to 4096" \
	"Arc: a key file over 4 KB is refused"
: > "$T/msid.control"
printf '{"mode": "503", "count": 1}\n' > "$T/msid.control"
rm -rf "$T/cache"
run retry token imds@contoso.com
expect retry 0 err "refused the token request (HTTP 503): service_unavailable: busy; retrying in 1 s" \
	"a transient refusal (503) is retried once, after Retry-After"
check "503, then a token" sh -c "tail -n 2 '$T/msid.log' | grep -q 'result=503' &&
	tail -n 1 '$T/msid.log' | grep -q 'result=ok'"
printf '{"mode": "503"}\n' > "$T/msid.control"
rm -rf "$T/cache"
run busy token imds@contoso.com
expect busy 75 err "refused the token request (HTTP 503)" "503 twice: a transient failure, said so"
: > "$T/msid.control"
n=$(wc -l < "$T/msid.log")
run farname token farname@contoso.com
expect farname 78 err "is plain http:// but its address 192.0.2.1 is neither loopback nor link-local" \
	"http:// to a name whose address is not local: refused before connecting"
check "nothing reached the stand-in for the refused rows" [ "$(wc -l < "$T/msid.log")" = "$n" ]

# --- nothing secret anywhere: the header, the Arc keys, the tokens
for f in "$O"/*.out "$O"/*.err "$T/imtest.out" "$T/mbsync.out" "$T/msid.log"; do
	if grep -qF "$HEADER" "$f"; then fail "the identity header appears in $f"; fi
done
pass "the App Service header appears in no output or log"
grep '^token ' "$T/msid.record" | cut -d' ' -f2 | cut -c1-60 > "$T/tokens"
check "no token appears in the command's messages" \
	sh -c "! cat '$O'/*.err | grep -qF -f '$T/tokens'"
finish
