#!/bin/sh
# Run libFuzzer targets, each for a fixed time, from a scratch copy of
# the committed corpus (new inputs never land in the source tree).
# Called by `make fuzz`:
#
#   sh fuzz/run.sh FUZZSRC OUT SECONDS TARGET...
#
# FUZZSRC holds corpus/TARGET/ and TARGET.dict; OUT holds out/fuzz-TARGET
# and gets work/TARGET/ (corpus, tmp, crash-*), work/TARGET.log and
# work/TARGET.trs (":test-result: PASS" or FAIL, as automake writes
# them, so that tests/check.sh counts one result per target).
# Environment: FUZZ_TIMEOUT (seconds one input may take; default 10),
# FUZZ_ARGS (more libFuzzer options, e.g. -jobs=2 -workers=2).
set -eu

[ $# -ge 4 ] || { echo "usage: $0 FUZZSRC OUT SECONDS TARGET..." >&2; exit 2; }
src=$(cd "$1" && pwd) out=$2 seconds=$3
shift 3
timeout=${FUZZ_TIMEOUT:-10}
# Leaks are errors; any UB stops the target (it is built with
# -fno-sanitize-recover); the caller's settings win.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/lsan.supp:print_suppressions=0}
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
# No target makes a request, and none could reach a cloud default if it
# did: an Azure managed identity with no endpoint of its own would ask
# 169.254.169.254; name the Arc agent's variables at a closed loopback
# port instead, as tests/lib.sh and the unit tests do.
IDENTITY_ENDPOINT=http://127.0.0.1:1/metadata/identity/oauth2/token
IMDS_ENDPOINT=http://127.0.0.1:1
unset IDENTITY_HEADER
export IDENTITY_ENDPOINT IMDS_ENDPOINT
failed=0

for t in "$@"; do
	w=$(cd "$out" && pwd)/work/$t
	log=$w.log
	rm -rf "$w" "$w.log" "$w.trs"
	mkdir -p "$w/corpus" "$w/tmp"
	if [ ! -d "$src/corpus/$t" ] || [ ! -x "$out/out/fuzz-$t" ]; then
		echo "FAIL: fuzz-$t: no such target (corpus or program missing)"
		printf ':test-result: FAIL\n' > "$w.trs"
		failed=1
		continue
	fi
	cp -R "$src/corpus/$t/." "$w/corpus/"
	chmod -R u+w "$w/corpus"
	seeds=$(ls "$w/corpus" | wc -l)
	dict=
	[ ! -f "$src/$t.dict" ] || dict=-dict=$src/$t.dict
	# libconfig 1.5 leaks a string on many syntax errors (lsan.supp):
	# a leak check after each such input would slow the config target
	# from thousands of inputs a second to a few. It gets one check, at
	# exit, over the whole run (suppressions applied) instead.
	leaks=
	[ "$t" != config ] || leaks=-detect_leaks=0
	echo "  FUZZ     $t for $seconds s from $seeds seeds"
	# shellcheck disable=SC2086
	if TMPDIR=$w/tmp "$out/out/fuzz-$t" -max_total_time="$seconds" \
	    -timeout="$timeout" -print_final_stats=1 \
	    -artifact_prefix="$w/" $dict $leaks ${FUZZ_ARGS:-} "$w/corpus" \
	    > "$log" 2>&1; then
		res=PASS
	else
		res=FAIL
		failed=1
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	cov=$(sed -n 's/.*DONE *cov: \([0-9]*\) .*/\1/p' "$log" | tail -n 1)
	echo "$res: fuzz-$t: ${execs:-?} execs (${rate:-?}/s), coverage ${cov:-?}," \
	    "corpus $seeds -> $(ls "$w/corpus" | wc -l) inputs"
	printf ':test-result: %s\n' "$res" > "$w.trs"
	if [ "$res" = FAIL ]; then
		for a in "$w"/crash-* "$w"/leak-* "$w"/timeout-* "$w"/oom-*; do
			[ ! -f "$a" ] || echo "   input that failed: $a"
		done
		tail -n 40 "$log" | sed 's/^/   | /'
		echo "   reproduce: $out/out/fuzz-$t INPUT (whole log: $log)"
	fi
done
[ "$failed" -eq 0 ]
