/* report: the HTML comparison of engines (see report.h).
 *
 * Design note: every number in the page comes from bench/analyze.c over the raw JSONL runs, so
 * the report and the stdout summary of the run that produced them cannot disagree. Engines are
 * the distinct "label" values; a file without labels is its own engine, named after the file.
 */
#include "bench/report.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"
#include "bench/analyze.h"
#include "bench/run.h"
#include "bench/svg.h"

#define ENGINES_MAX 16
#define CELLS_MAX 64

struct engine_data {
    const char       *label;
    const char       *model;
    const char       *url;
    int               n_runs;
    int               n_failed;
    struct sweep_cell sweep[CELLS_MAX];
    int               n_sweep;
    struct burst_cell burst[CELLS_MAX];
    int               n_burst;
    struct agentic_result agentic;
    bool              has_agentic;
    // chart columns (one value per cell)
    double x_size[CELLS_MAX], dec_med[CELLS_MAX], dec_min[CELLS_MAX], dec_max[CELLS_MAX], dec_norm[CELLS_MAX];
    double ttft_med[CELLS_MAX], ttft_min[CELLS_MAX], ttft_max[CELLS_MAX], pre_med[CELLS_MAX];
    double dec_cv[CELLS_MAX], ttft_cv[CELLS_MAX];
    double x_n[CELLS_MAX], lat_p50[CELLS_MAX], lat_p95[CELLS_MAX], ttft_p50[CELLS_MAX], agg[CELLS_MAX];
};

static void fill_engine(struct engine_data *e, const struct bench_runs *rs, const char *label)
{
    memset(e, 0, sizeof *e);
    e->label = label;
    for (int i = 0; i < rs->n; i++) {
        if (strcmp(rs->v[i].label, label)) continue;
        e->n_runs++;
        e->n_failed += rs->v[i].error != NULL;
        if (!e->model) e->model = rs->v[i].model;
        if (!e->url) e->url = rs->v[i].url;
    }
    e->n_sweep = analyze_sweep(rs->v, rs->n, label, e->sweep, CELLS_MAX);
    e->n_burst = analyze_burst(rs->v, rs->n, label, e->burst, CELLS_MAX);
    e->has_agentic = analyze_agentic(rs->v, rs->n, label, &e->agentic);
    double base = NAN;
    for (int i = 0; i < e->n_sweep; i++) {
        const struct sweep_cell *c = &e->sweep[i];
        e->x_size[i] = c->size;
        e->dec_med[i] = c->decode_tps.median;
        e->dec_min[i] = c->decode_tps.min;
        e->dec_max[i] = c->decode_tps.max;
        if (!isfinite(base) && isfinite(c->decode_tps.median)) base = c->decode_tps.median;
        e->ttft_med[i] = c->ttft_ms.median;
        e->ttft_min[i] = c->ttft_ms.min;
        e->ttft_max[i] = c->ttft_ms.max;
        e->pre_med[i] = c->prefill_tps.median;
        e->dec_cv[i] = c->decode_tps.n >= 2 ? 100 * c->decode_tps.stddev / c->decode_tps.mean : NAN;
        e->ttft_cv[i] = c->ttft_ms.n >= 2 ? 100 * c->ttft_ms.stddev / c->ttft_ms.mean : NAN;
    }
    for (int i = 0; i < e->n_sweep; i++) e->dec_norm[i] = base > 0 ? e->dec_med[i] / base : NAN;
    for (int i = 0; i < e->n_burst; i++) {
        const struct burst_cell *b = &e->burst[i];
        e->x_n[i] = b->n;
        e->lat_p50[i] = b->latency_ms.median;
        e->lat_p95[i] = b->latency_ms.p95;
        e->ttft_p50[i] = b->ttft_ms.median;
        e->agg[i] = b->agg_tps;
    }
}

