#include "failalloc.h"

#include <stdlib.h>

static void *fail_realloc(void *p, size_t n, void *ud) {
  qpt_failalloc *fa = ud;
  if (n == 0) {
    if (p != NULL) fa->live--;
    free(p);
    return NULL;
  }
  fa->count++;
  if (fa->fail_at > 0 && (fa->count == fa->fail_at || (fa->sticky && fa->count > fa->fail_at)))
    return NULL;
  void *q = realloc(p, n);
  if (q != NULL && p == NULL) fa->live++;
  return q;
}

qp_hooks qpt_failalloc_hooks(qpt_failalloc *fa) {
  qp_hooks h = {0};
  h.realloc_fn = fail_realloc;
  h.alloc_ud = fa;
  return h;
}
