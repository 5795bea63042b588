/* weights: the tensor plan of a family at given hparams. See weights.h. */
#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

struct plan {
    struct weight_spec *v;
    int n, cap;
};

int64_t weights_nelem(const struct weight_spec *s)
{
    return s->ne[0] * s->ne[1] * s->ne[2] * s->ne[3];
}

void weights_name(const struct arch *a, const struct hparams *hp, enum wrole role, int layer, int expert,
                  char *buf, size_t n)
{
    const char *fmt = a->names[role];
    CHECK(fmt, "%s has no name for weight role %d", a->name, (int)role);
    static const char main_prefix[] = "model.layers.";
    char mtp_fmt[200];
    if (layer >= hp->n_layers) {
        // an MTP decoder layer: same suffix as a main layer, under mtp_layer_prefix, numbered from 0
        CHECK(a->mtp_layer_prefix && !strncmp(fmt, main_prefix, sizeof main_prefix - 1),
              "%s: no MTP name for weight role %d", a->name, (int)role);
        snprintf(mtp_fmt, sizeof mtp_fmt, "%s%s", a->mtp_layer_prefix, fmt + sizeof main_prefix - 1);
        fmt = mtp_fmt;
        layer -= hp->n_layers;
    }
    if (expert >= 0) snprintf(buf, n, fmt, layer, expert);
    else if (layer >= 0) snprintf(buf, n, fmt, layer);
    else snprintf(buf, n, "%s", fmt);
}

/* Adds one tensor; ne[] innermost first, trailing zeros mean "fewer dims". */
static void add(struct plan *p, const struct arch *a, const struct hparams *hp, enum wrole role, int layer,
                int expert, int64_t ne0, int64_t ne1, int64_t ne2)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->v = xrealloc(p->v, sizeof *p->v * (size_t)p->cap);
    }
    struct weight_spec *s = &p->v[p->n++];
    weights_name(a, hp, role, layer, expert, s->name, sizeof s->name);
    s->role = role;
    s->layer = layer;
    s->expert = expert;
    s->n_dims = ne2 ? 3 : ne1 ? 2 : 1;
    s->ne[0] = ne0;
    s->ne[1] = ne1 ? ne1 : 1;
    s->ne[2] = ne2 ? ne2 : 1;
    s->ne[3] = 1;
    s->mtp = (layer >= hp->n_layers) || role == W_MTP_NORM_EMBED || role == W_MTP_NORM_HIDDEN ||
             role == W_MTP_FC || role == W_MTP_NORM;
}

static void add_attention(struct plan *p, const struct arch *a, const struct hparams *hp,
                          const struct arch_features *f, int l)
{
    int64_t d = hp->d_model, hd = hp->head_dim;
    int64_t qd = (int64_t)hp->n_heads * hd, kvd = (int64_t)hp->n_kv_heads * hd;
    add(p, a, hp, W_Q, l, -1, d, f->attn_out_gate ? 2 * qd : qd, 0);   // gated: [q_h | gate_h] per head
    add(p, a, hp, W_K, l, -1, d, kvd, 0);
    add(p, a, hp, W_V, l, -1, d, kvd, 0);
    add(p, a, hp, W_O, l, -1, qd, d, 0);
    if (f->qkv_bias) {
        add(p, a, hp, W_BQ, l, -1, qd, 0, 0);
        add(p, a, hp, W_BK, l, -1, kvd, 0, 0);
        add(p, a, hp, W_BV, l, -1, kvd, 0, 0);
    }
    if (f->qk_norm) {
        add(p, a, hp, W_Q_NORM, l, -1, hd, 0, 0);
        add(p, a, hp, W_K_NORM, l, -1, hd, 0, 0);
    }
}

static void add_gdn(struct plan *p, const struct arch *a, const struct hparams *hp, const struct arch_features *f,
                    int l)
{
    int64_t d = hp->d_model, nv = hp->lin_n_v_heads;
    int64_t key_dim = (int64_t)hp->lin_n_k_heads * hp->lin_k_dim, value_dim = nv * hp->lin_v_dim;
    int64_t conv_dim = 2 * key_dim + value_dim;
    if (f->gdn_grouped_proj) {
        add(p, a, hp, W_GDN_QKVZ, l, -1, d, 2 * key_dim + 2 * value_dim, 0);
        add(p, a, hp, W_GDN_BA, l, -1, d, 2 * nv, 0);
    } else {
        add(p, a, hp, W_GDN_QKV, l, -1, d, conv_dim, 0);
        add(p, a, hp, W_GDN_Z, l, -1, d, value_dim, 0);
        add(p, a, hp, W_GDN_B, l, -1, d, nv, 0);
        add(p, a, hp, W_GDN_A, l, -1, d, nv, 0);
    }
    add(p, a, hp, W_GDN_CONV, l, -1, hp->lin_conv_kernel, 1, conv_dim);
    add(p, a, hp, W_GDN_A_LOG, l, -1, nv, 0, 0);
    add(p, a, hp, W_GDN_DT_BIAS, l, -1, nv, 0, 0);
    add(p, a, hp, W_GDN_NORM, l, -1, hp->lin_v_dim, 0, 0);
    add(p, a, hp, W_GDN_OUT, l, -1, value_dim, d, 0);
}

