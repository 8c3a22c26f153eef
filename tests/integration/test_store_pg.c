/* The PostgreSQL profile store against the real cluster: creation, exact
 * totals and windows, several processes flushing at once, refusal of a
 * foreign "qprof" schema and of a newer schema, the migration of an older
 * one, the count of dropped statements, and `qprof report` on it. */
#include "pgtest.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "stats/stats_int.h"
#include "store/store_int.h"

static qpt_pgdb g_db[3];

static int setup(void **state) {
  (void)state;
  for (int k = 0; k < 3; k++)
    if (qpt_pgdb_create(&g_db[k], "qprof_store_%d_%d", (int)getpid(), k) != 0) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  for (int k = 0; k < 3; k++) qpt_pgdb_drop(&g_db[k]);
  return 0;
}

static qp_query_event ev(int k, int64_t t, uint64_t d, const char *err) {
  static const char *texts[] = {"select * from a where id = ?", "update b set x = ?",
                                "insert into c values (?)"};
  qp_query_event e = {0};
  e.backend = QP_BACKEND_POSTGRES;
  e.database = "app";
  e.normalized = texts[k];
  e.normalized_len = strlen(texts[k]);
  e.fingerprint = 0x7700 + (uint64_t)k;
  e.duration_ns = d;
  e.rows = 1;
  e.error = err;
  e.end_wall_ns = t * 1000000000;
  return e;
}

static void test_create_record_window(void **state) {
  (void)state;
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_NOTFOUND);
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  int64_t t0 = 1795132800; /* 2026-11-20T00:00Z */
  uint64_t want_total = 0, want_first_6h = 0;
  for (int i = 0; i < 3000; i++) {
    int64_t t = t0 + (int64_t)i * 40; /* 33 hours */
    uint64_t d = 1000000000000ull + (uint64_t)(i % 7);
    qp_query_event e = ev(i % 3, t, d, i % 100 == 0 ? "40P01" : NULL);
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
    want_total += d;
    if (t / 60 * 60 < t0 + 6 * 3600 + 1800) want_first_6h++;
    if (i % 500 == 499) assert_int_equal(qp_profile_flush(p, s), QP_OK);
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  qpt_sum all = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, 3000);
  assert_int_equal(all.errors, 30);
  assert_int_equal(all.total, want_total);
  assert_int_equal(all.n, 3);
  assert_true(all.sd > 1.9 && all.sd < 2.1); /* 1e12 +/- 0..6: stable variance through the merge */
  qpt_sum w = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, (t0 + 6 * 3600 + 1800) * 1000000000, qpt_sum_add, &w),
                   QP_OK);
  assert_int_equal(w.calls, want_first_6h);
  qp_store_close(s);
  qp_profile_free(p);
  /* Reopening finds the store; READ works and cannot write. */
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  qp_query_event e = ev(0, t0, 5, NULL);
  assert_int_equal(qp_profile_record(p, &e), QP_OK);
  assert_int_not_equal(qp_profile_flush(p, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(p);
}

#define NPROC 6
#define PER 1500

static int child(int id) {
  qp_store *s;
  qp_profile *p;
  char err[1024];
  if (qp_store_open(&s, g_db[1].dsn, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK) {
    fprintf(stderr, "child %d: %s\n", id, err);
    return 1;
  }
  if (qp_profile_new(&p, NULL, err, sizeof err) != QP_OK) return 2;
  for (int i = 0; i < PER; i++) {
    qp_query_event e = ev((i + id) % 3, 1795132800 + i % 7 * 60, 1000 + (uint64_t)i, NULL);
    if (qp_profile_record(p, &e) != QP_OK) return 3;
    if (i % 500 == 499 && qp_profile_flush(p, s) != QP_OK) {
      fprintf(stderr, "child %d: %s\n", id, qp_store_errmsg(s));
      return 4;
    }
  }
  qp_store_close(s);
  qp_profile_free(p);
  return 0;
}

static void test_processes_flush_at_once(void **state) {
  (void)state;
  pid_t pids[NPROC];
  for (int i = 0; i < NPROC; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) _exit(child(i));
  }
  for (int i = 0; i < NPROC; i++) {
    int st;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, g_db[1].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qpt_sum all = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &all), QP_OK);
  assert_int_equal(all.calls, NPROC * PER);
  uint64_t t = 0;
  for (int i = 0; i < PER; i++) t += 1000 + (uint64_t)i;
  assert_int_equal(all.total, NPROC * t);
  qp_store_close(s);
}

