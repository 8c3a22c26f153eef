/* The log reader (lib/ingest): the three formats, prefixes, the pairing of
 * statements and durations, files and their positions, and out-of-memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "failalloc.h"
#include "qprof/qprof.h"
#include "testutil.h"

/* Per query of a store: calls, errors, total, first seen, sample. */
typedef struct q_row {
  uint64_t fp, calls, errors, total_ns;
  int64_t first_ns;
  char query[256], sample[256], db[64], codes[64];
  char user[64], app[64], host[64];
} q_row;
typedef struct q_rows {
  q_row v[64];
  size_t n;
} q_rows;

static int collect(const qp_query_summary *q, void *ud) {
  q_rows *r = ud;
  if (r->n == 64) return 1;
  q_row *x = &r->v[r->n++];
  x->fp = q->fingerprint;
  x->calls = q->calls;
  x->errors = q->errors;
  x->total_ns = q->total_ns;
  x->first_ns = q->first_seen_ns;
  snprintf(x->query, sizeof x->query, "%s", q->query);
  snprintf(x->sample, sizeof x->sample, "%s", q->sample ? q->sample : "");
  snprintf(x->db, sizeof x->db, "%s", q->database);
  snprintf(x->codes, sizeof x->codes, "%s", q->error_codes);
  snprintf(x->user, sizeof x->user, "%s", q->user);
  snprintf(x->app, sizeof x->app, "%s", q->application);
  snprintf(x->host, sizeof x->host, "%s", q->host);
  return 0;
}

static const char *path_in(const char *dir, const char *name) {
  static char buf[8][512];
  static int k;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", dir, name);
  return b;
}

static void write_file(const char *path, const char *text, const char *mode) {
  FILE *f = fopen(path, mode);
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* Reads `text` with the options (fed in pieces of `piece` bytes), flushes
 * into a fresh store and returns its queries. */
static qp_status read_text(const char *text, const qp_ingest_options *o, size_t piece, bool sample,
                           q_rows *rows, qp_ingest_stats *st, char *msg, size_t msglen) {
  const char *dir = qpt_tempdir();
  qp_profile_options po = {.sample = sample};
  qp_profile *prof;
  assert_int_equal(qp_profile_new(&prof, &po, NULL, 0), QP_OK);
  qp_ingest *in;
  char err[512];
  assert_int_equal(qp_ingest_new(&in, prof, o, err, sizeof err), QP_OK);
  size_t n = strlen(text);
  qp_status rc = QP_OK;
  for (size_t i = 0; i < n && rc == QP_OK; i += piece)
    rc = qp_ingest_feed(in, text + i, n - i < piece ? n - i : piece);
  if (rc == QP_OK) rc = qp_ingest_finish(in);
  if (msg) snprintf(msg, msglen, "%s", qp_ingest_errmsg(in));
  if (st) {
    st->size = sizeof *st;
    assert_int_equal(qp_ingest_get_stats(in, st), QP_OK);
    /* strings are the reader's: keep what the tests look at */
    static char first[256];
    snprintf(first, sizeof first, "%s", st->first_unparsed ? st->first_unparsed : "");
    st->first_unparsed = first;
    st->prefix = NULL;
    st->unknown_zone = NULL;
  }
  qp_ingest_free(in);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, path_in(dir, "s.db"), QP_STORE_WRITE, NULL, err, sizeof err),
                   QP_OK);
  assert_int_equal(qp_profile_flush(prof, s), QP_OK);
  memset(rows, 0, sizeof *rows);
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, collect, rows), QP_OK);
  qp_store_close(s);
  qp_profile_free(prof);
  return rc;
}

static uint64_t fp_of(const char *sql) {
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  char out[1024];
  size_t len;
  uint64_t fp;
  assert_int_equal(qp_profile_normalize(p, QP_BACKEND_POSTGRES, sql, strlen(sql), out, sizeof out,
                                        &len, &fp),
                   QP_OK);
  qp_profile_free(p);
  return fp;
}

/* A log as PostgreSQL 15 writes it with log_min_duration_statement = 0 and
 * log_line_prefix = '%m [%p] %q%u@%d %a %h %e ' (lines copied from a real
 * server, pids and values changed). */
static const char STDERR_LOG[] =
    "2026-12-02 13:32:02.834 UTC [14764] LOG:  starting PostgreSQL 15.18\n"
    "2026-12-02 13:32:06.927 UTC [14963] postgres@shop psql [local] 00000 LOG:  duration: 4.149 ms  statement: create table t(a int, b text)\n"
    "2026-12-02 13:32:06.928 UTC [14963] postgres@shop psql [local] 00000 LOG:  duration: 0.246 ms  statement: insert into t values (1, 'x\n"
    "\ty')\n"
    "2026-12-02 13:32:06.928 UTC [14963] postgres@shop psql [local] 42P01 ERROR:  relation \"nope\" does not exist at character 15\n"
    "2026-12-02 13:32:06.928 UTC [14963] postgres@shop psql [local] 42P01 STATEMENT:  select * from nope\n"
    "2026-12-02 13:32:07.342 UTC [14975] postgres@shop pgbench [local] 00000 LOG:  duration: 0.079 ms  parse P_5: INSERT INTO h (a, b) VALUES ($1, $2)\n"
    "2026-12-02 13:32:07.342 UTC [14975] postgres@shop pgbench [local] 00000 LOG:  duration: 0.023 ms  bind P_5: INSERT INTO h (a, b) VALUES ($1, $2)\n"
    "2026-12-02 13:32:07.342 UTC [14975] postgres@shop pgbench [local] 00000 DETAIL:  parameters: $1 = '5', $2 = '4111 1111 1111 1111'\n"
    "2026-12-02 13:32:07.342 UTC [14975] postgres@shop pgbench [local] 00000 LOG:  duration: 0.082 ms  execute P_5: INSERT INTO h (a, b) VALUES ($1, $2)\n"
    "2026-12-02 13:32:07.342 UTC [14975] postgres@shop pgbench [local] 00000 DETAIL:  parameters: $1 = '5', $2 = '4111 1111 1111 1111'\n"
    "2026-12-02 13:32:07.343 UTC [14975] postgres@shop pgbench [local] 00000 LOG:  duration: 0.010 ms  bind P_5: INSERT INTO h (a, b) VALUES ($1, $2)\n"
    "2026-12-02 13:32:07.343 UTC [14975] postgres@shop pgbench [local] 00000 DETAIL:  parameters: $1 = '6', $2 = 'x'\n"
    "2026-12-02 13:32:07.343 UTC [14975] postgres@shop pgbench [local] 00000 LOG:  duration: 0.007 ms  execute P_5: INSERT INTO h (a, b) VALUES ($1, $2)\n"
    "2026-12-02 13:32:07.343 UTC [14975] postgres@shop pgbench [local] 00000 DETAIL:  parameters: $1 = '6', $2 = 'x'\n"
    "garbage that is no log line\n"
    "2026-12-02 13:32:08.000 UTC [14770] LOG:  checkpoint starting: time\n";