static void cell_num(struct strbuf *o, double v, const char *fmt)
{
    strbuf_puts(o, "<td>");
    if (isfinite(v)) strbuf_printf(o, fmt, v);
    else strbuf_puts(o, "&ndash;");
    strbuf_puts(o, "</td>");
}

static void chart(struct strbuf *o, const struct svg_chart *ch, struct svg_series *s, int n)
{
    strbuf_puts(o, "<div class=\"chart\">");
    svg_line_chart(o, ch, s, n);
    strbuf_puts(o, "</div>\n");
}

/* An engine's own table: its label as a heading, then the header row of these <th> cells. */
static void engine_table_open(struct strbuf *o, const char *label, const char *heads)
{
    strbuf_puts(o, "<h3>");
    svg_escape(o, label);
    strbuf_printf(o, "</h3>\n<table><tr>%s</tr>\n", heads);
}

/* The last cell of a row, its runs' first error (empty when none), and the row's end. */
static void row_end_error(struct strbuf *o, const char *first_error)
{
    strbuf_puts(o, "<td class=\"err\">");
    svg_escape(o, first_error);
    strbuf_puts(o, "</td></tr>\n");
}

/* The two series a two-measure chart shows of engine k: y1 solid, named "<label> <what1>", and
 * y2 dashed, "<label> <what2>", over the same n points of x. The names are the caller's to free. */
static int series_pair(struct svg_series *s, const char *label, int k, const double *x, int n, const double *y1,
                       const char *what1, const double *y2, const char *what2)
{
    const char *what[2] = { what1, what2 };
    const double *y[2] = { y1, y2 };
    for (int i = 0; i < 2; i++) {
        char *name = xmalloc(strlen(label) + strlen(what[i]) + 2);
        sprintf(name, "%s %s", label, what[i]);
        s[i] = (struct svg_series){ .name = name, .x = x, .y = y[i], .n = n, .color = k, .dashed = i == 1 };
    }
    return 2;
}

