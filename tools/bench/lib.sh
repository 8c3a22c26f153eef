# Shared set-up of the shim benchmarks (bench_shim.sh, bench_shim_pgcost.sh).
# Sourced, not run:
#
#   . "$(dirname "$0")/lib.sh"
#   bench_init NAME "${1:-}"      # paths, a temporary directory, a cluster
#
# bench_init sets root, build, shim, qprof, pgbench (the real binary, not
# Debian's perl wrapper, which strace, callgrind and the CPU accounting would
# measure instead of pgbench), tmp (removed at exit); it starts a private
# throwaway PostgreSQL cluster (tests/support/pgcluster.sh; its port is
# $QP_PG_PORT, default 54329: give your own on a shared machine), exports its
# PG* variables and creates the database "bench" (pgbench -i, scale
# $SCALE, default 10). bench_pg_pid is the postmaster's pid.

bench_init() { # name, build directory (empty: $root/build)
  local name=$1
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  build=$(cd "${2:-$root/build}" && pwd)
  shim=$build/lib/shim/libqprof_preload.so
  qprof=$build/tools/qprof
  [ -f "$shim" ] || { echo "$name: no shim at $shim (build first)" >&2; exit 1; }
  pgbench=$(ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n 1)
  [ -x "$pgbench" ] || pgbench=$(command -v pgbench)
  tmp=$(mktemp -d "/tmp/qprof-$name.XXXXXX")
  bench_envfile=$tmp/pg.env
  trap bench_cleanup EXIT
  sh "$root/tests/support/pgcluster.sh" start "$bench_envfile" >/dev/null
  set -a
  . "$bench_envfile"
  set +a
  bench_pg_pid=$QP_PG_PID
  createdb bench
  "$pgbench" -i -q -s "${SCALE:-10}" bench >/dev/null 2>&1
}

bench_cleanup() {
  sh "$root/tests/support/pgcluster.sh" stop "$bench_envfile" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}

# The median of the numbers on stdin, one a line.
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# The CPU time (clock ticks) the cluster has used so far: the postmaster's
# own and its reaped children's (ended backends), plus its live children's.
bench_server_ticks() {
  local t p f
  read -r -a f </proc/"$bench_pg_pid"/stat
  t=$((f[13] + f[14] + f[15] + f[16]))
  for p in $(cat /proc/"$bench_pg_pid"/task/"$bench_pg_pid"/children); do
    if read -r -a f 2>/dev/null </proc/"$p"/stat; then t=$((t + f[13] + f[14])); fi
  done
  echo "$t"
}

# Waits (at most 4 s) until the cluster has no more children than `$1`:
# the backends of a finished pgbench have ended and been reaped, so that their
# CPU is in the postmaster's children's time.
bench_server_settle() {
  local i
  for i in $(seq 1 200); do
    [ "$(wc -w <"/proc/$bench_pg_pid/task/$bench_pg_pid/children")" -le "$1" ] && return 0
    sleep 0.02
  done
  echo "bench: the backends of the last run did not end" >&2
}
