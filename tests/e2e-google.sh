#!/bin/sh
# Google Workspace service accounts with domain-wide delegation (issue
# 14), against a strict stand-in for Google's token endpoint
# (tests/googled.py) and a Dovecot that takes a token for its own
# mailbox only ("email" claim, whole address): logins of two mailboxes
# of one domain through imtest (XOAUTH2, OAUTHBEARER) and mbsync, one
# token request per mailbox and never one mailbox's token for another,
# the set-up mistakes Google answers as sentences, the key file's checks,
# and `sasl-oauth2 test` walking the set-up.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || { echo "tool not built: $TOOL"; exit 99; }

DOM=example.org
G1=alice@$DOM G2=bob@$DOM
RELAY=100000000000000000001	# client id with delegation for mail
NODELEG=100000000000000000002	# a service account not delegated
GONE=100000000000000000003	# a disabled service account
MAIL=https://mail.google.com/
ADMIN=https://www.googleapis.com/auth/gmail.imap_admin

make_ca
make_issuer
mkdir -p "$T/etc"
# gsa_key NAME CLIENT_ID KID [ACCOUNT]: a key (PKCS#8) of service
# account ACCOUNT (default NAME) and its key file as Google Cloud makes
# it (token_uri set once the stand-in's port is known); the public half
# in $T/NAME.pub for the stand-in.
gsa_key() {
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/$1.key" 2>/dev/null
	openssl pkey -in "$T/$1.key" -pubout -out "$T/$1.pub" 2>/dev/null
	( umask 077; "$PYTHON3" - "$T/$1.key" "$2" "$3" "${4:-$1}" "${GPORT:-1}" > "$T/etc/$1.json" <<'PY'
import json, sys
key, cid, kid, name, port = sys.argv[1:]
print(json.dumps({
    "type": "service_account", "project_id": "mail-relay-4711",
    "private_key_id": kid, "private_key": open(key).read(),
    "client_email": "%s@mail-relay-4711.iam.gserviceaccount.com" % name,
    "client_id": cid,
    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": "https://127.0.0.1:%s/token" % port,
    "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
    "universe_domain": "googleapis.com"}, indent=2))
PY
	)
	rm -f "$T/$1.key"
}
gsa_key relay "$RELAY" 6f1c0ffee0123456789abcdef0123456789abcde
gsa_key nodeleg "$NODELEG" 11aa
gsa_key gone "$GONE" 22bb
gsa_key rotated "$RELAY" 33cc relay	# a key of relay that Google no longer has
cat > "$T/googled.json" <<JSON
{ "issuer_key": "$T/issuer.key", "kid": "k1", "record": "$T/googled.record",
  "mailboxes": ["$G1", "$G2", "carol@$DOM", "dave@$DOM", "erin@$DOM", "frank@$DOM"],
  "clients": {
    "$RELAY": { "email": "relay@mail-relay-4711.iam.gserviceaccount.com",
                "keys": { "6f1c0ffee0123456789abcdef0123456789abcde": "$T/relay.pub" },
                "scopes": ["$MAIL", "$ADMIN"], "domains": ["$DOM"] },
    "$NODELEG": { "email": "nodeleg@mail-relay-4711.iam.gserviceaccount.com",
                  "keys": { "11aa": "$T/nodeleg.pub" }, "scopes": [], "domains": ["$DOM"] },
    "$GONE": { "email": "gone@mail-relay-4711.iam.gserviceaccount.com",
               "keys": { "22bb": "$T/gone.pub" }, "scopes": ["$MAIL"], "domains": ["$DOM"],
               "disabled": true } } }
JSON
serve googled "$PYTHON3" "$here/googled.py" --config "$T/googled.json" \
	--cert "$T/server.pem" --key "$T/server.key" --port-file "$T/googled.port" \
	--log "$T/googled.log" --control "$T/googled.control"
GPORT=$SERVED_PORT
: > "$T/googled.log"
# the key files again, now that the stand-in's port is known
for k in relay nodeleg gone rotated; do
	"$PYTHON3" - "$T/etc/$k.json" "$GPORT" <<'PY'
import json, os, sys
path, port = sys.argv[1:]
d = json.load(open(path))
d["token_uri"] = "https://127.0.0.1:%s/token" % port
fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(d, indent=2).encode())
os.close(fd)
os.rename(path + ".new", path)
PY
done
DOVECOT_USERNAME_ATTRIBUTE=email DOVECOT_USERNAME_FORMAT=%Lu start_dovecot

