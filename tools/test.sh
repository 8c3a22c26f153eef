#!/bin/bash
# The whole test suite, as CI runs it. From a fresh Debian 12 machine:
#   bash tools/test.sh
# Stages (each must pass):
#   1. build with -Wall -Wextra -Werror, run every test (unit, integration
#      against a throwaway PostgreSQL cluster, real clients under the shim)
#   2. build with ASan+UBSan, run every test again
#   3. build with TSan, run the concurrency tests
#   4. build the libFuzzer targets with clang, run each for QP_FUZZ_SECONDS (60),
#      as many at once as there are CPUs
#   5. install to a temporary prefix and build the example service against it
#      with pkg-config and with find_package(qprof)
# QP_STAGES="1 2" limits the run to some stages.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
jobs=$(nproc 2>/dev/null || echo 2)
stages=${QP_STAGES:-"1 2 3 4 5"}
fuzz_seconds=${QP_FUZZ_SECONDS:-60}

bash tools/deps.sh

ctest_log=$(mktemp)
trap 'rm -f "$ctest_log"' EXIT
# Runs a ctest command in a build dir, keeping its summary for the closing line.
run_ctest() { # dir, command...
  local dir=$1
  shift
  (cd "$dir" && "$@") | tee -a "$ctest_log"
}

want() { case " $stages " in *" $1 "*) return 0 ;; esac; return 1; }
banner() { printf '\n==== %s ====\n' "$*"; }

configure_build() { # dir, extra cmake args... [--target T]
  local dir=$1 target=()
  shift
  if [ "${QP_BUILD_TARGET:-}" != "" ]; then target=(--target "$QP_BUILD_TARGET"); fi
  cmake -S "$root" -B "$dir" -DQPROF_WERROR=ON "$@" >/dev/null
  # Progress lines are hidden; warnings and errors are shown, and a failed
  # build stops the run here.
  local log
  log=$(mktemp)
  if ! cmake --build "$dir" -j "$jobs" "${target[@]}" >"$log" 2>&1; then
    grep -vE '^\[ *[0-9]+%\]' "$log"
    rm -f "$log"
    echo "build failed in $dir" >&2
    exit 1
  fi
  rm -f "$log"
}

if want 1; then
  banner "1/5 build -Werror and run all tests"
  configure_build build/ci-release -DCMAKE_BUILD_TYPE=RelWithDebInfo
  run_ctest build/ci-release ctest -j "$jobs" --output-on-failure
fi

if want 2; then
  banner "2/5 ASan+UBSan: all tests"
  configure_build build/ci-asan -DCMAKE_BUILD_TYPE=Debug -DQPROF_SANITIZE=address,undefined \
    -DQPROF_BUILD_BENCH=OFF
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_ctest build/ci-asan ctest -j "$jobs" --output-on-failure
fi

if want 3; then
  banner "3/5 TSan: concurrency tests"
  configure_build build/ci-tsan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
    -DQPROF_SANITIZE=thread -DQPROF_BUILD_BENCH=OFF
  # TSan needs a non-randomized address layout on recent kernels.
  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest build/ci-tsan \
    setarch "$(uname -m)" -R ctest -j "$jobs" -L concurrency --output-on-failure
fi

if want 4; then
  banner "4/5 fuzz targets, ${fuzz_seconds}s each"
  QP_BUILD_TARGET=fuzz configure_build build/ci-fuzz -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=Debug -DQPROF_BUILD_FUZZ=ON -DQPROF_BUILD_BENCH=OFF -DBUILD_TESTING=ON
  # Targets run $jobs at a time, each for its full time on a CPU of its own.
  fuzz_one() { # target, log: the target's output in log, its status in log.rc
    local f=$1 log=$2 name corpus seeds rc=0
    name=$(basename "$f")
    corpus=$(mktemp -d)
    seeds="$root/tests/fuzz/seeds/${name#fuzz_}"
    "$f" -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -max_len=65536 \
      -print_final_stats=1 -artifact_prefix="$root/build/ci-fuzz/" \
      "$corpus" $( [ -d "$seeds" ] && echo "$seeds" ) >"$log" 2>&1 || rc=$?
    rm -rf "$corpus"
    echo "$rc" >"$log.rc"
  }
  names=() logs=()
  for f in build/ci-fuzz/tests/fuzz/fuzz_*; do
    [ -x "$f" ] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
    log=$(mktemp)
    names+=("$(basename "$f")")
    logs+=("$log")
    echo "fuzzing $(basename "$f")"
    fuzz_one "$f" "$log" &
  done
  wait
  failed=0
  for i in "${!names[@]}"; do
    log=${logs[$i]}
    if [ "$(cat "$log.rc" 2>/dev/null)" = 0 ]; then
      echo "${names[$i]}:"
      grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" || true
    else
      tail -n 60 "$log"
      echo "${names[$i]} failed; the crashing input is in build/ci-fuzz/" >&2
      failed=1
    fi
    rm -f "$log" "$log.rc"
  done
  [ "$failed" = 0 ] || exit 1
fi

if want 5; then
  banner "5/5 install and build the example against it"
  prefix=$(mktemp -d)
  cmake --install build/ci-release --prefix "$prefix" >/dev/null
  # The build tree's shim is hidden while the installed qprof is tried.
  bash tools/check-install.sh "$prefix" build/ci-release
  rm -rf "$prefix"
fi

banner "all stages passed: $stages"
# One closing line over every ctest run above (each test counted once per run).
total=$( (grep -oE 'tests failed out of [0-9]+' "$ctest_log" || true) | awk '{s += $5} END {print s + 0}')
echo "summary: $total passed, 0 failed"
