/*
 * The statement classifier: kind, read_only, volatile_fn and the tables
 * read and written, on the constructs a SELECT cache and an index advisor
 * depend on (CTEs, subqueries, joins, schema-qualified and quoted names,
 * INSERT ... SELECT, UPDATE ... FROM, DELETE ... USING, data-modifying CTEs,
 * FOR UPDATE, SELECT INTO).
 */
#include "testutil.h"

#include "classify_describe.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

typedef struct ccase {
  int lite;
  const char *sql;
  qp_stmt_kind kind;
  int read_only, volatile_fn;
  const char *reads, *writes; /* comma-separated, in order of appearance */
} ccase;

static void join(char (*names)[QP_STMT_TABLE_NAME_MAX], size_t n, char *out) {
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(out, ",");
    strcat(out, names[i]);
  }
}


static void classify_line(qp_dialect d, const char *sql, size_t len, char *out, size_t cap) {
  qp_stmt_info info;
  memset(&info, 0x5a, sizeof info);
  info.size = sizeof info;
  assert_int_equal(qp_sql_classify(d, sql, len, &info), QP_OK);
  describe(&info, out, cap);
}

static const ccase cases[] = {
    /* kinds */
    {0, "SELECT 1", QP_STMT_SELECT, 1, 0, "", ""},
    {0, "select a from t", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "VALUES (1), (2)", QP_STMT_SELECT, 1, 0, "", ""},
    {0, "TABLE accounts", QP_STMT_SELECT, 1, 0, "accounts", ""},
    {0, "SHOW search_path", QP_STMT_SELECT, 1, 0, "", ""},
    {0, "insert into t (a) values (1)", QP_STMT_INSERT, 0, 0, "", "t"},
    {0, "update t set a = 1", QP_STMT_UPDATE, 0, 0, "", "t"},
    {0, "delete from t where a = 1", QP_STMT_DELETE, 0, 0, "", "t"},
    {0, "merge into t using s on t.id = s.id when matched then update set a = s.a when not matched then insert (id) values (s.id)",
     QP_STMT_MERGE, 0, 0, "s", "t"},
    {0, "create table t (id int references u (id))", QP_STMT_DDL, 0, 0, "", "t"},
    {0, "create table if not exists s.t (id int)", QP_STMT_DDL, 0, 0, "", "s.t"},
    {0, "create temp table t as select * from u", QP_STMT_DDL, 0, 0, "u", "t"},
    {0, "create materialized view v as select a from t", QP_STMT_DDL, 0, 0, "t", "v"},
    {0, "create unique index concurrently if not exists i on only public.t using btree (a)", QP_STMT_DDL, 0, 0, "", "public.t"},
    {0, "alter table if exists only t add column b int", QP_STMT_DDL, 0, 0, "", "t"},
    {0, "drop table if exists a, s.b cascade", QP_STMT_DDL, 0, 0, "", "a,s.b"},
    {0, "drop index i", QP_STMT_DDL, 0, 0, "", ""},
    {0, "truncate table a, b restart identity", QP_STMT_DDL, 0, 0, "", "a,b"},
    {0, "truncate only a", QP_STMT_DDL, 0, 0, "", "a"},
    {0, "refresh materialized view concurrently mv", QP_STMT_DDL, 0, 0, "", "mv"},
    {0, "grant select on t to bob", QP_STMT_DDL, 0, 0, "", ""},
    {0, "vacuum analyze t", QP_STMT_DDL, 0, 0, "", ""},
    {0, "BEGIN", QP_STMT_TCL, 0, 0, "", ""},
    {0, "start transaction isolation level serializable", QP_STMT_TCL, 0, 0, "", ""},
    {0, "commit", QP_STMT_TCL, 0, 0, "", ""},
    {0, "rollback to savepoint s", QP_STMT_TCL, 0, 0, "", ""},
    {0, "savepoint s", QP_STMT_TCL, 0, 0, "", ""},
    {0, "release savepoint s", QP_STMT_TCL, 0, 0, "", ""},
    {0, "prepare transaction 'x'", QP_STMT_TCL, 0, 0, "", ""},
    {0, "commit prepared 'x'", QP_STMT_TCL, 0, 0, "", ""},
    {0, "set search_path to a, b", QP_STMT_SESSION, 0, 0, "", ""},
    {0, "reset all", QP_STMT_SESSION, 0, 0, "", ""},
    {0, "prepare q as select * from t where id = $1", QP_STMT_SESSION, 0, 0, "t", ""},
    {0, "deallocate all", QP_STMT_SESSION, 0, 0, "", ""},
    {0, "listen ch", QP_STMT_SESSION, 0, 0, "", ""},
    {0, "discard all", QP_STMT_SESSION, 0, 0, "", ""},
    {0, "copy t from stdin with (format csv)", QP_STMT_COPY, 0, 0, "", "t"},
    {0, "copy s.t (a, b) to stdout", QP_STMT_COPY, 0, 0, "s.t", ""},
    {0, "copy (select * from t where a > 1) to stdout", QP_STMT_COPY, 0, 0, "t", ""},
    {0, "call p(1)", QP_STMT_OTHER, 0, 0, "", ""},
    {0, "do $$ begin perform 1; end $$", QP_STMT_OTHER, 0, 0, "", ""},
    {0, "", QP_STMT_OTHER, 0, 0, "", ""},
    {0, "-- only a comment", QP_STMT_OTHER, 0, 0, "", ""},
    {0, "frobnicate the database", QP_STMT_OTHER, 0, 0, "", ""},
    /* leading comments and parentheses */
    {0, "/* app */ select a from t", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "(select a from t) union (select b from u)", QP_STMT_SELECT, 1, 0, "t,u", ""},
    /* joins, subqueries, schemas, quoting */
    {0, "select * from a join b on a.id = b.id left outer join c using (id) cross join d",
     QP_STMT_SELECT, 1, 0, "a,b,c,d", ""},
    {0, "select * from a, b as bb, public.c cc where a.x = bb.y", QP_STMT_SELECT, 1, 0, "a,b,public.c", ""},
    {0, "select * from \"Sales\".\"Orders\" o join sales.items i on i.o = o.id", QP_STMT_SELECT, 1, 0,
     "Sales.Orders,sales.items", ""},
    {0, "select * from \"we\"\"ird\"", QP_STMT_SELECT, 1, 0, "we\"ird", ""},
    {0, "SELECT * FROM Public.Users", QP_STMT_SELECT, 1, 0, "public.users", ""},
    {0, "select * from t where id in (select t_id from u where u.x = (select max(x) from v))",
     QP_STMT_SELECT, 1, 0, "t,u,v", ""},
    {0, "select * from t where exists (select 1 from u where u.id = t.id)", QP_STMT_SELECT, 1, 0, "t,u", ""},
    {0, "select * from (select * from t) s, u", QP_STMT_SELECT, 1, 0, "t,u", ""},
    {0, "select * from a join (b join c on b.id = c.id) on a.id = b.id", QP_STMT_SELECT, 1, 0, "a,b,c", ""},
    {0, "select * from generate_series(1, 10) g, t", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "select * from t, lateral (select * from u where u.t = t.id) x", QP_STMT_SELECT, 1, 0, "t,u", ""},
    {0, "select extract(year from ts), substring(s from 2) from t", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "select * from t where a is distinct from b", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "select * from t union all select * from u except select * from v", QP_STMT_SELECT, 1, 0, "t,u,v", ""},
    {0, "select * from only t", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "select * from t t1 join t t2 on t1.p = t2.id", QP_STMT_SELECT, 1, 0, "t", ""},
    /* CTEs */
    {0, "with x as (select * from t) select * from x join u on u.id = x.id", QP_STMT_SELECT, 1, 0, "t,u", ""},
    {0, "with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) select * from r",
     QP_STMT_SELECT, 1, 0, "", ""},
    {0, "with a as materialized (select * from t), b as not materialized (select * from a, u) select * from b",
     QP_STMT_SELECT, 1, 0, "t,u", ""},
    {0, "with d as (delete from t where old returning *) select * from d", QP_STMT_SELECT, 0, 0, "", "t"},
    {0, "with i as (insert into log (a) values (1) returning id) select * from i, u", QP_STMT_SELECT, 0, 0,
     "u", "log"},
    {0, "with x as (select * from t) update u set a = x.a from x where u.id = x.id", QP_STMT_UPDATE, 0, 0, "t",
     "u"},
    {0, "with x as (select id from t) delete from u where id in (select id from x)", QP_STMT_DELETE, 0, 0, "t", "u"},
    {0, "with x as (select 1) insert into t select * from x", QP_STMT_INSERT, 0, 0, "", "t"},
    /* writes with reads */
    {0, "insert into t (a, b) select a, b from u join v on u.id = v.id", QP_STMT_INSERT, 0, 0, "u,v", "t"},
    {0, "insert into s.t as x values (1) on conflict (a) do update set b = excluded.b", QP_STMT_INSERT, 0, 0, "", "s.t"},
    {0, "insert into t values (1) on conflict do nothing returning *", QP_STMT_INSERT, 0, 0, "", "t"},
    {0, "update only t set a = u.a from u, v where t.id = u.id and u.v = v.id", QP_STMT_UPDATE, 0, 0, "u,v", "t"},
    {0, "update t set a = (select max(a) from u) where id = 1", QP_STMT_UPDATE, 0, 0, "u", "t"},
    {0, "delete from t using u, s.v where t.id = u.id", QP_STMT_DELETE, 0, 0, "u,s.v", "t"},
    {0, "delete from t where id in (select id from u)", QP_STMT_DELETE, 0, 0, "u", "t"},
    {0, "delete from only \"T\" where x = 1 returning *", QP_STMT_DELETE, 0, 0, "", "T"},
    /* SELECT that writes or locks */
    {0, "select * from t where id = 1 for update", QP_STMT_SELECT, 0, 0, "t", ""},
    {0, "select * from t for no key update skip locked", QP_STMT_SELECT, 0, 0, "t", ""},
    {0, "select * from t for share", QP_STMT_SELECT, 0, 0, "t", ""},
    {0, "select * from t for key share of t nowait", QP_STMT_SELECT, 0, 0, "t", ""},
    {0, "select a into new_t from t", QP_STMT_SELECT, 0, 0, "t", "new_t"},
    {0, "select * into temp table n from t", QP_STMT_SELECT, 0, 0, "t", "n"},
    {0, "select nextval('seq')", QP_STMT_SELECT, 0, 1, "", ""},
    {0, "select pg_advisory_lock(1)", QP_STMT_SELECT, 0, 0, "", ""},
    {0, "select set_config('a', 'b', false)", QP_STMT_SELECT, 0, 0, "", ""},
    /* volatile */
    {0, "select now()", QP_STMT_SELECT, 1, 1, "", ""},
    {0, "select * from t where created > current_timestamp - interval '1 day'", QP_STMT_SELECT, 1, 1, "t", ""},
    {0, "select random() from t", QP_STMT_SELECT, 1, 1, "t", ""},
    {0, "select 'now'::timestamp", QP_STMT_SELECT, 1, 1, "", ""},
    {0, "select clock_timestamp(), current_date", QP_STMT_SELECT, 1, 1, "", ""},
    {0, "select * from t where a = lower($1)", QP_STMT_SELECT, 1, 0, "t", ""},
    /* EXPLAIN */
    {0, "explain select * from t", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "explain delete from t", QP_STMT_SELECT, 1, 0, "", ""},
    {0, "explain analyze delete from t", QP_STMT_DELETE, 0, 0, "", "t"},
    {0, "explain (analyze, buffers, format json) select * from t", QP_STMT_SELECT, 1, 0, "t", ""},
    {0, "explain (analyze) update t set a = 1", QP_STMT_UPDATE, 0, 0, "", "t"},
    /* SQLite */
    {1, "SELECT * FROM [My Table] JOIN `other` USING (id)", QP_STMT_SELECT, 1, 0, "My Table,other", ""},
    {1, "select * from main.t", QP_STMT_SELECT, 1, 0, "main.t", ""},
    {1, "insert or replace into t (a) values (?)", QP_STMT_INSERT, 0, 0, "", "t"},
    {1, "replace into t values (1)", QP_STMT_INSERT, 0, 0, "", "t"},
    {1, "insert into t select * from u", QP_STMT_INSERT, 0, 0, "u", "t"},
    {1, "insert into t default values", QP_STMT_INSERT, 0, 0, "", "t"},
    {1, "update or ignore t set a = 1 from u where t.id = u.id", QP_STMT_UPDATE, 0, 0, "u", "t"},
    {1, "delete from t where rowid = ?", QP_STMT_DELETE, 0, 0, "", "t"},
    {1, "pragma journal_mode = wal", QP_STMT_SESSION, 0, 0, "", ""},
    {1, "attach database 'x.db' as x", QP_STMT_SESSION, 0, 0, "", ""},
    {1, "begin immediate", QP_STMT_TCL, 0, 0, "", ""},
    {1, "end transaction", QP_STMT_TCL, 0, 0, "", ""},
    {1, "create trigger tr after insert on t begin update u set n = n + 1; end", QP_STMT_DDL, 0, 0, "", "t"},
    {1, "create index i on t (a)", QP_STMT_DDL, 0, 0, "", "t"},
    {1, "select datetime('now')", QP_STMT_SELECT, 1, 1, "", ""},
    {1, "select date(created) from t", QP_STMT_SELECT, 1, 0, "t", ""},
    {1, "select random(), last_insert_rowid()", QP_STMT_SELECT, 1, 1, "", ""},
    {1, "with x as (select * from t) select * from x", QP_STMT_SELECT, 1, 0, "t", ""},
    {1, "select * from t where a = 1 returning *", QP_STMT_SELECT, 1, 0, "t", ""},
};

