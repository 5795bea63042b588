/* forward_hybrid: the hybrid models' blocks. See forward_hybrid.h.
 *
 * Design note: the DeltaNet mixer is five backend calls (projections, conv, delta rule, gated
 * norm, out_proj) whose granularity matches what a GPU fuses: the conv and the recurrence walk the
 * step's sequences with their state slots themselves, so a step may mix prefill chunks and decode
 * tokens of many sequences, as attention does. q, k and v are column views of the conv output
 * (row stride conv_dim), never copied.
 */
#include "model/forward_hybrid.h"

#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"

static struct tensor rows(const struct tensor *t, int n) { return tensor_rows_view(t, 0, n); }

/* Columns [col0, col0 + n) of every row of x (x's row stride). */
static struct tensor cols(const struct tensor *x, int64_t col0, int64_t n)
{
    struct tensor t = *x;
    t.ne[0] = n;
    t.offset += (size_t)col0 * dtype_size(x->dtype);
    return t;
}

enum status hybrid_scratch_new(struct backend *be, const struct model *m, int max_tok, struct hybrid_scratch **out)
{
    const struct hparams *hp = &m->hp;
    *out = NULL;
    const struct backend_ops *o = be->ops;
    if (hp->n_linear_layers > 0 && !(o->gdn_conv && o->gdn_recurrent && o->rmsnorm_gated)) {
        LOG_ERR("forward: backend %s has no Gated DeltaNet ops yet (needed by %s)", o->name, hp->arch);
        return STATUS_EUNSUPPORTED;
    }
    if ((m->f.attn_out_gate || hp->d_ff_shared > 0) && !o->sigmoid_mul) {
        LOG_ERR("forward: backend %s has no sigmoid_mul op yet (needed by %s)", o->name, hp->arch);
        return STATUS_EUNSUPPORTED;
    }
    int64_t T = max_tok, conv_dim = 2 * (int64_t)hp->lin_n_k_heads * hp->lin_k_dim + (int64_t)hp->lin_n_v_heads * hp->lin_v_dim;
    int64_t vd = (int64_t)hp->lin_n_v_heads * hp->lin_v_dim, nv = hp->lin_n_v_heads;
    int64_t qd = m->f.attn_out_gate ? (int64_t)hp->n_heads * hp->head_dim : 0, fs = hp->d_ff_shared;
    if (hp->n_linear_layers == 0) conv_dim = vd = nv = 0;
    struct hybrid_scratch *s = xcalloc(1, sizeof *s);
    struct { struct tensor *t; int64_t cols; } plan[] = {
        { &s->qkv, conv_dim }, { &s->conv, conv_dim }, { &s->z, vd }, { &s->a, nv }, { &s->b, nv },
        { &s->core, vd }, { &s->gate, qd }, { &s->sh_gate, fs }, { &s->sh_up, fs }, { &s->out, hp->d_model },
        { &s->sh_logit, fs > 0 ? 1 : 0 },
    };
    size_t n_plan = sizeof plan / sizeof plan[0], bytes = 0;
    for (size_t i = 0; i < n_plan; i++) bytes += ((size_t)(plan[i].cols * T) * sizeof(float) + 255) & ~(size_t)255;
    enum status st = o->buffer_new(be, bytes ? bytes : 256, &s->buf);
    if (st != STATUS_OK) {
        LOG_ERR("forward: cannot allocate %zu bytes of hybrid-layer activations for %d tokens", bytes, max_tok);
        free(s);
        return st;
    }
    size_t off = 0;
    for (size_t i = 0; i < n_plan; i++) {
        *plan[i].t = tensor_2d(DTYPE_F32, plan[i].cols ? plan[i].cols : 1, T, s->buf, off);
        off += ((size_t)(plan[i].cols * T) * sizeof(float) + 255) & ~(size_t)255;
    }
    *out = s;
    return STATUS_OK;
}

void hybrid_scratch_free(struct backend *be, struct hybrid_scratch *s)
{
    if (!s) return;
    be->ops->buffer_free(be, s->buf);
    free(s);
}

/* out = x @ w^T for several w (one fused pass when the backend has matmul_n). */
static void project(struct backend *be, int n_out, struct tensor *const *outs, const struct tensor *x,
                    const struct tensor *const *ws)
{
    const struct tensor *no_bias[3] = { NULL, NULL, NULL };
    for (int i = 0; i < n_out; i += 3) {
        int k = n_out - i < 3 ? n_out - i : 3;
        if (be->ops->matmul_n) be->ops->matmul_n(be, k, outs + i, x, ws + i, no_bias);
        else
            for (int j = 0; j < k; j++) be->ops->matmul(be, outs[i + j], x, ws[i + j], NULL);
    }
}

