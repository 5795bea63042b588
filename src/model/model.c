/* model: loading a checkpoint directory into a struct model (config + files + bound weights).
 *
 * Design note: binding walks the family's weight plan (weights.c), so the names and shapes the
 * loader checks are exactly the ones synth writes and forward.c reads. Every planned tensor must
 * be present with the planned shape and a float dtype; anything else is an error naming it.
 * Weights stay where the mmap put them. Qwen3-MoE experts may be fused per layer (transformers 5):
 * then each expert's gate/up/down is a contiguous view into the fused tensor.
 * MLX checkpoints: a planned weight with `P.scales` beside it binds quantized (quant_load.c), and
 * experts may be stacked per layer as mlx-lm writes them (`mlp.switch_mlp.{gate,up,down}_proj`,
 * [E, out, in], quantized or not); each expert is a view of its slice (and of its scales' slice).
 * Hybrids converted by mlx_lm / mlx_vlm keep their names under arch->mlx_wrapper and store conv1d
 * as [C, K, 1]; that layout means the (1 + w) norms are stored shifted (mlx_norm_layout).
 */
#include "model/model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/quant_load.h"
#include "model/safetensors.h"
#include "model/synth.h"
#include "model/weights.h"
#include "tensor/qweight.h"

/* ==== Allocation ==== */

struct model *model_alloc(const struct hparams *hp, const struct arch_features *f, const struct arch *a)
{
    struct model *m = xcalloc(1, sizeof *m);
    m->hp = *hp;
    m->f = *f;
    m->arch = a;
    int n_layers = hp->n_layers + hp->n_mtp_layers;
    m->layers = xcalloc((size_t)n_layers, sizeof *m->layers);
    for (int l = 0; l < n_layers; l++) {
        if (!(f->moe && hp->layer_moe[l])) continue;
        struct layer_weights *lw = &m->layers[l];
        lw->exp_gate = xcalloc(3 * (size_t)hp->n_experts, sizeof *lw->exp_gate);
        lw->exp_up = lw->exp_gate + hp->n_experts;
        lw->exp_down = lw->exp_gate + 2 * hp->n_experts;
    }
    return m;
}

void model_free(struct model *m)
{
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->hp.n_layers + m->hp.n_mtp_layers; l++) free(m->layers[l].exp_gate);
    free(m->layers);
    if (m->dev_weights) m->dev_weights->owner->ops->buffer_free(m->dev_weights->owner, m->dev_weights);
    safetensors_close(m->files);
    free(m->repacked.data);
    quant_cfg_free(m->quant);
    free(m->qw);
    free(m->qw_split);
    free(m->dir);
    free(m);
}

static void count_one(struct tensor *t, void *ctx)
{
    uint64_t *acc = ctx;
    acc[0] += (uint64_t)tensor_nelem(t);
    acc[1] += (uint64_t)(t->dtype == DTYPE_QMLX ? qweight_bytes(t) : tensor_bytes(t));
}

static void model_count(struct model *m)
{
    uint64_t acc[2] = { 0, 0 };
    weights_for_each(m, count_one, acc);
    m->n_params = acc[0];
    m->weight_bytes = acc[1];
}

/* ==== Binding ==== */

/* name as planned, else under the family's other spellings: a multimodal wrapper's "model."
 * replacement, or mlx-lm's wrapper of the whole text model. */
static const struct st_tensor *find_any(const struct model_file *mf, const struct arch *a, const char *name)
{
    const struct st_tensor *t = safetensors_find(mf, name);
    char alt[256];
    for (int i = 0; i < 3 && a->alt_prefix[i] && !t && !strncmp(name, "model.", 6); i++) {
        snprintf(alt, sizeof alt, "%s%s", a->alt_prefix[i], name + 6);
        t = safetensors_find(mf, alt);
    }
    if (!t && a->mlx_wrapper) {
        snprintf(alt, sizeof alt, "%s%s", a->mlx_wrapper, name);
        t = safetensors_find(mf, alt);
    }
    return t;
}

