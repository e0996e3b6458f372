#!/bin/sh
# Delegated accounts (provider = "microsoft" | "google") against the
# strict stand-in tests/oauthd.py: `sasl-oauth2 login` with the device
# flow (Microsoft: pending, slow_down, then the user approves) and with
# the authorization code + PKCE S256 + loopback redirect pasted back
# (--no-browser; the test is the browser); then imtest and mbsync log in
# to Dovecot through the plugin; Microsoft's refresh token rotates (and
# the old one is refused once the new one is used), Google's is kept; a
# revoked sign-in ends in its one sentence and is remembered (no second
# request); logout revokes and deletes. No token is ever printed.
set -eu
. "$(dirname "$0")/lib.sh"
need curl mkfifo
MSID=11111111-0000-0000-0000-00000000000a
GID=1234567890-test.apps.googleusercontent.com
GSECRET="GOCSPX-test$(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"
ALICE=alice@contoso.com
BOB=bob@contoso.com

make_ca
start_tokend		# the issuer key Dovecot trusts, and the default account
oauthd() { # oauthd NAME PROVIDER CLIENT [SECRET]
	printf '{ "issuer_key": "%s", "kid": "k1", "client_id": "%s"%s }\n' \
		"$T/issuer.key" "$3" "${4:+, \"client_secret\": \"$4\"}" > "$T/$1.json"
	serve "$1" "$PYTHON3" "$here/oauthd.py" --config "$T/$1.json" --provider "$2" \
		--cert "$T/server.pem" --key "$T/server.key" --port-file "$T/$1.port" \
		--log "$T/$1.log"
}
oauthd ms microsoft "$MSID"; MS_PORT=$SERVED_PORT
oauthd google google "$GID" "$GSECRET"; G_PORT=$SERVED_PORT
touch "$T/ms.log" "$T/google.log"
start_dovecot
mkdir -p "$T/tok"; chmod 700 "$T/tok"
( umask 077; printf '%s\n' "$GSECRET" > "$T/google.secret" )
G="https://127.0.0.1:$G_PORT"
write_config "
	,{ match = \"$ALICE\"; provider = \"microsoft\"; tenant = \"consumers\";
	  client_id = \"$MSID\"; authority = \"https://127.0.0.1:$MS_PORT\";
	  token_file = \"$T/tok/alice.json\"; }
	,{ match = \"$BOB\"; provider = \"google\"; client_id = \"$GID\";
	  client_secret_file = \"$T/google.secret\"; token_file = \"$T/tok/bob.json\";
	  authorization_endpoint = \"$G/o/oauth2/v2/auth\";
	  token_endpoint = \"$G/token\"; revocation_endpoint = \"$G/revoke\"; }"
oc() { curl -sS --cacert "$T/ca.pem" "$@"; }
rt() { "$PYTHON3" -c 'import json,sys; print(json.load(open(sys.argv[1]))["refresh_token"])' "$1"; }
refreshes() { grep -c "^grant=refresh_token user=$2 result=ok" "$T/$1.log" || true; }

run check-config check-config
expect check-config 0 out "microsoft sign-in, token file" "check-config accepts the delegated accounts and says what they are"

# device_login NAME ACTION: a device-flow login the "user" answers with
# ACTION (allow, deny, expire) as soon as it polls.
device_login() {
	: > "$O/$1.out"
	set +e
	timeout $((120 * SLOW)) $VALGRIND "$TOOL" login "$ALICE" > "$O/$1.out" 2> "$O/$1.err" </dev/null &
	_lp=$!
	set -e
	_i=0; while ! grep -q "enter the code" "$O/$1.out" 2>/dev/null; do
		_i=$((_i + 1)); [ $_i -lt $((300 * SLOW)) ] || break; sleep 0.1; done
	_c=$(sed -n 's/.*enter the code \([A-Z]*\)$/\1/p' "$O/$1.out")
	oc "https://127.0.0.1:$MS_PORT/approve?user_code=$_c&user=$ALICE&action=$2" >/dev/null
	set +e; wait $_lp; echo $? > "$O/$1.rc"; set -e
}
device_login declined deny
expect declined 69 err "the sign-in as $ALICE was declined" "device flow: the user declines"
device_login expired expire
expect expired 69 err "has expired before the sign-in: run sasl-oauth2 login $ALICE again" \
	"device flow: the code expires"
check "nothing saved by a declined or expired sign-in" [ ! -e "$T/tok/alice.json" ]

# --- Microsoft: the device flow
set +e
timeout $((120 * SLOW)) $VALGRIND "$TOOL" login "$ALICE" > "$O/login-ms.out" 2> "$O/login-ms.err" </dev/null &
lp=$!
set -e
i=0; while ! grep -q "enter the code" "$O/login-ms.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt $((300 * SLOW)) ] || break; sleep 0.1; done
code=$(sed -n 's/.*enter the code \([A-Z]*\)$/\1/p' "$O/login-ms.out")
check "login prints the verification address and a user code" [ -n "$code" ]
i=0; while ! grep -q "authorization_pending" "$T/ms.log"; do
	i=$((i + 1)); [ $i -lt $((300 * SLOW)) ] || break; sleep 0.1; done
oc "https://127.0.0.1:$MS_PORT/approve?user_code=$code&action=slow_down" >/dev/null
i=0; while ! grep -q "slow_down" "$T/ms.log"; do
	i=$((i + 1)); [ $i -lt $((300 * SLOW)) ] || break; sleep 0.1; done
oc "https://127.0.0.1:$MS_PORT/approve?user_code=$code&user=$ALICE&action=allow" >/dev/null
set +e; wait $lp; lrc=$?; set -e
if [ $lrc = 0 ] && grep -q "signed in as $ALICE" "$O/login-ms.out"; then
	pass "device flow: pending, slow_down, approved: signed in"
else fail "device flow login (exit $lrc)"; cat "$O/login-ms.out" "$O/login-ms.err"; cat "$T/ms.log"; fi
check "the device flow was polled no faster than asked (one slow_down)" \
	[ "$(grep -c slow_down "$T/ms.log")" = 1 ]
check "token_file is mode 0600" [ "$(stat -c %a "$T/tok/alice.json")" = 600 ]
check "token_file names who signed in and the scopes" \
	grep -q "\"email\": *\"$ALICE\".*\"scope\"" "$T/tok/alice.json"
rt0=$(rt "$T/tok/alice.json")

if imtest_ok "$ALICE" XOAUTH2; then pass "imtest XOAUTH2 with the Microsoft sign-in"
else fail "imtest XOAUTH2 with the Microsoft sign-in"; cat "$T/imtest.out"; tail "$T/ms.log"; fi
rt1=$(rt "$T/tok/alice.json")
check "one refresh, and the rotated refresh token was saved" \
	sh -c "[ $(refreshes ms "$ALICE") = 1 ] && [ '$rt0' != '$rt1' ]"
check "still mode 0600 after the rotation, no temporary file left" \
	sh -c "[ \$(stat -c %a '$T/tok/alice.json') = 600 ] && [ \$(ls '$T/tok' | wc -l) = 1 ]"
rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
if mbsync_run XOAUTH2 "$ALICE"; then pass "mbsync XOAUTH2 with the Microsoft sign-in (rotated again)"
else fail "mbsync with the Microsoft sign-in"; cat "$T/mbsync.out"; tail "$T/ms.log"; fi
rt2=$(rt "$T/tok/alice.json")
check "a second refresh rotated it again" sh -c "[ '$rt1' != '$rt2' ] && [ $(refreshes ms "$ALICE") = 2 ]"
oc -d "grant_type=refresh_token&client_id=$MSID&scope=x&refresh_token=$rt0" \
	"https://127.0.0.1:$MS_PORT/consumers/oauth2/v2.0/token" > "$T/old.json"
check "the stand-in refuses a used-up refresh token (strict rotation)" grep -q invalid_grant "$T/old.json"

# Many processes start at once with no cached token, and the refresh
# token rotates: one refresh request between them (the cache lock), all
# get the same access token, the new refresh token is saved and works,
# and the one it replaced is refused once the new one has been used.
# 50 (25 under ASan, 12 under valgrind: each costs far more there; the
# count proves the same thing). The stand-in answers the refresh 1 s late
# so that the others pile up on the lock; a machine slow enough to start
# them later than that still gives one request (they read the cache).
N=$((50 / SLOW))
[ -z "$SAN_PRELOAD" ] || N=25
rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
n=$(refreshes ms "$ALICE")
rt2=$(rt "$T/tok/alice.json")
oc "https://127.0.0.1:$MS_PORT/delay?seconds=1" >/dev/null
pids="" i=0
while [ $i -lt $N ]; do
	i=$((i + 1))
	# shellcheck disable=SC2086
	timeout $((120 * SLOW)) $VALGRIND "$TOOL" token "$ALICE" > "$T/par$i.tok" 2> "$O/par$i.err" </dev/null &
	pids="$pids $!"
done
okn=0; for p in $pids; do if wait "$p"; then okn=$((okn + 1)); fi; done
oc "https://127.0.0.1:$MS_PORT/delay?seconds=0" >/dev/null
echo "# $N processes at once: $(($(refreshes ms "$ALICE") - n)) refresh request(s)"
check "$N processes at once: all get a token ($okn)" [ $okn = $N ]
check "with exactly one refresh request between them" [ "$(refreshes ms "$ALICE")" = $((n + 1)) ]
check "and all the same token (the one it fetched)" sh -c \
	"[ -s '$T/par1.tok' ] && [ \$(cat '$T'/par*.tok | sort -u | wc -l) = 1 ]"
rt3=$(rt "$T/tok/alice.json")
check "the token file holds the new refresh token, whole, mode 0600, no temporary file" \
	sh -c "[ -n '$rt3' ] && [ '$rt3' != '$rt2' ] && [ \$(stat -c %a '$T/tok/alice.json') = 600 ] &&
	[ \$(ls '$T/tok' | wc -l) = 1 ]"
rm -f "$T"/par*.tok
rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
if imtest_ok "$ALICE" XOAUTH2; then pass "and a following login refreshes with it"
else fail "the refresh token saved under concurrency"; cat "$T/imtest.out"; fi
check "(that login's refresh was accepted)" [ "$(refreshes ms "$ALICE")" = $((n + 2)) ]
rt4=$(rt "$T/tok/alice.json")
oc -d "grant_type=refresh_token&client_id=$MSID&scope=x&refresh_token=$rt2" \
	"https://127.0.0.1:$MS_PORT/consumers/oauth2/v2.0/token" > "$T/old.json"
check "the token the $N replaced is refused, now that its successor was used" \
	grep -q "AADSTS70000: The refresh token was already used" "$T/old.json"

# revoked: one sentence, remembered (no hammering)
oc "https://127.0.0.1:$MS_PORT/revoke-all?user=$ALICE" >/dev/null
rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
run revoked token "$ALICE"
expect revoked 77 err "the sign-in for $ALICE is no longer valid (AADSTS700082" \
	"a revoked sign-in: its sentence"
check "the sentence says what to run" grep -q "run sasl-oauth2 login $ALICE" "$O/revoked.err"
n=$(grep -c "^grant=refresh_token" "$T/ms.log")
run revoked2 token "$ALICE"
check "the refusal is remembered: no second request" \
	sh -c "[ $(rc revoked2) != 0 ] && [ \$(grep -c '^grant=refresh_token' '$T/ms.log') = $n ]"

# --- Google: code + PKCE S256 + loopback redirect, pasted back
mkfifo "$T/paste"
set +e
timeout $((120 * SLOW)) $VALGRIND "$TOOL" login --no-browser "$BOB" > "$O/login-g.out" 2> "$O/login-g.err" < "$T/paste" &
lp=$!
set -e
exec 3> "$T/paste"
i=0; while ! grep -q "^https://" "$O/login-g.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt $((300 * SLOW)) ] || break; sleep 0.1; done
url=$(grep "^https://" "$O/login-g.out")
case $url in *code_challenge_method=S256*) pass "the authorization URL asks for PKCE S256" ;;
*) fail "the authorization URL asks for PKCE S256: $url" ;; esac
loc=$(oc -o /dev/null -w '%{redirect_url}' "$url")
# first an answer with another state (a forged or stale one): refused
exec 3>&-
set +e; wait $lp; lrc=$?; set -e
check "login waited for the pasted address (nothing pasted: fails)" [ $lrc != 0 ]
set +e
timeout $((120 * SLOW)) $VALGRIND "$TOOL" login --no-browser "$BOB" > "$O/forged.out" 2> "$O/forged.err" < "$T/paste" &
lp=$!
set -e
exec 3> "$T/paste"
i=0; while ! grep -q "the page itself" "$O/forged.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt $((300 * SLOW)) ] || break; sleep 0.1; done
# the old answer, as if sent to this sign-in's port
redir=$(sed -n 's|.*(\(http://127.0.0.1:[0-9]*/\)\.\.\..*|\1|p' "$O/forged.out")
printf '%s\n' "$loc" | sed "s|^http://127.0.0.1:[0-9]*/|$redir|" >&3
exec 3>&-
set +e; wait $lp; echo $? > "$O/forged.rc"; set -e
expect forged 69 err "state does not match" "an answer to another sign-in (state) is refused"
check "nothing saved" [ ! -e "$T/tok/bob.json" ]
set +e
timeout $((120 * SLOW)) $VALGRIND "$TOOL" login --no-browser "$BOB" > "$O/login-g.out" 2> "$O/login-g.err" < "$T/paste" &
lp=$!
set -e
exec 3> "$T/paste"
i=0; while ! grep -q "^https://" "$O/login-g.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt $((300 * SLOW)) ] || break; sleep 0.1; done
url=$(grep "^https://" "$O/login-g.out")
loc=$(oc -o /dev/null -w '%{redirect_url}' "$url")
printf '%s\n' "$loc" >&3
exec 3>&-
set +e; wait $lp; lrc=$?; set -e
if [ $lrc = 0 ] && grep -q "signed in as $BOB" "$O/login-g.out"; then
	pass "code + PKCE + loopback redirect (--no-browser): signed in"
