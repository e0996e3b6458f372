#!/bin/sh
# One token cache directory for every user of the machine, through the
# sasl-oauth2 command run as root and as nobody (setpriv) against the
# local Entra stand-in: a shared cache_dir (root, 1733) gives each uid
# its own uid-N subdirectory, made 0700; `cache list` and `cache clear`
# find it; check-config accepts the shared directory and names what it
# refuses; a fresh account's ~/.cache/sasl-oauth2 is made 0700.
set -eu
. "$(dirname "$0")/lib.sh"
[ -x "$TOOL" ] || { echo "tool not built: $TOOL"; exit 99; }
[ "$(id -u)" = 0 ] || skip "needs root (runs parts as nobody)"
need setpriv
id nobody >/dev/null 2>&1 || skip "no user nobody"
NUID=$(id -u nobody)
NGROUP=$(id -gn nobody)

make_ca
start_tokend
write_config
S="$T/shared"
install -d -m 1733 "$S"
sed -i "s|cache_dir = \"$T/cache\"|cache_dir = \"$S\"|" "$CONF"

# nobody's own config and secret (a config must be its reader's or root's)
N="$T/nobody"
install -d -o nobody -g "$NGROUP" -m 700 "$N" "$N/home"
sed "s|$T/etc/contoso.secret|$N/secret|" "$CONF" > "$N/n.conf"
cp "$T/etc/contoso.secret" "$N/secret"
chown nobody:"$NGROUP" "$N/n.conf" "$N/secret"
chmod 600 "$N/n.conf" "$N/secret"

O="$T/out"
mkdir -p "$O"
# run NAME ROOT|NOBODY ARGS...: the tool's stdout, stderr, exit code
run() {
	name=$1 who=$2; shift 2
	set +e
	if [ "$who" = nobody ]; then
		# shellcheck disable=SC2086
		timeout $((60 * SLOW)) setpriv --reuid=nobody --regid="$NGROUP" --clear-groups \
			env HOME="$N/home" $VALGRIND "$TOOL" -c "$N/n.conf" "$@" \
			> "$O/$name.out" 2> "$O/$name.err" </dev/null
	else
		# shellcheck disable=SC2086
		timeout $((60 * SLOW)) $VALGRIND "$TOOL" -c "$CONF" "$@" \
			> "$O/$name.out" 2> "$O/$name.err" </dev/null
	fi
	echo $? > "$O/$name.rc"
	set -e
}
# expect NAME CODE FILE-SUFFIX STRING DESCRIPTION
expect() {
	if [ "$(cat "$O/$1.rc")" = "$2" ] && grep -qF -- "$4" "$O/$1.$3"; then
		pass "$5"
	else
		fail "$5 (exit $(cat "$O/$1.rc"), wanted $2 and \"$4\" in $3)"
		sed 's/^/# out: /' "$O/$1.out" | cut -c1-200
		sed 's/^/# err: /' "$O/$1.err" | cut -c1-200
	fi
}
owner_mode() { stat -c '%u %a' "$1" 2>/dev/null || echo none; }

# --- root and nobody share one directory -------------------------------
run cc root check-config
expect cc 0 out "OK    *@contoso.com" "check-config: a shared 1733 cache_dir is fine"
check "check-config: no warning about it" sh -c "! grep -q cache_dir '$O/cc.out' '$O/cc.err'"
n=$(token_requests)
run t1 root token "$USER1"
run t2 root token "$USER1"
expect t2 0 out "eyJ" "root: token"
check "root: the second token comes from the disk cache" [ "$(token_requests)" = $((n + 1)) ]
check "root's uid-0 made 0700" [ "$(owner_mode "$S/uid-0")" = "0 700" ]
check "root's token file lies in uid-0" sh -c "ls '$S/uid-0' | grep -q '\\.token\$'"
run n1 nobody token "$USER1"
run n2 nobody token "$USER1"
expect n2 0 out "eyJ" "nobody: token"
check "nobody: the second token comes from the disk cache" [ "$(token_requests)" = $((n + 2)) ]
check "nobody's uid-$NUID made 0700" [ "$(owner_mode "$S/uid-$NUID")" = "$NUID 700" ]
check "the shared directory holds only the two subdirectories" \
	[ "$(ls -A "$S" | sort | tr '\n' ' ')" = "uid-0 uid-$NUID " ]

