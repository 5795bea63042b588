/* config: config.json (+ generation_config.json) -> struct hparams and struct arch_features.
 *
 * Accepts the classic keys (rope_theta, rope_scaling {type|rope_type}, partial_rotary_factor,
 * torch_dtype) and the transformers 5 ones (rope_parameters, possibly keyed per layer type, and
 * dtype). Picks the family from "architectures" (arch.h), applies its defaults and its own keys,
 * and checks every value so that a hostile config cannot make a later stage crash: dims positive
 * and bounded, heads dividing, layers <= MODEL_MAX_LAYERS. An unknown architecture or option is
 * STATUS_EUNSUPPORTED naming it and what is supported; malformed JSON or values STATUS_EFORMAT.
 * Called by model_load, synth and `cairn info`; pure functions, any thread.
 *
 *     struct hparams hp; struct arch_features f; const struct arch *a;
 *     if (config_load("models/tiny", &hp, &f, &a) != STATUS_OK) return st;
 *     printf("%s: %d layers\n", hp.arch, hp.n_layers);
 */
#ifndef CAIRN_MODEL_CONFIG_H
#define CAIRN_MODEL_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/status.h"
#include "model/model.h"

struct arch;

/* Parses config.json text (and optionally generation_config.json text, NULL if none). `label`
 * names the source in errors. */
enum status config_parse(const char *label, const char *text, size_t len, const char *gen_text,
                         size_t gen_len, struct hparams *hp, struct arch_features *f,
                         const struct arch **arch);
/* hp->gen as text, e.g. " temperature 0.6 top_k 20 top_p 0.95" (empty when it sets nothing). */
void gen_defaults_describe(const struct gen_defaults *g, char *buf, size_t size);
/* Reads dir/config.json and dir/generation_config.json (if present). */
enum status config_load(const char *dir, struct hparams *hp, struct arch_features *f,
                        const struct arch **arch);

/* Helpers for the families' read_hparams hooks. Absent or null keys leave *out unchanged and
 * return OK; a value of the wrong type or out of [lo, hi] logs and returns STATUS_EFORMAT. */
enum status config_get_int(const json_t *cfg, const char *key, long long lo, long long hi, int *out);
enum status config_get_float(const json_t *cfg, const char *key, float *out);
enum status config_get_bool(const json_t *cfg, const char *key, bool *out);
/* EUNSUPPORTED (logged) if cfg[key] is true: an option this family does not implement. */
enum status config_reject_true(const json_t *cfg, const char *arch, const char *key);
/* Parses "layer_types" (full_attention / sliding_attention) into hp->layer_sliding; absent: OK. */
enum status config_layer_types(const json_t *cfg, struct hparams *hp, bool *found);

#endif
