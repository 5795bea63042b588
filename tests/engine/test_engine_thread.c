/* test_engine_thread: the engine on its own thread (engine_start) with several client threads that
 * submit, read their streams concurrently, cancel, and flood the queue: outputs equal solo runs,
 * refused submissions are EBUSY (max_queue counts only what waits beyond the free running slots),
 * and every block comes back. Liveness: the heartbeat in engine_get_stats stays fresh through a
 * long step that progresses layer by layer, goes stale in a step that hangs and in an engine whose
 * thread does not take a submitted request, and an idle engine is never stalled (the backend's
 * rmsnorm is wrapped here to make steps slow or hang). Meant for `make tsan` as well. */
#include <pthread.h>
#include <stdatomic.h>

#include "base/clock.h"
#include "fixture.h"
#include "harness.h"

enum { N_CLIENTS = 4, PER_CLIENT = 4, MAXG = 24 };

struct client {
    int              idx;
    struct engine   *e;
    int              mismatches;
    int              unfinished;
    int              busy;
    int              canceled_ok;
};

static int32_t g_prompts[N_CLIENTS * PER_CLIENT][260];
static int     g_len[N_CLIENTS * PER_CLIENT];
static int32_t g_want[N_CLIENTS * PER_CLIENT][MAXG];

static void *client_main(void *arg)
{
    struct client *c = arg;
    struct token_stream *ts[PER_CLIENT];
    for (int k = 0; k < PER_CLIENT; k++) {
        int i = c->idx * PER_CLIENT + k;
        struct gen_request g = greedy_req(g_prompts[i], g_len[i], MAXG);
        enum status st;
        while ((st = engine_submit(c->e, &g, &ts[k])) == STATUS_EBUSY) {
            c->busy++;
            struct timespec d = { 0, 2000000 };
            nanosleep(&d, NULL);
        }
        CHECK(st == STATUS_OK, "submit failed: %s", status_str(st));
    }
    // the last request of each client is canceled after its first token
    for (int k = 0; k < PER_CLIENT; k++) {
        int i = c->idx * PER_CLIENT + k;
        int32_t got[MAXG];
        int n = 0;
        struct token_event ev;
        bool cancel = k == PER_CLIENT - 1, done = false;
        while (!done && token_stream_next(ts[k], &ev, 20000) == STATUS_OK) {
            if (ev.has_token && n < MAXG) got[n++] = ev.token;
            if (cancel && n == 1) engine_cancel(c->e, ts[k]);
            if (ev.done) {
                done = true;
                if (cancel) c->canceled_ok += ev.finish == FINISH_CANCELED || (ev.finish == FINISH_LENGTH && n == MAXG);
                else if (ev.finish != FINISH_LENGTH || n != MAXG || memcmp(got, g_want[i], sizeof got)) c->mismatches++;
            }
        }
        if (!done) c->unfinished++;
        token_stream_release(ts[k]);
    }
    return NULL;
}

TEST(threaded_clients_match_solo)
{
    for (int i = 0; i < N_CLIENTS * PER_CLIENT; i++) {
        g_len[i] = 10 + (i * 37) % 250;
        random_prompt(300 + (uint64_t)i, g_prompts[i], g_len[i]);
        solo_greedy(g_prompts[i], g_len[i], MAXG, g_want[i]);
    }
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_batch_tokens = 64;
    cfg.max_running = 8;
    cfg.max_queue = 6;   // smaller than the 16 requests: clients see EBUSY and retry
    cfg.kv_cache_bytes = model_kv_bytes_per_token(g_m, DTYPE_F32) * 16 * 60;   // tight: preemption likely
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    ASSERT(engine_start(e) == STATUS_OK);
    struct client c[N_CLIENTS];
    pthread_t th[N_CLIENTS];
    for (int i = 0; i < N_CLIENTS; i++) {
        c[i] = (struct client){ .idx = i, .e = e };
        pthread_create(&th[i], NULL, client_main, &c[i]);
    }
    int mism = 0, unfin = 0, busy = 0, canc = 0;
    for (int i = 0; i < N_CLIENTS; i++) {
        pthread_join(th[i], NULL);
        mism += c[i].mismatches;
        unfin += c[i].unfinished;
        busy += c[i].busy;
        canc += c[i].canceled_ok;
    }
    EXPECTF(mism == 0 && unfin == 0, "%d mismatches, %d unfinished", mism, unfin);
    EXPECT(canc == N_CLIENTS);
    fprintf(stderr, "  %d EBUSY retries\n", busy);
    // the engine thread settles: all blocks back
    struct engine_stats st;
    double t0 = clock_now_s();
    do {
        engine_get_stats(e, &st);
    } while ((st.kv_blocks_used != 0 || st.n_running != 0) && clock_now_s() - t0 < 5.0);
    EXPECT(st.kv_blocks_used == 0 && st.n_running == 0 && st.n_waiting == 0);
    EXPECT(st.steps > 0 && st.generated_tokens > 0);
    engine_shutdown(e);
    engine_free(e);
}

