#!/bin/bash
# What the LD_PRELOAD shim costs a libpq client and an SQLite client.
#
#   bash tools/bench/bench_shim.sh [BUILD_DIR]     (default: build)
#
# 1. pgbench -S (-M simple, then -M prepared; MODES) on a private throwaway
#    PostgreSQL cluster (tools/bench/lib.sh; QP_PG_PORT picks its port), in
#    three variants run one after another in each round, the order rotated
#    from round to round, ROUNDS rounds (default 12) of SECONDS_PER_RUN
#    seconds (default 3), for each CONFIGS entry CLIENTSxJOBS (default "4x2";
#    "1x1" is one client, latency-bound):
#      off      pgbench alone
#      preload  LD_PRELOAD of the shim recording into a run directory, no
#               collector (the shim's own cost)
#      run      qprof run: the shim plus its collector harvesting into a
#               store every second (what a user runs)
#    (VARIANTS may add "loaded": the shim preloaded with no QPROF_RUN_DIR,
#    which records nothing; and "run-once": qprof run --flush-ms 3600000, which
#    harvests only after pgbench has ended, to tell the collector's harvests
#    during the run from the rest of qprof run.) For each variant: the median TPS with its quartiles,
#    and the CPU time per transaction of pgbench (user + system, from
#    /usr/bin/time), of the server (its backends: /proc), and of the
#    collector (qprof run's own time, its child's subtracted). For each
#    variant against off: the median of the per-round ratios (a round's runs
#    are seconds apart, so they share the machine's load) with its
#    quartiles, and the ratio of the median CPU per transaction, which the
#    load of a shared machine moves much less than TPS. The robust figure is
#    the paired median; a single 5-run ratio of medians on a 2-core machine
#    was seen anywhere from 0.83 to 1.15 for the same code.
# 2. bench_shim_sqlite: an SQLite point-SELECT loop in C, without and with,
#    and 100,000 distinct statements (each its own fingerprint), the
#    program's own time (bench_shim_sqlite's run directory is in /tmp); then
#    the same under qprof run (TMPDIR unset, so that its run directory is
#    where qprof run puts it by default: a tmpfs when there is one with room,
#    docs/shim.md): the program's own time
#    as it reports it, the target's figure, and the wall time with the
#    collector's writing of 100,000 rows included.
# Results go in docs/performance.md (section "LD_PRELOAD shim").
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_init bench-shim "${1:-}"
rounds=${ROUNDS:-${RUNS:-12}}
secs=${SECONDS_PER_RUN:-3}
configs=${CONFIGS:-${CLIENTS:-4}x${JOBS:-2}}
modes=${MODES:-simple prepared}
variants=${VARIANTS:-off preload run}
clk=$(getconf CLK_TCK)
nbase=$(wc -w <"/proc/$bench_pg_pid/task/$bench_pg_pid/children")
mkdir -m 700 "$tmp/rd"

