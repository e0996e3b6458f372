# Shared by the end-to-end tests: a private test bed on 127.0.0.1 made of
# a test CA, the Entra stand-in (tokend.py), a private Dovecot validating
# the JWTs it issues, and a sasl-oauth2 config pointing at both.
# Sourced; the caller has "set -eu". Everything lives in $T and dies
# with the test.

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
here="$top_srcdir/tests"
: "${top_builddir:=$top_srcdir}"
: "${PYTHON3:=/usr/bin/python3}"
: "${VALGRIND:=}"
IMTEST=${IMTEST:-/usr/lib/cyrus/bin/imtest}
SYSPLUGINS="$(pkg-config --variable=libdir libsasl2 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)/sasl2"
PLUGIN="$top_builddir/.libs/libsasl-oauth2.so"
TOOL="$top_builddir/sasl-oauth2"
SC="$top_builddir/tests/saslclient"
# OA2_INSTALLED=1: test the installed Debian packages (debian/tests) —
# the plugin in the system SASL directory, found by libsasl2's own search
# (no SASL_PATH in the environment), the command on PATH; top_builddir
# then only holds tests/saslclient, built by debian/tests.
if [ -n "${OA2_INSTALLED:-}" ]; then
	PLUGIN=$(dpkg-query -L libsasl2-modules-oauth2 2>/dev/null |
		grep '/sasl2/libsasl-oauth2\.so$' | head -n 1) || true
	[ -n "$PLUGIN" ] || { echo "libsasl2-modules-oauth2 is not installed"; exit 99; }
	SYSPLUGINS=${PLUGIN%/*}
	TOOL=$(command -v sasl-oauth2) || { echo "sasl-oauth2 is not on PATH"; exit 99; }
fi

# How to run a program that loads the plugin. A plugin built with
# --enable-sanitizers can only be dlopen'ed by a process whose first
# library is the ASan runtime: preload it into foreign programs (imtest,
# mbsync, saslpluginviewer), whose own leaks are not ours to report.
# $VALGRIND (set by check.sh for the valgrind run) wraps every client.
SAN_PRELOAD=$(ldd "$PLUGIN" 2>/dev/null | sed -n 's/^[[:space:]]*libasan[^ ]* => \([^ ]*\) .*/\1/p' | head -n 1)
WRAP=$VALGRIND
if [ -n "$SAN_PRELOAD" ]; then
	WRAP="env LD_PRELOAD=$SAN_PRELOAD ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 $VALGRIND"
fi
# Under valgrind everything is slower: time limits scale with this.
# No check may depend on the machine's speed: a guard against a hang is
# generous and scaled by SLOW; a check of a time bound the product
# promises ("within timeout + 1 s", measured from outside the program)
# allows SLACK more seconds, for starting the program on a busy machine
# (2; 4 under ASan+UBSan, where SLOW stays 1; 12 under valgrind).
SLOW=1
[ -z "$VALGRIND" ] || SLOW=4
SLACK=2
[ -z "$SAN_PRELOAD" ] || SLACK=4
[ -z "$VALGRIND" ] || SLACK=12
# The config's timeout unless a test sets TIMEOUT: room for a request on
# a busy machine (9 s; 13 ASan; 44 valgrind), since a request that ends
# in its timeout fails a test that wanted the endpoint's answer.
CONF_TIMEOUT=$((5 * SLOW + 2 * SLACK))
# No test may reach a real cloud default: an Azure managed identity with
# no endpoint of its own would ask 169.254.169.254; here the environment
# names the Arc agent's variables at a closed loopback port instead
# ("not on Azure"). Makefile.am sets the same for the unit tests.
NOT_AZURE=http://127.0.0.1:1/metadata/identity/oauth2/token
IDENTITY_ENDPOINT=$NOT_AZURE IMDS_ENDPOINT=http://127.0.0.1:1
unset IDENTITY_HEADER
export IDENTITY_ENDPOINT IMDS_ENDPOINT

T=$(mktemp -d /tmp/oa2-e2e.XXXXXX)
chmod 755 "$T"
PIDS=""
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	[ -f "$T/dovecot/run/master.pid" ] &&
		kill "$(cat "$T/dovecot/run/master.pid")" 2>/dev/null || true
	sleep 0.2
	[ -n "${KEEP:-}" ] || rm -rf "$T"
}
# A signal ends the test (with the shell's status for it) and the EXIT
# trap cleans up: a handler that only cleaned up would let the test go
# on without its directory, and end 0.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

