/* burst: concurrency. For each N of --burst, N streaming requests (each its own nonce and
 * filler prompt of burst_prompt_tokens) are fired together: every thread waits for one common
 * start time, so all requests leave within a few milliseconds; the spread of their actual start
 * times is checked against burst_window_ms and noted when wider. (Spacing them out over the
 * window would hide concurrency: short requests would then barely overlap.) One thread and one
 * curl handle per request, so a slow reader never delays another's clock. The per-N analysis (wall time, latency and TTFT
 * percentiles, aggregate tok/s, serialization) is in bench/summary.c.
 */
#include "bench/bench_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "bench/prompt.h"

struct burst_job {
    struct bench_ctx *c;
    const char       *body;
    const char       *prompt;
    int64_t           t0_ns;     // common time origin of this burst
    int64_t           fire_ns;   // when this request starts
    struct bench_run  run;
};

static void *burst_thread(void *arg)
{
    struct burst_job *j = arg;
    int64_t wait = j->fire_ns - clock_now_ns();
    if (wait > 0) {
        struct timespec ts = { .tv_sec = wait / 1000000000, .tv_nsec = wait % 1000000000 };
        nanosleep(&ts, NULL);
    }
    bench_measure(j->c, j->body, j->prompt, j->t0_ns, &j->run, NULL);
    return NULL;
}

static void burst_one(struct bench_ctx *c, int n)
{
    const struct bench_cfg *cfg = c->cfg;
    struct burst_job *jobs = xcalloc((size_t)n, sizeof *jobs);
    pthread_t *th = xcalloc((size_t)n, sizeof *th);
    struct strbuf *prompts = xcalloc((size_t)n, sizeof *prompts);
    char (*nonces)[PROMPT_NONCE_LEN + 1] = xcalloc((size_t)n, sizeof *nonces);
    for (int i = 0; i < n; i++) {
        prompt_nonce(&c->rng, nonces[i]);
        bench_filler(c, cfg->burst_prompt_tokens, nonces[i], &prompts[i]);
        jobs[i].c = c;
        jobs[i].prompt = prompts[i].data;
        jobs[i].body = bench_body(c, NULL, prompts[i].data, NULL, 0);
    }
    // all bodies are built before the clock starts; threads get 20 ms to be scheduled
    int64_t t0 = clock_now_ns() + 20 * 1000000LL;
    bool *started = xcalloc((size_t)n, sizeof *started);
    for (int i = 0; i < n; i++) {
        jobs[i].t0_ns = t0;
        jobs[i].fire_ns = t0;
        started[i] = pthread_create(&th[i], NULL, burst_thread, &jobs[i]) == 0;
        if (!started[i]) {
            LOG_ERR("bench: burst %d: could not start thread %d", n, i);
            bench_run_init(&jobs[i].run);
            bench_run_set_error(&jobs[i].run, "client could not start a thread for this request");
        }
    }
    for (int i = 0; i < n; i++)
        if (started[i]) pthread_join(th[i], NULL);
    free(started);
    double s0 = 1e300, s1 = -1e300;
    for (int i = 0; i < n; i++) {
        if (!(jobs[i].run.start_ms == jobs[i].run.start_ms)) continue;   // NaN: never started
        if (jobs[i].run.start_ms < s0) s0 = jobs[i].run.start_ms;
        if (jobs[i].run.start_ms > s1) s1 = jobs[i].run.start_ms;
    }
    if (s1 - s0 > cfg->burst_window_ms)
        bench_note(c, "burst %d: requests left over %.0f ms, wider than the %.0f ms window", n, s1 - s0,
                   cfg->burst_window_ms);
    for (int i = 0; i < n; i++) {
        struct bench_run *r = &jobs[i].run;
        snprintf(r->mode, sizeof r->mode, "burst");
        snprintf(r->phase, sizeof r->phase, "burst");
        snprintf(r->nonce, sizeof r->nonce, "%s", nonces[i]);
        r->size = cfg->burst_prompt_tokens;
        r->burst_n = n;
        r->run = i;
        bench_record(c, r);
        free((char *)jobs[i].body);
        strbuf_free(&prompts[i]);
    }
    free(nonces);
    free(prompts);
    free(th);
    free(jobs);
}

enum status bench_burst(struct bench_ctx *c)
{
    const struct bench_cfg *cfg = c->cfg;
    c->n_planned = 0;
    for (int i = 0; i < cfg->n_bursts; i++) c->n_planned += cfg->bursts[i];
    bench_calibrate(c, cfg->burst_prompt_tokens);   // size the prompts in this server's tokens
    for (int i = 0; i < cfg->n_bursts; i++)
        if (bench_time_left(c, cfg->bursts[i])) burst_one(c, cfg->bursts[i]);
    return STATUS_OK;
}
