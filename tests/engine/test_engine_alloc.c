/* test_engine_alloc: engine_step allocates nothing in steady state (STYLE.md: allocate at init).
 *
 * This binary interposes malloc/calloc/realloc (forwarding to glibc's __libc_* entry points) and
 * counts calls made while engine_step runs, on any thread (the cpu backend's workers included):
 * admission, prefill chunks, decodes, sampling with penalties and logprobs, preemption and
 * finishing must all be allocation-free once the engine and the requests exist. Under ASan/TSan
 * the interposition would fight the sanitizer's allocator, so there the counting is off and the
 * test says so (the rest still runs). */
#include <stdatomic.h>

#include "fixture.h"
#include "harness.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define COUNT_ALLOCS 0
static long allocs_now(void) { return 0; }
#else
#define COUNT_ALLOCS 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static atomic_long g_allocs;
void *malloc(size_t n) { atomic_fetch_add(&g_allocs, 1); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { atomic_fetch_add(&g_allocs, 1); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { atomic_fetch_add(&g_allocs, 1); return __libc_realloc(p, n); }
static long allocs_now(void) { return atomic_load(&g_allocs); }
#endif

static long g_in_step, g_in_submit;

static bool counted_step(struct engine *e)
{
    long a = allocs_now();
    bool worked = engine_step(e);
    g_in_step += allocs_now() - a;
    return worked;
}

static void workload(struct engine *e, uint64_t seed)
{
    enum { N = 8 };
    static int32_t p[N][300];
    struct token_stream *ts[N];
    for (int i = 0; i < N; i++) {
        int n = 20 + 35 * i;
        random_prompt(seed + (uint64_t)i, p[i], n);
        struct gen_request g = greedy_req(p[i], n, 64);
        if (i % 3 == 1) {   // the full sampler: penalties, top-k/p, logprobs
            g.sampling.temperature = 0.7f;
            g.sampling.top_k = 50;
            g.sampling.top_p = 0.9f;
            g.sampling.repetition_penalty = 1.1f;
            g.sampling.frequency_penalty = 0.2f;
            g.n_logprobs = 5;
        }
        long a = allocs_now();
        CHECK(engine_submit(e, &g, &ts[i]) == STATUS_OK, "submit");
        g_in_submit += allocs_now() - a;   // submit allocates (the request), which proves the counter works
        counted_step(e);   // arrivals between steps
    }
    while (counted_step(e)) {}
    for (int i = 0; i < N; i++) token_stream_release(ts[i]);
}

TEST(engine_step_allocates_nothing)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 64;
    cfg.max_running = 8;
    cfg.kv_cache_bytes = model_kv_bytes_per_token(g_m, DTYPE_F32) * 16 * 24;   // tight: preemptions too
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    workload(e, 1);   // warm-up: lazy one-time state (stdio, thread pools) may allocate here
    g_in_step = 0;
    workload(e, 100);
    struct engine_stats st;
    engine_get_stats(e, &st);
    EXPECT(st.requests_done == 16 && st.kv_blocks_used == 0);
    if (COUNT_ALLOCS) {
        EXPECTF(g_in_step == 0, "%ld allocations inside engine_step", g_in_step);
        EXPECT(g_in_submit > 0);
        EXPECT(st.preemptions > 0);
        fprintf(stderr, "  %llu steps, %llu preemptions, %ld allocations in engine_step\n",
                (unsigned long long)st.steps, (unsigned long long)st.preemptions, g_in_step);
    } else {
        fprintf(stderr, "  NOTE: allocation counting is off under sanitizers (the run itself was checked)\n");
    }
    engine_free(e);
}

int main(void)
{
    fixture_init();
    RUN(engine_step_allocates_nothing);
    fixture_deinit();
    return test_summary();
}
