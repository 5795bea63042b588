/* test_engine: the batching engine on a tiny synthesized Qwen3 (cpu backend, 2 threads), driven by
 * engine_step on this thread: batch invariance against solo runs, preemption under a tiny KV
 * budget, prefix-cache hits, cancel/end-on-stop-string freeing every block, queue bound, rejections, stop
 * rules, ignore_eos, logprobs, and n > 1 choices sharing the prompt. */
#include "fixture.h"
#include "harness.h"

#include "jobs.h"

static void track_step_tokens(struct engine *e, void *most)
{
    struct engine_stats st;
    engine_get_stats(e, &st);
    if (st.last_step_tokens > *(int *)most) *(int *)most = st.last_step_tokens;
}

/* 20 requests, prompt lengths 1..400, 4-24 new tokens, arriving over the first steps; every
 * output must equal its solo greedy run (the runner: one sequence, no batching). max_itl_ms > 0
 * paces the prefill chunks from measured step times (engine/pace.h) instead of the static rule. */
static void staggered_case(double max_itl_ms)
{
    enum { N = 20 };
    static struct job jobs[N];
    struct rng r;
    rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        int n_prompt = i == 0 ? 1 : 1 + (int)(rng_next(&r) % 400);
        int max_tokens = 4 + (int)(rng_next(&r) % 21);
        job_init(&jobs[i], 100 + (uint64_t)i, n_prompt, max_tokens);
    }
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 96;
    cfg.max_running = 16;
    cfg.kv_cache_bytes = 8 << 20;
    cfg.max_itl_ms = max_itl_ms;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    int max_step_tok = 0;
    ASSERT(jobs_run_arrivals(e, jobs, N, &r, 2000, track_step_tokens, &max_step_tok));
    for (int i = 0; i < N; i++) {
        struct job *j = &jobs[i];
        EXPECTF(j->last.finish == FINISH_LENGTH && j->last.n_prompt == j->n_prompt && j->last.n_generated == j->max_tokens,
                "request %d: finish %d after %d of %d tokens", i, j->last.finish, j->last.n_generated, j->max_tokens);
    }
    int bad = jobs_check(jobs, N);
    EXPECTF(bad == 0, "%d of %d outputs differ from their solo runs", bad, N);
    EXPECT(max_step_tok <= 96 && max_step_tok > 16);   // budget respected, and batches really mixed
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECT(st.kv_blocks_used == 0 && st.n_running == 0 && st.n_waiting == 0);
    engine_free(e);
}

TEST(batch_invariance_staggered) { staggered_case(0); }
/* a target of 1 us cannot be met: once measured, every mixed step carries one 16-token chunk */
TEST(batch_invariance_staggered_paced) { staggered_case(0.001); }

/* Request i of preemption_tiny_kv: half of them sample, with a seed of their own. */
static struct gen_request preemption_req(const struct job *j, int i)
{
    struct gen_request g = greedy_req(j->prompt, j->n_prompt, j->max_tokens);
    if (i % 2) {
        g.sampling.temperature = 0.8f;
        g.sampling.top_p = 0.9f;
        g.sampling.seed = 1000 + (uint64_t)i;
        g.sampling.has_seed = true;
    }
    return g;
}

/* 10 requests whose total need is ~3x the cache: preemption must happen and every output must
 * still equal its solo run; sampled requests (seeded) must equal the same request run alone, on
 * an engine that samples on the engine thread alone (the batched one uses 3 sampling threads). */