npass=0 nfail=0
pass() { npass=$((npass + 1)); echo "ok - $*"; }
fail() { nfail=$((nfail + 1)); echo "not ok - $*"; }
check() { # check DESCRIPTION COMMAND...: pass when the command succeeds
	d=$1; shift
	if "$@"; then pass "$d"; else fail "$d"; fi
}
finish() {
	echo "# $npass passed, $nfail failed"
	if [ "$nfail" -ne 0 ]; then
		echo "# --- dovecot log"; tail -n 30 "$T/dovecot/log" 2>/dev/null || true
		echo "# --- tokend log"; tail -n 20 "$T/tokend.log" 2>/dev/null || true
		exit 1
	fi
	exit 0
}
skip() { echo "SKIP: $*"; exit 77; }
need() { for p in "$@"; do command -v "$p" >/dev/null 2>&1 || [ -x "$p" ] || skip "$p is not installed"; done; }

need openssl "$PYTHON3" dovecot "$IMTEST"
[ -f "$PLUGIN" ] || { echo "plugin not built: $PLUGIN"; exit 99; }

free_port() {
	"$PYTHON3" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT: until something listens on 127.0.0.1:PORT
	i=0
	while ! "$PYTHON3" -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; do
		# a guard against a hang (30 s): a busy machine starts servers late
		i=$((i + 1)); [ $i -lt 300 ] || { echo "nothing listens on port $1"; return 1; }
		sleep 0.1
	done
}

# A test CA and a server certificate for 127.0.0.1.
make_ca() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sasl-oauth2 test CA" \
		-keyout "$T/ca.key" -out "$T/ca.pem" 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
		-keyout "$T/server.key" -out "$T/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$T/san.ext"
	openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" \
		-CAcreateserial -days 2 -extfile "$T/san.ext" -out "$T/server.pem" 2>/dev/null
	chmod 644 "$T/server.pem" "$T/ca.pem"
}

TENANT=contoso.onmicrosoft.com
TENANT_ID=11111111-2222-3333-4444-555555555555
CLIENT=00000000-aaaa-bbbb-cccc-000000000001
CERT_CLIENT=00000000-aaaa-bbbb-cccc-000000000002
SECRET="e2e~Secret.$(od -An -tx1 -N8 /dev/urandom | tr -d ' \n')"
USER1=user@contoso.com

# A certificate credential registered for CERT_CLIENT.
make_client_cert() {
	openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=sasl-oauth2 e2e app" \
		-keyout "$T/app.key" -out "$T/app.crt" 2>/dev/null
	chmod 600 "$T/app.key"
}

# serve NAME COMMAND...: start a test server in the background (killed
# at the end; stderr in $T/NAME.err) that writes the port it listens on
# to $T/NAME.port, wait until it has, and set SERVED_PORT.
serve() {
	_n=$1; shift
	"$@" 2>"$T/$_n.err" &
	PIDS="$PIDS $!"
	i=0
	while [ ! -s "$T/$_n.port" ]; do
		i=$((i + 1)); [ $i -lt 300 ] || { cat "$T/$_n.err"; return 1; }
		sleep 0.1
	done
	SERVED_PORT=$(cat "$T/$_n.port")
}

