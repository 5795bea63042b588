/* gpu_peak: the two ceilings of this GPU, measured in the same run as the engine benchmarks:
 * device memory read bandwidth (a read-only streaming kernel over 4 GiB, and D2D copy counting
 * read + write bytes) and cuBLAS bf16 GEMM throughput (8192^3, f32 accumulation).
 * Prints `read_bytes_per_s=... copy_bytes_per_s=... gemm_bf16_tflops=...`. */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { fprintf(stderr, "%s\n", cudaGetErrorString(e)); exit(1); } } while (0)

__global__ void k_read(const uint4 *p, size_t n, unsigned *sink)
{
    uint32_t acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldg(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc;
}

__global__ void k_fill(uint4 *p, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = make_uint4((unsigned)i, (unsigned)(i * 3), (unsigned)(i * 7), 1u);
}

__global__ void k_rand_bf16(__nv_bfloat16 *p, size_t n, unsigned seed)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned x = (unsigned)i * 2654435761u ^ seed;
        x ^= x >> 13; x *= 0x5bd1e995u; x ^= x >> 15;
        p[i] = __float2bfloat16(((float)(x & 0xffff) / 65536.0f - 0.5f));
    }
}

static int cmp(const void *a, const void *b) { float x = *(const float *)a, y = *(const float *)b; return x < y ? -1 : x > y; }

int main(void)
{
    size_t bytes = (size_t)4 << 30, n = bytes / 16;
    uint4 *a, *b;
    unsigned *sink;
    CK(cudaMalloc(&a, bytes));
    CK(cudaMalloc(&b, bytes));
    CK(cudaMalloc(&sink, 4));
    k_fill<<<4096, 256>>>(a, n);
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[20];
    for (int r = 0; r < 20; r++) {
        cudaEventRecord(e0);
        k_read<<<prop.multiProcessorCount * 8, 512>>>(a, n, sink);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[r], e0, e1);
    }
    qsort(t, 20, sizeof t[0], cmp);
    double read_bw = bytes / (t[10] * 1e-3);
    for (int r = 0; r < 10; r++) {
        cudaEventRecord(e0);
        CK(cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice));
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[r], e0, e1);
    }
    qsort(t, 10, sizeof t[0], cmp);
    double copy_bw = 2.0 * bytes / (t[5] * 1e-3);

    const int N = 8192;
    __nv_bfloat16 *A = (__nv_bfloat16 *)a, *B = (__nv_bfloat16 *)b;   // random values in [-0.5, 0.5)
    k_rand_bf16<<<4096, 256>>>(A, (size_t)N * N, 1u);
    k_rand_bf16<<<4096, 256>>>(B, (size_t)N * N, 2u);
    float *C;
    CK(cudaMalloc(&C, sizeof(float) * (size_t)N * N));
    cublasHandle_t h;
    cublasCreate(&h);
    float alpha = 1, beta = 0;
    for (int r = 0; r < 13; r++) {
        cudaEventRecord(e0);
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, N, N, &alpha, A, CUDA_R_16BF, N, B, CUDA_R_16BF, N, &beta, C, CUDA_R_32F, N,
                     CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[r], e0, e1);
    }
    qsort(t + 3, 10, sizeof t[0], cmp);   // 3 warm-ups
    double tflops = 2.0 * N * N * (double)N / (t[3 + 5] * 1e-3) / 1e12;
    printf("gpu=\"%s\" read_bytes_per_s=%.4g copy_bytes_per_s=%.4g gemm_bf16_tflops=%.1f\n", prop.name, read_bw, copy_bw, tflops);
    return 0;
}
