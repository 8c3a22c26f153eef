/* Core: status codes, options table and config, allocation hooks, clocks, DSN redaction. */
#include "testutil.h"
#include "failalloc.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static void test_status_strings(void **state) {
  (void)state;
  assert_string_equal(qp_errname(QP_OK), "OK");
  assert_string_equal(qp_errname(QP_NOMEM), "NOMEM");
  assert_string_equal(qp_strerror(QP_NOMEM), "out of memory");
  assert_string_equal(qp_errname((qp_status)9999), "UNKNOWN");
  assert_string_equal(qp_strerror((qp_status)-1), "unknown status");
  /* Every code has a distinct name and text. */
  for (int i = 0; i < QP_STATUS_COUNT_; i++)
    for (int j = i + 1; j < QP_STATUS_COUNT_; j++) {
      assert_string_not_equal(qp_errname((qp_status)i), qp_errname((qp_status)j));
      assert_string_not_equal(qp_strerror((qp_status)i), qp_strerror((qp_status)j));
    }
}

static void test_option_table(void **state) {
  (void)state;
  assert_true(qp_option_count() > 5);
  for (size_t i = 0; i < qp_option_count(); i++) {
    const qp_option_info *o = qp_option_at(i);
    assert_non_null(o);
    assert_ptr_equal(qp_option_find(o->name), o);
    /* QPROF_ + upper-cased name with dots to underscores. */
    char want[64] = "QPROF_";
    for (const char *p = o->name; *p; p++) {
      char c = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
      strncat(want, &c, 1);
    }
    assert_string_equal(o->env, want);
    assert_true(strlen(o->doc) > 10);
  }
  assert_null(qp_option_at(qp_option_count()));
  assert_null(qp_option_find("no.such.option"));
}

static void test_config_set_get(void **state) {
  (void)state;
  qp_config *cfg;
  assert_int_equal(qp_config_new(&cfg, NULL), QP_OK);
  assert_int_equal(qp_config_int(cfg, "flush_ms"), 1000);
  assert_false(qp_config_bool(cfg, "sample"));
  assert_string_equal(qp_config_string(cfg, "store"), "qprof.db");
  assert_int_equal(qp_config_set(cfg, "sample", "on"), QP_OK);
  assert_true(qp_config_bool(cfg, "sample"));
  assert_int_equal(qp_config_set(cfg, "slow_ms", "12.5"), QP_OK);
  assert_true(qp_config_double(cfg, "slow_ms") == 12.5);

  assert_int_equal(qp_config_set(cfg, "nope", "1"), QP_NOTFOUND);
  assert_non_null(strstr(qp_config_errmsg(cfg), "nope"));
  assert_int_equal(qp_config_set(cfg, "flush_ms", "12x"), QP_INVALID);
  assert_non_null(strstr(qp_config_errmsg(cfg), "flush_ms"));
  assert_int_equal(qp_config_int(cfg, "flush_ms"), 1000); /* kept */
  assert_int_equal(qp_config_set(cfg, "flush_ms", "1"), QP_RANGE);
  assert_int_equal(qp_config_set(cfg, "sample", "maybe"), QP_INVALID);
  assert_int_equal(qp_config_set(cfg, "slow_ms", "nan"), QP_INVALID);
  assert_int_equal(qp_config_set(cfg, "flush_ms", "99999999999999999999"), QP_INVALID);
  /* A success clears the message. */
  assert_int_equal(qp_config_set(cfg, "flush_ms", "250"), QP_OK);
  assert_string_equal(qp_config_errmsg(cfg), "");
  assert_string_equal(qp_config_text(cfg, "flush_ms"), "250");
  /* Wrong-type getters are harmless. */
  assert_int_equal(qp_config_int(cfg, "store"), 0);
  qp_config_free(cfg);
  qp_config_free(NULL);
}

static void test_config_env(void **state) {
  (void)state;
  qp_config *cfg;
  assert_int_equal(qp_config_new(&cfg, NULL), QP_OK);
  setenv("QPROF_POOL_MAX_SIZE", "17", 1);
  assert_int_equal(qp_config_load_env(cfg), QP_OK);
  assert_int_equal(qp_config_int(cfg, "pool.max_size"), 17);
  setenv("QPROF_FLUSH_MS", "soon", 1);
  assert_int_equal(qp_config_load_env(cfg), QP_INVALID);
  assert_non_null(strstr(qp_config_errmsg(cfg), "QPROF_FLUSH_MS"));
  unsetenv("QPROF_FLUSH_MS");
  unsetenv("QPROF_POOL_MAX_SIZE");
  qp_config_free(cfg);
}

