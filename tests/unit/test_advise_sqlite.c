/* The index advisor on real SQLite files (200k generated rows): everything
 * on a VACUUM INTO copy, never the live file (its bytes and mtime are
 * unchanged after advice on a SELECT, an UPDATE run with analyze_writes and
 * a join); a selective filter gets its index, measured on the copy; an
 * automatic index becomes a join-key suggestion; LIKE 'prefix%' needs
 * COLLATE NOCASE; a 95%-true flag, an index that exists under another name
 * or as a prefix, and a tiny table get none; DDL and PRAGMA are refused;
 * the copy is removed. */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "advise/advise_int.h"

static char g_path[256], g_dsn[300];

static int setup(void **state) {
  (void)state;
  const char *d = qpt_tempdir();
  if (d == NULL) return -1;
  snprintf(g_path, sizeof g_path, "%s/live.db", d);
  snprintf(g_dsn, sizeof g_dsn, "sqlite://%s", g_path);
  sqlite3 *db;
  if (sqlite3_open(g_path, &db) != SQLITE_OK) return -1;
  char *err = NULL;
  int rc = sqlite3_exec(
      db,
      "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INT NOT NULL, is_paid INT NOT NULL,"
      " email TEXT NOT NULL, ref_code INT NOT NULL, x INT NOT NULL);"
      "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200000)"
      " INSERT INTO orders SELECT n, 1 + (n * 7919) % 20000, n % 20 <> 0, 'User' || n || '@x.org',"
      " n % 1000, n % 100 FROM g;"
      "CREATE INDEX orders_weird_name ON orders (ref_code, x);"
      "CREATE INDEX orders_ref ON orders (ref_code);"
      "CREATE TABLE items (order_id INT NOT NULL, qty INT NOT NULL);"
      "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 100000)"
      " INSERT INTO items SELECT 1 + (n * 13) % 200000, n % 7 FROM g;"
      "CREATE TABLE tiny (id INT, v INT);"
      "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 300)"
      " INSERT INTO tiny SELECT n, n % 10 FROM g;",
      NULL, NULL, &err);
  if (rc != SQLITE_OK) print_error("setup: %s\n", err);
  sqlite3_free(err);
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : -1;
}

/* The live file's bytes and mtime. */
typedef struct snap {
  char *bytes;
  size_t len;
  struct timespec mtime;
} snap;

static snap take(void) {
  snap s;
  struct stat st;
  assert_int_equal(stat(g_path, &st), 0);
  s.mtime = st.st_mtim;
  FILE *f = fopen(g_path, "rb");
  assert_non_null(f);
  s.len = (size_t)st.st_size;
  s.bytes = malloc(s.len);
  assert_int_equal(fread(s.bytes, 1, s.len, f), s.len);
  fclose(f);
  return s;
}

static void same(const snap *a, const snap *b) {
  assert_int_equal(a->len, b->len);
  assert_memory_equal(a->bytes, b->bytes, a->len);
  assert_int_equal(a->mtime.tv_sec, b->mtime.tv_sec);
  assert_int_equal(a->mtime.tv_nsec, b->mtime.tv_nsec);
}

typedef struct res {
  qp_status st;
  char err[512];
  qp_advice *a;
} res;

static res advise(const char *sql, bool writes) {
  res r;
  memset(&r, 0, sizeof r);
  qp_advise_options o;
  qp_advise_options_init(&o);
  o.analyze_writes = writes;
  r.st = qp_advise_dsn(g_dsn, sql, &o, &r.a, r.err, sizeof r.err);
  return r;
}

static void dump(const qp_advice *a) {
  for (size_t i = 0; i < qp_advice_index_count(a); i++) {
    const qp_advice_index *s = qp_advice_index_at(a, i);
    print_message("  index: %s [%s, %s] work %.0f -> %.0f (%s)\n", s->statement, s->rule,
                  qp_advice_verified_name(s->verified), s->cost_before, s->cost_after, s->reason);
  }
  for (size_t i = 0; i < qp_advice_finding_count(a); i++)
    print_message("  finding: %s: %s\n", qp_advice_finding_at(a, i)->rule,
                  qp_advice_finding_at(a, i)->message);
  for (size_t i = 0; i < qp_advice_note_count(a); i++)
    print_message("  note: %s\n", qp_advice_note_at(a, i));
}

