/* cuda_common: state and helpers shared by the CUDA backend's files.
 *
 * struct cuda_backend holds everything device-side: stream, cuBLAS handle, the staged batch
 * (index arrays of the step, uploaded once in batch_begin) and workspaces. Nothing lives in file
 * statics, so several backends (devices, models) can coexist. All launches go on `stream`;
 * errors are sticky and surface at sync (CUDA_CHECK aborts in the step path: a failed launch
 * means a bug or a poisoned context).
 */
#ifndef CAIRN_BACKEND_CUDA_COMMON_CUH
#define CAIRN_BACKEND_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "backend/backend.h"
#include "base/log.h"
#include "tensor/qweight.h"
}

#define CUDA_CHECK(call) do { cudaError_t e_ = (call); \
        CHECK(e_ == cudaSuccess, "CUDA error %s: %s", cudaGetErrorName(e_), cudaGetErrorString(e_)); } while (0)
#define CUBLAS_CHECK(call) do { cublasStatus_t s_ = (call); CHECK(s_ == CUBLAS_STATUS_SUCCESS, "cuBLAS error %d", (int)s_); } while (0)
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

struct qmat;

struct moe_table {
    const struct tensor *key;          // the layer's host array of gate tensors
    int                  n_experts;
    const void         **h_ptrs;       // [3 * n_experts] gate, up, down device addresses (to validate)
    const void         **d_gate, **d_up, **d_down;   // [n_experts] device pointers
    bool                 aligned16;    // every expert matrix starts on a 16-byte boundary
    struct qmat         *d_q, *h_q;    // quantized experts: [3 * n_experts] gate, up, down; else NULL
};

/* Device copy of one step's batch_meta; arrays grow (rarely) and are reused across steps. */
struct cuda_batch {
    int      n_tok, n_seq, n_out, block_size;
    int      max_seq_len;        // longest sequence of the step
    bool     all_single;         // every sequence contributes at most one token (pure decode)
    int32_t *d_tok_id, *d_tok_pos, *d_tok_seq, *d_seq_len, *d_seq_block0, *d_block_ids, *d_out_tok;
    int32_t *d_seq_state_slot;   // [n_seq] recurrent-state slots (hybrid models; unset otherwise)
    int32_t *d_tok_snap;         // [n_tok] meta->tok_snap, NULL when it is
    bool     snap_writes;        // some token of the step has a snapshot slot (tok_snap >= 0)
    int64_t *d_tok_slot;
    int      n_tiles;            // query tiles for the tiled prefill kernel: runs of consecutive
    int32_t *d_tiles;            // positions of one sequence, <= 128 tokens, ending at every snapshot
                                 // token (tok_snap): [n_tiles][first, n, seq]
    int32_t *h_tiles;            // host staging, cap_tok * 3
    int      cap_tok, cap_seq, cap_blocks;
    void    *d_pack;             // device copy of all the arrays above, one allocation
    void    *h_pinned;           // pinned staging for the uploads
    size_t   h_pinned_bytes;
};

/* cfg profile: calls and host-timed seconds per kernel choice (names from choose_matmul_kernel,
 * choose_attention_kernel). */
#define CUDA_PROF_MAX 32
struct cuda_prof_entry {
    const char *what;
    uint64_t    calls;
    double      s;
};