# run_tokend NAME CONFIG [OPTION...]: an Entra stand-in (tests/tokend.py)
# with CONFIG, TLS by the test CA, logging to $T/NAME.log.
run_tokend() {
	_n=$1 _c=$2; shift 2
	serve "$_n" "$PYTHON3" "$here/tokend.py" --config "$_c" \
		--cert "$T/server.pem" --key "$T/server.key" \
		--port-file "$T/$_n.port" --log "$T/$_n.log" "$@"
}

# run_oauthd NAME PROVIDER CLIENT [SECRET]: the delegated-flow stand-in
# (tests/oauthd.py) for PROVIDER ("microsoft" or "google") and one client,
# signing with the issuer key (make_issuer), logging to $T/NAME.log.
run_oauthd() {
	printf '{ "issuer_key": "%s", "kid": "k1", "client_id": "%s"%s }\n' \
		"$T/issuer.key" "$3" "${4:+, \"client_secret\": \"$4\"}" > "$T/$1.json"
	serve "$1" "$PYTHON3" "$here/oauthd.py" --config "$T/$1.json" --provider "$2" \
		--cert "$T/server.pem" --key "$T/server.key" --port-file "$T/$1.port" \
		--log "$T/$1.log"
	: >> "$T/$1.log"
}

# The key the stand-in signs access tokens with, and its public half
# where Dovecot's oauth2 passdb looks for it.
make_issuer() {
	openssl genrsa -out "$T/issuer.key" 2048 2>/dev/null
	mkdir -p "$T/keys/default/RS256"
	openssl rsa -in "$T/issuer.key" -pubout -out "$T/keys/default/RS256/k1" 2>/dev/null
	chmod -R a+rX "$T/keys"
}

start_tokend() {
	make_issuer
	[ -f "$T/app.crt" ] || make_client_cert
	cat > "$T/tokend.json" <<JSON
{ "issuer_key": "$T/issuer.key", "kid": "k1", "lifetime": ${TOKEN_LIFETIME:-3599}, "record": "$T/tokend.record",${TOKEND_EXTRA:-}
  "tenants": { "$TENANT": { "id": "$TENANT_ID", "domain": "contoso.com" },
               "$TENANT_ID": { "id": "$TENANT_ID", "domain": "contoso.com" } },
  "clients": {
    "$CLIENT": { "tenant": "$TENANT", "secrets": ["$SECRET"], "expired_secrets": ["expired-secret"] },
    "$CERT_CLIENT": { "tenant": "$TENANT", "certs": ["$T/app.crt"] }${TOKEND_CLIENTS:-} } }
JSON
	run_tokend tokend "$T/tokend.json" --control "$T/tokend.control" \
		--pid-file "$T/tokend.pid"
	TOKEND_PORT=$SERVED_PORT
	: > "$T/tokend.log"
}

# tokend_mode MODE [COUNT]: switch the endpoint's fault mode (see
# tokend.py; "" for none), for the next COUNT token requests or for good.
tokend_mode() {
	printf '{"mode": "%s"%s}\n' "$1" "${2:+, \"count\": $2, \"at\": \"$(date +%s%N)\"}" \
		> "$T/tokend.control"
}
token_requests() { grep -c "result=${1:-ok}" "$T/tokend.log" || true; }

