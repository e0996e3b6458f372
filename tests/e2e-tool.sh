#!/bin/sh
# The sasl-oauth2 command against the local Entra stand-in and a real
# Dovecot (IMAPS and submission): every subcommand, every failure that
# `test` diagnoses, the exit codes, and that no secret (and, outside
# `token`, no token) ever reaches the output.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || { echo "tool not built: $TOOL"; exit 99; }

# An account for a certificate credential (exact match beats *@domain).
CERT_BLOCK=",
	{ match = \"certuser@contoso.com\";
	  tenant = \"$TENANT\";
	  client_id = \"$CERT_CLIENT\";
	  certificate = \"$T/app.crt\";
	  private_key = \"$T/app.key\"; }"
# The app's certificate, made before the test bed registers it with the
# Entra stand-in: valid for 400 days (30 would sit on the expiry warning).
openssl req -x509 -newkey rsa:2048 -nodes -days 400 -subj "/CN=sasl-oauth2 e2e app" \
	-keyout "$T/app.key" -out "$T/app.crt" 2>/dev/null
chmod 600 "$T/app.key"
# A certificate Azure does not know, expiring in 10 days.
openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj "/CN=unknown" \
	-keyout "$T/other.key" -out "$T/other.crt" 2>/dev/null
chmod 600 "$T/other.key"
testbed "$CERT_BLOCK"
n=0
IMAP="127.0.0.1:$IMAPS_PORT"
SMTP="127.0.0.1:$SUBMISSION_PORT"

# --- usage ------------------------------------------------------------
run help --help
expect help 0 out "sasl-oauth2 [-v] [-c FILE] token [--json] USER" "--help: usage on stdout, exit 0"
run version --version
expect version 0 out "sasl-oauth2 " "--version, exit 0"
run noargs
expect noargs 64 err "no command given" "no command: EX_USAGE (64)"
run badcmd frobnicate
expect badcmd 64 err 'unknown command "frobnicate"' "unknown command: 64"
run badopt token --frob "$USER1"
expect badopt 64 err "unknown option --frob" "unknown option: 64"
run tokennouser token
expect tokennouser 64 err "token takes one mailbox" "token without a mailbox: 64"
run jsonmisuse test --json "$USER1"
expect jsonmisuse 64 err "--json goes with token" "--json outside token: 64"
run badimap test "$USER1" --imap "imap://a b"
expect badimap 64 err "--imap takes" "a malformed --imap: 64"

# --- check-config -----------------------------------------------------
run cc check-config
expect cc 0 out "OK    *@contoso.com  tenant $TENANT  client $CLIENT  secret file $T/etc/contoso.secret" \
	"check-config: one OK line for the secret account"
fp=$(openssl x509 -in "$T/app.crt" -noout -fingerprint -sha1 | sed 's/.*=//; s/://g')
expect cc 0 out "OK    certuser@contoso.com  tenant $TENANT  client $CERT_CLIENT  certificate $T/app.crt thumbprint $fp PS256 expires" \
	"check-config: a line for the certificate account, with its thumbprint"
check "check-config: exactly one line per account" [ "$(wc -l < "$O/cc.out")" = 2 ]
check "check-config: nothing on stderr" [ ! -s "$O/cc.err" ]
sed "s|$T/app.crt|$T/other.crt|; s|$T/app.key|$T/other.key|" "$CONF" > "$T/etc/other.conf"
chmod 600 "$T/etc/other.conf"
run ccsoon -c "$T/etc/other.conf" check-config
expect ccsoon 0 out "WARN  certuser@contoso.com" "check-config: a certificate expiring in 10 days is a WARN, exit 0"
expect ccsoon 0 out "the certificate expires soon" "check-config: and says what to do"
sed 's/refresh_margin = /refresh_marjin = /' "$CONF" > "$T/etc/broken.conf"
chmod 600 "$T/etc/broken.conf"
run ccbroken -c "$T/etc/broken.conf" check-config
expect ccbroken 78 err "$T/etc/broken.conf:6: unknown key \"refresh_marjin\" in defaults" \
	"check-config -c: a broken file gives file:line: sentence, EX_CONFIG (78)"
check "check-config: a broken file prints no verdict on stdout" [ ! -s "$O/ccbroken.out" ]
chmod 644 "$T/etc/contoso.secret"
run ccperm check-config
expect ccperm 78 err "client_secret_file: secret file $T/etc/contoso.secret is accessible by group or others" \
	"check-config: a world-readable secret file, 78"
chmod 600 "$T/etc/contoso.secret"
run ccmissing -c "$T/etc/nosuch.conf" check-config
expect ccmissing 78 err "cannot open configuration file $T/etc/nosuch.conf" "check-config: a missing file, 78"

# --- token ------------------------------------------------------------
run tok1 token "$USER1"
TOKEN=$(cat "$O/tok1.out")
check "token: exit 0" [ "$(rc tok1)" = 0 ]
check "token: stdout holds one JWT and nothing else" \
	sh -c "[ \$(wc -l < '$O/tok1.out') = 1 ] && grep -Eqx '[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+' '$O/tok1.out'"
check "token: nothing on stderr" [ ! -s "$O/tok1.err" ]
check "token: one token request" [ "$(token_requests)" = 1 ]
run tok2 token "Other@Contoso.com"
check "token: a second call prints the same token from the cache" \
	sh -c "[ \"\$(cat '$O/tok2.out')\" = '$TOKEN' ] && [ $(token_requests) = 1 ]"
run tokjson token --json "$USER1"
check "token --json: token, expiry and the matching account" \
	"$PYTHON3" -c "
import json, sys, time
d = json.load(open('$O/tokjson.out'))
assert d['access_token'] == '$TOKEN', 'token'
assert d['account'] == '*@contoso.com' and d['mailbox'] == '$USER1', 'account'
assert isinstance(d['expires_at'], int) and d['expires_at'] > time.time() + 3000, 'expiry'
assert 3000 < d['expires_in'] <= 3600, 'expires_in'
"
run toknouser token someone@fabrikam.com
expect toknouser 67 err "no account in $CONF matches mailbox someone@fabrikam.com" \
	"token: no matching account, EX_NOUSER (67)"
check "token: nothing on stdout on failure" [ ! -s "$O/toknouser.out" ]

# --- test: the good path, IMAP and SMTP -------------------------------
run testok test "$USER1" --imap "$IMAP" --smtp "$SMTP" --ca-file "$T/ca.pem"
expect testok 0 out "OK    config $CONF: account \"*@contoso.com\" (line 11) matches $USER1" \
	"test: config and account match"
expect testok 0 out "OK    credential: client secret for client $CLIENT" "test: credential loaded"
expect testok 0 out "OK    token: from the cache" "test: token obtained (through the cache)"
expect testok 0 out "      tenant    $TENANT_ID" "test: decoded claims: tenant"
expect testok 0 out "      app id    $CLIENT" "test: decoded claims: app id"
expect testok 0 out "      roles     IMAP.AccessAsApp SMTP.SendAsApp" "test: decoded claims: roles"
expect testok 0 out "      audience  https://outlook.office.com" "test: decoded claims: audience"
expect testok 0 out "OK    IMAP login as $USER1 at $IMAP (implicit TLS)" "test --imap: a real IMAPS login"
expect testok 0 out "OK    SMTP login as $USER1 at $SMTP (STARTTLS)" \
	"test --smtp: a real submission login (STARTTLS, token after the 334)"
check "Dovecot logged both XOAUTH2 logins" sh -c \
	"grep -q 'imap-login: Info: Login: user=<$USER1>, method=XOAUTH2' '$T/dovecot/log' &&
	 grep -q 'submission-login: Info: Login: user=<$USER1>, method=XOAUTH2' '$T/dovecot/log'"
check "test: no FAIL or WARN line" sh -c "! grep -Eq '^(FAIL|WARN)' '$O/testok.out'"

run testcert test certuser@contoso.com --imap "imaps://$IMAP" --ca-file "$T/ca.pem" --no-cache
expect testcert 0 out "thumbprint $fp, expires" "test: a certificate credential shows its thumbprint"
expect testcert 0 out "OK    token: new from the token endpoint" "test --no-cache: asks the endpoint"
expect testcert 0 out "OK    IMAP login as certuser@contoso.com" "test: certificate credential, real login"

run testnotls test "$USER1" --imap "$IMAP"
expect testnotls 69 out "--ca-file FILE (verification is never switched off)" \
	"test: an unknown server CA fails verification, EX_UNAVAILABLE (69)"

# --- test: every failure it diagnoses ---------------------------------
printf 'not-the-secret\n' > "$T/etc/contoso.secret"
run wrongsecret test "$USER1" --imap "$IMAP" --ca-file "$T/ca.pem"
expect wrongsecret 77 out "FAIL  token from https://127.0.0.1:$TOKEND_PORT/$TENANT/oauth2/v2.0/token: token request refused (HTTP 401): invalid_client: AADSTS7000215" \
	"wrong secret: FAIL with AADSTS7000215, EX_NOPERM (77)"
expect wrongsecret 77 out "likely cause: the client secret is wrong" "wrong secret: the likely cause"
expect wrongsecret 77 out "fix: in the app registration, Certificates & secrets, create a new client secret" \
	"wrong secret: the fix"
check "wrong secret: no login attempted" sh -c "! grep -q 'login as' '$O/wrongsecret.out'"
run wrongsecrettok token "$USER1"
expect wrongsecrettok 77 err "AADSTS7000215" "token with a wrong secret: one sentence on stderr, 77"
check "token with a wrong secret: nothing on stdout" [ ! -s "$O/wrongsecrettok.out" ]

printf 'expired-secret\n' > "$T/etc/contoso.secret"
run expired test "$USER1" --no-login
expect expired 77 out "likely cause: the client secret has expired" "expired secret: AADSTS7000222 diagnosed"
printf '%s\n' "$SECRET" > "$T/etc/contoso.secret"

sed -i "s/tenant = \"$TENANT\"/tenant = \"nosuch.onmicrosoft.com\"/" "$CONF"
run tenant test "$USER1" --no-login
expect tenant 77 out "AADSTS90002" "unknown tenant: AADSTS90002"
expect tenant 77 out "likely cause: tenant nosuch.onmicrosoft.com does not exist" "unknown tenant: the likely cause"
sed -i "s/tenant = \"nosuch.onmicrosoft.com\"/tenant = \"$TENANT\"/" "$CONF"

sed -i "s/client_id = \"$CLIENT\"/client_id = \"00000000-0000-0000-0000-00000000dead\"/" "$CONF"
run app test "$USER1" --no-login
expect app 77 out "likely cause: no application 00000000-0000-0000-0000-00000000dead in tenant $TENANT" \
	"unknown application: AADSTS700016 diagnosed"
sed -i "s/client_id = \"00000000-0000-0000-0000-00000000dead\"/client_id = \"$CLIENT\"/" "$CONF"

# A certificate Azure does not know: AADSTS700027.
run thumbunknown -c "$T/etc/other.conf" test certuser@contoso.com --no-login
expect thumbunknown 77 out "AADSTS700027" "unknown certificate: AADSTS700027"
expect thumbunknown 77 out "likely cause: Azure does not know this certificate's thumbprint" \
	"unknown certificate: the thumbprint diagnosis"

# The endpoint cannot be reached: a transient failure.
sed "s|https://127.0.0.1:$TOKEND_PORT|https://127.0.0.1:1|" "$CONF" > "$T/etc/down.conf"
chmod 600 "$T/etc/down.conf"
run down -c "$T/etc/down.conf" test "$USER1" --no-login --no-cache
expect down 75 out "likely cause: the token endpoint cannot be reached" "endpoint down: EX_TEMPFAIL (75)"

run testnouser test someone@fabrikam.com --no-login
expect testnouser 67 out "FAIL  config $CONF: no account matches mailbox someone@fabrikam.com" \
	"test: no matching account, 67"

# Dovecot refuses a valid token: the token is for contoso.com, the
# mailbox is not (as Exchange refuses a service principal it does not know).
write_config "$CERT_BLOCK,
	{ match = \"*@fabrikam.com\";
	  tenant = \"$TENANT\";
	  client_id = \"$CLIENT\";
	  client_secret_file = \"$T/etc/contoso.secret\"; }"
run refused test bob@fabrikam.com --imap "$IMAP" --smtp "$SMTP" --ca-file "$T/ca.pem"
expect refused 77 out "OK    token:" "refused login: the token itself is fine"
expect refused 77 out "FAIL  IMAP login as bob@fabrikam.com at $IMAP (implicit TLS): Login denied" \
	"refused login: IMAP FAIL, 77"
expect refused 77 out "FAIL  SMTP login as bob@fabrikam.com at $SMTP (STARTTLS): Login denied" \
	"refused login: SMTP FAIL"
expect refused 77 out "server's error challenge: status 401" "refused login: the server's challenge, decoded"
expect refused 77 out "service principal is probably not registered in Exchange Online" \
	"refused login: the service principal / mailbox permission diagnosis"
expect refused 77 out "New-ServicePrincipal" "refused login: the fix names New-ServicePrincipal"
expect refused 77 out "Add-MailboxPermission" "refused login: and Add-MailboxPermission"

# A token without the roles: a second Entra stand-in whose app has none.
cat > "$T/tokend2.json" <<JSON
{ "issuer_key": "$T/issuer.key", "kid": "k1",
  "tenants": { "norole.onmicrosoft.com": { "id": "99999999-2222-3333-4444-555555555555", "domain": "norole.com" } },
  "clients": { "$CLIENT": { "tenant": "norole.onmicrosoft.com", "secrets": ["$SECRET"], "roles": [] } } }
JSON
run_tokend tokend2 "$T/tokend2.json"
write_config ",
	{ match = \"*@norole.com\";
	  authority = \"https://127.0.0.1:$SERVED_PORT\";
	  tenant = \"norole.onmicrosoft.com\";
	  client_id = \"$CLIENT\";
	  client_secret_file = \"$T/etc/contoso.secret\"; }"
run noroles test x@norole.com --imap "$IMAP" --smtp "$SMTP" --ca-file "$T/ca.pem"
expect noroles 0 out "WARN  roles: the token lacks IMAP.AccessAsApp, which IMAP needs" \
	"missing role: warns about IMAP.AccessAsApp for --imap"
expect noroles 0 out "WARN  roles: the token lacks SMTP.SendAsApp, which SMTP needs" \
	"missing role: warns about SMTP.SendAsApp for --smtp"
expect noroles 0 out "add the application permission IMAP.AccessAsApp" "missing role: the fix"
expect noroles 0 out "      roles     (none)" "missing role: the claims show no roles"

# Exchange's "SMTP AUTH disabled": a small STARTTLS server answering 535 5.7.139.
cat > "$T/smtp535.py" <<'PY'
import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
with open(sys.argv[3] + ".tmp", "w") as f:
    f.write("%d\n" % srv.getsockname()[1])
import os
os.rename(sys.argv[3] + ".tmp", sys.argv[3])
while True:
    conn, _ = srv.accept()
    try:
        f = conn.makefile("rwb", buffering=0)
        def say(s):
            f.write(s.encode() + b"\r\n")
        say("220 fake.outlook.test Microsoft ESMTP MAIL Service ready")
        tls = False
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line.decode(errors="replace").strip().upper()
            if cmd.startswith("EHLO"):
                say("250-fake.outlook.test Hello")
                say("250-AUTH LOGIN XOAUTH2" if tls else "250-STARTTLS")
                say("250 8BITMIME")
            elif cmd == "STARTTLS" and not tls:
                say("220 2.0.0 SMTP server ready")
                conn = ctx.wrap_socket(conn, server_side=True)
                f = conn.makefile("rwb", buffering=0)
                tls = True
            elif cmd.startswith("AUTH XOAUTH2"):
                if cmd == "AUTH XOAUTH2":
                    say("334 ")
                    f.readline()
                say("535 5.7.139 Authentication unsuccessful, "
                    "SmtpClientAuthentication is disabled for the Tenant. "
                    "Visit https://aka.ms/smtp_auth_disabled for more information.")
            elif cmd == "QUIT":
                say("221 2.0.0 Bye")
                break
            else:
                say("500 5.3.3 Unrecognized command")
    except (OSError, ssl.SSLError):
        pass
    finally:
        conn.close()
PY
serve smtp535 "$PYTHON3" "$T/smtp535.py" "$T/server.pem" "$T/server.key" "$T/smtp535.port"
run smtpoff test "$USER1" --smtp "smtp://127.0.0.1:$SERVED_PORT" --ca-file "$T/ca.pem"
expect smtpoff 77 out "server: 535 5.7.139 Authentication unsuccessful" "SMTP AUTH disabled: the server's answer"
expect smtpoff 77 out "likely cause: SMTP AUTH (client submission) is disabled for the tenant" \
	"SMTP AUTH disabled: diagnosed, 77"
expect smtpoff 77 out "SmtpClientAuthenticationDisabled \$false" "SMTP AUTH disabled: the fix"

# --- test: what does the port speak? ----------------------------------
# A plaintext IMAP server (it greets at once, as on port 143) named by
# --imap HOST:PORT, which means implicit TLS: not "wrong version number"
# and advice about the CA, but what the port speaks.
cat > "$T/plainimap.py" <<'PY'
import os, socket, sys
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write("%d\n" % srv.getsockname()[1])
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
while True:
    conn, _ = srv.accept()
    try:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] plain IMAP ready\r\n")
        while conn.recv(4096):
            conn.sendall(b"* BAD what?\r\n")
    except OSError:
        pass
    conn.close()
PY
serve plainimap "$PYTHON3" "$T/plainimap.py" "$T/plainimap.port"
PLAIN="127.0.0.1:$SERVED_PORT"
run plainport test "$USER1" --imap "$PLAIN" --ca-file "$T/ca.pem"
expect plainport 69 out "likely cause: $PLAIN speaks plaintext IMAP (it greets with \"* OK [CAPABILITY IMAP4rev1 STARTTLS] plain IMAP ready\"), not implicit TLS" \
	"test --imap at a plaintext port: says it speaks plaintext IMAP, 69"
expect plainport 69 out "fix: for STARTTLS on this port use --imap imap://$PLAIN; for implicit TLS use port 993" \
	"test --imap at a plaintext port: the fix names imap:// and 993"
check "test --imap at a plaintext port: no advice about the CA" \
	sh -c "! grep -q 'ca-file' '$O/plainport.out'"
# Dovecot's IMAPS port (implicit TLS: it says nothing until the client's
# TLS hello) named by --smtp HOST:PORT, which means STARTTLS.
run tlsport test "$USER1" --smtp "$IMAP" --ca-file "$T/ca.pem"
expect tlsport 69 out "likely cause: $IMAP speaks TLS at once (implicit TLS): it sends no SMTP greeting before the TLS handshake" \
	"test --smtp at an implicit-TLS port: says it speaks TLS at once, 69"
expect tlsport 69 out "fix: use --smtp smtps://$IMAP, or port 587 for STARTTLS" \
	"test --smtp at an implicit-TLS port: the fix names smtps://"
check "test --smtp at an implicit-TLS port: not \"cannot be reached\"" \
	sh -c "! grep -q 'cannot be reached' '$O/tlsport.out'"
# The submission port (SMTP) named by --imap imap://: another protocol.
run smtpforimap test "$USER1" --imap "imap://$SMTP" --ca-file "$T/ca.pem"
expect smtpforimap 69 out "likely cause: $SMTP is not an IMAP server: it greets with \"220 mail.contoso.test" \
	"test --imap at an SMTP port: names the protocol it found"

# --- the error sentence goes to syslog when stderr is not a terminal --
# In a mount namespace whose /dev is ours: the null and random devices,
# and a datagram socket at /dev/log that records what it receives.
cat > "$T/syslogd.py" <<'PY'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2] + ".tmp", "w") as f:
    f.write("0\n")
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
with open(sys.argv[3], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536) + b"\n")
PY
mkdir -p "$T/dev/pts"
for d in null zero random urandom; do : > "$T/dev/$d"; done
ln -s pts/ptmx "$T/dev/ptmx"	# for script(1)'s pseudo-terminal
: > "$O/syslog"
# inns COMMAND...: run COMMAND in that namespace
inns() {
	unshare -m sh -c 'for d in null zero random urandom pts; do
		mount --bind /dev/$d "$0/dev/$d" || exit 98; done
		mount --rbind "$0/dev" /dev || exit 98; exec "$@"' "$T" "$@"
}
# mark NAME: send a marker to the recorder and wait until it is written:
# whatever was logged before it is in $O/syslog then (one socket, in order)
mark() {
	"$PYTHON3" -c 'import socket, sys
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.argv[2].encode(), sys.argv[1])' \
		"$T/dev/log" "mark $1"
	i=0
	while ! grep -qx "mark $1" "$O/syslog"; do
		i=$((i + 1)); [ $i -lt 600 ] || return 1
		sleep 0.1
	done
}
logged() { grep -vc '^mark ' "$O/syslog" || true; }
# logrun NAME ARGS...: as run, inside the namespace
logrun() {
	name=$1; shift
	set +e
	# shellcheck disable=SC2086
	inns timeout $((60 * SLOW)) $VALGRIND "$TOOL" "$@" > "$O/$name.out" 2> "$O/$name.err" </dev/null
	echo $? > "$O/$name.rc"
	set -e
}
logrun nsprobe --version
if [ "$(rc nsprobe)" = 0 ] && serve syslogd "$PYTHON3" "$T/syslogd.py" "$T/dev/log" "$T/syslogd.port" "$O/syslog"; then
	logrun lognouser token someone@fabrikam.com
	expect lognouser 67 err "no account in $CONF matches mailbox someone@fabrikam.com" \
		"syslog: the sentence on stderr as before"
	mark 1 || true
	check "syslog: the same sentence, facility mail, priority err, ident sasl-oauth2" \
		grep -q "^<19>.* sasl-oauth2\[[0-9]*\]: no account in $CONF matches mailbox someone@fabrikam.com\$" "$O/syslog"
	printf 'not-the-secret\n' > "$T/etc/contoso.secret"
	logrun logsecret token "$USER1"
	printf '%s\n' "$SECRET" > "$T/etc/contoso.secret"
	mark 2 || true
	check "syslog: Entra's refusal (AADSTS7000215) logged" grep -q "sasl-oauth2\[[0-9]*\]: .*AADSTS7000215" "$O/syslog"
	check "syslog: neither the wrong nor the right secret in it" \
		sh -c "! grep -qF -e not-the-secret -e '$SECRET' '$O/syslog'"
	n=$(logged)
	logrun logok token "$USER1"
	mark 3 || true
	check "syslog: a token printed logs nothing (and never the token)" \
		sh -c "[ $(rc logok) = 0 ] && [ $(logged) = $n ] && ! grep -qF -- \"\$(cat '$O/logok.out')\" '$O/syslog'"
	if command -v script > /dev/null 2>&1; then
		# stderr a terminal (script's pty): the user sees it, no syslog
		set +e
		inns script -qec "$TOOL token someone@fabrikam.com" /dev/null > "$O/logtty.out" 2>&1 </dev/null
		set -e
		mark 4 || true
		check "syslog: nothing logged when stderr is a terminal" \
			sh -c "grep -q 'no account in' '$O/logtty.out' && [ $(logged) = $n ]"
	fi
