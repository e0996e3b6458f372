#!/bin/sh
# sasl-oauth2 tunnel with the real programs that know no OAuth: fetchmail
# 6.4 (IMAP and POP3, plugin + auth ssh), mutt and neomutt (tunnel, in
# tmux) and mbsync (Tunnel) read a message delivered to a Dovecot
# mailbox through a pre-authenticated session. Then STARTTLS, OAUTHBEARER
# and the faults: no account, a refusing token endpoint, a refused token
# (dropped), STARTTLS not offered, an untrusted certificate, the server
# or the client closing first, a long quiet IDLE (no busy loop) and a
# 50 MB literal relayed intact.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || { echo "tool not built: $TOOL"; exit 99; }
need fetchmail mutt neomutt mbsync tmux
[ -x /usr/lib/dovecot/pop3 ] || skip "dovecot-pop3d is not installed"
# The token request's timeout: valgrind on a loaded machine is slow.
TIMEOUT=$((5 * SLOW * SLOW))
# Beside the test bed's *@contoso.com: an account the token endpoint
# refuses (expired secret), and one whose refused tokens are dropped at
# once (failure_backoff = 0).
testbed ",
	{ match = \"refused@contoso.com\";
	  tenant = \"$TENANT\";
	  client_id = \"$CLIENT\";
	  client_secret = \"expired-secret\"; },
	{ match = \"drop@contoso.com\";
	  tenant = \"$TENANT\";
	  client_id = \"$CLIENT\";
	  client_secret_file = \"$T/etc/contoso.secret\";
	  failure_backoff = 0; }"
unset SSL_CERT_FILE SSL_CERT_DIR
O="$T/out"
mkdir -p "$O" "$T/home"
export HOME="$T/home"

# deliver SUBJECT [FILE]: a message into user@contoso.com's INBOX
n_msg=0
deliver() {
	n_msg=$((n_msg + 1))
	md="$T/mail/contoso.com/user"
	mkdir -p "$md/cur" "$md/new" "$md/tmp"
	printf 'From: sender@example.com\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s.%s@e2e>\r\n\r\nHello through the tunnel.\r\n' \
		"$USER1" "$1" "$n_msg" "$$" > "$md/tmp/msg$n_msg"
	mv "$md/tmp/msg$n_msg" "$md/new/$(date +%s).M$n_msg.e2e"
	chown -R nobody:nogroup "$T/mail/contoso.com"
}
logins() { grep -c "$1-login: Info: Login: user=<$USER1>, method=${2:-XOAUTH2}" "$T/dovecot/log" || true; }

# The tunnel as the clients run it: the tool (under $VALGRIND when set),
# its stderr and exit code recorded.
cat > "$T/tun" <<SH
#!/bin/sh
echo run >> "$T/tun.started"
$VALGRIND "$TOOL" tunnel --ca-file "$T/ca.pem" "\$@" 2>>"$T/tun.err"
rc=\$?
echo "\$rc" >> "$T/tun.rc"
exit \$rc
SH
chmod 755 "$T/tun"
: > "$T/tun.rc"
: > "$T/tun.err"
: > "$T/tun.started"
# tun_ok DESCRIPTION: every tunnel run since the last call exited 0 (the
# client may finish before the tunnel does: wait for them)
tun_ok() {
	i=0
	while [ "$(wc -l < "$T/tun.rc")" -lt "$(wc -l < "$T/tun.started")" ] && [ $i -lt $((300 * SLOW)) ]; do
		i=$((i + 1)); sleep 0.1
	done
	: > "$T/tun.started"
	if [ -s "$T/tun.rc" ] && ! grep -qv '^0$' "$T/tun.rc"; then pass "$1"; else
		fail "$1 (exit codes: $(tr '\n' ' ' < "$T/tun.rc"))"; sed 's/^/# tun: /' "$T/tun.err" | tail -n 20; fi
	: > "$T/tun.rc"
}

# run NAME ARGS... (stdin from $O/NAME.in or nothing): the tool's
# stdout, stderr and exit code in $O/NAME.*
run() {
	name=$1; shift
	[ -f "$O/$name.in" ] || : > "$O/$name.in"
	set +e
	# shellcheck disable=SC2086
	timeout $((60 * SLOW)) $VALGRIND "$TOOL" "$@" < "$O/$name.in" > "$O/$name.out" 2> "$O/$name.err"
	echo $? > "$O/$name.rc"
	set -e
}
# expect NAME CODE FIRST-LINE-PREFIX STRING DESCRIPTION: the exit code,
# the refusal the client reads (prefix "* BYE" or "-ERR") carrying
# STRING, and the same sentence on stderr.
expect() {
	sent=$(head -n 1 "$O/$1.out" | tr -d '\r' | sed "s/^$3 //")
	if [ "$(cat "$O/$1.rc")" = "$2" ] && head -n 1 "$O/$1.out" | grep -q "^$3 " &&
	   printf '%s\n' "$sent" | grep -qF -- "$4" &&
	   grep -qxF -- "sasl-oauth2: $sent" "$O/$1.err"; then
		pass "$5"
	else
		fail "$5 (exit $(cat "$O/$1.rc"), wanted $2, \"$3\" and \"$4\")"
		sed 's/^/# out: /' "$O/$1.out" | cut -c1-300 | head -n 5
		sed 's/^/# err: /' "$O/$1.err" | cut -c1-300 | head -n 5
	fi
}
IMAPS="127.0.0.1:$IMAPS_PORT"
SUBJECT="tunnel e2e $$ one"
deliver "$SUBJECT"

# --- fetchmail 6.4: plugin "sasl-oauth2 tunnel ... %h %p", auth ssh ----
fetchmail_run() { # PROTO PORT: fetch all, keep, deliver to $T/fetched-PROTO
	cat > "$T/fetchmailrc" <<RC
set no bouncemail
poll 127.0.0.1 proto $1 service $2
	plugin "$T/tun $1 $USER1 %h %p"
	auth ssh
	user "$USER1"
	sslproto ''
	keep
	fetchall
	mda "cat >> $T/fetched-$1"
RC
	chmod 600 "$T/fetchmailrc"
	timeout $((120 * SLOW)) fetchmail -f "$T/fetchmailrc" --nosyslog -v \
		--pidfile "$T/fetchmail.pid" > "$T/fetchmail-$1.out" 2>&1 </dev/null
}
for pp in "imap $IMAPS_PORT IMAP imap" "pop3 $POP3S_PORT POP3 pop3"; do
	set -- $pp
	before=$(logins "$4")
	if fetchmail_run "$1" "$2"; then pass "fetchmail $3 through the tunnel: exit 0"; else
		fail "fetchmail $3 through the tunnel"; tail -n 15 "$T/fetchmail-$1.out"; fi
	check "fetchmail $3: the message arrived" grep -q "^Subject: $SUBJECT" "$T/fetched-$1"
	check "fetchmail $3: fetchmail saw the pre-authenticated greeting" \
		grep -q "$3< $( [ "$1" = imap ] && echo '\* PREAUTH \[CAPABILITY IMAP4rev1' || echo '+OK') " "$T/fetchmail-$1.out"
	check "fetchmail $3: Dovecot logged the XOAUTH2 login" [ "$(logins "$4")" = $((before + 1)) ]
	tun_ok "fetchmail $3: the tunnel exited 0"
done
check "fetchmail IMAP: no AUTHENTICATE or LOGIN from fetchmail itself" \
	sh -c "! grep -q 'IMAP> A[0-9]* \\(AUTHENTICATE\\|LOGIN\\)' '$T/fetchmail-imap.out'"

# --- mutt and neomutt: tunnel, the index seen in tmux --------------------
for m in mutt neomutt; do
	cat > "$T/muttrc" <<RC
set tunnel="$T/tun imap $USER1 $IMAPS"
set folder="imap://$USER1@127.0.0.1/"
set spoolfile="+INBOX"
set header_cache=""
set message_cachedir=""
set quit=yes
set move=no
set record=""
RC
	before=$(logins imap)
	tmux -S "$T/tmux.sock" new-session -d -x 160 -y 30 \
		"env TERM=xterm $m -n -F '$T/muttrc'" 
	i=0 seen=""
	while [ $i -lt $((300 * SLOW)) ]; do
		tmux -S "$T/tmux.sock" capture-pane -p > "$T/$m.screen" 2>/dev/null || break
		if grep -q "$SUBJECT" "$T/$m.screen"; then seen=1; break; fi
		i=$((i + 1)); sleep 0.1
	done
	check "$m: the index through the tunnel shows the message" [ -n "$seen" ]
	[ -n "$seen" ] || sed 's/^/# screen: /' "$T/$m.screen"
	tmux -S "$T/tmux.sock" send-keys q 2>/dev/null || true
	i=0
	while tmux -S "$T/tmux.sock" has-session 2>/dev/null && [ $i -lt $((300 * SLOW)) ]; do
		i=$((i + 1)); sleep 0.1
	done
	tmux -S "$T/tmux.sock" kill-server 2>/dev/null || true
	check "$m: Dovecot logged the XOAUTH2 login" [ "$(logins imap)" = $((before + 1)) ]
	tun_ok "$m: the tunnel exited 0 when $m quit"
done

# --- mbsync: Tunnel (isync 1.4.4: SSLType None, the tunnel is the TLS) ----
mkdir -p "$T/local"
cat > "$T/mbsyncrc" <<RC
IMAPStore remote
Tunnel "$T/tun imap $USER1 $IMAPS"
SSLType None
Timeout $((20 * SLOW * SLOW))

MaildirStore local
Path $T/local/
Inbox $T/local/INBOX

Channel inbox
Far :remote:
Near :local:
Patterns INBOX
Create Near
SyncState *
RC
before=$(logins imap)
# shellcheck disable=SC2086
if timeout $((60 * SLOW)) mbsync -c "$T/mbsyncrc" -a > "$T/mbsync.out" 2>&1 </dev/null; then
	pass "mbsync syncs INBOX through Tunnel"; else fail "mbsync syncs INBOX through Tunnel"; cat "$T/mbsync.out"; fi
check "mbsync: the message is in the local maildir" grep -rqs "^Subject: $SUBJECT" "$T/local/INBOX"
check "mbsync: Dovecot logged the XOAUTH2 login" [ "$(logins imap)" = $((before + 1)) ]
tun_ok "mbsync: the tunnel exited 0"

# --- STARTTLS (imap://, pop3://) and OAUTHBEARER -------------------------
printf 'a SELECT INBOX\r\nb LOGOUT\r\n' > "$O/st-imap.in"
run st-imap tunnel --ca-file "$T/ca.pem" imap "$USER1" "imap://127.0.0.1:$IMAP_PORT"
check "IMAP STARTTLS: PREAUTH, then the client's commands answered" \
	sh -c "[ \$(cat '$O/st-imap.rc') = 0 ] && head -n 1 '$O/st-imap.out' | grep -q '^\\* PREAUTH \\[CAPABILITY IMAP4rev1' &&
		grep -q '^\\* 1 EXISTS' '$O/st-imap.out' && grep -q '^b OK' '$O/st-imap.out'"
check "IMAP STARTTLS: the greeting offers no STARTTLS, AUTH= or SASL-IR" \
	sh -c "! head -n 1 '$O/st-imap.out' | grep -q 'STARTTLS\\|AUTH=\\|SASL-IR'"
printf 'STAT\r\nQUIT\r\n' > "$O/st-pop3.in"
before=$(logins pop3 OAUTHBEARER)
run st-pop3 tunnel --ca-file "$T/ca.pem" --mech OAUTHBEARER pop3 "$USER1" "pop3://127.0.0.1:$POP3_PORT"
check "POP3 STLS with OAUTHBEARER: +OK, then STAT answered" \
	sh -c "[ \$(cat '$O/st-pop3.rc') = 0 ] && head -n 1 '$O/st-pop3.out' | grep -q '^+OK ' &&
		sed -n 2p '$O/st-pop3.out' | grep -q '^+OK 1 '"
check "POP3 OAUTHBEARER: Dovecot logged it" [ "$(logins pop3 OAUTHBEARER)" = $((before + 1)) ]
printf 'a LOGOUT\r\n' > "$O/ob-imap.in"
before=$(logins imap OAUTHBEARER)
run ob-imap tunnel --ca-file "$T/ca.pem" --mech oauthbearer imap "$USER1" 127.0.0.1 "$IMAPS_PORT"
check "IMAP OAUTHBEARER (HOST PORT as two words): PREAUTH, exit 0" \
	sh -c "[ \$(cat '$O/ob-imap.rc') = 0 ] && grep -q '^\\* PREAUTH' '$O/ob-imap.out'"
check "IMAP OAUTHBEARER: Dovecot logged it" [ "$(logins imap OAUTHBEARER)" = $((before + 1)) ]

# --- usage ---------------------------------------------------------------
for u in "smtp $USER1:tunnel speaks imap or pop3" "--mech PLAIN imap $USER1:--mech takes XOAUTH2 or OAUTHBEARER" \
	"imap $USER1 a/b:tunnel takes HOST[:PORT] or HOST PORT" "imap:tunnel takes imap or pop3, a mailbox"; do
	# shellcheck disable=SC2086
	run usage tunnel ${u%%:*}
	check "usage: tunnel ${u%%:*}: EX_USAGE, \"${u#*:}\"" \
		sh -c "[ \$(cat '$O/usage.rc') = 64 ] && grep -qF -- '${u#*:}' '$O/usage.err' && [ ! -s '$O/usage.out' ]"
done

# A control character in the server name (OAUTHBEARER carries it) or the
# mailbox: refused as a usage error before any token is asked for.
reqs=$(token_requests)
run ctl-host tunnel --ca-file "$T/ca.pem" --mech OAUTHBEARER imap "$USER1" "$(printf 'h\001x')"
check "a control character in HOST (OAUTHBEARER): EX_USAGE, the sentence naming the server name" \
	sh -c "[ \$(cat '$O/ctl-host.rc') = 64 ] && grep -qF 'the server name \"h' '$O/ctl-host.err' &&
		grep -qF 'holds a control character (0x01' '$O/ctl-host.err' && ! grep -q 'out of memory' '$O/ctl-host.err'"
run ctl-user tunnel --ca-file "$T/ca.pem" --mech OAUTHBEARER imap "$(printf 'user\001@contoso.com')" "$IMAPS"
check "a control character in the mailbox: EX_USAGE, the sentence naming the mailbox" \
	sh -c "[ \$(cat '$O/ctl-user.rc') = 64 ] && grep -qF 'the mailbox \"user' '$O/ctl-user.err' &&
		grep -qF 'holds a control character (0x01' '$O/ctl-user.err'"
check "a control character in HOST or the mailbox: no token was asked for" [ "$(token_requests)" = "$reqs" ]

# fetchmail's %p may be a service name ("service imaps" in the rcfile)
run svc tunnel --ca-file "$T/ca.pem" imap "$USER1" 127.0.0.1 imaps
check "a port given as a service name (imaps) means 993" \
	sh -c "[ \$(cat '$O/svc.rc') != 64 ] && grep -q '^\\* BYE .*127\\.0\\.0\\.1:993' '$O/svc.out'"

# --- faults --------------------------------------------------------------
run noacct tunnel --ca-file "$T/ca.pem" imap nobody@fabrikam.com "$IMAPS"
expect noacct 67 "\\* BYE" "no account in $CONF matches mailbox nobody@fabrikam.com" \
	"no account: * BYE with the sentence, EX_NOUSER"
run noacct3 tunnel --ca-file "$T/ca.pem" pop3 nobody@fabrikam.com "127.0.0.1:$POP3S_PORT"
expect noacct3 67 "-ERR" "no account in $CONF matches mailbox nobody@fabrikam.com" \
	"no account (POP3): -ERR with the sentence"
before=$(grep -c "imap-login" "$T/dovecot/log")
run endpoint tunnel --ca-file "$T/ca.pem" imap refused@contoso.com "$IMAPS"
expect endpoint 77 "\\* BYE" "AADSTS7000222" \
	"token endpoint refusing: * BYE with the AADSTS sentence, EX_NOPERM"
run endpoint3 tunnel --ca-file "$T/ca.pem" pop3 refused@contoso.com "127.0.0.1:$POP3S_PORT"
expect endpoint3 77 "-ERR" "AADSTS7000222" "token endpoint refusing (POP3): -ERR with the sentence"
check "token endpoint refusing: the mail server is not contacted" \
	[ "$(grep -c "imap-login" "$T/dovecot/log")" = "$before" ]

# A token the server refuses is dropped (failure_backoff = 0): the next
# run fetches a new one. With the default back-off, a token that is
# fresh from the endpoint is kept and the sentence says for how long.
rm -rf "$T/cache"
tokend_mode wrong_key 1
reqs=$(token_requests)
run refused tunnel --ca-file "$T/ca.pem" imap drop@contoso.com "$IMAPS"
expect refused 77 "\\* BYE" "127.0.0.1:$IMAPS_PORT refused the IMAP login of drop@contoso.com with XOAUTH2 (status 401" \
	"server refusing the token: * BYE naming the server's challenge, EX_NOPERM"
check "server refusing the token: the token left the cache" \
	sh -c "! ls '$T/cache'/*.token >/dev/null 2>&1"
printf 'a LOGOUT\r\n' > "$O/after.in"
run after tunnel --ca-file "$T/ca.pem" imap drop@contoso.com "$IMAPS"
check "and the next tunnel gets a new token and logs in" \
	sh -c "[ \$(cat '$O/after.rc') = 0 ] && grep -q '^\\* PREAUTH' '$O/after.out'"
check "one new token was fetched after the refusal" [ "$(token_requests)" = $((reqs + 2)) ]
rm -rf "$T/cache"
tokend_mode wrong_key 1
run young tunnel --ca-file "$T/ca.pem" pop3 "$USER1" "127.0.0.1:$POP3S_PORT"
expect young 77 "-ERR" "(the token is new: no other is asked for during" \
	"server refusing a fresh token (POP3): -ERR, the token kept for failure_backoff"
rm -rf "$T/cache"

# STARTTLS not offered: a server that greets without it.
cat > "$T/nostarttls.py" <<'PY'
import socket, sys
proto, portfile = sys.argv[1], sys.argv[2]
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
open(portfile, "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept()
    f = c.makefile("rwb")
    if proto == "imap":
        f.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] no TLS here\r\n")
    else:
        f.write(b"+OK no TLS here\r\n"); f.flush()
        if f.readline().strip().upper() == b"CAPA":
            f.write(b"+OK\r\nSASL XOAUTH2\r\nUSER\r\n.\r\n")
    f.flush()
    f.readline()
    c.close()
PY
for p in imap pop3; do
	serve "nostls-$p" "$PYTHON3" "$T/nostarttls.py" "$p" "$T/nostls-$p.port"
	run "nostls-$p" tunnel --ca-file "$T/ca.pem" "$p" "$USER1" "$p://127.0.0.1:$SERVED_PORT"
done
expect nostls-imap 69 "\\* BYE" "does not offer STARTTLS, and the tunnel never logs in without TLS" \
	"STARTTLS not offered (IMAP): refused, EX_UNAVAILABLE"
expect nostls-pop3 69 "-ERR" "does not offer STLS (STARTTLS)" \
	"STLS not offered (POP3): refused, EX_UNAVAILABLE"

# A server that never stops talking (endless untagged lines after
# CAPABILITY, endless CAPA lines; in the clear before STARTTLS, so that
# the tunnel's reads never wait): the login deadline (30 s) still holds.
# Both run at once; the guard is generous, nothing asserts a speed.
cat > "$T/chatty.py" <<'PY'
import socket, sys
proto, portfile = sys.argv[1:3]
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(2)
open(portfile, "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept()
    try:
        if proto == "imap":
            c.sendall(b"* OK hi\r\n")
            c.recv(100)
            burst = b"* OK x\r\n" * 65536
        else:
            c.sendall(b"+OK hi\r\n")
            c.recv(100)
            c.sendall(b"+OK\r\n")
            burst = b"X-ENDLESS\r\n" * 65536
        while True:
            c.sendall(burst)
    except Exception:
        pass
    c.close()
PY
pids=
for p in imap pop3; do
	serve "chatty-$p" "$PYTHON3" "$T/chatty.py" "$p" "$T/chatty-$p.port"
	run "chatty-$p" tunnel --ca-file "$T/ca.pem" "$p" "$USER1" "$p://127.0.0.1:$SERVED_PORT" &
	pids="$pids $!"
done
# shellcheck disable=SC2086
wait $pids
expect chatty-imap 75 "\\* BYE" "did not finish the IMAP login within 30 s" \
	"a server streaming untagged lines for ever (IMAP): the login deadline holds, EX_TEMPFAIL"
expect chatty-pop3 75 "-ERR" "did not finish the POP3 login within 30 s" \
	"a server streaming CAPA lines for ever (POP3): the login deadline holds, EX_TEMPFAIL"

# A server whose capabilities after the login fill a whole line (16 KB),
# and a long mailbox: the greeting keeps its "]" and CRLF (capabilities
# that do not fit are left out, whole).
cat > "$T/bigcaps.py" <<'PY'
import socket, ssl, sys
portfile, cert, key = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(2)
open(portfile, "w").write(str(s.getsockname()[1]))
caps = b"IMAP4rev1 IDLE" + b"".join(b" X-CAP%05d" % i for i in range(1470))
while True:
    c, _ = s.accept()
    try:
        c = ssl.SSLContext.wrap_socket(ctx, c, server_side=True)
        f = c.makefile("rwb")
        f.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] hi\r\n"); f.flush()
        f.readline()
        f.write(b"A1 OK [CAPABILITY " + caps + b"] in\r\n"); f.flush()
        f.readline()
    except Exception:
        pass
    c.close()
PY
serve bigcaps "$PYTHON3" "$T/bigcaps.py" "$T/bigcaps.port" "$T/server.pem" "$T/server.key"
longuser="$(printf '%0700d' 0 | tr 0 u)@contoso.com"
run bigcaps tunnel --ca-file "$T/ca.pem" imap "$USER1" "127.0.0.1:$SERVED_PORT"
run bigcaps-user tunnel --ca-file "$T/ca.pem" imap "$longuser" "127.0.0.1:$SERVED_PORT"
# greeting_whole NAME: exit 0, and the first line is the whole greeting
greeting_whole() {
	[ "$(cat "$O/$1.rc")" = 0 ] || return 1
	head -n 1 "$O/$1.out" > "$O/$1.first"
	grep -q '^\* PREAUTH \[CAPABILITY IMAP4rev1 IDLE X-CAP00000 ' "$O/$1.first" &&
		grep -q '\] .*logged in .*by sasl-oauth2' "$O/$1.first" &&
		[ "$(tail -c 2 "$O/$1.first" | od -An -c | tr -d ' ')" = '\r\n' ]
}
for g in bigcaps bigcaps-user; do
	check "16 KB of capabilities ($g): the greeting keeps its \"] ... by sasl-oauth2\" and CRLF, exit 0" \
		greeting_whole "$g"
	cut -c1-300 "$O/$g.err" | sed 's/^/# err: /'
done

# An untrusted certificate (no --ca-file: the test CA is not the system's).
before=$(logins imap)
run untrusted tunnel imap "$USER1" "$IMAPS"
expect untrusted 69 "\\* BYE" "the TLS certificate of $IMAPS cannot be trusted" \
	"untrusted certificate: * BYE, EX_UNAVAILABLE"
check "untrusted certificate: no login was attempted" [ "$(logins imap)" = "$before" ]
run untrusted-ca tunnel --ca-file "$T/app.crt" pop3 "$USER1" "127.0.0.1:$POP3S_PORT"
expect untrusted-ca 69 "-ERR" "cannot be trusted" "a --ca-file of the wrong CA: -ERR, EX_UNAVAILABLE"

# The server closes first (after LOGOUT) while the client still holds
# stdin open: the tunnel flushes the server's last words and exits.
mkfifo "$T/in.fifo" "$T/in2.fifo"
( printf 'a LOGOUT\r\n'; exec sleep 600 ) > "$T/in.fifo" &
holder=$!
PIDS="$PIDS $holder"
set +e
# shellcheck disable=SC2086
timeout $((60 * SLOW)) $VALGRIND "$TOOL" tunnel --ca-file "$T/ca.pem" imap "$USER1" "$IMAPS" \
	< "$T/in.fifo" > "$O/srvfirst.out" 2> "$O/srvfirst.err"
rc=$?
set -e
check "server closing first: the tunnel exits 0 with the client still connected" \
	sh -c "[ $rc = 0 ] && kill -0 $holder"
check "server closing first: the server's BYE and OK reached the client" \
	sh -c "grep -q '^\\* BYE Logging out' '$O/srvfirst.out' && grep -q '^a OK Logout' '$O/srvfirst.out'"
kill "$holder" 2>/dev/null || true

# The client closes first: stdin at EOF right after a command (the answer
# still arrives), and a client that stops reading (EPIPE, no signal).
printf 'a NOOP\r\n' > "$O/clifirst.in"
run clifirst tunnel --ca-file "$T/ca.pem" imap "$USER1" "$IMAPS"
check "client closing first: its pipelined command is answered, exit 0" \
	sh -c "[ \$(cat '$O/clifirst.rc') = 0 ] && grep -q '^a OK NOOP' '$O/clifirst.out'"
( printf 'a NOOP\r\n'; exec sleep 600 ) > "$T/in2.fifo" &
holder=$!
PIDS="$PIDS $holder"
before=$(grep -c "imap($USER1).*Disconnected: Connection closed" "$T/dovecot/log" || true)
# shellcheck disable=SC2086
{ timeout $((60 * SLOW)) $VALGRIND "$TOOL" tunnel --ca-file "$T/ca.pem" imap "$USER1" "$IMAPS" \
	< "$T/in2.fifo" 2> "$O/epipe.err"; echo $? > "$O/epipe.rc"; } | head -c 10 > /dev/null
i=0
while [ ! -s "$O/epipe.rc" ] && [ $i -lt $((300 * SLOW)) ]; do i=$((i + 1)); sleep 0.1; done
check "client closing its end first (EPIPE): exit 0 at once, stdin still open" \
	sh -c "[ \"\$(cat '$O/epipe.rc')\" = 0 ] && kill -0 $holder"
kill "$holder" 2>/dev/null || true
i=0
while [ $i -lt $((300 * SLOW)) ] && [ "$(grep -c "imap($USER1).*Disconnected: Connection closed" "$T/dovecot/log" || true)" = "$before" ]; do
	i=$((i + 1)); sleep 0.1
done
check "client closing its end first: the tunnel closed the session" \
	[ "$(grep -c "imap($USER1).*Disconnected: Connection closed" "$T/dovecot/log")" -gt "$before" ]
check "client closing its end first: nothing on stderr" sh -c "! grep -q . '$O/epipe.err'"

# IDLE: a quiet period costs no CPU; new mail arrives through it. A
# 50 MB literal: APPEND and FETCH relayed intact (SHA-256), memory
# bounded.
cat > "$T/drive.py" <<'PY'
import hashlib, os, re, resource, subprocess, sys, time
what, maildir, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
rd, wr = p.stdout, p.stdin
def send(b):
    wr.write(b); wr.flush()
def line():
    l = rd.readline()
    if not l:
        sys.exit("the tunnel closed the session")
    return l
def until(tag):
    while True:
        l = line()
        if l.startswith(tag + b" "):
            if not l.startswith(tag + b" OK"):
                sys.exit("failed: %r" % l[:200])
            return l
def cpu():
    f = open("/proc/%d/stat" % p.pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
assert line().startswith(b"* PREAUTH")
if what == "idle":
    send(b"a SELECT INBOX\r\n"); until(b"a")
    send(b"b IDLE\r\n")
    assert line().startswith(b"+")
    c0 = cpu(); time.sleep(3); c1 = cpu()
    n = len(os.listdir(maildir + "/new")) + len(os.listdir(maildir + "/cur"))
    open(maildir + "/tmp/idle", "w").write("Subject: idle\n\nidle\n")
    os.chown(maildir + "/tmp/idle", 65534, 65534)
    os.rename(maildir + "/tmp/idle", maildir + "/new/%d.idle.e2e" % time.time())
    while not re.match(rb"\* %d EXISTS" % (n + 1), line()):
        pass
    send(b"DONE\r\n"); until(b"b")
    send(b"c LOGOUT\r\n"); until(b"c")
    print("ticks", c1 - c0)
else:
    size = 50 * 1024 * 1024
    head = b"From: big@example.com\r\nSubject: fifty megabytes\r\n\r\n"
    body = bytearray(head)
    i = 0
    while len(body) < size:
        body += b"%08d %s\r\n" % (i, hashlib.sha256(b"%d" % i).hexdigest().encode())
        i += 1
    msg = bytes(body[:size - 2]) + b"\r\n"
    want = hashlib.sha256(msg).hexdigest()
    send(b"a APPEND INBOX {%d}\r\n" % len(msg))
    assert line().startswith(b"+")
    for o in range(0, len(msg), 1 << 20):
        send(msg[o:o + (1 << 20)])
    send(b"\r\n")
    uid = re.search(rb"APPENDUID \d+ (\d+)", until(b"a")).group(1)
    send(b"s SELECT INBOX\r\n"); until(b"s")
    send(b"b UID FETCH " + uid + b" BODY.PEEK[]\r\n")
    while True:
        l = line()
        m = re.search(rb"\{(\d+)\}\r\n$", l)
        if m:
            break
        if l.startswith(b"b "):
            sys.exit("no literal: %r" % l[:200])
    n = int(m.group(1)); h = hashlib.sha256(); got = 0
    while got < n:
        b = rd.read(min(1 << 20, n - got))
        if not b:
            sys.exit("short literal")
        h.update(b); got += len(b)
    until(b"b")
    send(b"c LOGOUT\r\n"); until(b"c")
    print("sent", want); print("got ", h.hexdigest())
wr.close(); p.wait()
print("exit", p.returncode)
print("maxrss_kb", resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
# shellcheck disable=SC2086
timeout $((120 * SLOW)) "$PYTHON3" "$T/drive.py" idle "$T/mail/contoso.com/user" \
	$VALGRIND "$TOOL" tunnel --ca-file "$T/ca.pem" imap "$USER1" "$IMAPS" > "$O/idle.out" 2>&1 || true
check "IDLE: new mail arrived through a quiet tunnel, exit 0" grep -q "^exit 0" "$O/idle.out"
ticks=$(sed -n 's/^ticks //p' "$O/idle.out")
check "IDLE: 3 s of quiet cost under 0.2 s of CPU (no busy loop; $ticks ticks)" \
	sh -c "[ -n '$ticks' ] && [ '$ticks' -lt 20 ]"
[ -n "$ticks" ] || sed 's/^/# /' "$O/idle.out"
# shellcheck disable=SC2086
timeout $((600 * SLOW)) "$PYTHON3" "$T/drive.py" big "$T/mail/contoso.com/user" \
	$VALGRIND "$TOOL" tunnel --ca-file "$T/ca.pem" imap "$USER1" "$IMAPS" > "$O/big.out" 2>&1 || true
check "50 MB literal: APPEND and FETCH through the tunnel, same SHA-256" \
	sh -c "grep -q '^exit 0' '$O/big.out' && [ \"\$(sed -n 's/^sent //p' '$O/big.out')\" = \"\$(sed -n 's/^got  //p' '$O/big.out')\" ]"
[ -n "$VALGRIND$SAN_PRELOAD" ] || check "50 MB literal: the tunnel's memory stayed bounded (max RSS $(sed -n 's/^maxrss_kb //p' "$O/big.out") KB < 32 MB)" \
	[ "$(sed -n 's/^maxrss_kb //p' "$O/big.out")" -lt 32768 ]
grep -q '^exit 0' "$O/big.out" || sed 's/^/# big: /' "$O/big.out" | tail -n 5

# Never a token in what the tunnel prints.
token=$("$TOOL" token "$USER1")
check "no token in any output of the tunnel" \
	sh -c "! grep -rqF -- '$token' '$O' '$T/tun.err' '$T/fetchmail-imap.out' '$T/fetchmail-pop3.out' '$T/mbsync.out'"
finish
