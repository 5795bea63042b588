/* host: buffer functions and argument checks of the host-memory backends (see host.h). */
#include "backend/host.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/mem.h"
#include "base/row_max.h"
#include "base/sample_prob.h"

enum status host_buffer_new(struct backend *be, size_t bytes, struct buffer **out)
{
    void *data = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&data, 64, rounded ? rounded : 64) != 0) {
        LOG_ERR("host buffer: cannot allocate %zu bytes", bytes);
        return STATUS_ENOMEM;
    }
    *out = host_buffer_wrap(be, data, bytes);
    return STATUS_OK;
}

struct buffer *host_buffer_wrap(struct backend *be, void *data, size_t bytes)
{
    struct buffer *b = xcalloc(1, sizeof *b);
    b->kind = BUF_HOST;
    b->data = data;
    b->bytes = bytes;
    b->owner = be;
    return b;
}

void host_buffer_free(struct backend *be, struct buffer *buf)
{
    (void)be;
    if (!buf) return;
    free(buf->data);
    free(buf);
}

void host_upload(struct backend *be, struct tensor *t, const void *src, size_t bytes)
{
    (void)be;
    CHECK(t->offset + bytes <= t->buf->bytes, "upload of %zu bytes past buffer end", bytes);
    memcpy(tensor_data(t), src, bytes);
}

void host_download(struct backend *be, void *dst, const struct tensor *t, size_t bytes)
{
    (void)be;
    CHECK(t->offset + bytes <= t->buf->bytes, "download of %zu bytes past buffer end", bytes);
    memcpy(dst, tensor_data(t), bytes);
}

void host_copy(struct backend *be, struct tensor *dst, const struct tensor *src, size_t bytes)
{
    (void)be;
    CHECK(dst->offset + bytes <= dst->buf->bytes && src->offset + bytes <= src->buf->bytes,
          "copy of %zu bytes past buffer end", bytes);
    memcpy(tensor_data(dst), tensor_data(src), bytes);
}

void host_batch_begin(struct backend *be, const struct batch_meta *meta)
{
    (void)be;
    (void)meta;
}

enum status host_sync(struct backend *be)
{
    (void)be;
    return STATUS_OK;
}

/* The first index of the largest of l[0..n) (NaNs never win over numbers; every value NaN: the
 * last index, as one scan keeping the first strict maximum gives). */
static int32_t host_argmax_row(const float *l, int64_t n)
{
    int64_t i = row_argmax(l, n);
    return (int32_t)(i < 0 ? n - 1 : i);
}

void host_argmax(struct backend *be, int32_t *out_ids, const struct tensor *logits)
{
    (void)be;
    host_check_f32(logits, "argmax logits");
    for (int64_t r = 0; r < tensor_rows(logits); r++) out_ids[r] = host_argmax_row(host_row(logits, r), logits->ne[0]);
}

void host_logits_mask(struct backend *be, struct tensor *logits, int n, const int32_t *rows, const uint32_t *words)
{
    (void)be;
    host_check_f32(logits, "logits_mask logits");
    const int64_t n_ids = logits->ne[0], n_words = (n_ids + 31) / 32;
    for (int i = 0; i < n; i++) {
        CHECK(rows[i] >= 0 && rows[i] < tensor_rows(logits), "logits_mask: row %d of %lld", rows[i],
              (long long)tensor_rows(logits));
        float *l = host_row(logits, rows[i]);
        const uint32_t *w = words + (size_t)i * (size_t)n_words;
        for (int64_t k = 0; k < n_words; k++) {
            if (w[k] == ~0u) continue;   // all 32 allowed: the common case of free rows
            int64_t end = k * 32 + 32 < n_ids ? k * 32 + 32 : n_ids;
            for (int64_t j = k * 32; j < end; j++)
                if (!(w[k] >> (j & 31) & 1)) l[j] = -INFINITY;
        }
    }
}

/* The sample_cands op as its contract reads: an insertion into the k best so far, then the sum in
 * id order. A plain loop, the oracle for the device kernel. */
