#!/bin/sh
# What a host pays for the plugin being installed (docs/loading.md): a
# process that cannot chroot or change identity any more (here nobody,
# no capabilities) and logs in with PLAIN never maps libcurl, OpenSSL
# or the implementation object; its first XOAUTH2 or OAUTHBEARER login
# loads them and works. A process that may still chroot (root) loads
# them at sasl_client_init, as Postfix needs, and so does any process
# with SASL_OAUTH2_PRELOAD=yes; unless there is no configuration file
# (nothing to read before a chroot) or SASL_OAUTH2_PRELOAD=no. After a
# chroot, a plugin that loaded nothing says why. A missing or unloadable
# implementation gives one sentence when a mechanism is used, never a
# crash, and never removes PLAIN or the mechanisms from the list.
set -eu
. "$(dirname "$0")/lib.sh"
need setpriv
make_ca
start_tokend
write_config "$(cert_account "app@contoso.com")"
PROBE="$top_builddir/tests/loadprobe"
# nobody reads the build's plugin and programs, and a copy of the
# config (and its secret and key) of its own, with the cache in memory
chmod -R a+rX "$top_builddir/tests" "$top_builddir/.libs" "$T/plugins" 2>/dev/null || true
mkdir -m 755 "$T/nb"
sed -e "s|$T/etc/|$T/nb/|; s|\"$T/cache\"|\"\"|; s|\"$T/app.key\"|\"$T/nb/app.key\"|" \
	"$CONF" > "$T/nb/sasl-oauth2.conf"
cp "$T/etc/contoso.secret" "$T/app.key" "$T/nb/"
chown -R nobody "$T/nb"
as_nobody() {
	# shellcheck disable=SC2086
	timeout $((60 * SLOW)) setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env SASL_OAUTH2_CONF="$T/nb/sasl-oauth2.conf" $VALGRIND "$@" </dev/null
}
probe() { # probe NAME [-i] [-m MECH]: loadprobe as root; its line in $T/NAME
	_n=$1; shift
	# shellcheck disable=SC2086
	timeout $((60 * SLOW)) $VALGRIND "$PROBE" "$@" > "$T/$_n" 2> "$T/$_n.err" </dev/null
}
has() { grep -q -- "$2" "$T/$1"; }

as_nobody "$PROBE" > "$T/plain" 2> "$T/plain.err" || true
check "nobody, PLAIN: the login succeeds" has plain "mech=PLAIN result=0 "
check "without mapping libcurl" has plain " curl=0 "
check "nor libssl" has plain " ossl=0$"
check "nor the implementation" has plain " impl=0 "

as_nobody "$SC" -m XOAUTH2 -u "$USER1" -p -n 2 > "$T/xo" 2> "$T/xo.err" || true
check "nobody, XOAUTH2 after a lazy load: the initial response" grep -q "^initial: " "$T/xo"
check "one token request for two logins" [ "$(token_requests)" = 1 ]
as_nobody "$SC" -m OAUTHBEARER -u app@contoso.com \
	-c eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJ4In0= \
	> "$T/ob" 2> "$T/ob.err" || true
check "nobody, OAUTHBEARER (certificate) refused: the answer is \\\\1" grep -qx "answer: AQ==" "$T/ob"
check "with the sentence" grep -q "the server rejected the token for app@contoso.com" "$T/ob.err"

n=$(token_requests)
as_nobody "$PROBE" -t 8 -m XOAUTH2 -u "$USER1" > "$T/threads" 2> "$T/threads.err" || true
check "nobody, 8 threads starting XOAUTH2 at once (one lazy load): all log in" has threads " threads_ok=8$"
check "with one token request" [ "$(token_requests)" = $((n + 1)) ]

probe root -i
check "root: the implementation is loaded at sasl_client_init" has root " impl=1 "
check "and libcurl with it" has root " curl=1 "
as_nobody env SASL_OAUTH2_PRELOAD=yes "$PROBE" -i > "$T/preload" 2> "$T/preload.err" || true
check "nobody with SASL_OAUTH2_PRELOAD=yes: loaded at sasl_client_init" has preload " impl=1 "