static bool has_note(const qp_advice *a, const char *part) {
  for (size_t i = 0; i < qp_advice_note_count(a); i++)
    if (strstr(qp_advice_note_at(a, i), part) != NULL) return true;
  return false;
}

static const qp_advice_index *only(const res *r, const char *rule) {
  if (r->st != QP_OK) fail_msg("advise failed: %s", r->err);
  dump(r->a);
  assert_int_equal(qp_advice_index_count(r->a), 1);
  const qp_advice_index *s = qp_advice_index_at(r->a, 0);
  assert_string_equal(s->rule, rule);
  assert_int_equal(s->verified, QP_ADVICE_COPY);
  return s;
}

/* No qprof-advise.* directory is left in /tmp. */
static int leftovers(void) {
  DIR *d = opendir("/tmp");
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)) != NULL) n += strncmp(e->d_name, "qprof-advise.", 13) == 0;
  if (d) closedir(d);
  return n;
}

static void test_filter_on_copy(void **state) {
  (void)state;
  int before_dirs = leftovers();
  snap a = take();
  res r = advise("SELECT * FROM orders WHERE customer_id = 4242", false);
  const qp_advice_index *s = only(&r, "seq_scan_filter");
  assert_string_equal(s->columns, "customer_id");
  assert_string_equal(s->statement, "CREATE INDEX orders_customer_id_idx ON orders (customer_id)");
  /* from the catalog: orders_ref is the prefix of orders_weird_name */
  assert_true(has_note(r.a, "consider dropping orders_ref on orders: its keys are a prefix of "
                            "orders_weird_name"));
  assert_true(s->cost_after * 2 <= s->cost_before); /* VM steps, measured on the copy */
  assert_true(s->ms_before >= 0 && s->ms_after >= 0);
  assert_true(qp_advice_summary_get(r.a)->executed);
  qp_advice_free(r.a);
  /* a write runs on the copy only, with analyze_writes */
  r = advise("UPDATE orders SET x = x + 1 WHERE customer_id = 77", true);
  s = only(&r, "seq_scan_filter");
  assert_true(qp_advice_summary_get(r.a)->executed);
  qp_advice_free(r.a);
  snap b = take();
  same(&a, &b);
  free(a.bytes);
  free(b.bytes);
  assert_int_equal(leftovers(), before_dirs);
}

static void test_join_automatic_index(void **state) {
  (void)state;
  snap a = take();
  /* items is read whole for the join: an index on its join key */
  res r = advise("SELECT count(*) FROM tiny t JOIN items i ON i.order_id = t.id", false);
  const qp_advice_index *s = only(&r, "join_key");
  assert_string_equal(s->columns, "order_id");
  assert_string_equal(s->table, "items");
  qp_advice_free(r.a);
  /* here an index on items(order_id) would make SQLite scan orders
   * instead: measured, it does more work, so it is only a note */
  r = advise("SELECT o.id, i.qty FROM orders o JOIN items i ON i.order_id = o.id WHERE o.x = 3", false);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "an index on items (order_id) does not help enough"));
  qp_advice_free(r.a);
  /* a LEFT JOIN keeps orders outside: SQLite builds an automatic index on
   * items (order_id) for every run; a real one saves building it */
  r = advise("SELECT o.id, i.qty FROM orders o LEFT JOIN items i ON i.order_id = o.id "
             "WHERE o.x = 3", false);
  s = only(&r, "join_key");
  assert_string_equal(s->table, "items");
  assert_string_equal(s->columns, "order_id");
  assert_non_null(strstr(s->reason, "SQLite builds an automatic index on items"));
  assert_true(s->cost_after * 2 <= s->cost_before);
  qp_advice_free(r.a);
  snap b = take();
  same(&a, &b);
  free(a.bytes);
  free(b.bytes);
}