static void test_stderr_statements(void **state) {
  (void)state;
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  o.prefix = "%m [%p] %q%u@%d %a %h %e ";
  /* the same result whatever the pieces the text arrives in */
  size_t pieces[] = {1, 7, 64, 100000};
  for (size_t k = 0; k < sizeof pieces / sizeof pieces[0]; k++) {
    q_rows r;
    qp_ingest_stats st;
    assert_int_equal(read_text(STDERR_LOG, &o, pieces[k], true, &r, &st, NULL, 0), QP_OK);
    assert_int_equal(st.statements, 5);
    assert_int_equal(st.errors, 1);
    assert_int_equal(st.unparsed, 1);
    assert_int_equal(st.first_unparsed_line, 16);
    assert_string_equal(st.first_unparsed, "garbage that is no log line");
    assert_int_equal(st.other, 2);
    assert_int_equal(r.n, 4);
    const q_row *ins = NULL;
    for (size_t i = 0; i < r.n; i++)
      if (r.v[i].fp == fp_of("INSERT INTO h (a, b) VALUES ($1, $2)")) ins = &r.v[i];
    assert_non_null(ins);
    assert_int_equal(ins->calls, 2);
    /* parse and bind time belong to the execution that follows */
    assert_int_equal(ins->total_ns, 79000 + 23000 + 82000 + 10000 + 7000);
    assert_int_equal(ins->fp, fp_of("INSERT INTO h (a, b) VALUES ($1, $2)"));
    assert_string_equal(ins->db, "shop");
    /* the sample has the slower execution's parameters, redacted */
    assert_non_null(strstr(ins->sample, "VALUES ('5', '?')"));
    assert_null(strstr(ins->sample, "4111"));
    /* the continuation line is part of the statement */
    uint64_t fp = fp_of("insert into t values (1, 'x\ny')");
    bool seen = false;
    for (size_t i = 0; i < r.n; i++)
      if (r.v[i].fp == fp) {
        seen = true;
        assert_int_equal(r.v[i].total_ns, 246000);
      }
    assert_true(seen);
    const q_row *err = NULL;
    for (size_t i = 0; i < r.n; i++)
      if (r.v[i].fp == fp_of("select * from nope")) err = &r.v[i];
    assert_non_null(err);
    assert_int_equal(err->errors, 1);
    assert_string_equal(err->codes, "42P01:1");
    /* the logged time is the event's: 2026-12-02 13:32:06.927 UTC */
    const q_row *ct = NULL;
    for (size_t i = 0; i < r.n; i++)
      if (r.v[i].fp == fp_of("create table t(a int, b text)")) ct = &r.v[i];
    assert_non_null(ct);
    assert_int_equal(ct->first_ns, 1796218326927000000LL);
  }
}

static void test_log_statement_and_duration(void **state) {
  (void)state;
  /* log_statement = all + log_duration: the statement, then a bare
   * duration; extended protocol: parse and bind durations before the
   * execute line; a statement with no duration; an error after its
   * statement line counts once */
  static const char log[] =
      "2026-12-02 10:00:00.100 CET [7] LOG:  statement: SELECT 1\n"
      "2026-12-02 10:00:00.101 CET [8] LOG:  statement: SELECT 2\n"
      "2026-12-02 10:00:00.102 CET [7] LOG:  duration: 1.500 ms\n"
      "2026-12-02 10:00:00.103 CET [8] LOG:  duration: 2.000 ms\n"
      "2026-12-02 10:00:00.200 CET [7] LOG:  duration: 0.100 ms\n"
      "2026-12-02 10:00:00.201 CET [7] LOG:  duration: 0.200 ms\n"
      "2026-12-02 10:00:00.202 CET [7] LOG:  execute <unnamed>: SELECT a FROM t WHERE b = $1\n"
      "2026-12-02 10:00:00.202 CET [7] DETAIL:  parameters: $1 = '3'\n"
      "2026-12-02 10:00:00.203 CET [7] LOG:  duration: 0.300 ms\n"
      "2026-12-02 10:00:00.300 CET [9] LOG:  statement: SELECT 1/0\n"
      "2026-12-02 10:00:00.301 CET [9] ERROR:  division by zero\n"
      "2026-12-02 10:00:00.301 CET [9] STATEMENT:  SELECT 1/0\n"
      "2026-12-02 10:00:00.400 CET [9] LOG:  statement: SELECT 4\n";
  qp_ingest_options o;
  qp_ingest_options_init(&o); /* the prefix is detected: "%m [%p] " */
  q_rows r;
  qp_ingest_stats st;
  assert_int_equal(read_text(log, &o, 13, false, &r, &st, NULL, 0), QP_OK);
  assert_int_equal(st.statements, 5);
  assert_int_equal(st.errors, 1);
  assert_int_equal(st.no_duration, 1);
  assert_int_equal(st.unparsed, 0);
  uint64_t total = 0, calls = 0;
  for (size_t i = 0; i < r.n; i++) {
    total += r.v[i].total_ns;
    calls += r.v[i].calls;
    if (r.v[i].fp == fp_of("SELECT a FROM t WHERE b = $1")) assert_int_equal(r.v[i].total_ns, 600000);
    if (r.v[i].fp == fp_of("SELECT 1/0")) {
      assert_int_equal(r.v[i].errors, 1);
      assert_string_equal(r.v[i].codes, "ERROR:1"); /* no %e: no SQLSTATE */
    }
  }
  assert_int_equal(calls, 5);
  assert_int_equal(total, 1500000 + 2000000 + 600000);
  /* CET is UTC+1: 10:00 CET is 09:00 UTC */
  int64_t first = INT64_MAX;
  for (size_t i = 0; i < r.n; i++)
    if (r.v[i].first_ns < first) first = r.v[i].first_ns;
  assert_int_equal(first, 1796202000102000000LL);
}