struct cuda_backend {
    int             device;
    cudaStream_t    stream;
    cublasHandle_t  cublas;
    int             n_sm;
    size_t          smem_optin;         // max dynamic shared memory per block
    struct cuda_batch batch;
    void           *d_work;             // general workspace (activation conversions, gathers)
    size_t          work_bytes;
    void           *d_qdeq;             // dequantized weight rows of the quantized prefill path (matmul.cu)
    size_t          qdeq_bytes;
    void           *d_moe_work;         // MoE expert activations (the GEMMs inside use d_work)
    size_t          moe_work_bytes;
    void           *d_gdn_work;         // chunked Gated DeltaNet prefill: per (token, value head) W, U, P rows (gdn.cu)
    size_t          gdn_work_bytes;
    float          *d_attn_part;        // split-K attention partials
    size_t          attn_part_bytes;
    bool            skinny;             // 5-16-row matmuls on the skinny tensor-core kernel (cfg cuda_skinny_off: cuBLAS)
    int             att_mma_min_len;    // tensor-core fp8 decode from this longest sequence (a power of two)
    int32_t        *d_attn_done;        // split-K attention: finished splits per (token, KV head)
    size_t          attn_done_cap;
    int32_t        *d_argmax;           // [cap] argmax results
    int             argmax_cap;
    void           *h_mask;             // logits_mask: pinned staging of a step's rows and masks (elementwise.cu)
    void           *d_mask;             // its device copy
    size_t          mask_bytes;         // capacity of both
    cudaEvent_t     mask_copied;        // recorded after each staging copy: the next one waits for it
    void           *h_cands;            // sample_cands: pinned staging of its inputs and outputs (sample_cands.cu)
    void           *d_cands;            // their device copy
    size_t          cands_bytes;        // capacity of both
    bool            deterministic;      // backend "cuda-deterministic": batch-invariant rows (GEMV, f32 attention)
    bool            precise;            // backend "cuda-precise": hi + lo bf16 GEMM inputs, f32 attention
    bool            pdl;                // programmatic dependent launch of GEMVs (sm_90+)
    bool            profile;            // cfg profile: time each matmul and attention call per kernel chosen
    struct cuda_prof_entry prof[CUDA_PROF_MAX];
    int             n_prof;
    uint64_t        graph_unsafe;       // calls a step graph cannot record so far: cuda_mark_unrecordable only
    uint32_t        mem_gen;            // device allocations and frees so far: cuda_mem_alloc / cuda_mem_free only
    int32_t        *d_moe_done;         // [MOE_SMALL_N] blocks of the fused MoE router done, per token (moe.cu)
    int             moe_device_n;       // MoE steps of up to this many tokens stay on the device (cfg cuda_moe_device_n)
    struct moe_table *moe_tables;       // device arrays of expert weight pointers, per layer
    int             n_moe_tables, cap_moe_tables;
};

static inline struct cuda_backend *cuda_of(struct backend *be) { return (struct cuda_backend *)be->impl; }

/* ==== Step-graph conventions ====
 * A recorded step graph (backend_cuda.cu) bakes in device addresses and replays launches without
 * the host. Two counters tell it when that is wrong, and only these helpers move them:
 *  - mem_gen: every device allocation and free goes through cuda_mem_alloc / cuda_mem_free, which
 *    bump it (a recording made before is stale: an address it reads may now belong to another
 *    buffer). No other cudaMalloc / cudaFree / cudaMallocHost / cudaFreeHost in the backend.
 *  - graph_unsafe: a call a graph cannot record (cuBLAS, which may allocate its workspace; a host
 *    round trip inside a step op) calls cuda_mark_unrecordable, or cuda_step_roundtrip for the host
 *    round trip itself; a step shape whose first run moved it is never recorded.
 * Synchronous ops outside a step's recordable part (upload, download, argmax, one-time tables) wait
 * with cuda_stream_wait, which CHECKs that no recording is in progress. */
enum status cuda_mem_alloc(struct cuda_backend *cb, size_t bytes, void **out);   // ENOMEM (logged) on failure
void       *cuda_mem_alloc_or_die(struct cuda_backend *cb, size_t bytes);        // workspaces: CHECKs success
void        cuda_mem_free(struct cuda_backend *cb, void *p);                      // waits for the stream; NULL ok
void       *cuda_pinned_alloc(struct cuda_backend *cb, size_t bytes);            // page-locked host staging
void        cuda_pinned_free(struct cuda_backend *cb, void *p);                   // waits for the stream; NULL ok
/* A pinned staging buffer and its device copy, both of *cap bytes, grown together (to twice
 * `bytes`) when `bytes` does not fit: the one-copy uploads (batch_begin, logits_mask). */
