/* shard: a model split over the ranks of a tensor- (and expert-) parallel group, Megatron's layout.
 *
 * shard_plan_make decides from the hyper-parameters and the rank count what each rank holds; it
 * refuses (EINVAL, logged naming the dimension) shapes that do not divide. model_shard builds
 * rank r's struct model: its slices of the full model's weights, copied into host memory it owns
 * (no rank holds the whole model; a device backend's model_prepare then copies only the slices),
 * and hyper-parameters with the rank's local counts, so the forward pass, the KV cache and the
 * recurrent state are sized per rank without knowing about ranks. What a rank holds:
 *  - attention: its n_heads / N query heads (q_proj rows, o_proj columns, the gate rows of gated
 *    attention); its n_kv / N KV heads, or, with fewer KV heads than ranks, the one KV head its
 *    query heads read (replicated on N / n_kv ranks);
 *  - dense FFN and the MoE shared expert: gate/up rows and down columns of its 1/N of the
 *    intermediate size;
 *  - MoE experts: expert parallel, experts [r E/N, (r+1) E/N) whole, the others absent (the
 *    backend's moe_ffn skips them); otherwise every expert with 1/N of its intermediate size;
 *  - Gated DeltaNet: its nv / N value heads (and their key heads, replicated when nk < N), in
 *    in_proj_qkv / conv1d / z / a / b rows and out_proj columns;
 *  - vocabulary: rows [r V', (r+1) V') of the embedding and lm_head, V' = ceil(V / N), zero rows
 *    past V, and one more zero row the embedding maps other ranks' tokens to;
 *  - norms, q/k norms and the router: whole.
 * The forward pass then all-reduces after o_proj, after down / the MoE block, after a DeltaNet's
 * out_proj and after the embedding, and all-gathers the logits (model/forward.h,
 * forward_bind_collective). The MTP head is not sharded (not run).
 *
 *     struct shard_plan p;
 *     if (shard_plan_make(&full->hp, &full->f, 4, false, &p) != STATUS_OK) return 1;   // logged
 *     for (int r = 0; r < 4; r++) model_shard(full, &p, r, &rank_model[r]);
 */
#ifndef CAIRN_MODEL_SHARD_H
#define CAIRN_MODEL_SHARD_H

#include <stdbool.h>

#include "base/status.h"
#include "model/model.h"

struct shard_plan {
    int  n_ranks;
    bool expert_parallel;     // MoE: whole experts per rank (else each expert's FFN split)
    int  n_heads;             // query heads per rank
    int  n_kv_heads;          // KV heads per rank (1 when replicated)
    int  d_ff;                // dense FFN intermediate size per rank
    int  d_ff_expert;         // routed experts' intermediate size per rank
    int  d_ff_shared;         // shared expert's intermediate size per rank
    int  n_experts_local;     // expert parallel: experts per rank
    int  lin_n_k_heads;       // DeltaNet key heads per rank (1 when replicated)
    int  lin_n_v_heads;       // DeltaNet value heads per rank
    int  n_vocab_local;       // vocabulary rows per rank, ceil(n_vocab / n_ranks)
};

/* EINVAL (logged, naming the dimension and the rank count) when a sharded dimension does not
 * divide by n_ranks; EUNSUPPORTED for a layout no family has (sandwich norms with a shared expert). */
enum status shard_plan_make(const struct hparams *hp, const struct arch_features *f, int n_ranks,
                            bool expert_parallel, struct shard_plan *out);
/* Rank r's model (free with model_free). full: as model_load or model_synthesize left it (weights
 * in host memory, not yet prepared on a device backend); it may be freed afterwards.
 * EUNSUPPORTED (logged) for MLX-quantized weights. */
enum status model_shard(const struct model *full, const struct shard_plan *p, int rank, struct model **out);

#endif
