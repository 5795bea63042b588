/* test_engine_hybrid: the batching engine on a tiny synthesized Qwen3.5-MoE (Gated DeltaNet +
 * gated attention + shared expert; tests/engine/tiny_qwen35_moe.json) on the cpu backend: staggered
 * requests equal their solo runs (the runner), preemption under a tiny KV budget keeps the outputs
 * (a preempted sequence's recurrent state restarts with its recomputation), a full state pool
 * (its slots share the budget with the KV blocks) makes requests wait, cancel in prefill
 * or decode returns every KV block and every recurrent-state slot, and the prefix cache resumes
 * from real state snapshots at the block-aligned ends of messages and prompts: the cached tokens
 * are exactly the snapshot's position and the continuation equals a full recompute. */
#include <math.h>

#include "fixture.h"
#include "harness.h"

#include "engine/engine_int.h"

#include "jobs.h"

/* Every step: a recurrent-state slot per running request, and the most that ran at once. */
static void check_slots(struct engine *e, void *most_running)
{
    int *most = most_running;
    if (e->n_running > *most) *most = e->n_running;
    EXPECT(e->states->n_free == e->states->n_slots - e->n_running);
}

TEST(staggered_equal_solo)
{
    enum { N = 20 };
    static struct job jobs[N];
    struct rng r;
    rng_seed(&r, 4);
    for (int i = 0; i < N; i++) {
        int n_prompt = 1 + (int)(rng_next(&r) % 300);
        int max_tokens = 4 + (int)(rng_next(&r) % 21);
        job_init(&jobs[i], 200 + (uint64_t)i, n_prompt, max_tokens);
    }
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 96;
    cfg.max_running = 12;
    cfg.kv_cache_bytes = 8 << 20;   // holds more than 12 slots with 1,024 tokens of KV each
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    ASSERT(e->states && e->states->n_slots == 12 && e->cfg.prefix_cache);
    int max_running = 0;
    ASSERT(jobs_run_arrivals(e, jobs, N, &r, 3000, check_slots, &max_running));
    EXPECTF(jobs_check(jobs, N) == 0, "outputs differ from their solo runs");
    EXPECT(max_running > 3);   // batches really mixed sequences
    EXPECT(e->states->n_free == e->states->n_slots);
    engine_free(e);
}

TEST(preemption_keeps_outputs)
{
    enum { N = 8 };
    static struct job jobs[N];
    for (int i = 0; i < N; i++) job_init(&jobs[i], 700 + (uint64_t)i, 40 + 9 * i, 48);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 64;
    cfg.max_running = 8;
    cfg.state_slots = 8;
    cfg.kv_cache_bytes = model_kv_bytes_per_token(g_m, DTYPE_F32) * 16 * 16 +   // 16 blocks = 256 tokens
                         8 * model_seq_state_bytes(&g_m->hp, DTYPE_F32);
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    ASSERT(e->states->n_slots == 8 && e->acc.kv_blocks_total == 16);   // the slots came out of the budget
    for (int i = 0; i < N; i++) ASSERT(job_submit(e, &jobs[i]));
    int most_running = 0;
    jobs_run(e, jobs, N, 5000, check_slots, &most_running);
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECTF(st.preemptions > 0, "no preemption happened");
    fprintf(stderr, "  %llu preemptions\n", (unsigned long long)st.preemptions);
    EXPECTF(jobs_check(jobs, N) == 0, "outputs changed by preemption");
    EXPECT(st.kv_blocks_used == 0 && e->states->n_free == e->states->n_slots);
    engine_free(e);
}

/* Every step of a pool of 3 slots: never more running than slots, a slot per running request, the
 * most that ran at once, and the steps on which requests waited with every slot taken. */
