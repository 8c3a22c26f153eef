/*
 * Clocks. qp__now_ns() is read four times for every pooled query and twice
 * for every query the shim sees, so it matters: clock_gettime() through the
 * vDSO costs about 20 ns on this kind of machine, a bare RDTSC about 9 ns.
 *
 * When the kernel itself keeps time with the TSC (clocksource "tsc", which it
 * only picks when the counter is invariant and synchronized across CPUs),
 * qp__now_ns() reads the TSC and scales it with a rate measured against
 * CLOCK_MONOTONIC. Until that rate is known (the first 100 ms after the first
 * read), and on any other machine, it is clock_gettime(CLOCK_MONOTONIC).
 * The switch does not jump: the TSC scale is anchored on a CLOCK_MONOTONIC
 * reading taken with the last calibration sample.
 *
 * Values are for durations and deadlines inside one process. Within a
 * thread they do not decrease, except once, by at most a fraction of a
 * microsecond (the anchor's sampling error), at the switch; a value read in
 * another thread may be a little ahead of this thread's (see qp__now_ns).
 * So every difference of two timestamps is taken with qp__ns_since(),
 * which saturates at 0. They drift
 * from CLOCK_MONOTONIC by the rate's error (parts per million), so a timed
 * wait is set with qp__timespec_after(), never from a qp__now_ns() value.
 *
 * This is the one piece of process-wide state outside lib/shim/: it is set
 * up once (pthread_once) and published once (an atomic state), as the
 * kernel's own clock calibration is.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <x86intrin.h>
#define QP_HAVE_TSC 1
#endif

#include "internal.h"

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#ifdef QP_HAVE_TSC

enum {
  TSC_UNKNOWN,     /* not looked at yet */
  TSC_OFF,         /* clock_gettime() for good */
  TSC_CALIBRATING, /* clock_gettime() until the rate is measured */
  TSC_PUBLISHING,  /* one thread is computing the rate */
  TSC_ON           /* g_tsc holds the scale */
};

/* The rate is measured over at least this long: a sample pair is good to
 * about 0.2 us, so the rate is good to a few parts per million. */
#define TSC_CALIBRATE_NS 100000000u
/* A (TSC, CLOCK_MONOTONIC, TSC) triple is only trusted when the two TSC
 * reads are this close: the thread was not preempted in between. */
#define TSC_SAMPLE_MAX_TICKS 1000u

static struct {
  uint64_t tsc0, ns0;  /* the calibration's start (written by the once) */
  uint64_t tsc1, ns1;  /* the anchor of the scale (written by the publisher) */
  uint64_t mult;       /* nanoseconds per tick, times 2^32 */
} g_tsc;
static atomic_int g_tsc_state = TSC_UNKNOWN;
static pthread_once_t g_tsc_once = PTHREAD_ONCE_INIT;

/* One paired reading; false when the thread was interrupted between the
 * reads (the pair would be off by the interruption). */
static bool tsc_sample(uint64_t *tsc, uint64_t *ns) {
  _mm_lfence();
  uint64_t a = __rdtsc();
  uint64_t n = mono_ns();
  _mm_lfence();
  uint64_t b = __rdtsc();
  if (b < a || b - a > TSC_SAMPLE_MAX_TICKS) return false;
  *tsc = a + (b - a) / 2;
  *ns = n;
  return true;
}

/* Whether the kernel keeps time with the TSC: then the counter is invariant
 * and synchronized across CPUs (the kernel checks both, and falls back to
 * another clocksource when the TSC misbehaves). */
static bool kernel_uses_tsc(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000007u, &a, &b, &c, &d) || !(d & (1u << 8))) return false;
  int fd = open("/sys/devices/system/clocksource/clocksource0/current_clocksource",
                O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[16];
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  return n == 4 && memcmp(buf, "tsc\n", 4) == 0;
}

/* QPROF_CLOCK=monotonic (the "clock" option) keeps the kernel's clock. */
static void tsc_init(void) {
  int st = TSC_OFF;
  const char *env = getenv("QPROF_CLOCK");
  if ((env == NULL || strcmp(env, "monotonic") != 0) && kernel_uses_tsc()) {
    for (int i = 0; i < 8 && st == TSC_OFF; i++)
      if (tsc_sample(&g_tsc.tsc0, &g_tsc.ns0)) st = TSC_CALIBRATING;
  }
  atomic_store_explicit(&g_tsc_state, st, memory_order_release);
}

/* Called while calibrating: measures the rate once enough time has passed
 * and publishes the scale. Returns the CLOCK_MONOTONIC reading it made. */
