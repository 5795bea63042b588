/* cmd_quantize: `cairn quantize IN_DIR OUT_DIR [--bits N] [--group-size N] [--mode M] [--recipe R]
 * [--shard-gb G]`: writes an MLX-format quantized checkpoint (model/quantize.h), then loads it
 * back as a self-check and prints its weight bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "base/log.h"
#include "model/model.h"
#include "model/quantize.h"

static void quantize_usage(FILE *f)
{
    fprintf(f, "usage: cairn quantize IN_DIR OUT_DIR [--bits 4] [--group-size 64] [--mode affine|mxfp4|mxfp8|nvfp4]\n"
               "                      [--recipe mixed_2_6|mixed_3_4|mixed_3_6|mixed_4_6|mixed_4_8] [--shard-gb 5]\n"
               "  Writes the checkpoint mlx_lm.convert would (u32 weight + scales [+ biases], switch_mlp experts,\n"
               "  \"quantization\" in config.json). Supported: %s.\n"
               "  mixed_X_Y: mlx-lm's mixed recipes (affine); mixed_4_8: MoE routers and shared-expert gates at\n"
               "  affine 8 bit, the rest as --mode/--bits (Qwen3-Next / Qwen3.5-MoE get it without --recipe, as\n"
               "  in mlx-lm). Hybrids are written as mlx-lm's sanitize does (mtp.* dropped, language_model.\n"
               "  names for Qwen3.5, conv1d [C, K, 1], norms stored as 1 + w).\n", qweight_supported_list());
}

int cmd_quantize(int argc, char **argv)
{
    struct quantize_opts o = { .mode = QMODE_AFFINE };
    const char *pos[2] = { NULL, NULL };
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            quantize_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            o.quiet = true;
            continue;
        }
        if (strncmp(a, "--", 2)) {
            if (n_pos == 2) {
                fprintf(stderr, "cairn quantize: unexpected argument %s\n", a);
                return 2;
            }
            pos[n_pos++] = a;
            continue;
        }
        if (!v) {
            fprintf(stderr, "cairn quantize: %s needs a value\n", a);
            quantize_usage(stderr);
            return 2;
        }
        i++;
        char *end = NULL;
        if (!strcmp(a, "--bits")) o.bits = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--group-size")) o.group_size = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--recipe")) o.recipe = v;
        else if (!strcmp(a, "--shard-gb")) {
            double gb = strtod(v, &end);
            if (gb > 0) o.shard_bytes = (uint64_t)(gb * 1e9);
            else end = (char *)v;
        } else if (!strcmp(a, "--mode")) {
            int m = qmode_parse(v);
            if (m < 0) {
                fprintf(stderr, "cairn quantize: unknown mode %s (affine, mxfp4, mxfp8, nvfp4)\n", v);
                return 2;
            }
            o.mode = (enum qmode)m;
        } else {
            fprintf(stderr, "cairn quantize: unknown option %s\n", a);
            quantize_usage(stderr);
            return 2;
        }
        if (end && (*end || end == v)) {
            fprintf(stderr, "cairn quantize: bad number for %s: %s\n", a, v);
            return 2;
        }
    }
    if (n_pos != 2) {
        quantize_usage(stderr);
        return 2;
    }
    o.in_dir = pos[0];
    o.out_dir = pos[1];
    if (quantize_model(&o) != STATUS_OK) return 1;
    struct model *m;
    if (model_load(o.out_dir, &m) != STATUS_OK) {
        fprintf(stderr, "cairn quantize: the written checkpoint does not load back (a bug)\n");
        return 1;
    }
    printf("%s: %d quantized tensors, %.3f GB of weights (%.2f bits per parameter)\n", o.out_dir, m->n_qw,
           (double)m->weight_bytes / 1e9, m->n_params ? 8.0 * (double)m->weight_bytes / (double)m->n_params : 0.0);
    model_free(m);
    return 0;
}