struct pool_watch { int most, waited; };
static void watch_three_slots(struct engine *e, void *watch)
{
    struct pool_watch *w = watch;
    if (e->n_running > w->most) w->most = e->n_running;
    w->waited += e->n_waiting > 0 && e->n_running == 3;
    EXPECT(e->n_running <= 3 && e->states->n_free == e->states->n_slots - e->n_running);
}

/* The state pool shares the sequence-memory budget with the KV blocks: the slots the budget holds
 * (auto: 1,024 tokens of KV beside each), a clear ENOMEM when nothing is left for a block, and a
 * full pool makes requests wait (never more running than slots), alone and together with KV
 * preemption, with outputs unchanged and every slot and block back at the end. */
TEST(state_pool_exhaustion_waits)
{
    size_t per_slot = model_seq_state_bytes(&g_m->hp, DTYPE_F32), per_tok = model_kv_bytes_per_token(g_m, DTYPE_F32);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 64;
    cfg.max_running = 8;
    cfg.kv_cache_bytes = 3 * (per_slot + 1024 * per_tok);
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    EXPECTF(e->states->n_slots == 3, "auto rule: %d slots", e->states->n_slots);
    EXPECT((size_t)e->acc.kv_blocks_total * 16 * per_tok + 3 * per_slot <= cfg.kv_cache_bytes);
    engine_free(e);
    cfg.kv_cache_bytes = 2 * per_slot + 16 * per_tok - 1;   // two slots and no whole block
    cfg.state_slots = 2;
    EXPECT(engine_new(&cfg, g_m, g_be, &e) == STATUS_ENOMEM);

    enum { N = 8 };
    static struct job jobs[N];
    for (int i = 0; i < N; i++) job_init(&jobs[i], 900 + (uint64_t)i, 20 + 23 * i, 10 + i);
    cfg.state_slots = 3;
    cfg.kv_cache_bytes = 4 << 20;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    ASSERT(e->states->n_slots == 3);
    for (int i = 0; i < N; i++) ASSERT(job_submit(e, &jobs[i]));
    struct pool_watch w = { 0 };
    jobs_run(e, jobs, N, 5000, watch_three_slots, &w);
    EXPECTF(w.most == 3 && w.waited > 0, "at most %d running, %d steps with requests waiting for a slot", w.most, w.waited);
    EXPECTF(jobs_check(jobs, N) == 0, "outputs changed by waiting for state slots");
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECT(st.kv_blocks_used == 0 && st.state_slots_total == 3 && st.state_slots_free == 3);
    engine_free(e);

    // a full pool and a short KV cache at once: preemptions free slots and blocks, the queue waits
    // for both, and the outputs still equal the solo runs
    cfg.kv_cache_bytes = 3 * per_slot + 14 * 16 * per_tok;   // 14 blocks = 224 tokens
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    ASSERT(e->states->n_slots == 3 && e->acc.kv_blocks_total == 14);
    for (int i = 0; i < N; i++) {
        jobs[i].n_got = jobs[i].done = 0;
        ASSERT(job_submit(e, &jobs[i]));
    }
    jobs_run(e, jobs, N, 5000, watch_three_slots, &w);
    engine_get_stats(e, &st);
    EXPECTF(st.preemptions > 0, "no preemption happened");
    EXPECTF(jobs_check(jobs, N) == 0, "outputs changed by preemption under a full state pool");
    EXPECT(st.kv_blocks_used == 0 && st.state_slots_free == 3);
    engine_free(e);
}

static void expect_running_with_slots(struct engine *e, void *unused)
{
    EXPECT(e->n_running >= 1 && e->states->n_free == e->states->n_slots - e->n_running);
}

