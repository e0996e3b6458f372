# A private Postfix for the end-to-end tests (e2e-postfix, e2e-postfix-
# google); sourced after lib.sh. Its config, queue (the chroot) and data
# live under $P; its smtp client is chrooted as Debian ships it and
# relays through Dovecot submission (relayhost), which relays back to a
# second smtpd whose content_filter hands the mail to virtual(8), into
# Dovecot's mail store. The test appends its own main.cf lines (the
# SASL password maps, the virtual mailboxes) between pf_setup and
# pf_start.
#
# Under ASan and valgrind only the smtp daemon is wrapped (a private
# daemon_directory whose smtp is a script that execs $WRAP and the real
# one, with its standard error in $P/smtp.stderr), and pf_finish judges
# its reports.

need postfix postconf
DAEMONS=$(postconf -dh daemon_directory 2>/dev/null || true)
[ -x "$DAEMONS/smtp" ] || skip "postfix's smtp daemon is not in '$DAEMONS'"
id postfix >/dev/null 2>&1 || skip "there is no user postfix"
MASTER_CF=/usr/share/postfix/master.cf.dist	# Debian's master.cf
[ -f "$MASTER_CF" ] || MASTER_CF=/etc/postfix/master.cf
[ -f "$MASTER_CF" ] || skip "no master.cf to start from"

P="$T/postfix" C="$T/postfix/etc" Q="$T/postfix/spool"

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
trap 'pf_stop; cleanup' EXIT

# pf_wrap: the private daemon_directory with the wrapped smtp (ASan,
# valgrind); sets daemon_dir.
pf_wrap() {
	daemon_dir=$DAEMONS
	[ -n "$WRAP" ] || return 0
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
}

# pf_setup MYHOSTNAME SMTPD_PORT RELAY_PORT: the instance, not started:
# main.cf's common part (relayhost Dovecot submission over verified TLS
# with SASL, mechanism xoauth2; the plugin and its config by
# import_environment), master.cf with an smtpd on SMTPD_PORT (mail in)
# and one on RELAY_PORT (what Dovecot relays back, to virtual(8)), the
# smtp client chrooted (sets shipped: master.cf's chroot as shipped),
# and in the chroot a cache directory for user postfix and an
# nsswitch.conf (nothing of the plugin's config). Needs SUBMISSION_PORT,
# SASL_PATH and CONF.
pf_setup() {
	mkdir -p "$C" "$Q"
	install -d -o postfix -m 700 "$P/data"
	cp "$MASTER_CF" "$C/master.cf"
	pf_wrap
	cat > "$C/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $Q
data_directory = $P/data
daemon_directory = $daemon_dir
maillog_file = $P/maillog
maillog_file_prefixes = $P
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = $1
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
smtp_sasl_mechanism_filter = xoauth2
smtp_sasl_security_options = noanonymous
smtp_tls_security_level = encrypt
smtp_tls_CAfile = $T/ca.pem
smtp_tls_loglevel = 1

# What Dovecot relays back: into the mailboxes in Dovecot's mail store.
virtual_mailbox_base = $T/mail
virtual_mailbox_domains =
virtual_uid_maps = static:$(id -u nobody)
virtual_gid_maps = static:$(id -g nobody)
CF
	postconf -c "$C" -MX smtp/inet
	postconf -c "$C" -M "127.0.0.1:$2/inet=127.0.0.1:$2 inet n - y - - smtpd"
	postconf -c "$C" -M "127.0.0.1:$3/inet=127.0.0.1:$3 inet n - y - - smtpd -o content_filter=virtual:"
	shipped=$(postconf -c "$C" -Fh smtp/unix/chroot)
	[ "$shipped" = y ] || postconf -c "$C" -F smtp/unix/chroot=y
	mkdir -p "$Q/etc" "$Q/var/cache"
	install -d -o postfix -g postfix -m 700 "$Q/var/cache/sasl-oauth2"
	printf 'hosts: files\n' > "$Q/etc/nsswitch.conf"
	PF_SMTPD_PORT=$2 PF_RELAY_PORT=$3
}

# pf_start: start the instance and wait for its smtpd listeners.
pf_start() {
	if ! postfix -c "$C" start > "$P/start.out" 2>&1; then
		cat "$P/start.out"; cat "$P/maillog" 2>/dev/null || true
		echo "Bail out! postfix did not start"; exit 99
	fi
	wait_port "$PF_SMTPD_PORT"
	wait_port "$PF_RELAY_PORT"
}

# pf_send FROM TO SUBJECT TEXT: one message over SMTP to Postfix's smtpd
# (Message-ID: SUBJECT@relay.contoso.test).
pf_send() {
	"$PYTHON3" - "$PF_SMTPD_PORT" "$@" <<'PY'
import smtplib, sys
port, sender, rcpt, mid, text = sys.argv[1:]
msg = ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@relay.contoso.test>\r\n\r\n"
       "%s\r\n" % (sender, rcpt, mid, mid, text))
