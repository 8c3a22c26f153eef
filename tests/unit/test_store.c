/* The SQLite profile store: creation (0600), refusal of foreign and newer
 * files without touching them, migrations, flush + summarize with exact
 * totals, windows answered from roll-ups, failed flushes, OOM. */
#include "testutil.h"
#include "failalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stats/stats_int.h"
#include "store/store_int.h"

/* Temporary directories of this run, removed at the end (qpt_tempdirs_remove). */
static const char *tmpdir(void) {
  const char *d = qpt_tempdir();
  assert_non_null(d);
  return d;
}

static char *path_in(const char *dir, const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", dir, name);
  return b;
}

static bool exists(const char *p) { return access(p, F_OK) == 0; }

/* ---- the schema text embedded in the library is the sql/ text ---------- */
static void test_embedded_schema_matches_sql(void **state) {
  (void)state;
  size_t len;
  char *t = qpt_read_file(QP_TEST_SOURCE_DIR "/sql/store_schema.sql", &len);
  assert_non_null(t);
  assert_string_equal(t, qp__store_schema_v1);
  free(t);
  assert_int_equal(qp__store_nmigrations, QP_STORE_SCHEMA_VERSION - 1);
  for (int i = 0; i < qp__store_nmigrations; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", QP_TEST_SOURCE_DIR, qp__store_migration_files[i]);
    t = qpt_read_file(p, &len);
    assert_non_null(t);
    assert_string_equal(t, qp__store_migrations[i]);
    free(t);
  }
  assert_int_equal(qp_store_schema_version(), QP_STORE_SCHEMA_VERSION);
  t = qpt_read_file(QP_TEST_SOURCE_DIR "/sql/store_schema_pg.sql", &len);
  assert_non_null(t);
  assert_string_equal(t, qp__store_schema_pg);
  free(t);
  /* PostgreSQL migrations: consecutive, up to the current version */
  assert_true(qp__store_nmigrations_pg >= 1);
  for (int i = 0; i < qp__store_nmigrations_pg; i++)
    assert_int_equal(qp__store_migrations_pg_version[i],
                     QP_STORE_SCHEMA_VERSION - qp__store_nmigrations_pg + 1 + i);
  t = qpt_read_file(QP_TEST_SOURCE_DIR "/sql/migrations_pg/003_dropped.sql", &len);
  assert_non_null(t);
  assert_string_equal(t, qp__store_migrations_pg[0]);
  free(t);
}

static void test_create_mode_and_reopen(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "s.db");
  char err[512];
  qp_store *s;
  /* READ never creates. */
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_NOTFOUND);
  assert_null(s);
  assert_non_null(strstr(err, p));
  assert_false(exists(p));
  mode_t old = umask(0); /* even with a permissive umask */
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  umask(old);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_string_equal(qp_store_location(s), p);
  assert_string_equal(qp_store_errmsg(s), "");
  qp_store_close(s);
  /* No temporary files are left behind. */
  assert_int_equal(qpt_system("test $(ls -A '%s' | wc -l) -eq 1", dir), 0);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  /* Header checks: ours, at the current version, in WAL mode. */
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int64(q, 0), QP_STORE_APPLICATION_ID);
  sqlite3_finalize(q);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
  sqlite3_finalize(q);
  sqlite3_close(db);
  qp_store_close(NULL);
}

/* Bytes and mtime of a file, to show it was not touched. */
typedef struct snap {
  char *data;
  size_t len;
  struct timespec mtime;
} snap;

static snap take(const char *p) {
  snap s;
  s.data = qpt_read_file(p, &s.len);
  assert_non_null(s.data);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  s.mtime = st.st_mtim;
  return s;
}

static void same(const char *p, snap a) {
  snap b = take(p);
  assert_int_equal(a.len, b.len);
  assert_memory_equal(a.data, b.data, a.len);
  assert_int_equal(a.mtime.tv_sec, b.mtime.tv_sec);
  assert_int_equal(a.mtime.tv_nsec, b.mtime.tv_nsec);
  free(a.data);
  free(b.data);
  char side[600];
  snprintf(side, sizeof side, "%s-wal", p);
  assert_false(exists(side));
  snprintf(side, sizeof side, "%s-journal", p);
  assert_false(exists(side));
}