/* calls and total of the query of `sql` in `r` (0, 0 when absent) */
static const q_row *row_of(const q_rows *r, const char *sql) {
  uint64_t fp = fp_of(sql);
  for (size_t i = 0; i < r->n; i++)
    if (r->v[i].fp == fp) return &r->v[i];
  return NULL;
}

static void test_auto_explain(void **state) {
  (void)state;
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  o.prefix = "%m [%p] ";
  q_rows r;
  qp_ingest_stats st;
  /* auto_explain alone (no log_min_duration_statement): each plan is a call
   * of its Query Text, with its duration; text and JSON formats, a query of
   * several lines, a plan that is neither (YAML: not read), an error after a
   * plan (both count) */
  static const char alone[] =
      "2026-12-03 13:47:30.100 UTC [7] LOG:  duration: 1.000 ms  plan:\n"
      "\tQuery Text: SELECT a FROM t WHERE b = 1\n"
      "\tSeq Scan on t  (cost=0.00..41.88 rows=13 width=4) (actual time=0.010..0.900 rows=1 loops=1)\n"
      "\t  Filter: (b = 1)\n"
      "2026-12-03 13:47:30.200 UTC [7] LOG:  duration: 2.000 ms  plan:\n"
      "\tQuery Text: SELECT a FROM t WHERE b = 2\n"
      "\tSeq Scan on t  (cost=0.00..41.88 rows=13 width=4)\n"
      "2026-12-03 13:47:30.300 UTC [8] LOG:  duration: 3.000 ms  plan:\n"
      "\t{\n"
      "\t  \"Query Text\": \"SELECT a FROM t WHERE b = 3\",\n"
      "\t  \"Plan\": {\n"
      "\t    \"Node Type\": \"Seq Scan\",\n"
      "\t    \"Relation Name\": \"t\"\n"
      "\t  }\n"
      "\t}\n"
      "2026-12-03 13:47:30.400 UTC [8] LOG:  duration: 4.000 ms  plan:\n"
      "\tQuery Text: SELECT count(*)\n"
      "\t  FROM t\n"
      "\tAggregate  (cost=41.88..41.89 rows=1 width=8)\n"
      "\t  ->  Seq Scan on t  (cost=0.00..35.50 rows=2550 width=0)\n"
      "2026-12-03 13:47:30.500 UTC [9] LOG:  duration: 5.000 ms  plan:\n"
      "\t- Query Text: \"SELECT 5\"\n"
      "\t  Plan:\n"
      "\t    Node Type: \"Result\"\n"
      "2026-12-03 13:47:30.600 UTC [7] ERROR:  division by zero\n"
      "2026-12-03 13:47:30.600 UTC [7] STATEMENT:  SELECT 1/0\n";
  assert_int_equal(read_text(alone, &o, 9, false, &r, &st, NULL, 0), QP_OK);
  assert_int_equal(st.plans, 5);
  assert_int_equal(st.plan_calls, 4);
  assert_int_equal(st.plans_unread, 1);
  assert_int_equal(st.statements, 5);
  const q_row *q = row_of(&r, "SELECT a FROM t WHERE b = 1");
  assert_non_null(q);
  assert_int_equal(q->calls, 3); /* b = 1, 2 and 3 are one query */
  assert_int_equal(q->total_ns, 6000000);
  q = row_of(&r, "SELECT count(*)\n  FROM t");
  assert_non_null(q);
  assert_int_equal(q->calls, 1);
  assert_int_equal(q->total_ns, 4000000);
  assert_int_equal(q->first_ns, 1796305650400000000LL);
  q = row_of(&r, "SELECT 1/0");
  assert_non_null(q);
  assert_int_equal(q->errors, 1);
  assert_null(row_of(&r, "SELECT 5"));

  /* with log_min_duration_statement: a plan is the detail of the statement
   * logged next with the same text (one call, its duration from the
   * statement's line); the plans of one multi-statement string are one
   * execution; a plan whose statement was under the threshold is a call */
  static const char both[] =
      "2026-12-03 13:47:31.000 UTC [7] LOG:  duration: 0.900 ms  plan:\n"
      "\tQuery Text: SELECT a FROM t WHERE b = 1\n"
      "\tSeq Scan on t  (cost=0.00..41.88 rows=13 width=4)\n"
      "2026-12-03 13:47:31.001 UTC [7] LOG:  duration: 1.000 ms  statement: SELECT a FROM t WHERE b = 1\n"
      "2026-12-03 13:47:31.100 UTC [7] LOG:  duration: 0.100 ms  plan:\n"
      "\tQuery Text: SELECT 1; SELECT 2\n"
      "\tResult  (cost=0.00..0.01 rows=1 width=4)\n"
      "2026-12-03 13:47:31.101 UTC [7] LOG:  duration: 0.100 ms  plan:\n"
      "\tQuery Text: SELECT 1; SELECT 2\n"
      "\tResult  (cost=0.00..0.01 rows=1 width=4)\n"
      "2026-12-03 13:47:31.102 UTC [7] LOG:  duration: 0.300 ms  statement: SELECT 1; SELECT 2\n"
      "2026-12-03 13:47:31.200 UTC [8] LOG:  duration: 0.050 ms  plan:\n"
      "\tQuery Text: SELECT a FROM t WHERE b = 7\n"
      "\tIndex Scan using t_b on t  (cost=0.29..8.30 rows=1 width=4)\n"
      "2026-12-03 13:47:31.300 UTC [8] LOG:  duration: 2.000 ms  execute P_1: SELECT a FROM t WHERE b = $1\n"
      "2026-12-03 13:47:31.300 UTC [8] DETAIL:  parameters: $1 = '8'\n"
      /* the extended protocol: a SELECT's plan after its execute line */
      "2026-12-03 13:47:31.400 UTC [9] LOG:  duration: 0.500 ms  execute <unnamed>: SELECT a FROM t WHERE b = $1\n"
      "2026-12-03 13:47:31.400 UTC [9] DETAIL:  parameters: $1 = '9'\n"
      "2026-12-03 13:47:31.401 UTC [9] LOG:  duration: 0.066 ms  plan:\n"
      "\tQuery Text: SELECT a FROM t WHERE b = $1\n"
      "\tIndex Scan using t_b on t  (cost=0.29..8.30 rows=1 width=4)\n"
      "2026-12-03 13:47:31.402 UTC [9] LOG:  duration: 0.033 ms  plan:\n"
      "\tQuery Text: UPDATE t SET a = a + 1 WHERE b = $1\n"
      "\tUpdate on t  (cost=0.29..8.31 rows=0 width=0)\n"
      "2026-12-03 13:47:31.403 UTC [9] LOG:  duration: 0.121 ms  execute <unnamed>: UPDATE t SET a = a + 1 WHERE b = $1\n"
      "2026-12-03 13:47:31.403 UTC [9] DETAIL:  parameters: $1 = '9'\n";
  assert_int_equal(read_text(both, &o, 100000, false, &r, &st, NULL, 0), QP_OK);
  assert_int_equal(st.plans, 6);
  assert_int_equal(st.plan_calls, 1);
  assert_int_equal(st.statements, 6);
  q = row_of(&r, "SELECT a FROM t WHERE b = 1");
  assert_non_null(q);
  assert_int_equal(q->calls, 4);
  assert_int_equal(q->total_ns, 1000000 + 50000 + 2000000 + 500000);
  q = row_of(&r, "UPDATE t SET a = a + 1 WHERE b = 1");
  assert_non_null(q);
  assert_int_equal(q->calls, 1);
  assert_int_equal(q->total_ns, 121000);
  q = row_of(&r, "SELECT 1; SELECT 2");
  assert_non_null(q);
  assert_int_equal(q->calls, 1);
  assert_int_equal(q->total_ns, 300000);

  /* log_statement = all without log_duration: the plan gives the waiting
   * statement its duration; log_statement = mod: a SELECT's plan is not the
   * waiting UPDATE's */
  static const char stmt[] =
      "2026-12-03 13:47:32.000 UTC [7] LOG:  statement: SELECT a FROM t WHERE b = 1\n"
      "2026-12-03 13:47:32.001 UTC [7] LOG:  duration: 0.700 ms  plan:\n"
      "\tQuery Text: SELECT a FROM t WHERE b = 1\n"
      "\tSeq Scan on t  (cost=0.00..41.88 rows=13 width=4)\n"
      "2026-12-03 13:47:32.100 UTC [7] LOG:  statement: UPDATE t SET a = 1\n"
      "2026-12-03 13:47:32.101 UTC [7] LOG:  duration: 0.400 ms  plan:\n"
      "\tQuery Text: UPDATE t SET a = 1\n"
      "\tUpdate on t  (cost=0.00..35.50 rows=0 width=0)\n"
      "\t  ->  Seq Scan on t  (cost=0.00..35.50 rows=2550 width=10)\n"
      "2026-12-03 13:47:32.200 UTC [7] LOG:  duration: 0.250 ms  plan:\n"
      "\tQuery Text: SELECT a FROM t WHERE b = 2\n"
      "\tSeq Scan on t  (cost=0.00..41.88 rows=13 width=4)\n";
  assert_int_equal(read_text(stmt, &o, 5, false, &r, &st, NULL, 0), QP_OK);
  assert_int_equal(st.plans, 3);
  assert_int_equal(st.plan_calls, 1);
  assert_int_equal(st.statements, 3);
  assert_int_equal(st.no_duration, 0);
  q = row_of(&r, "SELECT a FROM t WHERE b = 1");
  assert_non_null(q);
  assert_int_equal(q->calls, 2);
  assert_int_equal(q->total_ns, 700000 + 250000);
  q = row_of(&r, "UPDATE t SET a = 1");
  assert_non_null(q);
  assert_int_equal(q->calls, 1);
  assert_int_equal(q->total_ns, 400000);
}

