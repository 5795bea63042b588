/* test_engine_ranks: the batching engine over a sharded model (engine_new_sharded: rank 0 schedules,
 * every rank executes the step on its own thread, in-process collective) gives the same greedy
 * tokens as the unsharded engine, on the cpu backend, for a dense (qwen3), a MoE (qwen3_moe, tensor
 * and expert parallel) and a hybrid fixture (qwen3_5: Gated DeltaNet state per rank), N = 2 and 4
 * where the shapes divide. One scenario per engine: three requests batched together with prefill
 * chunks smaller than the prompts (continuous batching), one of them cancelled mid-prefill, then a
 * request that extends a finished prompt: a prefix-cache hit (for the hybrid, a resume from its
 * state snapshot: each rank copies its own slot into its own snapshot pool). Same tokens, same
 * finish reasons, same hit.
 * rank_failure: a rank whose backend fails at sync (rank 1, then rank 0) fails the step for all
 * ranks, and every later step at once (engine_ranks.c). */
#include "harness.h"

#include "base/log.h"
#include "base/rng.h"
#include "dist/collective.h"
#include "engine/engine.h"
#include "model/model.h"
#include "model/shard.h"

#define FIXTURES  "tests/model/fixtures/"
#define MAX_RANKS 4
#define MAX_GEN   8

struct ranked {
    int                n;
    struct model      *m[MAX_RANKS];
    struct backend    *be[MAX_RANKS];
    struct collective *coll[MAX_RANKS];
};

/* The outcome the sharded engine must reproduce. */
struct outcome {
    int32_t            tok[4][MAX_GEN];
    int                n_tok[4];
    enum finish_reason finish[4];
    uint64_t           hit_tokens;
};

static bool open_ranked(const char *name, int n, bool ep, struct ranked *rk)
{
    memset(rk, 0, sizeof *rk);
    struct model *full;
    CHECK(model_load(name, &full) == STATUS_OK, "rank models");
    if (n == 1) {   // the whole model, as engine_new gets it
        rk->n = 1;
        rk->m[0] = full;
        CHECK(backend_new("cpu", &(struct backend_cfg){ .n_threads = 1 }, &rk->be[0]) == STATUS_OK, "cpu backend");
        CHECK(model_prepare(full, rk->be[0]) == STATUS_OK, "model_prepare");
        return true;
    }
    struct shard_plan plan;
    if (shard_plan_make(&full->hp, &full->f, n, ep, &plan) != STATUS_OK) {
        model_free(full);
        return false;
    }
    CHECK(collective_threads_new(n, rk->coll) == STATUS_OK, "rank models");
    rk->n = n;
    for (int r = 0; r < n; r++) {
        CHECK(model_shard(full, &plan, r, &rk->m[r]) == STATUS_OK, "rank models");
        CHECK(backend_new("cpu", &(struct backend_cfg){ .n_threads = 1 }, &rk->be[r]) == STATUS_OK, "rank models");
        CHECK(model_prepare(rk->m[r], rk->be[r]) == STATUS_OK, "rank models");
    }
    model_free(full);
    return true;
}

static void close_ranked(struct ranked *rk)
{
    for (int r = 0; r < rk->n; r++) {
        model_free(rk->m[r]);
        backend_free(rk->be[r]);
    }
    if (rk->coll[0]) collective_free_group(rk->coll, rk->n);
}

static struct gen_request greedy(const int32_t *prompt, int n)
{
    struct gen_request g = { .prompt = prompt, .n_prompt = n, .max_tokens = MAX_GEN, .ignore_eos = true };
    g.sampling = sampling_greedy();
    return g;
}

static void collect(struct token_stream *ts, struct outcome *o, int i)
{
    struct token_event ev;
    while (token_stream_next(ts, &ev, 0) == STATUS_OK) {
        if (ev.has_token && o->n_tok[i] < MAX_GEN) o->tok[i][o->n_tok[i]++] = ev.token;
        if (ev.done) {
            o->finish[i] = ev.finish;
            break;
        }
    }
    token_stream_release(ts);
}

