#!/bin/bash
# Samples under a real client (the sqlite3 CLI under `qprof run --sample`):
# the card number, password and e-mail address of the statements reach
# neither the store nor any report format; QPROF_REDACT extends the default
# set, and its "-defaults" line turns it off.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"

sql="CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, email TEXT, password TEXT, card TEXT);
INSERT INTO users(id, name, email, password, card) VALUES (1, 'ann', 'ann.lee@example.com', 'hunter2', '4111 1111 1111 1111');
SELECT id FROM users WHERE card = '4111111111111111' AND password = 'hunter2';
UPDATE users SET password = 'Tr0ub4dor' WHERE email = 'ann.lee@example.com';
SELECT name FROM users WHERE name = 'ann';"
secrets='4111|hunter2|Tr0ub4dor|ann\.lee@example\.com'
# In the reports, numbers carry every digit (durations to the nanosecond,
# docs/report-json.md), so a bare "4111" can be part of a duration there: the
# reports are searched for the card number's digit groups instead.
report_secrets='4111[ ]?1111|hunter2|Tr0ub4dor|ann\.lee@example\.com'

run_with() { # STORE [QPROF_REDACT]: the statements under `qprof run --sample`
  QPROF_REDACT="${2:-}" "$QPROF" run --store "$1" --sample -- sqlite3 "$T/app.db" "$sql" >/dev/null
  rm -f "$T/app.db"
}

# ---- the default set --------------------------------------------------------
run_with "$T/d.qp"
samples=$(sqlite3 "$T/d.qp" "SELECT sample FROM qp_query WHERE sample IS NOT NULL")
[ "$(printf '%s\n' "$samples" | grep -c .)" -ge 4 ] || fail "expected samples, got: $samples"
if printf '%s\n' "$samples" | grep -Eq "$secrets"; then fail "a secret in a stored sample: $samples"; fi
printf '%s\n' "$samples" | grep -Fxq "SELECT id FROM users WHERE card = '?' AND password = ?;" ||
  fail "redacted SELECT sample not as documented: $samples"
printf '%s\n' "$samples" | grep -Fq "VALUES (1, 'ann', '?', ?, '?')" ||
  fail "redacted INSERT sample not as documented: $samples"
# what is not a secret stays
printf '%s\n' "$samples" | grep -Fxq "SELECT name FROM users WHERE name = 'ann';" ||
  fail "a plain literal was redacted: $samples"
for fmt in text json csv html; do
  "$QPROF" report --store "$T/d.qp" --format "$fmt" --wide >"$T/report.$fmt" 2>/dev/null ||
    "$QPROF" report --store "$T/d.qp" --format "$fmt" >"$T/report.$fmt"
  if grep -Eq "$report_secrets" "$T/report.$fmt"; then fail "a secret in the $fmt report"; fi
done
grep -Fq "password = ?" "$T/report.json" || fail "the JSON report has no redacted sample"
echo "ok: default redaction (store, text, json, csv, html)"

# ---- extended and turned off -------------------------------------------------
run_with "$T/e.qp" "'ann'='<name>'"
sqlite3 "$T/e.qp" "SELECT sample FROM qp_query" | grep -Fxq "SELECT name FROM users WHERE name = '<name>';" ||
  fail "QPROF_REDACT rule not applied after the defaults"
if sqlite3 "$T/e.qp" "SELECT sample FROM qp_query" | grep -Eq "$secrets"; then
  fail "QPROF_REDACT replaced the default set instead of extending it"
fi
run_with "$T/o.qp" "-defaults"
sqlite3 "$T/o.qp" "SELECT sample FROM qp_query" | grep -Fq "password = 'hunter2'" ||
  fail "QPROF_REDACT=-defaults did not turn the default set off"
echo "ok: QPROF_REDACT extends the default set; -defaults turns it off"
