/* analyze: turns recorded runs into the numbers people read: sweep cells (per prompt size),
 * burst cells (per N) and the agentic verdict. Shared by the stdout summary (bench/summary.c)
 * and the HTML report (bench/report.c), so both always agree. Pure functions; a label filter
 * selects one engine's runs (NULL: all runs).
 *
 *     struct sweep_cell cells[32];
 *     int n = analyze_sweep(runs.v, runs.n, "cairn", cells, 32);
 *     printf("%d: %.1f tok/s\n", cells[0].size, cells[0].decode_tps.median);
 */
#ifndef CAIRN_BENCH_ANALYZE_H
#define CAIRN_BENCH_ANALYZE_H

#include <stdbool.h>

#include "bench/run.h"
#include "bench/stats.h"

struct sweep_cell {
    int          size;          // target prompt tokens
    int          n_ok;
    int          n_failed;
    struct stats ttft_ms;
    struct stats prefill_tps;
    struct stats decode_tps;
    struct stats total_ms;
    struct stats prompt_tokens;
    struct stats completion_tokens;
    struct stats reasoning_tokens;
    struct stats content_tokens;
    bool         prompt_counted_locally;   // some prompt_tokens came from --tokenizer
    const char  *first_error;              // borrowed from the runs
};

struct burst_cell {
    int          n;              // requests in the burst
    int          n_ok;
    int          n_failed;
    double       wall_ms;        // first start to last end, all requests
    double       agg_tps;        // completion tokens of successful requests / wall time
    struct stats latency_ms;     // total_ms of successful requests (p95 in .p95)
    struct stats ttft_ms;
    double       overlap_share;  // share of requests whose generation overlapped another's
    bool         serialized;     // N > 1 and generations did not overlap: one at a time
    const char  *first_error;
};

struct agentic_result {
    double cold_ttft_ms;         // NaN when the phase is missing or failed
    double warm_ttft_ms;
    double prefix_median_ms;     // median over the prefix-test calls
    double restart_ttft_ms;
    double ratio;                // prefix_median / cold
    int    verdict;              // 1 YES, 0 NO, -1 unknown (missing data)
    double restart_ratio;        // cold_after_restart / cold
    int    restart_verdict;      // persistent cache: 1 YES, 0 NO, -1 not measured
    int    n_calls;
    int    n_failed;
    int    tool_calls;
    int    tool_calls_clean;
    const char *first_tool_error;
};

#define AGENTIC_REUSE_RATIO 0.2

int  analyze_sweep(const struct bench_run *v, int n, const char *label, struct sweep_cell *out, int cap);
int  analyze_burst(const struct bench_run *v, int n, const char *label, struct burst_cell *out, int cap);
/* False when label has no agentic runs. */
bool analyze_agentic(const struct bench_run *v, int n, const char *label, struct agentic_result *out);
/* Distinct labels in order of first appearance (borrowed pointers); returns the count. */
int  analyze_labels(const struct bench_run *v, int n, const char **out, int cap);

#endif
