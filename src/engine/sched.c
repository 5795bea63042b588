/* sched: admission, the per-step token budget, preemption and the flattened batch.
 *
 * Design note. A step is built in three passes over a budget of max_batch_tokens tokens:
 *   1. decodes: every running sequence with exactly one pending token, oldest first. A decode
 *      that crosses into a new block allocates it; if the pool is dry (kv_blocks has already
 *      evicted every cached prefix block), the NEWEST running request is preempted, repeatedly,
 *      until the block is found or the request itself was the newest (then it waits).
 *   2. prefill chunks of running sequences with more than one pending token, oldest first, each
 *      as large as the remaining budget allows: a long prompt is ingested over several steps while
 *      every decode still gets its token each step. When the step has decodes, chunks are also
 *      capped by attention work (max_prefill_pairs: n * (start + n) summed over chunks), because
 *      deep in a long prompt one token costs far more than at its start; without decodes nobody
 *      waits, and chunks take the whole budget.
 *   3. admission, FIFO: the queue head is matched against the prefix cache, and admitted when the
 *      blocks its known tokens still need fit in the free + evictable blocks, keeping one block
 *      per running sequence in reserve for their decodes, and (hybrid models) a recurrent-state
 *      slot is free; otherwise it waits at the head of the queue. Admission allocates all blocks of the
 *      known tokens at once, so prefill never needs memory later; only decodes grow.
 * Preempted requests keep their sampler state and generated tokens: recomputation ends on the
 * last known token and samples the next new one, so outputs are the same as without preemption.
 */
#include <math.h>
#include <string.h>
#include <xxhash.h>

#include "base/clock.h"
#include "base/log.h"
#include "engine/engine_int.h"

/* ==== Lists ==== */

static void waiting_push_head(struct engine *e, struct request *r)
{
    r->prev = NULL;
    r->next = e->wait_head;
    if (e->wait_head) e->wait_head->prev = r; else e->wait_tail = r;
    e->wait_head = r;
    e->n_waiting++;
}

void sched_waiting_remove(struct engine *e, struct request *r)
{
    if (r->prev) r->prev->next = r->next; else e->wait_head = r->next;
    if (r->next) r->next->prev = r->prev; else e->wait_tail = r->prev;
    r->next = r->prev = NULL;
    e->n_waiting--;
}

void sched_running_remove(struct engine *e, struct request *r)
{
    int i = 0;
    while (i < e->n_running && e->running[i] != r) i++;
    CHECK(i < e->n_running, "request %llu not running", (unsigned long long)r->id);
    memmove(e->running + i, e->running + i + 1, (size_t)(e->n_running - i - 1) * sizeof *e->running);
    e->n_running--;
    atomic_store(&e->n_running_pub, e->n_running);
}

/* ==== Prefix cache ==== */

void sched_index_blocks(struct engine *e, struct request *r)
{
    if (!e->cfg.prefix_cache || r->embed) return;   // an embedding's blocks are freed at once
    int full = r->n_computed / e->bs;
    while (r->n_keyed < full) {
        int i = r->n_keyed;
        uint64_t parent = i > 0 ? r->keys[i - 1] : r->salt;
        const int32_t *t = r->tok + (size_t)i * (size_t)e->bs;
        uint64_t k = kv_prefix_key(parent, t, e->bs);
        kv_prefix_insert(e->px, r->table.ids[i], parent, k, t);   // false: same content indexed elsewhere
        r->keys[i] = k;
        r->n_keyed++;
    }
}

/* ==== Recurrent state (hybrid models) ==== */

uint64_t sched_state_of(const int32_t *tok, int n, uint64_t state)
{
    for (int i = 0; i < n; i++) state = XXH3_64bits_withSeed(&tok[i], sizeof tok[i], state);
    return state;
}

void sched_state_advance(struct engine *e, int i)
{
    if (!e->states) return;
    const struct sched_item *it = &e->items[i];
    struct request *r = it->r;
    r->state = sched_state_of(r->tok + it->start, it->n, r->state);
    for (int j = 0; j < e->n_snap_jobs; j++) {
        const struct snap_job *sj = &e->snap_jobs[j];
        // false (the slot is free again): the same content is indexed in another block
        if (sj->item == i) kv_prefix_snap_attach(e->px, sj->slot, r->table.ids[sj->pos / e->bs - 1], sj->tag);
    }
}

void sched_snaps_release(struct engine *e)
{
    for (int j = 0; j < e->n_snap_jobs; j++) kv_prefix_snap_release(e->px, e->snap_jobs[j].slot);
    e->n_snap_jobs = 0;
}

/* r's snapshot positions in the order they are worth taking, rank 0 first: its prompt's end (the
 * next turn resumes there), then its first position (most often the end of a system prompt that
 * other users share), then the others deepest first. The index of the position of that rank. */