static void add_ffn(struct plan *p, const struct arch *a, const struct hparams *hp, const struct arch_features *f,
                    int l)
{
    int64_t d = hp->d_model;
    if (f->moe && hp->layer_moe[l]) {
        int64_t fe = hp->d_ff_expert;
        add(p, a, hp, W_ROUTER, l, -1, d, hp->n_experts, 0);
        for (int e = 0; e < hp->n_experts; e++) {
            add(p, a, hp, W_EXP_GATE, l, e, d, fe, 0);
            add(p, a, hp, W_EXP_UP, l, e, d, fe, 0);
            add(p, a, hp, W_EXP_DOWN, l, e, fe, d, 0);
        }
        if (hp->d_ff_shared > 0) {
            add(p, a, hp, W_SHARED_GATE, l, -1, d, hp->d_ff_shared, 0);
            add(p, a, hp, W_SHARED_UP, l, -1, d, hp->d_ff_shared, 0);
            add(p, a, hp, W_SHARED_DOWN, l, -1, hp->d_ff_shared, d, 0);
            add(p, a, hp, W_SHARED_EXPERT_GATE, l, -1, d, 1, 0);
        }
    } else {
        add(p, a, hp, W_GATE, l, -1, d, hp->d_ff, 0);
        add(p, a, hp, W_UP, l, -1, d, hp->d_ff, 0);
        add(p, a, hp, W_DOWN, l, -1, hp->d_ff, d, 0);
    }
}

static void add_layer(struct plan *p, const struct arch *a, const struct hparams *hp,
                      const struct arch_features *f, int l)
{
    int64_t d = hp->d_model;
    add(p, a, hp, W_ATTN_NORM, l, -1, d, 0, 0);
    if (hp->layer_linear[l]) add_gdn(p, a, hp, f, l);
    else add_attention(p, a, hp, f, l);
    if (f->sandwich_norm) add(p, a, hp, W_ATTN_POST_NORM, l, -1, d, 0, 0);
    add(p, a, hp, W_FFN_NORM, l, -1, d, 0, 0);
    if (f->sandwich_norm) add(p, a, hp, W_FFN_POST_NORM, l, -1, d, 0, 0);
    add_ffn(p, a, hp, f, l);
}

int weights_plan(const struct arch *a, const struct hparams *hp, const struct arch_features *f,
                 struct weight_spec **out)
{
    struct plan p = {0};
    int64_t d = hp->d_model, V = hp->n_vocab;
    add(&p, a, hp, W_EMBED, -1, -1, d, V, 0);
    for (int l = 0; l < hp->n_layers; l++) add_layer(&p, a, hp, f, l);
    add(&p, a, hp, W_OUT_NORM, -1, -1, d, 0, 0);
    if (!hp->tie_embed) add(&p, a, hp, W_LM_HEAD, -1, -1, d, V, 0);
    if (hp->n_mtp_layers > 0) {
        add(&p, a, hp, W_MTP_NORM_EMBED, -1, -1, d, 0, 0);
        add(&p, a, hp, W_MTP_NORM_HIDDEN, -1, -1, d, 0, 0);
        add(&p, a, hp, W_MTP_FC, -1, -1, 2 * d, d, 0);
        for (int j = 0; j < hp->n_mtp_layers; j++) add_layer(&p, a, hp, f, hp->n_layers + j);
        add(&p, a, hp, W_MTP_NORM, -1, -1, d, 0, 0);
    }
    *out = p.v;
    return p.n;
}

bool weights_is_norm(enum wrole role)
{
    switch (role) {
    case W_OUT_NORM: case W_ATTN_NORM: case W_Q_NORM: case W_K_NORM:
    case W_ATTN_POST_NORM: case W_FFN_NORM: case W_FFN_POST_NORM: case W_GDN_NORM:
    case W_MTP_NORM_EMBED: case W_MTP_NORM_HIDDEN: case W_MTP_NORM:
        return true;
    default:
        return false;
    }
}

float weights_synth_base(enum wrole role, const struct arch_features *f)
{
    if (role == W_GDN_NORM) return 1.0f;   // Qwen3NextRMSNormGated: plain weight, initialised to ones
    return weights_is_norm(role) && !f->norm_plus_one ? 1.0f : 0.0f;
}