static void test_detection_and_garbage(void **state) {
  (void)state;
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  o.name = "app.log";
  q_rows r;
  char msg[512];
  assert_int_equal(read_text("hello\nworld\n", &o, 100, false, &r, NULL, msg, sizeof msg),
                   QP_SYNTAX);
  assert_non_null(strstr(msg, "app.log"));
  assert_non_null(strstr(msg, "'hello'"));
  assert_int_equal(r.n, 0);
  /* pgbadger's recommended prefix is recognized */
  static const char pgb[] =
      "2026-12-02 10:00:00 UTC [42]: [1-1] user=bob,db=shop,app=my app,client=10.0.0.1 LOG:  duration: 1.000 ms  statement: SELECT 1\n";
  qp_ingest_stats st;
  assert_int_equal(read_text(pgb, &o, 100, false, &r, &st, NULL, 0), QP_OK);
  assert_int_equal(st.statements, 1);
  assert_string_equal(r.v[0].db, "shop");
  /* a prefix that is not one */
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  qp_ingest *in;
  o.prefix = "%m %y ";
  assert_int_equal(qp_ingest_new(&in, p, &o, msg, sizeof msg), QP_SYNTAX);
  assert_non_null(strstr(msg, "%y"));
  assert_null(in);
  o.size = 4;
  assert_int_equal(qp_ingest_new(&in, p, &o, msg, sizeof msg), QP_INVALID);
  qp_profile_free(p);
}

