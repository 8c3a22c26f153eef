#include "qprof/status.h"

const char *qp_strerror(qp_status status) {
  switch (status) {
#define QP_STATUS_TEXT_(name, code, text) \
  case QP_##name:                         \
    return text;
    QP_STATUS_MAP(QP_STATUS_TEXT_)
#undef QP_STATUS_TEXT_
  default:
    return "unknown status";
  }
}

const char *qp_errname(qp_status status) {
  switch (status) {
#define QP_STATUS_NAME_(name, code, text) \
  case QP_##name:                         \
    return #name;
    QP_STATUS_MAP(QP_STATUS_NAME_)
#undef QP_STATUS_NAME_
  default:
    return "UNKNOWN";
  }
}
