#!/bin/sh
# Postfix for real: a private Postfix instance on 127.0.0.1 relays two
# messages through its smtp client, chrooted as Debian ships it (chroot
# "y" in master.cf), with smtp_sasl_mechanism_filter = xoauth2 and then
# oauthbearer, to Dovecot's submission service, which accepts only the
# JWT; Dovecot relays them back to a second smtpd of the same Postfix,
# whose content_filter hands them to virtual(8) for the mailbox in
# Dovecot's mail store, where they must arrive.
#
# The plugin reads its config, the secret and the CA bundle when the smtp
# process initialises libsasl2, as root, before the chroot: none of them
# exists inside the chroot. The token cache and name resolution happen
# later, inside it: the first attempt fails while the chroot has no
# etc/hosts for the token endpoint's name, then one token serves both
# messages, the second one from the disk cache inside the chroot after
# a postfix reload (new smtp processes). Nothing secret is in the log.
#
# Under ASan and valgrind only the smtp daemon is wrapped (a private
# daemon_directory whose smtp is a script that execs $WRAP and the real
# one, with its standard error in a file), and its reports are judged.
set -eu
. "$(dirname "$0")/lib.sh"
need postfix postconf
DAEMONS=$(postconf -dh daemon_directory 2>/dev/null || true)
[ -x "$DAEMONS/smtp" ] || skip "postfix's smtp daemon is not in '$DAEMONS'"
id postfix >/dev/null 2>&1 || skip "there is no user postfix"
MASTER_CF=/usr/share/postfix/master.cf.dist	# Debian's master.cf
[ -f "$MASTER_CF" ] || MASTER_CF=/etc/postfix/master.cf
[ -f "$MASTER_CF" ] || skip "no master.cf to start from"

P="$T/postfix" C="$T/postfix/etc" Q="$T/postfix/spool"
AUTH_HOST=login.microsoftonline.test	# resolved inside the chroot only
MAILDIR="$T/mail/contoso.com/user"
ID="e2e-postfix-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"

pf_stop() {
	[ -f "$C/main.cf" ] || return 0
	postfix -c "$C" stop >/dev/null 2>&1 || true
	# daemons that outlive master (an ASan exit deadlock, valgrind's
	# leak check): those in our chroot, ended by their ids
	for d in /proc/[0-9]*; do
		if [ "$(readlink "$d/root" 2>/dev/null)" = "$Q" ]; then
			kill -9 "${d#/proc/}" 2>/dev/null || true
		fi
	done
}
trap 'pf_stop; cleanup' EXIT INT TERM

# The server certificate also names the token endpoint's host.
make_ca
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:%s\n' "$AUTH_HOST" > "$T/san.ext"
openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
	-CAcreateserial -days 2 -extfile "$T/san.ext" -out "$T/server.pem" 2>/dev/null
start_tokend
RELAY_PORT=$(free_port)
SMTPD_PORT=$(free_port)
SUBMISSION_RELAY_PORT=$RELAY_PORT start_dovecot
write_config
# The cache path as the chrooted smtp process sees it.
sed -i -e "s|^\tauthority = .*|\tauthority = \"https://$AUTH_HOST:$TOKEND_PORT\";|" \
	-e "s|^\tcache_dir = .*|\tcache_dir = \"/var/cache/sasl-oauth2\";|" "$CONF"

# --- the Postfix instance: config, queue (the chroot) and data under $P
mkdir -p "$C" "$Q"
install -d -o postfix -m 700 "$P/data"
cp "$MASTER_CF" "$C/master.cf"
daemon_dir=$DAEMONS
if [ -n "$WRAP" ]; then
	daemon_dir="$P/libexec"
	mkdir -p "$daemon_dir"
	for f in "$DAEMONS"/*; do ln -s "$f" "$daemon_dir/"; done
	rm "$daemon_dir/smtp"
	vg_extra=""
	if [ -n "$VALGRIND" ]; then
		# Postfix's own: smtp's main() strdup()s a string it keeps
		cat > "$P/postfix.supp" <<'SUPP'
{
   postfix-smtp-main-strdup
   Memcheck:Leak
   match-leak-kinds: definite
   fun:malloc
   fun:strdup
   obj:*/postfix/sbin/smtp
   fun:(below main)
}
SUPP
		# no vgdb: its pipes in /tmp cannot be removed from inside the chroot
		vg_extra="--vgdb=no --suppressions=$P/postfix.supp --show-leak-kinds=definite"
	fi
	# (master gives its daemons a clean environment: UBSAN_OPTIONS here)
	cat > "$daemon_dir/smtp" <<SH
