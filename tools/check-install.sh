#!/bin/bash
# Checks an installed qprof: `qprof run` from a moved copy of the prefix finds
# the shim installed beside it (and nothing else), and examples/ build against
# the installation (pkg-config and CMake package).
# Usage: check-install.sh PREFIX [BUILD_DIR]. With BUILD_DIR (the tree PREFIX
# was installed from), that tree's shim is hidden while the moved prefix is
# tried, as if the build tree were gone; it is put back on exit.
set -euo pipefail
prefix=$1
build_shim=${2:+$2/lib/shim/libqprof_preload.so}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cleanup() {
  if [ -n "$build_shim" ] && [ -e "$build_shim.hidden" ]; then mv "$build_shim.hidden" "$build_shim"; fi
  rm -rf "$work"
}
trap cleanup EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
test -x "$prefix/bin/qprof"
"$prefix/bin/qprof" --version >/dev/null

# ---- qprof run from a moved prefix -------------------------------------------
# The installed qprof finds its shim relative to its own binary: a copy of the
# prefix elsewhere loads the copy's shim (not the original prefix's, not the
# build tree's) and records a real sqlite3 session.
moved="$work/moved"
cp -a "$prefix" "$moved"
if [ -n "$build_shim" ] && [ -e "$build_shim" ]; then mv "$build_shim" "$build_shim.hidden"; fi
shim=$(find "$moved" -name libqprof_preload.so)
[ -n "$shim" ] || { echo "no libqprof_preload.so installed under $prefix" >&2; exit 1; }
maps=$(env -u QPROF_PRELOAD "$moved/bin/qprof" run --store "$work/run.db" -- cat /proc/self/maps)
loaded=$(printf '%s\n' "$maps" | grep -o '/.*libqprof_preload\.so' | sort -u)
[ "$loaded" = "$shim" ] || { echo "qprof run from a moved prefix preloaded '$loaded', not '$shim'" >&2; exit 1; }
env -u QPROF_PRELOAD "$moved/bin/qprof" run --store "$work/run.db" -- sqlite3 "$work/run-data.db" \
  "CREATE TABLE t(a); INSERT INTO t VALUES (1); SELECT a FROM t WHERE a = 1;" >/dev/null
"$moved/bin/qprof" report --store "$work/run.db" --format csv >"$work/run.csv"
grep -q 'select a from t where a = ?' "$work/run.csv" ||
  { echo "qprof run from a moved prefix recorded nothing:" >&2; cat "$work/run.csv" >&2; exit 1; }
echo "qprof run from a moved prefix: preloaded $shim and recorded the session"
# Without its shim it fails with exit 1, naming every path it tried, all of
# them in its own prefix.
rm "$shim"
set +e
env -u QPROF_PRELOAD "$moved/bin/qprof" run --store "$work/run.db" -- true 2>"$work/run.err"
rc=$?
set -e
[ "$rc" = 1 ] || { echo "qprof run without its shim: exit $rc, not 1" >&2; exit 1; }
grep -qF "  $shim (No such file or directory)" "$work/run.err" ||
  { echo "qprof run without its shim does not name $shim:" >&2; cat "$work/run.err" >&2; exit 1; }
if grep -E '^  /' "$work/run.err" | grep -vqF "  $moved/"; then
  echo "qprof run from a moved prefix looked outside it:" >&2; cat "$work/run.err" >&2; exit 1
fi
# LD_PRELOAD cannot carry a path with a space: said, not ignored.
cp -a "$prefix" "$work/with space"
set +e
env -u QPROF_PRELOAD "$work/with space/bin/qprof" run --store "$work/run.db" -- true 2>"$work/run.err2"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "LD_PRELOAD cannot carry" "$work/run.err2" ||
  { echo "qprof run from a prefix with a space: exit $rc:" >&2; cat "$work/run.err2" >&2; exit 1; }
if [ -n "$build_shim" ] && [ -e "$build_shim.hidden" ]; then mv "$build_shim.hidden" "$build_shim"; fi
echo "qprof run without its shim: exit 1, naming $(grep -c '^  /' "$work/run.err") paths tried"
for ex in "$root"/examples/*.c; do
  [ -f "$ex" ] || continue
  name=$(basename "$ex" .c)
  cc -std=c11 -Wall -Wextra -Werror $(pkg-config --cflags qprof) "$ex" -o "$work/$name" \
    $(pkg-config --libs qprof)
  echo "built $name with pkg-config"
done
# Run the example service on SQLite with its profile in a store, then read
# the store back with the installed CLI.
if [ -x "$work/service" ]; then
  export LD_LIBRARY_PATH="$prefix/lib:$prefix/lib/x86_64-linux-gnu"
  QPROF_STORE="$work/service-profile.db" "$work/service" "sqlite://$work/shop.db" >"$work/service.out"
  "$prefix/bin/qprof" report --store "$work/service-profile.db" --format csv >"$work/report.csv"
  lines=$(wc -l <"$work/report.csv")
  [ "$lines" -gt 1 ] || { echo "example service recorded nothing" >&2; exit 1; }
  echo "ran the example service: $((lines - 1)) query shapes in its profile"
fi
mkdir -p "$work/cm"
cat >"$work/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.16)
project(qprof_consumer C)
find_package(qprof 0 REQUIRED)
add_executable(consumer $root/tests/support/install_consumer.c)
target_link_libraries(consumer qprof::qprof)
CM
cmake -S "$work/cm" -B "$work/cm/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cm/build" >/dev/null
LD_LIBRARY_PATH="$prefix/lib:$prefix/lib/x86_64-linux-gnu" "$work/cm/build/consumer"
echo "built and ran a find_package(qprof) consumer"
