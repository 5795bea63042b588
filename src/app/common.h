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

struct app_model {
    struct model   *m;
    struct backend *be;
};

/* Loads dir, creates the backend (name NULL = default) and prepares the weights on it.
 * Errors are logged; returns non-OK status. */
enum status app_model_open(const char *dir, const char *backend, int n_threads, struct app_model *out);
/* Same with random weights from a config.json-style file (--synthetic; model/synth.h): made directly
 * in device memory when the backend can (cuda), so no checkpoint exists on disk or in host RAM. */
enum status app_model_synthesize(const char *config, uint64_t seed, const char *backend, int n_threads,
                                 struct app_model *out);
void        app_model_close(struct app_model *am);

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
 * cache (--kv-cache-bytes, --kv-dtype) and the --tokenizer directory. flag_model takes them as
 * given (flag_str's contract); app_model_flags_parse then parses the numbers. */
struct model_flags {
    const char *backend, *synthetic, *synth_seed_s, *kv_bytes_s, *kv_dtype_s, *tokenizer;
    int         threads;
    uint64_t    synth_seed;   // parsed: 0 unless given
    size_t      kv_bytes;     // parsed: 0 unless given (the engine's default)
    enum dtype  kv_dtype;     // parsed: valid when kv_dtype_s
};
bool flag_model(int argc, char **argv, int *i, struct model_flags *f, bool *bad);
/* false after printing which value is malformed (prefixed by cmd). */
bool app_model_flags_parse(const char *cmd, struct model_flags *f);
/* app_model_synthesize with f's --synthetic config when given, else app_model_open of dir. */
enum status app_model_load(const struct model_flags *f, const char *dir, struct app_model *out);

#endif
