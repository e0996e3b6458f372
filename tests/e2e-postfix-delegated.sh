#!/bin/sh
# Postfix relaying through a personal outlook.com and a personal Gmail
# mailbox (issue 13): docs/clients.md's section "Postfix relaying through
# a personal Gmail or outlook.com mailbox", followed as written, with its
# relay hosts and the providers' endpoints made local. Its shell lines
# make the token directory inside the chroot and the link that gives the
# token_file path one meaning inside and outside it; its accounts go into
# the config; its `sasl-oauth2 login --owner postfix` lines run as root,
# the device flow for outlook.com and --no-browser (code + PKCE, the
# redirected address pasted back) for Gmail, against the strict stand-in
# tests/oauthd.py, the test acting as the user's browser; its main.cf
# lines route and authenticate each sender. Then the chrooted smtp client
# of the private Postfix (tests/postfix.sh) relays one message as each
# mailbox to Dovecot submission, which takes a token for its own mailbox
# only: both arrive, Dovecot logged each mailbox's XOAUTH2 login, the
# outlook.com refresh token rotated and the new one (the one the provider
# now honours) is in the token file inside the chroot, still postfix's
# and 0600; nothing secret in Postfix's log or the mail.
set -eu
. "$(dirname "$0")/lib.sh"
. "$here/postfix.sh"
need curl mkfifo

MS=me@outlook.com GM=me@gmail.com	# the doc's mailboxes (all local here)
MSID=11111111-0000-0000-0000-00000000000b
GID=1234567890-relay.apps.googleusercontent.com
GSECRET="GOCSPX-relay$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"
ID="e2e-postfix-delegated-$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"

make_ca
make_issuer
run_oauthd ms microsoft "$MSID"; MS_PORT=$SERVED_PORT
run_oauthd google google "$GID" "$GSECRET"; G_PORT=$SERVED_PORT
RELAY_PORT=$(free_port)
SMTPD_PORT=$(free_port)
# Dovecot takes a token for its own mailbox only (oauthd puts the
# signed-in mailbox in tenant_domain; compared whole)
SUBMISSION_RELAY_PORT=$RELAY_PORT DOVECOT_USERNAME_FORMAT=%Lu start_dovecot

# doc_block N: the Nth code block of the doc's section, unindented
doc_block() {
	sed -n '/^### Postfix relaying through a personal/,/^## /p' "$top_srcdir/docs/clients.md" |
		awk -v n="$1" '/^ *```/ { b++; next } b == 2 * n - 1 { sub(/^   /, ""); print }'
}
# The doc's queue_directory, /var/spool/postfix, is $Q here.
doc_paths() {
	sed -e "s|/var/spool/postfix/var/spool/postfix|$Q$Q|g" \
	    -e "s|/var/spool/postfix/var/spool|$Q${Q%/*}|g" -e "s|/var/spool/postfix|$Q|g"
}

# --- 2. the token file inside the chroot ----------------------------------
doc_block 1 | doc_paths > "$T/chroot.sh"
check "the doc makes a token directory for postfix and the link" \
	sh -c "grep -q '^install -d -o postfix' '$T/chroot.sh' && grep -q '^ln -s / ' '$T/chroot.sh'"
sh -eu "$T/chroot.sh"
check "inside the chroot the queue directory's path leads to its root" \
	[ "$(readlink "$Q$Q")" = / ]

# --- 3. the accounts -------------------------------------------------------
mkdir -p "$T/etc"
( umask 077; printf '%s\n' "$GSECRET" > "$T/etc/google.secret" )
G="https://127.0.0.1:$G_PORT"
doc_block 2 | doc_paths | sed \
	-e "s|\"/etc/sasl-oauth2/google.secret\"|\"$T/etc/google.secret\"|" \
	-e "s|\"1234-[^\"]*\"|\"$GID\"|; s|\"00000000-[^\"]*\"|\"$MSID\"|" \
	-e "s|provider = \"google\";|& authorization_endpoint = \"$G/o/oauth2/v2/auth\"; token_endpoint = \"$G/token\";|" \
	-e "s|tenant = \"consumers\";|& authority = \"https://127.0.0.1:$MS_PORT\";|" \
	> "$T/accounts"
check "the doc's accounts: both token files inside the chroot" \
	[ "$(grep -c "token_file = \"$Q/sasl-oauth2/" "$T/accounts")" = 2 ]
TOKEND_PORT=1	# no Entra stand-in: write_config's contoso account is unused
write_config ",
$(cat "$T/accounts")"
MSF=$Q/sasl-oauth2/outlook.json GMF=$Q/sasl-oauth2/gmail.json

