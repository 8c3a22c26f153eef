/*
 * The representative values the SQLite advisor binds to a statement's
 * placeholders (docs/advise.md, "Placeholders on SQLite"): SQLite has no
 * generic plan, so a statement with placeholders is planned and measured
 * with values read on the copy: the file's own sqlite_stat4 samples (their
 * records decoded here) where an index leads with the column, else the
 * table itself, with sqlite_stat1's rows per value said in the note.
 * sqlite.c calls it (sqlite_int.h); everything here runs on the copy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "advise/sqlite_int.h"

/* ---- placeholders: representative values -------------------------------- */

/* SQLite has no generic plan: a statement with placeholders is planned and
 * measured with values read from the table on the copy (docs/advise.md,
 * "Placeholders on SQLite"). */
#define SQ_MAX_TOKS 2048

/* The table a column of the statement belongs to: the one its qualifier
 * names, else the first table named in the statement that has it. */
static bool column_table(adv_ctx *x, qp_conn *c, const char *qual, const char *col,
                         const qp_tok *toks, size_t ntoks, char *out, size_t cap) {
  if (qual[0]) return qp__adv_sq_alias_table(x, c, qual, out, cap);
  for (size_t i = 0; i < ntoks; i++) {
    if (!qp__adv_sq_name(&toks[i])) continue;
    char name[ADV_NAME];
    qp__adv_sq_text(x->run, &toks[i], name, sizeof name);
    qp_param p[2] = {qp_param_text(name), qp_param_text(col)};
    qp_result *r = NULL;
    bool found = qp__conn_exec_quiet(c, "SELECT m.name FROM sqlite_master m, "
                                     "pragma_table_info(m.name) i WHERE m.type = 'table' AND "
                                     "m.name = ?1 COLLATE NOCASE AND i.name = ?2 COLLATE NOCASE",
                                     p, 2, &r) == QP_OK && qp_result_rows(r) > 0;
    if (found) qp__adv_rstr(r, 0, 0, out, cap);
    qp_result_free(r);
    if (found) return true;
  }
  return false;
}


/* One value of expression `e` (over table t, as alias q when given) as an
 * SQL literal: the k-th most common non-NULL one, or the one a third of
 * the rows lie below (QP__ADV_LOW_THIRD) or above (QP__ADV_HIGH_THIRD). *rows and
 * *all: rows with that value (MCV) and the table's rows. */