TEST(preemption_tiny_kv)
{
    enum { N = 10 };
    static struct job jobs[N];
    for (int i = 0; i < N; i++) job_init(&jobs[i], 500 + (uint64_t)i, 40 + 7 * i, 48);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 64;
    cfg.max_running = 10;
    cfg.kv_cache_bytes = model_kv_bytes_per_token(g_m, DTYPE_F32) * 16 * 20;   // 20 blocks = 320 tokens
    cfg.sample_threads = 3;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct engine_stats st;
    engine_get_stats(e, &st);
    ASSERT(st.kv_blocks_total == 20);
    for (int i = 0; i < N; i++) {
        struct gen_request g = preemption_req(&jobs[i], i);
        ASSERT(engine_submit(e, &g, &jobs[i].ts) == STATUS_OK);
    }
    run_until_idle(e, 5000);
    engine_get_stats(e, &st);
    EXPECTF(st.preemptions > 0, "no preemption happened");
    fprintf(stderr, "  %llu preemptions\n", (unsigned long long)st.preemptions);
    for (int i = 0; i < N; i++) job_collect(&jobs[i]);
    // the sampled ones again, alone, on a roomy engine
    struct engine_cfg big = engine_cfg_default();
    big.kv_cache_bytes = 4 << 20;
    big.sample_threads = 1;
    struct engine *e2;
    ASSERT(engine_new(&big, g_m, g_be, &e2) == STATUS_OK);
    for (int i = 1; i < N; i += 2) {   // the sampled ones' wanted output: their run alone
        struct job *j = &jobs[i];
        struct gen_request g = preemption_req(j, i);
        struct token_stream *ts;
        ASSERT(engine_submit(e2, &g, &ts) == STATUS_OK);
        run_until_idle(e2, 1000);
        int done;
        int n = drain(ts, j->want, JOB_MAX_GEN, NULL, &done);
        EXPECT(done && n == j->max_tokens);
        token_stream_release(ts);
    }
    int bad = jobs_check(jobs, N);
    EXPECTF(bad == 0, "%d outputs changed by preemption", bad);
    engine_get_stats(e, &st);
    EXPECT(st.kv_blocks_used == 0);
    engine_free(e2);
    engine_free(e);
}

/* A second request sharing a 1,000-token prefix reports the cached tokens and decodes the same
 * tokens as without the cache. */
TEST(prefix_hit_same_tokens)
{
    static int32_t p1[1100], p2[1100];
    random_prompt(42, p1, 1000);
    memcpy(p2, p1, 1000 * sizeof(int32_t));
    random_prompt(43, p1 + 1000, 60);
    random_prompt(44, p2 + 1000, 80);
    int32_t want[16], got[16];
    solo_greedy(p2, 1080, 16, want);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 256;
    cfg.kv_cache_bytes = 16 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct gen_request g1 = greedy_req(p1, 1060, 4), g2 = greedy_req(p2, 1080, 16);
    struct token_stream *t1, *t2;
    ASSERT(engine_submit(e, &g1, &t1) == STATUS_OK);
    run_until_idle(e, 1000);
    struct engine_stats s0;
    engine_get_stats(e, &s0);
    EXPECT(s0.kv_blocks_used == 0 && s0.kv_blocks_cached == 1060 / 16);   // finished: blocks stay cached
    ASSERT(engine_submit(e, &g2, &t2) == STATUS_OK);
    run_until_idle(e, 1000);
    struct token_event l1 = { 0 }, l2 = { 0 };
    int d1, d2;
    drain(t1, got, 16, &l1, &d1);
    int n = drain(t2, got, 16, &l2, &d2);
    EXPECT(d1 && d2 && l1.n_cached == 0);
    EXPECTF(l2.n_cached == 992, "cached %d", l2.n_cached);   // 62 full blocks of the shared 1,000 tokens
    EXPECT(n == 16 && !memcmp(got, want, sizeof want));
    struct engine_stats s1;
    engine_get_stats(e, &s1);
    EXPECT(s1.prefix_hit_tokens - s0.prefix_hit_tokens == 992 && s1.prefix_lookups == 2);
    // a different cache_salt shares nothing
    struct gen_request g3 = greedy_req(p2, 1080, 2);
    g3.cache_salt = 77;
    struct token_stream *t3;
    ASSERT(engine_submit(e, &g3, &t3) == STATUS_OK);
    run_until_idle(e, 1000);
    struct token_event l3 = { 0 };
    int d3;
    drain(t3, got, 16, &l3, &d3);
    EXPECT(d3 && l3.n_cached == 0);
    token_stream_release(t1);
    token_stream_release(t2);
    token_stream_release(t3);
    engine_free(e);
}

static void expect_blocks_in_use(struct engine *e, void *unused)
{
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECT(st.kv_blocks_used > 0);
}

static void cancel_case(bool prefix_cache, bool mid_decode)
{
    static int32_t p[700];
    random_prompt(9, p, 700);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 64;
    cfg.kv_cache_bytes = 8 << 20;
    cfg.prefix_cache = prefix_cache;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct engine_stats base, st;
    engine_get_stats(e, &base);
    struct cancel_run c = { .prompt = p, .n_prompt = 700, .max_tokens = 200,
                            .neighbour = p + 100, .n_neighbour = 30,   // keeps running
                            .steps = mid_decode ? 700 / 60 + 8 : 3, .mid_decode = mid_decode };
    cancel_midway(e, &c, expect_blocks_in_use, NULL);
    engine_get_stats(e, &st);
    EXPECTF(st.kv_blocks_used == base.kv_blocks_used && st.n_running == 0, "used %d", st.kv_blocks_used);
    EXPECT(st.kv_blocks_free + st.kv_blocks_cached == st.kv_blocks_total);
    if (!prefix_cache) EXPECT(st.kv_blocks_free == st.kv_blocks_total);
    engine_free(e);
}