static void test_refuses_foreign_and_newer(void **state) {
  (void)state;
  /* a "qprof" schema that is someone else's */
  qpt_pg_exec(g_db[1].dsn, "DROP SCHEMA qprof CASCADE");
  qpt_pg_exec(g_db[1].dsn,
              "CREATE SCHEMA qprof; CREATE TABLE qprof.mine (x int); INSERT INTO qprof.mine VALUES (42)");
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, g_db[1].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_NOTSTORE);
  assert_non_null(strstr(err, g_db[1].name));
  PGconn *c = PQconnectdb(g_db[1].dsn);
  PGresult *r = PQexec(c, "SELECT x, to_regclass('qprof.qp_meta') IS NULL FROM qprof.mine");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_string_equal(PQgetvalue(r, 0, 0), "42");
  assert_string_equal(PQgetvalue(r, 0, 1), "t");
  PQclear(r);
  PQfinish(c);
  /* a store from a newer qprof */
  qpt_pg_exec(g_db[0].dsn, "UPDATE qprof.qp_meta SET value = '99' WHERE key = 'schema_version'");
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_SCHEMA);
  assert_non_null(strstr(err, "newer"));
  char sql[128];
  snprintf(sql, sizeof sql, "UPDATE qprof.qp_meta SET value = '%d' WHERE key = 'schema_version'",
           QP_STORE_SCHEMA_VERSION);
  qpt_pg_exec(g_db[0].dsn, sql);
}

/* A store of schema version 2 (before qp_dropped) is read as it is and
 * migrated by the first writer; the dropped counts (the shim's full
 * segments) add up per minute and are read per window. */
static void test_migrates_and_counts_dropped(void **state) {
  (void)state;
  qpt_pg_exec(g_db[0].dsn,
              "DROP TABLE IF EXISTS qprof.qp_dropped; DROP TABLE IF EXISTS qprof.qp_ingest_file; "
              "UPDATE qprof.qp_meta SET value = '2' WHERE key = 'schema_version'");
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  uint64_t n = 99;
  assert_int_equal(qp__store_dropped(s, INT64_MIN, INT64_MAX, &n), QP_OK);
  assert_int_equal(n, 0);
  qp_store_close(s);
  const char *v = qpt_pg_value(g_db[0].dsn, "SELECT value FROM qprof.qp_meta WHERE key = 'schema_version'");
  assert_string_equal(v, "2");
  qp_status orc = qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err);
  if (orc != QP_OK) fail_msg("open: %s", err);
  v = qpt_pg_value(g_db[0].dsn, "SELECT value FROM qprof.qp_meta WHERE key = 'schema_version'");
  assert_int_equal(atoi(v), QP_STORE_SCHEMA_VERSION);
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  const int64_t m = 1763700000;
  assert_int_equal(qp__profile_flush_dropped(p, s, m, 7), QP_OK);
  assert_int_equal(qp__profile_flush_dropped(p, s, m, 5), QP_OK);
  assert_int_equal(qp__profile_flush_dropped(p, s, m + 60, 1), QP_OK);
  const int64_t ns = 1000000000;
  assert_int_equal(qp__store_dropped(s, INT64_MIN, INT64_MAX, &n), QP_OK);
  assert_int_equal(n, 13);
  assert_int_equal(qp__store_dropped(s, m * ns, (m + 60) * ns, &n), QP_OK);
  assert_int_equal(n, 12);
  assert_int_equal(qp__store_dropped(s, m * ns + 1, INT64_MAX, &n), QP_OK);
  assert_int_equal(n, 1); /* a bucket counts when it starts in the window */
  assert_int_equal(qp__store_dropped(s, INT64_MIN, m * ns, &n), QP_OK);
  assert_int_equal(n, 0);
  qp_profile_free(p);
  qp_store_close(s);
  /* a second writer finds it migrated */
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  /* a store of schema version 3 (before the cache hit columns): a reader
   * reads it as it is, a writer migrates it */
  qpt_pg_exec(g_db[0].dsn, "UPDATE qprof.qp_meta SET value = '3' WHERE key = 'schema_version'; "
                           "ALTER TABLE qprof.qp_stats DROP COLUMN cache_hits, DROP COLUMN cache_hit_ns");
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qpt_sum before = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &before), QP_OK);
  assert_true(before.calls > 0);
  qp_store_close(s);
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  qp_store_close(s);
  PGconn *mc = PQconnectdb(g_db[0].dsn);
  PGresult *r = PQexec(mc, "SELECT (SELECT value FROM qprof.qp_meta WHERE key = 'schema_version'), "
                "sum(cache_hits) FROM qprof.qp_stats");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  assert_int_equal(atoi(PQgetvalue(r, 0, 0)), QP_STORE_SCHEMA_VERSION);
  assert_string_equal(PQgetvalue(r, 0, 1), "0");
  PQclear(r);
  PQfinish(mc);
}

