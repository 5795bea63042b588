/* Kernel lab: matmuls of MLX-quantized weights (qmatmul.cu) through the production dispatch.
 *
 *   build/bench/kernels/qmatmul [--reps N] [--only PROJ] [--fmt MODE:BITS:GROUP]
 *
 * Cases: the Qwen3-8B projections quantized in each format (affine 4 bit g32/g64/g128, affine
 * 8 bit g64, affine 3 bit g64, mxfp4, nvfp4, mxfp8) at 1, 4, 8 and 16 rows (the decode GEMV,
 * k_qgemv) and 512 and 4,096 rows (prefill: matmul.cu's choice for quantized weights). Versions:
 * cuda, cuda-deterministic (every row on the GEMV; to 512 rows), and "bf16" (in the cuda version):
 * the same shape as bf16 weights on the float path (what the quantized kernels race: the same bytes would take 1 / 4 of the time
 * at 4 bit if both ran at the bandwidth). Each case rotates through copies of the weights that
 * together exceed the L2 twice, so every rep reads them from memory. Reference: one thread per
 * output (first 16 rows of x), the weights decoded from their bits by the spec's formulas
 * (shared/research/mlx-quant-format.md 2.2, 3), f32 sums. GB/s counts packed words + scales +
 * biases + x + out once; TFLOP/s is 2 n m k.
 */
#include "lab.cuh"

extern "C" {
#include "tensor/qweight.h"
}

#define REF_ROWS 16   // rows of x the reference computes

/* Random packed words, scales and biases of a valid checkpoint in mode: E4M3 elements never NaN
 * (mantissa LSB cleared), E8M0 scales 2^-7 .. 2^0, E4M3 scales 0.5 .. 2, affine scales and biases
 * of real groups' size. */
__global__ void lab_k_qfill(uint32_t *w, size_t n_words, uint8_t *sc, __nv_bfloat16 *scb, __nv_bfloat16 *bib,
                            size_t n_groups, int mode, uint64_t seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_words; i += (size_t)gridDim.x * blockDim.x) {
        const uint32_t h = (uint32_t)(hash_mix64(seed + i * HASH_GOLDEN64) >> 32);
        w[i] = mode == QMODE_MXFP8 ? h & 0xFEFEFEFEu : h;
    }
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_groups; i += (size_t)gridDim.x * blockDim.x) {
        const uint64_t h = hash_mix64(seed * 31 + i * HASH_GOLDEN64 + 7);
        if (mode == QMODE_AFFINE) {
            scb[i] = __float2bfloat16(((float)(h & 0xffff) / 65536.0f - 0.5f) * 0.004f);
            bib[i] = __float2bfloat16(((float)((h >> 16) & 0xffff) / 65536.0f - 0.5f) * 0.06f);
        } else if (mode == QMODE_NVFP4) {
            sc[i] = (uint8_t)(0x30 + (h & 15));
        } else {
            sc[i] = (uint8_t)(120 + (h & 7));
        }
    }
}

/* The reference's view of a quantized matrix. */
struct qref {
    const uint32_t      *w;
    const uint8_t       *sc;    // E8M0 / E4M3 scales
    const __nv_bfloat16 *scb;   // affine scales and biases
    const __nv_bfloat16 *bib;
    int mode, bits, gs;
};

__device__ float ref_e2m1(uint32_t c)
{
    const float lut[8] = { 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f };
    return c & 8 ? -lut[c & 7] : lut[c & 7];
}

__device__ float ref_e4m3(uint32_t c)   // OCP E4M3 ("fn"): bias 7, subnormals, no infinities
{
    const int e = (c >> 3) & 15, m = c & 7;
    const float v = e ? ldexpf(1.0f + m / 8.0f, e - 7) : ldexpf(m / 8.0f, -6);
    return c & 0x80 ? -v : v;
}

__global__ void ref_qmatmul(float *out, const float *x, qref q, int n, int m, int k)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (r >= m || t >= n) return;
    const uint32_t *row = q.w + (size_t)r * k * q.bits / 32;
    const int ng = k / q.gs;
    float s = 0;
    for (int i = 0; i < k; i++) {
        const uint64_t off = (uint64_t)i * q.bits;
        uint64_t win = row[off >> 5];
        if ((off & 31) + q.bits > 32) win |= (uint64_t)row[(off >> 5) + 1] << 32;
        const uint32_t c = (uint32_t)(win >> (off & 31)) & ((1u << q.bits) - 1);
        const size_t g = (size_t)r * ng + i / q.gs;
        float w;
        if (q.mode == QMODE_AFFINE) w = __bfloat162float(q.scb[g]) * (float)c + __bfloat162float(q.bib[g]);
        else if (q.mode == QMODE_NVFP4) w = ref_e4m3(q.sc[g]) * ref_e2m1(c);
        else w = ldexpf(1.0f, (int)q.sc[g] - 127) * (q.mode == QMODE_MXFP8 ? ref_e4m3(c) : ref_e2m1(c));
        s += w * x[(size_t)t * k + i];
    }
    out[(size_t)t * m + r] = s;
}

