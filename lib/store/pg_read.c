/*
 * Reading the PostgreSQL store (see pg.c for the whole): the rows of a
 * window's tiles (compacted rows and deltas merged per key), bucket ranges
 * and edges, texts, dropped counts, file positions, saved advice, and
 * retention (prune and its counts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg_int.h"

qp_status qp__pg_bucket_range(qp_store *s, int level, int64_t *first, int64_t *last, bool *empty) {
  char l[16];
  snprintf(l, sizeof l, "%d", level);
  const char *vals[1] = {l};
  /* least and greatest skip a NULL: the deltas widen the range */
  PGresult *r =
      qp__pg_run(s,
                 ((pg_store *)s->impl)->version < 7
                     ? "SELECT min(bucket), max(bucket) FROM qprof.qp_stats WHERE level = $1"
                     : "SELECT least(a.lo, d.lo), greatest(a.hi, d.hi) FROM "
                       "(SELECT min(bucket) AS lo, max(bucket) AS hi FROM qprof.qp_stats "
                       "WHERE level = $1) AS a, (SELECT min(bucket) AS lo, max(bucket) AS hi "
                       "FROM qprof.qp_stats_delta WHERE level = $1) AS d",
                 1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read");
  if (r == NULL) return s->err.code;
  *empty = PQgetisnull(r, 0, 0);
  if (!*empty) {
    *first = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    *last = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  }
  PQclear(r);
  return QP_OK;
}

/* Rows are fetched through a cursor, SCAN_FETCH at a time: a window of
 * 12 hours over 100,000 keys is 1.2M hour rows, which one PQexec would hold
 * in the client's memory all at once (662 MB measured). */
#define SCAN_FETCH 8192

static qp_status scan_rows(qp_store *s, PGresult *r, qp_row_fn fn, void *ud) {
  qp_status rc = QP_OK;
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++) {
    qp_entry row;
    rc = qp__pg_parse_row(s, r, i, &row);
    if (rc == QP_OK && (row.st.calls > 0 || row.st.cache_hits > 0)) rc = fn(ud, &row);
    qp__stats_free(&row.st, &s->hooks);
  }
  return rc;
}

/* A row of a merged scan (compacted rows and deltas in key order) waiting
 * for the next one, which may have its key: its own copies of the strings,
 * since it outlives the result it came from. */
typedef struct scan_pend {
  bool has;
  qp_entry row;
  qp_buf dims; /* database, user, application, host, each with its NUL */
} scan_pend;

static qp_status pend_emit(qp_store *s, scan_pend *p, qp_row_fn fn, void *ud) {
  qp_status rc = QP_OK;
  if (!p->has) return rc;
  if (p->row.st.calls > 0 || p->row.st.cache_hits > 0) rc = fn(ud, &p->row);
  qp__stats_free(&p->row.st, &s->hooks);
  p->has = false;
  return rc;
}

/* The rows of a merged scan: those of one key (compacted and deltas, next
 * to each other) merge into one before fn sees it. */
static qp_status scan_rows_merged(qp_store *s, PGresult *r, scan_pend *p, qp_row_fn fn, void *ud) {
  qp_status rc = QP_OK;
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++) {
    qp_entry row;
    rc = qp__pg_parse_row(s, r, i, &row);
    if (rc == QP_OK && p->has && qp__pg_same_key(&p->row, &row)) {
      if (!qp__stats_merge(&p->row.st, &row.st, &s->hooks))
        rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
      qp__stats_free(&row.st, &s->hooks);
      continue;
    }
    if (rc == QP_OK) rc = pend_emit(s, p, fn, ud);
    if (rc != QP_OK) {
      qp__stats_free(&row.st, &s->hooks);
      break;
    }
    qp_buf *d = &p->dims;
    d->len = 0;
    d->failed = false;
    size_t at[4];
    const char *v[4] = {row.database, row.user, row.application, row.host};
    bool ok = true;
    for (int k = 0; k < 4 && ok; k++) {
      at[k] = d->len;
      ok = qp__buf_append(d, v[k], strlen(v[k]) + 1);
    }
    if (!ok) {
      qp__stats_free(&row.st, &s->hooks);
      rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
      break;
    }
    p->row = row; /* takes row.st */
    p->row.database = d->data + at[0];
    p->row.user = d->data + at[1];
    p->row.application = d->data + at[2];
    p->row.host = d->data + at[3];
    p->has = true;
  }
  return rc;
}

