/* weights: the tensor plan of a family at given hparams. See weights.h. */
#include "model/weights.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"
#include "base/mem.h"

struct plan {
    struct weight_spec *v;
    int n, cap;
};

static void add(struct plan *p, const struct arch *a, enum wrole role, int layer, int expert,
                int64_t ne0, int64_t ne1)
{
    const char *fmt = a->names[role];
    CHECK(fmt, "%s has no name for weight role %d", a->name, (int)role);
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->v = xrealloc(p->v, sizeof *p->v * (size_t)p->cap);
    }
    struct weight_spec *s = &p->v[p->n++];
    if (expert >= 0) snprintf(s->name, sizeof s->name, fmt, layer, expert);
    else if (layer >= 0) snprintf(s->name, sizeof s->name, fmt, layer);
    else snprintf(s->name, sizeof s->name, "%s", fmt);
    s->role = role;
    s->layer = layer;
    s->expert = expert;
    s->n_dims = ne1 ? 2 : 1;
    s->ne[0] = ne0;
    s->ne[1] = ne1 ? ne1 : 1;
    s->ne[2] = s->ne[3] = 1;
}

int weights_plan(const struct arch *a, const struct hparams *hp, const struct arch_features *f,
                 struct weight_spec **out)
{
    struct plan p = {0};
    int64_t d = hp->d_model, hd = hp->head_dim, V = hp->n_vocab;
    int64_t qd = (int64_t)hp->n_heads * hd, kvd = (int64_t)hp->n_kv_heads * hd;
    add(&p, a, W_EMBED, -1, -1, d, V);
    for (int l = 0; l < hp->n_layers; l++) {
        add(&p, a, W_ATTN_NORM, l, -1, d, 0);
        add(&p, a, W_Q, l, -1, d, qd);
        add(&p, a, W_K, l, -1, d, kvd);
        add(&p, a, W_V, l, -1, d, kvd);
        add(&p, a, W_O, l, -1, qd, d);
        if (f->qkv_bias) {
            add(&p, a, W_BQ, l, -1, qd, 0);
            add(&p, a, W_BK, l, -1, kvd, 0);
            add(&p, a, W_BV, l, -1, kvd, 0);
        }
        if (f->qk_norm) {
            add(&p, a, W_Q_NORM, l, -1, hd, 0);
            add(&p, a, W_K_NORM, l, -1, hd, 0);
        }
        if (f->sandwich_norm) add(&p, a, W_ATTN_POST_NORM, l, -1, d, 0);
        add(&p, a, W_FFN_NORM, l, -1, d, 0);
        if (f->sandwich_norm) add(&p, a, W_FFN_POST_NORM, l, -1, d, 0);
        if (f->moe && hp->layer_moe[l]) {
            int64_t fe = hp->d_ff_expert;
            add(&p, a, W_ROUTER, l, -1, d, hp->n_experts);
            for (int e = 0; e < hp->n_experts; e++) {
                add(&p, a, W_EXP_GATE, l, e, d, fe);
                add(&p, a, W_EXP_UP, l, e, d, fe);
                add(&p, a, W_EXP_DOWN, l, e, fe, d);
            }
        } else {
            add(&p, a, W_GATE, l, -1, d, hp->d_ff);
            add(&p, a, W_UP, l, -1, d, hp->d_ff);
            add(&p, a, W_DOWN, l, -1, hp->d_ff, d);
        }
    }
    add(&p, a, W_OUT_NORM, -1, -1, d, 0);
    if (!hp->tie_embed) add(&p, a, W_LM_HEAD, -1, -1, d, V);
    *out = p.v;
    return p.n;
}

bool weights_is_norm(enum wrole role)
{
    switch (role) {
    case W_OUT_NORM: case W_ATTN_NORM: case W_Q_NORM: case W_K_NORM:
    case W_ATTN_POST_NORM: case W_FFN_NORM: case W_FFN_POST_NORM:
        return true;
    default:
        return false;
    }
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
    for (int l = 0; l < m->hp.n_layers; l++) {
        struct layer_weights *lw = &m->layers[l];
        struct tensor *fields[] = {
            &lw->attn_norm, &lw->wq, &lw->wk, &lw->wv, &lw->wo, &lw->bq, &lw->bk, &lw->bv,
            &lw->q_norm, &lw->k_norm, &lw->attn_post_norm, &lw->ffn_norm, &lw->ffn_post_norm,
            &lw->w_gate, &lw->w_up, &lw->w_down, &lw->router,
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
}
