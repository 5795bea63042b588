/* mask_worker: the constrained requests' masks for step t+1 computed while the forward pass of
 * step t+1 runs (see engine_int.h). The mask depends only on the tokens sampled so far, so it can
 * start as soon as the batch is built; the engine waits for it only after the forward pass, just
 * before sampling, and computes the masks the workers have not started itself. A mask costs
 * microseconds once its state is cached (text/constraint.h), but a matcher meeting new states
 * walks the token trie for each (~0.2 ms at 150K ids): 64 streams starting together on a new
 * schema cost one thread longer than the forward pass, so device backends run several.
 */
#include <pthread.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"
#include "engine/engine_int.h"
#include "text/constraint.h"

struct mask_worker {
    pthread_t       *threads;
    int              n_threads;
    pthread_mutex_t  mu;
    pthread_cond_t   cv;          // signals a new job, a finished job, or shutdown
    struct request **jobs;        // borrowed from the poster until wait returns
    int              n_jobs;
    int              next;        // jobs[next..n_jobs) are not taken yet
    int              in_flight;   // taken and still being computed
    bool             quit;
};

void request_mask_compute(struct request *r)
{
    if (r->mask_ready) return;
    // one token stays for the stop id, so a constrained output ends with "stop", never "length"
    int left = r->max_gen - r->n_gen - 1;
    r->mask_st = constraint_mask(r->cons, left, r->mask);
    r->mask_ready = true;
}

/* Takes the next job and computes it with mu released; false when none is left. mu is held on
 * entry and on return. Both the worker and the waiting engine take jobs this way, so a mask the
 * worker has not reached (its core busy with the forward pass) costs the engine no wake-up. */
static bool run_next(struct mask_worker *w)
{
    if (w->next >= w->n_jobs) return false;
    struct request *r = w->jobs[w->next++];
    w->in_flight++;
    pthread_mutex_unlock(&w->mu);
    request_mask_compute(r);
    pthread_mutex_lock(&w->mu);
    if (--w->in_flight == 0 && w->next >= w->n_jobs) pthread_cond_broadcast(&w->cv);
    return true;
}

static void *worker_main(void *arg)
{
    struct mask_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->next >= w->n_jobs && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit) break;
        run_next(w);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

struct mask_worker *mask_worker_new(int n_threads)
{
    struct mask_worker *w = xcalloc(1, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->threads = xcalloc((size_t)(n_threads > 0 ? n_threads : 1), sizeof *w->threads);
    for (int i = 0; i < n_threads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) break;
        w->n_threads++;
    }
    if (w->n_threads == 0) {
        LOG_WARN("cannot start a mask worker thread; constrained masks are computed on the engine thread");
        mask_worker_free(w);
        return NULL;
    }
    if (w->n_threads < n_threads) LOG_WARN("mask workers: %d of %d threads started", w->n_threads, n_threads);
    return w;
}

void mask_worker_free(struct mask_worker *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->n_threads; i++) pthread_join(w->threads[i], NULL);
    free(w->threads);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

void mask_worker_post(struct mask_worker *w, struct request **rs, int n)
{
    if (n == 0) return;
    if (!w) {   // no thread: compute now
        for (int i = 0; i < n; i++) request_mask_compute(rs[i]);
        return;
    }
    pthread_mutex_lock(&w->mu);
    CHECK(w->next >= w->n_jobs && !w->in_flight, "mask worker posted twice");
    w->jobs = rs;
    w->n_jobs = n;
    w->next = 0;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

void mask_worker_wait(struct mask_worker *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    while (run_next(w)) {}   // what the worker has not started, the engine computes itself
    while (w->in_flight) pthread_cond_wait(&w->cv, &w->mu);
    w->jobs = NULL;
    w->n_jobs = w->next = 0;
    pthread_mutex_unlock(&w->mu);
}