TEST(cancel_returns_slots_and_blocks)
{
    static int32_t p[500];
    random_prompt(11, p, 500);
    for (int mid_decode = 0; mid_decode < 2; mid_decode++) {
        struct engine_cfg cfg = engine_cfg_default();
        cfg.max_batch_tokens = 64;
        cfg.kv_cache_bytes = 4 << 20;
        struct engine *e;
        ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
        struct cancel_run c = { .prompt = p, .n_prompt = 500, .neighbour = p + 50, .n_neighbour = 20, .max_tokens = 100,
                                .steps = mid_decode ? 500 / 60 + 6 : 3, .mid_decode = mid_decode };
        cancel_midway(e, &c, expect_running_with_slots, NULL);
        struct engine_stats st;
        engine_get_stats(e, &st);
        EXPECT(st.kv_blocks_used == 0 && st.n_running == 0 && st.kv_blocks_free + st.kv_blocks_cached == st.kv_blocks_total);
        EXPECT(e->states->n_free == e->states->n_slots);
        engine_free(e);
    }
}

/* Log-probabilities of toks[0, k) after prompt[0, n), one token at a time on a plain runner. */
static void solo_logprobs(const int32_t *prompt, int n, const int32_t *toks, int k, float *lp)
{
    struct runner *r;
    CHECK(runner_new(g_m, g_be, n + k + 1, 64, DTYPE_F32, &r) == STATUS_OK, "runner_new");
    int nv = g_m->hp.n_vocab;
    float *logits = malloc(sizeof(float) * (size_t)nv);
    CHECK(runner_feed(r, prompt, n, logits, false) == STATUS_OK, "runner_feed");
    for (int i = 0; i < k; i++) {
        double mx = logits[0], sum = 0;
        for (int v = 1; v < nv; v++) mx = logits[v] > mx ? logits[v] : mx;
        for (int v = 0; v < nv; v++) sum += exp(logits[v] - mx);
        lp[i] = (float)(logits[toks[i]] - mx - log(sum));
        if (i + 1 < k) CHECK(runner_feed(r, &toks[i], 1, logits, false) == STATUS_OK, "runner_feed");
    }
    free(logits);
    runner_free(r);
}

/* The chosen tokens' log-probabilities of every event available now. */
static int drain_logprobs(struct token_stream *ts, float *lp, int cap)
{
    struct token_event ev;
    int n = 0;
    while (token_stream_next(ts, &ev, 0) == STATUS_OK) {
        if (ev.has_token && n < cap) lp[n++] = ev.logprob;
        if (ev.done) break;
    }
    return n;
}

/* Two 600-token prompts a and b that share their first 450 tokens, and their greedy continuations
 * of n_gen tokens run alone. */
static void shared_prompts(uint64_t seed, int32_t *a, int32_t *b, int n_gen, int32_t *want_a, int32_t *want_b)
{
    random_prompt(seed, a, 600);
    memcpy(b, a, 450 * sizeof(int32_t));
    random_prompt(seed + 1, b + 450, 150);
    solo_greedy(a, 600, n_gen, want_a);
    solo_greedy(b, 600, n_gen, want_b);
}

/* max_batch_tokens 128: the prompt's snapshots fall inside its chunks of 128; 1024: the whole
 * prompt is one step, which takes its three snapshots inside the forward pass. */
