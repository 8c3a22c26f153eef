#!/bin/bash
# A collector killed (SIGKILL) while the COMMIT of its harvest into a
# PostgreSQL store is in doubt, then started again: the store's totals are
# exact whether that transaction committed or not, and while it is still in
# progress the new collector waits for it (docs/shim.md, "A collector killed
# while a flush is in doubt"). The COMMIT is held at the in-doubt point by
# the server, not by a hook in qprof: a deferred constraint trigger on
# qprof.qp_stats waits at COMMIT for an advisory lock the test holds. Then
# the test kills the collector, and either lets the lock go (the transaction
# commits, nobody hearing it) or cancels the waiting backend (it aborts).
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"
pg_setup collect_doubt
STORE="postgresql:///$DB?host=$PGHOST&port=$PGPORT&user=$PGUSER"
RUN=$T/run
mkdir -m 0700 "$RUN"
LOG=$T/collect.log
CPID=""
HPID=""
LPID=""
stop_all() {
  [ -n "$CPID" ] && kill -9 "$CPID" 2>/dev/null || true
  [ -n "$HPID" ] && kill "$HPID" 2>/dev/null || true
  [ -n "$LPID" ] && kill "$LPID" 2>/dev/null || true
  cleanup
}
trap stop_all EXIT

sql() { psql -X -q -At -d "$DB" -c "$1"; }
start_collector() {
  "$QPROF" collect --run-dir "$RUN" --store "$STORE" --flush-ms 100 2>>"$LOG" &
  CPID=$!
}
# work N TAG: N processes under the shim, each one statement "select ? as TAG"
work() {
  for i in $(seq 1 "$1"); do
    LD_PRELOAD="$SHIM" QPROF_RUN_DIR="$RUN" psql -X -q -At -d "$DB" -c "SELECT $i AS $2" >/dev/null
  done
}
calls_of() { sql "SELECT coalesce(sum(calls), 0) FROM qprof.qp_summary WHERE query = 'select ? as $1'" 2>/dev/null || echo 0; }
wait_calls() { # TAG N: until the store has N calls of it (20 s at most)
  for _ in $(seq 1 200); do
    [ "$(calls_of "$1")" = "$2" ] && return 0
    sleep 0.1
  done
  cat "$LOG" >&2
  fail "'select ? as $1': expected $2 calls, the store has $(calls_of "$1")"
}
expect() { # TAG N WHAT: exactly N, now and a little later (nothing written twice)
  wait_calls "$1" "$2"
  sleep 0.5
  [ "$(calls_of "$1")" = "$2" ] || fail "$3: 'select ? as $1' has $(calls_of "$1") calls, not $2"
  echo "ok: $3: $2 x select ? as $1"
}
# a live process across every kill: its segment's base advances (not removed)
mkfifo "$T/live.in"
LD_PRELOAD="$SHIM" QPROF_RUN_DIR="$RUN" psql -X -q -At -d "$DB" -f "$T/live.in" >"$T/live.out" &
LPID=$!
exec 3>"$T/live.in"
LIVE=0
live() { # N more statements "select ? as live" by the live process
  for _ in $(seq 1 "$1"); do
    LIVE=$((LIVE + 1))
    echo "SELECT $LIVE AS live;" >&3
  done
  for _ in $(seq 1 100); do
    [ "$(wc -l <"$T/live.out")" = "$LIVE" ] && return 0
    sleep 0.1
  done
  fail "the live psql ran $(wc -l <"$T/live.out") of $LIVE statements"
}
waiting_commit() {
  sql "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND \
       query = 'COMMIT' AND wait_event_type = 'Lock'"
}
hold() { # takes the advisory lock the trigger waits for
  psql -X -q -At -d "$DB" -c "SELECT pg_advisory_lock(4242), pg_sleep(600)" >/dev/null 2>&1 &
  HPID=$!
  for _ in $(seq 1 100); do
    [ "$(sql "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted")" -ge 1 ] &&
      return 0
    sleep 0.1
  done
  fail "the advisory lock was not taken"
}
release() {
  sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(600)%' \
       AND pid <> pg_backend_pid()" >/dev/null
  wait "$HPID" 2>/dev/null || true
  HPID=""
}
# Runs TAG's work while the lock is held, until the collector's COMMIT
# waits for it with its record on disk; then kills the collector.
kill_in_doubt() {
  hold
  # stopped meanwhile, so that its next harvest takes all of it at once
  kill -STOP "$CPID"
  work 3 "$1"
  live 2
  kill -CONT "$CPID"
  for _ in $(seq 1 200); do
    [ "$(waiting_commit)" -ge 1 ] && break
    sleep 0.1
  done
  [ "$(waiting_commit)" -ge 1 ] || { cat "$LOG" >&2; fail "$1: the collector's COMMIT never waited"; }
  [ -f "$RUN/.doubt" ] || fail "$1: no harvest record while the COMMIT is in doubt"
  [ "$(stat -c %a "$RUN/.doubt")" = 600 ] || fail "$1: the record's mode is $(stat -c %a "$RUN/.doubt")"
  grep -q "^xid [0-9]" "$RUN/.doubt" || fail "$1: the record has no transaction id"
  kill -9 "$CPID"
  wait "$CPID" 2>/dev/null || true
  CPID=""
  echo "ok: $1: collector killed with its COMMIT in doubt"
}
settled() { # WHAT: the record and the images it named are gone
  [ ! -e "$RUN/.doubt" ] || fail "$1: the harvest record is still there"
  ! ls -a "$RUN" | grep -q '\.pend$' || fail "$1: .pend files left: $(ls -a "$RUN")"
}