struct tensor *weights_slot(struct model *m, enum wrole role, int layer, int expert)
{
    struct layer_weights *lw = layer >= 0 ? &m->layers[layer] : NULL;
    switch (role) {
    case W_EMBED: return &m->tok_embed;
    case W_OUT_NORM: return &m->out_norm;
    case W_LM_HEAD: return &m->lm_head;
    case W_ATTN_NORM: return &lw->attn_norm;
    case W_Q: return &lw->wq;
    case W_K: return &lw->wk;
    case W_V: return &lw->wv;
    case W_O: return &lw->wo;
    case W_BQ: return &lw->bq;
    case W_BK: return &lw->bk;
    case W_BV: return &lw->bv;
    case W_Q_NORM: return &lw->q_norm;
    case W_K_NORM: return &lw->k_norm;
    case W_ATTN_POST_NORM: return &lw->attn_post_norm;
    case W_FFN_NORM: return &lw->ffn_norm;
    case W_FFN_POST_NORM: return &lw->ffn_post_norm;
    case W_GATE: return &lw->w_gate;
    case W_UP: return &lw->w_up;
    case W_DOWN: return &lw->w_down;
    case W_ROUTER: return &lw->router;
    case W_EXP_GATE: return &lw->exp_gate[expert];
    case W_EXP_UP: return &lw->exp_up[expert];
    case W_EXP_DOWN: return &lw->exp_down[expert];
    case W_SHARED_GATE: return &lw->shared_gate;
    case W_SHARED_UP: return &lw->shared_up;
    case W_SHARED_DOWN: return &lw->shared_down;
    case W_SHARED_EXPERT_GATE: return &lw->shared_expert_gate;
    case W_GDN_QKV: return &lw->gdn_qkv;
    case W_GDN_Z: return &lw->gdn_z;
    case W_GDN_B: return &lw->gdn_b;
    case W_GDN_A: return &lw->gdn_a;
    case W_GDN_QKVZ: return &lw->gdn_qkvz;
    case W_GDN_BA: return &lw->gdn_ba;
    case W_GDN_CONV: return &lw->gdn_conv;
    case W_GDN_A_LOG: return &lw->gdn_a_log;
    case W_GDN_DT_BIAS: return &lw->gdn_dt_bias;
    case W_GDN_NORM: return &lw->gdn_norm;
    case W_GDN_OUT: return &lw->gdn_out;
    case W_MTP_NORM_EMBED: return &m->mtp.norm_embed;
    case W_MTP_NORM_HIDDEN: return &m->mtp.norm_hidden;
    case W_MTP_FC: return &m->mtp.fc;
    case W_MTP_NORM: return &m->mtp.norm;
    default: break;
    }
    CHECK(0, "no model slot for weight role %d", (int)role);
}

static void visit(struct tensor *t, void (*fn)(struct tensor *, void *), void *ctx)
{
    if (t->buf) fn(t, ctx);
}

void weights_for_each(struct model *m, void (*fn)(struct tensor *t, void *ctx), void *ctx)
{
    visit(&m->tok_embed, fn, ctx);
    int n_layers = m->hp.n_layers + (m->has_mtp ? m->hp.n_mtp_layers : 0);
    for (int l = 0; l < n_layers; l++) {
        struct layer_weights *lw = &m->layers[l];
        struct tensor *fields[] = {
            &lw->attn_norm, &lw->wq, &lw->wq_gate, &lw->wk, &lw->wv, &lw->wo, &lw->bq, &lw->bk, &lw->bv,
            &lw->q_norm, &lw->k_norm, &lw->attn_post_norm, &lw->ffn_norm, &lw->ffn_post_norm,
            &lw->w_gate, &lw->w_up, &lw->w_down, &lw->router, &lw->shared_gate, &lw->shared_up,
            &lw->shared_down, &lw->shared_expert_gate, &lw->gdn_qkv, &lw->gdn_z, &lw->gdn_b, &lw->gdn_a,
            &lw->gdn_qkvz, &lw->gdn_ba, &lw->gdn_conv, &lw->gdn_a_log, &lw->gdn_dt_bias, &lw->gdn_norm,
            &lw->gdn_out,
        };
        for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) visit(fields[i], fn, ctx);
        if (lw->exp_gate)
            for (int e = 0; e < m->hp.n_experts; e++) {
                visit(&lw->exp_gate[e], fn, ctx);
                visit(&lw->exp_up[e], fn, ctx);
                visit(&lw->exp_down[e], fn, ctx);
            }
    }
    visit(&m->out_norm, fn, ctx);
    if (!m->hp.tie_embed) visit(&m->lm_head, fn, ctx);
    struct tensor *mtp[] = { &m->mtp.norm_embed, &m->mtp.norm_hidden, &m->mtp.fc, &m->mtp.norm };
    for (size_t i = 0; i < sizeof mtp / sizeof mtp[0]; i++) visit(mtp[i], fn, ctx);
}
