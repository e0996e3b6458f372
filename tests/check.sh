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
#   distcheck make distcheck                     counts as one test
#   fuzz      make fuzz (clang, libFuzzer)       each target for
#             FUZZ_SECONDS, one result per target (fuzz/README.md)
#   bench     make bench BENCH_FLAGS=--quick      it still runs; one result
#   lint      groff -ww -z -man on each man page, and .RS/.RE balanced
#             (none left open at a .SH or at the end); one result
#
# and ends with one line, "N passed, N failed", summed over
# the runs from automake's .trs files. Exit status 1 when anything
# failed. Usage, from anywhere:  sh tests/check.sh
#
# Environment: BUILDROOT (where build-plain, build-asan, build-valgrind
# go; default the source tree), JOBS (make -j; default the CPU count),
# RUNS (default "lint plain asan valgrind distcheck fuzz bench"), FUZZ_SECONDS
# (default 30).
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
BUILDROOT=${BUILDROOT:-$src}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
RUNS=${RUNS:-lint plain asan valgrind distcheck fuzz bench}
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
			echo "   FAILED ${name#"$1"/} ($res); its failed checks and the end of its log:"
			grep '^not ok' "$name.log" 2>/dev/null | head -n 20 | sed 's/^/   | /' || true
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

for r in $RUNS; do
	case $r in
	lint) lint ;;
	plain) run plain ""; warnings plain ;;
	distcheck)
		# The release tarball builds, tests, installs and uninstalls
		# cleanly from a read-only source tree.
		single distcheck make distcheck ;;
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
	*) echo "unknown run $r"; exit 2 ;;
	esac
done

echo "(all runs: $(($(date +%s) - start)) s; logs in $BUILDROOT/build-*/)"
[ "$skipped" -eq 0 ] || echo "($skipped skipped: see the lines above)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
