/* weights: the list of tensors a family needs at given hyper-parameters (name, role, shape).
 *
 * One plan serves three users: model_load binds each entry from the safetensors files and checks
 * its shape, synth writes each entry as a random tensor, model_synthesize allocates them in host
 * memory. Entries come in file order: embeddings, each layer's weights, final norm, lm_head
 * (absent when embeddings are tied). Experts are listed one tensor per expert (the Hub layout).
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
    int        n_dims;         // 1 or 2
    int64_t    ne[4];          // tensor order: ne[0] innermost (= in_features of a Linear)
};

/* Allocates *out (caller frees) and returns the number of entries. */
int weights_plan(const struct arch *a, const struct hparams *hp, const struct arch_features *f,
                 struct weight_spec **out);
/* True for RMSNorm weights (synth initializes them around 1, or 0 with (1 + w) norms). */
bool weights_is_norm(enum wrole role);
/* The model field that holds a planned weight. The model's layers (and expert arrays) must exist. */
struct tensor *weights_slot(struct model *m, enum wrole role, int layer, int expert);
/* Calls fn on every bound weight tensor of m once (lm_head only when not tied). */
void weights_for_each(struct model *m, void (*fn)(struct tensor *t, void *ctx), void *ctx);

#endif