static void shape_str(char *buf, size_t n, int n_dims, const int64_t *outer_first)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)outer_first[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* Checks a file tensor against the wanted shape (outermost first) and a float dtype. */
static enum status check_tensor(const struct model_file *mf, const struct st_tensor *t, int n_dims,
                                const int64_t *want)
{
    const char *path = mf->shards[t->shard].path;
    if (t->dtype == DTYPE_U32) {   // quant_bind takes packed weights that have their scales
        LOG_ERR("%s: tensor %s: U32 holds MLX-packed codes, but the tensor's .scales is missing", path, t->name);
        return STATUS_EFORMAT;
    }
    if (t->dtype != DTYPE_BF16 && t->dtype != DTYPE_F16 && t->dtype != DTYPE_F32) {
        LOG_ERR("%s: tensor %s: dtype %s is not a weight dtype (bf16, f16, f32)", path, t->name, dtype_name(t->dtype));
        return STATUS_EUNSUPPORTED;
    }
    bool ok = t->n_dims == n_dims;
    for (int i = 0; ok && i < n_dims; i++) ok = t->shape[i] == want[i];
    if (!ok) {
        char got[128], exp[128];
        shape_str(got, sizeof got, t->n_dims, t->shape);
        shape_str(exp, sizeof exp, n_dims, want);
        LOG_ERR("%s: tensor %s: shape %s but config.json needs %s", path, t->name, got, exp);
        return STATUS_EFORMAT;
    }
    return STATUS_OK;
}

/* Binds all experts of layer l from the fused transformers 5 tensors. */
static enum status bind_fused_experts(struct model *m, int l, bool *used)
{
    const struct model_file *mf = m->files;
    const struct arch *a = m->arch;
    int64_t E = m->hp.n_experts, fe = m->hp.d_ff_expert, d = m->hp.d_model;
    char gu_name[160], dn_name[160];
    gu_name[0] = dn_name[0] = 0;
    if (a->names[W_EXP_GATE_UP_FUSED]) weights_name(a, &m->hp, W_EXP_GATE_UP_FUSED, l, -1, gu_name, sizeof gu_name);
    if (a->names[W_EXP_DOWN_FUSED]) weights_name(a, &m->hp, W_EXP_DOWN_FUSED, l, -1, dn_name, sizeof dn_name);
    const struct st_tensor *gu = a->names[W_EXP_GATE_UP_FUSED] ? find_any(mf, a, gu_name) : NULL;
    const struct st_tensor *dn = a->names[W_EXP_DOWN_FUSED] ? find_any(mf, a, dn_name) : NULL;
    if (!gu || !dn) {
        char per[160];
        weights_name(a, &m->hp, W_EXP_GATE, l, 0, per, sizeof per);
        LOG_ERR("%s: tensor %s missing (nor fused %s / %s found)", m->dir, per, gu_name, dn_name);
        return STATUS_ENOTFOUND;
    }
    enum status st = check_tensor(mf, gu, 3, (int64_t[]){ E, 2 * fe, d });
    if (st == STATUS_OK) st = check_tensor(mf, dn, 3, (int64_t[]){ E, d, fe });
    if (st != STATUS_OK) return st;
    used[gu - mf->tensors] = used[dn - mf->tensors] = true;
    struct layer_weights *lw = &m->layers[l];
    struct tensor gv, dv;   // views (an unaligned tensor's view is its aligned copy)
    if ((st = safetensors_view(mf, gu, &gv)) != STATUS_OK || (st = safetensors_view(mf, dn, &dv)) != STATUS_OK)
        return st;
    size_t es = dtype_size(gu->dtype), ds = dtype_size(dn->dtype);
    for (int64_t e = 0; e < E; e++) {
        size_t g0 = gv.offset + (size_t)(e * 2 * fe * d) * es;
        lw->exp_gate[e] = tensor_2d(gu->dtype, d, fe, gv.buf, g0);
        lw->exp_up[e] = tensor_2d(gu->dtype, d, fe, gv.buf, g0 + (size_t)(fe * d) * es);
        lw->exp_down[e] = tensor_2d(dn->dtype, fe, d, dv.buf, dv.offset + (size_t)(e * d * fe) * ds);
        lw->exp_gate[e].name = lw->exp_up[e].name = gu->name;
        lw->exp_down[e].name = dn->name;
    }
    return STATUS_OK;
}

/* The next free quantized-weight descriptor (m->qw has one per planned weight). */
static struct qweight *next_qw(struct model *m, int cap)
{
    CHECK(m->n_qw < cap, "more quantized weights than planned");
    return &m->qw[m->n_qw++];
}

static void mark_used(const struct model_file *mf, bool *used, const struct st_tensor *t)
{
    char name[512];
    size_t len = strlen(t->name);
    used[t - mf->tensors] = true;
    if (len < 7 || len >= sizeof name) return;
    const char *sib[] = { "scales", "biases" };
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%.*s.%s", (int)(len - 7), t->name, sib[i]);
        const struct st_tensor *s = safetensors_find(mf, name);
        if (s) used[s - mf->tensors] = true;
    }
}