# --- cache list / clear find the per-uid directory ---------------------
run rl root cache list
expect rl 0 out "$S/uid-0/" "cache list (root): names the file in uid-0"
expect rl 0 out "expires " "cache list (root): with its expiry"
run nl nobody cache list
expect nl 0 out "$S/uid-$NUID/" "cache list (nobody): names the file in uid-$NUID"
expect nl 0 out "expires " "cache list (nobody): with its expiry"
run nc nobody cache clear
expect nc 0 out "removed $S/uid-$NUID/" "cache clear (nobody): removes its own file"
check "cache clear (nobody): no token file left in its directory (the lock stays)" \
	sh -c "! ls -A '$S/uid-$NUID' | grep -v '\\.lock\$'"
check "cache clear (nobody): root's token is still there" \
	sh -c "ls '$S/uid-0' | grep -q '\\.token\$'"
( umask 077; printf '{"version":1}' > "$S/uid-0/0123456789abcdef0123456789abcdef.token" )
run rc root cache clear
expect rc 0 out "stale file(s) from $S/uid-0" "cache clear (root): stale files go from uid-0"
check "cache clear (root): uid-0 holds only lock files" sh -c "! ls -A '$S/uid-0' | grep -v '\\.lock\$'"

# --- what check-config refuses, and says ------------------------------
rm -rf "$S/uid-0"
setpriv --reuid=nobody --regid="$NGROUP" --clear-groups mkdir -m 700 "$S/uid-0"
run ccpre root check-config
expect ccpre 0 out "$S/uid-0 is owned by uid $NUID, not by uid 0" \
	"check-config: another user's uid-0 is named"
n=$(token_requests)
run tpre root token "$USER1"
expect tpre 0 out "eyJ" "uid-0 made by nobody: root still gets a token"
check "and writes nothing into it" [ -z "$(ls -A "$S/uid-0")" ]
check "and asked the endpoint" [ "$(token_requests)" = $((n + 1)) ]
# a symlink uid-0 -> a directory of root's: cache clear removes nothing there
rm -rf "$S/uid-0"
install -d -m 700 "$T/victim"
( umask 077; printf x > "$T/victim/0123456789abcdef0123456789abcdef.token" )
setpriv --reuid=nobody --regid="$NGROUP" --clear-groups ln -s "$T/victim" "$S/uid-0"
run rlsym root cache list
expect rlsym 0 out "memory only: token cache directory $S/uid-0 is not a directory but a symbolic link" \
	"cache list: a symlinked uid-0 is named, not read through"
run rcsym root cache clear
expect rcsym 77 err "$S/uid-0 is not a directory but a symbolic link: not clearing it" \
	"cache clear: a symlinked uid-0 is refused, with the cause"
check "cache clear: nothing removed through the link" \
	[ -f "$T/victim/0123456789abcdef0123456789abcdef.token" ]
rm -f "$S/uid-0"
# uid-0 missing: nothing to clear, nothing made, nothing outside touched
run rcmiss root cache clear
expect rcmiss 0 out "no cached token" "cache clear: a missing uid-0 holds nothing, exit 0"
check "cache clear: a missing uid-0 is not made" [ ! -e "$S/uid-0" ]
check "cache clear: a missing uid-0, nothing removed elsewhere" \
	[ -f "$T/victim/0123456789abcdef0123456789abcdef.token" ]
