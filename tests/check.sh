#!/bin/sh
# The whole test suite, three times over, each in its own VPATH build,
# then the release check:
#
#   plain     ./configure && make check          unit + end-to-end tests,
#             and no compiler warning (-Wall -Wextra ...) counts as one
#   asan      --enable-sanitizers (ASan+UBSan)   the same; foreign clients
#             (imtest, mbsync, saslpluginviewer) get the ASan runtime
#             preloaded by tests/lib.sh so they can dlopen the plugin
#   valgrind  make check VALGRIND="valgrind ..." unit tests under valgrind;
#             the e2e tests wrap imtest, mbsync, saslclient and the tool
#   distcheck make distcheck-quick (its check: the unit tests and
#             e2e-imtest; every test file in the tarball)  one test
#   fuzz      make fuzz (clang, libFuzzer)       each target for
#             FUZZ_SECONDS, one result per target (fuzz/README.md)
#   bench     make bench BENCH_FLAGS=--quick      it still runs; one result
#   lint      groff -ww -z -man on each man page, and .RS/.RE balanced
#             (none left open at a .SH or at the end); one result
#   deb       dpkg-buildpackage, lintian, apt-get install of the two
#             .debs, debian/tests against them, apt-get purge: one result
#             per step and per test. It INSTALLS THEN PURGES the packages
#             libsasl2-modules-oauth2 and sasl-oauth2 on this machine
#             (as root; it leaves no file behind, which it checks), so it
#             runs last: no other run may meet the plugin in the system
#             SASL directory
#
# and ends with one line, "N passed, N failed", summed over
# the runs from automake's .trs files. Exit status 1 when anything
# failed. Usage, from anywhere:  sh tests/check.sh
#
# Environment: BUILDROOT (where build-plain, build-asan, build-valgrind
# go; default the source tree), JOBS (make -j; default the CPU count),
# RUNS (default "lint plain asan valgrind distcheck fuzz bench deb"),
# FUZZ_SECONDS (default 30), DEB_SNAPSHOT_PRUNE (more directories the
# deb run's file lists leave out: ones other programs write meanwhile).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
BUILDROOT=${BUILDROOT:-$src}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
RUNS=${RUNS:-lint plain asan valgrind distcheck fuzz bench deb}
VG="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite -q"
passed=0 failed=0 skipped=0
start=$(date +%s)

say() { printf '== %s\n' "$*"; }

# A fresh checkout has no configure script yet.
if [ ! -x "$src/configure" ]; then
	say "autoreconf -fi"
	(cd "$src" && autoreconf -fi) > "$BUILDROOT/autoreconf.log" 2>&1 || {
		cat "$BUILDROOT/autoreconf.log"; echo "0 passed, 1 failed"; exit 1; }
fi

# VPATH builds refuse a source tree that was configured in place (the
# README's quick start does that): build from a clean copy of it.
if [ -f "$src/config.status" ]; then
	copy="$BUILDROOT/build-src"
	say "the source tree is configured in place: building from a copy in $copy"
	rm -rf "$copy"
	mkdir -p "$copy"
	# everything but .git and our build directories (build-aux stays)
	(cd "$src" && tar --exclude=./.git --exclude=./build-src \
	    --exclude=./build-plain --exclude=./build-asan --exclude=./build-valgrind \
	    --exclude=./build-distcheck --exclude=./build-fuzz --exclude=./build-bench \
	    --exclude=./build-deb \
	    -cf - .) | (cd "$copy" && tar -xf -)
	(cd "$copy" && make distclean) > /dev/null 2>&1 || true
	src=$copy
fi

# count DIR: add the results of the .trs files under DIR to the totals
# and show the log of every test that did not pass.
count() {
	p=0 f=0 s=0
	for trs in $(find "$1" -name '*.trs' | sort); do
		res=$(sed -n 's/^:test-result: //p' "$trs" | head -n 1)
		name=${trs%.trs}
		case $res in
		PASS|XFAIL) p=$((p + 1)) ;;
		SKIP) s=$((s + 1))
			echo "   skipped ${name#"$1"/}: $(grep -m 1 '^SKIP' "$name.log" 2>/dev/null || true)" ;;
		*) f=$((f + 1))
			echo "   FAILED ${name#"$1"/} ($res); its failed checks, its \"# why:\" lines and the end of its log:"
			grep '^not ok' "$name.log" 2>/dev/null | head -n 20 | sed 's/^/   | /' || true
			grep '^# why: ' "$name.log" 2>/dev/null | head -n 12 | sed 's/^/   | /' || true
			tail -n 40 "$name.log" 2>/dev/null | sed 's/^/   | /' ;;
		esac
	done
	echo "   $2: $p passed, $f failed, $s skipped"
	passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# run NAME CONFIGURE-ARGS [MAKE-CHECK-VARIABLE]: one build and its tests.
