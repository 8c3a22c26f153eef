#!/bin/bash
# The fleet: three "hosts" flush into one PostgreSQL store at once. Each host
# is a network namespace made by this test (ip netns + a veth pair on a
# bridge; PostgreSQL, a private cluster of this test, listens on the bridge
# address and trusts that subnet), and runs, under `qprof run --store
# postgresql://BRIDGE:PORT/fleet` with QPROF_HOST set to its name, a pgbench
# (as role fleet_bench) and a python3 sqlite3 workload, both at once. Then:
# per host, per user and per application the store's totals are what each
# ran, and `qprof report --format json` across hosts and one per host agree
# with them and with each other. Where namespaces cannot be made (no root,
# no CAP_NET_ADMIN), the three hosts are three sets of processes on this
# machine with QPROF_HOST set, and the test says so. At the end, a run whose
# store is down exits with its command's status at once and leaves its data
# in the run directory, which `qprof collect --once` then writes.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
SCRIPT=$QP_TEST_SOURCE_DIR/tests/support/pgcluster.sh
TX=${QP_FLEET_TX:-25} # pgbench transactions per client (2 clients a host)
ID=$(($$ % 200 + 20))
NET=10.213.$ID
BR=qpfbr$ID
PORT=$((56000 + $$ % 3000))
ENVF=$T/pg.env
HOSTS="qpf${ID}a qpf${ID}b qpf${ID}c"
NETNS=0

fleet_cleanup() {
  set +e
  if [ "$NETNS" = 1 ]; then
    for h in $HOSTS; do ip netns del "$h" 2>/dev/null; done
    ip link del "$BR" 2>/dev/null
  fi
  [ -f "$ENVF" ] && sh "$SCRIPT" stop "$ENVF" >/dev/null 2>&1
  cleanup
}
trap fleet_cleanup EXIT

QP_PG_PORT=$PORT sh "$SCRIPT" start "$ENVF" >/dev/null
. "$ENVF"
PSQL="psql -X -q -v ON_ERROR_STOP=1 -h $PGHOST -p $PGPORT -U postgres"

# ---- the hosts: namespaces on a bridge, or the fallback --------------------
# QP_FLEET_NO_NETNS=1 takes the fallback on purpose (to test it).
if [ "${QP_FLEET_NO_NETNS:-0}" != 1 ] && ip netns add "qpf${ID}a" 2>"$T/netns.err"; then
  NETNS=1
  ip link add "$BR" type bridge
  ip addr add "$NET.1/24" dev "$BR"
  ip link set "$BR" up
  i=0
  for h in $HOSTS; do
    i=$((i + 1))
    [ "$i" = 1 ] || ip netns add "$h"
    ip link add "qpfv$ID$i" type veth peer name "qpfp$ID$i"
    ip link set "qpfp$ID$i" netns "$h"
    ip link set "qpfv$ID$i" master "$BR" up
    ip netns exec "$h" ip addr add "$NET.$((10 + i))/24" dev "qpfp$ID$i"
    ip netns exec "$h" ip link set "qpfp$ID$i" up
    ip netns exec "$h" ip link set lo up
  done
  ADDR=$NET.1
  echo "host all all $NET.0/24 trust" >>"$QP_PG_DIR/data/pg_hba.conf"
  echo "fleet: three network namespaces ($HOSTS) on bridge $BR, PostgreSQL on $ADDR:$PORT"
else
  ADDR=127.0.0.1
  [ -s "$T/netns.err" ] || echo "QP_FLEET_NO_NETNS=1" >"$T/netns.err"
  echo "fleet: cannot create network namespaces ($(head -c 200 "$T/netns.err")): falling back to" \
    "three sets of processes on this machine with QPROF_HOST set ($HOSTS)"
fi
sh "$SCRIPT" serverstop "$ENVF"
sh "$SCRIPT" serverstart "$ENVF" "-c listen_addresses='$ADDR'"
. "$ENVF"
on_host() { # HOST CMD...: runs CMD "on" HOST
  local h=$1
  shift
  if [ "$NETNS" = 1 ]; then ip netns exec "$h" env QPROF_HOST="$h" "$@"; else env QPROF_HOST="$h" "$@"; fi
}

