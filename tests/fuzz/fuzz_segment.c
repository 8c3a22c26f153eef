/*
 * libFuzzer target for the segment reader: a segment is input from another
 * process, so every check of the collector must hold on any bytes. The
 * first byte picks a mode: 0 the input is an image as it is; 1 a valid
 * header (1,024 index slots) is laid over its first bytes, so the fuzzer
 * spends its time on the index and the entries; 2 as 1, and the image is
 * also taken as the base of a copy with its second half's bytes bumped (the
 * delta path: counters that go down, keys that change). Nothing may crash,
 * and an image that passes the check must also pass as its own base (a
 * gain of nothing).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qprof/qprof.h"
#include "seg/seg_int.h"

/* merged gains pile up in the profile: a fresh one now and then */
static qp_profile *profile(void) {
  static qp_profile *p;
  static unsigned uses;
  if (p != NULL && ++uses % 1000 == 0) {
    qp_profile_free(p);
    p = NULL;
  }
  if (p == NULL && qp_profile_new(&p, NULL, NULL, 0) != QP_OK) abort();
  return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  int mode = data[0] % 3;
  data++;
  size--;
  size_t len = size;
  size_t min = QP_SEG_HEADER_SIZE + 1024 * 4;
  if (mode != 0 && len < min) len = min;
  uint8_t *img = calloc(1, len ? len : 1);
  if (img == NULL) return 0;
  memcpy(img, data, size);
  if (mode != 0) {
    qp_seg_header *h = (qp_seg_header *)img;
    memcpy(h->magic, QP_SEG_MAGIC, 8);
    h->version = QP_SEG_VERSION;
    h->header_size = QP_SEG_HEADER_SIZE;
    h->size = QP_SEG_MIN_SIZE;
    h->nslots = 1024;
    h->slots_off = QP_SEG_HEADER_SIZE;
    h->arena_off = QP_SEG_HEADER_SIZE + 1024 * 4;
    atomic_store(&h->used, len - h->arena_off);
  }
  char why[256];
  bool ok = qp_segment_check(img, len, why, sizeof why) == QP_OK;
  uint64_t n = 0, dropped = 0;
  bool ok2 = qp__seg_diff(profile(), img, len, NULL, 0, &n, &dropped, why, sizeof why);
  if (ok != ok2) { /* one checker */
    fprintf(stderr, "the check and the reader disagree: %s\n", why);
    abort();
  }
  if (ok) {
    uint64_t n2 = 0;
    if (!qp__seg_diff(profile(), img, len, img, len, &n2, &dropped, why, sizeof why) || n2 != 0) {
      fprintf(stderr, "an image is not its own base: %s (%llu)\n", why, (unsigned long long)n2);
      abort();
    }
  }
  if (mode == 2 && ok) {
    uint8_t *next = malloc(len);
    if (next != NULL) {
      memcpy(next, img, len);
      for (size_t i = len / 2; i < len; i += 7) next[i]++;
      qp__seg_diff(profile(), next, len, img, len, &n, &dropped, why, sizeof why);
      free(next);
    }
  }
  free(img);
  return 0;
}
