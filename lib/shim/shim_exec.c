/*
 * exec*() interposed for one thing: a process that recorded queries flushes
 * them before its image is replaced (the new program gets the shim again
 * through the environment and records its own work). Everything else is the
 * real function's.
 *
 * The variadic execl* functions are built from their non-variadic
 * counterparts as glibc builds them. posix_spawn and system() exec from a
 * child that does not come through here; they run new programs, whose work
 * the shim records there, and do not replace this one.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "shim_int.h"

SHIM_REAL_DECL("libc.so.6", int, execve, (const char *, char *const[], char *const[]), shim_stub_minus1)
SHIM_REAL_DECL("libc.so.6", int, execv, (const char *, char *const[]), shim_stub_minus1)
SHIM_REAL_DECL("libc.so.6", int, execvp, (const char *, char *const[]), shim_stub_minus1)
SHIM_REAL_DECL("libc.so.6", int, execvpe, (const char *, char *const[], char *const[]), shim_stub_minus1)

SHIM_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
  shim_before_exec();
  return real_execve()(path, argv, envp);
}

SHIM_EXPORT int execv(const char *path, char *const argv[]) {
  shim_before_exec();
  return real_execv()(path, argv);
}

SHIM_EXPORT int execvp(const char *file, char *const argv[]) {
  shim_before_exec();
  return real_execvp()(file, argv);
}

SHIM_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[]) {
  shim_before_exec();
  return real_execvpe()(file, argv, envp);
}

/* The execl* functions: their arguments, up to and including the NULL, in an
 * array on the stack (as glibc builds them), then the execv* counterpart. */
static size_t count_args(const char *arg, va_list ap) {
  size_t n = 1;
  if (arg == NULL) return n;
  while (va_arg(ap, char *) != NULL) n++;
  return n + 1;
}

#define EXECL_BODY(last, call_with)                \
  va_list ap, count;                               \
  va_start(ap, last);                              \
  va_copy(count, ap);                              \
  size_t n = count_args(arg, count);               \
  va_end(count);                                   \
  char *argv[n];                                   \
  argv[0] = (char *)arg;                           \
  for (size_t i = 1; i < n; i++) argv[i] = va_arg(ap, char *); \
  call_with

SHIM_EXPORT int execl(const char *path, const char *arg, ...) {
  EXECL_BODY(arg, va_end(ap); return execv(path, argv););
}

SHIM_EXPORT int execlp(const char *file, const char *arg, ...) {
  EXECL_BODY(arg, va_end(ap); return execvp(file, argv););
}

SHIM_EXPORT int execle(const char *path, const char *arg, ...) {
  EXECL_BODY(arg, char *const *envp = va_arg(ap, char *const *); va_end(ap);
             return execve(path, argv, envp););
}
