/* collective: the communication between the ranks of one sharded model (tensor and expert
 * parallelism): a sum over ranks and a gather of column blocks, on f32 activations.
 *
 * A rank is one copy of the forward pass over its shard of the weights (model/shard.h), on its own
 * backend. Every rank holds a `struct collective` of its own (its rank, the world size and the
 * group's implementation) and calls the same collectives in the same order with the same shapes;
 * a call returns when the rank's output is complete in its backend memory (in-process threads) or
 * is queued on the rank's stream behind the ops that produced its input (NCCL: ncclAllReduce on
 * the backend's stream, so it is captured by step graphs like any op). Every rank gets the same
 * bits and a run is reproducible: the in-process group sums each element in rank order 0, 1, ...,
 * N-1; NCCL in its algorithm's order, fixed for a communicator and a size (not the same bits as
 * the in-process group's).
 *
 * A rank ends a step with collective_sync instead of its backend's sync: it waits for the rank's
 * queued work and reports the group's health, so that a rank that fails never leaves the others
 * waiting on it (NCCL: the others' collectives are aborted and fail too; the group then stays
 * failed, its communicators gone, and every later sync reports it).
 *
 * Implementations: collective_threads_new (N ranks = N threads of one process, host buffers: ref
 * and cpu; the CPU test of the sharding) and collective_nccl_new (one GPU per rank of one process,
 * cuda backends; CUDA builds, libnccl opened at run time). Across hosts, ncclCommInitRank with a
 * unique id handed out by rank 0 fits the same calls (docs/design.md "Parallelism"). Threading: a
 * rank's handle is used by its own thread only.
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
    // elementwise sum over ranks (the same bits on every rank).
    void (*all_reduce_sum)(struct collective *, struct backend *be, struct tensor *t);
    // in [rows, c] f32 (every rank the same shape) -> out [rows, n_cols] f32, rank r's block at
    // columns [r c, (r + 1) c) clipped to n_cols (the last rank's block may hold padding columns).
    void (*all_gather_cols)(struct collective *, struct backend *be, struct tensor *out, const struct tensor *in);
    // Waits until the rank's queued work (its collectives included) has completed: OK, the rank's
    // backend error, or EDEVICE once any rank of the group has failed (logged where it failed).
    enum status (*sync)(struct collective *, struct backend *be);
    // Frees the whole group (every rank's handle); no rank may be inside a call. Before the ranks'
    // backends are freed (the group may hold buffers of theirs).
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

static inline enum status collective_sync(struct collective *c, struct backend *be)
{
    return c->ops->sync(c, be);
}

/* n_ranks handles (ranks[0..n_ranks)) of one in-process group. Every tensor passed to its calls
 * must be in host memory (backends ref and cpu). EINVAL (logged) for n_ranks outside
 * [1, COLLECTIVE_MAX_RANKS]. */
enum status collective_threads_new(int n_ranks, struct collective **ranks);
/* n_ranks handles of one NCCL group, rank r on CUDA device devices[r] (its tensors in the memory
 * of a cuda backend made on that device; calls are queued on that backend's stream). Sets
 * NCCL_NVLS_ENABLE=0 unless the environment sets it (NVLink multicast off: our GPU hosts require
 * it). EUNSUPPORTED (logged, naming the library) when libnccl cannot be opened or this binary has
 * no CUDA; EDEVICE (logged) when the communicators cannot be made. */
enum status collective_nccl_new(int n_ranks, const int *devices, struct collective **ranks);
void        collective_free_group(struct collective **ranks, int n_ranks);

#endif