static void refuse(const char *p, qp_status want) {
  for (int m = 0; m < 2; m++) {
    snap before = take(p);
    char err[512] = "";
    qp_store *s = (qp_store *)1;
    assert_int_equal(qp_store_open(&s, p, m ? QP_STORE_WRITE : QP_STORE_READ, NULL, err, sizeof err),
                     want);
    assert_null(s);
    assert_non_null(strstr(err, p));
    same(p, before);
  }
}

static void test_refuses_foreign_files(void **state) {
  (void)state;
  const char *dir = tmpdir();
  /* A text file. */
  const char *txt = path_in(dir, "notes.txt");
  assert_int_equal(qpt_system("printf 'hello, this is not a database\\n%%.0s' $(seq 1 20) > '%s'", txt), 0);
  refuse(txt, QP_NOTSTORE);
  /* Someone else's SQLite database. */
  const char *other = path_in(dir, "other.db");
  sqlite3 *db;
  assert_int_equal(sqlite3_open(other, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", 0, 0, 0),
                   SQLITE_OK);
  sqlite3_close(db);
  refuse(other, QP_NOTSTORE);
  /* Someone else's database that happens to have a qp_meta table is still
   * refused: the application_id says whose it is. */
  const char *mimic = path_in(dir, "mimic.db");
  assert_int_equal(sqlite3_open(mimic, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "CREATE TABLE qp_meta(key, value);"
                                    "INSERT INTO qp_meta VALUES ('magic','qprof profile store');",
                                0, 0, 0),
                   SQLITE_OK);
  sqlite3_close(db);
  refuse(mimic, QP_NOTSTORE);
  /* A short file that starts like SQLite. */
  const char *shortf = path_in(dir, "short.db");
  assert_int_equal(qpt_system("printf 'SQLite format 3' > '%s'", shortf), 0);
  refuse(shortf, QP_NOTSTORE);
}

static void test_refuses_newer_schema(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "new.db");
  qp_store *s;
  char err[512];
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA user_version = 99;", 0, 0, 0),
                   SQLITE_OK);
  sqlite3_close(db);
  refuse(p, QP_SCHEMA);
  char again[512];
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, again, sizeof again), QP_SCHEMA);
  assert_non_null(strstr(again, "newer"));
}

static void test_empty_file_becomes_store(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "empty.db");
  int fd = open(p, O_CREAT | O_WRONLY, 0644);
  assert_true(fd >= 0);
  close(fd);
  qp_store *s;
  char err[512];
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_NOTSTORE);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  struct stat st;
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
}

static int64_t user_version(const char *p) {
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  int64_t v = sqlite3_column_int64(q, 0);
  sqlite3_finalize(q);
  sqlite3_close(db);
  return v;
}

/* ---- saved advice (qprof advise --save) ------------------------------------ */
typedef struct advice_seen {
  char db[4][64], doc[4][64];
  int64_t at[4];
  int n, stop_after;
} advice_seen;

static int advice_add(void *ud, const char *database, int64_t at_ns, const char *document) {
  advice_seen *a = ud;
  if (a->n == 4) return 1;
  snprintf(a->db[a->n], sizeof a->db[0], "%s", database);
  snprintf(a->doc[a->n], sizeof a->doc[0], "%s", document);
  a->at[a->n] = at_ns;
  a->n++;
  return a->stop_after != 0 && a->n == a->stop_after;
}

