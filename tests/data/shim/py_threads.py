"""Threads under the shim: 4 threads, each with its own connection, run
'SELECT ? AS t' 200 times each (800 calls) on one database file."""
import sqlite3
import sys
import threading

path = sys.argv[1]
init = sqlite3.connect(path)
init.execute("PRAGMA journal_mode=WAL").fetchall()
init.close()


def work(n):
    c = sqlite3.connect(path)
    for i in range(200):
        c.execute("SELECT ? AS t", (n * 1000 + i,)).fetchall()
    c.close()


ts = [threading.Thread(target=work, args=(n,)) for n in range(4)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("done")
