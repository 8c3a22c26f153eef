#include <stdio.h>

#include "internal.h"

void qp__err_clear(qp_err *e) {
  e->code = QP_OK;
  e->msg[0] = '\0';
}

qp_status qp__err_vset(qp_err *e, qp_status code, const char *fmt, va_list ap) {
  e->code = code;
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  return code;
}

qp_status qp__err_set(qp_err *e, qp_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  qp__err_vset(e, code, fmt, ap);
  va_end(ap);
  return code;
}

qp_status qp__errbuf_set(char *buf, size_t len, qp_status code, const char *fmt, ...) {
  if (buf != NULL && len > 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
  }
  return code;
}
