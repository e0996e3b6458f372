#!/bin/sh
# The fault matrix: every failure a user can cause or meet, one row
# each. A failing row ends in one sentence through sasl_seterror (shown
# by saslclient, which prints sasl_errdetail) within timeout + 1 s, and
# `sasl-oauth2 test` gives the matching diagnosis; a row the plugin
# survives (a broken cache) still logs in and says why in the log.
# No row may crash, hang, leak (valgrind/ASan runs) or print a secret.
set -eu
. "$(dirname "$0")/lib.sh"
make_ca
start_tokend
start_dovecot
# A certificate Azure does not know, for AADSTS700027.
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=unknown app" \
	-keyout "$T/unknown.key" -out "$T/unknown.crt" 2>/dev/null
chmod 600 "$T/unknown.key"
unknown=$(cert_account unknown@contoso.com | sed "s|$T/app|$T/unknown|g")
ACCOUNTS="$(cert_account cert@contoso.com PS256)$unknown"
# The rows that test the timeout run with timeout = TO (3 s). The others
# want the endpoint's answer, not "no answer within timeout": they run
# with RTO, room for a request on a busy machine and for slow builds.
# The retry rows too: a transient refusal is retried only when the wait
# and a second request still fit within timeout (plugin/token.c), and
# with timeout = 3 a first request slower than 1 s (valgrind on a busy
# machine) left no room: no retry was made.
TO=3 RTO=$((30 * SLOW))
TIMEOUT=$RTO write_config "$ACCOUNTS"
cp "$CONF" "$T/good.conf"
# Each failing row ends within timeout + 1 s: the product's promise,
# timed from the plugin's first "requesting a token" line to its
# sentence (saslclient's start and exit, seconds under valgrind or on a
# busy machine, are not the plugin's doing), with SLACK more seconds
# (tests/lib.sh: 2, more for slow builds) for the lines to be read.
LIMIT_MS=$(( (RTO + 1 + SLACK) * 1000 ))

# stamp OUT TIMES: copy standard input to OUT, and each line to TIMES
# after the time it came (ms)
stamp() {
	: > "$1"; : > "$2"
	while IFS= read -r _l; do
		printf '%s\n' "$_l" >> "$1"
		printf '%s %s\n' "$(($(date +%s%N) / 1000000))" "$_l" >> "$2"
	done
}

# fail_row NAME SENTENCE DIAGNOSIS [USER]: saslclient fails in time with
# SENTENCE; `sasl-oauth2 test USER --no-login --no-cache` exits non-zero
# and prints DIAGNOSIS (skipped when DIAGNOSIS is "").
fail_row() {
	u=${4:-$USER1}
	rm -rf "$T/cache"
	{ ( export SASLCLIENT_DEBUG=1; client -u "$u" ) && echo 0 > "$T/row.rc" ||
		echo $? > "$T/row.rc"; } 2>&1 |
		stamp "$T/row.out" "$T/row.times"
	if [ "$(cat "$T/row.rc")" = 0 ]; then
		fail "$1: the login failed"; return
	fi
	t1=$(sed -n 's/^\([0-9]*\) .*requesting a token for client_id.*/\1/p' "$T/row.times" | head -n 1)
	t2=$(sed -n 's/^\([0-9]*\) saslclient: .*/\1/p' "$T/row.times" | tail -n 1)
	ms=$(( ${t2:-0} - ${t1:-${t2:-0}} ))
	if grep -qF -- "$2" "$T/row.out"; then
		pass "$1: \"$2\" (${ms} ms${t1:+ after the request began})"
	else
		fail "$1: the sentence"; echo "# wanted: $2"; sed 's/^/# /' "$T/row.out"
	fi
	# (a row that asks nothing, such as a config error, is only held to
	# its guard: saslclient was not killed by timeout)
	if [ "$(cat "$T/row.rc")" != 124 ] && [ -n "$t2" ] &&
	    [ "$ms" -le "${ROW_LIMIT_MS:-$LIMIT_MS}" ]; then
		pass "$1: within timeout + 1 s"
	else
		fail "$1: within timeout + 1 s"; echo "# status $(cat "$T/row.rc"), $ms ms"
	fi
	check "$1: one sentence, no crash" sh -c \
		"[ \$(grep -c '^saslclient: ' '$T/row.out') = 1 ] && ! grep -q 'Sanitizer\|runtime error\|Segmentation' '$T/row.out'"
	[ -n "$3" ] || return 0
	if $AS timeout $((60 * SLOW)) $VALGRIND "$TOOL" test "$u" --no-login --no-cache \
		> "$T/tool.out" 2>&1 </dev/null; then
		fail "$1: sasl-oauth2 test fails too"
	elif grep -qF -- "$3" "$T/tool.out"; then
		pass "$1: sasl-oauth2 test says \"$3\""
	else
		fail "$1: sasl-oauth2 test diagnosis"; echo "# wanted: $3"; sed 's/^/# /' "$T/tool.out"
	fi
}

