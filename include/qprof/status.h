/*
 * Status codes returned by every fallible qprof call.
 *
 * The list is one X-macro so that the enum, qp_strerror() and qp_errname()
 * cannot drift apart. Codes are appended, never renumbered: a program built
 * against an older qprof keeps the meaning of every number it knows.
 */
#ifndef QPROF_STATUS_H
#define QPROF_STATUS_H

#include "export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define QP_STATUS_MAP(X)                                                    \
  X(OK, 0, "success")                                                       \
  X(ERROR, 1, "unspecified error")                                          \
  X(NOMEM, 2, "out of memory")                                              \
  X(INVALID, 3, "invalid argument")                                         \
  X(SYNTAX, 4, "malformed input")                                           \
  X(IO, 5, "input/output error")                                            \
  X(NOTSTORE, 6, "file is not a qprof store")                               \
  X(SCHEMA, 7, "store schema is newer than this qprof")                     \
  X(NOTFOUND, 8, "not found")                                               \
  X(EXHAUSTED, 9, "pool exhausted: timed out waiting for a connection")     \
  X(UNAVAILABLE, 10, "database unavailable")                                \
  X(QUERY, 11, "query failed")                                              \
  X(BUSY, 12, "resource busy")                                              \
  X(CLOSED, 13, "handle is closed")                                         \
  X(UNSUPPORTED, 14, "operation not supported")                             \
  X(TOOBIG, 15, "value too large")                                          \
  X(PATTERN, 16, "invalid regular expression")                              \
  X(REFUSED, 17, "operation refused")                                       \
  X(TIMEOUT, 18, "timed out")                                               \
  X(WOULDBLOCK, 19, "no connection is free right now")                      \
  X(RANGE, 20, "value out of range")                                        \
  X(STATE, 21, "call not valid in the handle's current state")

typedef enum qp_status {
#define QP_STATUS_ENUM_(name, code, text) QP_##name = code,
  QP_STATUS_MAP(QP_STATUS_ENUM_)
#undef QP_STATUS_ENUM_
  QP_STATUS_COUNT_
} qp_status;

/*
 * A static English description of a status code, e.g. "out of memory".
 * Never NULL: unknown codes give "unknown status". Thread-safe.
 */
QP_EXPORT const char *qp_strerror(qp_status status);

/*
 * The code's symbolic name without the QP_ prefix, e.g. "NOMEM".
 * Never NULL: unknown codes give "UNKNOWN". Thread-safe.
 */
QP_EXPORT const char *qp_errname(qp_status status);

#ifdef __cplusplus
}
#endif
#endif
