#!/bin/sh
# A threaded host and a configuration that breaks while a host runs
# (issue 10, items 4 and 6), through tests/threads.c:
#  - one thread's token endpoint never answers; logins of other threads
#    (another account, and a mailbox that matches no account) end while
#    it still waits: no lock is held across someone else's request;
#  - a config file that breaks while the host runs is parsed once, and
#    its error logged once, until it changes again; one broken from the
#    start is read once, not on every login; a chmod that fixes the
#    file or a directory on its path is noticed.
# Judged by the order of events and by counts, never by the clock.
set -eu
. "$(dirname "$0")/lib.sh"
THREADS="$top_builddir/tests/threads"
[ -x "$THREADS" ] || { echo "not built: $THREADS"; exit 99; }
testbed
threads() {
	# shellcheck disable=SC2086
	timeout $((400 * SLOW)) $WRAP "$THREADS" --conf "$CONF" "$@" </dev/null
}

# A token endpoint that takes connections and never answers; it touches
# $T/hang.seen at the first one and stops when $T/hang.stop appears.
"$PYTHON3" - "$T/hang.port" "$T/hang.seen" "$T/hang.stop" <<'PY' &
import os, socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64); s.settimeout(0.1)
open(sys.argv[1] + ".tmp", "w").write(str(s.getsockname()[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while not os.path.exists(sys.argv[3]):
    try:
        c, _ = s.accept()
        held.append(c)
        open(sys.argv[2], "w").close()
    except socket.timeout:
        pass
PY
PIDS="$PIDS $!"
i=0; while [ ! -s "$T/hang.port" ]; do i=$((i + 1)); [ $i -lt $((300 * SLOW)) ]; sleep 0.1; done
HANG_PORT=$(cat "$T/hang.port")
# the long timeout only bounds the test: the endpoint is stopped as
# soon as the other logins are done
write_config "$(printf ',\n\t{ match = "hang@fabrikam.com"; tenant = "%s"; client_id = "%s";\n\t  authority = "https://127.0.0.1:%s"; timeout = %s;\n\t  client_secret_file = "%s"; }' \
	"$TENANT" "$CLIENT" "$HANG_PORT" "${HANG_TIMEOUT:-300}" "$T/etc/contoso.secret")"

threads wait hang@fabrikam.com "$T/hang.seen" "$USER1" nobody@elsewhere.test \
	"$USER1" nobody@elsewhere.test "$USER1" nobody@elsewhere.test \
	"$USER1" nobody@elsewhere.test > "$T/threads.out" 2>&1 &
tp=$!
i=0
while ! grep -q '^others-first:' "$T/threads.out" 2>/dev/null && kill -0 $tp 2>/dev/null; do
	sleep 0.2
done
touch "$T/hang.stop"
wait $tp || true
check "8 threads log in (or fail to match) while a 9th waits on a hanging endpoint" \
	grep -qx 'others-first: yes' "$T/threads.out"
check "the other account's 4 logins succeed" \
	[ "$(grep -c "^login $USER1: ok" "$T/threads.out")" = 4 ]
check "the 4 mailboxes of no account fail with their sentence" \
	[ "$(grep -c '^login nobody@elsewhere.test: failed: .*no account in' "$T/threads.out")" = 4 ]
check "the hanging login ends in a sentence of its own" \
	grep -q '^login hang@fabrikam.com: failed: .*no token for hang@fabrikam.com' "$T/threads.out"
check "one token request for the 4 logins of one account" [ "$(token_requests)" = 1 ]
[ $nfail = 0 ] || cat "$T/threads.out"

# A config that breaks while the host runs: read and reported once.
write_config
printf 'version = 1;\naccounts = ( { match = "*"; ' > "$T/broken.conf"
threads reload "$USER1" "$T/broken.conf" 5 > "$T/reload.out" 2>&1 || true
check "after the file broke, the loaded config keeps serving (6 logins)" \
	[ "$(grep -c "^login $USER1: ok" "$T/reload.out")" = 6 ]
check "the broken file's error is logged once, not on every login" grep -qx 'kept: 1' "$T/reload.out"
check "the broken file is read once" grep -qx 'opened: 2' "$T/reload.out"
[ $nfail = 0 ] || cat "$T/reload.out"

cp "$T/broken.conf" "$CONF"
threads broken "$USER1" 5 > "$T/broken.out" 2>&1 || true
check "a config broken from the start fails each login with its sentence" \
	[ "$(grep -c "^login $USER1: failed: .*$CONF:2: syntax error" "$T/broken.out")" = 5 ]
check "and is read once, not on every login" grep -qx 'opened: 1' "$T/broken.out"
[ $nfail = 0 ] || cat "$T/broken.out"

# The fix a sentence names (chmod of the file, or of a directory on its
# path) is noticed by a running host, though the contents are the same.
write_config
chmod 664 "$CONF"
threads chmod "$USER1" "$CONF" 600 2 > "$T/chmod.out" 2>&1 || true
check "a group-writable config is refused" \
	grep -q "^login $USER1: failed: .*writable by group or others" "$T/chmod.out"
check "after chmod 600 the running host logs in" \
	[ "$(grep -c "^login $USER1: ok" "$T/chmod.out")" = 2 ]
chmod 775 "$T/etc"
threads chmod "$USER1" "$T/etc" 755 2 > "$T/chmoddir.out" 2>&1 || true
chmod 755 "$T/etc"
check "a config in a group-writable directory is refused" \
	grep -q "^login $USER1: failed: .*$T/etc" "$T/chmoddir.out"
check "after chmod 755 of the directory the running host logs in" \
	[ "$(grep -c "^login $USER1: ok" "$T/chmoddir.out")" = 2 ]
[ $nfail = 0 ] || cat "$T/chmod.out" "$T/chmoddir.out"
finish