static void test_saved_advice(void **state) {
  (void)state;
  const char *dir = tmpdir();
  char err[512];
  /* an older store, read as it is, has none; written, it is migrated and keeps advice */
  const char *p = path_in(dir, "advice.db");
  assert_int_equal(qp__sqlite_store_create_version(p, QP_STORE_SCHEMA_VERSION - 1, err, sizeof err),
                   QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  advice_seen a = {0};
  assert_int_equal(qp_store_advice_each(s, advice_add, &a), QP_OK);
  assert_int_equal(a.n, 0);
  /* a read-only handle cannot save */
  assert_int_equal(qp_store_save_advice(s, "db1", 1, "{}"), QP_INVALID);
  assert_non_null(strstr(qp_store_errmsg(s), "read-only"));
  qp_store_close(s);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_store_save_advice(s, "db1", 100, "{\"a\": 1}"), QP_OK);
  assert_int_equal(qp_store_save_advice(s, "db2", 200, "{\"b\": 2}"), QP_OK);
  /* a new run for db1 replaces its last one */
  assert_int_equal(qp_store_save_advice(s, "db1", 300, "{\"c\": 3}"), QP_OK);
  assert_int_equal(qp_store_save_advice(s, NULL, 300, "{}"), QP_INVALID);
  assert_int_equal(qp_store_save_advice(s, "x", 300, NULL), QP_INVALID);
  assert_int_equal(qp_store_advice_each(s, NULL, NULL), QP_INVALID);
  qp_store_close(s);
  assert_int_equal(user_version(p), QP_STORE_SCHEMA_VERSION);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  memset(&a, 0, sizeof a);
  assert_int_equal(qp_store_advice_each(s, advice_add, &a), QP_OK);
  assert_int_equal(a.n, 2); /* newest first */
  assert_string_equal(a.db[0], "db1");
  assert_string_equal(a.doc[0], "{\"c\": 3}");
  assert_int_equal(a.at[0], 300);
  assert_string_equal(a.db[1], "db2");
  assert_string_equal(a.doc[1], "{\"b\": 2}");
  /* fn stops the walk */
  memset(&a, 0, sizeof a);
  a.stop_after = 1;
  assert_int_equal(qp_store_advice_each(s, advice_add, &a), QP_OK);
  assert_int_equal(a.n, 1);
  qp_store_close(s);
}

static void test_migration(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "v1.db");
  char err[512];
  assert_int_equal(qp__sqlite_store_create_version(p, 1, err, sizeof err), QP_OK);
  assert_int_equal(user_version(p), 1);
  sqlite3 *db1;
  assert_int_equal(sqlite3_open(p, &db1), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db1,
                                "INSERT INTO qp_query VALUES (7, 'sqlite', 'select ?', NULL, NULL, 1, 2);"
                                "INSERT INTO qp_stats VALUES (3, 0, 7, 'sqlite', '', 2, 0, '', 2, 10, 4, 6,"
                                " 2.0, 1, 2, x'');"
                                "INSERT INTO qp_stats VALUES (0, 60, 7, 'sqlite', '', 2, 0, '', 2, 10, 4, 6,"
                                " 2.0, 1, 2, x'')",
                                0, 0, 0),
                   SQLITE_OK);
  sqlite3_close(db1);
  qp_store *s;
  /* READ leaves it at version 1 (and it has nothing dropped: no such table yet). */
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  uint64_t n = 99;
  assert_int_equal(qp__store_dropped(s, INT64_MIN, INT64_MAX, &n), QP_OK);
  assert_int_equal(n, 0);
  /* and summarized (no cache hit columns before version 4) */
  qpt_sum none = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &none), QP_OK);
  assert_int_equal(none.calls, 2);
  qp_store_close(s);
  assert_int_equal(user_version(p), 1);
  /* WRITE migrates. */
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  assert_int_equal(user_version(p), QP_STORE_SCHEMA_VERSION);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "SELECT * FROM qp_summary", 0, 0, 0), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "SELECT * FROM qp_dropped", 0, 0, 0), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "SELECT cache_hits, cache_hit_ns FROM qp_stats", 0, 0, 0),
                   SQLITE_OK);
  sqlite3_close(db);
  /* dropped statements (the shim's full segments) add up per minute, read per window */
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_profile *pr;
  assert_int_equal(qp_profile_new(&pr, NULL, err, sizeof err), QP_OK);
  const int64_t m = 1763700000, ns = 1000000000;
  assert_int_equal(qp__profile_flush_dropped(pr, s, m, 7), QP_OK);
  assert_int_equal(qp__profile_flush_dropped(pr, s, m, 5), QP_OK);
  assert_int_equal(qp__profile_flush_dropped(pr, s, m + 60, 1), QP_OK);
  assert_int_equal(qp__store_dropped(s, INT64_MIN, INT64_MAX, &n), QP_OK);
  assert_int_equal(n, 13);
  assert_int_equal(qp__store_dropped(s, m * ns, (m + 60) * ns, &n), QP_OK);
  assert_int_equal(n, 12);
  assert_int_equal(qp__store_dropped(s, m * ns + 1, INT64_MAX, &n), QP_OK);
  assert_int_equal(n, 1);
  assert_int_equal(qp__store_dropped(s, INT64_MIN, m * ns, &n), QP_OK);
  assert_int_equal(n, 0);
  qp_profile_free(pr);
  qp_store_close(s);
}

