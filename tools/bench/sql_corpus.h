/*
 * A deterministic SQL corpus for benchmarks: statements drawn from a fixed
 * set of query shapes, each statement tagged with the shape it came from,
 * so that a normalizer's grouping can be scored (shapes split into several
 * groups, groups merging several shapes).
 *
 * A shape is one combination of statement kind x table x clause pattern
 * (4 x 25 x 12 = 1,200 shapes by default), distinct by construction. Each
 * statement fills its shape with random literals of every kind the
 * PostgreSQL 15 grammar accepts (integers, negatives, decimals, exponents,
 * '' E'' $$ $tag$ B'' X'' U&'' strings, booleans, NULL, $n placeholders),
 * IN lists 1..300 long, ARRAY lists, VALUES 1..50 rows, ORM and sqlcommenter
 * comments, random keyword case and white space.
 *
 * Header-only (static functions) so that any benchmark can include it.
 */
#ifndef QP_BENCH_SQL_CORPUS_H
#define QP_BENCH_SQL_CORPUS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CORPUS_KINDS 4
#define CORPUS_TABLES 25
#define CORPUS_PATTERNS 12
#define CORPUS_SHAPES (CORPUS_KINDS * CORPUS_TABLES * CORPUS_PATTERNS)

typedef struct corpus_stmt {
  size_t off, len; /* text at corpus.text + off, NUL-terminated */
  uint32_t shape;
} corpus_stmt;

typedef struct corpus {
  char *text;
  size_t text_len, text_cap; /* bytes of SQL, NULs included */
  size_t sql_bytes;          /* bytes of SQL, NULs excluded */
  corpus_stmt *stmt;
  size_t n;
} corpus;

typedef struct corpus_rng {
  uint64_t s;
} corpus_rng;

static inline uint64_t corpus_rnd(corpus_rng *r) {
  /* splitmix64: deterministic on every platform */
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
static inline unsigned corpus_rn(corpus_rng *r, unsigned n) { return (unsigned)(corpus_rnd(r) % n); }

static void corpus_put(corpus *c, const char *s, size_t n) {
  if (c->text_len + n + 1 > c->text_cap) {
    size_t cap = c->text_cap ? c->text_cap * 2 : (1u << 20);
    while (cap < c->text_len + n + 1) cap *= 2;
    char *t = realloc(c->text, cap);
    if (t == NULL) {
      fprintf(stderr, "corpus: out of memory\n");
      exit(1);
    }
    c->text = t;
    c->text_cap = cap;
  }
  memcpy(c->text + c->text_len, s, n);
  c->text_len += n;
}

static void corpus_printf(corpus *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void corpus_printf(corpus *c, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  corpus_put(c, tmp, (size_t)k);
}

/* Writes a SQL fragment with random keyword case and white space: letters
 * outside quotes get a random case per statement style; each space becomes
 * one of a few white-space runs. */
typedef struct corpus_style {
  int kcase; /* 0 lower, 1 upper, 2 mixed */
  int ws;    /* 0 single spaces, 1 newlines and indents, 2 doubled */
} corpus_style;

static void corpus_sql(corpus *c, corpus_rng *r, const corpus_style *st, const char *s) {
  bool quoted = false;
  for (; *s; s++) {
    char ch = *s;
    if (ch == '"') quoted = !quoted;
    if (!quoted && ch == ' ') {
      if (st->ws == 1) {
        const char *w = corpus_rn(r, 4) == 0 ? "\n    " : " ";
        corpus_put(c, w, strlen(w));
      }
      else if (st->ws == 2)
        corpus_put(c, "  ", 2);
      else
        corpus_put(c, " ", 1);
      continue;
    }
    if (!quoted && ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))) {
      if (st->kcase == 1 || (st->kcase == 2 && corpus_rn(r, 2))) ch = (char)(ch & ~0x20);
      else ch = (char)(ch | 0x20);
    }
    corpus_put(c, &ch, 1);
  }
}

