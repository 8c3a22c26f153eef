#!/bin/bash
# How fast `qprof ingest` reads a PostgreSQL log, against pgbadger on the
# same file in the same run.
#
#   bash tools/bench/bench_ingest.sh [BUILD_DIR]      (default: build)
#
# 1. A private PostgreSQL 15 cluster logs with log_min_duration_statement = 0
#    and Debian's log_line_prefix '%m [%p] %q%u@%d ' while pgbench runs the
#    tpcb-like script in simple, extended and prepared mode (SAMPLE_S seconds
#    each, 4 clients) and psql runs a few failing statements: that is the
#    sample, a real server's lines.
# 2. The sample is repeated into a log of SIZE_MB (default 100), each copy
#    later in time (its span after the one before) with other pids, so the
#    buckets advance as in a longer run.
# 3. qprof ingest (a fresh store each run) RUNS times (default 5) and
#    pgbadger (Debian's, one job, -p with the same prefix) PGB_RUNS times
#    (default 1; 0 skips it); wall and CPU time (user + sys) and max RSS of each, from
#    /usr/bin/time; MB/s and the ratio of the medians.
# 4. With BIG_MB (default 0: skipped), qprof ingest alone on a log of that
#    size, for its memory (max RSS).
# Results go in docs/performance.md (section "Log ingestion").
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
qprof=$build/tools/qprof
[ -x "$qprof" ] || { echo "bench_ingest: no qprof at $qprof (build first)" >&2; exit 1; }
command -v pgbadger >/dev/null || { echo "bench_ingest: pgbadger not installed (tools/deps.sh)" >&2; exit 1; }
size_mb=${SIZE_MB:-100}
big_mb=${BIG_MB:-0}
runs=${RUNS:-5}
pgb_runs=${PGB_RUNS:-1}
sample_s=${SAMPLE_S:-3}
prefix='%m [%p] %q%u@%d '

