#!/bin/bash
# The shim under real libpq clients: pgbench (simple, extended, prepared,
# pipeline), psql -c and -f (COPY, errors, multi-statement strings) and
# psycopg2 (libpq loaded with dlopen). Counts exact, output byte-identical.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"
pg_setup shim_pg
pgbench -i -q -s 1 "$DB" >/dev/null 2>&1 || fail "pgbench -i"

# ---- pgbench: every statement of the built-in TPC-B script, per mode -------
tpcb=("begin" "end"
  "update pgbench_accounts set abalance = abalance + ? where aid = ?"
  "select abalance from pgbench_accounts where aid = ?"
  "update pgbench_tellers set tbalance = tbalance + ? where tid = ?"
  "update pgbench_branches set bbalance = bbalance + ? where bid = ?"
  "insert into pgbench_history(tid, bid, aid, delta, mtime) values (?, ?, ?, ?, current_timestamp)")
for mode in simple extended prepared; do
  S=$T/pgbench_$mode.qp
  out=$(shim_env "$S" pgbench -n -M "$mode" -c 4 -j 2 -t 25 "$DB" 2>&1) || fail "pgbench -M $mode: $out"
  ran=$(printf '%s\n' "$out" | sed -n 's/^number of transactions actually processed: \([0-9]*\)\/.*/\1/p')
  [ "$ran" = 100 ] || fail "pgbench -M $mode ran '$ran' transactions: $out"
  for q in "${tpcb[@]}"; do expect_calls "$S" "$q" "$ran" "pgbench -M $mode"; done
  errs=$(sqlite3 "$S" "SELECT sum(errors) FROM qp_summary")
  [ "$errs" = 0 ] || fail "pgbench -M $mode: $errs errors recorded"
done
q="SELECT rows FROM qp_summary WHERE query = 'select abalance from pgbench_accounts where aid = ?'"
[ "$(sqlite3 "$T/pgbench_prepared.qp" "$q")" = 100 ] || fail "pgbench: rows of the SELECT"
db=$(sqlite3 "$T/pgbench_simple.qp" "SELECT DISTINCT database FROM qp_summary")
[ "$db" = "$DB" ] || fail "pgbench: database recorded as '$db'"

# Pipeline mode: results are matched to queries through the FIFO; with
# --pipeline-flush too (a flush request after each send, PQsendPrepare's
# under -M prepared included).
for mode in extended prepared; do
  for flush in "" --pipeline-flush; do
    S=$T/pipeline_$mode$flush.qp
    "$QPROF" run $flush --store "$S" -- pgbench -n -M "$mode" -c 2 -j 2 -t 20 -f "$DATA/pipeline.pgbench" "$DB" >/dev/null 2>&1 ||
      fail "pgbench pipeline -M $mode $flush"
    expect_calls "$S" "select abalance from pgbench_accounts where aid = ?" 40 "pipeline -M $mode $flush"
    expect_calls "$S" "select ? as piped" 40 "pipeline -M $mode $flush"
    expect_calls "$S" "select ? as piped_too" 40 "pipeline -M $mode $flush"
    [ "$(total_calls "$S")" = 120 ] || fail "pipeline -M $mode $flush: $(total_calls "$S") calls, not 120"
  done
done

# ---- psql -f: output identical, every statement once, COPY, an error -------
createdb "${DB}_a"
createdb "${DB}_b"
set +e
psql -X -d "${DB}_a" -f "$DATA/psql_workload.sql" >psql.plain 2>psql.plain.err
rc_plain=$?
shim_env "$T/psql.qp" psql -X -d "${DB}_b" -f "$DATA/psql_workload.sql" >psql.shim 2>psql.shim.err
rc_shim=$?
set -e
dropdb "${DB}_a"
dropdb "${DB}_b"
cmp psql.plain psql.shim || fail "psql -f: stdout differs under the shim"
sed "s/${DB}_a/X/g" psql.plain.err >e1
sed "s/${DB}_b/X/g" psql.shim.err >e2
cmp e1 e2 || fail "psql -f: stderr differs under the shim"
[ "$rc_plain" = "$rc_shim" ] || fail "psql -f: exit $rc_plain vs $rc_shim"
S=$T/psql.qp
expect_calls "$S" "insert into item(id, name, qty) values (?, ?, ?)" 4 "psql -f"
expect_calls "$S" "select name, qty from item where id = ?" 2 "psql -f"
expect_calls "$S" "copy item(id, name, qty) from stdin" 1 "psql -f"
expect_calls "$S" "update item set qty = qty + ? where id > ?" 1 "psql -f"
expect_calls "$S" "delete from item where id >= ?" 1 "psql -f"
expect_calls "$S" "begin" 1 "psql -f"
expect_calls "$S" "rollback" 1 "psql -f"
expect_calls "$S" "select id, name from item order by id" 1 "psql -f"
[ "$(total_calls "$S")" = 14 ] || fail "psql -f: 14 statements ran, the store has $(total_calls "$S")"
r=$(sqlite3 "$S" "SELECT rows FROM qp_summary WHERE query = 'copy item(id, name, qty) from stdin'")
[ "$r" = 3 ] || fail "psql -f: COPY rows $r"
e=$(sqlite3 "$S" "SELECT DISTINCT error_codes FROM qp_stats WHERE errors > 0")
[ "$e" = "23505:1" ] || fail "psql -f: error codes '$e'"

