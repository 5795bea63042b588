/* `cairn quantize` (model/quantize.c) against the independent numpy reference: each checkpoint in
 * tests/model/fixtures/quant/models was written by tools/mlx_quant_ref.py from a transformers
 * fixture; quantize_model() on the same input with the same settings must write the same tensors
 * (names, dtypes, shapes, bytes: bit for bit) and the same config.json quantization blocks. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "harness.h"
#include "scratch_dir.h"
#include "model/model.h"
#include "model/quantize.h"
#include "model/safetensors.h"

static char tmp[64];

static void compare_dirs(const char *want_dir, const char *got_dir)
{
    struct model_file *want = NULL, *got = NULL;
    ASSERT(safetensors_open_dir(want_dir, &want) == STATUS_OK);
    if (safetensors_open_dir(got_dir, &got) != STATUS_OK) {
        safetensors_close(want);
        ASSERT(0);
    }
    EXPECTF(want->n_tensors == got->n_tensors, "%s: %d tensors, reference %d", got_dir, got->n_tensors, want->n_tensors);
    int bad = 0;
    for (int i = 0; i < want->n_tensors; i++) {
        const struct st_tensor *w = &want->tensors[i], *g = safetensors_find(got, w->name);
        bool same = g && g->dtype == w->dtype && g->n_dims == w->n_dims && g->bytes == w->bytes &&
                    !memcmp(g->shape, w->shape, sizeof w->shape[0] * (size_t)w->n_dims);
        if (same) {
            const uint8_t *pw = want->shards[w->shard].map + want->shards[w->shard].data_off + w->begin;
            const uint8_t *pg = got->shards[g->shard].map + got->shards[g->shard].data_off + g->begin;
            same = !memcmp(pw, pg, w->bytes);
        }
        if (!same && bad++ < 5) fprintf(stderr, "  %s: tensor %s differs from the reference\n", got_dir, w->name);
    }
    EXPECTF(bad == 0, "%s: %d tensors differ", got_dir, bad);
    safetensors_close(want);
    safetensors_close(got);
    char p[300];
    snprintf(p, sizeof p, "%s/config.json", want_dir);
    json_t *cw = json_load_file(p, 0, NULL);
    snprintf(p, sizeof p, "%s/config.json", got_dir);
    json_t *cg = json_load_file(p, 0, NULL);
    ASSERT(cw && cg);
    EXPECT(json_equal(json_object_get(cw, "quantization"), json_object_get(cg, "quantization")));
    EXPECT(json_equal(json_object_get(cg, "quantization"), json_object_get(cg, "quantization_config")));
    json_decref(cw);
    json_decref(cg);
    struct model *m = NULL;
    EXPECT(model_load(got_dir, &m) == STATUS_OK && m->n_qw > 0);
    model_free(m);
}

static void run_case(const char *src, const char *ref, enum qmode mode, int bits, int gs, const char *recipe)
{
    char in[200], want[200], out[200];
    snprintf(in, sizeof in, "tests/model/fixtures/%s", src);
    snprintf(want, sizeof want, "tests/model/fixtures/quant/models/%s", ref);
    snprintf(out, sizeof out, "%s/%s", tmp, ref);
    struct quantize_opts o = { .in_dir = in, .out_dir = out, .mode = mode, .bits = bits, .group_size = gs,
                               .recipe = recipe, .quiet = true };
    ASSERT(quantize_model(&o) == STATUS_OK);
    compare_dirs(want, out);
}

TEST(affine_q4g64) { run_case("qwen3", "qwen3_q4g64", QMODE_AFFINE, 4, 64, NULL); }
TEST(mixed_3_6_g32) { run_case("qwen3", "qwen3_mixed_3_6_g32", QMODE_AFFINE, 4, 32, "mixed_3_6"); }
TEST(moe_mixed_4_8) { run_case("qwen3_moe", "qwen3_moe_mixed_4_8", QMODE_AFFINE, 4, 64, "mixed_4_8"); }
TEST(tied_nvfp4) { run_case("qwen3_tied", "qwen3_tied_nvfp4", QMODE_NVFP4, 0, 0, NULL); }
TEST(mxfp4) { run_case("llama", "llama_mxfp4", QMODE_MXFP4, 0, 0, NULL); }
TEST(mxfp8) { run_case("mistral", "mistral_mxfp8", QMODE_MXFP8, 0, 0, NULL); }
TEST(mxfp8_unaligned) { run_case("qwen2", "qwen2_mxfp8", QMODE_MXFP8, 0, 0, NULL); }
/* Hybrids: mlx-lm's sanitize (renames, conv1d axes, norms stored as 1 + w, stacked experts) and
 * the model's own quant_predicate (routers and shared-expert gates affine 8 bit, also inside an
 * mxfp4 checkpoint) when no recipe is given. The reference's Qwen3.5-MoE config is the VLM
 * wrapper mlx_vlm writes; the tensors and the quantization block are the same. */
