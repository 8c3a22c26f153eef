/*
 * Process-independent plumbing shared by every qprof handle: where memory
 * comes from and where diagnostics go.
 *
 * The library never prints, exits or aborts. Each constructor takes an
 * optional `const qp_hooks *`; the handle copies the struct (not what its
 * pointers point to), so the caller may free the struct after the call but
 * must keep the functions and user data valid for the handle's lifetime.
 * Passing NULL means: malloc/realloc/free, and no logging at all.
 */
#ifndef QPROF_CORE_H
#define QPROF_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "export.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qp_log_level {
  QP_LOG_DEBUG = 0,
  QP_LOG_INFO = 1,
  QP_LOG_WARN = 2,
  QP_LOG_ERROR = 3
} qp_log_level;

/*
 * One allocator function with realloc semantics, as in Lua's lua_Alloc:
 * realloc_fn(NULL, n, ud) allocates, realloc_fn(p, 0, ud) frees and returns
 * NULL, anything else resizes. Returning NULL for n > 0 is out of memory, which
 * every qprof call reports as QP_NOMEM and survives.
 *
 * log_fn receives one line without a trailing newline; the string is valid
 * only during the call. It may be called from any thread that uses the handle
 * (and, for the pool, from its maintenance thread), so it must be thread-safe.
 */
typedef struct qp_hooks {
  void *(*realloc_fn)(void *ptr, size_t size, void *ud);
  void *alloc_ud;
  void (*log_fn)(qp_log_level level, const char *message, void *ud);
  void *log_ud;
  qp_log_level log_min_level; /* messages below this level are not built */
} qp_hooks;

/* Lower-case name of a level ("debug", "info", "warn", "error"). Thread-safe. */
QP_EXPORT const char *qp_log_level_name(qp_log_level level);

/*
 * Versions of qprof and of the libraries it was built against and runs with,
 * as static strings: qprof, libpq (run time), SQLite (run time), PCRE2,
 * xxHash. Thread-safe; never NULL.
 */
QP_EXPORT const char *qp_version(void);
QP_EXPORT const char *qp_libpq_version(void);
QP_EXPORT const char *qp_sqlite_version(void);
QP_EXPORT const char *qp_pcre2_version(void);

/*
 * Copies `text` into `buf` with every password in it replaced by "***", for
 * showing a store location, a DSN, any option value, or a message or log line
 * that quotes one. `text` may be a DSN or hold DSNs anywhere (at the start of
 * the text or after white space, a quote or a bracket). Removed: the password
 * of a postgresql:// or postgres:// URI (user:PASSWORD@host), its password=
 * query parameter (?password= or &password=), and the value of a password=
 * keyword as in a keyword=value DSN, quoted or not ("password = 'it\'s'").
 * Scheme and keyword are matched ignoring case, so a misspelt DSN is covered
 * too. Anything else is copied unchanged: text without a password comes back
 * as it was. The PGPASSWORD variable and ~/.pgpass are not part of the text
 * and are not looked at.
 *
 * `text` is borrowed; NULL is taken as "". At most `len` bytes are written to
 * `buf`, always NUL-terminated when len > 0 (a short buffer gets a redacted
 * prefix, never part of a password). Returns the length of the whole redacted
 * text, as snprintf does: a result >= len means it was cut short. Never fails;
 * thread-safe.
 */
QP_EXPORT size_t qp_dsn_redact(const char *text, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