/* The same statements as csvlog and jsonlog (as PostgreSQL 15 writes them). */
static const char CSV_LOG[] =
    "2026-12-02 13:32:06.927 UTC,\"postgres\",\"shop\",14963,\"[local]\",6b101dd6.3a73,1,\"CREATE TABLE\",2026-12-02 13:32:06 UTC,3/2,0,LOG,00000,\"duration: 4.149 ms  statement: create table t(a int, b text)\",,,,,,,,,\"psql\",\"client backend\",,0\n"
    "2026-12-02 13:32:06.928 UTC,\"postgres\",\"shop\",14963,\"[local]\",6b101dd6.3a73,2,\"INSERT\",2026-12-02 13:32:06 UTC,3/3,0,LOG,00000,\"duration: 0.246 ms  statement: insert into t values (1, 'x\n"
    "y')\",,,,,,,,,\"psql\",\"client backend\",,0\n"
    "2026-12-02 13:32:06.928 UTC,\"postgres\",\"shop\",14963,\"[local]\",6b101dd6.3a73,3,\"SELECT\",2026-12-02 13:32:06 UTC,3/4,0,ERROR,42P01,\"relation \"\"nope\"\" does not exist\",,,,,,\"select * from nope\",15,,\"psql\",\"client backend\",,0\n"
    "2026-12-02 13:32:07.342 UTC,\"postgres\",\"shop\",14975,\"[local]\",6b101dd7.3a7f,6,\"INSERT\",2026-12-02 13:32:07 UTC,4/6,742,LOG,00000,\"duration: 0.082 ms  execute P_5: INSERT INTO h (a, b) VALUES ($1, $2)\",\"parameters: $1 = '5', $2 = 'x'\",,,,,,,,\"pgbench\",\"client backend\",,0\n"
    "not,a,record\n";
static const char JSON_LOG[] =
    "{\"timestamp\":\"2026-12-02 13:32:06.927 UTC\",\"user\":\"postgres\",\"dbname\":\"shop\",\"pid\":14963,\"error_severity\":\"LOG\",\"message\":\"duration: 4.149 ms  statement: create table t(a int, b text)\"}\n"
    "{\"timestamp\":\"2026-12-02 13:32:06.928 UTC\",\"user\":\"postgres\",\"dbname\":\"shop\",\"pid\":14963,\"error_severity\":\"LOG\",\"message\":\"duration: 0.246 ms  statement: insert into t values (1, 'x\\ny')\"}\n"
    "{\"timestamp\":\"2026-12-02 13:32:06.928 UTC\",\"user\":\"postgres\",\"dbname\":\"shop\",\"pid\":14963,\"error_severity\":\"ERROR\",\"state_code\":\"42P01\",\"message\":\"relation \\\"nope\\\" does not exist\",\"statement\":\"select * from nope\"}\n"
    "{\"timestamp\":\"2026-12-02 13:32:07.342 UTC\",\"user\":\"postgres\",\"dbname\":\"shop\",\"pid\":14975,\"error_severity\":\"LOG\",\"message\":\"duration: 0.082 ms  execute P_5: INSERT INTO h (a, b) VALUES ($1, $2)\",\"detail\":\"parameters: $1 = '5', $2 = 'x'\"}\n"
    "{broken\n";

static void same_rows(const q_rows *a, const q_rows *b) {
  assert_int_equal(a->n, b->n);
  for (size_t i = 0; i < a->n; i++) {
    bool found = false;
    for (size_t j = 0; j < b->n; j++)
      if (a->v[i].fp == b->v[j].fp) {
        found = true;
        assert_int_equal(a->v[i].calls, b->v[j].calls);
        assert_int_equal(a->v[i].errors, b->v[j].errors);
        assert_int_equal(a->v[i].total_ns, b->v[j].total_ns);
        assert_int_equal(a->v[i].first_ns, b->v[j].first_ns);
        assert_string_equal(a->v[i].codes, b->v[j].codes);
        assert_string_equal(a->v[i].db, b->v[j].db);
      }
    assert_true(found);
  }
}

