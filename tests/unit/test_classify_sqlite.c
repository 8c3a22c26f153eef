/*
 * The classifier against a generated SQLite corpus. A seeded generator writes
 * statements from templates (SELECT with joins, subqueries, CTEs and nested
 * calls; INSERT, REPLACE, UPDATE ... FROM, DELETE; transactions and
 * savepoints; PRAGMA, ATTACH, temporary objects; DDL; catalog reads) and
 * knows what each does. Every statement must:
 *   - be valid SQL: SQLite itself prepares it against the corpus schema;
 *   - classify exactly as the generator says (every field, the golden-file
 *     line of classify_describe.h);
 *   - agree with SQLite's own parser, as its authorizer reports it while
 *     preparing: the tables read and written, the functions called, the
 *     transaction verb, session changes and temporary objects.
 */
#include "testutil.h"

#include "classify_describe.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NAMES 16

typedef struct names {
  char v[NAMES][QP_STMT_NAME_MAX];
  size_t n;
} names;

static void names_add(names *s, const char *name) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], name) == 0) return;
  if (s->n < NAMES) snprintf(s->v[s->n++], QP_STMT_NAME_MAX, "%s", name);
}

static bool names_has(const names *s, const char *name) {
  for (size_t i = 0; i < s->n; i++)
    if (strcasecmp(s->v[i], name) == 0) return true;
  return false;
}

/* the table part of a classifier name ("main.t2" -> "t2") */
static const char *last_part(const char *name) {
  const char *dot = strrchr(name, '.');
  return dot ? dot + 1 : name;
}

/* ---- the generator ------------------------------------------------------- */

typedef struct gen {
  uint64_t rng;
  char sql[2048];
  size_t n;
  /* what the statement does, as the generator wrote it */
  qp_stmt_info want;
  names reads, writes, funcs;
  int serial;
  const char *colq; /* how columns are qualified ("x."), NULL: no columns here */
} gen;

static uint32_t pick(gen *g, uint32_t n) {
  g->rng = g->rng * 6364136223846793005ULL + 1442695040888963407ULL;
  return (uint32_t)(g->rng >> 33) % n;
}

