#!/usr/bin/python3
"""A small shop backend on SQLite, for `qprof run` to profile.

It is an ordinary program that knows nothing of qprof: it uses python's
sqlite3 module, which qprof's LD_PRELOAD shim times from the outside. The mix
has what real services have: point lookups by primary key, a lookup on an
unindexed column (the slow query the report should rank first), inserts in
transactions, an IN list whose length varies, and a failing statement.

Usage: workload.py DBFILE [ROUNDS]
"""
import random
import sqlite3
import sys

db_path = sys.argv[1]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
rng = random.Random(42)

db = sqlite3.connect(db_path)
db.executescript("""
DROP TABLE IF EXISTS order_items;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS customers;
CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL, country TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, status TEXT NOT NULL,
                     total_cents INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL, sku TEXT NOT NULL, qty INTEGER NOT NULL);
""")

countries = ["de", "fr", "us", "jp", "br", "in"]
with db:
    db.executemany("INSERT INTO customers (id, email, country) VALUES (?, ?, ?)",
                   [(i, f"user{i}@example.com", rng.choice(countries)) for i in range(1, 5001)])
    db.executemany(
        "INSERT INTO orders (customer_id, status, total_cents, created_at) VALUES (?, ?, ?, ?)",
        [(rng.randint(1, 5000), rng.choice(["new", "paid", "shipped"]), rng.randint(100, 90000),
          f"2026-11-{rng.randint(1, 21):02d}") for _ in range(40000)])

for r in range(rounds):
    cid = rng.randint(1, 5000)
    # Point lookup by primary key: fast.
    db.execute(f"SELECT id, email, country FROM customers WHERE id = {cid}").fetchall()
    # Orders of a customer: customer_id has no index, so this scans 40,000 rows.
    db.execute("SELECT id, total_cents FROM orders WHERE customer_id = ? ORDER BY id", (cid,)).fetchall()
    # A dashboard query with an IN list whose length changes every time.
    ids = ",".join(str(rng.randint(1, 40000)) for _ in range(rng.randint(1, 40)))
    db.execute(f"SELECT status, count(*) FROM orders WHERE id IN ({ids}) GROUP BY status").fetchall()
    # Checkout: a transaction with an insert per item.
    with db:
        cur = db.execute("INSERT INTO orders (customer_id, status, total_cents, created_at) "
                         "VALUES (?, 'new', ?, '2026-11-22')", (cid, rng.randint(100, 9000)))
        oid = cur.lastrowid
        db.executemany("INSERT INTO order_items (order_id, sku, qty) VALUES (?, ?, ?)",
                       [(oid, f"SKU-{rng.randint(1, 999)}", rng.randint(1, 3)) for _ in range(3)])
    if r % 50 == 0:
        # A typo that a real service would log and carry on from.
        try:
            db.execute("SELECT * FROM order_item WHERE order_id = 1").fetchall()
        except sqlite3.OperationalError:
            pass
db.close()
print(f"workload done: {rounds} rounds on {db_path}")
