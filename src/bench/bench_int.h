/* bench_int: what the workload files (sweep.c, agentic.c, burst.c) share with bench.c: the
 * context of one benchmark session and the helpers that build, send and record requests.
 * Internal to src/bench; main thread only, except bench_measure(), which burst threads call.
 *
 *     char *body = bench_body(ctx, NULL, prompt, NULL, 0);
 *     struct bench_run r;  bench_measure(ctx, body, prompt, t0_ns, &r, NULL);
 *     strcpy(r.mode, "sweep");  bench_record(ctx, &r);  free(body);
 */
#ifndef CAIRN_BENCH_INT_H
#define CAIRN_BENCH_INT_H

#include <jansson.h>
#include <stdio.h>

#include "base/rng.h"
#include "bench/bench.h"
#include "bench/client.h"
#include "bench/run.h"

struct bench_ctx {
    const struct bench_cfg *cfg;
    struct bench_http       http;
    char                   *model;        // resolved model id
    FILE                   *jsonl;        // NULL when no --json-out
    struct bench_runs       runs;         // every recorded run, in order
    struct rng              rng;
    int64_t                 t0_ns;        // session start
    int                     n_planned;    // progress bar denominator
    int                     n_done;
    int                     n_failed;
    int                     n_skipped;    // not run: time budget exhausted
    bool                    cache_clear_dead;   // every clear endpoint said 404: stop trying
    bool                    progress_drawn;
    char                    notes[6][200];      // lines for the summary ("prompt tokens counted...")
    int                     n_notes;
    double                  filler_scale;       // server tokens per estimated filler token (1: unknown)
    bool                    filler_calibrated;
    int                     filler_calib_est;   // estimated tokens of the prompt it was learned from
};

/* A streaming chat request body; system and tools may be NULL; max_tokens 0 means the
 * configured one. Heap string. */
char *bench_body(struct bench_ctx *c, const char *system, const char *user, const json_t *tools, int max_tokens);
/* A filler prompt of about size tokens: exact with --tokenizer, else the estimate corrected by
 * filler_scale, which the first successful run with usage teaches (bench_learn_scale). */
void  bench_filler(struct bench_ctx *c, int size, const char *nonce, struct strbuf *out);
/* Learns filler_scale from a successful run of a filler prompt whose usage came from the server. */
void  bench_learn_scale(struct bench_ctx *c, const char *prompt, const struct bench_run *r);
/* One unrecorded probe request (max_tokens 1) of about size tokens, to learn filler_scale before
 * the measured runs; nothing to do with --tokenizer or once calibrated. */
void  bench_calibrate(struct bench_ctx *c, int size);
/* Sends body and fills *r (initialized here) with timings, token counts and any error.
 * prompt_text is what a local tokenizer counts when usage is missing. mode_t0_ns anchors
 * start_ms/first_ms/end_ms. When res is non-NULL the raw result is handed over (caller frees). */
void  bench_measure(struct bench_ctx *c, const char *body, const char *prompt_text, int64_t mode_t0_ns,
                    struct bench_run *r, struct chat_result *res);
/* Stamps url/model/label, writes the JSONL line, keeps the run, advances the progress bar. */
void  bench_record(struct bench_ctx *c, struct bench_run *r);
/* False once the session's time budget is spent; counts n skipped runs when so. */
bool  bench_time_left(struct bench_ctx *c, int n_would_run);
/* POSTs the known cache-reset endpoints; a 404 is fine and stops further tries. */
void  bench_clear_cache(struct bench_ctx *c);
void  bench_note(struct bench_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void  bench_progress(struct bench_ctx *c);

enum status bench_sweep(struct bench_ctx *c);
enum status bench_agentic(struct bench_ctx *c);
enum status bench_burst(struct bench_ctx *c);

/* Summary table on stdout and, with --summary-out, as JSON (bench/summary.c). */
void        bench_summary_print(const struct bench_ctx *c, FILE *f);
enum status bench_summary_write_json(const struct bench_ctx *c, const char *path);

#endif
