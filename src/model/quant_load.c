/* quant_load: config.json's MLX quantization block and the binding of weight/scales/biases
 * triples. See quant_load.h; the rules are those of mlx_lm/utils.py::load_model (spec 4). */
#include "model/quant_load.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

struct quant_override {
    char *path;           // MLX module path, e.g. "model.layers.0.mlp.gate"
    bool  quantize;       // false: `"path": false`
    bool  has_mode, has_bits, has_group;
    enum qmode mode;
    int   bits, group_size;   // 0 with has_*: null (the mode's default)
};

struct quant_cfg {
    char                  *label;
    enum qmode             mode;
    int                    bits, group_size;   // resolved top level
    struct quant_override *ov;
    int                    n_ov;
};

/* ==== Parsing ==== */

/* Reads an optional int-or-null key: *has true when present; *v 0 for null. */
static enum status opt_int(const char *label, const char *where, const json_t *o, const char *key, bool *has, int *v)
{
    const json_t *j = json_object_get(o, key);
    *has = j != NULL;
    *v = 0;
    if (!j || json_is_null(j)) return STATUS_OK;
    if (!json_is_integer(j) || json_integer_value(j) <= 0 || json_integer_value(j) > 1024) {
        LOG_ERR("%s: quantization%s%s: \"%s\" must be a positive integer or null", label, where[0] ? " " : "", where, key);
        return STATUS_EFORMAT;
    }
    *v = (int)json_integer_value(j);
    return STATUS_OK;
}

static enum status opt_mode(const char *label, const char *where, const json_t *o, bool *has, enum qmode *m)
{
    const json_t *j = json_object_get(o, "mode");
    *has = j != NULL && !json_is_null(j);
    *m = QMODE_AFFINE;
    if (!*has) return STATUS_OK;
    int v = json_is_string(j) ? qmode_parse(json_string_value(j)) : -1;
    if (v < 0) {
        LOG_ERR("%s: quantization%s%s: mode %s is not supported (supported: %s)", label, where[0] ? " " : "", where,
                json_is_string(j) ? json_string_value(j) : "(not a string)", qweight_supported_list());
        return STATUS_EUNSUPPORTED;
    }
    *m = (enum qmode)v;
    return STATUS_OK;
}

static bool is_mlx_block(const json_t *b)
{
    return json_is_object(b) && (json_object_get(b, "bits") || json_object_get(b, "group_size")) &&
           !json_object_get(b, "quant_method");
}

enum status quant_cfg_parse(const char *label, const void *root_json, struct quant_cfg **out)
{
    *out = NULL;
    const json_t *root = root_json;
    const json_t *blk = json_object_get(root, "quantization");
    if (!blk) {
        const json_t *alt = json_object_get(root, "quantization_config");
        if (alt && is_mlx_block(alt)) blk = alt;
        else if (alt && json_object_get(alt, "quant_method")) {
            const json_t *qm = json_object_get(alt, "quant_method");
            LOG_ERR("%s: quantization_config.quant_method %s is not an MLX checkpoint; cairn loads MLX-format "
                    "quantization (%s)", label, json_is_string(qm) ? json_string_value(qm) : "?", qweight_supported_list());
            return STATUS_EUNSUPPORTED;
        }
    }
    if (!blk) return STATUS_OK;
    if (!json_is_object(blk)) {
        LOG_ERR("%s: \"quantization\" must be an object", label);
        return STATUS_EFORMAT;
    }
    struct quant_cfg *qc = xcalloc(1, sizeof *qc);
    qc->label = xstrdup(label);
    bool has_b, has_g, has_m;
    enum status st;
    if ((st = opt_mode(label, "", blk, &has_m, &qc->mode)) ||
        (st = opt_int(label, "", blk, "bits", &has_b, &qc->bits)) ||
        (st = opt_int(label, "", blk, "group_size", &has_g, &qc->group_size)))
        goto fail;
    int dg, db;
    qmode_defaults(qc->mode, &dg, &db);
    if (!qc->bits) qc->bits = db;
    if (!qc->group_size) qc->group_size = dg;
    if (!qweight_supported(qc->mode, qc->bits, qc->group_size)) {
        LOG_ERR("%s: quantization: %s with %d bits and group size %d is not supported (supported: %s)", label,
                qmode_name(qc->mode), qc->bits, qc->group_size, qweight_supported_list());
        st = STATUS_EUNSUPPORTED;
        goto fail;
    }
    qc->ov = xcalloc(json_object_size(blk) + 1, sizeof *qc->ov);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)blk, key, v) {
        if (!strcmp(key, "bits") || !strcmp(key, "group_size") || !strcmp(key, "mode")) continue;
        struct quant_override *o = &qc->ov[qc->n_ov++];
        o->path = xstrdup(key);
        if (json_is_boolean(v)) {
            o->quantize = json_is_true(v);
            continue;
        }
        if (!json_is_object(v)) {
            LOG_ERR("%s: quantization override %s must be an object, true or false", label, key);
            st = STATUS_EFORMAT;
            goto fail;
        }
        o->quantize = true;
        if ((st = opt_mode(label, key, v, &o->has_mode, &o->mode)) ||
            (st = opt_int(label, key, v, "bits", &o->has_bits, &o->bits)) ||
            (st = opt_int(label, key, v, "group_size", &o->has_group, &o->group_size)))
            goto fail;
    }
    *out = qc;
    return STATUS_OK;
