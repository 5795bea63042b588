/* job: the per-request generation driver; see job.h. */
#include "server/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rng.h"

struct job_choice {
    int                n_prompt;
    void              *stream;
    struct output     *out;
    struct job_lp     *lps;         // per generated token, when logprobs were asked
    int                n_lps, cap_lps, lps_drained;
    int32_t           *toks;        // prompt + generated ids, when keep_tokens
    int                n_toks, cap_toks;
    bool               done;
    enum finish_reason finish;
    enum status        error;
    int                n_generated;
    int                n_cached;
    int                n_reason_tokens;
    double             t_first_s;   // since job start, 0 before the first token
    double             t_last_s;
    double             t_queued_s;  // the engine's submit -> admitted, once admitted
};

struct job {
    struct gen        *g;
    struct job_cfg     cfg;
    int                n_choices;
    struct job_choice *ch;
    double             t_start_s;
};

/* The provider's streaming detokenizer, as the output pipeline takes it. */
struct gen_detok { struct gen *g; void *d; };

static char *gd_push(void *self, int32_t id)
{
    struct gen_detok *gd = self;
    return gd->g->ops->detok_push(gd->d, id);
}

static char *gd_flush(void *self)
{
    struct gen_detok *gd = self;
    return gd->g->ops->detok_flush(gd->d);
}

static void gd_free(void *self)
{
    struct gen_detok *gd = self;
    gd->g->ops->detok_free(gd->d);
    free(gd);
}

struct job *job_new(struct gen *g, const struct job_cfg *cfg, int n_choices)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->g = g;
    j->cfg = *cfg;
    j->n_choices = n_choices;
    j->ch = xcalloc((size_t)n_choices, sizeof *j->ch);
    j->t_start_s = clock_now_s();
    struct rng rng;   // tool-call ids: unique enough across requests and choices
    rng_seed(&rng, (uint64_t)clock_now_ns() ^ (uint64_t)(uintptr_t)j);
    for (int i = 0; i < n_choices; i++) {
        struct gen_detok *gd = xcalloc(1, sizeof *gd);
        gd->g = g;
        gd->d = g->ops->detok_new(g->self);
        struct output_cfg oc = cfg->output;
        oc.detok = (struct output_detok){ gd, gd_push, gd_flush, gd_free };
        oc.id_seed = rng_next(&rng);
        j->ch[i].out = output_new(&oc);
    }
    j->cfg.output.stops = NULL;   // the caller's; the outputs keep copies
    j->cfg.output.tools = NULL;
    return j;
}

enum status job_submit(struct job *j, const struct gen_req *req, int32_t *const *prompts, const int *n_prompts,
                       char *msg, size_t msg_len)
{
    for (int i = 0; i < j->n_choices; i++) {
        struct job_choice *c = &j->ch[i];
        struct gen_req r = *req;
        if (prompts) { r.base.prompt = prompts[i]; r.base.n_prompt = n_prompts[i]; }
        if (r.base.sampling.has_seed) r.base.sampling.seed += (uint64_t)i;
        c->n_prompt = r.base.n_prompt;
        if (j->cfg.keep_tokens) {
            c->cap_toks = r.base.n_prompt + 64;
            c->toks = xmalloc((size_t)c->cap_toks * sizeof *c->toks);
            memcpy(c->toks, r.base.prompt, (size_t)r.base.n_prompt * sizeof *c->toks);
            c->n_toks = r.base.n_prompt;
        }
        enum status st = j->g->ops->submit(j->g->self, &r, &c->stream, msg, msg_len);
        if (st != STATUS_OK) {
            for (int k = 0; k < i; k++) {
                j->g->ops->cancel(j->g->self, j->ch[k].stream);
                j->g->ops->release(j->ch[k].stream);
                j->ch[k].stream = NULL;
                j->ch[k].done = true;
            }
            c->stream = NULL;
            return st;
        }
    }
    return STATUS_OK;
}

static void end_choice(struct job_choice *c, const struct token_event *ev)
{
    output_finish(c->out);
    c->done = true;
    c->finish = output_stop_string(c->out) ? FINISH_STOP_MATCHED : ev->finish;
    c->error = ev->error;
    c->n_cached = ev->n_cached;
}

static void keep_logprobs(struct job_choice *c, const struct token_event *ev)
{
    if (c->n_lps == c->cap_lps) {
        c->cap_lps = c->cap_lps ? c->cap_lps * 2 : 64;
        c->lps = xrealloc(c->lps, (size_t)c->cap_lps * sizeof *c->lps);
    }
    struct job_lp *lp = &c->lps[c->n_lps++];
    lp->id = ev->token;
    lp->logprob = ev->logprob;
    lp->n_top = ev->n_top > 20 ? 20 : ev->n_top;
    memcpy(lp->top, ev->top, (size_t)lp->n_top * sizeof ev->top[0]);
}

