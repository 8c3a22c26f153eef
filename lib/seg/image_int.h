/*
 * Private to lib/seg: the checks of a segment image and its gain over a
 * base (image.c), which the harvester (harvest.c) reads segments with. An
 * image is a private copy with a segment's layout; nothing here trusts it.
 */
#ifndef QPROF_SEG_IMAGE_INT_H
#define QPROF_SEG_IMAGE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "seg/seg_int.h"

/* In a function with `char *why, size_t whylen`: says why and returns false. */
#define CHECK(cond, ...)                                   \
  do {                                                     \
    if (!(cond)) {                                         \
      snprintf(why, whylen, __VA_ARGS__);                  \
      return false;                                        \
    }                                                      \
  } while (0)

/* Whether [off, off + n) lies within [lo, hi]. */
static inline bool in(size_t off, size_t n, size_t lo, size_t hi) {
  return off >= lo && off <= hi && n <= hi - off;
}

/* The header alone, against an image (or mapping) of `len` bytes. */
bool qp__seg_check_header(const qp_seg_header *h, size_t len, char *why, size_t whylen);
/* Where the used arena ends, for a header that passed qp__seg_check_header. */
size_t qp__seg_image_end(const qp_seg_header *h, uint64_t used);
/* A whole image: header, index, every entry, its texts, chunks and codes. */
bool qp__seg_check_image(const uint8_t *img, size_t len, char *why, size_t whylen);
/* What the checked image `img` gained over the checked base `old` (NULL:
 * none): with `apply` false only checks that every entry grew from its
 * base; with `apply` true adds the gains to `prof` and counts them in
 * *statements and *dropped. */
bool qp__seg_gain(qp_profile *prof, const qp_hooks *hooks, const uint8_t *img, size_t len,
                  const uint8_t *old, size_t old_len, bool apply, uint64_t *statements,
                  uint64_t *dropped, char *why, size_t whylen);

#endif
