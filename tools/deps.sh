#!/bin/sh
# Installs what qprof needs to build, test, fuzz and benchmark on Debian 12.
# Idempotent; does nothing when everything is already there. Run as root
# (or with sudo available). chromium is for tests only: test_report_html
# loads the HTML report in it (docs/dependencies.md).
set -eu
PKGS="build-essential cmake pkg-config git
  libpq-dev libsqlite3-dev libpcre2-dev libxxhash-dev libjansson-dev libcmocka-dev zlib1g-dev
  clang libclang-rt-14-dev
  chromium
  postgresql postgresql-contrib postgresql-15-hypopg pgbouncer pgpool2 pgbadger
  sqlite3 python3 python3-psycopg2 openssl
  libpg-query-dev"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