TEST(cancel_mid_prefill_frees_blocks) { cancel_case(true, false); cancel_case(false, false); }
TEST(cancel_mid_decode_frees_blocks) { cancel_case(true, true); cancel_case(false, true); }

TEST(finish_from_server_stop_string)
{
    int32_t p[20];
    random_prompt(11, p, 20);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = 1 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct gen_request g = greedy_req(p, 20, 100);
    struct token_stream *ts;
    ASSERT(engine_submit(e, &g, &ts) == STATUS_OK);
    for (int i = 0; i < 5; i++) engine_step(e);
    engine_end_on_stop_string(e, ts);
    run_until_idle(e, 100);
    int32_t got[128];
    int done;
    struct token_event last = { 0 };
    int n = drain(ts, got, 128, &last, &done);
    EXPECT(done && last.finish == FINISH_STOP_MATCHED && n == 5 && last.stop_token == -1);
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECT(st.kv_blocks_used == 0);
    token_stream_release(ts);
    engine_free(e);
}

TEST(queue_bound_ebusy)
{
    int32_t p[8] = { 5, 6, 7, 8, 9, 10, 11, 12 };
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = 1 << 20;
    cfg.max_queue = 4;
    cfg.max_running = 2;   // 2 free running slots + 4 waiting beyond them
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct token_stream *ts[40];
    int ok = 0, busy = 0;
    char msg[200];
    for (int i = 0; i < 40; i++) {
        struct gen_request g = greedy_req(p, 8, 3);
        enum status st = engine_submit_msg(e, &g, &ts[ok], msg, sizeof msg);
        if (st == STATUS_OK) ok++;
        else if (st == STATUS_EBUSY) busy++;
    }
    EXPECTF(ok == 6 && busy == 34 && strstr(msg, "full") != NULL, "ok %d busy %d", ok, busy);
    run_until_idle(e, 100);
    int finished = 0;
    for (int i = 0; i < ok; i++) {
        int32_t got[8];
        int done;
        struct token_event last = { 0 };
        drain(ts[i], got, 8, &last, &done);
        finished += done && last.finish == FINISH_LENGTH && last.n_generated == 3;
        token_stream_release(ts[i]);
    }
    EXPECT(finished == 6);
    // the queue drains: room again
    struct gen_request g = greedy_req(p, 8, 3);
    struct token_stream *t;
    EXPECT(engine_submit(e, &g, &t) == STATUS_OK);
    token_stream_release(t);
    engine_free(e);
}

TEST(rejections_too_long)
{
    static int32_t p[5000];
    random_prompt(1, p, 5000);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = model_kv_bytes_per_token(g_m, DTYPE_F32) * 16 * 10;   // 160 tokens
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    char msg[256];
    struct token_stream *ts;
    struct gen_request g = greedy_req(p, 4096, 1);   // max_pos 4096: no room for a generated token
    EXPECT(engine_submit_msg(e, &g, &ts, msg, sizeof msg) == STATUS_ETOOLONG);
    EXPECTF(strstr(msg, "4096") && strstr(msg, "context"), "%s", msg);
    g = greedy_req(p, 200, 1);   // fits the context, not the cache
    EXPECT(engine_submit_msg(e, &g, &ts, msg, sizeof msg) == STATUS_ETOOLONG);
    EXPECTF(strstr(msg, "200") && strstr(msg, "10 blocks"), "%s", msg);
    g = greedy_req(p, 0, 1);
    EXPECT(engine_submit(e, &g, &ts) == STATUS_EINVAL);
    int32_t bad[2] = { 1, 9999 };
    g = greedy_req(bad, 2, 1);
    EXPECT(engine_submit(e, &g, &ts) == STATUS_EINVAL);
    // max_tokens past the cache ends with LENGTH at the context limit, never truncating silently
    g = greedy_req(p, 150, 100);
    ASSERT(engine_submit(e, &g, &ts) == STATUS_OK);
    run_until_idle(e, 100);
    int32_t got[128];
    int done;
    struct token_event last = { 0 };
    int n = drain(ts, got, 128, &last, &done);
    EXPECT(done && last.finish == FINISH_LENGTH && n == 10);
    token_stream_release(ts);
    engine_free(e);
}

