#!/bin/bash
# A password never appears in any output, log line or file. A distinctive
# password is put in every DSN form (URI user:password@, ?password= and
# &password= query parameters, password= keyword, quoted and not) and given to
# qprof every way a store or option can be: --store, QPROF_STORE, the BASE and
# NEW of diff, and options that do not take a DSN at all. Every verb runs with
# it (run with the shim's log on, collect, report in every format, diff, normalize,
# config in text and JSON, --help and --version), on a reachable PostgreSQL
# store and an unreachable one (error paths). Then every stdout, stderr, the
# shim's log, every file written (stores, reports) and the PostgreSQL store's
# contents are searched for the password. PGPASSWORD is left alone (libpq
# reads it; qprof never shows it).
. "${QP_TEST_SOURCE_DIR:?}/tests/data/shim/lib.sh"
pg_setup secrets
PW=Qz8xSeKr1tPw
OUT=$T/out # everything qprof writes goes here, and only here is searched
IN=$T/in   # inputs (they hold the password on purpose)
mkdir -p "$OUT" "$IN"
n=0
# q NAME CMD...: runs CMD with stdout and stderr kept as $OUT/NAME.out/.err;
# the exit status is recorded, not judged (error paths are the point).
q() {
  local name=$1
  shift
  n=$((n + 1))
  set +e
  "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" </dev/null
  echo "$?" >"$OUT/$name.rc"
  set -e
}

sock=$PGHOST
port=$PGPORT
# The fixture trusts local connections, so these reach the server and the
# password is simply not needed; the unreachable ones fail to connect.
declare -A DSN=(
  [uri_userinfo]="postgresql://postgres:$PW@/$DB?host=$sock&port=$port"
  [uri_query_first]="postgresql:///$DB?password=$PW&host=$sock&port=$port&user=postgres"
  [uri_query_amp]="postgres:///$DB?host=$sock&port=$port&user=postgres&password=$PW"
  [keyword]="host=$sock port=$port dbname=$DB user=postgres password=$PW"
  [keyword_quoted]="host=$sock port=$port dbname=$DB user=postgres password = '$PW x\\'y'"
  [bad_uri_userinfo]="postgresql://postgres:$PW@/$DB?host=$T/nowhere&port=1"
  [bad_uri_query]="postgres://127.0.0.1:1/$DB?connect_timeout=2&password=$PW"
  [bad_keyword]="host=$T/nowhere port=1 dbname=$DB user=postgres password=$PW"
)

# A script that holds a password only inside string literals: normalization
# replaces them, so it must not come out of normalize or the stores either.
cat >"$IN/script.sql" <<SQL
SELECT 'postgresql://app:$PW@db/x' AS dsn;
SELECT 1 WHERE 'password=$PW' <> '';
SQL

# The shim's log is on, with a slow-query line for every query, and searched
# with the rest.
export QPROF_LOG=$OUT/shim.log QPROF_SLOW_MS=0 QPROF_FLUSH_MS=50
# libpq may read it (it is not needed here); nothing of qprof's may show it.
export PGPASSWORD=$PW
for form in "${!DSN[@]}"; do
  d=${DSN[$form]}
  # run: the shim records into the DSN store (or fails to, and logs it),
  # through libpq (psql) and sqlite3, with --store and with QPROF_STORE.
  q "run_psql_$form" "$QPROF" run --store "$d" -- psql -X -q -d "$DB" -c "SELECT 1 AS one"
  q "run_sqlite_$form" env QPROF_STORE="$d" "$QPROF" run -- sqlite3 ":memory:" "SELECT 2 AS two"
  q "run_report_$form" "$QPROF" run --report --store "$d" -- sqlite3 ":memory:" "SELECT 3"
  # report, every format, with --store and with QPROF_STORE
  for f in text json csv html; do
    q "report_${f}_$form" "$QPROF" report --store "$d" --format "$f" --wide
    q "report_env_${f}_$form" env QPROF_STORE="$d" "$QPROF" report --format "$f"
  done
  # diff: two stores, and two windows of one
  for f in text json; do
    q "diff_${f}_$form" "$QPROF" diff "$d" "$d" --format "$f" --wide
    q "diff_win_${f}_$form" "$QPROF" diff "$d" --base-until -1h --new-since -1h --format "$f"
    q "diff_mixed_${f}_$form" "$QPROF" diff "$OUT/none.db" "$d" --format "$f"
  done
  # config, with the DSN as the store and where no DSN belongs
  for f in text json; do
    q "config_${f}_$form" env QPROF_STORE="$d" QPROF_RULES="$d" QPROF_IGNORE="$d" \
      "$QPROF" config --format "$f"
    q "config_bad_${f}_$form" env QPROF_SLOW_MS="$d" "$QPROF" config --format "$f"
  done
  # options that take numbers, given the DSN by mistake
  q "run_badenv_$form" env QPROF_FLUSH_MS="$d" "$QPROF" run -- sqlite3 ":memory:" "SELECT 4"
  q "run_badopt_$form" "$QPROF" run --store "$d" --slow-ms "$d" -- true
  q "report_badopt_$form" "$QPROF" report --store "$d" --limit "$d"
  # collect: programs under the shim record into a run directory, the
  # collector writes it to the DSN store (once, and as a daemon stopped by
  # SIGTERM)
  rd=$T/run-$form
  mkdir -m 0700 "$rd"
  LD_PRELOAD="$SHIM" QPROF_RUN_DIR="$rd" sqlite3 ":memory:" "SELECT 5 AS five" >/dev/null
  q "collect_once_$form" "$QPROF" collect --run-dir "$rd" --store "$d" --once
  LD_PRELOAD="$SHIM" QPROF_RUN_DIR="$rd" sqlite3 ":memory:" "SELECT 6 AS six" >/dev/null
  q "collect_env_$form" env QPROF_STORE="$d" "$QPROF" collect --run-dir "$rd" --once
  q "collect_daemon_$form" timeout -s TERM 1 "$QPROF" collect --run-dir "$rd" --store "$d" --flush-ms 100
  q "collect_badopt_$form" "$QPROF" collect --run-dir "$rd" --store "$d" --flush-ms "$d" --once
  # normalize, with the DSN in the environment
  for f in text json; do
    q "normalize_${f}_$form" env QPROF_STORE="$d" "$QPROF" normalize --format "$f" "$IN/script.sql"
  done