static void corpus_literal(corpus *c, corpus_rng *r, int *param) {
  static const char *const strs[] = {"'alice'", "'it''s'", "E'line\\nbreak'", "E'quote\\'s'",
                                     "$$dollar 'quoted' text$$", "$q$tagged; text$q$", "B'1010'",
                                     "X'1F'", "U&'d\\0061t'", "''", "'caf\xc3\xa9'",
                                     "'2024-01-15 10:00:00'", "'{\"a\": 1}'"};
  switch (corpus_rn(r, 10)) {
  case 0: case 1: corpus_printf(c, "%u", corpus_rn(r, 1000000)); break;
  case 2: corpus_printf(c, "-%u", 1 + corpus_rn(r, 1000)); break;
  case 3: corpus_printf(c, "%u.%02u", corpus_rn(r, 10000), corpus_rn(r, 100)); break;
  case 4: corpus_printf(c, "%ue%s%u", 1 + corpus_rn(r, 9), corpus_rn(r, 2) ? "-" : "", corpus_rn(r, 20)); break;
  case 5: case 6: {
    const char *s = strs[corpus_rn(r, sizeof strs / sizeof strs[0])];
    corpus_put(c, s, strlen(s));
    break;
  }
  case 7: corpus_printf(c, "$%d", (*param)++); break;
  case 8: {
    const char *b = corpus_rn(r, 2) ? "TRUE" : "false";
    corpus_put(c, b, strlen(b));
    break;
  }
  default: corpus_printf(c, ".%u", corpus_rn(r, 1000)); break;
  }
}

static void corpus_list(corpus *c, corpus_rng *r, int *param, unsigned maxlen) {
  unsigned n = 1 + corpus_rn(r, maxlen);
  /* lists are usually of one kind: ids, or placeholders */
  int kind = (int)corpus_rn(r, 3);
  for (unsigned i = 0; i < n; i++) {
    if (i) corpus_put(c, ", ", corpus_rn(r, 3) ? 2 : 1);
    if (kind == 0)
      corpus_printf(c, "%u", corpus_rn(r, 100000));
    else if (kind == 1)
      corpus_printf(c, "$%d", (*param)++);
    else
      corpus_literal(c, r, param);
  }
}

static const char *const corpus_tables[CORPUS_TABLES] = {
    "users", "orders", "order_items", "products", "public.accounts", "billing.invoices",
    "billing.payments", "\"Audit\".\"Log\"", "sessions", "events", "app.settings", "carts",
    "cart_items", "inventory", "shipments", "reviews", "\"Customers\"", "tags", "product_tags",
    "audit.changes", "notifications", "messages", "threads", "api_keys", "metrics.samples"};

/* Expands a pattern: {L} literal, {LIST} 1..300 literals, {ARR} 1..50,
 * {ROWS} 1..50 rows of four literals, {T} the table, {T2} another table. */
static void corpus_expand(corpus *c, corpus_rng *r, const corpus_style *st, const char *pat,
                          const char *table, const char *table2, int *param) {
  const char *p = pat;
  while (*p) {
    const char *brace = strchr(p, '{');
    size_t lit = brace ? (size_t)(brace - p) : strlen(p);
    if (lit) {
      char frag[512];
      memcpy(frag, p, lit);
      frag[lit] = '\0';
      corpus_sql(c, r, st, frag);
      p += lit;
    }
    if (!brace) break;
    if (strncmp(p, "{L}", 3) == 0) {
      corpus_literal(c, r, param);
      p += 3;
    } else if (strncmp(p, "{LIST}", 6) == 0) {
      corpus_list(c, r, param, 300);
      p += 6;
    } else if (strncmp(p, "{ARR}", 5) == 0) {
      corpus_list(c, r, param, 50);
      p += 5;
    } else if (strncmp(p, "{ROWS}", 6) == 0) {
      unsigned rows = 1 + corpus_rn(r, 50);
      for (unsigned i = 0; i < rows; i++) {
        corpus_put(c, i ? ", (" : "(", i ? 3 : 1);
        for (int j = 0; j < 4; j++) {
          if (j) corpus_put(c, ", ", 2);
          corpus_literal(c, r, param);
        }
        corpus_put(c, ")", 1);
      }
      p += 6;
    } else if (strncmp(p, "{T}", 3) == 0) {
      corpus_put(c, table, strlen(table));
      p += 3;
    } else if (strncmp(p, "{T2}", 4) == 0) {
      corpus_put(c, table2, strlen(table2));
      p += 4;
    } else {
      corpus_put(c, "{", 1);
      p++;
    }
  }
}

