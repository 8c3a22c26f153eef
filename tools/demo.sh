#!/bin/bash
# The main job, from a fresh Debian 12 machine: install what is needed, build
# qprof, profile a sample workload with `qprof run` and print `qprof report`.
#   bash tools/demo.sh
# The workload is a small shop on the embedded SQLite default (python's
# sqlite3 module, timed from outside by the LD_PRELOAD shim). When a
# PostgreSQL server can be started here, pgbench runs against a throwaway
# cluster too, into the same profile store.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash tools/deps.sh
cmake -S . -B build/demo -DCMAKE_BUILD_TYPE=Release -DQPROF_BUILD_BENCH=OFF -DBUILD_TESTING=OFF >/dev/null
cmake --build build/demo -j "$(nproc)" >/dev/null
qprof=$root/build/demo/tools/qprof
work=$(mktemp -d /tmp/qprof-demo.XXXXXX)
chmod 755 "$work"
store=$work/profile.db
pgenv=$work/pg.env
cleanup() {
  [ -f "$pgenv" ] && sh tests/support/pgcluster.sh stop "$pgenv" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== profiling a sample SQLite workload (python3 + sqlite3) =="
"$qprof" run --store "$store" -- /usr/bin/python3 sql/demo/workload.py "$work/shop.db" 300

if command -v runuser >/dev/null && ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "== profiling pgbench on a throwaway PostgreSQL cluster =="
  if sh tests/support/pgcluster.sh start "$pgenv" >/dev/null; then
    set -a; . "$pgenv"; set +a
    pgbench -i -q -s 1 >/dev/null 2>&1
    "$qprof" run --store "$store" -- pgbench -n -c 4 -j 2 -t 500 -M prepared | grep -E "^(tps|number of transactions actually)" || true
  fi
fi

echo
echo "== qprof report --store $store =="
"$qprof" report --store "$store" --limit 15