run() {
	name=$1 args=$2 var=${3:-}
	b="$BUILDROOT/build-$name"
	say "$name: configure $args && make && make check${var:+ (with $var)}"
	rm -rf "$b"
	mkdir -p "$b"
	t0=$(date +%s)
	# shellcheck disable=SC2086
	if ! (cd "$b" && "$src/configure" $args > configure.log 2>&1); then
		tail -n 20 "$b/configure.log"; echo "   $name: configure failed"
		failed=$((failed + 1)); return
	fi
	if ! (cd "$b" && make -j"$JOBS" > make.log 2>&1); then
		grep -E 'error|Error' "$b/make.log" | head -n 20; echo "   $name: build failed"
		failed=$((failed + 1)); return
	fi
	if [ -n "$var" ]; then
		(cd "$b" && make -j"$JOBS" check "$var" > check.log 2>&1) || true
	else
		(cd "$b" && make -j"$JOBS" check > check.log 2>&1) || true
	fi
	if ! find "$b" -name '*.trs' | grep -q .; then
		tail -n 30 "$b/check.log"; echo "   $name: make check ran no tests"
		failed=$((failed + 1)); return
	fi
	count "$b" "$name ($(($(date +%s) - t0)) s)"
}

# single NAME MAKE-ARGS...: configure and build in build-NAME, then run
# make MAKE-ARGS there; one result.
single() {
	name=$1; shift
	b="$BUILDROOT/build-$name"
	say "$name: configure && make && $*"
	rm -rf "$b"; mkdir -p "$b"
	if (cd "$b" && "$src/configure" > configure.log 2>&1 &&
	    make -j"$JOBS" > make.log 2>&1 && "$@" > "$name.log" 2>&1); then
		echo "   $name: 1 passed, 0 failed"; passed=$((passed + 1))
	else
		# the log of the step that failed: the newest one
		tail -n 30 "$(ls -t "$b"/*.log | head -n 1)" | sed 's/^/   | /'
		echo "   $name: 0 passed, 1 failed"; failed=$((failed + 1))
	fi
}

# warnings NAME: the compiler warned about nothing in build-NAME (the
# plugin, the tool and the tests); one result.
warnings() {
	w=$(cat "$BUILDROOT/build-$1/make.log" "$BUILDROOT/build-$1/check.log" 2>/dev/null |
		grep -c 'warning:' || true)
	if [ "$w" -eq 0 ]; then
		echo "   $1: no compiler warnings: 1 passed, 0 failed"; passed=$((passed + 1))
	else
		grep -h -A 2 'warning:' "$BUILDROOT/build-$1/make.log" "$BUILDROOT/build-$1/check.log" |
			head -n 30 | sed 's/^/   | /'
		echo "   $1: $w compiler warning(s): 0 passed, 1 failed"; failed=$((failed + 1))
	fi
}

