/* engine_int: the engine's internal state, shared by engine.c (API, thread, step, sampling and
 * emission), sched.c (admission, token budget, preemption, batch building) and request.c.
 * Everything here except the inbox and the stats is touched by the engine thread only.
 */
#ifndef CAIRN_ENGINE_ENGINE_INT_H
#define CAIRN_ENGINE_ENGINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "engine/engine.h"
#include "engine/pace.h"
#include "engine/stream.h"
#include "backend/backend.h"
#include "kv/blocks.h"
#include "kv/pool.h"
#include "kv/prefix.h"
#include "kv/state_pool.h"
#include "model/forward.h"
#include "model/model.h"

/* One generation request: the whole sequence (prompt + generated), its block table and sampler.
 * Allocated at submit (on the caller's thread), freed by the engine when it finishes. */
struct request {
    uint64_t             id;
    struct token_stream *ts;            // the engine's reference
    int32_t             *tok;           // [cap_tok] prompt then generated tokens
    int                  n_tok;         // known tokens
    int                  cap_tok;       // n_prompt + max_gen
    int                  n_prompt;
    int                  max_gen;       // min(max_tokens, context - n_prompt)
    bool                 ctx_limited;   // max_gen was cut by the context
    int                  n_gen;
    int                  n_computed;    // tokens whose K/V are in the cache (prefix hits included)
    int32_t              state_slot;    // hybrid models: its recurrent-state slot while running, else -1
    struct kv_table      table;
    uint64_t            *keys;          // [table.cap] chain keys of the first n_keyed full blocks
    int                  n_keyed;
    uint64_t             salt;
    struct sampler      *smp;
    bool                 plain_greedy;  // the backend's argmax of its (masked) logits is enough
    int32_t             *stop_ids;
    int                  n_stop_ids;
    bool                 ignore_eos;
    int                  min_gen;       // EOS and stop ids masked until n_gen reaches it
    int                  n_logprobs;
    int32_t             *msg_ends;      // snapshot hints (hybrid models, later)
    int                  n_msg_ends;
    int32_t             *snap_pos;      // block-aligned snapshot positions, ascending (state models only)
    int                  n_snap_pos;
    int                  n_snaps_taken; // snapshots its steps took (sched.c: plan_snapshots' budget)
    uint64_t             state;         // hash chain of the computed tokens: the fingerprint of its recurrent state
    bool                 admitted_once;
    bool                 counted_waiting;   // still counted in e->n_queued (never admitted)
    struct constraint   *cons;          // owned; NULL: free output
    int32_t              cons_after;    // the token that starts the constraint, -1 once started (or none)
    int                  cons_ids;      // ids the mask covers (constraint_vocab_size)
    uint32_t            *mask;          // [mask words] ids allowed next, valid when mask_ready
    bool                 mask_ready;    // mask is that of the constraint's current state and budget
    enum status          mask_st;       // constraint_mask's status when mask_ready
    bool                 embed;         // an embedding request (gen_request.embed): prefill only
    struct request      *next;          // inbox / waiting list links
    struct request      *prev;
};

/* One rank of a sharded model (engine_ranks.c); rank 0's forward pass, pools and backend are the
 * engine's own (fw, pool, states, be), the others have the same block and slot counts. */
struct engine_rank {
    struct model       *m;          // borrowed
    struct backend     *be;         // borrowed
    struct forward     *fw;
    struct kv_pool     *pool;
    struct state_pool  *states;     // hybrid models
    struct state_pool  *snaps;      // hybrid models with the prefix cache: its state snapshots
    struct collective  *coll;       // borrowed: its handle of the ranks' collective
    enum status         st;         // its last step's collective_sync
};

/* What one sequence contributes to a step. */
/* One item's sampled token, with what it reports (log-probability, top alternatives). */
struct sampled {
    bool                 from_cands;   // tok came from the row's candidates (no download, no host pass)
    int32_t              tok;
    float                lp;
    int                  n_top;
    struct token_logprob top[SAMPLER_MAX_TOP];
};

/* A state snapshot a step takes inside its forward pass (hybrid prefix cache): held in kv_prefix
 * while the step runs, attached to its block after it. */
