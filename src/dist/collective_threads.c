/* collective_threads: the in-process collective, N ranks = N threads over host memory.
 *
 * Design note: a reduce-scatter then an all-gather through shared pointers, no copy buffer.
 * Every rank publishes its tensor and waits at a barrier; rank r then sums chunk r of the
 * elements over all ranks' tensors, in rank order, into its own tensor (only rank r touches chunk
 * r in this phase); after a second barrier each rank copies the other chunks from their owners
 * (who no longer write them); a third barrier keeps a rank from starting its next call, which may
 * overwrite its tensor, while others still read it. The sum of each element is the same
 * expression on every rank, so results are bit-identical across ranks and runs.
 */
#include "dist/collective.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

struct group {
    int                n_ranks;
    pthread_barrier_t  barrier;
    const struct tensor *slot[COLLECTIVE_MAX_RANKS];   // each rank's tensor of the current call
};

static float *elem(const struct tensor *t, int64_t i)
{
    int64_t cols = t->ne[0];
    return (float *)((char *)t->buf->data + t->offset + (size_t)(i / cols) * t->nb[1]) + i % cols;
}

static void check_host_f32(const struct tensor *t, const char *what)
{
    CHECK(t->dtype == DTYPE_F32 && t->buf && t->buf->kind == BUF_HOST && t->nb[0] == sizeof(float),
          "collective_threads: %s must be a host f32 tensor with contiguous rows", what);
}

static void chunk(int64_t n, int n_ranks, int r, int64_t *lo, int64_t *hi)
{
    *lo = n * r / n_ranks;
    *hi = n * (r + 1) / n_ranks;
}

static void threads_all_reduce_sum(struct collective *c, struct backend *be, struct tensor *t)
{
    struct group *g = c->group;
    check_host_f32(t, "all_reduce_sum's tensor");
    int64_t n = t->ne[0] * tensor_rows(t), lo, hi;
    g->slot[c->rank] = t;
    pthread_barrier_wait(&g->barrier);
    for (int q = 0; q < g->n_ranks; q++)
        CHECK(g->slot[q]->ne[0] == t->ne[0] && tensor_rows(g->slot[q]) == tensor_rows(t),
              "all_reduce_sum: rank %d passed another shape than rank %d", q, c->rank);
    chunk(n, g->n_ranks, c->rank, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float sum = *elem(g->slot[0], i);
        for (int q = 1; q < g->n_ranks; q++) sum += *elem(g->slot[q], i);
        *elem(t, i) = sum;
    }
    pthread_barrier_wait(&g->barrier);
    for (int q = 0; q < g->n_ranks; q++) {
        if (q == c->rank) continue;
        chunk(n, g->n_ranks, q, &lo, &hi);
        for (int64_t i = lo; i < hi; i++) *elem(t, i) = *elem(g->slot[q], i);
    }
    pthread_barrier_wait(&g->barrier);
}

static void threads_all_gather_cols(struct collective *c, struct backend *be, struct tensor *out,
                                    const struct tensor *in)
{
    struct group *g = c->group;
    check_host_f32(in, "all_gather_cols' input");
    check_host_f32(out, "all_gather_cols' output");
    int64_t rows = tensor_rows(in), cols = in->ne[0];
    CHECK(tensor_rows(out) == rows && out->ne[0] <= cols * g->n_ranks && out->ne[0] > cols * (g->n_ranks - 1),
          "all_gather_cols: out [%lld, %lld] from %d blocks of [%lld, %lld]", (long long)rows,
          (long long)out->ne[0], g->n_ranks, (long long)rows, (long long)cols);
    g->slot[c->rank] = in;
    pthread_barrier_wait(&g->barrier);
    for (int q = 0; q < g->n_ranks; q++) {
        const struct tensor *src = g->slot[q];
        CHECK(src->ne[0] == cols && tensor_rows(src) == rows, "all_gather_cols: rank %d's block differs", q);
        int64_t c0 = (int64_t)q * cols, nc = out->ne[0] - c0 < cols ? out->ne[0] - c0 : cols;
        for (int64_t r = 0; r < rows; r++)
            memcpy(elem(out, r * out->ne[0] + c0), elem(src, r * cols), (size_t)nc * sizeof(float));
    }
    pthread_barrier_wait(&g->barrier);
}

/* Host backends finish a call before it returns: nothing can be left waiting on a failed rank. */
static enum status threads_sync(struct collective *c, struct backend *be)
{
    return be->ops->sync(be);
}

static void threads_free_group(struct collective **ranks, int n_ranks)
{
    if (!n_ranks || !ranks[0]) return;
    struct group *g = ranks[0]->group;
    pthread_barrier_destroy(&g->barrier);
    free(g);
    for (int r = 0; r < n_ranks; r++) free(ranks[r]);
}

static const struct collective_ops threads_ops = {
    .name = "threads",
    .all_reduce_sum = threads_all_reduce_sum,
    .all_gather_cols = threads_all_gather_cols,
    .sync = threads_sync,
    .free_group = threads_free_group,
};

enum status collective_threads_new(int n_ranks, struct collective **ranks)
{
    if (n_ranks < 1 || n_ranks > COLLECTIVE_MAX_RANKS) {
        LOG_ERR("collective: %d ranks (1 to %d)", n_ranks, COLLECTIVE_MAX_RANKS);
        return STATUS_EINVAL;
    }
    struct group *g = xcalloc(1, sizeof *g);
    g->n_ranks = n_ranks;
    CHECK(pthread_barrier_init(&g->barrier, NULL, (unsigned)n_ranks) == 0, "collective: barrier");
    for (int r = 0; r < n_ranks; r++) {
        ranks[r] = xcalloc(1, sizeof *ranks[r]);
        *ranks[r] = (struct collective){ .ops = &threads_ops, .rank = r, .n_ranks = n_ranks, .group = g };
    }
    return STATUS_OK;
}

void collective_free_group(struct collective **ranks, int n_ranks)
{
    if (n_ranks > 0 && ranks[0]) ranks[0]->ops->free_group(ranks, n_ranks);
}
