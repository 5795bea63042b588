/* threadpool: a fork-join pool of worker threads for data-parallel CPU kernels.
 *
 * threadpool_run(pool, n_tasks, fn, ctx) calls fn(ctx, task, thread) once for every task in
 * [0, n_tasks), spread over the pool's threads, and returns when all have finished. The calling
 * thread takes part as thread 0; workers are threads 1..n_threads-1, so `thread` can index
 * per-thread scratch. Tasks are handed out dynamically (an atomic counter), so which thread runs
 * which task varies: a task's result must depend only on its index, never on its thread.
 *
 * Wake-up is low latency: after a run, workers spin (with pause) for about 200 µs waiting for the
 * next one, then sleep on a condition variable. One thread at a time may call threadpool_run
 * (the engine thread); nested runs from inside a task are not allowed.
 *
 *     struct threadpool *tp = threadpool_new(0);          // 0: one thread per online CPU
 *     threadpool_run(tp, n_rows, norm_row_task, &args);
 *     threadpool_free(tp);
 */
#ifndef CAIRN_BASE_THREADPOOL_H
#define CAIRN_BASE_THREADPOOL_H

struct threadpool;

/* n_threads counts the caller; 0 = number of online CPUs. Aborts if threads cannot be created. */
struct threadpool *threadpool_new(int n_threads);
void               threadpool_free(struct threadpool *tp);   // joins the workers; NULL is fine
int                threadpool_size(const struct threadpool *tp);
void               threadpool_run(struct threadpool *tp, int n_tasks,
                                  void (*fn)(void *ctx, int task, int thread), void *ctx);

/* Number of online CPUs (at least 1). */
int threadpool_cpu_count(void);

#endif
