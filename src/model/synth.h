/* synth: random-weight checkpoints of any supported architecture at any shape.
 *
 * synth_write() writes a Hugging Face-style directory: config.json (with "architectures" set),
 * bf16 safetensors streamed to disk tensor by tensor (never the whole model in memory), sharded
 * with model.safetensors.index.json above SYNTH_SHARD_BYTES. Values are a pure function of
 * (seed, tensor name, element index), so sharding, threads and in-memory synthesis
 * (model_synthesize) all give the same weights: matrices and biases N(0, 0.02), norm weights
 * 1 + N(0, 0.02) (0 + N(0, 0.02) for (1 + w) norms). Called by `cairn synth` and tests; the CUDA
 * backend computes the same function on the device (backend/cuda/synth.cu, bit-identical), which
 * model_synthesize_on uses for `--synthetic CONFIG.json`.
 *
 *     struct synth_opts o = { .arch = "Qwen3ForCausalLM", .config_path = "configs/qwen3-0.6b.json",
 *                             .out_dir = "/tmp/q", .seed = 1 };
 *     if (synth_write(&o, NULL) != STATUS_OK) return 1;
 */
#ifndef CAIRN_MODEL_SYNTH_H
#define CAIRN_MODEL_SYNTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

#define SYNTH_SHARD_BYTES (4ull << 30)
#define SYNTH_STD         0.02f

struct synth_opts {
    const char *arch;              // overrides config's "architectures"; NULL: keep the config's
    const char *config_path;       // config.json-style input
    const char *out_dir;           // created if missing
    const char *tokenizer_dir;     // optional: tokenizer files copied in
    uint64_t    seed;
    uint64_t    shard_bytes;       // 0: SYNTH_SHARD_BYTES
    int         n_threads;         // 0: all cores (at most 16)
    int         quiet;             // no progress on stderr
    int         dry_run;           // plan only: fill the result, write nothing
};

struct synth_result {
    uint64_t n_params;
    uint64_t bytes;                // of tensor data
    int      n_tensors;
    int      n_shards;
};

/* res may be NULL. */
enum status synth_write(const struct synth_opts *o, struct synth_result *res);

/* Seed of one tensor: mixes the run seed and the tensor name. */
uint64_t synth_tensor_seed(uint64_t seed, const char *name);
/* dst[i] = bf16(base + std * z(tseed, first + i)) for i < n, z approximately N(0, 1). */
void synth_fill_bf16(uint16_t *dst, size_t n, uint64_t tseed, uint64_t first, float base, float std);
/* The same on n_threads threads (0: all cores, at most 16); same values. */
void synth_fill_bf16_mt(uint16_t *dst, size_t n, uint64_t tseed, uint64_t first, float base, float std, int n_threads);
/* Base value of a weight: 1 for norm weights (0 with (1 + w) norms), 0 otherwise. */
float synth_base(bool is_norm, bool norm_plus_one);

#endif
