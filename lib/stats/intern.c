/*
 * String interning for the dimensions of a statistics key (database, user,
 * application, host): a process records millions of events under a handful
 * of distinct values, so each distinct value is kept once and every entry
 * points at it. Open addressing, linear probing, XXH3 of the bytes.
 */
#include <string.h>
#include <xxhash.h>

#include "stats/stats_int.h"

const char qp__intern_other[] = "(other)";

void qp__intern_init(qp_intern *t, const qp_hooks *h, size_t max_bytes) {
  memset(t, 0, sizeof *t);
  t->hooks = h;
  t->max_bytes = max_bytes;
}

void qp__intern_free(qp_intern *t) {
  for (size_t i = 0; i < t->cap; i++) qp__free(t->hooks, t->slots[i]);
  qp__free(t->hooks, t->slots);
  memset(t, 0, sizeof *t);
}

static bool grow(qp_intern *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  char **slots = qp__calloc(t->hooks, cap, sizeof *slots);
  if (slots == NULL) return false;
  for (size_t i = 0; i < t->cap; i++) {
    char *s = t->slots[i];
    if (s == NULL) continue;
    size_t j = (size_t)XXH3_64bits(s, strlen(s)) & (cap - 1);
    while (slots[j] != NULL) j = (j + 1) & (cap - 1);
    slots[j] = s;
  }
  qp__free(t->hooks, t->slots);
  t->slots = slots;
  t->cap = cap;
  return true;
}

const char *qp__intern(qp_intern *t, const char *s, size_t len) {
  if (len == 0) return "";
  if ((t->count + 1) * 2 > t->cap && !grow(t)) return NULL;
  size_t j = (size_t)XXH3_64bits(s, len) & (t->cap - 1);
  for (char *x; (x = t->slots[j]) != NULL; j = (j + 1) & (t->cap - 1))
    if (strncmp(x, s, len) == 0 && x[len] == '\0') return x;
  if (t->max_bytes != 0 && t->bytes + len + 1 > t->max_bytes) return qp__intern_other;
  char *x = qp__strndup(t->hooks, s, len);
  if (x == NULL) return NULL;
  t->slots[j] = x;
  t->count++;
  t->bytes += len + 1;
  return x;
}
