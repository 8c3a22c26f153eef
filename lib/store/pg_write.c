/*
 * Writing the PostgreSQL store (see pg.c for the whole): a flush in one
 * transaction (upserts merged in C, or deltas for a role without UPDATE),
 * its retries, the COMMIT in doubt, the compaction of deltas, saved advice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/pg_int.h"

/* ---- writing -------------------------------------------------------------- */

/* Parameters of SQL_INS and SQL_UPD. */
#define NPARAMS 21

typedef struct nums {
  char v[NPARAMS][32];
} nums;

/* Inserts the row, or, when it exists, locks it with a no-op update and
 * returns its values (xmax = 0 tells a fresh insert): one round trip for a
 * new row, two (this and SQL_UPD) for a merge. */
static const char SQL_INS[] =
    "INSERT INTO qprof.qp_stats (level, bucket, fingerprint, backend, database, calls, errors, "
    "error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, "
    "cache_hits, cache_hit_ns, user_name, application, host) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
    "$19, $20, $21) "
    "ON CONFLICT (level, bucket, fingerprint, backend, database, user_name, application, host) "
    "DO UPDATE SET "
    "level = qp_stats.level RETURNING (xmax = 0), calls, errors, error_codes, rows, total_ns, "
    "min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, cache_hits, cache_hit_ns";
static const char SQL_UPD[] =
    "UPDATE qprof.qp_stats SET calls = $6, errors = $7, error_codes = $8, rows = $9, "
    "total_ns = $10, min_ns = $11, max_ns = $12, m2 = $13, first_seen_ns = $14, "
    "last_seen_ns = $15, hist = $16, cache_hits = $17, cache_hit_ns = $18 "
    "WHERE level = $1 AND bucket = $2 AND fingerprint = $3 AND "
    "backend = $4 AND database = $5 AND user_name = $19 AND application = $20 AND host = $21";
static const char SQL_QUERY[] =
    "INSERT INTO qprof.qp_query (fingerprint, backend, query, sample, sample_ns, first_seen_ns, "
    "last_seen_ns) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fingerprint) DO UPDATE SET "
    "first_seen_ns = LEAST(qp_query.first_seen_ns, excluded.first_seen_ns), "
    "last_seen_ns = GREATEST(qp_query.last_seen_ns, excluded.last_seen_ns), "
    "sample = CASE WHEN excluded.sample IS NOT NULL AND (qp_query.sample IS NULL OR "
    "excluded.sample_ns > qp_query.sample_ns) THEN excluded.sample ELSE qp_query.sample END, "
    "sample_ns = CASE WHEN excluded.sample IS NOT NULL AND (qp_query.sample IS NULL OR "
    "excluded.sample_ns > qp_query.sample_ns) THEN excluded.sample_ns ELSE qp_query.sample_ns END";

/* The append-only path (a role without UPDATE, see the top): one delta row
 * per key and level, and a text only when the fingerprint has none yet
 * (DO NOTHING needs INSERT alone; the first text and sample stay). */
static const char SQL_DELTA[] =
    "INSERT INTO qprof.qp_stats_delta (level, bucket, fingerprint, backend, database, calls, "
    "errors, error_codes, rows, total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, "
    "cache_hits, cache_hit_ns, user_name, application, host) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
    "$19, $20, $21)";
static const char SQL_QUERY_ONCE[] =
    "INSERT INTO qprof.qp_query (fingerprint, backend, query, sample, sample_ns, first_seen_ns, "
    "last_seen_ns) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fingerprint) DO NOTHING";
/* The same from schema version 9: when the text was there already, what
 * the merging writer would have folded into it (the sample, first and last
 * seen) is appended to qp_query_delta instead, in the same statement. */
static const char SQL_QUERY_DELTA[] =
    "WITH q AS (INSERT INTO qprof.qp_query (fingerprint, backend, query, sample, sample_ns, "
    "first_seen_ns, last_seen_ns) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fingerprint) "
    "DO NOTHING RETURNING 1) INSERT INTO qprof.qp_query_delta (fingerprint, sample, sample_ns, "
    "first_seen_ns, last_seen_ns) SELECT $1, $4, $5, $6, $7 WHERE NOT EXISTS (SELECT 1 FROM q)";
/* Folds one fingerprint's query deltas into its text row (a compaction),
 * as SQL_QUERY would have. */
static const char SQL_QUERY_FOLD[] =
    "UPDATE qprof.qp_query SET first_seen_ns = LEAST(first_seen_ns, $2), "
    "last_seen_ns = GREATEST(last_seen_ns, $3), "
    "sample = CASE WHEN $4::text IS NOT NULL AND (sample IS NULL OR $5 > sample_ns) THEN $4 "
    "ELSE sample END, "
    "sample_ns = CASE WHEN $4::text IS NOT NULL AND (sample IS NULL OR $5 > sample_ns) THEN $5 "
    "ELSE sample_ns END WHERE fingerprint = $1";

/* The first statement of a flush or compaction transaction: its id, and the
 * setting that tells the store's trigger (schema version 10,
 * sql/migrations_pg/010_levels.sql) that this writer writes all six levels;
 * set_config(..., true) lasts until the transaction ends, so a connection
 * pooler that resets sessions cannot lose it between flushes. */
#define SQL_TX_START "SELECT txid_current(), set_config('qprof.levels', '6', true)"

