"""exec() under the shim: runs 'SELECT ? AS before_exec' 3 times, then
replaces itself (os.execv) with a run of this script that runs
'SELECT ? AS after_exec' 2 times. With a long flush interval, the first
image's queries reach the store only if they are flushed before exec."""
import os
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1])
if len(sys.argv) > 2:
    for i in range(2):
        db.execute("SELECT ? AS after_exec", (i,)).fetchall()
    print("after exec")
    sys.exit(0)
for i in range(3):
    db.execute("SELECT ? AS before_exec", (i,)).fetchall()
sys.stdout.flush()
os.execv(sys.executable, [sys.executable, sys.argv[0], sys.argv[1], "again"])