static void on_event(struct job *j, struct job_choice *c, const struct token_event *ev)
{
    c->n_cached = ev->n_cached;   // kept current by the engine: known from the first token on
    c->t_queued_s = ev->t_queued_s;
    if (ev->has_token && !output_stop_string(c->out)) {
        double now = clock_now_s() - j->t_start_s;
        bool first = c->n_generated == 0;
        if (j->cfg.on_token) j->cfg.on_token(j->cfg.on_token_ctx, first ? 0 : now - c->t_last_s, first, now);
        if (first) c->t_first_s = now;
        c->t_last_s = now;
        c->n_generated++;
        if (output_in_reasoning(c->out)) c->n_reason_tokens++;
        if (j->cfg.want_logprobs) keep_logprobs(c, ev);
        if (c->toks) {
            if (c->n_toks == c->cap_toks) c->toks = xrealloc(c->toks, (size_t)(c->cap_toks *= 2) * sizeof *c->toks);
            c->toks[c->n_toks++] = ev->token;
        }
        if (output_push_token(c->out, ev->token)) j->g->ops->end_on_stop_string(j->g->self, c->stream);
    }
    if (ev->done) end_choice(c, ev);
}

void job_poll(struct job *j, int timeout_ms)
{
    int n_open = 0;
    for (int i = 0; i < j->n_choices; i++) n_open += !j->ch[i].done;
    if (!n_open) return;
    int per = timeout_ms / n_open;
    if (per < 1) per = timeout_ms > 0 ? 1 : 0;
    for (int i = 0; i < j->n_choices; i++) {
        struct job_choice *c = &j->ch[i];
        if (c->done) continue;
        // drain what is ready without waiting, then wait once
        for (int k = 0; k < 64 && !c->done; k++) {
            struct token_event ev;
            enum status st = j->g->ops->next(c->stream, &ev, k == 0 ? per : 0);
            if (st == STATUS_EBUSY) break;
            if (st != STATUS_OK) {
                struct token_event err = { .done = true, .finish = FINISH_ERROR, .error = st };
                end_choice(c, &err);
                break;
            }
            on_event(j, c, &ev);
        }
    }
}

bool job_done(const struct job *j)
{
    for (int i = 0; i < j->n_choices; i++)
        if (!j->ch[i].done) return false;
    return true;
}

void job_cancel(struct job *j)
{
    for (int i = 0; i < j->n_choices; i++)
        if (j->ch[i].stream && !j->ch[i].done) j->g->ops->cancel(j->g->self, j->ch[i].stream);
}

void job_free(struct job *j)
{
    if (!j) return;
    for (int i = 0; i < j->n_choices; i++) {
        struct job_choice *c = &j->ch[i];
        if (c->stream) {
            if (!c->done) j->g->ops->cancel(j->g->self, c->stream);
            j->g->ops->release(c->stream);
        }
        output_free(c->out);
        free(c->lps);
        free(c->toks);
    }
    free(j->ch);
    free(j);
}

/* ==== What the writers read ==== */

int job_n_choices(const struct job *j) { return j->n_choices; }

static struct job_choice *choice(const struct job *j, int i)
{
    CHECK(i >= 0 && i < j->n_choices, "choice %d of %d", i, j->n_choices);
    return &j->ch[i];
}

void job_choice_info(const struct job *j, int i, struct job_choice_info *out)
{
    const struct job_choice *c = choice(j, i);
    memset(out, 0, sizeof *out);
    out->done = c->done;
    out->stop_string = output_stop_string(c->out);
    if (output_n_tool_calls(c->out) > 0) out->end = JOB_END_TOOL_CALLS;
    else if (out->stop_string) out->end = JOB_END_STOP_STRING;
    else if (c->finish == FINISH_LENGTH) out->end = JOB_END_LENGTH;
    else if (c->finish == FINISH_ERROR) out->end = JOB_END_ERROR;
    else if (c->finish == FINISH_CANCELED) out->end = JOB_END_CANCELED;
    else out->end = JOB_END_STOP;
    out->failed = c->finish == FINISH_ERROR;
    out->error = c->error;
    out->n_prompt = c->n_prompt;
    out->n_cached = c->n_cached;
    out->n_generated = c->n_generated;
    out->n_reasoning_tokens = c->n_reason_tokens;
    out->t_first_s = c->t_first_s;
    out->t_last_s = c->t_last_s;
    out->t_queued_s = c->t_queued_s;
    out->t_start_s = j->t_start_s;
}

const struct output_ev *job_drain(struct job *j, int i, int *n) { return output_drain(choice(j, i)->out, n); }

const struct output_ev *job_blocks(const struct job *j, int i, int *n) { return output_blocks(choice(j, i)->out, n); }

const struct job_lp *job_logprobs(const struct job *j, int i, int *n)
{
    const struct job_choice *c = choice(j, i);
    *n = c->n_lps;
    return c->lps;
}

const struct job_lp *job_drain_logprobs(struct job *j, int i, int *n)
{
    struct job_choice *c = choice(j, i);
    *n = c->n_lps - c->lps_drained;
    const struct job_lp *from = c->lps ? c->lps + c->lps_drained : NULL;
    c->lps_drained = c->n_lps;
    return from;
}

const int32_t *job_tokens(const struct job *j, int i, int *n)
{
    const struct job_choice *c = choice(j, i);
    *n = c->n_toks;
    return c->toks;
}

void job_usage(const struct job *j, int n_per, struct job_usage *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < j->n_choices; i++) {
        const struct job_choice *c = &j->ch[i];
        out->completion += c->n_generated;
        out->reasoning += c->n_reason_tokens;
        if (i % n_per == 0) {
            out->prompt += c->n_prompt;
            out->cached += c->n_cached;
        }
    }
}
