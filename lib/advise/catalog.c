/*
 * The advisor's catalog (PostgreSQL): the tables a plan reads, their
 * existing indexes, collations and foreign keys; candidates deduplicated
 * against those indexes and each other; "consider dropping" notes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "advise/advise_int.h"

/* ---- the catalog --------------------------------------------------------- */

static void load_indexes(adv_ctx *x, adv_table *t) {
  qp_result *r = NULL;
  qp_param p = qp_param_text(t->oid);
  const char *sql =
      "SELECT ic.relname, am.amname, x.indisunique, x.indpred IS NOT NULL, k, "
      "pg_get_indexdef(x.indexrelid, k, true), coalesce(oc.opcname, ''), x.indnkeyatts, "
      "coalesce(su.idx_scan, -1), pg_relation_size(x.indexrelid), x.indisprimary "
      "FROM pg_index x JOIN pg_class ic ON ic.oid = x.indexrelid JOIN pg_am am ON am.oid = ic.relam "
      "LEFT JOIN pg_stat_user_indexes su ON su.indexrelid = x.indexrelid "
      "CROSS JOIN LATERAL generate_series(1, least(x.indnkeyatts, 3)) k "
      "LEFT JOIN pg_opclass oc ON oc.oid = (x.indclass::oid[])[k - 1] "
      "WHERE x.indrelid = $1::oid AND x.indisvalid ORDER BY ic.relname, k";
  if (qp__adv_q(x, sql, &p, 1, &r) != QP_OK) return;
  for (size_t i = 0; i < qp_result_rows(r); i++) {
    const char *name = qp_result_value(r, i, 0, NULL);
    adv_index *ix = t->nindexes > 0 ? &t->idx[t->nindexes - 1] : NULL;
    if (ix == NULL || strcmp(ix->name, name) != 0) {
      if (t->nindexes >= ADV_MAX_INDEXES) break;
      ix = &t->idx[t->nindexes++];
      memset(ix, 0, sizeof *ix);
      qp__adv_fmt(ix->name, sizeof ix->name, "%s", name);
      qp__adv_rstr(r, i, 1, ix->am, sizeof ix->am);
      ix->unique = strcmp(qp_result_value(r, i, 2, NULL), "t") == 0;
      ix->partial = strcmp(qp_result_value(r, i, 3, NULL), "t") == 0;
      ix->total_keys = (int)qp__adv_rint64(r, i, 7);
      ix->scans = qp__adv_rint64(r, i, 8);
      ix->size = qp__adv_rint64(r, i, 9);
      ix->primary = strcmp(qp_result_value(r, i, 10, NULL), "t") == 0;
    }
    if (ix->nkeys < ADV_MAX_KEYS) {
      qp__adv_rstr(r, i, 5, ix->keys[ix->nkeys], ADV_KEY);
      qp__adv_rstr(r, i, 6, ix->opc[ix->nkeys], sizeof ix->opc[0]);
      ix->nkeys++;
    }
  }
  qp_result_free(r);
}