static void put(gen *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(gen *g, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(g->sql + g->n, sizeof g->sql - g->n, fmt, ap);
  va_end(ap);
  if (k > 0) g->n += (size_t)k;
  assert_true(g->n < sizeof g->sql);
}

/* A table as written, and the name the classifier lists for it. */
static const char *const tables_sql[] = {"t1", "T2", "main.t3", "[Odd Name]", "\"quoted\""};
static const char *const tables_name[] = {"t1", "t2", "main.t3", "Odd Name", "quoted"};
#define NTABLES 5

static int table(gen *g, names *list) {
  int i = (int)pick(g, NTABLES);
  put(g, "%s", tables_sql[i]);
  names_add(list, tables_name[i]);
  return i;
}

/* Functions the classifier lists (SQLite's trim and coalesce are syntax to it). */
static const char *const fns[] = {"abs", "lower", "upper", "length", "hex", "ifnull", "instr",
                                  "substr", "replace", "round", "max", "min", "typeof", "quote"};
static const int fn_args[] = {1, 1, 1, 1, 1, 2, 2, 2, 3, 1, 2, 2, 1, 1};

static void expr(gen *g, int depth) {
  uint32_t k = pick(g, depth > 1 ? 3 : 6);
  if (k == 0 && g->colq != NULL) {
    put(g, "%s%c", g->colq, "abc"[pick(g, 3)]);
  } else if (k == 0) {
    put(g, "NULL");
  } else if (k == 1) {
    put(g, "%u", pick(g, 100));
  } else if (k == 2) {
    put(g, "'s%u'", pick(g, 10));
  } else if (k == 3 && pick(g, 4) == 0) {
    /* volatile */
    if (pick(g, 2)) {
      put(g, "random()");
      names_add(&g->funcs, "random");
    } else {
      put(g, "datetime('now')");
      names_add(&g->funcs, "datetime");
    }
    g->want.volatile_fn = true;
  } else {
    int f = (int)pick(g, sizeof fns / sizeof fns[0]);
    put(g, "%s(", fns[f]);
    names_add(&g->funcs, fns[f]);
    for (int a = 0; a < fn_args[f]; a++) {
      if (a) put(g, ", ");
      expr(g, depth + 1);
    }
    put(g, ")");
  }
}

static void where(gen *g) {
  switch (pick(g, 4)) {
  case 0: break;
  case 1: put(g, " WHERE %sa > %u", g->colq, pick(g, 10)); break;
  case 2:
    put(g, " WHERE %sb IN (SELECT b FROM ", g->colq);
    table(g, &g->reads);
    put(g, ")");
    break;
  default:
    put(g, " WHERE EXISTS (SELECT 1 FROM ");
    table(g, &g->reads);
    put(g, " WHERE c = ");
    expr(g, 1);
    put(g, ")");
    break;
  }
}

static void select_body(gen *g) {
  put(g, "SELECT %s", pick(g, 4) == 0 ? "DISTINCT " : "");
  g->colq = "x.";
  int ncols = 1 + (int)pick(g, 3);
  for (int i = 0; i < ncols; i++) {
    if (i) put(g, ", ");
    if (pick(g, 5) == 0) {
      put(g, "count(*)");
      names_add(&g->funcs, "count");
    } else {
      expr(g, 0);
    }
  }
  put(g, " FROM ");
  table(g, &g->reads);
  put(g, " AS x");
  if (pick(g, 3) == 0) {
    put(g, " JOIN ");
    table(g, &g->reads);
    put(g, " AS y ON y.a = x.a");
  }
  where(g);
  if (pick(g, 3) == 0) put(g, " ORDER BY 1");
  if (pick(g, 3) == 0) put(g, " LIMIT %u", 1 + pick(g, 9));
}

static void gen_dml(gen *g, uint32_t k) {
  qp_stmt_info *w = &g->want;
  switch (k) {
  case 0: /* SELECT */
    w->kind = QP_STMT_SELECT;
    select_body(g);
    break;
  case 1: /* WITH */
    w->kind = QP_STMT_SELECT;
    put(g, "WITH cte AS (SELECT a, b, c FROM ");
    table(g, &g->reads);
    put(g, ") SELECT cte.a, ");
    g->colq = "cte.";
    expr(g, 0);
    put(g, " FROM cte");
    if (pick(g, 2)) {
      put(g, " JOIN ");
      table(g, &g->reads);
      put(g, " AS y ON y.b = cte.b");
    }
    break;
  case 2: /* INSERT VALUES, REPLACE */
    w->kind = QP_STMT_INSERT;
    put(g, "%s INTO ", (const char *[]){"INSERT", "INSERT OR IGNORE", "REPLACE", "INSERT OR REPLACE"}[pick(g, 4)]);
    table(g, &g->writes);
    g->colq = NULL;
    put(g, " (a, b) VALUES (");
    expr(g, 0);
    put(g, ", ");
    expr(g, 0);
    put(g, ")");
    break;
  case 3: /* INSERT SELECT */
    w->kind = QP_STMT_INSERT;
    put(g, "INSERT INTO ");
    table(g, &g->writes);
    put(g, " (a, b) ");
    {
      /* a two-column SELECT */
      g->colq = "";
      put(g, "SELECT a, ");
      expr(g, 0);
      put(g, " FROM ");
      table(g, &g->reads);
      where(g);
    }
    break;
  case 4: /* UPDATE */
    w->kind = QP_STMT_UPDATE;
    put(g, "UPDATE %s", pick(g, 3) == 0 ? "OR IGNORE " : "");
    g->colq = "";
    table(g, &g->writes);
    put(g, " SET a = ");
    expr(g, 0);
    if (pick(g, 2)) {
      put(g, ", b = (SELECT max(b) FROM ");
      names_add(&g->funcs, "max");
      table(g, &g->reads);
      put(g, ")");
    }
    where(g);
    break;
  case 5: { /* UPDATE ... FROM */
    w->kind = QP_STMT_UPDATE;
    put(g, "UPDATE ");
    int t = table(g, &g->writes);
    put(g, " SET a = x.b FROM ");
    table(g, &g->reads);
    put(g, " AS x WHERE x.c = %s.c", tables_sql[t]);
    break;
  }
  default: /* DELETE */
    w->kind = QP_STMT_DELETE;
    put(g, "DELETE FROM ");
    g->colq = "";
    table(g, &g->writes);
    where(g);
    break;
  }
  w->read_only = w->kind == QP_STMT_SELECT;
}

static void gen_other(gen *g, uint32_t k) {
  qp_stmt_info *w = &g->want;
  static const char *const begins[] = {"BEGIN", "BEGIN DEFERRED", "BEGIN IMMEDIATE TRANSACTION",
                                       "BEGIN EXCLUSIVE"};
  switch (k) {
  case 0: w->kind = QP_STMT_TCL; w->tcl = QP_TCL_BEGIN; put(g, "%s", begins[pick(g, 4)]); break;
  case 1:
    w->kind = QP_STMT_TCL;
    w->tcl = QP_TCL_COMMIT;
    put(g, "%s", (const char *[]){"COMMIT", "END", "COMMIT TRANSACTION", "END TRANSACTION"}[pick(g, 4)]);
    break;
  case 2: w->kind = QP_STMT_TCL; w->tcl = QP_TCL_ROLLBACK; put(g, "ROLLBACK"); break;
  case 3: w->kind = QP_STMT_TCL; w->tcl = QP_TCL_SAVEPOINT; put(g, "SAVEPOINT sp%u", pick(g, 5)); break;
  case 4:
    w->kind = QP_STMT_TCL;
    w->tcl = QP_TCL_RELEASE;
    put(g, "RELEASE %ssp%u", pick(g, 2) ? "SAVEPOINT " : "", pick(g, 5));
    break;
  case 5:
    w->kind = QP_STMT_TCL;
    w->tcl = QP_TCL_ROLLBACK_TO;
    put(g, "ROLLBACK %sTO %ssp%u", pick(g, 2) ? "TRANSACTION " : "", pick(g, 2) ? "SAVEPOINT " : "",
        pick(g, 5));
    break;
  case 6:
    w->kind = QP_STMT_SESSION;
    w->changes_session = true;
    put(g, "PRAGMA %s", (const char *[]){"cache_size = 100", "foreign_keys = ON", "journal_mode",
                                        "user_version = 3"}[pick(g, 4)]);
    break;
  case 7:
    w->kind = QP_STMT_SESSION;
    w->changes_session = true;
    put(g, "ATTACH DATABASE ':memory:' AS aux%u", pick(g, 5));
    break;
  case 8: /* temporary objects */
    w->kind = QP_STMT_DDL;
    w->ddl = QP_DDL_CREATE;
    w->changes_session = w->creates_temp = true;
    if (pick(g, 2)) {
      put(g, "CREATE %s TABLE tmp%d (a, b)", pick(g, 2) ? "TEMP" : "TEMPORARY", g->serial);
      char name[32];
      snprintf(name, sizeof name, "tmp%d", g->serial);
      names_add(&g->writes, name);
    } else {
      put(g, "CREATE TEMP VIEW tv%d AS SELECT a FROM ", g->serial);
      char name[32];
      snprintf(name, sizeof name, "tv%d", g->serial);
      names_add(&g->writes, name);
      table(g, &g->reads);
    }
    break;
  case 9: { /* DDL on tables */
    w->kind = QP_STMT_DDL;
    uint32_t d = pick(g, 4);
    char name[32];
    if (d == 0) {
      w->ddl = QP_DDL_CREATE;
      snprintf(name, sizeof name, "new%d", g->serial);
      put(g, "CREATE TABLE %s (a INTEGER PRIMARY KEY, b TEXT)", name);
      names_add(&g->writes, name);
    } else if (d == 1) {
      w->ddl = QP_DDL_CREATE;
      /* an index's table cannot be schema-qualified */
      static const int plain[] = {0, 1, 3, 4};
      int t = plain[pick(g, 4)];
      put(g, "CREATE INDEX IF NOT EXISTS ix%d ON %s", g->serial, tables_sql[t]);
      names_add(&g->writes, tables_name[t]);
      put(g, " (a)");
    } else if (d == 2) {
      w->ddl = QP_DDL_ALTER;
      put(g, "ALTER TABLE ");
      table(g, &g->writes);
      put(g, " ADD COLUMN z%d", g->serial);
    } else {
      w->ddl = QP_DDL_DROP;
      put(g, "DROP TABLE IF EXISTS ");
      table(g, &g->writes);
    }
    break;
  }
  default: /* the catalog */
    w->kind = QP_STMT_SELECT;
    w->read_only = true;
    w->system_catalog = true;
    if (pick(g, 2)) {
      const char *cat = (const char *[]){"sqlite_master", "sqlite_schema", "main.sqlite_master"}[pick(g, 3)];
      put(g, "SELECT name FROM %s WHERE type = 'table'", cat);
      names_add(&g->reads, cat);
    } else {
      put(g, "SELECT * FROM pragma_table_info('t1')");
      names_add(&g->funcs, "pragma_table_info");
    }
    break;
  }
}

static void generate(gen *g) {
  g->n = 0;
  g->sql[0] = '\0';
  memset(&g->want, 0, sizeof g->want);
  g->want.size = sizeof g->want;
  g->reads.n = g->writes.n = g->funcs.n = 0;
  g->serial++;
  g->colq = "";
  uint32_t k = pick(g, 17);
  if (k < 7) gen_dml(g, k);
  else gen_other(g, k - 7);
}

/* ---- SQLite's own view: the authorizer while preparing -------------------- */

typedef struct seen {
  names reads, writes, funcs;
  int transaction; /* SQLITE_TRANSACTION: 1 BEGIN, 2 COMMIT, 3 ROLLBACK */
  int savepoint;   /* SQLITE_SAVEPOINT: 1 BEGIN, 2 RELEASE, 3 ROLLBACK */
  bool session, temp;
} seen;

static int verb3(const char *a) {
  if (a == NULL) return 0;
  if (strcmp(a, "BEGIN") == 0) return 1;
  if (strcmp(a, "COMMIT") == 0 || strcmp(a, "RELEASE") == 0) return 2;
  if (strcmp(a, "ROLLBACK") == 0) return 3;
  return 0;
}

static int authorizer(void *ud, int code, const char *a3, const char *a4, const char *db,
                      const char *trigger) {
  (void)db;
  (void)trigger;
  seen *s = ud;
  switch (code) {
  case SQLITE_READ:
    if (a3 && strncmp(a3, "sqlite_", 7) != 0) names_add(&s->reads, a3);
    if (a3 && strncmp(a3, "sqlite_", 7) == 0) names_add(&s->reads, "sqlite_master");
    break;
  case SQLITE_INSERT: case SQLITE_UPDATE: case SQLITE_DELETE:
    if (a3 && strncmp(a3, "sqlite_", 7) != 0) names_add(&s->writes, a3);
    break;
  case SQLITE_FUNCTION: if (a4) names_add(&s->funcs, a4); break;
  case SQLITE_TRANSACTION: s->transaction = verb3(a3); break;
  case SQLITE_SAVEPOINT: s->savepoint = verb3(a3); break;
  case SQLITE_PRAGMA: case SQLITE_ATTACH: case SQLITE_DETACH: s->session = true; break;
  case SQLITE_CREATE_TEMP_TABLE: case SQLITE_CREATE_TEMP_VIEW: case SQLITE_CREATE_TEMP_INDEX:
  case SQLITE_CREATE_TEMP_TRIGGER:
    s->temp = s->session = true;
    break;
  default: break;
  }
  return SQLITE_OK;
}

static const char *const schema =
    "CREATE TABLE t1 (a, b, c); CREATE TABLE t2 (a, b, c); CREATE TABLE t3 (a, b, c);"
    "CREATE TABLE [Odd Name] (a, b, c); CREATE TABLE \"quoted\" (a, b, c);";

static void test_generated_corpus(void **state) {
  (void)state;
  sqlite3 *db = NULL;
  assert_int_equal(sqlite3_open(":memory:", &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, schema, NULL, NULL, NULL), SQLITE_OK);
  seen s;
  assert_int_equal(sqlite3_set_authorizer(db, authorizer, &s), SQLITE_OK);
  gen g;
  memset(&g, 0, sizeof g);
  g.rng = 20261202;
  int failures = 0, n = 20000, fn_calls = 0, by_kind[QP_STMT_COPY + 1] = {0};
  size_t auth_reads = 0, auth_writes = 0, auth_calls = 0;
  for (int i = 0; i < n && failures < 10; i++) {
    generate(&g);
    /* the generator's own expectation, in the golden-file format */
    qp_stmt_info *w = &g.want;
    w->nread = g.reads.n;
    w->nwrite = g.writes.n;
    w->nfuncs = g.funcs.n;
    memcpy(w->read, g.reads.v, sizeof w->read);
    memcpy(w->write, g.writes.v, sizeof w->write);
    memcpy(w->funcs, g.funcs.v, sizeof w->funcs);
    char want[8192], got[8192];
    describe(w, want, sizeof want);
    static qp_stmt_info info;
    memset(&info, 0x5a, sizeof info);
    info.size = sizeof info;
    assert_int_equal(qp_sql_classify(QP_DIALECT_SQLITE, g.sql, g.n, &info), QP_OK);
    assert_true(sane(&info));
    describe(&info, got, sizeof got);
    by_kind[info.kind]++;
    fn_calls += (int)info.nfuncs;
    if (strcmp(want, got) != 0) {
      printf("generated %d: %s\n  want %s\n  got  %s\n", i, g.sql, want, got);
      failures++;
      continue;
    }
    /* valid SQL, and SQLite's parser agrees */
    memset(&s, 0, sizeof s);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, g.sql, (int)g.n, &st, NULL);
    sqlite3_finalize(st);
    if (rc != SQLITE_OK) {
      printf("generated %d is not valid SQLite: %s\n  %s\n", i, g.sql, sqlite3_errmsg(db));
      failures++;
      continue;
    }
    auth_reads += s.reads.n;
    auth_writes += s.writes.n;
    auth_calls += s.funcs.n;
    char why[256] = "";
    for (size_t k = 0; k < info.nwrite; k++)
      if (info.kind != QP_STMT_DDL && !names_has(&s.writes, last_part(info.write[k])))
        snprintf(why, sizeof why, "SQLite does not write %s", info.write[k]);
    for (size_t k = 0; k < s.writes.n; k++) {
      bool listed = false;
      for (size_t j = 0; j < info.nwrite; j++)
        listed = listed || strcasecmp(last_part(info.write[j]), s.writes.v[k]) == 0;
      if (!listed) snprintf(why, sizeof why, "SQLite writes %s too", s.writes.v[k]);
    }
    for (size_t k = 0; k < info.nread; k++)
      if (info.kind != QP_STMT_DDL && !names_has(&s.reads, last_part(info.read[k])) &&
          !(info.system_catalog && names_has(&s.reads, "sqlite_master")))
        snprintf(why, sizeof why, "SQLite does not read %s", info.read[k]);
    for (size_t k = 0; k < s.reads.n; k++) {
      bool listed = false;
      for (size_t j = 0; j < info.nread; j++)
        listed = listed || strcasecmp(last_part(info.read[j]), s.reads.v[k]) == 0;
      for (size_t j = 0; j < info.nwrite; j++)
        listed = listed || strcasecmp(last_part(info.write[j]), s.reads.v[k]) == 0;
      listed = listed || (info.system_catalog && strcmp(s.reads.v[k], "sqlite_master") == 0);
      if (!listed && info.kind != QP_STMT_DDL)
        snprintf(why, sizeof why, "SQLite reads %s too", s.reads.v[k]);
    }
    if (info.kind != QP_STMT_DDL) {
      for (size_t k = 0; k < info.nfuncs; k++)
        if (!names_has(&s.funcs, info.funcs[k]))
          snprintf(why, sizeof why, "SQLite does not call %s", info.funcs[k]);
      for (size_t k = 0; k < s.funcs.n; k++)
        if (!names_has(&g.funcs, s.funcs.v[k])) snprintf(why, sizeof why, "SQLite calls %s too", s.funcs.v[k]);
    }
    int tx = info.tcl == QP_TCL_BEGIN ? 1 : info.tcl == QP_TCL_COMMIT ? 2 : info.tcl == QP_TCL_ROLLBACK ? 3 : 0;
    int sp = info.tcl == QP_TCL_SAVEPOINT ? 1 : info.tcl == QP_TCL_RELEASE ? 2 : info.tcl == QP_TCL_ROLLBACK_TO ? 3 : 0;
    if (tx != s.transaction || sp != s.savepoint) snprintf(why, sizeof why, "transaction verb differs");
    if (info.changes_session != s.session) snprintf(why, sizeof why, "session change differs");
    if (info.creates_temp != s.temp) snprintf(why, sizeof why, "temporary object differs");
    if (why[0]) {
      printf("generated %d: %s\n  %s\n", i, g.sql, why);
      failures++;
    }
  }
  printf("%d generated statements: %d select, %d insert, %d update, %d delete, %d ddl, %d tcl, "
         "%d session; %d calls listed; SQLite's authorizer saw %zu reads, %zu writes, %zu calls\n",
         n, by_kind[QP_STMT_SELECT], by_kind[QP_STMT_INSERT], by_kind[QP_STMT_UPDATE],
         by_kind[QP_STMT_DELETE], by_kind[QP_STMT_DDL], by_kind[QP_STMT_TCL], by_kind[QP_STMT_SESSION],
         fn_calls, auth_reads, auth_writes, auth_calls);
  sqlite3_close(db);
  assert_int_equal(failures, 0);
  assert_true(auth_reads > 1000 && auth_writes > 1000 && auth_calls > 1000);
  /* every template was reached */
  for (int k = QP_STMT_SELECT; k <= QP_STMT_SESSION; k++) assert_true(by_kind[k] > 100);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_generated_corpus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