# Root without a configuration file: nothing to read before a chroot,
# so nothing is loaded until a mechanism is used.
( SASL_OAUTH2_CONF="$T/absent.conf"; export SASL_OAUTH2_CONF
  probe noconf -i
  probe noconf-xo -m XOAUTH2 -u "$USER1"
  mkdir -m 755 "$T/jail"
  # LeakSanitizer needs /proc, which no chroot here has
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0; export ASAN_OPTIONS
  probe noconf-jail -C "$T/jail" -m XOAUTH2 -u "$USER1" )
check "root, no configuration file: nothing loaded at sasl_client_init" has noconf " impl=0 "
check "nor libcurl" has noconf " curl=0 "
check "its XOAUTH2 login loads it, which names the missing file" grep -q "cannot open configuration file $T/absent.conf: No such file" "$T/noconf-xo.err"
check "the same after a chroot: the login fails cleanly" has noconf-jail "result=-1 "
check "with one sentence: restart the program" grep -q "XOAUTH2 and OAUTHBEARER are unavailable: $T/absent.conf did not exist when this program started, so the plugin loaded nothing then, and now it cannot load the implementation: .*; restart the program (Postfix: postfix reload)$" "$T/noconf-jail.err"
# Root with a configuration file, then a chroot that holds none of its
# files (as Postfix's smtp does): they were read at sasl_client_init and
# are parsed on the first login there.
mkdir -m 755 "$T/jail2"
n=$(token_requests)
( ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0; export ASAN_OPTIONS
  probe jail-secret -C "$T/jail2" -m XOAUTH2 -u "$USER1"
  probe jail-cert -C "$T/jail2" -m OAUTHBEARER -u app@contoso.com )
check "root, chrooted after sasl_client_init: XOAUTH2 (client secret) gets its token" has jail-secret "result=[01] "
check "and OAUTHBEARER (certificate)" has jail-cert "result=[01] "
check "one token request each" [ "$(token_requests)" = $((n + 2)) ]

( SASL_OAUTH2_PRELOAD=no; export SASL_OAUTH2_PRELOAD
  probe preload-no -i
  probe preload-no-xo -m XOAUTH2 -u "$USER1" )
check "root with SASL_OAUTH2_PRELOAD=no: nothing loaded at sasl_client_init" has preload-no " impl=0 "
check "its XOAUTH2 login loads it on first use" has preload-no-xo " impl=1 "
check "and sends the initial response" has preload-no-xo "result=[01] "

# A copy of the plugin beside an implementation that is not one: a
# text file, then a shared object without oa2_impl_plug_init (any
# other place the loader looks is outside this build: make install's).
mkdir -m 755 "$T/bad"
cp "$PLUGIN" "$T/bad/libsasl-oauth2.so"
echo "not an ELF object" > "$T/bad/sasl-oauth2-impl.so"
chmod -R a+rX "$T/bad"
SASL_PATH="$T/bad:$SYSPLUGINS"
export SASL_PATH
for kind in text wrong; do
	if [ $kind = wrong ]; then
		cp "$SYSPLUGINS/libplain.so" "$T/bad/sasl-oauth2-impl.so"
		chmod a+r "$T/bad/sasl-oauth2-impl.so"
	fi
	probe bad-$kind-root-plain
	check "$kind implementation, root: PLAIN still works" has bad-$kind-root-plain "result=0 "
	probe bad-$kind-root -m XOAUTH2
	check "$kind implementation, root: XOAUTH2 fails cleanly" has bad-$kind-root "result=-1 "
	check "with one sentence" grep -q "XOAUTH2 and OAUTHBEARER are unavailable: .*$T/bad/sasl-oauth2-impl.so.*; reinstall sasl-oauth2" "$T/bad-$kind-root.err"
	as_nobody "$PROBE" -m OAUTHBEARER > "$T/bad-$kind-nb" 2> "$T/bad-$kind-nb.err" || true
	check "$kind implementation, nobody: OAUTHBEARER fails cleanly" has bad-$kind-nb "result=-1 "
	check "with one sentence" grep -q "XOAUTH2 and OAUTHBEARER are unavailable: " "$T/bad-$kind-nb.err"
done
pluginviewer > "$T/pv" || true
check "the mechanisms stay listed" grep -q XOAUTH2 "$T/pv"
finish
