/*
 * Reads the conditions PostgreSQL prints in a plan (Filter, Index Cond,
 * Join Filter, Hash Cond, Merge Cond) into the simple predicates the
 * advisor can index: "column op constant", "column op other column" (a
 * join), "f(column) op constant" (an expression), LIKE with a fixed prefix.
 * Only a top-level AND of such predicates is read; anything else (OR,
 * subplans, arrays it does not know) is skipped, never guessed. Private to
 * the library.
 */
#ifndef QPROF_ADVISE_COND_H
#define QPROF_ADVISE_COND_H

#include <stdbool.h>
#include <stddef.h>

#define QP__COND_MAX 16

typedef enum qp__cond_op {
  QP__COND_NONE = 0,
  QP__COND_EQ,         /* = (also IN: = ANY ('{...}')) */
  QP__COND_RANGE,      /* <, <=, >, >= */
  QP__COND_LIKE_PREFIX,/* ~~ 'abc%' (LIKE with a fixed prefix) */
  QP__COND_IS_NULL,    /* IS NULL */
  QP__COND_BOOL        /* a bare boolean column, or NOT column */
} qp__cond_op;

typedef struct qp__cond {
  qp__cond_op op;
  char qual[64];    /* table alias before the column, "" when none */
  char column[64];  /* the column (unquoted); for an expression, its column */
  char expr[192];   /* "lower(email)" for an expression predicate, else "" */
  char rhs_qual[64], rhs_column[64]; /* the other column of a join, else "" */
  char text[256];   /* the predicate as printed, for partial-index WHERE */
  bool negated;     /* NOT column (QP__COND_BOOL) */
} qp__cond;

/* Reads up to max predicates from `text`; returns how many. Never fails:
 * what it cannot read it leaves out. Thread-safe. */
size_t qp__cond_read(const char *text, qp__cond *out, size_t max);

#endif