/* A DSN goes to the PostgreSQL store; an unreachable server is
 * QP_UNAVAILABLE with the password removed from the message. (The store
 * itself is tested against the real cluster in test_store_pg.) */
static void test_pg_dsn_unreachable(void **state) {
  (void)state;
  qp_store *s;
  char err[512];
  assert_int_equal(qp_store_open(&s, "postgresql://u:secret@/db?host=/nonexistent-qprof&port=1",
                                 QP_STORE_WRITE, NULL, err, sizeof err),
                   QP_UNAVAILABLE);
  assert_null(s);
  assert_null(strstr(err, "secret"));
  assert_non_null(strstr(err, "cannot connect"));
  assert_int_equal(qp_store_open(&s, "host=/nonexistent-qprof port=1 dbname=y password=secret",
                                 QP_STORE_READ, NULL, err, sizeof err),
                   QP_UNAVAILABLE);
  assert_null(strstr(err, "secret"));
  assert_non_null(strstr(err, "password=***"));
  assert_int_equal(qp_store_open(&s, "", QP_STORE_READ, NULL, err, sizeof err), QP_INVALID);
  /* a file whose name merely contains '=' is a file */
  const char *dir = tmpdir();
  char p[600];
  snprintf(p, sizeof p, "%s/a=b.db", dir);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
}

/* ---- flush and summarize -------------------------------------------------- */

#define NFP 5
static const char *texts[NFP] = {"select * from t where id = ?", "update t set x = ? where id = ?",
                                 "insert into u values (?)", "delete from v where k = ?",
                                 "select count(*) from w"};

static qp_query_event ev_for(int k, int64_t wall_s, uint64_t dur, const char *err) {
  qp_query_event ev = {0};
  ev.backend = k == 3 ? QP_BACKEND_SQLITE : QP_BACKEND_POSTGRES;
  ev.database = k == 4 ? NULL : "appdb";
  ev.normalized = texts[k];
  ev.normalized_len = strlen(texts[k]);
  ev.fingerprint = 0x1000 + (uint64_t)k * 0x1111111111ull;
  ev.duration_ns = dur;
  ev.rows = k;
  ev.error = err;
  ev.end_wall_ns = wall_s * 1000000000 + 123456789;
  return ev;
}

typedef struct expect {
  uint64_t calls, errors, total, min, max;
  int64_t rows;
} expect;

typedef struct got {
  expect e[NFP];
  int seen[NFP];
  int n;
  double p50[NFP], sd[NFP];
} got;

static int collect(const qp_query_summary *q, void *ud) {
  got *g = ud;
  int k = (int)((q->fingerprint - 0x1000) / 0x1111111111ull);
  assert_true(k >= 0 && k < NFP);
  assert_string_equal(q->query, texts[k]);
  assert_string_equal(q->backend, k == 3 ? "sqlite" : "postgres");
  assert_string_equal(q->database, k == 4 ? "" : "appdb");
  g->seen[k]++;
  g->n++;
  g->e[k] = (expect){q->calls, q->errors, q->total_ns, q->min_ns, q->max_ns, q->rows};
  g->p50[k] = q->p50_ns;
  g->sd[k] = q->stddev_ns;
  assert_true(q->min_ns <= q->p50_ns && q->p50_ns <= q->p95_ns && q->p95_ns <= q->p99_ns &&
              q->p99_ns <= q->p999_ns && q->p999_ns <= q->max_ns);
  assert_true(q->first_seen_ns <= q->last_seen_ns);
  return 0;
}

static qp_store *open_w(const char *p) {
  qp_store *s;
  char err[512];
  qp_status rc = qp_store_open(&s, p, QP_STORE_WRITE, NULL, err, sizeof err);
  if (rc != QP_OK) fail_msg("open %s: %s", p, err);
  return s;
}

