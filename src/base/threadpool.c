/* threadpool: fork-join workers (see threadpool.h).
 *
 * Protocol: the caller publishes the job (fn, ctx, n_tasks), resets the task counter and the
 * count of workers still busy, then bumps `gen`. Workers wait for `gen` to change: spinning
 * first, then sleeping on `cond`. A worker registers in `n_sleeping` (under the mutex) before it
 * re-checks `gen` and waits; the caller bumps `gen` before it reads `n_sleeping` and broadcasts
 * under the mutex. Both are sequentially consistent atomics, so one of the two always sees the
 * other's write and no wake-up is lost. Each worker claims tasks until the counter passes
 * n_tasks, then decrements `n_busy`; the caller runs tasks too and spins until `n_busy` is 0.
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

    // the current job, written by the caller before gen is bumped
    void           (*fn)(void *ctx, int task, int thread);
    void            *ctx;
    int              n_tasks;

    _Atomic uint64_t gen;        // bumped once per run
    _Atomic int      next_task;
    _Atomic int      n_busy;     // workers that have not finished the current run
    _Atomic int      n_sleeping;
    _Atomic int      stop;
    _Atomic int      running;    // detects nested or concurrent runs
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

static void run_tasks(struct threadpool *tp, int thread)
{
    int n = tp->n_tasks;
    for (;;) {
        int t = atomic_fetch_add_explicit(&tp->next_task, 1, memory_order_relaxed);
        if (t >= n) break;
        tp->fn(tp->ctx, t, thread);
    }
}

static uint64_t wait_for_gen(struct threadpool *tp, uint64_t seen)
{
    int64_t t0 = clock_now_ns();
    for (int i = 0;; i++) {
        uint64_t g = atomic_load(&tp->gen);
        if (g != seen || atomic_load(&tp->stop)) return g;
        cpu_relax();
        if ((i & 255) == 255 && clock_now_ns() - t0 > SPIN_NS) break;
    }
    pthread_mutex_lock(&tp->mutex);
    atomic_fetch_add(&tp->n_sleeping, 1);
    uint64_t g;
    while ((g = atomic_load(&tp->gen)) == seen && !atomic_load(&tp->stop))
        pthread_cond_wait(&tp->cond, &tp->mutex);
    atomic_fetch_sub(&tp->n_sleeping, 1);
    pthread_mutex_unlock(&tp->mutex);
    return g;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct threadpool *tp = w->tp;
    uint64_t seen = 0;
    for (;;) {
        seen = wait_for_gen(tp, seen);
        if (atomic_load(&tp->stop)) break;
        run_tasks(tp, w->id);
        atomic_fetch_sub_explicit(&tp->n_busy, 1, memory_order_release);
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
    tp->n_tasks = n_tasks;
    atomic_store(&tp->next_task, 0);
    atomic_store(&tp->n_busy, tp->n_threads - 1);
    atomic_fetch_add(&tp->gen, 1);
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mutex);
        pthread_cond_broadcast(&tp->cond);
        pthread_mutex_unlock(&tp->mutex);
    }
    run_tasks(tp, 0);
    while (atomic_load_explicit(&tp->n_busy, memory_order_acquire) > 0) cpu_relax();
    atomic_store(&tp->running, 0);
}