/* Fills the NPARAMS parameters of SQL_INS / SQL_UPD for `st` at key (level, e). */
static bool stats_params(qp_store *s, int level, const qp_entry *e, const qp_stats *st, nums *n,
                         const char *vals[NPARAMS], int lens[NPARAMS], int fmts[NPARAMS], qp_buf *codes,
                         qp_buf *hist) {
  codes->len = hist->len = 0;
  codes->failed = hist->failed = false;
  if (!qp__codes_encode(&st->codes, codes) || !qp__hist_encode(&st->hist, hist)) {
    qp__err_set(&s->err, QP_NOMEM, "out of memory");
    return false;
  }
  snprintf(n->v[0], 32, "%d", level);
  snprintf(n->v[1], 32, "%lld", (long long)qp__level_bucket(level, e->bucket));
  snprintf(n->v[2], 32, "%lld", (long long)(int64_t)e->fingerprint);
  snprintf(n->v[5], 32, "%lld", (long long)st->calls);
  snprintf(n->v[6], 32, "%lld", (long long)st->errors);
  snprintf(n->v[8], 32, "%lld", (long long)st->rows);
  snprintf(n->v[9], 32, "%lld", (long long)st->total_ns);
  /* a row of cache hits alone has no minimum: the largest integer */
  snprintf(n->v[10], 32, "%lld", st->calls ? (long long)st->min_ns : (long long)INT64_MAX);
  snprintf(n->v[11], 32, "%lld", st->calls ? (long long)st->max_ns : 0LL);
  snprintf(n->v[12], 32, "%.17g", st->m2);
  snprintf(n->v[13], 32, "%lld", (long long)st->first_ns);
  snprintf(n->v[14], 32, "%lld", (long long)st->last_ns);
  snprintf(n->v[16], 32, "%lld", (long long)st->cache_hits);
  snprintf(n->v[17], 32, "%lld", (long long)st->cache_hit_ns);
  for (int i = 0; i < NPARAMS; i++) {
    vals[i] = n->v[i];
    lens[i] = 0;
    fmts[i] = 0;
  }
  vals[3] = qp_backend_name(e->backend);
  vals[4] = e->database ? e->database : "";
  vals[18] = e->user ? e->user : "";
  vals[19] = e->application ? e->application : "";
  vals[20] = e->host ? e->host : "";
  vals[7] = qp__buf_cstr(codes);
  vals[15] = hist->data;
  lens[15] = (int)hist->len;
  fmts[15] = 1;
  return true;
}

