/*
 * Plan conditions into indexable predicates (cond.h).
 */
#include "advise/cond.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

typedef struct span {
  const char *p;
  size_t n;
} span;

static span trim(span s) {
  while (s.n > 0 && isspace((unsigned char)s.p[0])) s.p++, s.n--;
  while (s.n > 0 && isspace((unsigned char)s.p[s.n - 1])) s.n--;
  return s;
}

/* Index just past the quote or bracket that opens at s.p[i], or s.n when it
 * is not closed. */
static size_t skip_quoted(span s, size_t i) {
  char q = s.p[i];
  for (i++; i < s.n; i++) {
    if (s.p[i] == q) {
      if (i + 1 < s.n && s.p[i + 1] == q) { i++; continue; }
      return i + 1;
    }
  }
  return s.n;
}

/* True when the whole span is one parenthesized group. */
static bool wrapped(span s) {
  if (s.n < 2 || s.p[0] != '(' || s.p[s.n - 1] != ')') return false;
  int depth = 0;
  for (size_t i = 0; i < s.n; i++) {
    char ch = s.p[i];
    if (ch == '\'' || ch == '"') { i = skip_quoted(s, i) - 1; continue; }
    if (ch == '(') depth++;
    if (ch == ')' && --depth == 0 && i != s.n - 1) return false;
  }
  return depth == 0;
}

static span unwrap(span s) {
  s = trim(s);
  for (int k = 0; k < 64 && wrapped(s); k++) s = trim((span){s.p + 1, s.n - 2});
  return s;
}

/* Position of the top-level word `w` (surrounded by spaces), or s.n. */
static size_t find_top_word(span s, const char *w, size_t from) {
  size_t wl = strlen(w);
  int depth = 0;
  for (size_t i = from; i < s.n; i++) {
    char ch = s.p[i];
    if (ch == '\'' || ch == '"') { i = skip_quoted(s, i) - 1; continue; }
    if (ch == '(' || ch == '[') depth++;
    else if ((ch == ')' || ch == ']') && depth > 0) depth--;
    else if (depth == 0 && i + wl <= s.n && memcmp(s.p + i, w, wl) == 0) return i;
  }
  return s.n;
}

static bool is_ident_char(char ch) { return isalnum((unsigned char)ch) || ch == '_' || ch == '$'; }

/* Copies an identifier (quoted or not) into dst; returns false unless the
 * span is exactly one. */
static bool one_ident(span s, char *dst, size_t cap) {
  if (s.n == 0) return false;
  size_t o = 0;
  if (s.p[0] == '"') {
    if (skip_quoted(s, 0) != s.n) return false;
    for (size_t i = 1; i + 1 < s.n; i++) {
      if (s.p[i] == '"') i++;
      if (o + 1 >= cap) return false;
      dst[o++] = s.p[i];
    }
  } else {
    if (isdigit((unsigned char)s.p[0]) || s.p[0] == '$') return false;
    for (size_t i = 0; i < s.n; i++) {
      if (!is_ident_char(s.p[i]) || o + 1 >= cap) return false;
      dst[o++] = s.p[i];
    }
  }
  dst[o] = '\0';
  return o > 0;
}

/* Strips a trailing "::type" cast (types may hold spaces and brackets,
 * "timestamp with time zone", "text[]"). */
static span strip_cast(span s) {
  s = unwrap(s);
  for (int k = 0; k < 8; k++) {
    size_t cut = s.n;
    int depth = 0;
    for (size_t i = 0; i + 1 < s.n; i++) {
      char ch = s.p[i];
      if (ch == '\'' || ch == '"') { i = skip_quoted(s, i) - 1; continue; }
      if (ch == '(') depth++;
      else if (ch == ')' && depth > 0) depth--;
      else if (depth == 0 && ch == ':' && s.p[i + 1] == ':') { cut = i; break; }
    }
    if (cut == s.n) break;
    s = unwrap((span){s.p, cut});
  }
  return s;
}

