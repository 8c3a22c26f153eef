"""Runs 'SELECT ? AS tick' forever (until killed); after each one has run it
prints 'tick N' and flushes, so that what it reported done is known."""
import sqlite3
import sys
import time

db = sqlite3.connect(sys.argv[1])
i = 0
while True:
    db.execute("SELECT ? AS tick", (i,)).fetchall()
    i += 1
    sys.stdout.write("tick %d\n" % i)
    sys.stdout.flush()
    if i % 100 == 0:
        time.sleep(0.01)
