#!/bin/sh
# Delegated accounts (provider = "microsoft" | "google") against the
# strict stand-in tests/oauthd.py: `sasl-oauth2 login` with the device
# flow (Microsoft: pending, slow_down, then the user approves) and with
# the authorization code + PKCE S256 + loopback redirect pasted back
# (--no-browser; the test is the browser); then imtest and mbsync log in
# to Dovecot through the plugin; Microsoft's refresh token rotates (and
# the old one is refused once the new one is used), also with 50
# processes starting at once (one refresh) and with the plugin killed at
# each point of a rotation (nothing lost), Google's is kept; a
# revoked sign-in ends in its one sentence and is remembered (no second
# request); a refresh that did not wait for the cache lock and was
# refused because others rotated meanwhile tries the file's newer token;
# logout waits for a refresh under way, revokes and deletes. No token is
# ever printed.
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
run_oauthd ms microsoft "$MSID"; MS_PORT=$SERVED_PORT
run_oauthd google google "$GID" "$GSECRET"; G_PORT=$SERVED_PORT
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

# SIGKILL at each point of a rotation, inside the plugin (saslclient
# loads it through libsasl2): an LD_PRELOAD shim, built here and never
# part of the product, kills the process at the point KILL_AT names:
#   received  the answer is in, the new refresh token not yet written
#             (at mkstemp of the temporary file beside token_file)
#   created   the temporary file exists, empty
#   half      half of it written
#   written   written and fsync'ed, not yet renamed
#   renamed   renamed over token_file, the directory not yet fsync'ed
#   synced    all written, the access token not yet cached or used
#   cached    the access token in the cache, not yet sent
# After each, the token file is whole and holds a refresh token the
# stand-in accepts: the next process logs in (refreshing with it, or
# with the cached token after "cached", whose refresh token the next
# row's victim then uses), and the temporary files killed writers left
# (private, mode 0600) are swept by the next rotation. Before "renamed"
# the file still holds the old token while the stand-in has issued a
# new one nobody saved: the old one is accepted because its successor
# was never used (tests/oauthd.py's grace; Microsoft is more lenient:
# it does not revoke a replaced refresh token at all).
cat > "$T/killat.c" <<'EOC'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int
at(const char *point)
{
	const char *p = getenv("KILL_AT");

	return p != NULL && strcmp(p, point) == 0;
}

static void
die(void)
{
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
}

/* s is KILL_FILE or a temporary file beside it (KILL_FILE.XXXXXX) */
static int
is_file(const char *s)
{
	const char *f = getenv("KILL_FILE");
	size_t n = f != NULL ? strlen(f) : 0;

	return n > 0 && strncmp(s, f, n) == 0 && (s[n] == '\0' || s[n] == '.');
}

/* fd is open on KILL_FILE (or a temporary), or on its directory */
static int
fd_is(int fd, int dir)
{
	const char *f = getenv("KILL_FILE"), *slash;
	char link[64], p[4096];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if (f == NULL || (n = readlink(link, p, sizeof(p) - 1)) <= 0)
		return 0;
	p[n] = '\0';
	if (!dir)
		return is_file(p);
	slash = strrchr(f, '/');
	return slash != NULL && (size_t)n == (size_t)(slash - f) &&
	    strncmp(p, f, (size_t)n) == 0;
}

int
mkstemp(char *t)
{
	int (*real)(char *) = (int (*)(char *))dlsym(RTLD_NEXT, "mkstemp");
	int ours = is_file(t), fd;

	if (ours && at("received"))
		die();
	fd = real(t);
	if (ours && fd != -1 && at("created"))
		die();
	return fd;
}

ssize_t
write(int fd, const void *b, size_t n)
{
	ssize_t (*real)(int, const void *, size_t) =
	    (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");

	if (at("half") && n > 1 && fd_is(fd, 0)) {
		(void)real(fd, b, n / 2);
		die();
	}
	return real(fd, b, n);
}

int
fsync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	int r = real(fd);

	if ((at("written") && fd_is(fd, 0)) || (at("synced") && fd_is(fd, 1)))
		die();
	return r;
}

