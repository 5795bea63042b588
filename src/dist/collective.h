/* collective: the communication between the ranks of one sharded model (tensor and expert
 * parallelism): a sum over ranks and a gather of column blocks, on f32 activations.
 *
 * A rank is one copy of the forward pass over its shard of the weights (model/shard.h), on its own
 * backend. Every rank holds a `struct collective` of its own (its rank, the world size and the
 * group's implementation) and calls the same collectives in the same order with the same shapes;
 * a call returns when the rank's output is complete in its backend memory (in-process threads) or
 * is queued on the rank's stream behind the ops that produced its input (NCCL: ncclAllReduce on
 * the backend's stream, so it is captured by step graphs like any op). Sums are taken in rank order
 * 0, 1, ..., N-1 for every element, so every rank gets the same bits and a run is reproducible.
 *
 * Implementations: collective_threads_new (N ranks = N threads of one process, host buffers: ref
 * and cpu; the CPU test of the sharding). An NCCL implementation fits the same calls: one
 * ncclComm_t per rank from ncclCommInitAll (one process, one thread per GPU) or from
 * ncclCommInitRank with a unique id handed out by rank 0 (several hosts), docs/design.md
 * "Parallelism". Threading: a rank's handle is used by its own thread only.
 *
 *     struct collective *ranks[4];  collective_threads_new(4, ranks);
 *     // on rank r's thread:  collective_all_reduce_sum(ranks[r], be_r, &partial);
 *     collective_free_group(ranks, 4);
 */
#ifndef CAIRN_DIST_COLLECTIVE_H
#define CAIRN_DIST_COLLECTIVE_H

#include "backend/backend.h"
#include "base/status.h"
#include "tensor/tensor.h"

#define COLLECTIVE_MAX_RANKS 64

struct collective;

struct collective_ops {
    const char *name;
    // t [rows, cols] f32 in be's memory (rows may be a view): every rank's t becomes the
    // elementwise sum over ranks, summed in rank order.
    void (*all_reduce_sum)(struct collective *, struct backend *be, struct tensor *t);
    // in [rows, c] f32 (every rank the same shape) -> out [rows, n_cols] f32, rank r's block at
    // columns [r c, (r + 1) c) clipped to n_cols (the last rank's block may hold padding columns).
    void (*all_gather_cols)(struct collective *, struct backend *be, struct tensor *out, const struct tensor *in);
    // Frees the whole group (every rank's handle); no rank may be inside a call.
    void (*free_group)(struct collective **ranks, int n_ranks);
};

struct collective {
    const struct collective_ops *ops;
    int                          rank;      // 0 .. n_ranks - 1; rank 0 decides the steps
    int                          n_ranks;
    void                        *group;     // the implementation's shared state
};

static inline void collective_all_reduce_sum(struct collective *c, struct backend *be, struct tensor *t)
{
    c->ops->all_reduce_sum(c, be, t);
}

static inline void collective_all_gather_cols(struct collective *c, struct backend *be, struct tensor *out,
                                              const struct tensor *in)
{
    c->ops->all_gather_cols(c, be, out, in);
}

/* n_ranks handles (ranks[0..n_ranks)) of one in-process group. Every tensor passed to its calls
 * must be in host memory (backends ref and cpu). EINVAL (logged) for n_ranks outside
 * [1, COLLECTIVE_MAX_RANKS]. */
enum status collective_threads_new(int n_ranks, struct collective **ranks);
void        collective_free_group(struct collective **ranks, int n_ranks);

#endif