void host_sample_cands(struct backend *be, const struct tensor *logits, int n, const int32_t *rows, const float *inv_t,
                       int k, int32_t *ids, float *vals, double *sums)
{
    (void)be;
    host_check_f32(logits, "sample_cands logits");
    CHECK(k >= 1 && k <= BACKEND_CANDS_MAX, "sample_cands: k = %d", k);
    const int64_t n_ids = logits->ne[0];
    for (int i = 0; i < n; i++) {
        CHECK(rows[i] >= 0 && rows[i] < tensor_rows(logits), "sample_cands: row %d of %lld", rows[i],
              (long long)tensor_rows(logits));
        const float *l = host_row(logits, rows[i]);
        int32_t *id = ids + (size_t)i * (size_t)k;
        float *v = vals + (size_t)i * (size_t)k;
        for (int j = 0; j < k; j++) {
            id[j] = -1;
            v[j] = -INFINITY;
        }
        int have = 0;
        for (int64_t c = 0; c < n_ids; c++) {
            float x = l[c] != l[c] ? -INFINITY : l[c] == 0.0f ? 0.0f : l[c];
            if (have == k && !(x > v[k - 1])) continue;   // ties keep the lower id, seen first
            int j = have < k ? have++ : k - 1;
            for (; j > 0 && x > v[j - 1]; j--) {
                v[j] = v[j - 1];
                id[j] = id[j - 1];
            }
            v[j] = x;
            id[j] = (int32_t)c;
        }
        double sum = 0.0;
        if (v[0] > -INFINITY) {
            float mx = v[0] * inv_t[i];
            for (int64_t c = 0; c < n_ids; c++) sum += (double)sample_prob(l[c], inv_t[i], mx);
        }
        sums[i] = sum;
    }
}

/* ==== Argument checks ==== */

void host_check_embed(const struct tensor *out, const struct tensor *table, const struct batch_meta *meta)
{
    host_check_f32(out, "embed out");
    CHECK(out->ne[0] == table->ne[0] && tensor_rows(out) >= meta->n_tok, "embed: out shape");
    for (int i = 0; i < meta->n_tok; i++)
        CHECK(meta->tok_id[i] >= 0 && meta->tok_id[i] < tensor_rows(table), "embed: token id %d out of [0, %lld)",
              meta->tok_id[i], (long long)tensor_rows(table));
}

void host_check_rmsnorm(const struct tensor *out, const struct tensor *x, const struct tensor *w)
{
    host_check_f32(out, "rmsnorm out");
    host_check_f32(x, "rmsnorm x");
    CHECK(w->ne[0] == x->ne[0] && out->ne[0] == x->ne[0] && tensor_rows(out) >= tensor_rows(x), "rmsnorm: shapes");
}

void host_check_matmul(const struct tensor *out, const struct tensor *x, const struct tensor *w,
                       const struct tensor *bias)
{
    host_check_f32(out, "matmul out");
    host_check_f32(x, "matmul x");
    int64_t m = tensor_rows(w);
    CHECK(w->ne[0] == x->ne[0], "matmul: x has %lld cols, w has %lld", (long long)x->ne[0], (long long)w->ne[0]);
    CHECK(out->ne[0] == m && tensor_rows(out) >= tensor_rows(x), "matmul: out shape");
    CHECK(!bias || bias->ne[0] >= m, "matmul: bias shape");
}

void host_check_matmul_rows(const struct tensor *out, const struct tensor *x, const struct tensor *w,
                            const struct batch_meta *meta)
{
    host_check_f32(out, "matmul_rows out");
    host_check_f32(x, "matmul_rows x");
    CHECK(w->ne[0] == x->ne[0] && out->ne[0] == tensor_rows(w) && tensor_rows(out) >= meta->n_out,
          "matmul_rows: shapes");
    for (int i = 0; i < meta->n_out; i++)
        CHECK(meta->out_tok[i] >= 0 && meta->out_tok[i] < tensor_rows(x), "matmul_rows: out_tok %d out of range",
              meta->out_tok[i]);
}

void host_check_kv_write(const struct kv_layer *kv, const struct tensor *k, const struct tensor *v,
                         const struct batch_meta *meta)
{
    host_check_f32(k, "kv_write k");
    host_check_f32(v, "kv_write v");
    int64_t row = kv->k.ne[0];
    CHECK(k->ne[0] == row && v->ne[0] == row && kv->v.ne[0] == row && kv->k.dtype == kv->v.dtype, "kv_write: rows");
    for (int t = 0; t < meta->n_tok; t++)
        CHECK(meta->tok_slot[t] >= 0 && meta->tok_slot[t] < tensor_rows(&kv->k), "kv_write: slot %lld out of range",
              (long long)meta->tok_slot[t]);
}

