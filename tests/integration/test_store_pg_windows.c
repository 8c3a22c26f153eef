/* Windows read from the PostgreSQL store equal the same windows read from an
 * SQLite store of the same events: `qprof report --format json` and
 * `--format csv` byte for byte (the "store" member aside), over all time, a
 * whole UTC day, 12 whole hours, a window with minute edges, one minute and
 * one across midnight, with part of the PostgreSQL store written by a role
 * that only appends (deltas, which every read merges). The calls of each
 * window are also checked against a count of the events whose bucket starts
 * in it, so that an edge minute dropped or counted twice fails even where
 * both stores would share the mistake (the tiling is common code), and
 * windows of every shape against the merge of their recorded buckets
 * (tests/support/window_check.h: the 10-minute and 6-hour roll-ups of
 * schema version 10 exact). A store of version 9 with data, migrated, keeps
 * its totals, uses the new levels only from the completion point on, and a
 * writer of version 9 connected before the migration cannot write bucket
 * rows after it. */
#include "pgtest.h"

#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "window_check.h"

#define DAY0 1795132800LL /* 2026-11-20T00:00:00Z */
#define NEVENTS 16000
#define NCHUNKS 4

static qpt_pgdb g_db;
static char g_role[64], g_append_dsn[768], g_sqlite[512];

static long long count_on(const char *dsn, const char *sql) {
  return strtoll(qpt_pg_value(dsn, sql), NULL, 10);
}

static int setup(void **state) {
  (void)state;
  int pid = (int)getpid();
  if (qpt_pgdb_create(&g_db, "qprof_windows_%d", pid) != 0) return -1;
  snprintf(g_role, sizeof g_role, "qp_append_%d", pid);
  char sql[256];
  snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN", g_role);
  if (qpt_pg_try(qpt_pg_dsn(), sql) != 0) return -1;
  qpt_pg_dsn_as(g_append_dsn, sizeof g_append_dsn, g_role, g_db.name);
  snprintf(g_sqlite, sizeof g_sqlite, "%s/windows.db", qpt_tempdir());
  return 0;
}

static int teardown(void **state) {
  qpt_pgdb_drop(&g_db);
  char sql[256];
  snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s", g_role);
  qpt_pg_try(qpt_pg_dsn(), sql);
  return qpt_tempdirs_remove(state);
}

