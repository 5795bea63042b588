/* lab: what the kernel lab's programs share (bench/kernels/, llm.c's dev/cuda way).
 *
 * Each lab program times the PRODUCTION kernels through the backend API (backend_new("cuda", cfg)
 * and its ops: the same launchers and the same choose_*_kernel dispatch the engine runs, with the
 * backend_cfg switches as the versions side by side), checks every result against a plain
 * reference kernel written here, and prints one line per (case, version): median us, GB/s and
 * TFLOP/s, and the largest error relative to the reference's largest magnitude. Variants that
 * lost are not kept: their numbers are in bench/results and the git history.
 *
 * Time is the host's, of one op plus backend sync, median over reps after warm-up: it includes a
 * launch and a sync (~10 us), so short kernels read slower than ncu would say.
 */
#ifndef CAIRN_BENCH_KERNELS_LAB_CUH
#define CAIRN_BENCH_KERNELS_LAB_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend/backend.h"
#include "base/clock.h"
#include "base/hash.h"
#include "tensor/dtype.h"
#include "tensor/tensor.h"
}

#define LAB_CHECK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { \
        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } } while (0)

/* A device tensor [ne1, ne0] in its own buffer of the backend. */
struct lab_tensor {
    struct buffer *buf;
    struct tensor  t;
};

static inline struct lab_tensor lab_tensor_new(struct backend *be, enum dtype dt, int64_t ne0, int64_t ne1)
{
    struct lab_tensor r;
    size_t bytes = (size_t)ne0 * (size_t)ne1 * dtype_size(dt);
    if (be->ops->buffer_new(be, bytes, &r.buf) != STATUS_OK) {
        fprintf(stderr, "lab: out of device memory (%zu bytes)\n", bytes);
        exit(1);
    }
    r.t = tensor_2d(dt, ne0, ne1, r.buf, 0);
    return r;
}

static inline void lab_tensor_free(struct backend *be, struct lab_tensor *t) { be->ops->buffer_free(be, t->buf); }

static inline void *lab_ptr(const struct lab_tensor *t) { return (char *)t->buf->data + t->t.offset; }

/* Element loads as f32 for the reference kernels. */
template <typename T> __device__ __forceinline__ float lab_f(T v) { return (float)v; }
template <> __device__ __forceinline__ float lab_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float lab_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float lab_f<__nv_fp8_e4m3>(__nv_fp8_e4m3 v) { return static_cast<float>(v); }

template <typename T>
__global__ void lab_k_fill(T *dst, size_t n, uint64_t seed, float scale)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const uint64_t h = hash_mix64(seed + i * HASH_GOLDEN64);
        dst[i] = T(((float)(h >> 40) / (float)(1 << 23) - 1.0f) * scale);   // uniform in [-scale, scale)
    }
}

/* Uniform values in [-scale, scale) (a function of seed and index), made on the device. */
static inline void lab_fill(struct lab_tensor *t, uint64_t seed, float scale)
{
    const size_t n = (size_t)tensor_nelem(&t->t);
    void *p = lab_ptr(t);
    switch (t->t.dtype) {
    case DTYPE_F32: lab_k_fill<float><<<1024, 256>>>((float *)p, n, seed, scale); break;
    case DTYPE_F16: lab_k_fill<__half><<<1024, 256>>>((__half *)p, n, seed, scale); break;
    case DTYPE_BF16: lab_k_fill<__nv_bfloat16><<<1024, 256>>>((__nv_bfloat16 *)p, n, seed, scale); break;
    case DTYPE_F8E4M3: lab_k_fill<__nv_fp8_e4m3><<<1024, 256>>>((__nv_fp8_e4m3 *)p, n, seed, scale); break;
    default: fprintf(stderr, "lab: dtype %s\n", dtype_name(t->t.dtype)); exit(1);
    }
    LAB_CHECK(cudaDeviceSynchronize());
}

/* max |a - r| / max |r| over n f32 device values. */
static inline double lab_rel_err(const float *d_a, const float *d_r, size_t n)
{
    float *a = (float *)malloc(sizeof(float) * n), *r = (float *)malloc(sizeof(float) * n);
    LAB_CHECK(cudaMemcpy(a, d_a, sizeof(float) * n, cudaMemcpyDeviceToHost));
    LAB_CHECK(cudaMemcpy(r, d_r, sizeof(float) * n, cudaMemcpyDeviceToHost));
    double max_d = 0, max_r = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)r[i]);
        if (!(d <= max_d)) max_d = d;   // NaN counts as the worst
        if (fabs((double)r[i]) > max_r) max_r = fabs((double)r[i]);
    }
    free(a);
    free(r);
    return max_r > 0 ? max_d / max_r : max_d;
}

static int lab_cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of `reps` runs of op(ctx) + sync, after two warm-up runs; < 0 on a device error. */
template <typename F>
static double lab_time(struct backend *be, int reps, F op)
{
    op();
    op();
    if (be->ops->sync(be) != STATUS_OK) return -1;
    double *t = (double *)malloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < reps; i++) {
        double t0 = clock_now_s();
        op();
        if (be->ops->sync(be) != STATUS_OK) { free(t); return -1; }
        t[i] = clock_now_s() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, lab_cmp_d);
    double med = t[reps / 2];
    free(t);
    return med;
}

/* Reads the command line of a lab program whose only flag is --reps N (timed runs; at least 1) into
 * *reps; false, with the usage printed, on anything else. */
static inline bool lab_parse_reps(int argc, char **argv, const char *prog, int *reps)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) *reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--reps N]\n", prog);
            return false;
        }
    }
    if (*reps < 1) *reps = 1;
    return true;
}

/* One version of the backend: a name for the output and how to make it. */
struct lab_version {
    const char        *name;
    const char        *backend;   // "cuda", "cuda-deterministic", "cuda-precise"
    struct backend_cfg cfg;
};

static inline struct backend *lab_backend(const struct lab_version *v)
{
    struct backend *be = NULL;
    if (backend_new(v->backend, &v->cfg, &be) != STATUS_OK) {
        fprintf(stderr, "lab: no %s backend (this program needs a GPU)\n", v->backend);
        exit(1);
    }
    return be;
}

static inline void lab_print(const char *kernel, const char *case_name, const char *version, double s, double bytes,
                             double flops, double err, double tol)
{
    if (s < 0) {
        printf("%-18s %-34s %-16s device error\n", kernel, case_name, version);
        return;
    }
    printf("%-18s %-34s %-16s %9.1f us %8.1f GB/s %7.2f TFLOP/s  err %.1e %s\n", kernel, case_name, version, s * 1e6,
           bytes / s / 1e9, flops / s / 1e12, err, err <= tol ? "ok" : "FAIL");
    fflush(stdout);
}

#endif
