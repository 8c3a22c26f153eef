#!/bin/bash
# qprof advise end to end on the fixture cluster, in a database of its own
# with HypoPG and 200k generated rows: --query (text and JSON), --file (a
# refused DDL among the statements), --store (a profile recorded by qprof
# run around psql: ranked by time given back per day, fingerprints, the
# profile's write warning, --since, a sampled query advised through its
# sample), the progress line on a terminal, the safety rules (an UPDATE
# with --analyze-writes leaves every row as it was, without it it never
# runs; pg_sleep stopped by the statement timeout; DDL refused) and bad
# input (exit code, a message, nothing on stdout, no password).
set -euo pipefail
QPROF=${QPROF_BIN:?QPROF_BIN not set}
set -a
. "${QP_TEST_PGENV:?}"
set +a
unset LD_PRELOAD QPROF_RUN_DIR QPROF_STORE QPROF_SAMPLE || true
T=$(mktemp -d /tmp/qprof-advise.XXXXXX)
DB="qp_advise_cli_$$"
cleanup() {
  dropdb --if-exists "$DB" >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

createdb "$DB"
psql -X -q -v ON_ERROR_STOP=1 -d "$DB" >/dev/null <<'SQL'
CREATE EXTENSION hypopg;
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, note text NOT NULL, v int NOT NULL,
  w int NOT NULL);
INSERT INTO orders SELECT g, 1 + ((g::bigint * 7919) % 20000)::int, 'n' || g, g % 10, (g * 13) % 4000
  FROM generate_series(1, 200000) g;
CREATE SEQUENCE s;
ANALYZE;
SQL
DSN="host=$PGHOST port=$PGPORT user=postgres dbname=$DB"
Q="SELECT * FROM orders WHERE customer_id = 4242"

# ---- one statement, JSON ----------------------------------------------------
"$QPROF" advise --dsn "$DSN" --query "$Q" --analyze --format json >"$T/q.json" 2>"$T/q.err" ||
  fail "advise --query: exit $?: $(cat "$T/q.err")"
python3 - "$T/q.json" <<'PY' || fail "advise --query JSON: $(cat "$T/q.json")"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["qprof_advise"] == 1 and d["verify"] == "hypo" and d["analyze"] is True
s = d["suggestions"]
assert len(s) == 1, s
s = s[0]
assert s["statement"] == "CREATE INDEX CONCURRENTLY ON public.orders (customer_id)", s
assert s["verified"] is True and s["how"] == "hypopg" and s["rule"] == "seq_scan_filter"
assert s["cost_after"] < 0.7 * s["cost_before"] and s["size_bytes"] > 0
assert s["saved_ms_per_day"] is None  # no profile: no calls per day
st = d["statements"][0]
assert st["status"] == "advised" and st["plan_source"] == "explain analyze" and st["executed"]
assert "s3cret" not in d["database"]
PY
echo "ok: --query --format json"

# ---- text ---------------------------------------------------------------------
"$QPROF" advise --dsn "$DSN" --query "$Q" >"$T/q.txt" || fail "advise text: exit $?"
grep -q "^1\. CREATE INDEX CONCURRENTLY ON public.orders (customer_id);" "$T/q.txt" ||
  fail "advise text: $(cat "$T/q.txt")"
grep -q "verified: HypoPG" "$T/q.txt" || fail "advise text does not say how: $(cat "$T/q.txt")"
echo "ok: --query text"

# ---- a script with a DDL statement among the others ---------------------------
printf '%s;\nDROP TABLE orders;\nSELECT * FROM orders WHERE v < 5;\n' "$Q" >"$T/s.sql"
"$QPROF" advise --dsn "$DSN" --file "$T/s.sql" --format json >"$T/f.json" 2>"$T/f.err" ||
  fail "advise --file: exit $?: $(cat "$T/f.err")"
grep -q "statement 2: advise: refused: a DDL statement" "$T/f.err" || fail "no refusal: $(cat "$T/f.err")"
python3 - "$T/f.json" <<'PY' || fail "advise --file JSON: $(cat "$T/f.json")"
import json, sys
d = json.load(open(sys.argv[1]))
st = d["statements"]
assert [x["status"] for x in st] == ["advised", "refused", "advised"], st
assert "DDL" in st[1]["error"]
assert len(d["suggestions"]) == 1
import re
assert any(re.search(r"does not help: [0-9]+% of rows match", n) for n in st[2]["notes"]), st[2]
PY
[ "$(psql -X -At -d "$DB" -c 'SELECT count(*) FROM orders')" = 200000 ] || fail "orders changed"
echo "ok: --file (DDL refused, others advised)"

