#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void *default_realloc(void *p, size_t n, void *ud) {
  (void)ud;
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

void qp__hooks_init(qp_hooks *dst, const qp_hooks *src) {
  if (src != NULL) {
    *dst = *src;
  } else {
    memset(dst, 0, sizeof *dst);
  }
  if (dst->realloc_fn == NULL) {
    dst->realloc_fn = default_realloc;
    dst->alloc_ud = NULL;
  }
}

void *qp__realloc(const qp_hooks *h, void *p, size_t n) {
  if (n == 0) n = 1; /* a zero-size request is still an allocation, never a free */
  if (h == NULL || h->realloc_fn == NULL) return realloc(p, n);
  return h->realloc_fn(p, n, h->alloc_ud);
}

/* Without a user allocator these go straight to malloc, calloc and free:
 * glibc's realloc(NULL, n) and a calloc built from malloc + memset cost a
 * few dozen instructions more, on every query's result. */
static bool default_alloc(const qp_hooks *h) {
  return h == NULL || h->realloc_fn == NULL || h->realloc_fn == default_realloc;
}

void *qp__malloc(const qp_hooks *h, size_t n) {
  if (default_alloc(h)) return malloc(n == 0 ? 1 : n);
  return qp__realloc(h, NULL, n);
}

void *qp__calloc(const qp_hooks *h, size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size) return NULL;
  if (default_alloc(h)) return calloc(count == 0 || size == 0 ? 1 : count, size == 0 ? 1 : size);
  void *p = qp__malloc(h, count * size);
  if (p != NULL) memset(p, 0, count * size);
  return p;
}

void qp__free(const qp_hooks *h, void *p) {
  if (p == NULL) return;
  if (default_alloc(h)) {
    free(p);
    return;
  }
  h->realloc_fn(p, 0, h->alloc_ud);
}

char *qp__strndup(const qp_hooks *h, const char *s, size_t n) {
  char *d = qp__malloc(h, n + 1);
  if (d == NULL) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *qp__strdup(const qp_hooks *h, const char *s) {
  if (s == NULL) return NULL;
  return qp__strndup(h, s, strlen(s));
}
