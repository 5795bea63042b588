/* fixture: shared set-up of the engine tests: a tiny synthesized Qwen3 (tests/engine/tiny_qwen3.json:
 * hidden 64, 2 layers, vocab 512) on the cpu backend with 2 threads, a solo greedy reference that
 * goes through engine/runner (one sequence, no scheduler), and helpers to drain streams. */
#ifndef CAIRN_TEST_ENGINE_FIXTURE_H
#define CAIRN_TEST_ENGINE_FIXTURE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/rng.h"
#include "engine/engine.h"
#include "engine/runner.h"
#include "model/model.h"

static struct model   *g_m;
static struct backend *g_be;

static void fixture_init(void)
{
    log_init_from_env();
    CHECK(model_synthesize("tests/engine/tiny_qwen3.json", 7, &g_m) == STATUS_OK, "cannot synthesize the tiny model");
    // CAIRN_TEST_ENGINE_BACKEND: another backend for the same checks (the GPU machine runs
    // cuda-deterministic, whose results do not depend on the batch, as the solo comparisons need)
    const char *name = getenv("CAIRN_TEST_ENGINE_BACKEND");
    name = name && *name ? name : "cpu";
    CHECK(backend_new(name, &(struct backend_cfg){ .n_threads = 2 }, &g_be) == STATUS_OK, "no %s backend", name);
    if (strcmp(name, "cpu")) fprintf(stderr, "engine tests on the %s backend\n", name);
    CHECK(model_prepare(g_m, g_be) == STATUS_OK, "model_prepare failed");
}

static void fixture_deinit(void)
{
    model_free(g_m);
    backend_free(g_be);
}

static inline void random_prompt(uint64_t seed, int32_t *out, int n)
{
    struct rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < n; i++) out[i] = 3 + (int32_t)(rng_next(&r) % 500);
}

static inline int32_t argmax_row(const float *x, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Greedy continuation of prompt by the single-sequence runner: the reference "solo run". */
static inline void solo_greedy(const int32_t *prompt, int n, int max_tokens, int32_t *out)
{
    struct runner *r;
    CHECK(runner_new(g_m, g_be, n + max_tokens + 1, 64, DTYPE_F32, &r) == STATUS_OK, "runner_new");
    float *logits = malloc(sizeof(float) * (size_t)g_m->hp.n_vocab);
    CHECK(runner_feed(r, prompt, n, logits, false) == STATUS_OK, "runner_feed");
    for (int i = 0; i < max_tokens; i++) {
        out[i] = argmax_row(logits, g_m->hp.n_vocab);
        if (i + 1 < max_tokens) CHECK(runner_feed(r, &out[i], 1, logits, false) == STATUS_OK, "runner_feed");
    }
    free(logits);
    runner_free(r);
}

static inline struct gen_request greedy_req(const int32_t *prompt, int n, int max_tokens)
{
    struct gen_request g = { 0 };
    g.prompt = prompt;
    g.n_prompt = n;
    g.max_tokens = max_tokens;
    g.sampling = sampling_greedy();
    g.ignore_eos = true;
    return g;
}

/* Steps a single-threaded engine until idle (at most max_steps). Returns the steps taken. */
static inline int run_until_idle(struct engine *e, int max_steps)
{
    int n = 0;
    while (n < max_steps && engine_step(e)) n++;
    return n;
}

/* Reads every event available now; returns tokens read, fills *last with the final event when done. */
static inline int drain(struct token_stream *ts, int32_t *out, int cap, struct token_event *last, int *done)
{
    struct token_event ev;
    int n = 0;
    *done = 0;
    while (token_stream_next(ts, &ev, 0) == STATUS_OK) {
        if (ev.has_token && n < cap) out[n++] = ev.token;
        if (ev.done) {
            *done = 1;
            if (last) *last = ev;
            break;
        }
    }
    return n;
}

#endif
