#!/bin/bash
# qprof run: exit status passthrough, LD_PRELOAD chaining, options through
# the environment, finding the shim, --report.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"

st() { # expected-status cmd...
  local want=$1
  shift
  set +e
  "$@" >/dev/null 2>"$T/st.err"
  local got=$?
  set -e
  [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$T/st.err")"
}

# ---- exit status ---------------------------------------------------------------
st 0 "$QPROF" run --store "$T/s.qp" -- true
st 7 "$QPROF" run --store "$T/s.qp" -- sh -c 'exit 7'
st 137 "$QPROF" run --store "$T/s.qp" -- sh -c 'kill -9 $$'
st 143 "$QPROF" run --store "$T/s.qp" -- sh -c 'kill -TERM $$'
st 127 "$QPROF" run --store "$T/s.qp" -- no-such-command-qprof
st 2 "$QPROF" run --store "$T/s.qp"
st 2 "$QPROF" run --slow-ms abc -- true
st 2 "$QPROF" run --flush-ms 1.5 -- true
st 0 "$QPROF" run --help
# CMD's own options are CMD's.
out=$("$QPROF" run --store "$T/s.qp" -- sh -c 'echo "$0" "$1"' --store -x)
[ "$out" = "--store -x" ] || fail "arguments after -- were touched: '$out'"
[ ! -e "$T/s.qp" ] || fail "commands that ran no query created the store"
echo "ok: exit status"

# ---- where the run directory goes ----------------------------------------------
# $TMPDIR when set; else a memory file system with room for four segments of
# the size asked for (at least 256 MB): $XDG_RUNTIME_DIR, then /dev/shm; else
# /tmp. It is removed once all is written.
rundir_of() { # env assignments...: the run directory qprof run gave its command
  env "$@" "$QPROF" run --store "$T/rd.qp" -- sh -c 'echo "$QPROF_RUN_DIR"'
}
roomy_tmpfs() { # dir: true when it is a writable tmpfs with at least MB megabytes free
  [ -d "$1" ] && [ -w "$1" ] && [ "$(stat -f -c %T "$1")" = tmpfs ] &&
    [ $(($(stat -f -c '%a * %S' "$1") >> 20)) -ge "${2:-256}" ]
}
d=$(rundir_of TMPDIR="$T")
case "$d" in "$T"/qprof-run-??????) ;; *) fail "with TMPDIR=$T the run directory was $d" ;; esac
[ ! -e "$d" ] || fail "run directory $d left behind"
if roomy_tmpfs /dev/shm; then shm=/dev/shm; else shm=/tmp; fi
d=$(rundir_of -u TMPDIR -u XDG_RUNTIME_DIR)
case "$d" in "$shm"/qprof-run-??????) ;; *) fail "without TMPDIR the run directory was $d, expected one in $shm" ;; esac
[ ! -e "$d" ] || fail "run directory $d left behind"
# an XDG_RUNTIME_DIR that is no tmpfs ($T, on the test's file system) is passed over
if [ "$(stat -f -c %T "$T")" != tmpfs ]; then
  d=$(rundir_of -u TMPDIR XDG_RUNTIME_DIR="$T")
  case "$d" in "$shm"/qprof-run-??????) ;; *) fail "XDG_RUNTIME_DIR=$T (no tmpfs): the run directory was $d" ;; esac
fi
# a tmpfs XDG_RUNTIME_DIR with room is taken first (a 300 MB tmpfs: room for
# four segments of 64 MB), and passed over for a segment size it has no room
# for four of
mkdir "$T/xdg"
if mount -t tmpfs -o size=300m,mode=0700 tmpfs "$T/xdg" 2>/dev/null; then
  d=$(rundir_of -u TMPDIR XDG_RUNTIME_DIR="$T/xdg")
  case "$d" in "$T"/xdg/qprof-run-??????) ;; *) umount "$T/xdg"; fail "XDG_RUNTIME_DIR on a 300 MB tmpfs: the run directory was $d" ;; esac
  d=$(rundir_of -u TMPDIR XDG_RUNTIME_DIR="$T/xdg" QPROF_SEGMENT_MB=100)
  umount "$T/xdg"
  case "$d" in "$shm"/qprof-run-??????) ;; *) fail "4 x 100 MB segments on a 300 MB tmpfs: the run directory was $d, expected one in $shm" ;; esac
else
  echo "SKIP: XDG_RUNTIME_DIR on a tmpfs (cannot mount a tmpfs here)"
fi
echo "ok: the run directory's place"

