/* MLX quantization against the independent numpy oracle (tools/mlx_quant_ref.py fixtures):
 * cairn's unpacking/dequantization must equal the fixture's dequantized values bit for bit, and
 * cairn's quantizer (qweight_quantize_row) must reproduce the fixture's packed words, scales and
 * biases bit for bit, for every case in tests/model/fixtures/quant/cases.json. */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"
#include "model/safetensors.h"
#include "tensor/qweight.h"

#define QDIR "tests/model/fixtures/quant"

static struct model_file *mf;
static json_t *cases;

static bool get(const char *c, const char *what, struct tensor *t)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", c, what);
    return safetensors_find(mf, name) && safetensors_get(mf, name, t) == STATUS_OK;
}

/* Builds the quantized view of case c; false if a tensor is missing. */
static bool case_weight(json_t *jc, struct qweight *q, struct tensor *w, int64_t cols)
{
    const char *c = json_string_value(json_object_get(jc, "name"));
    struct tensor packed;
    q->mode = (enum qmode)qmode_parse(json_string_value(json_object_get(jc, "mode")));
    q->bits = (int)json_integer_value(json_object_get(jc, "bits"));
    q->group_size = (int)json_integer_value(json_object_get(jc, "group_size"));
    memset(&q->biases, 0, sizeof q->biases);
    if (!get(c, "weight", &packed) || !get(c, "scales", &q->scales)) return false;
    if (q->mode == QMODE_AFFINE && !get(c, "biases", &q->biases)) return false;
    *w = qweight_tensor(q, &packed, cols);
    return true;
}

TEST(dequant_matches_oracle_bitwise)
{
    int64_t rows = json_integer_value(json_object_get(cases, "rows"));
    int64_t cols = json_integer_value(json_object_get(cases, "cols"));
    size_t i;
    json_t *jc;
    int n_cases = 0;
    float *row = malloc((size_t)cols * sizeof *row);
    json_array_foreach(json_object_get(cases, "cases"), i, jc) {
        const char *c = json_string_value(json_object_get(jc, "name"));
        struct qweight q;
        struct tensor w, deq;
        ASSERT(case_weight(jc, &q, &w, cols) && get(c, "dequant", &deq));
        EXPECT(qweight_supported(q.mode, q.bits, q.group_size));
        int bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            qweight_dequant_row(&w, r, row);
            const float *want = (const float *)tensor_data(&deq) + r * cols;
            for (int64_t k = 0; k < cols; k++)
                if (memcmp(&row[k], &want[k], 4) && bad++ < 3)
                    fprintf(stderr, "  %s [%lld, %lld]: %.9g, oracle %.9g\n", c, (long long)r, (long long)k,
                            (double)row[k], (double)want[k]);
        }
        EXPECTF(bad == 0, "%s: %d values differ", c, bad);
        n_cases++;
    }
    EXPECT(n_cases == 21);
    free(row);
}

TEST(quantizer_matches_oracle_bitwise)
{
    int64_t rows = json_integer_value(json_object_get(cases, "rows"));
    int64_t cols = json_integer_value(json_object_get(cases, "cols"));
    struct tensor src;
    ASSERT(safetensors_get(mf, "source", &src) == STATUS_OK && src.dtype == DTYPE_BF16);
    float *x = malloc((size_t)cols * sizeof *x);
    uint32_t *words = malloc((size_t)cols);   // at most 8 bits a code
    float *scf = malloc((size_t)cols * 4), *bif = malloc((size_t)cols * 4);
    uint16_t *sc = malloc((size_t)cols * 2), *bi = malloc((size_t)cols * 2);
    uint8_t *codes = malloc((size_t)cols);
    size_t i;
    json_t *jc;
    json_array_foreach(json_object_get(cases, "cases"), i, jc) {
        const char *c = json_string_value(json_object_get(jc, "name"));
        struct qweight q;
        struct tensor w;
        ASSERT(case_weight(jc, &q, &w, cols));
        int64_t n_words = cols * q.bits / 32, n_groups = cols / q.group_size;
        int bad = 0;
        for (int64_t r = 0; r < rows; r++) {
            dtype_to_f32(DTYPE_BF16, (const uint16_t *)tensor_data(&src) + r * cols, x, (size_t)cols);
            EXPECT(qweight_quantize_row(q.mode, q.bits, q.group_size, x, cols, words, scf, bif, codes));
            dtype_from_f32(DTYPE_BF16, scf, sc, (size_t)n_groups);   // stored in the model dtype
            dtype_from_f32(DTYPE_BF16, bif, bi, (size_t)n_groups);
            const char *pw = (const char *)tensor_data(&w) + r * w.nb[1];
            const char *ps = (const char *)tensor_data(&q.scales) + r * q.scales.nb[1];
            if (memcmp(words, pw, (size_t)n_words * 4)) bad++;
            if (q.mode == QMODE_AFFINE) {
                const char *pb = (const char *)tensor_data(&q.biases) + r * q.biases.nb[1];
                if (memcmp(sc, ps, (size_t)n_groups * 2) || memcmp(bi, pb, (size_t)n_groups * 2)) bad++;
            } else if (memcmp(codes, ps, (size_t)n_groups)) {
                bad++;
            }
        }
        EXPECTF(bad == 0, "%s: %d rows differ from the oracle", c, bad);
    }
    x[0] = NAN;
    EXPECT(!qweight_quantize_row(QMODE_AFFINE, 4, 64, x, 64, words, scf, bif, codes));
    free(x); free(words); free(sc); free(bi); free(scf); free(bif); free(codes);
}

TEST(decoding_rules)
{
    EXPECT(e8m0_to_f32(127) == 1.0f && e8m0_to_f32(128) == 2.0f && e8m0_to_f32(0) == ldexpf(1, -127));
    EXPECT(isinf(e8m0_to_f32(0xFF)));
    EXPECT(e2m1_to_f32_table[7] == 6.0f && e2m1_to_f32_table[15] == -6.0f);
    // spec 2.4: the 3-bit code 10 of a row starts at stream bit 30 and straddles words 0 and 1
    uint32_t row[6] = { 0x80000000u, 0x1u, 0, 0, 0, 0 };
    EXPECT(qweight_code(row, 10, 3) == 6);
    EXPECT(qweight_supported(QMODE_AFFINE, 5, 128) && !qweight_supported(QMODE_AFFINE, 7, 64) &&
           !qweight_supported(QMODE_AFFINE, 4, 16) && !qweight_supported(QMODE_NVFP4, 4, 32) &&
           qweight_supported(QMODE_MXFP8, 8, 32));
}

int main(void)
{
    if (safetensors_open_file(QDIR "/quant.safetensors", &mf) != STATUS_OK) return 1;
    cases = json_load_file(QDIR "/cases.json", 0, NULL);
    if (!cases) return 1;
    RUN(dequant_matches_oracle_bitwise);
    RUN(quantizer_matches_oracle_bitwise);
    RUN(decoding_rules);
    json_decref(cases);
    safetensors_close(mf);
    return test_summary();
}