fail:
    quant_cfg_free(qc);
    return st;
}

enum status quant_cfg_load(const char *dir, struct quant_cfg **out)
{
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        LOG_ERR("%s:%d: %s", path, err.line, err.text);
        return STATUS_EFORMAT;
    }
    enum status st = quant_cfg_parse(path, root, out);
    json_decref(root);
    return st;
}

void quant_cfg_free(struct quant_cfg *qc)
{
    if (!qc) return;
    for (int i = 0; i < qc->n_ov; i++) free(qc->ov[i].path);
    free(qc->ov);
    free(qc->label);
    free(qc);
}

void quant_cfg_default(const struct quant_cfg *qc, enum qmode *mode, int *bits, int *group_size)
{
    *mode = qc->mode;
    *bits = qc->bits;
    *group_size = qc->group_size;
}

int quant_cfg_n_overrides(const struct quant_cfg *qc) { return qc ? qc->n_ov : 0; }

/* ==== Binding ==== */

/* P of "P.weight" into buf; false if the name does not end in ".weight". */
static bool module_path(const char *weight_name, char *buf, size_t n)
{
    size_t len = strlen(weight_name);
    if (len < 8 || strcmp(weight_name + len - 7, ".weight") || len - 7 >= n) return false;
    memcpy(buf, weight_name, len - 7);
    buf[len - 7] = 0;
    return true;
}

static const struct st_tensor *sibling(const struct model_file *mf, const char *path, const char *what)
{
    char name[532];   // a path of up to 511 bytes, '.', the suffix
    snprintf(name, sizeof name, "%s.%s", path, what);
    return safetensors_find(mf, name);
}

bool quant_is_quantized(const struct model_file *mf, const struct st_tensor *t)
{
    char path[512];
    return module_path(t->name, path, sizeof path) && sibling(mf, path, "scales");
}

static const struct quant_override *find_override(const struct quant_cfg *qc, const char *path)
{
    for (int i = 0; qc && i < qc->n_ov; i++)
        if (!strcmp(qc->ov[i].path, path)) return &qc->ov[i];
    return NULL;
}

