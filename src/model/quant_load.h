/* quant_load: binding MLX-quantized weights (mlx_lm.convert / mlx_vlm.convert checkpoints).
 *
 * Owns the parsed `quantization` block of config.json (shared/research/mlx-quant-format.md 4):
 * top-level mode / bits / group_size ("group_size": null and missing keys mean the mode's
 * defaults, a missing mode is affine) and per-module overrides keyed by MLX module path (a dict of
 * to_quantized kwargs, or false / true). A module is quantized iff `P.scales` exists next to
 * `P.weight` (rule 2); its mode is the override's, else affine when an override exists, else the
 * top level's (rule 3). Every packed weight, scales and biases tensor is checked against the
 * logical shape the model needs (bits from the packed width, group size from the scales) before
 * anyone reads it; E8M0 scale bytes 0xFF (+Inf in MLX) and NaN E4M3 scales are refused; an
 * override naming a module with no weight in the checkpoint is an error. Errors name the tensor
 * and return EFORMAT (inconsistent) or EUNSUPPORTED (a mode / width MLX does not define).
 * Called by model.c at load time only, on one thread.
 *
 *     struct quant_cfg *qc;  quant_cfg_load(dir, &qc);          // NULL: not an MLX-quantized model
 *     quant_bind(qc, mf, t, in, ne, q, &slot);                  // t: the file's P.weight entry
 *     quant_check_overrides(qc, mf);  quant_cfg_free(qc);
 */
#ifndef CAIRN_MODEL_QUANT_LOAD_H
#define CAIRN_MODEL_QUANT_LOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "base/status.h"
#include "model/safetensors.h"
#include "tensor/qweight.h"

struct quant_cfg;

/* Reads dir/config.json's "quantization" block (else "quantization_config" when it has MLX-native
 * keys); *out = NULL when there is none. EFORMAT for a malformed block. */
enum status quant_cfg_load(const char *dir, struct quant_cfg **out);
/* The same from a parsed config.json root (tests, fuzzing). */
enum status quant_cfg_parse(const char *label, const void *root_json, struct quant_cfg **out);
void        quant_cfg_free(struct quant_cfg *qc);
/* Top-level mode, bits and group size, e.g. for `cairn info`. */
void        quant_cfg_default(const struct quant_cfg *qc, enum qmode *mode, int *bits, int *group_size);
int         quant_cfg_n_overrides(const struct quant_cfg *qc);

/* True if the file has P.scales next to the entry t (P.weight). */
bool        quant_is_quantized(const struct model_file *mf, const struct st_tensor *t);

/* Binds the quantized weight t (P.weight, u32) as a logical [rows..., in] matrix: want_outer is
 * the logical shape outermost first without `in` (e.g. {out} or {E, out}), n_outer its length (1
 * or 2). Fills *q (mode, bits, group, scales, biases views) and *out (qweight_tensor over t). qc
 * may be NULL (then any P.scales is an error: the config has no quantization block). */
enum status quant_bind(struct quant_cfg *qc, const struct model_file *mf, const struct st_tensor *t,
                       int64_t in, int n_outer, const int64_t *want_outer, struct qweight *q, struct tensor *out);
/* After binding: every override must name a module whose weight is in the checkpoint. */
enum status quant_check_overrides(const struct quant_cfg *qc, const struct model_file *mf);

#endif
