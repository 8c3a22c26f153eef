"""A process that records, waits, and records again: runs 'SELECT ? AS
pause_q' argv[2] times, creates the file argv[3], waits until the file
argv[4] exists, runs it argv[5] more times and exits."""
import os
import sqlite3
import sys
import time

db = sqlite3.connect(sys.argv[1])
for i in range(int(sys.argv[2])):
    db.execute("SELECT ? AS pause_q", (i,)).fetchall()
open(sys.argv[3], "w").close()
while not os.path.exists(sys.argv[4]):
    time.sleep(0.02)
for i in range(int(sys.argv[5])):
    db.execute("SELECT ? AS pause_q", (i,)).fetchall()
