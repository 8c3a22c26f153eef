#!/bin/sh
# Starts or stops the throwaway PostgreSQL cluster the integration tests use.
#   pgcluster.sh start ENVFILE   initdb in a fresh temp dir, start postgres on a
#                                unix socket only, write PGHOST/PGPORT/... to ENVFILE
#   pgcluster.sh stop ENVFILE    stop that server by its PID and remove the dir
# Tests run as root, so the server runs as the postgres user.
set -eu
action=$1
envfile=$2

find_pgbin() {
  for d in "${QP_PG_BINDIR:-}" /usr/lib/postgresql/*/bin; do
    [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
  dirname "$(command -v initdb)"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
  if [ -f "$envfile" ]; then sh "$0" stop "$envfile" || true; fi
  bin=$(find_pgbin)
  dir=$(mktemp -d /tmp/qprof-pg.XXXXXX)
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  port=54329
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $dir -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_preload_libraries=''" start >/dev/null ||
    { cat "$dir/server.log" >&2; exit 1; }
  pid=$(head -n 1 "$dir/data/postmaster.pid")
  cat >"$envfile" <<ENV
PGHOST=$dir
PGPORT=$port
PGUSER=postgres
PGDATABASE=postgres
QP_PG_PID=$pid
QP_PG_DIR=$dir
QP_PG_BINDIR=$bin
ENV
  echo "started PostgreSQL (pid $pid) in $dir"
  ;;
stop)
  [ -f "$envfile" ] || exit 0
  . "$envfile"
  if kill -0 "$QP_PG_PID" 2>/dev/null; then
    kill -INT "$QP_PG_PID" # fast shutdown
    i=0
    while kill -0 "$QP_PG_PID" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -KILL "$QP_PG_PID" 2>/dev/null || true
  fi
  case "$QP_PG_DIR" in /tmp/qprof-pg.*) rm -rf "$QP_PG_DIR" ;; esac
  rm -f "$envfile"
  echo "stopped PostgreSQL (pid $QP_PG_PID)"
  ;;
*)
  echo "usage: pgcluster.sh start|stop ENVFILE" >&2
  exit 2
  ;;
esac
