#!/bin/bash
# What the LD_PRELOAD shim costs a libpq client and an SQLite client.
#
#   bash tools/bench/bench_shim.sh [BUILD_DIR]     (default: build)
#
# 1. pgbench -S (simple protocol; then -M prepared) on a private throwaway
#    PostgreSQL cluster, without and with the shim, interleaved, RUNS runs
#    each of SECONDS seconds (env: RUNS=5 SECONDS_PER_RUN=5 CLIENTS=4 JOBS=2);
#    prints each run's TPS and the ratio of the medians.
#    "With" is `qprof run`: the shim records into segments and qprof run
#    harvests them into a store every second, on the same machine.
# 2. bench_shim_sqlite: an SQLite point-SELECT loop in C, without and with,
#    and 100,000 distinct statements (each its own fingerprint), the
#    program's own time; then the same under qprof run, the collector's
#    writing of 100,000 rows included.
# Results go in docs/performance.md (section "LD_PRELOAD shim").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
shim=$build/lib/shim/libqprof_preload.so
qprof=$build/tools/qprof
[ -f "$shim" ] || { echo "bench_shim: no shim at $shim (build first)" >&2; exit 1; }
runs=${RUNS:-5}
secs=${SECONDS_PER_RUN:-5}
clients=${CLIENTS:-4}
jobs=${JOBS:-2}

tmp=$(mktemp -d /tmp/qprof-bench-shim.XXXXXX)
envfile=$tmp/pg.env
cleanup() {
  sh "$root/tests/support/pgcluster.sh" stop "$envfile" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
sh "$root/tests/support/pgcluster.sh" start "$envfile" >/dev/null
set -a
. "$envfile"
set +a
createdb bench
pgbench -i -q -s 10 bench >/dev/null 2>&1

tps() { # prints the TPS of one pgbench run; args: extra pgbench options
  pgbench -n -S -c "$clients" -j "$jobs" -T "$secs" "$@" bench 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

for mode in simple prepared; do
  echo "pgbench -S -M $mode -c $clients -j $jobs -T $secs, $runs runs each, interleaved"
  printf '%-4s %12s %12s\n' run "without TPS" "with TPS"
  : >"$tmp/off" && : >"$tmp/on"
  for r in $(seq 1 "$runs"); do
    if [ $((r % 2)) = 1 ]; then
      a=$(tps -M "$mode")
      b=$(QPROF_PRELOAD="$shim" "$qprof" run --store "$tmp/bench.qp" -- \
        pgbench -n -S -c "$clients" -j "$jobs" -T "$secs" -M "$mode" bench 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
    else
      b=$(QPROF_PRELOAD="$shim" "$qprof" run --store "$tmp/bench.qp" -- \
        pgbench -n -S -c "$clients" -j "$jobs" -T "$secs" -M "$mode" bench 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
      a=$(tps -M "$mode")
    fi
    echo "$a" >>"$tmp/off"
    echo "$b" >>"$tmp/on"
    printf '%-4s %12s %12s\n' "$r" "$a" "$b"
  done
  off=$(median <"$tmp/off")
  on=$(median <"$tmp/on")
  awk -v a="$off" -v b="$on" 'BEGIN {printf "median: without %.0f TPS, with %.0f TPS: ratio %.3f\n\n", a, b, b / a}'
done
calls=$(sqlite3 "$tmp/bench.qp" "SELECT sum(calls) FROM qp_summary")
echo "(the shim recorded $calls statements into its store)"
echo

"$build/tools/bench/bench_shim_sqlite" --runs "${SQLITE_RUNS:-7}" --iterations "${SQLITE_ITERATIONS:-1000000}" \
  --distinct "${DISTINCT:-100000}" --shim "$shim"

# the whole run under qprof run, the store written: 100,000 distinct statements
echo
echo "qprof run, ${DISTINCT:-100000} distinct statements, the store written (wall seconds)"
printf '%-4s %10s %10s\n' run without "qprof run"
: >"$tmp/off" && : >"$tmp/on"
for r in $(seq 1 "${SQLITE_RUNS:-7}"); do
  t0=$(date +%s.%N)
  "$build/tools/bench/bench_shim_sqlite" --worker-distinct "${DISTINCT:-100000}" >/dev/null
  t1=$(date +%s.%N)
  rm -f "$tmp/d.qp"
  QPROF_PRELOAD="$shim" "$qprof" run --store "$tmp/d.qp" -- \
    "$build/tools/bench/bench_shim_sqlite" --worker-distinct "${DISTINCT:-100000}" >/dev/null
  t2=$(date +%s.%N)
  a=$(awk -v x="$t0" -v y="$t1" 'BEGIN {print y - x}')
  b=$(awk -v x="$t1" -v y="$t2" 'BEGIN {print y - x}')
  echo "$a" >>"$tmp/off"
  echo "$b" >>"$tmp/on"
  printf '%-4s %10.3f %10.3f\n' "$r" "$a" "$b"
done
off=$(median <"$tmp/off")
on=$(median <"$tmp/on")
awk -v a="$off" -v b="$on" 'BEGIN {printf "median: without %.3f s, qprof run %.3f s: %.2fx\n", a, b, b / a}'
echo "(the store holds $(sqlite3 "$tmp/d.qp" "SELECT count(*) FROM qp_summary") queries)"
