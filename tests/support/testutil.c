#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

bool qpt_pg_env_load(void) {
  const char *path = getenv("QP_TEST_PGENV");
  if (path == NULL) return false;
  FILE *f = fopen(path, "r");
  if (f == NULL) return false;
  char line[1024];
  while (fgets(line, sizeof line, f) != NULL) {
    line[strcspn(line, "\r\n")] = '\0';
    char *eq = strchr(line, '=');
    if (eq == NULL) continue;
    *eq = '\0';
    setenv(line, eq + 1, 1);
  }
  fclose(f);
  return getenv("PGHOST") != NULL;
}

const char *qpt_pg_dsn(void) {
  static char dsn[512];
  if (!qpt_pg_env_load()) return NULL;
  snprintf(dsn, sizeof dsn, "host=%s port=%s user=%s dbname=%s", getenv("PGHOST"),
           getenv("PGPORT"), getenv("PGUSER"), getenv("PGDATABASE"));
  return dsn;
}

int qpt_system(const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  int st = system(cmd);
  if (st == -1 || !WIFEXITED(st)) return -1;
  return WEXITSTATUS(st);
}

static char made[64][64];
static int nmade;
static pid_t made_by;

/* Directories a test made and did not remove itself go when its process
 * exits (not a forked child's exit: only the process that made them). */
static void tempdirs_at_exit(void) {
  if (getpid() == made_by) qpt_tempdirs_remove(NULL);
}

const char *qpt_tempdir(void) {
  static char bufs[16][64];
  static int next;
  if (made_by == 0) {
    made_by = getpid();
    atexit(tempdirs_at_exit);
  }
  char *b = bufs[next++ % 16];
  snprintf(b, 64, "/tmp/qprof-test.XXXXXX");
  if (mkdtemp(b) == NULL) return NULL;
  if (nmade < 64) snprintf(made[nmade++], sizeof made[0], "%s", b);
  return b;
}

qp_store *qpt_flushed_store(qp_profile *prof, const char *name) {
  char path[512], err[256];
  snprintf(path, sizeof path, "%s/%s", qpt_tempdir(), name);
  qp_store *st = NULL;
  if (qp_store_open(&st, path, QP_STORE_WRITE, NULL, err, sizeof err) != QP_OK)
    fail_msg("%s: %s", path, err);
  if (qp_profile_flush(prof, st) != QP_OK) fail_msg("flush into %s: %s", path, qp_store_errmsg(st));
  return st;
}

int qpt_tempdirs_remove(void **state) {
  (void)state;
  for (int i = 0; i < nmade; i++) qpt_system("rm -rf '%s'", made[i]);
  nmade = 0;
  return 0;
}

int qpt_run_capture(const char *dir, const char *cmd, char **out, char **err) {
  int rc = qpt_system("cd '%s' && %s >'%s/out.txt' 2>'%s/err.txt'", dir, cmd, dir, dir);
  char p[600];
  snprintf(p, sizeof p, "%s/out.txt", dir);
  char *o = qpt_read_file(p, NULL);
  snprintf(p, sizeof p, "%s/err.txt", dir);
  char *e = qpt_read_file(p, NULL);
  if (out) *out = o;
  else free(o);
  if (err) *err = e;
  else free(e);
  return rc;
}

char *qpt_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return NULL;
  }
  buf[n] = '\0';
  fclose(f);
  if (len) *len = (size_t)n;
  return buf;
}

qp_normalizer *qpt_normalizer(qp_dialect d) {
  qp_normalizer *n = NULL;
  char err[256];
  assert_int_equal(qp_normalizer_new(&n, d, NULL, 0, NULL, err, sizeof err), QP_OK);
  return n;
}

const char *qpt_normalize(const qp_normalizer *n, const char *sql, size_t len, uint64_t *fp) {
  static char out[QP_NORMALIZED_MAX];
  size_t olen = 0;
  uint64_t f = 0;
  assert_int_equal(qp_normalize(n, sql, len, out, sizeof out, &olen, &f), QP_OK);
  assert_int_equal(strlen(out), olen);
  if (fp != NULL) *fp = f;
  return out;
}

int qpt_sum_add(const qp_query_summary *q, void *ud) {
  qpt_sum *s = ud;
  s->calls += q->calls;
  s->errors += q->errors;
  s->total += q->total_ns;
  s->n++;
  s->sd = q->stddev_ns;
  return 0;
}
