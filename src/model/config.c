/* config: config.json -> hparams. See config.h for the contract.
 *
 * Design note: Hugging Face saves only the config keys that differ from the base class defaults
 * for the generic ones (tie_word_embeddings, bos/eos ids, ...), so absent keys take the family's
 * defaults (struct arch), never a global guess. Every number is range-checked here, once, so the
 * loader and the forward pass can trust hparams (e.g. n_heads % n_kv_heads == 0, even head_dim).
 */
#include "model/config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "model/arch.h"
#include "text/pyjson.h"

#define MAX_VOCAB    (1 << 23)
#define MAX_D_MODEL  (1 << 17)
#define MAX_HEADS    1024
#define MAX_HEAD_DIM 1024
#define MAX_D_FF     (1 << 20)
#define MAX_POS      (1 << 26)

/* ==== Typed getters ==== */

enum status config_get_int(const json_t *cfg, const char *key, long long lo, long long hi, int *out)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return STATUS_OK;
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
    if (!(d == floor(d)) || d < (double)lo || d > (double)hi || d > INT_MAX || d < INT_MIN) {
        LOG_ERR("config: %s must be an integer in [%lld, %lld]", key, lo, hi);
        return STATUS_EFORMAT;
    }
    *out = (int)d;
    return STATUS_OK;
}

enum status config_get_float(const json_t *cfg, const char *key, float *out)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return STATUS_OK;
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || fabs(json_number_value(v)) > 3e38) {
        LOG_ERR("config: %s must be a finite number", key);
        return STATUS_EFORMAT;
    }
    *out = (float)json_number_value(v);
    return STATUS_OK;
}

enum status config_get_bool(const json_t *cfg, const char *key, bool *out)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) return STATUS_OK;
    if (!json_is_boolean(v)) {
        LOG_ERR("config: %s must be true or false", key);
        return STATUS_EFORMAT;
    }
    *out = json_is_true(v);
    return STATUS_OK;
}

enum status config_reject_true(const json_t *cfg, const char *arch, const char *key)
{
    if (json_is_true(json_object_get(cfg, key))) {
        LOG_ERR("config: %s = true is not supported for %s", key, arch);
        return STATUS_EUNSUPPORTED;
    }
    return STATUS_OK;
}

enum status config_layer_types(const json_t *cfg, struct hparams *hp, bool *found)
{
    *found = false;
    const json_t *lt = json_object_get(cfg, "layer_types");
    if (!lt || json_is_null(lt)) return STATUS_OK;
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)hp->n_layers) {
        LOG_ERR("config: layer_types must be a list of %d entries", hp->n_layers);
        return STATUS_EFORMAT;
    }
    for (int i = 0; i < hp->n_layers; i++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)i));
        if (s && !strcmp(s, "full_attention")) hp->layer_sliding[i] = false;
        else if (s && !strcmp(s, "sliding_attention")) hp->layer_sliding[i] = true;
        else {
            LOG_ERR("config: layer_types[%d] = %s is not supported for %s (supported: full_attention, "
                    "sliding_attention)", i, s ? s : "(not a string)", hp->arch);
            return STATUS_EUNSUPPORTED;
        }
    }
    *found = true;
    return STATUS_OK;
}

/* ==== RoPE ==== */

/* Parses one rope block (rope_scaling or rope_parameters or one of its per-layer-type entries). */
static enum status parse_rope(const json_t *o, const char *what, struct hparams *hp, struct rope_cfg *r)
{
    if (!json_is_object(o)) {
        LOG_ERR("config: %s must be an object", what);
        return STATUS_EFORMAT;
    }
    enum status st = config_get_float(o, "rope_theta", &r->theta);
    if (st != STATUS_OK) return st;
    const json_t *jt = json_object_get(o, "rope_type");
    if (!jt || json_is_null(jt)) jt = json_object_get(o, "type");
    const char *type = jt && !json_is_null(jt) ? json_string_value(jt) : "default";
    if (!type) {
        LOG_ERR("config: %s.rope_type must be a string", what);
        return STATUS_EFORMAT;
    }
    float prf = hp->partial_rotary;
    if ((st = config_get_float(o, "partial_rotary_factor", &prf)) != STATUS_OK) return st;
    hp->partial_rotary = prf;

