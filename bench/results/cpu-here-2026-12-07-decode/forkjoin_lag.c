/* forkjoin_lag: how late the pool's worker starts its tasks, and how many of them it gets.
 * 20,000 threadpool_run calls of 8 tasks of ~2-3 us each, with GAP ns of serial work between
 * them; per GAP: the share of tasks the worker ran, the mean and max delay from the fork to the
 * start of each worker task, the time per run. Build from the repo root:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc bench/results/cpu-here-2026-12-07-decode/forkjoin_lag.c \
 *      build/libcairn.a -pthread -lm -o /tmp/fj && flock /tmp/cairn-bench.lock /tmp/fj
 */
#include <stdio.h>
#include <stdint.h>
#include <stdatomic.h>
#include "base/threadpool.h"
#include "base/clock.h"
static int64_t t_fork;
static int64_t lag_sum, lag_n, lag_max, nworker;
static _Atomic int64_t wstart;
static void task(void *ctx, int t, int thread) {
  int64_t now = clock_now_ns();
  if (thread == 1) { int64_t l = now - t_fork; lag_sum += l; lag_n++; if (l > lag_max) lag_max = l; nworker++; }
  volatile double x = 0; for (int i = 0; i < 2000; i++) x += i * 0.5;   // ~1-2 us of work
}
int main(void) {
  struct threadpool *tp = threadpool_new(2);
  for (int gap = 0; gap <= 20000; gap = gap ? gap * 4 : 1000) {
    lag_sum = lag_n = lag_max = nworker = 0;
    int64_t t0 = clock_now_ns();
    for (int r = 0; r < 20000; r++) {
      int64_t g0 = clock_now_ns(); while (clock_now_ns() - g0 < gap) ;   // serial work between forks
      t_fork = clock_now_ns();
      threadpool_run(tp, 8, task, NULL);
    }
    printf("gap %6d ns: worker took %.2f of tasks, task start lag avg %.0f ns max %lld ns, %.2f us per run\n", gap,
           nworker / (20000.0 * 8), lag_n ? (double)lag_sum / lag_n : 0, (long long)lag_max, (clock_now_ns() - t0) / 20000.0 / 1e3);
  }
  threadpool_free(tp);
}
