/* job: one generation request of the server (n choices), from token ids to API-neutral events.
 *
 * Per choice the pipeline is: engine stream -> streaming detokenizer -> stop strings (held back,
 * never emitted) -> reasoning split (<think>) -> tool-call parser (one on the answer channel and
 * one on the reasoning channel, sharing the call counter, so calls made inside a think block are
 * still calls) -> events. Events since the last drain are in evs (streaming writers turn them into
 * SSE chunks); the whole output accumulates in blocks (non-streaming writers). Owned and driven by
 * one HTTP thread; job_cancel may be called from another.
 *
 *     struct job *j = job_new(g, &cfg, n);  job_submit(j, &req);
 *     while (!job_done(j)) { job_poll(j, 100); for each choice: use evs; job_choice_drain(c); }
 *     job_free(j);
 */
#ifndef CAIRN_SERVER_JOB_H
#define CAIRN_SERVER_JOB_H

#include <stdbool.h>

#include "base/mem.h"
#include "base/rng.h"
#include "server/gen.h"
#include "server/reasoning.h"
#include "server/stopstr.h"
#include "server/toolparse.h"

enum job_ev_kind { JEV_REASONING = 0, JEV_CONTENT, JEV_TOOL_START, JEV_TOOL_ARGS, JEV_TOOL_END };

struct job_ev {
    enum job_ev_kind kind;
    int              tool_index;
    struct strbuf    text;          // REASONING, CONTENT, TOOL_ARGS
    char             name[256];     // TOOL_START
    char             id[48];        // TOOL_START
};

struct job_lp {
    int32_t              id;
    float                logprob;
    int                  n_top;
    struct token_logprob top[20];
};

struct job_choice {
    int                index;
    int                n_prompt;
    void              *stream;
    void              *detok;
    struct stopstr     ss;
    struct reasoning  *rs;
    struct toolparse  *tp_content, *tp_reason;
    int                n_calls;
    struct job_ev     *evs;         // since the last drain
    int                n_evs, cap_evs;
    struct job_ev     *blocks;      // whole output, same-kind text merged, one per tool call
    int                n_blocks, cap_blocks;
    struct job_lp     *lps;         // per generated token, when logprobs were asked
    int                n_lps, cap_lps, lps_drained;
    bool               done;
    bool               stop_hit;
    enum finish_reason finish;
    enum status        error;
    int                n_generated;
    int                n_cached;
    int                n_reason_tokens;
    double             t_first_s;   // since job start, 0 before the first token
    double             t_last_s;
    void              *pctx;        // parser callback contexts (owned)
};

struct job_cfg {
    enum tool_family  tool_family;   // NONE: no tool parsing (no tools, or tool_choice none)
    const json_t     *tools;         // borrowed
    bool              reasoning;     // split <think> blocks
    bool              start_in_think;
    const char *const*stops;
    int               n_stops;
    const char       *tool_id_prefix;   // "call_" or "toolu_"
    bool              want_logprobs;
    void            (*on_token)(void *ctx, double itl_s, bool first, double ttft_s);   // metrics hook
    void             *on_token_ctx;
};

struct job {
    struct gen        *g;
    struct job_cfg     cfg;
    int                n_choices;
    struct job_choice *ch;
    double             t_start_s;
    struct rng         rng;          // tool-call ids
    bool               submitted;
};

struct job *job_new(struct gen *g, const struct job_cfg *cfg, int n_choices);
/* Submits every choice; prompts[i] (owned by the caller, copied) or the same prompt for all.
 * Choice i uses seed + i when a seed is given. On failure nothing stays submitted. */
enum status job_submit(struct job *j, const struct gen_req *req, int32_t *const *prompts, const int *n_prompts,
                       char *msg, size_t msg_len);
/* Waits up to timeout_ms for progress on any choice; processes what arrived. */
void job_poll(struct job *j, int timeout_ms);
bool job_done(const struct job *j);
void job_cancel(struct job *j);
void job_choice_drain(struct job_choice *c);
void job_free(struct job *j);

#endif