# ---- a profile store: the top queries, time given back per day ----------------
for i in 1 2 3 4 5; do
  "$QPROF" run --store "$T/p.qp" -- psql -X -q -d "$DB" -c "SELECT * FROM orders WHERE customer_id = $((i * 100))" \
    -c "SELECT count(*) FROM orders WHERE id = $i" -c "UPDATE orders SET v = v WHERE id = $i" >/dev/null ||
    fail "qprof run psql"
done
"$QPROF" advise --dsn "$DSN" --store "$T/p.qp" --top 5 --format json >"$T/p.json" 2>"$T/p.err" ||
  fail "advise --store: exit $?: $(cat "$T/p.err")"
python3 - "$T/p.json" <<'PY' || fail "advise --store JSON: $(cat "$T/p.json")"
import json, sys
d = json.load(open(sys.argv[1]))
s = d["suggestions"]
assert len(s) == 1 and s[0]["columns"] == "customer_id", s
q = s[0]["queries"][0]
assert len(q["fingerprint"]) == 16 and q["query"] == "select * from orders where customer_id = ?", q
assert q["calls_per_day"] > 0 and q["saved_ms_per_day"] > 0 and s[0]["saved_basis"] == "cost", s
# the UPDATE was recorded as often as the SELECT: writes per day from the profile
assert abs(s[0]["table_writes_per_day"] - q["calls_per_day"]) < 1e-6 * q["calls_per_day"], s
st = [x for x in d["statements"] if x["query"] == q["query"]][0]
assert st["plan_source"] == "generic plan", st
PY
"$QPROF" advise --dsn "$DSN" --store "$T/p.qp" >"$T/p.txt" || fail "advise --store text"
grep -q "saves: .* ms per day" "$T/p.txt" || fail "no time per day: $(cat "$T/p.txt")"
grep -q "writes: .* write statements per day to public.orders (profile)" "$T/p.txt" ||
  fail "no writes per day: $(cat "$T/p.txt")"
cp "$T/p.txt" /tmp/advise-store-text.txt 2>/dev/null || true
echo "ok: --store"

# ---- --save: the advice kept in the store, shown on the HTML page --------------
"$QPROF" advise --dsn "$DSN password=s3cret-pw" --store "$T/p.qp" --top 5 --save >"$T/save.txt" 2>"$T/save.err" ||
  fail "advise --save: $(cat "$T/save.err")"
grep -q "^Saved in $T/p.qp" "$T/save.txt" || fail "advise --save: $(cat "$T/save.txt")"
"$QPROF" advise --dsn "$DSN password=s3cret-pw" --store "$T/p.qp" --top 5 --save --format json >"$T/save.json" ||
  fail "advise --save --format json"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/save.json" || fail "--save --format json: not one JSON document"
"$QPROF" report --store "$T/p.qp" --format html --output "$T/p.html" || fail "report --format html"
grep -q "s3cret-pw" "$T/p.html" && fail "the password is on the page"
python3 - "$T/p.html" "$T/p.json" <<'PY' || fail "the advice on the page"
import html, json, re, sys
page = open(sys.argv[1]).read()
want = json.load(open(sys.argv[2]))["suggestions"][0]
sec = re.search(r'<section id="advice">(.*?)</section>', page, re.S)
assert sec, "no advice section"
sec = sec.group(1)
# the second --save replaced the first: one run for this database
assert sec.count('<div class="advice">') == 1, sec
assert html.escape(want["statement"], quote=False) in sec, sec
assert "hypopg" in sec and "/day" in sec, sec
# the query it helps is linked to its details, which name the index too
m = re.search(r'<td><a href="#(q[0-9]+)">#[0-9]+</a></td><td>', sec)
assert m, sec
art = re.search(r'<article id="%s">(.*?)</article>' % m.group(1), page, re.S).group(1)
assert "<h4>Advice</h4>" in art and html.escape(want["statement"], quote=False) in art, art
assert 'href="#advice"' in page
PY
rc=0; "$QPROF" advise --dsn "$DSN" --query "$Q" --save >/dev/null 2>"$T/e" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--save needs --store" "$T/e" || fail "--save without --store: exit $rc: $(cat "$T/e")"
echo "ok: --save keeps the advice in the store; the HTML report shows it beside the query"