static int snap_by_rank(const struct request *r, int rank)
{
    if (rank == 0) return r->n_snap_pos - 1;
    if (rank == 1) return r->n_snap_pos > 1 ? 0 : -1;
    return r->n_snap_pos - rank;   // ranks 2.. : n - 2 down to 1
}

/* The item just added, r's tokens [start, start + n), ends a chunked piece at each of r's
 * snapshot positions p in (start, start + n] (the token at p - 1 is marked TOK_SNAP_CUT in
 * meta.tok_snap), whether or not a snapshot is taken there, so that a prompt's state never depends
 * on the snapshot store (its size, other users' snapshots). With the prefix cache, those positions
 * take a snapshot inside the step (the mark becomes a held slot) by rank while slots last; a
 * request takes at most a quarter of the slots (at least 2; its prompt's end always), so one long
 * conversation cannot evict every other user's snapshots. */
static void plan_snapshots(struct engine *e, struct request *r, int start, int n)
{
    int tok0 = e->n_tok - n;   // the item's tokens are the step's last n
    for (int k = 0; k < r->n_snap_pos; k++)
        if (r->snap_pos[k] > start && r->snap_pos[k] <= start + n) {
            e->tok_snap[tok0 + r->snap_pos[k] - 1 - start] = TOK_SNAP_CUT;
            e->n_tok_marks++;
        }
    if (!e->snaps) return;
    int cap = e->snaps->n_slots / 4 > 2 ? e->snaps->n_slots / 4 : 2, first = e->n_snap_jobs;
    for (int rank = 0; rank < r->n_snap_pos; rank++) {
        int k = snap_by_rank(r, rank);
        if (k < 0 || r->snap_pos[k] <= start || r->snap_pos[k] > start + n) continue;
        if (rank > 0 && r->n_snaps_taken >= cap) break;
        int slot = kv_prefix_snap_hold(e->px);
        if (slot < 0) break;   // this step holds every slot
        e->snap_jobs[e->n_snap_jobs++] = (struct snap_job){ .item = e->n_items - 1, .pos = r->snap_pos[k], .slot = slot };
        e->tok_snap[tok0 + r->snap_pos[k] - 1 - start] = slot;
        r->n_snaps_taken++;
    }
    // the fingerprints, in position order
    for (int j = first + 1; j < e->n_snap_jobs; j++)   // insertion sort by position: a handful of jobs
        for (int i = j; i > first && e->snap_jobs[i].pos < e->snap_jobs[i - 1].pos; i--) {
            struct snap_job t = e->snap_jobs[i];
            e->snap_jobs[i] = e->snap_jobs[i - 1];
            e->snap_jobs[i - 1] = t;
        }
    uint64_t tag = r->state;
    for (int j = first, at = start; j < e->n_snap_jobs; j++) {
        struct snap_job *sj = &e->snap_jobs[j];
        sj->tag = tag = sched_state_of(r->tok + at, sj->pos - at, tag);
        at = sj->pos;
    }
}

/* State models: short of the end of the known tokens, a chunk from start ends on a multiple of
 * GDN_CHUNK when one lies inside it, where the backends' chunked delta rule cuts its own chunks
 * (as at snapshot tokens): a prompt's state then does not depend on the step budget (nor so on
 * the batch around it), only on its snapshot and resume positions. */
static int chunk_cut(const struct engine *e, const struct request *r, int start, int n)
{
    if (!e->states) return n;
    int end = start + n, aligned = end / GDN_CHUNK * GDN_CHUNK;
    if (end < r->n_tok && aligned > start) return aligned - start;
    return n;
}

/* The static rule (until pacing has measured, or with pacing off): the largest chunk n <= want
 * starting at start with n * (start + n) <= *pairs (at least 16, or want if smaller); *pairs is
 * charged. */
static int pairs_cut(int64_t *pairs, int start, int want)
{
    int n = want;
    if ((int64_t)n * (start + n) > *pairs) {
        double s0 = (double)start, p = (double)(*pairs > 0 ? *pairs : 0);
        n = (int)((-s0 + sqrt(s0 * s0 + 4.0 * p)) / 2.0);
        while (n > 0 && (int64_t)n * (start + n) > *pairs) n--;
        if (n < 16) n = want < 16 ? want : 16;
    }
    *pairs -= (int64_t)n * (start + n);
    return n;
}

/* Leading full blocks r and o have in common (same salt), counted up to limit. */
static int shared_blocks(const struct engine *e, const struct request *r, const struct request *o, int limit)
{
    if (r->salt != o->salt) return 0;
    int n = 0;
    while (n < limit && (n + 1) * e->bs <= o->n_tok &&
           !memcmp(r->tok + (size_t)n * (size_t)e->bs, o->tok + (size_t)n * (size_t)e->bs, (size_t)e->bs * sizeof *r->tok))
        n++;
    return n;
}