# Submission relays what it accepts to 127.0.0.1:$SUBMISSION_RELAY_PORT
# Tokens are checked against the login name by their tenant_domain claim,
# domains compared (DOVECOT_USERNAME_ATTRIBUTE and _FORMAT change that:
# e2e-google checks "email" whole, %Lu, as Google's tokens are a mailbox's).
# (default 1: nowhere; e2e-postfix gives it a port of its Postfix).
start_dovecot() {
	IMAPS_PORT=$(free_port)
	IMAP_PORT=$(free_port)	# plaintext: STARTTLS (e2e-tunnel)
	SUBMISSION_PORT=$(free_port)
	# POP3 with STLS and POP3S, where dovecot-pop3d is installed
	POP3_PORT="" POP3S_PORT="" POP3_CONF=""
	if [ -x /usr/lib/dovecot/pop3 ]; then
		POP3_PORT=$(free_port) POP3S_PORT=$(free_port)
		POP3_CONF="protocols = \$protocols pop3
service pop3-login {
  inet_listener pop3 {
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = $POP3S_PORT
    ssl = yes
  }
}"
	fi
	d="$T/dovecot"
	mkdir -p "$d/run" "$d/state" "$T/mail"
	chown nobody "$T/mail"
	cat > "$d/oauth2.conf" <<CONF
introspection_mode = local
local_validation_key_dict = fs:posix:prefix=$T/keys/
username_attribute = ${DOVECOT_USERNAME_ATTRIBUTE:-tenant_domain}
username_format = ${DOVECOT_USERNAME_FORMAT:-%Ld}
CONF
	cat > "$d/dovecot.conf" <<CONF
base_dir = $d/run
state_dir = $d/state
log_path = $d/log
info_log_path = $d/log
listen = 127.0.0.1
protocols = imap submission
ssl = required
ssl_cert = <$T/server.pem
ssl_key = <$T/server.key
auth_mechanisms = xoauth2 oauthbearer
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
mail_location = maildir:$T/mail/%d/%n
hostname = mail.contoso.test
submission_relay_host = 127.0.0.1
submission_relay_port = ${SUBMISSION_RELAY_PORT:-1}
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = $d/oauth2.conf
}
userdb {
  driver = static
  args = uid=nobody gid=nogroup home=$T/mail/%d/%n
}
service imap-login {
  # Dovecot's high-performance login mode: a few processes that serve
  # many connections each, so e2e-concurrency's 200 clients at once do
  # not wait for 200 login processes to be started one after the other
  service_count = 0
  process_min_avail = 2
  client_limit = 1000
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = $IMAPS_PORT
    ssl = yes
  }
}
service submission-login {
  inet_listener submission {
    port = $SUBMISSION_PORT
  }
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
$POP3_CONF
CONF
	dovecot -c "$d/dovecot.conf" || { cat "$d/log" 2>/dev/null; return 1; }
	wait_port "$IMAPS_PORT"
	wait_port "$SUBMISSION_PORT"
	[ -z "$POP3S_PORT" ] || wait_port "$POP3S_PORT"
}

# The sasl-oauth2 config; extra account blocks may be given as $1.
write_config() {
	mkdir -p "$T/etc"
	( umask 077; printf '%s\n' "$SECRET" > "$T/etc/contoso.secret" )
	CONF="$T/etc/sasl-oauth2.conf"
	cat > "$CONF" <<CONF
version = 1;
defaults = {
	authority = "https://127.0.0.1:$TOKEND_PORT";
	ca_file = "$T/ca.pem";
	cache_dir = "$T/cache";
	refresh_margin = ${REFRESH_MARGIN:-600};
	timeout = ${TIMEOUT:-$CONF_TIMEOUT};
	log_level = "${LOG_LEVEL:-debug}";
};
accounts = (
	{ match = "*@contoso.com";
	  tenant = "$TENANT";
	  client_id = "$CLIENT";
	  client_secret_file = "$T/etc/contoso.secret"; }${1:-}
);
CONF
	chmod 600 "$CONF"
	export SASL_OAUTH2_CONF="$CONF"
	if [ -n "${OA2_INSTALLED:-}" ]; then
		# not exported: libsasl2's default, for a test that hands it
		# on explicitly (e2e-postfix's import_environment)
		unset SASL_PATH
		SASL_PATH=$SYSPLUGINS
	else
		mkdir -p "$T/plugins"
		ln -sf "$PLUGIN" "$T/plugins/libsasl-oauth2.so"
		export SASL_PATH="$T/plugins:$SYSPLUGINS"
	fi
}

# Everything a test needs, in one call.
testbed() {
	make_ca
	start_tokend
	start_dovecot
	write_config "$@"
}