static void shape_str(char *buf, size_t n, int n_dims, const int64_t *outer_first)
{
    size_t used = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)outer_first[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

static enum status check_shape(const struct model_file *mf, const struct st_tensor *t, int n_outer,
                               const int64_t *outer, int64_t inner, const char *why)
{
    bool ok = t->n_dims == n_outer + 1 && t->shape[n_outer] == inner;
    for (int i = 0; ok && i < n_outer; i++) ok = t->shape[i] == outer[i];
    if (ok) return STATUS_OK;
    char got[128], want[128];
    int64_t w[4];
    for (int i = 0; i < n_outer; i++) w[i] = outer[i];
    w[n_outer] = inner;
    shape_str(got, sizeof got, t->n_dims, t->shape);
    shape_str(want, sizeof want, n_outer + 1, w);
    LOG_ERR("%s: tensor %s: shape %s but %s needs %s", mf->shards[t->shard].path, t->name, got, why, want);
    return STATUS_EFORMAT;
}

/* Scale bytes that MLX would decode to a non-number: E8M0 0xFF (+Inf), E4M3 0x7F / 0xFF (NaN). */
static enum status check_scale_bytes(const struct model_file *mf, const struct st_tensor *s, enum qmode m)
{
    const uint8_t *p = safetensors_data(mf, s);
    for (size_t i = 0; i < s->bytes; i++) {
        bool bad = m == QMODE_NVFP4 ? (p[i] & 0x7f) == 0x7f : p[i] == 0xff;
        if (bad) {
            LOG_ERR("%s: tensor %s: scale byte 0x%02x at element %zu decodes to %s in MLX; the checkpoint is "
                    "corrupt (or was quantized from non-finite weights)", mf->shards[s->shard].path, s->name, p[i], i,
                    m == QMODE_NVFP4 ? "NaN" : "+Inf");
            return STATUS_EFORMAT;
        }
    }
    return STATUS_OK;
}

enum status quant_bind(struct quant_cfg *qc, const struct model_file *mf, const struct st_tensor *t, int64_t in,
                       int n_outer, const int64_t *want_outer, struct qweight *q, struct tensor *out)
{
    const char *file = mf->shards[t->shard].path;
    char path[512];
    CHECK(n_outer >= 1 && n_outer <= 2, "quant_bind: %d outer dims", n_outer);
    if (!module_path(t->name, path, sizeof path)) {
        LOG_ERR("%s: tensor %s: quantized tensors must be named P.weight", file, t->name);
        return STATUS_EFORMAT;
    }
    const struct st_tensor *sc = sibling(mf, path, "scales"), *bi = sibling(mf, path, "biases");
    CHECK(sc, "quant_bind without %s.scales", path);
    if (!qc) {
        LOG_ERR("%s: tensor %s.scales is present but config.json has no \"quantization\" block", file, path);
        return STATUS_EFORMAT;
    }
    const struct quant_override *o = find_override(qc, path);
    if (o && !o->quantize) {
        LOG_ERR("%s: module %s is quantized in the weights but config.json's quantization says false", file, path);
        return STATUS_EFORMAT;
    }
    enum qmode mode = o ? (o->has_mode ? o->mode : QMODE_AFFINE) : qc->mode;
    int dg, db;
    qmode_defaults(mode, &dg, &db);
    int bits = o ? (o->bits ? o->bits : db) : qc->bits;
    int gs = o ? (o->group_size ? o->group_size : dg) : qc->group_size;
    if (!qweight_supported(mode, bits, gs)) {
        LOG_ERR("%s: module %s: %s with %d bits and group size %d is not supported (supported: %s)", file, path,
                qmode_name(mode), bits, gs, qweight_supported_list());
        return STATUS_EUNSUPPORTED;
    }
    if (t->dtype != DTYPE_U32) {
        LOG_ERR("%s: tensor %s: a quantized weight must be U32 (packed codes), not %s", file, t->name, dtype_name(t->dtype));
        return STATUS_EFORMAT;
    }
    if (in % gs) {
        LOG_ERR("%s: module %s: input dim %lld is not a multiple of the group size %d", file, path, (long long)in, gs);
        return STATUS_EFORMAT;
    }
    char why[160];
    snprintf(why, sizeof why, "%s %d-bit group %d of input dim %lld", qmode_name(mode), bits, gs, (long long)in);
    enum status st = check_shape(mf, t, n_outer, want_outer, in * bits / 32, why);
    if (st == STATUS_OK) st = check_shape(mf, sc, n_outer, want_outer, in / gs, why);
    if (st != STATUS_OK) return st;
    if (mode == QMODE_AFFINE) {
        if (sc->dtype != DTYPE_BF16 && sc->dtype != DTYPE_F16 && sc->dtype != DTYPE_F32) {
            LOG_ERR("%s: tensor %s: affine scales must be bf16, f16 or f32, not %s", file, sc->name, dtype_name(sc->dtype));
            return STATUS_EFORMAT;
        }
        if (!bi) {
            LOG_ERR("%s: tensor %s.biases missing (affine quantization needs scales and biases)", file, path);
            return STATUS_EFORMAT;
        }
        if (bi->dtype != sc->dtype) {
            LOG_ERR("%s: tensor %s: dtype %s but its scales are %s", file, bi->name, dtype_name(bi->dtype),
                    dtype_name(sc->dtype));
            return STATUS_EFORMAT;
        }
        if ((st = check_shape(mf, bi, n_outer, want_outer, in / gs, why)) != STATUS_OK) return st;
    } else {
        if (sc->dtype != DTYPE_U8) {
            LOG_ERR("%s: tensor %s: %s scales must be U8 (%s), not %s", file, sc->name, qmode_name(mode),
                    mode == QMODE_NVFP4 ? "E4M3" : "E8M0", dtype_name(sc->dtype));
            return STATUS_EFORMAT;
        }
        if (bi) {
            LOG_ERR("%s: tensor %s: %s has no biases; this checkpoint disagrees with its config", file, bi->name,
                    qmode_name(mode));
            return STATUS_EFORMAT;
        }
        if ((st = check_scale_bytes(mf, sc, mode)) != STATUS_OK) return st;
    }
    *q = (struct qweight){ .mode = mode, .bits = bits, .group_size = gs };
    struct tensor packed;
    if ((st = safetensors_view(mf, t, &packed)) || (st = safetensors_view(mf, sc, &q->scales))) return st;
    if (bi && (st = safetensors_view(mf, bi, &q->biases))) return st;
    *out = qweight_tensor(q, &packed, in);
    return STATUS_OK;
}

enum status quant_check_overrides(const struct quant_cfg *qc, const struct model_file *mf)
{
    for (int i = 0; qc && i < qc->n_ov; i++) {
        if (sibling(mf, qc->ov[i].path, "weight")) continue;
        LOG_ERR("%s: quantization override for module %s, which has no weight in the checkpoint", qc->label,
                qc->ov[i].path);
        return STATUS_EFORMAT;
    }
    return STATUS_OK;
}
