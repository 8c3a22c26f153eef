/* Creating an SQLite store on a full disk: it fails with QP_IO and a message
 * naming the store, or succeeds with a whole store; either way no temporary
 * file (PATH.tmp-PID-N and its -wal, -shm, -journal) is left behind and no
 * half-made store is linked into place.
 *
 * The disk is a small tmpfs, mounted in a private mount namespace (so nothing
 * outside this process sees it, and it goes away with the process) when this
 * process may mount, else a file-size limit (RLIMIT_FSIZE with SIGXFSZ
 * ignored) in a child process. QP_TEST_DISK_FULL=rlimit forces the second.
 * The sizes step through every point of the creation where space runs out:
 * enabling WAL, the schema, the commit, the checkpoint. */
#include "testutil.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static bool use_tmpfs;

static int setup(void **state) {
  (void)state;
  const char *force = getenv("QP_TEST_DISK_FULL");
  if (force != NULL && strcmp(force, "rlimit") == 0) return 0;
  /* A private namespace first, so that the mounts do not propagate out. */
  use_tmpfs = unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
  print_message("disk full by %s\n", use_tmpfs ? "a small tmpfs" : "RLIMIT_FSIZE");
  return 0;
}

/* Opens `path` for writing with `kib` KiB of space; returns the status (and
 * the message in err). */
static qp_status open_with_space(const char *dir, const char *path, int kib, char *err,
                                 size_t errlen) {
  err[0] = '\0';
  if (use_tmpfs) {
    char opts[32];
    snprintf(opts, sizeof opts, "size=%dk,mode=0700", kib);
    assert_int_equal(mount("qp_full", dir, "tmpfs", 0, opts), 0);
    qp_store *s = NULL;
    qp_status rc = qp_store_open(&s, path, QP_STORE_WRITE, NULL, err, errlen);
    qp_store_close(s);
    return rc;
  }
  int pipefd[2];
  assert_int_equal(pipe(pipefd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(pipefd[0]);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {.rlim_cur = (rlim_t)kib * 1024, .rlim_max = (rlim_t)kib * 1024};
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(100);
    char msg[512] = "";
    qp_store *s = NULL;
    qp_status rc = qp_store_open(&s, path, QP_STORE_WRITE, NULL, msg, sizeof msg);
    qp_store_close(s);
    if (write(pipefd[1], msg, strlen(msg)) < 0) _exit(101);
    _exit((int)rc);
  }
  close(pipefd[1]);
  ssize_t n = read(pipefd[0], err, errlen - 1);
  err[n > 0 ? n : 0] = '\0';
  close(pipefd[0]);
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_true(WEXITSTATUS(status) < 100);
  return (qp_status)WEXITSTATUS(status);
}

/* Fails the test if `dir` holds a temporary store file; sets *store when the
 * store itself is there. */
static void check_leftovers(const char *dir, int kib, bool *store) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  *store = false;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, "s.db") == 0) *store = true;
    if (strstr(e->d_name, ".tmp-") != NULL) {
      print_error("%d KiB: %s/%s left behind\n", kib, dir, e->d_name);
      closedir(d);
      fail();
    }
  }
  closedir(d);
}

static void test_create_on_full_disk(void **state) {
  (void)state;
  int failed = 0, created = 0;
  for (int kib = 4; kib <= 128; kib += 4) {
    const char *dir = qpt_tempdir();
    assert_non_null(dir);
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/s.db", dir);
    qp_status rc = open_with_space(dir, path, kib, err, sizeof err);
    bool store;
    check_leftovers(dir, kib, &store);
    if (rc == QP_OK) {
      /* A store that says it was created is whole: it opens and reads. */
      created++;
      assert_true(store);
      qp_store *s = NULL;
      char msg[512];
      qp_status rr = qp_store_open(&s, path, QP_STORE_READ, NULL, msg, sizeof msg);
      if (rr != QP_OK) print_error("%d KiB: created, but does not open: %s\n", kib, msg);
      assert_int_equal(rr, QP_OK);
      qp_store_close(s);
    } else {
      /* A failed creation says why, names the store, and links nothing. */
      failed++;
      if (rc != QP_IO) print_error("%d KiB: %s: %s\n", kib, qp_errname(rc), err);
      assert_int_equal(rc, QP_IO);
      assert_non_null(strstr(err, path));
      if (store) print_error("%d KiB: failed (%s) but left %s\n", kib, err, path);
      assert_false(store);
    }
    if (use_tmpfs) assert_int_equal(umount(dir), 0);
  }
  print_message("%d sizes failed to create, %d created a store\n", failed, created);
  /* Both outcomes were exercised, or the sizes no longer reach the failures. */
  assert_true(failed >= 3);
  assert_true(created >= 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_create_on_full_disk)};
  return cmocka_run_group_tests(tests, setup, qpt_tempdirs_remove);
}
