# Shared by tests/integration/test_shim_*.sh: sourced, never run on its own.
# Gives: $SHIM, $QPROF, $T (a private temp dir, removed on exit), $DATA (this
# directory), fail, calls STORE QUERY, expect_calls STORE QUERY N, shim_env
# (runs a command with the shim preloaded), pg_setup (the fixture cluster and a
# database of the test's own: $DB).
set -euo pipefail
SHIM=${QP_TEST_SHIM:?QP_TEST_SHIM is not set}
QPROF=${QPROF_BIN:?QPROF_BIN is not set}
DATA=${QP_TEST_SOURCE_DIR:?}/tests/data/shim
[ -f "$SHIM" ] || { echo "FAIL: no shim at $SHIM" >&2; exit 1; }
T=$(mktemp -d /tmp/qprof-shimtest.XXXXXX)
DB=""
cleanup() {
  if [ -n "$DB" ]; then dropdb --if-exists "$DB" >/dev/null 2>&1 || true; fi
  rm -rf "$T"
}
trap cleanup EXIT
# qprof run makes its run directory under TMPDIR; one it keeps (the store
# could not be written: the data waits there for qprof collect) goes with $T
export TMPDIR=$T
# The store is read with the system sqlite3: never under the shim.
unset LD_PRELOAD QPROF_RUN_DIR QPROF_SEGMENT_MB QPROF_STORE QPROF_LOG QPROF_IGNORE QPROF_RULES QPROF_SAMPLE QPROF_FLUSH_MS QPROF_PIPELINE_FLUSH \
  QPROF_SLOW_MS QPROF_REDACT QPROF_BUCKET_S QPROF_PRELOAD || true

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# calls STORE NORMALIZED_QUERY: how many calls the store holds for that query.
calls() {
  local q
  q=$(printf '%s' "$2" | sed "s/'/''/g")
  [ -f "$1" ] || { echo 0; return; }
  sqlite3 "$1" "SELECT coalesce(sum(calls), 0) FROM qp_summary WHERE query = '$q'"
}

expect_calls() { # STORE QUERY N [what]
  local got
  got=$(calls "$1" "$2")
  [ "$got" = "$3" ] || {
    echo "--- store $1:" >&2
    sqlite3 "$1" "SELECT calls, backend, database, query FROM qp_summary ORDER BY calls DESC" >&2 || true
    fail "${4:-}: '$2': expected $3 calls, the store has $got"
  }
  echo "ok: ${4:-} $3 x $2"
}

# total_calls STORE: every call in the store.
total_calls() {
  [ -f "$1" ] || { echo 0; return; }
  sqlite3 "$1" "SELECT coalesce(sum(calls), 0) FROM qp_summary"
}

# shim_env STORE CMD...: runs CMD under 'qprof run' (the shim preloaded,
# qprof run collecting into STORE); CMD's output and exit status pass through.
shim_env() {
  local store=$1
  shift
  "$QPROF" run --store "$store" -- "$@"
}

# preload_env RUN_DIR CMD...: runs CMD with only the shim preloaded, recording
# into segments in RUN_DIR (created 0700), no collector: what the program
# itself sees of the shim. 'collect RUN_DIR STORE' harvests it afterwards.
preload_env() {
  local dir=$1
  shift
  mkdir -p -m 0700 "$dir"
  LD_PRELOAD="$SHIM" QPROF_RUN_DIR="$dir" "$@"
}
collect() { # RUN_DIR STORE
  "$QPROF" collect --once --run-dir "$1" --store "$2"
}

pg_setup() { # NAME: loads the fixture's environment and creates database NAME_$$
  # shellcheck disable=SC1090
  set -a
  . "${QP_TEST_PGENV:?}"
  set +a
  DB="$1_$$"
  createdb "$DB"
}