static bool sq_value(qp_conn *c, const char *e, const char *t, const char *q,
                     qp__adv_pick pick, int k, char *lit, size_t cap, int64_t *rows, int64_t *all) {
  char qt[ADV_NAME + 4], qq[ADV_NAME + 4] = "", from[2 * ADV_NAME + 16], sql[1400];
  qp__adv_ident(t, qt, sizeof qt);
  if (q[0]) qp__adv_ident(q, qq, sizeof qq);
  qp__adv_fmt(from, sizeof from, "%s%s%s", qt, q[0] ? " AS " : "", qq);
  qp_result *r = NULL;
  *rows = -1;
  qp__adv_fmt(sql, sizeof sql, "SELECT count(*), count(%s) FROM %s", e, from);
  if (qp__conn_exec_quiet(c, sql, NULL, 0, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return false;
  }
  *all = qp__adv_rint64(r, 0, 0);
  int64_t nonnull = qp__adv_rint64(r, 0, 1);
  qp_result_free(r);
  if (nonnull <= 0) {
    qp__adv_fmt(lit, cap, "NULL");
    return true;
  }
  if (pick == QP__ADV_MCV)
    qp__adv_fmt(sql, sizeof sql, "SELECT quote(%s), count(*) FROM %s WHERE %s IS NOT NULL "
                "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1 OFFSET %d", e, from, e, k);
  else
    qp__adv_fmt(sql, sizeof sql, "SELECT quote(%s) FROM %s WHERE %s IS NOT NULL ORDER BY %s "
                "LIMIT 1 OFFSET %lld", e, from, e, e,
                (long long)(pick == QP__ADV_LOW_THIRD ? nonnull / 3 : nonnull * 2 / 3));
  bool ok = qp__conn_exec_quiet(c, sql, NULL, 0, &r) == QP_OK;
  if (ok && qp_result_rows(r) > 0) {
    qp__adv_rstr(r, 0, 0, lit, cap);
    if (pick == QP__ADV_MCV) *rows = qp__adv_rint64(r, 0, 1);
  } else if (ok) {
    qp__adv_fmt(lit, cap, "NULL"); /* fewer distinct values than an IN list */
  }
  qp_result_free(r);
  return ok;
}

static void sq_unsupported(adv_ctx *x, int n, const char *what) {
  x->st = QP_UNSUPPORTED;
  qp__adv_fmt(x->msg, sizeof x->msg, "SQLite: placeholder %d %s: no representative value can be "
              "read for it (give the statement with values)", n, what);
}

/* ---- the file's own statistics: sqlite_stat1, sqlite_stat4 ---------------- */

static bool rec_varint(const unsigned char *p, size_t len, size_t *pos, uint64_t *v) {
  *v = 0;
  for (int i = 0; i < 9; i++) {
    if (*pos >= len) return false;
    unsigned char b = p[(*pos)++];
    if (i == 8) {
      *v = (*v << 8) | b;
      return true;
    }
    *v = (*v << 7) | (b & 0x7f);
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

bool qp__adv_record_literal(const unsigned char *rec, size_t len, char *out, size_t cap) {
  if (cap == 0) return false;
  out[0] = '\0';
  size_t pos = 0;
  uint64_t hdr, type;
  if (!rec_varint(rec, len, &pos, &hdr) || hdr > len || hdr <= pos) return false;
  if (!rec_varint(rec, (size_t)hdr, &pos, &type)) return false;
  size_t body = (size_t)hdr, avail = len - body;
  const unsigned char *v = rec + body;
  static const unsigned k_int_len[] = {0, 1, 2, 3, 4, 6, 8};
  if (type == 0 || type == 10 || type == 11) return false; /* NULL, reserved */
  if (type == 8 || type == 9) return qp__adv_fmt(out, cap, "%d", (int)type - 8) + 1 < cap;
  if (type <= 6) {
    unsigned n = k_int_len[type];
    if (avail < n) return false;
    uint64_t u = (v[0] & 0x80) ? UINT64_MAX : 0; /* big-endian two's complement */
    for (unsigned i = 0; i < n; i++) u = (u << 8) | v[i];
    return qp__adv_fmt(out, cap, "%lld", (long long)(int64_t)u) + 1 < cap;
  }
  if (type == 7) {
    if (avail < 8) return false;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = (u << 8) | v[i];
    double d;
    memcpy(&d, &u, sizeof d);
    if (!isfinite(d)) return false;
    size_t w = qp__adv_fmt(out, cap, "%.17g", d);
    /* a real stays a real: 2.0 is printed "2" */
    if (strpbrk(out, ".eEn") == NULL && w + 3 < cap) memcpy(out + w, ".0", 3), w += 2;
    return w + 1 < cap;
  }
  uint64_t n = (type - 12) / 2;
  if (n > avail) return false;
  size_t o = 0;
  if (type % 2 == 0) { /* blob */
    static const char hex[] = "0123456789ABCDEF";
    if (3 + 2 * n + 1 > cap) return false;
    out[o++] = 'X', out[o++] = '\'';
    for (uint64_t i = 0; i < n; i++) out[o++] = hex[v[i] >> 4], out[o++] = hex[v[i] & 15];
  } else { /* text, quotes doubled */
    if (memchr(v, '\0', (size_t)n) != NULL) return false;
    out[o++] = '\'';
    for (uint64_t i = 0; i < n; i++) {
      if (o + 3 >= cap) return false;
      if (v[i] == '\'') out[o++] = '\'';
      out[o++] = (char)v[i];
    }
  }
  if (o + 2 > cap) return false;
  out[o++] = '\'';
  out[o] = '\0';
  return true;
}

int qp__adv_stat4_pick(const int64_t *neq, const int64_t *nlt, size_t n, qp__adv_pick pick, int k,
                       int64_t rows) {
  if (n == 0) return -1;
  if (pick != QP__ADV_MCV) {
    double want = (double)rows * (pick == QP__ADV_LOW_THIRD ? 1.0 / 3 : 2.0 / 3);
    int best = -1;
    double gap = 0;
    for (size_t i = 0; i < n; i++) {
      double g = fabs((double)nlt[i] - want);
      if (best < 0 || g < gap || (g == gap && nlt[i] < nlt[best])) best = (int)i, gap = g;
    }
    return best;
  }
  /* the k-th distinct leading value by neq: samples with the same leading
   * value have the same nlt */
  int prev = -1;
  for (int round = 0; round <= k; round++) {
    int best = -1;
    for (size_t i = 0; i < n; i++) {
      bool seen = false; /* already taken in an earlier round, or a duplicate of it */
      if (prev >= 0) {
        /* taken: ranks before prev (larger neq, or equal neq and lower nlt) or is prev */
        seen = neq[i] > neq[prev] || (neq[i] == neq[prev] && nlt[i] <= nlt[prev]);
      }
      if (seen) continue;
      if (best < 0 || neq[i] > neq[best] || (neq[i] == neq[best] && nlt[i] < nlt[best]))
        best = (int)i;
    }
    if (best < 0) return -1;
    prev = best;
  }
  return prev;
}

#define SQ_STAT_INDEXES 64
#define SQ_STAT_SAMPLES 64

/* The statistics of one index whose leading key is a plain column. */
typedef struct sq_stat_index {
  char table[ADV_NAME], index[ADV_NAME], column[ADV_NAME];
  int64_t rows, per_value; /* sqlite_stat1: rows, rows per leading value; -1 unknown */
  size_t nsamples;         /* sqlite_stat4 samples with a non-NULL leading value */
  int64_t neq[SQ_STAT_SAMPLES], nlt[SQ_STAT_SAMPLES];
  char lit[SQ_STAT_SAMPLES][128];
} sq_stat_index;

/* What the file's last ANALYZE left (read from the copy before the
 * advisor's own ANALYZE replaces it). */
struct qp__adv_sq_stats {
  bool stat1, stat4;
  size_t n;
  sq_stat_index ix[SQ_STAT_INDEXES];
};

static bool sq_has_table(qp_conn *c, const char *name) {
  char out[ADV_NAME];
  return qp__adv_sq_table_named(c, name, out, sizeof out);
}

static sq_stat_index *sq_stat_find(qp__adv_sq_stats *s, const char *table, const char *index) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->ix[i].table, table) == 0 && strcmp(s->ix[i].index, index) == 0) return &s->ix[i];
  return NULL;
}

