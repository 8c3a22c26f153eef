/* The segment's index (seg_int.h): a slot is an entry's offset with its key's
 * tag in the low 3 bits (version 3). A probe passes entries of another tag
 * without reading them, so keys whose slots collide must still each find
 * their own entry; the collector refuses a slot whose tag is not its entry's;
 * and a version 2 segment (bare offsets, written by a shim started before an
 * upgrade) is still read. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "seg/seg_int.h"

#define NKEYS 600 /* in a 1,024-slot index: long probe runs, every tag met */
static const char key[] = "db\0user\0app", key2[] = "other\0\0app";

static qp_seg make(const char *name) {
  const char *dir = qpt_tempdir();
  assert_non_null(dir);
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  qp_seg seg;
  /* the smallest segment: 1,024 slots */
  assert_true(qp__seg_create(&seg, path, QP_SEG_MIN_SIZE * 4, 60, "h"));
  assert_int_equal(((qp_seg_header *)seg.base)->nslots, 1024);
  return seg;
}

static void drop(qp_seg *seg) {
  munmap(seg->base, seg->size);
  close(seg->fd);
}

static size_t image_len(const qp_seg *seg) {
  const qp_seg_header *h = seg->base;
  return h->arena_off + (size_t)atomic_load(&((qp_seg_header *)h)->used);
}

/* Records key i once, then i times more, checking each time that it met its own entry. */
static uint64_t fill(qp_seg *seg) {
  int64_t wall = (int64_t)1763700000 * 1000000000;
  uint64_t total = 0;
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < NKEYS; i++) {
      char text[64];
      int n = snprintf(text, sizeof text, "select ? as k%d", i);
      /* fingerprints chosen to collide in the index and share tags */
      uint64_t fp = 0x1000u + (uint64_t)i * 0x9e3779b97f4a7c15ull;
      int times = round == 0 ? 1 : i;
      /* runs of keys: entries in a run share their key blob (seg_write.c) */
      const char *k = i % 7 < 5 ? key : key2;
      size_t klen = i % 7 < 5 ? sizeof key - 1 : sizeof key2 - 1;
      for (int t = 0; t < times; t++) {
        qp_seg_entry *e = qp__seg_record(seg, QP_BACKEND_SQLITE, fp, text, (size_t)n, k, klen,
                                         1000, 1, NULL, wall);
        assert_non_null(e);
        assert_int_equal(e->fingerprint, fp);
        assert_memory_equal((char *)seg->base + e->query_off, text, (size_t)n);
        assert_int_equal(e->db_len, klen);
        assert_memory_equal((char *)seg->base + e->db_off, k, klen);
        total++;
      }
    }
  }
  return total;
}

static void test_tags_and_counts(void **state) {
  (void)state;
  qp_seg seg = make("a.qpseg");
  uint64_t total = fill(&seg);
  const qp_seg_header *h = seg.base;
  assert_int_equal(h->version, QP_SEG_VERSION);
  assert_int_equal(atomic_load(&((qp_seg_header *)h)->entries), NKEYS);
  /* every slot holds its entry's tag, and each of the 8 tags occurs */
  const uint32_t *slots = (const uint32_t *)((const char *)seg.base + h->slots_off);
  unsigned used = 0, seen = 0;
  for (uint32_t i = 0; i < h->nslots; i++) {
    if (slots[i] == 0) continue;
    used++;
    const qp_seg_entry *e =
        (const qp_seg_entry *)((const char *)seg.base + qp__seg_slot_off(slots[i], 3));
    uint32_t tag = qp__seg_tag(qp__seg_hash(e->fingerprint, e->bucket, e->backend, e->lane));
    assert_int_equal(slots[i] & QP_SEG_TAG_MASK, tag);
    seen |= 1u << tag;
  }
  assert_int_equal(used, NKEYS);
  assert_int_equal(seen, 0xff);
  /* one key blob per run of the same key (runs of 5 and 2), the arena walked entry by entry */
  unsigned blobs = 0;
  uint32_t last = 0;
  for (uint32_t off = h->arena_off; off < h->arena_off + atomic_load(&((qp_seg_header *)h)->used);) {
    const qp_seg_entry *e = (const qp_seg_entry *)((const char *)seg.base + off);
    if (e->db_off != last) blobs++;
    last = e->db_off;
    assert_int_equal(off % QP_SEG_ALIGN, 0); /* version 4: each entry on a line of its own */
    off += (uint32_t)((sizeof *e + e->query_len + 1 + (e->db_off > off ? e->db_len + 1 : 0) +
                       QP_SEG_ALIGN - 1) & ~(QP_SEG_ALIGN - 1));
  }
  unsigned runs = 0;
  for (int i = 0; i < NKEYS; i++) runs += i == 0 || (i % 7 < 5) != ((i - 1) % 7 < 5);
  assert_int_equal(blobs, runs);
  /* the collector reads every call of every key */
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  uint64_t stmts = 0, dropped = 0;
  char why[256] = "";
  assert_true(qp__seg_diff(p, seg.base, image_len(&seg), NULL, 0, &stmts, &dropped, why,
                           sizeof why));
  assert_int_equal(stmts, total);
  qp_profile_free(p);
  drop(&seg);
}

