#!/bin/sh
# make bench-load: what a process that never uses XOAUTH2 or OAUTHBEARER
# pays for the plugin being installed (issue 16, target 1). One PLAIN
# login (tests/loadprobe: sasl_client_init, sasl_client_new, start,
# step, dispose, sasl_client_done) with SASL_PATH naming the system's
# plugins only, then the same plus sasl-oauth2 without a config file and
# with a realistic one (the sample's two accounts, a client secret and
# a certificate, and the system CA bundle), side by side in one run:
# user-space instructions (callgrind, repeatable) and peak RSS (VmHWM,
# median of 5 runs).
#
# Run as nobody (no capabilities: the plugin loads its implementation
# on first use, docs/loading.md) and, when this script runs as root,
# as root too (with a configuration file the plugin loads everything
# at sasl_client_init, as a Postfix smtp process needs before its
# chroot; and once more with the SASL option oauth2_preload no, through
# $SASL_OAUTH2_PRELOAD, for a root program that never chroots).
#
# Usage: sh bench/load.sh [--out FILE]   (normally: make bench-load)
# Writes the table to bench/results-load.md in the build directory.
# Figures are printed and compared with the targets, never asserted.
set -eu

out=""
while [ $# -gt 0 ]; do
	case $1 in
	--out) out=$2; shift ;;
	-h|--help) sed -n '2,/^set -eu/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "usage: load.sh [--out FILE]" >&2; exit 64 ;;
	esac
	shift
done
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
[ -n "$out" ] || out="$top_builddir/bench/results-load.md"
PROBE="$top_builddir/tests/loadprobe"
PLUGIN="$top_builddir/.libs/libsasl-oauth2.so"
SYSPLUGINS="$(pkg-config --variable=libdir libsasl2 2>/dev/null || echo /usr/lib/x86_64-linux-gnu)/sasl2"
for f in "$PROBE" "$PLUGIN"; do
	[ -x "$f" ] || [ -f "$f" ] || { echo "bench-load: $f is not built" >&2; exit 1; }
done
command -v valgrind >/dev/null || { echo "bench-load: valgrind is not installed" >&2; exit 1; }
if ldd "$PLUGIN" | grep -q libasan; then
	echo "bench-load: $PLUGIN is built with sanitizers; use a plain build" >&2
	exit 1
fi

D=$(mktemp -d /tmp/oa2-load.XXXXXX)
trap 'rm -rf "$D"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
chmod 755 "$D"
mkdir "$D/sys" "$D/with"
for p in "$SYSPLUGINS"/*.so; do ln -s "$p" "$D/sys/"; ln -s "$p" "$D/with/"; done
ln -s "$PLUGIN" "$D/with/libsasl-oauth2.so"
CA=/etc/ssl/certs/ca-certificates.crt
[ -f "$CA" ] || { echo "bench-load: no system CA bundle $CA" >&2; exit 1; }

# conf DIR: the realistic config (the sample's accounts) in DIR
conf() {
	mkdir -m 755 "$1"
	( umask 077
	  printf 'bench~not-a-real-secret\n' > "$1/contoso.secret"
	  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=bench" \
		-keyout "$1/fabrikam.key" -out "$1/fabrikam.crt" 2>/dev/null
	  cat > "$1/sasl-oauth2.conf" <<CONF
version = 1;
defaults = {
	authority = "https://login.microsoftonline.com";
	scope = "https://outlook.office365.com/.default";
	ca_file = "$CA";
	cache_dir = "";
	refresh_margin = 600;
	timeout = 15;
	failure_backoff = 60;
	log_level = "info";
};
accounts = (
	{
		match = "*@contoso.com";
		tenant = "contoso.onmicrosoft.com";
		client_id = "00000000-0000-0000-0000-000000000000";
		client_secret_file = "$1/contoso.secret";
	}, {
		match = "*@fabrikam.com";
		tenant = "11111111-1111-1111-1111-111111111111";
		client_id = "22222222-2222-2222-2222-222222222222";
		certificate = "$1/fabrikam.crt";
		private_key = "$1/fabrikam.key";
		assertion_alg = "PS256";
	}
);
CONF
	)
}

me=$(id -u)
if [ "$me" = 0 ]; then
	conf "$D/etc-root"
	conf "$D/etc-nobody"
	chown -R nobody "$D/etc-nobody"
	USERS="nobody root"
else
	conf "$D/etc-nobody"
	USERS="self"
fi
# as WHO COMMAND...: run as nobody (no capabilities), root or oneself
as() {
	_w=$1; shift
	case $_w in
	nobody) setpriv --reuid=nobody --regid=nogroup --clear-groups "$@" ;;
	*) "$@" ;;
	esac
}
# measure WHO SASL_PATH CONF [PRELOAD]: "INSTRUCTIONS HWM_KIB"
measure() {
	_i=$(as "$1" env SASL_PATH="$D/$2" SASL_OAUTH2_CONF="$3" \
		SASL_OAUTH2_PRELOAD="${4-}" \
		valgrind --tool=callgrind --callgrind-out-file=/dev/null \
		"$PROBE" 2>&1 >/dev/null | sed -n 's/^==[0-9]*== Collected : //p')
	_m=$(for _k in 1 2 3 4 5; do
		as "$1" env SASL_PATH="$D/$2" SASL_OAUTH2_CONF="$3" \
			SASL_OAUTH2_PRELOAD="${4-}" "$PROBE" |
			sed -n 's/.* hwm_kib=\([0-9]*\) .*/\1/p'
	done | sort -n | sed -n 3p)
	echo "$_i $_m"
}