static void test_cli_report_on_pg(void **state) {
  (void)state;
  const char *bin = getenv("QPROF_BIN");
  assert_non_null(bin);
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "'%s' report --store '%s' --format json | /usr/bin/python3 -c 'import json,sys; "
           "d=json.load(sys.stdin); assert d[\"totals\"][\"calls\"]==3000, d[\"totals\"]; "
           "assert len(d[\"queries\"])==3'",
           bin, g_db[0].dsn);
  assert_int_equal(qpt_system("%s", cmd), 0);
}

/* Statements the server logged (log_statement = all, set for one database
 * only) from byte `from` of its log on, that read query texts. */
static int logged_text_reads(long from) {
  char path[1024];
  snprintf(path, sizeof path, "%s/server.log", getenv("QP_PG_DIR"));
  FILE *f = fopen(path, "r");
  if (f == NULL) fail_msg("cannot read the server's log %s", path);
  assert_int_equal(fseek(f, from, SEEK_SET), 0);
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (strstr(line, "FROM qprof.qp_query") != NULL) n++;
  fclose(f);
  return n;
}

static long server_log_size(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/server.log", getenv("QP_PG_DIR"));
  struct stat st;
  if (stat(path, &st) != 0) fail_msg("no server log at %s", path);
  return (long)st.st_size;
}

typedef struct texts_seen {
  int n, wrong;
} texts_seen;

static uint64_t nth_fingerprint(int i) { return 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1); }

static int check_text(const qp_query_summary *q, void *ud) {
  texts_seen *t = ud;
  int i;
  char want[64];
  if (sscanf(q->query, "select c%d from t", &i) != 1) {
    t->wrong++;
    return 0;
  }
  snprintf(want, sizeof want, "select c%d from t", i);
  if (strcmp(q->query, want) != 0 || q->fingerprint != nth_fingerprint(i)) t->wrong++;
  t->n++;
  return 0;
}

/* A store with `n` fingerprints, read back: returns how many statements
 * reading query texts the server saw while the window was built. */
