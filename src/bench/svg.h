/* svg: small inline-SVG line charts for the benchmark report: one or more series over a shared
 * x axis (linear or log2), y linear from zero or log10, a marker per point, optional min-max
 * whiskers, dashed series, a legend. Output is appended to a strbuf; text is HTML-escaped.
 * Pure, no state. Called by bench/report.c.
 *
 *     struct svg_series s = { .name = "cairn", .x = sizes, .y = med, .n = 7 };
 *     struct svg_chart ch = { .title = "Decode", .x_label = "prompt tokens", .y_label = "tok/s", .x_log = true };
 *     svg_line_chart(&html, &ch, &s, 1);
 */
#ifndef CAIRN_BENCH_SVG_H
#define CAIRN_BENCH_SVG_H

#include <stdbool.h>

#include "base/mem.h"

struct svg_series {
    const char   *name;
    const double *x;        // n values; NaN points are skipped
    const double *y;
    const double *y_lo;     // optional whisker bottoms (NULL: none)
    const double *y_hi;     // optional whisker tops
    int           n;
    int           color;    // palette index
    bool          dashed;
};

struct svg_chart {
    const char *title;
    const char *x_label;
    const char *y_label;
    bool        x_log;      // log2 x axis (prompt sizes, burst sizes)
    bool        y_log;      // log10 y axis (TTFT)
    double      y_ref;      // draws a horizontal reference line when > 0 (e.g. 1.0 for ratios)
};

void svg_line_chart(struct strbuf *out, const struct svg_chart *ch, const struct svg_series *s, int n_series);
/* Appends s with <, >, &, " escaped. */
void svg_escape(struct strbuf *out, const char *s);
/* The palette color of index i, "#rrggbb". */
const char *svg_color(int i);

#endif