/* Binds all experts of layer l from mlx-lm's stacked switch_mlp tensors ([E, out, in] float, or
 * quantized [E, out, in*bits/32] with scales/biases). *found false if the checkpoint has none. */
static enum status bind_switch_experts(struct model *m, int l, bool *used, int qw_cap, bool *found)
{
    const struct model_file *mf = m->files;
    const struct arch *a = m->arch;
    int64_t E = m->hp.n_experts, fe = m->hp.d_ff_expert, d = m->hp.d_model;
    const enum wrole roles[3] = { W_EXP_GATE, W_EXP_UP, W_EXP_DOWN };
    struct tensor *slots[3] = { m->layers[l].exp_gate, m->layers[l].exp_up, m->layers[l].exp_down };
    const int64_t out_dim[3] = { fe, fe, d }, in_dim[3] = { d, d, fe };
    *found = false;
    for (int r = 0; r < 3; r++) {
        char per[160], name[192];
        snprintf(per, sizeof per, a->names[roles[r]], l, 0);
        char *at = strstr(per, ".experts.0.");
        if (!at) return STATUS_OK;
        snprintf(name, sizeof name, "%.*s.switch_mlp.%s", (int)(at - per), per, at + strlen(".experts.0."));
        const struct st_tensor *t = find_any(mf, a, name);
        if (!t) {
            if (r == 0) return STATUS_OK;
            LOG_ERR("%s: tensor %s missing (the layer's other experts are stacked as switch_mlp)", m->dir, name);
            return STATUS_ENOTFOUND;
        }
        *found = true;
        const int64_t outer[2] = { E, out_dim[r] };
        if (quant_is_quantized(mf, t)) {
            struct qweight qall;
            struct tensor all;
            enum status st = quant_bind(m->quant, mf, t, in_dim[r], 2, outer, &qall, &all);
            if (st != STATUS_OK) return st;
            for (int64_t e = 0; e < E; e++) {   // expert e: rows [e * out, (e + 1) * out) of all three
                struct qweight *q = next_qw(m, qw_cap);
                *q = qall;
                q->scales = tensor_rows_view(&qall.scales, e * out_dim[r], out_dim[r]);
                if (qall.biases.buf) q->biases = tensor_rows_view(&qall.biases, e * out_dim[r], out_dim[r]);
                struct tensor *w = &slots[r][e];
                *w = all;
                w->ne[1] = out_dim[r];
                w->ne[2] = 1;
                w->offset = all.offset + (size_t)(e * out_dim[r]) * all.nb[1];
                w->nb[2] = w->nb[3] = all.nb[1] * (size_t)out_dim[r];
                w->q = q;
            }
        } else {
            enum status st = check_tensor(mf, t, 3, (int64_t[]){ E, out_dim[r], in_dim[r] });
            if (st != STATUS_OK) return st;
            struct tensor all;
            if ((st = safetensors_view(mf, t, &all)) != STATUS_OK) return st;
            for (int64_t e = 0; e < E; e++) slots[r][e] = tensor_rows_view(&all, e * out_dim[r], out_dim[r]);
        }
        mark_used(mf, used, t);
    }
    return STATUS_OK;
}

