/* svg: line charts for the report (see svg.h).
 *
 * Design note: the report must open anywhere without scripts or network, so charts are plain
 * SVG computed here. Axis ticks are "nice" numbers (1, 2, 5 x 10^k) on linear axes and powers of
 * ten on log axes; x ticks on a log2 axis sit at the data's own x values (prompt sizes).
 */
#include "bench/svg.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define W 560
#define H 330
#define ML 64    // margins: left, right, top, bottom
#define MR 16
#define MT 34
#define MB 74

static const char *const palette[] = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                                       "#e377c2", "#17becf" };

const char *svg_color(int i)
{
    return palette[(i < 0 ? -i : i) % 8];
}

void svg_escape(struct strbuf *out, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': strbuf_puts(out, "&lt;"); break;
        case '>': strbuf_puts(out, "&gt;"); break;
        case '&': strbuf_puts(out, "&amp;"); break;
        case '"': strbuf_puts(out, "&quot;"); break;
        default:  strbuf_putc(out, *s);
        }
    }
}

static double nice_step(double range, int target)
{
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void fmt_num(char *buf, size_t cap, double v)
{
    double a = fabs(v);
    if (a >= 1e6) snprintf(buf, cap, "%.3gM", v / 1e6);
    else if (a >= 1e4) snprintf(buf, cap, "%.3gk", v / 1e3);
    else if (a >= 100 || v == floor(v)) snprintf(buf, cap, "%.0f", v);
    else snprintf(buf, cap, "%.3g", v);
}

// Approximate width in pixels of a legend label at font-size 11.
static int legend_width(const char *name)
{
    return name ? (int)strlen(name) * 6 : 0;
}

struct axes {
    double x0, x1, y0, y1;   // data range (log-transformed when log)
    bool   x_log, y_log;
};

static double tx(const struct axes *a, double x)
{
    double v = a->x_log ? log2(x) : x;
    return ML + (a->x1 > a->x0 ? (v - a->x0) / (a->x1 - a->x0) : 0.5) * (W - ML - MR);
}

static double ty(const struct axes *a, double y)
{
    double v = a->y_log ? log10(y) : y;
    return H - MB - (a->y1 > a->y0 ? (v - a->y0) / (a->y1 - a->y0) : 0.5) * (H - MT - MB);
}

static bool usable(const struct axes *a, double x, double y)
{
    return isfinite(x) && isfinite(y) && (!a->x_log || x > 0) && (!a->y_log || y > 0);
}

void svg_line_chart(struct strbuf *o, const struct svg_chart *ch, const struct svg_series *s, int n_series)
{
    struct axes a = { .x0 = INFINITY, .x1 = -INFINITY, .y0 = INFINITY, .y1 = -INFINITY,
                      .x_log = ch->x_log, .y_log = ch->y_log };
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) {
            double x = s[k].x[i], lo = s[k].y_lo ? s[k].y_lo[i] : s[k].y[i], hi = s[k].y_hi ? s[k].y_hi[i] : s[k].y[i];
            double ys[3] = { s[k].y[i], lo, hi };
            for (int j = 0; j < 3; j++) {
                if (!usable(&a, x, ys[j])) continue;
                double xv = a.x_log ? log2(x) : x, yv = a.y_log ? log10(ys[j]) : ys[j];
                a.x0 = fmin(a.x0, xv); a.x1 = fmax(a.x1, xv);
                a.y0 = fmin(a.y0, yv); a.y1 = fmax(a.y1, yv);
            }
        }
    if (ch->y_ref > 0) {
        double yv = a.y_log ? log10(ch->y_ref) : ch->y_ref;
        a.y0 = fmin(a.y0, yv); a.y1 = fmax(a.y1, yv);
    }
    // the legend wraps below the plot; long engine labels take extra rows, which grow the image
    int legend_rows = 1, lx0 = ML;
    for (int k = 0; k < n_series; k++) {
        int w = 34 + legend_width(s[k].name);
        if (lx0 + w > W && lx0 > ML) { lx0 = ML; legend_rows++; }
        lx0 += w;
    }
    int h_total = H + (legend_rows - 1) * 14;
    strbuf_printf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                     "font-family=\"sans-serif\" font-size=\"11\">\n", W, h_total, W, h_total);
    strbuf_printf(o, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n<text x=\"%d\" y=\"20\" font-size=\"14\" "
                     "font-weight=\"bold\">", W, h_total, ML);
    svg_escape(o, ch->title);
    strbuf_puts(o, "</text>\n");
    if (!isfinite(a.x0) || !isfinite(a.y0)) {
        strbuf_printf(o, "<text x=\"%d\" y=\"%d\" fill=\"#888\">no data</text></svg>\n", W / 2 - 25, H / 2);
        return;
    }
    // y range and ticks
    if (a.y_log) {
        a.y0 = floor(a.y0);
        a.y1 = ceil(a.y1);
        if (a.y1 <= a.y0) a.y1 = a.y0 + 1;
    } else {
        a.y0 = fmin(0, a.y0);
        if (a.y1 <= a.y0) a.y1 = a.y0 + 1;
        double step = nice_step(a.y1 - a.y0, 5);
        a.y1 = ceil(a.y1 / step) * step;
    }
    if (a.x1 <= a.x0) { a.x0 -= 1; a.x1 += 1; }
    double pad = (a.x1 - a.x0) * 0.04;
    a.x0 -= pad;
    a.x1 += pad;
    char buf[32];
    if (a.y_log) {
        for (int e = (int)a.y0; e <= (int)a.y1; e++) {
            double yv = pow(10, e), py = ty(&a, yv);
            fmt_num(buf, sizeof buf, yv);
            strbuf_printf(o, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                             "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ML, W - MR, py, py, ML - 4, py + 4, buf);
            for (int m = 2; m <= 5 && e < (int)a.y1; m += 3) {
                double pm = ty(&a, m * yv);
                strbuf_printf(o, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#f0f0f0\"/>\n", ML, W - MR, pm, pm);
            }
        }
    } else {
        double step = nice_step(a.y1 - a.y0, 5);
        for (double yv = a.y0; yv <= a.y1 + step * 1e-6; yv += step) {
            double py = ty(&a, yv);
            fmt_num(buf, sizeof buf, yv);
            strbuf_printf(o, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                             "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", ML, W - MR, py, py, ML - 4, py + 4, buf);
        }
    }
    // x ticks: every distinct x of the data
    double xs[64];
    int nx = 0;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n && nx < 64; i++) {
            bool seen = false;
            for (int j = 0; j < nx; j++) seen |= xs[j] == s[k].x[i];
            if (!seen && isfinite(s[k].x[i]) && (!a.x_log || s[k].x[i] > 0)) xs[nx++] = s[k].x[i];
        }
    for (int j = 0; j < nx; j++) {
        double px = tx(&a, xs[j]);
        fmt_num(buf, sizeof buf, xs[j]);
        strbuf_printf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#eee\"/>"
                         "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", px, px, MT, H - MB, px, H - MB + 14, buf);
    }
    strbuf_printf(o, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", ML, MT,
                  W - ML - MR, H - MT - MB);
    if (ch->y_ref > 0) {
        double py = ty(&a, ch->y_ref);
        strbuf_printf(o, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-dasharray=\"2,3\"/>\n",
                      ML, W - MR, py, py);
    }
    strbuf_printf(o, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"#333\">", (ML + W - MR) / 2, H - MB + 30);
    svg_escape(o, ch->x_label);
    strbuf_printf(o, "%s</text>\n<text transform=\"translate(14,%d) rotate(-90)\" text-anchor=\"middle\" fill=\"#333\">",
                  a.x_log ? " (log scale)" : "", (MT + H - MB) / 2);
    svg_escape(o, ch->y_label);
    strbuf_printf(o, "%s</text>\n", a.y_log ? " (log scale)" : "");

    // series
    for (int k = 0; k < n_series; k++) {
        const char *col = svg_color(s[k].color);
        strbuf_printf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", col,
                      s[k].dashed ? " stroke-dasharray=\"6,4\"" : "");
        for (int i = 0; i < s[k].n; i++)
            if (usable(&a, s[k].x[i], s[k].y[i])) strbuf_printf(o, "%.1f,%.1f ", tx(&a, s[k].x[i]), ty(&a, s[k].y[i]));
        strbuf_puts(o, "\"/>\n");
        for (int i = 0; i < s[k].n; i++) {
            if (!usable(&a, s[k].x[i], s[k].y[i])) continue;
            double px = tx(&a, s[k].x[i]);
            if (s[k].y_lo && s[k].y_hi && usable(&a, s[k].x[i], s[k].y_lo[i]) && usable(&a, s[k].x[i], s[k].y_hi[i]))
                strbuf_printf(o, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"1\"/>",
                              px, px, ty(&a, s[k].y_lo[i]), ty(&a, s[k].y_hi[i]), col);
            strbuf_printf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.2\" fill=\"%s\"><title>", px, ty(&a, s[k].y[i]), col);
            svg_escape(o, s[k].name);
            strbuf_printf(o, ": %g -&gt; %.4g</title></circle>\n", s[k].x[i], s[k].y[i]);
        }
    }
    // legend, below the x label
    int lx = ML, ly = H - 18;
    for (int k = 0; k < n_series; k++) {
        int w = 34 + legend_width(s[k].name);
        if (lx + w > W && lx > ML) { lx = ML; ly += 14; }
        strbuf_printf(o, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"%s/>"
                         "<text x=\"%d\" y=\"%d\">", lx, lx + 18, ly - 4, ly - 4, svg_color(s[k].color),
                      s[k].dashed ? " stroke-dasharray=\"5,3\"" : "", lx + 22, ly);
        svg_escape(o, s[k].name);
        strbuf_puts(o, "</text>\n");
        lx += w;
    }
    strbuf_puts(o, "</svg>\n");
}
