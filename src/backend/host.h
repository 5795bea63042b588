/* host: helpers shared by the host-memory backends (ref and cpu).
 *
 * Owns the host buffer functions (64-byte aligned malloc'd memory, memcpy upload/download), small
 * accessors for tensors in host memory (the address of a row of a tensor flattened to
 * [rows, ne[0]], one element of any float dtype as f32 and back) and the argument checks both
 * backends run before an op (the dtypes and shapes of backend.h's contracts; a failure is the
 * caller's bug, so they CHECK). The ops themselves stay in each backend: ref's plain loops are the
 * oracle cpu is tested against. Called by backend/ref/ref.c and the backend/cpu files only. No
 * state; thread-safe.
 *
 *     host_check_rmsnorm(out, x, w);                 // aborts with the op's name on a bad shape
 *     const float *xr = host_row(x, r);              // row r of x, ne[0] contiguous elements
 *     float w = host_elem_f32(w_t->dtype, wr, k);     // element k of a bf16/f16/f32 row
 */
#ifndef CAIRN_BACKEND_HOST_H
#define CAIRN_BACKEND_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "base/log.h"

enum status host_buffer_new(struct backend *be, size_t bytes, struct buffer **out);
/* A host buffer of be over `bytes` at data (the caller's allocation, freed by the caller's own free). */
struct buffer *host_buffer_wrap(struct backend *be, void *data, size_t bytes);
void        host_buffer_free(struct backend *be, struct buffer *buf);
void        host_upload(struct backend *be, struct tensor *t, const void *src, size_t bytes);
void        host_download(struct backend *be, void *dst, const struct tensor *t, size_t bytes);
void        host_copy(struct backend *be, struct tensor *dst, const struct tensor *src, size_t bytes);
/* Host ops run synchronously on the calling thread: nothing to stage, nothing to wait for. */
void        host_batch_begin(struct backend *be, const struct batch_meta *meta);
enum status host_sync(struct backend *be);
/* The argmax op (a plain loop: fast enough on any host backend). */
void        host_argmax(struct backend *be, int32_t *out_ids, const struct tensor *logits);
/* The sample_cands op (the oracle; ref has it, cpu samples on the host from the row). */
void        host_sample_cands(struct backend *be, const struct tensor *logits, int n, const int32_t *rows,
                              const float *inv_t, int k, int32_t *ids, float *vals, double *sums);
/* The logits_mask op: a loop over the masked rows (the logits are in host memory already). */
void        host_logits_mask(struct backend *be, struct tensor *logits, int n, const int32_t *rows,
                             const uint32_t *words);

/* Address of row r of t seen as [ne1 * ne2 * ne3, ne0]; elements of a row are contiguous. */
static inline void *host_row(const struct tensor *t, int64_t r)
{
    DCHECK(t->nb[0] == dtype_size(t->dtype), "tensor %s: strided rows", t->name ? t->name : "?");
    int64_t i1 = r % t->ne[1];
    int64_t rest = r / t->ne[1];
    int64_t i2 = rest % t->ne[2];
    int64_t i3 = rest / t->ne[2];
    return (char *)t->buf->data + t->offset + (size_t)i1 * t->nb[1] + (size_t)i2 * t->nb[2] +
           (size_t)i3 * t->nb[3];
}

/* Element i of a row of dtype dt (f32, f16, bf16, or f8e4m3 for KV caches) as f32 (exact). */
static inline float host_elem_f32(enum dtype dt, const void *row, int64_t i)
{
    switch (dt) {
    case DTYPE_F32: return ((const float *)row)[i];
    case DTYPE_BF16: return bf16_to_f32(((const uint16_t *)row)[i]);
    case DTYPE_F16: return f16_to_f32(((const uint16_t *)row)[i]);
    case DTYPE_F8E4M3: return e4m3_to_f32(((const uint8_t *)row)[i]);
    default: CHECK(0, "unsupported float dtype %s", dtype_name(dt));
    }
}

static inline void host_store_f32(enum dtype dt, void *row, int64_t i, float v)
{
    switch (dt) {
    case DTYPE_F32: ((float *)row)[i] = v; return;
    case DTYPE_BF16: ((uint16_t *)row)[i] = f32_to_bf16(v); return;
    case DTYPE_F16: ((uint16_t *)row)[i] = f32_to_f16(v); return;
    case DTYPE_F8E4M3: ((uint8_t *)row)[i] = f32_to_e4m3(v); return;
    default: CHECK(0, "unsupported float dtype %s", dtype_name(dt));
    }
}

/* Weight dtypes (f8e4m3 is a KV-cache type only). */
static inline int host_is_float(enum dtype dt)
{
    return dt == DTYPE_F32 || dt == DTYPE_F16 || dt == DTYPE_BF16;
}

/* ==== Argument checks ==== */

static inline void host_check_f32(const struct tensor *t, const char *what)
{
    CHECK(t->dtype == DTYPE_F32, "%s: expected f32, got %s", what, dtype_name(t->dtype));
}

/* Each checks its op's arguments as backend.h states them (token ids and KV slots included). */
void host_check_embed(const struct tensor *out, const struct tensor *table, const struct batch_meta *meta);
void host_check_rmsnorm(const struct tensor *out, const struct tensor *x, const struct tensor *w);
void host_check_matmul(const struct tensor *out, const struct tensor *x, const struct tensor *w,
                       const struct tensor *bias);
void host_check_matmul_rows(const struct tensor *out, const struct tensor *x, const struct tensor *w,
                            const struct batch_meta *meta);
void host_check_kv_write(const struct kv_layer *kv, const struct tensor *k, const struct tensor *v,
                         const struct batch_meta *meta);
void host_check_rope(const struct tensor *x, int n_heads, const struct tensor *inv_freq, const struct rope_params *rp);
void host_check_attention(const struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                          const struct attn_params *ap);
/* glu (a = gate, b = up) and add: f32 inputs of one shape, out at least as many rows. */
void host_check_elementwise(const char *op, const struct tensor *out, const struct tensor *a, const struct tensor *b);
void host_check_moe_route(const struct tensor *ids, const struct tensor *weights, const struct tensor *logits, int k);
void host_check_moe_ffn(const struct tensor *out, const struct tensor *x, const struct tensor *ids,
                        const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                        const struct tensor *down, int n_experts);
/* The experts' intermediate size: rows of the first present expert's gate (absent experts belong to
 * another expert-parallel rank). */
static inline int64_t host_moe_ffn_size(const struct tensor *gate, int n_experts)
{
    for (int e = 0; e < n_experts; e++)
        if (gate[e].buf) return tensor_rows(&gate[e]);
    return 0;
}

#endif
