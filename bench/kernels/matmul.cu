/* Kernel lab: matmul (GEMV, skinny tensor-core GEMM, cuBLAS) through the production dispatch.
 *
 *   build/bench/kernels/matmul [--reps N] [--only PROJ]
 *
 * Cases: the Qwen3-8B projections (bf16 weights) at 1, 4, 8, 16, 64 and 512 rows. Versions: cuda
 * (matmul.cu's choose_matmul_kernel: GEMV to 4 rows, skinny 5-16, cuBLAS above), cuda with
 * cuda_skinny_off (cuBLAS from 5 rows) and cuda-deterministic (every row on the GEMV, 16-row
 * slices through k_gemv_wide). Reference: one thread per output, f32 sums of bf16(w) * x.
 * GB/s counts weights + x + out once; TFLOP/s is 2 n m k.
 */
#include "lab.cuh"

__global__ void ref_matmul(float *out, const float *x, const __nv_bfloat16 *w, int n, int m, int k)
{
    const int r = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
    if (r >= m || t >= n) return;
    float s = 0;
    for (int i = 0; i < k; i++) s += __bfloat162float(w[(size_t)r * k + i]) * x[(size_t)t * k + i];
    out[(size_t)t * m + r] = s;
}

struct proj { const char *name; int m, k; };

int main(int argc, char **argv)
{
    int reps = 20;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else { fprintf(stderr, "usage: matmul [--reps N] [--only qkv|o|gate_up|down|lm_head]\n"); return 2; }
    }
    if (reps < 1) reps = 1;
    const struct proj projs[] = {
        { "qkv", 6144, 4096 }, { "o", 4096, 4096 }, { "gate_up", 24576, 4096 }, { "down", 4096, 12288 },
        { "lm_head", 151936, 4096 },
    };
    const int rows[] = { 1, 4, 8, 16, 64, 512 };
    const struct lab_version versions[] = {
        { "cuda", "cuda", {} },
        { "cuda/skinny-off", "cuda", { .cuda_skinny_off = true } },
        { "deterministic", "cuda-deterministic", {} },
    };
    for (const struct lab_version &v : versions) {
        struct backend *be = lab_backend(&v);
        for (const struct proj &p : projs) {
            if (only && strcmp(only, p.name)) continue;
            struct lab_tensor w = lab_tensor_new(be, DTYPE_BF16, p.k, p.m);
            lab_fill(&w, 1, 0.05f);
            for (int n : rows) {
                struct lab_tensor x = lab_tensor_new(be, DTYPE_F32, p.k, n);
                struct lab_tensor out = lab_tensor_new(be, DTYPE_F32, p.m, n);
                struct lab_tensor ref = lab_tensor_new(be, DTYPE_F32, p.m, n);
                lab_fill(&x, 2, 1.0f);
                ref_matmul<<<dim3((p.m + 127) / 128, n), 128>>>((float *)lab_ptr(&ref), (const float *)lab_ptr(&x),
                                                               (const __nv_bfloat16 *)lab_ptr(&w), n, p.m, p.k);
                LAB_CHECK(cudaDeviceSynchronize());
                double s = lab_time(be, reps, [&] { be->ops->matmul(be, &out.t, &x.t, &w.t, NULL); });
                double err = lab_rel_err((const float *)lab_ptr(&out), (const float *)lab_ptr(&ref), (size_t)n * p.m);
                char name[64];
                snprintf(name, sizeof name, "%s n=%d m=%d k=%d", p.name, n, p.m, p.k);
                // n <= 4 on the GEMV multiplies f32 x: ~1e-6; bf16-rounded x on tensor cores: ~1e-2
                lab_print("matmul", name, v.name, s, 2.0 * p.m * p.k + 4.0 * n * (p.k + p.m), 2.0 * n * p.m * p.k, err,
                          2e-2);
                lab_tensor_free(be, &x);
                lab_tensor_free(be, &out);
                lab_tensor_free(be, &ref);
            }
            lab_tensor_free(be, &w);
        }
        backend_free(be);
    }
    return 0;
}