/* A flood from several threads at once against a stopped engine: exactly max_queue accepted. */
struct flood { struct engine *e; int ok; int busy; struct token_stream *ts[64]; };

static void *flood_main(void *arg)
{
    struct flood *f = arg;
    int32_t p[4] = { 5, 6, 7, 8 };
    for (int i = 0; i < 50; i++) {
        struct gen_request g = greedy_req(p, 4, 2);
        struct token_stream *ts;
        enum status st = engine_submit(f->e, &g, &ts);
        if (st == STATUS_OK) f->ts[f->ok++] = ts;
        else if (st == STATUS_EBUSY) f->busy++;
    }
    return NULL;
}

TEST(flood_from_threads)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_queue = 10;
    cfg.max_running = 8;   // 8 free slots + 10 queued
    cfg.kv_cache_bytes = 1 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    struct flood f[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        f[i] = (struct flood){ .e = e };
        pthread_create(&th[i], NULL, flood_main, &f[i]);
    }
    int ok = 0, busy = 0;
    for (int i = 0; i < 4; i++) { pthread_join(th[i], NULL); ok += f[i].ok; busy += f[i].busy; }
    EXPECTF(ok == 18 && busy == 182, "ok %d busy %d", ok, busy);
    ASSERT(engine_start(e) == STATUS_OK);
    int done_all = 1;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < f[i].ok; k++) {
            struct token_event ev;
            int done = 0;
            while (!done && token_stream_next(f[i].ts[k], &ev, 20000) == STATUS_OK) done = ev.done;
            done_all &= done && ev.finish == FINISH_LENGTH;
            token_stream_release(f[i].ts[k]);
        }
    EXPECT(done_all);
    engine_shutdown(e);
    engine_free(e);
}

/* Streams released or left open at engine_free end cleanly (no leak, no hang). */
TEST(free_with_open_requests)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = 1 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    int32_t p[40];
    random_prompt(5, p, 40);
    struct gen_request g = greedy_req(p, 40, 1000);
    struct token_stream *a, *b;
    ASSERT(engine_submit(e, &g, &a) == STATUS_OK);
    ASSERT(engine_submit(e, &g, &b) == STATUS_OK);
    ASSERT(engine_start(e) == STATUS_OK);
    struct token_event ev;
    EXPECT(token_stream_next(a, &ev, 20000) == STATUS_OK && ev.has_token);
    token_stream_release(b);   // client gone: canceled
    engine_free(e);            // a is still open: ends canceled
    int done = 0;
    while (!done && token_stream_next(a, &ev, 1000) == STATUS_OK) done = ev.done;
    EXPECT(done && ev.finish == FINISH_CANCELED);
    token_stream_release(a);
}

/* --max-queue 32 with 64 free running slots: 96 of 128 requests are taken, 32 refused. */
TEST(queue_beyond_free_slots)
{
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_queue = 32;
    cfg.max_running = 64;
    cfg.kv_cache_bytes = 4 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    int32_t p[4] = { 5, 6, 7, 8 };
    struct token_stream *ts[128];
    int ok = 0, busy = 0;
    for (int i = 0; i < 128; i++) {
        struct gen_request g = greedy_req(p, 4, 2);
        enum status st = engine_submit(e, &g, &ts[ok]);
        if (st == STATUS_OK) ok++;
        else busy += st == STATUS_EBUSY;
    }
    EXPECTF(ok == 96 && busy == 32, "ok %d busy %d", ok, busy);
    ASSERT(engine_start(e) == STATUS_OK);
    int done_all = 1;
    for (int k = 0; k < ok; k++) {
        struct token_event ev;
        int done = 0;
        while (!done && token_stream_next(ts[k], &ev, 20000) == STATUS_OK) done = ev.done;
        done_all &= done && ev.finish == FINISH_LENGTH;
        token_stream_release(ts[k]);
    }
    EXPECT(done_all);
    engine_shutdown(e);
    engine_free(e);
}

/* ==== Liveness ==== */

enum slow_mode { SLOW_OFF, SLOW_SLEEP, SLOW_HANG };
static _Atomic int               g_slow = SLOW_OFF;
static pthread_mutex_t           g_hang_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t            g_hang_cv = PTHREAD_COND_INITIALIZER;
static const struct backend_ops *g_real_ops;
static struct backend_ops        g_slow_ops;
#define SLOW_NORM_MS 150   // per rmsnorm call: an attention block (3 calls: input, q, k norms) 450 ms, a step 1.35 s

static void slow_rmsnorm(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                         float eps, float w_offset)
{
    if (atomic_load(&g_slow) == SLOW_SLEEP) {
        struct timespec d = { 0, SLOW_NORM_MS * 1000000L };
        nanosleep(&d, NULL);
    }
    pthread_mutex_lock(&g_hang_mu);
    while (atomic_load(&g_slow) == SLOW_HANG) pthread_cond_wait(&g_hang_cv, &g_hang_mu);
    pthread_mutex_unlock(&g_hang_mu);
    g_real_ops->rmsnorm(be, out, x, w, eps, w_offset);
}