/* ==== Preemption ==== */

static void preempt(struct engine *e, struct request *v)
{
    kv_table_release(e->kb, &v->table);
    if (v->state_slot >= 0) state_pool_release(e->states, v->state_slot);   // recomputed from position 0
    v->state_slot = -1;
    v->n_computed = 0;
    v->n_keyed = 0;
    v->state = 0;
    sched_running_remove(e, v);
    waiting_push_head(e, v);
    e->acc.preemptions++;
    e->preempted_step = true;
}

/* Grows r's table to n_tokens positions, preempting the newest running requests as needed.
 * False if r itself had to be preempted. */
static bool ensure_blocks(struct engine *e, struct request *r, int n_tokens)
{
    while (kv_table_grow(e->kb, &r->table, n_tokens, e->bs) != STATUS_OK) {
        CHECK(e->n_running > 0, "no running request to preempt");
        struct request *v = e->running[e->n_running - 1];
        preempt(e, v);
        if (v == r) return false;
    }
    return true;
}

/* ==== Admission ==== */

static bool try_admit(struct engine *e, struct request *r)
{
    int n_hit = 0;
    if (e->cfg.prefix_cache && !r->embed) {
        int max_hit = (r->n_tok - 1) / e->bs;   // always compute at least the last known token
        n_hit = kv_prefix_lookup(e->px, r->salt, r->tok, r->n_tok, max_hit, e->hit_blocks, e->hit_keys);
        // a state model resumes where it has both the KV blocks and a state snapshot
        if (e->states) n_hit = kv_prefix_snap_depth(e->px, e->hit_blocks, n_hit);
        // n > 1 choices and bursts with a common prompt: if a request in prefill is computing
        // blocks this one could share, wait for them instead of computing them twice
        int full = (r->n_tok - 1) / e->bs;
        for (int i = 0; i < e->n_running && n_hit < full; i++) {
            struct request *o = e->running[i];
            if (o->n_computed >= o->n_tok - 1) continue;   // decoding: its blocks are indexed already
            if (o->embed) continue;                        // never indexed
            int sh = shared_blocks(e, r, o, full);
            if (sh > n_hit && o->n_computed < sh * e->bs) return false;
        }
    }
    int need = (r->n_tok + e->bs - 1) / e->bs - n_hit;
    int hits_cached = 0;
    for (int i = 0; i < n_hit; i++) hits_cached += e->kb->state[e->hit_blocks[i]] == KV_BLOCK_CACHED;
    int avail = kv_blocks_n_available(e->kb) - hits_cached;
    int reserve = e->n_running;
    if (need + reserve > avail && !(e->n_running == 0 && need <= avail)) return false;
    if (e->states && e->states->n_free == 0) return false;   // every state slot is taken: wait like for blocks

    for (int i = 0; i < n_hit; i++) {
        kv_blocks_retain(e->kb, e->hit_blocks[i]);
        kv_table_push(&r->table, e->hit_blocks[i]);
        r->keys[i] = e->hit_keys[i];
    }
    r->n_keyed = n_hit;
    r->n_computed = n_hit * e->bs;
    if (e->states) {
        r->state_slot = state_pool_alloc(e->states);
        CHECK(r->state_slot >= 0, "state slot accounting is wrong");
        r->state = 0;
        if (n_hit > 0) {
            int snap = kv_prefix_snap_get(e->px, e->hit_blocks[n_hit - 1], &r->state);
            CHECK(snap >= 0, "snapshot vanished");
            engine_ranks_state_load(e, r->state_slot, snap);
        }
    }
    enum status st = kv_table_grow(e->kb, &r->table, r->n_tok, e->bs);
    CHECK(st == STATUS_OK, "admission accounting is wrong: %d blocks needed, %d available", need, avail);
    if (e->cfg.prefix_cache) {
        e->acc.prefix_lookups++;
        e->acc.prefix_hit_tokens += (uint64_t)r->n_computed;
    }
    if (!r->admitted_once) {
        r->admitted_once = true;
        e->acc.prompt_tokens += (uint64_t)r->n_prompt;
        stream_set_admitted(r->ts, r->n_computed, clock_now_s());
        // the slot shows taken before the queue shrinks: a submitter never counts this one twice
        atomic_store(&e->n_running_pub, e->n_running + 1);
        if (r->counted_waiting) {
            pthread_mutex_lock(&e->q_mu);
            e->n_queued--;
            pthread_mutex_unlock(&e->q_mu);
            r->counted_waiting = false;
        }
    }
    sched_waiting_remove(e, r);
    e->running[e->n_running++] = r;
    atomic_store(&e->n_running_pub, e->n_running);
    return true;
}

