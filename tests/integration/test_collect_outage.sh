#!/bin/bash
# The collector and a PostgreSQL store that goes away, on a PRIVATE cluster
# of this test (the shared fixture is never stopped; port QP_PG_PORT + 1,
# 54330 without it):
# 1. `qprof run --flush-ms 200` around a python3 sqlite3 program that runs
#    `SELECT ? AS tick` for QP_OUTAGE_RUN_S seconds (default 20) and notes its
#    progress (wall time, statements done) every 50 ms; the server is stopped
#    3 s in for 10 s, then started again. The program is never blocked: no
#    gap of 2 s or more between its notes, and during the outage it ran at
#    least a quarter of the statements its rate before the outage would give
#    (a program that waited for the store would run none). Afterwards the
#    store holds exactly the statements the program ran, and qprof run said
#    that the store failed and then that it is written again.
# 2. The store down when the command ends: qprof run exits with the
#    command's status in under 3 s, command included (a run that waited for
#    the store, or for one connect timeout of 5 s, takes longer; the command
#    itself, a python3 start and 100 statements, takes about 0.1 s, and 3 s
#    leaves room for a loaded 2-core CI machine), keeps the data in its run
#    directory, and `qprof collect --once` writes it exactly once the server
#    is back.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
SCRIPT=$QP_TEST_SOURCE_DIR/tests/support/pgcluster.sh
PORT=$((${QP_PG_PORT:-54329} + 1))
RUN_S=${QP_OUTAGE_RUN_S:-20}
ENVF=$T/pg.env
outage_cleanup() {
  set +e
  [ -n "${RUNPID:-}" ] && kill "$RUNPID" 2>/dev/null
  [ -f "$ENVF" ] && sh "$SCRIPT" stop "$ENVF" >/dev/null 2>&1
  cleanup
}
trap outage_cleanup EXIT
now() { date +%s.%N; }

QP_PG_PORT=$PORT sh "$SCRIPT" start "$ENVF" >/dev/null
# shellcheck disable=SC1090
. "$ENVF"
psql -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U postgres -d postgres -c "CREATE DATABASE outage"
STORE="host=$PGHOST port=$PGPORT user=postgres dbname=outage"
q() { psql -X -At -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U postgres -d outage -c "$1"; }

cat >"$T/ticks.py" <<'PY'
"""Runs SELECT ? AS tick until argv[3] seconds have passed; every 50 ms notes
'WALLTIME COUNT' in argv[2]; prints the count at the end."""
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.isolation_level = None
prog = open(sys.argv[2], "w", buffering=1)
end = time.monotonic() + float(sys.argv[3])
n, last = 0, 0.0
while time.monotonic() < end:
    db.execute("SELECT ? AS tick", (n,)).fetchall()
    n += 1
    t = time.monotonic()
    if t - last >= 0.05:
        prog.write("%.3f %d\n" % (time.time(), n))
        last = t
    time.sleep(0.001)
prog.write("%.3f %d\n" % (time.time(), n))
print(n)
PY

# ---- 1. the server stopped for 10 s while the program runs ---------------------
"$QPROF" run --flush-ms 200 --store "$STORE" -- python3 "$T/ticks.py" "$T/ticks.db" "$T/progress" "$RUN_S" \
  >"$T/ran" 2>"$T/run.err" &
RUNPID=$!
sleep 3
sh "$SCRIPT" serverstop "$ENVF"
down=$(now)
sleep 10
up=$(now)
sh "$SCRIPT" serverstart "$ENVF"
set +e
wait "$RUNPID"
rc=$?
set -e
RUNPID=""
sed 's/^/  | /' "$T/run.err"
[ "$rc" = 0 ] || fail "qprof run exited $rc"
ran=$(cat "$T/ran")
if [ -z "$ran" ] || [ "$ran" -le 0 ]; then fail "the program said it ran '$ran' statements"; fi

# The program's progress: never blocked, and running all through the outage.
python3 - "$T/progress" "$down" "$up" <<'PY' || fail "the program was held up while the store was down"
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
down, up = float(sys.argv[2]), float(sys.argv[3])
gap = max(b[0] - a[0] for a, b in zip(rows, rows[1:]))
def done_at(t):  # statements done by wall time t (the last note before it)
    return max([n for w, n in rows if w <= t] or [0])
start = rows[0][0]
rate = done_at(down) / (down - start)  # statements a second before the outage
during = done_at(up) - done_at(down)
print("  program: %d notes, longest gap %.3f s; %.0f statements/s before the outage, "
      "%d during its %.1f s (%.0f/s)" % (len(rows), gap, rate, during, up - down, during / (up - down)))
sys.exit(0 if gap < 2.0 and during >= 0.25 * rate * (up - down) else 1)
PY
got=$(q "SELECT coalesce(sum(calls), 0) FROM qprof.qp_summary WHERE query = 'select ? as tick'")
if [ "$got" != "$ran" ]; then
  q "SELECT calls, database, query FROM qprof.qp_summary" >&2
  fail "the program ran $ran statements, the store has $got"
fi
grep -Eq "^qprof run: (writing the store|cannot write the profile): " "$T/run.err" || fail "qprof run did not say that the store failed"
grep -q "the store is written again" "$T/run.err" || fail "qprof run did not say that the store works again"
echo "ok: store stopped for 10 s mid-run: the program ran $ran statements, the store has exactly $got"

# ---- 2. the store down when the command ends -----------------------------------
cat >"$T/short.py" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.isolation_level = None
for i in range(100):
    db.execute("SELECT ? AS short_q", (i,)).fetchall()
sys.exit(7)
PY
sh "$SCRIPT" serverstop "$ENVF"
set +e
t0=$(date +%s%N)
"$QPROF" run --store "$STORE" -- python3 "$T/short.py" "$T/short.db" 2>"$T/down.err"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
set -e
sed 's/^/  | /' "$T/down.err"
[ "$rc" = 7 ] || fail "qprof run with the store down exited $rc, not the command's 7"
[ "$ms" -lt 3000 ] || fail "qprof run with the store down took $ms ms (bound 3000 ms)"
dir=$(sed -n "s/^qprof run: \(.*\) is left behind.*/\1/p" "$T/down.err")
[ -d "$dir" ] || fail "no run directory left: $(cat "$T/down.err")"
echo "ok: store down at the end: qprof run exited 7 after $ms ms (< 3000, the command included), left $dir"
sh "$SCRIPT" serverstart "$ENVF"
"$QPROF" collect --run-dir "$dir" --store "$STORE" --once
got=$(q "SELECT coalesce(sum(calls), 0) FROM qprof.qp_summary WHERE query = 'select ? as short_q'")
[ "$got" = 100 ] || fail "after qprof collect: $got of the 100 statements run while the store was down"
echo "ok: qprof collect --once wrote the 100 statements kept while the store was down"
