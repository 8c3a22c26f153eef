/* Which privileges a role needs to write the PostgreSQL store
 * (docs/profiles.md, "The fleet store"): USAGE on schema qprof and SELECT,
 * INSERT, UPDATE on its tables are enough to flush (new rows and merges into
 * existing ones) and to keep a log file's position; SELECT and INSERT alone
 * are enough too: such a role appends deltas, which every read merges
 * exactly and a compaction folds in; without USAGE on the schema a role
 * gets a clear error; a writer that finds an older store cannot migrate it
 * and says so, leaving the store as it was. Then append-only writers, upsert
 * writers and compactions at once: every read (summaries over windows at
 * every level, the rows of every level, the CLI's JSON report) equals a
 * reference store that got the same events from one writer, before and
 * after the compaction. Roles are made per test process (unique names) and
 * dropped at the end. */
#include "pgtest.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/store_int.h"

#define ROLES 4
enum { WRITER, INSEL, NOUSAGE, UPSERTDEL };
static qpt_pgdb g_db;
static char g_role[ROLES][64], g_role_dsn[ROLES][768];
/* the second database, for the concurrent test */
static qpt_pgdb g_db2;
static char g_role2_dsn[ROLES][768];
/* the samples test: a store merged in place and one appended to */
static qpt_pgdb g_db3[2];
static char g_insel3_dsn[768];

static void execf(const char *dsn, const char *fmt, const char *a) {
  char sql[512];
  snprintf(sql, sizeof sql, fmt, a, a);
  qpt_pg_exec(dsn, sql);
}

static int setup(void **state) {
  (void)state;
  if (qpt_pg_dsn() == NULL) return -1;
  int pid = (int)getpid();
  if (qpt_pgdb_create(&g_db, "qprof_grants_%d", pid) != 0) return -1;
  if (qpt_pgdb_create(&g_db2, "qprof_grants2_%d", pid) != 0) return -1;
  for (int k = 0; k < 2; k++)
    if (qpt_pgdb_create(&g_db3[k], "qprof_samples%d_%d", k, pid) != 0) return -1;
  static const char *const kinds[ROLES] = {"writer", "insel", "nousage", "upsertdel"};
  for (int i = 0; i < ROLES; i++) {
    snprintf(g_role[i], sizeof g_role[i], "qp_%s_%d", kinds[i], pid);
    execf(qpt_pg_dsn(), "CREATE ROLE %s LOGIN", g_role[i]);
    qpt_pg_dsn_as(g_role_dsn[i], sizeof g_role_dsn[i], g_role[i], g_db.name);
    qpt_pg_dsn_as(g_role2_dsn[i], sizeof g_role2_dsn[i], g_role[i], g_db2.name);
  }
  qpt_pg_dsn_as(g_insel3_dsn, sizeof g_insel3_dsn, g_role[INSEL], g_db3[1].name);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  qpt_pgdb_drop(&g_db);
  qpt_pgdb_drop(&g_db2);
  for (int k = 0; k < 2; k++) qpt_pgdb_drop(&g_db3[k]);
  for (int i = 0; i < ROLES; i++) execf(qpt_pg_dsn(), "DROP ROLE IF EXISTS %s", g_role[i]);
  return qpt_tempdirs_remove(state);
}

static qp_profile *profile_with(int n) {
  qp_profile *p = NULL;
  char err[256];
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < n; i++) {
    qp_query_event e = {.size = sizeof e};
    e.backend = QP_BACKEND_POSTGRES;
    e.database = "app";
    e.user = "alice";
    e.normalized = "select ?";
    e.normalized_len = 8;
    e.fingerprint = 0x6A7;
    e.duration_ns = 1000;
    e.rows = 2;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
  }
  return p;
}