/* ==== Batch ==== */

static void add_item(struct engine *e, struct request *r, int start, int n)
{
    int s = e->n_items;
    CHECK(s < e->cfg.max_running && e->n_tok + n <= e->cfg.max_batch_tokens, "batch overflow");
    struct sched_item *it = &e->items[s];
    *it = (struct sched_item){ .r = r, .start = start, .n = n, .out_row = -1, .hid_tok = -1 };
    for (int t = start; t < start + n; t++) {
        int i = e->n_tok++;
        if (e->tok_snap) e->tok_snap[i] = TOK_SNAP_NONE;
        e->tok_id[i] = r->tok[t];
        e->tok_pos[i] = t;
        e->tok_seq[i] = s;
        e->tok_slot[i] = (int64_t)r->table.ids[t / e->bs] * e->bs + t % e->bs;
    }
    e->seq_len[s] = start + n;
    e->seq_state_slot[s] = r->state_slot;
    int nb = (start + n + e->bs - 1) / e->bs;
    CHECK(nb <= r->table.n, "sequence %llu: %d blocks needed, %d held", (unsigned long long)r->id, nb, r->table.n);
    memcpy(e->block_ids + e->seq_block0[s], r->table.ids, (size_t)nb * sizeof *e->block_ids);
    e->seq_block0[s + 1] = e->seq_block0[s] + nb;
    if (start + n == r->n_tok && r->embed) {
        it->hid_tok = e->n_tok - 1;
        e->want_hidden = true;
    } else if (start + n == r->n_tok) {
        it->out_row = e->n_out;
        e->out_tok[e->n_out++] = e->n_tok - 1;
    }
    e->n_items++;
}

/* Requests still waiting for their first token: queued, or admitted and in prefill. */
static int first_token_waiters(const struct engine *e)
{
    int n = e->n_waiting;
    for (int i = 0; i < e->n_running; i++) n += e->running[i]->n_gen == 0;
    return n;
}

/* The next prefill chunk of r: as much of its pending tokens as the step's token budget, then the
 * pacing budget (paced >= 0) or the static pairs rule (*pairs != INT64_MAX), then chunk_cut
 * allow, with the state snapshots that fall inside it. */
static void add_chunk(struct engine *e, struct request *r, int *budget, int64_t *pairs, double *paced)
{
    int start = r->n_computed, pend = r->n_tok - start;
    if (*paced >= 0 && *paced < 1 && e->prefill_units > 0) return;   // spent: the minimum chunk went to an older one
    int n = pend < *budget ? pend : *budget;
    if (*paced >= 0) n = pace_cut(&e->pace, paced, start, n);
    else if (*pairs != INT64_MAX) n = pairs_cut(pairs, start, n);
    n = chunk_cut(e, r, start, n);
    add_item(e, r, start, n);
    plan_snapshots(e, r, start, n);
    e->prefill_units += pace_units(&e->pace, start, n);
    *budget -= n;
}

int sched_build(struct engine *e)
{
    e->n_items = e->n_tok = e->n_out = e->n_snap_jobs = e->n_tok_marks = 0;
    e->want_hidden = false;
    e->preempted_step = false;
    e->seq_block0[0] = 0;
    int budget = e->cfg.max_batch_tokens;

    for (int i = 0; i < e->n_running; i++) {
        struct request *r = e->running[i];
        if (r->embed || r->n_tok - r->n_computed != 1) continue;   // embeddings are all prefill
        if (!ensure_blocks(e, r, r->n_tok)) break;   // r was the newest: everything after it is gone too
        add_item(e, r, r->n_computed, 1);
        budget--;
    }
    e->n_dec = e->n_items;
    e->prefill_units = 0;
    // Decodes wait on this step: its prefill is paced to their latency target once the step costs
    // are measured (pace.h), by the static pairs rule before that; without decodes nobody waits.
    double paced = e->n_dec > 0 ? pace_budget(&e->pace, e->n_dec, first_token_waiters(e)) : -1;
    int64_t pairs = e->n_dec > 0 && paced < 0 ? e->cfg.max_prefill_pairs : INT64_MAX;
    for (int i = 0; i < e->n_running && budget > 0; i++) {
        struct request *r = e->running[i];
        int pend = r->n_tok - r->n_computed;
        if (pend > 1 || (r->embed && pend == 1)) add_chunk(e, r, &budget, &pairs, &paced);
    }
    // no admission right after a preemption: memory is short, and the victim would only thrash
    while (!e->preempted_step && budget > 0 && e->wait_head && e->n_running < e->cfg.max_running) {
        struct request *r = e->wait_head;
        if (!try_admit(e, r)) break;
        add_chunk(e, r, &budget, &pairs, &paced);
    }
    return e->n_tok;
}