done
# SQLite stores fed by the script above, read back in every format.
# (The commands' own output is theirs, and holds the literals: not kept.)
q run_script "$QPROF" run --store "$OUT/script.db" -- \
  sh -c "sqlite3 :memory: '.read $IN/script.sql' >/dev/null"
q run_script_psql "$QPROF" run --store "$OUT/script.db" -- \
  sh -c "psql -X -q -d '$DB' -f '$IN/script.sql' >/dev/null"
for f in text json csv html; do q "report_script_$f" "$QPROF" report --store "$OUT/script.db" --format "$f"; done
q normalize_stdin sh -c "\"$QPROF\" normalize <\"$IN/script.sql\""
q help "$QPROF" --help
q version "$QPROF" --version
for v in run collect report diff normalize config; do q "help_$v" "$QPROF" "$v" --help; done

# The reachable forms did record: the PostgreSQL store exists and holds rows
# (else the search below would only have looked at error paths).
rows=$(psql -X -At -d "$DB" -c "SELECT count(*) FROM qprof.qp_query" 2>/dev/null || echo 0)
[ "$rows" -gt 0 ] || fail "nothing was recorded in the PostgreSQL store (rows: '$rows')"
pg_dump -d "$DB" --data-only --schema=qprof >"$OUT/pgstore.sql" ||
  fail "cannot dump the PostgreSQL store"
[ -s "$OUT/shim.log" ] || fail "the shim's log is empty: QPROF_LOG was not on"
[ "$(total_calls "$OUT/script.db")" -gt 0 ] || fail "nothing recorded in $OUT/script.db"
# The unreachable stores were refused with a message, not silently.
for form in bad_uri_userinfo bad_uri_query bad_keyword; do
  for v in report_text collect_once; do
    [ "$(cat "$OUT/${v}_$form.rc")" != 0 ] || fail "$v on the unreachable $form: exit 0"
    [ -s "$OUT/${v}_$form.err" ] || fail "$v on the unreachable $form: no message"
  done
done
# The collector wrote what the shim recorded into the reachable store.
[ "$(psql -X -At -d "$DB" -c "SELECT count(*) FROM qprof.qp_query WHERE query = 'select ? as six'")" = 1 ] ||
  fail "qprof collect did not write the run directory to the PostgreSQL store"

# The search: every stdout and stderr, the shim's log, the stores and
# reports, the PostgreSQL store's dump.
leaks=$(grep -rlaF -- "$PW" "$OUT" || true)
# KEEP_OUT=dir keeps the outputs for a look.
[ -z "${KEEP_OUT:-}" ] || cp -a "$OUT" "$KEEP_OUT"
if [ -n "$leaks" ]; then
  for f in $leaks; do
    echo "--- $f:" >&2
    grep -aF -- "$PW" "$f" | head -5 >&2
  done
  fail "the password appears in $(echo "$leaks" | wc -l) output(s)"
fi
echo "ok: $n runs of every verb with a password in ${#DSN[@]} DSN forms; $(ls "$OUT" | wc -l) outputs searched, the password is in none"
