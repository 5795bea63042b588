/* membw: memory read bandwidth probe (see membw.h). */
#include "backend/cpu/membw.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/cpu/kern.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/threadpool.h"

#define MEMBW_REPEATS 7

struct membw_job {
    const struct cpu_kern *kf;
    float                 *buf;
    int64_t                n_per_task;   // floats, a multiple of 64
    volatile float         sink[256];    // one per task, so the reads are not optimised away
};

static void membw_read_task(void *arg, int task, int thread)
{
    (void)thread;
    struct membw_job *j = arg;
    j->sink[task & 255] += j->kf->read_sum(j->buf + (int64_t)task * j->n_per_task, j->n_per_task);
}

static void membw_touch_task(void *arg, int task, int thread)
{
    (void)thread;
    struct membw_job *j = arg;
    memset(j->buf + (int64_t)task * j->n_per_task, 0, (size_t)j->n_per_task * sizeof(float));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double membw_measure_read_gbs(int n_threads, size_t bytes)
{
    if (n_threads <= 0) n_threads = threadpool_cpu_count();
    if (!bytes) bytes = (size_t)1 << 30;
    struct membw_job *j = calloc(1, sizeof *j);
    if (!j) return 0;
    j->kf = cpu_kern_pick();
    j->n_per_task = (int64_t)(bytes / sizeof(float) / (size_t)n_threads) / 64 * 64;
    size_t used = (size_t)j->n_per_task * (size_t)n_threads * sizeof(float);
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, used) != 0) {
        LOG_ERR("membw: cannot allocate %zu bytes", used);
        free(j);
        return 0;
    }
    j->buf = p;
    // huge pages where the kernel allows: the probe measures DRAM, not page walks (weights are
    // file mappings, which recent kernels back with large folios)
    (void)madvise(p, used, MADV_HUGEPAGE);
    struct threadpool *tp = threadpool_new(n_threads);
    threadpool_run(tp, n_threads, membw_touch_task, j);   // fault the pages in, on their threads
    threadpool_run(tp, n_threads, membw_read_task, j);    // warm-up
    double gbs[MEMBW_REPEATS];
    for (int r = 0; r < MEMBW_REPEATS; r++) {
        int64_t t0 = clock_now_ns();
        threadpool_run(tp, n_threads, membw_read_task, j);
        gbs[r] = (double)used / (double)(clock_now_ns() - t0);
    }
    threadpool_free(tp);
    free(p);
    free(j);
    qsort(gbs, MEMBW_REPEATS, sizeof gbs[0], cmp_double);
    return gbs[MEMBW_REPEATS / 2];
}
