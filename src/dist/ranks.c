/* ranks: rank threads that run the step rank 0 hands them. See ranks.h.
 *
 * Design note: a generation counter under one mutex; a step is rare next to the work inside it
 * (a whole forward pass), so the workers sleep on a condition variable instead of spinning.
 */
#include "dist/ranks.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"

struct worker {
    struct ranks *rk;
    int           rank;
    pthread_t     thread;
};

struct ranks {
    int             n_ranks;
    struct worker  *workers;        // [n_ranks], entry 0 unused (the caller)
    pthread_mutex_t mu;
    pthread_cond_t  go, done;
    long            generation;     // counts ranks_run calls
    int             n_running;      // workers still inside the current call
    bool            stop;
    void          (*fn)(void *ctx, int rank);
    void           *ctx;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct ranks *rk = w->rk;
    long seen = 0;
    pthread_mutex_lock(&rk->mu);
    for (;;) {
        while (!rk->stop && rk->generation == seen) pthread_cond_wait(&rk->go, &rk->mu);
        if (rk->stop) break;
        seen = rk->generation;
        pthread_mutex_unlock(&rk->mu);
        rk->fn(rk->ctx, w->rank);
        pthread_mutex_lock(&rk->mu);
        if (--rk->n_running == 0) pthread_cond_signal(&rk->done);
    }
    pthread_mutex_unlock(&rk->mu);
    return NULL;
}

/* Hands every worker the next call (fn, ctx), or the order to stop. */
static void post(struct ranks *rk, void (*fn)(void *ctx, int rank), void *ctx, bool stop)
{
    pthread_mutex_lock(&rk->mu);
    rk->fn = fn;
    rk->ctx = ctx;
    rk->stop = stop;
    rk->n_running = rk->n_ranks - 1;
    rk->generation++;
    pthread_cond_broadcast(&rk->go);
    pthread_mutex_unlock(&rk->mu);
}

static void join_workers(struct ranks *rk, int n_started)
{
    post(rk, NULL, NULL, true);
    for (int r = 1; r <= n_started; r++) pthread_join(rk->workers[r].thread, NULL);
    pthread_cond_destroy(&rk->go);
    pthread_cond_destroy(&rk->done);
    pthread_mutex_destroy(&rk->mu);
    free(rk->workers);
    free(rk);
}

enum status ranks_new(int n_ranks, struct ranks **out)
{
    *out = NULL;
    if (n_ranks < 1) {
        LOG_ERR("ranks: %d ranks", n_ranks);
        return STATUS_EINVAL;
    }
    struct ranks *rk = xcalloc(1, sizeof *rk);
    rk->n_ranks = n_ranks;
    rk->workers = xcalloc((size_t)n_ranks, sizeof *rk->workers);
    pthread_mutex_init(&rk->mu, NULL);
    pthread_cond_init(&rk->go, NULL);
    pthread_cond_init(&rk->done, NULL);
    for (int r = 1; r < n_ranks; r++) {
        rk->workers[r] = (struct worker){ .rk = rk, .rank = r };
        if (pthread_create(&rk->workers[r].thread, NULL, worker_main, &rk->workers[r]) != 0) {
            LOG_ERR("ranks: cannot start the thread of rank %d", r);
            join_workers(rk, r - 1);
            return STATUS_EIO;
        }
    }
    *out = rk;
    return STATUS_OK;
}

void ranks_free(struct ranks *rk)
{
    if (rk) join_workers(rk, rk->n_ranks - 1);
}

void ranks_run(struct ranks *rk, void (*fn)(void *ctx, int rank), void *ctx)
{
    post(rk, fn, ctx, false);
    fn(ctx, 0);
    pthread_mutex_lock(&rk->mu);
    while (rk->n_running > 0) pthread_cond_wait(&rk->done, &rk->mu);
    pthread_mutex_unlock(&rk->mu);
}