/* The scenario on engine e (single-threaded: the test steps it). */
static void scenario(struct engine *e, int n_vocab, struct outcome *o)
{
    static int32_t p[4][80];
    int n[4] = { 48, 25, 70, 58 };
    struct rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < 3; i++)
        for (int t = 0; t < n[i]; t++) p[i][t] = 1 + (int32_t)(rng_next(&r) % (uint64_t)(n_vocab - 1));
    memcpy(p[3], p[0], sizeof(int32_t) * 48);   // request 3 extends request 0's prompt (3 blocks)
    for (int t = 48; t < n[3]; t++) p[3][t] = 1 + (int32_t)(rng_next(&r) % (uint64_t)(n_vocab - 1));
    memset(o, 0, sizeof *o);
    struct token_stream *ts[4];
    for (int i = 0; i < 3; i++) {
        struct gen_request g = greedy(p[i], n[i]);
        ASSERT(engine_submit(e, &g, &ts[i]) == STATUS_OK);
    }
    engine_step(e);   // 32 tokens of prefill: request 2 is still waiting or in prefill
    engine_cancel(e, ts[2]);
    for (int s = 0; s < 200 && engine_step(e); s++) {}
    for (int i = 0; i < 3; i++) collect(ts[i], o, i);
    struct gen_request g = greedy(p[3], n[3]);
    ASSERT(engine_submit(e, &g, &ts[3]) == STATUS_OK);
    for (int s = 0; s < 200 && engine_step(e); s++) {}
    collect(ts[3], o, 3);
    struct engine_stats st;
    engine_get_stats(e, &st);
    o->hit_tokens = st.prefix_hit_tokens;
}

static struct engine_cfg small_cfg(void)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 32;   // prompts take several steps: batching across chunks
    cfg.max_running = 4;
    cfg.kv_cache_bytes = 4 << 20;
    return cfg;
}

static void check_fixture(const char *name, bool ep)
{
    char dir[256];
    snprintf(dir, sizeof dir, FIXTURES "%s", name);
    struct ranked one;
    ASSERT(open_ranked(dir, 1, false, &one));
    struct engine_cfg cfg = small_cfg();
    struct engine *e;
    ASSERT(engine_new(&cfg, one.m[0], one.be[0], &e) == STATUS_OK);
    struct outcome want;
    scenario(e, one.m[0]->hp.n_vocab, &want);
    engine_free(e);
    close_ranked(&one);
    EXPECTF(want.finish[2] == FINISH_CANCELED, "%s: request 2 was not cancelled in prefill", name);
    EXPECTF(want.hit_tokens >= 32, "%s: no prefix-cache hit (%llu tokens)", name, (unsigned long long)want.hit_tokens);
    for (int i = 0; i < 4; i++)
        if (i != 2) EXPECTF(want.n_tok[i] == MAX_GEN && want.finish[i] == FINISH_LENGTH, "%s: request %d", name, i);
    for (int n = 2; n <= MAX_RANKS; n *= 2) {
        struct ranked rk;
        if (!open_ranked(dir, n, ep, &rk)) {
            EXPECTF(n != 2, "%s: every fixture shards over 2 ranks", name);
            fprintf(stderr, "  SKIP %s N=%d: the shapes do not divide\n", name, n);
            continue;
        }
        struct engine_shards sh = { .n_ranks = n, .m = rk.m, .be = rk.be, .coll = rk.coll };
        ASSERT(engine_new_sharded(&cfg, &sh, &e) == STATUS_OK);
        struct outcome got;
        scenario(e, rk.m[0]->hp.n_vocab, &got);
        engine_free(e);
        close_ranked(&rk);
        int same = 0;
        for (int i = 0; i < 4; i++)
            same += got.n_tok[i] == want.n_tok[i] && got.finish[i] == want.finish[i] &&
                    !memcmp(got.tok[i], want.tok[i], sizeof(int32_t) * (size_t)want.n_tok[i]);
        fprintf(stderr, "  %-12s N=%d %s: %d/4 requests equal the unsharded engine, prefix hit %llu tokens (%llu)\n",
                name, n, ep ? "expert-parallel" : "tensor-parallel", same, (unsigned long long)got.hit_tokens,
                (unsigned long long)want.hit_tokens);
        EXPECTF(same == 4, "%s N=%d: %d of 4 requests differ from the unsharded engine", name, n, 4 - same);
        EXPECTF(got.hit_tokens == want.hit_tokens, "%s N=%d: prefix hit %llu tokens, unsharded %llu", name, n,
                (unsigned long long)got.hit_tokens, (unsigned long long)want.hit_tokens);
    }
}

