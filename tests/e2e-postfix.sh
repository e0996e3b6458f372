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
# one, with its standard error in a file), and its reports are judged
# (the instance: tests/postfix.sh, shared with e2e-postfix-google).
set -eu
. "$(dirname "$0")/lib.sh"
. "$here/postfix.sh"

AUTH_HOST=login.microsoftonline.test	# resolved inside the chroot only
MAILDIR="$T/mail/contoso.com/user"
ID="e2e-postfix-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"

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
pf_setup relay.contoso.test "$SMTPD_PORT" "$RELAY_PORT"
cat >> "$C/main.cf" <<CF
smtp_sasl_password_maps = inline:{ [127.0.0.1]:$SUBMISSION_PORT=$USER1 }
virtual_mailbox_maps = inline:{ $USER1=contoso.com/user/ }
CF
check "master.cf runs the smtp client chrooted (as shipped: chroot=$shipped)" \
	[ "$(postconf -c "$C" -Fh smtp/unix/chroot)" = y ]

# The chroot (pf_setup): a cache directory for user postfix and an
# nsswitch.conf, but no etc/hosts yet, and nothing of the plugin's config.
pf_start

# send N MECH: one message over SMTP to Postfix's smtpd
send() { pf_send "$USER1" "$USER1" "$ID-$1" "relayed with $2"; }
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

# 2. With etc/hosts the retry logs in with XOAUTH2 and the message
# arrives. The queue is flushed, as an admin does after a fix, so that
# the retry does not wait on Postfix's scheduling (pf_flush_until).
printf '127.0.0.1 %s\n' "$AUTH_HOST" > "$Q/etc/hosts"
check "with etc/hosts the deferred message arrives in the mailbox" pf_flush_until 90 arrived 1
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
pf_no_secret "no secret or token in Postfix's log or the delivered mail" "$T/needles"
pf_finish