TOKEND_PORT=1	# no Entra stand-in here: write_config's contoso account is unused
# The config: Google accounts only (write_config's Entra account too,
# for another domain, is left as it is).
write_config ",
	{ match = \"*@$DOM\";
	  service_account_file = \"$T/etc/relay.json\"; },
	{ match = \"frank@$DOM\";
	  service_account_file = \"$T/etc/relay.json\";
	  scope = \"$ADMIN\"; },
	{ match = \"carol@$DOM\";
	  service_account_file = \"$T/etc/nodeleg.json\"; },
	{ match = \"dave@$DOM\";
	  service_account_file = \"$T/etc/rotated.json\"; },
	{ match = \"erin@$DOM\";
	  service_account_file = \"$T/etc/gone.json\"; }"
greq() { grep -c "sub=$1 result=${2:-ok}" "$T/googled.log" || true; }

# --- check-config ------------------------------------------------------
run cc check-config
expect cc 0 out "service account relay@mail-relay-4711.iam.gserviceaccount.com" \
	"check-config: the service account is named"
expect cc 0 out "client id $RELAY" "check-config: with the client id the Admin console needs"

# --- imtest, both mechanisms, two mailboxes ----------------------------
for u in "$G1" "$G2"; do
	for mech in XOAUTH2 OAUTHBEARER; do
		if imtest_ok "$u" "$mech"; then
			pass "imtest $mech logs in as $u"
		else
			fail "imtest $mech logs in as $u"; tail -n 5 "$T/imtest.out"
		fi
		check "Dovecot logged $u's $mech login" \
			grep -q "Login: user=<$u>, method=$mech" "$T/dovecot/log"
	done
done
check "one token request per mailbox, no more ($G1)" [ "$(greq "$G1")" = 1 ]
check "one token request per mailbox, no more ($G2)" [ "$(greq "$G2")" = 1 ]
check "two cache files, one per mailbox" \
	[ "$(find "$T/cache" -name '*.token' | wc -l)" = 2 ]

# --- a token is its mailbox's ------------------------------------------
run t1 token "$G1"
run t2 token "$G2"
expect t1 0 out "." "token $G1"
expect t2 0 out "." "token $G2"
check "two mailboxes, two different tokens" \
	sh -c "! cmp -s '$O/t1.out' '$O/t2.out'"
email_of() { # the email claim of the token in file $1
	"$PYTHON3" -c 'import base64,json,sys; t=open(sys.argv[1]).read().split(".")[1]; print(json.loads(base64.urlsafe_b64decode(t+"="*(-len(t)%4)))["email"])' "$1"
}
check "$G1's token names $G1" [ "$(email_of "$O/t1.out")" = "$G1" ]
check "$G2's token names $G2" [ "$(email_of "$O/t2.out")" = "$G2" ]
run t1u token "ALICE@$DOM"
check "the mailbox's case does not make another token" cmp -s "$O/t1.out" "$O/t1u.out"
run t1j token --json "$G1"
expect t1j 0 out "\"account\": \"*@$DOM\"" "token --json: the account is the file's"
expect t1j 0 out "\"mailbox\": \"$G1\"" "token --json: the mailbox"
check "still one token request per mailbox" [ "$(greq "$G1")$(greq "$G2")" = 11 ]
# the memory cache of one process: saslclient logs in twice per mailbox
for u in "$G1" "$G2"; do
	saslclient -m XOAUTH2 -u "$u" -n 2 -p > "$O/sc-$u.out" 2>&1 || true
done
check "saslclient sends $G1's token as $G1" grep -q "^initial:" "$O/sc-$G1.out"
sc_token() { sed -n 's/^initial: //p' "$1" | head -n 1 | base64 -d | tr '\001' '\n' | sed -n 's/^auth=Bearer //p'; }
check "saslclient: $G1's login carries $G1's token" [ "$(sc_token "$O/sc-$G1.out")" = "$(cat "$O/t1.out")" ]
check "saslclient: $G2's login carries $G2's token" [ "$(sc_token "$O/sc-$G2.out")" = "$(cat "$O/t2.out")" ]

# --- cache list, per mailbox --------------------------------------------
run cl cache list "$G2"
expect cl 0 out "expires" "cache list MAILBOX: that mailbox's token"
check "cache list MAILBOX: names the mailbox" grep -q "^$G2 " "$O/cl.out"
run cla cache list
expect cla 0 out "one token per mailbox: name the mailbox" "cache list: per mailbox, says so"

# --- mbsync ------------------------------------------------------------
for u in "$G1" "$G2"; do
	if mbsync_run XOAUTH2 "$u"; then
		pass "mbsync syncs $u's INBOX"
	else
		fail "mbsync syncs $u's INBOX"; cat "$T/mbsync.out"
	fi
done
check "mbsync asked for no new token" [ "$(greq "$G1")$(greq "$G2")" = 11 ]

# --- the tunnel: a pre-authenticated IMAP session as the mailbox --------
printf 'a LOGOUT\r\n' | timeout $((60 * SLOW)) $VALGRIND "$TOOL" tunnel --ca-file "$T/ca.pem" \
	imap "$G2" "127.0.0.1:$IMAPS_PORT" > "$O/tun.out" 2> "$O/tun.err" || true
check "tunnel: a PREAUTH session as $G2" grep -q "PREAUTH" "$O/tun.out"
check "Dovecot logged the tunnel's login as $G2" \
	[ "$(grep -c "Login: user=<$G2>, method=XOAUTH2" "$T/dovecot/log")" -ge 3 ]
check "tunnel: the cached token, no new request" [ "$(greq "$G2")" = 1 ]

# --- the gmail.imap_admin scope -----------------------------------------
run frank token "frank@$DOM"
expect frank 0 out "." "scope gmail.imap_admin: a token"
check "googled saw the imap_admin scope for frank" grep -q "sub=frank@$DOM result=ok" "$T/googled.log"

# --- what Google refuses, as sentences ----------------------------------
run carol token "carol@$DOM"
expect carol 77 err "domain-wide delegation" "no delegation for the client id: a sentence"
expect carol 77 err "client id $NODELEG" "no delegation: names the client id"
expect carol 77 err "$MAIL" "no delegation: names the scope"
expect carol 77 err "Domain-wide delegation" "no delegation: the Admin console path"
run nobody token "nobody@$DOM"
expect nobody 77 err "no mailbox nobody@$DOM" "an unknown mailbox: a sentence"
run dave token "dave@$DOM"
expect dave 77 err "deleted or rotated" "a deleted or rotated key: a sentence"
run erin token "erin@$DOM"
expect erin 77 err "disabled or deleted" "a disabled service account: a sentence"
printf '{"mode": "clock_skew"}\n' > "$T/googled.control"
run skew test --no-login --no-cache "$G1"
rm -f "$T/googled.control"
expect skew 77 out "clock is off" "clock skew: a sentence"
expect skew 77 out "synchronise the clock" "clock skew: the fix"

# --- the key file and the scope, checked at load ------------------------
bad_conf() { # bad_conf NAME ACCOUNT-SETTINGS: a config with one account
	cat > "$T/etc/$1.conf" <<CONF
version = 1;
defaults = { ca_file = "$T/ca.pem"; };
accounts = ( { match = "*@$DOM"; $2 } );
CONF
	chmod 600 "$T/etc/$1.conf"
	run "$1" -c "$T/etc/$1.conf" check-config
}
bad_conf badscope "service_account_file = \"$T/etc/relay.json\"; scope = \"https://www.googleapis.com/auth/gmail.readonly\";"
expect badscope 78 err "scope" "a scope other than mail's is refused"
bad_conf tenant "service_account_file = \"$T/etc/relay.json\"; tenant = \"x\";"
expect tenant 78 err "tenant" "tenant is refused for a service account"
"$PYTHON3" - "$T/etc/relay.json" "$T/etc/noemail.json" <<'PY'
import json, os, sys
d = json.load(open(sys.argv[1])); del d["client_email"]
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, json.dumps(d).encode()); os.close(fd)
PY
bad_conf noemail "service_account_file = \"$T/etc/noemail.json\";"
expect noemail 78 err "$T/etc/noemail.json has no \"client_email\"" "a key file without client_email: field and file named"
cp "$T/etc/relay.json" "$T/etc/open.json"; chmod 644 "$T/etc/open.json"
bad_conf open "service_account_file = \"$T/etc/open.json\";"
expect open 78 err "chmod 600 $T/etc/open.json" "a readable key file is refused"

# --- sasl-oauth2 test walks the set-up ----------------------------------
run test1 test "$G1" --imap "imaps://127.0.0.1:$IMAPS_PORT" --ca-file "$T/ca.pem"
expect test1 0 out "service account relay@mail-relay-4711.iam.gserviceaccount.com" "test: names the service account"
expect test1 0 out "OK    IMAP login" "test: the IMAP login works"
run test3 test "carol@$DOM" --no-login
expect test3 77 out "Domain-wide delegation" "test: no delegation, and where to grant it"

# --- nothing secret in any output ---------------------------------------
leaks=0
while read -r kind value; do
	[ "$kind" = assertion ] || continue
	if grep -rqF -- "$value" "$O" "$T/dovecot/log" 2>/dev/null; then leaks=$((leaks + 1)); fi
done < "$T/googled.record"
check "no assertion in any output" [ "$leaks" = 0 ]
check "no private key in any output" sh -c "! grep -rq 'PRIVATE KEY' '$O'"
finish