# One run of a variant; appends "variant tps transactions client_s server_s
# collector_s" to $tmp/runs.
pg_run() { # variant mode clients jobs
  local v=$1 s0 s1 u s au as coll=0
  local cmd=("$pgbench" -n -S -M "$2" -c "$3" -j "$4" -T "$secs" bench)
  local tm=(/usr/bin/time -o "$tmp/t.cmd" -f "%U %S")
  rm -f "$tmp"/rd/* "$tmp"/rd/.??* 2>/dev/null || true
  s0=$(bench_server_ticks)
  case $v in
  off) "${tm[@]}" "${cmd[@]}" >"$tmp/out" 2>&1 ;;
  loaded) env LD_PRELOAD="$shim" "${tm[@]}" "${cmd[@]}" >"$tmp/out" 2>&1 ;;
  preload) env LD_PRELOAD="$shim" QPROF_RUN_DIR="$tmp/rd" "${tm[@]}" "${cmd[@]}" >"$tmp/out" 2>&1 ;;
  run)
    /usr/bin/time -o "$tmp/t.all" -f "%U %S" env QPROF_PRELOAD="$shim" "$qprof" run \
      --store "$tmp/bench.qp" -- "${tm[@]}" "${cmd[@]}" >"$tmp/out" 2>&1
    ;;
  run-once) # qprof run that harvests only after pgbench has ended
    /usr/bin/time -o "$tmp/t.all" -f "%U %S" env QPROF_PRELOAD="$shim" "$qprof" run --flush-ms 3600000 \
      --store "$tmp/bench.qp" -- "${tm[@]}" "${cmd[@]}" >"$tmp/out" 2>&1
    ;;
  *) echo "bench_shim: unknown variant $v" >&2; exit 2 ;;
  esac
  bench_server_settle "$nbase"
  s1=$(bench_server_ticks)
  read -r u s <"$tmp/t.cmd"
  if [ "$v" = run ] || [ "$v" = run-once ]; then
    read -r au as <"$tmp/t.all"
    coll=$(awk -v a="$au" -v b="$as" -v u="$u" -v s="$s" 'BEGIN {print a + b - u - s}')
  fi
  local tps tx
  tps=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$tmp/out")
  tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$tmp/out")
  [ -n "$tps" ] && [ -n "$tx" ] || { echo "bench_shim: pgbench failed:" >&2; cat "$tmp/out" >&2; exit 1; }
  awk -v v="$v" -v tps="$tps" -v tx="$tx" -v u="$u" -v s="$s" -v t=$((s1 - s0)) -v clk="$clk" -v c="$coll" \
    'BEGIN {printf "%s %.1f %d %.2f %.2f %.2f\n", v, tps, tx, u + s, t / clk, c}' >>"$tmp/runs"
}

# field k of variant v's runs, one a line (k: 2 TPS; or the CPU per
# transaction in us: 4 client, 5 server, 6 collector, 0 their sum)
col() {
  awk -v v="$1" -v k="$2" '$1 == v {print (k == 0) ? ($4 + $5 + $6) * 1e6 / $3 : (k == 2) ? $2 : $k * 1e6 / $3}' "$tmp/runs"
}
quart() { # q1 median q3 of the numbers on stdin
  sort -g | awk '{v[NR]=$1} END {m=(NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2
    q1 = v[int((NR + 3) / 4)]; q3 = v[NR + 1 - int((NR + 3) / 4)]; printf "%s %s %s\n", q1, m, q3}'
}

for cfg in $configs; do
  clients=${cfg%x*}
  jobs=${cfg#*x}
  for mode in $modes; do
    echo "pgbench -S -M $mode -c $clients -j $jobs -T $secs: $rounds rounds of: $variants (order rotated)"
    : >"$tmp/runs"
    set -- $variants
    nv=$#
    vs=("$@")
    for r in $(seq 1 "$rounds"); do
      for i in $(seq 0 $((nv - 1))); do pg_run "${vs[$(((i + r) % nv))]}" "$mode" "$clients" "$jobs"; done
    done
    printf '%-8s %26s %22s %22s %22s %8s\n' variant "TPS q1 / median / q3" "CPU us/tx: client" server collector total
    for v in $variants; do
      read -r t1 tm t3 < <(col "$v" 2 | quart)
      cm=$(col "$v" 4 | median)
      sm=$(col "$v" 5 | median)
      km=$(col "$v" 6 | median)
      am=$(col "$v" 0 | median)
      printf '%-8s %8.0f / %6.0f / %6.0f %22.2f %22.2f %22.2f %8.2f\n' "$v" "$t1" "$tm" "$t3" "$cm" "$sm" "$km" "$am"
      echo "$v $tm $am" >>"$tmp/med"
    done
    for v in $variants; do
      [ "$v" = off ] && continue
      # per-round ratios: the k-th run of v against the k-th run of off
      read -r p1 pm p3 < <(paste <(col "$v" 2) <(col off 2) | awk '{print $1 / $2}' | quart)
      read -r c1 cm c3 < <(paste <(col "$v" 0) <(col off 0) | awk '{print $1 / $2}' | quart)
      read -r _ tv av < <(grep "^$v " "$tmp/med")
      read -r _ to ao < <(grep "^off " "$tmp/med")
      awk -v v="$v" -v p1="$p1" -v pm="$pm" -v p3="$p3" -v tv="$tv" -v to="$to" -v av="$av" -v ao="$ao" -v m="$mode" \
        -v c1="$c1" -v cm="$cm" -v c3="$c3" 'BEGIN {
        printf "%s against off (-M %s): TPS, median of the rounds'"'"' ratios %.3f (quartiles %.3f-%.3f), ratio of medians %.3f;\n", v, m, pm, p1, p3, tv / to
        printf "    CPU per transaction (client + server + collector), median of the rounds'"'"' ratios %.3fx (quartiles %.3f-%.3f), ratio of medians %.3fx\n", cm, c1, c3, av / ao}'
    done
    rm -f "$tmp/med"
    echo
  done
done
if [ -f "$tmp/bench.qp" ]; then
  echo "(qprof run recorded $(sqlite3 "$tmp/bench.qp" "SELECT sum(calls) FROM qp_summary") statements into its store)"
  echo
fi
[ -n "${SKIP_SQLITE:-}" ] && exit 0

"$build/tools/bench/bench_shim_sqlite" --runs "${SQLITE_RUNS:-7}" --iterations "${SQLITE_ITERATIONS:-1000000}" \
  --distinct "${DISTINCT:-100000}" --shim "$shim"

# the whole run under qprof run, the store written: 100,000 distinct statements
echo
echo "qprof run, ${DISTINCT:-100000} distinct statements: the program's own time (ns a statement),"
echo "and the wall time with the store written (seconds)"
printf '%-4s %12s %12s %10s %10s\n' run "without ns" "qprof run ns" without "qprof run"
: >"$tmp/off" && : >"$tmp/on" && : >"$tmp/poff" && : >"$tmp/pon"
for r in $(seq 1 "${SQLITE_RUNS:-7}"); do
  t0=$(date +%s.%N)
  "$build/tools/bench/bench_shim_sqlite" --worker-distinct "${DISTINCT:-100000}" >"$tmp/w.off"
  t1=$(date +%s.%N)
  rm -f "$tmp/d.qp"
  (unset TMPDIR; QPROF_PRELOAD="$shim" "$qprof" run --store "$tmp/d.qp" -- \
    "$build/tools/bench/bench_shim_sqlite" --worker-distinct "${DISTINCT:-100000}" >"$tmp/w.on")
  t2=$(date +%s.%N)
  a=$(awk -v x="$t0" -v y="$t1" 'BEGIN {print y - x}')
  b=$(awk -v x="$t1" -v y="$t2" 'BEGIN {print y - x}')
  pa=$(cut -d' ' -f1 "$tmp/w.off")
  pb=$(cut -d' ' -f1 "$tmp/w.on")
  echo "$a" >>"$tmp/off"
  echo "$b" >>"$tmp/on"
  echo "$pa" >>"$tmp/poff"
  echo "$pb" >>"$tmp/pon"
  printf '%-4s %12.1f %12.1f %10.3f %10.3f\n' "$r" "$pa" "$pb" "$a" "$b"
done
off=$(median <"$tmp/off")
on=$(median <"$tmp/on")
poff=$(median <"$tmp/poff")
pon=$(median <"$tmp/pon")
awk -v a="$poff" -v b="$pon" 'BEGIN {printf "median, the program: without %.1f ns, under qprof run %.1f ns per distinct statement: %.2fx\n", a, b, b / a}'
awk -v a="$off" -v b="$on" 'BEGIN {printf "median, wall with the store written: without %.3f s, qprof run %.3f s: %.2fx\n", a, b, b / a}'
echo "(the store holds $(sqlite3 "$tmp/d.qp" "SELECT count(*) FROM qp_summary") queries)"
