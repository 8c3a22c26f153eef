/* Inline SVG for the HTML report: scales, ticks, axes (report_svg.h). */
#include "report_svg.h"

#include <math.h>
#include <string.h>
#include <time.h>

#include "report_common.h"

double svg_map(const svg_scale *s, double v) {
  double a = s->d0, b = s->d1;
  if (s->log) {
    v = log10(v > 0 ? v : s->d0);
    a = log10(a);
    b = log10(b);
  }
  if (b == a) return s->r0;
  double t = (v - a) / (b - a);
  if (t < 0) t = 0;
  if (t > 1) t = 1;
  return s->r0 + t * (s->r1 - s->r0);
}

void svg_frame_init(svg_frame *fr, double width, double height) {
  fr->width = width;
  fr->height = height;
  fr->left = 64;
  fr->top = 10;
  fr->w = width - fr->left - 28; /* room for the last tick's label */
  fr->h = height - fr->top - 42;
}

size_t svg_ticks(double max, bool integer, double *ticks, size_t cap) {
  if (!(max > 0)) max = 1;
  double raw = max / 5, p = pow(10, floor(log10(raw))), step = p;
  if (raw > 5 * p) step = 10 * p;
  else if (raw > 2 * p) step = 5 * p;
  else if (raw > p) step = 2 * p;
  if (integer && step < 1) step = 1;
  size_t n = 0;
  for (double v = 0; n < cap; v += step) {
    ticks[n++] = v;
    if (v >= max) break;
  }
  return n;
}

size_t svg_log_ticks(double lo, double hi, double *ticks, size_t cap) {
  if (!(lo > 0)) lo = 1;
  if (hi < lo) hi = lo;
  double e0 = floor(log10(lo)), e1 = ceil(log10(hi));
  if (e1 <= e0) e1 = e0 + 1;
  size_t n = 0;
  for (double e = e0; e <= e1 && n < cap; e++) ticks[n++] = pow(10, e);
  return n;
}

const char *svg_label_count(double v, char *buf, size_t len) {
  if (v >= 1e6) snprintf(buf, len, "%gM", v / 1e6);
  else if (v >= 1e4) snprintf(buf, len, "%gk", v / 1e3);
  else snprintf(buf, len, "%g", v);
  return buf;
}

const char *svg_label_dur(double v, char *buf, size_t len) {
  if (v <= 0) return snprintf(buf, len, "0"), buf;
  if (v < 1e3) snprintf(buf, len, "%gns", v);
  else if (v < 1e6) snprintf(buf, len, "%gus", v / 1e3);
  else if (v < 1e9) snprintf(buf, len, "%gms", v / 1e6);
  else snprintf(buf, len, "%gs", v / 1e9);
  return buf;
}

const char *svg_time_text(int64_t t_s, char *buf, size_t len) {
  time_t t = (time_t)t_s;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

void svg_open(FILE *f, const char *cls, const char *id, const svg_frame *fr, const char *label,
              const char *data_attrs) {
  fprintf(f,
          "<svg class=\"%s\" id=\"%s\" viewBox=\"0 0 %.0f %.0f\" "
          "width=\"%.0f\" height=\"%.0f\" role=\"img\" aria-label=\"",
          cls, id, fr->width, fr->height, fr->width, fr->height);
  rq_html_text(f, label);
  fprintf(f, "\"%s%s>\n<title>", data_attrs[0] ? " " : "", data_attrs);
  rq_html_text(f, label);
  fputs("</title>\n", f);
}

void svg_close(FILE *f) { fputs("</svg>\n", f); }

void svg_axis_y(FILE *f, const svg_frame *fr, const svg_scale *y, const double *ticks, size_t n,
                svg_label_fn label, const char *title) {
  char b[40];
  fputs("<g class=\"axis y\">", f);
  for (size_t i = 0; i < n; i++) {
    double py = svg_map(y, ticks[i]);
    fprintf(f,
            "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
            "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>",
            fr->left, fr->left + fr->w, py, py, fr->left - 4, py + 4, label(ticks[i], b, sizeof b));
  }
  fprintf(f,
          "<text class=\"axis-title\" transform=\"translate(12 %.1f) rotate(-90)\" "
          "text-anchor=\"middle\">",
          fr->top + fr->h / 2);
  rq_html_text(f, title);
  fputs("</text></g>\n", f);
}

/* tick steps for a time axis, in seconds */
static const int64_t time_steps[] = {60,    120,   300,   600,    900,    1800,   3600,
                                     7200,  10800, 21600, 43200,  86400,  172800, 604800,
                                     1209600, 2592000};

void svg_axis_time(FILE *f, const svg_frame *fr, const svg_scale *x, int64_t x0_s, int64_t x1_s,
                   const char *title) {
  int64_t span = x1_s - x0_s, step = time_steps[sizeof time_steps / sizeof time_steps[0] - 1];
  for (size_t i = 0; i < sizeof time_steps / sizeof time_steps[0]; i++) {
    if (span / time_steps[i] <= 8) {
      step = time_steps[i];
      break;
    }
  }
  bool dates = span > 86400 || step >= 86400;
  double base = fr->top + fr->h;
  fprintf(f, "<g class=\"axis x\"><line class=\"base\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" "
             "y2=\"%.1f\" stroke=\"#888\"/>",
          fr->left, fr->left + fr->w, base, base);
  int64_t t = x0_s % step == 0 ? x0_s : (x0_s / step + 1) * step;
  for (; t <= x1_s; t += step) {
    char b[40];
    svg_time_text(t, b, sizeof b);
    const char *shown = dates ? b + 5 : b + 11; /* "11-20 10:05" or "10:05" */
    double px = svg_map(x, (double)t);
    fprintf(f,
            "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>"
            "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
            px, px, base, base + 4, px, base + 16, shown);
  }
  fprintf(f, "<text class=\"axis-title\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
          fr->left + fr->w / 2, fr->height - 6);
  rq_html_text(f, title);
  fputs("</text></g>\n", f);
}

void svg_axis_x_log(FILE *f, const svg_frame *fr, const svg_scale *x, const double *ticks,
                    size_t n, const char *title) {
  double base = fr->top + fr->h;
  fprintf(f, "<g class=\"axis x\"><line class=\"base\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" "
             "y2=\"%.1f\" stroke=\"#888\"/>",
          fr->left, fr->left + fr->w, base, base);
  for (size_t i = 0; i < n; i++) {
    char b[40];
    double px = svg_map(x, ticks[i]);
    fprintf(f,
            "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
            "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>",
            px, px, fr->top, base, px, base + 16, svg_label_dur(ticks[i], b, sizeof b));
  }
  fprintf(f, "<text class=\"axis-title\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
          fr->left + fr->w / 2, fr->height - 6);
  rq_html_text(f, title);
  fputs("</text></g>\n", f);
}