static void test_cases(void **state) {
  (void)state;
  int failures = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const ccase *c = &cases[i];
    qp_stmt_info info;
    memset(&info, 0x5a, sizeof info);
    info.size = sizeof info;
    qp_sql_classify(c->lite ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES, c->sql, strlen(c->sql), &info);
    char reads[2048], writes[2048];
    join(info.read, info.nread, reads);
    join(info.write, info.nwrite, writes);
    if (info.kind != c->kind || info.read_only != (bool)c->read_only ||
        info.volatile_fn != (bool)c->volatile_fn || strcmp(reads, c->reads) != 0 ||
        strcmp(writes, c->writes) != 0 || info.tables_truncated) {
      printf("case %zu: %s\n  want %s ro=%d vol=%d reads=[%s] writes=[%s]\n  got  %s ro=%d vol=%d "
             "reads=[%s] writes=[%s] truncated=%d\n",
             i, c->sql, qp_stmt_kind_name(c->kind), c->read_only, c->volatile_fn, c->reads, c->writes,
             qp_stmt_kind_name(info.kind), info.read_only, info.volatile_fn, reads, writes,
             info.tables_truncated);
      failures++;
    }
  }
  assert_int_equal(failures, 0);
}

static void test_kind_names(void **state) {
  (void)state;
  assert_string_equal(qp_stmt_kind_name(QP_STMT_SELECT), "select");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_INSERT), "insert");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_UPDATE), "update");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_DELETE), "delete");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_DDL), "ddl");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_TCL), "tcl");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_SESSION), "session");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_MERGE), "merge");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_COPY), "copy");
  assert_string_equal(qp_stmt_kind_name(QP_STMT_OTHER), "other");
  assert_string_equal(qp_stmt_kind_name((qp_stmt_kind)99), "other");
}

