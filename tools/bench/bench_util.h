/* Helpers every benchmark shares (tools/bench/common/bench_util.c). */
#ifndef QPROF_BENCH_UTIL_H
#define QPROF_BENCH_UTIL_H

/* CLOCK_MONOTONIC in seconds. */
double bench_now_s(void);
/* The median of v[0..n) (the mean of the two middle values when n is even);
 * sorts v in place. n > 0. */
double bench_median(double *v, int n);
/* Runs the printf-formatted command with system(3) (cut to 4 KB); returns its
 * exit status, or -1 when it could not be run. */
int bench_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
