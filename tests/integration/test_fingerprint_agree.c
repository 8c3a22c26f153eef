/*
 * One owner of fingerprints (issue 9): for one corpus per dialect, the
 * fingerprints and normalized texts that every path stores are the same set.
 *   - the pool, one qp_conn_exec per statement (split with qp_sql_split_next)
 *   - the pool, the whole corpus as one qp_conn_exec_script
 *   - the shim under real clients: `qprof run -- sqlite3`, `qprof run --
 *     python3` (executescript) and `qprof run -- psql -f`
 *   - `qprof normalize --format json` (what it prints)
 * All with the same rule, tmp_[0-9]+=tmp_?, given the way each path takes it
 * (qp_profile_options.rules, QPROF_RULES, --rule). The corpora
 * (tests/data/fingerprint/) mix literals of every kind, comments, IN lists,
 * keyword case and white space, quoted identifiers, parameters, transaction
 * control with savepoint names, trigger and function bodies. A path that
 * normalized with a copy of its own (no rules, another version, another
 * splitter) stores a different set and fails here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "testutil.h"

#define RULE "tmp_[0-9]+=tmp_?"
#define MAXFP 256

typedef struct fpset {
  const char *name;
  int n;
  uint64_t fp[MAXFP];
  char *text[MAXFP];
} fpset;

static void fp_add(fpset *s, uint64_t fp, const char *text) {
  for (int i = 0; i < s->n; i++)
    if (s->fp[i] == fp) {
      if (strcmp(s->text[i], text) != 0)
        fail_msg("%s: fingerprint %016llx names two texts: '%s' and '%s'",
                 s->name, (unsigned long long)fp, s->text[i], text);
      return;
    }
  assert_true(s->n < MAXFP);
  s->fp[s->n] = fp;
  s->text[s->n] = strdup(text);
  assert_non_null(s->text[s->n]);
  s->n++;
}

static void fp_free(fpset *s) {
  for (int i = 0; i < s->n; i++)
    free(s->text[i]);
  s->n = 0;
}

static int collect(const qp_query_summary *q, void *ud) {
  fp_add(ud, q->fingerprint, q->query);
  return 0;
}

/* What the store at `path` holds: every fingerprint with its text. */
static void from_store(const char *path, fpset *out) {
  qp_store *st = NULL;
  char err[256];
  if (qp_store_open(&st, path, QP_STORE_READ, NULL, err, sizeof err) != QP_OK)
    fail_msg("%s: cannot open its store %s: %s", out->name, path, err);
  assert_int_equal(qp_store_summarize(st, INT64_MIN, INT64_MAX, collect, out),
                   QP_OK);
  qp_store_close(st);
  if (out->n == 0)
    fail_msg("%s: the store %s is empty", out->name, path);
}

static const char *corpus_path(const char *dialect) {
  static char p[1024];
  snprintf(p, sizeof p, "%s/fingerprint/corpus_%s.sql", QP_TEST_DATA_DIR,
           dialect);
  return p;
}