else
	echo "# syslog checks skipped: no private mount namespace here ($(cat "$O/nsprobe.err"))"
fi

# --- thumbprint -------------------------------------------------------
run thumb thumbprint "$T/app.crt"
x5t=$(openssl x509 -in "$T/app.crt" -outform DER | openssl dgst -sha1 -binary |
	openssl base64 -A | tr '+/' '-_' | tr -d '=')
x5t256=$(openssl x509 -in "$T/app.crt" -outform DER | openssl dgst -sha256 -binary |
	openssl base64 -A | tr '+/' '-_' | tr -d '=')
expect thumb 0 out "thumbprint  $fp" "thumbprint: SHA-1 hex as openssl -fingerprint (and Azure) shows it"
expect thumb 0 out "x5t         $x5t" "thumbprint: x5t"
expect thumb 0 out "x5t#S256    $x5t256" "thumbprint: x5t#S256"
run thumbmissing thumbprint "$T/nosuch.crt"
expect thumbmissing 66 err "cannot open certificate $T/nosuch.crt" "thumbprint: a missing file, EX_NOINPUT (66)"
run thumbbad thumbprint "$T/tokend.json"
expect thumbbad 65 err "holds no X.509 certificate" "thumbprint: not a certificate, EX_DATAERR (65)"

