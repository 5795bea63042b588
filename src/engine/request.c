/* request: validation of a gen_request and the engine-side copy of it (see engine_int.h).
 *
 * Runs on the submitting thread: everything a request will need while it runs (its token array
 * for prompt + max_tokens, block table, sampler, output stream) is allocated here, so the engine
 * thread never allocates for it. Errors are returned with a message for the caller and not
 * logged (a bad request is the client's problem, not the server's).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine_int.h"
#include "text/constraint.h"

static enum status fail(char *msg, size_t msg_len, enum status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum status fail(char *msg, size_t msg_len, enum status st, const char *fmt, ...)
{
    if (msg && msg_len > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, msg_len, fmt, ap);
        va_end(ap);
    }
    return st;
}

static int32_t *dup_ids(const int32_t *src, int n)
{
    if (n <= 0 || !src) return NULL;
    int32_t *d = xmalloc((size_t)n * sizeof *d);
    memcpy(d, src, (size_t)n * sizeof *d);
    return d;
}

/* An embedding request: the whole input is computed once, so it may fill the context. */
static enum status validate_embed(const struct engine *e, const struct gen_request *g, char *msg, size_t msg_len)
{
    if (g->n_prompt < 1 || !g->prompt) return fail(msg, msg_len, STATUS_EINVAL, "the input is empty");
    for (int i = 0; i < g->n_prompt; i++)
        if (g->prompt[i] < 0 || g->prompt[i] >= e->n_vocab)
            return fail(msg, msg_len, STATUS_EINVAL, "input token %d at position %d is outside the vocabulary (%d)",
                        g->prompt[i], i, e->n_vocab);
    if (g->n_prompt > e->max_ctx)
        return fail(msg, msg_len, STATUS_ETOOLONG, "the input has %d tokens, more than the context of %d tokens",
                    g->n_prompt, e->max_ctx);
    return STATUS_OK;
}

static enum status validate(const struct engine *e, const struct gen_request *g, char *msg, size_t msg_len)
{
    const struct sampling *s = &g->sampling;
    if (g->embed) return validate_embed(e, g, msg, msg_len);
    if (!model_has_lm_head(e->m))
        return fail(msg, msg_len, STATUS_EUNSUPPORTED,
                    "the model has no lm_head (a base model saved without it): it computes embeddings only");
    if (g->n_prompt < 1 || !g->prompt) return fail(msg, msg_len, STATUS_EINVAL, "the prompt is empty");
    if (g->max_tokens < 1) return fail(msg, msg_len, STATUS_EINVAL, "max_tokens must be at least 1 (got %d)", g->max_tokens);
    for (int i = 0; i < g->n_prompt; i++)
        if (g->prompt[i] < 0 || g->prompt[i] >= e->n_vocab)
            return fail(msg, msg_len, STATUS_EINVAL, "prompt token %d at position %d is outside the vocabulary (%d)",
                        g->prompt[i], i, e->n_vocab);
    if (g->n_prompt + 1 > e->m->hp.max_pos)
        return fail(msg, msg_len, STATUS_ETOOLONG,
                    "the prompt has %d tokens; with at least 1 generated token it exceeds the model's context of %d tokens",
                    g->n_prompt, e->m->hp.max_pos);
    int need = (g->n_prompt + 1 + e->bs - 1) / e->bs;
    if (need > e->pool->n_blocks)
        return fail(msg, msg_len, STATUS_ETOOLONG,
                    "the prompt has %d tokens; with at least 1 generated token it needs %d KV blocks but the whole "
                    "cache holds %d blocks (%d tokens)", g->n_prompt, need, e->pool->n_blocks, e->pool->n_blocks * e->bs);
    if (!(s->temperature >= 0.0f) || s->top_k < 0 || !(s->top_p >= 0.0f && s->top_p <= 1.0f) ||
        !(s->min_p >= 0.0f && s->min_p <= 1.0f) || !(s->repetition_penalty >= 0.0f) || s->n_bias < 0)
        return fail(msg, msg_len, STATUS_EINVAL, "invalid sampling parameters");
    if (g->min_tokens < 0)
        return fail(msg, msg_len, STATUS_EINVAL, "min_tokens must not be negative (got %d)", g->min_tokens);
    if (g->n_logprobs < -1 || g->n_logprobs > SAMPLER_MAX_TOP)
        return fail(msg, msg_len, STATUS_EINVAL, "logprobs must be between 0 and %d (got %d)", SAMPLER_MAX_TOP, g->n_logprobs);
    if (g->n_stop_ids < 0 || g->n_msg_ends < 0)
        return fail(msg, msg_len, STATUS_EINVAL, "negative list length");
    if (g->constraint && !g->constraint_vocab)
        return fail(msg, msg_len, STATUS_EINVAL, "a constraint needs the vocabulary it was built for");
    if (g->constraint && g->constraint_after >= e->n_vocab)
        return fail(msg, msg_len, STATUS_EINVAL, "constraint_after %d is outside the vocabulary", g->constraint_after);
    if (g->constraint) {
        // the shortest output, its stop id, and the start token of a deferred constraint
        int min_out = constraint_min_tokens_to_finish(g->constraint) + 1 + (g->constraint_after > 0 ? 1 : 0);
        if (min_out > g->max_tokens)
            return fail(msg, msg_len, STATUS_EINVAL,
                        "the shortest output that satisfies the constraint needs %d tokens, more than max_tokens (%d)",
                        min_out, g->max_tokens);
    }
    return STATUS_OK;
}