/* [qual.]column, possibly cast: fills qual and column. */
static bool column_ref(span s, char *qual, size_t qcap, char *col, size_t ccap) {
  s = strip_cast(s);
  qual[0] = '\0';
  size_t dot = s.n;
  for (size_t i = 0; i < s.n; i++) {
    if (s.p[i] == '"') { i = skip_quoted(s, i) - 1; continue; }
    if (s.p[i] == '.') { dot = i; break; }
  }
  if (dot < s.n) {
    if (!one_ident((span){s.p, dot}, qual, qcap)) return false;
    return one_ident((span){s.p + dot + 1, s.n - dot - 1}, col, ccap);
  }
  return one_ident(s, col, ccap);
}

/* A constant: built only of quoted strings, numbers, $n, casts, operators
 * and a few words that name no column (now(), CURRENT_DATE, NULL, ...), so
 * "(now() - '1 day'::interval)" is one and "b + 1" is not. */
static bool constant(span s) {
  s = trim(s);
  if (s.n == 0) return false;
  static const char *const k_words[] = {"now", "CURRENT_DATE", "CURRENT_TIMESTAMP", "LOCALTIMESTAMP",
                                        "NULL", "true", "false", "ARRAY"};
  bool after_cast = false;
  for (size_t i = 0; i < s.n;) {
    char ch = s.p[i];
    if (ch == '\'') {
      i = skip_quoted(s, i);
      after_cast = false;
    } else if (ch == ':' && i + 1 < s.n && s.p[i + 1] == ':') {
      i += 2;
      after_cast = true;
    } else if (ch == '$' || isdigit((unsigned char)ch)) {
      i++;
      while (i < s.n && (isalnum((unsigned char)s.p[i]) || s.p[i] == '.')) i++;
      after_cast = false;
    } else if (isalpha((unsigned char)ch) || ch == '_' || ch == '"') {
      size_t b = i;
      if (ch == '"') i = skip_quoted(s, i);
      else while (i < s.n && is_ident_char(s.p[i])) i++;
      if (after_cast) continue; /* a type name: "timestamp with time zone" */
      bool known = false;
      for (size_t k = 0; k < sizeof k_words / sizeof k_words[0]; k++)
        if (i - b == strlen(k_words[k]) && memcmp(s.p + b, k_words[k], i - b) == 0) known = true;
      if (!known) return false;
    } else if (ch == ' ') {
      i++;
    } else {
      if (ch != '[' && ch != ']') after_cast = false;
      if (strchr("()+-*/,[]{}", ch) == NULL) return false;
      i++;
    }
  }
  return true;
}

/* f(column[, constants]): the expression text and its column. */
static bool expression_ref(span s, qp__cond *c) {
  s = strip_cast(s);
  size_t open = 0;
  while (open < s.n && is_ident_char(s.p[open])) open++;
  if (open == 0 || open >= s.n || s.p[open] != '(' || s.p[s.n - 1] != ')') return false;
  span inner = {s.p + open + 1, s.n - open - 2};
  size_t comma = find_top_word(inner, ",", 0);
  span first = {inner.p, comma};
  if (!column_ref(first, c->qual, sizeof c->qual, c->column, sizeof c->column)) return false;
  if (comma < inner.n && !constant((span){inner.p + comma + 1, inner.n - comma - 1})) return false;
  if (s.n >= sizeof c->expr) return false;
  /* The expression as the index needs it: without the qualifier. */
  char fn[64];
  if (open >= sizeof fn) return false;
  memcpy(fn, s.p, open);
  fn[open] = '\0';
  if (comma < inner.n)
    snprintf(c->expr, sizeof c->expr, "%s(%s,%.*s)", fn, c->column, (int)(inner.n - comma - 1),
             inner.p + comma + 1);
  else
    snprintf(c->expr, sizeof c->expr, "%s(%s)", fn, c->column);
  return true;
}

