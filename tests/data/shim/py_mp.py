"""Python multiprocessing under the shim: argv[1] is the start method (fork
or spawn). 8 Process workers run 'SELECT ? AS mp_process' 1,000 times each
and return normally; then Pool(8) runs 4,000 'INSERT INTO t(v) VALUES (?)'
(each worker has its own in-memory database) and is left by its 'with'
block, which terminates the workers with SIGTERM: no exit handler of theirs
runs. Expected: 8,000 selects and 4,000 inserts, exactly."""
import multiprocessing as mp
import sqlite3
import sys

_db = None


def process_worker(n):
    db = sqlite3.connect(":memory:")
    for i in range(n):
        db.execute("SELECT ? AS mp_process", (i,)).fetchall()
    db.close()


def pool_init():
    global _db
    _db = sqlite3.connect(":memory:", isolation_level=None)
    _db.execute("CREATE TABLE t(v)")


def pool_task(i):
    _db.execute("INSERT INTO t(v) VALUES (?)", (i,))
    return i


if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    procs = [mp.Process(target=process_worker, args=(1000,)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    codes = [p.exitcode for p in procs]
    with mp.Pool(8, initializer=pool_init) as pool:
        done = sum(1 for _ in pool.imap_unordered(pool_task, range(4000), chunksize=25))
    print("processes", codes, "pool tasks", done)