static uint64_t rng = 7;
static uint64_t rnd(void) {
  uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

typedef struct rec {
  int k;
  int64_t t;
  uint64_t d;
  bool err;
} rec;

static void test_windows_match_brute_force(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "w.db");
  qp_profile *prof;
  char err[512];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_store *s = open_w(p);
  /* Three days and a bit, starting mid-day, several flushes. */
  int64_t t0 = 1763700000; /* 2025-11-21T04:40:00Z */
  int n = 6000;
  rec *r = calloc((size_t)n, sizeof *r);
  for (int i = 0; i < n; i++) {
    r[i].k = (int)(rnd() % NFP);
    r[i].t = t0 + (int64_t)(rnd() % (3 * 86400 + 7777));
    r[i].d = 1000 + rnd() % 50000000;
    r[i].err = rnd() % 10 == 0;
    qp_query_event ev = ev_for(r[i].k, r[i].t, r[i].d, r[i].err ? "57014" : NULL);
    assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
    if (i % 1000 == 999) assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  }
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  assert_int_equal(qp_profile_recorded(prof), (uint64_t)n);
  assert_int_equal(qp_profile_lost(prof), 0);
  for (int w = 0; w < 60; w++) {
    int64_t a, b;
    if (w == 0) {
      a = INT64_MIN;
      b = INT64_MAX;
    } else if (w == 1) {
      a = (t0 + 86400) * 1000000000;
      b = INT64_MAX;
    } else if (w == 2) {
      a = INT64_MIN;
      b = (t0 + 3600 * 30) * 1000000000;
    } else {
      int64_t x = t0 - 5000 + (int64_t)(rnd() % (3 * 86400 + 20000));
      int64_t y = x + (int64_t)(rnd() % (w < 30 ? 3 * 86400 : 7200));
      /* some windows on exact hour and day boundaries */
      if (w % 5 == 0) x = x / 3600 * 3600;
      if (w % 7 == 0) y = y / 86400 * 86400;
      a = x * 1000000000;
      b = y * 1000000000 + (w % 3 == 0 ? 500000000 : 0);
    }
    expect want[NFP];
    memset(want, 0, sizeof want);
    for (int k = 0; k < NFP; k++) want[k].min = UINT64_MAX;
    for (int i = 0; i < n; i++) {
      int64_t bs = r[i].t / 60 * 60;
      int64_t bns = bs * 1000000000;
      if ((a != INT64_MIN && bns < a) || (b != INT64_MAX && bns >= b)) continue;
      expect *e = &want[r[i].k];
      e->calls++;
      e->errors += r[i].err;
      e->total += r[i].d;
      e->rows += r[i].k;
      if (r[i].d < e->min) e->min = r[i].d;
      if (r[i].d > e->max) e->max = r[i].d;
    }
    got g;
    memset(&g, 0, sizeof g);
    assert_int_equal(qp_store_summarize(s, a, b, collect, &g), QP_OK);
    for (int k = 0; k < NFP; k++) {
      if (want[k].calls == 0) {
        assert_int_equal(g.seen[k], 0);
        continue;
      }
      assert_int_equal(g.seen[k], 1);
      assert_int_equal(g.e[k].calls, want[k].calls);
      assert_int_equal(g.e[k].errors, want[k].errors);
      assert_int_equal(g.e[k].total, want[k].total);
      assert_int_equal(g.e[k].rows, want[k].rows);
      assert_int_equal(g.e[k].min, want[k].min);
      assert_int_equal(g.e[k].max, want[k].max);
    }
  }
  free(r);
  qp_store_close(s);
  qp_profile_free(prof);
}

