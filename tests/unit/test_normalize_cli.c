/*
 * `qprof normalize`, run as users run it ($QPROF_BIN): output format, input
 * order, comment-only statements, dialects, rules, JSON lines, exit codes
 * and messages. Needs no database.
 */
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct run_result {
  int status;
  char out[65536];
  char err[4096];
} run_result;

static char tmpdir[256];

static const char *bin(void) {
  const char *b = getenv("QPROF_BIN");
  if (b == NULL || b[0] == '\0') fail_msg("QPROF_BIN is not set");
  return b;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static char *slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  buf[0] = '\0';
  if (f == NULL) return buf;
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* Runs `qprof normalize ARGS` with stdin from `stdin_text` (NULL: /dev/null). */
static void run(run_result *r, const char *args, const char *stdin_text) {
  char in[512], out[512], err[512], cmd[4096];
  snprintf(in, sizeof in, "%s/stdin.sql", tmpdir);
  snprintf(out, sizeof out, "%s/out.txt", tmpdir);
  snprintf(err, sizeof err, "%s/err.txt", tmpdir);
  write_file(in, stdin_text ? stdin_text : "");
  snprintf(cmd, sizeof cmd, "'%s' normalize %s < '%s' > '%s' 2> '%s'", bin(), args, in, out, err);
  int st = system(cmd);
  r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  slurp(out, r->out, sizeof r->out);
  slurp(err, r->err, sizeof r->err);
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "%s", qpt_tempdir());
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static bool is_fp_line(const char *line, const char *want_text) {
  if (strlen(line) < 17 || line[16] != '\t') return false;
  for (int i = 0; i < 16; i++)
    if (!((line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f'))) return false;
  return strcmp(line + 17, want_text) == 0;
}

static void test_text_output(void **state) {
  (void)state;
  run_result r;
  run(&r,
      "",
      "-- a script\nSELECT * FROM t WHERE id = 1;\n/* only a comment */;\n"
      "select * from t where id = $1;\nINSERT INTO t VALUES (1, 'a'), (2, 'b');\n"
      "select 'multi\nline' from \"Odd\nName\";\n");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.err, "");
  char *save = NULL;
  char *l1 = strtok_r(r.out, "\n", &save), *l2 = strtok_r(NULL, "\n", &save);
  char *l3 = strtok_r(NULL, "\n", &save), *l4 = strtok_r(NULL, "\n", &save);
  assert_non_null(l1);
  assert_non_null(l2);
  assert_non_null(l3);
  assert_non_null(l4);
  assert_null(strtok_r(NULL, "\n", &save)); /* comment-only statement printed nothing */
  assert_true(is_fp_line(l1, "select * from t where id = ?"));
  assert_true(is_fp_line(l2, "select * from t where id = ?"));
  assert_memory_equal(l1, l2, 16); /* bound and inline forms: one fingerprint */
  assert_true(is_fp_line(l3, "insert into t values (?, ?)"));
  /* one line per statement even when a quoted name holds a newline */
  assert_true(is_fp_line(l4, "select ? from \"Odd\\nName\""));
}

/* Control characters from the input reach the terminal only as visible
 * escapes: C0 (ESC of clear-screen and window-title sequences), DEL, C1
 * (U+009B CSI) and the bidirectional overrides and isolates. */
static void test_text_escapes(void **state) {
  (void)state;
  run_result r;
  run(&r, "",
      "select \"a\x1b[2Jb\", \"t\x1b]0;title\x07\", x\xc2\x9by, \"\xe2\x80\xae" "evil\", "
      "\"\xe2\x81\xa9i\", \"tab\there\", \"del\x7f\", \"\x9b\", caf\xc3\xa9, \"\xe2\x82\xac\", "
      "\"\xe2\x80\xa9\", \"cr\rx\";\n"
      "select 1 /* \x1b[2J in a comment */; select '\x1b]0;x\x07' -- \xe2\x80\xae\n");
  assert_int_equal(r.status, 0);
  char *save = NULL;
  char *l1 = strtok_r(r.out, "\n", &save), *l2 = strtok_r(NULL, "\n", &save);
  char *l3 = strtok_r(NULL, "\n", &save);
  assert_non_null(l3);
  assert_null(strtok_r(NULL, "\n", &save));
  assert_true(is_fp_line(l1, "select \"a\\x1b[2Jb\", \"t\\x1b]0;title\\x07\", x\\u009by, "
                             "\"\\u202eevil\", \"\\u2069i\", \"tab\\there\", \"del\\x7f\", \"\\x9b\", "
                             "caf\xc3\xa9, \"\xe2\x82\xac\", \"\xe2\x80\xa9\", \"cr\\rx\""));
  assert_true(is_fp_line(l2, "select ?"));
  assert_true(is_fp_line(l3, "select ?"));
  /* nothing of the kind anywhere in the output */
  for (const char *p = r.out; p < l3 + strlen(l3); p++) {
    const unsigned char c = (unsigned char)*p;
    assert_true(c >= 0x20 || c == '\t' || c == '\0');
    assert_true(c != 0x7f && c != 0x9b);
  }
  assert_null(strstr(l1, "\xe2\x80\xae"));
  assert_null(strstr(l1, "\xc2\x9b"));
}

static void test_file_and_dialect(void **state) {
  (void)state;
  char path[512], args[1024];
  snprintf(path, sizeof path, "%s/script.sql", tmpdir);
  write_file(path, "SELECT [Weird Name] FROM `t` WHERE a = :a AND b = @b;\nPRAGMA user_version;");
  run_result r;
  snprintf(args, sizeof args, "--dialect sqlite '%s'", path);
  run(&r, args, NULL);
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "\tselect [Weird Name] from `t` where a = ? and b = ?\n"));
  assert_non_null(strstr(r.out, "\tpragma user_version\n"));
  /* '-' is stdin */
  run(&r, "-d sqlite -", "select ?1");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "\tselect ?\n"));
  /* the same text in the other dialect has another fingerprint */
  run_result r2;
  run(&r2, "-d postgres -", "select ?1");
  assert_int_equal(r2.status, 0);
  assert_true(memcmp(r.out, r2.out, 16) != 0);
}

