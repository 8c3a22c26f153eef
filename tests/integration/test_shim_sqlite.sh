#!/bin/bash
# The shim under real SQLite clients: the sqlite3 CLI, python3's sqlite3
# module (Debian's and pyenv's), fork without exec, threads, a process that
# runs no query, an unwritable store, a bad setting, kill -9.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"

# ---- sqlite3 CLI on a script: output byte-identical, counts exact ----------
set +e
sqlite3 plain.db <"$DATA/workload.sql" >out.plain 2>err.plain
rc_plain=$?
shim_env "$T/cli.qp" sqlite3 shim.db <"$DATA/workload.sql" >out.shim 2>err.shim
rc_shim=$?
set -e
cmp out.plain out.shim || fail "sqlite3 CLI: stdout differs under the shim"
cmp err.plain err.shim || fail "sqlite3 CLI: stderr differs under the shim"
[ "$rc_plain" = "$rc_shim" ] || fail "sqlite3 CLI: exit $rc_plain without the shim, $rc_shim with it"
S=$T/cli.qp
expect_calls "$S" "insert into item(id, name, qty) values (?, ?, ?)" 5 "sqlite3 CLI"
expect_calls "$S" "select name, qty from item where id = ?" 3 "sqlite3 CLI"
expect_calls "$S" "update item set qty = qty + ? where id > ?" 1 "sqlite3 CLI"
expect_calls "$S" "select count(*), sum(qty) from item" 1 "sqlite3 CLI"
expect_calls "$S" "delete from item where name like ?" 1 "sqlite3 CLI"
expect_calls "$S" "select id, name from item order by id" 1 "sqlite3 CLI"
[ "$(total_calls "$S")" = 13 ] || fail "sqlite3 CLI: 13 statements ran, the store has $(total_calls "$S")"
# The duplicate INSERT failed with its extended result code; rows are counted.
q="SELECT errors, rows FROM qp_summary WHERE query = 'insert into item(id, name, qty) values (?, ?, ?)'"
[ "$(sqlite3 "$S" "$q")" = "1|4" ] || fail "sqlite3 CLI: errors|rows of the INSERT: $(sqlite3 "$S" "$q")"
codes=$(sqlite3 "$S" "SELECT DISTINCT error_codes FROM qp_stats WHERE errors > 0")
[ "$codes" = "SQLITE_CONSTRAINT_PRIMARYKEY:1" ] || fail "sqlite3 CLI: error codes '$codes'"
db=$(sqlite3 "$S" "SELECT DISTINCT database FROM qp_summary")
[ "$db" = "$T/shim.db" ] || fail "sqlite3 CLI: database recorded as '$db'"
# Reading the store itself under the shim records nothing (and does not wait
# on its own locks).
before=$(total_calls "$S")
(cd / && shim_env "$S" sqlite3 "$S" "SELECT count(*) FROM qp_stats" >/dev/null)
[ "$(total_calls "$S")" = "$before" ] || fail "queries on the store itself were recorded"
echo "ok: sqlite3 CLI"

# ---- python3's sqlite3 module (loaded with dlopen) --------------------------
pythons=/usr/bin/python3
p=$(command -v python3 || true)
if [ -n "$p" ] && [ "$(readlink -f "$p")" != "$(readlink -f /usr/bin/python3)" ] &&
  "$p" -c 'import sqlite3' 2>/dev/null; then
  pythons="$pythons $p"
fi
n=0
for py in $pythons; do
  n=$((n + 1))
  rm -f py.db
  "$py" "$DATA/py_sqlite.py" py.db >py.plain
  rm -f py.db
  shim_env "$T/py$n.qp" "$py" "$DATA/py_sqlite.py" py.db >py.shim
  cmp py.plain py.shim || fail "$py: output differs under the shim"
  S=$T/py$n.qp
  expect_calls "$S" "insert into kv(k, v) values (?, ?)" 51 "$py"
  expect_calls "$S" "select v from kv where k = ?" 25 "$py"
  expect_calls "$S" "select count(*), min(v), max(v) from kv" 1 "$py"
  rows=$(sqlite3 "$S" "SELECT rows FROM qp_summary WHERE query = 'select v from kv where k = ?'")
  [ "$rows" = 25 ] || fail "$py: rows of the SELECT: $rows"
  # A statement that fails to prepare still ran and failed: one call, one error.
  got=$(sqlite3 "$S" "SELECT calls, errors FROM qp_summary WHERE query = 'select v from no_such_table where k = ?'")
  [ "$got" = "1|1" ] || fail "$py: failed prepare recorded as calls|errors '$got'"
  sqlite3 "$S" "SELECT DISTINCT error_codes FROM qp_stats WHERE errors > 0" | grep -qx "SQLITE_ERROR:1" ||
    fail "$py: the failed prepare's SQLITE_ERROR is not in the store"
