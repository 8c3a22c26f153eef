/*
 * An allocator hook for out-of-memory tests: fails the Nth allocation (and,
 * with sticky, every one after it), counting from 1.
 */
#ifndef QP_FAILALLOC_H
#define QP_FAILALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include "qprof/core.h"

typedef struct qpt_failalloc {
  long fail_at; /* 0: never fail */
  bool sticky;
  long count;   /* allocations (not frees) seen */
  long live;    /* blocks currently allocated through the hook */
} qpt_failalloc;

/* Hooks whose allocator is driven by *fa. */
qp_hooks qpt_failalloc_hooks(qpt_failalloc *fa);

#endif