static void test_csv_json(void **state) {
  (void)state;
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  q_rows c, j, s;
  qp_ingest_stats st;
  assert_int_equal(read_text(CSV_LOG, &o, 5, false, &c, &st, NULL, 0), QP_OK);
  assert_int_equal(st.format, QP_LOG_CSVLOG);
  assert_int_equal(st.statements, 4);
  assert_int_equal(st.unparsed, 1);
  assert_int_equal(st.first_unparsed_line, 6);
  assert_int_equal(read_text(JSON_LOG, &o, 3, false, &j, &st, NULL, 0), QP_OK);
  assert_int_equal(st.format, QP_LOG_JSONLOG);
  assert_int_equal(st.statements, 4);
  assert_int_equal(st.unparsed, 1);
  same_rows(&c, &j);
  /* and the same as the stderr lines of these statements */
  static const char err_log[] =
      "2026-12-02 13:32:06.927 UTC [14963] postgres@shop 00000 LOG:  duration: 4.149 ms  statement: create table t(a int, b text)\n"
      "2026-12-02 13:32:06.928 UTC [14963] postgres@shop 00000 LOG:  duration: 0.246 ms  statement: insert into t values (1, 'x\n"
      "\ty')\n"
      "2026-12-02 13:32:06.928 UTC [14963] postgres@shop 42P01 ERROR:  relation \"nope\" does not exist\n"
      "2026-12-02 13:32:06.928 UTC [14963] postgres@shop 42P01 STATEMENT:  select * from nope\n"
      "2026-12-02 13:32:07.342 UTC [14975] postgres@shop 00000 LOG:  duration: 0.082 ms  execute P_5: INSERT INTO h (a, b) VALUES ($1, $2)\n"
      "2026-12-02 13:32:07.342 UTC [14975] postgres@shop 00000 DETAIL:  parameters: $1 = '5', $2 = 'x'\n";
  o.prefix = "%m [%p] %q%u@%d %e ";
  assert_int_equal(read_text(err_log, &o, 11, false, &s, &st, NULL, 0), QP_OK);
  same_rows(&c, &s);
}

/* Who ran it: the same statements of two users, applications and client
 * hosts as csvlog, jsonlog and stderr (with %r and with %h) give the same
 * profile per user, application and host. */
static const char WHO_CSV[] =
    "2026-12-02 13:32:06.927 UTC,\"alice\",\"shop\",100,\"10.0.0.5:54321\",6b101dd6.64,1,\"SELECT\",2026-12-02 13:32:06 UTC,3/2,0,LOG,00000,\"duration: 1.000 ms  statement: select 1\",,,,,,,,,\"web\",\"client backend\",,0\n"
    "2026-12-02 13:32:06.928 UTC,\"alice\",\"shop\",100,\"10.0.0.5:54321\",6b101dd6.64,2,\"SELECT\",2026-12-02 13:32:06 UTC,3/3,0,LOG,00000,\"duration: 2.000 ms  statement: select 2\",,,,,,,,,\"web\",\"client backend\",,0\n"
    "2026-12-02 13:32:06.929 UTC,\"bob\",\"shop\",101,\"[local]\",6b101dd6.65,1,\"SELECT\",2026-12-02 13:32:06 UTC,4/2,0,LOG,00000,\"duration: 4.000 ms  statement: select 3\",,,,,,,,,\"batch\",\"client backend\",,0\n"
    "2026-12-02 13:32:06.930 UTC,\"bob\",\"shop\",101,\"[local]\",6b101dd6.65,2,\"SELECT\",2026-12-02 13:32:06 UTC,4/3,0,ERROR,42P01,\"relation \"\"nope\"\" does not exist\",,,,,,\"select * from nope\",15,,\"batch\",\"client backend\",,0\n";
static const char WHO_JSON[] =
    "{\"timestamp\":\"2026-12-02 13:32:06.927 UTC\",\"user\":\"alice\",\"dbname\":\"shop\",\"pid\":100,\"remote_host\":\"10.0.0.5\",\"remote_port\":54321,\"application_name\":\"web\",\"error_severity\":\"LOG\",\"message\":\"duration: 1.000 ms  statement: select 1\"}\n"
    "{\"timestamp\":\"2026-12-02 13:32:06.928 UTC\",\"user\":\"alice\",\"dbname\":\"shop\",\"pid\":100,\"remote_host\":\"10.0.0.5\",\"remote_port\":54321,\"application_name\":\"web\",\"error_severity\":\"LOG\",\"message\":\"duration: 2.000 ms  statement: select 2\"}\n"
    "{\"timestamp\":\"2026-12-02 13:32:06.929 UTC\",\"user\":\"bob\",\"dbname\":\"shop\",\"pid\":101,\"remote_host\":\"[local]\",\"application_name\":\"batch\",\"error_severity\":\"LOG\",\"message\":\"duration: 4.000 ms  statement: select 3\"}\n"
    "{\"timestamp\":\"2026-12-02 13:32:06.930 UTC\",\"user\":\"bob\",\"dbname\":\"shop\",\"pid\":101,\"remote_host\":\"[local]\",\"application_name\":\"batch\",\"error_severity\":\"ERROR\",\"state_code\":\"42P01\",\"message\":\"relation \\\"nope\\\" does not exist\",\"statement\":\"select * from nope\"}\n";
static const char WHO_STDERR_R[] =
    "2026-12-02 13:32:06.927 UTC [100] alice@shop web 10.0.0.5(54321) 00000 LOG:  duration: 1.000 ms  statement: select 1\n"
    "2026-12-02 13:32:06.928 UTC [100] alice@shop web 10.0.0.5(54321) 00000 LOG:  duration: 2.000 ms  statement: select 2\n"
    "2026-12-02 13:32:06.929 UTC [101] bob@shop batch [local] 00000 LOG:  duration: 4.000 ms  statement: select 3\n"
    "2026-12-02 13:32:06.930 UTC [101] bob@shop batch [local] 42P01 ERROR:  relation \"nope\" does not exist\n"
    "2026-12-02 13:32:06.930 UTC [101] bob@shop batch [local] 42P01 STATEMENT:  select * from nope\n";