struct snap_job {
    int             item;               // the item whose tokens reach pos
    int             pos;                // the state after positions [0, pos): the end of block pos / bs - 1
    int             slot;               // held snapshot slot
    uint64_t        tag;                // the state's fingerprint (sched_state_of)
};

struct sched_item {
    struct request *r;
    int             start;              // first position computed
    int             n;                  // tokens computed
    int             out_row;            // row in the logits, -1 if nothing is sampled
    int             hid_tok;            // embedding request's last token: its index in the step, else -1
    int             mask_idx;           // its mask in e->masks when its logits row was masked, else -1
    enum status     mask_st;            // not OK: its mask could not be made (the request ends with it)
                                        // (both set by engine.c: mask_logits, each step)
};

struct engine {
    struct engine_cfg      cfg;
    struct model          *m;
    struct backend        *be;
    struct kv_pool        *pool;
    struct state_pool     *states;          // hybrid models: one recurrent-state slot per running request
    int32_t               *seq_state_slot;  // [max_running] the step's slot of each sequence
    struct kv_blocks      *kb;
    struct kv_prefix      *px;
    struct forward        *fw;
    int                    n_ranks;         // 1 unless the model is sharded
    struct engine_rank    *ranks;           // [n_ranks] (n_ranks > 1), [0] mirrors fw, pool, states, be
    struct ranks          *rk;              // the rank threads (n_ranks > 1)
    const struct batch_meta *step_meta;     // the step the ranks execute
    enum status            ranks_failed;    // not OK once a rank failed a step: every later step fails
                                            // at once (a failed NCCL group's communicators are gone)
    struct threadpool     *sample_pool;     // samples a step's rows; NULL: the engine thread alone
    struct sampler_scratch **scratch;       // [cfg.sample_threads] one per sampling thread
    struct sampled        *sampled;         // [max_running] each item's draw (engine.c: sample_rows)
    int                   *sample_items;    // [max_running] the step's items that sample on the host
    int                    n_vocab;
    int                    bs;              // block size
    int                    max_ctx;         // tokens a sequence may reach
    int                    max_blocks_seq;  // ceil(max_ctx / bs)
    uint64_t               salt_model;      // mixed into every request's salt
    struct state_pool     *snaps;           // prefix-cache snapshots: kv_prefix's slot s is slot s here (NULL: none)

    // inbox (any thread, under q_mu)
    pthread_mutex_t        q_mu;
    pthread_cond_t         q_cv;            // wakes the engine thread
    struct request        *inbox_head, *inbox_tail;
    int                    n_queued;        // inbox + waiting requests never admitted
    uint64_t               next_id;
    bool                   shutting_down;
    bool                   has_thread;
    pthread_t              thread;
    atomic_int             poke;            // a cancel/finish arrived
    atomic_int             n_running_pub;   // n_running as submitters read it (free slots admit at once)
    atomic_int             n_pending;       // submitted and not yet ended, counted live (liveness)
    _Atomic int64_t        heartbeat_ns;    // the engine thread's last sign of progress (engine_get_stats)

    // engine thread only
    struct request        *wait_head, *wait_tail;   // FIFO; preempted requests go to the head
    int                    n_waiting;
    struct request       **running;         // [max_running], oldest admission first
    int                    n_running;

