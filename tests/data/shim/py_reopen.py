"""Connections opened and closed in turn (the sqlite3 handle's address is often
reused): each statement is recorded under the database it ran on.
test_shim_sqlite.sh checks the databases."""
import os
import sqlite3
import sys

d = sys.argv[1]
for rnd in range(4):
    for name in ("first.db", "second.db"):
        db = sqlite3.connect(os.path.join(d, name))
        tag = name.split(".")[0]
        db.execute("SELECT %d AS on_%s" % (rnd, tag)).fetchall()
        db.close()
print("done")
