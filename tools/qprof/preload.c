/*
 * Where `qprof run` finds libqprof_preload.so.
 *
 * An installed qprof looks beside itself: the directories the build put
 * between its bin and lib directories (QPROF_BIN_TO_LIBDIR, e.g. "../lib" or
 * "../lib/x86_64-linux-gnu"), taken relative to the binary's own location
 * (/proc/self/exe), so that a prefix that is copied or moved elsewhere still
 * finds its own shim, as qprof.pc finds its own headers. It never looks in
 * the build tree, which may hold a different version (or be gone).
 *
 * A qprof run from its build tree (the binary is the one the build wrote)
 * takes the build tree's shim, so that tests and developers use what they
 * just built. $QPROF_PRELOAD, when set, wins over both.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define SHIM_NAME "libqprof_preload.so"

/* Static storage: qprof is one thread, and the caller reads them at once. */
static char found[PATH_MAX];
static char why[4096];
static size_t why_len;

static void why_add(const char *fmt, ...) QP_PRINTF(1, 2);
static void why_add(const char *fmt, ...) {
  if (why_len + 1 >= sizeof why) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(why + why_len, sizeof why - why_len, fmt, ap);
  va_end(ap);
  if (n > 0) why_len += (size_t)n < sizeof why - why_len ? (size_t)n : sizeof why - why_len - 1;
}

/* The dynamic loader splits LD_PRELOAD at spaces and colons, with no way to
 * escape them: such a path would be ignored with a warning and CMD would run
 * unprofiled. */
static bool preloadable(const char *path) { return strpbrk(path, " :") == NULL; }

/* Takes `path` when it is readable; otherwise adds it, with the reason, to
 * the list of paths tried. */
static bool try_path(const char *path) {
  if (access(path, R_OK) == 0) {
    if (!preloadable(path)) {
      why_add("\n  %s (a space or ':' in the path, which LD_PRELOAD cannot carry)", path);
      return false;
    }
    if (snprintf(found, sizeof found, "%s", path) < (int)sizeof found) return true;
    errno = ENAMETOOLONG;
  }
  why_add("\n  %s (%s)", path, strerror(errno));
  return false;
}

/* The directory holding the running binary, symlinks resolved. */
static bool exe_dir(char *dir, size_t len) {
  ssize_t n = readlink("/proc/self/exe", dir, len - 1);
  if (n <= 0) return false;
  dir[n] = '\0';
  char *slash = strrchr(dir, '/');
  if (slash == NULL) return false;
  *slash = '\0';
  return true;
}

/* True when `dir` is the directory the build wrote this binary into. */
static bool is_build_dir(const char *dir) {
#ifdef QPROF_BUILD_BINDIR
  char a[PATH_MAX], b[PATH_MAX];
  return realpath(dir, a) != NULL && realpath(QPROF_BUILD_BINDIR, b) != NULL && strcmp(a, b) == 0;
#else
  (void)dir;
  return false;
#endif
}

const char *cli_find_shim(const char **message) {
  why_len = 0;
  why[0] = '\0';
  *message = why;
  const char *env = getenv("QPROF_PRELOAD");
  if (env != NULL && env[0] != '\0') {
    if (access(env, R_OK) != 0) {
      why_add("cannot read the shim $QPROF_PRELOAD=%s: %s", env, strerror(errno));
      return NULL;
    }
    if (!preloadable(env)) {
      why_add("the shim $QPROF_PRELOAD=%s has a space or ':' in its path, which LD_PRELOAD "
              "cannot carry",
              env);
      return NULL;
    }
    if (snprintf(found, sizeof found, "%s", env) < (int)sizeof found) return found;
    why_add("the shim's path $QPROF_PRELOAD=%s is too long", env);
    return NULL;
  }
  why_add("cannot find " SHIM_NAME "; tried:");
  char dir[PATH_MAX];
  if (!exe_dir(dir, sizeof dir)) {
    why_add("\n  nothing: the location of this qprof is unknown (/proc/self/exe: %s)",
            strerror(errno));
  } else if (is_build_dir(dir)) {
#ifdef QPROF_BUILD_SHIM
    if (try_path(QPROF_BUILD_SHIM)) return found;
#endif
  } else {
    /* The build's own bin-to-lib path first, then the usual lib directories
     * of a prefix, each once. */
    const char *rel[] = {QPROF_BIN_TO_LIBDIR, ("../lib/" QPROF_MULTIARCH), "../lib", "../lib64"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
      bool seen = false;
      for (size_t j = 0; j < i; j++) seen = seen || strcmp(rel[i], rel[j]) == 0;
      if (seen || strcmp(rel[i], "../lib/") == 0) continue;
      /* "PREFIX/bin" + "../lib" is written "PREFIX/lib", so the message
       * names the paths as people would. */
      const char *r = rel[i];
      size_t base = strlen(dir);
      while (strncmp(r, "../", 3) == 0 && base > 1) {
        while (base > 1 && dir[base - 1] != '/') base--;
        if (base > 1) base--;
        r += 3;
      }
      if (base == 1) base = 0; /* a binary in /bin: "/lib/..." */
      char path[PATH_MAX];
      if (snprintf(path, sizeof path, "%.*s/%s/" SHIM_NAME, (int)base, dir, r) >= (int)sizeof path) {
        why_add("\n  %.*s/%s/" SHIM_NAME " (%s)", (int)base, dir, r, strerror(ENAMETOOLONG));
        continue;
      }
      if (try_path(path)) return found;
    }
  }
  why_add("\nSet QPROF_PRELOAD to the shim's path.");
  return NULL;
}
