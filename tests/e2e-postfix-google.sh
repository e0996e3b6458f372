#!/bin/sh
# Postfix for real with a Google Workspace service account (issue 14):
# the private, chrooted Postfix of e2e-postfix (tests/postfix.sh) relays
# two messages, one from each of two mailboxes of one domain, through
# Dovecot submission, which takes a token for its own mailbox only
# ("email" claim, whole address, as in e2e-google). With
# smtp_sender_dependent_authentication and a password map keyed by
# sender, each message logs in (XOAUTH2) as its sender, through one
# service_account_file account: the plugin reads the key file when the
# smtp process initialises libsasl2, before the chroot, and gets one
# token per mailbox from the stand-in for Google's token endpoint
# (tests/googled.py), never one mailbox's token for the other. Nothing
# secret (key, assertion, token) is in Postfix's log.
set -eu
. "$(dirname "$0")/lib.sh"
. "$here/postfix.sh"

DOM=example.org
G1=alice@$DOM G2=bob@$DOM
RELAY=100000000000000000001	# the service account's client id
KID=6f1c0ffee0123456789abcdef0123456789abcde
MAIL=https://mail.google.com/
ID="e2e-postfix-google-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"

make_ca
make_issuer
mkdir -p "$T/etc"
# The service account's key; the stand-in knows its public half.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/relay.key" 2>/dev/null
openssl pkey -in "$T/relay.key" -pubout -out "$T/relay.pub" 2>/dev/null
cat > "$T/googled.json" <<JSON
{ "issuer_key": "$T/issuer.key", "kid": "k1", "record": "$T/googled.record",
  "mailboxes": ["$G1", "$G2"],
  "clients": {
    "$RELAY": { "email": "relay@mail-relay-4711.iam.gserviceaccount.com",
                "keys": { "$KID": "$T/relay.pub" },
                "scopes": ["$MAIL"], "domains": ["$DOM"] } } }
JSON
serve googled "$PYTHON3" "$here/googled.py" --config "$T/googled.json" \
	--cert "$T/server.pem" --key "$T/server.key" --port-file "$T/googled.port" \
	--log "$T/googled.log" --control "$T/googled.control"
GPORT=$SERVED_PORT
: > "$T/googled.log"
# The key file as Google Cloud makes it, private to its owner (root).
( umask 077; "$PYTHON3" - "$T/relay.key" "$RELAY" "$KID" "$GPORT" > "$T/etc/relay.json" <<'PY'
import json, sys
key, cid, kid, port = sys.argv[1:]
print(json.dumps({
    "type": "service_account", "project_id": "mail-relay-4711",
    "private_key_id": kid, "private_key": open(key).read(),
    "client_email": "relay@mail-relay-4711.iam.gserviceaccount.com",
    "client_id": cid,
    "auth_uri": "https://accounts.google.com/o/oauth2/auth",
    "token_uri": "https://127.0.0.1:%s/token" % port,
    "universe_domain": "googleapis.com"}, indent=2))
PY
)
# the key's base64 lines: none of them may appear anywhere
sed -n '/^[A-Za-z0-9+\/=]\{40,\}$/p' "$T/relay.key" > "$T/needles"
rm -f "$T/relay.key"

RELAY_PORT=$(free_port)
SMTPD_PORT=$(free_port)
SUBMISSION_RELAY_PORT=$RELAY_PORT DOVECOT_USERNAME_ATTRIBUTE=email \
	DOVECOT_USERNAME_FORMAT=%Lu start_dovecot