static int text_reads_for(int n) {
  char db[64], d[768], sql[256];
  snprintf(db, sizeof db, "qprof_store_%d_rt%d", (int)getpid(), n);
  snprintf(sql, sizeof sql, "CREATE DATABASE %s", db);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  snprintf(sql, sizeof sql, "ALTER DATABASE %s SET log_statement = 'all'", db);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  qpt_pg_dsn_as(d, sizeof d, NULL, db);
  qp_profile *prof;
  char err[1024];
  assert_int_equal(qp_profile_new(&prof, NULL, err, sizeof err), QP_OK);
  for (int i = 0; i < n; i++) {
    char text[64];
    snprintf(text, sizeof text, "select c%d from t", i);
    qp_query_event e = {0};
    e.backend = QP_BACKEND_POSTGRES;
    e.database = "app";
    e.normalized = text;
    e.normalized_len = strlen(text);
    e.fingerprint = nth_fingerprint(i);
    e.duration_ns = 1000 + (uint64_t)i;
    e.rows = 1;
    e.end_wall_ns = 1700000000LL * 1000000000;
    assert_int_equal(qp_profile_record(prof, &e), QP_OK);
  }
  qp_store *s;
  assert_int_equal(qp_store_open(&s, d, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  qp_store_close(s);
  qp_profile_free(prof);

  assert_int_equal(qp_store_open(&s, d, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  long from = server_log_size();
  texts_seen t = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, check_text, &t), QP_OK);
  qp_store_close(s);
  int reads = logged_text_reads(from);
  assert_int_equal(t.wrong, 0);
  assert_int_equal(t.n, n);
  snprintf(sql, sizeof sql, "DROP DATABASE %s WITH (FORCE)", db);
  qpt_pg_exec(qpt_pg_dsn(), sql);
  return reads;
}

/* Building a window reads the texts of all its queries in one statement,
 * whatever their number: the server's own log of statements (not a count
 * kept by the store) says so. It used to be one round trip per fingerprint
 * (2,000 statements for 2,000 queries). */
static void test_texts_read_in_one_statement(void **state) {
  (void)state;
  int few = text_reads_for(20), many = text_reads_for(2000);
  if (few != 1 || many != 1)
    fail_msg("statements reading query texts: %d for 20 queries, %d for 2,000", few, many);
}

/* Cache hits on the PostgreSQL store: a bucket with hits alone, then one
 * with calls and hits, merged in every roll-up (the client-side merge),
 * never counted as calls. */
typedef struct hit_sum {
  uint64_t calls, hits, hit_ns, min_ns;
  int n;
} hit_sum;

static int hit_add(const qp_query_summary *q, void *ud) {
  hit_sum *h = ud;
  if (q->fingerprint != 0x7800) return 0;
  h->n++;
  h->calls += q->calls;
  h->hits += q->cache_hits;
  h->hit_ns += q->cache_hit_ns;
  h->min_ns = q->min_ns;
  return 0;
}

static void test_cache_hits(void **state) {
  (void)state;
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
  int64_t t0 = 1795132800;
  qp_query_event e = {0};
  e.size = sizeof e;
  e.backend = QP_BACKEND_POSTGRES;
  e.database = "app";
  e.normalized = "select v from cached where id = ?";
  e.normalized_len = strlen(e.normalized);
  e.fingerprint = 0x7800;
  e.rows = 1;
  for (int i = 0; i < 4; i++) { /* first bucket: hits alone */
    e.cache_hit = true;
    e.duration_ns = 500;
    e.end_wall_ns = (t0 + i) * 1000000000;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  for (int i = 0; i < 6; i++) { /* an hour later: 2 calls, 4 hits */
    e.cache_hit = i >= 2;
    e.duration_ns = e.cache_hit ? 500 : 2000000;
    e.end_wall_ns = (t0 + 3600 + i) * 1000000000;
    assert_int_equal(qp_profile_record(p, &e), QP_OK);
    if (i == 3) assert_int_equal(qp_profile_flush(p, s), QP_OK);
  }
  assert_int_equal(qp_profile_flush(p, s), QP_OK);
  hit_sum h = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, hit_add, &h), QP_OK);
  assert_int_equal(h.n, 1);
  assert_int_equal(h.calls, 2);
  assert_int_equal(h.hits, 8);
  assert_int_equal(h.hit_ns, 8 * 500);
  assert_int_equal(h.min_ns, 2000000); /* hits alone leave no minimum behind */
  hit_sum first = {0}; /* the first hour from the bucket and hour levels */
  assert_int_equal(qp_store_summarize(s, INT64_MIN, (t0 + 1800) * 1000000000, hit_add, &first),
                   QP_OK);
  assert_int_equal(first.calls, 0);
  assert_int_equal(first.hits, 4);
  qp_store_close(s);
  qp_profile_free(p);
}

/* A real version 2 store (the tables as qprof wrote them then: no
 * qp_dropped, no cache hit or dimension columns, the old key) with data:
 * read as it is, then migrated by the first writer through every later
 * version, with its totals unchanged; new rows carry their dimensions. */
typedef struct v2_sum {
  const char *host; /* NULL: any */
  uint64_t calls, errors;
  int64_t rows;
  uint64_t total_ns;
} v2_sum;

static int v2_add(const qp_query_summary *q, void *ud) {
  v2_sum *v = ud;
  if (v->host != NULL && strcmp(q->host, v->host) != 0) return 0;
  v->calls += q->calls;
  v->errors += q->errors;
  v->rows += q->rows;
  v->total_ns += q->total_ns;
  return 0;
}

static void test_migrates_v2_with_data(void **state) {
  (void)state;
  qpt_pg_exec(g_db[2].dsn,
              "CREATE SCHEMA qprof;"
              "CREATE TABLE qprof.qp_meta (key text PRIMARY KEY, value text NOT NULL);"
              "INSERT INTO qprof.qp_meta VALUES ('magic', 'qprof profile store'), ('schema_version', '2');"
              "CREATE TABLE qprof.qp_query (fingerprint bigint PRIMARY KEY, backend text NOT NULL,"
              " query text NOT NULL, sample text, sample_ns bigint, first_seen_ns bigint NOT NULL,"
              " last_seen_ns bigint NOT NULL);"
              "CREATE TABLE qprof.qp_stats (level integer NOT NULL, bucket bigint NOT NULL,"
              " fingerprint bigint NOT NULL, backend text NOT NULL, database text NOT NULL,"
              " calls bigint NOT NULL, errors bigint NOT NULL, error_codes text NOT NULL,"
              " rows bigint NOT NULL, total_ns bigint NOT NULL, min_ns bigint NOT NULL,"
              " max_ns bigint NOT NULL, m2 double precision NOT NULL, first_seen_ns bigint NOT NULL,"
              " last_seen_ns bigint NOT NULL, hist bytea NOT NULL,"
              " PRIMARY KEY (level, bucket, fingerprint, backend, database));"
              "CREATE VIEW qprof.qp_summary AS SELECT s.fingerprint, s.backend, s.database, q.query,"
              " s.calls FROM qprof.qp_stats s JOIN qprof.qp_query q USING (fingerprint) WHERE s.level = 3;"
              "INSERT INTO qprof.qp_query VALUES (7, 'postgres', 'select ?', NULL, NULL, 1, 2),"
              " (8, 'postgres', 'update t set a = ?', NULL, NULL, 1, 2);"
              "INSERT INTO qprof.qp_stats SELECT l, CASE WHEN l = 3 THEN 0 ELSE 1795132800 END, 7,"
              " 'postgres', 'shop', 5, 0, '', 5, 50, 4, 16, 2.0, 1, 2, '' FROM generate_series(0, 3) l;"
              "INSERT INTO qprof.qp_stats SELECT l, CASE WHEN l = 3 THEN 0 ELSE 1795132800 END, 8,"
              " 'postgres', 'shop', 3, 1, '23505:1', 2, 30, 5, 20, 1.0, 1, 2, '' FROM generate_series(0, 3) l");
  char err[1024];
  qp_store *s;
  for (int pass = 0; pass < 3; pass++) {
    /* 0: read as version 2; 1: migrated by a writer; 2: after new rows */
    qp_store_mode mode = pass == 1 ? QP_STORE_WRITE : QP_STORE_READ;
    qp_status orc = qp_store_open(&s, g_db[2].dsn, mode, NULL, err, sizeof err);
    if (orc != QP_OK) fail_msg("open (pass %d): %s", pass, err);
    v2_sum all = {.host = ""}, day = {.host = ""};
    assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, v2_add, &all), QP_OK);
    assert_int_equal(qp_store_summarize(s, 1795132800LL * 1000000000, 1795219200LL * 1000000000,
                                        v2_add, &day),
                     QP_OK);
    assert_int_equal(all.calls, 8);
    assert_int_equal(all.errors, 1);
    assert_int_equal(all.rows, 7);
    assert_int_equal(all.total_ns, 80);
    assert_int_equal(day.calls, 8);
    const char *v =
        qpt_pg_value(g_db[2].dsn, "SELECT value FROM qprof.qp_meta WHERE key = 'schema_version'");
    assert_int_equal(atoi(v), pass == 0 ? 2 : QP_STORE_SCHEMA_VERSION);
    if (pass == 1) {
      qp_profile *p;
      assert_int_equal(qp_profile_new(&p, NULL, err, sizeof err), QP_OK);
      qp_query_event e = {.size = sizeof e, .backend = QP_BACKEND_POSTGRES, .database = "shop",
                          .sql = "select 1", .sql_len = 8, .duration_ns = 9, .rows = 1,
                          .end_wall_ns = (1795132800LL + 30) * 1000000000, .user = "carol",
                          .application = "cron", .host = "h9"};
      assert_int_equal(qp_profile_record(p, &e), QP_OK);
      assert_int_equal(qp_profile_flush(p, s), QP_OK);
      qp_profile_free(p);
    }
    if (pass == 2) {
      v2_sum h9 = {.host = "h9"};
      assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, v2_add, &h9), QP_OK);
      assert_int_equal(h9.calls, 1);
    }
    qp_store_close(s);
  }
  const char *v = qpt_pg_value(g_db[2].dsn, "SELECT count(*) FROM qprof.qp_summary WHERE "
                                             "host = 'h9' AND user_name = 'carol' AND "
                                             "application = 'cron'");
  assert_string_equal(v, "1");
}