# ---- a store, a trigger that holds COMMIT, a first harvest -------------------
start_collector
work 2 tag_a
live 3
expect tag_a 2 "first harvest"
expect live 3 "first harvest"
sql "CREATE FUNCTION public.qp_hold() RETURNS trigger LANGUAGE plpgsql AS \
     \$\$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NULL; END \$\$;
     CREATE CONSTRAINT TRIGGER qp_hold AFTER INSERT OR UPDATE ON qprof.qp_stats \
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION public.qp_hold()"

# ---- committed: the transaction commits after its collector died ------------
kill_in_doubt tag_b
release
for _ in $(seq 1 100); do [ "$(waiting_commit)" = 0 ] && break; sleep 0.1; done
[ "$(calls_of tag_b)" = 3 ] || fail "committed: the held transaction did not commit ($(calls_of tag_b))"
# a store that is not the one the record names cannot settle it
createdb "${DB}_other"
set +e
out=$("$QPROF" collect --once --run-dir "$RUN" --store "postgresql:///${DB}_other?host=$PGHOST&port=$PGPORT&user=$PGUSER" 2>&1)
rc=$?
set -e
dropdb "${DB}_other"
[ "$rc" = 1 ] || fail "another store: exit $rc: $out"
printf '%s\n' "$out" | grep -q "not store" || fail "another store: $out"
[ -f "$RUN/.doubt" ] || fail "another store: the record was removed"
echo "ok: another store refuses to settle the record: $(printf '%s' "$out" | head -n 1)"
# an unreachable store: the record waits
set +e
out=$("$QPROF" collect --once --run-dir "$RUN" --store "postgresql:///$DB?host=$T/nowhere&port=1" 2>&1)
rc=$?
set -e
[ "$rc" = 1 ] && [ -f "$RUN/.doubt" ] || fail "unreachable store: exit $rc: $out"
echo "ok: an unreachable store leaves the record"
"$QPROF" collect --once --run-dir "$RUN" --store "$STORE" 2>>"$LOG" || { cat "$LOG" >&2; fail "committed: collect --once"; }
grep -q "it committed" "$LOG" || fail "committed: not said: $(cat "$LOG")"
settled committed
expect tag_b 3 "committed, collector killed"
expect live 5 "committed, collector killed"
expect tag_a 2 "committed, collector killed"

# ---- not committed: the waiting backend is cancelled, the transaction aborts -
start_collector
kill_in_doubt tag_c
sql "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database() \
     AND query = 'COMMIT' AND wait_event_type = 'Lock'" >/dev/null
for _ in $(seq 1 100); do [ "$(waiting_commit)" = 0 ] && break; sleep 0.1; done
release
[ "$(calls_of tag_c)" = 0 ] || fail "aborted: the cancelled transaction committed"
: >"$LOG"
"$QPROF" collect --once --run-dir "$RUN" --store "$STORE" 2>>"$LOG" || { cat "$LOG" >&2; fail "aborted: collect --once"; }
grep -q "did not commit" "$LOG" || fail "aborted: not said: $(cat "$LOG")"
settled aborted
expect tag_c 3 "not committed, collector killed"
expect live 7 "not committed, collector killed"
expect tag_b 3 "not committed, collector killed"

# ---- still in progress: the new collector waits for it ----------------------
start_collector
kill_in_doubt tag_d
: >"$LOG"
start_collector
sleep 6.5 # past QP_REC_WAIT_NS (5 s): the collector says so and asks again
[ "$(calls_of tag_d)" = 0 ] || fail "in progress: written while the transaction is undecided"
[ -f "$RUN/.doubt" ] || fail "in progress: the record went before the outcome was known"
release
expect tag_d 3 "in progress, then committed"
expect live 9 "in progress, then committed"
settled "in progress"
grep -q "still in progress" "$LOG" || fail "in progress: not said: $(cat "$LOG")"
work 2 tag_e
live 1
expect tag_e 2 "after the settling"
expect live 10 "after the settling"
kill "$CPID"
wait "$CPID" || fail "the collector exited $?"
CPID=""

# ---- a damaged record is refused with a message ------------------------------
work 1 tag_f
for damage in "garbage" "$(printf 'qprof harvest record 1\nxid 12\nstore x\ncheck 0000000000000000')"; do
  printf '%s\n' "$damage" >"$RUN/.doubt"
  chmod 600 "$RUN/.doubt"
  set +e
  out=$("$QPROF" collect --once --run-dir "$RUN" --store "$STORE" 2>&1)
  rc=$?
  set -e
  [ "$rc" = 1 ] || fail "damaged record: exit $rc: $out"
  printf '%s\n' "$out" | grep -q "refused harvest record $RUN/.doubt" || fail "damaged record: $out"
done
echo "ok: a damaged record is refused: $(printf '%s' "$out" | head -c 160)"
[ "$(calls_of tag_f)" = 0 ] || fail "damaged record: harvested anyway"
rm "$RUN/.doubt"
"$QPROF" collect --once --run-dir "$RUN" --store "$STORE"
expect tag_f 1 "after the damaged record is removed"
exec 3>&-
wait "$LPID" || true
LPID=""
"$QPROF" collect --once --run-dir "$RUN" --store "$STORE"
expect live 10 "at the end"
echo "PASS"