    r->factor = 1.0f;
    r->orig_max_pos = 0;   // 0: not given (rope.c then uses max_position_embeddings)
    r->beta_fast = 32.0f;
    r->beta_slow = 1.0f;
    r->truncate = true;
    if (!strcmp(type, "default")) {
        r->scaling = ROPE_SCALING_NONE;
        return STATUS_OK;
    }
    if (!strcmp(type, "linear")) r->scaling = ROPE_SCALING_LINEAR;
    else if (!strcmp(type, "dynamic")) r->scaling = ROPE_SCALING_DYNAMIC;
    else if (!strcmp(type, "llama3")) r->scaling = ROPE_SCALING_LLAMA3;
    else if (!strcmp(type, "yarn")) r->scaling = ROPE_SCALING_YARN;
    else {
        LOG_ERR("config: %s type %s is not supported (supported: default, linear, dynamic, llama3, yarn)",
                what, type);
        return STATUS_EUNSUPPORTED;
    }
    r->factor = 0;
    if ((st = config_get_float(o, "factor", &r->factor)) ||
        (st = config_get_int(o, "original_max_position_embeddings", 1, MAX_POS, &r->orig_max_pos)) ||
        (st = config_get_float(o, "low_freq_factor", &r->low_freq_factor)) ||
        (st = config_get_float(o, "high_freq_factor", &r->high_freq_factor)) ||
        (st = config_get_float(o, "beta_fast", &r->beta_fast)) ||
        (st = config_get_float(o, "beta_slow", &r->beta_slow)) ||
        (st = config_get_float(o, "attention_factor", &r->attention_factor)) ||
        (st = config_get_float(o, "mscale", &r->mscale)) ||
        (st = config_get_float(o, "mscale_all_dim", &r->mscale_all_dim)) ||
        (st = config_get_bool(o, "truncate", &r->truncate)))
        return st;
    // transformers ignores original_max_position_embeddings for dynamic NTK (it warns) and grows
    // the base past max_position_embeddings; rope.c reads orig_max_pos > 0 as "given".
    if (r->scaling == ROPE_SCALING_DYNAMIC) r->orig_max_pos = 0;
    if (!(r->factor > 0)) {
        LOG_ERR("config: %s type %s needs factor > 0", what, type);
        return STATUS_EFORMAT;
    }
    if (r->scaling == ROPE_SCALING_LLAMA3 &&
        (!(r->low_freq_factor > 0) || !(r->high_freq_factor > r->low_freq_factor) ||
         !json_object_get(o, "original_max_position_embeddings"))) {
        LOG_ERR("config: %s type llama3 needs original_max_position_embeddings and "
                "0 < low_freq_factor < high_freq_factor", what);
        return STATUS_EFORMAT;
    }
    if (r->scaling == ROPE_SCALING_YARN && !(r->beta_fast > r->beta_slow && r->beta_slow > 0)) {
        LOG_ERR("config: %s type yarn needs beta_fast > beta_slow > 0", what);
        return STATUS_EFORMAT;
    }
    if (r->attention_factor < 0 || r->mscale < 0 || r->mscale_all_dim < 0) {
        LOG_ERR("config: %s: attention_factor, mscale and mscale_all_dim must be >= 0", what);
        return STATUS_EFORMAT;
    }
    return STATUS_OK;
}

