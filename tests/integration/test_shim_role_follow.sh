#!/bin/bash
# The shim follows who runs a session's statements as it changes: psql under
# 'qprof run' runs statements before and after SET ROLE, SET
# application_name, RESET ROLE, SET LOCAL ROLE inside BEGIN..COMMIT, SET ROLE
# and SET application_name inside BEGIN..ROLLBACK, SET ROLE in a block that
# fails (its COMMIT rolls back), SET LOCAL ROLE outside a block (no effect),
# SET/RESET SESSION AUTHORIZATION and SET LOCAL ROLE inside a multi-statement
# query (its implicit block). Every row of `qprof report --by
# user,application --format json` must be exactly what the server charged:
# each statement under the role and application it ran under (what a
# statement changes applies from the next one).
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"
pg_setup shim_role
R2="qp_r2_$$"
R3="qp_r3_$$"
psql -X -q -d "$DB" -c "CREATE ROLE $R2" -c "CREATE ROLE $R3" >/dev/null || fail "create roles"
trap 'dropdb --if-exists "$DB" >/dev/null 2>&1 || true; psql -X -q -d postgres -c "DROP ROLE IF EXISTS $R2" -c "DROP ROLE IF EXISTS $R3" >/dev/null 2>&1 || true; rm -rf "$T"' EXIT

# rows STORE: "user|application|query|calls|errors" per row, sorted
rows() {
  "$QPROF" report --store "$1" --by user,application --format json --limit 0 | /usr/bin/python3 -c '
import json, sys
for q in json.load(sys.stdin)["queries"]:
    print("%s|%s|%s|%d|%d" % (q["user"], q["application"], q["query"], q["calls"], q["errors"]))
' | LC_ALL=C sort
}

S=$T/role.qp
# Each -c is one query of its own (PQexec); the last one holds two statements.
PGAPPNAME=app0 shim_env "$S" psql -X -q -d "$DB" \
  -c "SELECT 1 AS a" \
  -c "SET ROLE $R2" \
  -c "SELECT 1 AS a" \
  -c "SET application_name = 'x'" \
  -c "SELECT 1 AS a" \
  -c "RESET ROLE" \
  -c "SELECT 1 AS a" \
  -c "BEGIN" -c "SET LOCAL ROLE $R2" -c "SELECT 1 AS a" -c "COMMIT" \
  -c "SELECT 1 AS a" \
  -c "BEGIN" -c "SET ROLE $R3" -c "SET application_name = 'y'" -c "SELECT 1 AS a" -c "ROLLBACK" \
  -c "SELECT 1 AS a" \
  -c "BEGIN" -c "SET ROLE $R3" -c "COMMIT" \
  -c "SELECT 1 AS a" \
  -c "SET LOCAL ROLE $R2" \
  -c "SELECT 1 AS a" \
  -c "BEGIN" -c "SET ROLE $R2" -c "SELECT 1/0 AS a" -c "COMMIT" \
  -c "SELECT 1 AS a" \
  -c "SET SESSION AUTHORIZATION $R2" \
  -c "SELECT 1 AS a" \
  -c "RESET SESSION AUTHORIZATION" \
  -c "SELECT 1 AS a" \
  -c "SET LOCAL ROLE $R2; SELECT 2 AS m" \
  -c "SELECT 1 AS a" >"$T/psql.out" 2>&1 || { cat "$T/psql.out" >&2; fail "psql"; }
# the one statement meant to fail did, the SET LOCAL outside a block warned
grep -q "division by zero" "$T/psql.out" || fail "no division by zero: $(cat "$T/psql.out")"

P=$PGUSER
want=$(LC_ALL=C sort <<EOF
$P|app0|select ? as a|1|0
$P|app0|set role $R2|1|0
$R2|app0|select ? as a|1|0
$R2|app0|set application_name = ?|1|0
$R2|x|reset role|1|0
$R2|x|select ? as a|3|0
$P|x|select ? as a|5|0
$P|x|begin|3|0
$P|x|set local role $R2|2|0
$R2|x|commit|2|0
$P|x|set role $R3|2|0
$R3|x|set application_name = ?|1|0
$R3|y|select ? as a|1|0
$R3|y|rollback|1|0
$R3|x|commit|1|0
$R3|x|select ? as a|3|0
$R3|x|set local role $R2|1|0
$R3|x|begin|1|0
$R3|x|set role $R2|1|0
$R2|x|select ? / ? as a|1|1
$R3|x|set session authorization $R2|1|0
$R2|x|reset session authorization|1|0
$R2|x|select ? as m|1|0
EOF
)
got=$(rows "$S")
[ "$got" = "$want" ] || fail "per user and application rows: got
$got
want
$want
diff:
$(diff <(echo "$want") <(echo "$got") || true)"
echo "ok: every statement charged to the role and application it ran under"

# the totals a reader looks at: per user and per application, all statements
tot() { # FIELD(1 user, 2 application): "name=calls" sorted
  rows "$S" | awk -F'|' -v f="$1" '{ n[$f] += $4 } END { for (k in n) print k "=" n[k] }' | LC_ALL=C sort
}
[ "$(tot 1 | tr '\n' ' ')" = "$(printf '%s\n' "$P=14" "$R2=11" "$R3=11" | LC_ALL=C sort | tr '\n' ' ')" ] ||
  fail "per-user totals: $(tot 1 | tr '\n' ' ')"
[ "$(tot 2 | tr '\n' ' ')" = "app0=4 x=30 y=2 " ] || fail "per-application totals: $(tot 2 | tr '\n' ' ')"
echo "ok: per-user and per-application totals exact"

# ---- prepared statements (extended protocol): pgbench -M prepared -----------
S=$T/prepared.qp
printf '%s\n' "SELECT 1 AS p;" "SET ROLE $R2;" "SELECT 1 AS p;" "RESET ROLE;" >"$T/role.sql"
shim_env "$S" pgbench -n -M prepared -t 3 -f "$T/role.sql" "$DB" >"$T/pgbench.out" 2>&1 ||
  { cat "$T/pgbench.out" >&2; fail "pgbench"; }
want=$(LC_ALL=C sort <<EOF
$P|pgbench|select ? as p|3|0
$P|pgbench|set role $R2|3|0
$R2|pgbench|select ? as p|3|0
$R2|pgbench|reset role|3|0
EOF
)
got=$(rows "$S")
[ "$got" = "$want" ] || fail "pgbench -M prepared: got
$got
want
$want"
echo "ok: prepared SET ROLE / RESET ROLE followed (pgbench -M prepared)"
echo "PASS"