static const char *const corpus_patterns[CORPUS_KINDS][CORPUS_PATTERNS] = {
    {/* SELECT */
     "SELECT id, name, created_at FROM {T} WHERE id = {L}",
     "SELECT * FROM {T} WHERE id IN ({LIST})",
     "SELECT id, status FROM {T} WHERE owner_id = {L} AND score > {L}",
     "SELECT id FROM {T} WHERE owner_id = {L} ORDER BY 1 DESC LIMIT {L}",
     "SELECT a.id, b.total FROM {T} a JOIN {T2} b ON b.ref_id = a.id WHERE b.kind IN ({LIST})",
     "SELECT count(*) FROM {T} WHERE created_at BETWEEN {L}::timestamp AND {L}::timestamp",
     "SELECT id FROM {T} WHERE name LIKE {L} OR email = {L} LIMIT {L} OFFSET {L}",
     "SELECT * FROM {T} WHERE id = ANY(ARRAY[{ARR}])",
     "SELECT id FROM {T} WHERE deleted_at IS NULL AND owner_id = {L}",
     "SELECT id FROM {T} WHERE deleted_at IS NOT NULL AND owner_id = {L}",
     "SELECT status, count(*) FROM {T} GROUP BY 1 HAVING count(*) > {L}",
     "SELECT * FROM {T} t WHERE EXISTS (SELECT 1 FROM {T2} u WHERE u.ref_id = t.id AND u.v = {L})"},
    {/* INSERT */
     "INSERT INTO {T} (a, b, c, d) VALUES {ROWS}",
     "INSERT INTO {T} (a, b, c, e) VALUES {ROWS}",
     "INSERT INTO {T} (a, b, c, d) VALUES {ROWS} RETURNING id",
     "INSERT INTO {T} (a, b, c, d) VALUES {ROWS} ON CONFLICT (a) DO NOTHING",
     "INSERT INTO {T} (a, b, c, d) VALUES {ROWS} ON CONFLICT (a) DO UPDATE SET b = excluded.b",
     "INSERT INTO {T} (id, name) VALUES ({L}, {L})",
     "INSERT INTO {T} (id, name, created_at) VALUES ({L}, {L}, now())",
     "INSERT INTO {T} (a, b) SELECT a, b FROM {T2} WHERE c = {L}",
     "INSERT INTO {T} (x, y, z, w) VALUES {ROWS}",
     "INSERT INTO {T} VALUES {ROWS}",
     "INSERT INTO {T} (a, b, c, d) VALUES ({L}, {L}, {L}, {L}) RETURNING *",
     "INSERT INTO {T} (payload) VALUES ({L}::jsonb)"},
    {/* UPDATE */
     "UPDATE {T} SET name = {L} WHERE id = {L}",
     "UPDATE {T} SET name = {L}, updated_at = now() WHERE id = {L}",
     "UPDATE {T} SET counter = counter + {L} WHERE id = {L}",
     "UPDATE {T} SET counter = counter - {L} WHERE id = {L}",
     "UPDATE {T} SET status = {L} WHERE id IN ({LIST})",
     "UPDATE {T} SET deleted_at = now() WHERE owner_id = {L} AND deleted_at IS NULL",
     "UPDATE {T} t SET total = s.total FROM {T2} s WHERE s.id = t.id AND s.v > {L}",
     "UPDATE {T} SET tags = ARRAY[{ARR}] WHERE id = {L}",
     "UPDATE {T} SET name = {L} WHERE id = {L} RETURNING id",
     "UPDATE {T} SET score = {L}::numeric(10,2) WHERE id = {L}",
     "UPDATE {T} SET a = {L}, b = {L}, c = {L} WHERE id = {L}",
     "UPDATE {T} SET flag = {L} WHERE created_at < {L} AND flag <> {L}"},
    {/* DELETE */
     "DELETE FROM {T} WHERE id = {L}",
     "DELETE FROM {T} WHERE id IN ({LIST})",
     "DELETE FROM {T} WHERE created_at < {L}::timestamptz",
     "DELETE FROM {T} WHERE owner_id = {L} RETURNING id",
     "DELETE FROM {T} t USING {T2} s WHERE s.id = t.ref_id AND s.v = {L}",
     "DELETE FROM {T} WHERE id = ANY($1)",
     "DELETE FROM {T} WHERE status = {L} AND attempts >= {L}",
     "DELETE FROM {T} WHERE expires_at < now() - interval '1 day'",
     "DELETE FROM {T} WHERE id IN (SELECT id FROM {T2} WHERE v = {L})",
     "DELETE FROM {T} WHERE a IS NULL",
     "DELETE FROM {T} WHERE a IS NOT NULL AND b = {L}",
     "DELETE FROM {T} WHERE (a, b) = ({L}, {L})"}};