/* A DeltaNet conv1d weight as mlx-lm's sanitize stores it: [C, K, 1] where HF has [C, 1, K]
 * (want, outermost first). */
static bool is_mlx_conv(const struct st_tensor *t, const int64_t *want)
{
    bool is_float = t->dtype == DTYPE_BF16 || t->dtype == DTYPE_F16 || t->dtype == DTYPE_F32;
    return is_float && want[2] > 1 && t->n_dims == 3 && t->shape[0] == want[0] && t->shape[1] == want[2] &&
           t->shape[2] == 1;
}

/* mlx-lm / mlx-vlm convert a hybrid's HF checkpoint in one pass that moves the conv1d axes and
 * stores every (1 + w) norm as bf16(1 + w) (mlx-quant-format.md 8), so the conv layout tells
 * which norms a checkpoint holds: MLX's are applied as stored. A mix of both layouts is refused. */
static enum status mlx_norm_layout(struct model *m, const int *n_conv)
{
    if (!n_conv[1]) return STATUS_OK;
    if (n_conv[0]) {
        LOG_ERR("%s: %d DeltaNet conv1d weights are [C, 1, K] (Hugging Face) and %d are [C, K, 1] (MLX); a "
                "checkpoint has one layout", m->dir, n_conv[0], n_conv[1]);
        return STATUS_EFORMAT;
    }
    if (m->f.norm_plus_one)
        LOG_INFO("%s: MLX layout (conv1d [C, K, 1]): the RMSNorm weights are stored as 1 + w and used as stored",
                 m->dir);
    m->f.norm_plus_one = false;
    return STATUS_OK;
}

static enum status bind_all(struct model *m)
{
    const struct model_file *mf = m->files;
    struct weight_spec *plan;
    int n = weights_plan(m->arch, &m->hp, &m->f, &plan);
    bool *used = xcalloc((size_t)mf->n_tensors + 1, 1);
    bool *fused = xcalloc((size_t)(m->hp.n_layers + m->hp.n_mtp_layers), 1);
    m->qw = xcalloc((size_t)n + 1, sizeof *m->qw);
    enum status st = STATUS_OK;
    int n_conv[2] = { 0, 0 };   // DeltaNet conv1d weights in the HF / the MLX layout
    // The MTP head is optional: transformers drops mtp.* when it saves a model. Bound (and then
    // complete) only when the checkpoint holds its first tensor.
    m->has_mtp = false;
    for (int i = 0; i < n; i++)
        if (plan[i].mtp) {
            m->has_mtp = find_any(mf, m->arch, plan[i].name) != NULL;
            if (!m->has_mtp)
                LOG_INFO("%s: no %s: the MTP head (mtp_num_hidden_layers %d) is not in the checkpoint", m->dir,
                         plan[i].name, m->hp.n_mtp_layers);
            break;
        }
    for (int i = 0; i < n && st == STATUS_OK; i++) {
        const struct weight_spec *s = &plan[i];
        if (s->mtp && !m->has_mtp) continue;
        bool expert = s->role == W_EXP_GATE || s->role == W_EXP_UP || s->role == W_EXP_DOWN;
        if (expert && fused[s->layer]) continue;
        const struct st_tensor *t = find_any(mf, m->arch, s->name);
        if (t && s->role == W_EMBED && strncmp(t->name, "model.", 6) && !strncmp(s->name, "model.", 6))
            m->saved_as_base = true;
        if (!t && expert && s->expert == 0 && s->role == W_EXP_GATE) {
            bool stacked = false;
            st = bind_switch_experts(m, s->layer, used, n, &stacked);
            if (st == STATUS_OK && !stacked) st = bind_fused_experts(m, s->layer, used);
            fused[s->layer] = true;
            continue;
        }
        if (!t && s->role == W_LM_HEAD) {
            // a base model saved without its head (Qwen3Model, as sentence-transformers and
            // Qwen3-Embedding save it): the hidden states are there, the logits are not
            LOG_INFO("%s: no %s: a base model, it serves embeddings only", m->dir, s->name);
            continue;
        }
        if (!t) {
            LOG_ERR("%s: tensor %s missing (needed by %s)", m->dir, s->name, m->hp.arch);
            st = STATUS_ENOTFOUND;
            break;
        }
        int64_t want[3];   // outermost first, as safetensors lists shapes
        for (int k = 0; k < s->n_dims; k++) want[k] = s->ne[s->n_dims - 1 - k];
        if (s->n_dims == 2 && quant_is_quantized(mf, t)) {
            struct tensor *slot = weights_slot(m, s->role, s->layer, s->expert);
            if ((st = quant_bind(m->quant, mf, t, s->ne[0], 1, want, next_qw(m, n), slot)) != STATUS_OK) break;
            mark_used(mf, used, t);
            continue;
        }
        bool mlx_conv = s->role == W_GDN_CONV && is_mlx_conv(t, want);
        if (s->role == W_GDN_CONV) n_conv[mlx_conv]++;
        if (!mlx_conv && (st = check_tensor(mf, t, s->n_dims, want)) != STATUS_OK) break;
        struct tensor *slot = weights_slot(m, s->role, s->layer, s->expert);
        if ((st = safetensors_view(mf, t, slot)) != STATUS_OK) break;
        if (mlx_conv) *slot = tensor_reshape(slot, s->n_dims, s->ne);   // same bytes: [C, K, 1] is [C, 1, K]
        used[t - mf->tensors] = true;
    }
    if (st == STATUS_OK) st = mlx_norm_layout(m, n_conv);
    if (st == STATUS_OK) st = quant_check_overrides(m->quant, mf);
    if (st == STATUS_OK) {
        if (m->hp.tie_embed) {
            const struct st_tensor *lh = find_any(mf, m->arch, m->arch->names[W_LM_HEAD]);
            if (lh) mark_used(mf, used, lh);   // transformers ties it anyway
            m->lm_head = m->tok_embed;
        }
        int n_unused = 0;
        const char *example = NULL;
        for (int i = 0; i < mf->n_tensors; i++)
            if (!used[i]) {
                n_unused++;
                if (!example || strstr(mf->tensors[i].name, "layers.")) example = mf->tensors[i].name;
            }
        if (n_unused)
            LOG_WARN("%s: %d tensors in the checkpoint are not used by %s (e.g. %s)", m->dir, n_unused,
                     m->hp.arch, example);
    }
    free(fused);
    free(used);
    free(plan);
    return st;
}