    // per-step arrays, preallocated
    struct sched_item     *items;           // [max_running]
    int                    n_items;
    int32_t               *tok_id, *tok_pos, *tok_seq;   // [max_batch_tokens]
    int64_t               *tok_slot;        // [max_batch_tokens]
    int32_t               *seq_len;         // [max_running]
    int32_t               *seq_block0;      // [max_running + 1]
    int32_t               *block_ids;       // [max_running * max_blocks_seq]
    int32_t               *out_tok;         // [max_running]
    int32_t               *tok_snap;        // [max_batch_tokens] meta.tok_snap (hybrid models)
    int                    n_tok_marks;     // its entries that are not TOK_SNAP_NONE this step
    struct snap_job       *snap_jobs;       // [snaps->n_slots] the step's snapshots (with the prefix cache)
    int                    n_snap_jobs;
    bool                   want_hidden;     // an embedding request ends in the step being built
    int32_t               *argmax_ids;      // [max_running]
    float                 *logits;          // [max_running * n_vocab] host rows for the sampler (pinned on cuda)
    // the sample_cands op's rows (engine.c: sample_outputs); allocated where the backend has it
    int                   *cand_items;      // [max_running] the step's items that sent their row
    int32_t               *cand_rows;       // [max_running] their logits rows
    float                 *cand_inv_t;      // [max_running] their 1 / temperature
    int32_t               *cand_ids;        // [max_running * SAMPLER_CANDS]
    float                 *cand_vals;       // [max_running * SAMPLER_CANDS]
    double                *cand_sums;       // [max_running]
    int                    mask_words;      // ceil(n_vocab / 32): uint32 words of one row's mask
    int32_t               *mask_rows;       // [max_running] the step's masked logits rows
    uint32_t              *masks;           // [max_running * mask_words] their masks, in mask_rows order
    int32_t               *hit_blocks;      // [max_blocks_seq] prefix lookup scratch
    uint64_t              *hit_keys;        // [max_blocks_seq]
    int                    n_tok;           // tokens in the step being built
    int                    n_out;
    bool                   preempted_step;  // this step preempted someone
    struct pace            pace;            // prefill sizing from measured step times
    int                    n_dec;           // decodes in the step being built
    double                 prefill_units;   // its prefill, in pace token-equivalents
    struct engine_stats    acc;             // counters, engine thread only; published to st each step
    struct mask_worker    *mw;              // computes constrained rows' masks during the forward pass
    struct request       **mask_jobs;       // [max_running] the step's requests whose mask is due

    // stats (written by the engine thread under st_mu)
    pthread_mutex_t        st_mu;
    struct engine_stats    st;
};

/* request.c */
enum status request_new(struct engine *e, const struct gen_request *g, struct request **out, char *msg, size_t msg_len);
void        request_free(struct engine *e, struct request *r);

/* sched.c: builds the step's batch in e->items / e->tok_* (returns the tokens scheduled). */
int  sched_build(struct engine *e);
void sched_waiting_remove(struct engine *e, struct request *r);
void sched_running_remove(struct engine *e, struct request *r);
/* Indexes the full blocks of r computed so far in the prefix cache. */
void sched_index_blocks(struct engine *e, struct request *r);
/* State models, after a step: advances the fingerprint of item i's state over its tokens and
 * attaches the snapshots the step took for it to their blocks (sched_index_blocks first). */
void sched_state_advance(struct engine *e, int i);
/* A failed step's snapshots: their held slots go back. */
void sched_snaps_release(struct engine *e);
/* The fingerprint of the state after tokens [0, n): a hash chain, stored with each snapshot and checked on resume. */
uint64_t sched_state_of(const int32_t *tok, int n, uint64_t state);

/* mask_worker.c: n_threads threads that compute constrained requests' masks (constraint_mask with
 * the tokens left as budget) while the engine thread runs the forward pass; wait computes the jobs
 * no worker has taken, then waits for the rest. Between post and wait's return a request's
 * cons / mask / mask_st / mask_ready belong to whichever thread took its job. NULL: no thread could
 * start (the engine then computes every mask itself). */
struct mask_worker;
struct mask_worker *mask_worker_new(int n_threads);
void                mask_worker_free(struct mask_worker *w);
void                mask_worker_post(struct mask_worker *w, struct request **rs, int n);
void                mask_worker_wait(struct mask_worker *w);
/* Computes r's mask now on the calling thread (if not ready). */
void                request_mask_compute(struct request *r);

/* engine.c */
void engine_end_request(struct engine *e, struct request *r, enum finish_reason why, enum status err);

/* ==== Ranks (engine_ranks.c) ==== */

/* Ranks 1..n-1's forward passes and pools (n_blocks KV blocks, the state slots of e->states) and
 * their threads; every rank's forward pass gets its collective. ENOMEM, EIO: logged. */
enum status engine_ranks_new(struct engine *e, const struct engine_shards *sh, int n_blocks);
void        engine_ranks_free(struct engine *e);
/* The step on every rank (rank 0: into logits and, with want_hidden, hidden; queued on e->be like
 * forward_step); the other ranks also sync, and the first failure is returned. */
enum status engine_ranks_forward(struct engine *e, const struct batch_meta *meta, struct tensor *logits,
                                 struct tensor *hidden);
/* On every rank, queued like a step: snapshot slot `snap` into state slot `slot` (a resume). */
void        engine_ranks_state_load(struct engine *e, int slot, int snap);

#endif