done

# ---- connections closed and opened in turn: each statement under its database
# (the shim keeps the last connection's name per thread: shim_sqlite.c)
mkdir -p reopen
shim_env "$T/reopen.qp" /usr/bin/python3 "$DATA/py_reopen.py" "$T/reopen" >/dev/null
for db in first second; do
  expect_calls "$T/reopen.qp" "select ? as on_$db" 4 "reopened connections"
  got=$(sqlite3 "$T/reopen.qp" "SELECT DISTINCT database FROM qp_summary WHERE query = 'select ? as on_$db'")
  [ "$got" = "$(readlink -f "$T/reopen")/$db.db" ] || fail "reopened connections: select ? as on_$db recorded under '$got'"
done

# ---- fork without exec: the child records its own work, once ---------------
for mode in plain flushed; do
  rm -f fork.db
  out=$(shim_env "$T/fork_$mode.qp" env QPROF_FLUSH_MS=100 /usr/bin/python3 "$DATA/py_fork.py" fork.db "$mode")
  [ "$out" = "child status 0" ] || fail "fork ($mode): $out"
  expect_calls "$T/fork_$mode.qp" "select ? as parent" 5 "fork ($mode), parent"
  expect_calls "$T/fork_$mode.qp" "select ? as child" 5 "fork ($mode), child"
done

# ---- exec: the old image's statements are in its segment, the new image gets its own
out=$(shim_env "$T/exec.qp" env QPROF_FLUSH_MS=3600000 /usr/bin/python3 "$DATA/py_exec.py" exec.db)
[ "$out" = "after exec" ] || fail "exec: $out"
expect_calls "$T/exec.qp" "select ? as before_exec" 3 "exec, before"
expect_calls "$T/exec.qp" "select ? as after_exec" 2 "exec, after"

# ---- threads ------------------------------------------------------------------
shim_env "$T/threads.qp" /usr/bin/python3 "$DATA/py_threads.py" threads.db >/dev/null
expect_calls "$T/threads.qp" "select ? as t" 800 "4 threads"

# ---- no query, no store ------------------------------------------------------
shim_env "$T/none.qp" sh -c 'true; ls / >/dev/null; echo hi >/dev/null'
shim_env "$T/none.qp" sqlite3 :memory: .help >/dev/null 2>&1 || true
shim_env "$T/none.qp" /usr/bin/python3 -c 'import sqlite3; sqlite3.connect(":memory:").close()'
[ ! -e "$T/none.qp" ] || fail "a process that ran no query created the store"
echo "ok: no query, no store file"

# ---- an unwritable store, a file that is not a store, a bad setting ---------
# The program never sees the store: its output and status are its own, and
# qprof run says once, on stderr, why the profile could not be written.
echo "a regular file" >notadir
echo "not a store" >other.db
cp other.db other.orig
for store in "$T/notadir/x.qp" "$T/other.db"; do
  rm -f un.db
  set +e
  shim_env "$store" sqlite3 un.db <"$DATA/workload.sql" >out.un 2>err.un
  rc=$?
  set -e
  cmp out.plain out.un || fail "store $store: output differs"
  { grep -v '^qprof run: ' err.un || true; } | cmp err.plain - || fail "store $store: the program's stderr differs"
  [ "$rc" = "$rc_plain" ] || fail "store $store: exit $rc, expected $rc_plain"
  [ "$(grep -c '^qprof run: cannot write the profile' err.un)" = 1 ] ||
    fail "store $store: not said exactly once: $(cat err.un)"
done
cmp other.db other.orig || fail "a file that is not a store was modified"
# A bad setting is refused by qprof run before the command starts ...
set +e
QPROF_FLUSH_MS=abc "$QPROF" run --store "$T/bad.qp" -- sh -c 'echo ran' >out.bad 2>err.bad
rc=$?
set -e
[ "$rc" = 2 ] || fail "QPROF_FLUSH_MS=abc: qprof run exited $rc, expected 2"
[ ! -s out.bad ] || fail "QPROF_FLUSH_MS=abc: the command ran"
grep -q "QPROF_FLUSH_MS" err.bad || fail "QPROF_FLUSH_MS=abc: reason not given: $(cat err.bad)"
# ... and under the shim alone it disables the shim, which the program never notices.
set +e
QPROF_FLUSH_MS=abc preload_env "$T/bad.run" sqlite3 bad.db <"$DATA/workload.sql" >out.bad 2>err.bad
rc=$?
set -e
cmp out.plain out.bad && cmp err.plain err.bad && [ "$rc" = "$rc_plain" ] ||
  fail "QPROF_FLUSH_MS=abc: the client was affected"