static void sweep_section(struct strbuf *o, struct engine_data *e, int n_e)
{
    bool any = false;
    for (int k = 0; k < n_e; k++) any |= e[k].n_sweep > 0;
    if (!any) return;
    struct svg_series s[ENGINES_MAX * 2];
    strbuf_puts(o, "<h2 id=\"sweep\">Sweep: single request by prompt size</h2>\n<p>Medians over the measured runs; whiskers "
                   "span min to max. Every prompt starts with a unique nonce, so no prefix cache can serve it.</p>\n"
                   "<div class=\"grid\">\n");
    for (int k = 0; k < n_e; k++)
        s[k] = (struct svg_series){ .name = e[k].label, .x = e[k].x_size, .y = e[k].dec_med, .y_lo = e[k].dec_min,
                                    .y_hi = e[k].dec_max, .n = e[k].n_sweep, .color = k };
    chart(o, &(struct svg_chart){ .title = "Decode tok/s vs context", .x_label = "prompt tokens",
                                  .y_label = "decode tok/s", .x_log = true }, s, n_e);
    for (int k = 0; k < n_e; k++)
        s[k] = (struct svg_series){ .name = e[k].label, .x = e[k].x_size, .y = e[k].dec_norm, .n = e[k].n_sweep,
                                    .color = k };
    chart(o, &(struct svg_chart){ .title = "Decode tok/s normalized to each engine's smallest prompt",
                                  .x_label = "prompt tokens", .y_label = "relative decode rate", .x_log = true,
                                  .y_ref = 1.0 }, s, n_e);
    for (int k = 0; k < n_e; k++)
        s[k] = (struct svg_series){ .name = e[k].label, .x = e[k].x_size, .y = e[k].ttft_med, .y_lo = e[k].ttft_min,
                                    .y_hi = e[k].ttft_max, .n = e[k].n_sweep, .color = k };
    chart(o, &(struct svg_chart){ .title = "Time to first token", .x_label = "prompt tokens", .y_label = "TTFT ms",
                                  .x_log = true, .y_log = true }, s, n_e);
    for (int k = 0; k < n_e; k++)
        s[k] = (struct svg_series){ .name = e[k].label, .x = e[k].x_size, .y = e[k].pre_med, .n = e[k].n_sweep,
                                    .color = k };
    chart(o, &(struct svg_chart){ .title = "Prefill tok/s (prompt tokens / TTFT)", .x_label = "prompt tokens",
                                  .y_label = "prefill tok/s", .x_log = true }, s, n_e);
    int m = 0;
    for (int k = 0; k < n_e; k++)
        m += series_pair(s + m, e[k].label, k, e[k].x_size, e[k].n_sweep, e[k].dec_cv, "decode", e[k].ttft_cv, "TTFT");
    chart(o, &(struct svg_chart){ .title = "Run-to-run spread (coefficient of variation)", .x_label = "prompt tokens",
                                  .y_label = "stddev / mean, %", .x_log = true }, s, m);
    for (int i = 0; i < m; i++) free((char *)s[i].name);
    strbuf_puts(o, "</div>\n");

    for (int k = 0; k < n_e; k++) {
        if (!e[k].n_sweep) continue;
        engine_table_open(o, e[k].label, "<th>size</th><th>ok</th><th>prompt tok</th><th>TTFT ms median</th>"
                          "<th>TTFT sd</th><th>prefill tok/s</th><th>decode tok/s median</th><th>mean</th><th>sd</th>"
                          "<th>min</th><th>max</th><th>reasoning tok</th><th>content tok</th><th>first error</th>");
        for (int i = 0; i < e[k].n_sweep; i++) {
            const struct sweep_cell *c = &e[k].sweep[i];
            strbuf_printf(o, "<tr><td>%d</td><td>%d/%d</td>", c->size, c->n_ok, c->n_ok + c->n_failed);
            cell_num(o, c->prompt_tokens.median, c->prompt_counted_locally ? "%.0f*" : "%.0f");
            cell_num(o, c->ttft_ms.median, "%.1f");
            cell_num(o, c->ttft_ms.stddev, "%.1f");
            cell_num(o, c->prefill_tps.median, "%.0f");
            cell_num(o, c->decode_tps.median, "%.1f");
            cell_num(o, c->decode_tps.mean, "%.1f");
            cell_num(o, c->decode_tps.stddev, "%.2f");
            cell_num(o, c->decode_tps.min, "%.1f");
            cell_num(o, c->decode_tps.max, "%.1f");
            cell_num(o, c->reasoning_tokens.median, "%.0f");
            cell_num(o, c->content_tokens.median, "%.0f");
            row_end_error(o, c->first_error);
        }
        strbuf_puts(o, "</table>\n");
    }
    bool local = false;
    for (int k = 0; k < n_e; k++)
        for (int i = 0; i < e[k].n_sweep; i++) local |= e[k].sweep[i].prompt_counted_locally;
    if (local)
        strbuf_puts(o, "<p class=\"note\">* prompt tokens counted locally with --tokenizer (the server sent no "
                       "usage; the chat template's tokens are not included).</p>\n");
}