TEST(stop_ids_eos_logprobs)
{
    int32_t p[30], want[12];
    random_prompt(21, p, 30);
    solo_greedy(p, 30, 12, want);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = 1 << 20;
    cfg.sample_threads = 2;   // log-probabilities come back from the sampling threads
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    int k = 3;
    while (k < 11 && (want[k] == want[0] || want[k] == want[1] || want[k] == want[2])) k++;
    // a stop id: tokens before it are emitted, the stop token is reported, not emitted
    struct gen_request g1 = greedy_req(p, 30, 12);
    g1.stop_ids = &want[k];
    g1.n_stop_ids = 1;
    // ignore_eos: the model's EOS id (forced by a logit bias) is emitted like any token
    struct gen_request g2 = greedy_req(p, 30, 3);
    struct logit_bias eos_bias = { g_m->hp.eos_ids[0], 1000.0f };
    g2.sampling.bias = &eos_bias;
    g2.sampling.n_bias = 1;
    g2.ignore_eos = true;
    struct gen_request g3 = greedy_req(p, 30, 5);
    g3.n_logprobs = 3;
    struct gen_request g4 = greedy_req(p, 30, 5);   // EOS ids stop unless ignore_eos
    g4.sampling.bias = &eos_bias;
    g4.sampling.n_bias = 1;
    g4.ignore_eos = false;
    struct gen_request g5 = greedy_req(p, 30, 6);   // min_tokens: EOS (forced) masked for 3 tokens, then it stops
    g5.sampling.bias = &eos_bias;
    g5.sampling.n_bias = 1;
    g5.min_tokens = 3;
    g5.ignore_eos = false;
    struct gen_request g6 = greedy_req(p, 30, 12);  // min_tokens past the stop id: the stop id is masked too
    g6.stop_ids = &want[k];
    g6.n_stop_ids = 1;
    g6.min_tokens = k + 1;
    struct token_stream *t1, *t2, *t3, *t4, *t5, *t6;
    ASSERT(engine_submit(e, &g5, &t5) == STATUS_OK);
    ASSERT(engine_submit(e, &g6, &t6) == STATUS_OK);
    ASSERT(engine_submit(e, &g1, &t1) == STATUS_OK);
    ASSERT(engine_submit(e, &g2, &t2) == STATUS_OK);
    ASSERT(engine_submit(e, &g3, &t3) == STATUS_OK);
    ASSERT(engine_submit(e, &g4, &t4) == STATUS_OK);
    run_until_idle(e, 100);
    int32_t got[16];
    int done;
    struct token_event last = { 0 };
    int n = drain(t1, got, 16, &last, &done);
    EXPECTF(done && last.finish == FINISH_STOP_MATCHED && n == k && last.stop_token == want[k] && last.n_generated == k + 1,
            "n %d k %d stop %d", n, k, last.stop_token);
    EXPECT(!memcmp(got, want, sizeof(int32_t) * (size_t)k));
    n = drain(t2, got, 16, &last, &done);
    EXPECT(done && last.finish == FINISH_LENGTH && n == 3 && got[0] == g_m->hp.eos_ids[0] && got[2] == g_m->hp.eos_ids[0]);
    struct token_event ev;
    int n_ev = 0, lp_ok = 1;
    while (token_stream_next(t3, &ev, 0) == STATUS_OK) {
        if (ev.has_token) {
            n_ev++;
            lp_ok &= ev.n_top == 3 && ev.top[0].id == ev.token && ev.logprob <= 0.0f &&
                     ev.top[0].logprob >= ev.top[1].logprob && ev.top[1].logprob >= ev.top[2].logprob &&
                     fabsf(ev.logprob - ev.top[0].logprob) < 1e-6f && ev.token == want[n_ev - 1];
        }
        if (ev.done) break;
    }
    EXPECT(n_ev == 5 && lp_ok);
    n = drain(t4, got, 16, &last, &done);
    EXPECT(done && n == 0 && last.finish == FINISH_STOP_MATCHED && last.stop_token == g_m->hp.eos_ids[0] && !last.has_token);
    n = drain(t5, got, 16, &last, &done);
    bool no_eos = true;
    for (int i = 0; i < n; i++) no_eos &= got[i] != g_m->hp.eos_ids[0];
    EXPECTF(done && n == 3 && no_eos && last.finish == FINISH_STOP_MATCHED && last.stop_token == g_m->hp.eos_ids[0], "min_tokens: n %d", n);
    n = drain(t6, got, 16, &last, &done);
    bool stop_masked = true;
    for (int i = 0; i < n && i <= k; i++) stop_masked &= got[i] != want[k];
    EXPECTF(done && n >= k + 1 && stop_masked, "min_tokens past a stop id: n %d k %d", n, k);
    struct gen_request g7 = greedy_req(p, 30, 3);
    g7.min_tokens = -1;
    struct token_stream *t7;
    EXPECT(engine_submit(e, &g7, &t7) == STATUS_EINVAL);
    token_stream_release(t5);
    token_stream_release(t6);
    token_stream_release(t1);
    token_stream_release(t2);
    token_stream_release(t3);
    token_stream_release(t4);
    engine_free(e);
}

