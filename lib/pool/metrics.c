/* Pool metrics: a snapshot with PgBouncer's names, and Prometheus text. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pool_int.h"

void qp_pool_stats_get(qp_pool *p, qp_pool_stats *s) {
  memset(s, 0, sizeof *s);
  if (p == NULL) return;
  qp__pool_check_fork(p);
  pthread_mutex_lock(&p->mu);
  uint64_t now = qp__now_ns();
  s->cl_active = p->n_in_use;
  s->cl_waiting = p->n_waiting;
  s->sv_active = p->n_in_use;
  s->sv_login = p->n_connecting;
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
  s->total_xact_count = c->xacts;
  s->total_wait_time_us = c->wait_us;
  s->acquires = c->acquires;
  s->timeouts = c->timeouts;
  s->wouldblocks = c->wouldblocks;
  s->unavailable = c->unavailable;
  s->connects = c->connects;
  s->connect_failures = c->connect_failures;
  s->closed = c->closed;
  s->broken = c->broken;
  s->expired = c->expired;
  s->idle_closed = c->idle_closed;
  s->rollbacks = c->rollbacks;
  s->resets = c->resets;
  s->validation_failures = c->validation_failures;
  s->leaks = c->leaks;
  s->fork_drops = c->fork_drops;
  s->total_query_count = c->q_count;
  s->total_query_time_us = c->q_time_us;
  s->total_error_count = c->q_errors;
  s->reprepares = c->reprepares;
  memcpy(s->acquire_hist, c->acquire_hist, sizeof s->acquire_hist);
  memcpy(s->hold_hist, c->hold_hist, sizeof s->hold_hist);
  memcpy(s->connect_hist, c->connect_hist, sizeof s->connect_hist);
  pthread_mutex_unlock(&p->mu);
}

typedef struct outbuf {
  char *buf;
  size_t cap, len;
} outbuf;

static void put(outbuf *o, const char *fmt, ...) QP_PRINTF(2, 3);
static void put(outbuf *o, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = o->len < o->cap ? o->cap - o->len : 0;
  int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
  va_end(ap);
  if (n > 0) o->len += (size_t)n;
}

static void gauge(outbuf *o, const char *name, const char *help, const char *labels, int64_t v) {
  put(o, "# HELP qprof_pool_%s %s\n# TYPE qprof_pool_%s gauge\nqprof_pool_%s%s%s%s %" PRId64 "\n",
      name, help, name, name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", v);
}

static void counter(outbuf *o, const char *name, const char *help, const char *labels, uint64_t v) {
  put(o,
      "# HELP qprof_pool_%s_total %s\n# TYPE qprof_pool_%s_total counter\n"
      "qprof_pool_%s_total%s%s%s %" PRIu64 "\n",
      name, help, name, name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", v);
}

static void histogram(outbuf *o, const char *name, const char *help, const char *labels,
                      const uint64_t *h) {
  put(o, "# HELP qprof_pool_%s_seconds %s\n# TYPE qprof_pool_%s_seconds histogram\n", name, help,
      name);
  uint64_t cum = 0;
  double sum = 0;
  for (int i = 0; i < QP_POOL_HIST_BUCKETS; i++) {
    cum += h[i];
    /* the sum is estimated from bucket midpoints: the buckets are all we keep */
    double lo = i == 0 ? 0 : (double)(1ull << (i - 1)), hi = (double)(1ull << i);
    sum += (double)h[i] * (lo + hi) / 2e6;
    if (i == QP_POOL_HIST_BUCKETS - 1) break;
    put(o, "qprof_pool_%s_seconds_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name,
        labels ? labels : "", labels ? "," : "", hi / 1e6, cum);
  }
  put(o, "qprof_pool_%s_seconds_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name,
      labels ? labels : "", labels ? "," : "", cum);
  put(o, "qprof_pool_%s_seconds_sum%s%s%s %.6f\nqprof_pool_%s_seconds_count%s%s%s %" PRIu64 "\n",
      name, labels ? "{" : "", labels ? labels : "", labels ? "}" : "", sum, name,
      labels ? "{" : "", labels ? labels : "", labels ? "}" : "", cum);
}

static size_t render(qp_pool *p, const char *labels, char *buf, size_t cap) {
  qp_pool_stats s;
  qp_pool_stats_get(p, &s);
  if (labels != NULL && *labels == '\0') labels = NULL;
  outbuf o = {buf, cap, 0};
  if (cap > 0) buf[0] = '\0';
  gauge(&o, "cl_active", "Leases held right now", labels, s.cl_active);
  gauge(&o, "cl_waiting", "Acquires waiting for a connection", labels, s.cl_waiting);
  gauge(&o, "sv_active", "Connections in use", labels, s.sv_active);
  gauge(&o, "sv_idle", "Idle connections, recently used", labels, s.sv_idle);
  gauge(&o, "sv_used", "Idle connections that will be validated before reuse", labels, s.sv_used);
  gauge(&o, "sv_login", "Connections being opened", labels, s.sv_login);
  gauge(&o, "maxwait_us", "Longest current wait for a connection, microseconds", labels,
        s.maxwait_us);
  counter(&o, "query", "Statements run through the pool", labels, s.total_query_count);
  counter(&o, "query_time_us", "Time spent in statements, microseconds", labels,
          s.total_query_time_us);
  counter(&o, "query_error", "Statements that failed", labels, s.total_error_count);
  counter(&o, "xact", "Leases ended", labels, s.total_xact_count);
  counter(&o, "wait_time_us", "Time acquires spent waiting, microseconds", labels,
          s.total_wait_time_us);
  counter(&o, "acquire", "Successful acquires", labels, s.acquires);
  counter(&o, "timeout", "Acquires that timed out (exhausted)", labels, s.timeouts);
  counter(&o, "wouldblock", "Try-acquires that found nothing free", labels, s.wouldblocks);
  counter(&o, "unavailable", "Acquires that failed: database unavailable", labels, s.unavailable);
  counter(&o, "connect", "Connections opened", labels, s.connects);
  counter(&o, "connect_failure", "Connection attempts that failed", labels, s.connect_failures);
  counter(&o, "close", "Connections closed", labels, s.closed);
  counter(&o, "broken", "Connections discarded because they broke", labels, s.broken);
  counter(&o, "expired", "Connections retired at max lifetime", labels, s.expired);
  counter(&o, "idle_close", "Connections closed after the idle timeout", labels, s.idle_closed);
  counter(&o, "rollback", "Transactions rolled back on release", labels, s.rollbacks);
  counter(&o, "reset", "Session resets on release", labels, s.resets);
  counter(&o, "validation_failure", "Connections that failed validation", labels,
          s.validation_failures);
  counter(&o, "leak", "Leases held longer than the leak threshold", labels, s.leaks);
  counter(&o, "reprepare", "Prepared statements prepared again after the server lost them",
          labels, s.reprepares);
  counter(&o, "fork_drop", "Connections dropped in a child after fork", labels, s.fork_drops);
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
