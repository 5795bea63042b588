/* job: one generation request of the server (n choices): submits them to the provider (gen.h),
 * reads their token streams and runs each through its own output pipeline (text/output.h).
 *
 * The API writers see a choice only through this header: its events (output_drain), its whole
 * output (output_blocks), its logprobs, and a job_choice_info summary (how it ended, counts,
 * times). When a choice's output matches a stop string, the job ends that request in the provider
 * (gen end_on_stop_string) and the choice ends as JOB_END_STOP_STRING. Owned and driven by one
 * HTTP thread; job_cancel may be called from another.
 *
 *     struct job *j = job_new(g, &cfg, n);  job_submit(j, &req, ...);
 *     while (!job_done(j)) { job_poll(j, 100); for each choice i: evs = job_drain(j, i, &n); ... }
 *     job_free(j);
 */
#ifndef CAIRN_SERVER_JOB_H
#define CAIRN_SERVER_JOB_H

#include <stdbool.h>

#include "server/gen.h"
#include "text/output.h"

/* Why a choice ended, in the order the APIs give precedence (a call made, then a stop string...). */
enum job_end {
    JOB_END_STOP = 0,         // EOS or stop id
    JOB_END_TOOL_CALLS,       // it made at least one tool call
    JOB_END_STOP_STRING,      // one of the request's stop strings matched
    JOB_END_LENGTH,           // max_tokens or the context
    JOB_END_ERROR,            // the provider failed (info.error)
    JOB_END_CANCELED,         // cut before its end (shutdown; a client that left sees nothing)
};

struct job_choice_info {
    bool         done;
    enum job_end end;                 // when done
    bool         failed;              // the provider failed (end is JOB_END_ERROR unless a call or stop came first)
    enum status  error;               // when failed
    const char  *stop_string;         // the stop string that matched (also with tool calls), or NULL; lives with the job
    int          n_prompt;
    int          n_cached;            // prompt tokens from the prefix cache
    int          n_generated;         // tokens counted up to a matched stop string
    int          n_reasoning_tokens;  // of them, inside a think block
    double       t_first_s;           // since job start; 0 before the first token
    double       t_last_s;
    double       t_queued_s;          // waiting in the engine's queue (submit -> admitted)
    double       t_start_s;           // clock_now_s() at job start: the prompt rendered and tokenized
};

struct job_lp {
    int32_t              id;
    float                logprob;
    int                  n_top;
    struct token_logprob top[20];
};

struct job_cfg {
    struct output_cfg output;        // per choice; detok and id_seed are filled in by the job
    bool              want_logprobs;
    bool              keep_tokens;   // job_tokens: the prompt and generated ids (Ollama's "context")
    void            (*on_token)(void *ctx, double itl_s, bool first, double ttft_s);   // metrics hook
    void             *on_token_ctx;
};

struct job;

struct job *job_new(struct gen *g, const struct job_cfg *cfg, int n_choices);
/* Submits every choice; prompts[i] (owned by the caller, copied) or the same prompt for all.
 * Choice i uses seed + i when a seed is given. On failure nothing stays submitted. */
enum status job_submit(struct job *j, const struct gen_req *req, int32_t *const *prompts, const int *n_prompts,
                       char *msg, size_t msg_len);
/* Waits up to timeout_ms for progress on any choice; processes what arrived. */
void job_poll(struct job *j, int timeout_ms);
bool job_done(const struct job *j);
void job_cancel(struct job *j);
void job_free(struct job *j);

int  job_n_choices(const struct job *j);
void job_choice_info(const struct job *j, int i, struct job_choice_info *out);
/* Choice i's events since its last drain (output_drain). */
const struct output_ev *job_drain(struct job *j, int i, int *n);
/* Choice i's whole output (output_blocks). */
const struct output_ev *job_blocks(const struct job *j, int i, int *n);
/* Choice i's logprobs, one per generated token: all of them, or those since the last drain. */
const struct job_lp *job_logprobs(const struct job *j, int i, int *n);
const struct job_lp *job_drain_logprobs(struct job *j, int i, int *n);

/* Choice i's prompt ids followed by its generated ids (the tokens counted), when cfg.keep_tokens. */
const int32_t *job_tokens(const struct job *j, int i, int *n);

/* Token counts of the whole job; n_per choices share one prompt (counted once). */
struct job_usage { int prompt, completion, cached, reasoning; };
void job_usage(const struct job *j, int n_per, struct job_usage *out);

#endif