/* ==== Public ==== */

enum status model_load(const char *dir, struct model **out)
{
    *out = NULL;
    struct hparams hp;
    struct arch_features f;
    const struct arch *a;
    enum status st = config_load(dir, &hp, &f, &a);
    if (st != STATUS_OK) return st;
    struct model_file *mf;
    if ((st = safetensors_open_dir(dir, &mf)) != STATUS_OK) return st;
    struct model *m = model_alloc(&hp, &f, a);
    m->files = mf;
    m->dir = xstrdup(dir);
    if ((st = quant_cfg_load(dir, &m->quant)) != STATUS_OK || (st = bind_all(m)) != STATUS_OK ||
        (st = weights_repack_hybrid(m, false)) != STATUS_OK) {
        model_free(m);
        return st;
    }
    model_count(m);
    LOG_INFO("%s: %s, %d layers, %.2f B parameters, %.2f GiB of weights", dir, hp.arch, hp.n_layers,
             (double)m->n_params / 1e9, (double)m->weight_bytes / (double)(1ull << 30));
    *out = m;
    return STATUS_OK;
}

struct prepare_ctx {
    struct backend *be;
    enum status     st;
};

static void prepare_one(struct tensor *t, void *ctx)
{
    struct prepare_ctx *c = ctx;
    if (c->st == STATUS_OK) c->st = c->be->ops->weight_prepare(c->be, t);
}

static size_t weight_align(size_t bytes)
{
    return (bytes + BACKEND_WEIGHT_ALIGN - 1) / BACKEND_WEIGHT_ALIGN * BACKEND_WEIGHT_ALIGN;
}

/* Bytes a device backend copies for t (weights_reserve's arena): host weights only, an
 * MLX-quantized one with its scales and biases. */