static void test_rules(void **state) {
  (void)state;
  run_result r;
  run(&r, "--rule 'tmp_[0-9a-f]{6,}=tmp_?'", "select * from tmp_8f3a91c2; select * from tmp_00aabbcc1");
  assert_int_equal(r.status, 0);
  char *nl = strchr(r.out, '\n');
  assert_non_null(nl);
  assert_memory_equal(r.out, nl + 1, 16); /* one fingerprint for both */
  assert_true(is_fp_line(strtok(r.out, "\n"), "select * from tmp_?"));

  /* a rule that does not compile: exit 2, the message names it and the offset */
  run(&r, "--rule 'ok=ok' --rule 'tmp_[0-9=x'", "select 1");
  assert_int_equal(r.status, 2);
  assert_string_equal(r.out, "");
  assert_non_null(strstr(r.err, "tmp_[0-9=x"));
  assert_non_null(strstr(r.err, "rule 2"));
  assert_non_null(strstr(r.err, "offset"));
  run(&r, "--rule 'noequals'", "select 1");
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "noequals"));
}

static void test_json(void **state) {
  (void)state;
  run_result r;
  run(&r, "--format json", "SELECT a FROM t WHERE b IN (1,2,3);\n\nDELETE FROM t WHERE x = 'caf\xc3\xa9';\nselect \"\xff\"");
  assert_int_equal(r.status, 0);
  char *save = NULL;
  int n = 0;
  for (char *line = strtok_r(r.out, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
    json_error_t jerr;
    json_t *o = json_loads(line, 0, &jerr);
    if (o == NULL) fail_msg("not JSON: %s (%s)", line, jerr.text);
    const char *fp = json_string_value(json_object_get(o, "fingerprint"));
    const char *q = json_string_value(json_object_get(o, "query"));
    const char *kind = json_string_value(json_object_get(o, "kind"));
    assert_non_null(fp);
    assert_non_null(q);
    assert_non_null(kind);
    assert_int_equal(strlen(fp), 16);
    if (n == 0) {
      assert_string_equal(q, "select a from t where b in (?)");
      assert_string_equal(kind, "select");
      assert_true(json_is_true(json_object_get(o, "read_only")));
      assert_int_equal(json_integer_value(json_object_get(o, "line")), 1);
    } else if (n == 1) {
      assert_string_equal(kind, "delete");
      assert_true(json_is_false(json_object_get(o, "read_only")));
      assert_int_equal(json_integer_value(json_object_get(o, "line")), 3);
    } else {
      /* invalid UTF-8 is replaced, so the line stays valid JSON */
      assert_string_equal(q, "select \"\xef\xbf\xbd\"");
    }
    json_decref(o);
  }
  assert_int_equal(n, 3);
}

/* JSON lines are as safe to print as the text output: C1 controls (U+009B
 * is CSI, U+0085 NEL) and the bidirectional overrides and isolates come out
 * as \uXXXX escapes, never raw, and read back as the same characters (the
 * lines used to carry them raw, as jansson writes them). */
static void test_json_escapes_unsafe(void **state) {
  (void)state;
  static const struct {
    const char *utf8, *escape;
  } unsafe[] = {{"\xc2\x9b", "\\u009b"},     {"\xc2\x85", "\\u0085"},     {"\xc2\x80", "\\u0080"},
                {"\xc2\x9f", "\\u009f"},     {"\xe2\x80\xaa", "\\u202a"}, {"\xe2\x80\xae", "\\u202e"},
                {"\xe2\x81\xa6", "\\u2066"}, {"\xe2\x81\xa9", "\\u2069"}};
  for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++) {
    char sql[256], want[64];
    /* a quoted identifier keeps its characters through the normalizer */
    snprintf(sql, sizeof sql, "SELECT \"a%s[2Jb\" FROM t", unsafe[i].utf8);
    snprintf(want, sizeof want, "select \"a%s[2Jb\" from t", unsafe[i].utf8);
    run_result r;
    run(&r, "--format json", sql);
    assert_int_equal(r.status, 0);
    if (strstr(r.out, unsafe[i].utf8) != NULL) fail_msg("raw %s in: %s", unsafe[i].escape, r.out);
    if (strstr(r.out, unsafe[i].escape) == NULL) fail_msg("no %s in: %s", unsafe[i].escape, r.out);
    json_error_t jerr;
    json_t *o = json_loads(r.out, 0, &jerr);
    if (o == NULL) fail_msg("not JSON: %s (%s)", r.out, jerr.text);
    assert_string_equal(json_string_value(json_object_get(o, "query")), want);
    json_decref(o);
  }
  /* ordinary non-ASCII text stays as it is */
  run_result r;
  run(&r, "--format json", "SELECT \"caf\xc3\xa9 \xe2\x98\x95\"");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "caf\xc3\xa9 \xe2\x98\x95"));
}

