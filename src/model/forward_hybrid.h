/* forward_hybrid: the blocks of the hybrid models (Qwen3-Next, Qwen3.5/3.6) that forward.c calls.
 *
 * A Gated DeltaNet layer's mixer (hybrid_gdn_block), the gated attention's output gate
 * (hybrid_attn_output_gate) and the MoE shared expert (hybrid_shared_expert_add), each a sequence
 * of backend ops over the step's tokens, with their own scratch (struct hybrid_scratch, sized at
 * forward_new for max_tok tokens: a step allocates nothing). The math is qwen35-arch.md sections
 * 3-5; weights come in the layouts weights_repack_hybrid makes. Same threading as forward.c.
 *
 *     hybrid_scratch_new(be, m, max_tok, &hs);
 *     hybrid_gdn_block(be, m, l, hs, &x, &xn, &states[l], NULL, meta, NULL);   // x += mixer(norm(x))
 *     hybrid_scratch_free(be, hs);
 */
#ifndef CAIRN_MODEL_FORWARD_HYBRID_H
#define CAIRN_MODEL_FORWARD_HYBRID_H

#include "backend/backend.h"
#include "model/model.h"

struct hybrid_scratch {
    struct buffer *buf;            // owned: everything below lives here
    struct tensor  qkv;            // [max_tok, conv_dim] in_proj_qkv output (conv input)
    struct tensor  conv;           // [max_tok, conv_dim] conv + SiLU output: [q | k | v]
    struct tensor  z;              // [max_tok, nv * dv] output gate of the DeltaNet
    struct tensor  a, b;           // [max_tok, nv] decay and beta inputs
    struct tensor  core;           // [max_tok, nv * dv] delta-rule output, then gated-normed
    struct tensor  gate;           // [max_tok, n_heads * hd] attention output gate
    struct tensor  sh_gate, sh_up; // [max_tok, d_ff_shared] shared expert
    struct tensor  out;            // [max_tok, d] a block's output before the residual add
    struct tensor  sh_logit;       // [max_tok, 1] shared_expert_gate logit
};

/* EUNSUPPORTED (logged) when the backend lacks the ops the model needs; ENOMEM from the backend. */
enum status hybrid_scratch_new(struct backend *be, const struct model *m, int max_tok, struct hybrid_scratch **out);
void        hybrid_scratch_free(struct backend *be, struct hybrid_scratch *s);

/* x[n, d] += out_proj(gated_norm(delta_rule(conv(norm(x) W_qkv^T)), norm(x) W_z^T)) for DeltaNet
 * layer l, continuing each sequence's state in st (slots meta->seq_state_slot) and writing the
 * snapshots meta->tok_snap asks for into snap (NULL without them); xn: scratch [n, d].
 * out != NULL ([n, d]): the mixer's output goes there instead and x is left as it was (a rank's
 * partial sum, added after the all-reduce). */
void hybrid_gdn_block(struct backend *be, const struct model *m, int l, struct hybrid_scratch *s, struct tensor *x,
                      struct tensor *xn, struct gdn_state_layer *st, struct gdn_state_layer *snap,
                      const struct batch_meta *meta, struct tensor *out);
/* attn[n, nh*hd] *= sigmoid(xn wq_gate^T); xn: the attention block's normalised input. */
void hybrid_attn_output_gate(struct backend *be, const struct model *m, int l, struct hybrid_scratch *s,
                             struct tensor *attn, const struct tensor *xn);
/* x[n, d] += sigmoid(xn . shared_expert_gate) * down(silu(xn gate^T) * (xn up^T)); xn: the FFN's
 * normalised input. */
void hybrid_shared_expert_add(struct backend *be, const struct model *m, int l, struct hybrid_scratch *s,
                              struct tensor *x, const struct tensor *xn);

#endif