static void test_limits(void **state) {
  (void)state;
  qp_stmt_info info;
  info.size = sizeof info;
  /* more tables than fit */
  char sql[4096] = "select * from t0";
  for (int i = 1; i < 40; i++) sprintf(sql + strlen(sql), ", t%d", i);
  qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), &info);
  assert_int_equal(info.nread, QP_STMT_MAX_TABLES);
  assert_true(info.tables_truncated);
  assert_string_equal(info.read[0], "t0");
  /* a name too long */
  char longname[300];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  snprintf(sql, sizeof sql, "select * from %s, b", longname);
  qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), &info);
  assert_true(info.tables_truncated);
  assert_int_equal(info.nread, 1);
  assert_string_equal(info.read[0], "b");
  /* a quoted call name too long (ASan: the name stays a string) */
  snprintf(sql, sizeof sql, "select \"%s\"(1), lower(a) from t", longname);
  qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), &info);
  assert_true(info.funcs_truncated);
  assert_int_equal(info.nfuncs, 1);
  assert_string_equal(info.funcs[0], "lower");
  snprintf(sql, sizeof sql, "select * from `%s`(1), u", longname);
  qp_sql_classify(QP_DIALECT_SQLITE, sql, strlen(sql), &info);
  assert_true(info.funcs_truncated);
  assert_int_equal(info.nread, 1);
  assert_string_equal(info.read[0], "u");
  /* deep nesting is bounded, not recursive */
  static char deep[300000];
  strcpy(deep, "select * from ");
  size_t n = strlen(deep);
  for (int i = 0; i < 100000; i++) deep[n++] = '(';
  memcpy(deep + n, "select 1 from t", 15);
  n += 15;
  deep[n] = '\0';
  qp_sql_classify(QP_DIALECT_POSTGRES, deep, n, &info);
  assert_int_equal(info.kind, QP_STMT_SELECT);
  /* NULL input is empty; NULL info is refused */
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, NULL, 10, &info), QP_OK);
  assert_int_equal(info.kind, QP_STMT_OTHER);
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, "select 1", 8, NULL), QP_INVALID);
  /* only the first statement counts */
  qp_sql_classify(QP_DIALECT_POSTGRES, "select 1; delete from t", 23, &info);
  assert_int_equal(info.kind, QP_STMT_SELECT);
  assert_int_equal(info.nwrite, 0);
}

