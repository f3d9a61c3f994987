#!/usr/bin/env bash
# Installs the Debian packages spindle needs, and only those that are missing.
# Does nothing (and needs no root) when everything is already installed.
# Usage: scripts/install-deps.sh [test|bench|fuzz|all]   (default: all)
set -euo pipefail

base=(meson ninja-build pkg-config cmake g++ libboost-dev libboost-context-dev
      libconcurrentqueue-dev libmimalloc-dev catch2 libbenchmark-dev)
# clang (14, Debian 12's) is one of the compilers tests/consumer/ checks a user's build
# with (it must give the one clear C++20 error); every test build itself uses g++.
# clang-format checks that the tree keeps the root .clang-format (the `format` test).
# The HTTP example's client test (tests/stress/http_clients.py) drives it with real
# clients: curl, ab (apache2-utils), h2load (nghttp2-client) and wrk (also in bench);
# redis-tools (redis-cli, redis-benchmark) are the clients of tests/stress/kv_clients.py.
# python3-matplotlib: scripts/trace_report.py draws the execution trace's timeline (the
# trace_report test runs it; in the bench set for looking at a traced benchmark run).
test_extra=(clang libclang-rt-14-dev clang-format curl apache2-utils nghttp2-client wrk redis-tools python3-matplotlib)
# gnuplot-nox draws the benchmark chart (scripts/bench_report.py): one small package
# with a PNG terminal, where matplotlib would bring numpy, pillow and fonts.
# redis-server is the reference beside examples/kv_server in scripts/bench_net.py, and
# redis-tools' redis-benchmark its load.
bench_extra=(libboost-fiber-dev wrk gnuplot-nox redis-server redis-tools python3-matplotlib)
# make fuzz: libFuzzer. clang 16, not 14: clang 14 cannot compile libstdc++ 12's
# std::source_location (no __builtin_source_location), which spindle uses.
fuzz_extra=(clang-16 libclang-rt-16-dev)

case "${1:-all}" in
  test)  want=("${base[@]}" "${test_extra[@]}") ;;
  bench) want=("${base[@]}" "${bench_extra[@]}") ;;
  fuzz)  want=("${base[@]}" "${fuzz_extra[@]}") ;;
  all)   want=("${base[@]}" "${test_extra[@]}" "${bench_extra[@]}") ;;
  *) echo "install-deps.sh: unknown set '$1' (test, bench, fuzz or all)" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
  echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Try without refreshing the package lists first; refresh only when apt cannot find one.
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