TEST(hybrid_next_q4g64) { run_case("qwen3_next", "qwen3_next_q4g64", QMODE_AFFINE, 4, 64, NULL); }
TEST(hybrid_next_mxfp4) { run_case("qwen3_next", "qwen3_next_mxfp4", QMODE_MXFP4, 0, 0, NULL); }
TEST(hybrid_35_moe_q4g32) { run_case("qwen3_5_moe", "qwen3_5_moe_vlm_q4g32", QMODE_AFFINE, 4, 32, NULL); }
TEST(hybrid_35_mixed_3_6_g32) { run_case("qwen3_5", "qwen3_5_mixed_3_6_g32", QMODE_AFFINE, 4, 32, "mixed_3_6"); }

TEST(sharded_output_same_tensors)
{
    char out[200];
    snprintf(out, sizeof out, "%s/sharded", tmp);
    struct quantize_opts o = { .in_dir = "tests/model/fixtures/qwen3", .out_dir = out, .mode = QMODE_AFFINE,
                               .bits = 4, .group_size = 64, .shard_bytes = 30000, .quiet = true };
    ASSERT(quantize_model(&o) == STATUS_OK);
    char idx[300];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", out);
    EXPECT(access(idx, R_OK) == 0);
    compare_dirs("tests/model/fixtures/quant/models/qwen3_q4g64", out);
}

TEST(bad_options)
{
    char out[200];
    snprintf(out, sizeof out, "%s/bad", tmp);
    struct quantize_opts o = { .in_dir = "tests/model/fixtures/qwen3", .out_dir = out, .mode = QMODE_AFFINE,
                               .bits = 7, .group_size = 64, .quiet = true };
    EXPECT(quantize_model(&o) == STATUS_EUNSUPPORTED);
    o.bits = 4;
    o.group_size = 48;
    EXPECT(quantize_model(&o) == STATUS_EUNSUPPORTED);
    o.group_size = 64;
    o.recipe = "mixed_9_9";
    EXPECT(quantize_model(&o) == STATUS_EUNSUPPORTED);
    o.recipe = "mixed_3_6";
    o.mode = QMODE_MXFP4;
    o.bits = o.group_size = 0;
    EXPECT(quantize_model(&o) == STATUS_EUNSUPPORTED);
    o.recipe = NULL;
    o.in_dir = "tests/model/fixtures/quant/models/qwen3_q4g64";   // already quantized
    EXPECT(quantize_model(&o) == STATUS_EINVAL);
}

int main(void)
{
    scratch_dir_make(tmp, sizeof tmp, "quantize");
    RUN(affine_q4g64);
    RUN(mixed_3_6_g32);
    RUN(moe_mixed_4_8);
    RUN(tied_nvfp4);
    RUN(mxfp4);
    RUN(mxfp8);
    RUN(mxfp8_unaligned);
    RUN(hybrid_next_q4g64);
    RUN(hybrid_next_mxfp4);
    RUN(hybrid_35_moe_q4g32);
    RUN(hybrid_35_mixed_3_6_g32);
    RUN(sharded_output_same_tensors);
    RUN(bad_options);
    scratch_dir_remove(tmp);
    return test_summary();
}
