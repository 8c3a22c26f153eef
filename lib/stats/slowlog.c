/* The slow-query log line (see slowlog.h for the rule). */
#include "slowlog.h"

#include <inttypes.h>
#include <stdio.h>

#include "internal.h"
#include "qprof/sql.h"

size_t qp__slow_line(const qp_profile *prof, const qp_query_event *ev, uint64_t threshold_ns,
                     char *buf, size_t cap) {
  if (cap == 0) return 0;
  const char *text = ev->normalized;
  size_t len = ev->normalized_len;
  uint64_t fp = ev->fingerprint;
  char norm[QP__SLOW_TEXT_MAX + 1];
  if (text == NULL) {
    /* Cut at QP__SLOW_TEXT_MAX: the fingerprint still covers the whole text. */
    if (prof != NULL && ev->sql != NULL &&
        qp_profile_normalize(prof, ev->backend, ev->sql, ev->sql_len, norm, sizeof norm, &len,
                             &fp) == QP_OK) {
      text = norm;
    } else {
      text = "(not normalized)";
      len = 16;
      fp = 0;
    }
  }
  if (len > QP__SLOW_TEXT_MAX) len = QP__SLOW_TEXT_MAX;
  char hex[QP_FINGERPRINT_HEX_SIZE];
  qp_fingerprint_hex(fp, hex);
  int n = snprintf(buf, cap,
                   "slow query: %.3f ms (threshold %.3f ms) fingerprint %s rows %" PRId64
                   "%s%s database %s: %.*s",
                   (double)ev->duration_ns / 1e6, (double)threshold_ns / 1e6, hex, ev->rows,
                   ev->error ? " error " : "", ev->error ? ev->error : "",
                   ev->database && ev->database[0] ? ev->database : "?", (int)len, text);
  if (n < 0) {
    buf[0] = '\0';
    return 0;
  }
  return (size_t)n < cap ? (size_t)n : cap - 1;
}