static void test_flush_merges_and_stats(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "m.db");
  qp_profile *prof;
  char err[512];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_store *s = open_w(p);
  qp_stats ref;
  qp__stats_init(&ref);
  /* Large values with a small spread, flushed in pieces into one bucket:
   * the store's SQL merge must keep the variance. */
  for (int i = 0; i < 3000; i++) {
    uint64_t d = 1000000000000ull + rnd() % 100;
    qp_query_event ev = ev_for(0, 1763700000, d, i % 100 == 0 ? "40001" : NULL);
    assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
    assert_true(qp__stats_add(&ref, NULL, d, 0, NULL, 0));
    if (i % 700 == 0) assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  }
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  /* Flushing an empty profile writes nothing and succeeds. */
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  got g;
  memset(&g, 0, sizeof g);
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, collect, &g), QP_OK);
  assert_int_equal(g.n, 1);
  assert_int_equal(g.e[0].calls, 3000);
  assert_int_equal(g.e[0].errors, 30);
  assert_int_equal(g.e[0].total, ref.total_ns);
  double sd = qp__stats_stddev(&ref);
  assert_true(sd > 20 && sd < 40);
  assert_true(fabs(g.sd[0] - sd) / sd < 1e-3);
  qp__stats_free(&ref, NULL);
  /* The error codes are kept per code. */
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *q;
  assert_int_equal(
      sqlite3_prepare_v2(db, "SELECT error_codes FROM qp_stats WHERE level = 3", -1, &q, NULL),
      SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0), "40001:30");
  sqlite3_finalize(q);
  sqlite3_close(db);
  qp_store_close(s);
  qp_profile_free(prof);
}

static void test_failed_flush_keeps_data(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "f.db");
  qp_store *s = open_w(p);
  qp_store_close(s);
  qp_store *ro;
  char err[512];
  assert_int_equal(qp_store_open(&ro, p, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_profile *prof;
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < 100; i++) {
    qp_query_event ev = ev_for(i % NFP, 1763700000 + i * 30, 1000 + (uint64_t)i, NULL);
    assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  }
  assert_int_not_equal(qp_profile_flush(prof, ro), QP_OK);
  assert_true(strlen(qp_store_errmsg(ro)) > 0);
  /* Recording goes on into the same entries after the failure. */
  for (int i = 0; i < 100; i++) {
    qp_query_event ev = ev_for(i % NFP, 1763700000 + i * 30, 1000 + (uint64_t)i, NULL);
    assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  }
  s = open_w(p);
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  got g;
  memset(&g, 0, sizeof g);
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, collect, &g), QP_OK);
  uint64_t calls = 0;
  for (int k = 0; k < NFP; k++) calls += g.e[k].calls;
  assert_int_equal(calls, 200);
  qp_store_close(s);
  qp_store_close(ro);
  qp_profile_free(prof);
}

/* Events land in the bucket their own timestamp names, however they
 * alternate: bucket edges to the nanosecond, a time before 1970, one far in
 * the future, and the same query from two databases (which share a hash
 * chain in the profile). */
typedef struct by_db {
  uint64_t app, other;
} by_db;

static int count_by_db(const qp_query_summary *q, void *ud) {
  by_db *c = ud;
  if (strcmp(q->database, "appdb") == 0) c->app += q->calls;
  else if (strcmp(q->database, "otherdb") == 0) c->other += q->calls;
  else fail_msg("unexpected database '%s'", q->database);
  return 0;
}

static by_db window_calls(qp_store *s, int64_t since, int64_t until) {
  by_db c = {0, 0};
  assert_int_equal(qp_store_summarize(s, since, until, count_by_db, &c), QP_OK);
  return c;
}

static void test_bucket_edges(void **state) {
  (void)state;
  const int64_t B = 1763700000; /* a multiple of 60 */
  const int64_t S = 1000000000;
  const int64_t walls[] = {B * S - 1,          B * S,          B * S + 60 * S - 1,
                           (B + 60) * S,       -1,             4102444800LL * S,
                           B * S + 5,          B * S - 60 * S, (B + 60) * S + 1};
  qp_store *s = open_w(path_in(tmpdir(), "edges.db"));
  qp_profile *prof;
  char err[512];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  for (size_t i = 0; i < QP_ARRAY_LEN(walls); i++) {
    for (int d = 0; d < 2; d++) {
      qp_query_event ev = ev_for(0, 0, 1000, NULL);
      ev.end_wall_ns = walls[i];
      ev.database = d ? "otherdb" : "appdb";
      assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
    }
  }
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  by_db c = window_calls(s, B * S, (B + 60) * S);
  assert_int_equal(c.app, 3);
  assert_int_equal(c.other, 3);
  c = window_calls(s, (B - 60) * S, B * S);
  assert_int_equal(c.app, 2);
  c = window_calls(s, INT64_MIN, 0);
  assert_int_equal(c.app, 1);
  assert_int_equal(c.other, 1);
  c = window_calls(s, (B + 60) * S, (B + 120) * S);
  assert_int_equal(c.app, 2);
  c = window_calls(s, 4102444800LL * S, INT64_MAX);
  assert_int_equal(c.other, 1);
  c = window_calls(s, INT64_MIN, INT64_MAX);
  assert_int_equal(c.app, QP_ARRAY_LEN(walls));
  assert_int_equal(c.other, QP_ARRAY_LEN(walls));
  qp_store_close(s);
  qp_profile_free(prof);
}

