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

# Pipeline mode: results are matched to queries through the FIFO.
for mode in extended prepared; do
  S=$T/pipeline_$mode.qp
  shim_env "$S" pgbench -n -M "$mode" -c 2 -j 2 -t 20 -f "$DATA/pipeline.pgbench" "$DB" >/dev/null 2>&1 ||
    fail "pgbench pipeline -M $mode"
  expect_calls "$S" "select abalance from pgbench_accounts where aid = ?" 40 "pipeline -M $mode"
  expect_calls "$S" "select ? as piped" 40 "pipeline -M $mode"
  expect_calls "$S" "select ? as piped_too" 40 "pipeline -M $mode"
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
# psql -c with pg_sleep first, in the middle and last: the statements' times add
# up to the query's (nothing lost, nothing invented); with pg_sleep first its
# results arrive first and it is charged the sleep. (Where the results arrive
# together, the client cannot tell which statement slept.)
ms_of() { sqlite3 "$1" "SELECT coalesce(sum(total_ms), 0) FROM qp_summary WHERE query = '$2'"; }
for pos in first middle last; do
  case $pos in
  first) q="SELECT pg_sleep(0.3); SELECT 'a' AS t1; SELECT 'b' AS t2" ;;
  middle) q="SELECT 'a' AS t1; SELECT pg_sleep(0.3); SELECT 'b' AS t2" ;;
  last) q="SELECT 'a' AS t1; SELECT 'b' AS t2; SELECT pg_sleep(0.3)" ;;
  esac
  S=$T/time_$pos.qp
  t0=$(date +%s%3N)
  shim_env "$S" psql -X -q -c "$q" "$DB" >/dev/null
  t1=$(date +%s%3N)
  sum=$(sqlite3 "$S" "SELECT sum(total_ms) FROM qp_summary")
  awk -v s="$sum" -v w=$((t1 - t0)) 'BEGIN {exit !(s >= 299 && s <= w)}' ||
    fail "pg_sleep $pos: the statements' times add up to $sum ms (query wall $((t1 - t0)) ms)"
  [ "$(sqlite3 "$S" "SELECT sum(calls) FROM qp_summary")" = 3 ] || fail "pg_sleep $pos: not 3 statements"
  echo "ok: pg_sleep $pos in psql -c: sleep $(ms_of "$S" 'select pg_sleep(?)') ms, others $(ms_of "$S" 'select ? as t1') + $(ms_of "$S" 'select ? as t2') ms"
done
awk -v s="$(ms_of "$T/time_first.qp" 'select pg_sleep(?)')" 'BEGIN {exit !(s >= 299)}' ||
  fail "pg_sleep first: charged $(ms_of "$T/time_first.qp" 'select pg_sleep(?)') ms"
# a pgbench pipeline: the same rule
printf '\\startpipeline\nSELECT pg_sleep(0.05);\nSELECT 1 AS after_sleep;\n\\endpipeline\n' >sleep.pgbench
shim_env "$T/pipe_time.qp" pgbench -n -M extended -c 1 -t 5 -f sleep.pgbench "$DB" >/dev/null 2>&1 ||
  fail "pgbench sleep pipeline"
s=$(ms_of "$T/pipe_time.qp" 'select pg_sleep(?)')
awk -v s="$s" 'BEGIN {exit !(s >= 249)}' || fail "pipeline, pg_sleep first: charged $s ms for 5 x 50 ms"
echo "ok: pgbench pipeline, pg_sleep first: $s ms for 5 x 50 ms"

echo "PASS"