/* qp_stmt_info grows: the caller's size decides how much is written. */
static void test_growth(void **state) {
  (void)state;
  const char *sql = "select now() from t for update";
  qp_stmt_info ref = QP_STMT_INFO_INIT;
  assert_int_equal(ref.size, sizeof ref);
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), &ref), QP_OK);
  assert_int_equal(ref.locking, QP_LOCK_UPDATE);
  /* unset or too small: refused, nothing written */
  static qp_stmt_info small;
  memset(&small, 0x5a, sizeof small);
  small.size = QP_STMT_INFO_MIN_SIZE - 1;
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), &small), QP_INVALID);
  assert_int_equal(small.size, QP_STMT_INFO_MIN_SIZE - 1);
  assert_int_equal(((unsigned char *)&small)[sizeof small.size], 0x5a);
  small.size = 0;
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), &small), QP_INVALID);
  /* the smallest accepted size gets every field up to funcs */
  memset(&small, 0x5a, sizeof small);
  small.size = QP_STMT_INFO_MIN_SIZE;
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), &small), QP_OK);
  assert_int_equal(small.size, QP_STMT_INFO_MIN_SIZE);
  assert_int_equal(small.locking, QP_LOCK_UPDATE);
  assert_int_equal(small.nfuncs, 1);
  assert_string_equal(small.funcs[0], "now");
  /* a newer header's larger struct: the fields this library does not know
   * come back zeroed ("not known") */
  static unsigned char big[sizeof(qp_stmt_info) + 40];
  memset(big, 0x5a, sizeof big);
  qp_stmt_info *b = (qp_stmt_info *)(void *)big;
  b->size = sizeof big;
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, sql, strlen(sql), b), QP_OK);
  assert_int_equal(b->size, sizeof big);
  assert_int_equal(b->kind, QP_STMT_SELECT);
  assert_int_equal(b->nread, 1);
  assert_string_equal(b->read[0], "t");
  for (size_t i = sizeof(qp_stmt_info); i < sizeof big; i++) assert_int_equal(big[i], 0);
}