# cache_whole DIR: DIR holds one token cache file and it is whole
# (docs/cache.md): a JSON line with version 1, token_length and the sum
# of its key and token, then exactly that many printable bytes.
cache_whole() {
	"$PYTHON3" - "$1" <<'PY'
import glob, hashlib, json, os, sys
files = glob.glob(sys.argv[1] + "/*.token")
assert len(files) == 1, files
data = open(files[0], "rb").read()
head, sep, token = data.partition(b"\n")
meta = json.loads(head)
assert sep and meta["version"] == 1 and meta["expires_at"] > 0
assert meta["token_length"] == len(token) > 0
assert all(0x20 < b < 0x7f for b in token)
key = os.path.basename(files[0])[:-len(".token")].encode()
want = hashlib.sha256(b"oa2-cache-sum\0" + key + b"\n" + token).hexdigest()
assert meta["sum"] == want[:32], "sum"
PY
}

# imtest_login USER MECH [OUT]: log in over IMAPS and log out; the
# output goes to OUT (default $T/imtest.out). It may take IMTEST_TIMEOUT
# seconds (times SLOW; default 60): a guard against a hang, never a
# measure, so a test that loads the machine on purpose raises it.
imtest_login() {
	[ -f "$T/logout" ] || printf '. LOGOUT\r\n' > "$T/logout"
	if [ -n "$SAN_PRELOAD" ]; then
		san_imtest "$@"
		return
	fi
	# shellcheck disable=SC2086
	timeout $((${IMTEST_TIMEOUT:-60} * SLOW)) $WRAP "$IMTEST" -s -p "$IMAPS_PORT" -m "$2" -a "$1" \
		-f "$T/logout" 127.0.0.1 > "${3:-$T/imtest.out}" 2>&1 </dev/null
}