static void test_writer_grants(void **state) {
  (void)state;
  char err[512];
  /* the owner creates the store */
  qp_store *s = NULL;
  assert_int_equal(qp_store_open(&s, g_db.dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  /* exactly the documented grants */
  execf(g_db.dsn, "GRANT USAGE ON SCHEMA qprof TO %s", g_role[0]);
  execf(g_db.dsn, "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA qprof TO %s", g_role[0]);
  execf(g_db.dsn, "GRANT USAGE ON SCHEMA qprof TO %s", g_role[1]);
  execf(g_db.dsn, "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA qprof TO %s", g_role[1]);

  /* the writer: a new row, then a merge into it, then a file position */
  assert_int_equal(qp_store_open(&s, g_role_dsn[0], QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  for (int round = 0; round < 2; round++) {
    qp_profile *p = profile_with(3);
    qp_status rc = qp_profile_flush(p, s);
    if (rc != QP_OK) fail_msg("writer flush %d: %s", round, qp_store_errmsg(s));
    qp_profile_free(p);
  }
  qp_file_mark m = {.path = "/var/log/x.log", .device = 1, .inode = 2, .size = 3, .head_len = 3,
                    .head_hash = 4, .read_to = 3, .lines = 1};
  qp_profile *p = profile_with(1);
  assert_int_equal(qp__store_flush_marked(s, p, &m), QP_OK);
  assert_true(m.id > 0);
  m.read_to = 3;
  assert_int_equal(qp__store_flush_marked(s, p, &m), QP_OK); /* the UPDATE of the mark */
  qp_profile_free(p);
  qp_store_close(s);
  assert_string_equal(
      qpt_pg_value(g_db.dsn, "SELECT sum(calls) || '/' || sum(rows) FROM qprof.qp_stats "
                             "WHERE level = 3 AND user_name = 'alice'"),
      "7/14");

  /* SELECT and INSERT alone (and no grant on any sequence): the flush
   * appends deltas, twice, and a file position twice (a new row each time,
   * the newest found first); reads merge them with the rows */
  assert_int_equal(qp_store_open(&s, g_role_dsn[INSEL], QP_STORE_WRITE, NULL, err, sizeof err),
                   QP_OK);
  for (int round = 0; round < 2; round++) {
    p = profile_with(round == 0 ? 5 : 6);
    qp_status rc = qp_profile_flush(p, s);
    if (rc != QP_OK) fail_msg("SELECT, INSERT only: flush %d: %s", round, qp_store_errmsg(s));
    qp_profile_free(p);
  }
  qp_file_mark m2 = {.path = "/var/log/y.log", .device = 5, .inode = 6, .size = 3, .head_len = 3,
                     .head_hash = 7, .read_to = 2, .lines = 1};
  p = profile_with(1);
  assert_int_equal(qp__store_flush_marked(s, p, &m2), QP_OK);
  int64_t first_id = m2.id;
  m2.read_to = 3;
  assert_int_equal(qp__store_flush_marked(s, p, &m2), QP_OK);
  assert_true(m2.id > first_id);
  qp_file_mark found[QP_MARKS_MAX];
  size_t nfound = 0;
  assert_int_equal(qp__store_marks_find(s, 5, 6, 7, found, QP_MARKS_MAX, &nfound), QP_OK);
  assert_true(nfound == 2);
  assert_int_equal(found[0].read_to, 3);
  qp_profile_free(p);
  /* statements the shim dropped (segment full): a delta too */
  qp_drop drop = {.bucket = 120, .n = 4};
  assert_int_equal(qp__store_write(s, NULL, &drop), QP_OK);
  uint64_t dropped = 0;
  assert_int_equal(qp__store_dropped(s, INT64_MIN, INT64_MAX, &dropped), QP_OK);
  assert_int_equal(dropped, 4);
  qpt_sum sum = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &sum), QP_OK);
  assert_int_equal(sum.calls, 7 + 5 + 6 + 1);
  qp_store_close(s);
  assert_string_equal(
      qpt_pg_value(g_db.dsn, "SELECT sum(calls) FROM qprof.qp_stats WHERE level = 3"), "7");
  assert_string_equal(
      qpt_pg_value(g_db.dsn, "SELECT sum(calls) FROM qprof.qp_stats_delta WHERE level = 3"), "12");
  assert_string_equal(qpt_pg_value(g_db.dsn, "SELECT calls FROM qprof.qp_summary"), "19");
  /* the upsert writer without DELETE does not compact; `qprof compact` by
   * it is refused, nothing changed */
  char cmd[1200];
  char *out = NULL, *cerr = NULL;
  snprintf(cmd, sizeof cmd, "'%s' compact --store '%s'", getenv("QPROF_BIN"), g_role_dsn[WRITER]);
  assert_int_equal(qpt_run_capture(qpt_tempdir(), cmd, &out, &cerr), 1);
  printf("# compact without DELETE: %s", cerr);
  assert_non_null(strstr(cerr, "compacting the store needs"));
  free(out);
  free(cerr);
  /* the owner compacts: the deltas are folded in, the totals stay */
  snprintf(cmd, sizeof cmd, "'%s' compact --store '%s'", getenv("QPROF_BIN"), g_db.dsn);
  assert_int_equal(qpt_run_capture(qpt_tempdir(), cmd, &out, &cerr), 0);
  printf("# %s", out);
  /* three flushes of one key, at six levels each */
  assert_non_null(strstr(out, "deltas folded: 18 statistics, 1 dropped counts"));
  assert_non_null(strstr(out, "deltas left: 0"));
  free(out);
  free(cerr);
  assert_string_equal(
      qpt_pg_value(g_db.dsn, "SELECT sum(calls) || '/' || sum(rows) FROM qprof.qp_stats "
                             "WHERE level = 3"),
      "19/38");
  assert_string_equal(qpt_pg_value(g_db.dsn, "SELECT count(*) FROM qprof.qp_stats_delta"), "0");
  assert_string_equal(qpt_pg_value(g_db.dsn, "SELECT dropped FROM qprof.qp_dropped"), "4");
  /* more deltas; qprof prune as the owner folds them in before it prunes */
  assert_int_equal(qp_store_open(&s, g_role_dsn[INSEL], QP_STORE_WRITE, NULL, err, sizeof err),
                   QP_OK);
  p = profile_with(2);
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qp_profile_free(p);
  qp_store_close(s);
  /* one key, six levels */
  assert_string_equal(qpt_pg_value(g_db.dsn, "SELECT count(*) FROM qprof.qp_stats_delta"), "6");
  snprintf(cmd, sizeof cmd, "'%s' prune --older-than 1d --store '%s'", getenv("QPROF_BIN"),
           g_db.dsn);
  assert_int_equal(qpt_run_capture(qpt_tempdir(), cmd, &out, &cerr), 0);
  free(out);
  free(cerr);
  assert_string_equal(qpt_pg_value(g_db.dsn, "SELECT count(*) FROM qprof.qp_stats_delta"), "0");
  assert_string_equal(
      qpt_pg_value(g_db.dsn, "SELECT sum(calls) FROM qprof.qp_stats WHERE level = 3"), "21");
  qp_status rc;

  /* no USAGE on the schema: refused at open, clearly */
  rc = qp_store_open(&s, g_role_dsn[2], QP_STORE_WRITE, NULL, err, sizeof err);
  printf("# no USAGE: %s\n", err);
  assert_int_not_equal(rc, QP_OK);
  assert_non_null(strstr(err, "permission denied"));

  /* an older store: the writer may not migrate it, and it stays as it was */
  qpt_pg_exec(g_db.dsn, "UPDATE qprof.qp_meta SET value = '5' WHERE key = 'schema_version'");
  rc = qp_store_open(&s, g_role_dsn[0], QP_STORE_WRITE, NULL, err, sizeof err);
  printf("# migration by the writer: %s\n", err);
  assert_int_equal(rc, QP_REFUSED);
  assert_non_null(strstr(err, "needs the owner"));
  assert_non_null(strstr(err, "nothing was changed"));
  assert_string_equal(
      qpt_pg_value(g_db.dsn, "SELECT value FROM qprof.qp_meta WHERE key = 'schema_version'"), "5");
  /* a reader role reads it as it is */
  assert_int_equal(qp_store_open(&s, g_role_dsn[0], QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
}

/* ---- append-only writers, upsert writers and compactions at once -------- */

#define FPS 30
#define ROUNDS 8
#define PER_ROUND 500
#define SPAN_S (3 * 3600)

enum { APPEND1, APPEND2, UPSERT, UPSERT_COMPACT, NWRITERS };

static int64_t g_t0; /* the end of the events' span (s) */
static pthread_mutex_t g_ref_mu = PTHREAD_MUTEX_INITIALIZER;
static qp_profile *g_ref;          /* the same events, for the reference store */
static atomic_bool g_stop_compact;
static atomic_int g_compactions, g_compact_failed;
static atomic_ullong g_compacted; /* deltas the compaction threads folded */
static char g_fail_msg[512];

typedef struct tally {
  uint64_t calls, total, min, max;
} tally;
static tally g_tally[FPS];

static uint64_t lcg(uint64_t *x) {
  *x = *x * 6364136223846793005ull + 1442695040888963407ull;
  return *x >> 17;
}

/* One round of a writer: PER_ROUND events on keys every writer shares
 * (fingerprint, user "shared") and its own (its user), spread over the last
 * three hours, recorded into its profile and the reference. */
static void record_round(qp_profile *p, int writer, int round) {
  static const char *const users[NWRITERS] = {"app1", "app2", "ups", "upc"};
  uint64_t x = (uint64_t)(writer * 1000 + round) * 7919u + 17u;
  char text[FPS][32];
  for (int f = 0; f < FPS; f++) snprintf(text[f], sizeof text[f], "select %d, ?", f);
  for (int i = 0; i < PER_ROUND; i++) {
    int f = (int)(lcg(&x) % FPS);
    qp_query_event e = {.size = sizeof e};
    e.backend = QP_BACKEND_POSTGRES;
    e.database = "app";
    e.user = lcg(&x) % 2 ? "shared" : users[writer];
    e.application = "grants";
    e.host = "h1";
    e.normalized = text[f];
    e.normalized_len = strlen(text[f]);
    e.fingerprint = 0x1000 + (uint64_t)f;
    e.duration_ns = 1000 + lcg(&x) % 5000000;
    e.rows = (int64_t)(lcg(&x) % 10);
    e.error = lcg(&x) % 17 == 0 ? "23505" : NULL;
    e.end_wall_ns = (g_t0 - (int64_t)(lcg(&x) % SPAN_S)) * 1000000000LL + 5;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
    pthread_mutex_lock(&g_ref_mu);
    assert_int_equal(qp_profile_record(g_ref, &e), QP_OK);
    tally *t = &g_tally[f];
    if (t->calls == 0 || e.duration_ns < t->min) t->min = e.duration_ns;
    if (e.duration_ns > t->max) t->max = e.duration_ns;
    t->calls++;
    t->total += e.duration_ns;
    pthread_mutex_unlock(&g_ref_mu);
  }
}

typedef struct wjob {
  int writer;
  const char *dsn;
  int rounds;
  qp_status rc;
  char msg[512];
} wjob;

static void *writer_main(void *arg) {
  wjob *j = arg;
  char err[512];
  qp_store *s = NULL;
  j->rc = qp_store_open(&s, j->dsn, QP_STORE_WRITE, NULL, err, sizeof err);
  if (j->rc != QP_OK) {
    snprintf(j->msg, sizeof j->msg, "%s", err);
    return NULL;
  }
  qp_profile *p = NULL;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  for (int round = 0; round < j->rounds && j->rc == QP_OK; round++) {
    record_round(p, j->writer, round);
    j->rc = qp_profile_flush(p, s);
    if (j->rc != QP_OK) snprintf(j->msg, sizeof j->msg, "%s", qp_store_errmsg(s));
  }
  qp_profile_free(p);
  qp_store_close(s);
  return NULL;
}

static void *compactor_main(void *arg) {
  (void)arg;
  char err[512];
  qp_store *s = NULL;
  assert_int_equal(qp_store_open(&s, g_db2.dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  while (!atomic_load(&g_stop_compact)) {
    qp_compact_result r;
    /* small batches, so that compactions overlap each other and the flushes */
    if (qp_store_compact(s, 300, &r) != QP_OK) {
      if (atomic_fetch_add(&g_compact_failed, 1) == 0)
        snprintf(g_fail_msg, sizeof g_fail_msg, "%s", qp_store_errmsg(s));
    }
    atomic_fetch_add(&g_compacted, r.rows);
    atomic_fetch_add(&g_compactions, 1);
    struct timespec ts = {.tv_nsec = 2000000};
    nanosleep(&ts, NULL);
  }
  qp_store_close(s);
  return NULL;
}

/* The queries of a window, as qp_store_summarize gives them, in key order. */
typedef struct sumrow {
  char key[160];
  char line[512];
} sumrow;
typedef struct sumset {
  sumrow *v;
  size_t n, cap;
} sumset;

static int sum_take(const qp_query_summary *q, void *ud) {
  sumset *s = ud;
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 64;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
    assert_non_null(s->v);
  }
  sumrow *r = &s->v[s->n++];
  snprintf(r->key, sizeof r->key, "%016llx|%s|%s|%s|%s", (unsigned long long)q->fingerprint,
           q->database, q->user, q->application, q->host);
  snprintf(r->line, sizeof r->line,
           "%s calls %llu errors %llu (%s) rows %lld total %llu min %llu max %llu p50 %.0f p90 "
           "%.0f p95 %.0f p99 %.0f p999 %.0f first %lld last %lld text '%s'",
           r->key, (unsigned long long)q->calls, (unsigned long long)q->errors, q->error_codes,
           (long long)q->rows, (unsigned long long)q->total_ns, (unsigned long long)q->min_ns,
           (unsigned long long)q->max_ns, q->p50_ns, q->p90_ns, q->p95_ns, q->p99_ns, q->p999_ns,
           (long long)q->first_seen_ns, (long long)q->last_seen_ns, q->query);
  return 0;
}

static int by_key(const void *a, const void *b) {
  return strcmp(((const sumrow *)a)->key, ((const sumrow *)b)->key);
}

static sumset summary_of(qp_store *s, int64_t since_ns, int64_t until_ns) {
  sumset set = {0};
  if (qp_store_summarize(s, since_ns, until_ns, sum_take, &set) != QP_OK)
    fail_msg("summarize: %s", qp_store_errmsg(s));
  qsort(set.v, set.n, sizeof *set.v, by_key);
  return set;
}

/* The stored rows of one level, merged per key and bucket by the store. */
static qp_status row_take(void *ud, const qp_entry *e) {
  sumset *s = ud;
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 1024;
    s->v = realloc(s->v, s->cap * sizeof *s->v);
    assert_non_null(s->v);
  }
  sumrow *r = &s->v[s->n++];
  snprintf(r->key, sizeof r->key, "%lld|%016llx|%s|%s|%s|%s", (long long)e->bucket,
           (unsigned long long)e->fingerprint, e->database, e->user, e->application, e->host);
  snprintf(r->line, sizeof r->line,
           "%s calls %llu errors %llu rows %lld total %llu min %llu max %llu p50 %.0f p99 %.0f "
           "first %lld last %lld",
           r->key, (unsigned long long)e->st.calls, (unsigned long long)e->st.errors,
           (long long)e->st.rows, (unsigned long long)e->st.total_ns,
           (unsigned long long)e->st.min_ns, (unsigned long long)e->st.max_ns,
           qp__stats_quantile(&e->st, 0.5), qp__stats_quantile(&e->st, 0.99),
           (long long)e->st.first_ns, (long long)e->st.last_ns);
  return QP_OK;
}

static sumset rows_of(qp_store *s, int level) {
  sumset set = {0};
  if (qp__store_scan(s, level, INT64_MIN, INT64_MAX, row_take, &set) != QP_OK)
    fail_msg("scan level %d: %s", level, qp_store_errmsg(s));
  qsort(set.v, set.n, sizeof *set.v, by_key);
  return set;
}

static void same_sets(const char *what, sumset a, sumset b) {
  if (a.n != b.n) fail_msg("%s: %zu entries in the fleet store, %zu in the reference", what, a.n, b.n);
  for (size_t i = 0; i < a.n; i++)
    if (strcmp(a.v[i].line, b.v[i].line) != 0)
      fail_msg("%s:\n  fleet     %s\n  reference %s", what, a.v[i].line, b.v[i].line);
  free(a.v);
  free(b.v);
}

/* Everything a reader sees of the fleet store equals the reference. */
static void same_as_reference(qp_store *pg, qp_store *ref, const char *when) {
  char what[128];
  int64_t h = (g_t0 / 3600) * 3600;
  const int64_t windows[][2] = {
      {INT64_MIN, INT64_MAX},
      /* minutes, then whole hours, then minutes */
      {(h - 2 * 3600 - 17 * 60) * 1000000000LL, (h + 7 * 60) * 1000000000LL},
      /* inside one hour: minutes only */
      {(h - 3600 + 5 * 60) * 1000000000LL, (h - 3600 + 50 * 60) * 1000000000LL},
  };
  for (size_t w = 0; w < sizeof windows / sizeof windows[0]; w++) {
    snprintf(what, sizeof what, "%s, window %zu", when, w);
    same_sets(what, summary_of(pg, windows[w][0], windows[w][1]),
              summary_of(ref, windows[w][0], windows[w][1]));
  }
  for (int level = 0; level < QP_LEVELS; level++) {
    snprintf(what, sizeof what, "%s, rows of level %d", when, level);
    sumset a = rows_of(pg, level);
    if (level == 0) printf("# %s: %zu rows of level 0\n", when, a.n);
    same_sets(what, a, rows_of(ref, level));
  }
  /* and the raw tallies: calls, total, min, max per fingerprint */
  sumset all = {0};
  tally got[FPS];
  memset(got, 0, sizeof got);
  assert_int_equal(qp_store_summarize(pg, INT64_MIN, INT64_MAX, sum_take, &all), QP_OK);
  for (size_t i = 0; i < all.n; i++) {
    unsigned long long fp, calls, total, mn, mx;
    assert_int_equal(sscanf(all.v[i].line, "%llx|", &fp), 1);
    const char *c = strstr(all.v[i].line, " calls ");
    assert_non_null(c);
    assert_int_equal(sscanf(c, " calls %llu", &calls), 1);
    c = strstr(c, " total ");
    assert_int_equal(sscanf(c, " total %llu min %llu max %llu", &total, &mn, &mx), 3);
    tally *t = &got[fp - 0x1000];
    if (t->calls == 0 || mn < t->min) t->min = mn;
    if (mx > t->max) t->max = mx;
    t->calls += calls;
    t->total += total;
  }
  free(all.v);
  for (int f = 0; f < FPS; f++)
    if (memcmp(&got[f], &g_tally[f], sizeof got[f]) != 0)
      fail_msg("%s: fingerprint %d: calls %llu total %llu min %llu max %llu, recorded %llu %llu "
               "%llu %llu",
               when, f, (unsigned long long)got[f].calls, (unsigned long long)got[f].total,
               (unsigned long long)got[f].min, (unsigned long long)got[f].max,
               (unsigned long long)g_tally[f].calls, (unsigned long long)g_tally[f].total,
               (unsigned long long)g_tally[f].min, (unsigned long long)g_tally[f].max);
}

static char *json_report(const char *dsn, const char *dir) {
  char cmd[1200];
  char *out = NULL, *cerr = NULL;
  snprintf(cmd, sizeof cmd, "'%s' report --store '%s' --format json --limit 1000 --by user",
           getenv("QPROF_BIN"), dsn);
  if (qpt_run_capture(dir, cmd, &out, &cerr) != 0) fail_msg("%s: %s", cmd, cerr);
  free(cerr);
  return out;
}

static void test_append_only_with_upserts_and_compaction(void **state) {
  (void)state;
  char err[512];
  g_t0 = time(NULL);
  assert_int_equal(qp_profile_new(&g_ref, NULL, err, sizeof err), QP_OK);
  qp_store *s = NULL;
  assert_int_equal(qp_store_open(&s, g_db2.dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  /* exactly the documented grants: appenders INSERT and SELECT (nothing on
   * sequences), an upsert writer with UPDATE, one with UPDATE and DELETE
   * (it compacts after its flushes) */
  const int roles[NWRITERS] = {INSEL, INSEL, WRITER, UPSERTDEL};
  static const char *const grants[ROLES] = {
      [WRITER] = "SELECT, INSERT, UPDATE", [INSEL] = "SELECT, INSERT",
      [UPSERTDEL] = "SELECT, INSERT, UPDATE, DELETE"};
  for (int r = 0; r < ROLES; r++) {
    if (grants[r] == NULL) continue;
    char sql[512];
    snprintf(sql, sizeof sql, "GRANT USAGE ON SCHEMA qprof TO %s", g_role[r]);
    qpt_pg_exec(g_db2.dsn, sql);
    snprintf(sql, sizeof sql, "GRANT %s ON ALL TABLES IN SCHEMA qprof TO %s", grants[r], g_role[r]);
    qpt_pg_exec(g_db2.dsn, sql);
  }

  /* phase 1: four writers and two compactions at once */
  pthread_t wt[NWRITERS], ct[2];
  wjob jobs[NWRITERS];
  for (int w = 0; w < NWRITERS; w++) {
    jobs[w] = (wjob){.writer = w, .dsn = g_role2_dsn[roles[w]], .rounds = ROUNDS};
    assert_int_equal(pthread_create(&wt[w], NULL, writer_main, &jobs[w]), 0);
  }
  for (int c = 0; c < 2; c++) assert_int_equal(pthread_create(&ct[c], NULL, compactor_main, NULL), 0);
  for (int w = 0; w < NWRITERS; w++) {
    pthread_join(wt[w], NULL);
    if (jobs[w].rc != QP_OK)
      fail_msg("writer %d: %s: %s", w, qp_errname(jobs[w].rc), jobs[w].msg);
  }
  atomic_store(&g_stop_compact, true);
  for (int c = 0; c < 2; c++) pthread_join(ct[c], NULL);
  printf("# %d compactions ran during the flushes, folding %llu deltas; %d failed%s%s\n",
         atomic_load(&g_compactions), (unsigned long long)atomic_load(&g_compacted),
         atomic_load(&g_compact_failed), g_fail_msg[0] ? ": " : "", g_fail_msg);
  assert_int_equal(atomic_load(&g_compact_failed), 0);
  assert_true(atomic_load(&g_compacted) > 0);

  /* phase 2: an appender flushes once more, so that deltas are left */
  wjob last = {.writer = APPEND1, .dsn = g_role2_dsn[INSEL], .rounds = 1};
  writer_main(&last);
  if (last.rc != QP_OK) fail_msg("last flush: %s", last.msg);
  long deltas = atol(qpt_pg_value(g_db2.dsn, "SELECT count(*) FROM qprof.qp_stats_delta"));
  printf("# deltas before the compaction: %ld\n", deltas);
  assert_true(deltas > 0);

  /* the reference: the same events from one writer into an SQLite store */
  char ref_path[600];
  snprintf(ref_path, sizeof ref_path, "%s/ref.db", qpt_tempdir());
  qp_store *ref = NULL;
  assert_int_equal(qp_store_open(&ref, ref_path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_flush(g_ref, ref), QP_OK);
  qp_store *pg = NULL;
  assert_int_equal(qp_store_open(&pg, g_db2.dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  same_as_reference(pg, ref, "before the compaction");
  char *before = json_report(g_db2.dsn, qpt_tempdir());

  /* compact everything as the owner; the reads do not change */
  qp_store *w = NULL;
  assert_int_equal(qp_store_open(&w, g_db2.dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_compact_result cr;
  if (qp_store_compact(w, 0, &cr) != QP_OK) fail_msg("compact: %s", qp_store_errmsg(w));
  printf("# compacted %llu deltas, %llu left\n", (unsigned long long)cr.rows,
         (unsigned long long)cr.left);
  assert_int_equal(cr.rows, (uint64_t)deltas);
  assert_int_equal(cr.left, 0);
  qp_store_close(w);
  assert_string_equal(qpt_pg_value(g_db2.dsn, "SELECT count(*) FROM qprof.qp_stats_delta"), "0");
  same_as_reference(pg, ref, "after the compaction");
  char *after = json_report(g_db2.dsn, qpt_tempdir());
  assert_string_equal(before, after);
  free(before);
  free(after);
  qp_store_close(pg);
  qp_store_close(ref);
  qp_profile_free(g_ref);
}

/* One round of the samples test: three queries, each from two hosts, with
 * the durations and times of round r (the slowest statement of query q
 * comes in round (q + 1) % 4, the earliest and latest executions in the
 * first and last rounds). Samples on. */
static void samples_round(qp_store *s, int r) {
  qp_profile *p = NULL;
  char err[256];
  qp_profile_options o = {.sample = true};
  assert_int_equal(qp_profile_new(&p, &o, err, sizeof err), QP_OK);
  static const char *const norm[3] = {"select ? from a", "select ? from b", "select ? from c"};
  static const char *const hosts[2] = {"h1", "h2"};
  for (int q = 0; q < 3; q++)
    for (int h = 0; h < 2; h++)
      for (int k = 0; k < 3; k++) {
        char sql[64];
        snprintf(sql, sizeof sql, "SELECT round_%d_%d_%d FROM %c", r, h, k, 'a' + q);
        qp_query_event e = {.size = sizeof e};
        e.backend = QP_BACKEND_POSTGRES;
        e.database = "app";
        e.user = "alice";
        e.host = hosts[h];
        e.sql = sql;
        e.sql_len = strlen(sql);
        e.normalized = norm[q];
        e.normalized_len = strlen(norm[q]);
        e.fingerprint = 0x5A0 + (uint64_t)q;
        e.duration_ns = 1000 + (uint64_t)(100 * k) + (r == (q + 1) % 4 ? 50000 : 0);
        e.end_wall_ns = ((int64_t)g_t0 - 3600 + r * 600 + q * 7 + h) * 1000000000 + k;
        e.rows = 1;
        assert_int_equal(qp_profile_record(p, &e), QP_OK);
      }
  if (qp_profile_flush(p, s) != QP_OK) fail_msg("flush: %s", qp_store_errmsg(s));
  qp_profile_free(p);
}

/* The report of a store as JSON, without the member naming the store. */
static json_t *report_of(const char *dsn, const char *by) {
  char cmd[1200];
  char *out = NULL, *cerr = NULL;
  snprintf(cmd, sizeof cmd, "'%s' report --store '%s' --format json --limit 0 %s",
           getenv("QPROF_BIN"), dsn, by);
  if (qpt_run_capture(qpt_tempdir(), cmd, &out, &cerr) != 0) fail_msg("%s: %s", cmd, cerr);
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  if (j == NULL) fail_msg("%s: not JSON: %s", cmd, je.text);
  json_object_del(j, "store");
  free(out);
  free(cerr);
  return j;
}

/* Whether the two stores' reports (all queries; by host too) are the same,
 * and each query's sample is its slowest statement. */
static void same_reports(const char *when) {
  static const char *const bys[2] = {"", "--by host"};
  for (int b = 0; b < 2; b++) {
    json_t *up = report_of(g_db3[0].dsn, bys[b]), *ap = report_of(g_db3[1].dsn, bys[b]);
    if (!json_equal(up, ap)) {
      char *x = json_dumps(up, JSON_INDENT(1)), *y = json_dumps(ap, JSON_INDENT(1));
      fail_msg("%s %s: the reports differ\n--- merged in place:\n%s\n--- appended:\n%s", when,
               bys[b], x, y);
    }
    json_t *qs = json_object_get(ap, "queries");
    assert_int_equal(json_array_size(qs), b == 0 ? 3 : 6);
    size_t i;
    json_t *q;
    json_array_foreach(qs, i, q) {
      const char *text = json_string_value(json_object_get(q, "query"));
      const char *sample = json_string_value(json_object_get(q, "sample"));
      assert_non_null(text);
      assert_non_null(sample);
      int n = text[strlen(text) - 1] - 'a';
      char want[32];
      snprintf(want, sizeof want, "round_%d_", (n + 1) % 4);
      if (strstr(sample, want) == NULL) fail_msg("%s: %s: sample '%s'", when, text, sample);
      assert_non_null(json_string_value(json_object_get(q, "first_seen")));
    }
    printf("# %s%s%s: the same report from both stores (%zu queries)\n", when, b ? ", " : "",
           bys[b], json_array_size(qs));
    json_decref(up);
    json_decref(ap);
  }
}

/* The same events through a writer that merges in place and one with
 * SELECT, INSERT only (deltas): the same samples (the slowest statement,
 * which comes in a later flush than the text's first) and first/last seen
 * in the report, before and after a compaction. */
static void test_append_only_samples_and_seen(void **state) {
  (void)state;
  char err[512];
  g_t0 = time(NULL);
  qp_store *s[2] = {NULL, NULL};
  for (int k = 0; k < 2; k++)
    assert_int_equal(qp_store_open(&s[k], g_db3[k].dsn, QP_STORE_WRITE, NULL, err, sizeof err),
                     QP_OK);
  qp_store_close(s[1]);
  execf(g_db3[1].dsn, "GRANT USAGE ON SCHEMA qprof TO %s", g_role[INSEL]);
  execf(g_db3[1].dsn, "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA qprof TO %s", g_role[INSEL]);
  assert_int_equal(qp_store_open(&s[1], g_insel3_dsn, QP_STORE_WRITE, NULL, err, sizeof err),
                   QP_OK);
  for (int r = 0; r < 4; r++)
    for (int k = 0; k < 2; k++) samples_round(s[k], r);
  assert_string_equal(qpt_pg_value(g_db3[0].dsn, "SELECT count(*) FROM qprof.qp_query_delta"), "0");
  long deltas = atol(qpt_pg_value(g_db3[1].dsn, "SELECT count(*) FROM qprof.qp_query_delta"));
  printf("# query deltas appended: %ld\n", deltas);
  assert_int_equal(deltas, 3 * 3); /* rounds 1..3, one per query (texts come in round 0) */
  same_reports("appended");
  /* compaction folds the query deltas into the texts: the same again */
  qp_store *w = NULL;
  assert_int_equal(qp_store_open(&w, g_db3[1].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_compact_result cr;
  if (qp_store_compact(w, 0, &cr) != QP_OK) fail_msg("compact: %s", qp_store_errmsg(w));
  assert_int_equal(cr.left, 0);
  qp_store_close(w);
  assert_string_equal(qpt_pg_value(g_db3[1].dsn, "SELECT count(*) FROM qprof.qp_query_delta"), "0");
  assert_string_equal(
      qpt_pg_value(g_db3[1].dsn, "SELECT string_agg(sample || ' ' || first_seen_ns || ' ' || "
                           "last_seen_ns, ',' ORDER BY fingerprint) FROM qprof.qp_query"),
      qpt_pg_value(g_db3[0].dsn, "SELECT string_agg(sample || ' ' || first_seen_ns || ' ' || "
                           "last_seen_ns, ',' ORDER BY fingerprint) FROM qprof.qp_query"));
  same_reports("compacted");
  for (int k = 0; k < 2; k++) qp_store_close(s[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_writer_grants),
      cmocka_unit_test(test_append_only_with_upserts_and_compaction),
      cmocka_unit_test(test_append_only_samples_and_seen),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