/* qp_stmt_info.identity: the statements that change who runs the session's
 * next statements (role, session authorization, application_name), whether
 * they are LOCAL, back to the default, and the role they name, exactly as
 * the server reads the name. */
typedef struct icase {
  const char *sql;
  unsigned identity;
  int local, dflt;
  const char *name;
} icase;

static void test_identity(void **state) {
  (void)state;
  enum { R = QP_IDENT_ROLE, S = QP_IDENT_SESSION_AUTH, A = QP_IDENT_APPLICATION };
  static const icase icases[] = {
      {"SET ROLE r2", R, 0, 0, "r2"},
      {"set role R2", R, 0, 0, "r2"},
      {"SET ROLE \"R2\"", R, 0, 0, "R2"},
      {"SET ROLE 'It''s'", R, 0, 0, "It's"},
      {"SET SESSION ROLE r2", R, 0, 0, "r2"},
      {"SET LOCAL ROLE r2", R, 1, 0, "r2"},
      {"  /* c */ SET LOCAL ROLE r2;", R, 1, 0, "r2"},
      {"SET role TO r3", R, 0, 0, "r3"},
      {"SET role = 'r3'", R, 0, 0, "r3"},
      {"SET ROLE NONE", R, 0, 1, ""},
      {"SET ROLE 'none'", R, 0, 1, ""},
      {"SET role TO DEFAULT", R, 0, 1, ""},
      {"RESET ROLE", R, 0, 1, ""},
      {"SET SESSION AUTHORIZATION alice", R | S, 0, 0, "alice"},
      {"SET SESSION SESSION AUTHORIZATION 'Bob'", R | S, 0, 0, "Bob"},
      {"SET LOCAL SESSION AUTHORIZATION alice", R | S, 1, 0, "alice"},
      {"SET SESSION AUTHORIZATION DEFAULT", R | S, 0, 1, ""},
      {"SET session_authorization = alice", R | S, 0, 0, "alice"},
      {"RESET SESSION AUTHORIZATION", R | S, 0, 1, ""},
      {"SET application_name = 'x'", A, 0, 0, ""},
      {"SET LOCAL application_name TO x", A, 1, 0, ""},
      {"SET application_name TO DEFAULT", A, 0, 1, ""},
      {"RESET application_name", A, 0, 1, ""},
      {"RESET ALL", A, 0, 1, ""}, /* role and session_authorization are GUC_NO_RESET_ALL */
      {"DISCARD ALL", R | S | A, 0, 1, ""},
      /* not identity changes */
      {"DISCARD PLANS", 0, 0, 0, ""},
      {"SET search_path = a", 0, 0, 0, ""},
      {"SET rolex = 1", 0, 0, 0, ""},
      {"SET ROLE", 0, 0, 0, ""},
      {"SET application_name", 0, 0, 0, ""},
      {"RESET search_path", 0, 0, 0, ""},
      {"SELECT set_config('role', 'r2', false)", 0, 0, 0, ""},
      {"SELECT 'SET ROLE r2'", 0, 0, 0, ""},
      {"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0, 0, 0, ""},
      {"ALTER ROLE r2 SET search_path = a", 0, 0, 0, ""},
  };
  for (size_t i = 0; i < sizeof icases / sizeof icases[0]; i++) {
    const icase *k = &icases[i];
    qp_stmt_info info;
    memset(&info, 0x5a, sizeof info);
    info.size = sizeof info;
    assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, k->sql, strlen(k->sql), &info), QP_OK);
    if (info.identity != k->identity || info.identity_local != (bool)k->local ||
        info.identity_default != (bool)k->dflt || strcmp(info.identity_name, k->name) != 0)
      fail_msg("%s: identity %u local %d default %d name '%s', want %u %d %d '%s'", k->sql,
               info.identity, info.identity_local, info.identity_default, info.identity_name,
               k->identity, k->local, k->dflt, k->name);
  }
  /* SQLite has no roles: PRAGMA and friends name none */
  qp_stmt_info info = QP_STMT_INFO_INIT;
  assert_int_equal(qp_sql_classify(QP_DIALECT_SQLITE, "SET ROLE r2", 11, &info), QP_OK);
  assert_int_equal(info.identity, 0);
  /* an older caller's struct ends before the new fields: they are not written */
  static qp_stmt_info old;
  memset(&old, 0x5a, sizeof old);
  old.size = QP_STMT_INFO_MIN_SIZE;
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, "SET ROLE r2", 11, &old), QP_OK);
  assert_int_equal(((unsigned char *)&old)[offsetof(qp_stmt_info, identity)], 0x5a);
}