#!/bin/sh
exec 2>>"$P/smtp.stderr"
${UBSAN_OPTIONS:+export UBSAN_OPTIONS=$UBSAN_OPTIONS}
exec $WRAP $vg_extra "$DAEMONS/smtp" "\$@"
SH
	chmod 755 "$daemon_dir/smtp"
fi
nobody_uid=$(id -u nobody) nogroup_gid=$(id -g nobody)
cat > "$C/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $Q
data_directory = $P/data
daemon_directory = $daemon_dir
maillog_file = $P/maillog
maillog_file_prefixes = $P
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = relay.contoso.test
mydestination =
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
# retry a deferred message at once
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s

# The plugin: libsasl2 honours SASL_PATH in the smtp process, whose
# environment master builds from import_environment.
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C
	SASL_PATH=$SASL_PATH SASL_OAUTH2_CONF=$CONF
relayhost = [127.0.0.1]:$SUBMISSION_PORT
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = inline:{ [127.0.0.1]:$SUBMISSION_PORT=$USER1 }
smtp_sasl_mechanism_filter = xoauth2
smtp_sasl_security_options = noanonymous
smtp_tls_security_level = encrypt
smtp_tls_CAfile = $T/ca.pem
smtp_tls_loglevel = 1

# What Dovecot relays back: into the mailbox in Dovecot's mail store.
virtual_mailbox_base = $T/mail
virtual_mailbox_domains =
virtual_mailbox_maps = inline:{ $USER1=contoso.com/user/ }
virtual_uid_maps = static:$nobody_uid
virtual_gid_maps = static:$nogroup_gid
CF
postconf -c "$C" -MX smtp/inet
postconf -c "$C" -M "127.0.0.1:$SMTPD_PORT/inet=127.0.0.1:$SMTPD_PORT inet n - y - - smtpd"
postconf -c "$C" -M "127.0.0.1:$RELAY_PORT/inet=127.0.0.1:$RELAY_PORT inet n - y - - smtpd -o content_filter=virtual:"
shipped=$(postconf -c "$C" -Fh smtp/unix/chroot)
[ "$shipped" = y ] || postconf -c "$C" -F smtp/unix/chroot=y
check "master.cf runs the smtp client chrooted (as shipped: chroot=$shipped)" \
	[ "$(postconf -c "$C" -Fh smtp/unix/chroot)" = y ]

# The chroot: a cache directory for user postfix and an nsswitch.conf,
# but no etc/hosts yet, and nothing of the plugin's config.
mkdir -p "$Q/etc" "$Q/var/cache"
install -d -o postfix -g postfix -m 700 "$Q/var/cache/sasl-oauth2"
printf 'hosts: files\n' > "$Q/etc/nsswitch.conf"

if ! postfix -c "$C" start > "$P/start.out" 2>&1; then
	cat "$P/start.out"; cat "$P/maillog" 2>/dev/null || true
	echo "Bail out! postfix did not start"; exit 99
fi
wait_port "$SMTPD_PORT"
wait_port "$RELAY_PORT"

# send N MECH: one message over SMTP to Postfix's smtpd
send() {
	"$PYTHON3" - "$SMTPD_PORT" "$USER1" "$ID-$1" "$2" <<'PY'
import smtplib, sys
port, user, mid, mech = sys.argv[1:]
msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@relay.contoso.test>\r\n\r\n"
       "relayed with %s\r\n" % (user, user, mid, mid, mech))
with smtplib.SMTP("127.0.0.1", int(port), timeout=30) as s:
    s.sendmail(user, [user], msg)