else fail "Google login (exit $lrc)"; cat "$O/login-g.out" "$O/login-g.err"; cat "$T/google.log"; fi
g0=$(rt "$T/tok/bob.json")
if imtest_ok "$BOB" OAUTHBEARER; then pass "imtest OAUTHBEARER with the Google sign-in"
else fail "imtest OAUTHBEARER with the Google sign-in"; cat "$T/imtest.out"; tail "$T/google.log"; fi
check "Google's refresh token is kept (not rotated)" \
	sh -c "[ '$g0' = '$(rt "$T/tok/bob.json")' ] && [ $(refreshes google "$BOB") = 1 ]"
run describe test --no-login "$BOB"
check "test says who signed in, when, and the scopes" \
	grep -q "google sign-in of $BOB .*signed in 20.*refresh token 0 days old, scopes" "$O/describe.out" "$O/describe.err"

run clist cache list "$BOB"
check "cache list says who signed in and the scopes" \
	grep -q "google sign-in of $BOB .*scopes https://mail.google.com/" "$O/clist.out"
# a token file holding another mailbox's sign-in: an error, no request
cp "$T/tok/bob.json" "$T/bob.keep"
( umask 077; sed "s/\"$BOB\"/\"eve@contoso.com\"/" "$T/bob.keep" > "$T/tok/bob.json" )
rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
n=$(grep -c "^grant=refresh_token" "$T/google.log")
run mismatch token "$BOB"
expect mismatch 78 err "holds the sign-in of eve@contoso.com, not of $BOB" \
	"a sign-in of another mailbox is an error"
check "and no request for it" [ "$(grep -c "^grant=refresh_token" "$T/google.log")" = "$n" ]
cp "$T/bob.keep" "$T/tok/bob.json"; rm -f "$T/bob.keep"

run logout logout "$BOB"
expect logout 0 out "revoked the refresh token of $BOB" "logout revokes"
check "logout deleted the token file" [ ! -e "$T/tok/bob.json" ]
run after token "$BOB"
expect after 78 err "has not signed in" "after logout: not signed in, run login"

# nothing printed or logged holds a token
bad=0
for f in "$O"/*.out "$O"/*.err "$T"/ms.log "$T"/google.log; do
	for t in "$rt0" "$rt1" "$rt2" "$rt3" "$rt4" "$g0"; do
		! grep -qF -- "$t" "$f" || { bad=1; echo "# token in $f"; }
	done
	! grep -q "eyJ" "$f" || { bad=1; echo "# JWT in $f"; }
done
check "no refresh or access token in any output or log" [ $bad = 0 ]
finish