static void burst_section(struct strbuf *o, struct engine_data *e, int n_e)
{
    bool any = false;
    for (int k = 0; k < n_e; k++) any |= e[k].n_burst > 0;
    if (!any) return;
    struct svg_series s[ENGINES_MAX * 2];
    strbuf_puts(o, "<h2 id=\"burst\">Burst: N concurrent requests started within the burst window</h2>\n<div class=\"grid\">\n");
    int m = 0;
    for (int k = 0; k < n_e; k++)
        m += series_pair(s + m, e[k].label, k, e[k].x_n, e[k].n_burst, e[k].lat_p50, "p50", e[k].lat_p95, "p95");
    chart(o, &(struct svg_chart){ .title = "Request latency under burst", .x_label = "concurrent requests N",
                                  .y_label = "latency ms", .x_log = true }, s, m);
    for (int i = 0; i < m; i++) free((char *)s[i].name);
    for (int k = 0; k < n_e; k++)
        s[k] = (struct svg_series){ .name = e[k].label, .x = e[k].x_n, .y = e[k].agg, .n = e[k].n_burst, .color = k };
    chart(o, &(struct svg_chart){ .title = "Aggregate output throughput", .x_label = "concurrent requests N",
                                  .y_label = "output tok/s (all requests)", .x_log = true }, s, n_e);
    for (int k = 0; k < n_e; k++)
        s[k] = (struct svg_series){ .name = e[k].label, .x = e[k].x_n, .y = e[k].ttft_p50, .n = e[k].n_burst, .color = k };
    chart(o, &(struct svg_chart){ .title = "Median TTFT under burst", .x_label = "concurrent requests N",
                                  .y_label = "TTFT ms", .x_log = true, .y_log = true }, s, n_e);
    strbuf_puts(o, "</div>\n");
    for (int k = 0; k < n_e; k++) {
        if (!e[k].n_burst) continue;
        engine_table_open(o, e[k].label, "<th>N</th><th>ok</th><th>wall ms</th><th>latency p50</th><th>p95</th>"
                          "<th>max</th><th>TTFT p50</th><th>p95</th><th>max</th><th>aggregate tok/s</th>"
                          "<th>overlap</th><th>serializes?</th><th>first error</th>");
        for (int i = 0; i < e[k].n_burst; i++) {
            const struct burst_cell *b = &e[k].burst[i];
            strbuf_printf(o, "<tr><td>%d</td><td>%d/%d</td>", b->n, b->n_ok, b->n_ok + b->n_failed);
            cell_num(o, b->wall_ms, "%.0f");
            cell_num(o, b->latency_ms.median, "%.0f");
            cell_num(o, b->latency_ms.p95, "%.0f");
            cell_num(o, b->latency_ms.max, "%.0f");
            cell_num(o, b->ttft_ms.median, "%.0f");
            cell_num(o, b->ttft_ms.p95, "%.0f");
            cell_num(o, b->ttft_ms.max, "%.0f");
            cell_num(o, b->agg_tps, "%.1f");
            cell_num(o, 100 * b->overlap_share, "%.0f%%");
            strbuf_printf(o, "<td>%s</td>", b->serialized ? "<b>YES</b>" : "no");
            row_end_error(o, b->first_error);
        }
        strbuf_puts(o, "</table>\n");
    }
}

static const char *verdict_html(int v)
{
    return v == 1 ? "<b class=\"yes\">YES</b>" : v == 0 ? "<b class=\"no\">NO</b>" : "&ndash;";
}

static void agentic_section(struct strbuf *o, struct engine_data *e, int n_e)
{
    bool any = false;
    for (int k = 0; k < n_e; k++) any |= e[k].has_agentic;
    if (!any) return;
    strbuf_printf(o, "<h2 id=\"agentic\">Agentic: shared ~7 KB system prompt with tools, changing user messages</h2>\n"
                     "<p>Cross-user prefix reuse is YES when median(prefix-test TTFT) / cold TTFT &lt; %.1f.</p>\n"
                     "<table><tr><th>engine</th><th>cold TTFT ms</th><th>warm</th><th>prefix-test median</th>"
                     "<th>ratio</th><th>reuse</th><th>after restart</th><th>persistent</th><th>tool calls clean</th>"
                     "<th>failed calls</th></tr>\n", AGENTIC_REUSE_RATIO);
    for (int k = 0; k < n_e; k++) {
        const struct agentic_result *a = &e[k].agentic;
        if (!e[k].has_agentic) continue;
        strbuf_puts(o, "<tr><td>");
        svg_escape(o, e[k].label);
        strbuf_puts(o, "</td>");
        cell_num(o, a->cold_ttft_ms, "%.1f");
        cell_num(o, a->warm_ttft_ms, "%.1f");
        cell_num(o, a->prefix_median_ms, "%.1f");
        cell_num(o, a->ratio, "%.3f");
        strbuf_printf(o, "<td>%s</td>", verdict_html(a->verdict));
        cell_num(o, a->restart_ttft_ms, "%.1f");
        strbuf_printf(o, "<td>%s</td>", verdict_html(a->restart_verdict));
        if (a->tool_calls) strbuf_printf(o, "<td>%d/%d (%.0f%%)</td>", a->tool_calls_clean, a->tool_calls,
                                         100.0 * a->tool_calls_clean / a->tool_calls);
        else strbuf_puts(o, "<td>no calls</td>");
        strbuf_printf(o, "<td>%d/%d</td></tr>\n", a->n_failed, a->n_calls);
    }
    strbuf_puts(o, "</table>\n");
}

