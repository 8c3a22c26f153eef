/* Pool metrics: a snapshot with PgBouncer's names, and Prometheus text. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pool_int.h"

#define QP_POOL_COPY_gauge(field)
#define QP_POOL_COPY_counter(field) s->field = c->field;

static void snapshot(qp_pool *p, qp_pool_stats *s) {
  memset(s, 0, sizeof *s);
  s->size = sizeof *s;
  qp__pool_check_fork(p);
  pthread_mutex_lock(&p->mu);
  uint64_t now = qp__now_ns();
  s->cl_active = p->sc.n.in_use;
  s->cl_waiting = p->n_waiting;
  s->sv_active = p->sc.n.in_use;
  s->sv_login = p->sc.n.connecting;
  for (qp_conn *c = p->idle; c; c = c->next_idle) {
    if (p->o.validation_ms > 0 && qp__ns_since(now, c->idle_since_ns) >= (uint64_t)p->o.validation_ms * 1000000u)
      s->sv_used++;
    else s->sv_idle++;
  }
  s->maxwait_us = 0;
  for (const waiter *w = p->wq_head; w; w = w->next) {
    int64_t waited_us = (int64_t)(qp__ns_since(now, w->since) / 1000);
    if (waited_us > s->maxwait_us) s->maxwait_us = waited_us;
  }
  const pool_counters *c = &p->c;
#define QP_POOL_COPY_(kind, field, metric, help) QP_POOL_COPY_##kind(field)
  QP_POOL_METRICS(QP_POOL_COPY_)
#undef QP_POOL_COPY_
  memcpy(s->acquire_hist, c->acquire_hist, sizeof s->acquire_hist);
  memcpy(s->hold_hist, c->hold_hist, sizeof s->hold_hist);
  memcpy(s->connect_hist, c->connect_hist, sizeof s->connect_hist);
  pthread_mutex_unlock(&p->mu);
}

qp_status qp_pool_stats_get(qp_pool *p, qp_pool_stats *out) {
  if (p == NULL || out == NULL || out->size < QP_POOL_STATS_MIN_SIZE) return QP_INVALID;
  qp_pool_stats s = QP_POOL_STATS_INIT;
  snapshot(p, &s);
  size_t n = out->size < sizeof s ? out->size : sizeof s;
  s.size = out->size;
  memcpy(out, &s, n);
  return QP_OK;
}

static void gauge(qp__outbuf *o, const char *name, const char *help, const char *labels,
                  int64_t v) {
  qp__put(o,
          "# HELP qprof_pool_%s %s\n# TYPE qprof_pool_%s gauge\nqprof_pool_%s%s%s%s %" PRId64 "\n",
      name, help, name, name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", v);
}

static void counter(qp__outbuf *o, const char *name, const char *help, const char *labels,
                    uint64_t v) {
  qp__put(o,
      "# HELP qprof_pool_%s_total %s\n# TYPE qprof_pool_%s_total counter\n"
      "qprof_pool_%s_total%s%s%s %" PRIu64 "\n",
      name, help, name, name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", v);
}

static void histogram(qp__outbuf *o, const char *name, const char *help, const char *labels,
                      const uint64_t *h) {
  qp__put(o, "# HELP qprof_pool_%s_seconds %s\n# TYPE qprof_pool_%s_seconds histogram\n", name,
          help, name);
  uint64_t cum = 0;
  double sum = 0;
  for (int i = 0; i < QP_POOL_HIST_BUCKETS; i++) {
    cum += h[i];
    /* the sum is estimated from bucket midpoints: the buckets are all we keep */
    double lo = i == 0 ? 0 : (double)(1ull << (i - 1)), hi = (double)(1ull << i);
    sum += (double)h[i] * (lo + hi) / 2e6;
    if (i == QP_POOL_HIST_BUCKETS - 1) break;
    qp__put(o, "qprof_pool_%s_seconds_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name,
        labels ? labels : "", labels ? "," : "", hi / 1e6, cum);
  }
  qp__put(o, "qprof_pool_%s_seconds_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name,
      labels ? labels : "", labels ? "," : "", cum);
  qp__put(o,
          "qprof_pool_%s_seconds_sum%s%s%s %.6f\nqprof_pool_%s_seconds_count%s%s%s %" PRIu64 "\n",
      name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", sum, name,
      labels ? "{" : "", labels ? labels : "", labels ? "}" : "", cum);
}

static size_t render(qp_pool *p, const char *labels, char *buf, size_t cap) {
  qp_pool_stats s = QP_POOL_STATS_INIT;
  snapshot(p, &s);
  if (labels != NULL && *labels == '\0') labels = NULL;
  qp__outbuf o = {buf, cap, 0};
  if (cap > 0) buf[0] = '\0';
#define QP_POOL_RENDER_(kind, field, metric, help) kind(&o, metric, help, labels, s.field);
  QP_POOL_METRICS(QP_POOL_RENDER_)
#undef QP_POOL_RENDER_
  histogram(&o, "acquire", "Time to acquire a connection", labels, s.acquire_hist);
  histogram(&o, "hold", "Time a lease was held", labels, s.hold_hist);
  histogram(&o, "connect", "Time to open a connection", labels, s.connect_hist);
  return o.len;
}

qp_status qp_pool_prometheus(qp_pool *p, const char *labels, char *buf, size_t cap,
                             size_t *needed) {
  if (p == NULL || (buf == NULL && cap > 0)) return QP_INVALID;
  size_t n = render(p, labels, buf, cap);
  if (needed) *needed = n;
  return n < cap ? QP_OK : QP_TOOBIG;
}

qp_status qp_pool_prometheus_alloc(qp_pool *p, const char *labels, char **out) {
  if (out == NULL) return QP_INVALID;
  *out = NULL;
  if (p == NULL) return QP_INVALID;
  size_t cap = 16384;
  for (int attempt = 0; attempt < 4; attempt++) {
    char *buf = qp__malloc(&p->hooks, cap);
    if (buf == NULL) return QP_NOMEM;
    size_t n = render(p, labels, buf, cap);
    if (n < cap) {
      *out = buf;
      return QP_OK;
    }
    qp__free(&p->hooks, buf);
    cap = n + 1024; /* a gauge may have grown a digit meanwhile */
  }
  return QP_NOMEM;
}

void qp_pool_string_free(qp_pool *p, char *s) {
  if (s == NULL) return;
  qp__free(p ? &p->hooks : NULL, s);
}
