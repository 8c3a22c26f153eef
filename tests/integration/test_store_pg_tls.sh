#!/bin/bash
# TLS and passwords for the PostgreSQL store, as libpq does them, on a
# PRIVATE cluster of this test (port QP_PG_PORT + 2, 54331 without it) that
# listens on 127.0.0.1 with ssl=on (a self-signed certificate the test makes
# with openssl), password_encryption=scram-sha-256 and a pg_hba.conf that
# takes TCP connections only as `hostssl ... scram-sha-256` (the unix
# socket stays trusted, for the test's own psql):
# - `qprof collect --once` and `qprof report` with sslmode=require and the
#   password in the location, in PGPASSWORD, and in a PGPASSFILE (0600);
#   verify-full against the server's own certificate as the CA: each writes
#   and reads the store, the server logs each as SSL with scram-sha-256;
# - verify-full against another CA fails with libpq's "certificate verify
#   failed"; a wrong password fails with "password authentication failed";
#   sslmode=disable is refused by pg_hba ("no encryption");
# - the password is in no output, no log (QPROF_LOG), no error message and
#   no file the runs left (every file under the test's directory but the
#   passfile, and the cluster's directory, are searched for it).
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
SCRIPT=$QP_TEST_SOURCE_DIR/tests/support/pgcluster.sh
PORT=$((${QP_PG_PORT:-54329} + 2))
ENVF=$T/pg.env
command -v openssl >/dev/null || fail "no openssl (tools/deps.sh installs it)"
tls_cleanup() {
  set +e
  [ -f "$ENVF" ] && sh "$SCRIPT" stop "$ENVF" >/dev/null 2>&1
  cleanup
}
trap tls_cleanup EXIT

QP_PG_PORT=$PORT sh "$SCRIPT" start "$ENVF" >/dev/null
# shellcheck disable=SC1090
. "$ENVF"
CL=$QP_PG_DIR
PW="Qp5ECRET$$x" # the secret searched for afterwards
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$CL/server.key" -out "$CL/server.crt" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=other-ca" \
  -keyout "$T/other.key" -out "$T/other.crt" 2>/dev/null
chown postgres "$CL/server.key" "$CL/server.crt"
chmod 0600 "$CL/server.key"
cp "$CL/server.crt" "$T/ca.crt"
cat >"$CL/data/pg_hba.conf" <<HBA
local   all all                trust
hostssl all all 127.0.0.1/32   scram-sha-256
HBA
sh "$SCRIPT" serverstop "$ENVF"
sh "$SCRIPT" serverstart "$ENVF" "-c listen_addresses='127.0.0.1' -c ssl=on -c ssl_cert_file='$CL/server.crt' \
-c ssl_key_file='$CL/server.key' -c password_encryption=scram-sha-256 -c log_connections=on"
# shellcheck disable=SC1090
. "$ENVF"
PSQL="psql -X -q -v ON_ERROR_STOP=1 -h $PGHOST -p $PGPORT -U postgres -d postgres"
$PSQL -c "CREATE ROLE u LOGIN PASSWORD '$PW'" -c "CREATE DATABASE qtls OWNER u"
[ "$($PSQL -At -c "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'u'")" = "SCRAM-SHA-256$" ] ||
  fail "the role's password is not a SCRAM verifier"