# --- cache ------------------------------------------------------------
# (test forgets a token the server refused, as the plugin does: fetch one)
run refill token "$USER1"
run list cache list
expect list 0 out "*@contoso.com             expires " "cache list: account and expiry"
run listone cache list "$USER1"
check "cache list USER: only the matching account" \
	sh -c "[ \$(wc -l < '$O/listone.out') = 1 ] && grep -q '^\*@contoso.com ' '$O/listone.out'"
run clearone cache clear "$USER1"
expect clearone 0 out "*@contoso.com             removed $T/cache/" "cache clear USER: removes that file"
run list2 cache list "$USER1"
expect list2 0 out "no cached token" "cache list after clear: no cached token"
n=$(token_requests)
run tok3 token "$USER1"
check "after cache clear, token asks the endpoint again" [ "$(token_requests)" = $((n + 1)) ]
# the token file of development builds before 0.1.0, no longer read
( umask 077; printf '{"version":1}' > "$T/cache/0123456789abcdef0123456789abcdef.json" )
# a process holds a credential's flock (it is asking the endpoint) while
# cache clear runs: the lock file stays, the same inode, so that the next
# process waits on that lock and does not ask a second time meanwhile
run refill2 token "$USER1"
key=$(ls "$T/cache" | sed -n 's/\.token$//p' | head -n 1)
rm -f "$O/held"
flock "$T/cache/$key.lock" sh -c "echo \$\$ > '$O/held.tmp'; mv '$O/held.tmp' '$O/held'; exec sleep $((60 * SLOW))" &
holder=$!
i=0
while [ ! -f "$O/held" ] && [ $i -lt $((200 * SLOW)) ]; do sleep 0.1; i=$((i + 1)); done
ino=$(stat -c %i "$T/cache/$key.lock")
run clearall cache clear
check "cache clear: exit 0, every token file gone (stale and old ones too), the lock files stay" \
	sh -c "[ $(rc clearall) = 0 ] && [ -z \"\$(ls '$T/cache' | grep -v '\\.lock\$')\" ] && [ -f '$T/cache/$key.lock' ]"