# ---- the shim and LD_PRELOAD chaining ---------------------------------------
other=$(/usr/bin/python3 -c 'import ctypes.util, sys; print(ctypes.util._findLib_ld("m") or "")' 2>/dev/null || true)
[ -n "$other" ] && [ -f "$other" ] || other=$(ls /lib/x86_64-linux-gnu/libm.so.6 /usr/lib64/libm.so.6 2>/dev/null | head -n 1)
[ -f "$other" ] || fail "no second library to preload"
# (verify_asan_link_order=0: in sanitizer builds qprof itself is ASan-linked,
# and a library preloaded ahead of its runtime is what this test is about.)
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
out=$(LD_PRELOAD="$other" "$QPROF" run --store "$T/s.qp" -- sh -c 'echo "$LD_PRELOAD"')
[ "$out" = "$SHIM:$other" ] || fail "LD_PRELOAD not chained: '$out' (want '$SHIM:$other')"
maps=$(LD_PRELOAD="$other" "$QPROF" run --store "$T/s.qp" -- cat /proc/self/maps)
printf '%s\n' "$maps" | grep -q "libqprof_preload.so" || fail "the shim is not mapped"
printf '%s\n' "$maps" | grep -q "$(basename "$other")" || fail "the earlier preload is not mapped"
# The shim never loads libpq or libsqlite3 (a guest: a program that does not
# use them must not get them, libpq with its TLS, Kerberos and LDAP
# libraries): neither is a dependency of the shim (it needs libc, libm and
# PCRE2 only), nor mapped into a program that does not use it.
for lib in libpq libsqlite3; do
  if printf '%s\n' "$maps" | grep -q "$lib\.so"; then fail "the shim loaded $lib into cat"; fi
done
needed=$(readelf -d "$SHIM" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')
case $needed in
"libc.so.6 libm.so.6 libpcre2-8.so.0 ") ;;
*) fail "the shim needs more than libc, libm and PCRE2: $needed" ;;
esac
out=$("$QPROF" run --store "$T/s.qp" -- sh -c 'echo "$LD_PRELOAD"')
[ "$out" = "$SHIM" ] || fail "LD_PRELOAD without an earlier one: '$out'"
# $QPROF_PRELOAD wins; a missing shim is a clear failure.
cp "$SHIM" "$T/copy.so"
out=$(QPROF_PRELOAD="$T/copy.so" "$QPROF" run --store "$T/s.qp" -- sh -c 'echo "$LD_PRELOAD"')
[ "$out" = "$T/copy.so" ] || fail "QPROF_PRELOAD ignored: '$out'"
set +e
QPROF_PRELOAD="$T/missing.so" "$QPROF" run --store "$T/s.qp" -- true 2>err
rc=$?
set -e
[ "$rc" = 1 ] || fail "a missing shim: exit $rc"
grep -q "missing.so" err || fail "a missing shim: message '$(cat err)'"
echo "ok: LD_PRELOAD"

# ---- options through the environment ------------------------------------------
out=$("$QPROF" run --store rel.qp --slow-ms 5 --sample --flush-ms 250 --pipeline-flush -- \
  sh -c 'echo "$QPROF_STORE|$QPROF_SLOW_MS|$QPROF_SAMPLE|$QPROF_FLUSH_MS|$QPROF_PIPELINE_FLUSH"')
[ "$out" = "$T/rel.qp|5|true|250|1" ] || fail "options: '$out'"
out=$("$QPROF" run --store rel.qp -- sh -c 'echo "${QPROF_PIPELINE_FLUSH-unset}"')
[ "$out" = unset ] || fail "QPROF_PIPELINE_FLUSH without --pipeline-flush: '$out'"

# ---- recording, with a relative store and a command that changes directory -----
mkdir sub
(cd sub && "$QPROF" run --store rel.qp -- sh -c 'cd / && sqlite3 :memory: "SELECT 1 AS x; SELECT 2 AS x; SELECT 3 AS y"' >/dev/null)
expect_calls "$T/sub/rel.qp" "select ? as x" 2 "qprof run"
expect_calls "$T/sub/rel.qp" "select ? as y" 1 "qprof run"

# ---- --report ------------------------------------------------------------------
set +e
"$QPROF" run --report --store "$T/rep.qp" -- sh -c 'sqlite3 :memory: "SELECT 42 AS answer" && exit 3' >rep.out 2>rep.err
rc=$?
set -e
[ "$rc" = 3 ] || fail "--report: exit $rc, expected the command's 3: $(cat rep.err)"
grep -q "^42$" rep.out || fail "--report: the command's output is missing"
grep -q "as answer" rep.out || fail "--report: the report does not show the query: $(cat rep.out)"
echo "PASS"