# --- 4. sign in, as root, giving the files to postfix ---------------------
oc() { curl -sS --cacert "$T/ca.pem" "$@"; }
rt() { "$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["refresh_token"])' "$1"; }
# until FILE has a line matching RE (a guard against a hang)
appears() { wait_for 120 grep -q "$2" "$1"; }
# doc_login NAME LINE: the doc's login line LINE, run as root; the test
# is the user: it approves the device code, or opens the address in
# "the browser" and pastes the redirected address back
doc_login() {
	_n=$1; shift
	# shellcheck disable=SC2086 # the doc's words
	set -- ${1#sasl-oauth2 }
	rm -f "$T/paste"; mkfifo "$T/paste"
	set +e
	# shellcheck disable=SC2086
	timeout $((120 * SLOW)) $VALGRIND "$TOOL" "$@" > "$O/$_n.out" 2> "$O/$_n.err" < "$T/paste" &
	_lp=$!
	set -e
	exec 3> "$T/paste"
	case " $* " in
	*" --no-browser "*)
		appears "$O/$_n.out" '^https://' || true
		_loc=$(oc -o /dev/null -w '%{redirect_url}' "$(grep '^https://' "$O/$_n.out")") || true
		printf '%s\n' "$_loc" >&3 ;;
	*)
		appears "$O/$_n.out" 'enter the code' || true
		_c=$(sed -n 's/.*enter the code \([A-Z]*\)$/\1/p' "$O/$_n.out")
		oc "https://127.0.0.1:$MS_PORT/approve?user_code=$_c&user=$MS&action=allow" >/dev/null ;;
	esac
	exec 3>&-
	set +e; wait $_lp; echo $? > "$O/$_n.rc"; set -e
}
doc_block 3 > "$T/logins"
check "the doc signs both in with --owner postfix" \
	sh -c "grep -q '^sasl-oauth2 login --owner postfix --no-browser $GM\$' '$T/logins' &&
	       grep -q '^sasl-oauth2 login --owner postfix $MS\$' '$T/logins'"
while read -r line; do
	case $line in *"$MS"*) n=login-ms ;; *) n=login-g ;; esac
	doc_login "$n" "$line"
done < "$T/logins"
expect login-ms 0 out "signed in as $MS" "outlook.com: the device flow, approved: signed in"
expect login-g 0 out "signed in as $GM" "Gmail: code + PKCE, the address pasted back: signed in"
check "both token files are postfix's, mode 0600" \
	[ "$(stat -c %U:%a "$MSF" "$GMF" | sort -u)" = postfix:600 ]
ms0=$(rt "$MSF") g0=$(rt "$GMF")

# --- 5. main.cf: each sender its relay host and its mailbox ---------------
pf_setup relay.example.test "$SMTPD_PORT" "$RELAY_PORT"
# Both "providers" are Dovecot submission here; a sender the maps miss
# goes to relayhost, a closed port, and is deferred.
doc_block 4 | sed -e "s|\[smtp\.gmail\.com\]:587|[127.0.0.1]:$SUBMISSION_PORT|g" \
	-e "s|\[smtp-mail\.outlook\.com\]:587|[127.0.0.1]:$SUBMISSION_PORT|g" > "$T/main.cf.doc"
check "the doc's main.cf lines: sender-dependent relay hosts and authentication" \
	sh -c "grep -q '^smtp_sender_dependent_authentication = yes' '$T/main.cf.doc' &&
	       grep -q '^sender_dependent_relayhost_maps' '$T/main.cf.doc'"
cat "$T/main.cf.doc" >> "$C/main.cf"
postconf -c "$C" "relayhost = [127.0.0.1]:1" \
	"virtual_mailbox_maps = inline:{ $MS=outlook/me/, $GM=gmail/me/ }"
# The cache path as the chrooted smtp process sees it (the logins above
# used the test's: nothing of the host's /var/cache).
sed -i -e "s|^\tcache_dir = .*|\tcache_dir = \"/var/cache/sasl-oauth2\";|" "$CONF"
pf_start

# --- everything is in place: send -------------------------------------------
pf_send "$MS" "$GM" "$ID-ms" "from outlook.com"
pf_send "$GM" "$MS" "$ID-g" "from gmail"
arrived() { grep -qs "^Subject: $ID-$1\$" "$T/mail/$2/me/new/"*; }
# until it arrived, or a delivery failed or the smtp daemon did (not
# retried: with everything in place a deferral is a failure)
settled() {
	arrived "$@" || grep -Eq 'status=(deferred|bounced)|smtp.*(fatal:|exit status|killed by signal)' "$P/maillog"
}
wait_for 90 settled ms gmail || true
wait_for 90 settled g outlook || true
check "the outlook.com mailbox's message arrives" arrived ms gmail
check "the Gmail mailbox's message arrives" arrived g outlook
check "both through Dovecot's authenticated submission (ESMTPSA)" sh -c \
	"grep -qs 'by mail.contoso.test with ESMTPSA' '$T/mail/gmail/me/new/'* &&
	 grep -qs 'by mail.contoso.test with ESMTPSA' '$T/mail/outlook/me/new/'*"