/* A quantized [m, k] matrix on the device, in its own buffers. */
struct lab_qmat {
    struct lab_tensor packed, scales, biases;
    struct qweight    q;
    struct tensor     t;
    size_t            bytes;   // packed + scales + biases
};

static void lab_qmat_new(struct backend *be, struct lab_qmat *qm, enum qmode mode, int bits, int gs, int m, int k,
                         uint64_t seed)
{
    memset(qm, 0, sizeof *qm);
    const int ng = k / gs;
    qm->packed = lab_tensor_new(be, DTYPE_U32, k / 32 * bits, m);
    qm->scales = lab_tensor_new(be, mode == QMODE_AFFINE ? DTYPE_BF16 : DTYPE_U8, ng, m);
    if (mode == QMODE_AFFINE) qm->biases = lab_tensor_new(be, DTYPE_BF16, ng, m);
    lab_k_qfill<<<1024, 256>>>((uint32_t *)lab_ptr(&qm->packed), (size_t)m * (k / 32 * bits),
                               (uint8_t *)lab_ptr(&qm->scales), (__nv_bfloat16 *)lab_ptr(&qm->scales),
                               mode == QMODE_AFFINE ? (__nv_bfloat16 *)lab_ptr(&qm->biases) : NULL, (size_t)m * ng,
                               (int)mode, seed);
    LAB_CHECK(cudaDeviceSynchronize());
    qm->q.mode = mode;
    qm->q.bits = bits;
    qm->q.group_size = gs;
    qm->q.scales = qm->scales.t;
    if (mode == QMODE_AFFINE) qm->q.biases = qm->biases.t;
    qm->t = qweight_tensor(&qm->q, &qm->packed.t, k);
    qm->bytes = qweight_bytes(&qm->t);
}

static void lab_qmat_free(struct backend *be, struct lab_qmat *qm)
{
    lab_tensor_free(be, &qm->packed);
    lab_tensor_free(be, &qm->scales);
    if (qm->q.mode == QMODE_AFFINE) lab_tensor_free(be, &qm->biases);
}

struct proj { const char *name; int m, k; };
struct qfmt_case { enum qmode mode; int bits, gs; };

#define COPY_BYTES (200u << 20)   // weights a case rotates through: twice the L2 and more