# lint: the man pages format without a groff warning, and every .RS is
# closed before the next .SH and the end of the page (an open .RS nests
# the following entries under the one before it, and groff says nothing).
lint() {
	say "lint: groff -ww -z -man and .RS/.RE balance of man/*.[1-8]"
	bad=0
	for page in "$src"/man/*.[1-8]; do
		out=$(groff -ww -z -man "$page" 2>&1) || bad=1
		[ -z "$out" ] || { echo "$out" | sed 's/^/   | /'; bad=1; }
		awk -v f="${page#"$src"/}" '
		    /^\.RS/ { d++ }
		    /^\.RE/ { if (--d < 0) { print "   | " f ":" NR ": .RE without .RS"; e = 1; d = 0 } }
		    /^\.S[HS]/ { if (d > 0) { print "   | " f ":" NR ": " $0 " inside " d " open .RS (opened at line " o ")"; e = 1; d = 0 } }
		    /^\.RS/ { o = NR }
		    END { if (d > 0) { print "   | " f ": " d " .RS open at the end"; e = 1 } exit e }' \
		    "$page" || bad=1
	done
	if [ "$bad" -eq 0 ]; then
		echo "   lint: 1 passed, 0 failed"; passed=$((passed + 1))
	else
		echo "   lint: 0 passed, 1 failed"; failed=$((failed + 1))
	fi
}

# deb: the Debian packages, end to end, on this machine (it must be
# Debian 12, as root): dpkg-buildpackage (source and binaries) in a clean
# copy of the tree, lintian (no E: or W: line), apt-get install of the
# two .debs, the autopkgtest scripts of debian/tests/control run directly
# against them, then apt-get purge and a file list of the machine
# (outside /proc /sys /dev /run /tmp /var/tmp /var/log /var/lib/dpkg
# /var/lib/apt /var/cache/apt, man-db's /var/cache/man, which its trigger
# rebuilds for any package with man pages, and the build directories)
# identical to the one taken before the install. The packages are purged
# whatever happens (a trap), so no other run ever meets our plugin in the
# system SASL directory: keep deb the last run. One result per step and
# per test.
deb() {
	b="$BUILDROOT/build-deb"
	say "deb: build the packages, lintian, install them, debian/tests, purge"
	o="$b/results"	# one .trs and .log per result (count); the rest in $b
	rm -rf "$b"; mkdir -p "$b/src/sasl-oauth2" "$o"
	t0=$(date +%s)
	debpkgs="libsasl2-modules-oauth2 sasl-oauth2"
	if [ "$(id -u)" != 0 ] || ! command -v dpkg-buildpackage > /dev/null 2>&1 ||
	    ! command -v lintian > /dev/null 2>&1; then
		echo "   deb: needs root, dpkg-buildpackage and lintian (tests/deps.sh), skipped"
		skipped=$((skipped + 1)); return
	fi
	for p in $debpkgs; do
		case $(dpkg-query -W -f '${db:Status-Abbrev}' "$p" 2>/dev/null || true) in
		?[!n]*) echo "   deb: $p is already on this machine: purge it first"
			failed=$((failed + 1)); return ;;
		esac
	done
	# debstep NAME COMMAND...: one result, the command's output in NAME.log
	debstep() {
		_n=$1; shift
		if "$@" > "$o/$_n.log" 2>&1; then _r=PASS; else _r=FAIL; fi
		printf ':test-result: %s\n' "$_r" > "$o/$_n.trs"
		[ "$_r" = PASS ]
	}
	# a clean copy: what git tracks (and new files it does not ignore)
	d="$b/src/sasl-oauth2"
	if [ -d "$src/.git" ] && command -v git > /dev/null 2>&1; then
		(cd "$src" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf -) |
			(cd "$d" && tar -xf -)
	else
		(cd "$src" && tar --exclude=./.git --exclude='./build-*' -cf - .) | (cd "$d" && tar -xf -)
	fi
	if ! debstep build sh -c "cd '$d' && dpkg-buildpackage -us -uc"; then
		count "$o" "deb ($(($(date +%s) - t0)) s)"; return
	fi
	debstep lintian sh -c "cd '$b/src' && lintian --allow-root --fail-on none *.changes \
		> lintian.out 2>&1; cat lintian.out; ! grep -q '^[EW]: ' lintian.out" || true
	# the file list: everything outside what changes on its own
	debsnap() {
		find / \( -path /proc -o -path /sys -o -path /dev -o -path /run -o \
		    -path /tmp -o -path /var/tmp -o -path /var/log -o -path /var/lib/dpkg -o \
		    -path /var/lib/apt -o -path /var/cache/apt -o -path /var/cache/man -o \
		    -path "$src" -o \
		    -path "$BUILDROOT" ${DEB_SNAPSHOT_PRUNE:+$(printf -- ' -o -path %s' $DEB_SNAPSHOT_PRUNE)} \) \
		    -prune -o -print 2>/dev/null | LC_ALL=C sort > "$1"
	}
	debsnap "$b/files.before"
	debpurge() {
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive apt-get purge -y $debpkgs
	}
	trap 'debpurge > /dev/null 2>&1; exit 1' INT TERM
	trap 'debpurge > /dev/null 2>&1' EXIT
	if debstep install sh -c "DEBIAN_FRONTEND=noninteractive apt-get install -y \
	    --no-install-recommends '$b/src/'libsasl2-modules-oauth2_*.deb '$b/src/'sasl-oauth2_*.deb &&
	    ls /usr/lib/*/sasl2/libsasl-oauth2.so && ! ls /usr/lib/*/sasl2/libsasl-oauth2.la 2>/dev/null &&
	    ls /usr/lib/*/sasl-oauth2/sasl-oauth2-impl.so && ! ls /usr/lib/*/sasl-oauth2/*.la 2>/dev/null &&
	    command -v sasl-oauth2 && [ \"\$(stat -c %U:%G:%a /var/cache/sasl-oauth2)\" = root:root:1733 ] &&
	    echo '--- nothing new in /etc:' && grep '^/etc\(/\|\$\)' '$b/files.before' > '$b/etc.before' &&
	    find /etc | LC_ALL=C sort | diff '$b/etc.before' -"; then
		for t in $(sed -n 's/^Tests: *//p' "$d/debian/tests/control" | tr ',' ' '); do
			rc=0
			(cd "$d" && mkdir -p "$b/tmp-$t" && AUTOPKGTEST_TMP="$b/tmp-$t" \
			    "debian/tests/$t") > "$o/autopkgtest-$t.log" 2>&1 || rc=$?
			case $rc in 0) r=PASS ;; 77) r=SKIP ;; *) r=FAIL ;; esac
			printf ':test-result: %s\n' "$r" > "$o/autopkgtest-$t.trs"
		done
	fi
	{ debpurge; } > "$b/apt-purge.out" 2>&1 || echo "apt-get purge failed" >> "$b/apt-purge.out"
	trap - EXIT INT TERM
	debsnap "$b/files.after"
	debstep purge sh -c "cat '$b/apt-purge.out'; ! grep -q 'purge failed' '$b/apt-purge.out' &&
		! dpkg-query -W -f '\${db:Status-Abbrev}\n' $debpkgs 2>/dev/null | grep -q '^.[^n]' &&
		echo '--- files before the install (<) and after the purge (>):' &&
		diff '$b/files.before' '$b/files.after'" || true
	count "$o" "deb ($(($(date +%s) - t0)) s)"
}

