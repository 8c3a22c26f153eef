/*
 * libFuzzer target for the harvest record reader (`.doubt`, lib/seg/doubt.c):
 * a record is read back by the next collector, which trusts no file of the
 * run directory. The first byte picks a mode: 0 the record is the input as
 * it is; 1 the input gets the check line a writer would have closed it with
 * (an XXH3 of its bytes, after a newline when it lacks one), so that the
 * fuzzer spends its time past the checksum, on the lines. Nothing may crash
 * or leak; a record that is read has a transaction id, a store's name and
 * only segments with names.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "seg/seg_int.h"

static int g_dir = -1;
static char g_path[64];

/* the record and its directory go when the run ends */
static void cleanup(void) {
  unlinkat(g_dir, QP_REC_NAME, 0);
  rmdir(g_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1 || size > (1u << 20)) return 0;
  if (g_dir < 0) {
    snprintf(g_path, sizeof g_path, "/tmp/qprof-fuzz-doubt.XXXXXX");
    if (mkdtemp(g_path) == NULL) abort();
    g_dir = open(g_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (g_dir < 0) abort();
    atexit(cleanup);
  }
  int mode = data[0] % 2;
  data++;
  size--;
  int fd = openat(g_dir, QP_REC_NAME, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) abort();
  if (size > 0 && write(fd, data, size) != (ssize_t)size) abort();
  if (mode == 1) {
    char tail[40];
    int n = 0;
    if (size == 0 || data[size - 1] != '\n') tail[n++] = '\n';
    uint64_t h = XXH3_64bits(data, size);
    if (n == 1) {
      /* the hash covers the newline added before the check line */
      XXH3_state_t *st = XXH3_createState();
      if (st == NULL) abort();
      XXH3_64bits_reset(st);
      XXH3_64bits_update(st, data, size);
      XXH3_64bits_update(st, "\n", 1);
      h = XXH3_64bits_digest(st);
      XXH3_freeState(st);
    }
    n += snprintf(tail + n, sizeof tail - (size_t)n, "check %016llx\n", (unsigned long long)h);
    if (write(fd, tail, (size_t)n) != n) abort();
  }
  close(fd);
  qp_hooks hooks;
  qp__hooks_init(&hooks, NULL);
  qp_harvest_rec rec;
  bool found = false;
  char msg[512];
  qp_status rc = qp__rec_read(&hooks, g_dir, &rec, &found, msg, sizeof msg);
  if (!found) abort(); /* the file is there */
  if (rc == QP_OK) {
    if (rec.xid <= 0 || rec.store[0] == '\0') abort();
    for (size_t i = 0; i < rec.n; i++)
      if (rec.segs[i].name == NULL || rec.segs[i].name[0] == '\0') abort();
    qp__rec_clear(&hooks, &rec);
  } else if (msg[0] == '\0') {
    abort(); /* a refusal says why */
  }
  return 0;
}
