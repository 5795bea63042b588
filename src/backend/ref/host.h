/* host: helpers shared by the host-memory backends (ref and cpu).
 *
 * Owns the host buffer functions (64-byte aligned malloc'd memory, memcpy upload/download) and
 * small accessors for tensors in host memory: the address of a row of a tensor flattened to
 * [rows, ne[0]] and the conversion of one element of any float dtype to f32. Called by
 * backend/ref/ref.c and the backend/cpu files only. No state; thread-safe.
 *
 *     const float *xr = host_row(x, r);              // row r of x, ne[0] contiguous elements
 *     float w = host_elem_f32(w_t->dtype, wr, k);     // element k of a bf16/f16/f32 row
 */
#ifndef CAIRN_BACKEND_REF_HOST_H
#define CAIRN_BACKEND_REF_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "base/log.h"

enum status host_buffer_new(struct backend *be, size_t bytes, struct buffer **out);
void        host_buffer_free(struct backend *be, struct buffer *buf);
void        host_upload(struct backend *be, struct tensor *t, const void *src, size_t bytes);
void        host_download(struct backend *be, void *dst, const struct tensor *t, size_t bytes);

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

#endif
