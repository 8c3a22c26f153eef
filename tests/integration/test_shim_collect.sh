#!/bin/bash
# The collector: qprof collect as a daemon and as a one-shot; a collector
# restart neither loses nor doubles; damaged or foreign segments are refused
# with a message and never reach the store; a full segment is counted.
# And qprof run as a parent: settings checked before the command starts,
# signals passed on, no password in what it or the shim print.
. "$QP_TEST_SOURCE_DIR/tests/data/shim/lib.sh"
cd "$T"

wait_for() { for _ in $(seq 1 200); do [ -e "$1" ] && return 0; sleep 0.05; done; fail "timed out waiting for $1"; }
# ended PID: the process has ended (gone, or a zombie no one has waited for)
ended() {
  local st
  st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || true
  [ -z "$st" ] || [ "$st" = Z ]
}

# ---- restarts: each 'collect --once' is a new collector --------------------
R=$T/run1
preload_env "$R" /usr/bin/python3 "$DATA/py_pause.py" p.db 100 ready1 go1 50 &
w=$!
wait_for ready1
collect "$R" "$T/c.qp"
expect_calls "$T/c.qp" "select ? as pause_q" 100 "first harvest"
collect "$R" "$T/c.qp"
collect "$R" "$T/c.qp"
expect_calls "$T/c.qp" "select ? as pause_q" 100 "two more collectors, nothing new: nothing doubled"
ls "$R"/*.qpseg >/dev/null || fail "the segment of a live process was removed"
touch go1
wait "$w"
collect "$R" "$T/c.qp"
expect_calls "$T/c.qp" "select ? as pause_q" 150 "after the process ended: nothing lost"
[ -z "$(ls -A "$R")" ] || fail "collected segments of an ended process left: $(ls -A "$R")"

# ---- the daemon ----------------------------------------------------------------
R=$T/run2
"$QPROF" collect --run-dir "$R" --store "$T/d.qp" --flush-ms 50 2>daemon.err &
d=$!
sleep 0.2
[ "$(stat -c %a "$R")" = 700 ] || fail "qprof collect created $R with mode $(stat -c %a "$R")"
for i in 1 2 3; do preload_env "$R" sqlite3 :memory: "select $i as daemon_q" >/dev/null; done
for _ in $(seq 1 100); do [ "$(calls "$T/d.qp" "select ? as daemon_q")" = 3 ] && break; sleep 0.05; done
expect_calls "$T/d.qp" "select ? as daemon_q" 3 "qprof collect daemon"
set +e
"$QPROF" collect --once --run-dir "$R" --store "$T/d.qp" 2>second.err
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "another collector is harvesting" second.err ||
  fail "a second collector on the same directory: exit $rc, $(cat second.err)"
kill -TERM "$d"
set +e
wait "$d"
rc=$?
set -e
[ "$rc" = 0 ] || fail "qprof collect after SIGTERM: exit $rc: $(cat daemon.err)"
[ -z "$(ls -A "$R")" ] || fail "qprof collect left $(ls -A "$R")"
echo "ok: qprof collect daemon"

# ---- segments that are not to be trusted -----------------------------------------
R=$T/run3
preload_env "$R" /usr/bin/python3 "$DATA/py_pause.py" p.db 10 ready3 go3 0 &
w=$!
wait_for ready3
seg=$(ls "$R"/*.qpseg)
touch go3
wait "$w"
cp "$seg" good.seg
rm -f "$seg"
refuse() { # WHAT: the segment "$R/x-1.qpseg" was prepared
  local what=$1 before
  before=$(total_calls "$T/h.qp")
  set +e
  "$QPROF" collect --once --run-dir "$R" --store "$T/h.qp" 2>refuse.err
  local rc=$?
  set -e
  [ "$rc" = 0 ] || fail "$what: collect exited $rc: $(cat refuse.err)"
  grep -q "refused segment $R/x-1.qpseg: " refuse.err || fail "$what: not refused: $(cat refuse.err)"
  [ "$(total_calls "$T/h.qp")" = "$before" ] || fail "$what: reached the store"
  echo "ok: $what: $(cat refuse.err)"
  rm -f "$R"/x-1.qpseg "$R"/x-1.qpseg.refused
}
put() { cp good.seg "$R/x-1.qpseg"; chmod 600 "$R/x-1.qpseg"; }
patch() { printf "$2" | dd of="$R/x-1.qpseg" bs=1 seek="$1" conv=notrunc 2>/dev/null; }
put; patch 0 'XXXX'; refuse "bad magic"
put; patch 8 '\x07'; refuse "unknown version"
put; truncate -s 100000 "$R/x-1.qpseg"; refuse "truncated"
put; truncate -s 20 "$R/x-1.qpseg"; refuse "shorter than a header"
put; python3 - "$R/x-1.qpseg" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(64)
nslots, slots_off = struct.unpack_from("<II", h, 40)
f.seek(slots_off)
idx = f.read(nslots * 4)
i = next(k for k in range(nslots) if struct.unpack_from("<I", idx, 4 * k)[0] != 0)
f.seek(slots_off + 4 * i)
f.write(struct.pack("<I", 0xfffffff8))
PY
refuse "an entry offset out of bounds"
put; python3 - "$R/x-1.qpseg" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(64)
nslots, slots_off = struct.unpack_from("<II", h, 40)
f.seek(slots_off)
idx = f.read(nslots * 4)
# (a slot is the entry's offset with its tag in the low 3 bits)
off = next(struct.unpack_from("<I", idx, 4 * k)[0] for k in range(nslots) if struct.unpack_from("<I", idx, 4 * k)[0] != 0) & ~7
f.seek(off + 64)  # calls
calls = struct.unpack("<Q", f.read(8))[0]
f.seek(off + 64)
f.write(struct.pack("<Q", calls + 1000))
PY
refuse "calls that the histogram does not hold"
put; python3 - "$R/x-1.qpseg" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b")
h = f.read(64)
nslots, slots_off = struct.unpack_from("<II", h, 40)
f.seek(slots_off)
idx = f.read(nslots * 4)
i = next(k for k in range(nslots) if struct.unpack_from("<I", idx, 4 * k)[0] != 0)
f.seek(slots_off + 4 * i)
f.write(struct.pack("<I", struct.unpack_from("<I", idx, 4 * i)[0] ^ 1))
PY
refuse "an index slot whose tag is not its entry's"
put; chmod 644 "$R/x-1.qpseg"; refuse "readable by others"
put; chown nobody "$R/x-1.qpseg"; refuse "owned by another user"
ln -s "$T/good.seg" "$R/x-1.qpseg"; refuse "a symbolic link"
# the intact copy is read (its process has ended): the checks are not what refused the others
put
"$QPROF" collect --once --run-dir "$R" --store "$T/h.qp"
expect_calls "$T/h.qp" "select ? as pause_q" 10 "the intact segment"

# ---- a full segment: what did not fit is counted and said ---------------------------
seq 1 5000 | sed 's/.*/select & as f&;/' >many.sql
set +e
"$QPROF" run --store "$T/f.qp" --segment-mb 1 -- sqlite3 :memory: <many.sql >/dev/null 2>full.err
rc=$?
set -e
[ "$rc" = 0 ] || fail "full segment: exit $rc"
dropped=$(sed -n 's/^qprof run: \([0-9]*\) statements were not recorded: segment full.*/\1/p' full.err)
[ -n "$dropped" ] || fail "full segment: not said: $(cat full.err)"
stored=$(total_calls "$T/f.qp")
[ $((stored + dropped)) = 5000 ] || fail "full segment: $stored stored + $dropped dropped != 5000"
echo "ok: full segment: $stored recorded, $dropped counted as dropped"
# ... and the store keeps the count: the report shows it (text, JSON, CSV), and
# what it has as calls plus what it says was dropped is what ran.
[ "$dropped" -gt 0 ] && [ "$stored" -gt 0 ] || fail "full segment: $stored stored, $dropped dropped"
json_dropped() { "$QPROF" report --store "$1" --format json | python3 -c '
import json, sys; t = json.load(sys.stdin)["totals"]; print(t["calls"], t["dropped"])'; }
read -r calls jd < <(json_dropped "$T/f.qp")
[ "$jd" = "$dropped" ] || fail "full segment: the report says $jd dropped, qprof run said $dropped"
[ $((calls + jd)) = 5000 ] || fail "full segment: report: $calls calls + $jd dropped != 5000"
"$QPROF" report --store "$T/f.qp" >full.txt
# (the text writes counts with thousands separators)
td=$(sed -n 's/^Dropped: \([0-9,]*\) statements ran but were not recorded: .*/\1/p' full.txt | tr -d ,)
[ "$td" = "$dropped" ] || fail "full segment: text report: $(head -8 full.txt)"
csvd=$("$QPROF" report --store "$T/f.qp" --format csv | python3 -c '
import csv, sys; r = list(csv.DictReader(sys.stdin)); print(set(x["dropped"] for x in r))')
[ "$csvd" = "{'$dropped'}" ] || fail "full segment: CSV dropped column: $csvd"
hd=$("$QPROF" report --store "$T/f.qp" --format html |
  sed -n 's|.*<dt>Dropped</dt><dd[^>]*>\([0-9,]*\) statements ran but were not recorded.*|\1|p' | tr -d ,)
[ "$hd" = "$dropped" ] || fail "full segment: the HTML report's Dropped line says '$hd', not $dropped"
echo "ok: full segment: the report shows $jd dropped (text, JSON, CSV, HTML); $calls + $jd = 5000"
# The same through many harvests (every 10 ms) of a program that fills its
# segment slowly, then by 'qprof collect' from a run directory: exact sums.
cat >slowfill.py <<'PY'
import sqlite3, time
db = sqlite3.connect(":memory:")
for i in range(6000):
    db.execute("select %d as g%d" % (i, i)).fetchall()
    if i % 500 == 0:
        time.sleep(0.03)
PY
"$QPROF" run --store "$T/g.qp" --segment-mb 1 --flush-ms 10 -- python3 slowfill.py 2>g.err
gd=$(sed -n 's/^qprof run: \([0-9]*\) statements were not recorded: segment full.*/\1/p' g.err)
read -r calls jd < <(json_dropped "$T/g.qp")
[ -n "$gd" ] && [ "$jd" = "$gd" ] && [ $((calls + jd)) = 6000 ] ||
  fail "many harvests: qprof run said '$gd' dropped, the report $calls calls + $jd dropped"
R2=$T/run_full
QPROF_SEGMENT_MB=1 preload_env "$R2" python3 slowfill.py
collect "$R2" "$T/cf.qp" 2>c.err
read -r calls jd < <(json_dropped "$T/cf.qp")
[ "$jd" -gt 0 ] && [ $((calls + jd)) = 6000 ] || fail "qprof collect: $calls calls + $jd dropped != 6000"
echo "ok: dropped through 10 ms harvests ($jd) and through qprof collect: calls + dropped = 6000"

# ---- qprof run checks the settings before the command starts ------------------------
for setting in "QPROF_IGNORE=(" "QPROF_REDACT=x" "QPROF_BUCKET_S=0" "QPROF_RULES=(=x" "QPROF_SEGMENT_MB=0"; do
  set +e
  env "$setting" "$QPROF" run --store "$T/s.qp" -- sh -c 'echo ran' >set.out 2>set.err
  rc=$?
  set -e
  [ "$rc" = 2 ] || fail "$setting: qprof run exited $rc, expected 2"
  [ ! -s set.out ] || fail "$setting: the command ran"
  [ -s set.err ] || fail "$setting: no reason given"
  echo "ok: $setting refused before the start: $(head -n 1 set.err)"
done

# ---- signals sent to qprof run reach the command, whose status is returned -----------
for sig in INT TERM HUP QUIT; do
  rm -f sig.ready
  "$QPROF" run --store "$T/s.qp" -- /usr/bin/python3 -c "
import signal, sys, time
def h(n, f):
    print('got', signal.Signals(n).name); sys.stdout.flush(); sys.exit(40)
signal.signal(signal.SIG$sig, h)
open('sig.ready', 'w').close()
time.sleep(20)
sys.exit(1)" >sig.out 2>sig.err &
  q=$!
  wait_for sig.ready
  kill -"$sig" "$q"
  set +e
  wait "$q"
  rc=$?
  set -e
  [ "$rc" = 40 ] || fail "SIG$sig: qprof run exited $rc, expected the command's 40: $(cat sig.err)"
  [ "$(cat sig.out)" = "got SIG$sig" ] || fail "SIG$sig: the command said '$(cat sig.out)'"
done
echo "ok: SIGINT, SIGTERM, SIGHUP, SIGQUIT passed on to the command"

# ---- a daemon the command started outlives qprof run (--wait-ms, default 2000) ---------
# sh starts a python that records 10 statements, then one a tick (0.1 s) for
# 4 s, and exits 3 once the first tick is recorded (a process that has not
# recorded yet is not known to be waited for). qprof run waits 2000 ms for it,
# harvests what it has done so far, says that it still records and returns
# sh's status; qprof collect --once, after the python has ended, writes the rest.
cat >daemon.py <<'PY'
import os, sqlite3, sys, time
db = sqlite3.connect(":memory:")
for i in range(10):
    db.execute("select ? as outlive_early", (i,)).fetchall()
with open(sys.argv[1] + ".tmp", "w") as f:
    for i in range(40):
        db.execute("select ? as outlive_tick", (i,)).fetchall()
        f.write("%d\n" % (i + 1))
        f.flush()
        if i == 0:
            os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(0.1)
PY
S=$T/outlive.qp
set +e
"$QPROF" run --store "$S" -- sh -c '
  sqlite3 :memory: "select 1 as outlive_sh;" >/dev/null
  /usr/bin/python3 daemon.py ticks </dev/null >/dev/null 2>&1 &
  echo $! >daemon.pid
  while [ ! -e ticks ]; do sleep 0.02; done
  date +%s%3N >sh.end
  exit 3' >outlive.out 2>outlive.err
rc=$?
t1=$(date +%s%3N)
set -e
done_then=$(wc -l <ticks)
pid=$(cat daemon.pid)
ended "$pid" && fail "outliving daemon: it ended before qprof run returned (after $done_then ticks)"
[ "$rc" = 3 ] || fail "outliving daemon: qprof run exited $rc, the command 3: $(cat outlive.err)"
waited=$((t1 - $(cat sh.end)))
[ "$waited" -ge 1950 ] && [ "$waited" -lt 2500 ] ||
  fail "outliving daemon: qprof run returned $waited ms after the command ended (--wait-ms 2000)"
dir=$(sed -n 's/^qprof run: 1 processes still record into \([^;]*\); .*/\1/p' outlive.err)
[ -n "$dir" ] && [ -d "$dir" ] || fail "outliving daemon: no run directory named: $(cat outlive.err)"
[ "$(cat outlive.err)" = "qprof run: 1 processes still record into $dir; 'qprof collect --run-dir $dir --store \"$S\"' writes the rest" ] ||
  fail "outliving daemon: qprof run said: $(cat outlive.err)"
expect_calls "$S" "select ? as outlive_sh" 1 "outliving daemon, at qprof run's end"
expect_calls "$S" "select ? as outlive_early" 10 "outliving daemon, at qprof run's end"
got=$(calls "$S" "select ? as outlive_tick")
[ "$got" -ge 1 ] && [ "$got" -le "$done_then" ] && [ "$got" -lt 40 ] ||
  fail "outliving daemon: at qprof run's end the store has $got ticks, the daemon had done $done_then of 40"
echo "ok: outliving daemon: qprof run returned after $waited ms with status 3, $got of 40 ticks harvested (done: $done_then)"
for _ in $(seq 1 200); do ended "$pid" && break; sleep 0.05; done
ended "$pid" || fail "outliving daemon: still running after 10 s"
[ "$(wc -l <ticks)" = 40 ] || fail "outliving daemon: it did $(wc -l <ticks) of 40 ticks"
"$QPROF" collect --run-dir "$dir" --store "$S" --once
expect_calls "$S" "select ? as outlive_sh" 1 "outliving daemon, after qprof collect"
expect_calls "$S" "select ? as outlive_early" 10 "outliving daemon, after qprof collect"
expect_calls "$S" "select ? as outlive_tick" 40 "outliving daemon, after qprof collect"
[ "$(total_calls "$S")" = 51 ] || fail "outliving daemon: 51 statements ran, the store has $(total_calls "$S")"
rmdir "$dir" 2>/dev/null || fail "outliving daemon: qprof collect left $(ls -A "$dir")"
echo "ok: outliving daemon: qprof collect --once wrote the rest, 51 statements in all"

# ---- a writer that has ended but that no one waited for (a zombie) has ended ------------
# Its lock is gone with it, and kill() still finds its pid: the collector
# must not take it for a live process (an orphan's parent is PID 1, which in
# a container often reaps nothing; qprof run would wait its whole --wait-ms
# and no collector would remove the segment).
R=$T/run_zombie
mkdir -m 0700 "$R"
LD_PRELOAD="$SHIM" QPROF_RUN_DIR="$R" /usr/bin/python3 -c '
import os, sqlite3, time
pid = os.fork()
if pid == 0:
    sqlite3.connect(":memory:").execute("select 1 as zombie_q").fetchall()
    os._exit(0)
with open("zombie.pid.tmp", "w") as f:
    f.write(str(pid))
os.rename("zombie.pid.tmp", "zombie.pid")
time.sleep(30)' &
zp=$!
wait_for zombie.pid
for _ in $(seq 1 200); do [ "$(awk '{ print $3 }' "/proc/$(cat zombie.pid)/stat")" = Z ] && break; sleep 0.05; done
[ "$(awk '{ print $3 }' "/proc/$(cat zombie.pid)/stat")" = Z ] || fail "zombie writer: the child is not a zombie"
collect "$R" "$T/z.qp"
expect_calls "$T/z.qp" "select ? as zombie_q" 1 "zombie writer"
[ -z "$(ls -A "$R")" ] || fail "zombie writer: its segment was kept, as if it were alive: $(ls -A "$R")"
kill "$zp"
wait "$zp" || true
echo "ok: a zombie writer is taken for ended: harvested and its segment removed"

# ---- no password in what the shim logs or qprof run prints ---------------------------
for dsn in "postgresql://postgres:s3cr3tpw@127.0.0.1:1/x" "host=127.0.0.1 port=1 password=s3cr3tpw dbname=x"; do
  rm -f pw.log
  set +e
  QPROF_LOG="$T/pw.log" QPROF_SLOW_MS=0 "$QPROF" run --store "$dsn" -- \
    sqlite3 :memory: "select 's3cr3tpw-free' as pw_q;" >pw.out 2>pw.err
  rc=$?
  set -e
  [ "$rc" = 0 ] || fail "unreachable store: exit $rc"
  grep -q "cannot write the profile" pw.err || fail "unreachable store not said: $(cat pw.err)"
  [ -s pw.log ] || fail "the shim logged nothing"
  if grep -h "s3cr3tpw" pw.err pw.log | grep -v "s3cr3tpw-free"; then fail "a password was printed ($dsn)"; fi
done
echo "ok: no password in the shim's log or qprof run's messages"
echo "PASS"
