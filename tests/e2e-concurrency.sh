#!/bin/sh
# Many client processes starting together with an empty cache make one
# token request between them (flock single flight), and all log in; a
# process killed (SIGKILL) while it holds the cache lock blocks nobody;
# many processes that meet a refusal together ask once between them.
set -eu
. "$(dirname "$0")/lib.sh"
need flock
# Waiters take the lock holder's outcome, or give up after timeout +
# 0.5 s with a sentence: the holder shares the machine with 200 starting
# clients (and valgrind), so the timeout is generous and scales with SLOW
# and SLACK (tests/lib.sh): what is counted must not depend on speed.
TIMEOUT=$((10 * SLOW + 2 * SLACK)) testbed
# 200 processes at once (50 under valgrind: each one costs ~150 MB;
# 100 under ASan, where each costs about as much CPU as three plain
# ones: 200 of them took 60 to over 180 s on a loaded 2-core machine).
N=$((200 / SLOW))
[ -z "$SAN_PRELOAD" ] || N=100
N=${CLIENTS:-$N}
# They share the machine: each may take far longer than one alone
# would. The guard is for a hang (which still ends the test), never a
# measure: 10 minutes.
IMTEST_TIMEOUT=600

# start_all NAME COMMAND: run COMMAND N times at once, with $i set to
# the index and $out to $T/NAME.$i; then wait for them all (only for
# them: a bare "wait" would also wait for tokend) and set $bad to the
# number that failed and $ms to the milliseconds it all took.
start_all() {
	_pids="" i=0 bad=0
	_t0=$(date +%s%N)
	while [ $i -lt "$N" ]; do
		out="$T/$1.$i"
		( $2 ) &
		_pids="$_pids $!"
		i=$((i + 1))
	done
	for _p in $_pids; do wait "$_p" || bad=$((bad + 1)); done
	ms=$(( ($(date +%s%N) - _t0) / 1000000 ))
}
one_imtest() { imtest_login "user$i@contoso.com" XOAUTH2 "$out"; }
one_sc() { saslclient -m XOAUTH2 -u "user$i@contoso.com" > "$out" 2>&1; }

## N imtest logins at once, empty cache
# a slow endpoint widens the window in which the processes race
tokend_mode "slow:0.5"
start_all imtest one_imtest
echo "# $N imtest processes at once: $ms ms, $(token_requests) token request(s)"
check "every imtest exited cleanly ($bad did not)" [ "$bad" -eq 0 ]
ok=$(grep -l "Authenticated\." "$T"/imtest.* | wc -l)
check "$N imtest clients started at once all logged in ($ok)" [ "$ok" -eq "$N" ]
check "with exactly one token request ($(token_requests))" [ "$(token_requests)" = 1 ]
check "Dovecot logged $N XOAUTH2 logins" \
	[ "$(grep -c 'Login: user=<user[0-9]*@contoso.com>, method=XOAUTH2' "$T/dovecot/log")" -eq "$N" ]
check "Dovecot served them side by side (no process_limit reached)" \
	sh -c "! grep -q 'process_limit' '$T/dovecot/log'"

## A lock holder killed with SIGKILL
lock_busy() { # the cache lock is held by some process
	for _l in "$T"/cache/*.lock; do
		[ -e "$_l" ] && ! flock -n "$_l" true && return 0
	done
	return 1
}
rm -rf "$T/cache"
# (the victim is killed while it waits: a long wait costs nothing, and a
# busy machine may take seconds to see the lock taken)
tokend_mode "slow:$((10 * SLOW))"
# shellcheck disable=SC2086
$VALGRIND "$SC" -m XOAUTH2 -u "$USER1" > "$T/victim.out" 2>&1 </dev/null &
victim=$!
i=0
while ! lock_busy && [ $i -lt $((100 * SLOW)) ]; do i=$((i + 1)); sleep 0.1; done
check "a client holds the cache lock while it waits for the endpoint" lock_busy
kill -9 "$victim"
wait "$victim" 2>/dev/null || true
if lock_busy; then fail "killed with SIGKILL, its lock is free at once"; else
	pass "killed with SIGKILL, its lock is free at once"; fi
tokend_mode ""
t0=$(date +%s%N)
SASLCLIENT_DEBUG=1 saslclient -m XOAUTH2 -u "$USER1" > "$T/next.out" 2>&1 && st=0 || st=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "# the next client after the kill: $ms ms"
check "the next client gets a token and a login response" [ "$st" = 0 ]
check "without waiting for the dead holder's lock" \
	sh -c "! grep -q 'cannot lock the token cache' '$T/next.out'"
check "no cache file was left torn: one whole token file" \
	cache_whole "$T/cache"
check "nor a temporary file" sh -c "! ls -A '$T/cache' | grep -q '^\\.'"

## N processes meet a refusal together: one request, all fail at once
## (under valgrind N / SLOW: the plain and ASan runs show the numbers)
printf 'not-the-secret\n' > "$T/etc/contoso.secret"
# remembered for an hour, not the default 60 s: N clients starting on a
# busy machine (or under valgrind) may take longer than a minute, and a
# late one would find the refusal expired and ask again
sed -i "s/^\ttimeout = \(.*\);\$/\ttimeout = \1;\n\tfailure_backoff = 3600;/" "$CONF"
tokend_mode "slow:0.5"
N=$((N / SLOW))
start_all refused one_sc
n=$(token_requests "error:7000215")
echo "# $N clients with a wrong secret: $ms ms, $n token request(s)"
check "all $N clients with a wrong secret fail ($bad failed)" [ "$bad" -eq "$N" ]
check "with exactly one token request between them ($n)" [ "$n" = 1 ]
said=$(grep -l "AADSTS7000215 (the client secret is wrong" "$T"/refused.* | wc -l)
check "each says why ($said)" [ "$said" -eq "$N" ]
kept=$(grep -l "(remembered; next attempt in" "$T"/refused.* | wc -l)
check "all but the one that asked say it was remembered ($kept)" [ "$kept" -eq $((N - 1)) ]
finish
