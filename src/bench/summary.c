/* summary: the table `cairn bench` prints when it ends, and the same numbers as JSON
 * (--summary-out) for scripts and tests. Numbers come from bench/analyze.c. */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "base/log.h"
#include "bench/analyze.h"
#include "bench/bench_int.h"

#define CELLS_MAX 64

/* A numeric table column: its header, width and decimals. */
struct column { const char *head; int width, prec; };
#define N_COLS(cols) ((int)(sizeof cols / sizeof cols[0]))

static void print_heads(FILE *f, const struct column *cols, int n)
{
    for (int i = 0; i < n; i++) fprintf(f, " %*s", cols[i].width, cols[i].head);
}

/* One row's cells, right-aligned: v[i] under cols[i], or "-" where it was not measured. */
static void print_cells(FILE *f, const struct column *cols, int n, const double *v)
{
    for (int i = 0; i < n; i++) {
        if (isfinite(v[i])) fprintf(f, " %*.*f", cols[i].width, cols[i].prec, v[i]);
        else fprintf(f, " %*s", cols[i].width, "-");
    }
}

static void print_sweep(const struct bench_ctx *c, FILE *f)
{
    static const struct column cols[] = {
        { "prompt_tok", 10, 0 }, { "TTFT_ms", 10, 1 }, { "prefill/s", 10, 0 }, { "decode_tok/s", 12, 1 },
        { "(sd)", 8, 1 }, { "dec_mean", 9, 1 }, { "dec_min", 9, 1 }, { "dec_max", 9, 1 },
        { "reason", 8, 0 }, { "content", 8, 0 },
    };
    struct sweep_cell cells[CELLS_MAX];
    int m = analyze_sweep(c->runs.v, c->runs.n, NULL, cells, CELLS_MAX);
    fprintf(f, "%7s %5s", "size", "ok");
    print_heads(f, cols, N_COLS(cols));
    fputc('\n', f);
    bool local = false;
    for (int i = 0; i < m; i++) {
        const struct sweep_cell *s = &cells[i];
        local |= s->prompt_counted_locally;
        fprintf(f, "%7d %2d/%-2d", s->size, s->n_ok, s->n_ok + s->n_failed);
        const double v[] = {
            s->prompt_tokens.median, s->ttft_ms.median, s->prefill_tps.median, s->decode_tps.median,
            s->decode_tps.stddev, s->decode_tps.mean, s->decode_tps.min, s->decode_tps.max,
            s->reasoning_tokens.median, s->content_tokens.median,
        };
        print_cells(f, cols, N_COLS(cols), v);
        fputc('\n', f);
        if (s->first_error) fprintf(f, "        first error: %s\n", s->first_error);
    }
    if (local) fprintf(f, "note: prompt tokens counted with --tokenizer (server sent no usage; chat template not counted)\n");
}

static void print_burst(const struct bench_ctx *c, FILE *f)
{
    static const struct column cols[] = {
        { "wall_ms", 9, 0 }, { "lat_p50", 9, 0 }, { "lat_p95", 9, 0 }, { "lat_max", 9, 0 },
        { "ttft_p50", 9, 0 }, { "ttft_p95", 9, 0 }, { "ttft_max", 9, 0 }, { "agg_tok/s", 9, 1 },
    };
    struct burst_cell cells[CELLS_MAX];
    int m = analyze_burst(c->runs.v, c->runs.n, NULL, cells, CELLS_MAX);
    fprintf(f, "%5s %7s", "N", "ok");
    print_heads(f, cols, N_COLS(cols));
    fputs(" \n", f);   // the SERIALIZES column has no header
    for (int i = 0; i < m; i++) {
        const struct burst_cell *b = &cells[i];
        fprintf(f, "%5d %3d/%-3d", b->n, b->n_ok, b->n_ok + b->n_failed);
        const double v[] = {
            b->wall_ms, b->latency_ms.median, b->latency_ms.p95, b->latency_ms.max,
            b->ttft_ms.median, b->ttft_ms.p95, b->ttft_ms.max, b->agg_tps,
        };
        print_cells(f, cols, N_COLS(cols), v);
        fprintf(f, " %s\n", b->serialized ? "SERIALIZES" : "");
        if (b->first_error) fprintf(f, "      first error: %s\n", b->first_error);
    }
}

static const char *verdict_str(int v)
{
    return v == 1 ? "YES" : v == 0 ? "NO" : "unknown";
}

