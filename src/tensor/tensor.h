/* tensor: a typed, strided view over bytes that a buffer owns.
 *
 * A tensor never owns memory. Its buffer does: host memory, an mmapped file region or device
 * memory, as the buffer's kind says. ne[0] is the innermost (contiguous) dimension; activations
 * are row-major [rows, cols] with ne[0] = cols. Weights follow PyTorch's nn.Linear layout
 * [out_features, in_features], so ne[0] = in_features.
 *
 *     struct tensor w = tensor_2d(DTYPE_BF16, in, out, buf, off);   // w: [out, in]
 *     float *x = tensor_data(&t);                                    // host buffers only
 *
 * MLX-quantized weights are tensors too (dtype DTYPE_QMLX, logical ne, packed bytes, `q` set);
 * tensor/qweight.h says how they are laid out.
 */
#ifndef CAIRN_TENSOR_TENSOR_H
#define CAIRN_TENSOR_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor/dtype.h"

struct backend;
struct qweight;

enum buf_kind {
    BUF_HOST = 0,    // malloc'd host memory
    BUF_MMAP,        // read-only mapping of a file (weights)
    BUF_DEVICE,      // accelerator memory (data is a device pointer)
};

struct buffer {
    enum buf_kind   kind;
    void           *data;     // host or device address of byte 0
    size_t          bytes;
    struct backend *owner;    // backend that allocated it; NULL for host/mmap buffers
};

struct tensor {
    enum dtype     dtype;
    int64_t        ne[4];     // elements per dim, ne[0] innermost
    size_t         nb[4];     // byte strides; nb[0] = dtype_size
    struct buffer *buf;       // borrowed
    size_t         offset;    // bytes from buf->data
    const char    *name;      // debug only
    const struct qweight *q;  // DTYPE_QMLX only: mode, bits, group size, scales, biases (tensor/qweight.h)
};

struct tensor tensor_make(enum dtype dt, int n_dims, const int64_t *ne, struct buffer *buf, size_t offset);
struct tensor tensor_1d(enum dtype dt, int64_t n0, struct buffer *buf, size_t offset);
struct tensor tensor_2d(enum dtype dt, int64_t n0, int64_t n1, struct buffer *buf, size_t offset);
struct tensor tensor_3d(enum dtype dt, int64_t n0, int64_t n1, int64_t n2, struct buffer *buf, size_t offset);

int64_t tensor_nelem(const struct tensor *t);
size_t  tensor_bytes(const struct tensor *t);         // nelem * dtype size (contiguous tensors); DTYPE_QMLX: packed words
int64_t tensor_rows(const struct tensor *t);          // ne[1] * ne[2] * ne[3]
bool    tensor_is_contiguous(const struct tensor *t);
/* A view of rows [row0, row0 + n_rows) of a contiguous tensor, flattened to 2-D [n_rows, ne[0]]. */
struct tensor tensor_rows_view(const struct tensor *t, int64_t row0, int64_t n_rows);
/* The same bytes with a new shape (same element count, contiguous). */
struct tensor tensor_reshape(const struct tensor *t, int n_dims, const int64_t *ne);

static inline void *tensor_data(const struct tensor *t) { return (char *)t->buf->data + t->offset; }

#endif
