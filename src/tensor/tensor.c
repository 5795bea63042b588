#include "tensor/tensor.h"

#include "base/log.h"

struct tensor tensor_make(enum dtype dt, int n_dims, const int64_t *ne, struct buffer *buf, size_t offset)
{
    CHECK(n_dims >= 1 && n_dims <= 4, "bad n_dims %d", n_dims);
    struct tensor t = { .dtype = dt, .buf = buf, .offset = offset };
    for (int i = 0; i < 4; i++) t.ne[i] = i < n_dims ? ne[i] : 1;
    t.nb[0] = dtype_size(dt);
    for (int i = 1; i < 4; i++) t.nb[i] = t.nb[i - 1] * (size_t)t.ne[i - 1];
    return t;
}

struct tensor tensor_1d(enum dtype dt, int64_t n0, struct buffer *buf, size_t offset)
{
    return tensor_make(dt, 1, (int64_t[]){ n0 }, buf, offset);
}

struct tensor tensor_2d(enum dtype dt, int64_t n0, int64_t n1, struct buffer *buf, size_t offset)
{
    return tensor_make(dt, 2, (int64_t[]){ n0, n1 }, buf, offset);
}

struct tensor tensor_3d(enum dtype dt, int64_t n0, int64_t n1, int64_t n2, struct buffer *buf, size_t offset)
{
    return tensor_make(dt, 3, (int64_t[]){ n0, n1, n2 }, buf, offset);
}

int64_t tensor_nelem(const struct tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }
size_t tensor_bytes(const struct tensor *t)
{
    if (t->dtype == DTYPE_QMLX) return (size_t)tensor_rows(t) * t->nb[1];   // the packed words only
    return (size_t)tensor_nelem(t) * dtype_size(t->dtype);
}
int64_t tensor_rows(const struct tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

bool tensor_is_contiguous(const struct tensor *t)
{
    size_t s = dtype_size(t->dtype);
    for (int i = 0; i < 4; i++) {
        if (t->nb[i] != s) return false;
        s *= (size_t)t->ne[i];
    }
    return true;
}

struct tensor tensor_rows_view(const struct tensor *t, int64_t row0, int64_t n_rows)
{
    CHECK(tensor_is_contiguous(t), "rows view of non-contiguous tensor %s", t->name ? t->name : "?");
    CHECK(row0 >= 0 && row0 + n_rows <= tensor_rows(t), "rows [%lld, +%lld) out of %lld",
          (long long)row0, (long long)n_rows, (long long)tensor_rows(t));
    struct tensor v = tensor_2d(t->dtype, t->ne[0], n_rows, t->buf, t->offset + (size_t)row0 * t->nb[1]);
    v.name = t->name;
    return v;
}

struct tensor tensor_reshape(const struct tensor *t, int n_dims, const int64_t *ne)
{
    CHECK(tensor_is_contiguous(t), "reshape of non-contiguous tensor");
    struct tensor v = tensor_make(t->dtype, n_dims, ne, t->buf, t->offset);
    CHECK(tensor_nelem(&v) == tensor_nelem(t), "reshape changes element count");
    v.name = t->name;
    return v;
}