/* tests/data/classify/<dialect>.txt: "> SQL" lines, each followed by "= the
 * expected description" (describe() above); '#' lines are comments. Run
 * `test_classify --print postgres|sqlite < file-of-statements` to draft new
 * cases, then check every field by hand. */
static void run_golden(const char *file, qp_dialect d) {
  char path[512];
  snprintf(path, sizeof path, "%s/classify/%s", QP_TEST_DATA_DIR, file);
  size_t len = 0;
  char *text = qpt_read_file(path, &len);
  assert_non_null(text);
  int failures = 0, ncases = 0;
  char *sql = NULL;
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    if (line[0] == '>' && line[1] == ' ') {
      sql = line + 2;
    } else if (line[0] == '=' && line[1] == ' ' && sql != NULL) {
      char got[8192];
      classify_line(d, sql, strlen(sql), got, sizeof got);
      ncases++;
      if (strcmp(got, line + 2) != 0) {
        printf("%s: %s\n  want %s\n  got  %s\n", file, sql, line + 2, got);
        failures++;
      }
      sql = NULL;
    } else if (line[0] != '#') {
      printf("%s: stray line: %s\n", file, line);
      failures++;
    }
  }
  free(text);
  printf("%s: %d cases\n", file, ncases);
  assert_true(ncases > 0);
  assert_int_equal(failures, 0);
}

static void test_golden_postgres(void **state) {
  (void)state;
  run_golden("postgres.txt", QP_DIALECT_POSTGRES);
}

static void test_golden_sqlite(void **state) {
  (void)state;
  run_golden("sqlite.txt", QP_DIALECT_SQLITE);
}