# With the ASan runtime preloaded into it, a program that initialised
# libcurl (so p11-kit, through GnuTLS) deadlocks on glibc's setlocale
# lock in p11-kit's destructor at exit: `LD_PRELOAD=libasan.so curl
# --version` hangs the same way, with no plugin involved. So under ASan,
# an imtest that has finished its session ("Connection closed.") gets
# 3 seconds to exit, then is killed, and counts as successful unless a
# sanitizer reported an error. It is watched every 0.1 s for its first
# second, then every 0.5 s: 200 of them watched at once must not load
# the machine they are waiting on. The hang guard (IMTEST_TIMEOUT) is
# wall-clock time, kept by a sleeping timer process: counting the
# watcher's own sleeps would undercount on a loaded machine, and reading
# the clock each round would cost a process per round.
san_imtest() { # (variables prefixed: a sourced library shares the caller's)
	_so=${3:-$T/imtest.out}
	# shellcheck disable=SC2086
	$WRAP "$IMTEST" -s -p "$IMAPS_PORT" -m "$2" -a "$1" \
		-f "$T/logout" 127.0.0.1 > "$_so" 2>&1 </dev/null &
	_sp=$!
	sleep "${IMTEST_TIMEOUT:-60}" &
	_tp=$! _st=0 _sd="" _sleep=0.1 # _st, _sd: tenths of a second
	while kill -0 "$_sp" 2>/dev/null; do
		if [ -z "$_sd" ] && grep -qs "^Connection closed" "$_so"; then _sd=$_st; fi
		if [ -n "$_sd" ] && [ $((_st - _sd)) -ge 30 ] || ! kill -0 "$_tp" 2>/dev/null; then
			kill -9 "$_sp" 2>/dev/null || true
			wait "$_sp" 2>/dev/null || true
			kill "$_tp" 2>/dev/null || true
			wait "$_tp" 2>/dev/null || true
			[ -n "$_sd" ] || { echo "imtest: timed out" >> "$_so"; return 124; }
			echo "(imtest killed after its session ended: the ASan/p11-kit exit deadlock)" >> "$_so"
			! grep -q "Sanitizer\|runtime error:" "$_so"
			return
		fi
		[ $_st -lt 10 ] || _sleep=0.5
		sleep $_sleep
		_st=$((_st + ${_sleep#0.}))
	done
	kill "$_tp" 2>/dev/null || true
	wait "$_tp" 2>/dev/null || true
	wait "$_sp"
}
imtest_ok() { imtest_login "$@" && grep -q "Authenticated\." "${3:-$T/imtest.out}"; }

# The command's runs, for tests that check its output and exit code:
# run NAME ARGS... keeps the tool's stdout, stderr and exit code in
# $O/NAME.out, .err and .rc ($O: $T/out), guarded against a hang by
# TOOL_TIMEOUT seconds (times SLOW; default 60); rc NAME prints the
# code; expect NAME CODE FILE-SUFFIX STRING DESCRIPTION checks the code
# and a line of .out or .err.
O="$T/out"
mkdir -p "$O"
run() {
	name=$1; shift
	set +e
	# shellcheck disable=SC2086
	timeout $((${TOOL_TIMEOUT:-60} * SLOW)) $VALGRIND "$TOOL" "$@" > "$O/$name.out" 2> "$O/$name.err" </dev/null
	echo $? > "$O/$name.rc"
	set -e
}
rc() { cat "$O/$1.rc"; }
expect() {
	if [ "$(rc "$1")" = "$2" ] && grep -qF -- "$4" "$O/$1.$3"; then
		pass "$5"
	else
		fail "$5 (exit $(rc "$1"), wanted $2 and \"$4\" in $3)"
		sed 's/^/# out: /' "$O/$1.out" | cut -c1-300
		sed 's/^/# err: /' "$O/$1.err" | cut -c1-300
	fi
}

# saslclient ARGS...: the callback-driven client (tests/saslclient.c).
# A run cut short by the hang guard says so on stderr (which the
# callers keep with the output), so that a failed check shows why.
saslclient() {
	# shellcheck disable=SC2086
	timeout $((60 * SLOW)) $VALGRIND "$SC" "$@" </dev/null && return 0 || _sc=$?
	[ "$_sc" -ne 124 ] || echo "saslclient: timed out after $((60 * SLOW)) s (hang guard)" >&2
	return "$_sc"
}

# pluginviewer: saslpluginviewer -c (client side) through $SASL_PATH.
pluginviewer() {
	# shellcheck disable=SC2086
	timeout $((60 * SLOW)) $WRAP saslpluginviewer -c 2>&1 </dev/null
}

# cert_account MATCH [ALG]: an account block (for write_config or
# testbed) using the certificate credential registered for CERT_CLIENT,
# signed with ALG (PS256 or RS256; the plugin's default when omitted).
cert_account() {
	printf ',\n\t{ match = "%s";\n\t  tenant = "%s";\n\t  client_id = "%s";\n\t  certificate = "%s";\n\t  private_key = "%s";%s }' \
		"$1" "$TENANT" "$CERT_CLIENT" "$T/app.crt" "$T/app.key" \
		"${2:+
	  assertion_alg = \"$2\";}"
}

# mbsync_run MECH [USER]: sync INBOX with mbsync into $T/local-MECH (or
# $T/local-MECH-USER); output in $T/mbsync.out.
mbsync_run() {
	m=$1${2:+-$2}
	mkdir -p "$T/local-$m"
	cat > "$T/mbsyncrc-$m" <<RC
IMAPAccount work
Host 127.0.0.1
Port $IMAPS_PORT
User ${2:-$USER1}
AuthMechs $1
SSLType IMAPS
CertificateFile $T/ca.pem

IMAPStore remote
Account work

MaildirStore local
Path $T/local-$m/
Inbox $T/local-$m/INBOX

Channel inbox
Far :remote:
Near :local:
Patterns INBOX
Create Near
SyncState *
RC
	# shellcheck disable=SC2086
	timeout $((60 * SLOW)) $WRAP mbsync -c "$T/mbsyncrc-$m" -a > "$T/mbsync.out" 2>&1 </dev/null
}
