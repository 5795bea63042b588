/* cublas_algos: how fast cuBLAS multiplies the decode step's rows (16-128 tokens) by the Qwen3-8B
 * shape's bf16 weights, with its default choice (cublasGemmEx, as matmul.cu calls it) and with
 * every algorithm cublasLt's heuristic offers for the shape, each timed: is there a faster one?
 *
 *   nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 bench/cublas_algos.cu -lcublasLt -lcublas -o cublas_algos
 *   ./cublas_algos [n,n,...]
 *
 * out[n, m] (f32) = x[n, k] (bf16) @ w[m, k]^T (bf16), f32 accumulation: matmul.cu's operands.
 * Weights cycle through copies that together exceed 4x the L2, so every call reads HBM as a
 * decode step does. Prints per (matrix, n): microseconds and GB/s of the default and of the
 * best heuristic algorithm (its tile, stages and split-k), and that algorithm's largest
 * difference from the default's output relative to the output's largest magnitude.
 */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)
#define BK(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) { fprintf(stderr, "%s:%d cublas %d\n", __FILE__, __LINE__, (int)s_); exit(1); } } while (0)

__global__ void k_fill(__nv_bfloat16 *p, size_t n, unsigned seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
        p[i] = __float2bfloat16(((h & 0xffff) / 65536.0f - 0.5f) * 0.05f);
    }
}

struct shape { const char *name; int m, k; };

static float time_us(cudaStream_t s, int reps, int n_copies, void (*fn)(void *, int), void *ctx)
{
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) fn(ctx, i % n_copies);
    CK(cudaEventRecord(a, s));
    for (int i = 0; i < reps; i++) fn(ctx, i % n_copies);
    CK(cudaEventRecord(b, s));
    CK(cudaEventSynchronize(b));
    float ms; CK(cudaEventElapsedTime(&ms, a, b));
    cudaEventDestroy(a); cudaEventDestroy(b);
    return ms * 1000.0f / reps;
}

struct ctx {
    cublasHandle_t blas; cublasLtHandle_t lt; cudaStream_t s;
    std::vector<__nv_bfloat16 *> w; __nv_bfloat16 *x; float *out;
    int m, n, k;
    cublasLtMatmulDesc_t op; cublasLtMatrixLayout_t la, lb, lc;
    const cublasLtMatmulAlgo_t *algo; void *ws; size_t ws_bytes;
};

