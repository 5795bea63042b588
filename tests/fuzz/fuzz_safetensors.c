/* fuzz_safetensors: libFuzzer target for the safetensors header validator.
 * Any input must give OK or an error status, never a crash, leak or out-of-bounds read; on OK,
 * every tensor's bytes must lie inside the input (checked by touching the first and last byte).
 *     make fuzz && build-fuzz/fuzz_safetensors -max_total_time=300 tests/fuzz/corpus_safetensors */
#include <stddef.h>
#include <stdint.h>

#include "base/log.h"
#include "model/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet) {
        log_set_level(LOG_LEVEL_OFF);
        quiet = 1;
    }
    struct model_file *mf = NULL;
    if (safetensors_open_mem("fuzz", data, size, &mf) != STATUS_OK) return 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < mf->n_tensors; i++) {
        const struct st_tensor *t = &mf->tensors[i];
        CHECK(safetensors_find(mf, t->name) == t, "lookup of %s", t->name);
        struct tensor v;
        if (safetensors_view(mf, t, &v) != STATUS_OK || !t->bytes) continue;
        const uint8_t *p = tensor_data(&v);
        CHECK(p >= data && p + t->bytes <= data + size, "tensor %s outside the input", t->name);
        sink ^= p[0] ^ p[t->bytes - 1];
    }
    (void)sink;
    safetensors_close(mf);
    return 0;
}
