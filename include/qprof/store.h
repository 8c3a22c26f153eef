/*
 * The profile store: where flushed statistics live. An SQLite file by default
 * (one file, nothing to start, many processes may write it at once); a
 * PostgreSQL database (postgresql:// or keyword=value DSN) as the central
 * store for a fleet.
 */
#ifndef QPROF_STORE_H
#define QPROF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct qp_store qp_store;

typedef enum qp_store_mode {
  QP_STORE_READ = 0,  /* open an existing store read-only; never creates or migrates */
  QP_STORE_WRITE = 1  /* open or create (SQLite file mode 0600), migrate older schemas */
} qp_store_mode;

/*
 * Opens the store at `location`: a file path (SQLite) or a PostgreSQL DSN.
 * `location` is copied; `hooks` copied (may be NULL).
 * Errors: QP_NOTSTORE (the file exists but is not a qprof store: it is never
 * modified), QP_SCHEMA (written by a newer qprof), QP_IO (cannot open or
 * create), QP_NOTFOUND (READ mode and no such store), QP_UNAVAILABLE (the
 * PostgreSQL store cannot be reached), QP_NOMEM. On error *out is NULL and
 * errbuf (may be NULL) holds a message naming the location (with any
 * password removed).
 * Thread-safety: a store handle is used by one thread at a time.
 */
QP_EXPORT qp_status qp_store_open(qp_store **out, const char *location, qp_store_mode mode,
                                  const qp_hooks *hooks, char *errbuf, size_t errlen);

/* Closes the store; NULL is a no-op. */
QP_EXPORT void qp_store_close(qp_store *s);

/* Message about the last failed call on `s`; "" after a success. Owned by `s`. */
QP_EXPORT const char *qp_store_errmsg(const qp_store *s);

#ifdef __cplusplus
}
#endif
#endif