static uint64_t tsc_calibrate(void) {
  /* Until the interval has passed, the kernel's clock alone: a paired
   * sample (two fenced TSC reads around it) costs several times as much,
   * and a short program may spend all its life calibrating. */
  uint64_t now = mono_ns();
  if (now - g_tsc.ns0 < TSC_CALIBRATE_NS) return now;
  uint64_t tsc, ns;
  if (!tsc_sample(&tsc, &ns)) return now;
  int expect = TSC_CALIBRATING;
  if (!atomic_compare_exchange_strong_explicit(&g_tsc_state, &expect, TSC_PUBLISHING,
                                               memory_order_acquire, memory_order_relaxed))
    return ns;
  uint64_t dt = tsc - g_tsc.tsc0, dn = ns - g_tsc.ns0;
  /* A TSC between 100 MHz and 20 GHz, or the counter is not what we think. */
  if (tsc <= g_tsc.tsc0 || dt < dn / 10 || dt > dn * 20) {
    atomic_store_explicit(&g_tsc_state, TSC_OFF, memory_order_release);
    return ns;
  }
  g_tsc.mult = (uint64_t)(((unsigned __int128)dn << 32) / dt);
  g_tsc.tsc1 = tsc;
  g_tsc.ns1 = ns;
  atomic_store_explicit(&g_tsc_state, TSC_ON, memory_order_release);
  return ns;
}

/* Everything but the TSC's fast path, out of line so that the fast path
 * needs no stack frame (it runs four times per SQLite statement under the
 * shim). */
static QP_NOINLINE uint64_t now_slow(int st) {
  if (st == TSC_UNKNOWN) {
    pthread_once(&g_tsc_once, tsc_init);
    st = atomic_load_explicit(&g_tsc_state, memory_order_acquire);
    if (st == TSC_ON) return qp__now_ns();
  }
  if (st == TSC_CALIBRATING) return tsc_calibrate();
  return mono_ns();
}

uint64_t qp__now_ns(void) {
  int st = atomic_load_explicit(&g_tsc_state, memory_order_acquire);
  if (QP_LIKELY(st == TSC_ON)) {
    /* No fence before RDTSC (the kernel's rdtsc_ordered() has one): it
     * costs about as much as it saves here. So RDTSC may run ahead of the
     * loads before it, and a timestamp another thread took and this one
     * just loaded can be later than `t`; hence qp__ns_since(). */
    uint64_t t = __rdtsc();
    /* (a read just before the anchor, on another CPU, counts as the anchor) */
    uint64_t d = t > g_tsc.tsc1 ? t - g_tsc.tsc1 : 0;
    return g_tsc.ns1 + (uint64_t)(((unsigned __int128)d * g_tsc.mult) >> 32);
  }
  return now_slow(st);
}

const char *qp__clock_source(void) {
  switch (atomic_load_explicit(&g_tsc_state, memory_order_acquire)) {
  case TSC_ON: return "tsc";
  case TSC_CALIBRATING:
  case TSC_PUBLISHING: return "calibrating";
  default: return "monotonic";
  }
}

#else /* no TSC: the kernel's clock */

uint64_t qp__now_ns(void) { return mono_ns(); }
const char *qp__clock_source(void) { return "monotonic"; }

#endif

void qp__timespec_after(struct timespec *ts, uint64_t delta_ns) {
  uint64_t at = mono_ns() + delta_ns;
  ts->tv_sec = (time_t)(at / 1000000000u);
  ts->tv_nsec = (long)(at % 1000000000u);
}

int64_t qp__wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t qp__wall_coarse_ns(void) {
#ifdef CLOCK_REALTIME_COARSE
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME_COARSE, &ts) == 0)
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
#endif
  return qp__wall_ns();
}

/* y-m-d of a day count from 1970-01-01 (Howard Hinnant's civil_from_days,
 * the inverse of qp__days_from_civil). */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  *d = (int)(doy - (153 * mp + 2) / 5 + 1);
  *m = (int)(mp < 10 ? mp + 3 : mp - 9);
  *y = yoe + era * 400 + (*m <= 2);
}

static char *put_digits(char *o, int64_t v, int n) {
  for (int i = n - 1; i >= 0; i--, v /= 10) o[i] = (char)('0' + v % 10);
  return o + n;
}

