/* cairn logits (MODEL_DIR | --synthetic CONFIG.json [--synth-seed N]) --ids 5,17,42 --out FILE
 *              [--backend ref|cpu|cuda] [--threads N] [--chunk N] [--kv-dtype f32|f16|bf16|fp8]
 * Writes the logits of every position as little-endian float32, n_ids x vocab_size, row-major.
 * A stable contract: reference tests and outside tools use it (--synthetic: random weights of
 * the config's shape, the same as `cairn synth --seed N`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/common.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/runner.h"

int cmd_logits(int argc, char **argv)
{
    const char *dir = NULL, *ids_s = NULL, *out_path = NULL, *backend = NULL, *kv_s = "f32";
    const char *synthetic = NULL;
    int synth_seed = 0;
    int threads = 0, chunk = 64;
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (flag_str(argc, argv, &i, "--ids", &ids_s, &bad) || flag_str(argc, argv, &i, "--out", &out_path, &bad) ||
            flag_str(argc, argv, &i, "--backend", &backend, &bad) || flag_int(argc, argv, &i, "--threads", &threads, &bad) ||
            flag_int(argc, argv, &i, "--chunk", &chunk, &bad) || flag_str(argc, argv, &i, "--kv-dtype", &kv_s, &bad) ||
            flag_str(argc, argv, &i, "--synthetic", &synthetic, &bad) ||
            flag_int(argc, argv, &i, "--synth-seed", &synth_seed, &bad))
            continue;
        if (argv[i][0] == '-' || dir) {
            fprintf(stderr, "logits: unexpected argument %s\n", argv[i]);
            bad = true;
        } else {
            dir = argv[i];
        }
    }
    if (bad || !dir == !synthetic || !ids_s || !out_path || chunk <= 0 || synth_seed < 0) {
        fprintf(stderr, "usage: cairn logits (MODEL_DIR | --synthetic CONFIG.json [--synth-seed N]) --ids 5,17,42 --out FILE\n"
                        "       [--backend ref|cpu|cuda] [--threads N] [--chunk N] [--kv-dtype f32|f16|bf16|fp8]\n");
        return 2;
    }
    enum dtype kv_dt;
    if (!app_parse_kv_dtype("logits", kv_s, &kv_dt)) return 2;
    int32_t *ids;
    int n;
    if (parse_int_list(ids_s, &ids, &n) != STATUS_OK || n == 0) {
        fprintf(stderr, "logits: --ids must be a non-empty comma-separated list of token ids\n");
        return 2;
    }
    int rc = 1;
    struct app_model am;
    struct runner *r = NULL;
    float *logits = NULL;
    if ((synthetic ? app_model_synthesize(synthetic, (uint64_t)synth_seed, backend, threads, &am)
                   : app_model_open(dir, backend, threads, &am)) != STATUS_OK)
        goto out_ids;
    int vocab = am.m->hp.n_vocab;
    for (int i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab) {
            fprintf(stderr, "logits: token id %d out of range [0, %d)\n", ids[i], vocab);
            goto out_model;
        }
    }
    if (runner_new(am.m, am.be, n, chunk < n ? chunk : n, kv_dt, &r) != STATUS_OK) goto out_model;
    logits = malloc(sizeof(float) * (size_t)n * (size_t)vocab);
    if (!logits) {
        fprintf(stderr, "logits: out of memory for %d x %d logits\n", n, vocab);
        goto out_runner;
    }
    if (runner_feed(r, ids, n, logits, true) != STATUS_OK) goto out_runner;
    FILE *f = fopen(out_path, "wb");
    if (!f || fwrite(logits, sizeof(float), (size_t)n * (size_t)vocab, f) != (size_t)n * (size_t)vocab) {
        fprintf(stderr, "logits: cannot write %s\n", out_path);
        if (f) fclose(f);
        goto out_runner;
    }
    if (fclose(f) == 0) rc = 0;
out_runner:
    free(logits);
    runner_free(r);
out_model:
    app_model_close(&am);
out_ids:
    free(ids);
    return rc;
}
