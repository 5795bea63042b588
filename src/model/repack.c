/* repack: re-lays the hybrids' interleaved projections out into the row blocks forward.c reads
 * (contract in weights.h).
 *
 * Design note: transformers interleaves two projections in one Linear in two places: the gated
 * attention's q_proj ([q_h | gate_h] per head) and Qwen3-Next's in_proj_qkvz / in_proj_ba
 * (grouped by key head, qwen35-arch.md section 3.1). Splitting the rows once at load lets the
 * forward pass run plain matmuls into contiguous q, gate, [q | k | v], z, b and a, on every
 * backend, instead of strided views or per-step permutes. The cost is one host copy of those
 * matrices (the mmapped originals are then never touched).
 */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "model/weights.h"
#include "tensor/qweight.h"

struct block {
    int64_t src_row, dst_row, n_rows;
};

/* Row permutation as blocks: gated q_proj, head h: q rows and gate rows. */
static int q_gate_blocks(const struct hparams *hp, struct block *b)
{
    int64_t hd = hp->head_dim, nh = hp->n_heads;
    int n = 0;
    for (int64_t h = 0; h < nh; h++) {
        b[n++] = (struct block){ h * 2 * hd, h * hd, hd };
        b[n++] = (struct block){ h * 2 * hd + hd, nh * hd + h * hd, hd };
    }
    return n;
}

/* Qwen3-Next in_proj_qkvz, group g: [q_g | k_g | v_g (r dv) | z_g (r dv)] -> [q | k | v | z]. */
static int qkvz_blocks(const struct hparams *hp, struct block *b)
{
    int64_t nk = hp->lin_n_k_heads, dk = hp->lin_k_dim, r = hp->lin_n_v_heads / nk, dv = hp->lin_v_dim;
    int64_t key_dim = nk * dk, value_dim = nk * r * dv, group = 2 * dk + 2 * r * dv;
    int n = 0;
    for (int64_t g = 0; g < nk; g++) {
        b[n++] = (struct block){ g * group, g * dk, dk };
        b[n++] = (struct block){ g * group + dk, key_dim + g * dk, dk };
        b[n++] = (struct block){ g * group + 2 * dk, 2 * key_dim + g * r * dv, r * dv };
        b[n++] = (struct block){ g * group + 2 * dk + r * dv, 2 * key_dim + value_dim + g * r * dv, r * dv };
    }
    return n;
}

/* Qwen3-Next in_proj_ba, group g: [b_g (r) | a_g (r)] -> [b | a]. */
static int ba_blocks(const struct hparams *hp, struct block *b)
{
    int64_t nk = hp->lin_n_k_heads, r = hp->lin_n_v_heads / nk;
    int n = 0;
    for (int64_t g = 0; g < nk; g++) {
        b[n++] = (struct block){ g * 2 * r, g * r, r };
        b[n++] = (struct block){ g * 2 * r + r, hp->lin_n_v_heads + g * r, r };
    }
    return n;
}

/* Copies src's rows (row stride src->nb[1]: f32/bf16 rows, packed words or scales) in block
 * order into dst. */
static void permute_rows(void *dst, const struct tensor *src, const struct block *b, int n)
{
    size_t row = src->nb[1];
    for (int i = 0; i < n; i++)
        memcpy((char *)dst + (size_t)b[i].dst_row * row, (const char *)tensor_data(src) + (size_t)b[i].src_row * row,
               (size_t)b[i].n_rows * row);
}

/* Splits t into consecutive row blocks of the given sizes (permuted copy or views). */
struct split {
    struct tensor *src;             // the interleaved tensor (cleared afterwards)
    int            n_blocks;
    struct block   blocks[4 * 1024];
    struct tensor *parts[4];        // destinations, in row order
    int64_t        part_rows[4];
    int            n_parts;
};

static size_t aligned(size_t bytes) { return (bytes + 63) & ~(size_t)63; }

/* Host bytes of the permuted copy of t: its rows, and a quantized weight's scales and biases
 * (quantization is per row: groups run along the input dim, so a row moves with its scales). */
static size_t split_bytes(const struct tensor *t)
{
    if (!t->buf) return 0;
    size_t b = aligned(tensor_bytes(t));
    if (t->dtype == DTYPE_QMLX) {
        b += aligned(tensor_bytes(&t->q->scales));
        if (t->q->biases.buf) b += aligned(tensor_bytes(&t->q->biases));
    }
    return b;
}

/* A permuted copy of src (same shape) at *off in buf. */
static struct tensor copy_permuted(const struct tensor *src, const struct split *sp, struct buffer *buf, size_t *off)
{
    struct tensor whole = *src;
    whole.buf = buf;
    whole.offset = *off;
    permute_rows(tensor_data(&whole), src, sp->blocks, sp->n_blocks);
    *off += aligned(tensor_bytes(&whole));
    return whole;
}

/* Rows [row0, row0 + n) of the quantized weight w as a weight of its own; *q receives the same
 * rows of the scales and biases. */
static struct tensor qweight_rows(const struct tensor *w, int64_t row0, int64_t n, struct qweight *q)
{
    *q = *w->q;
    q->scales = tensor_rows_view(&w->q->scales, row0, n);
    if (w->q->biases.buf) q->biases = tensor_rows_view(&w->q->biases, row0, n);
    struct tensor v = *w;
    v.offset += (size_t)row0 * w->nb[1];
    v.ne[1] = n;
    v.ne[2] = v.ne[3] = 1;
    v.nb[2] = v.nb[3] = w->nb[1] * (size_t)n;
    v.q = q;
    return v;
}

