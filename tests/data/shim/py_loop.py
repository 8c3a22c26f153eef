"""Runs 'SELECT ? AS tick' forever (until killed), printing nothing."""
import sqlite3
import sys
import time

db = sqlite3.connect(sys.argv[1])
i = 0
while True:
    db.execute("SELECT ? AS tick", (i,)).fetchall()
    i += 1
    if i % 100 == 0:
        time.sleep(0.01)