# ---- safety -------------------------------------------------------------------
U="UPDATE orders SET note = 'changed', v = nextval('s') WHERE customer_id = 77"
"$QPROF" advise --dsn "$DSN" --query "$U" --analyze --format json >"$T/u1.json" || fail "advise UPDATE"
[ "$(psql -X -At -d "$DB" -c 'SELECT is_called FROM s')" = f ] || fail "the UPDATE ran without --analyze-writes"
"$QPROF" advise --dsn "$DSN" --query "$U" --analyze-writes --format json >"$T/u2.json" || fail "advise UPDATE --analyze-writes"
[ "$(psql -X -At -d "$DB" -c 'SELECT is_called FROM s')" = t ] || fail "the UPDATE did not run with --analyze-writes"
[ "$(psql -X -At -d "$DB" -c "SELECT count(*) FROM orders WHERE note = 'changed' OR v >= 10")" = 0 ] ||
  fail "the UPDATE's rows were kept"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]));
assert not a["statements"][0]["executed"] and b["statements"][0]["executed"]' "$T/u1.json" "$T/u2.json" ||
  fail "executed flags"
echo "ok: UPDATE not run without --analyze-writes, rolled back with it"

expect_fail() { # WHAT EXPECTED_TEXT ARGS...: exit 1, the text on stderr, nothing on stdout
  local what=$1 text=$2
  shift 2
  local rc=0
  "$QPROF" advise "$@" >"$T/o" 2>"$T/e" || rc=$?
  [ "$rc" = 1 ] || fail "$what: exit $rc, not 1 ($(cat "$T/e"))"
  [ ! -s "$T/o" ] || fail "$what: printed on stdout: $(cat "$T/o")"
  grep -q -- "$text" "$T/e" || fail "$what: stderr lacks '$text': $(cat "$T/e")"
  echo "ok: $what"
}
expect_fail "DDL refused" "refused: a DDL statement" --dsn "$DSN" --query "DROP TABLE orders" --analyze-writes --format json
[ "$(psql -X -At -d "$DB" -c 'SELECT count(*) FROM orders')" = 200000 ] || fail "DROP ran"
expect_fail "pg_sleep stopped" "stopped by statement_timeout (300 ms)" --dsn "$DSN" --query "SELECT pg_sleep(20)" --analyze --statement-timeout 300 --format json
expect_fail "syntax error" "42601" --dsn "$DSN" --query "SELECT * FROM orders WHERE" --format json
expect_fail "unknown table" "42P01" --dsn "$DSN" --query "SELECT * FROM no_such WHERE a = 1" --format json
expect_fail "unreachable DSN" "cannot connect" --dsn "postgresql://u:s3cret-pw@127.0.0.1:1/x" --query "$Q" --format json
grep -q "s3cret-pw" "$T/e" && fail "the password was printed: $(cat "$T/e")"
expect_fail "store without queries" "store" --dsn "$DSN" --store "$T/none.qp"
printf '\n' >"$T/empty.sql"
expect_fail "empty script" "no statement" --dsn "$DSN" --file "$T/empty.sql"

rc=0; "$QPROF" advise --query "$Q" >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "no --dsn: exit $rc"
rc=0; "$QPROF" advise --dsn "$DSN" --query "$Q" --file x >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--query and --file: exit $rc"
rc=0; "$QPROF" advise --dsn "$DSN" --query "$Q" --verify maybe >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--verify maybe: exit $rc"
echo "ok: usage errors exit 2"