for r in $RUNS; do
	case $r in
	lint) lint ;;
	plain) run plain ""; warnings plain ;;
	distcheck)
		# The release tarball builds, tests, installs and uninstalls
		# cleanly from a read-only source tree; every test file is in
		# it (dist-hook). Its check runs the unit tests and e2e-imtest
		# (the whole suite ran in plain, asan and valgrind already).
		single distcheck make distcheck-quick ;;
	bench)
		# The benchmark's quick mode still runs (its figures are not
		# judged here: see bench/results.md).
		single bench make bench BENCH_FLAGS=--quick ;;
	fuzz)
		# The libFuzzer targets, FUZZ_SECONDS each; fuzz/run.sh
		# leaves a .trs per target for count.
		b="$BUILDROOT/build-fuzz"
		say "fuzz: configure && make fuzz FUZZ_SECONDS=${FUZZ_SECONDS:-30}"
		rm -rf "$b"; mkdir -p "$b"
		t0=$(date +%s)
		if ! command -v clang > /dev/null 2>&1; then
			echo "   fuzz: clang not installed, skipped"; skipped=$((skipped + 1))
		elif ! (cd "$b" && "$src/configure" > configure.log 2>&1); then
			tail -n 20 "$b/configure.log"; echo "   fuzz: configure failed"
			failed=$((failed + 1))
		else
			(cd "$b" && make -j"$JOBS" fuzz \
			    FUZZ_SECONDS="${FUZZ_SECONDS:-30}" > fuzz.log 2>&1) || true
			if find "$b" -name '*.trs' | grep -q .; then
				count "$b" "fuzz ($(($(date +%s) - t0)) s)"
			else
				tail -n 30 "$b/fuzz.log" | sed 's/^/   | /'
				echo "   fuzz: make fuzz ran no target"; failed=$((failed + 1))
			fi
		fi ;;
	asan)
		# Leaks in our own programs are errors; UB stops the program.
		# tests/lib.sh turns leak detection off for foreign clients.
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
		export ASAN_OPTIONS UBSAN_OPTIONS
		run asan "--enable-sanitizers"
		unset ASAN_OPTIONS UBSAN_OPTIONS ;;
	valgrind)
		if command -v valgrind > /dev/null 2>&1; then
			run valgrind "" "VALGRIND=$VG"
		else
			echo "   valgrind: not installed, skipped"; skipped=$((skipped + 1))
		fi ;;
	deb) deb ;;
	*) echo "unknown run $r"; exit 2 ;;
	esac
done

echo "(all runs: $(($(date +%s) - start)) s; logs in $BUILDROOT/build-*/)"
[ "$skipped" -eq 0 ] || echo "($skipped skipped: see the lines above)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
