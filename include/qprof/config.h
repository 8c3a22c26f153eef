/*
 * qprof's options: one table of {name, type, default, doc} that drives
 * qp_config setters, the QPROF_* environment variables the LD_PRELOAD shim
 * reads, and `qprof config --list`. The table is static and read-only; a
 * qp_config holds one set of values for it.
 *
 * Names use dots for grouping ("pool.max_size"); the environment variable is
 * QPROF_ followed by the name upper-cased with dots turned into underscores
 * (QPROF_POOL_MAX_SIZE).
 */
#ifndef QPROF_CONFIG_H
#define QPROF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qp_opt_type {
  QP_OPT_BOOL = 0,   /* true/false, on/off, yes/no, 1/0 */
  QP_OPT_INT = 1,    /* signed 64-bit integer within [min, max] */
  QP_OPT_DOUBLE = 2, /* finite number within [min, max] */
  QP_OPT_STRING = 3  /* any text; "" means unset */
} qp_opt_type;

typedef struct qp_option_info {
  const char *name;          /* "slow_ms" */
  const char *env;           /* "QPROF_SLOW_MS" */
  qp_opt_type type;
  const char *default_value; /* as text, in the form qp_config_set takes */
  double min, max;           /* bounds for INT and DOUBLE; ignored otherwise */
  const char *unit;          /* "ms", "bytes", ... or "" */
  const char *doc;           /* one sentence */
} qp_option_info;

/* Number of options in the table. Thread-safe. */
QP_EXPORT size_t qp_option_count(void);

/* The i-th option (0 <= i < qp_option_count()), or NULL. Static storage; thread-safe. */
QP_EXPORT const qp_option_info *qp_option_at(size_t i);

/* The option named `name` (exact match), or NULL. Static storage; thread-safe. */
QP_EXPORT const qp_option_info *qp_option_find(const char *name);

typedef struct qp_config qp_config;

/*
 * Creates a configuration holding every option's default. `hooks` is copied
 * (may be NULL). On QP_NOMEM *out is NULL. The handle may be read from many
 * threads at once; setters need exclusive access.
 */
QP_EXPORT qp_status qp_config_new(qp_config **out, const qp_hooks *hooks);

/* Frees the configuration; NULL is a no-op. */
QP_EXPORT void qp_config_free(qp_config *cfg);

/*
 * Sets option `name` from its text form. `value` is copied. Errors:
 * QP_NOTFOUND (unknown name), QP_INVALID (not of the option's type),
 * QP_RANGE (outside its bounds), QP_NOMEM. On error the old value is kept
 * and qp_config_errmsg() says which option and why.
 */
QP_EXPORT qp_status qp_config_set(qp_config *cfg, const char *name, const char *value);

/*
 * Applies every QPROF_* variable that is set in the process environment.
 * Stops at the first bad value (status as for qp_config_set); values applied
 * before it stay applied.
 */
QP_EXPORT qp_status qp_config_load_env(qp_config *cfg);

/*
 * Typed getters. The option must exist and be of that type; otherwise they
 * return 0, false or "" (a programming error, not a run-time condition).
 * The string is owned by `cfg` and valid until the next qp_config_set of that
 * option or qp_config_free.
 */
QP_EXPORT int64_t qp_config_int(const qp_config *cfg, const char *name);
QP_EXPORT double qp_config_double(const qp_config *cfg, const char *name);
QP_EXPORT bool qp_config_bool(const qp_config *cfg, const char *name);
QP_EXPORT const char *qp_config_string(const qp_config *cfg, const char *name);

/*
 * The current value of `name` as text, for display (`qprof config --list`).
 * Owned by `cfg`, valid as for qp_config_string; NULL if the name is unknown.
 */
QP_EXPORT const char *qp_config_text(const qp_config *cfg, const char *name);

/* Message about the last failed call on `cfg`; "" after a success. Owned by `cfg`. */
QP_EXPORT const char *qp_config_errmsg(const qp_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
