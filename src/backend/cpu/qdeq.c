/* qdeq: portable dequantization and the ISA dispatch. See qdeq.h. */
#include "backend/cpu/qdeq.h"

#include <string.h>

#include "base/log.h"
#include "tensor/dtype.h"

void cpu_qdeq_scales(const struct tensor *w, int64_t row, float *scales, float *biases)
{
    int64_t n_groups = w->ne[0] / w->q->group_size;
    for (int64_t j = 0; j < n_groups; j++) {
        scales[j] = qweight_scale(w, row, j);
        if (w->q->mode == QMODE_AFFINE) biases[j] = qweight_bias(w, row, j);
    }
}

void cpu_qdeq_row_portable(const struct tensor *w, int64_t row, float *dst)
{
    qweight_dequant_row(w, row, dst);
}

cpu_qdeq_fn cpu_qdeq_pick(const char *isa)
{
#if defined(__x86_64__)
    if (!strcmp(isa, "avx512")) return cpu_qdeq_row_avx512;
    if (!strcmp(isa, "avx2")) return cpu_qdeq_row_avx2;
#endif
    return cpu_qdeq_row_portable;
}