/* rope_theta + rope_scaling (classic) or rope_parameters (transformers 5, maybe per layer type). */
static enum status parse_rope_all(const json_t *cfg, const struct arch *a, struct hparams *hp)
{
    hp->rope.theta = a->rope_theta_default;
    hp->partial_rotary = 1.0f;
    enum status st = config_get_float(cfg, "rope_theta", &hp->rope.theta);
    if (st == STATUS_OK) st = config_get_float(cfg, "partial_rotary_factor", &hp->partial_rotary);
    if (st != STATUS_OK) return st;
    float theta = hp->rope.theta;
    const json_t *rp = json_object_get(cfg, "rope_parameters");
    const json_t *rs = json_object_get(cfg, "rope_scaling");
    hp->rope.factor = 1.0f;
    if (rp && !json_is_null(rp)) {
        const json_t *full = json_is_object(rp) ? json_object_get(rp, "full_attention") : NULL;
        const json_t *slide = json_is_object(rp) ? json_object_get(rp, "sliding_attention") : NULL;
        if (full || slide) {
            if (full && (st = parse_rope(full, "rope_parameters.full_attention", hp, &hp->rope))) return st;
            if (slide) {
                hp->rope_local.theta = 0;
                if ((st = parse_rope(slide, "rope_parameters.sliding_attention", hp, &hp->rope_local))) return st;
            }
        } else if ((st = parse_rope(rp, "rope_parameters", hp, &hp->rope)) != STATUS_OK) {
            return st;
        }
    } else if (rs && !json_is_null(rs)) {
        if ((st = parse_rope(rs, "rope_scaling", hp, &hp->rope)) != STATUS_OK) return st;
        hp->rope.theta = theta;
    }
    if (!(hp->rope.theta > 1.0f) || hp->rope_local.theta < 0 ||
        (hp->rope_local.theta != 0 && !(hp->rope_local.theta > 1.0f))) {
        LOG_ERR("config: rope_theta must be > 1");
        return STATUS_EFORMAT;
    }
    if (!(hp->partial_rotary > 0 && hp->partial_rotary <= 1)) {
        LOG_ERR("config: partial_rotary_factor must be in (0, 1]");
        return STATUS_EFORMAT;
    }
    return STATUS_OK;
}

/* ==== Token ids ==== */

static void eos_add(struct hparams *hp, long long id)
{
    if (id < 0 || id >= hp->n_vocab) {
        LOG_WARN("config: eos_token_id %lld outside the vocabulary (%d): ignored", id, hp->n_vocab);
        return;
    }
    for (int i = 0; i < hp->n_eos; i++)
        if (hp->eos_ids[i] == id) return;
    if (hp->n_eos == MODEL_MAX_EOS) {
        LOG_WARN("config: more than %d eos_token_id values: %lld ignored", MODEL_MAX_EOS, id);
        return;
    }
    hp->eos_ids[hp->n_eos++] = (int)id;
}

static enum status parse_eos(const json_t *o, const char *label, struct hparams *hp)
{
    const json_t *e = json_object_get(o, "eos_token_id");
    if (!e || json_is_null(e)) return STATUS_OK;
    if (json_is_integer(e)) {
        eos_add(hp, json_integer_value(e));
        return STATUS_OK;
    }
    if (json_is_array(e)) {
        size_t i;
        const json_t *v;
        json_array_foreach(e, i, v) {
            if (!json_is_integer(v)) goto bad;
            eos_add(hp, json_integer_value(v));
        }
        return STATUS_OK;
    }
bad:
    LOG_ERR("%s: eos_token_id must be an integer or a list of integers", label);
    return STATUS_EFORMAT;
}

/* generation_config.json's sampling fields into hp->gen. A value out of the range the server
 * accepts in a request is logged and left out (the model still loads: it is only a default). */
static void parse_gen_defaults(const json_t *gen, struct hparams *hp)
{
    static const struct { const char *key; unsigned bit; double lo, hi; bool lo_open; } fields[] = {
        { "temperature", GEN_TEMPERATURE, 0, 2, false },   { "top_p", GEN_TOP_P, 0, 1, true },
        { "top_k", GEN_TOP_K, 0, 1 << 30, false },         { "min_p", GEN_MIN_P, 0, 1, false },
        { "repetition_penalty", GEN_REPETITION_PENALTY, 0.01, 10, false },
    };
    struct gen_defaults *g = &hp->gen;
    const json_t *ds = json_object_get(gen, "do_sample");
    if (json_is_false(ds)) {   // greedy whatever else it says, as transformers' generate
        g->set = GEN_TEMPERATURE;
        g->temperature = 0.0f;
        return;
    }
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const json_t *v = json_object_get(gen, fields[i].key);
        if (!v || json_is_null(v)) continue;
        if (!json_is_number(v)) {
            LOG_WARN("generation_config.json: %s is not a number: not used as a default", fields[i].key);
            continue;
        }
        double x = json_number_value(v);
        if (!(x >= fields[i].lo && x <= fields[i].hi) || (fields[i].lo_open && x == fields[i].lo) ||
            (fields[i].bit == GEN_TOP_K && x != floor(x))) {
            LOG_WARN("generation_config.json: %s %g is outside what a request may send: not used as a default",
                     fields[i].key, x);
            continue;
        }
        g->set |= fields[i].bit;
        switch (fields[i].bit) {
        case GEN_TEMPERATURE: g->temperature = (float)x; break;
        case GEN_TOP_P: g->top_p = (float)x; break;
        case GEN_TOP_K: g->top_k = (int)x; break;
        case GEN_MIN_P: g->min_p = (float)x; break;
        default: g->repetition_penalty = (float)x; break;
        }
    }
}

