/* test_threadpool: fork-join semantics of base/threadpool: every task runs exactly once per run,
 * thread ids stay in range, runs after the workers went to sleep still complete, and a pool of
 * one thread runs everything on the caller. */
#include "harness.h"

#include <stdatomic.h>
#include <unistd.h>

#include "base/threadpool.h"

struct counts {
    _Atomic int hits[1000];
    _Atomic int bad_thread;
    int         n_threads;
};

static void count_task(void *ctx, int task, int thread)
{
    struct counts *c = ctx;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->n_threads) atomic_fetch_add(&c->bad_thread, 1);
}

static int all_equal(struct counts *c, int n, int want)
{
    for (int i = 0; i < n; i++)
        if (atomic_load(&c->hits[i]) != want) return 0;
    return 1;
}

TEST(every_task_once)
{
    for (int nt = 1; nt <= 4; nt++) {
        struct threadpool *tp = threadpool_new(nt);
        EXPECT(threadpool_size(tp) == nt);
        static struct counts c;
        memset(&c, 0, sizeof c);
        c.n_threads = nt;
        const int sizes[] = { 1, 2, 3, 7, 64, 1000 };
        for (int r = 0; r < 200; r++) {
            int n = sizes[r % 6];
            memset(&c.hits, 0, sizeof c.hits);
            threadpool_run(tp, n, count_task, &c);
            if (!all_equal(&c, n, 1)) { EXPECTF(0, "threads=%d n=%d run %d: a task ran != 1 times", nt, n, r); break; }
        }
        // let the workers fall asleep, then run again
        usleep(5000);
        memset(&c.hits, 0, sizeof c.hits);
        threadpool_run(tp, 1000, count_task, &c);
        EXPECT(all_equal(&c, 1000, 1));
        EXPECT(atomic_load(&c.bad_thread) == 0);
        threadpool_free(tp);
    }
}

TEST(zero_tasks_and_default_size)
{
    struct threadpool *tp = threadpool_new(0);
    EXPECT(threadpool_size(tp) == threadpool_cpu_count());
    static struct counts c;
    memset(&c, 0, sizeof c);
    c.n_threads = threadpool_size(tp);
    threadpool_run(tp, 0, count_task, &c);
    EXPECT(all_equal(&c, 1000, 0));
    threadpool_free(tp);
}

int main(void)
{
    RUN(every_task_once);
    RUN(zero_tasks_and_default_size);
    return test_summary();
}