static const char WHO_STDERR_H[] =
    "2026-12-02 13:32:06.927 UTC [100]: user=alice,db=shop,app=web,client=10.0.0.5 LOG:  duration: 1.000 ms  statement: select 1\n"
    "2026-12-02 13:32:06.928 UTC [100]: user=alice,db=shop,app=web,client=10.0.0.5 LOG:  duration: 2.000 ms  statement: select 2\n"
    "2026-12-02 13:32:06.929 UTC [101]: user=bob,db=shop,app=batch,client=[local] LOG:  duration: 4.000 ms  statement: select 3\n"
    "2026-12-02 13:32:06.930 UTC [101]: user=bob,db=shop,app=batch,client=[local] ERROR:  relation \"nope\" does not exist\n"
    "2026-12-02 13:32:06.930 UTC [101]: user=bob,db=shop,app=batch,client=[local] STATEMENT:  select * from nope\n";

static const q_row *who_row(const q_rows *r, const char *query, const char *user) {
  for (size_t i = 0; i < r->n; i++)
    if (strcmp(r->v[i].query, query) == 0 && strcmp(r->v[i].user, user) == 0) return &r->v[i];
  fail_msg("no row %s / %s", query, user);
  return NULL;
}

static void who_rows_check(const q_rows *r) {
  assert_int_equal(r->n, 3);
  const q_row *a = who_row(r, "select ?", "alice");
  assert_int_equal(a->calls, 2);
  assert_int_equal(a->total_ns, 3000000);
  assert_string_equal(a->app, "web");
  assert_string_equal(a->host, "10.0.0.5");
  assert_string_equal(a->db, "shop");
  const q_row *b = who_row(r, "select ?", "bob");
  assert_int_equal(b->calls, 1);
  assert_string_equal(b->app, "batch");
  assert_string_equal(b->host, "[local]");
  const q_row *e = who_row(r, "select * from nope", "bob");
  assert_int_equal(e->errors, 1);
  assert_string_equal(e->app, "batch");
  assert_string_equal(e->host, "[local]");
}

static void test_dims_three_formats(void **state) {
  (void)state;
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  q_rows c, j, r, h;
  assert_int_equal(read_text(WHO_CSV, &o, 7, false, &c, NULL, NULL, 0), QP_OK);
  who_rows_check(&c);
  assert_int_equal(read_text(WHO_JSON, &o, 5, false, &j, NULL, NULL, 0), QP_OK);
  who_rows_check(&j);
  o.prefix = "%m [%p] %u@%d %a %r %e ";
  assert_int_equal(read_text(WHO_STDERR_R, &o, 9, false, &r, NULL, NULL, 0), QP_OK);
  who_rows_check(&r);
  o.prefix = NULL; /* detected: one of the common prefixes, with %h */
  assert_int_equal(read_text(WHO_STDERR_H, &o, 13, false, &h, NULL, NULL, 0), QP_OK);
  who_rows_check(&h);
}

static void test_window(void **state) {
  (void)state;
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  o.prefix = "%m [%p] %q%u@%d %a %h %e ";
  assert_int_equal(qp_report_parse_time("2026-12-02T13:32:07Z", &o.since_ns), QP_OK);
  q_rows r;
  qp_ingest_stats st;
  assert_int_equal(read_text(STDERR_LOG, &o, 4096, false, &r, &st, NULL, 0), QP_OK);
  assert_int_equal(st.statements, 2);
  assert_int_equal(st.outside, 3);
  o.since_ns = 0;
  assert_int_equal(qp_report_parse_time("2026-12-02T13:32:07Z", &o.until_ns), QP_OK);
  assert_int_equal(read_text(STDERR_LOG, &o, 4096, false, &r, &st, NULL, 0), QP_OK);
  assert_int_equal(st.statements, 3);
}

/* ---- files ------------------------------------------------------------------- */

static uint64_t store_calls(const char *store) {
  qp_store *s;
  assert_int_equal(qp_store_open(&s, store, QP_STORE_READ, NULL, NULL, 0), QP_OK);
  qpt_sum sum = {0};
  assert_int_equal(qp_store_summarize(s, INT64_MIN, INT64_MAX, qpt_sum_add, &sum), QP_OK);
  qp_store_close(s);
  return sum.calls;
}

static qp_ingest_start ingest_path(const char *store, const char *path, bool rescan,
                                   uint64_t flush_bytes, qp_status want) {
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  qp_ingest *in;
  qp_ingest_options o;
  qp_ingest_options_init(&o);
  o.prefix = "%m [%p] ";
  assert_int_equal(qp_ingest_new(&in, p, &o, NULL, 0), QP_OK);
  qp_store *s;
  assert_int_equal(qp_store_open(&s, store, QP_STORE_WRITE, NULL, NULL, 0), QP_OK);
  qp_ingest_file_options fo;
  qp_ingest_file_options_init(&fo);
  fo.rescan = rescan;
  fo.flush_bytes = flush_bytes;
  qp_ingest_file_result res;
  qp_status rc = qp_ingest_file(in, s, path, &fo, &res);
  if (rc != want) fail_msg("%s: %s", path, qp_ingest_errmsg(in));
  qp_store_close(s);
  qp_ingest_free(in);
  qp_profile_free(p);
  return res.start;
}

/* n lines of "duration" statements, numbered from `from`, each ~100 bytes */
static char *lines_text(int from, int n) {
  char *t = malloc((size_t)n * 160 + 1);
  assert_non_null(t);
  size_t k = 0;
  for (int i = from; i < from + n; i++)
    k += (size_t)sprintf(t + k,
                         "2026-12-02 10:%02d:%02d.000 UTC [%d] LOG:  duration: 0.5%02d ms  "
                         "statement: SELECT %d FROM t WHERE id = %d\n",
                         (i / 60) % 60, i % 60, 100 + i % 7, i % 100, i % 3, i);
  t[k] = '\0';
  return t;
}