# ok_row NAME [LOGLINE]: the login still succeeds (and the SASL log says
# LOGLINE).
ok_row() {
	if client -u "$USER1" > "$T/row.out" 2>&1 &&
	    { [ -z "${2:-}" ] || grep -qF -- "$2" "$T/row.out"; }; then
		pass "$1: still logs in${2:+; the log says \"$2\"}"
	else
		fail "$1"; echo "# wanted: $2"; sed 's/^/# /' "$T/row.out"
	fi
}
# client ARGS: saslclient, as the user $AS names when set.
AS=""
client() {
	if [ -n "$AS" ]; then
		# shellcheck disable=SC2086
		timeout $((60 * SLOW)) $AS $VALGRIND "$SC" "$@" </dev/null
	else
		saslclient "$@"
	fi
}

set_conf() { sed "$1" "$T/good.conf" > "$CONF"; chmod 600 "$CONF"; }
ENDPOINT="https://127.0.0.1:$TOKEND_PORT/$TENANT/oauth2/v2.0/token"
UNREACHABLE="likely cause: the token endpoint cannot be reached"
BUSY="likely cause: the token endpoint is temporarily unavailable"
NOTENTRA="likely cause: the authority does not answer like an Entra token endpoint"

## The token endpoint
down=$(free_port)
set_conf "s|127.0.0.1:$TOKEND_PORT|127.0.0.1:$down|"
fail_row "endpoint refusing connections" \
	"connection to the token endpoint 127.0.0.1:$down refused" "$UNREACHABLE"
set_conf "s|https://127.0.0.1:$TOKEND_PORT|https://login.invalid|"
fail_row "DNS failure" "cannot resolve the token endpoint's host login.invalid" "$UNREACHABLE"
set_conf "s/timeout = $RTO;/timeout = $TO;/"
ROW_LIMIT_MS=$(( (TO + 1 + SLACK) * 1000 ))
for m in hang slow:6; do
	tokend_mode "$m"
	fail_row "endpoint $m" \
		"no answer from the token endpoint 127.0.0.1:$TOKEND_PORT within $TO seconds" "$UNREACHABLE"
done
ROW_LIMIT_MS=""
cp "$T/good.conf" "$CONF"
tokend_mode html500
fail_row "HTTP 500 with an HTML body" "answered HTTP 500 with a non-JSON body" "$BUSY"
for code in 429 503; do
	tokend_mode "$code:1"
	n=$(token_requests "transient:$code")
	fail_row "$code with Retry-After: 1" "(HTTP $code): temporarily_unavailable: AADSTS50196" "$BUSY"
	if [ $(( $(token_requests "transient:$code") - n )) = 4 ]; then
		pass "$code: the plugin and the tool each retry once after Retry-After"
	else
		fail "$code: the plugin and the tool each retry once after Retry-After"
		echo "# $(( $(token_requests "transient:$code") - n )) requests (timeout $RTO); what they logged:"
		grep -h 'retrying\|refused' "$T/row.out" "$T/tool.out" | sed 's/^/# /'
	fi
	check "$code: the plugin logs its retry" grep -q "retrying in 1 s" "$T/row.out"
	# (600 s: past RTO, whichever build)
	tokend_mode "$code:600"
	n=$(token_requests "transient:$code")
	fail_row "$code with Retry-After past the timeout" "(HTTP $code)" ""
	check "$code: no retry when Retry-After exceeds timeout" \
		[ $(( $(token_requests "transient:$code") - n )) = 1 ]
done
tokend_mode "503:1" 1
n=$(token_requests)
if $AS saslclient -u "$USER1" > "$T/row.out" 2>&1; then
	pass "one 503, then success: the retry logs in"; else
	fail "one 503, then success: the retry logs in"; cat "$T/row.out"; fi
tokend_mode badjson
fail_row "200 with invalid JSON" "a body that is not a JSON object" "$NOTENTRA"
tokend_mode no_access_token
fail_row "JSON without access_token" "answer has no access_token" "$NOTENTRA"
tokend_mode no_expires_in
fail_row "JSON without expires_in" "answer has no expires_in" "$NOTENTRA"
for m in expires_in_garbage expires_in_absurd; do
	tokend_mode "$m"
	fail_row "$m" "sent an expires_in that is not a number of seconds between 1 and one year" "$NOTENTRA"
done
tokend_mode token_type_mac
fail_row "token_type not Bearer" "token_type other than Bearer" "$NOTENTRA"
for m in token_crlf token_soh; do
	tokend_mode "$m"
	fail_row "a token with ${m#token_}" \
		"sent an access_token that is empty, too long, or holds spaces or control characters" "$NOTENTRA"
