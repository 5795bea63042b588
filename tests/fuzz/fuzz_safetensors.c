/* fuzz_safetensors: libFuzzer target for the safetensors header validator and the binding of
 * MLX-quantized weights (model/quant_load.c).
 * Any input must give OK or an error status, never a crash, leak or out-of-bounds read; on OK,
 * every tensor's bytes must lie inside the input (checked by touching the first and last byte),
 * and every u32 `P.weight` with a `P.scales` beside it that quant_bind accepts under one of a few
 * quantization configs must dequantize every row without reading outside the input (ASan).
 *     make fuzz && build-fuzz/fuzz_safetensors -max_total_time=300 tests/fuzz/corpus_safetensors */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>

#include "base/log.h"
#include "model/quant_load.h"
#include "model/safetensors.h"

#include "fuzz_quiet.h"

static const char *const CONFIGS[] = {
    "{\"quantization\": {\"bits\": 4, \"group_size\": 64}}",
    "{\"quantization\": {\"bits\": 3, \"group_size\": 32, \"mode\": \"affine\"}}",
    "{\"quantization\": {\"bits\": 8, \"group_size\": null}}",
    "{\"quantization\": {\"mode\": \"mxfp4\", \"group_size\": null, \"bits\": 4}}",
    "{\"quantization\": {\"mode\": \"nvfp4\", \"group_size\": 16, \"bits\": 4}}",
    "{\"quantization\": {\"mode\": \"mxfp8\", \"group_size\": 32, \"bits\": 8}}",
};

static void fuzz_quantized(const struct model_file *mf, const struct st_tensor *t)
{
    if (t->dtype != DTYPE_U32 || t->n_dims < 2 || t->n_dims > 3 || !quant_is_quantized(mf, t)) return;
    for (size_t c = 0; c < sizeof CONFIGS / sizeof CONFIGS[0]; c++) {
        json_t *root = json_loads(CONFIGS[c], 0, NULL);
        struct quant_cfg *qc = NULL;
        CHECK(root && quant_cfg_parse("fuzz", root, &qc) == STATUS_OK && qc, "fuzz config %zu", c);
        json_decref(root);
        enum qmode mode;
        int bits, gs;
        quant_cfg_default(qc, &mode, &bits, &gs);
        int64_t in = t->shape[t->n_dims - 1] * 32 / bits;
        struct qweight q;
        struct tensor w;
        if (in > 0 && in <= (1 << 20) &&
            quant_bind(qc, mf, t, in, t->n_dims - 1, t->shape, &q, &w) == STATUS_OK) {
            float *row = malloc((size_t)in * sizeof *row);
            for (int64_t r = 0; r < tensor_rows(&w); r++) qweight_dequant_row(&w, r, row);
            free(row);
        }
        quant_cfg_free(qc);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct model_file *mf = NULL;
    if (safetensors_open_mem("fuzz", data, size, &mf) != STATUS_OK) return 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < mf->n_tensors; i++) {
        const struct st_tensor *t = &mf->tensors[i];
        CHECK(safetensors_find(mf, t->name) == t, "lookup of %s", t->name);
        struct tensor v;
        if (safetensors_view(mf, t, &v) != STATUS_OK || !t->bytes) continue;
        const uint8_t *p = tensor_data(&v);
        const struct st_shard *sh = &mf->shards[t->shard];
        const uint8_t *in = sh->map + sh->data_off + t->begin;   // where the bytes are in the input
        CHECK(in >= data && in + t->bytes <= data + size, "tensor %s outside the input", t->name);
        // an unaligned tensor is viewed through its aligned copy: the same bytes
        CHECK(p == in || (t->copy && !memcmp(p, in, t->bytes)), "tensor %s: view differs from the input", t->name);
        sink ^= p[0] ^ p[t->bytes - 1];
    }
    for (int i = 0; i < mf->n_tensors; i++) fuzz_quantized(mf, &mf->tensors[i]);
    (void)sink;
    safetensors_close(mf);
    return 0;
}