static void test_wrong_tag_refused(void **state) {
  (void)state;
  qp_seg seg = make("b.qpseg");
  fill(&seg);
  size_t len = image_len(&seg);
  uint8_t *img = malloc(len);
  assert_non_null(img);
  memcpy(img, seg.base, len);
  const qp_seg_header *h = (const qp_seg_header *)img;
  uint32_t *slots = (uint32_t *)(img + h->slots_off);
  uint32_t i = 0;
  while (slots[i] == 0) i++;
  slots[i] ^= 1; /* another tag, the same offset */
  char why[256] = "";
  assert_int_not_equal(qp_segment_check(img, len, why, sizeof why), QP_OK);
  assert_non_null(strstr(why, "tag"));
  slots[i] &= QP_SEG_TAG_MASK; /* a tag and no offset */
  if (slots[i] == 0) slots[i] = 1;
  assert_int_not_equal(qp_segment_check(img, len, why, sizeof why), QP_OK);
  free(img);
  drop(&seg);
}

static void test_version_2_read(void **state) {
  (void)state;
  qp_seg seg = make("c.qpseg");
  uint64_t total = fill(&seg);
  size_t len = image_len(&seg);
  uint8_t *img = malloc(len);
  assert_non_null(img);
  memcpy(img, seg.base, len);
  qp_seg_header *h = (qp_seg_header *)img;
  uint32_t *slots = (uint32_t *)(img + h->slots_off);
  /* as a version 2 shim wrote it: bare offsets */
  h->version = 2;
  for (uint32_t i = 0; i < h->nslots; i++) slots[i] = qp__seg_slot_off(slots[i], 3);
  char why[256] = "";
  assert_int_equal(qp_segment_check(img, len, why, sizeof why), QP_OK);
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  uint64_t stmts = 0, dropped = 0;
  assert_true(qp__seg_diff(p, img, len, NULL, 0, &stmts, &dropped, why, sizeof why));
  assert_int_equal(stmts, total);
  /* a version 2 slot with tag bits is not an offset */
  uint32_t i = 0;
  while (slots[i] == 0) i++;
  slots[i] |= 3;
  assert_int_not_equal(qp_segment_check(img, len, why, sizeof why), QP_OK);
  qp_profile_free(p);
  free(img);
  drop(&seg);
}

/* A version 3 segment (no lanes: every lane 0, so the same hashes) is read;
 * a lane in one is refused, as is a lane beyond QP_SEG_LANES in version 4. */
static void test_version_3_read_and_lanes_checked(void **state) {
  (void)state;
  qp_seg seg = make("d.qpseg");
  uint64_t total = fill(&seg);
  size_t len = image_len(&seg);
  uint8_t *img = malloc(len);
  assert_non_null(img);
  memcpy(img, seg.base, len);
  qp_seg_header *h = (qp_seg_header *)img;
  h->version = 3;
  char why[256] = "";
  assert_int_equal(qp_segment_check(img, len, why, sizeof why), QP_OK);
  qp_profile *p;
  assert_int_equal(qp_profile_new(&p, NULL, NULL, 0), QP_OK);
  uint64_t stmts = 0, dropped = 0;
  assert_true(qp__seg_diff(p, img, len, NULL, 0, &stmts, &dropped, why, sizeof why));
  assert_int_equal(stmts, total);
  qp_profile_free(p);
  uint32_t *slots = (uint32_t *)(img + h->slots_off);
  uint32_t i = 0;
  while (slots[i] == 0) i++;
  qp_seg_entry *e = (qp_seg_entry *)(img + qp__seg_slot_off(slots[i], 3));
  e->lane = 1;
  assert_int_not_equal(qp_segment_check(img, len, why, sizeof why), QP_OK);
  assert_non_null(strstr(why, "lane"));
  h->version = QP_SEG_VERSION;
  e->lane = QP_SEG_LANES;
  assert_int_not_equal(qp_segment_check(img, len, why, sizeof why), QP_OK);
  assert_non_null(strstr(why, "lane"));
  free(img);
  drop(&seg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tags_and_counts),
      cmocka_unit_test(test_wrong_tag_refused),
      cmocka_unit_test(test_version_2_read),
      cmocka_unit_test(test_version_3_read_and_lanes_checked),
  };
  return cmocka_run_group_tests(tests, NULL, qpt_tempdirs_remove);
}