void gen_defaults_describe(const struct gen_defaults *g, char *buf, size_t size)
{
    const struct { unsigned bit; const char *name; double v; } f[] = {
        { GEN_TEMPERATURE, "temperature", g->temperature }, { GEN_TOP_K, "top_k", g->top_k },
        { GEN_TOP_P, "top_p", g->top_p }, { GEN_MIN_P, "min_p", g->min_p },
        { GEN_REPETITION_PENALTY, "repetition_penalty", g->repetition_penalty },
    };
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof f / sizeof f[0] && n < size; i++)
        if (g->set & f[i].bit) n += (size_t)snprintf(buf + n, size - n, " %s %g", f[i].name, f[i].v);
}

static enum status parse_bos(const json_t *o, const char *label, struct hparams *hp)
{
    const json_t *b = json_object_get(o, "bos_token_id");
    if (!b || json_is_null(b)) return STATUS_OK;
    if (json_is_array(b)) b = json_array_get(b, 0);   // rare, but seen: a one-element list
    if (!json_is_integer(b)) {
        LOG_ERR("%s: bos_token_id must be an integer", label);
        return STATUS_EFORMAT;
    }
    long long id = json_integer_value(b);
    if (id < 0 || id >= hp->n_vocab) LOG_WARN("%s: bos_token_id %lld outside the vocabulary: ignored", label, id);
    else hp->bos_id = (int)id;
    return STATUS_OK;
}

/* ==== Main parse ==== */

