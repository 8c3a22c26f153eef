/*
 * The advisor's part of the HTML report (report_advice.c): the runs of
 * `qprof advise --save` kept in a store, shown as the "Advisor findings"
 * section and as an "Advice" list in the details of each query they help
 * (docs/report-html.md). The fingerprints the saved documents name are
 * parsed once, when the advice is loaded.
 */
#ifndef QPROF_REPORT_ADVICE_H
#define QPROF_REPORT_ADVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qprof/qprof.h"

typedef struct rq_advice rq_advice;

/* The advice saved in `store` (newest first, at most 8 runs) for a page of
 * report `r` whose first `shown` queries have details. A store that cannot
 * give it, or no memory, gives an empty advice: the page then says nothing
 * of advice. NULL only when out of memory; free with rq_advice_free. */
rq_advice *rq_advice_load(qp_store *store, qp_report *r, size_t shown);

/* How many saved runs it holds (0: the page has no advice section). */
size_t rq_advice_runs(const rq_advice *a);

/* The "Advisor findings" section; nothing when there is no saved run. */
void rq_advice_section(FILE *f, rq_advice *a);

/* In the details of the query with this fingerprint: the saved indexes
 * that help it ("Advice"), nothing when none does. */
void rq_advice_for_query(FILE *f, rq_advice *a, uint64_t fingerprint);

/* Frees it; NULL is a no-op. */
void rq_advice_free(rq_advice *a);

#endif
