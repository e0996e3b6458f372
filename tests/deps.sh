#!/bin/sh
# Installs every Debian 12 package needed to build sasl-oauth2 and to run
# all of its tests (unit, end-to-end with Dovecot/imtest/mbsync, ASan and
# valgrind runs, clang for the libFuzzer targets). Run as root; safe to
# run again (nothing to do then, and no network needed). It starts, stops
# and reconfigures nothing: the tests run their own Dovecot on free
# loopback ports, so a system Dovecot (which installing dovecot-core may
# start) does not get in their way.
set -eu

PKGS="
	build-essential autoconf automake libtool pkg-config
	libsasl2-dev libssl-dev libcurl4-openssl-dev libconfig-dev libjansson-dev
	libsasl2-2 libsasl2-modules sasl2-bin
	dovecot-core dovecot-imapd dovecot-submissiond
	cyrus-clients isync curl
	python3 python3-cryptography openssl ca-certificates
	valgrind procps clang
"

if [ "$(id -u)" != 0 ]; then
	echo "deps.sh: run as root (it installs Debian packages with apt-get)" >&2
	exit 1
fi
command -v apt-get > /dev/null 2>&1 || {
	echo "deps.sh: apt-get not found: this script is for Debian 12 (bookworm)" >&2
	exit 1; }

missing=""
for p in $PKGS; do
	s=$(dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null || true)
	case $s in ii*) ;; *) missing="$missing $p" ;; esac
done
if [ -z "$missing" ]; then
	echo "deps.sh: all $(echo $PKGS | wc -w) packages are installed"
	exit 0
fi

echo "deps.sh: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing
echo "deps.sh: done"