void        cuda_staging_fit(struct cuda_backend *cb, void **h, void **d, size_t *cap, size_t bytes);
static inline void cuda_mark_unrecordable(struct cuda_backend *cb) { cb->graph_unsafe++; }
void        cuda_stream_wait(struct cuda_backend *cb);       // host waits for the stream (not while recording)
void        cuda_step_roundtrip(struct cuda_backend *cb);    // the same inside a step op: marks it unrecordable

/* cfg profile: t0 = cuda_prof_begin(cb) before a call's launches, cuda_prof_end(cb, name, t0) after;
 * both wait for the stream (step graphs are off while profiling). No-ops when not profiling. */
double cuda_prof_begin(struct cuda_backend *cb);
void   cuda_prof_end(struct cuda_backend *cb, const char *what, double t0);

/* Grows a device workspace to at least `bytes` (allocation only when it must grow). */
void *cuda_grow(struct cuda_backend *cb, void **buf, size_t *cap, size_t bytes);
static inline void *cuda_workspace(struct cuda_backend *cb, size_t bytes)
{
    return cuda_grow(cb, &cb->d_work, &cb->work_bytes, bytes);
}

/* Element loads as f32 from any float dtype. */
template <typename T> __device__ __forceinline__ float to_f(T v);
template <> __device__ __forceinline__ float to_f<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_f<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <> __device__ __forceinline__ float to_f<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_f<__nv_fp8_e4m3>(__nv_fp8_e4m3 v) { return static_cast<float>(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half(v); }
/* f8e4m3 KV caches: round to nearest even, saturate to +-448, NaN stays NaN (tensor/dtype.h's
 * f32_to_e4m3 does the same on the host); no scale factor. */
template <> __device__ __forceinline__ __nv_fp8_e4m3 from_f<__nv_fp8_e4m3>(float v)
{
    __nv_fp8_e4m3 r;
    r.__x = __nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3);
    return r;
}

/* Calls F<T>(args...) with T the CUDA type of dtype dt (f32, f16, bf16). */
#define DISPATCH_FLOAT(dt, T, ...) do { \
        switch (dt) { \
        case DTYPE_F32: { typedef float T; __VA_ARGS__; break; } \
        case DTYPE_F16: { typedef __half T; __VA_ARGS__; break; } \
        case DTYPE_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; break; } \
        default: CHECK(0, "cuda: unsupported dtype %s", dtype_name(dt)); \
        } } while (0)

/* DISPATCH_FLOAT plus the f8e4m3 of KV caches (kv_write and attention only: weights and
 * activations never come in fp8, so the other ops are not compiled for it). */
#define DISPATCH_KV(dt, T, ...) do { \
        if ((dt) == DTYPE_F8E4M3) { typedef __nv_fp8_e4m3 T; __VA_ARGS__; } \
        else DISPATCH_FLOAT(dt, T, __VA_ARGS__); } while (0)

static inline void *dptr(const struct tensor *t) { return (char *)t->buf->data + t->offset; }

/* Eight consecutive values as floats: one 16-byte load for bf16/f16, two for f32 (16-byte
 * aligned), one 8-byte load for f8e4m3 (8-byte aligned; pairs widened by the f16x2 convert). */
template <typename T>
__device__ __forceinline__ void load8(const T *src, float *dst)
{
    if constexpr (sizeof(T) == 1) {
        uint2 u = *reinterpret_cast<const uint2 *>(src);
        const __nv_fp8x2_storage_t *p = reinterpret_cast<const __nv_fp8x2_storage_t *>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = __half22float2(__half2(__nv_cvt_fp8x2_to_halfraw2(p[i], __NV_E4M3)));
            dst[2 * i] = f.x;
            dst[2 * i + 1] = f.y;
        }
    } else if constexpr (sizeof(T) == 2) {
        uint4 u = *reinterpret_cast<const uint4 *>(src);
        const T *h = reinterpret_cast<const T *>(&u);
#pragma unroll
        for (int i = 0; i < 8; i++) dst[i] = to_f<T>(h[i]);
    } else {
        float4 a = reinterpret_cast<const float4 *>(src)[0], b = reinterpret_cast<const float4 *>(src)[1];
        dst[0] = a.x; dst[1] = a.y; dst[2] = a.z; dst[3] = a.w;
        dst[4] = b.x; dst[5] = b.y; dst[6] = b.z; dst[7] = b.w;
    }
}