static void test_like_nocase(void **state) {
  (void)state;
  res r = advise("SELECT * FROM orders WHERE email LIKE 'User4242%'", false);
  const qp_advice_index *s = only(&r, "like_prefix");
  assert_string_equal(s->columns, "email COLLATE NOCASE");
  qp_advice_free(r.a);
}

static void test_no_advice(void **state) {
  (void)state;
  res r = advise("SELECT * FROM orders WHERE is_paid = 1", false);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "does not help: 95% of rows match"));
  qp_advice_free(r.a);
  r = advise("SELECT * FROM tiny WHERE v = 3", false);
  assert_int_equal(r.st, QP_OK);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "has 300 rows"));
  qp_advice_free(r.a);
  /* ref_code leads orders_weird_name: SQLite uses it; x alone is not
   * selective enough for the planner and the prefix rule keeps (ref_code)
   * out */
  r = advise("SELECT * FROM orders WHERE ref_code + 0 = 5 AND ref_code = 5", false);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  qp_advice_free(r.a);
}

static void test_refused(void **state) {
  (void)state;
  snap a = take();
  res r = advise("DROP TABLE orders", true);
  assert_int_equal(r.st, QP_REFUSED);
  r = advise("PRAGMA journal_mode = WAL", true);
  assert_int_equal(r.st, QP_REFUSED);
  /* a placeholder that compares with nothing has no representative value */
  r = advise("SELECT ? + 1 FROM orders", false);
  assert_int_equal(r.st, QP_UNSUPPORTED);
  assert_non_null(strstr(r.err, "placeholder 1"));
  r = advise("SELECT * FROM no_such WHERE a = 1", false);
  assert_int_equal(r.st, QP_QUERY);
  assert_non_null(strstr(r.err, "no such table"));
  /* the error code once ("... (SQLITE_ERROR) (SQLITE_ERROR)" before) */
  const char *code = strstr(r.err, "(SQLITE_ERROR)");
  assert_non_null(code);
  assert_null(strstr(code + 1, "(SQLITE_ERROR)"));
  snap b = take();
  same(&a, &b);
  free(a.bytes);
  free(b.bytes);
}

/* A normalized query (placeholders, no sample): values read from the
 * table on the copy, the most common one for an equality (a third of the
 * rows beyond it for a range, LIMIT 10), said in a note. */
static void test_placeholders(void **state) {
  (void)state;
  snap a = take();
  res r = advise("SELECT * FROM orders WHERE customer_id = ?", false);
  const qp_advice_index *s = only(&r, "seq_scan_filter");
  assert_string_equal(s->columns, "customer_id");
  assert_true(s->cost_after * 2 <= s->cost_before);
  assert_true(has_note(r.a, "placeholders bound to representative values read from the table on "
                            "the copy (the file has no sqlite_stat1 or sqlite_stat4: it was never "
                            "ANALYZEd)"));
  /* 20000 values, 10 rows each: the smallest of the most common */
  assert_true(has_note(r.a, "customer_id = 1 (the most common value: 10 of 200000 rows)"));
  assert_non_null(strstr(qp_advice_summary_get(r.a)->plan_source, "representative values"));
  assert_true(qp_advice_summary_get(r.a)->executed);
  qp_advice_free(r.a);
  /* a skewed column: its most common value matches 95% of rows, no index */
  r = advise("SELECT * FROM orders WHERE is_paid = ?", false);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "is_paid = 1 (the most common value: 190000 of 200000 rows)"));
  assert_true(has_note(r.a, "does not help: 95% of rows match"));
  qp_advice_free(r.a);
  /* IN lists take the most common values in turn; LIMIT a page of 10; a
   * range a third of the rows */
  r = advise("SELECT id FROM orders WHERE customer_id IN (?, ?) AND ref_code > ? LIMIT ?", false);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_true(has_note(r.a, "customer_id = 1 (the most common values, in turn"));
  assert_true(has_note(r.a, "customer_id = 10 (the most common values, in turn"));
  assert_true(has_note(r.a, "ref_code: 666 (a third of the rows above it"));
  assert_true(has_note(r.a, "LIMIT 10"));
  qp_advice_free(r.a);
  snap b = take();
  same(&a, &b);
  free(a.bytes);
  free(b.bytes);
}