int
rename(const char *from, const char *to)
{
	int (*real)(const char *, const char *) =
	    (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
	const char *c = getenv("KILL_CACHE");
	size_t n = strlen(to);
	int r = real(from, to);

	if (at("renamed") && is_file(to))
		die();
	if (at("cached") && c != NULL && strncmp(to, c, strlen(c)) == 0 &&
	    n > 6 && strcmp(to + n - 6, ".token") == 0)
		die();
	return r;
}
EOC
if ${CC:-cc} -shared -fPIC -o "$T/killat.so" "$T/killat.c" -ldl 2>"$O/killat.cc"; then
	k0=$(wc -l < "$T/ms.log")
	for p in received created half written renamed synced cached; do
		rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
		before=$(rt "$T/tok/alice.json" 2>/dev/null) || before=""
		n=$(refreshes ms "$ALICE")
		# (in a subshell whose own "Killed" goes nowhere)
		( set +e
		# shellcheck disable=SC2086
		timeout $((60 * SLOW)) env LD_PRELOAD="${SAN_PRELOAD:+$SAN_PRELOAD }$T/killat.so" \
			ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
			KILL_AT=$p KILL_FILE="$T/tok/alice.json" KILL_CACHE="$T/cache" \
			$VALGRIND "$SC" -m XOAUTH2 -u "$ALICE" > "$O/kill-$p.out" 2>&1 </dev/null
		echo $? > "$O/kill-$p.rc" ) 2>/dev/null
		krc=$(cat "$O/kill-$p.rc")
		check "$p: the process was killed there (SIGKILL), after the refresh was answered" \
			sh -c "[ $krc = 137 ] && [ $(refreshes ms "$ALICE") = $((n + 1)) ]"
		after=$(rt "$T/tok/alice.json" 2>/dev/null) || after=""
		temps=0
		for f in "$T"/tok/alice.json.*; do [ ! -e "$f" ] || temps=$((temps + 1)); done
		case $p in
		received|created|half|written) want=old ;;
		*) want=new ;;
		esac
		if [ "$want" = old ]; then
			check "$p: token_file whole, still the old refresh token" \
				sh -c "[ -n '$after' ] && [ '$after' = '$before' ]"
		else
			check "$p: token_file whole, the new refresh token" \
				sh -c "[ -n '$after' ] && [ '$after' != '$before' ]"
		fi
		check "$p: token_file mode 0600" [ "$(stat -c %a "$T/tok/alice.json")" = 600 ]
		case $p in
		created|half|written)
			check "$p: the temporary file left behind is private (mode 0600)" \
				sh -c "[ $temps = 1 ] && [ \$(stat -c %a '$T'/tok/alice.json.*) = 600 ]"
			# as if it had been left a while ago: the next rotation sweeps it
			touch -d "@$(($(date +%s) - 120))" "$T"/tok/alice.json.* ;;
		*)
			check "$p: no temporary file" [ "$temps" = 0 ] ;;
		esac
		if imtest_ok "$ALICE" XOAUTH2; then pass "$p: a new process logs in"
		else fail "$p: a new process logs in"; cat "$T/imtest.out"; tail -n 3 "$T/ms.log"; fi
		if [ $p = cached ]; then
			check "$p: with the cached token (no refresh)" \
				[ "$(refreshes ms "$ALICE")" = $((n + 1)) ]
		else
			# before "renamed" that is the old token, whose successor
			# was issued but never used: accepted (the grace)
			check "$p: refreshing with the token on disk, accepted" \
				[ "$(refreshes ms "$ALICE")" = $((n + 2)) ]
			check "$p: and no temporary file is left" \
				sh -c "! ls '$T/tok' | grep -q '^alice\\.json\\.'"
		fi
	done
	rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
	if imtest_ok "$ALICE" XOAUTH2; then pass "after the last kill, a refresh with the token on disk logs in"
	else fail "after the last kill, a refresh with the token on disk"; cat "$T/imtest.out"; fi
	check "no refresh was refused during the kills" \
		sh -c "! tail -n +$((k0 + 1)) '$T/ms.log' | grep '^grant=refresh_token' | grep -qv 'result=ok'"
else
	echo "ok - # SKIP rotation kills: no C compiler for the LD_PRELOAD shim"
fi

# A refresh that does not wait for the cache lock (test --no-cache) and
# whose refresh token two others rotate meanwhile: the stand-in refuses
# it as used up (AADSTS70000); the file's newer one is tried, once.
MS="https://127.0.0.1:$MS_PORT"
oc "$MS/hold" >/dev/null
set +e
timeout $((120 * SLOW)) $VALGRIND "$TOOL" test --no-login --no-cache "$ALICE" \
	> "$O/nocache.out" 2> "$O/nocache.err" </dev/null &
tp=$!
set -e
i=0; while [ "$(oc "$MS/held")" != '{"held": 1}' ]; do
	i=$((i + 1)); [ $i -lt $((600 * SLOW)) ] || break; sleep 0.05; done
check "test --no-cache: its refresh is held at the stand-in" [ "$(oc "$MS/held")" = '{"held": 1}' ]
for k in 1 2; do
	rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
	run rotate$k test --no-login "$ALICE"
done
check "meanwhile two logins rotate the refresh token twice" \
	sh -c "[ $(rc rotate1) = 0 ] && [ $(rc rotate2) = 0 ]"