O=$T/out # every output and log of qprof goes here
mkdir -p "$O"
export QPROF_LOG=$O/qprof.log
BASE="host=127.0.0.1 port=$PGPORT user=u dbname=qtls"
n=0
# write_read NAME LOCATION [ENV=...]: records one statement under the shim,
# collects it into the store at LOCATION and reads the report back.
write_read() {
  local name=$1 loc=$2
  shift 2
  n=$((n + 1))
  preload_env "$T/run_$name" sqlite3 :memory: "select $n as tls_q" >/dev/null
  env "$@" "$QPROF" collect --once --run-dir "$T/run_$name" --store "$loc" >"$O/$name.collect.out" \
    2>"$O/$name.collect.err" || fail "$name: qprof collect: $(cat "$O/$name.collect.err")"
  env "$@" "$QPROF" report --store "$loc" --format json >"$O/$name.report.json" 2>"$O/$name.report.err" ||
    fail "$name: qprof report: $(cat "$O/$name.report.err")"
  local got
  got=$(python3 -c 'import json,sys; print(sum(q["calls"] for q in json.load(open(sys.argv[1]))["queries"] if q["query"] == "select ? as tls_q"))' \
    "$O/$name.report.json")
  [ "$got" = "$n" ] || fail "$name: the report has $got calls of select ? as tls_q, not $n"
  echo "ok: $name: collect and report over TLS with a password ($got calls)"
}
write_read dsn "$BASE sslmode=require password=$PW"
write_read pgpassword "$BASE sslmode=require" PGPASSWORD="$PW"
printf '127.0.0.1:%s:qtls:u:%s\n' "$PGPORT" "$PW" >"$T/passfile"
chmod 0600 "$T/passfile"
write_read passfile "$BASE sslmode=require" PGPASSFILE="$T/passfile"
write_read verify_full "$BASE sslmode=verify-full sslrootcert=$T/ca.crt" PGPASSFILE="$T/passfile"
# qprof run with the password in --store: the command's environment has the
# location without it (a program that prints its environment must not print
# the password), and the collector still writes the store with it.
"$QPROF" run --store "$BASE sslmode=require password=$PW" -- \
  sh -c 'env; sqlite3 :memory: "select 1 as tls_run"' >"$O/run.out" 2>"$O/run.err" ||
  fail "qprof run with a password in --store: $(cat "$O/run.err")"
grep -q "^QPROF_STORE=.*password=\*\*\*" "$O/run.out" ||
  fail "qprof run: the command's QPROF_STORE is not the location without its password: $(grep QPROF_STORE "$O/run.out")"
got=$("$QPROF" report --store "$BASE sslmode=require password=$PW" --format json 2>"$O/run.report.err" |
  python3 -c 'import json,sys; print(sum(q["calls"] for q in json.load(sys.stdin)["queries"] if q["query"] == "select ? as tls_run"))')
[ "$got" = 1 ] || fail "qprof run with a password in --store: $got calls of select ? as tls_run in the store, not 1"
echo "ok: qprof run: the store written with the password, the command's environment without it"
# the server saw TLS and SCRAM for role u (log_connections)
grep -q 'connection authenticated: identity="u" method=scram-sha-256' "$CL/server.log" ||
  fail "the server did not log a scram-sha-256 authentication of u"
grep -q 'connection authorized: user=u database=qtls.*SSL enabled' "$CL/server.log" ||
  fail "the server did not log an SSL connection of u"
echo "ok: the server logged u's connections as SSL with scram-sha-256"

# refuse NAME WANT LOCATION [ENV=...]: collect and report both fail, saying WANT
refuse() {
  local name=$1 want=$2 loc=$3
  shift 3
  preload_env "$T/run_$name" sqlite3 :memory: "select 0 as tls_refused" >/dev/null
  for verb in collect report; do
    set +e
    if [ "$verb" = collect ]; then
      env "$@" "$QPROF" collect --once --run-dir "$T/run_$name" --store "$loc" >"$O/$name.$verb.out" 2>"$O/$name.$verb.err"
    else
      env "$@" "$QPROF" report --store "$loc" >"$O/$name.$verb.out" 2>"$O/$name.$verb.err"
    fi
    local rc=$?
    set -e
    [ "$rc" != 0 ] || fail "$name: qprof $verb succeeded"
    grep -q "$want" "$O/$name.$verb.err" || fail "$name: qprof $verb did not say '$want': $(cat "$O/$name.$verb.err")"
  done
  echo "ok: $name refused: $(head -n 1 "$O/$name.report.err" | cut -c1-220)"
}
refuse wrong_ca "certificate verify failed" "$BASE sslmode=verify-full sslrootcert=$T/other.crt password=$PW"
refuse wrong_password 'password authentication failed for user "u"' "$BASE sslmode=require password=not-$PW"
refuse no_tls "no encryption" "$BASE sslmode=disable password=$PW"
echo "  QPROF_LOG: $(wc -l <"$QPROF_LOG" 2>/dev/null || echo no) lines"

# The password is nowhere the runs wrote (the passfile holds it on purpose).
# (-a: binary files too: segments, records, the cluster's WAL and catalog)
leaks=$(grep -rlaF -- "$PW" "$T" "$CL" 2>/dev/null | grep -vxF "$T/passfile" || true)
[ -z "$leaks" ] || fail "the password is in: $leaks"
echo "ok: the password is in none of the $(find "$T" "$CL" -type f | wc -l) files under $T and $CL but the passfile"