static void set_slow(int mode)
{
    pthread_mutex_lock(&g_hang_mu);
    atomic_store(&g_slow, mode);
    pthread_cond_broadcast(&g_hang_cv);
    pthread_mutex_unlock(&g_hang_mu);
}

static void sleep_ms(int ms)
{
    struct timespec d = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&d, NULL);
}

#define STALL_S 0.7   // the health threshold these tests use (--stall-seconds)

TEST(liveness)
{
    g_real_ops = g_be->ops;
    g_slow_ops = *g_be->ops;
    g_slow_ops.rmsnorm = slow_rmsnorm;
    g_be->ops = &g_slow_ops;
    struct engine_cfg cfg = engine_cfg_default();
    cfg.kv_cache_bytes = 1 << 20;
    struct engine *e;
    ASSERT(engine_new(&cfg, g_m, g_be, &e) == STATUS_OK);
    int32_t p[8] = { 5, 6, 7, 8, 9, 10, 11, 12 };
    struct engine_stats st;

    // the thread does not run (an engine stuck while idle): a submitted request waits unseen
    sleep_ms(800);
    engine_get_stats(e, &st);
    EXPECT(!engine_stats_stalled(&st, clock_now_s(), STALL_S));   // nothing pending: not stalled
    struct gen_request g = greedy_req(p, 8, 3);
    struct token_stream *ts;
    ASSERT(engine_submit(e, &g, &ts) == STATUS_OK);
    engine_get_stats(e, &st);
    EXPECT(st.n_pending == 1 && st.n_running + st.n_waiting == 0);
    EXPECT(engine_stats_stalled(&st, clock_now_s(), STALL_S));
    token_stream_release(ts);

    // idle on its thread: the heartbeat stays fresh however long nothing happens
    ASSERT(engine_start(e) == STATUS_OK);
    sleep_ms(1000);
    engine_get_stats(e, &st);
    EXPECT(!engine_stats_stalled(&st, clock_now_s(), STALL_S) && clock_now_s() - st.last_progress_s < 0.3);

    // a long step (over a second) that progresses layer by layer is never stalled
    set_slow(SLOW_SLEEP);
    ASSERT(engine_submit(e, &g, &ts) == STATUS_OK);
    double t0 = clock_now_s(), worst = 0;
    int stalled = 0, pending_seen = 0;
    struct token_event ev;
    bool first = false;
    while (!first && clock_now_s() - t0 < 20) {
        engine_get_stats(e, &st);
        double now = clock_now_s();
        if (st.n_pending > 0) {
            pending_seen++;
            if (now - st.last_progress_s > worst) worst = now - st.last_progress_s;
            stalled += engine_stats_stalled(&st, now, STALL_S);
        }
        first = token_stream_next(ts, &ev, 20) == STATUS_OK;
    }
    double step_s = clock_now_s() - t0;
    EXPECTF(first && step_s > STALL_S && pending_seen > 10 && stalled == 0,
            "first step %.2f s, %d samples pending, %d stalled, worst gap %.2f s", step_s, pending_seen, stalled, worst);
    set_slow(SLOW_OFF);
    token_stream_release(ts);   // canceled

    // a step that hangs (the first after idle): stalled once stall_s passes, fine again after
    sleep_ms(300);
    set_slow(SLOW_HANG);
    ASSERT(engine_submit(e, &g, &ts) == STATUS_OK);
    sleep_ms(300);
    engine_get_stats(e, &st);
    EXPECT(!engine_stats_stalled(&st, clock_now_s(), STALL_S));   // not yet
    sleep_ms(900);
    engine_get_stats(e, &st);
    EXPECTF(st.n_pending == 1 && engine_stats_stalled(&st, clock_now_s(), STALL_S),
            "running %d waiting %d pending %d, %.2f s since progress", st.n_running, st.n_waiting, st.n_pending,
            clock_now_s() - st.last_progress_s);
    set_slow(SLOW_OFF);
    int done = 0;
    while (!done && token_stream_next(ts, &ev, 20000) == STATUS_OK) done = ev.done;
    EXPECT(done && ev.finish == FINISH_LENGTH);
    token_stream_release(ts);
    sleep_ms(100);
    engine_get_stats(e, &st);
    EXPECT(!engine_stats_stalled(&st, clock_now_s(), STALL_S));
    engine_shutdown(e);
    engine_free(e);
    g_be->ops = g_real_ops;
}

int main(void)
{
    fixture_init();
    RUN(threaded_clients_match_solo);
    RUN(flood_from_threads);
    RUN(free_with_open_requests);
    RUN(queue_beyond_free_slots);
    RUN(liveness);
    fixture_deinit();
    return test_summary();
}
