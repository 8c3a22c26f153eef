#!/bin/bash
# qprof ingest on logs a real PostgreSQL 15 wrote: psql, pgbench in simple,
# extended and prepared mode, and errors, with log_min_duration_statement = 0
# into stderr, csvlog and jsonlog at once; then log_statement = all with
# log_duration. Checks: the calls per statement are what the clients ran; the
# three formats give identical profiles; the fingerprints and calls equal
# those the shim records for the same pgbench run; reading again adds
# nothing (also from a gzip copy); a file that is no log exits 1 naming it.
# A private cluster (its own directory and port, stopped by its PID): the
# logging settings must not touch the shared fixture.
set -euo pipefail
QPROF=${QPROF_BIN:?QPROF_BIN is not set}
SRC=${QP_TEST_SOURCE_DIR:?}
SHIM=${QP_TEST_SHIM:-}
T=$(mktemp -d /tmp/qprof-ingesttest.XXXXXX)
ENVF=$T/pg.env
cleanup() {
  sh "$SRC/tests/support/pgcluster.sh" stop "$ENVF" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
unset LD_PRELOAD QPROF_RUN_DIR QPROF_STORE QPROF_IGNORE QPROF_RULES QPROF_SAMPLE QPROF_REDACT || true
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

QP_PG_PORT=${QP_INGEST_PG_PORT:-54377} sh "$SRC/tests/support/pgcluster.sh" start "$ENVF" >/dev/null
. "$ENVF"
export PGHOST PGPORT PGUSER PGDATABASE
LOGDIR=$QP_PG_DIR/log
sh "$SRC/tests/support/pgcluster.sh" serverstop "$ENVF"
sh "$SRC/tests/support/pgcluster.sh" serverstart "$ENVF" "-c log_min_duration_statement=0 \
  -c log_line_prefix='%m [%p] %q%u@%d %a %h %e ' -c logging_collector=on \
  -c log_destination=stderr,csvlog,jsonlog -c log_directory=$LOGDIR -c log_filename=pg.log \
  -c log_rotation_size=0 -c log_rotation_age=0 -c session_preload_libraries=auto_explain \
  -c auto_explain.log_min_duration=0 -c auto_explain.log_analyze=on"
. "$ENVF"

createdb shop
createdb shimdb
pgbench -i -s 1 -q shop >/dev/null 2>&1 || fail "pgbench -i"
pgbench -i -s 1 -q shimdb >/dev/null 2>&1 || fail "pgbench -i (shimdb)"
cat >"$T/bench.sql" <<'EOF'
\set aid random(1, 100000)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = :aid % 10 + 1;
EOF
for mode in simple extended prepared; do
  pgbench -n -M $mode -c 2 -t 25 -f "$T/bench.sql" shop >"$T/pgbench.$mode" 2>&1 ||
    fail "pgbench -M $mode: $(cat "$T/pgbench.$mode")"
done
# psql: a multi-line statement, errors with their SQLSTATE
cat >"$T/script.sql" <<'EOF'
CREATE TABLE notes (id int, body text);
INSERT INTO notes VALUES (1, 'first
line two');
SELECT * FROM no_such_table;
SELECT 1 / 0;
SELECT 1 / 0;
SELECT count(*) FROM notes;
SELECT count(*) FROM notes;
SELECT count(*) FROM notes;
EOF
psql -X -q -d shop -f "$T/script.sql" >/dev/null 2>&1 || true
# who ran it: an application name of its own, and a second role
psql -X -q -d shop -c "CREATE ROLE qp_ingest_bob LOGIN" >/dev/null || fail "create role"
PGAPPNAME=myapp psql -X -q -d shop -c "SELECT 42 AS tagged" -c "SELECT 43 AS tagged" >/dev/null || fail "psql myapp"
psql -X -q -U qp_ingest_bob -d shop -c "SELECT 44 AS tagged" >/dev/null || fail "psql as qp_ingest_bob"
# auto_explain's plans in its JSON format too (the text format is the server's default above):
# a plan is not a call (the statement is logged on its own line)
PGOPTIONS='-c auto_explain.log_format=json' psql -X -q -d shop -c "SELECT count(*) FROM notes" >/dev/null ||
  fail "psql with JSON plans"
# the same pgbench run under the shim, in a database of its own
if [ -n "$SHIM" ] && [ -f "$SHIM" ]; then
  "$QPROF" run --store "$T/shim.db" -- pgbench -n -M extended -c 2 -t 25 -f "$T/bench.sql" shimdb \
    >"$T/pgbench.shim" 2>&1 || fail "pgbench under the shim: $(cat "$T/pgbench.shim")"
fi
sh "$SRC/tests/support/pgcluster.sh" serverstop "$ENVF" # every line written
for f in pg.log pg.csv pg.json; do [ -s "$LOGDIR/$f" ] || fail "no $f written"; done
cp "$LOGDIR"/pg.* "$T/"

for f in log csv json; do
  "$QPROF" ingest --store "$T/$f.db" "$T/pg.$f" >"$T/ingest.$f" 2>&1 || fail "ingest pg.$f: $(cat "$T/ingest.$f")"
done
cat "$T/ingest.log"
# every statement above was also explained by auto_explain: each plan is recognized as one
plans=$(sed -n 's/^ *\([0-9]*\) auto_explain plans: \([0-9]*\) of statements logged.* 0 recorded as calls$/\1 \2/p' "$T/ingest.log")
nplan=$(grep -c 'plan:$' "$T/pg.log" || true)
njson=$(grep -c '"Query Text": "SELECT count(\*) FROM notes"' "$T/pg.log" || true)
[ "$njson" -ge 1 ] || fail "no JSON plan was logged"
[ -n "$plans" ] && [ "${plans% *}" -ge 300 ] && [ "$plans" = "$nplan $nplan" ] ||
  fail "auto_explain: the summary says '$plans' plans, the log has $nplan: $(cat "$T/ingest.log")"
echo "ok: ${plans% *} auto_explain plans (text and JSON) recognized, each the detail of its logged statement"
grep -q "stderr format with prefix '%m \[%p\] %q%u@%d %a %h %e '" "$T/ingest.log" ||
  fail "the prefix was not recognized: $(cat "$T/ingest.log")"
grep -q "csvlog format" "$T/ingest.csv" || fail "csvlog not recognized: $(cat "$T/ingest.csv")"
grep -q "jsonlog format" "$T/ingest.json" || fail "jsonlog not recognized: $(cat "$T/ingest.json")"

fp() { printf '%s\n' "$1" | "$QPROF" normalize | cut -f1; }
# calls STORE DB SQL: calls of the statement's fingerprint in database DB
calls() {
  local f
  f=$(fp "$3")
  sqlite3 "$1" "SELECT coalesce(sum(calls), 0) FROM qp_summary WHERE fingerprint = '$f' AND database = '$2'"
}
expect() { # STORE DB SQL N
  local got
  got=$(calls "$1" "$2" "$3")
  [ "$got" = "$4" ] || {
    sqlite3 "$1" "SELECT calls, errors, database, query FROM qp_summary ORDER BY calls DESC" >&2
    fail "$1: '$3' in $2: $got calls, the clients ran $4"
  }
  echo "ok: $4 x $3"
}
S=$T/log.db
# 3 modes x 2 clients x 25 transactions; the literal and the $1 forms are one query
expect "$S" shop "SELECT abalance FROM pgbench_accounts WHERE aid = 1" 150
expect "$S" shop "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1 % 10 + 1" 150
expect "$S" shop "SELECT count(*) FROM notes" 4
expect "$S" shop "INSERT INTO notes VALUES (1, 'first
line two')" 1
e=$(sqlite3 "$S" "SELECT s.error_codes FROM qp_stats s JOIN qp_query q USING (fingerprint) WHERE s.level = 3 AND q.query = 'select ? / ?'")
[ "$e" = "22012:2" ] || fail "SELECT 1/0: error codes '$e', expected 22012:2"
e=$(sqlite3 "$S" "SELECT group_concat(error_codes) FROM qp_stats WHERE level = 3 AND error_codes LIKE '%42P01%'")
[ "$e" = "42P01:1" ] || fail "no_such_table: error codes '$e', expected 42P01:1"

# the three formats: identical profiles (every number of every query)
for f in log csv json; do
  sqlite3 "$T/$f.db" "SELECT s.level, s.bucket, printf('%016x', s.fingerprint), s.database, s.user_name, s.application, s.host, s.calls, s.errors, s.error_codes, s.total_ns, s.min_ns, s.max_ns, s.first_seen_ns, s.last_seen_ns, hex(s.hist), q.query FROM qp_stats s JOIN qp_query q USING (fingerprint) ORDER BY 1, 2, 3, 4, 5, 6, 7" >"$T/dump.$f"
done
[ -s "$T/dump.log" ] || fail "empty profile"
cmp "$T/dump.log" "$T/dump.csv" || fail "stderr and csvlog give different profiles: $(diff "$T/dump.log" "$T/dump.csv" | head -5)"
cmp "$T/dump.log" "$T/dump.json" || fail "stderr and jsonlog give different profiles: $(diff "$T/dump.log" "$T/dump.json" | head -5)"
echo "ok: stderr, csvlog and jsonlog give identical profiles ($(wc -l <"$T/dump.log") rows)"
for f in log csv json; do
  got=$(sqlite3 "$T/$f.db" "SELECT user_name, application, host, sum(calls) FROM qp_summary WHERE query = 'select ? as tagged' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
  want=$(printf '%s\n' "qp_ingest_bob|psql|[local]|1" "$PGUSER|myapp|[local]|2" | LC_ALL=C sort)
  [ "$got" = "$want" ] || fail "pg.$f: user/application/host: got '$got', want '$want'"
  got=$(sqlite3 "$T/$f.db" "SELECT DISTINCT application FROM qp_summary WHERE query LIKE 'select abalance from pgbench_accounts%' AND database = 'shop'")
  [ "$got" = pgbench ] || fail "pg.$f: pgbench's application recorded as '$got'"
done
echo "ok: user, application and client host per log format"

# the shim's fingerprints and calls for the same statements
if [ -f "$T/shim.db" ]; then
  sqlite3 "$T/shim.db" "SELECT fingerprint, calls FROM qp_summary WHERE database = 'shimdb' AND query NOT LIKE 'select%pg_catalog%' ORDER BY 1" >"$T/shim.calls"
  [ -s "$T/shim.calls" ] || fail "the shim recorded nothing"
  : >"$T/ing.calls"
  while IFS='|' read -r f c; do
    sqlite3 "$S" "SELECT fingerprint, calls FROM qp_summary WHERE database = 'shimdb' AND fingerprint = '$f'" >>"$T/ing.calls"
  done <"$T/shim.calls"
  cmp "$T/shim.calls" "$T/ing.calls" || fail "fingerprints or calls differ from the shim's: $(diff "$T/shim.calls" "$T/ing.calls" | head)"
  echo "ok: the shim's $(wc -l <"$T/shim.calls") queries have the same fingerprints and calls in the log"
fi

# the same log into a PostgreSQL store (a database of this cluster): the same profile, every
# query's numbers as the SQLite store has them, and a second read adds nothing there either
sh "$SRC/tests/support/pgcluster.sh" serverstart "$ENVF"
. "$ENVF"
createdb qpstore
PS="postgresql:///qpstore?host=$PGHOST&port=$PGPORT&user=$PGUSER"
"$QPROF" ingest --store "$PS" "$T/pg.log" >"$T/ingest.pgstore" 2>&1 || fail "ingest into a PostgreSQL store: $(cat "$T/ingest.pgstore")"
"$QPROF" report --store "$S" --format csv --limit 0 --by database,user,application,host >"$T/rep.sqlite" || fail "report (SQLite store)"
"$QPROF" report --store "$PS" --format csv --limit 0 --by database,user,application,host >"$T/rep.pg" || fail "report (PostgreSQL store)"
[ "$(wc -l <"$T/rep.sqlite")" -gt 10 ] || fail "a short report: $(cat "$T/rep.sqlite")"
cmp "$T/rep.sqlite" "$T/rep.pg" || fail "the PostgreSQL store's report differs: $(diff "$T/rep.sqlite" "$T/rep.pg" | head -6)"
"$QPROF" ingest --store "$PS" "$T/pg.log" >"$T/again.pgstore" 2>&1 || fail "ingest again (PostgreSQL store): $(cat "$T/again.pgstore")"
grep -q unchanged "$T/again.pgstore" || fail "second read into the PostgreSQL store: $(cat "$T/again.pgstore")"
"$QPROF" report --store "$PS" --format csv --limit 0 --by database,user,application,host >"$T/rep.pg2" || fail "report again"
cmp "$T/rep.pg" "$T/rep.pg2" || fail "a second read changed the PostgreSQL store"
echo "ok: a PostgreSQL store gets the same profile ($(($(wc -l <"$T/rep.pg") - 1)) rows), and nothing twice"
sh "$SRC/tests/support/pgcluster.sh" serverstop "$ENVF"

# reading again counts nothing twice, from the file or a gzip copy of it
before=$(sqlite3 "$S" "SELECT sum(calls) FROM qp_summary")
"$QPROF" ingest --store "$S" "$T/pg.log" >"$T/again" 2>&1 || fail "ingest again: $(cat "$T/again")"
grep -q unchanged "$T/again" || fail "second read: $(cat "$T/again")"
gzip -c "$T/pg.log" >"$T/pg.log.1.gz"
"$QPROF" ingest --store "$S" "$T/pg.log.1.gz" >"$T/again.gz" 2>&1 || fail "ingest gz: $(cat "$T/again.gz")"
after=$(sqlite3 "$S" "SELECT sum(calls) FROM qp_summary")
[ "$before" = "$after" ] || fail "reading again changed the calls: $before -> $after"
# the gzip file alone, into a fresh store: the same profile
"$QPROF" ingest --store "$T/gz.db" "$T/pg.log.1.gz" >/dev/null 2>&1 || fail "ingest gz into a fresh store"
[ "$(sqlite3 "$T/gz.db" "SELECT sum(calls) FROM qp_summary")" = "$before" ] || fail "gzip read differs"
# standard input
"$QPROF" ingest --store "$T/stdin.db" - <"$T/pg.csv" >/dev/null 2>&1 || fail "ingest from stdin"
[ "$(sqlite3 "$T/stdin.db" "SELECT sum(calls) FROM qp_summary")" = "$before" ] || fail "stdin read differs"
echo "ok: reading again adds nothing ($before calls)"

# a file that is no log: exit 1, its name and first line said; nothing stored
printf 'this is not\na log\n' >"$T/notes.txt"
set +e
"$QPROF" ingest --store "$T/x.db" "$T/notes.txt" >"$T/bad.out" 2>"$T/bad.err"
rc=$?
set -e
[ $rc = 1 ] || fail "a file that is no log: exit $rc"
grep -q "notes.txt" "$T/bad.err" && grep -q "this is not" "$T/bad.err" || fail "message: $(cat "$T/bad.err")"
"$QPROF" ingest --store "$T/x.db" --prefix '%m [%p] ' "$T/notes.txt" >/dev/null 2>"$T/bad2.err" && fail "given prefix, no log: exit 0"
grep -q "line 1: 'this is not'" "$T/bad2.err" || fail "message: $(cat "$T/bad2.err")"
echo "ok: a file that is no log exits 1: $(cat "$T/bad.err")"

# log_statement = all + log_duration (no log_min_duration_statement)
sh "$SRC/tests/support/pgcluster.sh" serverstart "$ENVF" "-c log_min_duration_statement=-1 \
  -c log_statement=all -c log_duration=on -c log_line_prefix='%m [%p] %q%u@%d ' \
  -c logging_collector=on -c log_destination=stderr -c log_directory=$LOGDIR -c log_filename=stmt.log"
. "$ENVF"
for mode in simple extended prepared; do
  pgbench -n -M $mode -c 2 -t 10 -f "$T/bench.sql" shop >"$T/pgbench2.$mode" 2>&1 ||
    fail "pgbench -M $mode: $(cat "$T/pgbench2.$mode")"
done
sh "$SRC/tests/support/pgcluster.sh" serverstop "$ENVF"
cp "$LOGDIR/stmt.log" "$T/"
"$QPROF" ingest --store "$T/stmt.db" "$T/stmt.log" >"$T/ingest.stmt" 2>&1 || fail "ingest stmt.log: $(cat "$T/ingest.stmt")"
cat "$T/ingest.stmt"
expect "$T/stmt.db" shop "SELECT abalance FROM pgbench_accounts WHERE aid = 1" 60
expect "$T/stmt.db" shop "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1 % 10 + 1" 60
z=$(sqlite3 "$T/stmt.db" "SELECT count(*) FROM qp_summary WHERE database = 'shop' AND query LIKE '%pgbench%' AND total_ms = 0")
[ "$z" = 0 ] || fail "$z queries without their log_duration time"

# auto_explain alone (no log_min_duration_statement, no log_statement): the plans are the calls,
# in the text format (simple, prepared) and the JSON format (extended), with their durations
sh "$SRC/tests/support/pgcluster.sh" serverstart "$ENVF" "-c log_min_duration_statement=-1 \
  -c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0 \
  -c log_line_prefix='%m [%p] %q%u@%d ' -c logging_collector=on -c log_destination=stderr \
  -c log_directory=$LOGDIR -c log_filename=plans.log"
. "$ENVF"
for mode in simple extended prepared; do
  o=
  [ $mode = extended ] && o='-c auto_explain.log_format=json'
  PGOPTIONS=$o pgbench -n -M $mode -c 2 -t 10 -f "$T/bench.sql" shop >"$T/pgbench3.$mode" 2>&1 ||
    fail "pgbench -M $mode: $(cat "$T/pgbench3.$mode")"
done
sh "$SRC/tests/support/pgcluster.sh" serverstop "$ENVF"
cp "$LOGDIR/plans.log" "$T/"
grep -q '"Query Text": "SELECT abalance' "$T/plans.log" || fail "no JSON plans in plans.log"
"$QPROF" ingest --store "$T/plans.db" "$T/plans.log" >"$T/ingest.plans" 2>&1 || fail "ingest plans.log: $(cat "$T/ingest.plans")"
cat "$T/ingest.plans"
expect "$T/plans.db" shop "SELECT abalance FROM pgbench_accounts WHERE aid = 1" 60
expect "$T/plans.db" shop "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1 % 10 + 1" 60
z=$(sqlite3 "$T/plans.db" "SELECT count(*) FROM qp_summary WHERE database = 'shop' AND query LIKE '%pgbench_accounts%' AND total_ms = 0")
[ "$z" = 0 ] || fail "$z queries without their plans' time"
grep -q "recorded as calls" "$T/ingest.plans" || fail "the summary does not say plans were calls"
echo "PASS"