/* Reads sqlite_stat1 and sqlite_stat4 of the copy (as the live file had
 * them): for every index whose leading key is a column, its row count,
 * rows per leading value and the samples' leading values. What cannot be
 * read is left out (the table is read instead). */
static void sq_stats_read(qp_conn *c, qp__adv_sq_stats *s) {
  memset(s, 0, sizeof *s);
  s->stat1 = sq_has_table(c, "sqlite_stat1");
  s->stat4 = sq_has_table(c, "sqlite_stat4");
  qp_result *r = NULL;
  if (s->stat1 &&
      qp__conn_exec_quiet(c, "SELECT s.tbl, s.idx, ii.name, s.stat FROM sqlite_stat1 s, "
                          "pragma_index_info(s.idx) ii WHERE ii.seqno = 0 AND ii.name IS NOT NULL",
                          NULL, 0, &r) == QP_OK) {
    for (size_t i = 0; i < qp_result_rows(r) && s->n < SQ_STAT_INDEXES; i++) {
      sq_stat_index *e = &s->ix[s->n];
      memset(e, 0, sizeof *e);
      qp__adv_rstr(r, i, 0, e->table, sizeof e->table);
      qp__adv_rstr(r, i, 1, e->index, sizeof e->index);
      qp__adv_rstr(r, i, 2, e->column, sizeof e->column);
      char stat[256];
      qp__adv_rstr(r, i, 3, stat, sizeof stat);
      long long rows = -1, per = -1;
      if (sscanf(stat, "%lld %lld", &rows, &per) < 1) continue;
      e->rows = rows;
      e->per_value = per;
      s->n++;
    }
  }
  qp_result_free(r);
  r = NULL;
  if (!s->stat4 || s->n == 0) return;
  /* the samples in key order (each index's rows as ANALYZE wrote them) */
  qp_result *enc = NULL;
  bool utf8 = qp__conn_exec_quiet(c, "PRAGMA encoding", NULL, 0, &enc) == QP_OK &&
              qp_result_rows(enc) > 0 && qp_result_value(enc, 0, 0, NULL) != NULL &&
              strcmp(qp_result_value(enc, 0, 0, NULL), "UTF-8") == 0;
  qp_result_free(enc);
  if (!utf8) return; /* text samples would be UTF-16: read the table instead */
  if (qp__conn_exec_quiet(c, "SELECT tbl, idx, neq, nlt, sample FROM sqlite_stat4 "
                          "WHERE typeof(sample) = 'blob' ORDER BY rowid", NULL, 0, &r) == QP_OK) {
    for (size_t i = 0; i < qp_result_rows(r); i++) {
      char tbl[ADV_NAME], idx[ADV_NAME], neq[64], nlt[64];
      qp__adv_rstr(r, i, 0, tbl, sizeof tbl);
      qp__adv_rstr(r, i, 1, idx, sizeof idx);
      sq_stat_index *e = sq_stat_find(s, tbl, idx);
      if (e == NULL || e->nsamples == SQ_STAT_SAMPLES) continue;
      qp__adv_rstr(r, i, 2, neq, sizeof neq);
      qp__adv_rstr(r, i, 3, nlt, sizeof nlt);
      long long q = -1, l = -1;
      if (sscanf(neq, "%lld", &q) != 1 || sscanf(nlt, "%lld", &l) != 1 || q <= 0 || l < 0) continue;
      size_t bl = 0;
      const unsigned char *b = qp_result_blob(r, i, 4, &bl);
      if (b == NULL || !qp__adv_record_literal(b, bl, e->lit[e->nsamples], sizeof e->lit[0]))
        continue; /* a NULL leading value, or one too long to bind */
      e->neq[e->nsamples] = q;
      e->nlt[e->nsamples] = l;
      e->nsamples++;
    }
  }
  qp_result_free(r);
}