void qp__format_iso8601(int64_t wall_ns, char *buf, size_t len) {
  time_t secs = (time_t)(wall_ns / 1000000000);
  int ms = (int)((wall_ns % 1000000000) / 1000000);
  if (ms < 0) { /* before 1970: keep the fraction positive */
    ms += 1000;
    secs -= 1;
  }
  /* Years 0..9999 without gmtime_r and snprintf (a report of 100,000
   * queries writes 200,000 of these): the same text as below. */
  int64_t y, sod = qp__floor_div((int64_t)secs, 86400) * 86400;
  int mo, d;
  civil_from_days(qp__floor_div((int64_t)secs, 86400), &y, &mo, &d);
  if (y >= 0 && y <= 9999) {
    int64_t t = (int64_t)secs - sod;
    char tb[32], *o = put_digits(tb, y, 4);
    *o++ = '-';
    o = put_digits(o, mo, 2);
    *o++ = '-';
    o = put_digits(o, d, 2);
    *o++ = 'T';
    o = put_digits(o, t / 3600, 2);
    *o++ = ':';
    o = put_digits(o, t / 60 % 60, 2);
    *o++ = ':';
    o = put_digits(o, t % 60, 2);
    *o++ = '.';
    o = put_digits(o, ms, 3);
    *o++ = 'Z';
    size_t n = (size_t)(o - tb); /* as snprintf: cut to len - 1 */
    if (len == 0) return;
    if (n >= len) n = len - 1;
    memcpy(buf, tb, n);
    buf[n] = '\0';
    return;
  }
  struct tm tm;
  if (gmtime_r(&secs, &tm) == NULL) {
    snprintf(buf, len, "invalid-time");
    return;
  }
  snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
}

static bool parse_digits(const char **p, int n, int *out) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    char c = (*p)[i];
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  *p += n;
  *out = v;
  return true;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil); avoids timegm's global TZ state. */
int64_t qp__days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

static bool parse_relative(const char *t, int64_t now, int64_t *out) {
  if (strcmp(t, "now") == 0) {
    *out = now;
    return true;
  }
  if (t[0] != '-') return false;
  /* digits with at most one '.', nothing strtod also takes (nan, inf,
   * hex, exponents, a sign): a NaN would slip past the range check below */
  const char *q = t + 1;
  int dots = 0, digits = 0;
  for (; (*q >= '0' && *q <= '9') || *q == '.'; q++) *q == '.' ? dots++ : digits++;
  if (digits == 0 || dots > 1) return false;
  char *end;
  double v = strtod(t + 1, &end);
  if (end != q || !(v >= 0)) return false;
  double unit;
  if (strcmp(end, "s") == 0) unit = 1;
  else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) unit = 60;
  else if (strcmp(end, "h") == 0) unit = 3600;
  else if (strcmp(end, "d") == 0) unit = 86400;
  else if (strcmp(end, "w") == 0) unit = 7 * 86400;
  else return false;
  double ns = v * unit * 1e9;
  if (ns > 9e18) return false;
  *out = now - (int64_t)ns;
  return true;
}

bool qp__parse_time(const char *text, int64_t now_wall_ns, int64_t *out) {
  if (text == NULL || *text == '\0') return false;
  if (parse_relative(text, now_wall_ns, out)) return true;
  if (text[0] == '@') {
    char *end;
    long long v = strtoll(text + 1, &end, 10);
    if (end == text + 1 || *end != '\0' || v < 0 || v > 9000000000LL) return false;
    *out = (int64_t)v * 1000000000;
    return true;
  }
  const char *p = text;
  int y, mo, d, h = 0, mi = 0, s = 0, frac_ns = 0;
  if (!parse_digits(&p, 4, &y) || *p++ != '-' || !parse_digits(&p, 2, &mo) || *p++ != '-' ||
      !parse_digits(&p, 2, &d))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return false;
  if (*p == 'T' || *p == ' ') {
    p++;
    if (!parse_digits(&p, 2, &h) || *p++ != ':' || !parse_digits(&p, 2, &mi)) return false;
    if (*p == ':') {
      p++;
      if (!parse_digits(&p, 2, &s)) return false;
      if (*p == '.') {
        p++;
        int scale = 100000000, digits = 0;
        while (*p >= '0' && *p <= '9') {
          if (digits++ < 9) {
            frac_ns += (*p - '0') * scale;
            scale /= 10;
          }
          p++;
        }
        if (digits == 0) return false;
      }
    }
    if (h > 23 || mi > 59 || s > 60) return false;
  }
  int64_t offset_s = 0;
  if (*p == 'Z') {
    p++;
  } else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
    if (!parse_digits(&p, 2, &oh)) return false;
    if (*p == ':') p++;
    if (*p != '\0' && !parse_digits(&p, 2, &om)) return false;
    offset_s = sign * (oh * 3600 + om * 60);
  }
  if (*p != '\0') return false;
  int64_t secs = qp__days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset_s;
  *out = secs * 1000000000 + frac_ns;
  return true;
}
