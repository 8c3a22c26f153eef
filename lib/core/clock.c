#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

uint64_t qp__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t qp__wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void qp__format_iso8601(int64_t wall_ns, char *buf, size_t len) {
  time_t secs = (time_t)(wall_ns / 1000000000);
  int ms = (int)((wall_ns % 1000000000) / 1000000);
  if (ms < 0) { /* before 1970: keep the fraction positive */
    ms += 1000;
    secs -= 1;
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
static int64_t days_from_civil(int64_t y, int m, int d) {
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
  char *end;
  double v = strtod(t + 1, &end);
  if (end == t + 1 || v < 0) return false;
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
  int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offset_s;
  *out = secs * 1000000000 + frac_ns;
  return true;
}
