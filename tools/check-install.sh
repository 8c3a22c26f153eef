#!/bin/bash
# Builds examples/ against an installed qprof (pkg-config and CMake package).
set -euo pipefail
prefix=$1
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/x86_64-linux-gnu/pkgconfig"
test -x "$prefix/bin/qprof"
"$prefix/bin/qprof" --version >/dev/null
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