static void test_profile_options(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "o.db");
  char err[512];
  qp_profile *prof;
  qp_profile_options o = {0};
  o.ignore = "(";
  assert_int_equal(qp_profile_new(&prof, &o, err, sizeof err), QP_PATTERN);
  assert_null(prof);
  assert_non_null(strstr(err, "("));
  o.ignore = "^select count";
  const char *redact[] = {"'[^']*'='?'", "\\b\\d{4,}\\b=N"};
  o.redact = redact;
  o.nredact = 2;
  o.sample = true;
  o.bucket_s = 300;
  const char *bad[] = {"no-equals-sign"};
  o.redact = bad;
  o.nredact = 1;
  assert_int_equal(qp_profile_new(&prof, &o, err, sizeof err), QP_INVALID);
  o.redact = redact;
  o.nredact = 2;
  assert_int_equal(qp_profile_new(&prof, &o, err, sizeof err), QP_OK);
  qp_store *s = open_w(p);
  qp_query_event ev = ev_for(4, 1763700000, 5000, NULL); /* ignored */
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  ev = ev_for(0, 1763700000, 5000, NULL);
  const char *sql = "SELECT * FROM t WHERE id = 123456 AND name = 'alice'";
  ev.sql = sql;
  ev.sql_len = strlen(sql);
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  /* Raw SQL without a pre-normalized text: the profile normalizes it. */
  qp_query_event raw = {0};
  raw.backend = QP_BACKEND_POSTGRES;
  raw.sql = "SELECT   1";
  raw.sql_len = strlen(raw.sql);
  raw.duration_ns = 10;
  raw.rows = -1;
  raw.end_wall_ns = 1763700000LL * 1000000000;
  assert_int_equal(qp_profile_record(prof, &raw), QP_OK);
  assert_int_equal(qp_profile_recorded(prof), 2);
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  qp_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open_v2(p, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM qp_query", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(q, 0), 2);
  sqlite3_finalize(q);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT sample FROM qp_query WHERE query LIKE '%from t%'",
                                      -1, &q, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0),
                      "SELECT * FROM t WHERE id = N AND name = '?'");
  sqlite3_finalize(q);
  /* bucket_s = 300: the level-0 bucket starts on a 5-minute boundary. */
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT DISTINCT bucket FROM qp_stats WHERE level = 0",
                                      -1, &q, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int64(q, 0), 1763700000 / 300 * 300);
  sqlite3_finalize(q);
  sqlite3_close(db);
  qp_profile_free(prof);
  /* Without sampling, no sample is kept. */
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_record(prof, NULL), QP_INVALID);
  assert_int_equal(qp_profile_flush(prof, NULL), QP_INVALID);
  qp_profile_free(prof);
  qp_profile_free(NULL);
}

/* A damaged row is reported, not trusted. */
static void test_corrupt_row(void **state) {
  (void)state;
  const char *dir = tmpdir();
  const char *p = path_in(dir, "c.db");
  qp_profile *prof;
  char err[512];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  qp_store *s = open_w(p);
  qp_query_event ev = ev_for(1, 1763700000, 5000, NULL);
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  qp_store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "UPDATE qp_stats SET hist = x'01ffffff'", 0, 0, 0), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(qp_store_open(&s, p, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  got g;
  memset(&g, 0, sizeof g);
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, collect, &g), QP_IO);
  assert_non_null(strstr(qp_store_errmsg(s), "malformed"));
  assert_non_null(strstr(qp_store_errmsg(s), p));
  qp_store_close(s);
  /* Merging into the damaged row fails the flush, which keeps the data. */
  s = open_w(p);
  assert_int_equal(qp_profile_record(prof, &ev), QP_OK);
  assert_int_not_equal(qp_profile_flush(prof, s), QP_OK);
  assert_int_equal(qp_profile_recorded(prof), 2);
  qp_store_close(s);
  qp_profile_free(prof);
}