int main(int argc, char **argv)
{
    int reps = 20;
    const char *only = NULL, *only_fmt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--fmt") && i + 1 < argc) only_fmt = argv[++i];
        else {
            fprintf(stderr, "usage: qmatmul [--reps N] [--only qkv|o|gate_up|down|lm_head] [--fmt affine:4:64]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    const struct proj projs[] = {
        { "qkv", 6144, 4096 }, { "o", 4096, 4096 }, { "gate_up", 24576, 4096 }, { "down", 4096, 12288 },
        { "lm_head", 151936, 4096 },
    };
    const struct qfmt_case fmts[] = {
        { QMODE_AFFINE, 4, 64 }, { QMODE_AFFINE, 8, 64 }, { QMODE_AFFINE, 4, 32 }, { QMODE_AFFINE, 4, 128 },
        { QMODE_AFFINE, 3, 64 }, { QMODE_MXFP4, 4, 32 }, { QMODE_NVFP4, 4, 16 }, { QMODE_MXFP8, 8, 32 },
    };
    const int rows[] = { 1, 4, 8, 16, 512, 4096 };
    const struct lab_version versions[] = {
        { "cuda", "cuda", {} },
        { "deterministic", "cuda-deterministic", {} },
    };
    for (const struct lab_version &v : versions) {
        struct backend *be = lab_backend(&v);
        for (const struct proj &p : projs) {
            if (only && strcmp(only, p.name)) continue;
            for (int fi = -1; fi < (int)(sizeof fmts / sizeof fmts[0]); fi++) {   // -1: the bf16 baseline
                char fname[32];
                if (fi < 0) snprintf(fname, sizeof fname, "bf16");
                else snprintf(fname, sizeof fname, "%s:%d:%d", qmode_name(fmts[fi].mode), fmts[fi].bits, fmts[fi].gs);
                if (only_fmt && strcmp(only_fmt, fname) && fi >= 0) continue;
                if (fi < 0 && strcmp(v.name, "cuda")) continue;   // the baseline once
                // copies of the weights (the first is the one checked)
                const size_t one = fi < 0 ? 2 * (size_t)p.m * p.k
                                          : (size_t)p.m * p.k * fmts[fi].bits / 8 + (size_t)p.m * (p.k / fmts[fi].gs) * 4;
                const int n_copies = (int)((COPY_BYTES + one - 1) / one);
                struct lab_qmat *qs = (struct lab_qmat *)calloc((size_t)n_copies, sizeof *qs);
                struct lab_tensor *fs = (struct lab_tensor *)calloc((size_t)n_copies, sizeof *fs);
                for (int c = 0; c < n_copies; c++) {
                    if (fi < 0) {
                        fs[c] = lab_tensor_new(be, DTYPE_BF16, p.k, p.m);
                        lab_fill(&fs[c], 1 + c, 0.05f);
                    } else {
                        lab_qmat_new(be, &qs[c], fmts[fi].mode, fmts[fi].bits, fmts[fi].gs, p.m, p.k, 1 + c);
                    }
                }
                const size_t wbytes = fi < 0 ? one : qs[0].bytes;
                for (int n : rows) {
                    if (n > 512 && !strcmp(v.name, "deterministic")) continue;   // 8 rows a launch: long
                    struct lab_tensor x = lab_tensor_new(be, DTYPE_F32, p.k, n);
                    struct lab_tensor out = lab_tensor_new(be, DTYPE_F32, p.m, n);
                    const int nr = n < REF_ROWS ? n : REF_ROWS;
                    struct lab_tensor ref = lab_tensor_new(be, DTYPE_F32, p.m, nr);
                    lab_fill(&x, 2, 1.0f);
                    double err = 0;
                    if (fi >= 0) {
                        const struct lab_qmat &q0 = qs[0];
                        const qref qr = { (const uint32_t *)lab_ptr(&q0.packed), (const uint8_t *)lab_ptr(&q0.scales),
                                          (const __nv_bfloat16 *)lab_ptr(&q0.scales),
                                          q0.q.mode == QMODE_AFFINE ? (const __nv_bfloat16 *)lab_ptr(&q0.biases) : NULL,
                                          (int)q0.q.mode, q0.q.bits, q0.q.group_size };
                        ref_qmatmul<<<dim3((p.m + 127) / 128, nr), 128>>>((float *)lab_ptr(&ref),
                                                                         (const float *)lab_ptr(&x), qr, nr, p.m, p.k);
                        LAB_CHECK(cudaDeviceSynchronize());
                        be->ops->matmul(be, &out.t, &x.t, &qs[0].t, NULL);
                        if (be->ops->sync(be) != STATUS_OK) return 1;
                        err = lab_rel_err((const float *)lab_ptr(&out), (const float *)lab_ptr(&ref), (size_t)nr * p.m);
                    }
                    int c = 0;
                    const double s = lab_time(be, reps, [&] {
                        const struct tensor *w = fi < 0 ? &fs[c].t : &qs[c].t;
                        c = (c + 1) % n_copies;
                        be->ops->matmul(be, &out.t, &x.t, w, NULL);
                    });
                    char name[80];
                    snprintf(name, sizeof name, "%s %s n=%d m=%d k=%d", p.name, fname, n, p.m, p.k);
                    // f32 GEMV rows: ~1e-6; bf16-rounded x (the cuda mode's affine 4 / 8-bit tensor-core
                    // GEMV): ~1e-3; bf16-rounded weights and x on tensor cores (prefill): ~1e-2
                    const bool bf16_x = fi >= 0 && fmts[fi].mode == QMODE_AFFINE && p.m > 256 && !strcmp(v.name, "cuda") &&
                                        (fmts[fi].bits == 4 || (fmts[fi].bits == 8 && fmts[fi].gs <= 64));
                    lab_print("qmatmul", name, v.name, s, (double)wbytes + 4.0 * n * (p.k + p.m), 2.0 * n * p.m * p.k,
                              err, (n <= 16 && !bf16_x) || !strcmp(v.name, "deterministic") ? 1e-4 : 2e-2);
                    lab_tensor_free(be, &x);
                    lab_tensor_free(be, &out);
                    lab_tensor_free(be, &ref);
                }
                for (int c = 0; c < n_copies; c++) {
                    if (fi < 0) lab_tensor_free(be, &fs[c]);
                    else lab_qmat_free(be, &qs[c]);
                }
                free(qs);
                free(fs);
            }
        }
        backend_free(be);
    }
    return 0;
}