qp_status qp__pg_scan(qp_store *s, int level, int64_t lo, int64_t hi, qp_row_fn fn, void *ud) {
  char a[32], b[32], c[32];
  snprintf(a, sizeof a, "%d", level);
  snprintf(b, sizeof b, "%lld", (long long)lo);
  snprintf(c, sizeof c, "%lld", (long long)hi);
  const char *vals[3] = {a, b, c};
  pg_store *g = s->impl;
  /* a store older than versions 4 and 6 read as it is: no cache hit or
   * dimension columns */
  const char *cols =
      g->version < 4   ? "fingerprint, backend, database, calls, errors, error_codes, rows, "
                         "total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, "
                         "0, 0, '', '', ''"
      : g->version < 6 ? "fingerprint, backend, database, calls, errors, error_codes, rows, "
                         "total_ns, min_ns, max_ns, m2, first_seen_ns, last_seen_ns, hist, bucket, "
                         "cache_hits, cache_hit_ns, '', '', ''"
                       : ROW_COLS;
  /* a cursor lives in a transaction: its own, unless the caller has one */
  bool own = PQtransactionStatus(g->conn) == PQTRANS_IDLE;
  qp_status rc = own ? qp__pg_cmd(s, "BEGIN READ ONLY", "cannot begin a read") : QP_OK;
  if (rc != QP_OK) return rc;
  /* Deltas in the range (version 7): the compacted rows and the deltas in
   * one statement (one snapshot, so that a compaction committing meanwhile
   * is seen whole or not at all), in key order, merged per key here.
   * Without any, the plain scan, in no particular order (no sort). */
  bool merged = false;
  if (g->version >= 7) {
    PGresult *e = qp__pg_run(s,
                             "SELECT EXISTS (SELECT 1 FROM qprof.qp_stats_delta WHERE level = $1 "
                             "AND bucket >= $2 AND bucket < $3)",
                             3, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read statistics");
    if (e == NULL) rc = s->err.code;
    else merged = PQgetvalue(e, 0, 0)[0] == 't';
    PQclear(e);
  }
  /* The plain scan reads the tile's rows in the heap's order: a bitmap heap
   * scan visits each page once, where the index scan the planner picks
   * visits one page per row, in key order (EXPLAIN (ANALYZE, BUFFERS) of 12
   * hour tiles over 10,000 keys: 7,290 buffers against 121,253; a flush
   * upserts its rows in key order within a bucket and the hour rows move
   * with every update, so a tile's rows are not in key order on disk). Set
   * for this transaction only, when it is the scan's own; the merged scan
   * needs key order and keeps the planner's plan. */
  if (rc == QP_OK && own && !merged)
    rc = qp__pg_cmd(s, "SET LOCAL enable_indexscan = off; SET LOCAL enable_seqscan = off",
                    "cannot read statistics");
  char sql[1024];
  if (merged)
    snprintf(sql, sizeof sql,
             "DECLARE qp_scan NO SCROLL CURSOR FOR SELECT %s FROM (SELECT %s FROM qprof.qp_stats "
             "WHERE level = $1 AND bucket >= $2 AND bucket < $3 UNION ALL SELECT %s FROM "
             "qprof.qp_stats_delta WHERE level = $1 AND bucket >= $2 AND bucket < $3) AS u "
             "ORDER BY " ROW_KEY,
             cols, cols, cols);
  else
    snprintf(sql, sizeof sql,
             "DECLARE qp_scan NO SCROLL CURSOR FOR SELECT %s FROM qprof.qp_stats "
             "WHERE level = $1 AND bucket >= $2 AND bucket < $3",
             cols);
  scan_pend pend = {.has = false};
  qp__buf_init(&pend.dims, &s->hooks);
  PGresult *r = rc != QP_OK ? NULL
                            : qp__pg_run(s, sql, 3, vals, NULL, NULL, PGRES_COMMAND_OK,
                                         "cannot read statistics");
  if (r == NULL) rc = s->err.code;
  PQclear(r);
  char fetch[64];
  snprintf(fetch, sizeof fetch, "FETCH %d FROM qp_scan", SCAN_FETCH);
  while (rc == QP_OK) {
    r = qp__pg_run(s, fetch, 0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read statistics");
    if (r == NULL) {
      rc = s->err.code;
      break;
    }
    int n = PQntuples(r);
    rc = merged ? scan_rows_merged(s, r, &pend, fn, ud) : scan_rows(s, r, fn, ud);
    PQclear(r);
    if (n < SCAN_FETCH) break;
  }
  if (rc == QP_OK) rc = pend_emit(s, &pend, fn, ud);
  else if (pend.has) qp__stats_free(&pend.row.st, &s->hooks);
  qp__buf_free(&pend.dims);
  if (own) {
    /* the read changed nothing: a rollback ends it either way */
    PGresult *e = PQexec(g->conn, "ROLLBACK");
    PQclear(e);
  } else if (rc == QP_OK) {
    rc = qp__pg_cmd(s, "CLOSE qp_scan", "cannot close a cursor");
  }
  return rc;
}

qp_status qp__pg_bucket_before(qp_store *s, int64_t t_s, int64_t *bucket, bool *found) {
  char t[32];
  snprintf(t, sizeof t, "%lld", (long long)t_s);
  const char *vals[1] = {t};
  PGresult *r = qp__pg_run(
      s,
      ((pg_store *)s->impl)->version < 7
          ? "SELECT max(bucket) FROM qprof.qp_stats WHERE level = 0 AND bucket < $1"
          : "SELECT greatest((SELECT max(bucket) FROM qprof.qp_stats WHERE level = 0 AND "
            "bucket < $1), (SELECT max(bucket) FROM qprof.qp_stats_delta WHERE level = 0 AND "
            "bucket < $1))",
      1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read");
  if (r == NULL) return s->err.code;
  *found = !PQgetisnull(r, 0, 0);
  if (*found) *bucket = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

qp_status qp__pg_bucket_last_seen(qp_store *s, int64_t bucket, int64_t *last_ns, bool *found) {
  pg_store *g = s->impl;
  char b[32];
  snprintf(b, sizeof b, "%lld", (long long)bucket);
  const char *vals[1] = {b};
  /* the rows a scan hands out: those with calls or cache hits (a store older
   * than version 4 has no cache hits; one older than 7 no deltas) */
  PGresult *r = qp__pg_run(
      s,
      g->version < 4   ? "SELECT max(last_seen_ns) FROM qprof.qp_stats WHERE level = 0 AND "
                         "bucket = $1 AND calls > 0"
      : g->version < 7 ? "SELECT max(last_seen_ns) FROM qprof.qp_stats WHERE level = 0 AND "
                         "bucket = $1 AND (calls > 0 OR cache_hits > 0)"
                       : "SELECT greatest((SELECT max(last_seen_ns) FROM qprof.qp_stats WHERE "
                         "level = 0 AND bucket = $1 AND (calls > 0 OR cache_hits > 0)), "
                         "(SELECT max(last_seen_ns) FROM qprof.qp_stats_delta WHERE level = 0 AND "
                         "bucket = $1 AND (calls > 0 OR cache_hits > 0)))",
      1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read");
  if (r == NULL) return s->err.code;
  *found = !PQgetisnull(r, 0, 0);
  if (*found) *last_ns = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

/* The sample of a text row merged with its query deltas (schema version
 * 9), as SQL_QUERY's upserts would have left it: the slowest, the stored
 * one of equals, then the earliest delta. */
#define SAMPLE_MERGED                                                                            \
  "CASE WHEN d.sample IS NOT NULL AND (q.sample IS NULL OR d.sample_ns > q.sample_ns) THEN "     \
  "d.sample ELSE q.sample END"
#define SAMPLE_DELTA_JOIN                                                                        \
  " LEFT JOIN LATERAL (SELECT x.sample, x.sample_ns FROM qprof.qp_query_delta x WHERE "         \
  "x.fingerprint = q.fingerprint AND x.sample IS NOT NULL ORDER BY x.sample_ns DESC, x.id "     \
  "LIMIT 1) AS d ON true"

qp_status qp__pg_query_text(qp_store *s, uint64_t fingerprint, qp_buf *query, qp_buf *sample,
                            bool *has_sample, bool *found) {
  char fp[32];
  snprintf(fp, sizeof fp, "%lld", (long long)(int64_t)fingerprint);
  const char *vals[1] = {fp};
  *found = *has_sample = false;
  PGresult *r = qp__pg_run(s,
                           ((pg_store *)s->impl)->version < 9
                               ? "SELECT query, sample FROM qprof.qp_query WHERE fingerprint = $1"
                               : "SELECT q.query, " SAMPLE_MERGED " FROM qprof.qp_query q"
                                 SAMPLE_DELTA_JOIN " WHERE q.fingerprint = $1",
                           1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read queries");
  if (r == NULL) return s->err.code;
  qp_status rc = QP_OK;
  if (PQntuples(r) == 1) {
    *found = true;
    if (!qp__buf_puts(query, PQgetvalue(r, 0, 0)))
      rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    if (rc == QP_OK && !PQgetisnull(r, 0, 1)) {
      *has_sample = true;
      if (!qp__buf_puts(sample, PQgetvalue(r, 0, 1)))
        rc = qp__err_set(&s->err, QP_NOMEM, "out of memory");
    }
  }
  PQclear(r);
  return rc;
}

qp_status qp__pg_dropped(qp_store *s, int64_t lo, int64_t hi, uint64_t *n) {
  pg_store *g = s->impl;
  if (g->version < 3) return QP_OK; /* an older store read as it is: no such table */
  char a[32], b[32];
  snprintf(a, sizeof a, "%lld", (long long)lo);
  snprintf(b, sizeof b, "%lld", (long long)hi);
  const char *vals[2] = {a, b};
  PGresult *r = qp__pg_run(
      s,
      g->version < 7 ? "SELECT coalesce(sum(dropped), 0) FROM qprof.qp_dropped "
                       "WHERE bucket >= $1 AND bucket < $2"
                     : "SELECT coalesce((SELECT sum(dropped) FROM qprof.qp_dropped WHERE "
                       "bucket >= $1 AND bucket < $2), 0) + coalesce((SELECT sum(dropped) "
                       "FROM qprof.qp_dropped_delta WHERE bucket >= $1 AND bucket < $2), 0)",
      2, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read the dropped count");
  if (r == NULL) return s->err.code;
  *n = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return QP_OK;
}

qp_status qp__pg_query_texts(qp_store *s, const uint64_t *fps, size_t n, qp_text_fn fn, void *ud) {
  /* one statement for the whole window: the fingerprints as one bigint[]
   * parameter, the rows in the caller's order */
  qp_buf arr;
  qp__buf_init(&arr, &s->hooks);
  bool ok = qp__buf_puts(&arr, "{");
  for (size_t i = 0; ok && i < n; i++)
    ok = qp__buf_printf(&arr, i ? ",%lld" : "%lld", (long long)(int64_t)fps[i]);
  ok = ok && qp__buf_puts(&arr, "}");
  if (!ok) {
    qp__buf_free(&arr);
    return qp__err_set(&s->err, QP_NOMEM, "out of memory");
  }
  const char *vals[1] = {qp__buf_cstr(&arr)};
  PGresult *r = qp__pg_run(s,
                           ((pg_store *)s->impl)->version < 9
                               ? "SELECT fingerprint, query, sample FROM qprof.qp_query "
                                 "WHERE fingerprint = ANY($1::bigint[]) ORDER BY fingerprint"
                               : "SELECT q.fingerprint, q.query, " SAMPLE_MERGED
                                 " FROM qprof.qp_query q" SAMPLE_DELTA_JOIN
                                 " WHERE q.fingerprint = ANY($1::bigint[]) ORDER BY q.fingerprint",
                           1, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read queries");
  qp__buf_free(&arr);
  if (r == NULL) return s->err.code;
  qp_status rc = QP_OK;
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++)
    rc = fn(ud, (uint64_t)strtoll(PQgetvalue(r, i, 0), NULL, 10), PQgetvalue(r, i, 1),
            PQgetisnull(r, i, 2) ? NULL : PQgetvalue(r, i, 2));
  PQclear(r);
  return rc;
}

qp_status qp__pg_marks_find(qp_store *s, int64_t device, int64_t inode, uint64_t head_hash,
                            qp_file_mark *out, size_t cap, size_t *n) {
  char v[4][32];
  snprintf(v[0], sizeof v[0], "%lld", (long long)device);
  snprintf(v[1], sizeof v[1], "%lld", (long long)inode);
  snprintf(v[2], sizeof v[2], "%lld", (long long)(int64_t)head_hash);
  snprintf(v[3], sizeof v[3], "%zu", cap);
  const char *vals[4] = {v[0], v[1], v[2], v[3]};
  PGresult *r =
      qp__pg_run(s,
                 "SELECT id, device, inode, size, head_len, head_hash, read_to, lines, gzip "
                 "FROM qprof.qp_ingest_file WHERE (device = $1 AND inode = $2) OR "
                 "head_hash = $3 ORDER BY updated_ns DESC, id DESC "
                 "LIMIT $4",
                 4, vals, NULL, NULL, PGRES_TUPLES_OK, "cannot read the file positions");
  if (r == NULL) return s->err.code;
  int rows = PQntuples(r);
  for (int i = 0; i < rows && (size_t)i < cap; i++) {
    qp_file_mark *m = &out[(*n)++];
    memset(m, 0, sizeof *m);
    m->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
    m->device = strtoll(PQgetvalue(r, i, 1), NULL, 10);
    m->inode = strtoll(PQgetvalue(r, i, 2), NULL, 10);
    m->size = strtoll(PQgetvalue(r, i, 3), NULL, 10);
    m->head_len = strtoll(PQgetvalue(r, i, 4), NULL, 10);
    m->head_hash = (uint64_t)strtoll(PQgetvalue(r, i, 5), NULL, 10);
    m->read_to = strtoll(PQgetvalue(r, i, 6), NULL, 10);
    m->lines = strtoll(PQgetvalue(r, i, 7), NULL, 10);
    m->gzip = PQgetvalue(r, i, 8)[0] == '1';
  }
  PQclear(r);
  return QP_OK;
}

/* ---- retention ------------------------------------------------------------ */

qp_status qp__pg_prune(qp_store *s, int max_level, int64_t cutoff_s, unsigned flags,
                       qp_prune_result *out) {
  pg_store *g = s->impl;
  bool dry = (flags & QP_PRUNE_DRY_RUN) != 0;
  char a[32], b[32];
  /* the levels it deletes, as an int[] literal */
  snprintf(a, sizeof a, "{%s}", qp__prune_levels_sql(max_level));
  snprintf(b, sizeof b, "%lld", (long long)cutoff_s);
  const char *vals[2] = {a, b};
  /* The statistics per level in one statement, then the texts no row
   * refers to (NOT EXISTS: an anti-join, one pass over qp_stats), in one
   * transaction. A dry run counts the texts no row would refer to. */
  static const char SQL_DEL[] =
      "WITH d AS (DELETE FROM qprof.qp_stats WHERE level = ANY($1::int[]) AND bucket < $2 "
      "RETURNING level) SELECT level, count(*) FROM d GROUP BY level";
  static const char SQL_CNT[] =
      "SELECT level, count(*) FROM qprof.qp_stats WHERE level = ANY($1::int[]) "
      "AND bucket < $2 GROUP BY level";
  static const char SQL_TEXTS_DEL[] =
      "WITH d AS (DELETE FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint) RETURNING 1) SELECT count(*) FROM d";
  static const char SQL_TEXTS_CNT[] =
      "SELECT count(*) FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint AND NOT (t.level = ANY($1::int[]) AND t.bucket < $2))";
  /* Version 7: the deltas too. A key counts once however many deltas it
   * has: its deltas are counted only when it has no compacted row (the
   * statement's one snapshot still shows the rows it deletes). Before the
   * prune, the deltas are folded in (a role that can), so there are
   * normally none to count. */
  static const char SQL_DEL7[] =
      "WITH dm AS (DELETE FROM qprof.qp_stats WHERE level = ANY($1::int[]) AND bucket < $2 "
      "RETURNING level), dd AS (DELETE FROM qprof.qp_stats_delta WHERE level = ANY($1::int[]) "
      "AND bucket < $2 RETURNING level, " ROW_KEY ") SELECT level, sum(n) FROM (SELECT level, "
      "count(*) AS n FROM dm GROUP BY level UNION ALL SELECT level, count(*) FROM (SELECT DISTINCT "
      "level, " ROW_KEY " FROM dd) AS k WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats m WHERE "
      "m.level = k.level AND m.bucket = k.bucket AND m.fingerprint = k.fingerprint AND m.backend = "
      "k.backend AND m.database = k.database AND m.user_name = k.user_name AND m.application = "
      "k.application AND m.host = k.host) GROUP BY level) AS x GROUP BY level";
  static const char SQL_CNT7[] =
      "SELECT level, sum(n) FROM (SELECT level, count(*) AS n FROM qprof.qp_stats WHERE level = "
      "ANY($1::int[]) AND bucket < $2 GROUP BY level UNION ALL SELECT level, count(*) FROM "
      "(SELECT DISTINCT level, " ROW_KEY " FROM qprof.qp_stats_delta WHERE level = ANY($1::int[])"
      " AND bucket < $2) AS k WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats m WHERE "
      "m.level = k.level AND m.bucket = k.bucket AND m.fingerprint = k.fingerprint AND m.backend = "
      "k.backend AND m.database = k.database AND m.user_name = k.user_name AND m.application = "
      "k.application AND m.host = k.host) GROUP BY level) AS x GROUP BY level";
  static const char SQL_TEXTS_DEL7[] =
      "WITH d AS (DELETE FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint) AND NOT EXISTS (SELECT 1 FROM qprof.qp_stats_delta t "
      "WHERE t.fingerprint = q.fingerprint) RETURNING 1) SELECT count(*) FROM d";
  static const char SQL_TEXTS_CNT7[] =
      "SELECT count(*) FROM qprof.qp_query q WHERE NOT EXISTS (SELECT 1 FROM qprof.qp_stats t "
      "WHERE t.fingerprint = q.fingerprint AND NOT (t.level = ANY($1::int[]) AND t.bucket < $2)) "
      "AND NOT EXISTS (SELECT 1 FROM qprof.qp_stats_delta t WHERE t.fingerprint = q.fingerprint "
      "AND NOT (t.level = ANY($1::int[]) AND t.bucket < $2))";
  bool v7 = g->version >= 7;
  qp_status rc = QP_OK;
  if (!dry && v7 && g->compactor) {
    qp_compact_result cr = {0};
    rc = qp__pg_compact(s, 0, &cr);
    if (rc != QP_OK) {
      memset(out, 0, sizeof *out);
      return rc;
    }
  }
  rc = qp__pg_cmd(s, dry ? "BEGIN READ ONLY" : "BEGIN", "cannot begin the prune");
  PGresult *r = NULL;
  if (rc == QP_OK) {
    r = qp__pg_run(s, dry ? (v7 ? SQL_CNT7 : SQL_CNT) : (v7 ? SQL_DEL7 : SQL_DEL), 2, vals, NULL,
                   NULL, PGRES_TUPLES_OK, dry ? "cannot count the rows to prune" : "cannot delete");
    if (r == NULL) rc = s->err.code;
  }
  for (int i = 0; rc == QP_OK && i < PQntuples(r); i++) {
    int level = (int)strtol(PQgetvalue(r, i, 0), NULL, 10);
    if (qp__prune_deletes(max_level, level))
      out->rows[qp__prune_slot(level)] += strtoull(PQgetvalue(r, i, 1), NULL, 10);
  }
  PQclear(r);
  r = NULL;
  if (rc == QP_OK) {
    r = dry ? qp__pg_run(s, v7 ? SQL_TEXTS_CNT7 : SQL_TEXTS_CNT, 2, vals, NULL, NULL,
                         PGRES_TUPLES_OK, "cannot count the texts to prune")
            : qp__pg_run(s, v7 ? SQL_TEXTS_DEL7 : SQL_TEXTS_DEL, 0, NULL, NULL, NULL,
                         PGRES_TUPLES_OK, "cannot delete texts");
    if (r == NULL) rc = s->err.code;
    else out->texts = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
  }
  /* (version 9: the query deltas of the texts that went, with them) */
  if (rc == QP_OK && !dry && g->version >= 9)
    rc = qp__pg_cmd(s,
                    "DELETE FROM qprof.qp_query_delta x WHERE NOT EXISTS (SELECT 1 FROM "
                    "qprof.qp_query q WHERE q.fingerprint = x.fingerprint)",
                    "cannot delete texts");
  if (rc == QP_OK) rc = qp__pg_cmd(s, "COMMIT", "cannot commit the prune");
  if (rc != QP_OK) {
    PQclear(PQexec(g->conn, "ROLLBACK"));
    memset(out, 0, sizeof *out);
    return rc;
  }
  /* Outside the transaction: VACUUM cannot run inside one. */
  if (!dry && (flags & QP_PRUNE_VACUUM))
    rc = qp__pg_cmd(s,
                    v7 ? "VACUUM qprof.qp_stats, qprof.qp_query, qprof.qp_stats_delta"
                       : "VACUUM qprof.qp_stats, qprof.qp_query",
                    "pruned, but cannot VACUUM");
  out->size_bytes = out->free_bytes = -1;
  r = qp__pg_run(s,
                 v7 ? "SELECT pg_total_relation_size('qprof.qp_stats') + "
                      "pg_total_relation_size('qprof.qp_query') + "
                      "pg_total_relation_size('qprof.qp_stats_delta')"
                    : "SELECT pg_total_relation_size('qprof.qp_stats') + "
                      "pg_total_relation_size('qprof.qp_query')",
                 0, NULL, NULL, NULL, PGRES_TUPLES_OK, "pruned, but cannot read the size");
  if (r != NULL) {
    out->size_bytes = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
  } else if (rc == QP_OK) {
    rc = s->err.code;
  }
  return rc;
}

qp_status qp__pg_advice_each(qp_store *s, qp_advice_fn fn, void *ud) {
  pg_store *g = s->impl;
  if (g->version < 8) return QP_OK; /* an older store read as it is: none */
  PGresult *r = qp__pg_run(s,
                           "SELECT database, at_ns, document FROM qprof.qp_advice "
                           "ORDER BY at_ns DESC, id DESC",
                           0, NULL, NULL, NULL, PGRES_TUPLES_OK, "cannot read the saved advice");
  if (r == NULL) return s->err.code;
  int rows = PQntuples(r);
  for (int i = 0; i < rows; i++)
    if (fn(ud, PQgetvalue(r, i, 0), strtoll(PQgetvalue(r, i, 1), NULL, 10),
           PQgetvalue(r, i, 2)) != 0)
      break;
  PQclear(r);
  return QP_OK;
}