r=$(grep -c "error:reused" "$T/ms.log" || true)
oc "$MS/release" >/dev/null
set +e; wait $tp; trc=$?; set -e
check "released, its refresh token is refused as used up" \
	[ "$(grep -c "error:reused" "$T/ms.log" || true)" = $((r + 1)) ]
check "and the file's newer one gets its token" sh -c \
	"[ $trc = 0 ] && grep -q 'OK  *token: new from the token endpoint' '$O/nocache.out'"
check "saying why it asked twice" \
	grep -q "refused and replaced by another process meanwhile; trying the new one" "$O/nocache.err"
rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
if imtest_ok "$ALICE" XOAUTH2; then pass "the token file it left logs in"
else fail "the token file it left logs in"; cat "$T/imtest.out"; tail -n 3 "$T/ms.log"; fi

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
# the lock held by another process throughout logout's wait (timeout):
# logout gives up with a sentence, and revokes and deletes nothing
"$PYTHON3" -c 'import fcntl, sys, time
fs = [open(p) for p in sys.argv[1:]]
for f in fs: fcntl.flock(f, fcntl.LOCK_EX)
time.sleep(600)' "$T"/cache/*.lock &
hp=$!
i=0; while ! held; do i=$((i + 1)); [ $i -lt $((600 * SLOW)) ] || break; sleep 0.05; done
r=$(grep -c "^grant=revoke" "$T/google.log" || true)
run logout-busy logout "$BOB"
kill $hp 2>/dev/null || true; wait $hp 2>/dev/null || true
expect logout-busy 75 err "another process held the token cache lock of account $BOB throughout " \
	"logout while the lock stays held: its sentence, 75"
expect logout-busy 75 err "nothing was revoked or deleted: run sasl-oauth2 logout $BOB again" \
	"which says what to do"
check "and nothing was revoked or deleted" \
	sh -c "[ -s '$T/tok/bob.json' ] && [ \$(grep -c '^grant=revoke' '$T/google.log') = $r ]"

# logout while another process refreshes (the stand-in answers 2 s
# late): logout waits for the credential's lock, so that the refresh
# token it revokes is the one that refresh used (with Microsoft, it
# saves a rotated one), and nothing writes the file after it is
# deleted. (Then the file is put back, for the rows below.)
rm -f "$T/cache"/*.token "$T/cache"/*/*.token 2>/dev/null || true
cp "$T/tok/bob.json" "$T/bob.keep"
n=$(refreshes google "$BOB")
oc "$G/delay?seconds=$((2 * SLOW))" >/dev/null
set +e
timeout $((120 * SLOW)) $VALGRIND "$TOOL" token "$BOB" > "$T/racing.tok" 2> "$O/racing.err" </dev/null &
tp=$!
set -e
held() { # whether a process holds a lock file of the cache
	for f in "$T"/cache/*.lock "$T"/cache/*/*.lock; do
		[ -e "$f" ] && ! flock -n "$f" true && return 0
	done
	return 1
}
i=0; while ! held; do i=$((i + 1)); [ $i -lt $((600 * SLOW)) ] || break; sleep 0.05; done
check "a refresh is under way (it holds the credential's lock)" held
run logout-race logout "$BOB"
set +e; wait $tp; trc=$?; set -e
oc "$G/delay?seconds=0" >/dev/null
check "the refresh ends with its token" sh -c "[ $trc = 0 ] && [ -s '$T/racing.tok' ]"
rm -f "$T/racing.tok"
expect logout-race 0 out "revoked the refresh token of $BOB" "logout, meanwhile, revokes"
last() { grep -n "^grant=$1 user=$BOB result=ok" "$T/google.log" | tail -n 1 | cut -d: -f1; }
check "after the refresh had its answer (it waited for the lock)" sh -c \
	"[ $(refreshes google "$BOB") = $((n + 1)) ] && [ $(last revoke) -gt $(last refresh_token) ]"
check "and the token file stays deleted" [ ! -e "$T/tok/bob.json" ]
cp "$T/bob.keep" "$T/tok/bob.json"; rm -f "$T/bob.keep"

# what a login or rotation killed before its rename left beside the
# file (a whole refresh token, here a fresh one): logout deletes it too
( umask 077; cp "$T/tok/bob.json" "$T/tok/bob.json.Kx7q2Z" )
run logout logout "$BOB"
expect logout 0 out "revoked the refresh token of $BOB" "logout revokes"
check "logout deleted the token file" [ ! -e "$T/tok/bob.json" ]
check "and the temporary file a killed writer left beside it" [ ! -e "$T/tok/bob.json.Kx7q2Z" ]
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
