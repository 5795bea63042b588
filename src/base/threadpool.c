/* threadpool: fork-join workers (see threadpool.h).
 *
 * Protocol. One 64-bit atomic word `work` holds (generation << 32 | tasks left). The caller
 * publishes the job (fn, ctx) and then stores a new generation with n_tasks left. Anyone
 * claims a task by a compare-and-swap that decrements "left" while the generation is unchanged;
 * the claimed task is the new "left" value (tasks run from n_tasks - 1 down to 0). A thread
 * reads fn and ctx only after a successful claim: the run cannot finish (and the caller cannot
 * publish the next job) while one of its tasks is claimed but not done, so they are stable.
 * The caller claims tasks too, then waits until `n_done` reaches n_tasks. It never waits for a
 * worker that has not claimed anything: on an oversubscribed machine a descheduled worker costs
 * at most the task it holds, not a wake-up per run.
 *
 * Workers wait for the generation to change: spinning first, then sleeping on `cond`. A worker
 * registers in `n_sleeping` (under the mutex) before it re-checks the generation and waits; the
 * caller bumps the generation before it reads `n_sleeping` and broadcasts under the mutex. Both
 * are sequentially consistent atomics, so one of the two always sees the other's write.
 */
#include "base/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"

#define SPIN_NS 200000

struct worker {
    struct threadpool *tp;
    int                id;       // 1..n_threads-1
    pthread_t          thread;
};

struct threadpool {
    int              n_threads;
    struct worker   *workers;    // [n_threads - 1]
    pthread_mutex_t  mutex;
    pthread_cond_t   cond;

    // the current job, written by the caller before `work` gets the new generation
    void           (*fn)(void *ctx, int task, int thread);
    void            *ctx;

    _Atomic uint64_t work;       // generation << 32 | tasks not yet claimed
    _Atomic int      n_done;     // tasks finished in the current run
    _Atomic int      n_sleeping;
    _Atomic int      stop;
    _Atomic int      running;    // detects nested or concurrent runs
    uint32_t         gen;        // the caller's copy of the current generation
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int threadpool_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

/* Claims and runs tasks of generation gen until none is left. */
static void run_tasks(struct threadpool *tp, uint32_t gen, int thread)
{
    uint64_t v = atomic_load(&tp->work);
    for (;;) {
        if ((uint32_t)(v >> 32) != gen || (uint32_t)v == 0) return;
        if (!atomic_compare_exchange_weak(&tp->work, &v, v - 1)) continue;   // v reloaded
        tp->fn(tp->ctx, (int)(uint32_t)(v - 1), thread);
        atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_release);
        v = atomic_load(&tp->work);
    }
}

static uint32_t current_gen(struct threadpool *tp) { return (uint32_t)(atomic_load(&tp->work) >> 32); }

static uint32_t wait_for_gen(struct threadpool *tp, uint32_t seen)
{
    int64_t t0 = clock_now_ns();
    for (int i = 0;; i++) {
        uint32_t g = current_gen(tp);
        if (g != seen || atomic_load(&tp->stop)) return g;
        cpu_relax();
        if ((i & 255) == 255 && clock_now_ns() - t0 > SPIN_NS) break;
    }
    pthread_mutex_lock(&tp->mutex);
    atomic_fetch_add(&tp->n_sleeping, 1);
    uint32_t g;
    while ((g = current_gen(tp)) == seen && !atomic_load(&tp->stop)) pthread_cond_wait(&tp->cond, &tp->mutex);
    atomic_fetch_sub(&tp->n_sleeping, 1);
    pthread_mutex_unlock(&tp->mutex);
    return g;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct threadpool *tp = w->tp;
    uint32_t seen = 0;
    for (;;) {
        seen = wait_for_gen(tp, seen);
        if (atomic_load(&tp->stop)) break;
        run_tasks(tp, seen, w->id);
    }
    return NULL;
}

struct threadpool *threadpool_new(int n_threads)
{
    if (n_threads <= 0) n_threads = threadpool_cpu_count();
    struct threadpool *tp = xcalloc(1, sizeof *tp);
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mutex, NULL);
    pthread_cond_init(&tp->cond, NULL);
    tp->workers = xcalloc((size_t)n_threads, sizeof *tp->workers);
    for (int i = 1; i < n_threads; i++) {
        struct worker *w = &tp->workers[i - 1];
        w->tp = tp;
        w->id = i;
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        CHECK(rc == 0, "threadpool: pthread_create failed (%d)", rc);
    }
    return tp;
}

void threadpool_free(struct threadpool *tp)
{
    if (!tp) return;
    atomic_store(&tp->stop, 1);
    pthread_mutex_lock(&tp->mutex);
    pthread_cond_broadcast(&tp->cond);
    pthread_mutex_unlock(&tp->mutex);
    for (int i = 1; i < tp->n_threads; i++) pthread_join(tp->workers[i - 1].thread, NULL);
    pthread_mutex_destroy(&tp->mutex);
    pthread_cond_destroy(&tp->cond);
    free(tp->workers);
    free(tp);
}

int threadpool_size(const struct threadpool *tp) { return tp->n_threads; }

void threadpool_run(struct threadpool *tp, int n_tasks, void (*fn)(void *ctx, int task, int thread), void *ctx)
{
    if (n_tasks <= 0) return;
    if (tp->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(ctx, t, 0);
        return;
    }
    CHECK(atomic_exchange(&tp->running, 1) == 0, "threadpool_run: nested or concurrent run");
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store(&tp->n_done, 0);
    uint32_t gen = ++tp->gen;
    atomic_store(&tp->work, (uint64_t)gen << 32 | (uint32_t)n_tasks);
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mutex);
        pthread_cond_broadcast(&tp->cond);
        pthread_mutex_unlock(&tp->mutex);
    }
    run_tasks(tp, gen, 0);
    while (atomic_load_explicit(&tp->n_done, memory_order_acquire) < n_tasks) cpu_relax();
    atomic_store(&tp->running, 0);
}
