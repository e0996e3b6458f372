#!/bin/sh
# Setuid and setgid hosts: the invoking user owns the environment. A
# setuid-root copy of saslclient, run by nobody with https_proxy,
# HTTPS_PROXY and ALL_PROXY naming a local proxy that records what
# reaches it: nothing reaches it; with SSLKEYLOGFILE set as well, no
# token is fetched (one sentence says why) and no key log file is
# created; without it, the login goes straight to the token endpoint.
# A normal (non-setuid) program still honours https_proxy and NO_PROXY,
# as documented. And the loader: a setuid-root loadprobe run by nobody
# with SASL_OAUTH2_PRELOAD=no loads the implementation at
# sasl_client_init all the same; with the program's own oauth2_preload
# no it loads nothing.
set -eu
. "$(dirname "$0")/lib.sh"
need setpriv findmnt
testbed

# The setuid host: libsasl2 ignores SASL_PATH in it (--plugin-path
# answers its getpath callback) and the plugin ignores SASL_OAUTH2_CONF
# (--option oauth2_config names the config). ASan, if the build has it,
# is told not to trace leaks: its leak checker needs ptrace, which a
# setuid process refuses. valgrind cannot run a setuid program with its
# privileges: these rows run without it.
mkdir "$T/suid"
cp "$SC" "$T/suid/saslclient"
chown root:root "$T/suid/saslclient"
chmod 4755 "$T/suid/saslclient"
if findmnt -n -o OPTIONS -T "$T/suid" | tr , '\n' | grep -qx nosuid; then
	skip "$T is on a filesystem mounted nosuid"
fi
mkdir -m 700 "$T/rootonly"
serve proxy "$PYTHON3" "$here/recorder.py" --mode proxy \
	--record "$T/proxy.record" --port-file "$T/proxy.port"
PROXY=http://127.0.0.1:$SERVED_PORT

# suid_login NAME [VAR=VALUE...]: the setuid copy run by nobody with
# only the given variables (and the proxy ones) in its environment.
suid_login() {
	_n=$1; shift
	timeout $((20 * SLOW)) setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env -i PATH=/usr/bin:/bin ASAN_OPTIONS=detect_leaks=0 \
		https_proxy="$PROXY" HTTPS_PROXY="$PROXY" ALL_PROXY="$PROXY" "$@" \
		"$T/suid/saslclient" --plugin-path "$T/plugins" \
		--option "oauth2_config=$CONF" -m XOAUTH2 -u "$USER1" \
		> "$T/$_n.out" 2>&1 </dev/null
}
proxied() { grep -c "CONNECT" "$T/proxy.record" || true; }

check "the host program is setuid root" [ -u "$T/suid/saslclient" ]
n=$(token_requests)
if suid_login keylog SSLKEYLOGFILE="$T/rootonly/sslkeys"; then
	fail "setuid, SSLKEYLOGFILE set: the login fails"
else
	pass "setuid, SSLKEYLOGFILE set: the login fails"
fi
check "with the sentence that says why" grep -q \
	"SSLKEYLOGFILE is set in the environment of this setuid or setgid program: libcurl would write the TLS session keys" \
	"$T/keylog.out"
check "no key log file is created" [ ! -e "$T/rootonly/sslkeys" ]
check "nothing reached the proxy" [ "$(proxied)" = 0 ]
check "nor the token endpoint" [ "$(token_requests)" = "$n" ]

check "setuid, proxy variables set: the login succeeds" suid_login direct
check "with one token request, straight to the endpoint" [ "$(token_requests)" = $((n + 1)) ]
check "and nothing reached the proxy" [ "$(proxied)" = 0 ]
check "(the config came from --option oauth2_config)" \
	sh -c "! grep -q 'SASL_OAUTH2_CONF\|/etc/sasl-oauth2.conf' '$T/direct.out'"

# The loader in a setuid program (docs/loading.md): the program may
# still change identity, so with a configuration file the plugin loads
# its implementation at sasl_client_init. SASL_OAUTH2_PRELOAD=no in the
# environment is the invoking user's word, not the program's, and is
# ignored; the program's own SASL option oauth2_preload no is honoured.
cp "$top_builddir/tests/loadprobe" "$T/suid/loadprobe"
chown root:root "$T/suid/loadprobe"
chmod 4755 "$T/suid/loadprobe"
# suid_probe NAME [ARG...]: the setuid loadprobe run by nobody, looking
# right after sasl_client_init, with SASL_OAUTH2_PRELOAD=no set
suid_probe() {
	_n=$1; shift
	timeout $((20 * SLOW)) setpriv --reuid=nobody --regid=nogroup --clear-groups \
		env -i PATH=/usr/bin:/bin ASAN_OPTIONS=detect_leaks=0 \
		SASL_OAUTH2_PRELOAD=no "$T/suid/loadprobe" -i -p "$T/plugins" \
		-o "oauth2_config=$CONF" "$@" > "$T/$_n.out" 2>&1 </dev/null
}
suid_probe preload-env || true
check "setuid loadprobe with SASL_OAUTH2_PRELOAD=no: it runs setuid" \
	grep -q " secure=1 " "$T/preload-env.out"
check "the variable is ignored: the implementation is loaded at sasl_client_init" \
	grep -q " impl=1 " "$T/preload-env.out"
check "and libcurl with it" grep -q " curl=1 " "$T/preload-env.out"
suid_probe preload-option -o oauth2_preload=no || true
check "the program's own option oauth2_preload no: nothing loaded" \
	grep -q "secure=1 .* curl=0 impl=0 " "$T/preload-option.out"

# A normal program: https_proxy is honoured, and NO_PROXY with it.
# plain_login NAME [VAR=VALUE...]: saslclient with those variables.
plain_login() {
	_n=$1; shift
	( for _v in "$@"; do export "${_v?}"; done
	  saslclient -m XOAUTH2 -u "$USER1" ) > "$T/$_n.out" 2>&1
}
rm -rf "$T/cache"
n=$(token_requests)
check "non-setuid, https_proxy set: the login succeeds" \
	plain_login proxied https_proxy="$PROXY"
check "through the proxy" grep -q "^CONNECT 127.0.0.1:$TOKEND_PORT\$" "$T/proxy.record"
check "(one token request)" [ "$(token_requests)" = $((n + 1)) ]
rm -rf "$T/cache"
p=$(proxied)
check "non-setuid, NO_PROXY=127.0.0.1: the login succeeds" \
	plain_login noproxy https_proxy="$PROXY" NO_PROXY=127.0.0.1
check "without the proxy" [ "$(proxied)" = "$p" ]
rm -rf "$T/cache"
imtest_proxied() {
	https_proxy=$PROXY
	export https_proxy
	imtest_ok "$USER1" XOAUTH2 && _r=0 || _r=$?
	unset https_proxy
	return "$_r"
}
check "imtest, a real client, logs in through https_proxy" imtest_proxied
check "(the proxy saw its token request)" [ "$(proxied)" = $((p + 1)) ]

check "the secret appears in no output" \
	sh -c "! grep -rqF -- '$SECRET' '$T'/*.out '$T/proxy.record'"
finish
