/* job: the per-request generation pipeline; see job.h. */
#include "server/job.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"

/* ==== Events ==== */

static struct job_ev *ev_push(struct job_ev **arr, int *n, int *cap)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *arr = xrealloc(*arr, (size_t)*cap * sizeof **arr);
        memset(*arr + *n, 0, (size_t)(*cap - *n) * sizeof **arr);
    }
    struct job_ev *e = &(*arr)[(*n)++];
    strbuf_clear(&e->text);
    e->name[0] = e->id[0] = 0;
    return e;
}

static void add_event(struct job_choice *c, enum job_ev_kind kind, int idx, const char *text, size_t len,
                      const char *name, const char *id)
{
    // pending events: merge text of the same kind
    struct job_ev *last = c->n_evs ? &c->evs[c->n_evs - 1] : NULL;
    bool is_text = kind == JEV_REASONING || kind == JEV_CONTENT || kind == JEV_TOOL_ARGS;
    if (last && is_text && last->kind == kind && last->tool_index == idx) strbuf_append(&last->text, text, len);
    else {
        struct job_ev *e = ev_push(&c->evs, &c->n_evs, &c->cap_evs);
        e->kind = kind;
        e->tool_index = idx;
        if (is_text) strbuf_append(&e->text, text, len);
        if (name) snprintf(e->name, sizeof e->name, "%s", name);
        if (id) snprintf(e->id, sizeof e->id, "%s", id);
    }
    // whole output: text blocks merge, a tool call is one block that collects its arguments
    if (kind == JEV_TOOL_END) return;
    if (kind == JEV_TOOL_ARGS) {
        for (int i = c->n_blocks - 1; i >= 0; i--)
            if (c->blocks[i].kind == JEV_TOOL_START && c->blocks[i].tool_index == idx) {
                strbuf_append(&c->blocks[i].text, text, len);
                return;
            }
        return;
    }
    struct job_ev *b = c->n_blocks ? &c->blocks[c->n_blocks - 1] : NULL;
    if (b && kind != JEV_TOOL_START && b->kind == kind) { strbuf_append(&b->text, text, len); return; }
    b = ev_push(&c->blocks, &c->n_blocks, &c->cap_blocks);
    b->kind = kind;
    b->tool_index = idx;
    if (kind != JEV_TOOL_START) strbuf_append(&b->text, text, len);
    if (name) snprintf(b->name, sizeof b->name, "%s", name);
    if (id) snprintf(b->id, sizeof b->id, "%s", id);
}

struct tp_ctx { struct job *j; struct job_choice *c; bool reasoning; };

static void on_tool(void *ctx, const struct tp_event *ev)
{
    struct tp_ctx *t = ctx;
    switch (ev->kind) {
    case TP_TEXT:
        add_event(t->c, t->reasoning ? JEV_REASONING : JEV_CONTENT, 0, ev->text, ev->len, NULL, NULL);
        break;
    case TP_CALL_START: {
        static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        char id[48];
        int k = snprintf(id, sizeof id, "%s", t->j->cfg.tool_id_prefix ? t->j->cfg.tool_id_prefix : "call_");
        for (int i = 0; i < 24 && k < (int)sizeof id - 1; i++) id[k++] = alnum[rng_next(&t->j->rng) % 62];
        id[k] = 0;
        add_event(t->c, JEV_TOOL_START, ev->index, NULL, 0, ev->name, id);
        break;
    }
    case TP_CALL_ARGS: add_event(t->c, JEV_TOOL_ARGS, ev->index, ev->text, ev->len, NULL, NULL); break;
    case TP_CALL_END:  add_event(t->c, JEV_TOOL_END, ev->index, NULL, 0, NULL, NULL); break;
    }
}

struct choice_ctx { struct tp_ctx content, reason; };

static void on_reasoning(void *ctx, bool is_reasoning, const char *text, size_t len)
{
    struct choice_ctx *cc = ctx;
    struct tp_ctx *t = is_reasoning ? &cc->reason : &cc->content;
    struct toolparse *tp = is_reasoning ? t->c->tp_reason : t->c->tp_content;
    if (tp) toolparse_feed(tp, text, len);
    else add_event(t->c, is_reasoning ? JEV_REASONING : JEV_CONTENT, 0, text, len, NULL, NULL);
}

/* ==== Job ==== */

