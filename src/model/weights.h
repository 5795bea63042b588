/* weights: the list of tensors a family needs at given hyper-parameters (name, role, shape).
 *
 * One plan serves three users: model_load binds each entry from the safetensors files and checks
 * its shape, synth writes each entry as a random tensor, model_synthesize allocates them in host
 * memory. Entries come in file order: embeddings, each layer's weights, final norm, lm_head
 * (absent when embeddings are tied), then the MTP head if the config has one (entries marked mtp:
 * the loader binds them only when the checkpoint holds them). Experts are listed one tensor per
 * expert (the Hub layout). MTP decoder layers are numbered n_layers + j; their names use
 * arch->mtp_layer_prefix and j.
 * Pure functions; any thread.
 *
 *     struct weight_spec *w;  int n = weights_plan(arch, &hp, &f, &w);
 *     for (int i = 0; i < n; i++) printf("%s\n", w[i].name);
 *     free(w);
 */
#ifndef CAIRN_MODEL_WEIGHTS_H
#define CAIRN_MODEL_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "model/arch.h"
#include "model/model.h"

struct weight_spec {
    char       name[160];
    enum wrole role;
    int        layer;          // -1: not per layer
    int        expert;         // -1: not per expert
    int        n_dims;         // 1, 2 or 3 (conv1d taps [conv_dim, 1, K])
    int64_t    ne[4];          // tensor order: ne[0] innermost (= in_features of a Linear); unused dims 1
    bool       mtp;            // part of the MTP head (optional in a checkpoint)
};

/* Elements of a planned tensor. */
int64_t weights_nelem(const struct weight_spec *s);
/* The checkpoint name of role at (layer, expert) (-1 where not applicable) into buf. */
void weights_name(const struct arch *a, const struct hparams *hp, enum wrole role, int layer, int expert,
                  char *buf, size_t n);

/* Allocates *out (caller frees) and returns the number of entries. */
int weights_plan(const struct arch *a, const struct hparams *hp, const struct arch_features *f,
                 struct weight_spec **out);
/* True for RMSNorm weights (synth initializes them around 1, or 0 with (1 + w) norms). */
bool weights_is_norm(enum wrole role);
/* The value synth centres a weight on: 1 for plain-weight norms (the gated DeltaNet norm always),
 * 0 for (1 + w) norms and everything else. */
float weights_synth_base(enum wrole role, const struct arch_features *f);
/* The model field that holds a planned weight. The model's layers (and expert arrays) must exist. */
struct tensor *weights_slot(struct model *m, enum wrole role, int layer, int expert);
/* Calls fn on every bound weight tensor of m once (lm_head only when not tied). */
void weights_for_each(struct model *m, void (*fn)(struct tensor *t, void *ctx), void *ctx);

/* Gives the hybrids' weights the layouts forward.c reads, once, after binding:
 *  - gated attention: q_proj [q_h | gate_h] per head becomes wq (all q rows) and wq_gate (all
 *    gate rows);
 *  - Qwen3-Next: in_proj_qkvz / in_proj_ba, grouped by key head, become gdn_qkv ([q | k | v],
 *    head-major, the conv's channel order), gdn_z, gdn_b and gdn_a, as Qwen3.5 stores them.
 * Host weights are permuted into m->repacked (the originals are no longer referenced and no longer
 * counted); an MLX-quantized source moves its packed rows with their scale and bias rows, and each
 * part gets a descriptor in m->qw_split (m->n_qw counts the parts). views_only (weights in device memory, synthetic): the same tensors become plain row
 * blocks of the originals, no copy (random weights: any row order is as random). No-op for
 * other families. ENOMEM (logged) when the copy cannot be allocated. */
enum status weights_repack_hybrid(struct model *m, bool views_only);

#endif