check "cache clear: a lock file held by another process keeps its inode" \
	[ "$(stat -c %i "$T/cache/$key.lock" 2>/dev/null)" = "$ino" ]
kill "$(cat "$O/held")" "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
expect clearall 0 out "stale file(s) from $T/cache" "cache clear: says it removed stale files"
run clearnouser cache clear nobody@nowhere.test
expect clearnouser 67 err "no account in $CONF matches mailbox nobody@nowhere.test" "cache clear: unknown mailbox, 67"
run cachebad cache frob
expect cachebad 64 err "cache takes list or clear" "cache with a wrong verb: 64"

# a mailbox with a control character (issue 10, item 3): refused, no request
n=$(token_requests)
run tokctl token "$(printf 'victim@contoso.com\001auth=Bearer X')"
expect tokctl 65 err 'holds a control character (0x01 at offset 18)' "token: a mailbox with \\001 is refused, 65"
run testctl test --no-login "$(printf 'bob@contoso.com\r')"
expect testctl 65 err 'holds a control character (0x0d' "test: a mailbox with CR is refused, 65"
check "and no token was requested for them" [ "$(token_requests)" = "$n" ]

# --- no secret anywhere -----------------------------------------------
check "the secret appears in no output" sh -c "! grep -rqF -- '$SECRET' '$O'"
check "no token in any output but token's stdout" \
	sh -c "! grep -lF -- '$TOKEN' '$O'/* | grep -v -e '/tok1.out\$' -e '/tok2.out\$' -e '/tokjson.out\$' -e '/logok.out\$' -e '/refill.out\$' | grep -q ."
check "no token signature in test or cache output" \
	sh -c "! grep -qF -- '${TOKEN##*.}' '$O'/test*.out '$O'/list*.out '$O'/refused.out '$O'/noroles.out"
finish