qp__adv_sq_stats *qp__adv_sq_stats_new(adv_ctx *x, qp_conn *c) {
  qp__adv_sq_stats *s = qp__calloc(&x->a->hooks, 1, sizeof *s);
  if (s == NULL) {
    x->st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
    return NULL;
  }
  sq_stats_read(c, s);
  return s;
}

void qp__adv_sq_stats_free(adv_ctx *x, qp__adv_sq_stats *s) { qp__free(&x->a->hooks, s); }

/* The statistics of an index of `table` led by `col`, or NULL; with
 * samples when `samples` (the first such index). */
static const sq_stat_index *sq_stat_for(const qp__adv_sq_stats *s, const char *table,
                                        const char *col, bool samples) {
  for (size_t i = 0; s != NULL && i < s->n; i++)
    if (strcasecmp(s->ix[i].table, table) == 0 && strcasecmp(s->ix[i].column, col) == 0 &&
        (!samples || s->ix[i].nsamples > 0))
      return &s->ix[i];
  return NULL;
}

/* Whether the statement has a placeholder. */
bool qp__adv_sq_has_params(const char *sql) {
  size_t len = strlen(sql), pos = 0;
  for (;;) {
    qp_tok t;
    pos = qp__sql_lex_sig(QP_DIALECT_SQLITE, sql, len, pos, &t);
    if (t.type == QP_T_EOF) return false;
    if (t.type == QP_T_PARAM) return true;
  }
}