TOKEND_PORT=1	# no Entra stand-in: write_config's contoso account is unused
write_config ",
	{ match = \"*@$DOM\";
	  service_account_file = \"$T/etc/relay.json\"; }"
# The cache path as the chrooted smtp process sees it.
sed -i -e "s|^\tcache_dir = .*|\tcache_dir = \"/var/cache/sasl-oauth2\";|" "$CONF"

# --- the Postfix instance: each sender logs in as itself ----------------
pf_setup relay.example.test "$SMTPD_PORT" "$RELAY_PORT"
cat >> "$C/main.cf" <<CF
smtp_sender_dependent_authentication = yes
smtp_sasl_password_maps = inline:{ $G1=$G1, $G2=$G2 }
virtual_mailbox_maps = inline:{ $G1=$DOM/alice/, $G2=$DOM/bob/ }
CF
pf_start

# alice writes to bob and bob to alice.
pf_send "$G1" "$G2" "$ID-alice" "from alice"
pf_send "$G2" "$G1" "$ID-bob" "from bob"
arrived() { grep -qs "^Subject: $ID-$1\$" "$T/mail/$DOM/$2/new/"*; }
check "$G1's message arrives in $G2's mailbox" wait_for 90 arrived alice bob
check "$G2's message arrives in $G1's mailbox" wait_for 90 arrived bob alice
check "through Dovecot's authenticated submission (ESMTPSA)" sh -c \
	"grep -qs 'by mail.contoso.test with ESMTPSA' '$T/mail/$DOM/bob/new/'* &&
	 grep -qs 'by mail.contoso.test with ESMTPSA' '$T/mail/$DOM/alice/new/'*"
check "Postfix relayed both through Dovecot submission" \
	[ "$(grep -c "relay=127.0.0.1\[127.0.0.1\]:$SUBMISSION_PORT.*status=sent" "$P/maillog")" = 2 ]
for u in "$G1" "$G2"; do
	check "Dovecot logged $u's XOAUTH2 login" \
		grep -q "submission-login: Info: Login: user=<$u>, method=XOAUTH2" "$T/dovecot/log"
done
# A token for one mailbox sent for the other would be refused (its
# email claim is not the login name) and the message deferred.
check "Dovecot refused no login" sh -c "! grep -Eq 'auth failed|Authentication failed' '$T/dovecot/log'"
check "Postfix deferred nothing" sh -c "! grep -q 'status=deferred' '$P/maillog'"

# --- one token per mailbox, each the mailbox's own -----------------------
greq() { grep -c "sub=$1 result=${2:-ok}" "$T/googled.log" || true; }
check "one token request for $G1" [ "$(greq "$G1")" = 1 ]
check "one token request for $G2" [ "$(greq "$G2")" = 1 ]
check "two token requests in all, none refused" sh -c \
	"[ \$(wc -l < '$T/googled.log') = 2 ] && [ \$(grep -c 'result=ok' '$T/googled.log') = 2 ]"
# The stand-in's record: the assertions' sub and the tokens' email.
claims() { # claims KIND CLAIM: that claim of every KIND in the record, sorted
	"$PYTHON3" - "$T/googled.record" "$1" "$2" <<'PY'
import base64, json, sys
path, kind, claim = sys.argv[1:]
out = []
for line in open(path):
    k, _, v = line.strip().partition(" ")
    if k == kind:
        p = v.split(".")[1]
        out.append(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))[claim])
print(" ".join(sorted(out)))
PY
}
check "the assertions were signed for $G1 and $G2, once each" \
	[ "$(claims assertion sub)" = "$G1 $G2" ]
check "the tokens were issued for $G1 and $G2, once each" \
	[ "$(claims token email)" = "$G1 $G2" ]
check "two cache files in the chroot, one per mailbox, owned by postfix" sh -c \
	"[ \$(ls '$Q/var/cache/sasl-oauth2/' | grep -c '\.token\$') = 2 ] &&
	 [ -z \"\$(find '$Q/var/cache/sasl-oauth2' -name '*.token' ! -user postfix)\" ]"

# --- the key file was read before the chroot -----------------------------
pf_chrooted "the key file" "$T/etc/relay.json" -F -e 'PRIVATE KEY' -e private_key

# --- nothing secret in Postfix's log or the mail --------------------------
{
	sed -n 's/^assertion //p' "$T/googled.record"
	sed -n 's/^assertion .*\.\([^.]*\)$/\1/p' "$T/googled.record"
	sed -n 's/^token //p' "$T/googled.record"
	sed -n 's/^token .*\.\([^.]*\)$/\1/p' "$T/googled.record"
} | grep -v '^$' >> "$T/needles"
check "the needles: the key's lines, 2 assertions, 2 tokens" \
	[ "$(grep -c . "$T/needles")" -gt 8 ]
pf_no_secret "no private key, assertion or token in Postfix's log or the delivered mail" "$T/needles"
check "no private key in Postfix's log" sh -c "! grep -q 'PRIVATE KEY' '$P/maillog'"
pf_finish
