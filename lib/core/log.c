#include <stdio.h>

#include "internal.h"

const char *qp_log_level_name(qp_log_level level) {
  switch (level) {
  case QP_LOG_DEBUG: return "debug";
  case QP_LOG_INFO: return "info";
  case QP_LOG_WARN: return "warn";
  case QP_LOG_ERROR: return "error";
  }
  return "unknown";
}

void qp__log(const qp_hooks *h, qp_log_level level, const char *fmt, ...) {
  if (!qp__log_enabled(h, level)) return;
  /* Formatting happens on the stack: a log line must never be the
   * allocation that fails, nor cost a malloc on a hot path. */
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  h->log_fn(level, line, h->log_ud);
}