static void resume_from_snapshots(int max_batch_tokens)
{
    static int32_t a[600], b[600];
    int32_t want_a[6], want_b[6], got[8];
    shared_prompts(61, a, b, 6, want_a, want_b);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = max_batch_tokens;
    cfg.kv_cache_bytes = 4 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    int32_t ends_a[2] = { 130, 420 };   // snapshots at 128, 416 and the prompt end 592
    struct gen_request ga = greedy_req(a, 600, 6);
    ga.msg_ends = ends_a;
    ga.n_msg_ends = 2;
    struct token_stream *ta, *tb, *tc;
    ASSERT(engine_submit(e, &ga, &ta) == STATUS_OK);
    run_until_idle(e, 500);
    EXPECT(kv_prefix_n_snaps_used(e->px) == 3);
    if (max_batch_tokens >= 600) EXPECTF(e->acc.steps == 6, "%llu steps for a one-step prompt and 5 decodes",
                                         (unsigned long long)e->acc.steps);
    // the snapshots' own state pool: 1 GiB's worth beside the explicit budget, at most a block each
    size_t per_slot = model_seq_state_bytes(&g_m->hp, DTYPE_F32);
    size_t want_snaps = ((size_t)1 << 30) / per_slot;
    if (want_snaps > (size_t)e->acc.kv_blocks_total) want_snaps = (size_t)e->acc.kv_blocks_total;
    EXPECTF(e->snaps && (size_t)e->snaps->n_slots == want_snaps, "%d snapshot slots", e->snaps ? e->snaps->n_slots : -1);
    struct gen_request gb = greedy_req(b, 600, 6);   // shares 450 tokens: 28 full blocks, snapshot at 416
    ASSERT(engine_submit(e, &gb, &tb) == STATUS_OK);
    run_until_idle(e, 500);
    struct gen_request gc = greedy_req(a, 600, 6);   // the same prompt again: resumes at 592
    ASSERT(engine_submit(e, &gc, &tc) == STATUS_OK);
    run_until_idle(e, 500);
    struct token_event la = { 0 }, lb = { 0 }, lc = { 0 };
    int da, db, dc;
    int na = drain(ta, got, 8, &la, &da);
    EXPECT(na == 6 && !memcmp(got, want_a, sizeof want_a));
    int nb = drain(tb, got, 8, &lb, &db);
    EXPECT(nb == 6 && !memcmp(got, want_b, sizeof want_b));
    int nc = drain(tc, got, 8, &lc, &dc);
    EXPECT(nc == 6 && !memcmp(got, want_a, sizeof want_a));
    EXPECT(da && db && dc);
    EXPECTF(la.n_cached == 0 && lb.n_cached == 416 && lc.n_cached == 592, "cached %d %d %d", la.n_cached,
            lb.n_cached, lc.n_cached);
    EXPECT(e->states->n_free == e->states->n_slots);
    token_stream_release(ta);
    token_stream_release(tb);
    token_stream_release(tc);
    // The resumed state is the computed one, not just one that happens to pick the same tokens: a
    // resume at 592 gives the log-probabilities of a plain run (a zeroed restore keeps the tokens
    // of this tiny model but moves these)
    float want_lp[6], got_lp[8];
    solo_logprobs(a, 600, want_a, 6, want_lp);
    struct gen_request gd = greedy_req(a, 600, 6);
    gd.n_logprobs = -1;
    struct token_stream *td;
    ASSERT(engine_submit(e, &gd, &td) == STATUS_OK);
    run_until_idle(e, 500);
    int nd = drain_logprobs(td, got_lp, 8);
    EXPECT(nd == 6);
    float worst = 0;
    for (int i = 0; i < nd; i++) worst = fmaxf(worst, fabsf(got_lp[i] - want_lp[i]));
    EXPECTF(worst < 1e-4f, "resumed log-probabilities differ by %g", worst);
    token_stream_release(td);
    engine_free(e);
    // a snapshot budget below one snapshot: no resumption, same tokens; the prompt's chunked pieces
    // still end at its snapshot positions (the first step marks all three when it holds the prompt)
    cfg.state_cache_bytes = 1000;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    ASSERT(!e->snaps && engine_submit(e, &ga, &ta) == STATUS_OK);
    ASSERT(engine_step(e));
    EXPECTF(e->n_tok_marks == (max_batch_tokens >= 600 ? 3 : 1), "%d marked tokens", e->n_tok_marks);
    run_until_idle(e, 500);
    ASSERT(engine_submit(e, &gc, &tc) == STATUS_OK);
    run_until_idle(e, 500);
    drain(ta, got, 8, &la, &da);
    nc = drain(tc, got, 8, &lc, &dc);
    EXPECT(nc == 6 && !memcmp(got, want_a, sizeof want_a) && lc.n_cached == 0);
    // and the log-probabilities of the resume above, bit for bit
    struct gen_request ge = greedy_req(a, 600, 6);
    ge.msg_ends = ends_a;
    ge.n_msg_ends = 2;
    ge.n_logprobs = -1;
    struct token_stream *te;
    float no_store_lp[8];
    ASSERT(engine_submit(e, &ge, &te) == STATUS_OK);
    run_until_idle(e, 500);
    EXPECT(drain_logprobs(te, no_store_lp, 8) == 6 && !memcmp(no_store_lp, got_lp, 6 * sizeof(float)));
    token_stream_release(te);
    token_stream_release(ta);
    token_stream_release(tc);
    engine_free(e);
}