/* *qw: the next free quantized-part descriptor (advanced per part). */
static void split_apply(struct split *sp, struct buffer *buf, size_t *off, bool views_only, struct qweight **qw)
{
    struct tensor src = *sp->src;
    struct tensor whole = src;
    struct qweight wq;   // the permuted copy's descriptor, only while cutting it
    bool quant = src.dtype == DTYPE_QMLX;
    CHECK(!(quant && views_only), "repack: quantized weights are never synthetic");
    if (!views_only) {
        whole = copy_permuted(&src, sp, buf, off);
        if (quant) {
            wq = *src.q;
            wq.scales = copy_permuted(&src.q->scales, sp, buf, off);
            if (src.q->biases.buf) wq.biases = copy_permuted(&src.q->biases, sp, buf, off);
            whole.q = &wq;
        }
    }
    int64_t row0 = 0;
    for (int i = 0; i < sp->n_parts; i++) {
        *sp->parts[i] = quant ? qweight_rows(&whole, row0, sp->part_rows[i], (*qw)++)
                              : tensor_rows_view(&whole, row0, sp->part_rows[i]);
        sp->parts[i]->name = src.name;
        row0 += sp->part_rows[i];
    }
    if (sp->src != sp->parts[0]) memset(sp->src, 0, sizeof *sp->src);   // no longer bound
}

enum status weights_repack_hybrid(struct model *m, bool views_only)
{
    const struct hparams *hp = &m->hp;
    bool gated = m->f.attn_out_gate, grouped = m->f.gdn_grouped_proj;
    if (!gated && !grouped) return STATUS_OK;
    int n_layers = hp->n_layers + (m->has_mtp ? hp->n_mtp_layers : 0);
    int64_t qd = (int64_t)hp->n_heads * hp->head_dim, nv = hp->lin_n_v_heads;
    int64_t key_dim = (int64_t)hp->lin_n_k_heads * hp->lin_k_dim, value_dim = nv * hp->lin_v_dim;
    CHECK(2 * hp->n_heads <= 4 * 1024 && 4 * hp->lin_n_k_heads <= 4 * 1024, "repack: too many heads");
    // one host block for every permuted copy
    size_t bytes = 0;
    int n_quant = 0;   // quantized sources: each becomes two quantized parts
    for (int l = 0; l < n_layers && !views_only; l++) {
        struct layer_weights *lw = &m->layers[l];
        if (gated) bytes += split_bytes(&lw->wq);
        if (grouped) bytes += split_bytes(&lw->gdn_qkvz) + split_bytes(&lw->gdn_ba);
        n_quant += (gated && lw->wq.dtype == DTYPE_QMLX) + (grouped && lw->gdn_qkvz.dtype == DTYPE_QMLX) +
                   (grouped && lw->gdn_ba.dtype == DTYPE_QMLX);
    }
    if (bytes) {
        void *mem = NULL;
        if (posix_memalign(&mem, 64, bytes) != 0) {
            LOG_ERR("%s: cannot allocate %zu bytes for the re-laid-out projections", m->dir, bytes);
            return STATUS_ENOMEM;
        }
        m->repacked = (struct buffer){ .kind = BUF_HOST, .data = mem, .bytes = bytes };
    }
    if (n_quant) {
        m->qw_split = xcalloc(2 * (size_t)n_quant, sizeof *m->qw_split);
        m->n_qw += n_quant;   // one quantized tensor more per split
    }
    struct qweight *qw = m->qw_split;
    struct split *sp = xmalloc(sizeof *sp);
    size_t off = 0;
    for (int l = 0; l < n_layers; l++) {
        struct layer_weights *lw = &m->layers[l];
        if (gated && lw->wq.buf) {
            CHECK(tensor_rows(&lw->wq) == 2 * qd, "layer %d: gated q_proj has %lld rows", l, (long long)tensor_rows(&lw->wq));
            *sp = (struct split){ .src = &lw->wq, .n_parts = 2, .parts = { &lw->wq, &lw->wq_gate },
                                  .part_rows = { qd, qd } };
            sp->n_blocks = q_gate_blocks(hp, sp->blocks);
            split_apply(sp, &m->repacked, &off, views_only, &qw);
        }
        if (grouped && lw->gdn_qkvz.buf) {
            *sp = (struct split){ .src = &lw->gdn_qkvz, .n_parts = 2, .parts = { &lw->gdn_qkv, &lw->gdn_z },
                                  .part_rows = { 2 * key_dim + value_dim, value_dim } };
            sp->n_blocks = qkvz_blocks(hp, sp->blocks);
            split_apply(sp, &m->repacked, &off, views_only, &qw);
            *sp = (struct split){ .src = &lw->gdn_ba, .n_parts = 2, .parts = { &lw->gdn_b, &lw->gdn_a },
                                  .part_rows = { nv, nv } };
            sp->n_blocks = ba_blocks(hp, sp->blocks);
            split_apply(sp, &m->repacked, &off, views_only, &qw);
        }
    }
    free(sp);
    CHECK(off == bytes, "repack: used %zu of %zu bytes", off, bytes);
    CHECK(qw == m->qw_split + 2 * n_quant, "repack: %d quantized parts of %d", (int)(qw - m->qw_split), 2 * n_quant);
    return STATUS_OK;
}
