/*
 * Harvesting segments: the collector's side of the LD_PRELOAD shim.
 *
 * Under the shim each process that runs a query records into a segment of
 * its own, a file `<pid>-<n>.qpseg` it maps in a run directory (the
 * QPROF_RUN_DIR variable; docs/shim.md). A harvester reads a run directory
 * from another process (`qprof run`, `qprof collect`): it turns what each
 * segment gained since the last harvest into statistics, writes them to a
 * store through a profile, and removes the segments of processes that have
 * ended once everything in them is in the store.
 *
 * Segments are input from other processes and are trusted in nothing:
 * owner, mode, size, magic, version and every offset and count are checked,
 * and a segment that fails is refused (renamed `<name>.refused`) with a
 * message through the hooks' log callback; it never crashes the harvester or
 * reaches the store. Counters in a segment only grow: the harvester keeps,
 * beside each segment, a copy of what it last wrote (`.<name>.done`), so a
 * harvester that stops and starts again neither loses nor doubles anything.
 * Into a PostgreSQL store this holds also for a harvester killed while its
 * COMMIT is in doubt: a harvest record (`.doubt`) written before the COMMIT
 * lets the next harvester settle it with the store first (docs/shim.md).
 * Into an SQLite store, one killed between the commit and the write of that
 * copy writes that one harvest twice.
 *
 * Only one harvester works on a run directory at a time (an exclusive
 * flock() on the directory, taken by qp_harvester_new).
 * A harvester is not thread-safe: use it from one thread at a time.
 */
#ifndef QPROF_SEGMENT_H
#define QPROF_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "profile.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_harvester qp_harvester;

/* What one qp_harvester_collect saw. */
typedef struct qp_harvest_stats {
  uint64_t segments;   /* segments read */
  uint64_t live;       /* of those, whose writing process still runs */
  uint64_t refused;    /* segments refused (damaged or not ours) this time */
  uint64_t statements; /* statements gained since the last commit */
  uint64_t dropped;    /* statements the writers could not record (segment full), gained since
                        * the last commit */
} qp_harvest_stats;

/*
 * Opens the run directory `run_dir` (it must exist, be a directory owned by
 * the caller's effective uid, with no access for group or others) and takes
 * its lock. `ignore` is the QPROF_IGNORE pattern (NULL or "" for none):
 * matching statements are not written. `hooks` is copied (NULL: defaults);
 * its log callback receives the messages about refused segments.
 * Errors (message in errbuf): QP_INVALID, QP_IO (the directory), QP_BUSY
 * (another harvester holds it), QP_PATTERN, QP_NOMEM. *out is NULL on error.
 */
/* A harvest record an earlier harvester left in run_dir (docs/shim.md) is
 * read here and settled by the first qp_harvester_commit, before anything
 * is gathered (qp_harvester_in_doubt is true until then); a damaged one is
 * QP_SYNTAX, and the harvester is not made. */
QP_EXPORT qp_status qp_harvester_new(qp_harvester **out, const char *run_dir, const char *ignore,
                                     const qp_hooks *hooks, char *errbuf, size_t errlen);

/* Closes the harvester and releases the directory's lock; what was
 * collected and not committed is forgotten (the next harvester collects it
 * again). NULL is a no-op. */
QP_EXPORT void qp_harvester_free(qp_harvester *h);

/*
 * Reads every segment of the run directory and gathers what it gained since
 * the last commit. `stats` (may be NULL) is filled. Collecting twice without
 * a commit gathers the same statements once. Errors: QP_IO (the directory
 * cannot be read), QP_NOMEM; a bad segment is not an error of the call
 * (it is refused and counted).
 */
QP_EXPORT qp_status qp_harvester_collect(qp_harvester *h, qp_harvest_stats *stats);

/*
 * Writes what was collected to `store` (opened with QP_STORE_WRITE; it may
 * be NULL when the last collect found no statements and none dropped), with
 * the statements dropped (segment full) added to the store's count of the
 * minute of the commit, in the same transaction; then records what was
 * written beside each segment and removes the segments whose writer has
 * ended. On a store error nothing is marked as written: the next collect
 * gathers it again. Except when the store cannot tell whether the write
 * committed (a PostgreSQL COMMIT sent without an answer: see
 * qp_harvester_in_doubt): then what this collect read is held by the
 * harvester until the next commit into the same `store` handle settles it
 * (written again only if it did not commit), and the next collect gathers
 * only what came after. Into a PostgreSQL store, the harvest record is
 * written (fsynced) before the COMMIT and removed once the outcome is known.
 * A harvest record an earlier harvester left is settled first, and that
 * commit writes nothing else: QP_UNAVAILABLE while the store cannot tell yet
 * (unreachable, or the transaction still in progress after 5 s), QP_STATE
 * when `store` is not the store it names or no longer knows the
 * transaction, QP_SYNTAX when an image it names is not what was written.
 * Errors: those of the store (the message is here and in qp_store_errmsg),
 * QP_INVALID, QP_IO, QP_NOMEM.
 */
QP_EXPORT qp_status qp_harvester_commit(qp_harvester *h, qp_store *store);

/*
 * Whether the last commit failed in doubt (see qp_harvester_commit), or a
 * harvest record of an earlier harvester waits to be settled by the next
 * commit (into a handle of the PostgreSQL store it names; until then
 * collect gathers nothing). In the first case the
 * caller must then commit again into the same store handle, not close it
 * (into another handle the held statements would be counted lost rather
 * than risk counting them twice). Thread-safety: as the harvester.
 */
QP_EXPORT bool qp_harvester_in_doubt(const qp_harvester *h);

/* The message of the last failed call. Owned by the harvester; valid until
 * the next call on it. */
QP_EXPORT const char *qp_harvester_errmsg(const qp_harvester *h);

/*
 * Checks that the `len` bytes at `data` are a well-formed segment (every
 * check the harvester makes of a file's contents; ownership aside). QP_OK,
 * or QP_SYNTAX with the reason in errbuf. For tests and fuzzing. Thread-safe.
 */
QP_EXPORT qp_status qp_segment_check(const void *data, size_t len, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
