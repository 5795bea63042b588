/* test_engine_sample_cands: sampled requests give the same tokens whether the engine samples their
 * rows from the backend's candidates (sample_cands) or from downloaded rows: a batch of seeded
 * requests with every filter (and some that always take the full row: log-probabilities, a
 * penalty, min_tokens' masked stop ids, greedy) runs twice on the same backend, with the op and
 * without it (its table entry cleared); the tokens must be equal, and the run with the op must
 * have decided rows from candidates and sent others to their full row. On ref (which has the op)
 * and cpu (which has none: the test lends it ref's loop, backend/host.c); CAIRN_TEST_ENGINE_BACKEND
 * names another (cuda-deterministic on the GPU machine: logits that do not depend on the batch). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/host.h"
#include "base/log.h"
#include "engine/engine.h"
#include "harness.h"
#include "model/model.h"

enum { N_REQ = 10, N_GEN = 24, N_PROMPT = 12 };

static void request_cfg(int i, struct gen_request *g)
{
    g->sampling = sampling_api_default();
    g->sampling.seed = 500 + (uint64_t)i;
    g->sampling.has_seed = true;
    switch (i) {
    case 0: break;                                                                     // temperature 1
    case 1: g->sampling.temperature = 0.3f; break;                                     // sharp: head draws
    case 2: g->sampling.top_k = 20; break;
    case 3: g->sampling.temperature = 0.8f; g->sampling.top_p = 0.9f; break;
    case 4: g->sampling.min_p = 0.1f; break;
    case 5: g->sampling.temperature = 0.7f; g->sampling.top_k = 40; g->sampling.top_p = 0.9f; break;
    case 6: g->sampling.temperature = 0.5f; g->sampling.top_k = 3; g->min_tokens = 8; break;   // masked rows
    case 7: g->n_logprobs = 2; break;                                                  // always the full row
    case 8: g->sampling.presence_penalty = 0.5f; break;                                // always the full row
    default: g->sampling = sampling_greedy(); break;                                   // argmax
    }
}

/* Runs the batch on be; tokens into tok[N_REQ][N_GEN]; the engine's counters into *st. */
static void run_batch(struct model *m, struct backend *be, int32_t tok[N_REQ][N_GEN], struct engine_stats *st)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_running = 8;   // fewer than the requests: some wait, rows move between steps
    struct engine *e;
    CHECK(engine_new(&cfg, m, be, &e) == STATUS_OK, "engine_new");
    int32_t prompts[N_REQ][N_PROMPT];
    struct token_stream *ts[N_REQ];
    for (int i = 0; i < N_REQ; i++) {
        for (int j = 0; j < N_PROMPT; j++) prompts[i][j] = 3 + (int32_t)((i * 131 + j * 17) % 500);
        struct gen_request g = { 0 };
        g.prompt = prompts[i];
        g.n_prompt = N_PROMPT;
        g.max_tokens = N_GEN;
        g.ignore_eos = true;
        request_cfg(i, &g);
        CHECK(engine_submit(e, &g, &ts[i]) == STATUS_OK, "submit %d", i);
    }
    for (int n = 0; n < 10000 && engine_step(e); n++) {}
    memset(tok, 0xff, sizeof(int32_t) * N_REQ * N_GEN);
    for (int i = 0; i < N_REQ; i++) {
        struct token_event ev;
        int n = 0;
        while (token_stream_next(ts[i], &ev, 0) == STATUS_OK) {
            if (ev.has_token && n < N_GEN) tok[i][n++] = ev.token;
            if (ev.done) break;
        }
        EXPECTF(n == N_GEN, "request %d: %d tokens", i, n);
        token_stream_release(ts[i]);
    }
    engine_get_stats(e, st);
    engine_free(e);
}

static void same_tokens_with_and_without(const char *name)
{
    struct model *m;
    struct backend *be;
    CHECK(model_synthesize("tests/engine/tiny_qwen3.json", 7, &m) == STATUS_OK, "synthesize");
    CHECK(backend_new(name, &(struct backend_cfg){ .n_threads = 2 }, &be) == STATUS_OK, "no %s backend", name);
    CHECK(model_prepare(m, be) == STATUS_OK, "model_prepare");
    if (!be->all_ops.sample_cands) be->all_ops.sample_cands = host_sample_cands;   // host memory: ref's loop
    static int32_t with[N_REQ][N_GEN], without[N_REQ][N_GEN];
    struct engine_stats sw, so;
    run_batch(m, be, with, &sw);
    be->all_ops.sample_cands = NULL;
    run_batch(m, be, without, &so);
    for (int i = 0; i < N_REQ; i++) {
        int diff = 0;
        for (int j = 0; j < N_GEN; j++) diff += with[i][j] != without[i][j];
        EXPECTF(diff == 0, "%s: request %d: %d of %d tokens differ with the op", name, i, diff, N_GEN);
    }
    fprintf(stderr, "  %s: %llu rows decided by candidates, %llu needed their full row\n", name,
            (unsigned long long)sw.sampled_by_cands, (unsigned long long)sw.sampled_cands_full);
    EXPECTF(sw.sampled_by_cands > 0 && sw.sampled_cands_full > 0, "%s: both paths taken (%llu, %llu)", name,
            (unsigned long long)sw.sampled_by_cands, (unsigned long long)sw.sampled_cands_full);
    EXPECT(so.sampled_by_cands == 0 && so.sampled_cands_full == 0);
    model_free(m);
    backend_free(be);
}

TEST(same_tokens_ref) { same_tokens_with_and_without("ref"); }
TEST(same_tokens_cpu) { same_tokens_with_and_without("cpu"); }

int main(void)
{
    log_init_from_env();
    const char *name = getenv("CAIRN_TEST_ENGINE_BACKEND");
    if (name && *name) {
        same_tokens_with_and_without(name);
        return test_summary();
    }
    RUN(same_tokens_ref);
    RUN(same_tokens_cpu);
    return test_summary();
}
