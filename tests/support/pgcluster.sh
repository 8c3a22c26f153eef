#!/bin/sh
# Starts or stops the throwaway PostgreSQL cluster the integration tests use.
#   pgcluster.sh start ENVFILE   initdb in a fresh temp dir, start postgres on a
#                                unix socket only, write PGHOST/PGPORT/... to ENVFILE
#                                (port 54329, or $QP_PG_PORT when set)
#   pgcluster.sh stop ENVFILE    stop that server by its PID and remove the dir
# For fault tests on a PRIVATE cluster (never on the shared fixture):
#   pgcluster.sh serverstop ENVFILE [MODE]   stop the server (pg_ctl -m MODE, default
#                                            fast), keep the data directory
#   pgcluster.sh serverstart ENVFILE [OPTS]  start it again (extra postgres OPTS),
#                                            update QP_PG_PID in ENVFILE
#   pgcluster.sh standby ENVFILE             restart it as a standby without hot
#                                            standby: connections get 57P03
#   pgcluster.sh promote ENVFILE             promote it: connections succeed again
#   pgcluster.sh freeze ENVFILE              SIGSTOP the postmaster: a connection is
#                                            accepted by the kernel and never answered
#   pgcluster.sh thaw ENVFILE                SIGCONT it
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

pg_start() { # bindir, dir, port, extra options
  as_pg "$1/pg_ctl" -D "$2/data" -l "$2/server.log" -w -t 60 \
    -o "-c listen_addresses='' -k $2 -p $3 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_preload_libraries='' $4" start >/dev/null ||
    { cat "$2/server.log" >&2; exit 1; }
}

set_pid() { # envfile: refresh QP_PG_PID from postmaster.pid
  . "$1"
  pid=$(head -n 1 "$QP_PG_DIR/data/postmaster.pid")
  sed -i "s/^QP_PG_PID=.*/QP_PG_PID=$pid/" "$1"
}

case "$action" in
serverstop)
  . "$envfile"
  as_pg "$QP_PG_BINDIR/pg_ctl" -D "$QP_PG_DIR/data" -m "${3:-fast}" -w -t 60 stop >/dev/null
  ;;
serverstart)
  . "$envfile"
  pg_start "$QP_PG_BINDIR" "$QP_PG_DIR" "$PGPORT" "${3:-}"
  set_pid "$envfile"
  ;;
standby)
  . "$envfile"
  as_pg "$QP_PG_BINDIR/pg_ctl" -D "$QP_PG_DIR/data" -m fast -w -t 60 stop >/dev/null
  as_pg touch "$QP_PG_DIR/data/standby.signal"
  pg_start "$QP_PG_BINDIR" "$QP_PG_DIR" "$PGPORT" "-c hot_standby=off"
  set_pid "$envfile"
  ;;
promote)
  . "$envfile"
  as_pg "$QP_PG_BINDIR/pg_ctl" -D "$QP_PG_DIR/data" -w -t 60 promote >/dev/null
  ;;
freeze)
  . "$envfile"
  kill -STOP "$QP_PG_PID"
  ;;
thaw)
  . "$envfile"
  kill -CONT "$QP_PG_PID"
  ;;
start)
  if [ -f "$envfile" ]; then sh "$0" stop "$envfile" || true; fi
  bin=$(find_pgbin)
  dir=$(mktemp -d /tmp/qprof-pg.XXXXXX)
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  port=${QP_PG_PORT:-54329}
  pg_start "$bin" "$dir" "$port" ""
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
  echo "usage: pgcluster.sh start|stop|serverstop|serverstart|standby|promote ENVFILE" >&2
  exit 2
  ;;
esac