# ---- ranking: by time given back per day, then by the cost cut --------------
# --file: no calls per day, so by the cost cut: the range over 2% of the rows
# is first in the script, the equality on 1 row in 20000 first in the advice
printf 'SELECT * FROM orders WHERE w < 80;\n%s;\n' "$Q" >"$T/r.sql"
"$QPROF" advise --dsn "$DSN" --file "$T/r.sql" --format json >"$T/r.json" || fail "advise --file (ranking)"
python3 - "$T/r.json" <<'PY' || fail "ranking by the cost cut: $(cat "$T/r.json")"
import json, sys
s = json.load(open(sys.argv[1]))["suggestions"]
assert [x["columns"] for x in s] == ["customer_id", "w"], s
cut = [1 - x["cost_after"] / x["cost_before"] for x in s]
assert cut[0] > cut[1], cut
assert all(x["saved_ms_per_day"] is None and x["saved_basis"] is None for x in s), s
PY
# two statements that want the same index: one suggestion helping both
printf '%s;\nSELECT * FROM orders WHERE customer_id = 17;\n' "$Q" >"$T/m.sql"
"$QPROF" advise --dsn "$DSN" --file "$T/m.sql" --format json >"$T/m.json" || fail "advise --file (merge)"
python3 - "$T/m.json" <<'PY' || fail "one suggestion for both: $(cat "$T/m.json")"
import json, sys
d = json.load(open(sys.argv[1]))
s = d["suggestions"]
assert len(s) == 1 and s[0]["columns"] == "customer_id", s
assert [q["query"] for q in s[0]["queries"]] == [x["query"] for x in d["statements"]], s
assert [x["suggestions"] for x in d["statements"]] == [1, 1], d["statements"]
PY
# a store: six calls of an equality on w (each with two UPDATEs of orders), one
# of the equality: ranked by calls per day x time saved per call, each
# suggestion's time the sum of its queries'; the table is written more often
# than either query runs, which each suggestion says (profile_warning)
for i in 1 2 3 4 5 6; do
  "$QPROF" run --store "$T/r.qp" -- psql -X -q -d "$DB" -c "SELECT * FROM orders WHERE w = $((i * 7))" \
    -c "UPDATE orders SET v = v WHERE id = $i" -c "UPDATE orders SET v = v WHERE id = $((i + 10))" >/dev/null ||
    fail "qprof run psql (ranking)"
done
"$QPROF" run --store "$T/r.qp" -- psql -X -q -d "$DB" -c "$Q" >/dev/null || fail "qprof run psql"
"$QPROF" advise --dsn "$DSN" --store "$T/r.qp" --format json >"$T/rs.json" 2>"$T/rs.err" ||
  fail "advise --store (ranking): $(cat "$T/rs.err")"
python3 - "$T/rs.json" <<'PY' || fail "ranking by time given back: $(cat "$T/rs.json")"
import json, sys
s = json.load(open(sys.argv[1]))["suggestions"]
assert sorted(x["columns"] for x in s) == ["customer_id", "w"], s
saved = [x["saved_ms_per_day"] for x in s]
assert all(v is not None and v > 0 for v in saved), s
assert saved == sorted(saved, reverse=True), saved
for x in s:
    assert abs(x["saved_ms_per_day"] - sum(q["saved_ms_per_day"] for q in x["queries"])) < 1e-6 * x["saved_ms_per_day"], x
    assert x["saved_basis"] == "cost", x
    calls = sum(q["calls_per_day"] for q in x["queries"])
    assert x["table_writes_per_day"] > calls, x
    assert x["profile_warning"] is not None and "writes per day to public.orders" in x["profile_warning"], x
w = [x for x in s if x["columns"] == "w"][0]
c = [x for x in s if x["columns"] == "customer_id"][0]
assert abs(w["queries"][0]["calls_per_day"] / c["queries"][0]["calls_per_day"] - 6) < 1e-6, (w, c)
assert abs(w["table_writes_per_day"] / c["queries"][0]["calls_per_day"] - 12) < 1e-6, (w, c)
PY
"$QPROF" advise --dsn "$DSN" --store "$T/r.qp" >"$T/rs.txt" || fail "advise --store text (ranking)"
grep -q "warning:  the profile has .* writes per day to public.orders" "$T/rs.txt" ||
  fail "no profile warning in the text: $(cat "$T/rs.txt")"
echo "ok: ranking (time given back per day, then the cost cut), merged suggestions, the profile's write warning"

# ---- --since: the store's window ----------------------------------------------
"$QPROF" advise --dsn "$DSN" --store "$T/r.qp" --since -1d --format json >"$T/since.json" || fail "--since -1d"
python3 -c 'import json,sys; a=json.load(open(sys.argv[1])); b=json.load(open(sys.argv[2]));
assert len(a["statements"]) == len(b["statements"]) == 3, (a, b)' "$T/since.json" "$T/rs.json" ||
  fail "--since -1d: not the same statements"