# the race: uid-0 swapped for a symlink right after cache clear checked it
# (an LD_PRELOAD shim does it after the check's last look at uid-0, its
# faccessat); the files are removed relative to the directory as opened,
# never through the link
run rprep root token "$USER1"
key=$(ls "$S/uid-0" | sed -n 's/\.token$//p' | head -n 1)
( umask 077; printf x > "$T/victim/$key.token"; printf x > "$T/victim/$key.lock" )
cat > "$T/swap.c" <<'EOC'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int
faccessat(int fd, const char *p, int mode, int flags)
{
	int (*real)(int, const char *, int, int) =
	    (int (*)(int, const char *, int, int))dlsym(RTLD_NEXT, "faccessat");
	const char *s = getenv("SWAP_DIR"), *to = getenv("SWAP_TO");
	static int done;
	char a[4096], b[4096];
	int r = real(fd, p, mode, flags);

	if (!done && s != NULL && to != NULL && strcmp(p, "uid-0") == 0) {
		done = 1;
		snprintf(a, sizeof(a), "%s/uid-0", s);
		snprintf(b, sizeof(b), "%s/uid-0.moved", s);
		if (rename(a, b) != 0 || symlink(to, a) != 0)
			abort();
	}
	return r;
}
EOC
if [ -n "$key" ] && ${CC:-cc} -shared -fPIC -o "$T/swap.so" "$T/swap.c" -ldl 2>/dev/null; then
	set +e
	# shellcheck disable=SC2086
	timeout $((60 * SLOW)) env LD_PRELOAD="${SAN_PRELOAD:+$SAN_PRELOAD }$T/swap.so" \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
		SWAP_DIR="$S" SWAP_TO="$T/victim" $VALGRIND "$TOOL" -c "$CONF" cache clear \
		> "$O/rcrace.out" 2> "$O/rcrace.err" </dev/null
	echo $? > "$O/rcrace.rc"
	set -e
	check "race: uid-0 was swapped for a symlink during cache clear" [ -L "$S/uid-0" ]
	expect rcrace 77 err "$S/uid-0: not a directory but a symbolic link or a file: not clearing it" \
		"race: cache clear refuses the uid-0 swapped in after its check"
	check "race: nothing removed through the link" sh -c "[ -f '$T/victim/$key.token' ] &&
		[ -f '$T/victim/$key.lock' ] && [ -f '$T/victim/0123456789abcdef0123456789abcdef.token' ]"
	rm -f "$S/uid-0"
	mv "$S/uid-0.moved" "$S/uid-0"
else
	echo "ok - # SKIP race: no C compiler for the LD_PRELOAD shim"
fi
rm -rf "$S/uid-0"
chmod 0777 "$S"
run ccopen nobody check-config
expect ccopen 0 out "$S is writable by group or others without the sticky bit (mode 0777): run chmod 1733 $S" \
	"check-config: a shared directory without the sticky bit is named"
chmod 1733 "$S"

# --- a fresh account: ~/.cache/sasl-oauth2 is made --------------------
sed -i "s|cache_dir = \"$S\"|cache_dir = \"$N/home/.cache/sasl-oauth2\"|" "$N/n.conf"
run hcc nobody check-config
check "check-config: a missing ~/.cache is no warning" sh -c "! grep -q cache_dir '$O/hcc.out'"
n=$(token_requests)
run h1 nobody token "$USER1"
run h2 nobody token "$USER1"
expect h2 0 out "eyJ" "fresh account: token"
check "fresh account: ~/.cache made 0700" [ "$(owner_mode "$N/home/.cache")" = "$NUID 700" ]
check "fresh account: ~/.cache/sasl-oauth2 made 0700" \
	[ "$(owner_mode "$N/home/.cache/sasl-oauth2")" = "$NUID 700" ]
check "fresh account: the second token comes from the disk cache" [ "$(token_requests)" = $((n + 1)) ]
sed -i "s|cache_dir = \"$N/home/.cache/sasl-oauth2\"|cache_dir = \"$T/no/such/sasl-oauth2\"|" "$N/n.conf"
run hmiss nobody check-config
expect hmiss 0 out "its parent $T/no does not exist" "check-config: a missing parent outside home is named"

check "no token signature in list or check-config output" \
	sh -c "! grep -q 'eyJ' '$O'/rl.out '$O'/nl.out '$O'/cc.out '$O'/ccpre.out"
finish
