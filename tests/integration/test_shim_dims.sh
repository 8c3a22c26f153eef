#!/bin/bash
# Who ran it, under the shim: real psql and python clients under 'qprof run'
# record the PostgreSQL role and application_name (PGAPPNAME, else what the
# client sets: psql's own fallback name), the OS user and the program's name
# for SQLite, and the host (QPROF_HOST); a forked child keeps them.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"
pg_setup shim_dims
ROLE="qp_shim_who_$$"
psql -X -q -d "$DB" -c "CREATE ROLE $ROLE LOGIN" >/dev/null || fail "create role"
trap 'dropdb --if-exists "$DB" >/dev/null 2>&1 || true; psql -X -q -d postgres -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || true; rm -rf "$T"' EXIT

who() { # STORE QUERY: "user|application|host|calls" per key, sorted
  sqlite3 "$1" "SELECT user_name, application, host, sum(calls) FROM qp_summary
                WHERE query = '$2' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
}

# ---- libpq: two roles, PGAPPNAME, QPROF_HOST --------------------------------
S=$T/pg.qp
QPROF_HOST=h1 PGAPPNAME=myapp shim_env "$S" psql -X -q -d "$DB" \
  -c "SELECT 1 AS who" -c "SELECT 2 AS who" -c "SELECT 3 AS who" >/dev/null || fail "psql as postgres"
QPROF_HOST=h1 shim_env "$S" psql -X -q -U "$ROLE" -d "$DB" -c "SELECT 4 AS who" -c "SELECT 5 AS who" \
  >/dev/null || fail "psql as $ROLE"
got=$(who "$S" "select ? as who")
want=$(printf '%s\n' "$PGUSER|myapp|h1|3" "$ROLE|psql|h1|2" | LC_ALL=C sort)
[ "$(printf '%s\n' "$got" | LC_ALL=C sort)" = "$want" ] || fail "libpq dimensions: got
$got
want
$want"
echo "ok: libpq: role, application_name and QPROF_HOST recorded per statement"

# ---- SQLite: the OS user, the program's name, the machine's name --------------
S=$T/lite.qp
shim_env "$S" /usr/bin/python3 -c '
import sqlite3
db = sqlite3.connect("lite.db")
for i in range(4):
    db.execute("SELECT ? AS lite", (i,)).fetchall()
' || fail "python sqlite3"
want="$(id -un)|python3|$(hostname)|4"
[ "$(who "$S" "select ? as lite")" = "$want" ] || fail "sqlite dimensions: $(who "$S" "select ? as lite"), want $want"
echo "ok: sqlite: OS user, program name and host name"

# ---- a forked child records under the same dimensions -------------------------
rm -f fork.db
out=$(QPROF_HOST=h2 shim_env "$T/fx.qp" /usr/bin/python3 "$DATA/py_fork_exit.py" fork.db)
[ "$out" = "child status 0" ] || fail "os._exit child: $out"
me=$(id -un)
[ "$(who "$T/fx.qp" "select ? as parent")" = "$me|python3|h2|5" ] || fail "fork, parent: $(who "$T/fx.qp" "select ? as parent")"
[ "$(who "$T/fx.qp" "select ? as child")" = "$me|python3|h2|5" ] || fail "fork, child: $(who "$T/fx.qp" "select ? as child")"
echo "ok: fork: parent and child keep user, application and host"
echo "PASS"
