/* run: one measured request of a benchmark (struct bench_run), how it is derived from a
 * client result, and its JSONL form, written by `cairn bench --json-out` and read back by
 * `cairn bench report`. One JSON object per line; metrics a run could not measure are null.
 *
 * Fields (JSONL keys are the field names): url, model, label, mode (sweep|agentic|burst),
 * phase (agentic: cold|warm|prefix|cold_after_restart; sweep: run|warmup; burst: burst),
 * size (target prompt tokens), burst_n, run, nonce, ttft_ms, total_ms, decode_ms, prefill_tps,
 * decode_tps, prompt_tokens, prompt_tokens_src (usage|tokenizer|none), completion_tokens,
 * reasoning_tokens, cached_tokens (usage.prompt_tokens_details), content_tokens, tool_calls, tool_calls_clean, tool_error, start_ms,
 * first_ms, end_ms (relative to the start of the mode; burst overlap analysis), http_status,
 * finish_reason, thinking, max_tokens, temperature, error (null when the run succeeded).
 *
 *     struct bench_run r;  bench_run_init(&r);  ...fill...
 *     bench_run_write_jsonl(&r, f);  bench_run_deinit(&r);
 *     struct bench_runs all = {0};  bench_runs_read_jsonl("a.jsonl", &all);
 */
#ifndef CAIRN_BENCH_RUN_H
#define CAIRN_BENCH_RUN_H

#include <stdbool.h>
#include <stdio.h>

#include "base/status.h"

struct bench_run {
    char  *url;               // owned strings (xstrdup) for every char * field
    char  *model;
    char  *label;             // engine label (--label), used to group engines in reports
    char   mode[16];
    char   phase[24];
    int    size;              // target prompt tokens (sweep/burst); 0 for agentic
    int    burst_n;           // burst: requests in this burst; 0 otherwise
    int    run;               // index within its cell
    char   nonce[24];
    double ttft_ms;           // NaN when unmeasured
    double total_ms;
    double decode_ms;         // first to last token
    double prefill_tps;       // prompt_tokens / TTFT
    double decode_tps;        // (completion_tokens - 1) / decode_ms
    int    prompt_tokens;     // -1 when unknown
    char   prompt_tokens_src[12];
    int    completion_tokens;
    int    reasoning_tokens;
    int    cached_tokens;     // prompt tokens the server reused (usage.prompt_tokens_details); -1 when unknown
    int    content_tokens;
    int    tool_calls;
    int    tool_calls_clean;
    char  *tool_error;        // first schema violation, NULL when none
    double start_ms;          // relative to the start of the mode
    double first_ms;
    double end_ms;
    int    http_status;
    char   finish_reason[32];
    bool   thinking;
    int    max_tokens;
    double temperature;
    char  *error;             // NULL when the run succeeded
};

struct bench_runs {
    struct bench_run *v;
    int               n;
    int               cap;
};

void        bench_run_init(struct bench_run *r);     // numbers NaN / -1, strings NULL
void        bench_run_deinit(struct bench_run *r);
void        bench_run_set_error(struct bench_run *r, const char *reason);   // keeps the first
/* Appends one line to f; returns STATUS_EIO when the write fails. */
enum status bench_run_write_jsonl(const struct bench_run *r, FILE *f);
/* Parses one JSONL line. STATUS_EFORMAT (logged by the caller with the line number) if bad. */
enum status bench_run_from_json(const char *line, struct bench_run *out);

void        bench_runs_push(struct bench_runs *rs, struct bench_run *r);   // takes r's strings
/* Appends every run of a JSONL file. Logs and returns EIO/EFORMAT on a bad file. */
enum status bench_runs_read_jsonl(const char *path, struct bench_runs *rs);
void        bench_runs_free(struct bench_runs *rs);

#endif