/* act(g) of a GLU (backend.h's glu contract): silu, or gelu with the tanh approximation. */
__device__ __forceinline__ float glu_act(float g, int act)
{
    if (act == ACT_SILU) return g / (1.0f + expf(-g));
    const float k0 = 0.7978845608028654f;   // sqrt(2 / pi)
    return 0.5f * g * (1.0f + tanhf(k0 * (g + 0.044715f * g * g * g)));
}

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* a[i] of a kernel parameter's array without a dynamic index into the parameter space (which would
 * copy the whole struct to local memory in every thread): the segments of a fused GEMV launch. */
template <typename P, int N>
__device__ __forceinline__ P seg_pick(const P (&a)[N], int i)
{
    P v = a[0];
#pragma unroll
    for (int j = 1; j < N; j++)
        if (i == j) v = a[j];
    return v;
}

/* Programmatic dependent launch (Hopper): a kernel launched with launch_pdl may start while the
 * kernel before it is finishing; it must call pdl_wait() before reading anything that kernel
 * wrote (pdl_wait returns once that grid has completed and its writes are visible), and must read
 * such data with ordinary loads, never __ldg / ld.global.nc: the non-coherent path assumes the data
 * is constant for the reader's whole lifetime, which overlaps the writer's (measured: __ldg of x
 * made greedy outputs change run to run). Kernels that
 * usually precede one call pdl_trigger() early so the dependent's blocks can take SMs as theirs
 * drain. Both are no-ops before sm_90, and launch_pdl launches normally there. */
__device__ __forceinline__ void pdl_wait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

template <typename... KArgs, typename... Args>
static void launch_pdl_smem(struct cuda_backend *cb, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem,
                            Args... args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = cb->stream;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = cb->pdl ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
}

template <typename... KArgs, typename... Args>
static void launch_pdl(struct cuda_backend *cb, void (*kernel)(KArgs...), dim3 grid, dim3 block, Args... args)
{
    launch_pdl_smem(cb, kernel, grid, block, 0, args...);
}

/* Ops implemented in the other .cu files, wired into the vtable in backend_cuda.cu. */
void cuda_embed(struct backend *, struct tensor *, const struct tensor *, const struct batch_meta *, float);
void cuda_rmsnorm(struct backend *, struct tensor *, const struct tensor *, const struct tensor *, float, float);
void cuda_rope(struct backend *, struct tensor *, int, const struct tensor *, const struct rope_params *, const struct batch_meta *);
void cuda_kv_write(struct backend *, struct kv_layer *, const struct tensor *, const struct tensor *, const struct batch_meta *);
void cuda_qk_rope_kv(struct backend *, struct tensor *, struct tensor *, const struct tensor *, const struct tensor *,
                     const struct tensor *, float, float, int, int, const struct tensor *, const struct rope_params *,
                     struct kv_layer *, const struct batch_meta *);
void cuda_matmul_glu(struct backend *, struct tensor *, struct tensor *, struct tensor *, const struct tensor *,
                     const struct tensor *, float, float, const struct tensor *, const struct tensor *, enum act);
