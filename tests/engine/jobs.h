/* jobs: the many-request driver of the engine tests (test_engine, test_engine_hybrid). A job is a
 * random prompt with its solo greedy run (fixture.h) as the wanted output; the drivers submit jobs
 * as greedy requests, step a single-threaded engine (optionally with arrivals spread over the
 * steps) and collect each stream, and jobs_check counts the jobs whose output differs from the solo
 * run. A per-step hook lets a test check its invariants between steps. cancel_midway cancels a
 * request in prefill or in decode beside a neighbour. Include after fixture.h and harness.h. */
#ifndef CAIRN_TEST_ENGINE_JOBS_H
#define CAIRN_TEST_ENGINE_JOBS_H

#include <stdbool.h>

#define JOB_MAX_GEN 64

struct job {
    int32_t              prompt[1200];
    int                  n_prompt, max_tokens, n_got, done;
    int32_t              want[JOB_MAX_GEN], got[JOB_MAX_GEN];
    struct token_stream *ts;
    struct token_event   last;
};

/* A fresh job: n_prompt tokens drawn from seed, and their solo greedy run of max_tokens as want. */
static inline void job_init(struct job *j, uint64_t seed, int n_prompt, int max_tokens)
{
    memset(j, 0, sizeof *j);
    j->n_prompt = n_prompt;
    j->max_tokens = max_tokens;
    random_prompt(seed, j->prompt, n_prompt);
    solo_greedy(j->prompt, n_prompt, max_tokens, j->want);
}

static inline bool job_submit(struct engine *e, struct job *j)
{
    struct gen_request g = greedy_req(j->prompt, j->n_prompt, j->max_tokens);
    return engine_submit(e, &g, &j->ts) == STATUS_OK;
}

static inline void job_collect(struct job *j)
{
    int done;
    j->n_got += drain(j->ts, j->got + j->n_got, JOB_MAX_GEN - j->n_got, &j->last, &done);
    if (done) j->done = 1;
}

/* Called after every engine step of a driver, before the streams are collected. */
typedef void (*jobs_step_hook)(struct engine *e, void *ctx);

/* Steps e until idle (at most max_steps), hook and collecting every job after each step. The jobs
 * are already submitted. */
static inline void jobs_run(struct engine *e, struct job *jobs, int n, int max_steps, jobs_step_hook hook, void *ctx)
{
    for (int s = 0; s < max_steps && engine_step(e); s++) {
        if (hook) hook(e, ctx);
        for (int i = 0; i < n; i++) job_collect(&jobs[i]);
    }
    for (int i = 0; i < n; i++) job_collect(&jobs[i]);
}

/* Submits the jobs in order, 0-3 arrivals before each step (drawn from r), stepping e until all
 * are submitted and the engine is idle (at most max_steps); after each step runs hook and collects
 * the submitted jobs. Returns false when a submit fails. */
static inline bool jobs_run_arrivals(struct engine *e, struct job *jobs, int n, struct rng *r, int max_steps,
                                     jobs_step_hook hook, void *ctx)
{
    int submitted = 0;
    for (int steps = 0; steps < max_steps; steps++) {
        int arrivals = (int)(rng_next(r) % 4);
        for (int k = 0; k < arrivals && submitted < n; k++, submitted++)
            if (!job_submit(e, &jobs[submitted])) return false;
        bool worked = engine_step(e);
        if (hook) hook(e, ctx);
        for (int i = 0; i < submitted; i++) job_collect(&jobs[i]);
        if (!worked && submitted == n) break;
    }
    return true;
}

/* Counts the jobs not done with exactly their solo run's tokens (printing each one and where it
 * first differs) and releases every stream. */
static inline int jobs_check(struct job *jobs, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) {
        struct job *j = &jobs[i];
        if (!j->done || j->n_got != j->max_tokens || memcmp(j->got, j->want, sizeof(int32_t) * (size_t)j->max_tokens)) {
            bad++;
            fprintf(stderr, "  request %d (prompt %d): done %d finish %d, %d tokens; first diff at", i, j->n_prompt,
                    j->done, j->last.finish, j->n_got);
            for (int t = 0; t < j->n_got; t++)
                if (j->got[t] != j->want[t]) {
                    fprintf(stderr, " %d", t);
                    break;
                }
            fputc('\n', stderr);
        }
        token_stream_release(j->ts);
    }
    return bad;
}

/* A request canceled part way, beside a neighbour that is canceled with it. */
struct cancel_run {
    const int32_t *prompt, *neighbour;
    int            n_prompt, n_neighbour, max_tokens;
    int            steps;        // engine steps before the cancel
    bool           mid_decode;   // by then the request has emitted tokens; else it is still in prefill
};

/* Submits both, steps c->steps times, runs before_cancel (may be NULL), checks that the request
 * emitted tokens or none as c->mid_decode says, cancels both, steps once and checks that the
 * request ended FINISH_CANCELED. The caller checks what the engine got back. */
static inline void cancel_midway(struct engine *e, const struct cancel_run *c, jobs_step_hook before_cancel, void *ctx)
{
    struct gen_request g = greedy_req(c->prompt, c->n_prompt, c->max_tokens);
    struct gen_request g2 = greedy_req(c->neighbour, c->n_neighbour, c->max_tokens);
    struct token_stream *ts, *other;
    ASSERT(engine_submit(e, &g, &ts) == STATUS_OK);
    ASSERT(engine_submit(e, &g2, &other) == STATUS_OK);
    for (int i = 0; i < c->steps; i++) engine_step(e);
    if (before_cancel) before_cancel(e, ctx);
    int32_t got[256];
    int done;
    struct token_event last = { 0 };
    int n0 = drain(ts, got, 256, &last, &done);
    EXPECT(c->mid_decode ? n0 > 0 : n0 == 0);
    engine_cancel(e, ts);
    engine_cancel(e, other);
    engine_step(e);
    drain(ts, got, 256, &last, &done);
    EXPECT(done && last.finish == FINISH_CANCELED);
    token_stream_release(ts);
    token_stream_release(other);
}

#endif
