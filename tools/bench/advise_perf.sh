#!/bin/bash
# docs/performance.md, "Index advisor": qprof advise --store --top 20 on a
# 1M-row database. Usage: advise_perf.sh ENVFILE (a tests/support/pgcluster.sh
# env file; the cluster needs HypoPG installable); QPROF=path/to/qprof;
# SAMPLE=--sample records samples, ADV_ARGS=--analyze runs each query.
set -euo pipefail
set -a; . "${1:?usage: advise_perf.sh ENVFILE}"; set +a
Q=${QPROF:-qprof}
DB=advperf
if ! psql -X -At -d $DB -c "select 1" >/dev/null 2>&1; then
createdb $DB
psql -X -q -v ON_ERROR_STOP=1 -d $DB <<'SQL'
CREATE EXTENSION hypopg;
CREATE TABLE big (id int PRIMARY KEY, c1 int, c2 int, c3 int, c4 int, c5 int, c6 int, c7 int, c8 int,
  c9 int, c10 int, s text, ts timestamptz, flag bool);
INSERT INTO big SELECT g, g % 50000, g % 20000, g % 7000, g % 3000, g % 1000, g % 500, g % 100,
  (g * 31) % 40000, (g * 17) % 60000, (g * 13) % 80000, 'k' || g, timestamptz '2024-01-01' + g * interval '1 second', g % 20 <> 0
  FROM generate_series(1, 1000000) g;
CREATE TABLE side (id int, big_id int, v int);
INSERT INTO side SELECT g, 1 + (g * 7) % 1000000, g % 10 FROM generate_series(1, 200000) g;
ANALYZE;
SQL
fi
rm -f /tmp/advperf.qp
args=()
for i in 1 2 3 4 5 6 7 8 9 10; do args+=(-c "SELECT * FROM big WHERE c$i = 42"); done
for i in 1 2 3 4 5; do args+=(-c "SELECT id FROM big WHERE c$i = 7 ORDER BY ts DESC LIMIT 10"); done
args+=(-c "SELECT * FROM big WHERE lower(s) = 'k77'")
args+=(-c "SELECT * FROM big WHERE s LIKE 'k4242%'")
args+=(-c "SELECT b.id, s.v FROM side s JOIN big b ON b.id = s.big_id WHERE s.id < 100")
args+=(-c "SELECT count(*) FROM big WHERE flag")
args+=(-c "SELECT * FROM big WHERE c6 = 3 AND c7 = 3")
for r in 1 2; do "$Q" run ${SAMPLE:-} --store /tmp/advperf.qp -- psql -X -q -d $DB "${args[@]}" >/dev/null; done
for run in 1 2 3; do
  /usr/bin/time -f "wall %e s, user %U s, sys %S s" "$Q" advise --dsn "host=$PGHOST port=$PGPORT user=postgres dbname=$DB" \
    --store /tmp/advperf.qp --top 20 ${ADV_ARGS:-} --format json > /tmp/advperf.json
done
python3 -c 'import json; d=json.load(open("/tmp/advperf.json")); print(len(d["statements"]), "statements,", len(d["suggestions"]), "suggestions"); print([s["columns"] for s in d["suggestions"]])'