/* n > 1 choices: four requests with the same 300-token prompt submitted together compute the
 * prompt once; the others wait for its blocks and hit them. */
TEST(n_choices_share_prompt)
{
    static int32_t p[300];
    random_prompt(77, p, 300);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 64;
    cfg.kv_cache_bytes = 8 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct token_stream *ts[4];
    for (int i = 0; i < 4; i++) {
        struct gen_request g = greedy_req(p, 300, 6);
        g.sampling.temperature = 1.0f;   // different choices
        ASSERT(engine_submit(e, &g, &ts[i]) == STATUS_OK);
    }
    run_until_idle(e, 200);
    int cached = 0, done_all = 1;
    for (int i = 0; i < 4; i++) {
        int32_t got[8];
        int done;
        struct token_event last = { 0 };
        drain(ts[i], got, 8, &last, &done);
        done_all &= done;
        cached += last.n_cached;
        token_stream_release(ts[i]);
    }
    EXPECT(done_all);
    EXPECTF(cached == 3 * 288, "cached %d", cached);   // 18 full blocks of the 300-token prompt, 3 times
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECT(st.prompt_tokens == 1200 && st.prefix_hit_tokens == 3 * 288);
    engine_free(e);
}

/* While a stream decodes, a long prompt's chunks shrink as its context grows (attention-work cap),
 * the stream gets a token every step, and the long request's output is unchanged. */
TEST(long_prefill_chunks_shrink_with_context)
{
    static int32_t pa[32], pl[1000];
    random_prompt(71, pa, 32);
    random_prompt(72, pl, 1000);
    int32_t want[3], got[8];
    solo_greedy(pl, 1000, 3, want);
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 128;
    cfg.max_prefill_pairs = 128 * 128;
    cfg.kv_cache_bytes = 8 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct gen_request ga = greedy_req(pa, 32, 400), gl = greedy_req(pl, 1000, 3);
    struct token_stream *ta, *tl;
    ASSERT(engine_submit(e, &ga, &ta) == STATUS_OK);
    engine_step(e);
    int d0;
    EXPECT(drain(ta, got, 8, NULL, &d0) == 1);
    ASSERT(engine_submit(e, &gl, &tl) == STATUS_OK);
    int steps = 0, first = 0, last = 0, starved = 0, done_l = 0, n_l = 0;
    int32_t out_l[8];
    struct token_event ll = { 0 };
    while (!done_l && steps < 400) {
        engine_step(e);
        steps++;
        struct engine_stats st;
        engine_get_stats(e, &st);
        if (steps == 1) first = st.last_step_tokens;
        last = st.last_step_tokens;
        int d, n_a = drain(ta, got, 8, NULL, &d);
        starved += n_a != 1;
        n_l += drain(tl, out_l + n_l, 8 - n_l, &ll, &done_l);
    }
    EXPECTF(first == 128 && starved == 0, "first step %d tokens, %d steps without a stream token", first, starved);
    EXPECTF(last < 40 && steps > 1000 / 127 + 2, "last step %d tokens after %d steps", last, steps);
    EXPECT(done_l && n_l == 3 && !memcmp(out_l, want, sizeof want));
    engine_free(e);   // ends the stream (canceled)
    token_stream_release(ta);
    token_stream_release(tl);
}

int main(void)
{
    fixture_init();
    RUN(batch_invariance_staggered);
    RUN(batch_invariance_staggered_paced);
    RUN(preemption_tiny_kv);
    RUN(prefix_hit_same_tokens);
    RUN(cancel_mid_prefill_frees_blocks);
    RUN(cancel_mid_decode_frees_blocks);
    RUN(finish_from_server_stop_string);
    RUN(queue_bound_ebusy);
    RUN(rejections_too_long);
    RUN(stop_ids_eos_logprobs);
    RUN(n_choices_share_prompt);
    RUN(long_prefill_chunks_shrink_with_context);
    fixture_deinit();
    return test_summary();
}