# ---- psql -c, with a multi-statement string --------------------------------
psql -X -d "$DB" -c "SELECT 1 AS one; SELECT 2 AS two" -c "SELECT 3 AS three" >c.plain 2>&1
shim_env "$T/psqlc.qp" psql -X -d "$DB" -c "SELECT 1 AS one; SELECT 2 AS two" -c "SELECT 3 AS three" >c.shim 2>&1
cmp c.plain c.shim || fail "psql -c: output differs under the shim"
for q in "select ? as one" "select ? as two" "select ? as three"; do
  expect_calls "$T/psqlc.qp" "$q" 1 "psql -c"
done

# ---- psycopg2 (Debian's python3-psycopg2) ----------------------------------
if /usr/bin/python3 -c 'import psycopg2' 2>/dev/null; then
  createdb "${DB}_py"
  /usr/bin/python3 "$DATA/py_psycopg2.py" "dbname=${DB}_py" >py.plain
  dropdb "${DB}_py"
  createdb "${DB}_py"
  shim_env "$T/pyc.qp" /usr/bin/python3 "$DATA/py_psycopg2.py" "dbname=${DB}_py" >py.shim
  dropdb "${DB}_py"
  cmp py.plain py.shim || fail "psycopg2: output differs under the shim"
  S=$T/pyc.qp
  expect_calls "$S" "insert into pyitem(id, v) values (?, ?)" 20 "psycopg2"
  expect_calls "$S" "select v from pyitem where id = ?" 10 "psycopg2"
  expect_calls "$S" "select count(*) from pyitem" 1 "psycopg2"
  expect_calls "$S" "select * from no_such_table" 1 "psycopg2"
  e=$(sqlite3 "$S" "SELECT DISTINCT error_codes FROM qp_stats WHERE errors > 0")
  [ "$e" = "42P01:1" ] || fail "psycopg2: error codes '$e'"
  r=$(sqlite3 "$S" "SELECT sum(rows) FROM qp_summary WHERE query LIKE 'copy %'")
  [ "$r" = 3 ] || fail "psycopg2: COPY rows '$r'"
else
  fail "/usr/bin/python3 has no psycopg2 (apt-get install python3-psycopg2)"