static const char css[] =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1240px}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ccc}h3{font-size:15px}"
    "table{border-collapse:collapse;font-size:12px;margin:8px 0}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}"
    "td:first-child{text-align:left}.err{color:#b00;text-align:left;max-width:360px}"
    ".grid{display:flex;flex-wrap:wrap;gap:12px}.chart{border:1px solid #e4e4e4}"
    ".note{color:#666;font-size:12px}.yes{color:#080}.no{color:#b00}";

enum status bench_report_html(const char *const *paths, int n_paths, const char *out_path)
{
    struct bench_runs rs = {0};
    enum status st = STATUS_OK;
    for (int i = 0; i < n_paths && st == STATUS_OK; i++) st = bench_runs_read_jsonl(paths[i], &rs);
    if (st != STATUS_OK) goto out_free_runs;
    if (rs.n == 0) {
        LOG_ERR("bench report: no runs in the input files");
        st = STATUS_EINVAL;
        goto out_free_runs;
    }
    const char *labels[ENGINES_MAX];
    int n_e = analyze_labels(rs.v, rs.n, labels, ENGINES_MAX);
    struct engine_data *e = xcalloc((size_t)n_e, sizeof *e);
    for (int k = 0; k < n_e; k++) fill_engine(&e[k], &rs, labels[k]);

    struct strbuf o = {0};
    char when[64];
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    strbuf_printf(&o, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>cairn bench report"
                  "</title><style>%s</style></head><body>\n<h1>cairn bench report</h1>\n<p class=\"note\">Generated %s "
                  "from", css, when);
    for (int i = 0; i < n_paths; i++) {
        strbuf_puts(&o, " <code>");
        svg_escape(&o, paths[i]);
        strbuf_puts(&o, "</code>");
    }
    strbuf_puts(&o, ".</p>\n<table><tr><th>engine</th><th>model</th><th>server</th><th>runs</th><th>failed</th></tr>\n");
    for (int k = 0; k < n_e; k++) {
        strbuf_printf(&o, "<tr><td><span style=\"color:%s\">&#9632;</span> ", svg_color(k));
        svg_escape(&o, e[k].label);
        strbuf_puts(&o, "</td><td>");
        svg_escape(&o, e[k].model);
        strbuf_puts(&o, "</td><td>");
        svg_escape(&o, e[k].url);
        strbuf_printf(&o, "</td><td>%d</td><td>%d</td></tr>\n", e[k].n_runs, e[k].n_failed);
    }
    strbuf_puts(&o, "</table>\n");
    sweep_section(&o, e, n_e);
    burst_section(&o, e, n_e);
    agentic_section(&o, e, n_e);
    strbuf_puts(&o, "</body></html>\n");

    FILE *f = fopen(out_path, "w");
    bool ok = f && fwrite(o.data, 1, o.len, f) == o.len;
    if (f && fclose(f) != 0) ok = false;
    if (!ok) {
        LOG_ERR("bench report: cannot write %s", out_path);
        st = STATUS_EIO;
    }
    strbuf_free(&o);
    free(e);
out_free_runs:
    bench_runs_free(&rs);
    return st;
}