/* A snapshot pool of 8 slots: a request takes at most 2 snapshots, its prompt's end and its first
 * message's end, not the deeper message ends between them. */
TEST(snapshot_budget_per_request)
{
    static int32_t a[600], b[600];
    int32_t want_a[4], want_b[4], got[8];
    shared_prompts(63, a, b, 4, want_a, want_b);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 1024;
    cfg.kv_cache_bytes = 4 << 20;
    cfg.state_cache_bytes = 8 * model_seq_state_bytes(&g_m->hp, DTYPE_F32);
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    ASSERT(e->snaps && e->snaps->n_slots == 8);
    int32_t ends[4] = { 130, 230, 330, 420 };   // positions 128, 224, 320, 416 and the prompt end 592
    struct gen_request ga = greedy_req(a, 600, 4), gb = greedy_req(b, 600, 4), gc = greedy_req(a, 600, 4);
    ga.msg_ends = ends;
    ga.n_msg_ends = 4;
    struct token_stream *ta, *tb, *tc;
    ASSERT(engine_submit(e, &ga, &ta) == STATUS_OK);
    run_until_idle(e, 500);
    EXPECTF(kv_prefix_n_snaps_used(e->px) == 2, "%d snapshots", kv_prefix_n_snaps_used(e->px));
    ASSERT(engine_submit(e, &gb, &tb) == STATUS_OK);   // shares 450 tokens: resumes at 128, not 416
    run_until_idle(e, 500);
    ASSERT(engine_submit(e, &gc, &tc) == STATUS_OK);   // the same prompt: resumes at 592
    run_until_idle(e, 500);
    struct token_event la = { 0 }, lb = { 0 }, lc = { 0 };
    int da, db, dc;
    EXPECT(drain(ta, got, 8, &la, &da) == 4 && !memcmp(got, want_a, sizeof want_a));
    EXPECT(drain(tb, got, 8, &lb, &db) == 4 && !memcmp(got, want_b, sizeof want_b));
    EXPECT(drain(tc, got, 8, &lc, &dc) == 4 && !memcmp(got, want_a, sizeof want_a));
    EXPECTF(lb.n_cached == 128 && lc.n_cached == 592, "cached %d %d", lb.n_cached, lc.n_cached);
    token_stream_release(ta);
    token_stream_release(tb);
    token_stream_release(tc);
    engine_free(e);
}

TEST(prefix_cache_resumes_from_snapshots)
{
    resume_from_snapshots(128);
    resume_from_snapshots(1024);
}

int main(void)
{
    fixture_init();   // the tiny Qwen3 and the cpu backend; the model is swapped for the hybrid
    model_free(g_m);
    CHECK(model_synthesize("tests/engine/tiny_qwen35_moe.json", 7, &g_m) == STATUS_OK, "cannot synthesize");
    CHECK(model_prepare(g_m, g_be) == STATUS_OK, "model_prepare failed");
    RUN(staggered_equal_solo);
    RUN(preemption_keeps_outputs);
    RUN(state_pool_exhaustion_waits);
    RUN(cancel_returns_slots_and_blocks);
    RUN(prefix_cache_resumes_from_snapshots);
    RUN(snapshot_budget_per_request);
    fixture_deinit();
    return test_summary();
}