static void test_config_oom(void **state) {
  (void)state;
  /* Fail each allocation in turn: every failure is reported, nothing leaks. */
  for (long n = 1; n < 200; n++) {
    qpt_failalloc fa = {.fail_at = n};
    qp_hooks h = qpt_failalloc_hooks(&fa);
    qp_config *cfg = NULL;
    qp_status st = qp_config_new(&cfg, &h);
    if (st == QP_OK) {
      assert_true(fa.count < n);
      qp_config_free(cfg);
      assert_int_equal(fa.live, 0);
      return;
    }
    assert_int_equal(st, QP_NOMEM);
    assert_null(cfg);
    assert_int_equal(fa.live, 0);
  }
  fail_msg("config_new never succeeded");
}

/* qp__fmt_i64 writes what printf's %lld writes, at every digit count and
 * at both ends of the range. */
static void test_fmt_i64(void **state) {
  (void)state;
  int64_t v[19 * 4 + 4];
  size_t n = 0;
  v[n++] = 0;
  v[n++] = INT64_MIN;
  v[n++] = INT64_MAX;
  v[n++] = INT64_MIN + 1;
  int64_t p = 1;
  for (int k = 0; k < 19; k++) { /* 10^0 .. 10^18, their neighbours, negated */
    v[n++] = p;
    v[n++] = p - 1;
    v[n++] = -p;
    v[n++] = -(p - 1) - 1;
    if (k < 18) p *= 10;
  }
  for (size_t i = 0; i < n; i++) {
    char got[24], want[24];
    memset(got, 'x', sizeof got);
    size_t len = qp__fmt_i64(v[i], got);
    snprintf(want, sizeof want, "%lld", (long long)v[i]);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    assert_int_equal(got[len], 'x'); /* nothing written past the digits */
  }
}

static void test_dsn_redact(void **state) {
  (void)state;
  char out[256];
  qp__dsn_redact("host=db user=app password=s3cret dbname=x", out, sizeof out);
  assert_string_equal(out, "host=db user=app password=*** dbname=x");
  qp__dsn_redact("host=db password = 'it\\'s a secret' port=5", out, sizeof out);
  assert_string_equal(out, "host=db password=*** port=5");
  assert_null(strstr(out, "secret"));
  qp__dsn_redact("postgresql://app:s3cret@db:5432/x?sslmode=disable&password=zz", out, sizeof out);
  assert_string_equal(out, "postgresql://app:***@db:5432/x?sslmode=disable&password=***");
  qp__dsn_redact("postgres://db/x", out, sizeof out);
  assert_string_equal(out, "postgres://db/x");
  qp__dsn_redact("sqlite:///tmp/a.db", out, sizeof out);
  assert_string_equal(out, "sqlite:///tmp/a.db");
  qp__dsn_redact("password=abcdef", out, 8); /* truncation stays terminated */
  assert_true(strlen(out) < 8);
  assert_null(strstr(out, "abc"));
  /* The public call: the whole length, as snprintf; text that is no DSN unchanged. */
  const char *uri = "postgresql://u:pw@h/db";
  assert_int_equal(qp_dsn_redact(uri, out, sizeof out), strlen("postgresql://u:***@h/db"));
  assert_string_equal(out, "postgresql://u:***@h/db");
  assert_int_equal(qp_dsn_redact(uri, out, 5), strlen("postgresql://u:***@h/db"));
  assert_string_equal(out, "post");
  assert_int_equal(qp_dsn_redact(uri, NULL, 0), strlen("postgresql://u:***@h/db"));
  const char *plain[] = {"tmp_[0-9]+=tmp_?", "^select .* from t$", "/var/tmp/prof.db", "", "a b\tc"};
  for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
    assert_int_equal(qp_dsn_redact(plain[i], out, sizeof out), strlen(plain[i]));
    assert_string_equal(out, plain[i]);
  }
  assert_int_equal(qp_dsn_redact(NULL, out, sizeof out), 0);
  assert_string_equal(out, "");
  /* DSNs quoted inside a message, and misspelt ones (case), are redacted too. */
  static const struct {
    const char *in, *out;
  } msg[] = {
      {"--limit needs a number, not 'postgresql://u:pw1@h/db?x=1'",
       "--limit needs a number, not 'postgresql://u:***@h/db?x=1'"},
      {"not 'host=h password=pw2 port=5'", "not 'host=h password=*** port=5'"},
      {"a (postgres:///db?password=pw3&host=/tmp) b", "a (postgres:///db?password=***&host=/tmp) b"},
      {"x POSTGRESQL://u:pw4@h/db y PASSWORD=pw5", "x POSTGRESQL://u:***@h/db y password=***"},
      {"postgresql://u@h/db?PassWord=pw6", "postgresql://u@h/db?password=***"},
      {"mypassword=keep old_password=keep", "mypassword=keep old_password=keep"},
      {"postgresql://h/db, password='a b\\'c' d", "postgresql://h/db, password=*** d"},
  };
  for (size_t i = 0; i < sizeof msg / sizeof msg[0]; i++) {
    qp_dsn_redact(msg[i].in, out, sizeof out);
    assert_string_equal(out, msg[i].out);
  }
}

