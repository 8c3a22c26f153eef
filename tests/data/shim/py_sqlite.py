"""python3's sqlite3 module under the shim: prints results; test_shim_sqlite.sh counts calls."""
import sqlite3
import sys

db = sqlite3.connect(sys.argv[1])
cur = db.cursor()
cur.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT)")
cur.executemany("INSERT INTO kv (k, v) VALUES (?, ?)", [(i, "v%d" % i) for i in range(50)])
db.commit()
total = 0
for i in range(0, 50, 2):
    total += len(cur.execute("SELECT v FROM kv WHERE k = ?", (i,)).fetchall())
print("rows", total)
print(cur.execute("SELECT count(*), min(v), max(v) FROM kv").fetchone())
try:
    cur.execute("INSERT INTO kv (k, v) VALUES (1, 'dup')")
except sqlite3.IntegrityError as e:
    print("error:", e)
db.rollback()
try:
    cur.execute("SELECT v FROM no_such_table WHERE k = 3")
except sqlite3.OperationalError as e:
    print("error:", e)
db.close()
