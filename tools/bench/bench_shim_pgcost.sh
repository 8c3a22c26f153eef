#!/bin/bash
# What the LD_PRELOAD shim costs a libpq client, measured in ways the load of a
# shared machine does not move much (bench_shim.sh's TPS ratios need a quiet one):
#
#   bash tools/bench/bench_shim_pgcost.sh [BUILD_DIR]     (default: build)
#
# On a private throwaway PostgreSQL cluster (scale 10; tools/bench/lib.sh,
# QP_PG_PORT picks its port), for pgbench -S in
# MODES (default "prepared simple"), -c 4 -j 2, TX transactions per client
# (default 5000):
#   1. system calls per transaction of pgbench (strace -c -f), without and with
#      the shim (LD_PRELOAD and a run directory: no collector);
#   2. instructions per transaction of pgbench (valgrind --tool=callgrind, when
#      valgrind is installed; CALLGRIND=0 skips it), without and with; and,
#      when perf is installed (PERF=0 skips it), the CPU time per transaction
#      spent in the shim's own code (perf record -e cpu-clock: samples in
#      libqprof_preload.so), beside pgbench's;
#   3. under `qprof run` (the shim plus its collector harvesting every second
#      into a store): the CPU time of the collector itself (qprof run's own
#      user + system time, its child's subtracted), against pgbench's.
# The real pgbench binary is used, not Debian's perl wrapper (which callgrind
# and strace would measure instead).
# Results go in docs/performance.md (section "LD_PRELOAD shim").
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init bench-pgcost "${1:-}"
modes=${MODES:-prepared simple}
tx=${TX:-5000}
mkdir -m 700 "$tmp/run"
n=$((4 * tx))
pgb() { "$pgbench" -n -S -c 4 -j 2 -t "$tx" -M "$@" bench; }
with_shim() { LD_PRELOAD=$shim QPROF_RUN_DIR=$tmp/run "$@"; }

# total system calls (and the three busiest) of one strace -c summary
sys_per_tx() {
  awk -v n="$n" '$NF == "total" {t = $4} /^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ && $NF != "total" {c[$NF] = $4}
    END {printf "%.2f per transaction (", t / n; k = 0
      for (s in c) if (s == "recvfrom" || s == "sendto" || s == "ppoll" || s == "poll" || s == "futex") printf "%s%s %.2f", (k++ ? ", " : ""), s, c[s] / n
      printf ")\n"}' "$1"
}

for mode in $modes; do
  echo "== pgbench -S -M $mode -c 4 -j 2 -t $tx ($n transactions)"
  strace -c -f -o "$tmp/st.off" "$pgbench" -n -S -c 4 -j 2 -t "$tx" -M "$mode" bench >/dev/null 2>&1
  with_shim strace -c -f -o "$tmp/st.on" "$pgbench" -n -S -c 4 -j 2 -t "$tx" -M "$mode" bench >/dev/null 2>&1
  rm -f "$tmp"/run/*
  echo "system calls, without the shim: $(sys_per_tx "$tmp/st.off")"
  echo "system calls, with the shim:    $(sys_per_tx "$tmp/st.on")"
  if [ "${CALLGRIND:-1}" != 0 ] && command -v valgrind >/dev/null; then
    off=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$pgbench" -n -S -c 4 -j 2 -t "$tx" -M "$mode" bench 2>&1 |
      sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    on=$(with_shim valgrind --tool=callgrind --callgrind-out-file=/dev/null "$pgbench" -n -S -c 4 -j 2 -t "$tx" -M "$mode" bench 2>&1 |
      sed -n 's/.*Collected : \([0-9]*\).*/\1/p')
    rm -f "$tmp"/run/*
    awk -v a="$off" -v b="$on" -v n="$n" 'BEGIN {printf "instructions (callgrind): without %d, with %d: %.0f / %.0f per transaction, +%.0f\n", a, b, a / n, b / n, (b - a) / n}'
  fi
  if [ "${PERF:-1}" != 0 ] && command -v perf >/dev/null; then
    # The shim's own CPU: perf's cpu-clock samples (the only event a VM may
    # offer) that fall in libqprof_preload.so, per transaction, beside
    # pgbench's samples in all (both in us: samples / frequency).
    with_shim perf record -q -e cpu-clock -F 4000 -o "$tmp/perf.data" "$pgbench" -n -S -c 4 -j 2 -t "$tx" -M "$mode" bench >/dev/null 2>&1
    rm -f "$tmp"/run/*
    perf report -i "$tmp/perf.data" --no-children --sort dso -F sample,dso 2>/dev/null | grep -v '^#' | grep . |
      awk -v n="$n" '{s += $1; if ($2 == "libqprof_preload.so") q = $1}
        END {printf "CPU samples (perf, cpu-clock): pgbench %.2f us per transaction, of which the shim %.2f us (%.1f%%)\n", s * 250 / n, q * 250 / n, 100 * q / s}'
  fi
  rm -f "$tmp/s.qp"
  /usr/bin/time -o "$tmp/t.all" -f "%U %S %e" env QPROF_PRELOAD="$shim" "$qprof" run --store "$tmp/s.qp" -- \
    /usr/bin/time -o "$tmp/t.cmd" -f "%U %S" "$pgbench" -n -S -c 4 -j 2 -t "$tx" -M "$mode" bench >"$tmp/pgb.out" 2>&1
  read -r au as ae <"$tmp/t.all"
  read -r cu cs <"$tmp/t.cmd"
  awk -v au="$au" -v as="$as" -v ae="$ae" -v cu="$cu" -v cs="$cs" -v n="$n" 'BEGIN {
    c = au + as - cu - cs; printf "qprof run: pgbench %.2f s CPU (%.2f us per transaction), the collector %.2f s CPU in %.1f s (%.1f%% of one core)\n",
      cu + cs, (cu + cs) * 1e6 / n, c, ae, 100 * c / ae }'
  echo "(the store holds $(sqlite3 "$tmp/s.qp" "SELECT sum(calls) FROM qp_summary") statements)"
  echo
done