static void test_time_parse_format(void **state) {
  (void)state;
  char buf[40];
  qp__format_iso8601(0, buf, sizeof buf);
  assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
  int64_t t;
  assert_true(qp__parse_time("2026-11-22T10:30:15.250Z", 0, &t));
  qp__format_iso8601(t, buf, sizeof buf);
  assert_string_equal(buf, "2026-11-22T10:30:15.250Z");
  assert_true(qp__parse_time("2026-11-22T12:30:15+02:00", 0, &t));
  qp__format_iso8601(t, buf, sizeof buf);
  assert_string_equal(buf, "2026-11-22T10:30:15.000Z");
  assert_true(qp__parse_time("2024-02-29", 0, &t));
  qp__format_iso8601(t, buf, sizeof buf);
  assert_string_equal(buf, "2024-02-29T00:00:00.000Z");
  assert_true(qp__parse_time("-15m", 1000000000000LL, &t));
  assert_int_equal(t, 1000000000000LL - 900LL * 1000000000LL);
  assert_true(qp__parse_time("@1700000000", 0, &t));
  assert_int_equal(t, 1700000000LL * 1000000000LL);
  assert_false(qp__parse_time("yesterday", 0, &t));
  assert_false(qp__parse_time("2026-13-01", 0, &t));
  assert_false(qp__parse_time("2026-11-22T25:00", 0, &t));
  /* strtod would take these; a NaN cast to int64_t is undefined */
  assert_false(qp__parse_time("-nand", 0, &t));
  assert_false(qp__parse_time("-infh", 0, &t));
  assert_false(qp__parse_time("-0x10m", 0, &t));
  assert_false(qp__parse_time("-1e3s", 0, &t));
  assert_false(qp__parse_time("--5m", 0, &t));
  assert_false(qp__parse_time("-1.2.3h", 0, &t));
  assert_true(qp__parse_time("-1.5h", 10000000000000LL, &t));
  assert_int_equal(t, 10000000000000LL - 5400000000000LL);
  assert_false(qp__parse_time("", 0, &t));
  assert_false(qp__parse_time("-5parsecs", 0, &t));
}

static void test_buf(void **state) {
  (void)state;
  qp_buf b;
  qp__buf_init(&b, NULL);
  assert_string_equal(qp__buf_cstr(&b), "");
  for (int i = 0; i < 1000; i++) assert_true(qp__buf_printf(&b, "%d,", i));
  assert_int_equal(b.len, strlen(qp__buf_cstr(&b)));
  assert_memory_equal(b.data, "0,1,2,", 6);
  qp__buf_free(&b);

  qpt_failalloc fa = {.fail_at = 2, .sticky = true};
  qp_hooks h = qpt_failalloc_hooks(&fa);
  qp__buf_init(&b, &h);
  bool ok = true;
  for (int i = 0; i < 100 && ok; i++) ok = qp__buf_puts(&b, "0123456789");
  assert_false(ok);
  assert_true(b.failed);
  qp__buf_free(&b);
  assert_int_equal(fa.live, 0);
}

static void test_versions(void **state) {
  (void)state;
  assert_string_equal(qp_version(), QPROF_VERSION_STRING);
  assert_non_null(strchr(qp_libpq_version(), '.'));
  assert_non_null(strchr(qp_sqlite_version(), '.'));
  assert_non_null(strchr(qp_pcre2_version(), '.'));
}

static int log_calls;
static void count_log(qp_log_level level, const char *msg, void *ud) {
  (void)level;
  (void)ud;
  assert_string_equal(msg, "hello 42");
  log_calls++;
}

static void test_log(void **state) {
  (void)state;
  qp_hooks h = {0};
  h.log_fn = count_log;
  h.log_min_level = QP_LOG_INFO;
  qp__log(&h, QP_LOG_DEBUG, "hello %d", 42);
  assert_int_equal(log_calls, 0);
  qp__log(&h, QP_LOG_WARN, "hello %d", 42);
  assert_int_equal(log_calls, 1);
  qp__log(NULL, QP_LOG_ERROR, "no hooks: %d", 1); /* no crash */
  assert_string_equal(qp_log_level_name(QP_LOG_WARN), "warn");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_strings), cmocka_unit_test(test_option_table),
      cmocka_unit_test(test_config_set_get), cmocka_unit_test(test_config_env),
      cmocka_unit_test(test_config_oom),     cmocka_unit_test(test_dsn_redact),
      cmocka_unit_test(test_fmt_i64),
      cmocka_unit_test(test_time_parse_format), cmocka_unit_test(test_buf),
      cmocka_unit_test(test_versions),       cmocka_unit_test(test_log),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