fi
# ---- the time rule for several statements in flight (docs/shim.md) -----------------
# Statement k is charged from the moment PQgetResult handed over statement
# k-1's results (the send, for the first) to the moment it hands over its own.
# PostgreSQL keeps a simple query's results until its end and a pipeline's
# until the sync, so all three statements' results arrive together, after the
# sleep, wherever pg_sleep is: the first statement is charged the sleep (with
# pg_sleep first, pg_sleep; in the middle or last, the statement before it),
# the two others only what the client took between taking one result and the
# next (well under 1 ms), and the three add up to the client's own time of the
# query (psql's \timing; pgbench's per-transaction latency, -l) within TOL_MS.
TOL_MS=20
ms_of() { sqlite3 "$1" "SELECT coalesce(sum(total_ms), 0) FROM qp_summary WHERE query = '$2'"; }
check_rule() { # WHAT STORE SLEEP_MS WALL_MS CHARGED OTHER OTHER (normalized texts)
  local what=$1 S=$2 sleep_ms=$3 wall=$4 first=$5 t sum
  shift 5
  [ "$(total_calls "$S")" = "$(sqlite3 "$S" "SELECT sum(calls) FROM qp_summary WHERE query IN ('$first', '$1', '$2')")" ] ||
    fail "$what: statements other than the three recorded"
  sum=$(sqlite3 "$S" "SELECT sum(total_ms) FROM qp_summary")
  echo "$what: $first $(ms_of "$S" "$first") ms, $1 $(ms_of "$S" "$1") ms, $2 $(ms_of "$S" "$2") ms; sum $sum ms, the client's time $wall ms"
  awk -v t="$(ms_of "$S" "$first")" -v s="$sleep_ms" -v lo="${SLEEP_SLACK_MS:-0}" 'BEGIN {exit !(t >= s - lo)}' ||
    fail "$what: $first is charged $(ms_of "$S" "$first") ms, not the sleep ($sleep_ms ms, less ${SLEEP_SLACK_MS:-0} ms)"
  for t in "$1" "$2"; do
    awk -v t="$(ms_of "$S" "$t")" -v tol="$TOL_MS" 'BEGIN {exit !(t < tol)}' ||
      fail "$what: $t is charged $(ms_of "$S" "$t") ms, not less than $TOL_MS ms"
  done
  awk -v s="$sum" -v w="$wall" -v tol="$TOL_MS" 'BEGIN {d = s - w; if (d < 0) d = -d; exit !(d <= tol)}' ||
    fail "$what: the statements' times add up to $sum ms, the client's time of the query is $wall ms"
  echo "ok: $what: $first is charged the sleep, the times add up to the query's"
}
# psql -c: one simple query of three statements
for pos in first middle last; do
  case $pos in
  first) q="SELECT pg_sleep(0.3); SELECT 'a' AS t1; SELECT 'b' AS t2" first='select pg_sleep(?)' others=('select ? as t1' 'select ? as t2') ;;
  middle) q="SELECT 'a' AS t1; SELECT pg_sleep(0.3); SELECT 'b' AS t2" first='select ? as t1' others=('select pg_sleep(?)' 'select ? as t2') ;;
  last) q="SELECT 'a' AS t1; SELECT 'b' AS t2; SELECT pg_sleep(0.3)" first='select ? as t1' others=('select ? as t2' 'select pg_sleep(?)') ;;
  esac
  S=$T/time_$pos.qp
  shim_env "$S" psql -X -q -c '\timing on' -c "$q" "$DB" >time.out
  wall=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' time.out)
  [ -n "$wall" ] || fail "pg_sleep $pos in psql -c: no time from psql: $(cat time.out)"
  check_rule "pg_sleep $pos in psql -c" "$S" 300 "$wall" "$first" "${others[@]}"
done
# a pgbench \startpipeline script: five pipelines of three queries, one sync each
for pos in first middle last; do
  case $pos in
  first) body='SELECT pg_sleep(0.05);\nSELECT 1 AS p1;\nSELECT 2 AS p2;' first='select pg_sleep(?)' others=('select ? as p1' 'select ? as p2') ;;
  middle) body='SELECT 1 AS p1;\nSELECT pg_sleep(0.05);\nSELECT 2 AS p2;' first='select ? as p1' others=('select pg_sleep(?)' 'select ? as p2') ;;
  last) body='SELECT 1 AS p1;\nSELECT 2 AS p2;\nSELECT pg_sleep(0.05);' first='select ? as p1' others=('select ? as p2' 'select pg_sleep(?)') ;;
  esac
  printf '\\startpipeline\n%b\n\\endpipeline\n' "$body" >sleep.pgbench
  S=$T/pipe_$pos.qp
  rm -f pgbench_log.*
  shim_env "$S" pgbench -n -M extended -c 1 -t 5 -l -f sleep.pgbench "$DB" >/dev/null 2>&1 ||
    fail "pgbench sleep pipeline, pg_sleep $pos"
  # -l: one line per transaction, its latency (us) third
  wall=$(awk '{ s += $3; n++ } END { if (n == 5) printf "%.3f", s / 1000 }' pgbench_log.*)
  [ -n "$wall" ] || fail "pipeline, pg_sleep $pos: pgbench's log: $(cat pgbench_log.*)"
  for q in "$first" "${others[@]}"; do expect_calls "$S" "$q" 5 "pipeline, pg_sleep $pos"; done
  check_rule "pipeline, pg_sleep $pos" "$S" 250 "$wall" "$first" "${others[@]}"
done

