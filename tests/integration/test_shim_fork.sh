#!/bin/bash
# Processes the shim must count exactly although they never run an exit
# handler: python multiprocessing (fork and spawn; Process and Pool, whose
# workers are killed with SIGTERM), and an os.fork() child that ends with
# os._exit(0).
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"

for method in fork spawn; do
  S=$T/mp_$method.qp
  out=$(shim_env "$S" /usr/bin/python3 "$DATA/py_mp.py" "$method")
  [ "$out" = "processes [0, 0, 0, 0, 0, 0, 0, 0] pool tasks 4000" ] || fail "multiprocessing $method: $out"
  expect_calls "$S" "select ? as mp_process" 8000 "multiprocessing $method, Process"
  expect_calls "$S" "insert into t(v) values (?)" 4000 "multiprocessing $method, Pool"
  # (how many pool workers got to run their initializer before the pool was
  # terminated depends on the scheduler; each that did counts once)
  n=$(calls "$S" "create table t(v)")
  [ "$n" -ge 1 ] && [ "$n" -le 8 ] || fail "multiprocessing $method: $n pool initializers"
done

# Many short-lived spawned processes, each publishing new segment entries
# while a harvest every 10 ms may be reading its segment: a segment a
# well-behaved shim is growing is never refused, and every statement counts.
for round in 1 2; do
  S=$T/stress_$round.qp
  "$QPROF" run --flush-ms 10 --store "$S" -- /usr/bin/python3 "$DATA/py_mp_stress.py" spawn 32 400 \
    >out.stress 2>err.stress || fail "stress $round: status $?: $(cat err.stress)"
  [ "$(cat out.stress)" = "done [0, 0, 0, 0, 0, 0, 0, 0]" ] || fail "stress $round: $(cat out.stress)"
  [ ! -s err.stress ] || fail "stress $round: qprof run said: $(cat err.stress)"
  n=$(sqlite3 "$S" "SELECT coalesce(sum(calls), 0) FROM qp_summary WHERE query LIKE 'select ? as s\_%' ESCAPE '\'")
  [ "$n" = 12800 ] || fail "stress $round: $n of 12800 statements in the store"
  echo "ok: stress $round: 32 spawned processes, 12800 distinct-statement calls, nothing refused"
done

rm -f fork.db
out=$(shim_env "$T/fx.qp" /usr/bin/python3 "$DATA/py_fork_exit.py" fork.db)
[ "$out" = "child status 0" ] || fail "os._exit child: $out"
expect_calls "$T/fx.qp" "select ? as parent" 5 "os.fork, parent"
expect_calls "$T/fx.qp" "select ? as child" 5 "os.fork + os._exit(0), child"

# qprof run leaves nothing behind: its run directory is removed when all is written.
export TMPDIR=$T/tmp
mkdir -p "$TMPDIR"
shim_env "$T/mp_left.qp" /usr/bin/python3 "$DATA/py_mp.py" spawn >/dev/null 2>err.left
[ ! -s err.left ] || fail "multiprocessing spawn: qprof run said: $(cat err.left)"
[ -z "$(ls -A "$TMPDIR")" ] || fail "run directory left: $(ls -la "$TMPDIR"/*)"
echo "PASS"
