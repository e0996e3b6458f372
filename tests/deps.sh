#!/bin/sh
# Installs every Debian 12 package needed to build sasl-oauth2 and to run
# all of its tests (unit, end-to-end with Dovecot/imtest/mbsync, ASan and
# valgrind runs, clang for the libFuzzer targets, debhelper and lintian
# for the Debian packages). Run as root; safe to
# run again (nothing to do then, and no network needed). It starts, stops
# and reconfigures nothing: the tests run their own Dovecot on free
# loopback ports, so a system Dovecot (which installing dovecot-core may
# start) does not get in their way. Postfix is installed with debconf's
# "No configuration" (no /etc/postfix/main.cf: no system instance, nothing
# on port 25; it replaces the MTA installed, exim4 by default) and, where
# there is no policy-rc.d, with one that starts no service during the
# install; e2e-postfix runs a private instance of its own.
set -eu

PKGS="
	build-essential autoconf automake libtool pkg-config
	libsasl2-dev libssl-dev libcurl4-openssl-dev libconfig-dev libjansson-dev
	libsasl2-2 libsasl2-modules sasl2-bin
	dovecot-core dovecot-imapd dovecot-submissiond dovecot-pop3d postfix
	cyrus-clients isync curl fetchmail mutt neomutt tmux
	python3 python3-cryptography openssl ca-certificates
	valgrind procps clang groff-base
	debhelper dpkg-dev lintian
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
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
rc=/usr/sbin/policy-rc.d
if [ ! -e "$rc" ]; then
	printf '#!/bin/sh\n# deps.sh: start no service while installing\nexit 101\n' > "$rc"
	chmod 755 "$rc"
	trap 'rm -f "$rc"' EXIT
fi
apt-get update
# shellcheck disable=SC2086
apt-get install -y --no-install-recommends $missing
echo "deps.sh: done"