/* x += in @ w^T (through out when the backend has no matmul_add). */
static void residual_matmul(struct backend *be, struct tensor *x, struct tensor *out, const struct tensor *in,
                            const struct tensor *w)
{
    if (be->ops->matmul_add) {
        be->ops->matmul_add(be, x, in, w);
        return;
    }
    be->ops->matmul(be, out, in, w, NULL);
    be->ops->add(be, x, x, out);
}

void hybrid_gdn_block(struct backend *be, const struct model *m, int l, struct hybrid_scratch *s, struct tensor *x,
                      struct tensor *xn, struct gdn_state_layer *st, struct gdn_state_layer *snap,
                      const struct batch_meta *meta, struct tensor *out_only)
{
    const struct hparams *hp = &m->hp;
    const struct layer_weights *lw = &m->layers[l];
    int n = meta->n_tok;
    CHECK(hp->layer_linear[l] && meta->seq_state_slot, "layer %d: DeltaNet block without state slots", l);
    struct tensor qkv = rows(&s->qkv, n), conv = rows(&s->conv, n), z = rows(&s->z, n), a = rows(&s->a, n),
                  b = rows(&s->b, n), core = rows(&s->core, n), out = rows(&s->out, n);
    be->ops->rmsnorm(be, xn, x, &lw->attn_norm, hp->norm_eps, m->f.norm_plus_one ? 1.0f : 0.0f);
    struct tensor *outs[4] = { &qkv, &z, &b, &a };
    const struct tensor *ws[4] = { &lw->gdn_qkv, &lw->gdn_z, &lw->gdn_b, &lw->gdn_a };
    project(be, 4, outs, xn, ws);
    be->ops->gdn_conv(be, &conv, &qkv, &lw->gdn_conv, st, snap, meta);
    int64_t kd = (int64_t)hp->lin_n_k_heads * hp->lin_k_dim, vd = (int64_t)hp->lin_n_v_heads * hp->lin_v_dim;
    struct tensor q = cols(&conv, 0, kd), k = cols(&conv, kd, kd), v = cols(&conv, 2 * kd, vd);
    struct gdn_params p = { hp->lin_n_k_heads, hp->lin_n_v_heads, hp->lin_k_dim, hp->lin_v_dim };
    be->ops->gdn_recurrent(be, &core, &q, &k, &v, &a, &b, &lw->gdn_a_log, &lw->gdn_dt_bias, st, snap, &p, meta);
    be->ops->rmsnorm_gated(be, &core, &core, &z, &lw->gdn_norm, hp->norm_eps);
    if (out_only) be->ops->matmul(be, out_only, &core, &lw->gdn_out, NULL);
    else residual_matmul(be, x, &out, &core, &lw->gdn_out);
}

void hybrid_attn_output_gate(struct backend *be, const struct model *m, int l, struct hybrid_scratch *s,
                             struct tensor *attn, const struct tensor *xn)
{
    const struct layer_weights *lw = &m->layers[l];
    struct tensor gate = rows(&s->gate, (int)tensor_rows(attn));
    be->ops->matmul(be, &gate, xn, &lw->wq_gate, NULL);
    be->ops->sigmoid_mul(be, attn, attn, &gate);
}

void hybrid_shared_expert_add(struct backend *be, const struct model *m, int l, struct hybrid_scratch *s,
                              struct tensor *x, const struct tensor *xn)
{
    const struct layer_weights *lw = &m->layers[l];
    int n = (int)tensor_rows(x);
    struct tensor g = rows(&s->sh_gate, n), u = rows(&s->sh_up, n), out = rows(&s->out, n),
                  logit = rows(&s->sh_logit, n);
    struct tensor *outs[3] = { &g, &u, &logit };
    const struct tensor *ws[3] = { &lw->shared_gate, &lw->shared_up, &lw->shared_expert_gate };
    project(be, 3, outs, xn, ws);
    be->ops->glu(be, &g, &g, &u, m->f.act);
    be->ops->matmul(be, &out, &g, &lw->shared_down, NULL);
    be->ops->sigmoid_mul(be, &out, &out, &logit);
    be->ops->add(be, x, x, &out);
}