static bool like_prefix(span rhs) {
  rhs = strip_cast(rhs);
  if (rhs.n < 3 || rhs.p[0] != '\'' || skip_quoted(rhs, 0) != rhs.n) return false;
  /* 'abc%': a fixed prefix of at least one character, one trailing %, no
   * other wildcard */
  if (rhs.p[rhs.n - 2] != '%' || rhs.n < 4) return false;
  for (size_t i = 1; i + 2 < rhs.n; i++)
    if (rhs.p[i] == '%' || rhs.p[i] == '_' || rhs.p[i] == '\\') return false;
  return true;
}

static const struct {
  const char *tok;
  qp__cond_op op;
} k_ops[] = {
    {" = ANY ", QP__COND_EQ}, {" <= ", QP__COND_RANGE}, {" >= ", QP__COND_RANGE},
    {" = ", QP__COND_EQ},     {" < ", QP__COND_RANGE},  {" > ", QP__COND_RANGE},
    {" ~~ ", QP__COND_LIKE_PREFIX},
};

static bool read_one(span s, qp__cond *c) {
  memset(c, 0, sizeof *c);
  s = unwrap(s);
  if (s.n == 0 || s.n >= sizeof c->text) return false;
  memcpy(c->text, s.p, s.n);
  c->text[s.n] = '\0';
  /* column IS NULL */
  static const char k_isnull[] = " IS NULL";
  size_t nl = sizeof k_isnull - 1;
  if (s.n > nl && memcmp(s.p + s.n - nl, k_isnull, nl) == 0) {
    c->op = QP__COND_IS_NULL;
    return column_ref((span){s.p, s.n - nl}, c->qual, sizeof c->qual, c->column,
                      sizeof c->column);
  }
  if (s.n > 4 && memcmp(s.p, "NOT ", 4) == 0) {
    c->op = QP__COND_BOOL;
    c->negated = true;
    return column_ref((span){s.p + 4, s.n - 4}, c->qual, sizeof c->qual, c->column,
                      sizeof c->column);
  }
  for (size_t k = 0; k < sizeof k_ops / sizeof k_ops[0]; k++) {
    size_t at = find_top_word(s, k_ops[k].tok, 0);
    if (at == s.n) continue;
    size_t tl = strlen(k_ops[k].tok);
    span lhs = {s.p, at}, rhs = {s.p + at + tl, s.n - at - tl};
    c->op = k_ops[k].op;
    if (c->op == QP__COND_LIKE_PREFIX && !like_prefix(rhs)) return false;
    if (column_ref(lhs, c->qual, sizeof c->qual, c->column, sizeof c->column)) {
      if (constant(rhs)) return true;
      if (c->op == QP__COND_EQ &&
          column_ref(rhs, c->rhs_qual, sizeof c->rhs_qual, c->rhs_column, sizeof c->rhs_column))
        return true;
      return false;
    }
    if (expression_ref(lhs, c)) return constant(rhs);
    /* constant op column: the column is what matters (= stays =) */
    if (constant(lhs) && column_ref(rhs, c->qual, sizeof c->qual, c->column, sizeof c->column))
      return c->op != QP__COND_LIKE_PREFIX;
    return false;
  }
  c->op = QP__COND_BOOL;
  return column_ref(s, c->qual, sizeof c->qual, c->column, sizeof c->column);
}

size_t qp__cond_read(const char *text, qp__cond *out, size_t max) {
  if (text == NULL || max == 0) return 0;
  span s = unwrap((span){text, strlen(text)});
  if (find_top_word(s, " OR ", 0) < s.n) return 0;
  size_t n = 0, pos = 0;
  while (pos <= s.n && n < max) {
    size_t at = find_top_word(s, " AND ", pos);
    span part = {s.p + pos, at - pos};
    if (read_one(part, &out[n])) n++;
    if (at >= s.n) break;
    pos = at + 5;
  }
  return n;
}
