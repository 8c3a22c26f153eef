"""Many short-lived processes under the shim, for the collector's reads of
segments that are still being written: argv[1] is the start method, argv[2]
the number of processes (run 8 at a time), argv[3] the statements each runs.
Every statement is distinct within a process (a new segment entry each,
published while a harvest may be reading), 7 shapes across processes.
Expected: argv[2] * argv[3] calls of 'select ? as s_?_?'-like queries."""
import multiprocessing as mp
import sqlite3
import sys


def worker(k, n):
    db = sqlite3.connect(":memory:")
    for i in range(n):
        db.execute("SELECT %d AS s_%d_%d" % (i, k % 7, i)).fetchall()
    db.close()


if __name__ == "__main__":
    mp.set_start_method(sys.argv[1])
    nproc, n = int(sys.argv[2]), int(sys.argv[3])
    for start in range(0, nproc, 8):
        ps = [mp.Process(target=worker, args=(k, n)) for k in range(start, min(nproc, start + 8))]
        for p in ps:
            p.start()
        for p in ps:
            p.join()
    print("done", [p.exitcode for p in ps])
