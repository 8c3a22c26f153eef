/*
 * Inside the report model (include/qprof/report.h): the report's entries,
 * shared by report.c (build, filter, rank), series.c (time series and
 * histograms) and diff.c (two reports joined per query).
 */
#ifndef QPROF_REPORT_INT_H
#define QPROF_REPORT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"
#include "qprof/report.h"
#include "stats/stats_int.h"
#include "store/store_int.h"

/* One query of the report: its summary (strings owned here) and the merged
 * latency histogram behind it (the rest of the statistics is in the
 * summary). */
typedef struct qp_rentry {
  qp_query_summary s;
  qp_hist hist;
  qp_backend backend;
  uint64_t hash; /* of the key (fingerprint, backend, the key's dimensions) */
  double share;
  /* one block, starting at query; a dimension not in the key is NULL
   * (user, application and host are only in s, to keep entries small) */
  char *query, *codes, *database, *sample;
} qp_rentry;

/* The dimension filters of a report (report.c), kept for the series. */
typedef struct qp_rfilter qp_rfilter;

struct qp_report {
  qp_hooks hooks;
  qp_err err;
  qp_store *store; /* borrowed */
  qp_rentry *v;
  size_t n, cap;
  size_t *slots; /* key hash -> index + 1; 0 is empty */
  size_t nslots;
  qp_report_totals t;
  char *location;
  qp_window w;
  qp_report_sort sort;
  unsigned by;         /* the key's dimensions (QP_REPORT_KEY bits) */
  qp_rfilter *filter;  /* the dimension filters; NULL: none */
  char *filters;       /* the filters' texts as given (totals point into it) */
};

/* The key's dimensions of a stored row (NULL for those not in `by`):
 * database, user, application, host. */
void qp__report_row_dims(const qp_entry *row, unsigned by, const char *d[4]);
uint64_t qp__report_key_hash(uint64_t fp, qp_backend be, const char *const d[4]);
/* The entry of `r` with this key, or NULL. */
const qp_rentry *qp__report_find(const qp_report *r, uint64_t fp, qp_backend be,
                                 const char *const d[4], uint64_t hash);
/* Whether the report's dimension filters keep a stored row: 1 yes, 0 no,
 * -1 out of memory. */
int qp__report_keep_row(qp_report *r, const qp_entry *row);
/* Orders two entries by key: fingerprint, backend name, the dimensions. */
int qp__report_key_cmp(const qp_rentry *a, const qp_rentry *b);
/* The ranking's order (report.h): `k` descending, then total time, then
 * the key. */
int qp__report_rank_cmp(const qp_rentry *a, const qp_rentry *b, qp_report_sort k);

#endif
