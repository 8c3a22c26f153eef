/*
 * Between the SQLite advisor (sqlite.c: the copy, its plans, the
 * candidates tried in a savepoint) and sqlite_values.c (the representative
 * values bound to a statement's placeholders, from the file's
 * sqlite_stat1/sqlite_stat4 or its tables). Everything runs on the copy's
 * lease `c`. Private to the library.
 */
#ifndef QPROF_ADVISE_SQLITE_INT_H
#define QPROF_ADVISE_SQLITE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "advise/advise_int.h"
#include "sql/sql_int.h"

/* ---- sqlite.c: tokens, tables, failures ------------------------------------------ */

/* Whether token t of sql is the keyword w (any case). */
bool qp__adv_sq_word(const char *sql, const qp_tok *t, const char *w);
/* Whether token t is a name: a word or a quoted identifier. */
bool qp__adv_sq_name(const qp_tok *t);
/* The name token t of sql spells, unquoted, into out (cut to cap). */
void qp__adv_sq_text(const char *sql, const qp_tok *t, char *out, size_t cap);
/* The table of the copy called `name` (any case) into out; false when
 * there is none. */
bool qp__adv_sq_table_named(qp_conn *c, const char *name, char *out, size_t cap);
/* The table a name of x->run stands for: itself when it is a table of the
 * copy, else the table written before it as an alias ("FROM orders o",
 * "orders AS o"); false when neither. */
bool qp__adv_sq_alias_table(adv_ctx *x, qp_conn *c, const char *name, char *out, size_t cap);
/* Sets x->st and x->msg ("what: the lease's message", or errno's when c
 * is NULL), unless an earlier failure is already there. */
void qp__adv_sq_fail(adv_ctx *x, qp_status st, const char *what, qp_conn *c);

/* ---- sqlite_values.c: placeholders bound to representative values ---------------- */

/* What the file's last ANALYZE left: sqlite_stat1's rows per leading
 * value and sqlite_stat4's samples of every index led by a column. */
typedef struct qp__adv_sq_stats qp__adv_sq_stats;

/* Whether the statement (NUL-terminated) has a placeholder. */
bool qp__adv_sq_has_params(const char *sql);
/* Reads the copy's sqlite_stat1 and sqlite_stat4 (as the live file had
 * them: call it before the advisor's own ANALYZE replaces them); what
 * cannot be read is left out. NULL when out of memory (x->st and x->msg
 * say so). Freed with qp__adv_sq_stats_free. */
qp__adv_sq_stats *qp__adv_sq_stats_new(adv_ctx *x, qp_conn *c);
/* Frees what qp__adv_sq_stats_new returned; NULL is a no-op. */
void qp__adv_sq_stats_free(adv_ctx *x, qp__adv_sq_stats *s);
/* Replaces every placeholder of x->run by a representative value (from
 * `stats`, else read from the table on the copy) and says which in a
 * note; on failure x->st and x->msg say why and x->run is unchanged. */
void qp__adv_sq_bind(adv_ctx *x, qp_conn *c, const qp__adv_sq_stats *stats);

#endif