static enum status parse_act(const json_t *cfg, struct arch_features *f)
{
    const json_t *v = json_object_get(cfg, "hidden_activation");
    if (!v || json_is_null(v)) v = json_object_get(cfg, "hidden_act");
    if (!v || json_is_null(v)) return STATUS_OK;
    const char *s = json_string_value(v);
    if (s && (!strcmp(s, "silu") || !strcmp(s, "swish"))) f->act = ACT_SILU;
    else if (s && (!strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_tanh"))) f->act = ACT_GELU_TANH;
    else {
        LOG_ERR("config: activation %s is not supported (supported: silu, gelu_pytorch_tanh)",
                s ? s : "(not a string)");
        return STATUS_EUNSUPPORTED;
    }
    return STATUS_OK;
}

static enum dtype parse_dtype(const json_t *cfg)
{
    const json_t *v = json_object_get(cfg, "dtype");
    if (!json_is_string(v)) v = json_object_get(cfg, "torch_dtype");
    const char *s = json_string_value(v);
    if (!s) return DTYPE_BF16;
    if (!strcmp(s, "float32")) return DTYPE_F32;
    if (!strcmp(s, "float16")) return DTYPE_F16;
    if (strcmp(s, "bfloat16")) LOG_WARN("config: dtype %s: treated as bfloat16 (informational only)", s);
    return DTYPE_BF16;
}

static enum status parse_dims(const json_t *cfg, struct hparams *hp)
{
    enum status st;
    hp->n_vocab = hp->d_model = hp->n_layers = hp->n_heads = 0;
    hp->n_kv_heads = hp->head_dim = -1;
    hp->norm_eps = 1e-6f;
    hp->max_pos = 2048;
    if ((st = config_get_int(cfg, "vocab_size", 1, MAX_VOCAB, &hp->n_vocab)) ||
        (st = config_get_int(cfg, "hidden_size", 1, MAX_D_MODEL, &hp->d_model)) ||
        (st = config_get_int(cfg, "num_hidden_layers", 1, MODEL_MAX_LAYERS, &hp->n_layers)) ||
        (st = config_get_int(cfg, "num_attention_heads", 1, MAX_HEADS, &hp->n_heads)) ||
        (st = config_get_int(cfg, "num_key_value_heads", 1, MAX_HEADS, &hp->n_kv_heads)) ||
        (st = config_get_int(cfg, "head_dim", 1, MAX_HEAD_DIM, &hp->head_dim)) ||
        (st = config_get_int(cfg, "intermediate_size", 0, MAX_D_FF, &hp->d_ff)) ||
        (st = config_get_int(cfg, "max_position_embeddings", 1, MAX_POS, &hp->max_pos)) ||
        (st = config_get_float(cfg, "rms_norm_eps", &hp->norm_eps)))
        return st;
    const char *missing = !hp->n_vocab ? "vocab_size" : !hp->d_model ? "hidden_size"
                        : !hp->n_layers ? "num_hidden_layers" : !hp->n_heads ? "num_attention_heads" : NULL;
    if (missing) {
        LOG_ERR("config: %s is missing", missing);
        return STATUS_EFORMAT;
    }
    if (hp->n_kv_heads < 0) hp->n_kv_heads = hp->n_heads;
    if (hp->n_heads % hp->n_kv_heads) {
        LOG_ERR("config: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                hp->n_heads, hp->n_kv_heads);
        return STATUS_EFORMAT;
    }
    if (hp->head_dim < 0) {
        if (hp->d_model % hp->n_heads) {
            LOG_ERR("config: hidden_size %d is not a multiple of num_attention_heads %d (and no head_dim)",
                    hp->d_model, hp->n_heads);
            return STATUS_EFORMAT;
        }
        hp->head_dim = hp->d_model / hp->n_heads;
    }
    if (hp->head_dim % 2 || hp->head_dim > MAX_HEAD_DIM) {
        LOG_ERR("config: head_dim %d must be even and at most %d", hp->head_dim, MAX_HEAD_DIM);
        return STATUS_EFORMAT;
    }
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1)) {
        LOG_ERR("config: rms_norm_eps must be in (0, 1)");
        return STATUS_EFORMAT;
    }
    return STATUS_OK;
}

enum status config_parse(const char *label, const char *text, size_t len, const char *gen_text,
                         size_t gen_len, struct hparams *hp, struct arch_features *f,
                         const struct arch **arch_out)
{
    json_error_t err;
    json_t *root = pyjson_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    json_t *gen = NULL;
    enum status st = STATUS_OK;
    if (!root) {
        LOG_ERR("%s: bad JSON at line %d column %d: %s", label, err.line, err.column, err.text);
        return STATUS_EFORMAT;
    }
    if (!json_is_object(root)) {
        LOG_ERR("%s: not a JSON object", label);
        st = STATUS_EFORMAT;
        goto out;
    }
    const json_t *archs = json_object_get(root, "architectures");
    const char *name = json_string_value(json_array_get(archs, 0));
    char supported[512];
    arch_list(supported, sizeof supported);
    if (!name) {
        LOG_ERR("%s: no \"architectures\" list (supported: %s)", label, supported);
        st = STATUS_EFORMAT;
        goto out;
    }
    const struct arch *a = arch_find(name);
    if (!a) {
        LOG_ERR("%s: architecture %.64s is not supported (supported: %s)", label, name, supported);
        st = STATUS_EUNSUPPORTED;
        goto out;
    }
    // MLX-format blocks (bits / group_size, no quant_method) are bound by model/quant_load.c
    const json_t *quant = json_object_get(root, "quantization_config");
    if (quant && !json_is_null(quant) && (json_object_get(quant, "quant_method") || !json_object_get(quant, "bits"))) {
        const char *qm = json_string_value(json_object_get(quant, "quant_method"));
        LOG_ERR("%s: quantized checkpoint (quant_method %s) is not supported yet (supported: bf16, f16, f32 weights and MLX-format quantization)",
                label, qm ? qm : "unknown");
        st = STATUS_EUNSUPPORTED;
        goto out;
    }
    const json_t *cfg = root;
    if (a->sub_config) {
        cfg = json_object_get(root, a->sub_config);
        if (!json_is_object(cfg)) {
            LOG_ERR("%s: %s needs a \"%s\" object", label, name, a->sub_config);
            st = STATUS_EFORMAT;
            goto out;
        }
    }
    memset(hp, 0, sizeof *hp);
    snprintf(hp->arch, sizeof hp->arch, "%s", a->name);
    *f = a->f;
    hp->bos_id = -1;
    if ((st = parse_dims(cfg, hp)) || (st = parse_act(cfg, f)) || (st = parse_rope_all(cfg, a, hp)))
        goto out;
    hp->dtype = parse_dtype(a->sub_config ? root : cfg);
    hp->tie_embed = a->tie_default;
    if (a->sub_config && (st = config_get_bool(root, "tie_word_embeddings", &hp->tie_embed))) goto out;
    if ((st = config_get_bool(cfg, "tie_word_embeddings", &hp->tie_embed))) goto out;
    if ((st = parse_bos(cfg, label, hp)) || (st = parse_eos(cfg, label, hp))) goto out;
    if (a->sub_config && ((st = parse_bos(root, label, hp)) || (st = parse_eos(root, label, hp)))) goto out;
    if (gen_text) {
        gen = pyjson_loadb(gen_text, gen_len, 0, &err);
        if (!gen || !json_is_object(gen)) {
            LOG_ERR("%s: generation_config.json: bad JSON at line %d column %d: %s", label, err.line,
                    err.column, gen ? "not an object" : err.text);
            st = STATUS_EFORMAT;
            goto out;
        }
        if ((st = parse_eos(gen, "generation_config.json", hp))) goto out;
        if (hp->bos_id < 0 && (st = parse_bos(gen, "generation_config.json", hp))) goto out;
        parse_gen_defaults(gen, hp);
    }
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    for (int i = 0; i < hp->n_layers; i++) hp->layer_moe[i] = false;
    if (a->read_hparams && (st = a->read_hparams(cfg, root, hp, f))) goto out;
    if (hp->rope_local.theta == 0) hp->rope_local = hp->rope;

    bool any_sliding = false, any_dense = false;
    for (int i = 0; i < hp->n_layers; i++) {
        any_sliding |= hp->layer_sliding[i];
        any_dense |= !hp->layer_moe[i];
    }
    if (any_sliding && hp->sliding_window <= 0) {
        if ((st = config_get_int(cfg, "sliding_window", 1, INT_MAX, &hp->sliding_window))) goto out;
        if (hp->sliding_window <= 0) {
            LOG_ERR("%s: sliding-window layers need sliding_window > 0", label);
            st = STATUS_EFORMAT;
            goto out;
        }
    }
    if (!any_sliding) hp->sliding_window = 0;
    if (any_dense && hp->d_ff <= 0) {
        LOG_ERR("%s: intermediate_size must be > 0", label);
        st = STATUS_EFORMAT;
        goto out;
    }
    if (arch_out) *arch_out = a;
out:
    json_decref(gen);
    json_decref(root);
    return st;
}

enum status config_load(const char *dir, struct hparams *hp, struct arch_features *f, const struct arch **arch)
{
    struct strbuf p = {0};
    strbuf_printf(&p, "%s/config.json", dir);
    char *text = NULL, *gen = NULL;
    size_t len = 0, gen_len = 0;
    enum status st = file_read_all(p.data, &text, &len);
    if (st == STATUS_OK) {
        struct strbuf g = {0};
        strbuf_printf(&g, "%s/generation_config.json", dir);
        FILE *fp = fopen(g.data, "rb");
        if (fp) {
            fclose(fp);
            st = file_read_all(g.data, &gen, &gen_len);
        }
        strbuf_free(&g);
    }
    if (st == STATUS_OK) {
        st = config_parse(p.data, text, len, gen, gen_len, hp, f, arch);
        if (st != STATUS_OK) LOG_ERR("%s: not usable (%s)", p.data, status_str(st));   // the file, for the detail above
    }
    free(text);
    free(gen);
    strbuf_free(&p);
    return st;
}
