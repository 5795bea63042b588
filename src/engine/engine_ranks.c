/* engine_ranks: the engine over a sharded model, every rank executing rank 0's step.
 *
 * Design note (docs/design.md "Parallelism"). The scheduler, the block allocator, the prefix
 * cache and the sampler exist once, on rank 0 (the engine's thread); block ids and state slots
 * mean the same rows on every rank because every rank's KV pool and state pool have the same
 * counts and rank 0 hands out the ids. A step is one batch_meta executed by every rank through
 * ranks_run on threads started once at engine_new (no thread per step). Collectives inside the
 * forward pass pair up because every rank runs the same step. Every rank, rank 0 included, ends
 * its part with collective_sync, which never leaves a rank waiting on a failed one (NCCL aborts the
 * group's collectives): the step's requests end with the error (engine.c), and so does every later
 * step's, without running, as a failed group cannot run collectives again. Snapshots of a hybrid's recurrent state hold every rank's
 * slot, rank after rank, so a prefix-cache resume restores each rank's shard of the state.
 */
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "dist/collective.h"
#include "dist/ranks.h"
#include "engine/engine_int.h"

enum status engine_ranks_new(struct engine *e, const struct engine_shards *sh, int n_blocks)
{
    e->n_ranks = sh->n_ranks;
    e->ranks = xcalloc((size_t)sh->n_ranks, sizeof *e->ranks);
    e->ranks[0] = (struct engine_rank){ .m = e->m, .be = e->be, .fw = e->fw, .pool = e->pool, .states = e->states,
                                        .snaps = e->snaps, .coll = sh->coll[0] };
    forward_bind_collective(e->fw, sh->coll[0]);
    enum status st = STATUS_OK;
    for (int r = 1; r < sh->n_ranks && st == STATUS_OK; r++) {
        struct engine_rank *k = &e->ranks[r];
        k->m = sh->m[r];
        k->be = sh->be[r];
        k->coll = sh->coll[r];
        if ((st = forward_new(k->m, k->be, e->cfg.max_batch_tokens, e->cfg.max_running, &k->fw)) != STATUS_OK) break;
        forward_bind_collective(k->fw, sh->coll[r]);
        if (e->states) {
            if ((st = state_pool_new(k->m, k->be, e->states->n_slots, &k->states)) != STATUS_OK) break;
            if (e->snaps && (st = state_pool_new(k->m, k->be, e->snaps->n_slots, &k->snaps)) != STATUS_OK) break;
            forward_bind_states(k->fw, k->states->layers, k->snaps ? k->snaps->layers : NULL);
        }
        st = kv_pool_new(k->m, k->be, e->cfg.kv_dtype, e->bs, n_blocks, &k->pool);
    }
    if (st == STATUS_OK) st = ranks_new(sh->n_ranks, &e->rk);
    if (st != STATUS_OK) LOG_ERR("engine: the ranks' forward passes and caches: %s", status_str(st));
    return st;
}

void engine_ranks_free(struct engine *e)
{
    if (!e->ranks) return;
    ranks_free(e->rk);
    for (int r = 1; r < e->n_ranks; r++) {
        forward_free(e->ranks[r].fw);
        state_pool_free(e->ranks[r].states);
        state_pool_free(e->ranks[r].snaps);
        kv_pool_free(e->ranks[r].pool);
    }
    free(e->ranks);
    e->ranks = NULL;
}

/* Rank r's forward pass over its shard; outputs of ranks > 0 are dropped (the logits are gathered
 * on every rank, rank 0 samples from its own once the step returns). */
static void forward_on(struct engine_rank *k, const struct batch_meta *meta, bool want_hidden, struct tensor *logits,
                       struct tensor *hidden)
{
    if (want_hidden) forward_step_hidden(k->fw, k->pool->layers, meta, logits, hidden);
    else forward_step(k->fw, k->pool->layers, meta, logits);
}

struct step_job {
    struct engine *e;
    struct tensor *logits, *hidden;   // rank 0's
};

static void step_on_rank(void *ctx, int r)
{
    struct step_job *j = ctx;
    struct engine_rank *k = &j->e->ranks[r];
    struct tensor logits, hidden;
    if (r == 0) forward_on(k, j->e->step_meta, j->e->want_hidden, j->logits, j->hidden);
    else forward_on(k, j->e->step_meta, j->e->want_hidden, &logits, &hidden);
    // Rank 0 too: a rank that waited for rank 0's failed collectives must be released (the cost: rank
    // 0's sampling starts after a host round trip instead of queued behind the forward pass).
    k->st = collective_sync(k->coll, k->be);
}

enum status engine_ranks_forward(struct engine *e, const struct batch_meta *meta, struct tensor *logits,
                                 struct tensor *hidden)
{
    if (e->n_ranks <= 1) {
        forward_on(&(struct engine_rank){ .fw = e->fw, .pool = e->pool }, meta, e->want_hidden, logits, hidden);
        return STATUS_OK;
    }
    if (e->ranks_failed != STATUS_OK) return e->ranks_failed;
    struct step_job j = { .e = e, .logits = logits, .hidden = hidden };
    e->step_meta = meta;
    ranks_run(e->rk, step_on_rank, &j);
    for (int r = 0; r < e->n_ranks; r++) {
        if (e->ranks[r].st == STATUS_OK) continue;
        LOG_ERR("engine: rank %d failed the step: %s; the ranks fail every later step", r, status_str(e->ranks[r].st));
        return e->ranks_failed = e->ranks[r].st;
    }
    return STATUS_OK;
}

/* ==== Resuming from a snapshot of the recurrent state ==== */
/* (Snapshots are taken inside the forward pass: meta.tok_snap, forward_bind_states.) */

struct state_job {
    struct engine *e;
    int            slot, snap;
};

static void state_on_rank(void *ctx, int r)
{
    struct state_job *j = ctx;
    struct engine_rank *k = &j->e->ranks[r];
    state_pool_copy(k->states, j->slot, k->snaps, j->snap);
}

void engine_ranks_state_load(struct engine *e, int slot, int snap)
{
    if (e->n_ranks <= 1) {
        state_pool_copy(e->states, slot, e->snaps, snap);
        return;
    }
    if (e->ranks_failed != STATUS_OK) return;   // its requests end with the failure anyway
    struct state_job j = { .e = e, .slot = slot, .snap = snap };
    ranks_run(e->rk, state_on_rank, &j);
}