static int print_mode(const char *dialect) {
  qp_dialect d;
  if (!qp_dialect_parse(dialect, &d)) return 2;
  char line[65536], out[8192];
  while (fgets(line, sizeof line, stdin) != NULL) {
    size_t n = strcspn(line, "\n");
    line[n] = '\0';
    if (n == 0 || line[0] == '#') {
      printf("%s\n", line);
      continue;
    }
    qp_stmt_info info;
    info.size = sizeof info;
    qp_sql_classify(d, line, n, &info);
    describe(&info, out, sizeof out);
    printf("> %s\n= %s\n", line, out);
  }
  return 0;
}

/* ---- corpora -----------------------------------------------------------------
 * A script as psql would send it: lines that start with a backslash are psql's
 * own commands (\echo ... \quit in extension scripts), not SQL. Calls fn for
 * each statement. */
typedef void (*stmt_fn)(const char *sql, size_t len, void *ud);

static size_t for_each_stmt(qp_dialect d, char *text, size_t len, stmt_fn fn, void *ud) {
  for (size_t i = 0; i < len; i++) {
    if ((i == 0 || text[i - 1] == '\n') && text[i] == '\\')
      while (i < len && text[i] != '\n') text[i++] = ' ';
  }
  size_t pos = 0, start, n, count = 0;
  while (qp_sql_split_next(d, text, len, &pos, &start, &n)) {
    fn(text + start, n, ud);
    count++;
  }
  return count;
}

/* The statement without its leading comments and white space. */
static const char *skip_comments(const char *sql, size_t *lenp) {
  size_t len = *lenp;
  while (len > 0) {
    size_t sp = strspn(sql, " \t\r\n");
    const char *end = NULL;
    if (sp + 1 < len && strncmp(sql + sp, "--", 2) == 0) end = memchr(sql + sp, '\n', len - sp);
    else if (sp + 1 < len && strncmp(sql + sp, "/*", 2) == 0) end = strstr(sql + sp, "*/");
    if (end == NULL || end >= sql + len - 1) break;
    end += *end == '\n' ? 1 : 2;
    len -= (size_t)(end - sql);
    sql = end;
  }
  while (len > 0 && (*sql == ' ' || *sql == '\n' || *sql == '\t' || *sql == '\r')) sql++, len--;
  *lenp = len;
  return sql;
}

static void print_stmt(const char *sql, size_t len, void *ud) {
  char out[8192], head[121];
  sql = skip_comments(sql, &len);
  size_t k = len < 120 ? len : 120;
  memcpy(head, sql, k);
  head[k] = '\0';
  for (char *p = head; *p; p++)
    if (*p == '\n' || *p == '\t' || *p == '\r') *p = ' ';
  classify_line(*(qp_dialect *)ud, sql, len, out, sizeof out);
  printf("%s\n  = %s\n", head, out);
}

static int print_file_mode(const char *dialect, const char *path) {
  qp_dialect d;
  if (!qp_dialect_parse(dialect, &d)) return 2;
  size_t len = 0;
  char *text = qpt_read_file(path, &len);
  if (text == NULL) return 1;
  for_each_stmt(d, text, len, print_stmt, &d);
  free(text);
  return 0;
}

/* ---- PostgreSQL's own scripts ----------------------------------------------
 * Every .sql file Debian's postgresql-15 installs (extension scripts, the
 * information schema, system views and functions): each statement classified
 * under ASan in CI, and the samples in tests/data/classify/pg_share.txt
 * (checked by hand against the files) must agree. */
#ifndef QP_TEST_PG_SHARE
#define QP_TEST_PG_SHARE "/usr/share/postgresql/15"
#endif

typedef struct share_walk {
  size_t files, stmts, insane, other, by_kind[QP_STMT_COPY + 1];
} share_walk;
static share_walk g_share;

static void share_stmt(const char *sql, size_t len, void *ud) {
  (void)ud;
  qp_stmt_info info;
  memset(&info, 0x5a, sizeof info);
  info.size = sizeof info;
  assert_int_equal(qp_sql_classify(QP_DIALECT_POSTGRES, sql, len, &info), QP_OK);
  g_share.stmts++;
  if (!sane(&info)) {
    g_share.insane++;
    printf("not sane: %.*s\n", (int)(len < 200 ? len : 200), sql);
  }
  if ((unsigned)info.kind <= QP_STMT_COPY) g_share.by_kind[info.kind]++;
  if (info.kind == QP_STMT_OTHER) {
    /* only DO blocks are "other" in these scripts */
    size_t n = len;
    const char *p = skip_comments(sql, &n);
    if (n < 3 || strncasecmp(p, "do ", 3) != 0) {
      g_share.other++;
      printf("unexpected kind other: %.*s\n", (int)(n < 200 ? n : 200), p);
    }
  }
}