static void run_default(void *p, int i)
{
    struct ctx *c = (struct ctx *)p;
    const float one = 1.0f, zero = 0.0f;
    BK(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, c->m, c->n, c->k, &one, c->w[i], CUDA_R_16BF, c->k, c->x, CUDA_R_16BF,
                    c->k, &zero, c->out, CUDA_R_32F, c->m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static void run_lt(void *p, int i)
{
    struct ctx *c = (struct ctx *)p;
    const float one = 1.0f, zero = 0.0f;
    BK(cublasLtMatmul(c->lt, c->op, &one, c->w[i], c->la, c->x, c->lb, &zero, c->out, c->lc, c->out, c->lc, c->algo, c->ws,
                      c->ws_bytes, c->s));
}

static float max_rel_diff(const float *d_a, const float *d_b, size_t n)
{
    std::vector<float> a(n), b(n);
    CK(cudaMemcpy(a.data(), d_a, n * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b.data(), d_b, n * 4, cudaMemcpyDeviceToHost));
    float mx = 0, d = 0;
    for (size_t i = 0; i < n; i++) { mx = fmaxf(mx, fabsf(a[i])); d = fmaxf(d, fabsf(a[i] - b[i])); }
    return mx > 0 ? d / mx : d;
}

int main(int argc, char **argv)
{
    std::vector<int> ns = { 16, 32, 48, 64, 80, 128 };
    if (argc > 1) {
        ns.clear();
        for (char *t = strtok(argv[1], ","); t; t = strtok(NULL, ",")) ns.push_back(atoi(t));
    }
    const struct shape shapes[] = {
        { "q/o", 4096, 4096 }, { "k/v", 1024, 4096 }, { "qkv", 6144, 4096 }, { "gate", 12288, 4096 },
        { "gate+up", 24576, 4096 }, { "down", 4096, 12288 }, { "lm_head", 151936, 4096 },
    };
    int dev; CK(cudaGetDevice(&dev));
    cudaDeviceProp prop; CK(cudaGetDeviceProperties(&prop, dev));
    printf("device %s, L2 %d MB, %d SMs\n", prop.name, prop.l2CacheSize >> 20, prop.multiProcessorCount);

    struct ctx c = {};
    CK(cudaStreamCreate(&c.s));
    BK(cublasCreate(&c.blas)); BK(cublasSetStream(c.blas, c.s));
    BK(cublasLtCreate(&c.lt));
    c.ws_bytes = 64u << 20;
    CK(cudaMalloc(&c.ws, c.ws_bytes));
    int max_n = 0;
    for (int n : ns) max_n = n > max_n ? n : max_n;
    CK(cudaMalloc(&c.x, (size_t)max_n * 12288 * 2));
    k_fill<<<1024, 256, 0, c.s>>>(c.x, (size_t)max_n * 12288, 7);
    float *ref;
    CK(cudaMalloc(&c.out, (size_t)max_n * 151936 * 4));
    CK(cudaMalloc(&ref, (size_t)max_n * 151936 * 4));

    for (const struct shape &sh : shapes) {
        size_t w_bytes = (size_t)sh.m * sh.k * 2;
        int n_copies = (int)((4.0 * prop.l2CacheSize) / w_bytes) + 1;
        if (n_copies < 2) n_copies = 2;
        c.w.assign(n_copies, NULL);
        for (int i = 0; i < n_copies; i++) {
            CK(cudaMalloc(&c.w[i], w_bytes));
            k_fill<<<1024, 256, 0, c.s>>>(c.w[i], w_bytes / 2, 11);   // equal copies: every call's output is the same
        }
        c.m = sh.m; c.k = sh.k;
        for (int n : ns) {
            c.n = n;
            double bytes = w_bytes + (double)n * sh.k * 2 + (double)n * sh.m * 4;
            int reps = 40;
            float t_def = time_us(c.s, reps, n_copies, run_default, &c);
            CK(cudaMemcpyAsync(ref, c.out, (size_t)n * sh.m * 4, cudaMemcpyDeviceToDevice, c.s));
            CK(cudaStreamSynchronize(c.s));

            BK(cublasLtMatmulDescCreate(&c.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
            cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
            BK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
            BK(cublasLtMatmulDescSetAttribute(c.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
            BK(cublasLtMatrixLayoutCreate(&c.la, CUDA_R_16BF, sh.k, sh.m, sh.k));
            BK(cublasLtMatrixLayoutCreate(&c.lb, CUDA_R_16BF, sh.k, n, sh.k));
            BK(cublasLtMatrixLayoutCreate(&c.lc, CUDA_R_32F, sh.m, n, sh.m));
            cublasLtMatmulPreference_t pref;
            BK(cublasLtMatmulPreferenceCreate(&pref));
            BK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c.ws_bytes,
                                                    sizeof c.ws_bytes));
            cublasLtMatmulHeuristicResult_t res[32];
            int n_res = 0;
            BK(cublasLtMatmulAlgoGetHeuristic(c.lt, c.op, c.la, c.lb, c.lc, c.lc, pref, 32, res, &n_res));
            float best = 1e30f, first = 0;
            int best_i = -1;
            for (int i = 0; i < n_res; i++) {
                c.algo = &res[i].algo;
                float t = time_us(c.s, reps, n_copies, run_lt, &c);
                if (i == 0) first = t;
                if (t < best) { best = t; best_i = i; }
            }
            int tile = -1, stages = -1, splitk = -1, id = -1;
            float diff = -1;
            if (best_i >= 0) {
                const cublasLtMatmulAlgo_t *a = &res[best_i].algo;
                cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, NULL);
                cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, NULL);
                cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, NULL);
                cublasLtMatmulAlgoConfigGetAttribute(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, NULL);
                c.algo = a;
                run_lt(&c, 0);
                CK(cudaStreamSynchronize(c.s));
                diff = max_rel_diff(ref, c.out, (size_t)n * sh.m);
            }
            printf("%-8s n=%-4d m=%-6d k=%-5d default %8.1f us %6.0f GB/s | lt first %8.1f us | lt best of %2d %8.1f us "
                   "%6.0f GB/s (#%d id %d tile %d stages %d splitk %d) %.2fx  diff %.1e\n",
                   sh.name, n, sh.m, sh.k, t_def, bytes / t_def / 1e3, first, n_res, best, bytes / best / 1e3, best_i, id,
                   tile, stages, splitk, t_def / best, diff);
            fflush(stdout);
            cublasLtMatmulPreferenceDestroy(pref);
            cublasLtMatrixLayoutDestroy(c.la); cublasLtMatrixLayoutDestroy(c.lb); cublasLtMatrixLayoutDestroy(c.lc);
            cublasLtMatmulDescDestroy(c.op);
        }
        for (void *p : c.w) cudaFree(p);
    }
    return 0;
}