struct job *job_new(struct gen *g, const struct job_cfg *cfg, int n_choices)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->g = g;
    j->cfg = *cfg;
    j->n_choices = n_choices;
    j->ch = xcalloc((size_t)n_choices, sizeof *j->ch);
    j->t_start_s = clock_now_s();
    rng_seed(&j->rng, (uint64_t)clock_now_ns() ^ (uint64_t)(uintptr_t)j);
    for (int i = 0; i < n_choices; i++) {
        struct job_choice *c = &j->ch[i];
        c->index = i;
        stopstr_init(&c->ss, cfg->stops, cfg->n_stops);
        struct choice_ctx *cc = xcalloc(1, sizeof *cc);
        cc->content = (struct tp_ctx){ j, c, false };
        cc->reason = (struct tp_ctx){ j, c, true };
        c->pctx = cc;
        if (cfg->tool_family != TOOL_FAMILY_NONE) {
            c->tp_content = toolparse_new(cfg->tool_family, cfg->tools, &c->n_calls, on_tool, &cc->content);
            c->tp_reason = toolparse_new(cfg->tool_family, cfg->tools, &c->n_calls, on_tool, &cc->reason);
        }
        c->rs = reasoning_new("<think>", "</think>", cfg->reasoning && cfg->start_in_think, on_reasoning, cc);
        c->detok = g->ops->detok_new(g->self);
    }
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
    j->submitted = true;
    return STATUS_OK;
}

static void feed_text(struct job *j, struct job_choice *c, const char *t, size_t len)
{
    if (c->stop_hit || !len) return;
    struct strbuf out = {0};
    stopstr_feed(&c->ss, t, len, &out);
    if (out.len) {
        if (j->cfg.reasoning) reasoning_feed(c->rs, out.data, out.len);
        else on_reasoning(c->pctx, false, out.data, out.len);
    }
    strbuf_free(&out);
    if (c->ss.hit) {
        c->stop_hit = true;
        j->g->ops->finish(j->g->self, c->stream);
    }
}

static void finish_choice(struct job *j, struct job_choice *c, const struct token_event *ev)
{
    char *tail = j->g->ops->detok_flush(c->detok);
    feed_text(j, c, tail, strlen(tail));
    free(tail);
    if (!c->stop_hit) {
        struct strbuf out = {0};
        stopstr_flush(&c->ss, &out);
        if (out.len) {
            if (j->cfg.reasoning) reasoning_feed(c->rs, out.data, out.len);
            else on_reasoning(c->pctx, false, out.data, out.len);
        }
        strbuf_free(&out);
    }
    reasoning_finish(c->rs);
    if (c->tp_reason) toolparse_finish(c->tp_reason);
    if (c->tp_content) toolparse_finish(c->tp_content);
    c->done = true;
    c->finish = c->stop_hit ? FINISH_STOP : ev->finish;
    c->error = ev->error;
    c->n_cached = ev->n_cached;
}

static void on_event(struct job *j, struct job_choice *c, const struct token_event *ev)
{
    if (ev->has_token && !c->stop_hit) {
        double now = clock_now_s() - j->t_start_s;
        bool first = c->n_generated == 0;
        if (j->cfg.on_token) j->cfg.on_token(j->cfg.on_token_ctx, first ? 0 : now - c->t_last_s, first, now);
        if (first) c->t_first_s = now;
        c->t_last_s = now;
        c->n_generated++;
        if (j->cfg.reasoning && reasoning_inside(c->rs)) c->n_reason_tokens++;
        if (j->cfg.want_logprobs) {
            if (c->n_lps == c->cap_lps) {
                c->cap_lps = c->cap_lps ? c->cap_lps * 2 : 64;
                c->lps = xrealloc(c->lps, (size_t)c->cap_lps * sizeof *c->lps);
            }
            struct job_lp *lp = &c->lps[c->n_lps++];
            lp->id = ev->token;
            lp->logprob = ev->logprob;
            lp->n_top = ev->n_top;
            memcpy(lp->top, ev->top, (size_t)(ev->n_top > 20 ? 20 : ev->n_top) * sizeof ev->top[0]);
            if (lp->n_top > 20) lp->n_top = 20;
        }
        char *t = j->g->ops->detok_push(c->detok, ev->token);
        feed_text(j, c, t, strlen(t));
        free(t);
    }
    if (ev->done) finish_choice(j, c, ev);
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
                finish_choice(j, c, &err);
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

void job_choice_drain(struct job_choice *c)
{
    c->n_evs = 0;
    c->lps_drained = c->n_lps;
}

static void free_evs(struct job_ev *e, int cap)
{
    for (int i = 0; i < cap; i++) strbuf_free(&e[i].text);
    free(e);
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
        j->g->ops->detok_free(c->detok);
        stopstr_deinit(&c->ss);
        reasoning_free(c->rs);
        toolparse_free(c->tp_content);
        toolparse_free(c->tp_reason);
        free_evs(c->evs, c->cap_evs);
        free_evs(c->blocks, c->cap_blocks);
        free(c->lps);
        free(c->pctx);
    }
    free(j->ch);
    free(j);
}
