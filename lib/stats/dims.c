/*
 * The default dimensions of this process (include/qprof/profile.h):
 * machine name, program name, OS user. Each is computed once, by the first
 * caller, and kept in static storage.
 */
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qprof/profile.h"
#include "stats/stats_int.h"

static pthread_once_t dims_once = PTHREAD_ONCE_INIT;
static char host_name[QP_DIM_MAX + 1];
static char app_name[QP_DIM_MAX + 1];
static char os_user[QP_DIM_MAX + 1];

static void copy_dim(char *dst, const char *src) {
  size_t n = strnlen(src, QP_DIM_MAX);
  memcpy(dst, src, n);
  dst[n] = '\0';
}

static void dims_init(void) {
  int saved = errno; /* a guest (the shim) leaves errno as it found it */
  const char *env = getenv("QPROF_HOST");
  if (env != NULL && env[0] != '\0') {
    copy_dim(host_name, env);
  } else {
    char buf[QP_DIM_MAX + 1];
    if (gethostname(buf, sizeof buf) == 0) {
      buf[sizeof buf - 1] = '\0';
      copy_dim(host_name, buf);
    }
  }
  copy_dim(app_name, program_invocation_short_name != NULL ? program_invocation_short_name : "");
  qp__uid_name(geteuid(), os_user, sizeof os_user);
  errno = saved;
}

void qp__uid_name(uid_t uid, char *out, size_t cap) {
  struct passwd pw, *res = NULL;
  char buf[1024];
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &res) == 0 && res != NULL && res->pw_name != NULL)
    snprintf(out, cap, "%.*s", (int)QP_DIM_MAX, res->pw_name);
  else
    snprintf(out, cap, "%lu", (unsigned long)uid);
}

const char *qp_default_host(void) {
  pthread_once(&dims_once, dims_init);
  return host_name;
}

const char *qp_default_application(void) {
  pthread_once(&dims_once, dims_init);
  return app_name;
}

const char *qp_default_os_user(void) {
  pthread_once(&dims_once, dims_init);
  return os_user;
}