$PSQL -d postgres -c "CREATE DATABASE fleet" -c "CREATE ROLE fleet_bench LOGIN"
for h in $HOSTS; do
  $PSQL -d postgres -c "CREATE DATABASE bench_$h OWNER fleet_bench"
  pgbench -q -i -s 1 -h "$PGHOST" -p "$PGPORT" -U fleet_bench "bench_$h" >"$T/init_$h.log" 2>&1 ||
    { cat "$T/init_$h.log" >&2; fail "pgbench -i on bench_$h"; }
done
STORE="postgresql://postgres@$ADDR:$PORT/fleet"
# the store exists before the hosts start (they would also create it together)
$QPROF report --store "$STORE" --format json >/dev/null 2>&1 || true
on_host "qpf${ID}a" pg_isready -q -h "$ADDR" -p "$PORT" -t 10 || fail "the store is not reachable from a host"

# ---- every host runs both workloads, all at once --------------------------
pids=""
for h in $HOSTS; do
  mkdir -p "$T/$h"
  on_host "$h" "$QPROF" run --store "$STORE" -- \
    pgbench -n -c 2 -t "$TX" -h "$ADDR" -p "$PORT" -U fleet_bench "bench_$h" \
    >"$T/$h/bench.out" 2>"$T/$h/bench.err" &
  pids="$pids $!"
  (cd "$T/$h" && on_host "$h" "$QPROF" run --store "$STORE" -- python3 "$DATA/py_sqlite.py" "$T/$h/py.db" \
    >"$T/$h/py.out" 2>"$T/$h/py.err") &
  pids="$pids $!"
done
for p in $pids; do
  wait "$p" || { cat "$T"/*/bench.err "$T"/*/py.err >&2; fail "a workload under qprof run failed"; }
done
for h in $HOSTS; do
  if grep -q "qprof" "$T/$h/py.err" "$T/$h/bench.err"; then
    cat "$T/$h/py.err" "$T/$h/bench.err" >&2
    fail "$h: qprof run said something"
  fi
done

q() { $PSQL -d fleet -At -c "$1"; }
dump() {
  echo "--- the store (level 3):" >&2
  q "SELECT s.host, s.user_name, s.application, s.database, sum(s.calls), q.query FROM qprof.qp_stats s
     JOIN qprof.qp_query q USING (fingerprint) WHERE s.level = 3 GROUP BY 1, 2, 3, 4, 6 ORDER BY 1, 4, 6" >&2
}
fail() {
  [ -n "${PSQL:-}" ] && { dump || true; }
  echo "FAIL: $*" >&2
  exit 1
}
# The tpcb-like transaction's five statements (pgbench's own start-up
# queries aside): 5 per transaction; python's: 51 inserts, 25 lookups.
TPCB="(q.query LIKE 'update pgbench_accounts %' OR q.query LIKE 'select abalance from pgbench_accounts %' \
  OR q.query LIKE 'update pgbench_tellers %' OR q.query LIKE 'update pgbench_branches %' \
  OR q.query LIKE 'insert into pgbench_history(%')"
PY="(q.query = 'insert into kv(k, v) values (?, ?)' OR q.query = 'select v from kv where k = ?')"
JOIN="FROM qprof.qp_stats s JOIN qprof.qp_query q USING (fingerprint) WHERE s.level = 3"
want_bench=$((5 * 2 * TX))
want_py=$((51 + 25))
for h in $HOSTS; do
  # per run: each host's pgbench and python wrote their own database
  got=$(q "SELECT coalesce(sum(s.calls), 0) $JOIN AND $TPCB AND s.database = 'bench_$h'")
  [ "$got" = "$want_bench" ] || fail "$h: pgbench ran $want_bench tpcb statements, the store has $got"
  got=$(q "SELECT coalesce(sum(s.calls), 0) $JOIN AND $PY AND s.database LIKE '%/$h/py.db'")
  [ "$got" = "$want_py" ] || fail "$h: python ran $want_py statements, the store has $got"
done
echo "ok: per run: $want_bench pgbench and $want_py python statements from each host"