static void print_agentic(const struct bench_ctx *c, FILE *f)
{
    struct agentic_result a;
    if (!analyze_agentic(c->runs.v, c->runs.n, NULL, &a)) return;
    for (int i = 0; i < c->runs.n; i++) {
        const struct bench_run *r = &c->runs.v[i];
        if (r->error) {
            fprintf(f, "%-20s ERROR: %s\n", r->phase, r->error);
            continue;
        }
        char cached[32] = "?";   // the server's usage.prompt_tokens_details.cached_tokens
        if (r->cached_tokens >= 0) snprintf(cached, sizeof cached, "%d", r->cached_tokens);
        fprintf(f, "%-20s TTFT %9.1f ms  prompt %6d tok  cached %6s tok  completion %4d tok  tool calls %d/%d clean\n",
                r->phase, r->ttft_ms, r->prompt_tokens, cached, r->completion_tokens, r->tool_calls_clean, r->tool_calls);
    }
    if (a.verdict >= 0)
        fprintf(f, "cross-user prefix reuse: %s (median prefix-test TTFT %.1f ms / cold %.1f ms = %.3f; YES below %.1f)\n",
                verdict_str(a.verdict), a.prefix_median_ms, a.cold_ttft_ms, a.ratio, AGENTIC_REUSE_RATIO);
    else
        fprintf(f, "cross-user prefix reuse: unknown (the cold call or every prefix-test call failed)\n");
    if (a.restart_verdict >= 0)
        fprintf(f, "persistent cache across restart: %s (%.1f ms / cold %.1f ms = %.3f)\n",
                verdict_str(a.restart_verdict), a.restart_ttft_ms, a.cold_ttft_ms, a.restart_ratio);
    if (a.tool_calls)
        fprintf(f, "tool calls: %d of %d schema-clean (%.0f%%)%s%s\n", a.tool_calls_clean, a.tool_calls,
                100.0 * a.tool_calls_clean / a.tool_calls, a.first_tool_error ? "; first problem: " : "",
                a.first_tool_error ? a.first_tool_error : "");
    else
        fprintf(f, "tool calls: the model made none\n");
}

void bench_summary_print(const struct bench_ctx *c, FILE *f)
{
    const struct bench_cfg *cfg = c->cfg;
    static const char *const modes[] = { "sweep", "agentic", "burst" };
    fprintf(f, "cairn bench: %s mode, %s, model %s, label %s\n", modes[cfg->mode], cfg->url, c->model,
            cfg->label ? cfg->label : cfg->url);
    switch (cfg->mode) {
    case BENCH_MODE_AGENTIC: print_agentic(c, f); break;
    case BENCH_MODE_BURST:   print_burst(c, f); break;
    default:                 print_sweep(c, f); break;
    }
    for (int i = 0; i < c->n_notes; i++) fprintf(f, "note: %s\n", c->notes[i]);
    fprintf(f, "%d runs, %d failed, %d skipped\n", c->n_done, c->n_failed, c->n_skipped);
}

/* ==== JSON ==== */

static json_t *num(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *stats_json(const struct stats *s)
{
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "n", s->n, "median", num(s->median), "mean",
                     num(s->mean), "stddev", num(s->stddev), "min", num(s->min), "max", num(s->max), "p95",
                     num(s->p95));
}

enum status bench_summary_write_json(const struct bench_ctx *c, const char *path)
{
    json_t *root = json_object();
    json_object_set_new(root, "url", json_string(c->cfg->url));
    json_object_set_new(root, "model", json_string(c->model));
    json_object_set_new(root, "runs", json_integer(c->n_done));
    json_object_set_new(root, "failed", json_integer(c->n_failed));
    json_object_set_new(root, "skipped", json_integer(c->n_skipped));
    json_t *sweep = json_array();
    struct sweep_cell sc[CELLS_MAX];
    int m = analyze_sweep(c->runs.v, c->runs.n, NULL, sc, CELLS_MAX);
    for (int i = 0; i < m; i++)
        json_array_append_new(sweep, json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "size",
                                               sc[i].size, "ok", sc[i].n_ok, "failed", sc[i].n_failed, "ttft_ms",
                                               stats_json(&sc[i].ttft_ms), "prefill_tps",
                                               stats_json(&sc[i].prefill_tps), "decode_tps",
                                               stats_json(&sc[i].decode_tps), "total_ms", stats_json(&sc[i].total_ms),
                                               "prompt_tokens", stats_json(&sc[i].prompt_tokens),
                                               "reasoning_tokens", stats_json(&sc[i].reasoning_tokens),
                                               "content_tokens", stats_json(&sc[i].content_tokens)));
    json_object_set_new(root, "sweep", sweep);
    json_t *burst = json_array();
    struct burst_cell bc[CELLS_MAX];
    m = analyze_burst(c->runs.v, c->runs.n, NULL, bc, CELLS_MAX);
    for (int i = 0; i < m; i++)
        json_array_append_new(burst, json_pack("{s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:b}", "n", bc[i].n, "ok",
                                               bc[i].n_ok, "failed", bc[i].n_failed, "wall_ms", num(bc[i].wall_ms),
                                               "agg_tps", num(bc[i].agg_tps), "latency_ms",
                                               stats_json(&bc[i].latency_ms), "ttft_ms", stats_json(&bc[i].ttft_ms),
                                               "overlap_share", num(bc[i].overlap_share), "serialized",
                                               bc[i].serialized));
    json_object_set_new(root, "burst", burst);
    struct agentic_result a;
    if (analyze_agentic(c->runs.v, c->runs.n, NULL, &a))
        json_object_set_new(root, "agentic",
                            json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:i, s:i}", "cold_ttft_ms",
                                      num(a.cold_ttft_ms), "warm_ttft_ms", num(a.warm_ttft_ms), "prefix_median_ms",
                                      num(a.prefix_median_ms), "restart_ttft_ms", num(a.restart_ttft_ms), "ratio",
                                      num(a.ratio), "restart_ratio", num(a.restart_ratio), "verdict",
                                      verdict_str(a.verdict), "restart_verdict", verdict_str(a.restart_verdict),
                                      "tool_calls", a.tool_calls, "tool_calls_clean", a.tool_calls_clean));
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    json_decref(root);
    if (rc != 0) {
        LOG_ERR("bench: cannot write %s", path);
        return STATUS_EIO;
    }
    return STATUS_OK;
}
