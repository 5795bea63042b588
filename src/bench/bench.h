/* bench: `cairn bench`, a careful benchmark client for any OpenAI-compatible server.
 *
 * Three workloads over streaming /v1/chat/completions: sweep (prompt sizes x runs, decode and
 * prefill rates, prefix caches defeated by a leading nonce), agentic (one fixed ~7 KB system
 * prompt with tools and changing user messages: does the server reuse the prefix across users?
 * are the tool calls schema-clean?) and burst (N concurrent requests: latency spread,
 * throughput, serialization). Every request becomes a struct bench_run (bench/run.h), written
 * as a JSONL line at once and summarized on stdout at the end (bench/summary.c).
 * `cairn bench report` (bench/report.c) turns JSONL files into an HTML comparison.
 *
 * Called by app/cmd_bench.c on the main thread; burst mode starts one thread per request.
 *
 *     struct bench_cfg cfg;  bench_cfg_defaults(&cfg);  cfg.url = "http://127.0.0.1:8080";
 *     int failed = bench_main(&cfg);   // < 0: could not start; else the number of failed runs
 */
#ifndef CAIRN_BENCH_BENCH_H
#define CAIRN_BENCH_BENCH_H

#include <stdbool.h>
#include <stdint.h>

enum bench_mode { BENCH_MODE_SWEEP = 0, BENCH_MODE_AGENTIC, BENCH_MODE_BURST };

#define BENCH_SIZES_MAX 32
#define BENCH_BURSTS_MAX 32

struct bench_cfg {
    const char     *url;            // server base URL; the only host we talk to
    const char     *model;          // NULL: first id of GET /v1/models
    const char     *api_key;        // NULL: none
    const char     *label;          // engine label in JSONL and reports (default: the URL)
    enum bench_mode mode;
    int             sizes[BENCH_SIZES_MAX];   // sweep prompt sizes, tokens
    int             n_sizes;
    int             runs;           // measured runs per sweep size
    bool            warmup;         // one discarded full-size request before sweep runs
    int             max_tokens;
    double          temperature;    // every request's sampling temperature (0: greedy)
    bool            thinking;       // chat_template_kwargs.enable_thinking
    bool            clear_cache;    // best-effort cache-clear endpoints before each sweep run
    int             bursts[BENCH_BURSTS_MAX]; // burst sizes N
    int             n_bursts;
    int             burst_prompt_tokens;
    double          burst_window_ms; // the N requests start within this window
    int             agentic_prefix_runs;     // prefix-test calls (3)
    int             agentic_system_bytes;    // cut the ~7 KB system prompt to this (0: whole); for
                                             // models whose context cannot hold it
    const char     *restart_cmd;    // agentic: run between phases to test a persistent cache
    double          restart_wait_s; // how long to wait for the server to answer after restart
    double          timeout_s;      // per request, whole transfer
    double          stall_s;        // per request, longest silence
    double          max_time_s;     // whole benchmark; runs past it are skipped and reported
    const char     *json_out;       // JSONL path, NULL for none
    const char     *summary_out;    // summary JSON path, NULL for none
    bool            progress;       // progress bar on stderr
    uint64_t        seed;           // nonces and filler words; 0: from the clock
    // A real token counter (--tokenizer); NULL when none: counts prompt tokens when the server's
    // usage is missing, and calibrates the filler size. Returns < 0 on failure.
    int           (*count_tokens)(void *ctx, const char *text);
    void           *count_ctx;
};

void bench_cfg_defaults(struct bench_cfg *cfg);
/* Runs the configured mode. Returns -1 when it could not start (bad output path, no model),
 * else the number of runs that failed or were skipped (0: all good). */
int  bench_main(const struct bench_cfg *cfg);

#endif