# Host, user and application are filled by the shim (QPROF_HOST, the
# PostgreSQL role or OS user, application_name or the program's name);
# QP_FLEET_DIMS=0 checks the totals per run alone.
if [ "${QP_FLEET_DIMS:-1}" = 1 ]; then
  for h in $HOSTS; do
    got=$(q "SELECT coalesce(sum(s.calls), 0) $JOIN AND $TPCB AND s.host = '$h' \
             AND s.user_name = 'fleet_bench' AND s.application = 'pgbench'")
    [ "$got" = "$want_bench" ] || fail "$h: host/user/application of pgbench: $got of $want_bench"
    got=$(q "SELECT coalesce(sum(s.calls), 0) $JOIN AND $PY AND s.host = '$h' \
             AND s.user_name = '$(id -un)' AND s.application LIKE 'python3%'")
    [ "$got" = "$want_py" ] || fail "$h: host/user/application of python: $got of $want_py"
  done
  got=$(q "SELECT coalesce(sum(s.calls), 0) $JOIN AND $TPCB AND s.user_name = 'fleet_bench'")
  [ "$got" = $((3 * want_bench)) ] || fail "user fleet_bench: $got of $((3 * want_bench))"
  got=$(q "SELECT coalesce(sum(s.calls), 0) $JOIN AND $PY AND s.application LIKE 'python3%'")
  [ "$got" = $((3 * want_py)) ] || fail "application python3: $got of $((3 * want_py))"
  echo "ok: per host, user and application"

  # the report: across hosts, and one per host, agree with the store and each other
  $QPROF report --store "$STORE" --format json --limit 100000 >"$T/all.json"
  $QPROF report --store "$STORE" --format json --limit 100000 --by host >"$T/by.json"
  sum=0
  for h in $HOSTS; do
    $QPROF report --store "$STORE" --format json --limit 100000 --host "$h" >"$T/$h.json"
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["calls"])' "$T/$h.json")
    sql=$(q "SELECT sum(calls) FROM qprof.qp_stats WHERE level = 3 AND host = '$h'")
    [ "$n" = "$sql" ] || fail "report --host $h: $n calls, the store $sql"
    by=$(python3 -c 'import json,sys; print(sum(e["calls"] for e in json.load(open(sys.argv[1]))["queries"] if e.get("host") == sys.argv[2]))' "$T/by.json" "$h")
    [ "$by" = "$n" ] || fail "report --by host: $by calls for $h, report --host $h: $n"
    sum=$((sum + n))
  done
  all=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["totals"]["calls"])' "$T/all.json")
  [ "$all" = "$sum" ] || fail "the report across hosts has $all calls, the three per host $sum"
  echo "ok: report across hosts ($all calls) = sum of the three per host"
else
  echo "fleet: QP_FLEET_DIMS=0: host, user and application are not checked"
fi

# ---- the store down at the end: qprof run exits at once, keeps the data ----
sh "$SCRIPT" serverstop "$ENVF"
h=qpf${ID}a
set +e
t0=$(date +%s%N)
TMPDIR=$T on_host "$h" "$QPROF" run --store "$STORE" -- sh -c "python3 '$DATA/py_sqlite.py' '$T/down.db' >/dev/null; exit 7" \
  2>"$T/down.err"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
set -e
sed 's/^/  /' "$T/down.err"
[ "$rc" = 7 ] || { cat "$T/down.err" >&2; fail "qprof run with the store down exited $rc, not the command's 7"; }
grep -q "left behind (the store could not be written; nothing recorded is lost" "$T/down.err" || fail "qprof run did not say it kept the data"
dir=$(sed -n "s/^qprof run: \(.*\) is left behind.*/\1/p" "$T/down.err")
[ -d "$dir" ] || fail "no run directory left: $(cat "$T/down.err")"
echo "ok: store down: qprof run exited 7 after $ms ms (the command included) and left $dir"
sh "$SCRIPT" serverstart "$ENVF" "-c listen_addresses='$ADDR'"
on_host "$h" "$QPROF" collect --run-dir "$dir" --store "$STORE" --once
got=$(q "SELECT coalesce(sum(s.calls), 0) $JOIN AND $PY AND s.database = '$T/down.db'")
[ "$got" = "$want_py" ] || fail "after qprof collect: $got of the $want_py statements run while the store was down"
echo "ok: qprof collect wrote the $want_py statements kept while the store was down"