done
tokend_mode huge
fail_row "an 8 MiB body" "sent more than 65536 bytes" "$NOTENTRA"
tokend_mode ""

# TLS: a certificate from another CA, and one for another host.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=another CA" \
	-keyout "$T/other-ca.key" -out "$T/other-ca.pem" 2>/dev/null
set_conf "s|ca_file = \"$T/ca.pem\"|ca_file = \"$T/other-ca.pem\"|"
fail_row "a TLS certificate not signed by ca_file" \
	"the TLS certificate of 127.0.0.1:$TOKEND_PORT is not trusted by $T/other-ca.pem" "ca_file"
openssl req -newkey rsa:2048 -nodes -subj "/CN=other.example" \
	-keyout "$T/other.key" -out "$T/other.csr" 2>/dev/null
printf 'subjectAltName=DNS:other.example\n' > "$T/other.ext"
openssl x509 -req -in "$T/other.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
	-CAcreateserial -days 2 -extfile "$T/other.ext" -out "$T/other.pem" 2>/dev/null
# (the last --cert and --key given win)
run_tokend other "$T/tokend.json" --cert "$T/other.pem" --key "$T/other.key"
set_conf "s|127.0.0.1:$TOKEND_PORT|127.0.0.1:$SERVED_PORT|"
fail_row "a TLS certificate for another host" \
	"no alternative certificate subject name matches target host name" "ca_file"
cp "$T/good.conf" "$CONF"

## Entra's refusals
printf 'not-the-secret\n' > "$T/etc/contoso.secret"
fail_row "wrong secret" "AADSTS7000215 (the client secret is wrong" "likely cause: the client secret is wrong"
printf 'expired-secret\n' > "$T/etc/contoso.secret"
fail_row "expired secret" "AADSTS7000222 (the client secret has expired" "likely cause: the client secret has expired"
printf '%s\n' "$SECRET" > "$T/etc/contoso.secret"
set_conf "0,/client_id = \"$CLIENT\"/s//client_id = \"00000000-0000-0000-0000-00000000dead\"/"
fail_row "unknown application" "AADSTS700016 (no application with this client_id" \
	"likely cause: no application 00000000-0000-0000-0000-00000000dead"
set_conf "0,/tenant = \"$TENANT\"/s//tenant = \"nosuch.onmicrosoft.com\"/"
fail_row "unknown tenant" "AADSTS90002 (the tenant does not exist" \
	"likely cause: tenant nosuch.onmicrosoft.com does not exist"
cp "$T/good.conf" "$CONF"
fail_row "a certificate Azure does not know" "AADSTS700027" \
	"likely cause: Azure does not know this certificate's thumbprint" unknown@contoso.com
tokend_mode clock_skew
fail_row "clock skew" "AADSTS700024" "clock" cert@contoso.com
tokend_mode ""

## The mail server refuses the token: Dovecot's error challenge is
## answered; the token, fresh from the endpoint, is kept for
## failure_backoff seconds (a new one would be refused alike: issue 10,
## item 7); after cache clear the next attempt fetches a new one.
for m in OAUTHBEARER XOAUTH2; do
	rm -rf "$T/cache"
	tokend_mode wrong_key
	if imtest_ok "$USER1" "$m"; then fail "$m: a token Dovecot refuses fails the login"; else
		pass "$m: a token Dovecot refuses fails the login"; fi
	chal=$(sed -n 's/^S: + \([A-Za-z0-9+\/=]\{8,\}\).*/\1/p' "$T/imtest.out" | head -n 1)
	check "$m: Dovecot sent an error challenge and imtest got NO" \
		sh -c "[ -n '$chal' ] && grep -q 'Authentication failed' '$T/imtest.out'"
	check "$m: the refused token, fresh from the endpoint, stays in the disk cache" \
		sh -c "ls '$T/cache'/*.token >/dev/null 2>&1"
	tokend_mode ""
	saslclient -m "$m" -u "$USER1" -c "$chal" > "$T/row.out" 2>&1 || true
	check "$m: the sentence decodes Dovecot's challenge" \
		grep -q "the server rejected the token for $USER1 (status" "$T/row.out"
	check "$m: and says for how long no new token is asked for" \
		grep -q "came fresh from the token endpoint.* [0-9]* s (failure_backoff)" "$T/row.out"
	n=$(token_requests)
	# shellcheck disable=SC2086
	check "$m: sasl-oauth2 cache clear ends it" \
		sh -c "timeout $((60 * SLOW)) $VALGRIND '$TOOL' cache clear >/dev/null 2>&1 </dev/null"
	check "$m: after cache clear the next attempt (mbsync) fetches a new token and logs in" mbsync_run "$m"
	check "$m: exactly one new token request" [ "$(token_requests)" = $((n + 1)) ]