[ -z "$(ls -A "$T/bad.run")" ] || fail "QPROF_FLUSH_MS=abc: the shim should have disabled itself"
QPROF_FLUSH_MS=abc QPROF_LOG="$T/badlog" preload_env "$T/bad.run" sqlite3 :memory: 'SELECT 1' >/dev/null
grep -q "QPROF_FLUSH_MS" "$T/badlog" || fail "QPROF_FLUSH_MS=abc: not logged"
echo "ok: unwritable store, foreign file, bad setting"

# ---- QPROF_IGNORE, QPROF_RULES, QPROF_SAMPLE, QPROF_SLOW_MS + QPROF_LOG -------
QPROF_IGNORE='as ignored' \
  QPROF_RULES='tmp_[0-9]+=tmp_?' QPROF_SAMPLE=true QPROF_SLOW_MS=0.0001 QPROF_LOG="$T/opts.log" \
  shim_env "$T/opts.qp" sqlite3 :memory: "CREATE TABLE tmp_123(a); CREATE TABLE tmp_456(a); SELECT a FROM tmp_123;
    SELECT a FROM tmp_456; SELECT 1 AS ignored; SELECT 'secret' AS kept" >/dev/null
S=$T/opts.qp
expect_calls "$S" "select ? as ignored" 0 "QPROF_IGNORE"
expect_calls "$S" "select a from tmp_?" 2 "QPROF_RULES"
sample=$(sqlite3 "$S" "SELECT sample FROM qp_query WHERE query = 'select ? as kept'")
case "$sample" in *secret*) ;; *) fail "QPROF_SAMPLE: sample '$sample'" ;; esac
# The slow-query log follows the pool's one rule (lib/stats/slowlog.h): slower than the
# threshold (100 ns here: every statement), failed statements too with their code, the
# line with threshold, fingerprint, rows and database; 0 turns it off.
grep -q "slow query: [0-9.]* ms (threshold 0.000 ms) fingerprint [0-9a-f]\{16\} rows 1 database :memory:: select ? as kept" \
  "$T/opts.log" || fail "QPROF_SLOW_MS=0.0001: no slow-query line: $(cat "$T/opts.log")"
set +e
QPROF_SLOW_MS=0.0001 QPROF_LOG="$T/slowerr.log" shim_env "$T/slowerr.qp" sqlite3 :memory: \
  "CREATE TABLE u(a PRIMARY KEY); INSERT INTO u VALUES (1); INSERT INTO u VALUES (1)" >/dev/null 2>&1
set -e
grep -q "slow query: .* error SQLITE_CONSTRAINT_PRIMARYKEY database :memory:: insert into u values (?)" \
  "$T/slowerr.log" || fail "slow-query log: the failed insert is not logged: $(cat "$T/slowerr.log")"
QPROF_SLOW_MS=0 QPROF_LOG="$T/slowoff.log" shim_env "$T/slowoff.qp" sqlite3 :memory: "SELECT 1 AS off" >/dev/null
expect_calls "$T/slowoff.qp" "select ? as off" 1 "QPROF_SLOW_MS=0"
! grep -q "slow query" "$T/slowoff.log" 2>/dev/null || fail "QPROF_SLOW_MS=0 logged: $(cat "$T/slowoff.log")"
echo "ok: options; slow-query log: every statement over 100 ns, a failed one with its code, 0 is off"

# ---- kill -9 mid-run: every statement the program reported done is stored ---
# py_loop.py prints (and flushes) the number of each tick after it ran.
(exec "$QPROF" run --store "$T/kill.qp" --flush-ms 50 -- \
  /usr/bin/python3 "$DATA/py_loop.py" kill.db >kill.out 2>&1) &
qpid=$!
for _ in $(seq 1 100); do
  sleep 0.1
  [ -s kill.out ] && break
done
sleep 0.3
pypid=$(pgrep -P "$qpid" -f py_loop.py)
kill -9 "$pypid"
set +e
wait "$qpid"
rc=$?
set -e
[ "$rc" = 137 ] || fail "kill -9: qprof run exited $rc, expected the command's 137"
[ "$(sqlite3 "$T/kill.qp" 'PRAGMA integrity_check')" = ok ] || fail "kill -9: store damaged"
done_n=$(grep -c '^tick ' kill.out)
n=$(calls "$T/kill.qp" "select ? as tick")
[ "$done_n" -gt 0 ] || fail "kill -9: the program reported nothing"
[ "$n" -ge "$done_n" ] && [ "$n" -le $((done_n + 1)) ] ||
  fail "kill -9: the program reported $done_n ticks done, the store has $n"
echo "ok: kill -9 after $done_n reported statements: $n in the store"
echo "PASS"