PY
}
# wait_for SECONDS COMMAND...: until the command succeeds
wait_for() {
	_w=$(($1 * SLOW * 10)); shift
	while ! "$@" 2>/dev/null; do
		_w=$((_w - 1)); [ "$_w" -gt 0 ] || return 1
		sleep 0.1
	done
}
arrived() { grep -qs "^Subject: $ID-$1\$" "$MAILDIR"/new/*; }

# 1. No etc/hosts in the chroot: the token endpoint's name does not
# resolve there (it never resolves outside: it is only in the chroot's
# hosts file), and the plugin's sentence is in Postfix's log.
send 1 XOAUTH2
check "without etc/hosts in the chroot, Postfix logs the plugin's sentence" \
	wait_for 60 grep -q "warning: SASL authentication problem: sasl-oauth2: .*resolve.*$AUTH_HOST" "$P/maillog"
check "and defers the message" \
	wait_for 10 grep -q "status=deferred (SASL authentication failed" "$P/maillog"
grep -m 1 "SASL authentication problem" "$P/maillog" | sed 's/^.*warning: /# /'
check "and no token was requested" [ "$(token_requests)" = 0 ]

# 2. With etc/hosts the retry logs in with XOAUTH2 and the message arrives.
printf '127.0.0.1 %s\n' "$AUTH_HOST" > "$Q/etc/hosts"
check "with etc/hosts the deferred message arrives in the mailbox" wait_for 90 arrived 1
check "through Dovecot's authenticated submission (ESMTPSA)" \
	grep -qs "by mail.contoso.test with ESMTPSA" "$MAILDIR"/new/*
check "Postfix relayed it through Dovecot submission" \
	grep -q "relay=127.0.0.1\[127.0.0.1\]:$SUBMISSION_PORT.*status=sent" "$P/maillog"
check "over TLS verified with the CA file read before the chroot" \
	grep -q "Trusted TLS connection established to 127.0.0.1\[127.0.0.1\]:$SUBMISSION_PORT" "$P/maillog"
check "Dovecot logged the XOAUTH2 login" \
	grep -q "submission-login: Info: Login: user=<$USER1>, method=XOAUTH2" "$T/dovecot/log"
check "one token was issued" [ "$(token_requests)" = 1 ]
check "and cached inside the chroot, owned by postfix" sh -c \
	"ls '$Q/var/cache/sasl-oauth2/'*.token >/dev/null && [ \"\$(stat -c %U '$Q/var/cache/sasl-oauth2/'*.token)\" = postfix ]"

# The smtp process that did it: chrooted in the queue directory, as postfix.
smtp_pids() { # the smtp daemons in our chroot: "PID:USER ..."
	for d in /proc/[0-9]*; do
		[ "$(readlink "$d/root" 2>/dev/null)" = "$Q" ] || continue
		tr '\0' ' ' 2>/dev/null < "$d/cmdline" | grep -Eq '(^|/)smtp -t unix ' || continue
		printf '%s:%s ' "${d#/proc/}" "$(stat -c %U "$d" 2>/dev/null)"
	done
}
old=$(smtp_pids)
echo "# smtp daemons in the chroot (pid:user): $old"
check "the smtp daemon runs inside the chroot as user postfix" \
	sh -c "echo '$old' | grep -q ':postfix '"
check "the config, secret and CA file are not inside the chroot" \
	sh -c "[ ! -e '$Q$CONF' ] && [ ! -e '$Q$T/etc/contoso.secret' ] && [ ! -e '$Q$T/ca.pem' ] &&
	       ! grep -rqs -D skip -F -e 'BEGIN CERTIFICATE' -e 'client_secret' -e '$SECRET' '$Q'"

# 3. OAUTHBEARER, after a reload: new smtp processes initialise the
# plugin again (before their chroot) and take the token from the disk
# cache inside it.
postconf -c "$C" -e "smtp_sasl_mechanism_filter = oauthbearer"
postfix -c "$C" reload > "$P/reload.out" 2>&1
gone() { for p in $old; do [ ! -d "/proc/${p%%:*}" ] || return 1; done; }
check "after the reload the old smtp daemons exit" wait_for 30 gone
send 2 OAUTHBEARER
check "with oauthbearer, the second message arrives" wait_for 90 arrived 2
check "Dovecot logged the OAUTHBEARER login" \
	grep -q "submission-login: Info: Login: user=<$USER1>, method=OAUTHBEARER" "$T/dovecot/log"
check "still exactly one token: a new process read the chroot's cache" \
	[ "$(token_requests)" = 1 ]

# Nothing secret in Postfix's log (nor in the smtp daemon's stderr).
{
	printf '%s\n' "$SECRET"
	sed -n 's/^token //p' "$T/tokend.record"
	sed -n 's/^token .*\.\([^.]*\)$/\1/p' "$T/tokend.record"
} | grep -v '^$' > "$T/needles"
check "no secret or token in Postfix's log or the delivered mail" \
	sh -c "! grep -rqF -f '$T/needles' '$P/maillog' '$T/mail' $( [ -f "$P/smtp.stderr" ] && echo "'$P/smtp.stderr'")"
check "no smtp daemon died" sh -c "! grep -E 'smtp.*(exit status|killed by signal)' '$P/maillog'"

pf_stop
if [ -n "$WRAP" ]; then
	check "no sanitizer or valgrind report from the smtp daemons" \
		sh -c "! grep -E 'Sanitizer|runtime error:|==[0-9]+==' '$P/smtp.stderr'"
fi
if [ "$nfail" -ne 0 ]; then
	echo "# --- postfix log"; tail -n 40 "$P/maillog" 2>/dev/null | sed 's/^/# /'
	[ ! -s "$P/smtp.stderr" ] || { echo "# --- smtp stderr"; tail -n 40 "$P/smtp.stderr" | sed 's/^/# /'; }
fi
finish
