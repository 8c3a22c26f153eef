"""os.fork() without exec, the child ending with os._exit(0) (no exit
handler runs). The parent runs 'SELECT ? AS parent' 3 times, forks, and 2
more times after the child; the child runs 'SELECT ? AS child' 5 times.
Expected: parent 5, child 5, nothing twice."""
import os
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1])
for i in range(3):
    db.execute("SELECT ? AS parent", (i,)).fetchall()
pid = os.fork()
if pid == 0:
    child = sqlite3.connect(sys.argv[1])
    for i in range(5):
        child.execute("SELECT ? AS child", (i,)).fetchall()
    os._exit(0)
_, status = os.waitpid(pid, 0)
for i in range(2):
    db.execute("SELECT ? AS parent", (i,)).fetchall()
print("child status", status)
