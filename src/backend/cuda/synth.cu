/* synth: random bf16 weights made directly in device memory (backend_ops.fill_synthetic).
 *
 * Serving or benchmarking an 8B-30B shape from a config alone (`--synthetic CONFIG.json`) must not
 * need tens of GB on disk or in host RAM, so model_synthesize_on() allocates the weights with
 * buffer_new and this kernel fills them where they live.
 *
 * Values: the same pure function of (tensor seed, element index) as synth_fill_bf16 in
 * model/synth.c, and BIT-IDENTICAL to it (tests/cuda/test_cuda_synth.c checks every element):
 *  - the hash (base/hash.h's hash_mix64 over tseed + i * golden ratio) is integer arithmetic;
 *  - the Irwin-Hall sum of four 16-bit uniforms is an integer below 2^18, exact in f32, and so is
 *    s - 131070;
 *  - k = std * sqrt(3) / 65536 is computed on the host by the same C expression as synth.c;
 *  - base + (s - 131070) * k uses __fmul_rn then __fadd_rn, so nvcc cannot contract it into an
 *    FMA (the host C code is built with -std=c11, which turns contraction off, and without FMA
 *    flags for synth.c);
 *  - the f32 -> bf16 rounding is the same bit manipulation as f32_to_bf16 (round to nearest even;
 *    NaN cannot occur here).
 * There is no libm call (no Box-Muller), so there is no ulp slack to document.
 *
 * Speed: one thread per 4 elements (8-byte stores), grid-stride; memory-bound (a 16 GB model fills
 * in well under a second on an H100), far below the time a host fill + PCIe copy would take.
 */
#include "backend/cuda/cuda_common.cuh"

extern "C" {
#include "base/hash.h"
}

__device__ __forceinline__ uint16_t synth_value(uint64_t tseed, uint64_t i, float base, float k)
{
    uint64_t h = hash_mix64(tseed + i * HASH_GOLDEN64);
    uint32_t sum = (uint32_t)(h & 0xffff) + (uint32_t)((h >> 16) & 0xffff) + (uint32_t)((h >> 32) & 0xffff) +
                   (uint32_t)(h >> 48);
    float s = (float)sum;
    float v = __fadd_rn(base, __fmul_rn(__fsub_rn(s, 131070.0f), k));
    uint32_t u = __float_as_uint(v);
    u += 0x7fffu + ((u >> 16) & 1);   // round to nearest even, as f32_to_bf16
    return (uint16_t)(u >> 16);
}

/* dst[i] for i < n; dst is 8-byte aligned (buffer offsets are 64-byte aligned). */
static __global__ void k_synth_fill_bf16(uint16_t *dst, uint64_t n, uint64_t tseed, float base, float k)
{
    uint64_t n4 = n / 4;
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t q = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; q < n4; q += stride) {
        uint64_t i = q * 4;
        ushort4 o;
        o.x = synth_value(tseed, i, base, k);
        o.y = synth_value(tseed, i + 1, base, k);
        o.z = synth_value(tseed, i + 2, base, k);
        o.w = synth_value(tseed, i + 3, base, k);
        reinterpret_cast<ushort4 *>(dst)[q] = o;
    }
    if (blockIdx.x == 0 && threadIdx.x < n - n4 * 4) {   // the last n % 4 elements
        uint64_t i = n4 * 4 + threadIdx.x;
        dst[i] = synth_value(tseed, i, base, k);
    }
}

void cuda_fill_synthetic(struct backend *be, struct tensor *t, uint64_t tseed, float base, float std)
{
    struct cuda_backend *cb = cuda_of(be);
    CHECK(t->dtype == DTYPE_BF16, "cuda: fill_synthetic needs bf16, got %s", dtype_name(t->dtype));
    CHECK(t->buf && t->buf->kind == BUF_DEVICE, "cuda: fill_synthetic needs a device tensor");
    CHECK(tensor_is_contiguous(t), "cuda: fill_synthetic needs a contiguous tensor");
    uint16_t *d = (uint16_t *)dptr(t);
    CHECK(((uintptr_t)d & 7) == 0, "cuda: fill_synthetic: tensor %s not 8-byte aligned", t->name ? t->name : "?");
    uint64_t n = (uint64_t)tensor_nelem(t);
    if (n == 0) return;
    const float k = std * 1.7320508f / 65536.0f;   // exactly synth.c's expression (host f32 arithmetic)
    uint64_t n4 = n / 4;
    int threads = 256;
    uint64_t want = (n4 + threads - 1) / threads;
    uint64_t cap = (uint64_t)cb->n_sm * 32;
    int blocks = (int)(want < 1 ? 1 : want > cap ? cap : want);
    k_synth_fill_bf16<<<blocks, threads, 0, cb->stream>>>(d, n, tseed, base, k);
    LAUNCH_CHECK();
}