tmp=$(mktemp -d /tmp/qprof-bench-ingest.XXXXXX)
envfile=$tmp/pg.env
cleanup() {
  sh "$root/tests/support/pgcluster.sh" stop "$envfile" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
QP_PG_PORT=${QP_PG_PORT:-54383} sh "$root/tests/support/pgcluster.sh" start "$envfile" >/dev/null
. "$envfile"
export PGHOST PGPORT PGUSER PGDATABASE
createdb bench
pgbench -i -q -s 5 bench >/dev/null 2>&1
sh "$root/tests/support/pgcluster.sh" serverstop "$envfile"
sh "$root/tests/support/pgcluster.sh" serverstart "$envfile" "-c log_min_duration_statement=0 \
  -c log_line_prefix='$prefix' -c logging_collector=on -c log_directory=$QP_PG_DIR/log \
  -c log_filename=sample.log -c log_rotation_size=0"
. "$envfile"
for mode in simple extended prepared; do
  pgbench -n -M $mode -c 4 -j 2 -T "$sample_s" bench >/dev/null 2>&1
done
for i in 1 2 3; do psql -X -q -d bench -c "SELECT * FROM no_such_$i" >/dev/null 2>&1 || true; done
sh "$root/tests/support/pgcluster.sh" serverstop "$envfile"
cp "$QP_PG_DIR/log/sample.log" "$tmp/sample.log"

# Repeats the sample to `mb` MB: copy k is shifted by k spans, pids by k * 100000.
make_log() { # out mb
  python3 - "$tmp/sample.log" "$1" "$2" <<'PY'
import sys, datetime as dt
src, out, mb = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open(src, 'rb').read().split(b'\n')
fmt = '%Y-%m-%d %H:%M:%S'
def t(l):
    return dt.datetime.strptime(l[:19].decode(), fmt)
stamped = [l for l in lines if len(l) > 24 and l[4:5] == b'-' and l[10:11] == b' ']
t0, t1 = t(stamped[0]), t(stamped[-1])
span = (t1 - t0).total_seconds() + 1
cache = {}
target = mb * 1000000
with open(out, 'wb', buffering=1 << 20) as f:
    k = written = 0
    while written < target:
        off = dt.timedelta(seconds=span * k)
        buf = []
        for l in lines:
            if len(l) > 24 and l[4:5] == b'-' and l[10:11] == b' ' and l[23:29] == b' UTC [':
                sec = l[:19]
                key = (sec, k)
                if key not in cache:
                    cache[key] = (dt.datetime.strptime(sec.decode(), fmt) + off).strftime(fmt).encode()
                e = l.index(b']', 29)
                pid = int(l[29:e]) + 100000 * k
                l = cache[key] + l[19:29] + str(pid).encode() + l[e:]
            buf.append(l)
        chunk = b'\n'.join(buf)
        if not chunk.endswith(b'\n'):
            chunk += b'\n'
        f.write(chunk)
        written += len(chunk)
        k += 1
        if len(cache) > 200000:
            cache.clear()
PY
}
make_log "$tmp/bench.log" "$size_mb"
bytes=$(stat -c %s "$tmp/bench.log")
lines=$(wc -l <"$tmp/bench.log")
echo "log: $bytes bytes, $lines lines (sample: $(wc -l <"$tmp/sample.log") lines of pgbench -M simple/extended/prepared, ${sample_s} s each)"
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the runs"

# one timed run: prints "wall cpu maxrss_kb"
timed() {
  /usr/bin/time -f '%e %U %S %M' -o "$tmp/time.out" "$@" >/dev/null 2>"$tmp/cmd.err" ||
    { echo "bench_ingest: failed: $* : $(tail -3 "$tmp/cmd.err")" >&2; exit 1; }
  awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' "$tmp/time.out"
}
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

: >"$tmp/q.times"
for r in $(seq 1 "$runs"); do
  rm -f "$tmp/s.db"*
  timed "$qprof" ingest --no-progress --store "$tmp/s.db" "$tmp/bench.log" >>"$tmp/q.times"
done
"$qprof" ingest --no-progress --store "$tmp/check.db" "$tmp/bench.log" | head -3
: >"$tmp/p.times"
for r in $(seq 1 "$pgb_runs"); do
  timed pgbadger -q -j 1 -p "$prefix" -o "$tmp/out.html" "$tmp/bench.log" >>"$tmp/p.times"
done
printf '%-10s %8s %8s %10s\n' run wall_s cpu_s maxrss_MB
awk '{printf "qprof      %8s %8s %10.1f\n", $1, $2, $3 / 1024}' "$tmp/q.times"
awk '{printf "pgbadger   %8s %8s %10.1f\n", $1, $2, $3 / 1024}' "$tmp/p.times"
qw=$(cut -d' ' -f1 "$tmp/q.times" | median) qc=$(cut -d' ' -f2 "$tmp/q.times" | median)
pw=$(cut -d' ' -f1 "$tmp/p.times" | median) pc=$(cut -d' ' -f2 "$tmp/p.times" | median)
[ -s "$tmp/p.times" ] || pw=0 pc=0
awk -v b="$bytes" -v qw="$qw" -v qc="$qc" -v pw="$pw" -v pc="$pc" 'BEGIN {
  printf "qprof ingest: median wall %.2f s = %.1f MB/s, CPU %.2f s = %.1f MB/s\n", qw, b / 1e6 / qw, qc, b / 1e6 / qc
  if (pw > 0) {
    printf "pgbadger:     median wall %.2f s = %.1f MB/s, CPU %.2f s = %.1f MB/s\n", pw, b / 1e6 / pw, pc, b / 1e6 / pc
    printf "ratio (pgbadger / qprof): wall %.1fx, CPU %.1fx\n", pw / qw, pc / qc } }'

if [ "$big_mb" -gt 0 ]; then
  rm -f "$tmp/bench.log"
  make_log "$tmp/big.log" "$big_mb"
  rm -f "$tmp/s.db"*
  echo "big log: $(stat -c %s "$tmp/big.log") bytes"
  timed "$qprof" ingest --no-progress --store "$tmp/s.db" "$tmp/big.log" |
    awk -v b="$(stat -c %s "$tmp/big.log")" '{printf "qprof ingest: wall %s s, CPU %s s (%.1f MB/s), max RSS %.1f MB\n", $1, $2, b / 1e6 / $1, $3 / 1024}'
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