static void corpus_comment(corpus *c, corpus_rng *r, bool prefix) {
  static const char *const orm[] = {"/* User Load */ ", "/* Order#find */ ", "-- ActiveRecord\n",
                                    "/* hibernate: select */ "};
  if (prefix) {
    const char *s = orm[corpus_rn(r, 4)];
    corpus_put(c, s, strlen(s));
  } else {
    corpus_printf(c,
                  " /*action='show',controller='users',db_driver='psycopg2',route='/u/%u',"
                  "traceparent='00-%016llx%016llx-%016llx-01'*/",
                  corpus_rn(r, 1000), (unsigned long long)corpus_rnd(r),
                  (unsigned long long)corpus_rnd(r), (unsigned long long)corpus_rnd(r));
  }
}

/* Builds n statements (seeded; same seed, same corpus). */
static void corpus_build(corpus *c, size_t n, uint64_t seed) {
  memset(c, 0, sizeof *c);
  c->stmt = calloc(n, sizeof *c->stmt);
  if (c->stmt == NULL) {
    fprintf(stderr, "corpus: out of memory\n");
    exit(1);
  }
  corpus_rng r = {seed};
  for (size_t i = 0; i < n; i++) {
    uint32_t shape = (uint32_t)corpus_rn(&r, CORPUS_SHAPES);
    unsigned kind = shape % CORPUS_KINDS;
    unsigned table = (shape / CORPUS_KINDS) % CORPUS_TABLES;
    unsigned pattern = shape / (CORPUS_KINDS * CORPUS_TABLES);
    corpus_style st = {(int)corpus_rn(&r, 3), (int)corpus_rn(&r, 3)};
    size_t off = c->text_len;
    unsigned com = corpus_rn(&r, 4); /* 0 none, 1 ORM prefix, 2 sqlcommenter, 3 both */
    if (com & 1) corpus_comment(c, &r, true);
    int param = 1;
    corpus_expand(c, &r, &st, corpus_patterns[kind][pattern], corpus_tables[table],
                  corpus_tables[(table + 7) % CORPUS_TABLES], &param);
    if (com & 2) corpus_comment(c, &r, false);
    c->stmt[i].off = off;
    c->stmt[i].len = c->text_len - off;
    c->stmt[i].shape = shape;
    c->sql_bytes += c->stmt[i].len;
    corpus_put(c, "", 1); /* NUL: libpg_query wants C strings */
    c->text[c->text_len - 1] = '\0';
  }
  c->n = n;
}

static void corpus_free(corpus *c) {
  free(c->text);
  free(c->stmt);
  memset(c, 0, sizeof *c);
}

#endif