static void count_host_bytes(struct tensor *t, void *ctx)
{
    size_t *total = ctx;
    if (!t->buf || t->buf->kind == BUF_DEVICE) return;
    *total += weight_align(tensor_bytes(t));
    if (t->dtype == DTYPE_QMLX) {
        const struct qweight *q = t->q;
        *total += weight_align(tensor_bytes(&q->scales));
        if (q->biases.buf) *total += weight_align(tensor_bytes(&q->biases));
    }
}

enum status model_prepare(struct model *m, struct backend *be)
{
    if (m->n_qw && !be->ops->quant_weights) {
        LOG_ERR("%s: backend %s does not run MLX-quantized weights (ref, cpu and cuda do)", m->dir, be->ops->name);
        return STATUS_EUNSUPPORTED;
    }
    if (!be->ops->weight_prepare) return STATUS_OK;
    if (be->ops->weights_reserve) {   // one allocation in visiting order: a layer's q, k, v adjacent
        size_t total = 0;
        weights_for_each(m, count_host_bytes, &total);
        if (total && be->ops->weights_reserve(be, total) != STATUS_OK)
            LOG_WARN("%s: no single %.2f GiB allocation for the weights on %s: each takes its own", m->dir,
                     (double)total / (double)(1ull << 30), be->ops->name);
    }
    struct prepare_ctx c = { be, STATUS_OK };
    weights_for_each(m, prepare_one, &c);
    // a rank's tied lm_head leaves out the embedding's extra zero row (model/shard.h)
    if (m->hp.tie_embed)
        m->lm_head = m->shard.n_ranks ? tensor_rows_view(&m->tok_embed, 0, m->shard.n_vocab_local) : m->tok_embed;
    return c.st;
}

bool model_is_embedder(const struct model *m)
{
    return m->arch->base_model || !model_has_lm_head(m) || m->saved_as_base;
}

size_t model_kv_bytes_per_token(const struct model *m, enum dtype kv_dtype)
{
    size_t n_attn = (size_t)(m->hp.n_layers - m->hp.n_linear_layers);
    return n_attn * 2 * (size_t)m->hp.n_kv_heads * (size_t)m->hp.head_dim * dtype_size(kv_dtype);
}

size_t model_gdn_conv_state_bytes(const struct hparams *hp, enum dtype conv_dtype)
{
    size_t conv_dim = 2 * (size_t)hp->lin_n_k_heads * (size_t)hp->lin_k_dim +
                      (size_t)hp->lin_n_v_heads * (size_t)hp->lin_v_dim;
    return hp->n_linear_layers ? (size_t)(hp->lin_conv_kernel - 1) * conv_dim * dtype_size(conv_dtype) : 0;
}

size_t model_gdn_ssm_state_bytes(const struct hparams *hp)
{
    return hp->n_linear_layers ? (size_t)hp->lin_n_v_heads * (size_t)hp->lin_k_dim * (size_t)hp->lin_v_dim * 4 : 0;
}

size_t model_seq_state_bytes(const struct hparams *hp, enum dtype conv_dtype)
{
    return (size_t)hp->n_linear_layers * (model_gdn_conv_state_bytes(hp, conv_dtype) + model_gdn_ssm_state_bytes(hp));
}

enum status model_synthesize(const char *config_json_path, uint64_t seed, struct model **out)
{
    return model_synthesize_on(config_json_path, seed, NULL, out);
}

/* Bytes of planned weight s in a synthetic model: bf16, or (q set and s quantizable) packed words,
 * scales and biases, each 64-byte aligned. */
static bool synth_quantizable(const struct weight_spec *s, const struct synth_quant *q)
{
    return q && s->n_dims == 2 && !weights_is_norm(s->role) && s->ne[0] % q->group_size == 0 &&
           (s->ne[0] * q->bits) % 32 == 0;
}

static size_t align64(size_t b) { return (b + 63) & ~(size_t)63; }