static void test_files_positions(void **state) {
  (void)state;
  const char *dir = qpt_tempdir();
  char store[512], log[512];
  snprintf(store, sizeof store, "%s/p.db", dir);
  snprintf(log, sizeof log, "%s/pg.log", dir);
  char *a = lines_text(0, 100), *b = lines_text(100, 50);
  write_file(log, a, "w");
  assert_int_equal(ingest_path(store, log, false, 0, QP_OK), QP_INGEST_NEW);
  assert_int_equal(store_calls(store), 100);
  assert_int_equal(ingest_path(store, log, false, 0, QP_OK), QP_INGEST_UNCHANGED);
  assert_int_equal(store_calls(store), 100);
  /* grows, with a last line still being written */
  write_file(log, b, "a");
  write_file(log, "2026-12-02 11:00:00.000 UTC [5] LOG:  duration: 1.0 ms  statement: SEL", "a");
  assert_int_equal(ingest_path(store, log, false, 0, QP_OK), QP_INGEST_RESUMED);
  assert_int_equal(store_calls(store), 150);
  write_file(log, "ECT 2\n", "a");
  assert_int_equal(ingest_path(store, log, false, 0, QP_OK), QP_INGEST_RESUMED);
  assert_int_equal(store_calls(store), 151);
  /* rotated: renamed, compressed by logrotate; a new file in its place */
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "mv '%s' '%s.1' && gzip -k '%s.1'", log, log, log);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(ingest_path(store, path_in(dir, "pg.log.1"), false, 0, QP_OK), QP_INGEST_UNCHANGED);
  assert_int_equal(ingest_path(store, path_in(dir, "pg.log.1.gz"), false, 0, QP_OK),
                   QP_INGEST_UNCHANGED);
  assert_int_equal(store_calls(store), 151);
  /* a new file with other text in the old place */
  char *c = lines_text(500, 10);
  write_file(log, c, "w");
  assert_int_equal(ingest_path(store, log, false, 0, QP_OK), QP_INGEST_NEW);
  assert_int_equal(store_calls(store), 161);
  /* truncated and rewritten in place (copytruncate): other text, same inode */
  char *d = lines_text(700, 4);
  write_file(log, d, "w");
  assert_int_equal(ingest_path(store, log, false, 0, QP_OK), QP_INGEST_REPLACED);
  assert_int_equal(store_calls(store), 165);
  /* --rescan reads again */
  assert_int_equal(ingest_path(store, log, true, 0, QP_OK), QP_INGEST_RESCAN);
  assert_int_equal(store_calls(store), 169);
  /* a big file flushed every 4 KB: positions between flushes are whole messages */
  char big[512];
  snprintf(big, sizeof big, "%s/big.log", dir);
  char *e = lines_text(1000, 2000);
  write_file(big, e, "w");
  assert_int_equal(ingest_path(store, big, false, 4096, QP_OK), QP_INGEST_NEW);
  assert_int_equal(store_calls(store), 2169);
  assert_int_equal(ingest_path(store, big, false, 4096, QP_OK), QP_INGEST_UNCHANGED);
  /* a gzip file read whole the first time */
  snprintf(cmd, sizeof cmd, "gzip -c '%s' > '%s.gz'", log, path_in(dir, "x"));
  assert_int_equal(system(cmd), 0);
  assert_int_equal(ingest_path(store, path_in(dir, "x.gz"), true, 0, QP_OK), QP_INGEST_RESCAN);
  assert_int_equal(store_calls(store), 2173);
  /* damaged gzip: what came before the damage is kept, the call fails */
  snprintf(cmd, sizeof cmd, "gzip -c '%s' | head -c 2000 > '%s'", big, path_in(dir, "cut.gz"));
  assert_int_equal(system(cmd), 0);
  ingest_path(store, path_in(dir, "cut.gz"), false, 0, QP_SYNTAX);
  /* a file with nothing to read fails and is not remembered */
  char junk[512];
  snprintf(junk, sizeof junk, "%s/junk.log", dir);
  write_file(junk, "no log here\n", "w");
  ingest_path(store, junk, false, 0, QP_SYNTAX);
  ingest_path(store, junk, false, 0, QP_SYNTAX);
  ingest_path(store, path_in(dir, "missing.log"), false, 0, QP_IO);
  free(a);
  free(b);
  free(c);
  free(d);
  free(e);
}

static void test_oom(void **state) {
  (void)state;
  for (long n = 1; n < 4000; n++) {
    qpt_failalloc fa = {.fail_at = n};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp_profile_options po = {.hooks = &h, .sample = true};
    qp_profile *p;
    if (qp_profile_new(&p, &po, NULL, 0) != QP_OK) continue;
    qp_ingest *in;
    qp_ingest_options o;
    qp_ingest_options_init(&o);
    qp_status rc = qp_ingest_new(&in, p, &o, NULL, 0);
    if (rc == QP_OK) {
      rc = qp_ingest_feed(in, STDERR_LOG, sizeof STDERR_LOG - 1);
      if (rc == QP_OK) rc = qp_ingest_finish(in);
      assert_true(rc == QP_OK || rc == QP_NOMEM);
      qp_ingest_free(in);
    } else {
      assert_int_equal(rc, QP_NOMEM);
    }
    qp_profile_free(p);
    assert_int_equal(fa.live, 0);
    if (fa.count < n) break; /* no allocation failed: every one was tried */
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stderr_statements), cmocka_unit_test(test_log_statement_and_duration),
      cmocka_unit_test(test_auto_explain),
      cmocka_unit_test(test_detection_and_garbage), cmocka_unit_test(test_csv_json),
      cmocka_unit_test(test_window),
      cmocka_unit_test(test_dims_three_formats),
      cmocka_unit_test(test_files_positions),
      cmocka_unit_test(test_oom),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