enum status request_new(struct engine *e, const struct gen_request *g, struct request **out, char *msg, size_t msg_len)
{
    enum status st = validate(e, g, msg, msg_len);
    if (st != STATUS_OK) return st;

    struct request *r = xcalloc(1, sizeof *r);
    r->state_slot = -1;
    pthread_mutex_lock(&e->q_mu);
    r->id = ++e->next_id;
    pthread_mutex_unlock(&e->q_mu);
    r->n_prompt = g->n_prompt;
    r->embed = g->embed;
    r->max_gen = g->embed ? 0 : g->max_tokens;
    if (r->max_gen > e->max_ctx - g->n_prompt) {
        r->max_gen = e->max_ctx - g->n_prompt;
        r->ctx_limited = true;
    }
    r->cap_tok = r->n_prompt + r->max_gen;
    r->tok = xmalloc((size_t)r->cap_tok * sizeof *r->tok);
    memcpy(r->tok, g->prompt, (size_t)g->n_prompt * sizeof *r->tok);
    r->n_tok = g->n_prompt;
    kv_table_init(&r->table, e->max_blocks_seq);
    r->keys = xmalloc((size_t)e->max_blocks_seq * sizeof *r->keys);
    r->salt = e->salt_model ^ (g->cache_salt * 0x9e3779b97f4a7c15ULL);
    r->smp = sampler_new_bare(&g->sampling, e->n_vocab);
    if (!g->sampling.has_seed) sampler_seed(r->smp, r->id);
    sampler_accept_prompt(r->smp, g->prompt, g->n_prompt);
    r->n_logprobs = g->n_logprobs;
    r->min_gen = g->min_tokens;
    // min_tokens and constraints mask the logits on the backend, before its argmax
    r->plain_greedy = sampler_is_plain_greedy(r->smp) && g->n_logprobs == 0;
    r->cons_after = -1;
    if (g->constraint) {   // taken over at the end, once nothing can fail
        r->cons_ids = constraint_vocab_size(g->constraint_vocab);
        r->mask = xmalloc((size_t)constraint_mask_words(g->constraint_vocab) * sizeof *r->mask);
        r->cons_after = g->constraint_after > 0 ? g->constraint_after : -1;
    }
    r->stop_ids = dup_ids(g->stop_ids, g->n_stop_ids);
    r->n_stop_ids = r->stop_ids ? g->n_stop_ids : 0;
    r->ignore_eos = g->ignore_eos;
    r->msg_ends = dup_ids(g->msg_ends, g->n_msg_ends);
    r->n_msg_ends = r->msg_ends ? g->n_msg_ends : 0;
    if (e->states && !r->embed) {
        // snapshot positions: block-aligned ends of the messages and of the prompt, ascending, unique
        r->snap_pos = xmalloc((size_t)(r->n_msg_ends + 1) * sizeof *r->snap_pos);
        for (int i = 0; i <= r->n_msg_ends; i++) {
            int x = i < r->n_msg_ends ? r->msg_ends[i] : g->n_prompt;
            if (x > g->n_prompt) x = g->n_prompt;
            int p = x / e->bs * e->bs;
            if (p > 0 && (r->n_snap_pos == 0 || p > r->snap_pos[r->n_snap_pos - 1])) r->snap_pos[r->n_snap_pos++] = p;
        }
    }
    r->ts = stream_new(r->id, r->embed ? 1 : r->max_gen, r->embed ? 0 : g->n_logprobs, g->n_prompt, clock_now_s());
    if (r->embed) stream_alloc_embedding(r->ts, e->m->hp.d_model);
    r->cons = g->constraint;
    *out = r;
    return STATUS_OK;
}

void request_free(struct engine *e, struct request *r)
{
    if (!r) return;
    kv_table_release(e->kb, &r->table);
    if (r->state_slot >= 0) state_pool_release(e->states, r->state_slot);
    kv_table_deinit(&r->table);
    free(r->keys);
    free(r->tok);
    sampler_free(r->smp);
    constraint_free(r->cons);
    free(r->mask);
    free(r->stop_ids);
    free(r->msg_ends);
    free(r->snap_pos);
    stream_unref(r->ts);
    free(r);
}