/* Appends the delta of `e` at `level` (the append-only path). */
static qp_status write_delta(qp_store *s, int level, const qp_entry *e, qp_buf *codes,
                             qp_buf *hist) {
  nums n;
  const char *vals[NPARAMS];
  int lens[NPARAMS], fmts[NPARAMS];
  if (!stats_params(s, level, e, &e->st, &n, vals, lens, fmts, codes, hist)) return s->err.code;
  PGresult *r = qp__pg_run_prepared(s, "qp_delta", NPARAMS, vals, lens, fmts, PGRES_COMMAND_OK,
                                    "cannot write statistics");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

static qp_status write_stats(qp_store *s, int level, const qp_entry *e, qp_buf *codes,
                             qp_buf *hist) {
  nums n;
  const char *vals[NPARAMS];
  int lens[NPARAMS], fmts[NPARAMS];
  if (((pg_store *)s->impl)->append_only) return write_delta(s, level, e, codes, hist);
  if (!stats_params(s, level, e, &e->st, &n, vals, lens, fmts, codes, hist)) return s->err.code;
  PGresult *r = qp__pg_run_prepared(s, "qp_ins", NPARAMS, vals, lens, fmts, PGRES_TUPLES_OK,
                                    "cannot write statistics");
  if (r == NULL) return s->err.code;
  if (PQntuples(r) != 1) {
    PQclear(r);
    return qp__err_set(&s->err, QP_IO, "%s: statistics upsert returned no row", s->display);
  }
  bool inserted = PQgetvalue(r, 0, 0)[0] == 't';
  if (inserted) {
    PQclear(r);
    return QP_OK;
  }
  qp_stats merged;
  qp__stats_init(&merged);
  qp_status rc = qp__pg_row_stats(s, r, 0, 1, 12, &merged);
  PQclear(r);
  if (rc == QP_OK && !qp__stats_merge(&merged, &e->st, &s->hooks))
    rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
  if (rc == QP_OK && !stats_params(s, level, e, &merged, &n, vals, lens, fmts, codes, hist))
    rc = s->err.code;
  if (rc == QP_OK) {
    r = qp__pg_run_prepared(s, "qp_upd", NPARAMS, vals, lens, fmts, PGRES_COMMAND_OK,
                            "cannot update statistics");
    if (r == NULL) rc = s->err.code;
    PQclear(r);
  }
  qp__stats_free(&merged, &s->hooks);
  return rc;
}

/* The text row of the entries v[0..n) of one fingerprint: merged first
 * (the earliest first seen, the latest last seen, the slowest sample, the
 * first of equals), as the merging writer's one upsert per entry would
 * leave it. */
static qp_status write_query(qp_store *s, const qp_entry *const *v, size_t n) {
  const qp_entry *e = v[0], *smp = NULL;
  int64_t first_ns = e->st.first_ns, last_ns = e->st.last_ns;
  for (size_t i = 0; i < n; i++) {
    if (v[i]->st.first_ns < first_ns) first_ns = v[i]->st.first_ns;
    if (v[i]->st.last_ns > last_ns) last_ns = v[i]->st.last_ns;
    if (v[i]->sample != NULL && (smp == NULL || v[i]->sample_ns > smp->sample_ns)) smp = v[i];
  }
  char fp[32], sns[32], first[32], last[32];
  snprintf(fp, sizeof fp, "%lld", (long long)(int64_t)e->fingerprint);
  snprintf(sns, sizeof sns, "%lld", smp ? (long long)smp->sample_ns : 0LL);
  snprintf(first, sizeof first, "%lld", (long long)first_ns);
  snprintf(last, sizeof last, "%lld", (long long)last_ns);
  const char *vals[7] = {fp,
                         qp_backend_name(e->backend),
                         e->query ? e->query : "",
                         smp ? smp->sample : NULL,
                         smp ? sns : NULL,
                         first,
                         last};
  pg_store *g = s->impl;
  PGresult *r = qp__pg_run_prepared(s,
                                    !g->append_only   ? "qp_query"
                                    : g->version >= 9 ? "qp_query_delta"
                                                      : "qp_query_once",
                                    7, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot write a query");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

static qp_status prepare_writes(qp_store *s) {
  pg_store *g = s->impl;
  if (g->prepared) return QP_OK;
  static const struct {
    const char *name, *sql;
    int n;
    bool append;
  } st[] = {{"qp_ins", SQL_INS, NPARAMS, false},
            {"qp_upd", SQL_UPD, NPARAMS, false},
            {"qp_query", SQL_QUERY, 7, false},
            {"qp_delta", SQL_DELTA, NPARAMS, true},
            {"qp_query_once", SQL_QUERY_ONCE, 7, true},
            {"qp_query_delta", SQL_QUERY_DELTA, 7, true}};
  for (size_t i = 0; i < QP_ARRAY_LEN(st); i++) {
    if (st[i].append != g->append_only) continue; /* only the statements of this role's path */
    if (st[i].sql == SQL_QUERY_DELTA && g->version < 9) continue;
    PGresult *r = PQprepare(g->conn, st[i].name, st[i].sql, st[i].n, NULL);
    if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
      qp_status rc = qp__pg_fail(s, r, QP_IO, "cannot prepare a statement");
      PQclear(r);
      return rc;
    }
    PQclear(r);
  }
  g->prepared = true;
  return QP_OK;
}

static qp_status write_drop(qp_store *s, const qp_drop *d) {
  char b[32], n[32];
  snprintf(b, sizeof b, "%lld", (long long)d->bucket);
  snprintf(n, sizeof n, "%llu", (unsigned long long)d->n);
  const char *vals[2] = {b, n};
  PGresult *r =
      qp__pg_run(s,
                 ((pg_store *)s->impl)->append_only
                     ? "INSERT INTO qprof.qp_dropped_delta (bucket, dropped) VALUES ($1, $2)"
                     : "INSERT INTO qprof.qp_dropped (bucket, dropped) VALUES ($1, $2) "
                       "ON CONFLICT (bucket) DO UPDATE SET dropped = "
                       "qprof.qp_dropped.dropped + excluded.dropped",
                 2, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot write the dropped count");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

/* Inserts or updates the file mark (see qp_file_mark). The append-only
 * path inserts a new row each time (a new id): the newest row is the one
 * qp__store_marks_find hands out first. */
static qp_status write_mark(qp_store *s, qp_file_mark *m) {
  char v[11][32];
  snprintf(v[0], sizeof v[0], "%lld", (long long)m->id);
  snprintf(v[1], sizeof v[1], "%lld", (long long)m->device);
  snprintf(v[2], sizeof v[2], "%lld", (long long)m->inode);
  snprintf(v[3], sizeof v[3], "%lld", (long long)m->size);
  snprintf(v[4], sizeof v[4], "%lld", (long long)m->head_len);
  snprintf(v[5], sizeof v[5], "%lld", (long long)(int64_t)m->head_hash);
  snprintf(v[6], sizeof v[6], "%lld", (long long)m->read_to);
  snprintf(v[7], sizeof v[7], "%lld", (long long)m->lines);
  snprintf(v[8], sizeof v[8], "%d", m->gzip ? 1 : 0);
  snprintf(v[9], sizeof v[9], "%lld", (long long)qp__wall_ns());
  const char *vals[11] = {v[0], m->path ? m->path : "", v[1], v[2], v[3], v[4],
                          v[5], v[6], v[7], v[8], v[9]};
  PGresult *r;
  if (m->id > 0 && !((pg_store *)s->impl)->append_only) {
    r = qp__pg_run(s,
                   "UPDATE qprof.qp_ingest_file SET path = $2, device = $3, inode = $4, size = $5, "
                   "head_len = $6, head_hash = $7, read_to = $8, lines = $9, gzip = $10, "
                   "updated_ns = $11 WHERE id = $1",
                   11, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot write a file position");
  } else {
    r = qp__pg_run(
        s,
        "INSERT INTO qprof.qp_ingest_file (path, device, inode, size, head_len, head_hash, "
        "read_to, lines, gzip, updated_ns) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
        "$10) RETURNING id",
        10, vals + 1, NULL, NULL, PGRES_TUPLES_OK, "cannot write a file position");
    if (r != NULL) m->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  }
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}

/* How often a flush transaction is tried at most: again after a
 * serialization failure (40001) or a deadlock (40P01), or once on a fresh
 * connection when the old one turned out to be broken before COMMIT was
 * sent (the server rolled that transaction back). Between tries: 10, 20, 40,
 * 80, 160 ms, plus up to as much again at random. */
#define QP_PG_WRITE_TRIES 6

static bool retryable_state(const char *state) {
  return strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0;
}

static void retry_pause(int attempt) {
  long ms = 10L << (attempt - 1 < 5 ? attempt - 1 : 4);
  unsigned seed = (unsigned)qp__wall_ns() ^ (unsigned)(uintptr_t)&ms;
  ms += (long)(rand_r(&seed) % (unsigned)(ms + 1));
  struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* What became of transaction `xid` (txid_status, PostgreSQL 10+): 1
 * committed, 0 aborted (or unknown to the server: too old, which a
 * transaction of seconds ago is not), -1 cannot tell yet. Reconnects first
 * when the connection is broken. */
static int tx_outcome(qp_store *s, int64_t xid) {
  if (qp__pg_conn_broken(s) && qp__pg_reconnect(s) != QP_OK) return -1;
  char x[32];
  snprintf(x, sizeof x, "%lld", (long long)xid);
  const char *vals[1] = {x};
  PGresult *r = qp__pg_run(s, "SELECT txid_status($1::bigint)", 1, vals, NULL, NULL,
                           PGRES_TUPLES_OK, "cannot ask what became of a flush");
  if (r == NULL) return -1;
  const char *v = PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0);
  int out = strcmp(v, "committed") == 0 ? 1 : strcmp(v, "in progress") == 0 ? -1 : 0;
  PQclear(r);
  return out;
}

/* One try of the flush transaction. *xid is its transaction id once known,
 * *commit_sent whether COMMIT went out (after that, a broken connection
 * leaves the outcome unknown). */
static qp_status write_once(qp_store *s, const qp_entry *const *v, size_t n, const qp_drop *drop,
                            qp_buf *codes, qp_buf *hist, int64_t *xid, bool *commit_sent) {
  *xid = 0;
  *commit_sent = false;
  qp_status rc = prepare_writes(s);
  if (rc == QP_OK) rc = qp__pg_cmd(s, "BEGIN", "cannot begin a flush");
  char ident[96] = "";
  if (rc == QP_OK) {
    /* the store's name only when a hook wants it: the same one round trip */
    PGresult *r = qp__pg_run(s,
                             s->precommit != NULL ? SQL_TX_START ", " PG_STORE_IDENT
                                                  : SQL_TX_START,
                             0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot begin a flush");
    if (r == NULL) rc = s->err.code;
    else *xid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    if (r != NULL && s->precommit != NULL)
      snprintf(ident, sizeof ident, "%s", PQgetvalue(r, 0, 2));
    PQclear(r);
  }
  if (rc == QP_OK && drop != NULL) rc = write_drop(s, drop);
  /* one text row per fingerprint (v is in fingerprint order) */
  for (size_t i = 0, j; rc == QP_OK && i < n; i = j) {
    for (j = i + 1; j < n && v[j]->fingerprint == v[i]->fingerprint; j++) {
    }
    rc = write_query(s, v + i, j - i);
  }
  for (int level = 0; rc == QP_OK && level < QP_LEVELS; level++)
    for (size_t i = 0; rc == QP_OK && i < n; i++) rc = write_stats(s, level, v[i], codes, hist);
  if (rc == QP_OK && s->mark != NULL) rc = write_mark(s, s->mark);
  if (rc == QP_OK && s->precommit != NULL) {
    /* (a hook that fails is not a retryable state: the write fails) */
    char msg[QP_ERRMSG_MAX];
    rc = s->precommit(s->precommit_ud, *xid, ident, msg, sizeof msg);
    if (rc != QP_OK) qp__err_set(&s->err, rc, "%s", msg);
  }
  if (rc == QP_OK) {
    *commit_sent = true;
    rc = qp__pg_cmd(s, "COMMIT", "cannot commit a flush");
  }
  return rc;
}

static void compact_after_flush(qp_store *s);

qp_status qp__pg_write(qp_store *s, const qp_entry *list, const qp_drop *drop) {
  if (s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID, "%s: store opened read-only", s->display);
  pg_store *g = s->impl;
  size_t n = 0;
  for (const qp_entry *e = list; e != NULL; e = e->next)
    if (!e->ignored && (e->st.calls > 0 || e->st.cache_hits > 0)) n++;
  bool dropping = drop != NULL && drop->n > 0;
  if (n == 0 && !dropping && s->mark == NULL) return QP_OK;
  const qp_entry **v = qp__calloc(&s->hooks, n ? n : 1, sizeof *v);
  if (v == NULL) return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  n = 0;
  for (const qp_entry *e = list; e != NULL; e = e->next)
    if (!e->ignored && (e->st.calls > 0 || e->st.cache_hits > 0)) v[n++] = e;
  /* The one global order of the rows every flush takes locks on: qp_dropped
   * (one row), qp_query by fingerprint, then qp_stats by level and then
   * qp__pg_entry_order, the mark last. Two flushes so never wait on each other in
   * a cycle; a deadlock (40P01) could only come from elsewhere (a trigger,
   * a DBA's transaction) and is retried like a serialization failure. */
  qsort(v, n, sizeof *v, qp__pg_entry_order);
  qp_buf codes, hist;
  qp__buf_init(&codes, &s->hooks);
  qp__buf_init(&hist, &s->hooks);
  int64_t mark_id = s->mark ? s->mark->id : 0;
  qp_status rc = QP_OK;
  for (int attempt = 1;; attempt++) {
    if (s->mark != NULL) s->mark->id = mark_id;
    g->sqlstate[0] = '\0';
    /* A connection that broke since the last write (the server restarted)
     * is replaced before anything is sent on it. */
    rc = qp__pg_conn_broken(s) ? qp__pg_reconnect(s) : QP_OK;
    if (rc != QP_OK) break;
    int64_t xid = 0;
    bool commit_sent = false;
    rc = write_once(s, v, n, dropping ? drop : NULL, &codes, &hist, &xid, &commit_sent);
    if (rc == QP_OK) break;
    bool broken = qp__pg_conn_broken(s);
    if (!broken) PQclear(PQexec(g->conn, "ROLLBACK"));
    if (broken && commit_sent && xid != 0) {
      /* COMMIT went out and no answer came back: it may have committed. */
      qp_err err = s->err;
      int outcome = tx_outcome(s, xid);
      if (outcome == 1) {
        rc = QP_OK;
        break;
      }
      if (outcome < 0) {
        g->doubt_xid = xid;
        s->in_doubt = s->write_in_doubt = true;
        rc = qp__err_set(&s->err, QP_UNAVAILABLE,
                         "%s (whether the flush committed is not known yet: it is asked again "
                         "before the next one)",
                         err.msg);
        break;
      }
      s->err = err;
    }
    bool retryable = retryable_state(g->sqlstate);
    bool again = broken || retryable;
    if (retryable && attempt >= QP_PG_WRITE_TRIES) {
      char msg[sizeof s->err.msg];
      snprintf(msg, sizeof msg, "%s", s->err.msg);
      rc = qp__err_set(&s->err, rc, "%s (SQLSTATE %s on each of %d tries: giving up)", msg,
                       g->sqlstate, QP_PG_WRITE_TRIES);
      qp__log(&s->hooks, QP_LOG_WARN, "%s", s->err.msg);
    }
    if (!again || attempt >= QP_PG_WRITE_TRIES) break;
    if (broken && attempt > 1 && !retryable) break; /* one fresh connection */
    if (retryable)
      qp__log(&s->hooks, QP_LOG_INFO, "%s: flush rolled back, trying again (%s, try %d of %d): %s",
              s->display, g->sqlstate, attempt + 1, QP_PG_WRITE_TRIES, s->err.msg);
    if (!broken) retry_pause(attempt);
  }
  if (rc != QP_OK && strcmp(g->sqlstate, "42501") == 0) {
    char msg[sizeof s->err.msg];
    snprintf(msg, sizeof msg, "%s", s->err.msg);
    rc = qp__err_set(&s->err, QP_REFUSED,
                     "%s (a role that writes the store needs USAGE on schema qprof and SELECT, "
                     "INSERT on all its tables; with UPDATE as well it merges rows in place; "
                     "nothing was written)",
                     msg);
  }
  if (rc == QP_OK && g->compactor) compact_after_flush(s);
  if (rc == QP_OK && s->mark != NULL) s->mark_done = true;
  else if (s->mark != NULL) s->mark->id = mark_id;
  qp__buf_free(&codes);
  qp__buf_free(&hist);
  qp__free(&s->hooks, v);
  return rc;
}

/* Settles a flush whose COMMIT got no answer (s->in_doubt): *committed
 * tells whether it is in the store. QP_UNAVAILABLE while the server cannot
 * tell yet (then it stays in doubt). */
qp_status qp__pg_resolve(qp_store *s, bool *committed) {
  pg_store *g = s->impl;
  qp__err_clear(&s->err);
  int outcome = tx_outcome(s, g->doubt_xid);
  if (outcome < 0) {
    if (s->err.code == QP_OK)
      qp__err_set(&s->err, QP_UNAVAILABLE, "%s: cannot tell yet whether the last flush committed",
                  s->display);
    return s->err.code;
  }
  *committed = outcome == 1;
  s->in_doubt = false;
  g->doubt_xid = 0;
  return QP_OK;
}

/* What became of transaction `xid` of store `store_id` (see
 * qp_store_ops.xact_status): one statement that names this store and asks
 * txid_status only when it is that one (CASE evaluates lazily; an xid of
 * another cluster could be "in the future" here, an error). */
qp_status qp__pg_xact_status(qp_store *s, int64_t xid, const char *store_id, qp_xact *out) {
  if (qp__pg_conn_broken(s) && qp__pg_reconnect(s) != QP_OK) return s->err.code;
  char x[32];
  snprintf(x, sizeof x, "%lld", (long long)xid);
  const char *vals[2] = {x, store_id};
  PGresult *r = qp__pg_run(s,
                           "SELECT i, CASE WHEN i = $2 THEN txid_status($1::bigint) END FROM "
                           "(SELECT " PG_STORE_IDENT " AS i) AS t",
                           2, vals, NULL, NULL, PGRES_TUPLES_OK,
                           "cannot ask what became of a flush");
  if (r == NULL) return s->err.code;
  qp_status rc = QP_OK;
  if (strcmp(PQgetvalue(r, 0, 0), store_id) != 0) {
    rc = qp__err_set(&s->err, QP_STATE,
                     "%s is store %s, not store %s that the flush in doubt went to",
                     s->display, PQgetvalue(r, 0, 0), store_id);
  } else {
    const char *v = PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1);
    *out = strcmp(v, "committed") == 0     ? QP_XACT_COMMITTED
           : strcmp(v, "aborted") == 0     ? QP_XACT_ABORTED
           : strcmp(v, "in progress") == 0 ? QP_XACT_RUNNING
                                           : QP_XACT_UNKNOWN;
  }
  PQclear(r);
  return rc;
}

/* ---- compaction ----------------------------------------------------------- */

/* Delta rows one compaction transaction takes at most: the work and the
 * locks of one transaction stay bounded, whatever the backlog. */
#define QP_PG_COMPACT_BATCH 5000
/* What an upsert-capable writer folds in after its own flush, at most (one
 * transaction). */
#define QP_PG_COMPACT_AFTER_FLUSH 2000

typedef struct delta_row {
  int level;
  qp_entry e;
} delta_row;

/* The flush's global order (level, then qp__pg_entry_order), so that a compaction
 * and the flushes lock rows of qp_stats in the same order. */
static int delta_order(const void *a, const void *b) {
  const delta_row *x = a, *y = b;
  if (x->level != y->level) return x->level < y->level ? -1 : 1;
  const qp_entry *pa = &x->e, *pb = &y->e;
  return qp__pg_entry_order(&pa, &pb);
}

/* Locks at most `limit` delta rows of `table` with ids up to `upto` that no
 * other transaction holds (SKIP LOCKED: a concurrent compaction has them)
 * and puts their ids into *ids as a bigint[] literal. Two statements (lock,
 * then DELETE ... WHERE id = ANY) rather than DELETE ... WHERE id IN
 * (SELECT ... FOR UPDATE SKIP LOCKED): that one once ran for minutes, busy
 * on the CPU, not waiting for a lock, under concurrent compactions
 * (test_append_only_with_upserts_and_compaction); the rows locked first
 * leave the DELETE nothing to re-check. */
static qp_status take_ids(qp_store *s, const char *table, const char *limit, const char *upto,
                          qp_buf *ids) {
  char sql[256];
  snprintf(sql, sizeof sql,
           "SELECT id FROM %s WHERE id <= $2 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", table);
  const char *vals[2] = {limit, upto};
  PGresult *r = qp__pg_run(s, sql, 2, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot lock the deltas");
  if (r == NULL) return s->err.code;
  ids->len = 0;
  ids->failed = false;
  bool ok = qp__buf_puts(ids, "{");
  for (int i = 0; ok && i < PQntuples(r); i++)
    ok = qp__buf_printf(ids, i ? ",%s" : "%s", PQgetvalue(r, i, 0));
  ok = ok && qp__buf_puts(ids, "}");
  PQclear(r);
  return ok ? QP_OK : qp__err_set(&s->err, QP_NOMEM, "out of memory");
}

/* Takes at most `limit` query deltas with ids up to `upto` out (schema
 * version 9), merged per fingerprint (the earliest first seen, the latest
 * last seen, the slowest sample, the earliest of equals), and folds them
 * into the text rows in fingerprint order (the flush's order for
 * qp_query). *n: deltas folded. */
static qp_status fold_query_deltas(qp_store *s, const char *limit, const char *upto, qp_buf *ids,
                                   uint64_t *n) {
  qp_status rc = take_ids(s, "qprof.qp_query_delta", limit, upto, ids);
  if (rc != QP_OK) return rc;
  const char *vals[1] = {qp__buf_cstr(ids)};
  PGresult *r = qp__pg_run(
      s,
      "WITH d AS (DELETE FROM qprof.qp_query_delta WHERE id = ANY($1::bigint[]) RETURNING id, "
      "fingerprint, sample, sample_ns, first_seen_ns, last_seen_ns) SELECT fingerprint, "
      "min(first_seen_ns), max(last_seen_ns), (array_agg(sample ORDER BY sample_ns DESC, id) "
      "FILTER (WHERE sample IS NOT NULL))[1], max(sample_ns) FILTER (WHERE sample IS NOT NULL), "
      "count(*) FROM d GROUP BY fingerprint ORDER BY fingerprint",
      1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot take the query deltas");
  if (r == NULL) return s->err.code;
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++) {
    const char *v[5];
    for (int k = 0; k < 5; k++) v[k] = PQgetisnull(r, i, k) ? NULL : PQgetvalue(r, i, k);
    *n += strtoull(PQgetvalue(r, i, 5), NULL, 10);
    PGresult *u = qp__pg_run(s, SQL_QUERY_FOLD, 5, v, NULL, NULL, PGRES_COMMAND_OK,
                             "cannot fold the query deltas");
    if (u == NULL) rc = s->err.code;
    PQclear(u);
  }
  PQclear(r);
  return rc;
}

/* One compaction transaction: takes at most `limit` delta rows of each
 * table with ids up to upto / upto_drop out (DELETE ... RETURNING; rows
 * another compaction holds are skipped, it folds them), merges those of one
 * key and level, and merges them into the compacted rows with the flush's
 * upserts, in the flush's lock order (qp_dropped, then qp_stats by level
 * and key). Committed whole or not at all, so that each delta is counted
 * exactly once, before or after. *rows and *drops: delta rows folded. */
static qp_status compact_once(qp_store *s, long limit, int64_t upto, int64_t upto_drop,
                              int64_t upto_query, uint64_t *rows, uint64_t *drops,
                              uint64_t *queries) {
  pg_store *g = s->impl;
  *rows = *drops = *queries = 0;
  char lim[32], u[32], ud[32], uq[32];
  snprintf(lim, sizeof lim, "%ld", limit);
  snprintf(u, sizeof u, "%lld", (long long)upto);
  snprintf(ud, sizeof ud, "%lld", (long long)upto_drop);
  snprintf(uq, sizeof uq, "%lld", (long long)upto_query);
  qp_buf codes, hist, ids;
  qp__buf_init(&codes, &s->hooks);
  qp__buf_init(&hist, &s->hooks);
  qp__buf_init(&ids, &s->hooks);
  PGresult *dr = NULL, *sr = NULL;
  delta_row *v = NULL;
  int nv = 0;
  qp_status rc = prepare_writes(s);
  if (rc == QP_OK) rc = qp__pg_cmd(s, "BEGIN", "cannot begin a compaction");
  if (rc == QP_OK) {
    PGresult *r = qp__pg_run(s, SQL_TX_START, 0, NULL, NULL, NULL, PGRES_TUPLES_OK,
                             "cannot begin a compaction");
    if (r == NULL) rc = s->err.code;
    PQclear(r);
  }
  if (rc == QP_OK) rc = take_ids(s, "qprof.qp_dropped_delta", lim, ud, &ids);
  if (rc == QP_OK) {
    const char *vals[1] = {qp__buf_cstr(&ids)};
    dr = qp__pg_run(s,
                    "WITH d AS (DELETE FROM qprof.qp_dropped_delta WHERE id = ANY($1::bigint[]) "
                    "RETURNING bucket, dropped) SELECT bucket, sum(dropped), count(*) FROM d "
                    "GROUP BY bucket ORDER BY bucket",
                    1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot take the dropped deltas");
    if (dr == NULL) rc = s->err.code;
  }
  for (int i = 0; rc == QP_OK && i < PQntuples(dr); i++) {
    qp_drop d = {.bucket = strtoll(PQgetvalue(dr, i, 0), NULL, 10),
                 .n = strtoull(PQgetvalue(dr, i, 1), NULL, 10)};
    *drops += strtoull(PQgetvalue(dr, i, 2), NULL, 10);
    rc = write_drop(s, &d);
  }
  if (rc == QP_OK && g->version >= 9) rc = fold_query_deltas(s, lim, uq, &ids, queries);
  if (rc == QP_OK) rc = take_ids(s, "qprof.qp_stats_delta", lim, u, &ids);
  if (rc == QP_OK) {
    const char *vals[1] = {qp__buf_cstr(&ids)};
    sr = qp__pg_run(s,
                    "WITH d AS (DELETE FROM qprof.qp_stats_delta WHERE id = ANY($1::bigint[]) "
                    "RETURNING level, " ROW_COLS ") SELECT " ROW_COLS ", level FROM d",
                    1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot take the deltas");
    if (sr == NULL) rc = s->err.code;
  }
  int n = rc == QP_OK ? PQntuples(sr) : 0;
  if (n > 0 && (v = qp__calloc(&s->hooks, (size_t)n, sizeof *v)) == NULL)
    rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
  for (int i = 0; rc == QP_OK && i < n; i++) {
    nv = i + 1;
    rc = qp__pg_parse_row(s, sr, i, &v[i].e);
    v[i].level = atoi(PQgetvalue(sr, i, 20));
  }
  if (rc == QP_OK && nv > 1) qsort(v, (size_t)nv, sizeof *v, delta_order);
  for (int i = 0; rc == QP_OK && i < nv;) {
    int j = i + 1;
    for (; rc == QP_OK && j < nv && v[j].level == v[i].level && qp__pg_same_key(&v[i].e, &v[j].e);
         j++)
      if (!qp__stats_merge(&v[i].e.st, &v[j].e.st, &s->hooks))
        rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    if (rc == QP_OK) rc = write_stats(s, v[i].level, &v[i].e, &codes, &hist);
    i = j;
  }
  *rows = (uint64_t)n;
  if (rc == QP_OK) rc = qp__pg_cmd(s, "COMMIT", "cannot commit a compaction");
  for (int i = 0; i < nv; i++) qp__stats_free(&v[i].e.st, &s->hooks);
  qp__free(&s->hooks, v);
  PQclear(dr);
  PQclear(sr);
  qp__buf_free(&codes);
  qp__buf_free(&hist);
  qp__buf_free(&ids);
  if (rc != QP_OK) {
    /* nothing was folded: the deltas are still there (also when a COMMIT
     * got no answer: committed or not, each delta is in one place) */
    if (!qp__pg_conn_broken(s)) PQclear(PQexec(g->conn, "ROLLBACK"));
    *rows = *drops = *queries = 0;
  }
  return rc;
}

/* compact_once, tried again after a serialization failure or a deadlock
 * like a flush, on a fresh connection when the old one broke. */
static qp_status compact_try(qp_store *s, long limit, int64_t upto, int64_t upto_drop,
                             int64_t upto_query, uint64_t *rows, uint64_t *drops,
                             uint64_t *queries) {
  pg_store *g = s->impl;
  qp_status rc = QP_OK;
  for (int attempt = 1;; attempt++) {
    g->sqlstate[0] = '\0';
    rc = qp__pg_conn_broken(s) ? qp__pg_reconnect(s) : QP_OK;
    if (rc == QP_OK && !g->compactor) break;
    if (rc == QP_OK) rc = compact_once(s, limit, upto, upto_drop, upto_query, rows, drops, queries);
    if (rc == QP_OK || !retryable_state(g->sqlstate) || attempt >= QP_PG_WRITE_TRIES) break;
    retry_pause(attempt);
  }
  return rc;
}

static qp_status refuse_compaction(qp_store *s) {
  return qp__err_set(&s->err, QP_REFUSED,
                     "%s: compacting the store needs SELECT, INSERT, UPDATE on qprof.qp_stats, "
                     "qp_query, qp_dropped, qp_ingest_file and SELECT, DELETE on "
                     "qprof.qp_stats_delta, qp_dropped_delta; this role lacks some; nothing was "
                     "changed",
                     s->display);
}

/* Folds the deltas present when it starts (at most max_rows of them; 0:
 * all), batch by batch (see qp_store_ops.compact). */
qp_status qp__pg_compact(qp_store *s, uint64_t max_rows, qp_compact_result *out) {
  pg_store *g = s->impl;
  if (s->mode != QP_STORE_WRITE)
    return qp__err_set(&s->err, QP_INVALID, "%s: store opened read-only", s->display);
  if (g->version < 7) return QP_OK; /* not reached: a writer migrates the store */
  qp_status rc = qp__pg_conn_broken(s) ? qp__pg_reconnect(s) : QP_OK;
  if (rc == QP_OK && !g->compactor) return refuse_compaction(s);
  PGresult *r = rc != QP_OK
                    ? NULL
                    : qp__pg_run(s,
                                 g->version >= 9
                                     ? "SELECT coalesce((SELECT max(id) FROM "
                                       "qprof.qp_stats_delta), 0), coalesce((SELECT max(id) FROM "
                                       "qprof.qp_dropped_delta), 0), coalesce((SELECT max(id) "
                                       "FROM qprof.qp_query_delta), 0)"
                                     : "SELECT coalesce((SELECT max(id) FROM "
                                       "qprof.qp_stats_delta), 0), coalesce((SELECT max(id) FROM "
                                       "qprof.qp_dropped_delta), 0), 0",
                                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read the deltas");
  if (r == NULL) return s->err.code;
  int64_t upto = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  int64_t upto_drop = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  int64_t upto_query = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
  PQclear(r);
  for (;;) {
    long lim = QP_PG_COMPACT_BATCH;
    if (max_rows > 0 && max_rows - out->rows < (uint64_t)lim) lim = (long)(max_rows - out->rows);
    if (lim <= 0) break;
    uint64_t rows = 0, drops = 0, queries = 0;
    rc = compact_try(s, lim, upto, upto_drop, upto_query, &rows, &drops, &queries);
    if (rc == QP_OK && !g->compactor) return refuse_compaction(s);
    out->rows += rows;
    out->dropped += drops;
    if (rc != QP_OK ||
        (rows < (uint64_t)lim && drops < (uint64_t)lim && queries < (uint64_t)lim))
      break;
  }
  if (rc != QP_OK) return rc;
  r = qp__pg_run(s,
                 g->version >= 9 ? "SELECT (SELECT count(*) FROM qprof.qp_stats_delta) + "
                                   "(SELECT count(*) FROM qprof.qp_dropped_delta) + "
                                   "(SELECT count(*) FROM qprof.qp_query_delta)"
                                 : "SELECT (SELECT count(*) FROM qprof.qp_stats_delta) + "
                                   "(SELECT count(*) FROM qprof.qp_dropped_delta)",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK,
                 "compacted, but cannot count the deltas left");
  if (r == NULL) return s->err.code;
  out->left = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

/* After a flush by an upsert-capable role: one bounded batch of others'
 * deltas folded in, when there are any. Its failure is not the flush's (the
 * flush committed; the deltas stay for the next one): logged, not returned. */
static void compact_after_flush(qp_store *s) {
  pg_store *g = s->impl;
  qp_err err = s->err;
  PGresult *r = qp__pg_run(s,
                           g->version >= 9
                               ? "SELECT EXISTS (SELECT 1 FROM qprof.qp_stats_delta) OR "
                                 "EXISTS (SELECT 1 FROM qprof.qp_dropped_delta) OR "
                                 "EXISTS (SELECT 1 FROM qprof.qp_query_delta)"
                               : "SELECT EXISTS (SELECT 1 FROM qprof.qp_stats_delta) OR "
                                 "EXISTS (SELECT 1 FROM qprof.qp_dropped_delta)",
                           0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot look for deltas");
  bool any = r != NULL && PQgetvalue(r, 0, 0)[0] == 't';
  qp_status rc = r == NULL ? s->err.code : QP_OK;
  PQclear(r);
  uint64_t rows = 0, drops = 0, queries = 0;
  if (any)
    rc = compact_once(s, QP_PG_COMPACT_AFTER_FLUSH, INT64_MAX, INT64_MAX, INT64_MAX, &rows, &drops,
                      &queries);
  if (rc != QP_OK)
    qp__log(&s->hooks, QP_LOG_INFO, "%s: flushed; folding in the deltas failed (left for later): %s",
            s->display, s->err.msg);
  s->err = err;
  g->sqlstate[0] = '\0';
}

/* ---- saved advice ------------------------------------------------------------ */

qp_status qp__pg_advice_put(qp_store *s, const char *database, int64_t at_ns,
                            const char *document) {
  char at[32];
  snprintf(at, sizeof at, "%lld", (long long)at_ns);
  const char *vals[3] = {database, at, document};
  /* one statement: one transaction */
  PGresult *r = qp__pg_run(s,
                           "WITH gone AS (DELETE FROM qprof.qp_advice WHERE database = $1) "
                           "INSERT INTO qprof.qp_advice (database, at_ns, document) "
                           "VALUES ($1, $2, $3)",
                           3, vals, NULL, NULL, PGRES_COMMAND_OK, "cannot save the advice");
  if (r == NULL) return s->err.code;
  PQclear(r);
  return QP_OK;
}