with smtplib.SMTP("127.0.0.1", int(port), timeout=30) as s:
    s.sendmail(sender, [rcpt], msg)
PY
}

# wait_for SECONDS COMMAND...: until the command succeeds (SECONDS
# scaled by SLOW)
wait_for() {
	_w=$(($1 * SLOW * 10)); shift
	while ! "$@" 2>/dev/null; do
		_w=$((_w - 1)); [ "$_w" -gt 0 ] || return 1
		sleep 0.1
	done
}

# pf_flush_until SECONDS COMMAND...: wait_for the command, flushing the
# queue (postqueue -f: every deferred message, whatever its next retry
# time) at once and every 3 s. A deferred message can be parked for a
# minute: when the 1 s queue scan finds it still locked by the delivery
# that deferred it, qmgr logs "skipped, still being delivered" and sets
# it aside (seen on loaded machines); a flush takes it back.
pf_flush_until() {
	_w=$(($1 * SLOW * 10)) _n=0; shift
	while ! "$@" 2>/dev/null; do
		[ $((_n % 30)) -ne 0 ] || postqueue -c "$C" -f 2>/dev/null || true
		_n=$((_n + 1)) _w=$((_w - 1)); [ "$_w" -gt 0 ] || return 1
		sleep 0.1
	done
}

# smtp_pids: the smtp daemons in our chroot, "PID:USER ..."
smtp_pids() {
	for d in /proc/[0-9]*; do
		[ "$(readlink "$d/root" 2>/dev/null)" = "$Q" ] || continue
		tr '\0' ' ' 2>/dev/null < "$d/cmdline" | grep -Eq '(^|/)smtp -t unix ' || continue
		printf '%s:%s ' "${d#/proc/}" "$(stat -c %U "$d" 2>/dev/null)"
	done
}

# pf_chrooted WHAT PATHS GREP-ARGS...: the smtp daemons run inside the
# chroot as postfix, and neither the config nor WHAT (described; PATHS:
# its files outside) is inside it, nor any text grep GREP-ARGS finds
# there (recursion does not follow the chroot's link to /).
pf_chrooted() {
	_what=$1 _paths=$2; shift 2
	_pids=$(smtp_pids)
	echo "# smtp daemons in the chroot (pid:user): $_pids"
	check "the smtp daemons run inside the chroot as user postfix" \
		sh -c "echo '$_pids' | grep -q ':postfix '"
	_in=
	for _p in "$CONF" $_paths; do [ ! -e "$Q$_p" ] || _in="$_in $_p"; done
	! grep -rqs -D skip "$@" "$Q" || _in="$_in (a match of grep $*)"
	if [ -z "$_in" ]; then pass "the config and $_what are not inside the chroot"
	else fail "the config and $_what are not inside the chroot:$_in"; fi
}

# pf_no_secret DESCRIPTION NEEDLES-FILE: none of the lines of the file in
# Postfix's log, the mail store or the smtp daemon's stderr.
pf_no_secret() {
	check "$1" sh -c "! grep -rqF -f '$2' '$P/maillog' '$T/mail' $( [ -f "$P/smtp.stderr" ] && echo "'$P/smtp.stderr'")"
}

# pf_finish: stop the instance, judge the wrapped smtp daemons' reports,
# and on failure show why: a short summary as "# why:" lines (the log's
# warnings and deferrals, the queue, the daemons in the chroot), which
# tests/check.sh shows next to the failed checks, then the log's end;
# then finish.
pf_finish() {
	check "no smtp daemon died" sh -c "! grep -E 'smtp.*(exit status|killed by signal)' '$P/maillog'"
	if [ "$nfail" -ne 0 ]; then
		{ grep -E 'warning|fatal|panic|status=deferred|throttl|reload' "$P/maillog" 2>/dev/null |
			sed -e 's/^[A-Z][a-z]* *[0-9]* //' -e 's/ relay postfix\// /' | cut -c 1-200 | tail -n 6
		  postqueue -c "$C" -p 2>&1 | head -n 3
		  echo "smtp daemons in the chroot (pid:user): $(smtp_pids)"
		} | sed 's/^/# why: /'
	fi
	pf_stop
	if [ -n "$WRAP" ]; then
		check "no sanitizer or valgrind report from the smtp daemons" \
			sh -c "! grep -E 'Sanitizer|runtime error:|==[0-9]+==' '$P/smtp.stderr'"
	fi
	if [ "$nfail" -ne 0 ]; then
		echo "# --- postfix log"; tail -n 24 "$P/maillog" 2>/dev/null | sed 's/^/# /'
		[ ! -s "$P/smtp.stderr" ] || { echo "# --- smtp stderr"; tail -n 40 "$P/smtp.stderr" | sed 's/^/# /'; }
	fi
	finish
}