/* A file ANALYZEd by this machine's SQLite (Debian's libsqlite3 is built
 * without STAT4: sqlite_stat1 only). Its values are still read from the
 * table, and the note says why and what sqlite_stat1 says of the column's
 * index; the copy's stat1 is read before the advisor's own ANALYZE. A
 * file ANALYZEd by a STAT4 build could not be made here (no such build
 * among Debian's packages): the samples' decoding and choice are tested
 * on their own below. */
static void test_placeholders_stat1(void **state) {
  (void)state;
  char path[300], dsn[320];
  snprintf(path, sizeof path, "%s/stat1.db", qpt_tempdir());
  snprintf(dsn, sizeof dsn, "sqlite://%s", path);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(g_path, &db), SQLITE_OK);
  char sql[400];
  snprintf(sql, sizeof sql, "VACUUM INTO '%s'", path);
  assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "ANALYZE", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = "
                                          "'sqlite_stat4'", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  bool stat4 = sqlite3_column_int(st, 0) > 0;
  sqlite3_finalize(st);
  sqlite3_close(db);
  if (stat4) { /* an SQLite with STAT4 after all: the test below is about stat1 only */
    print_message("this SQLite writes sqlite_stat4: the stat1-only case is not this build's\n");
    return;
  }
  qp_advise_options o;
  qp_advise_options_init(&o);
  qp_advice *a = NULL;
  char err[512];
  assert_int_equal(qp_advise_dsn(dsn, "SELECT id FROM orders WHERE ref_code = ? AND x = ?", &o, &a,
                                 err, sizeof err), QP_OK);
  dump(a);
  assert_true(has_note(a, "placeholders bound to representative values read from the table on "
                          "the copy (the file has sqlite_stat1 only, which holds no values; no "
                          "sqlite_stat4"));
  /* ref_code leads two indexes: the first sqlite_stat1 row of them is named */
  assert_true(has_note(a, "ref_code = 0 (the most common value: 200 of 200000 rows) "
                          "[sqlite_stat1 of index orders_"));
  assert_true(has_note(a, ": 200000 rows, about 200 per value]"));
  /* x leads no index: nothing from sqlite_stat1 */
  assert_true(has_note(a, "x = 0 (the most common value: 2000 of 200000 rows)"));
  assert_false(has_note(a, "x = 0 (the most common value: 2000 of 200000 rows) [sqlite_stat1"));
  qp_advice_free(a);
}

/* The first field of a record, in the file format's encoding (records
 * written here by hand from the documented format, not by SQLite). */
