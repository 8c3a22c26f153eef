/*
 * Inline SVG for the HTML report (report_svg.c): scales, ticks, axes. The
 * page draws its charts itself (no script, no library, no font), so that a
 * saved or mailed page shows them as they were. Coordinates are written
 * with one decimal, so the same report gives the same bytes.
 */
#ifndef QPROF_REPORT_SVG_H
#define QPROF_REPORT_SVG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A map from data values (d0..d1) to pixels (r0..r1), linear or log10. */
typedef struct svg_scale {
  double d0, d1, r0, r1;
  bool log;
} svg_scale;

double svg_map(const svg_scale *s, double v);

/* The plot area inside an SVG of width x height: margins for the axes. */
typedef struct svg_frame {
  double width, height;      /* the whole SVG */
  double left, top, w, h;    /* the plot area */
} svg_frame;

void svg_frame_init(svg_frame *fr, double width, double height);

/* Linear ticks from 0 to at least max (about 5, at 1, 2 or 5 times a power
 * of ten; integers when `integer`): into ticks[0..return), the last one the
 * top of the axis. */
size_t svg_ticks(double max, bool integer, double *ticks, size_t cap);
/* Powers of ten covering [lo, hi] (lo > 0), at least two: the axis runs
 * from the first to the last. */
size_t svg_log_ticks(double lo, double hi, double *ticks, size_t cap);

/* A tick label for a value. */
typedef const char *(*svg_label_fn)(double v, char *buf, size_t len);
const char *svg_label_count(double v, char *buf, size_t len);
const char *svg_label_dur(double v, char *buf, size_t len);

/* Opens an <svg> with its accessible name (escaped) and data attributes
 * given as raw text (numbers written by the caller). */
void svg_open(FILE *f, const char *cls, const char *id, const svg_frame *fr, const char *label,
              const char *data_attrs);
void svg_close(FILE *f);
/* The y axis: grid lines and labels at the ticks, and its title. */
void svg_axis_y(FILE *f, const svg_frame *fr, const svg_scale *y, const double *ticks, size_t n,
                svg_label_fn label, const char *title);
/* The x axis of time: ticks at whole steps (UTC) between x0 and x1 (s). */
void svg_axis_time(FILE *f, const svg_frame *fr, const svg_scale *x, int64_t x0_s, int64_t x1_s,
                   const char *title);
/* The x axis of a log scale of durations (ns): ticks at the given powers of ten. */
void svg_axis_x_log(FILE *f, const svg_frame *fr, const svg_scale *x, const double *ticks,
                    size_t n, const char *title);

/* "2026-11-20 10:05" (UTC) into buf. */
const char *svg_time_text(int64_t t_s, char *buf, size_t len);

#endif