done

## The configuration
printf 'version = 1;\naccounts = ( { match = "*" \n' > "$CONF"
fail_row "config syntax error" "$CONF:3: syntax error" "FAIL  config: $CONF:3: syntax error"
set_conf 's/refresh_margin =/refresh_marjin =/'
fail_row "config unknown key" "unknown key \"refresh_marjin\" in defaults" "unknown key \"refresh_marjin\""
export SASL_OAUTH2_CONF="$T/etc/nosuch.conf"
fail_row "config file missing" "cannot open configuration file $T/etc/nosuch.conf" \
	"cannot open configuration file $T/etc/nosuch.conf"
export SASL_OAUTH2_CONF="$CONF"
cp "$T/good.conf" "$CONF"
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null; then
	# root reads every file: ask as nobody, who may not read the 0600 file
	chmod -R a+rX "$T/etc" "$top_builddir/tests" "$top_builddir/.libs" 2>/dev/null || true
	chmod 600 "$CONF"
	AS="setpriv --reuid=65534 --regid=65534 --clear-groups"
	fail_row "config file unreadable" "cannot open configuration file $CONF: Permission denied" \
		"cannot open configuration file $CONF: Permission denied"
	AS=""
elif [ "$(id -u)" != 0 ]; then
	chmod 000 "$CONF"
	fail_row "config file unreadable" "cannot open configuration file $CONF: Permission denied" \
		"cannot open configuration file $CONF: Permission denied"
	chmod 600 "$CONF"
fi
chmod 640 "$T/etc/contoso.secret"
fail_row "secret readable by the group" "secret file $T/etc/contoso.secret is accessible by group or others" \
	"is accessible by group or others"
chmod 600 "$T/etc/contoso.secret"
: > "$T/etc/contoso.secret"
fail_row "empty secret file" "secret file $T/etc/contoso.secret is empty" "is empty"
printf '%s\r\n\n' "$SECRET" > "$T/etc/contoso.secret"
check "a secret with CR LF and a blank line is trimmed" saslclient -u "$USER1"

## The cache: the login goes on from memory or from the endpoint.
rm -rf "$T/cache"
saslclient -u "$USER1" > /dev/null 2>&1
f=$(ls "$T/cache"/*.token)
printf '{"version":1,"access_tok' > "$f"
n=$(token_requests)
ok_row "a truncated cache file" "token cache file $f is corrupt: replacing it with a new token"
check "a truncated cache file is replaced by a new token" [ "$(token_requests)" = $((n + 1)) ]
head -c 300 /dev/urandom > "$f"
ok_row "a corrupted cache file" "token cache file $f is corrupt: replacing it with a new token"
check "a corrupted cache file is replaced by a new token" [ "$(token_requests)" = $((n + 2)) ]
rm -rf "$T/cache" "$T/elsewhere"
mkdir -m 700 "$T/elsewhere"
chown 65534:65534 "$T/elsewhere" 2>/dev/null || true
ln -s "$T/elsewhere" "$T/cache"
ok_row "a symlinked cache directory owned by someone else" "is not a directory but a symbolic link"
check "nothing was written through the link" sh -c "[ -z \"\$(ls -A '$T/elsewhere')\" ]"
rm -f "$T/cache"
set_conf "s|cache_dir = \"$T/cache\"|cache_dir = \"$T/etc/contoso.secret/cache\"|"
ok_row "a cache directory that cannot be made (read-only)" "memory only"
cp "$T/good.conf" "$CONF"
rm -rf "$T/cache"
# A full disk: no byte may be written to a file (SIGXFSZ ignored, so
# writes fail with EFBIG); the output goes through a pipe, which may.
# Not under valgrind, which cannot run without writing files of its own.
(trap '' XFSZ; ulimit -f 0; timeout 60 "$SC" -u "$USER1" 2>&1; echo "status $?") |
	cat > "$T/row.out"
if grep -q '^status 0$' "$T/row.out"; then
	pass "a full disk: still logs in"
else
	fail "a full disk: still logs in"; sed 's/^/# /' "$T/row.out"
fi
check "a full disk: the log says the cache could not be written" \
	grep -q "cannot write token cache file in $T/cache: File too large" "$T/row.out"
check "a full disk leaves no partial cache file" sh -c "! ls '$T/cache'/*.token >/dev/null 2>&1"

check "the secret appears in no output" \
	sh -c "! grep -rqF -- '$SECRET' '$T/row.out' '$T/tool.out' '$T/mbsync.out' '$T/dovecot/log' '$T/tokend.log'"
finish
