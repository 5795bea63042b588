/* stream: per-request token queues (see stream.h). */
#include "engine/stream.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/mem.h"

struct token_stream *stream_new(uint64_t id, int cap, int n_logprobs, int n_prompt, double t_submit_s)
{
    CHECK(cap > 0, "bad stream capacity %d", cap);
    struct token_stream *ts = xcalloc(1, sizeof *ts);
    pthread_mutex_init(&ts->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ts->cv, &ca);
    pthread_condattr_destroy(&ca);
    ts->refs = 2;
    ts->id = id;
    ts->cap = cap;
    ts->tok = xmalloc((size_t)cap * sizeof *ts->tok);
    if (n_logprobs != 0) ts->lp = xmalloc((size_t)cap * sizeof *ts->lp);
    if (n_logprobs > 0) {
        ts->n_top = n_logprobs > SAMPLER_MAX_TOP ? SAMPLER_MAX_TOP : n_logprobs;
        ts->top = xmalloc((size_t)cap * (size_t)ts->n_top * sizeof *ts->top);
    }
    ts->stop_token = -1;
    ts->n_prompt = n_prompt;
    ts->t_submit_s = t_submit_s;
    atomic_init(&ts->cancel, 0);
    atomic_init(&ts->end_on_stop_string, 0);
    return ts;
}

void stream_unref(struct token_stream *ts)
{
    pthread_mutex_lock(&ts->mu);
    int left = --ts->refs;
    pthread_mutex_unlock(&ts->mu);
    if (left > 0) return;
    pthread_mutex_destroy(&ts->mu);
    pthread_cond_destroy(&ts->cv);
    free(ts->tok);
    free(ts->lp);
    free(ts->top);
    free(ts->embd);
    free(ts);
}

void stream_set_admitted(struct token_stream *ts, int n_cached, double now_s)
{
    pthread_mutex_lock(&ts->mu);
    ts->n_cached = n_cached;
    ts->t_queued_s = now_s - ts->t_submit_s;
    pthread_mutex_unlock(&ts->mu);
}

void stream_publish(struct token_stream *ts, int32_t tok, float lp, const struct token_logprob *top,
                    int n_top, double now_s)
{
    pthread_mutex_lock(&ts->mu);
    CHECK(ts->n_pub < ts->cap && !ts->done, "stream %llu overflow", (unsigned long long)ts->id);
    int i = ts->n_pub;
    ts->tok[i] = tok;
    if (ts->lp) ts->lp[i] = lp;
    if (ts->top) {
        struct token_logprob *dst = ts->top + (size_t)i * (size_t)ts->n_top;
        int n = n_top < ts->n_top ? n_top : ts->n_top;
        memcpy(dst, top, (size_t)n * sizeof *dst);
        for (int j = n; j < ts->n_top; j++) dst[j] = (struct token_logprob){ .id = -1, .logprob = -INFINITY };
    }
    ts->n_pub++;
    ts->n_generated++;
    if (ts->t_first_s == 0.0) ts->t_first_s = now_s - ts->t_submit_s;
    pthread_cond_broadcast(&ts->cv);
    pthread_mutex_unlock(&ts->mu);
}

void stream_count_stop(struct token_stream *ts, int32_t tok, double now_s)
{
    pthread_mutex_lock(&ts->mu);
    ts->stop_token = tok;
    ts->n_generated++;
    if (ts->t_first_s == 0.0) ts->t_first_s = now_s - ts->t_submit_s;
    pthread_mutex_unlock(&ts->mu);
}

void stream_end(struct token_stream *ts, enum finish_reason why, enum status err, double now_s)
{
    pthread_mutex_lock(&ts->mu);
    if (!ts->done) {
        ts->done = true;
        ts->finish = why;
        ts->error = err;
        ts->t_done_s = now_s - ts->t_submit_s;
        if (why != FINISH_STOP_MATCHED) ts->stop_token = -1;
    }
    pthread_cond_broadcast(&ts->cv);
    pthread_mutex_unlock(&ts->mu);
}

void stream_alloc_embedding(struct token_stream *ts, int n)
{
    ts->embd = xcalloc((size_t)n, sizeof *ts->embd);
    ts->n_embd = n;
}

/* ==== Reader side (public) ==== */

static void fill_event(const struct token_stream *ts, struct token_event *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->token = -1;
    ev->stop_token = -1;
    if (ts->n_read < ts->n_pub) {
        int i = ts->n_read;
        ev->token = ts->tok[i];
        ev->has_token = true;
        if (ts->lp) ev->logprob = ts->lp[i];
        if (ts->top) {
            ev->n_top = ts->n_top;
            memcpy(ev->top, ts->top + (size_t)i * (size_t)ts->n_top, (size_t)ts->n_top * sizeof ev->top[0]);
            while (ev->n_top > 0 && ev->top[ev->n_top - 1].id < 0) ev->n_top--;
        }
    }
    bool last = ts->done && ts->n_read + (ev->has_token ? 1 : 0) >= ts->n_pub;
    if (last) {
        ev->done = true;
        ev->finish = ts->finish;
        ev->error = ts->error;
        ev->stop_token = ts->stop_token;
        if (!ev->has_token) ev->token = ts->stop_token;
    }
    ev->n_prompt = ts->n_prompt;
    ev->n_cached = ts->n_cached;
    ev->n_generated = ts->n_generated;
    ev->t_queued_s = ts->t_queued_s;
    ev->t_first_s = ts->t_first_s;
    ev->t_done_s = ts->t_done_s;
}

enum status token_stream_next(struct token_stream *ts, struct token_event *ev, int timeout_ms)
{
    struct timespec until;
    if (timeout_ms >= 0) {
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) { until.tv_sec++; until.tv_nsec -= 1000000000L; }
    }
    pthread_mutex_lock(&ts->mu);
    while (ts->n_read >= ts->n_pub && !ts->done) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&ts->cv, &ts->mu);
        } else if (pthread_cond_timedwait(&ts->cv, &ts->mu, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&ts->mu);
            return STATUS_EBUSY;
        }
    }
    fill_event(ts, ev);
    if (ev->has_token) ts->n_read++;
    pthread_mutex_unlock(&ts->mu);
    return STATUS_OK;
}

void token_stream_release(struct token_stream *ts)
{
    if (!ts) return;
    atomic_store(&ts->cancel, 1);   // a no-op once the request is done
    stream_unref(ts);
}

uint64_t token_stream_id(const struct token_stream *ts) { return ts->id; }

int token_stream_embedding(struct token_stream *ts, const float **out)
{
    pthread_mutex_lock(&ts->mu);
    bool ready = ts->done && ts->finish == FINISH_EMBEDDED && ts->embd;
    pthread_mutex_unlock(&ts->mu);
    *out = ready ? ts->embd : NULL;
    return ready ? ts->n_embd : 0;
}
