/* cpu: internals shared by the files of the cpu backend (not a public header).
 *
 * struct cpu is the backend's state: the thread pool, the kernel family picked at creation and
 * grow-only scratch (per thread, and one shared area for gathers). Scratch grows on the first
 * steps and is then reused, so steady-state steps allocate nothing.
 *
 * Files: cpu.c (creation, scratch, row-wise ops), cpu_matmul.c (matmul, matmul_n, matmul_rows,
 * moe_ffn), cpu_attn.c (rope, kv_write, attention), cpu_gdn.c (Gated DeltaNet), cpu_weights.c
 * (weight_prepare, buffer_new: huge-page memory), kern*.c (SIMD kernels, see kern.h), membw.c (bandwidth
 * probe); buffers, argmax and argument checks come from backend/host.c (shared with ref).
 *
 *     struct cpu *c = be->impl;
 *     float *tmp = cpu_thread_scratch(c, thread, n_floats);   // inside a threadpool task
 */
#ifndef CAIRN_BACKEND_CPU_CPU_H
#define CAIRN_BACKEND_CPU_CPU_H

#include "backend/backend.h"
#include "backend/cpu/kbf16.h"
#include "backend/cpu/kern.h"
#include "backend/cpu/qdeq.h"
#include "backend/cpu/qint.h"
#include "base/threadpool.h"

struct cpu_scratch {
    float  *p;
    size_t  n;           // floats allocated
    char    pad[48];     // keeps neighbours on separate cache lines
};

struct cpu_weights;

struct cpu {
    struct backend         be;
    struct threadpool     *tp;
    int                    n_threads;
    const struct cpu_kern *kf;
    const struct cpu_bf16_kern *kb;    // bf16 weights: bf16 dot tiles (kbf16.h); NULL: f32 tiles
    struct cpu_scratch    *tscratch;   // [n_threads]: per-thread scratch
    struct cpu_scratch     shared;     // gathers (matmul_rows, moe_ffn), used outside tasks
    struct cpu_scratch     xpack;      // cpu_gemm's padded copy of x
    struct cpu_scratch     xpack16;    // cpu_gemm's copy of x rounded to bf16
    struct cpu_scratch     xq;         // cpu_gemm's x prepared for the integer kernels (qint.h)
    struct cpu_weights    *weights;    // huge-page copies of the weights (cpu_weights.c), or NULL
    cpu_qdeq_fn            qdeq;       // dequantizes a row of an MLX-quantized weight (qdeq.h)
    cpu_qgemv_fn           qgemv;      // fused decode GEMV on MLX-quantized weights (qdeq.h)
    cpu_qint_fn            qint;       // integer kernel of affine 4- / 8-bit weights (qint.h); NULL: precise
    cpu_qint_quantize_fn   qint_x;     // its x preparation
};

/* Scratch of at least n floats (64-byte aligned), owned by `thread`; contents not kept. */
float *cpu_thread_scratch(struct cpu *c, int thread, size_t n);
/* Shared scratch of at least n floats; only the engine thread, outside threadpool tasks. */
float *cpu_shared_scratch(struct cpu *c, size_t n);
/* cpu_gemm's own scratch (so callers may pass x in the shared scratch). */
float *cpu_xpack_scratch(struct cpu *c, size_t n);
float *cpu_xpack16_scratch(struct cpu *c, size_t n);
float *cpu_xq_scratch(struct cpu *c, size_t n);

/* out[n, m] (row stride ldo floats) = x[n, k] (row stride ldx floats) @ w^T (+ bias), w any float
 * dtype [m, k] or MLX-quantized. Parallel over weight rows; batch-invariant (kern.h). */
void cpu_gemm(struct cpu *c, float *out, int64_t ldo, const float *x, int64_t ldx, int64_t n,
              const struct tensor *w, const struct tensor *bias);

/* The same for up to 3 weight matrices sharing x (one fork-join); biases may be NULL. */
void cpu_gemm_n(struct cpu *c, int n_mats, float *const *outs, const int64_t *ldos, const float *x, int64_t ldx,
                int64_t n, const struct tensor *const *ws, const struct tensor *const *biases);

void cpu_matmul(struct backend *be, struct tensor *out, const struct tensor *x,
                const struct tensor *w, const struct tensor *bias);
void cpu_matmul_n(struct backend *be, int n_mats, struct tensor *const *outs, const struct tensor *x,
                  const struct tensor *const *ws, const struct tensor *const *biases);
void cpu_matmul_rows(struct backend *be, struct tensor *out, const struct tensor *x,
                     const struct tensor *w, const struct batch_meta *meta);
void cpu_moe_ffn(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *ids,
                 const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                 const struct tensor *down, int n_experts, enum act act);
void cpu_rope(struct backend *be, struct tensor *x, int n_heads, const struct tensor *inv_freq,
              const struct rope_params *rp, const struct batch_meta *meta);
void cpu_kv_write(struct backend *be, struct kv_layer *kv, const struct tensor *k,
                  const struct tensor *v, const struct batch_meta *meta);
void cpu_attention(struct backend *be, struct tensor *out, const struct tensor *q,
                   const struct kv_layer *kv, const struct attn_params *ap, const struct batch_meta *meta);

/* weight_prepare: copies w into huge-page memory the backend owns (see cpu_weights.c). */
enum status cpu_weight_prepare(struct backend *be, struct tensor *w);
void        cpu_weights_free(struct cpu_weights *cw);
/* buffer_new / buffer_free: host buffers, those of 2 MiB or more on huge pages and touched (cpu_weights.c). */
enum status cpu_buffer_new(struct backend *be, size_t bytes, struct buffer **out);
void        cpu_buffer_free(struct backend *be, struct buffer *buf);

/* act(g) * u over n contiguous floats (shared by glu and moe_ffn). */
/* Gated DeltaNet ops (cpu_gdn.c). */
void cpu_gdn_conv(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *w,
                  struct gdn_state_layer *st, struct gdn_state_layer *snap, const struct batch_meta *meta);
void cpu_gdn_recurrent(struct backend *be, struct tensor *out, const struct tensor *q, const struct tensor *k,
                       const struct tensor *v, const struct tensor *a, const struct tensor *b,
                       const struct tensor *a_log, const struct tensor *dt_bias, struct gdn_state_layer *st,
                       struct gdn_state_layer *snap, const struct gdn_params *p, const struct batch_meta *meta);
void cpu_rmsnorm_gated(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *z,
                       const struct tensor *w, float eps);
void cpu_sigmoid_mul(struct backend *be, struct tensor *out, const struct tensor *x, const struct tensor *g);

void cpu_glu_row(struct cpu *c, float *out, const float *g, const float *u, int64_t n, enum act act);

#endif
