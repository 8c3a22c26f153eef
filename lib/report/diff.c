/* Two reports joined per query, with the regression gate (include/qprof/report.h). */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "report/report_int.h"

/* The size of the first qp_diff_options (see QP_REPORT_OPTIONS_V1_SIZE in report.c). */
#define QP_DIFF_OPTIONS_V1_SIZE (offsetof(qp_diff_options, hooks) + sizeof(const qp_hooks *))

static const char *const status_names[] = {"unchanged", "changed", "new", "vanished"};

const char *qp_diff_status_name(qp_diff_status st) {
  return (unsigned)st < QP_ARRAY_LEN(status_names) ? status_names[st] : NULL;
}

void qp_diff_options_init(qp_diff_options *o) {
  if (o == NULL) return;
  memset(o, 0, sizeof *o);
  o->size = sizeof *o;
  o->fail_above_pct = NAN;
  o->min_calls = 1;
}

typedef struct dentry {
  qp_diff_entry e;
  const qp_rentry *key; /* the side that orders it */
} dentry;

struct qp_diff {
  qp_hooks hooks;
  dentry *v;
  size_t n;
  qp_diff_counts counts;
};

static double pct(double a, double b) {
  if (a == 0) return b == 0 ? 0 : NAN;
  return (b - a) / a * 100.0;
}

static double order_val(const qp_diff_entry *e) {
  if (e->status == QP_DIFF_NEW) return INFINITY;
  if (e->status == QP_DIFF_VANISHED) return -INFINITY;
  return isnan(e->p95_pct) ? 0 : e->p95_pct;
}

static int cmp_dentry(const void *a, const void *b) {
  const dentry *x = a, *y = b;
  double vx = order_val(&x->e), vy = order_val(&y->e);
  if (vx != vy) return vx > vy ? -1 : 1;
  return qp__report_key_cmp(x->key, y->key);
}

qp_status qp_diff_new(qp_diff **out, const qp_report *base, const qp_report *cur,
                      const qp_diff_options *o, char *errbuf, size_t errlen) {
  if (out == NULL) return qp__errbuf_set(errbuf, errlen, QP_INVALID, "out is NULL");
  *out = NULL;
  if (base == NULL || cur == NULL || o == NULL)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "a report or the options are NULL");
  if (o->size < QP_DIFF_OPTIONS_V1_SIZE)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "options not set up with qp_diff_options_init (size %zu)", o->size);
  if (o->fail_above_pct < 0)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID, "fail_above_pct %g is negative",
                          o->fail_above_pct);
  if (base->by != cur->by)
    return qp__errbuf_set(errbuf, errlen, QP_INVALID,
                          "the reports are keyed by different dimensions (by %#x and %#x): a "
                          "diff joins rows of one key",
                          base->by, cur->by);
  qp_hooks h;
  qp__hooks_init(&h, o->hooks);
  qp_diff *d = qp__calloc(&h, 1, sizeof *d);
  if (d != NULL) {
    d->hooks = h;
    d->v = qp__calloc(&h, base->n + cur->n + 1, sizeof *d->v);
  }
  if (d == NULL || d->v == NULL) {
    qp_diff_free(d);
    return qp__errbuf_set(errbuf, errlen, QP_NOMEM, "out of memory");
  }
  bool gate = !isnan(o->fail_above_pct);
  /* every query of the new side, with its base if any */
  for (size_t i = 0; i < cur->n; i++) {
    const qp_rentry *c = &cur->v[i];
    const char *cd[4] = {c->database, c->s.user, c->s.application, c->s.host};
    const qp_rentry *b = qp__report_find(base, c->s.fingerprint, c->backend, cd, c->hash);
    dentry *x = &d->v[d->n++];
    x->key = c;
    x->e.cur = &c->s;
    x->e.base = b != NULL ? &b->s : NULL;
    x->e.calls_pct = x->e.mean_pct = x->e.p95_pct = NAN;
    if (b == NULL) {
      x->e.status = QP_DIFF_NEW;
      d->counts.added++;
      continue;
    }
    x->e.calls_pct = pct((double)b->s.calls, (double)c->s.calls);
    x->e.mean_pct = pct(b->s.mean_ns, c->s.mean_ns);
    x->e.p95_pct = pct(b->s.p95_ns, c->s.p95_ns);
    bool same = b->s.calls == c->s.calls && b->s.total_ns == c->s.total_ns &&
                b->s.p95_ns == c->s.p95_ns;
    x->e.status = same ? QP_DIFF_UNCHANGED : QP_DIFF_CHANGED;
    if (same) d->counts.unchanged++;
    else d->counts.changed++;
    bool enough = b->s.calls >= o->min_calls && c->s.calls >= o->min_calls;
    if (gate && enough && !isnan(x->e.p95_pct) && x->e.p95_pct > o->fail_above_pct) {
      x->e.regression = true;
      d->counts.regressions++;
    }
  }
  /* then the queries only the base has */
  for (size_t i = 0; i < base->n; i++) {
    const qp_rentry *b = &base->v[i];
    const char *bd[4] = {b->database, b->s.user, b->s.application, b->s.host};
    if (qp__report_find(cur, b->s.fingerprint, b->backend, bd, b->hash) != NULL) continue;
    dentry *x = &d->v[d->n++];
    x->key = b;
    x->e.base = &b->s;
    x->e.status = QP_DIFF_VANISHED;
    x->e.calls_pct = x->e.mean_pct = x->e.p95_pct = NAN;
    d->counts.vanished++;
  }
  if (d->n > 1) qsort(d->v, d->n, sizeof *d->v, cmp_dentry);
  *out = d;
  return QP_OK;
}

void qp_diff_free(qp_diff *d) {
  if (d == NULL) return;
  qp_hooks h = d->hooks;
  qp__free(&h, d->v);
  qp__free(&h, d);
}

size_t qp_diff_count(const qp_diff *d) { return d == NULL ? 0 : d->n; }

const qp_diff_entry *qp_diff_entry_at(const qp_diff *d, size_t i) {
  return d == NULL || i >= d->n ? NULL : &d->v[i].e;
}

const qp_diff_counts *qp_diff_counts_get(const qp_diff *d) { return d == NULL ? NULL : &d->counts; }
