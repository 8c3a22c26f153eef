"""psycopg2 (libpq, loaded with dlopen by python) under the shim; prints results."""
import io
import sys

import psycopg2

conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
cur.execute("CREATE TABLE pyitem (id int PRIMARY KEY, v text)")
cur.executemany("INSERT INTO pyitem (id, v) VALUES (%s, %s)", [(i, "v%d" % i) for i in range(20)])
conn.commit()
got = 0
for i in range(0, 20, 2):
    cur.execute("SELECT v FROM pyitem WHERE id = %s", (i,))
    got += len(cur.fetchall())
print("rows", got)
cur.copy_from(io.StringIO("100\tx\n101\ty\n102\tz\n"), "pyitem", columns=("id", "v"))
conn.commit()
cur.execute("SELECT count(*) FROM pyitem")
print("count", cur.fetchone()[0])
try:
    cur.execute("SELECT * FROM no_such_table")
except psycopg2.Error as e:
    print("error", e.pgcode)
conn.rollback()
conn.close()