check "Postfix relayed both through Dovecot submission, deferred nothing" sh -c \
	"[ \$(grep -c 'relay=127.0.0.1\[127.0.0.1\]:$SUBMISSION_PORT.*status=sent' '$P/maillog') = 2 ] &&
	 ! grep -q 'status=deferred' '$P/maillog'"
for u in "$MS" "$GM"; do
	check "Dovecot logged $u's XOAUTH2 login" \
		grep -q "submission-login: Info: Login: user=<$u>, method=XOAUTH2" "$T/dovecot/log"
done
check "Dovecot refused no login" sh -c "! grep -Eq 'auth failed|Authentication failed' '$T/dovecot/log'"

# --- the refresh tokens, inside the chroot -----------------------------------
refreshes() { grep -c "^grant=refresh_token user=$2 result=ok" "$T/$1.log" || true; }
check "one refresh for each mailbox, none refused" sh -c \
	"[ $(refreshes ms "$MS") = 1 ] && [ $(refreshes google "$GM") = 1 ] &&
	 ! grep -q 'result=error' '$T/ms.log' '$T/google.log'"
ms1=$(rt "$MSF")
check "outlook.com's refresh token rotated, the new one saved in the chroot by smtp" \
	[ "$ms1" != "$ms0" ]
check "Gmail's refresh token kept" [ "$(rt "$GMF")" = "$g0" ]
check "both token files still postfix's, 0600; no temporary file left" sh -c \
	"[ \"\$(stat -c %U:%a '$MSF' '$GMF' | sort -u)\" = postfix:600 ] &&
	 [ \$(ls -A '$Q/sasl-oauth2' | wc -l) = 2 ]"

# --- 6. check, as root: test reads postfix's sign-ins and keeps the owner --
# (--no-cache: the config's cache_dir is the chroot's path, which is the
# host's own /var/cache outside it)
doc_block 5 > "$T/tests"
check "the doc checks both accounts with sasl-oauth2 test as root" \
	[ "$(grep -c '^sasl-oauth2 test me@[a-z.]* --smtp [a-z.-]*:587$' "$T/tests")" = 2 ]
while read -r line; do
	# shellcheck disable=SC2086 # the doc's words
	set -- ${line#sasl-oauth2 }
	run "test-$(echo "$2" | cut -d@ -f2 | cut -d. -f1)" "$1" "$2" "$3" \
		"127.0.0.1:$SUBMISSION_PORT" --ca-file "$T/ca.pem" --no-cache
done < "$T/tests"
expect test-outlook 0 out "SMTP" "test me@outlook.com as root: postfix's sign-in read, the SMTP login works"
expect test-gmail 0 out "SMTP" "test me@gmail.com as root: postfix's sign-in read, the SMTP login works"
ms2=$(rt "$MSF")
check "root's test rotated outlook.com's refresh token and saved it" [ "$ms2" != "$ms1" ]
check "and both token files are still postfix's, 0600, nothing left beside them" sh -c \
	"[ \"\$(stat -c %U:%G:%a '$MSF' '$GMF' | sort -u)\" = postfix:postfix:600 ] &&
	 [ \$(ls -A '$Q/sasl-oauth2' | wc -l) = 2 ]"
oc -d "grant_type=refresh_token&client_id=$MSID&scope=x&refresh_token=$ms2" \
	"https://127.0.0.1:$MS_PORT/consumers/oauth2/v2.0/token" > "$T/new.json"
check "the saved refresh token is the one the provider honours" \
	grep -q '"access_token"' "$T/new.json"
pf_chrooted "the client secret" "$T/etc/google.secret" -F -e "$GSECRET"

# --- logout as root: postfix's sign-in, and what a killed writer left -------
# (a temporary file of a smtp process killed before its rename)
( umask 077; printf '{"refresh_token": "left-by-a-killed-writer"}\n' > "$MSF.Kz81Qp" )
chown postfix:postfix "$MSF.Kz81Qp"
run logout-ms logout "$MS"
expect logout-ms 0 out "deleted $MSF" "logout as root of the sign-in given to postfix"
check "the token file and postfix's temporary file beside it are gone" \
	sh -c "[ ! -e '$MSF' ] && [ ! -e '$MSF.Kz81Qp' ] && [ -e '$GMF' ]"

# --- nothing secret in Postfix's log or the mail ---------------------------
printf '%s\n' "$ms0" "$ms1" "$ms2" "$g0" "$GSECRET" eyJ > "$T/needles"
pf_no_secret "no refresh token, access token or client secret in Postfix's log or the mail" "$T/needles"
check "nor in the output of login and test" sh -c "! grep -qF -f '$T/needles' '$O'/login-* '$O'/test-*"
pf_finish
