/* model_cost: what one token of a model costs, for the benchmarks' rooflines and `cairn info`.
 *
 * One definition of "the bytes a decode token reads" and "the FLOPs a prefill token costs",
 * computed from the tensors the model actually bound (so quantized weights count their packed
 * words + scales + biases, and a mixed checkpoint counts each tensor as stored):
 *
 *   decode weight bytes = per layer: norms + attention (q, q gate, k, v, o, biases, q/k norms)
 *                         or Gated DeltaNet (in-projections, conv taps, A_log, dt_bias, norm, out)
 *                         + dense FFN, or router + shared expert + its gate + the routed experts'
 *                         bytes times n_experts_used / n_experts (one token runs k of E)
 *                       + one row of the embedding table + the final norm + the whole lm_head.
 *                         The MTP head (loaded, not run) is not counted.
 *   decode bytes at ctx = weight bytes + KV read of ctx + 1 positions in every attention layer
 *                         (a sliding layer: at most its window) + the recurrent state of every
 *                         Gated DeltaNet layer (conv + SSM, as kv/state_pool keeps it) read and written.
 *   prefill FLOPs       = 2 x the matmul weights a token multiplies (experts times k / E; lm_head
 *                         only for the n_out tokens that produce logits) per token + causal
 *                         attention (QK^T and PV, 4 * n_heads * head_dim per query-key pair, a
 *                         sliding layer's keys capped at its window) + each Gated DeltaNet layer's
 *                         causal conv (2 K per channel) and delta rule in its recurrent form
 *                         (7 dk dv per value head: decay, k.S, rank-1 update, q.S). Norms,
 *                         activations, rope, softmax and gating are not counted.
 *
 *     double b = model_decode_bytes(m, DTYPE_BF16, 512);   // bytes of the token at position 512
 *     printf("roofline %.1f tok/s\n", read_bytes_per_s / b);
 */
#ifndef CAIRN_MODEL_MODEL_COST_H
#define CAIRN_MODEL_MODEL_COST_H

#include <stdint.h>

#include "model/model.h"

/* Weight bytes one decode token reads (above); the model's whole weight_bytes for a dense model
 * less the embedding table plus one row. */
double model_decode_weight_bytes(const struct model *m);
/* Recurrent-state bytes one decode token reads and writes (2 x model_seq_state_bytes); 0 without
 * Gated DeltaNet layers. */
double model_decode_state_bytes(const struct model *m);
/* KV bytes one decode token reads with ctx positions already cached (ctx >= 0). */
double model_decode_kv_bytes(const struct model *m, enum dtype kv_dtype, int64_t ctx);
/* All of the above: the bytes of the decode token at position ctx. */
double model_decode_bytes(const struct model *m, enum dtype kv_dtype, int64_t ctx);
/* Matmul weights (elements) one token multiplies, lm_head excluded, routed experts times k / E. */
double model_active_params(const struct model *m);
/* FLOPs of a prefill of n_tok tokens from position 0 with logits for n_out of them (above). */
double model_prefill_flops(const struct model *m, int64_t n_tok, int64_t n_out);

#endif