static size_t synth_bytes(const struct weight_spec *s, const struct synth_quant *q, size_t *packed, size_t *scales)
{
    *packed = *scales = 0;
    if (!synth_quantizable(s, q)) return align64((size_t)weights_nelem(s) * 2);
    *packed = (size_t)s->ne[1] * (size_t)(s->ne[0] * q->bits / 8);
    *scales = (size_t)s->ne[1] * (size_t)(s->ne[0] / q->group_size) * (q->mode == QMODE_AFFINE ? 2 : 1);
    return align64(*packed) + align64(*scales) * (q->mode == QMODE_AFFINE ? 2 : 1);
}

/* Quantized weight i of a synthetic model at off in sh: random codes (bf16 noise read as packed
 * bits), scales that keep the values near SYNTH_STD (affine biases centre them). */
static void synth_quant_fill(struct model *m, struct tensor *t, const struct weight_spec *s, const struct synth_quant *q,
                             struct buffer *sb, size_t off, size_t packed, size_t scales, uint64_t tseed)
{
    char *base = (char *)sb->data;
    const int64_t in = s->ne[0], out = s->ne[1], ng = in / q->group_size;
    synth_fill_bf16_mt((uint16_t *)(base + off), packed / 2, tseed, 0, 0.0f, 1.0f, 0);
    struct qweight *qw = &m->qw[m->n_qw++];
    *qw = (struct qweight){ .mode = q->mode, .bits = q->bits, .group_size = q->group_size };
    size_t so = off + align64(packed);
    if (q->mode == QMODE_AFFINE) {
        const float sc = 4.0f * SYNTH_STD / (float)(1 << q->bits);
        synth_fill_bf16_mt((uint16_t *)(base + so), scales / 2, tseed + 1, 0, sc, sc / 8, 0);
        synth_fill_bf16_mt((uint16_t *)(base + so + align64(scales)), scales / 2, tseed + 2, 0,
                           -sc * (float)(1 << (q->bits - 1)), sc / 8, 0);
        qw->scales = tensor_2d(DTYPE_BF16, ng, out, sb, so);
        qw->biases = tensor_2d(DTYPE_BF16, ng, out, sb, so + align64(scales));
    } else {
        // E8M0 2^-7 (elements up to 6) or 2^-13 (up to 448); E4M3 0x10 = 2^-5
        memset(base + so, q->mode == QMODE_NVFP4 ? 0x10 : q->mode == QMODE_MXFP8 ? 114 : 120, scales);
        qw->scales = tensor_2d(DTYPE_U8, ng, out, sb, so);
    }
    struct tensor words = tensor_2d(DTYPE_U32, in * q->bits / 32, out, sb, off);
    *t = qweight_tensor(qw, &words, in);
}

enum status model_synthesize_on(const char *config_json_path, uint64_t seed, struct backend *be, struct model **out)
{
    return model_synthesize_quant(config_json_path, seed, be, NULL, out);
}