void cuda_glu(struct backend *, struct tensor *, const struct tensor *, const struct tensor *, enum act);
void cuda_add(struct backend *, struct tensor *, const struct tensor *, const struct tensor *);
void cuda_softcap(struct backend *, struct tensor *, float);
void cuda_argmax(struct backend *, int32_t *, const struct tensor *);
void cuda_logits_mask(struct backend *, struct tensor *, int, const int32_t *, const uint32_t *);
void cuda_sample_cands(struct backend *, const struct tensor *, int, const int32_t *, const float *, int, int32_t *,
                       float *, double *);
void cuda_matmul(struct backend *, struct tensor *, const struct tensor *, const struct tensor *, const struct tensor *);
void cuda_matmul_n(struct backend *, int, struct tensor *const *, const struct tensor *, const struct tensor *const *,
                   const struct tensor *const *);
void cuda_matmul_add(struct backend *, struct tensor *, const struct tensor *, const struct tensor *);
void cuda_norm_matmul_n(struct backend *, int, struct tensor *const *, struct tensor *, const struct tensor *,
                        const struct tensor *, float, float, const struct tensor *const *, const struct tensor *const *);
void cuda_matmul_rows(struct backend *, struct tensor *, const struct tensor *, const struct tensor *, const struct batch_meta *);
void cuda_attention(struct backend *, struct tensor *, const struct tensor *, const struct kv_layer *,
                    const struct attn_params *, const struct batch_meta *);
void cuda_moe_route(struct backend *, struct tensor *, struct tensor *, const struct tensor *, int, bool);
void cuda_moe_ffn(struct backend *, struct tensor *, const struct tensor *, const struct tensor *, const struct tensor *,
                  const struct tensor *, const struct tensor *, const struct tensor *, int, enum act);
void cuda_norm_moe_route(struct backend *, struct tensor *, struct tensor *, struct tensor *, struct tensor *,
                         const struct tensor *, const struct tensor *, float, float, const struct tensor *, int, bool);
void cuda_moe_ffn_add(struct backend *, struct tensor *, const struct tensor *, const struct tensor *,
                      const struct tensor *, const struct tensor *, const struct tensor *, const struct tensor *, int,
                      enum act);
void cuda_fill_synthetic(struct backend *, struct tensor *, uint64_t, float, float);
void cuda_gdn_conv(struct backend *, struct tensor *, const struct tensor *, const struct tensor *,
                   struct gdn_state_layer *, struct gdn_state_layer *, const struct batch_meta *);
void cuda_gdn_recurrent(struct backend *, struct tensor *, const struct tensor *, const struct tensor *,
                        const struct tensor *, const struct tensor *, const struct tensor *, const struct tensor *,
                        const struct tensor *, struct gdn_state_layer *, struct gdn_state_layer *,
                        const struct gdn_params *, const struct batch_meta *);
void cuda_rmsnorm_gated(struct backend *, struct tensor *, const struct tensor *, const struct tensor *,
                        const struct tensor *, float);
void cuda_sigmoid_mul(struct backend *, struct tensor *, const struct tensor *, const struct tensor *);

/* ==== MLX-quantized weights (qmatmul.cu) ==== */
#define QGEMV_MAX_N 8   // rows of x one k_qgemv launch takes
enum qscale_dtype { QSCALE_F32, QSCALE_F16, QSCALE_BF16, QSCALE_E8M0, QSCALE_E4M3 };
/* A quantized matrix's device arrays (tensor/qweight.h layout). */
struct qmat {
    const uint32_t *w;        // [rows, k * bits / 32] packed codes
    const void     *scales;   // [rows, n_groups]
    const void     *biases;   // affine: as scales; NULL otherwise
};
/* What one launch's matrices share. */
struct qfmt {
    int mode, bits, group_size;   // enum qmode
    int k, n_groups;              // inputs per row, groups per row
    int sdt;                      // enum qscale_dtype of scales and biases
};
struct qmat cuda_qmat_of(const struct tensor *w);   // CHECKs w is DTYPE_QMLX on the device
struct qfmt cuda_qfmt_of(const struct tensor *w);
/* Whether k_qgemv takes w with x (inputs a multiple of 32, 16-byte aligned operands). */
bool cuda_qgemv_fits(const struct tensor *w, const float *d_x);
/* out[n, m] (+)= x[n, k] @ w^T (+ bias): the decode GEMV, QGEMV_MAX_N rows per launch. */
void cuda_qgemv(struct cuda_backend *cb, float *d_out, const float *d_x, int n, const struct tensor *w,
                const struct tensor *bias, bool accumulate);
