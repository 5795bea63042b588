/* analyze: sweep cells, burst cells and the agentic verdict from raw runs (see analyze.h).
 *
 * Design note on serialization: the issue that asked for burst mode describes a serializing
 * server as "p50 = p95 = max"; that pattern also fits a perfectly batching server (identical
 * requests that start and end together). What tells them apart is whether generations overlap
 * in time: a server that runs one request at a time streams request k only after request k-1
 * has finished. So a burst is flagged serialized when fewer than a quarter of its requests
 * generated while another one did.
 */
#include "bench/analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

static bool label_match(const struct bench_run *r, const char *label)
{
    return !label || (r->label && !strcmp(r->label, label));
}

int analyze_labels(const struct bench_run *v, int n, const char **out, int cap)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        const char *l = v[i].label ? v[i].label : "";
        bool seen = false;
        for (int k = 0; k < m; k++) seen |= !strcmp(out[k], l);
        if (!seen && m < cap) out[m++] = l;
    }
    return m;
}

static int cmp_int(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

// Distinct keys (size or burst_n) of matching runs, sorted ascending.
static int distinct_keys(const struct bench_run *v, int n, const char *label, const char *mode, bool by_burst,
                         int *keys, int cap)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (!label_match(&v[i], label) || strcmp(v[i].mode, mode)) continue;
        if (!strcmp(v[i].phase, "warmup")) continue;
        int k = by_burst ? v[i].burst_n : v[i].size;
        bool seen = false;
        for (int j = 0; j < m; j++) seen |= keys[j] == k;
        if (!seen && m < cap) keys[m++] = k;
    }
    qsort(keys, (size_t)m, sizeof *keys, cmp_int);
    return m;
}

static double tok_or_nan(int x)
{
    return x >= 0 ? (double)x : NAN;
}

int analyze_sweep(const struct bench_run *v, int n, const char *label, struct sweep_cell *out, int cap)
{
    int keys[64];
    int m = distinct_keys(v, n, label, "sweep", false, keys, cap < 64 ? cap : 64);
    double *a[8];
    for (int k = 0; k < 8; k++) a[k] = xmalloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int c = 0; c < m; c++) {
        struct sweep_cell *cell = &out[c];
        memset(cell, 0, sizeof *cell);
        cell->size = keys[c];
        int cnt = 0;
        for (int i = 0; i < n; i++) {
            const struct bench_run *r = &v[i];
            if (!label_match(r, label) || strcmp(r->mode, "sweep") || strcmp(r->phase, "run") || r->size != keys[c])
                continue;
            if (r->error) {
                cell->n_failed++;
                if (!cell->first_error) cell->first_error = r->error;
                continue;
            }
            cell->n_ok++;
            if (!strcmp(r->prompt_tokens_src, "tokenizer")) cell->prompt_counted_locally = true;
            a[0][cnt] = r->ttft_ms;
            a[1][cnt] = r->prefill_tps;
            a[2][cnt] = r->decode_tps;
            a[3][cnt] = r->total_ms;
            a[4][cnt] = tok_or_nan(r->prompt_tokens);
            a[5][cnt] = tok_or_nan(r->completion_tokens);
            a[6][cnt] = tok_or_nan(r->reasoning_tokens);
            a[7][cnt] = tok_or_nan(r->content_tokens);
            cnt++;
        }
        stats_compute(a[0], cnt, &cell->ttft_ms);
        stats_compute(a[1], cnt, &cell->prefill_tps);
        stats_compute(a[2], cnt, &cell->decode_tps);
        stats_compute(a[3], cnt, &cell->total_ms);
        stats_compute(a[4], cnt, &cell->prompt_tokens);
        stats_compute(a[5], cnt, &cell->completion_tokens);
        stats_compute(a[6], cnt, &cell->reasoning_tokens);
        stats_compute(a[7], cnt, &cell->content_tokens);
    }
    for (int k = 0; k < 8; k++) free(a[k]);
    return m;
}