# ---- QPROF_PIPELINE_FLUSH: pipelined queries charged by the server's order ----------
# With a flush request after each pipelined query the server sends each
# query's results as soon as it has them, so the client sees them at the
# server's pace: the pg_sleep query is charged at least its sleep wherever it
# is, the others less than TOL_MS, and the three still add up to pgbench's
# latencies. What pgbench prints (but its timing lines) and its status are
# the same as without the shim. In the middle or last, the sleep's time
# starts when the client took the results of the query before it, which can
# be later than when the server began to sleep by the client's wakeup delay
# (0.6 ms a pipeline seen on a loaded 2-CPU machine): it may fall short of
# the sleep by up to TOL_MS.
untimed() { grep -Ev '^(latency|initial connection time|tps) ' "$1"; }
for pos in first middle last; do
  case $pos in
  first) body='SELECT pg_sleep(0.05);\nSELECT 1 AS p1;\nSELECT 2 AS p2;' others=('select ? as p1' 'select ? as p2') ;;
  middle) body='SELECT 1 AS p1;\nSELECT pg_sleep(0.05);\nSELECT 2 AS p2;' others=('select ? as p1' 'select ? as p2') ;;
  last) body='SELECT 1 AS p1;\nSELECT 2 AS p2;\nSELECT pg_sleep(0.05);' others=('select ? as p1' 'select ? as p2') ;;
  esac
  printf '\\startpipeline\n%b\n\\endpipeline\n' "$body" >sleep.pgbench
  set +e
  pgbench -n -M extended -c 1 -t 5 -f sleep.pgbench "$DB" >flush.plain 2>&1
  rc_plain=$?
  rm -f pgbench_log.*
  S=$T/flush_$pos.qp
  QPROF_PIPELINE_FLUSH=1 shim_env "$S" pgbench -n -M extended -c 1 -t 5 -l -f sleep.pgbench "$DB" >flush.shim 2>&1
  rc_shim=$?
  set -e
  [ "$rc_plain" = 0 ] && [ "$rc_shim" = 0 ] || fail "pipeline flush, pg_sleep $pos: pgbench exited $rc_plain, $rc_shim under the shim: $(cat flush.shim)"
  untimed flush.plain >u1
  untimed flush.shim >u2
  cmp u1 u2 || fail "pipeline flush, pg_sleep $pos: pgbench's output differs under the shim: $(diff u1 u2)"
  wall=$(awk '{ s += $3; n++ } END { if (n == 5) printf "%.3f", s / 1000 }' pgbench_log.*)
  [ -n "$wall" ] || fail "pipeline flush, pg_sleep $pos: pgbench's log: $(cat pgbench_log.*)"
  for q in 'select pg_sleep(?)' "${others[@]}"; do expect_calls "$S" "$q" 5 "pipeline flush, pg_sleep $pos"; done
  SLEEP_SLACK_MS=$TOL_MS check_rule "pipeline flush, pg_sleep $pos" "$S" 250 "$wall" 'select pg_sleep(?)' "${others[@]}"
done
# A simple query of several statements is not split by it: the server
# flushes only at the query's end, and the shim sends nothing else then.
S=$T/flush_psqlc.qp
QPROF_PIPELINE_FLUSH=1 shim_env "$S" psql -X -q -c '\timing on' -c "SELECT 'a' AS t1; SELECT pg_sleep(0.3); SELECT 'b' AS t2" "$DB" >time.out
wall=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' time.out)
[ -n "$wall" ] || fail "pipeline flush, psql -c: no time from psql: $(cat time.out)"
check_rule "pipeline flush, pg_sleep middle in psql -c" "$S" 300 "$wall" 'select ? as t1' 'select pg_sleep(?)' 'select ? as t2'
# A bad value disables the shim (said in its log), never the program: the
# same output and status, nothing recorded; qprof run refuses it before the
# command starts.
set +e
pgbench -n -M extended -c 1 -t 5 -f "$DATA/pipeline.pgbench" "$DB" >bad.plain 2>&1
rc_plain=$?
QPROF_PIPELINE_FLUSH=maybe QPROF_LOG=$T/bad.log preload_env "$T/bad_run" \
  pgbench -n -M extended -c 1 -t 5 -f "$DATA/pipeline.pgbench" "$DB" >bad.shim 2>&1
rc_shim=$?
QPROF_PIPELINE_FLUSH=maybe "$QPROF" run --store "$T/bad.qp" -- sh -c 'echo ran' >bad.run 2>bad.run.err
rc_run=$?
set -e
[ "$rc_plain" = 0 ] && [ "$rc_shim" = "$rc_plain" ] || fail "QPROF_PIPELINE_FLUSH=maybe: pgbench exited $rc_shim, $rc_plain without the shim"
untimed bad.plain >u1
untimed bad.shim >u2
cmp u1 u2 || fail "QPROF_PIPELINE_FLUSH=maybe: pgbench's output differs: $(diff u1 u2)"
[ -z "$(ls -A "$T/bad_run")" ] || fail "QPROF_PIPELINE_FLUSH=maybe: the shim recorded: $(ls "$T/bad_run")"
grep -q 'disabled: QPROF_PIPELINE_FLUSH' "$T/bad.log" || fail "QPROF_PIPELINE_FLUSH=maybe: the log says '$(cat "$T/bad.log")'"
[ "$rc_run" = 2 ] && [ ! -s bad.run ] || fail "QPROF_PIPELINE_FLUSH=maybe: qprof run exited $rc_run, output '$(cat bad.run)'"
echo "ok: QPROF_PIPELINE_FLUSH=maybe: the program runs as without the shim ($(cat "$T/bad.log")); qprof run: $(head -n 1 bad.run.err)"

echo "PASS"
