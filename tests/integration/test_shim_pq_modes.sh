#!/bin/bash
# The libpq paths the real clients of test_shim_pg.sh do not take: single-row
# mode, PQexecParams, PQprepare + PQdescribePrepared + PQexecPrepared, a
# pipeline with a failing query, a multi-statement PQsendQuery, several
# connections in turn and one opened after another was closed (the shim's
# per-thread cache of connection states, shim_pq.c). The client is
# tests/data/shim/pq_client.c, built here with the system compiler.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"
pg_setup shim_pqmodes
cc -O1 -o pq_client "$DATA/pq_client.c" $(pkg-config --cflags --libs libpq) || fail "cannot build pq_client"
./pq_client "dbname=$DB" >plain.out 2>&1 || fail "pq_client: $(cat plain.out)"
shim_env "$T/s.qp" ./pq_client "dbname=$DB" >shim.out 2>&1 || fail "pq_client under the shim: $(cat shim.out)"
cmp plain.out shim.out || fail "output differs under the shim"
S=$T/s.qp
expect_calls "$S" "select g as single from generate_series(?, ?) as g" 3 "single-row mode"
r=$(sqlite3 "$S" "SELECT rows FROM qp_summary WHERE query = 'select g as single from generate_series(?, ?) as g'")
[ "$r" = 150 ] || fail "single-row mode: rows $r, expected 150"
expect_calls "$S" "select ?::int + ? as params" 4 "PQexecParams"
expect_calls "$S" "select ?::int * ? as prepared" 5 "PQexecPrepared"
expect_calls "$S" "select ? as pipe_ok" 1 "pipeline"
expect_calls "$S" "select ? / ? as pipe_fails" 1 "pipeline"
expect_calls "$S" "select ? as pipe_skipped" 0 "pipeline (aborted: never ran)"
e=$(sqlite3 "$S" "SELECT DISTINCT error_codes FROM qp_stats WHERE errors > 0")
[ "$e" = "22012:1" ] || fail "pipeline: error codes '$e'"
for q in "select ? as m1" "select ? as m2" "select ? as m3"; do expect_calls "$S" "$q" 1 "multi-statement"; done
expect_calls "$S" "select ?::int + ? as on_first" 6 "first connection's s"
expect_calls "$S" "select ?::int + ? as on_second" 6 "second connection's s"
expect_calls "$S" "select ?::int + ? as other_name" 6 "first connection's t"
expect_calls "$S" "select ?::int + ? as after_reconnect" 3 "s of a connection opened after one was closed"
[ "$(total_calls "$S")" = 38 ] || fail "38 statements ran, the store has $(total_calls "$S")"
echo "PASS"