int qp__adv_table(adv_ctx *x, const char *relname) {
  for (size_t i = 0; i < x->ntables; i++)
    if (strcmp(x->tables[i].relname, relname) == 0) return x->tables[i].found ? (int)i : -1;
  if (x->ntables >= ADV_MAX_TABLES) return -1;
  adv_table *t = &x->tables[x->ntables++];
  memset(t, 0, sizeof *t);
  qp__adv_fmt(t->relname, sizeof t->relname, "%s", relname);
  t->rows = t->writes = t->reads = -1;
  qp_result *r = NULL;
  qp_param p = qp_param_text(relname);
  const char *sql =
      "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
      "c.reltuples::bigint, coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, -1), "
      "coalesce(s.seq_tup_read + coalesce(s.idx_tup_fetch, 0), -1) "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
      "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
      "WHERE c.relname = $1 AND c.relkind IN ('r', 'p', 'm') "
      "ORDER BY pg_table_is_visible(c.oid) DESC, n.nspname LIMIT 1";
  if (qp__adv_q(x, sql, &p, 1, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return -1;
  }
  qp__adv_rstr(r, 0, 0, t->oid, sizeof t->oid);
  qp__adv_rstr(r, 0, 1, t->qual, sizeof t->qual);
  t->rows = qp__adv_rint64(r, 0, 2);
  t->writes = qp__adv_rint64(r, 0, 3);
  t->reads = qp__adv_rint64(r, 0, 4);
  qp_result_free(r);
  t->found = true;
  load_indexes(x, t);
  return (int)(t - x->tables);
}

int qp__adv_column_c_collation(adv_ctx *x, int ti, const char *col) {
  qp_result *r = NULL;
  qp_param p[2] = {qp_param_text(x->tables[ti].oid), qp_param_text(col)};
  const char *sql =
      "SELECT CASE WHEN co.collname IS NULL OR co.collname = 'default' "
      "THEN (SELECT datcollate FROM pg_database WHERE datname = current_database()) "
      "ELSE coalesce(co.collcollate, co.collname) END, coalesce(co.collprovider, 'd') "
      "FROM pg_attribute a LEFT JOIN pg_collation co ON co.oid = a.attcollation "
      "WHERE a.attrelid = $1::oid AND a.attname = $2";
  if (qp__adv_q(x, sql, p, 2, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return -1;
  }
  const char *coll = qp_result_value(r, 0, 0, NULL);
  const char *prov = qp_result_value(r, 0, 1, NULL);
  int c = coll && (strcmp(coll, "C") == 0 || strcmp(coll, "POSIX") == 0) && prov && prov[0] != 'i';
  qp_result_free(r);
  return c;
}

bool qp__adv_fk(adv_ctx *x, const char *conname, char *child, size_t childlen,
                char cols[ADV_MAX_KEYS][ADV_KEY], int *ncols) {
  qp_result *r = NULL;
  qp_param p = qp_param_text(conname);
  const char *sql =
      "SELECT c.relname, a.attname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
      "CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY u(att, ord) "
      "JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.att "
      "WHERE k.conname = $1 AND k.contype = 'f' ORDER BY k.oid, u.ord";
  *ncols = 0;
  if (qp__adv_q(x, sql, &p, 1, &r) != QP_OK || qp_result_rows(r) == 0) {
    qp_result_free(r);
    return false;
  }
  qp__adv_rstr(r, 0, 0, child, childlen);
  for (size_t i = 0; i < qp_result_rows(r) && *ncols < ADV_MAX_KEYS; i++) {
    if (strcmp(qp_result_value(r, i, 0, NULL), child) != 0) break;
    qp__adv_rstr(r, i, 1, cols[(*ncols)++], ADV_KEY);
  }
  qp_result_free(r);
  return *ncols > 0;
}

/* A key as compared: lower-case, no quotes, spaces, parentheses, casts
 * or direction. */
void qp__adv_key_norm(const char *k, char *out, size_t cap) {
  char tmp[ADV_KEY];
  qp__adv_fmt(tmp, sizeof tmp, "%s", k);
  char *d = strstr(tmp, " DESC");
  if (d) *d = '\0';
  d = strstr(tmp, " ASC");
  if (d) *d = '\0';
  d = strstr(tmp, " text_pattern_ops");
  if (d) *d = '\0';
  size_t o = 0;
  for (const char *p = tmp; *p && o + 1 < cap; p++) {
    if (p[0] == ':' && p[1] == ':') {
      p += 2;
      while (*p && (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9') || *p == ' ' || *p == '[' || *p == ']'))
        if (*p == ' ' && p[1] != '\0' && (p[1] < 'a' || p[1] > 'z')) break;
        else p++;
      p--;
      continue;
    }
    if (*p == ' ' || *p == '"' || *p == '(' || *p == ')') continue;
    out[o++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
  }
  out[o] = '\0';
}

static bool pattern_key(const char *k) { return strstr(k, "text_pattern_ops") != NULL; }

/* The existing index that already serves c (its keys begin with c's), or NULL. */
const adv_index *qp__adv_covered(const adv_table *t, const adv_cand *c) {
  for (size_t i = 0; i < t->nindexes; i++) {
    const adv_index *ix = &t->idx[i];
    if (ix->partial || strcmp(ix->am, "btree") != 0 || ix->nkeys < c->nkeys) continue;
    bool same = true;
    for (int k = 0; k < c->nkeys && same; k++) {
      char a[ADV_KEY], b[ADV_KEY];
      qp__adv_key_norm(c->keys[k], a, sizeof a);
      qp__adv_key_norm(ix->keys[k], b, sizeof b);
      same = strcmp(a, b) == 0;
      if (same && pattern_key(c->keys[k]) && strcmp(ix->opc[k], "text_pattern_ops") != 0 &&
          strcmp(ix->opc[k], "varchar_pattern_ops") != 0)
        same = false;
    }
    if (same) return ix;
  }
  return NULL;
}

void qp__adv_keys_join(const adv_cand *c, char *out, size_t cap) {
  size_t o = 0;
  out[0] = '\0';
  for (int i = 0; i < c->nkeys && o < cap; i++)
    o += qp__adv_fmt(out + o, cap - o, "%s%s", i ? ", " : "", c->keys[i]);
}

bool qp__adv_add_cand(adv_ctx *x, const adv_cand *c) {
  const adv_table *t = &x->tables[c->table];
  char kt[700];
  qp__adv_keys_join(c, kt, sizeof kt);
  const adv_index *ix = qp__adv_covered(t, c);
  if (ix != NULL) {
    qp__adv_note(x, "an index on %s (%s) is not suggested: %s already has it (%s)", t->qual, kt,
                 ix->name, ix->nkeys > c->nkeys ? "as the prefix of a wider index" : "same keys");
    return false;
  }
  for (size_t i = 0; i < x->ncands; i++) {
    const adv_cand *o = &x->cands[i];
    if (o->table != c->table || o->nkeys != c->nkeys) continue;
    bool same = strcmp(o->where, c->where) == 0;
    for (int k = 0; k < c->nkeys && same; k++) same = strcmp(o->keys[k], c->keys[k]) == 0;
    if (same) return false;
  }
  if (x->ncands >= ADV_MAX_CANDS) return false;
  adv_cand *n = &x->cands[x->ncands++];
  *n = *c;
  n->ms_after = -1;
  n->base = -1;
  n->size_bytes = -1;
  n->cost_before = n->cost_after = -1;
  return true;
}

/* "Consider dropping" notes from the catalog for every table the plan
 * read: indexes never scanned since the statistics reset, and indexes
 * whose keys are the first keys of another one. */
void qp__adv_catalog_notes(adv_ctx *x) {
  for (size_t ti = 0; ti < x->ntables; ti++) {
    const adv_table *t = &x->tables[ti];
    if (!t->found) continue;
    for (size_t i = 0; i < t->nindexes; i++) {
      const adv_index *a = &t->idx[i];
      if (a->scans == 0 && !a->unique && !a->primary)
        qp__adv_note(x, "consider dropping %s on %s: not scanned since the statistics reset "
                     "(%lld bytes, kept up to date by every write)", a->name, t->qual,
                     (long long)a->size);
      if (a->unique || a->partial || strcmp(a->am, "btree") != 0 || a->total_keys > ADV_MAX_KEYS)
        continue;
      for (size_t j = 0; j < t->nindexes; j++) {
        const adv_index *b = &t->idx[j];
        if (j == i || b->partial || strcmp(b->am, "btree") != 0 || b->total_keys < a->total_keys)
          continue;
        if (b->total_keys == a->total_keys && !b->unique && j < i) continue; /* said once */
        bool prefix = true;
        for (int k = 0; k < a->nkeys && prefix; k++) {
          char ka[ADV_KEY], kb[ADV_KEY];
          qp__adv_key_norm(a->keys[k], ka, sizeof ka);
          qp__adv_key_norm(b->keys[k], kb, sizeof kb);
          prefix = strcmp(ka, kb) == 0 && strcmp(a->opc[k], b->opc[k]) == 0;
        }
        if (!prefix) continue;
        qp__adv_note(x, "consider dropping %s on %s: %s %s", a->name, t->qual,
                     b->total_keys == a->total_keys ? "it has the same keys as"
                                                    : "its keys are a prefix of",
                     b->name);
        break;
      }
    }
  }
}