/* ==== A rank that fails ==== */

/* The failing rank's sync: OK for its first g_fail_from calls, then a device error, as a GPU's
 * sticky error would be. Counts every call. */
static int g_sync_calls, g_fail_from;

static enum status failing_sync(struct backend *be)
{
    (void)be;
    return ++g_sync_calls > g_fail_from ? STATUS_EDEVICE : STATUS_OK;
}

/* Rank `bad` of 2 fails at its third step: the step's requests end with an error (none hangs),
 * failed_steps counts it (/health answers 503 from it), and a later request fails at once without
 * the ranks running again (a failed NCCL group cannot). */
static void check_rank_failure(int bad)
{
    struct ranked rk;
    ASSERT(open_ranked(FIXTURES "qwen3", 2, false, &rk));
    struct backend_ops *ops = &rk.be[bad]->all_ops;   // the table rk.be[bad]->ops points at
    ASSERT(rk.be[bad]->ops == ops);
    ops->sync = failing_sync;
    g_sync_calls = 0;
    g_fail_from = 2;
    struct engine_cfg cfg = small_cfg();
    struct engine_shards sh = { .n_ranks = 2, .m = rk.m, .be = rk.be, .coll = rk.coll };
    struct engine *e;
    ASSERT(engine_new_sharded(&cfg, &sh, &e) == STATUS_OK);
    static const int32_t prompt[2][6] = { { 5, 6, 7, 8, 9, 10 }, { 11, 12, 13 } };
    struct token_stream *ts[3];
    for (int i = 0; i < 2; i++) {
        struct gen_request g = greedy(prompt[i], i ? 3 : 6);
        ASSERT(engine_submit(e, &g, &ts[i]) == STATUS_OK);
    }
    for (int s = 0; s < 50 && engine_step(e); s++) {}
    struct outcome o;
    memset(&o, 0, sizeof o);
    for (int i = 0; i < 2; i++) collect(ts[i], &o, i);
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECTF(o.finish[0] == FINISH_ERROR && o.finish[1] == FINISH_ERROR, "rank %d failed: requests finished %d, %d",
            bad, o.finish[0], o.finish[1]);
    EXPECTF(o.n_tok[0] >= 1 && o.n_tok[0] < MAX_GEN, "rank %d failed at its third step: %d tokens came before", bad,
            o.n_tok[0]);
    EXPECTF(st.failed_steps == 1, "rank %d failed: %llu failed steps", bad, (unsigned long long)st.failed_steps);
    int calls = g_sync_calls;
    struct gen_request g = greedy(prompt[1], 3);
    ASSERT(engine_submit(e, &g, &ts[2]) == STATUS_OK);
    for (int s = 0; s < 50 && engine_step(e); s++) {}
    collect(ts[2], &o, 2);
    engine_get_stats(e, &st);
    EXPECTF(o.finish[2] == FINISH_ERROR && o.n_tok[2] == 0, "after rank %d failed: a new request finished %d with %d "
            "tokens", bad, o.finish[2], o.n_tok[2]);
    // rank 0's sync is also the engine's own, which it still calls once per step
    EXPECTF(g_sync_calls - calls <= (bad == 0 ? 1 : 0), "after rank %d failed: the ranks ran again (%d syncs)", bad,
            g_sync_calls - calls);
    EXPECTF(st.failed_steps == 2, "after rank %d failed: %llu failed steps", bad, (unsigned long long)st.failed_steps);
    fprintf(stderr, "  rank %d of 2 failing: requests end with errors (%d tokens came first), %llu failed steps\n", bad,
            o.n_tok[0], (unsigned long long)st.failed_steps);
    engine_free(e);
    close_ranked(&rk);
}

TEST(rank_failure) { check_rank_failure(1); check_rank_failure(0); }

TEST(dense) { check_fixture("qwen3", false); }
TEST(moe_tensor_parallel) { check_fixture("qwen3_moe", false); }
TEST(moe_expert_parallel) { check_fixture("qwen3_moe", true); }
TEST(hybrid) { check_fixture("qwen3_5", false); }

int main(void)
{
    log_init_from_env();
    RUN(dense);
    RUN(moe_tensor_parallel);
    RUN(moe_expert_parallel);
    RUN(hybrid);
    RUN(rank_failure);
    return test_summary();
}
