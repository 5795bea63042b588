/* cublas_load: the six cuBLAS entry points the cuda backend calls, resolved with dlopen the first
 * time one is called (cublasCreate in backend_cuda_new), instead of linking libcublas.
 *
 * Why: loading libcublas and libcublasLt (about 0.5 GB, 400k relocations) costs about 0.45 CPU
 * seconds at every process start, GPU or not: every `cairn` command, and the test suite's
 * hundreds of server and CLI starts, paid it even on the CPU backend. Now only a process that
 * makes a cuda backend pays it, once.
 *
 * Contract: these definitions replace the library's symbols of the same names (cublas_v2.h maps
 * cublasCreate to cublasCreate_v2 and so on), so call sites are unchanged. The library is
 * libcublas.so.<CUBLAS_VER_MAJOR>, found as the linked one would be (the binary's run path, then
 * the loader's cache). If it cannot be opened, or lacks a symbol, the error is logged once and
 * every entry point returns CUBLAS_STATUS_NOT_INITIALIZED: backend_cuda_new then fails cleanly.
 * Thread-safe (pthread_once). Calling another cuBLAS function is a link error: add it here.
 */
#include "backend/cuda/cuda_common.cuh"

#include <dlfcn.h>
#include <pthread.h>

#define CUBLAS_SONAME_(major) "libcublas.so." #major
#define CUBLAS_SONAME(major) CUBLAS_SONAME_(major)

// cublasGemmEx is overloaded in C++ (an inline form taking cudaDataType as the compute type): name the C one.
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                                     const void *, cudaDataType, int, const void *, cudaDataType, int, const void *,
                                     void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);

static struct {
    decltype(&cublasCreate_v2)    create;
    decltype(&cublasDestroy_v2)   destroy;
    decltype(&cublasSetStream_v2) set_stream;
    decltype(&cublasSetMathMode)  set_math_mode;
    decltype(&cublasSgemm_v2)     sgemm;
    gemm_ex_fn                    gemm_ex;
    bool                          ok;
} g_blas;
static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;

static void blas_load(void)
{
    const char *name = CUBLAS_SONAME(CUBLAS_VER_MAJOR);
    void *lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        LOG_ERR("cuda: cannot load %s: %s", name, dlerror());
        return;
    }
    struct { void **slot; const char *sym; } syms[] = {
        { (void **)&g_blas.create, "cublasCreate_v2" },
        { (void **)&g_blas.destroy, "cublasDestroy_v2" },
        { (void **)&g_blas.set_stream, "cublasSetStream_v2" },
        { (void **)&g_blas.set_math_mode, "cublasSetMathMode" },
        { (void **)&g_blas.sgemm, "cublasSgemm_v2" },
        { (void **)&g_blas.gemm_ex, "cublasGemmEx" },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(lib, syms[i].sym);
        if (!*syms[i].slot) {
            LOG_ERR("cuda: %s has no %s", name, syms[i].sym);
            return;   // the library stays open: harmless, and closing it could unload a dependency in use
        }
    }
    g_blas.ok = true;
}

static bool blas_ready(void)
{
    pthread_once(&g_blas_once, blas_load);
    return g_blas.ok;
}

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle)
{
    return blas_ready() ? g_blas.create(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle)
{
    return blas_ready() ? g_blas.destroy(handle) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream)
{
    return blas_ready() ? g_blas.set_stream(handle, stream) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    return blas_ready() ? g_blas.set_math_mode(handle, mode) : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSgemm_v2(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                              int k, const float *alpha, const float *A, int lda, const float *B, int ldb,
                              const float *beta, float *C, int ldc)
{
    return blas_ready() ? g_blas.sgemm(handle, transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
                        : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
    return blas_ready() ? g_blas.gemm_ex(handle, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C,
                                         Ctype, ldc, computeType, algo)
                        : CUBLAS_STATUS_NOT_INITIALIZED;
}
