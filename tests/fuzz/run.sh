#!/usr/bin/env bash
# `make fuzz`: builds the libFuzzer targets with clang 16 (ASan+UBSan, coverage over the
# whole library) and runs each for SECONDS seconds, then prints executions per second
# and coverage. New inputs go to a working corpus in the build directory; the seeds of
# tests/fuzz/corpus/<target>/ and the inputs kept in tests/fuzz/regressions/<target>/
# are read first and never changed. An input that crashes, breaks an
# invariant, leaks, runs out of memory or hangs is written to
# tests/fuzz/regressions/<target>/, which `make test` replays (fuzz_replay_<target>).
#
# Usage: tests/fuzz/run.sh [BUILD_DIR=build/fuzz] [SECONDS=30] [TARGET...]
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build/fuzz}
seconds=${2:-30}
shift $(( $# < 2 ? $# : 2 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(http_request stream_lines process_wire)

if [ ! -f "$build/build.ninja" ]; then
  CC=clang-16 CXX=clang++-16 meson setup "$build" --buildtype=debugoptimized -Dfuzz=true \
    -Dbenchmarks=false -Dexamples=false -Db_sanitize=address,undefined -Db_lundef=false \
    -Dcpp_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C "$build" $(printf 'tests/fuzz/fuzz_%s ' "${targets[@]}")

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
summary=()
for t in "${targets[@]}"; do
  work="$build/tests/fuzz/corpus-$t"
  kept="$root/tests/fuzz/regressions/$t"
  log="$build/tests/fuzz/$t.log"
  mkdir -p "$work" "$kept"
  dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  echo "== fuzz $t for ${seconds}s (log: $log)"
  rc=0
  "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=256 \
    -print_final_stats=1 -artifact_prefix="$kept/" "${dict[@]}" "$work" "$root/tests/fuzz/corpus/$t" "$kept" \
    >"$log" 2>&1 || rc=$?
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log")
  corpus=$(ls "$work" | wc -l)
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    grep -E 'ERROR|invariant|SUMMARY|Test unit written' "$log" | head -20 || true
    summary+=("$t: FAILED (exit $rc): the input is kept in tests/fuzz/regressions/$t/; see $log")
  else
    summary+=("$t: clean, ${execs:-?} executions in ${seconds}s (${rate:-?} exec/s), cov ${cov:-?} edges, ft ${ft:-?} features, corpus ${corpus}, peak RSS ${rss:-?} MB")
  fi
done
echo
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ]