expect_fail "--since after the data" "no PostgreSQL queries in this window" --dsn "$DSN" --store "$T/r.qp" --since 2030-01-01 --format json
rc=0; "$QPROF" advise --dsn "$DSN" --store "$T/r.qp" --since yesterday-ish >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "--since yesterday-ish: exit $rc"

# ---- the opt-in sample: advised with its values (a plan, not a generic one) --
"$QPROF" run --sample --store "$T/s.qp" -- psql -X -q -d "$DB" -c "$Q" >/dev/null || fail "qprof run --sample"
"$QPROF" advise --dsn "$DSN" --store "$T/s.qp" --format json >"$T/s.json" || fail "advise --store (sample)"
python3 - "$T/s.json" "$T/p.json" <<'PY' || fail "advise on the sample: $(cat "$T/s.json")"
import json, sys
st = json.load(open(sys.argv[1]))["statements"]
assert len(st) == 1 and st[0]["query"] == "SELECT * FROM orders WHERE customer_id = 4242", st
assert st[0]["plan_source"] == "explain", st
# the fingerprint is the normalized query's, as without a sample
fp = [q["fingerprint"] for s in json.load(open(sys.argv[2]))["suggestions"] for q in s["queries"]
      if q["query"] == "select * from orders where customer_id = ?"]
assert fp and st[0]["fingerprint"] == fp[0], (st, fp)
PY
echo "ok: --since; a sampled query is advised through its sample"

# ---- a progress line on a terminal (and none when stderr is not one) ---------
script -qec "'$QPROF' advise --dsn '$DSN' --store '$T/r.qp' >/dev/null" /dev/null >"$T/tty.out" ||
  fail "advise under script"
grep -q "qprof advise: 3/3 statements\.\.\." "$T/tty.out" || fail "no progress line: $(od -c "$T/tty.out" | head)"
"$QPROF" advise --dsn "$DSN" --store "$T/r.qp" >/dev/null 2>"$T/notty.err" || fail "advise (no tty)"
[ ! -s "$T/notty.err" ] || fail "progress written to a file: $(cat "$T/notty.err")"
echo "ok: progress line on a terminal only"

# ---- SQLite: on a copy, the live file untouched ------------------------------
L="$T/live.db"
sqlite3 "$L" "CREATE TABLE t (id INTEGER PRIMARY KEY, a INT, b TEXT);
  WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 50000)
  INSERT INTO t SELECT n, n % 5000, 'x' || n FROM g;"
sum0=$(md5sum <"$L"); m0=$(stat -c %Y.%y "$L")
"$QPROF" advise --dsn "sqlite://$L" --query "SELECT * FROM t WHERE a = 42" --format json >"$T/sq.json" ||
  fail "advise sqlite: exit $?"
"$QPROF" advise --dsn "sqlite://$L" --query "UPDATE t SET b = 'y' WHERE a = 7" --analyze-writes >"$T/sq.txt" ||
  fail "advise sqlite UPDATE: exit $?"
grep -q "^1\. CREATE INDEX t_a_idx ON t (a);" "$T/sq.txt" || fail "advise sqlite text: $(cat "$T/sq.txt")"
python3 - "$T/sq.json" <<'PY' || fail "advise sqlite JSON: $(cat "$T/sq.json")"
import json, sys
d = json.load(open(sys.argv[1]))
s = d["suggestions"]
assert len(s) == 1 and s[0]["statement"] == "CREATE INDEX t_a_idx ON t (a)" and s[0]["how"] == "copy", s
assert s[0]["cost_after"] * 2 <= s[0]["cost_before"]
assert d["statements"][0]["plan_source"].startswith("copy:")
PY
[ "$(md5sum <"$L")" = "$sum0" ] && [ "$(stat -c %Y.%y "$L")" = "$m0" ] || fail "the live SQLite file changed"
[ "$(sqlite3 "$L" "SELECT count(*) FROM t WHERE b = 'y'")" = 0 ] || fail "the UPDATE reached the live file"
echo "ok: SQLite on a copy, the live file's bytes and mtime unchanged"