enum status model_synthesize_quant(const char *config_json_path, uint64_t seed, struct backend *be,
                                   const struct synth_quant *q, struct model **out)
{
    *out = NULL;
    if (q && !qweight_supported(q->mode, q->bits, q->group_size)) {
        LOG_ERR("%s: cannot synthesize %s %d-bit group %d weights: supported are %s", config_json_path,
                qmode_name(q->mode), q->bits, q->group_size, qweight_supported_list());
        return STATUS_EINVAL;
    }
    double t0 = clock_now_s();
    char *text;
    size_t len;
    enum status st = file_read_all(config_json_path, &text, &len);
    if (st != STATUS_OK) return st;
    struct hparams hp;
    struct arch_features f;
    const struct arch *a;
    st = config_parse(config_json_path, text, len, NULL, 0, &hp, &f, &a);
    free(text);
    if (st != STATUS_OK) return st;
    struct weight_spec *plan;
    int n = weights_plan(a, &hp, &f, &plan);
    size_t total = 0, pk, sc;
    int n_quant = 0;
    for (int i = 0; i < n; i++) {
        total += synth_bytes(&plan[i], q, &pk, &sc);   // 64-byte aligned tensors (vector loads, host and device)
        n_quant += synth_quantizable(&plan[i], q);
    }
    bool on_device = be && be->ops->fill_synthetic && !q;   // quantized: host memory, then model_prepare
    const double gib = (double)(1ull << 30);
    struct buffer *dev = NULL;
    void *data = NULL;
    if (on_device) {
        if (be->ops->mem_info) {
            size_t free_b = 0, total_b = 0;
            be->ops->mem_info(be, &free_b, &total_b);
            if (total > free_b) {
                LOG_ERR("%s: synthetic weights need %.2f GiB of %s memory but only %.2f of %.2f GiB are free "
                        "(a smaller config, or a larger device)", config_json_path, (double)total / gib,
                        be->ops->name, (double)free_b / gib, (double)total_b / gib);
                free(plan);
                return STATUS_ENOMEM;
            }
        }
        if ((st = be->ops->buffer_new(be, total ? total : 64, &dev)) != STATUS_OK) {
            LOG_ERR("%s: cannot allocate %.2f GiB of synthetic weights on %s", config_json_path, (double)total / gib,
                    be->ops->name);
            free(plan);
            return st;
        }
        CHECK(dev->owner == be, "%s: buffer_new must set the buffer's owner", be->ops->name);
    } else if (posix_memalign(&data, 64, total ? total : 64) != 0) {
        LOG_ERR("%s: cannot allocate %zu bytes of synthetic weights", config_json_path, total);
        free(plan);
        return STATUS_ENOMEM;
    }
    struct model_file *mf = xcalloc(1, sizeof *mf);
    mf->shards = xcalloc(1, sizeof *mf->shards);
    mf->n_shards = 1;
    mf->extra = plan;   // tensor names point into the plan
    struct st_shard *sh = &mf->shards[0];
    sh->path = xstrdup(on_device ? "(synthetic, device)" : "(synthetic)");
    sh->map = data;
    sh->size = total;
    sh->owned = !on_device;
    sh->buf = (struct buffer){ .kind = BUF_HOST, .data = data, .bytes = total };
    struct model *m = model_alloc(&hp, &f, a);
    m->files = mf;
    m->dir = xstrdup(config_json_path);
    m->dev_weights = dev;
    if (n_quant) m->qw = xcalloc((size_t)n_quant, sizeof *m->qw);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const struct weight_spec *s = &plan[i];
        struct tensor *t = weights_slot(m, s->role, s->layer, s->expert);
        const size_t bytes = synth_bytes(s, q, &pk, &sc);
        if (synth_quantizable(s, q)) {
            synth_quant_fill(m, t, s, q, &sh->buf, off, pk, sc, synth_tensor_seed(seed, s->name));
            t->name = s->name;
            off += bytes;
            continue;
        }
        *t = tensor_make(DTYPE_BF16, s->n_dims, s->ne, on_device ? dev : &sh->buf, off);
        t->name = s->name;
        size_t ne = (size_t)weights_nelem(s);
        float base = weights_synth_base(s->role, &f);
        uint64_t tseed = synth_tensor_seed(seed, s->name);
        if (on_device) be->ops->fill_synthetic(be, t, tseed, base, SYNTH_STD);
        else synth_fill_bf16_mt((uint16_t *)((char *)data + off), ne, tseed, 0, base, SYNTH_STD, 0);
        off += bytes;
    }
    if (on_device && (st = be->ops->sync(be)) != STATUS_OK) {
        LOG_ERR("%s: filling synthetic weights on %s failed", config_json_path, be->ops->name);
        model_free(m);
        return st;
    }
    if (hp.tie_embed) m->lm_head = m->tok_embed;
    m->has_mtp = hp.n_mtp_layers > 0;
    if ((st = weights_repack_hybrid(m, on_device)) != STATUS_OK) {
        model_free(m);
        return st;
    }
    model_count(m);
    LOG_INFO("%s: synthetic %s (seed %llu), %d layers, %.2f B parameters, %.2f GiB of weights in %s memory, %.1f s",
             config_json_path, hp.arch, (unsigned long long)seed, hp.n_layers, (double)m->n_params / 1e9,
             (double)m->weight_bytes / gib, on_device ? be->ops->name : "host", clock_now_s() - t0);
    *out = m;
    return STATUS_OK;
}