#define QGEMV_MAX_SEGS 3   // matrices sharing x in one launch (q/k/v)
struct qsegs {
    struct qmat  qm[QGEMV_MAX_SEGS];
    float       *out[QGEMV_MAX_SEGS];
    const void  *bias[QGEMV_MAX_SEGS];   // or NULL
    int          m[QGEMV_MAX_SEGS];      // rows
    int          blk0[QGEMV_MAX_SEGS];   // first block of each matrix
    int          n_segs, bias_dt;
    bool         accumulate;
};
/* Whether cuda_qgemv_multi takes these (all quantized in one format, k_qgemv's operands). */
bool cuda_qgemv_fits_multi(int n_w, const struct tensor *const *ws, const struct tensor *const *biases, const float *d_x);
/* outs[i][n, m_i] (+)= x @ ws[i]^T (+ biases[i]) for n_w <= QGEMV_MAX_SEGS matrices in one launch per 8 rows. */
void cuda_qgemv_multi(struct cuda_backend *cb, int n_w, float *const *d_outs, const float *d_x, int n,
                      const struct tensor *const *ws, const struct tensor *const *biases, bool accumulate,
                      const struct tensor *norm_w, float eps, float w_offset);
/* Whether the two launchers here fuse the RMSNorm of x (norm_w != NULL: x taken as rmsnorm(x;
 * norm_w, eps, w_offset)): batch 1, a 16-byte aligned bf16 norm weight of k inputs. */
bool cuda_qgemv_norm_fits(const struct tensor *norm_w, int k, int n);
/* Whether cuda_qgemv_glu takes gate and up (one mode and width, k_qgemv's operands, same rows). */
bool cuda_qgemv_glu_fits(const struct tensor *gate, const struct tensor *up, const float *d_x);
/* out[n, m] = act(x @ gate^T) * (x @ up^T), one launch per 8 rows (norm_w: as cuda_qgemv_multi). */
void cuda_qgemv_glu(struct cuda_backend *cb, float *d_out, const float *d_x, int n, const struct tensor *gate,
                    const struct tensor *up, enum act act, const struct tensor *norm_w, float eps, float w_offset);
/* out[slot, row] = act(gate . x) * (up . x) over device tables of gate and up experts (MoE decode). */
void cuda_moe_qgate_up(struct cuda_backend *cb, float *d_out, const float *d_x, const struct qmat *d_tab_g,
                       const struct qmat *d_tab_u, const struct tensor *g0, const struct tensor *u0, const int32_t *d_ids,
                       int n_slots, int x_div, enum act act);
/* dst[rows, k] (dtype dt: f32, f16, bf16) = rows row0 .. row0 + rows - 1 of w dequantized. */
void cuda_qdequant(struct cuda_backend *cb, void *d_dst, enum dtype dt, const struct tensor *w, int64_t row0, int64_t rows);
void cuda_qembed(struct cuda_backend *cb, float *d_out, const struct tensor *table, int n_tok, const int32_t *d_ids,
                 float scale);
/* out[slot, row] = W_{ids[slot]}[row] . x[slot / x_div] over a device table of experts of w0's format. */
void cuda_moe_qgemv(struct cuda_backend *cb, float *d_out, const float *d_x, const struct qmat *d_tab,
                    const struct tensor *w0, const int32_t *d_ids, int n_slots, int x_div);

/* out[n, m] = x[n, k] @ w^T with x given as rows of a device f32 array (used by MoE too). */
void cuda_linear(struct cuda_backend *cb, float *d_out, const float *d_x, int n, const struct tensor *w);

#endif