int analyze_burst(const struct bench_run *v, int n, const char *label, struct burst_cell *out, int cap)
{
    int keys[64];
    int m = distinct_keys(v, n, label, "burst", true, keys, cap < 64 ? cap : 64);
    double *lat = xmalloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    double *ttft = xmalloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    const struct bench_run **ok = xmalloc(sizeof(*ok) * (size_t)(n > 0 ? n : 1));
    for (int c = 0; c < m; c++) {
        struct burst_cell *cell = &out[c];
        memset(cell, 0, sizeof *cell);
        cell->n = keys[c];
        double t_start = INFINITY, t_end = -INFINITY, tokens = 0;
        int cnt = 0;
        for (int i = 0; i < n; i++) {
            const struct bench_run *r = &v[i];
            if (!label_match(r, label) || strcmp(r->mode, "burst") || r->burst_n != keys[c]) continue;
            if (isfinite(r->start_ms) && r->start_ms < t_start) t_start = r->start_ms;
            if (isfinite(r->end_ms) && r->end_ms > t_end) t_end = r->end_ms;
            if (r->error) {
                cell->n_failed++;
                if (!cell->first_error) cell->first_error = r->error;
                continue;
            }
            cell->n_ok++;
            if (r->completion_tokens > 0) tokens += r->completion_tokens;
            lat[cnt] = r->total_ms;
            ttft[cnt] = r->ttft_ms;
            ok[cnt++] = r;
        }
        cell->wall_ms = t_end > t_start ? t_end - t_start : NAN;
        cell->agg_tps = cell->wall_ms > 0 ? tokens / (cell->wall_ms / 1e3) : NAN;
        stats_compute(lat, cnt, &cell->latency_ms);
        stats_compute(ttft, cnt, &cell->ttft_ms);
        // generation intervals [first_ms, end_ms]: overlap counts when it is more than 5% of
        // the shorter one (a request that starts streaming as the previous one sends [DONE]
        // touches it without running beside it)
        int n_overlap = 0;
        for (int i = 0; i < cnt; i++) {
            bool any = false;
            for (int j = 0; j < cnt && !any; j++) {
                if (i == j) continue;
                double a0 = ok[i]->first_ms, a1 = ok[i]->end_ms, b0 = ok[j]->first_ms, b1 = ok[j]->end_ms;
                double ov = fmin(a1, b1) - fmax(a0, b0);
                double shorter = fmin(a1 - a0, b1 - b0);
                any = ov > 0.05 * shorter && ov > 0;
            }
            n_overlap += any;
        }
        cell->overlap_share = cnt > 0 ? (double)n_overlap / cnt : NAN;
        cell->serialized = cell->n > 1 && cnt > 1 && cell->overlap_share < 0.25;
    }
    free(ok);
    free(lat);
    free(ttft);
    return m;
}

bool analyze_agentic(const struct bench_run *v, int n, const char *label, struct agentic_result *out)
{
    memset(out, 0, sizeof *out);
    out->cold_ttft_ms = out->warm_ttft_ms = out->prefix_median_ms = out->restart_ttft_ms = NAN;
    out->ratio = out->restart_ratio = NAN;
    out->verdict = out->restart_verdict = -1;
    double *pre = xmalloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    int n_pre = 0;
    for (int i = 0; i < n; i++) {
        const struct bench_run *r = &v[i];
        if (!label_match(r, label) || strcmp(r->mode, "agentic") || !strcmp(r->phase, "warmup")) continue;
        out->n_calls++;
        out->tool_calls += r->tool_calls;
        out->tool_calls_clean += r->tool_calls_clean;
        if (r->tool_error && !out->first_tool_error) out->first_tool_error = r->tool_error;
        if (r->error) {
            out->n_failed++;
            continue;
        }
        if (!strcmp(r->phase, "cold")) out->cold_ttft_ms = r->ttft_ms;
        else if (!strcmp(r->phase, "warm")) out->warm_ttft_ms = r->ttft_ms;
        else if (!strcmp(r->phase, "prefix")) pre[n_pre++] = r->ttft_ms;
        else if (!strcmp(r->phase, "cold_after_restart")) out->restart_ttft_ms = r->ttft_ms;
    }
    out->prefix_median_ms = stats_quantile(pre, n_pre, 0.5);
    free(pre);
    if (out->cold_ttft_ms > 0 && isfinite(out->prefix_median_ms)) {
        out->ratio = out->prefix_median_ms / out->cold_ttft_ms;
        out->verdict = out->ratio < AGENTIC_REUSE_RATIO;
    }
    if (out->cold_ttft_ms > 0 && isfinite(out->restart_ttft_ms)) {
        out->restart_ratio = out->restart_ttft_ms / out->cold_ttft_ms;
        out->restart_verdict = out->restart_ratio < AGENTIC_REUSE_RATIO;
    }
    return out->n_calls > 0;
}
