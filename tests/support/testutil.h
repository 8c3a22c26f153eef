/*
 * Helpers shared by the tests. Include after <cmocka.h>'s prerequisites.
 */
#ifndef QP_TESTUTIL_H
#define QP_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdbool.h>

#include "qprof/qprof.h"

/* Loads the PG fixture's env file (PGHOST, PGPORT, ...) into the environment.
 * Returns false when there is none (the test should then fail: the fixture is
 * required). */
bool qpt_pg_env_load(void);
/* "host=... port=... user=postgres dbname=postgres" for the fixture cluster;
 * static buffer. Calls qpt_pg_env_load(). */
const char *qpt_pg_dsn(void);
/* Runs a shell command; returns its exit status (or -1). */
int qpt_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A fresh temporary directory (mkdtemp under /tmp); static buffer per call index. */
const char *qpt_tempdir(void);
/* A new SQLite store `name` in a fresh qpt_tempdir() with `prof` flushed into
 * it, open for writing; fails the test when either fails. The caller closes it. */
qp_store *qpt_flushed_store(qp_profile *prof, const char *name);
/* Runs the shell command `cmd` in `dir` with stdout and stderr sent to
 * dir/out.txt and dir/err.txt; returns its exit status and, when out/err are
 * not NULL, the two outputs (malloc'd; the caller frees). */
int qpt_run_capture(const char *dir, const char *cmd, char **out, char **err);
/* Removes every directory qpt_tempdir() made in this process (a cmocka group
 * teardown: state is ignored). */
int qpt_tempdirs_remove(void **state);
/* Totals over the queries of a qp_store_summarize window: pass
 * qpt_sum_add as the callback and a zeroed qpt_sum as its user data. `sd` is
 * the standard deviation of the last query seen. */
typedef struct qpt_sum {
  uint64_t calls, errors, total;
  int n;
  double sd;
} qpt_sum;
int qpt_sum_add(const qp_query_summary *q, void *ud);
/* A normalizer for `d` without user rules; fails the test when it cannot be
 * made. The caller frees it with qp_normalizer_free. */
qp_normalizer *qpt_normalizer(qp_dialect d);
/* Normalizes sql[0..len) into a static QP_NORMALIZED_MAX buffer, asserting
 * QP_OK and that the reported length is the text's; returns the text and,
 * when fp is not NULL, the fingerprint. */
const char *qpt_normalize(const qp_normalizer *n, const char *sql, size_t len, uint64_t *fp);
/* Reads a whole file (malloc'd, NUL-terminated); NULL on error. */
char *qpt_read_file(const char *path, size_t *len);

#endif