/* What `qprof normalize --format json` prints for the corpus. */
static void from_normalize(const char *dialect, fpset *out) {
  const char *dir = qpt_tempdir();
  char cmd[4096], *o = NULL, *e = NULL;
  snprintf(cmd, sizeof cmd,
           "'%s' normalize --dialect %s --rule '" RULE "' --format json '%s'",
           getenv("QPROF_BIN"),
           strcmp(dialect, "pg") == 0 ? "postgres" : "sqlite",
           corpus_path(dialect));
  int rc = qpt_run_capture(dir, cmd, &o, &e);
  if (rc != 0)
    fail_msg("qprof normalize exited %d: %s", rc, e);
  for (char *line = strtok(o, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    json_error_t je;
    json_t *j = json_loads(line, 0, &je);
    if (j == NULL)
      fail_msg("qprof normalize: not JSON: %s", line);
    uint64_t fp = 0;
    assert_true(qp_fingerprint_parse(
        json_string_value(json_object_get(j, "fingerprint")), &fp));
    fp_add(out, fp, json_string_value(json_object_get(j, "query")));
    json_decref(j);
  }
  free(o);
  free(e);
}

static qp_profile *rules_profile(void) {
  const char *rules[] = {RULE};
  qp_profile_options po = {.rules = rules, .nrules = 1};
  qp_profile *prof = NULL;
  char err[256];
  if (qp_profile_new(&prof, &po, err, sizeof err) != QP_OK)
    fail_msg("qp_profile_new: %s", err);
  return prof;
}

/* Runs the corpus through a pool on `dsn` (statement by statement, or as
 * one script) and flushes what it recorded into a fresh store. */
static void from_pool(const char *dsn, qp_dialect d, const char *dialect,
                      bool script, fpset *out) {
  qp_profile *prof = rules_profile();
  qp_pool_options o;
  qp_pool_options_init(&o);
  o.dsn = dsn;
  o.max_size = 1;
  o.profile = prof;
  qp_pool *p = NULL;
  char err[256];
  if (qp_pool_open(&p, &o, err, sizeof err) != QP_OK)
    fail_msg("qp_pool_open: %s", err);
  qp_conn *c = NULL;
  assert_int_equal(qp_pool_acquire(p, &c), QP_OK);
  size_t len = 0;
  char *sql = qpt_read_file(corpus_path(dialect), &len);
  assert_non_null(sql);
  if (script) {
    if (qp_conn_exec_script(c, sql) != QP_OK)
      fail_msg("script: %s", qp_conn_errmsg(c));
  } else {
    size_t pos = 0, start = 0, n = 0;
    while (qp_sql_split_next(d, sql, len, &pos, &start, &n)) {
      char *one = strndup(sql + start, n);
      assert_non_null(one);
      if (qp_conn_exec(c, one, NULL, 0, NULL) != QP_OK)
        fail_msg("%s: %s", one, qp_conn_errmsg(c));
      free(one);
    }
  }
  free(sql);
  qp_pool_release(c);
  qp_pool_close(p);
  char path[1024];
  snprintf(path, sizeof path, "%s/pool.qp", qpt_tempdir());
  qp_store *st = NULL;
  assert_int_equal(
      qp_store_open(&st, path, QP_STORE_WRITE, NULL, err, sizeof err), QP_OK);
  assert_int_equal(qp_profile_flush(prof, st), QP_OK);
  qp_store_close(st);
  qp_profile_free(prof);
  from_store(path, out);
}

/* Runs `client` (a shell command line reading the corpus) under `qprof run`
 * with the rule in QPROF_RULES, and reads the store it wrote. */
static void from_shim(const char *client, fpset *out) {
  const char *dir = qpt_tempdir();
  char cmd[8192], store[1024];
  snprintf(store, sizeof store, "%s/shim.qp", dir);
  snprintf(cmd, sizeof cmd,
           "cd '%s' && QPROF_RULES='" RULE "' '%s' run --store '%s' -- %s", dir,
           getenv("QPROF_BIN"), store, client);
  char *e = NULL;
  int rc = qpt_run_capture(dir, cmd, NULL, &e);
  if (rc != 0)
    fail_msg("%s: exit %d: %s", out->name, rc, e);
  free(e);
  from_store(store, out);
}

static int cmp_fp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* The two sets are equal; the first difference is named otherwise. */
static void assert_same(const fpset *a, const fpset *b) {
  for (int k = 0; k < 2; k++) {
    const fpset *x = k ? b : a, *y = k ? a : b;
    for (int i = 0; i < x->n; i++) {
      int j = 0;
      while (j < y->n && y->fp[j] != x->fp[i])
        j++;
      if (j == y->n)
        fail_msg("%s stored %016llx '%s', which %s did not", x->name,
                 (unsigned long long)x->fp[i], x->text[i], y->name);
      if (strcmp(x->text[i], y->text[j]) != 0)
        fail_msg("%016llx: %s has '%s', %s '%s'", (unsigned long long)x->fp[i],
                 x->name, x->text[i], y->name, y->text[j]);
    }
  }
  assert_int_equal(a->n, b->n);
  uint64_t fa[MAXFP], fb[MAXFP];
  memcpy(fa, a->fp, sizeof fa[0] * (size_t)a->n);
  memcpy(fb, b->fp, sizeof fb[0] * (size_t)b->n);
  qsort(fa, (size_t)a->n, sizeof fa[0], cmp_fp);
  qsort(fb, (size_t)b->n, sizeof fb[0], cmp_fp);
  assert_memory_equal(fa, fb, sizeof fa[0] * (size_t)a->n);
}

/* The rule applied (no tmp_ followed by a digit survives) and the corpus is
 * not trivially small, so that agreement says something. */
static void assert_meaningful(const fpset *s, int min) {
  if (s->n < min)
    fail_msg("%s: only %d fingerprints", s->name, s->n);
  int folded = 0;
  for (int i = 0; i < s->n; i++) {
    for (const char *t = s->text[i]; (t = strstr(t, "tmp_")) != NULL; t += 4) {
      if (t[4] >= '0' && t[4] <= '9')
        fail_msg("%s: the rule did not apply: '%s'", s->name, s->text[i]);
      folded += t[4] == '?';
    }
  }
  assert_true(folded > 0);
}

static void test_sqlite_paths_agree(void **state) {
  (void)state;
  static fpset norm = {.name = "qprof normalize"},
               each = {.name = "pool (per statement)"},
               script = {.name = "pool (script)"},
               cli = {.name = "shim under sqlite3"},
               py = {.name = "shim under python3"};
  from_normalize("sqlite", &norm);
  assert_meaningful(&norm, 30);

  char dsn[1024];
  snprintf(dsn, sizeof dsn, "sqlite://%s/each.db", qpt_tempdir());
  from_pool(dsn, QP_DIALECT_SQLITE, "sqlite", false, &each);
  snprintf(dsn, sizeof dsn, "sqlite://%s/script.db", qpt_tempdir());
  from_pool(dsn, QP_DIALECT_SQLITE, "sqlite", true, &script);

  char client[2048];
  snprintf(client, sizeof client, "sqlite3 -bail cli.db < '%s'",
           corpus_path("sqlite"));
  from_shim(client, &cli);
  snprintf(client, sizeof client,
           "/usr/bin/python3 -c 'import sqlite3, sys; c = "
           "sqlite3.connect(\"py.db\"); "
           "c.executescript(open(sys.argv[1]).read())' '%s'",
           corpus_path("sqlite"));
  from_shim(client, &py);

  assert_same(&norm, &each);
  assert_same(&norm, &script);
  assert_same(&norm, &cli);
  assert_same(&norm, &py);
  fpset *all[] = {&norm, &each, &script, &cli, &py};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    fp_free(all[i]);
}

/* A fresh database on the fixture cluster for one path; returns its DSN. */
static const char *fresh_pg_db(const char *name, char *dsn, size_t cap) {
  assert_true(qpt_pg_env_load());
  assert_int_equal(
      qpt_system("psql -X -q -d postgres -c 'SET client_min_messages = "
                 "warning' -c 'DROP DATABASE IF EXISTS %s' "
                 "-c 'CREATE DATABASE %s' >/dev/null",
                 name, name),
      0);
  snprintf(dsn, cap, "host=%s port=%s user=%s dbname=%s", getenv("PGHOST"),
           getenv("PGPORT"), getenv("PGUSER"), name);
  return dsn;
}

static void test_postgres_paths_agree(void **state) {
  (void)state;
  static fpset norm = {.name = "qprof normalize"},
               each = {.name = "pool (per statement)"},
               script = {.name = "pool (script)"},
               psql = {.name = "shim under psql"};
  from_normalize("pg", &norm);
  assert_meaningful(&norm, 30);
  char dsn[1024];
  from_pool(fresh_pg_db("qpt_fp_each", dsn, sizeof dsn), QP_DIALECT_POSTGRES,
            "pg", false, &each);
  from_pool(fresh_pg_db("qpt_fp_script", dsn, sizeof dsn), QP_DIALECT_POSTGRES,
            "pg", true, &script);
  fresh_pg_db("qpt_fp_psql", dsn, sizeof dsn);
  char client[2048];
  snprintf(client, sizeof client,
           "psql -X -q -v ON_ERROR_STOP=1 -d qpt_fp_psql -f '%s' >/dev/null",
           corpus_path("pg"));
  from_shim(client, &psql);

  assert_same(&norm, &each);
  assert_same(&norm, &script);
  assert_same(&norm, &psql);
  fpset *all[] = {&norm, &each, &script, &psql};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    fp_free(all[i]);
  qpt_system(
      "psql -X -q -d postgres -c 'DROP DATABASE qpt_fp_each' -c 'DROP DATABASE "
      "qpt_fp_script' -c 'DROP DATABASE qpt_fp_psql' >/dev/null");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sqlite_paths_agree),
      cmocka_unit_test(test_postgres_paths_agree),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