void host_check_rope(const struct tensor *x, int n_heads, const struct tensor *inv_freq, const struct rope_params *rp)
{
    host_check_f32(x, "rope x");
    host_check_f32(inv_freq, "rope inv_freq");
    CHECK(rp->rot_dim % 2 == 0 && rp->rot_dim <= rp->head_dim, "rope: rot_dim %d, head_dim %d", rp->rot_dim,
          rp->head_dim);
    CHECK(x->ne[0] == (int64_t)n_heads * rp->head_dim, "rope: x row %lld != %d heads * %d", (long long)x->ne[0],
          n_heads, rp->head_dim);
    CHECK(inv_freq->ne[0] >= rp->rot_dim / 2, "rope: inv_freq too short");
}

void host_check_attention(const struct tensor *out, const struct tensor *q, const struct kv_layer *kv,
                          const struct attn_params *ap)
{
    host_check_f32(out, "attention out");
    host_check_f32(q, "attention q");
    CHECK(ap->n_kv_heads > 0 && ap->n_heads % ap->n_kv_heads == 0, "attention: %d heads, %d kv heads", ap->n_heads,
          ap->n_kv_heads);
    CHECK(q->ne[0] == (int64_t)ap->n_heads * ap->head_dim && out->ne[0] == q->ne[0], "attention: q/out rows");
    CHECK(kv->k.ne[0] == (int64_t)ap->n_kv_heads * ap->head_dim && kv->v.ne[0] == kv->k.ne[0] &&
          kv->k.dtype == kv->v.dtype, "attention: kv rows");
}

void host_check_elementwise(const char *op, const struct tensor *out, const struct tensor *a, const struct tensor *b)
{
    CHECK(out->dtype == DTYPE_F32 && a->dtype == DTYPE_F32 && b->dtype == DTYPE_F32, "%s: f32 only", op);
    int64_t d = a->ne[0], rows = tensor_rows(a);
    CHECK(b->ne[0] == d && out->ne[0] == d && tensor_rows(b) == rows && tensor_rows(out) >= rows, "%s: shapes", op);
}

void host_check_moe_route(const struct tensor *ids, const struct tensor *weights, const struct tensor *logits, int k)
{
    host_check_f32(logits, "moe_route logits");
    host_check_f32(weights, "moe_route weights");
    CHECK(ids->dtype == DTYPE_I32, "moe_route: ids must be i32");
    CHECK(k >= 1 && k <= logits->ne[0] && ids->ne[0] == k && weights->ne[0] == k, "moe_route: k = %d", k);
}

void host_check_moe_ffn(const struct tensor *out, const struct tensor *x, const struct tensor *ids,
                        const struct tensor *weights, const struct tensor *gate, const struct tensor *up,
                        const struct tensor *down, int n_experts)
{
    host_check_f32(out, "moe_ffn out");
    host_check_f32(x, "moe_ffn x");
    CHECK(ids->dtype == DTYPE_I32 && weights->dtype == DTYPE_F32, "moe_ffn: ids i32, weights f32");
    int64_t d = x->ne[0], n = tensor_rows(x), k = ids->ne[0], f = host_moe_ffn_size(gate, n_experts);
    CHECK(out->ne[0] == d && tensor_rows(out) >= n && tensor_rows(ids) >= n && weights->ne[0] == k &&
          tensor_rows(weights) >= n, "moe_ffn: shapes");
    for (int e = 0; e < n_experts; e++)   // absent experts: another expert-parallel rank's
        CHECK(!gate[e].buf || (gate[e].ne[0] == d && up[e].ne[0] == d && down[e].ne[0] == f &&
                               tensor_rows(&down[e]) == d && tensor_rows(&gate[e]) == f && tensor_rows(&up[e]) == f),
              "moe_ffn: expert %d shapes", e);
    for (int64_t r = 0; r < n; r++) {
        const int32_t *id = host_row(ids, r);
        for (int64_t j = 0; j < k; j++) CHECK(id[j] >= 0 && id[j] < n_experts, "moe_ffn: expert id %d", id[j]);
    }
}