static int share_file(const char *path, const struct stat *st, int type, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  size_t n = strlen(path);
  if (type != FTW_F || n < 4 || strcmp(path + n - 4, ".sql") != 0) return 0;
  size_t len = 0;
  char *text = qpt_read_file(path, &len);
  assert_non_null(text);
  for_each_stmt(QP_DIALECT_POSTGRES, text, len, share_stmt, NULL);
  free(text);
  g_share.files++;
  return 0;
}

static void test_pg_share_corpus(void **state) {
  (void)state;
  memset(&g_share, 0, sizeof g_share);
  /* the directory comes with postgresql-15 (tools/deps.sh): its absence is a failure */
  assert_int_equal(nftw(QP_TEST_PG_SHARE, share_file, 16, FTW_PHYS), 0);
  printf("%zu files, %zu statements: %zu ddl, %zu insert, %zu update, %zu select, %zu session, "
         "%zu other\n",
         g_share.files, g_share.stmts, g_share.by_kind[QP_STMT_DDL], g_share.by_kind[QP_STMT_INSERT],
         g_share.by_kind[QP_STMT_UPDATE], g_share.by_kind[QP_STMT_SELECT],
         g_share.by_kind[QP_STMT_SESSION], g_share.by_kind[QP_STMT_OTHER]);
  assert_true(g_share.files >= 100);
  assert_true(g_share.stmts >= 3000);
  assert_int_equal(g_share.insane, 0);
  assert_int_equal(g_share.other, 0);
}

/* pg_share.txt: "@ file" (under the share directory), then "> start of a
 * statement" (after its comments) and "= expected fields". */
typedef struct sample_find {
  const char *needle;
  char got[8192];
  int found;
} sample_find;

static void sample_stmt(const char *sql, size_t len, void *ud) {
  sample_find *f = ud;
  size_t n = len;
  const char *p = skip_comments(sql, &n);
  size_t k = strlen(f->needle);
  if (f->found || n < k || strncmp(p, f->needle, k) != 0) return;
  classify_line(QP_DIALECT_POSTGRES, sql, len, f->got, sizeof f->got);
  f->found = 1;
}

static void test_pg_share_samples(void **state) {
  (void)state;
  char path[512];
  snprintf(path, sizeof path, "%s/classify/pg_share.txt", QP_TEST_DATA_DIR);
  size_t len = 0;
  char *text = qpt_read_file(path, &len);
  assert_non_null(text);
  char file[512] = "", *needle = NULL;
  int failures = 0, ncases = 0;
  for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    if (line[0] == '@' && line[1] == ' ') {
      snprintf(file, sizeof file, "%s/%s", QP_TEST_PG_SHARE, line + 2);
    } else if (line[0] == '>' && line[1] == ' ') {
      needle = line + 2;
    } else if (line[0] == '=' && line[1] == ' ' && needle != NULL) {
      size_t flen = 0;
      char *script = qpt_read_file(file, &flen);
      if (script == NULL) fail_msg("cannot read %s", file);
      sample_find f = {needle, "", 0};
      for_each_stmt(QP_DIALECT_POSTGRES, script, flen, sample_stmt, &f);
      free(script);
      ncases++;
      if (!f.found || strcmp(f.got, line + 2) != 0) {
        printf("%s: %s\n  want %s\n  got  %s\n", file, needle, line + 2, f.found ? f.got : "(not found)");
        failures++;
      }
      needle = NULL;
    }
  }
  free(text);
  printf("%d samples\n", ncases);
  assert_true(ncases >= 15);
  assert_int_equal(failures, 0);
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--print") == 0) return print_mode(argv[2]);
  if (argc == 4 && strcmp(argv[1], "--print-file") == 0) return print_file_mode(argv[2], argv[3]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_kind_names),
      cmocka_unit_test(test_limits),
      cmocka_unit_test(test_growth),
      cmocka_unit_test(test_identity),
      cmocka_unit_test(test_golden_postgres),
      cmocka_unit_test(test_golden_sqlite),
      cmocka_unit_test(test_pg_share_corpus),
      cmocka_unit_test(test_pg_share_samples),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
