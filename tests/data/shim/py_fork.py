"""fork() without exec under the shim.

The parent runs 'SELECT ? AS parent' 3 times, forks, and runs it 2 more
times; the child runs 'SELECT ? AS child' 5 times and exits normally (its
exit flush runs). With argv[2] == 'flushed' the parent waits for a periodic
flush before forking. Expected: parent 5 calls, child 5 calls, nothing twice.
"""
import os
import sqlite3
import sys
import time

path = sys.argv[1]
db = sqlite3.connect(path)
for i in range(3):
    db.execute("SELECT ? AS parent", (i,)).fetchall()
if len(sys.argv) > 2 and sys.argv[2] == "flushed":
    time.sleep(0.5)
pid = os.fork()
if pid == 0:
    child = sqlite3.connect(path)
    for i in range(5):
        child.execute("SELECT ? AS child", (i,)).fetchall()
    child.close()
    sys.exit(0)
_, status = os.waitpid(pid, 0)
for i in range(2):
    db.execute("SELECT ? AS parent", (i,)).fetchall()
db.close()
print("child status", status)
