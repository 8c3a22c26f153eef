/*
 * libFuzzer target for the default redaction of samples (lib/sql/redact.c),
 * which reads every statement a program sends. The first byte picks the
 * dialect (bit 0) and whether a known secret is appended as a statement of
 * its own (bit 1). Checks: the result is NUL-terminated and the input with
 * some byte ranges each replaced by one '?' (so never longer, and every byte
 * kept is in order); and an appended "; UPDATE u SET password = 'zq9Xw7'"
 * after input that leaves no string, comment, quoted name or dollar quote
 * open (and does not hold the secret itself) never survives.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sql/sql_int.h"

/* Whether out is in with ranges replaced by '?' (greedy match, with a
 * backtrack-free rule: a '?' in out either matches a '?' of in or stands
 * for a removed range). */
static bool is_redaction(const char *in, size_t n, const char *out, size_t m) {
  /* dynamic programming over (i, j) would be exact but quadratic; the
   * inputs are short, so do it with two rows */
  if (m > n) return false;
  bool *prev = calloc(m + 1, 1), *cur = calloc(m + 1, 1);
  if (prev == NULL || cur == NULL) abort();
  /* reach[j]: out[0..j) explains in[0..i) */
  prev[0] = true;
  /* open[j]: out[0..j) ends in a '?' standing for a range that may go on */
  bool *open_p = calloc(m + 1, 1), *open_c = calloc(m + 1, 1);
  if (open_p == NULL || open_c == NULL) abort();
  for (size_t i = 0; i < n; i++) {
    memset(cur, 0, m + 1);
    memset(open_c, 0, m + 1);
    for (size_t j = 0; j <= m; j++) {
      if (!prev[j] && !open_p[j]) continue;
      if (j < m && out[j] == in[i] && prev[j]) cur[j + 1] = true;            /* kept */
      if (j < m && out[j] == '?' && prev[j]) cur[j + 1] = open_c[j + 1] = true; /* a range starts */
      if (open_p[j]) cur[j] = open_c[j] = true;                               /* it goes on */
    }
    bool *t = prev;
    prev = cur;
    cur = t;
    t = open_p;
    open_p = open_c;
    open_c = t;
  }
  bool ok = prev[m];
  free(prev);
  free(cur);
  free(open_p);
  free(open_c);
  return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > 2048) return 0;
  const qp_dialect d = (data[0] & 1) ? QP_DIALECT_SQLITE : QP_DIALECT_POSTGRES;
  const bool secret = (data[0] >> 1) & 1;
  static const char tail[] = "; UPDATE u SET password = 'zq9Xw7'";
  size_t n = size - 1;
  char *in = malloc(n + sizeof tail);
  if (in == NULL) abort();
  memcpy(in, data + 1, n);
  bool closed = false;
  if (secret && memmem(in, n, "zq9Xw7", 6) == NULL) {
    /* only where the input leaves nothing open: its last token ends at its end */
    size_t pos = 0;
    qp_tok t;
    closed = true;
    while ((pos = qp__sql_lex(d, in, n, pos, &t)), t.type != QP_T_EOF)
      if (t.end == n && (t.type == QP_T_STRING || t.type == QP_T_COMMENT ||
                         t.type == QP_T_QIDENT || t.type == QP_T_OTHER))
        closed = false;
    /* a (, [ or a secret value still open before the ';' is closed by it,
     * which is what the redaction relies on; an odd quote is not */
    if (closed) {
      memcpy(in + n, tail, sizeof tail - 1);
      n += sizeof tail - 1;
    }
  }
  char *out = qp__sql_redact(d, in, n, NULL);
  if (out == NULL) abort();
  size_t m = strlen(out);
  if (memchr(in, '\0', n) == NULL && !is_redaction(in, n, out, m)) abort();
  if (closed && strstr(out, "zq9Xw7") != NULL) abort();
  qp__free(NULL, out);
  free(in);
  return 0;
}