static void test_oom_paths(void **state) {
  (void)state;
  const char *dir = tmpdir();
  qpt_failalloc fa = {0};
  qp_hooks hk = qpt_failalloc_hooks(&fa);
  /* Every allocation of open / record / flush / summarize / close in turn. */
  bool finished = false;
  for (long k = 1; k < 2000 && !finished; k++) {
    char name[64];
    snprintf(name, sizeof name, "oom%ld.db", k);
    const char *p = path_in(dir, name);
    fa = (qpt_failalloc){.fail_at = k};
    char err[512];
    qp_store *s = NULL;
    qp_profile *prof = NULL;
    qp_profile_options o = {.hooks = &hk, .sample = true};
    qp_status rc = qp_store_open(&s, p, QP_STORE_WRITE, &hk, err, sizeof err);
    if (rc == QP_OK) rc = qp_profile_new(&prof, &o, err, sizeof err);
    int recorded = 0;
    for (int i = 0; rc == QP_OK && i < 20; i++) {
      qp_query_event ev = ev_for(i % NFP, 1763700000 + i * 100, 1000 * (uint64_t)(i + 1), i % 4 ? NULL : "X");
      ev.sql = "select 1";
      ev.sql_len = 8;
      qp_status r = qp_profile_record(prof, &ev);
      if (r == QP_OK) recorded++;
      else assert_int_equal(r, QP_NOMEM);
    }
    if (prof != NULL) {
      assert_int_equal(qp_profile_recorded(prof) + qp_profile_lost(prof), 20);
      assert_int_equal(qp_profile_recorded(prof), (uint64_t)recorded);
    }
    if (rc == QP_OK) {
      qp_status fr = qp_profile_flush(prof, s);
      if (fr != QP_OK) {
        /* a failed flush keeps everything: the retry with memory writes it all */
        fa.fail_at = 0;
        assert_int_equal(qp_profile_flush(prof, s), QP_OK);
      }
      got g;
      memset(&g, 0, sizeof g);
      qp_status sr = qp_store_summarize(s, INT64_MIN, INT64_MAX, collect, &g);
      fa.fail_at = 0;
      if (sr != QP_OK) {
        assert_int_equal(sr, QP_NOMEM);
        memset(&g, 0, sizeof g);
        assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, collect, &g), QP_OK);
      }
      uint64_t calls = 0;
      for (int kk = 0; kk < NFP; kk++) calls += g.e[kk].calls;
      assert_int_equal(calls, (uint64_t)recorded);
      if (fr == QP_OK && sr == QP_OK && recorded == 20) finished = true;
    } else {
      assert_true(rc == QP_NOMEM || rc == QP_IO);
    }
    qp_profile_free(prof);
    qp_store_close(s);
    assert_int_equal(fa.live, 0);
  }
  assert_true(finished);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_embedded_schema_matches_sql),
      cmocka_unit_test(test_create_mode_and_reopen),
      cmocka_unit_test(test_refuses_foreign_files),
      cmocka_unit_test(test_refuses_newer_schema),
      cmocka_unit_test(test_empty_file_becomes_store),
      cmocka_unit_test(test_migration),
      cmocka_unit_test(test_pg_dsn_unreachable),
      cmocka_unit_test(test_windows_match_brute_force),
      cmocka_unit_test(test_flush_merges_and_stats),
      cmocka_unit_test(test_failed_flush_keeps_data),
      cmocka_unit_test(test_bucket_edges),
      cmocka_unit_test(test_profile_options),
      cmocka_unit_test(test_corrupt_row),
      cmocka_unit_test(test_oom_paths),
      cmocka_unit_test(test_saved_advice),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