static uint64_t rnd(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static const char *const texts[] = {
    "select * from orders where id = ?", "update stock set n = n - ? where sku = ?",
    "insert into log values (?, ?)",     "select count(*) from users where org = ?",
    "delete from carts where age > ?",   "select name from items where id in (?)",
};
static const char *const hosts[] = {"web-1", "web-2", "batch"};
static const char *const users[] = {"app", "report"};
static const char *const apps[] = {"api", "cron"};

/* Event i: its end time (ns) and the rest, all from a fixed sequence. The
 * first events sit on the edges of the windows below (06:16, 06:17, 12:00,
 * 18:42 and 18:43, the last nanosecond of a minute and the first), the others
 * anywhere from 2 hours before the day to 2 hours after it. */
static qp_query_event event(int i, uint64_t *seed) {
  static const int64_t edges[] = {
      DAY0 + 6 * 3600 + 16 * 60, DAY0 + 6 * 3600 + 17 * 60, DAY0 + 12 * 3600,
      DAY0 + 18 * 3600 + 42 * 60, DAY0 + 18 * 3600 + 43 * 60, DAY0 + 22 * 3600 + 13 * 60,
      DAY0 + 25 * 3600 + 6 * 60,
  };
  qp_query_event e = {.size = sizeof e};
  uint64_t r = rnd(seed);
  int k = (int)(r % 6);
  e.backend = QP_BACKEND_POSTGRES;
  e.database = k < 4 ? "shop" : "audit";
  e.normalized = texts[k];
  e.normalized_len = strlen(texts[k]);
  e.fingerprint = 0x5100 + (uint64_t)k;
  e.host = hosts[(r >> 8) % 3];
  e.user = users[(r >> 12) % 2];
  e.application = apps[(r >> 16) % 2];
  e.duration_ns = 20000 + (rnd(seed) % 4000000) * (1 + (r >> 20) % 5);
  e.rows = (int64_t)((r >> 24) % 50);
  e.error = (r >> 30) % 97 == 0 ? "40001" : (r >> 30) % 89 == 0 ? "23505" : NULL;
  e.cache_hit = e.error == NULL && (r >> 40) % 31 == 0;
  int64_t t_ns;
  if (i < 7 * 4) {
    /* four per edge: the minute's first and last nanosecond, and the same
     * around the minute before */
    int64_t m = edges[i / 4] * 1000000000LL;
    static const int64_t off[] = {0, 59999999999LL, -1, -60000000000LL};
    t_ns = m + off[i % 4];
  } else {
    t_ns = (DAY0 - 7200) * 1000000000LL + (int64_t)(rnd(seed) % (28ULL * 3600 * 1000000000ULL));
  }
  e.end_wall_ns = t_ns;
  return e;
}

/* Of the first `chunks` chunks of events, those whose bucket (the minute)
 * starts in [since, until) s: calls and cache hits as the report counts them. */
static void expect(int chunks, int64_t since, int64_t until, uint64_t *calls, uint64_t *hits) {
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  *calls = *hits = 0;
  for (int i = 0; i < chunks * (NEVENTS / NCHUNKS); i++) {
    qp_query_event e = event(i, &seed);
    int64_t b = e.end_wall_ns / 1000000000LL / 60 * 60;
    if (b < since || b >= until) continue;
    if (e.cache_hit) (*hits)++;
    else (*calls)++;
  }
}

/* Records chunks [from, to) of the events into both stores: into the
 * PostgreSQL one through `pg` (the owner merges in place; the role without
 * UPDATE appends deltas). */
static void record(int from, int to, const char *pg_dsn) {
  char err[512];
  qp_store *lite = NULL, *pg = NULL;
  assert_int_equal(qp_store_open(&lite, g_sqlite, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_store_open(&pg, pg_dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  for (int i = 0; i < from * (NEVENTS / NCHUNKS); i++) (void)event(i, &seed);
  for (int c = from; c < to; c++) {
    qp_profile *pl = NULL, *pp = NULL;
    assert_int_equal(qp_profile_new(&pl, NULL, err, sizeof err), QP_OK);
    assert_int_equal(qp_profile_new(&pp, NULL, err, sizeof err), QP_OK);
    for (int i = c * (NEVENTS / NCHUNKS); i < (c + 1) * (NEVENTS / NCHUNKS); i++) {
      qp_query_event e = event(i, &seed);
      assert_int_equal(qp_profile_record(pl, &e), QP_OK);
      assert_int_equal(qp_profile_record(pp, &e), QP_OK);
    }
    assert_int_equal(qp_profile_flush(pl, lite), QP_OK);
    assert_int_equal(qp_profile_flush(pp, pg), QP_OK);
    qp_profile_free(pl);
    qp_profile_free(pp);
  }
  qp_store_close(lite);
  qp_store_close(pg);
}

/* The report of `store` over `args` in `format`, its "store" member blanked. */
static char *report(const char *store, const char *args, const char *format) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "'%s' report --store '%s' %s --limit 0 --format %s | sed -e 's/\"store\": *\"[^\"]*\"/"
           "\"store\":\"\"/'",
           getenv("QPROF_BIN"), store, args, format);
  char *out = NULL, *err = NULL;
  int rc = qpt_run_capture(qpt_tempdir(), cmd, &out, &err);
  if (rc != 0) fail_msg("%s: exit %d: %s", cmd, rc, err ? err : "");
  free(err);
  return out;
}

typedef struct window {
  const char *name, *args;
  int64_t since, until; /* bucket starts, s */
} window;

/* Every window of both stores after `chunks` chunks: the PostgreSQL store's
 * calls against the events, its reports against the SQLite store's. */
static void compare(int chunks, const char *when) {
  static const window w[] = {
      {"all time", "", INT64_MIN, INT64_MAX},
      {"the day", "--since 2026-11-20T00:00Z --until 2026-11-21T00:00Z", DAY0, DAY0 + 86400},
      {"12 hours", "--since 2026-11-20T06:00Z --until 2026-11-20T18:00Z", DAY0 + 6 * 3600,
       DAY0 + 18 * 3600},
      {"minute edges", "--since 2026-11-20T06:17Z --until 2026-11-20T18:43Z",
       DAY0 + 6 * 3600 + 17 * 60, DAY0 + 18 * 3600 + 43 * 60},
      {"one minute", "--since 2026-11-20T12:00Z --until 2026-11-20T12:01Z", DAY0 + 12 * 3600,
       DAY0 + 12 * 3600 + 60},
      {"across midnight", "--since 2026-11-20T22:13Z --until 2026-11-21T01:07Z",
       DAY0 + 22 * 3600 + 13 * 60, DAY0 + 25 * 3600 + 7 * 60},
  };
  char err[512];
  qp_store *pg = NULL;
  assert_int_equal(qp_store_open(&pg, g_db.dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  assert_true(wc_check_all(pg, DAY0, when) > 0);
  for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
    uint64_t calls, hits;
    expect(chunks, w[i].since, w[i].until, &calls, &hits);
    assert_true(calls > 0);
    qpt_sum sum = {0};
    int64_t since_ns = w[i].since == INT64_MIN ? INT64_MIN : w[i].since * 1000000000LL;
    int64_t until_ns = w[i].until == INT64_MAX ? INT64_MAX : w[i].until * 1000000000LL;
    assert_int_equal(qp_store_summarize(pg, since_ns, until_ns, qpt_sum_add, &sum), QP_OK);
    if (sum.calls != calls)
      fail_msg("%s, %s: %llu calls in the PostgreSQL store, %llu events", when, w[i].name,
               (unsigned long long)sum.calls, (unsigned long long)calls);
    static const char *const formats[] = {"json", "csv"};
    for (int f = 0; f < 2; f++) {
      char *a = report(g_db.dsn, w[i].args, formats[f]);
      char *b = report(g_sqlite, w[i].args, formats[f]);
      assert_non_null(a);
      assert_non_null(b);
      assert_true(strlen(a) > 200);
      if (strcmp(a, b) != 0)
        fail_msg("%s, %s, %s: the PostgreSQL store's report differs from the SQLite store's:\n"
                 "%.600s\n---\n%.600s",
                 when, w[i].name, formats[f], a, b);
      free(a);
      free(b);
    }
  }
  /* broken down by host and application too */
  static const char by[] = "--since 2026-11-20T06:17Z --until 2026-11-20T18:43Z --by host,application";
  char *a = report(g_db.dsn, by, "json");
  char *b = report(g_sqlite, by, "json");
  assert_string_equal(a, b);
  free(a);
  free(b);
  qp_store_close(pg);
}

static void test_windows_equal_sqlite(void **state) {
  (void)state;
  char err[512];
  qp_store *s = NULL;
  assert_int_equal(qp_store_open(&s, g_db.dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  char sql[512];
  snprintf(sql, sizeof sql,
           "GRANT USAGE ON SCHEMA qprof TO %s; GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA qprof "
           "TO %s",
           g_role, g_role);
  qpt_pg_exec(g_db.dsn, sql);
  /* merged rows only: every tile read by the plain scan */
  record(0, NCHUNKS / 2, g_db.dsn);
  assert_int_equal(count_on(g_db.dsn, "SELECT count(*) FROM qprof.qp_stats_delta"), 0);
  compare(NCHUNKS / 2, "rows merged in place");
  /* then deltas on top (read merged per key) */
  record(NCHUNKS / 2, NCHUNKS, g_append_dsn);
  assert_true(count_on(g_db.dsn, "SELECT count(*) FROM qprof.qp_stats_delta WHERE level = 0") >
              1000);
  compare(NCHUNKS, "with deltas");
}

static qp_store *open_pg(const char *dsn, qp_store_mode mode) {
  char err[512];
  qp_store *s = NULL;
  if (qp_store_open(&s, dsn, mode, NULL, err, sizeof err) != QP_OK) fail_msg("%s", err);
  return s;
}

/* A bucket row as a writer of version 9 inserts it (its flush's first
 * statement of qp_stats, without the setting of version 10). */
static const char SQL_OLD_ROW[] =
    "INSERT INTO qprof.qp_stats (level, bucket, fingerprint, backend, database, calls, errors, "
    "error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist) "
    "VALUES (0, 60, 7, 'postgres', 'x', 1, 0, '', 0, 1, 1, 1, 0, 0, 0, '')";

/* Runs after test_windows_equal_sqlite, on its store: taken back to version
 * 9 (the same tables; no 10-minute or 6-hour rows, no trigger, no
 * completion point), read, migrated, written. */
static void test_migrates_v9(void **state) {
  (void)state;
  qpt_pg_exec(g_db.dsn,
              "DELETE FROM qprof.qp_stats WHERE level IN (4, 5); "
              "DELETE FROM qprof.qp_stats_delta WHERE level IN (4, 5); "
              "DROP TRIGGER qp_stats_levels ON qprof.qp_stats; "
              "DROP TRIGGER qp_stats_delta_levels ON qprof.qp_stats_delta; "
              "DROP FUNCTION qprof.qp_levels_guard(); "
              "DELETE FROM qprof.qp_meta WHERE key = 'levels_10m_6h_from'; "
              "UPDATE qprof.qp_meta SET value = '9' WHERE key = 'schema_version'");
  qp_store *s = open_pg(g_db.dsn, QP_STORE_READ);
  assert_int_equal(s->levels_from, INT64_MAX);
  wc_check_all(s, DAY0, "version 9, read as it is");
  qpt_sum all8 = wc_totals(s, INT64_MIN, INT64_MAX);
  qp_store_close(s);

  /* a writer of version 9, connected before the migration, mid-flush */
  PGconn *old = PQconnectdb(g_db.dsn);
  assert_int_equal(PQstatus(old), CONNECTION_OK);
  PQclear(PQexec(old, "BEGIN"));
  PGresult *r = PQexec(old, SQL_OLD_ROW);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  PQclear(PQexec(old, "ROLLBACK"));

  int64_t t0 = (int64_t)time(NULL);
  s = open_pg(g_db.dsn, QP_STORE_WRITE); /* migrates */
  int64_t t1 = (int64_t)time(NULL);
  int64_t from = s->levels_from;
  assert_true(from % 21600 == 0);
  assert_true(from >= t0 + 3600 - 5 && from < t1 + 3600 + 21600 + 5);
  assert_int_equal(count_on(g_db.dsn, "SELECT value::int FROM qprof.qp_meta "
                                         "WHERE key = 'schema_version'"),
                   10);

  /* its next flush is refused whole (as the append-only path's) */
  PQclear(PQexec(old, "BEGIN"));
  r = PQexec(old, SQL_OLD_ROW);
  assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
  assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "QPL09");
  assert_non_null(strstr(PQresultErrorMessage(r), "upgrade"));
  PQclear(r);
  PQclear(PQexec(old, "ROLLBACK"));
  r = PQexec(old, "INSERT INTO qprof.qp_stats_delta (level, bucket, fingerprint, backend, "
                  "database, calls, errors, error_codes, rows, total_ns, min_ns, max_ns, m2, "
                  "first_seen_ns, last_seen_ns, hist) VALUES (0, 60, 7, 'postgres', 'x', 1, 0, "
                  "'', 0, 1, 1, 1, 0, 0, 0, '')");
  assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
  PQclear(r);
  /* with the setting of version 10 (what its flush says) the same row goes in */
  PQclear(PQexec(old, "BEGIN"));
  PQclear(PQexec(old, "SELECT set_config('qprof.levels', '6', true)"));
  r = PQexec(old, SQL_OLD_ROW);
  assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  PQclear(PQexec(old, "ROLLBACK"));
  PQfinish(old);
  assert_int_equal(count_on(g_db.dsn, "SELECT count(*) FROM qprof.qp_stats WHERE "
                                         "fingerprint = 7"),
                   0);

  /* totals unchanged, then new rows in the past (whose 10-minute and
   * 6-hour rows hold only them: not to be read) and around the completion
   * point, by the owner and by the role that appends */
  assert_int_equal(wc_totals(s, INT64_MIN, INT64_MAX).calls, all8.calls);
  wc_check_all(s, DAY0, "migrated");
  qp_store_close(s);
  record(0, 1, g_db.dsn);
  record(1, 2, g_append_dsn);
  s = open_pg(g_db.dsn, QP_STORE_READ);
  wc_check_all(s, DAY0, "migrated, new rows in the past");
  qp_store_close(s);

  /* rows after the completion point, 10 minutes of buckets deleted under a
   * 6-hour row: the window of that 6 hours still has them (read from the
   * roll-up), the 9 minutes of buckets alone do not */
  int64_t q = from + 21600;
  char err[512];
  qp_store *w = open_pg(g_db.dsn, QP_STORE_WRITE);
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < 600; i++) {
    qp_query_event e = {.size = sizeof e, .backend = QP_BACKEND_POSTGRES, .database = "shop"};
    e.normalized = texts[i % 6];
    e.normalized_len = strlen(texts[i % 6]);
    e.fingerprint = 0x5100 + (uint64_t)(i % 6);
    e.host = hosts[i % 3];
    e.user = "app";
    e.application = "api";
    e.duration_ns = 1000000 + (uint64_t)i * 7919;
    e.end_wall_ns = (q - 3600 + (int64_t)i * 60) * 1000000000LL;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
  }
  assert_int_equal(qp_profile_flush(p, w), QP_OK);
  qp_profile_free(p);
  qp_store_close(w);
  s = open_pg(g_db.dsn, QP_STORE_READ);
  wc_check_all(s, qp__floor_div(q, 86400) * 86400, "after the completion point");
  qpt_sum six = wc_totals(s, q, q + 21600), ten = wc_totals(s, q + 600, q + 1200);
  qp_store_close(s);
  assert_int_equal(ten.calls, 10);
  char sql[256];
  snprintf(sql, sizeof sql,
           "DELETE FROM qprof.qp_stats WHERE level = 0 AND bucket >= %lld AND bucket < %lld",
           (long long)(q + 600), (long long)(q + 1200));
  qpt_pg_exec(g_db.dsn, sql);
  s = open_pg(g_db.dsn, QP_STORE_READ);
  assert_int_equal(wc_totals(s, q, q + 21600).calls, six.calls);
  assert_int_equal(wc_totals(s, q + 600, q + 1200).calls, 10);
  assert_int_equal(wc_totals(s, q + 600, q + 1140).calls, 0);
  qp_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_windows_equal_sqlite),
      cmocka_unit_test(test_migrates_v9),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