static void test_record_literal(void **state) {
  (void)state;
  char out[128];
  static const struct {
    unsigned char rec[16];
    size_t len;
    const char *want; /* NULL: refused */
  } cases[] = {
      {{0x02, 0x01, 0x2A}, 3, "42"},
      {{0x02, 0x02, 0xFF, 0x85}, 4, "-123"},
      {{0x02, 0x03, 0x01, 0x00, 0x00}, 5, "65536"},
      {{0x02, 0x04, 0x80, 0x00, 0x00, 0x00}, 6, "-2147483648"},
      {{0x02, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}, 8, "4294967296"},
      {{0x02, 0x06, 0x80, 0, 0, 0, 0, 0, 0, 0}, 10, "-9223372036854775808"},
      {{0x02, 0x08}, 2, "0"},
      {{0x02, 0x09}, 2, "1"},
      {{0x02, 0x07, 0x40, 0x04, 0, 0, 0, 0, 0, 0}, 10, "2.5"},
      {{0x02, 0x07, 0x40, 0x00, 0, 0, 0, 0, 0, 0}, 10, "2.0"},
      {{0x02, 0x07, 0x7F, 0xF0, 0, 0, 0, 0, 0, 0}, 10, NULL}, /* infinity */
      {{0x02, 0x15, 'i', 't', '\'', 's'}, 6, "'it''s'"},
      {{0x02, 0x10, 0xAB, 0xCD}, 4, "X'ABCD'"},
      {{0x02, 0x0D}, 2, "''"},
      {{0x03, 0x01, 0x09, 0x07}, 4, "7"},          /* an index key and its rowid */
      {{0x02, 0x00}, 2, NULL},                     /* NULL */
      {{0x02, 0x0A}, 2, NULL},                     /* reserved */
      {{0x02, 0x15, 'a', 'b'}, 4, NULL},           /* text past the end */
      {{0x02, 0x06, 0x01, 0x02}, 4, NULL},         /* integer past the end */
      {{0x05, 0x01}, 2, NULL},                     /* header past the end */
      {{0x00}, 1, NULL},
      {{0x02, 0x81}, 2, NULL},                     /* a varint cut short */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    bool ok = qp__adv_record_literal(cases[i].rec, cases[i].len, out, sizeof out);
    if (cases[i].want == NULL) {
      if (ok) fail_msg("case %zu: read %s, should be refused", i, out);
    } else {
      if (!ok) fail_msg("case %zu: refused, want %s", i, cases[i].want);
      assert_string_equal(out, cases[i].want);
    }
  }
  /* a two-byte serial type: 60 characters of text */
  unsigned char rec[64] = {0x03, 0x81, 0x05};
  memset(rec + 3, 'a', 60);
  assert_true(qp__adv_record_literal(rec, 63, out, sizeof out));
  assert_int_equal(strlen(out), 62);
  /* too long for the buffer: refused, not cut */
  assert_false(qp__adv_record_literal(rec, 63, out, 40));
}

/* Which sample a placeholder gets, from the counts of the leading column. */
static void test_stat4_pick(void **state) {
  (void)state;
  /* samples 1 and 2 share their leading value (same nlt and neq) */
  const int64_t neq[] = {5, 10, 10, 3}, nlt[] = {0, 5, 5, 15};
  assert_int_equal(qp__adv_stat4_pick(neq, nlt, 4, QP__ADV_MCV, 0, 20), 1);
  assert_int_equal(qp__adv_stat4_pick(neq, nlt, 4, QP__ADV_MCV, 1, 20), 0);
  assert_int_equal(qp__adv_stat4_pick(neq, nlt, 4, QP__ADV_MCV, 2, 20), 3);
  assert_int_equal(qp__adv_stat4_pick(neq, nlt, 4, QP__ADV_MCV, 3, 20), -1);
  assert_int_equal(qp__adv_stat4_pick(neq, nlt, 4, QP__ADV_LOW_THIRD, 0, 20), 1);
  assert_int_equal(qp__adv_stat4_pick(neq, nlt, 4, QP__ADV_HIGH_THIRD, 0, 20), 3);
  assert_int_equal(qp__adv_stat4_pick(neq, nlt, 0, QP__ADV_MCV, 0, 20), -1);
  /* equal counts: the smaller value (the lower nlt) first */
  const int64_t neq2[] = {4, 4}, nlt2[] = {8, 2};
  assert_int_equal(qp__adv_stat4_pick(neq2, nlt2, 2, QP__ADV_MCV, 0, 20), 1);
  assert_int_equal(qp__adv_stat4_pick(neq2, nlt2, 2, QP__ADV_MCV, 1, 20), 0);
}

/* lower(email) = ...: an index on the expression (SQLite matches it with or
 * without the table's alias). */
static void test_expression(void **state) {
  (void)state;
  res r = advise("SELECT * FROM orders WHERE lower(email) = 'user4242@x.org'", false);
  const qp_advice_index *s = only(&r, "expression");
  assert_string_equal(s->columns, "lower(email)");
  assert_string_equal(s->statement, "CREATE INDEX orders_loweremail_idx ON orders (lower(email))");
  assert_true(s->cost_after * 2 <= s->cost_before);
  qp_advice_free(r.a);
  r = advise("SELECT o.id FROM orders o WHERE lower(o.email) = ?", false);
  s = only(&r, "expression");
  assert_string_equal(s->columns, "lower(email)");
  qp_advice_free(r.a);
  /* an expression most rows match: a note, no index */
  r = advise("SELECT * FROM orders WHERE abs(is_paid) = 1", false);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  assert_int_equal(qp_advice_index_count(r.a), 0);
  assert_true(has_note(r.a, "does not help: 95% of rows match"));
  qp_advice_free(r.a);
}

