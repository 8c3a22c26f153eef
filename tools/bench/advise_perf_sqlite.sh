#!/bin/bash
# docs/performance.md, "Index advisor": qprof advise --store --top 20 on a
# 1M-row SQLite file (the same shapes as advise_perf.sh). Each statement is
# advised on its own VACUUM INTO copy of the file. Usage:
# advise_perf_sqlite.sh DIR (the file and the store are made there once);
# QPROF=path/to/qprof; SAMPLE=--sample records samples (the shim's sqlite3
# needs QPROF_PRELOAD when qprof is not installed).
set -euo pipefail
D=${1:?usage: advise_perf_sqlite.sh DIR}
Q=${QPROF:-qprof}
F=$D/advperf.db
if [ ! -f "$F" ]; then
sqlite3 "$F" <<'SQL'
CREATE TABLE big (id INTEGER PRIMARY KEY, c1 INT, c2 INT, c3 INT, c4 INT, c5 INT, c6 INT, c7 INT,
  c8 INT, c9 INT, c10 INT, s TEXT, ts INT, flag INT);
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 1000000)
INSERT INTO big SELECT n, n % 50000, n % 20000, n % 7000, n % 3000, n % 1000, n % 500, n % 100,
  (n * 31) % 40000, (n * 17) % 60000, (n * 13) % 80000, 'k' || n, 1704067200 + n, n % 20 <> 0 FROM g;
CREATE TABLE side (id INTEGER PRIMARY KEY, big_id INT, v INT);
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200000)
INSERT INTO side SELECT n, 1 + (n * 7) % 1000000, n % 10 FROM g;
SQL
fi
rm -f "$D/advperf.qp"
args=()
for i in 1 2 3 4 5 6 7 8 9 10; do args+=("SELECT * FROM big WHERE c$i = 42;"); done
for i in 1 2 3 4 5; do args+=("SELECT id FROM big WHERE c$i = 7 ORDER BY ts DESC LIMIT 10;"); done
args+=("SELECT * FROM big WHERE lower(s) = 'k77';")
args+=("SELECT * FROM big WHERE s LIKE 'k4242%';")
args+=("SELECT b.id, s.v FROM side s JOIN big b ON b.id = s.big_id WHERE s.v = 3 AND s.id < 1000;")
args+=("SELECT count(*) FROM big WHERE flag = 1;")
args+=("SELECT * FROM big WHERE c6 = 3 AND c7 = 3;")
for r in 1 2; do "$Q" run ${SAMPLE:-} --store "$D/advperf.qp" -- sqlite3 "$F" "${args[@]}" >/dev/null; done
for run in 1 2 3; do
  /usr/bin/time -f "wall %e s, user %U s, sys %S s" "$Q" advise --dsn "sqlite://$F" \
    --store "$D/advperf.qp" --top 20 ${ADV_ARGS:-} --format json >"$D/advperf.json"
done
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(len(d["statements"]), "statements,", len(d["suggestions"]), "suggestions,", sum(s["status"] != "advised" for s in d["statements"]), "not advised"); print([s["columns"] for s in d["suggestions"]])' "$D/advperf.json"