/* qprof advise --save: one saved run per database, newest first, replaced by the next */
typedef struct advice_seen {
  char db[4][64], doc[4][64];
  int64_t at[4];
  int n;
} advice_seen;

static int advice_add(void *ud, const char *database, int64_t at_ns, const char *document) {
  advice_seen *a = ud;
  if (a->n == 4) return 1;
  snprintf(a->db[a->n], sizeof a->db[0], "%s", database);
  snprintf(a->doc[a->n], sizeof a->doc[0], "%s", document);
  a->at[a->n++] = at_ns;
  return 0;
}

static void test_saved_advice(void **state) {
  (void)state;
  qp_store *s;
  char err[1024];
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_store_save_advice(s, "host=a dbname=x", 1796305650000000000LL, "{\"a\": 1}"),
                   QP_OK);
  assert_int_equal(qp_store_save_advice(s, "sqlite:///tmp/y.db", 1796305651000000000LL,
                                        "{\"b\": \"it's\"}"),
                   QP_OK);
  assert_int_equal(qp_store_save_advice(s, "host=a dbname=x", 1796305652000000000LL, "{\"c\": 3}"),
                   QP_OK);
  qp_store_close(s);
  assert_int_equal(qp_store_open(&s, g_db[0].dsn, QP_STORE_READ, NULL, err, sizeof err), QP_OK);
  advice_seen a = {0};
  assert_int_equal(qp_store_advice_each(s, advice_add, &a), QP_OK);
  assert_int_equal(a.n, 2);
  assert_string_equal(a.db[0], "host=a dbname=x");
  assert_string_equal(a.doc[0], "{\"c\": 3}");
  assert_int_equal(a.at[0], 1796305652000000000LL);
  assert_string_equal(a.db[1], "sqlite:///tmp/y.db");
  assert_string_equal(a.doc[1], "{\"b\": \"it's\"}");
  assert_int_equal(qp_store_save_advice(s, "d", 1, "{}"), QP_INVALID); /* read-only */
  qp_store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_record_window),
      cmocka_unit_test(test_processes_flush_at_once),
      cmocka_unit_test(test_refuses_foreign_and_newer),
      cmocka_unit_test(test_migrates_and_counts_dropped),
      cmocka_unit_test(test_cli_report_on_pg),
      cmocka_unit_test(test_texts_read_in_one_statement),
      cmocka_unit_test(test_cache_hits),
      cmocka_unit_test(test_migrates_v2_with_data),
      cmocka_unit_test(test_saved_advice),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