/* ORDER BY ... LIMIT sorted into a temporary b-tree: equality columns, then
 * the sort keys with their direction, on one table or on the outer table
 * of a join; without LIMIT the filter rule. */
static void test_top_n(void **state) {
  (void)state;
  res r = advise("SELECT id, email FROM orders ORDER BY customer_id DESC LIMIT 10", false);
  const qp_advice_index *s = only(&r, "top_n");
  assert_string_equal(s->columns, "customer_id DESC");
  assert_true(s->cost_after * 2 <= s->cost_before);
  qp_advice_free(r.a);
  /* x = 3 keeps 1%: both keys, and the two-column index beats each alone */
  r = advise("SELECT id FROM orders WHERE x = 3 ORDER BY customer_id DESC LIMIT 5", false);
  s = only(&r, "top_n");
  assert_string_equal(s->columns, "x, customer_id DESC");
  assert_int_equal(s->nkeys, 2);
  assert_string_equal(s->statement,
                      "CREATE INDEX orders_x_customer_id_idx ON orders (x, customer_id DESC)");
  qp_advice_free(r.a);
  /* the same from a normalized query */
  r = advise("SELECT id FROM orders WHERE x = ? ORDER BY customer_id DESC LIMIT ?", false);
  s = only(&r, "top_n");
  assert_string_equal(s->columns, "x, customer_id DESC");
  qp_advice_free(r.a);
  /* a join: items is the outer loop (orders is searched by its rowid for
   * each item) and the ORDER BY is on it: read items in qty order and stop
   * at 10 joined rows */
  r = advise("SELECT i.qty, o.email FROM items i JOIN orders o ON o.id = i.order_id "
             "ORDER BY i.qty DESC LIMIT 10", false);
  s = only(&r, "top_n");
  assert_string_equal(s->table, "items");
  assert_string_equal(s->columns, "qty DESC");
  assert_non_null(strstr(s->reason, "the outer table of the join"));
  assert_true(s->cost_after * 2 <= s->cost_before);
  qp_advice_free(r.a);
  /* unqualified, the same: qty is only items' */
  r = advise("SELECT qty, email FROM items i JOIN orders o ON o.id = i.order_id "
             "ORDER BY qty DESC LIMIT 10", false);
  s = only(&r, "top_n");
  assert_string_equal(s->columns, "qty DESC");
  qp_advice_free(r.a);
  /* the ORDER BY on the inner table (orders, searched per item): no order
   * an index could give the join, no top_n */
  r = advise("SELECT o.id, i.qty FROM orders o JOIN items i ON i.order_id = o.id "
             "ORDER BY o.customer_id DESC LIMIT 10", false);
  assert_int_equal(r.st, QP_OK);
  dump(r.a);
  for (size_t i = 0; i < qp_advice_index_count(r.a); i++)
    assert_string_not_equal(qp_advice_index_at(r.a, i)->rule, "top_n");
  qp_advice_free(r.a);
  /* no LIMIT: every matching row is returned, the filter decides */
  r = advise("SELECT id FROM orders WHERE x = 3 ORDER BY customer_id DESC", false);
  s = only(&r, "seq_scan_filter");
  assert_string_equal(s->columns, "x");
  qp_advice_free(r.a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_filter_on_copy), cmocka_unit_test(test_join_automatic_index),
      cmocka_unit_test(test_like_nocase),    cmocka_unit_test(test_no_advice),
      cmocka_unit_test(test_refused),        cmocka_unit_test(test_placeholders),
      cmocka_unit_test(test_expression),     cmocka_unit_test(test_top_n),
      cmocka_unit_test(test_placeholders_stat1), cmocka_unit_test(test_record_literal),
      cmocka_unit_test(test_stat4_pick),
  };
  int rc = cmocka_run_group_tests(tests, setup, NULL);
  qpt_tempdirs_remove(NULL);
  return rc;
}