static void test_usage_errors(void **state) {
  (void)state;
  run_result r;
  run(&r, "--dialect mysql", "select 1");
  assert_int_equal(r.status, 2);
  assert_non_null(strstr(r.err, "mysql"));
  assert_non_null(strstr(r.err, "--help"));
  run(&r, "--format xml", "select 1");
  assert_int_equal(r.status, 2);
  run(&r, "--bogus", "select 1");
  assert_int_equal(r.status, 2);
  run(&r, "a.sql b.sql", "");
  assert_int_equal(r.status, 2);
  /* an unreadable file: exit 1 naming it */
  run(&r, "/nonexistent/dir/q.sql", "");
  assert_int_equal(r.status, 1);
  assert_non_null(strstr(r.err, "/nonexistent/dir/q.sql"));
  /* --help: stdout, exit 0 */
  run(&r, "--help", "");
  assert_int_equal(r.status, 0);
  assert_non_null(strstr(r.out, "Usage: qprof normalize"));
  assert_string_equal(r.err, "");
  /* empty input: nothing, success */
  run(&r, "", "  -- nothing\n;;");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.out, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_output), cmocka_unit_test(test_text_escapes),
      cmocka_unit_test(test_file_and_dialect),
      cmocka_unit_test(test_rules),       cmocka_unit_test(test_json),
      cmocka_unit_test(test_json_escapes_unsafe),
      cmocka_unit_test(test_usage_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
