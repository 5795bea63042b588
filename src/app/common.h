/* common: what several subcommands share: finding the built-in default model, opening a model (or
 * synthesizing one) on a backend, the KV dtype flag, loading a tokenizer that fits the model, and
 * small flag-parsing helpers. */
#ifndef CAIRN_APP_COMMON_H
#define CAIRN_APP_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "model/model.h"

/* The built-in default model directory: $CAIRN_DEFAULT_MODEL, else models/default next to the
 * binary's parent directory (build/cairn -> models/default), else ./models/default. */
const char *app_default_model_dir(void);

/* Name of the backend to use when none is asked for: cuda when built with CUDA and a GPU is
 * present, else cpu. */
const char *app_default_backend(void);

#define APP_MAX_RANKS 64

struct collective;

struct app_model {
    struct model      *m;                         // the whole model, or rank 0's shard
    struct backend    *be;                        // its backend
    int                n_ranks;                   // > 1: sharded (app_model_open_sharded)
    struct model      *rank_m[APP_MAX_RANKS];     // [n_ranks], rank_m[0] == m
    struct backend    *rank_be[APP_MAX_RANKS];    // [n_ranks], rank_be[0] == be
    struct collective *coll[APP_MAX_RANKS];       // [n_ranks] the group's handles
};

/* Loads dir, creates the backend (name NULL = default) and prepares the weights on it.
 * Errors are logged; returns non-OK status. */
enum status app_model_open(const char *dir, const char *backend, int n_threads, struct app_model *out);
/* Same with random weights from a config.json-style file (--synthetic; model/synth.h): made directly
 * in device memory when the backend can (cuda), so no checkpoint exists on disk or in host RAM. */
enum status app_model_synthesize(const char *config, uint64_t seed, const char *backend, int n_threads,
                                 struct app_model *out);
/* --tensor-parallel N (and --expert-parallel): dir split over n_ranks ranks of one process
 * (model/shard.h), each on a backend of its own, joined by the in-process collective (ref, cpu) or
 * NCCL (cuda: rank r on GPU r). Refused with a logged reason (EUNSUPPORTED, EINVAL, EDEVICE): fewer
 * GPUs than ranks, libnccl missing, quantized weights, shapes that do not divide (the config key
 * is named). */
enum status app_model_open_sharded(const char *dir, const char *backend, int n_threads, int n_ranks,
                                   bool expert_parallel, struct app_model *out);
void        app_model_close(struct app_model *am);
/* The flags' checks that need no model (cmd: "cairn serve"): --tensor-parallel at least 1,
 * --expert-parallel only with more than one rank, neither with --synthetic. Prints the error. */
bool        app_parallel_flags_ok(const char *cmd, int tensor_parallel, bool expert_parallel, const char *synthetic);

struct engine;
struct engine_cfg;
/* engine_new over am's model: the sharded engine when am has ranks. */
enum status app_engine_new(const struct engine_cfg *cfg, struct app_model *am, struct engine **out);

/* Default KV cache dtype on a backend: bf16 on cuda (half the bytes of f32; the kernels read bf16
 * natively), f32 elsewhere (the CPU kernels' exact reference). */
enum dtype  app_default_kv_dtype(const struct backend *be);
/* Parses --kv-dtype f32|f16|bf16|fp8 (fp8 = f8e4m3); false (after printing why, prefixed by cmd) for anything else. */
bool        app_parse_kv_dtype(const char *cmd, const char *s, enum dtype *out);

struct tokenizer;
/* EINVAL (logged) when tk has token ids that model m cannot embed: a tokenizer of another model
 * family (e.g. --tokenizer with --synthetic). dir names the tokenizer in the message. */
enum status app_tokenizer_check(const struct tokenizer *tk, const struct model *m, const char *dir);

/* Parses a byte count with an optional K, M or G suffix (binary; "4G", "512MiB"); false if malformed. */
bool        app_parse_bytes(const char *s, size_t *out);

/* --max-itl-ms: a positive number of milliseconds, or "off" (stored as -1). */
bool app_parse_itl_ms(const char *s, double *out);

/* MODEL as users type it: a directory, or a Hugging Face repo id ORG/NAME found in the local hub
 * cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub:
 * models--ORG--NAME/snapshots/<revision of refs/main, else the only or newest snapshot>).
 * Writes the directory into dir and the name to serve it under into name (the repo id, or the
 * directory's last component). false (logged, with the places looked in) when neither exists. */
bool app_resolve_model(const char *arg, char *dir, size_t dir_cap, char *name, size_t name_cap);

/* Flag helpers: if argv[*i] is `name`, consumes its value into *out and returns true.
 * A missing value is reported and sets *bad. */
bool flag_str(int argc, char **argv, int *i, const char *name, const char **out, bool *bad);
bool flag_int(int argc, char **argv, int *i, const char *name, int *out, bool *bad);
bool flag_float(int argc, char **argv, int *i, const char *name, float *out, bool *bad);

/* The flags of the commands that load a model to generate with (run, serve): the weights
 * (MODEL_DIR, or --synthetic CONFIG.json with --synth-seed N), --backend and --threads, the KV
 * cache (--kv-cache-bytes, --kv-dtype), the --tokenizer directory and the ranks (--tensor-parallel
 * N, --expert-parallel). flag_model takes them as
 * given (flag_str's contract); app_model_flags_parse then parses the numbers. */
struct model_flags {
    const char *backend, *synthetic, *synth_seed_s, *kv_bytes_s, *kv_dtype_s, *tokenizer;
    const char *tensor_parallel_s;   // --tensor-parallel N (also -tp, --tensor-parallel-size)
    int         threads;
    bool        expert_parallel;     // --expert-parallel (also --enable-expert-parallel)
    int         tensor_parallel;     // parsed: 1 unless given
    uint64_t    synth_seed;   // parsed: 0 unless given
    size_t      kv_bytes;     // parsed: 0 unless given (the engine's default)
    enum dtype  kv_dtype;     // parsed: valid when kv_dtype_s
};
bool flag_model(int argc, char **argv, int *i, struct model_flags *f, bool *bad);
/* false after printing which value is malformed (prefixed by cmd). */
bool app_model_flags_parse(const char *cmd, struct model_flags *f);
/* app_model_open_sharded over f's ranks when --tensor-parallel N > 1, app_model_synthesize with
 * f's --synthetic config when given, else app_model_open of dir. */
enum status app_model_load(const struct model_flags *f, const char *dir, struct app_model *out);

#endif
