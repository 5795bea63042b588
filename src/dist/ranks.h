/* ranks: one thread per rank of a sharded model, driven by rank 0 (the engine's thread).
 *
 * The scheduler stays single: the caller (rank 0) decides a step (its batch_meta, the sampled
 * tokens) and ranks_run has every rank execute the same function for it, rank 0 on the calling
 * thread and ranks 1..N-1 on threads of their own (each owns its backend, so a GPU's stream and
 * cuBLAS handle stay on one thread), returning when all have finished. Collectives inside fn
 * (dist/collective.h) pair up because every rank runs the same step. One caller at a time.
 *
 *     struct ranks *rk;  if (ranks_new(4, &rk) != STATUS_OK) return 1;   // logged
 *     ranks_run(rk, step_on_rank, &step);     // step_on_rank(&step, r) for r = 0..3
 *     ranks_free(rk);
 */
#ifndef CAIRN_DIST_RANKS_H
#define CAIRN_DIST_RANKS_H

#include "base/status.h"

struct ranks;

/* Starts n_ranks - 1 threads: EINVAL (logged) for n_ranks < 1, EIO (logged) if a thread cannot
 * be created. */
enum status ranks_new(int n_ranks, struct ranks **out);
/* fn(ctx, r) on every rank r, rank 0 on the calling thread; returns when all have returned. */
void        ranks_run(struct ranks *rk, void (*fn)(void *ctx, int rank), void *ctx);
void        ranks_free(struct ranks *rk);   // joins the threads; NULL is fine

#endif