/* Replaces every placeholder of x->run by a representative value read
 * from the copy, and says which in a note. */
void qp__adv_sq_bind(adv_ctx *x, qp_conn *c, const qp__adv_sq_stats *stats) {
  const char *sql = x->run;
  size_t len = strlen(sql), pos = 0, ntoks = 0, nparams = 0;
  qp_tok *toks = qp__calloc(&x->a->hooks, SQ_MAX_TOKS, sizeof *toks);
  if (toks == NULL) {
    x->st = QP_NOMEM;
    qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
    return;
  }
  for (;;) {
    qp_tok t;
    pos = qp__sql_lex_sig(QP_DIALECT_SQLITE, sql, len, pos, &t);
    if (t.type == QP_T_EOF) break;
    if (ntoks == SQ_MAX_TOKS) {
      sq_unsupported(x, 0, "(the statement is too long to read)");
      qp__free(&x->a->hooks, toks);
      return;
    }
    nparams += t.type == QP_T_PARAM;
    toks[ntoks++] = t;
  }
  if (nparams == 0) {
    qp__free(&x->a->hooks, toks);
    return;
  }
  qp_buf out, said;
  qp__buf_init(&out, &x->a->hooks);
  qp__buf_init(&said, &x->a->hooks);
  size_t copied = 0, nstat4 = 0, ntable = 0;
  int n = 0;
  for (size_t i = 0; i < ntoks && x->st == QP_OK; i++) {
    if (toks[i].type != QP_T_PARAM) continue;
    n++;
    char lit[512] = "", what[700] = "";
    const qp_tok *pv = i > 0 ? &toks[i - 1] : NULL;
    size_t lhs = SIZE_MAX; /* the last token of the compared expression */
    qp__adv_pick pick = QP__ADV_MCV;
    int k = 0;
    const char *how = "the most common value";
    if (pv != NULL && qp__adv_sq_word(sql, pv, "LIMIT")) {
      qp__adv_fmt(lit, sizeof lit, "10");
      qp__adv_fmt(what, sizeof what, "LIMIT 10 (a typical page)");
    } else if (pv != NULL && qp__adv_sq_word(sql, pv, "OFFSET")) {
      qp__adv_fmt(lit, sizeof lit, "0");
      qp__adv_fmt(what, sizeof what, "OFFSET 0 (the first page)");
    } else if (pv != NULL && (pv->type == QP_T_OP || qp__adv_sq_word(sql, pv, "LIKE") ||
                              qp__adv_sq_word(sql, pv, "GLOB") || qp__adv_sq_word(sql, pv, "IS"))) {
      const char *op = sql + pv->start;
      size_t ol = pv->end - pv->start;
      if (pv->type == QP_T_OP && op[0] == '<' && (ol == 1 || op[1] == '='))
        pick = QP__ADV_LOW_THIRD, how = "a third of the rows below it, as a generic plan assumes";
      else if (pv->type == QP_T_OP && op[0] == '>')
        pick = QP__ADV_HIGH_THIRD, how = "a third of the rows above it, as a generic plan assumes";
      else if (pv->type == QP_T_OP && !(ol == 1 && op[0] == '=') && !(ol == 2 && op[0] == '=') &&
               !(ol == 2 && (op[0] == '!' || op[0] == '<')))
        pv = NULL; /* + - || ...: not a comparison */
      if (pv != NULL && i >= 2) lhs = i - 2;
    } else if (pv != NULL && qp__adv_sq_word(sql, pv, "BETWEEN") && i >= 2) {
      pick = QP__ADV_LOW_THIRD, how = "a third of the rows below it";
      lhs = i - 2;
    } else if (pv != NULL && qp__adv_sq_word(sql, pv, "AND") && i >= 4 &&
               toks[i - 2].type == QP_T_PARAM && qp__adv_sq_word(sql, &toks[i - 3], "BETWEEN")) {
      pick = QP__ADV_HIGH_THIRD, how = "a third of the rows above it";
      lhs = i - 4;
    } else if (pv != NULL && (pv->type == QP_T_LPAREN || pv->type == QP_T_COMMA)) {
      /* col IN (?, ?, ?): the k-th most common value */
      size_t j = i - 1;
      while (j > 0 && toks[j].type == QP_T_COMMA && toks[j - 1].type == QP_T_PARAM) j -= 2, k++;
      if (toks[j].type == QP_T_LPAREN && j >= 2 && qp__adv_sq_word(sql, &toks[j - 1], "IN")) {
        lhs = j - 2;
        if (qp__adv_sq_word(sql, &toks[lhs], "NOT") && lhs > 0) lhs--;
        how = "the most common values, in turn";
      }
    }
    if (lit[0] == '\0') {
      if (lhs == SIZE_MAX) {
        char at[96];
        qp__adv_fmt(at, sizeof at, "(at \"%.40s\") is not compared with a column, LIMIT or OFFSET",
                    sql + (i >= 2 ? toks[i - 2].start : toks[i].start));
        sq_unsupported(x, n, at);
        break;
      }
      /* [q.]col, or f(... [q.]col ...) */
      size_t start = lhs;
      char qual[ADV_NAME] = "", col[ADV_NAME] = "";
      if (qp__adv_sq_name(&toks[lhs])) {
        qp__adv_sq_text(sql, &toks[lhs], col, sizeof col);
        if (lhs >= 2 && toks[lhs - 1].type == QP_T_DOT && qp__adv_sq_name(&toks[lhs - 2])) {
          qp__adv_sq_text(sql, &toks[lhs - 2], qual, sizeof qual);
          start = lhs - 2;
        }
      } else if (toks[lhs].type == QP_T_RPAREN) {
        int depth = 0;
        size_t j = lhs;
        for (;; j--) {
          depth += toks[j].type == QP_T_RPAREN ? 1 : toks[j].type == QP_T_LPAREN ? -1 : 0;
          if (depth == 0 || j == 0) break;
        }
        if (depth == 0 && j > 0 && toks[j - 1].type == QP_T_WORD) {
          start = j - 1;
          for (size_t m = j + 1; m < lhs && col[0] == '\0'; m++) {
            if (!qp__adv_sq_name(&toks[m]) || toks[m + 1].type == QP_T_LPAREN) continue;
            if (toks[m + 1].type == QP_T_DOT && m + 2 < lhs && qp__adv_sq_name(&toks[m + 2])) {
              qp__adv_sq_text(sql, &toks[m], qual, sizeof qual);
              qp__adv_sq_text(sql, &toks[m + 2], col, sizeof col);
            } else {
              qp__adv_sq_text(sql, &toks[m], col, sizeof col);
            }
          }
        }
      }
      char table[ADV_NAME];
      if (col[0] == '\0' ||
          !column_table(x, c, qual, col, toks, ntoks, table, sizeof table)) {
        char at[96];
        qp__adv_fmt(at, sizeof at, "(at \"%.40s\") is not compared with a column of a table",
                    sql + toks[start].start);
        sq_unsupported(x, n, at);
        break;
      }
      char e[400];
      qp__adv_fmt(e, sizeof e, "%.*s", (int)(toks[lhs].end - toks[start].start),
                  sql + toks[start].start);
      /* a plain column an index leads: the file's sqlite_stat4 samples of
       * it when it has them, else the table */
      const bool plain = qp__adv_sq_name(&toks[lhs]);
      const sq_stat_index *si = plain ? sq_stat_for(stats, table, col, true) : NULL;
      int pk = si ? qp__adv_stat4_pick(si->neq, si->nlt, si->nsamples, pick, k, si->rows) : -1;
      if (pk >= 0) {
        qp__adv_fmt(lit, sizeof lit, "%s", si->lit[pk]);
        if (pick == QP__ADV_MCV)
          qp__adv_fmt(what, sizeof what, "%s = %s (%s of the sqlite_stat4 samples of index %s: "
                      "%lld of %lld rows at the file's last ANALYZE)", e, lit,
                      k > 0 ? "the most common values, in turn," : "the most common", si->index,
                      (long long)si->neq[pk], (long long)si->rows);
        else
          qp__adv_fmt(what, sizeof what, "%s: %s (the sqlite_stat4 sample of index %s nearest "
                      "%s: %lld of %lld rows below it at the file's last ANALYZE)", e, lit,
                      si->index, pick == QP__ADV_LOW_THIRD ? "a third of the rows below it"
                                                          : "a third of the rows above it",
                      (long long)si->nlt[pk], (long long)si->rows);
        nstat4++;
      } else {
        int64_t rows = -1, all = -1;
        if (!sq_value(c, e, table, qual, pick, k, lit, sizeof lit, &rows, &all)) {
          qp__adv_sq_fail(x, QP_QUERY, "reading a representative value on the copy", c);
          break;
        }
        if (rows >= 0)
          qp__adv_fmt(what, sizeof what, "%s = %s (%s: %lld of %lld rows)", e, lit, how,
                      (long long)rows, (long long)all);
        else
          qp__adv_fmt(what, sizeof what, "%s: %s (%s)", e, lit, how);
        const sq_stat_index *s1 = plain ? sq_stat_for(stats, table, col, false) : NULL;
        if (s1 != NULL && s1->per_value > 0) {
          size_t wl = strlen(what);
          qp__adv_fmt(what + wl, sizeof what - wl, " [sqlite_stat1 of index %s: %lld rows, about "
                      "%lld per value]", s1->index, (long long)s1->rows, (long long)s1->per_value);
        }
        ntable++;
      }
    }
    qp__buf_append(&out, sql + copied, toks[i].start - copied);
    qp__buf_puts(&out, lit);
    copied = toks[i].end;
    qp__buf_printf(&said, "%s%s", said.len ? "; " : "", what);
  }
  qp__free(&x->a->hooks, toks);
  if (x->st == QP_OK) {
    qp__buf_append(&out, sql + copied, len - copied);
    char *run = out.failed || said.failed ? NULL : qp__strdup(&x->a->hooks, qp__buf_cstr(&out));
    if (run == NULL) {
      x->st = QP_NOMEM;
      qp__adv_fmt(x->msg, sizeof x->msg, "out of memory");
    } else {
      qp__free(&x->a->hooks, x->run);
      x->run = run;
      /* say which: the file's statistics, the table, and why not the other */
      const char *why = !stats->stat1 && !stats->stat4
                            ? "the file has no sqlite_stat1 or sqlite_stat4: it was never ANALYZEd"
                        : !stats->stat4
                            ? "the file has sqlite_stat1 only, which holds no values; no "
                              "sqlite_stat4: it was ANALYZEd by an SQLite built without STAT4"
                            : "the file's sqlite_stat4 has no samples of these columns: they "
                              "cover the leading columns of indexes only";
      if (nstat4 > 0 && ntable == 0)
        qp__adv_note(x, "placeholders bound to representative values from the file's "
                     "sqlite_stat4 samples (its last ANALYZE, copied with it): %s",
                     qp__buf_cstr(&said));
      else if (nstat4 > 0)
        qp__adv_note(x, "placeholders bound to representative values from the file's "
                     "sqlite_stat4 samples (its last ANALYZE, copied with it) where an index "
                     "leads with the column, else read from the table on the copy: %s",
                     qp__buf_cstr(&said));
      else if (ntable > 0)
        qp__adv_note(x, "placeholders bound to representative values read from the table on the "
                     "copy (%s): %s", why, qp__buf_cstr(&said));
      else
        qp__adv_note(x, "placeholders bound to: %s", qp__buf_cstr(&said));
      x->a->sum.plan_source = qp__adv_str(x->a, x->analyze
                                                    ? "copy: explain query plan, measured runs, "
                                                      "representative values"
                                                    : "copy: explain query plan, representative "
                                                      "values");
    }
  }
  qp__buf_free(&out);
  qp__buf_free(&said);
}