{
	echo "## Load: a process that never uses XOAUTH2 or OAUTHBEARER"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) CPUs;" \
		"one PLAIN login (tests/loadprobe). Target (issue 16):" \
		"with the plugin and a realistic config, <= 1.5x the instructions" \
		"and <= 1536 KiB more peak RSS than without the plugin."
	echo
	echo "| run as | plugins | instructions | ratio | peak RSS KiB | added KiB | target |"
	echo "|---|---|---:|---:|---:|---:|---|"
} > "$D/table"
for u in $USERS; do
	w=$u; [ "$u" = self ] && w=$(id -un)
	etc="$D/etc-nobody"; [ "$u" = root ] && etc="$D/etc-root"
	# shellcheck disable=SC2046 # two numbers, split on purpose
	set -- $(measure "$u" sys /nonexistent); i0=$1 m0=$2
	# shellcheck disable=SC2046
	set -- $(measure "$u" with /nonexistent); i1=$1 m1=$2
	# shellcheck disable=SC2046
	set -- $(measure "$u" with "$etc/sasl-oauth2.conf"); i2=$1 m2=$2
	if [ "$u" = root ]; then
		# shellcheck disable=SC2046
		set -- $(measure "$u" with "$etc/sasl-oauth2.conf" no); i3=$1 m3=$2
	fi
	row() { # row LABEL I M
		awk -v w="$w" -v l="$1" -v i="$2" -v m="$3" -v i0="$i0" -v m0="$m0" -v t="$4" 'BEGIN {
			r = i / i0; d = m - m0
			v = (t == "") ? "" : ((r <= 1.5 && d <= 1536) ? "met" : "**missed**")
			printf "| %s | %s | %.2f M | %.2fx | %d | %+d | %s |\n", w, l, i / 1e6, r, m, d, v }'
	}
	row "system only" "$i0" "$m0" ""
	row "+ sasl-oauth2, no config" "$i1" "$m1" t
	row "+ sasl-oauth2, realistic config" "$i2" "$m2" t
	[ "$u" != root ] ||
		row "+ sasl-oauth2, realistic config, oauth2_preload no" "$i3" "$m3" t
done >> "$D/table"
cat "$D/table"
mkdir -p "$(dirname "$out")"
cp "$D/table" "$out"
echo "bench-load: written to $out" >&2
