/* forward: the one forward pass of every architecture, over a flattened batch of tokens.
 *
 * A step takes tokens from many sequences (struct batch_meta), writes their K/V into the paged
 * cache and returns logits for the tokens listed in meta->out_tok (and, for embeddings, the final
 * normed hidden state of every token: forward_step_hidden). Architecture differences come
 * from model->f and model->hp only. Scratch activations live in one compute buffer sized at
 * forward_new for max_tok tokens: a step allocates nothing.
 *
 *     struct forward *fw;  forward_new(m, be, 512, 64, &fw);
 *     struct tensor logits;  forward_step(fw, kv_layers, &meta, &logits);   // [n_out, n_vocab] f32
 *     be->ops->download(be, host, &logits, bytes);
 */
#ifndef CAIRN_MODEL_FORWARD_H
#define CAIRN_MODEL_FORWARD_H

#include "backend/backend.h"
#include "model/model.h"

struct forward;

/* max_tok: tokens per step at most; max_out: logits rows per step at most (<= max_tok). */
enum status forward_new(const struct model *m, struct backend *be, int max_tok, int max_out,
                        struct forward **out);
void        forward_free(struct forward *fw);
/* Hybrid models: the recurrent state the DeltaNet layers read and advance ([n_layers], entries of
 * linear layers used; kv/state_pool.h), and the snapshot store that steps with meta->tok_snap write
 * (the same layout; NULL: steps take no snapshots), borrowed until the next call. Steps then need
 * meta->seq_state_slot. */
void        forward_bind_states(struct forward *fw, struct gdn_state_layer *states, struct gdn_state_layer *snaps);
int         forward_max_tok(const struct forward *fw);
/* A step stores clock_now_ns() into *ns after each block (token mixing, FFN) it issues (NULL: none), so that a long
 * step shows it is progressing (the engine's liveness; engine_get_stats). Borrowed. */
void        forward_bind_heartbeat(struct forward *fw, _Atomic int64_t *ns);
/* A rank's model (model->shard.n_ranks > 0, model/shard.h) needs its rank's collective before its
 * first step (the same rank and world size; borrowed); its steps then return the whole [n_out,
 * n_vocab] logits on every rank. Every rank must run the same steps (dist/ranks.h). */
struct collective;
void        forward_bind_collective(struct forward *fw, struct collective *c);

/* Runs one step. kv: [n_layers] cache layers. meta->n_tok <= max_tok and meta->n_out <= max_tok.
 * *logits receives a view of [n_out, n_vocab] f32 in backend memory, valid until the next step. */
void forward_step(struct forward *fw, struct kv_layer *kv, const struct batch_meta *meta,
                  struct tensor *logits);
/* The same step, and *hidden receives a view of [n_tok, d_model] f32 in backend memory, valid until
 * the next step: every token's final normed hidden state (what lm_head reads; last-token pooling of
 * an embedding model picks its row). Such a step is never replayed from a step graph. */
void forward_step_hidden(struct forward *fw, struct kv_layer *kv, const struct batch_meta *meta,
                         struct tensor *logits, struct tensor *hidden);

#endif
