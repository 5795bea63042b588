/* quantize: HF checkpoint -> MLX-format quantized checkpoint. See quantize.h.
 *
 * Design note: the whole output is planned before a byte is written (jobs -> output tensors ->
 * shards -> headers), because a safetensors header must precede its data; then each job reads
 * its source rows from the mmapped input, quantizes them and pwrite()s its 1-3 output tensors at
 * their planned offsets. Peak memory is one output tensor.
 */
#include "model/quantize.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/mem.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/safetensors.h"

#define DEFAULT_SHARD_BYTES 5000000000ull   // mlx-lm's max_file_size_gb = 5

struct job {
    char        path[256];       // module path (quantized) or tensor name (copied)
    bool        quant;
    enum qmode  mode;
    int         bits, group_size;
    bool        stacked;          // experts stacked into [E, rows, in]
    int64_t     n_exp;            // experts (1 if not stacked)
    int64_t     rows, in;         // per expert
    const struct st_tensor **src; // [n_exp] source tensors (the same one for fused experts)
    size_t     *src_off;          // [n_exp] byte offset of the expert's row 0 in its source
    const struct st_tensor *copy; // copied tensor (not stacked)
    char        name[256];        // its output name (mlx-lm's, after renames)
    bool        plus_one;         // a (1 + w) norm that mlx-lm stores shifted
    bool        keep_dtype;       // not cast to the output dtype (Qwen3.5's A_log)
    enum dtype  out_dt;           // float outputs (copies, affine scales / biases)
    int         out[3];           // output tensor indices: weight, scales, biases (-1: none)
};

struct out_tensor {
    char       name[272];
    enum dtype dt;
    int        n_dims;
    int64_t    shape[ST_MAX_DIMS];
    size_t     bytes;
    int        shard;
    size_t     off;               // in the shard's data region
};

struct plan {
    struct job        *jobs;
    int                n_jobs, cap_jobs;
    struct out_tensor *outs;
    int                n_outs, cap_outs;
};

static const char *st_dtype_name(enum dtype dt)
{
    switch (dt) {
    case DTYPE_F32: return "F32";
    case DTYPE_F16: return "F16";
    case DTYPE_BF16: return "BF16";
    case DTYPE_I32: return "I32";
    case DTYPE_I64: return "I64";
    case DTYPE_U8: return "U8";
    case DTYPE_U32: return "U32";
    default: CHECK(0, "no safetensors name for %s", dtype_name(dt));
    }
}

static bool is_float(enum dtype dt) { return dt == DTYPE_F32 || dt == DTYPE_F16 || dt == DTYPE_BF16; }

/* ==== Planning ==== */

static struct job *job_new(struct plan *p)
{
    if (p->n_jobs == p->cap_jobs) {
        p->cap_jobs = p->cap_jobs ? 2 * p->cap_jobs : 256;
        p->jobs = xrealloc(p->jobs, sizeof *p->jobs * (size_t)p->cap_jobs);
    }
    struct job *j = &p->jobs[p->n_jobs++];
    memset(j, 0, sizeof *j);
    j->out[0] = j->out[1] = j->out[2] = -1;
    return j;
}

static int out_new(struct plan *p, const char *name, const char *suffix, enum dtype dt, int n_dims, const int64_t *shape)
{
    if (p->n_outs == p->cap_outs) {
        p->cap_outs = p->cap_outs ? 2 * p->cap_outs : 256;
        p->outs = xrealloc(p->outs, sizeof *p->outs * (size_t)p->cap_outs);
    }
    struct out_tensor *o = &p->outs[p->n_outs];
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s%s", name, suffix);
    o->dt = dt;
    o->n_dims = n_dims;
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) {
        o->shape[i] = shape[i];
        n *= (size_t)shape[i];
    }
    o->bytes = n * dtype_size(dt);
    return p->n_outs++;
}

/* Splits "X.mlp.experts.E.P.weight" (per expert) or "X.mlp.experts.P" (fused) into the stacked
 * module path "X.mlp.switch_mlp.P'", the expert index (-1 for fused) and the projection. */
static bool expert_name(const char *name, char *path, size_t n, int *expert, char *proj, size_t pn)
{
    const char *at = strstr(name, ".mlp.experts.");
    if (!at) return false;
    const char *rest = at + strlen(".mlp.experts.");
    int pre = (int)(at - name) + 4;   // keeps ".mlp"
    if (rest[0] >= '0' && rest[0] <= '9') {
        char *end;
        long e = strtol(rest, &end, 10);
        size_t len = strlen(end);
        if (*end != '.' || len < 8 || strcmp(end + len - 7, ".weight") || e < 0 || e > 100000) return false;
        snprintf(proj, pn, "%.*s", (int)(len - 8), end + 1);
        *expert = (int)e;
    } else {
        if (strcmp(rest, "gate_up_proj") && strcmp(rest, "down_proj")) return false;
        snprintf(proj, pn, "%s", rest);
        *expert = -1;
    }
    snprintf(path, n, "%.*s.switch_mlp", pre, name);
    return true;
}

static struct job *find_stacked(struct plan *p, const char *path)
{
    for (int i = p->n_jobs - 1; i >= 0; i--)
        if (p->jobs[i].stacked && !strcmp(p->jobs[i].path, path)) return &p->jobs[i];
    return NULL;
}

static enum status add_expert(struct plan *p, const struct model_file *mf, const struct st_tensor *t,
                              const char *base, int expert, const char *proj, int64_t n_experts)
{
    const char *file = mf->shards[t->shard].path;
    size_t ds = dtype_size(t->dtype);
    if (expert < 0) {   // fused: gate_up_proj [E, 2I, H] -> gate_proj, up_proj; down_proj [E, H, I]
        if (t->n_dims != 3 || (!strcmp(proj, "gate_up_proj") && t->shape[1] % 2)) {
            LOG_ERR("%s: tensor %s: fused experts must be [E, 2I, H] / [E, H, I]", file, t->name);
            return STATUS_EFORMAT;
        }
        bool gu = !strcmp(proj, "gate_up_proj");
        int64_t E = t->shape[0], rows = gu ? t->shape[1] / 2 : t->shape[1], in = t->shape[2];
        for (int part = 0; part < (gu ? 2 : 1); part++) {
            struct job *j = job_new(p);
            snprintf(j->path, sizeof j->path, "%s.%s", base, gu ? (part ? "up_proj" : "gate_proj") : "down_proj");
            j->stacked = true;
            j->n_exp = E;
            j->rows = rows;
            j->in = in;
            j->src = xcalloc((size_t)E, sizeof *j->src);
            j->src_off = xcalloc((size_t)E, sizeof *j->src_off);
            for (int64_t e = 0; e < E; e++) {
                j->src[e] = t;
                j->src_off[e] = (size_t)((gu ? e * 2 * rows : e * rows) + part * rows) * (size_t)in * ds;
            }
        }
        return STATUS_OK;
    }
    char path[256];
    snprintf(path, sizeof path, "%s.%s", base, proj);
    struct job *j = find_stacked(p, path);
    if (!j) {
        if (t->n_dims != 2) {
            LOG_ERR("%s: tensor %s: an expert weight must be 2-D", file, t->name);
            return STATUS_EFORMAT;
        }
        j = job_new(p);
        snprintf(j->path, sizeof j->path, "%s", path);
        j->stacked = true;
        j->n_exp = n_experts;
        j->rows = t->shape[0];
        j->in = t->shape[1];
        j->src = xcalloc((size_t)n_experts, sizeof *j->src);
        j->src_off = xcalloc((size_t)n_experts, sizeof *j->src_off);
    }
    if (expert >= j->n_exp || t->n_dims != 2 || t->shape[0] != j->rows || t->shape[1] != j->in || j->src[expert]) {
        LOG_ERR("%s: tensor %s: expert %d does not match the layer's other experts (or n_experts %lld)", file,
                t->name, expert, (long long)j->n_exp);
        return STATUS_EFORMAT;
    }
    j->src[expert] = t;
    return STATUS_OK;
}

/* The recipe's settings for module `path` of a quantizable weight: false = leave float. */
static bool recipe_params(const struct quantize_opts *o, int n_layers, const char *path, json_t *block,
                          enum qmode *mode, int *bits, int *gs)
{
    *mode = o->mode;
    *bits = o->bits;
    *gs = o->group_size;
    if (!o->recipe) return true;
    size_t len = strlen(path);
    if (!strcmp(o->recipe, "mixed_4_8")) {
        bool gate = (len >= 8 && !strcmp(path + len - 8, "mlp.gate")) ||
                    (len >= 18 && !strcmp(path + len - 18, "shared_expert_gate"));
        if (gate) {
            *mode = QMODE_AFFINE;
            *bits = 8;
            *gs = 64;
            json_object_set_new(block, path, json_pack("{s:i, s:i}", "group_size", 64, "bits", 8));
        }
        return true;
    }
    int low = o->recipe[6] - '0', high = o->recipe[8] - '0';
    *bits = low;
    const char *lp = strstr(path, "layers.");
    bool head = strstr(path, "lm_head") != NULL;
    if (head) *bits = high;
    else if (lp) {
        int i = atoi(lp + 7), n = n_layers;
        bool more = i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
        const char *hi_names[] = { "v_proj", "v_a_proj", "v_b_proj", "down_proj" };
        for (int k = 0; more && k < 4; k++) {
            size_t hl = strlen(hi_names[k]);
            if (len > hl && path[len - hl - 1] == '.' && !strcmp(path + len - hl, hi_names[k])) *bits = high;
        }
    }
    json_object_set_new(block, path, json_pack("{s:i, s:i, s:s}", "group_size", *gs, "bits", *bits, "mode", "affine"));
    return true;
}

static void plan_outputs(struct plan *p, struct job *j)
{
    int64_t shape[4];
    int nd = 0;
    if (j->stacked) shape[nd++] = j->n_exp;
    shape[nd++] = j->rows;
    if (!j->quant) {
        if (j->stacked) {
            shape[nd++] = j->in;
            j->out[0] = out_new(p, j->path, ".weight", j->out_dt, nd, shape);
        } else {
            const struct st_tensor *t = j->copy;
            int64_t sh[ST_MAX_DIMS];
            memcpy(sh, t->shape, sizeof sh);
            if (strstr(j->name, "conv1d.weight") && t->n_dims == 3 && sh[1] == 1) {   // mlx-lm's moveaxis(2, 1)
                sh[1] = sh[2];
                sh[2] = 1;
            }
            enum dtype dt = is_float(t->dtype) && !j->keep_dtype ? j->out_dt : t->dtype;
            j->out[0] = out_new(p, j->name, "", dt, t->n_dims, sh);
        }
        return;
    }
    shape[nd] = j->in * j->bits / 32;
    j->out[0] = out_new(p, j->path, ".weight", DTYPE_U32, nd + 1, shape);
    shape[nd] = j->in / j->group_size;
    j->out[1] = out_new(p, j->path, ".scales", j->mode == QMODE_AFFINE ? j->out_dt : DTYPE_U8, nd + 1, shape);
    if (j->mode == QMODE_AFFINE) j->out[2] = out_new(p, j->path, ".biases", j->out_dt, nd + 1, shape);
}

/* What mlx-lm's sanitize does to a hybrid (Qwen3-Next, Qwen3.5, Qwen3.5-MoE: qwen3_next.py,
 * qwen3_5.py, qwen3_5_moe.py), spec 7-8: drops mtp.* (and the vision tower), puts Qwen3.5's
 * names under "language_model.", moves the conv1d axes ([C, 1, K] -> [C, K, 1], the same bytes)
 * and, when the input is in the HF layout, stores the (1 + w) norms shifted. */
struct mlx_rules {
    bool        hybrid;
    bool        hf_layout;        // the conv1d weights are [C, 1, K]: shift the norms
    const char *wrapper;          // "language_model." (Qwen3.5) or NULL
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static struct mlx_rules mlx_rules_of(const struct arch *a, const struct hparams *hp, const struct model_file *mf)
{
    struct mlx_rules r = { .hybrid = hp->n_linear_layers > 0, .wrapper = a->mlx_wrapper };
    for (int i = 0; r.hybrid && i < mf->n_tensors; i++) {
        const struct st_tensor *t = &mf->tensors[i];
        if (strstr(t->name, "conv1d.weight") && t->n_dims == 3 && t->shape[2] != 1) r.hf_layout = true;
    }
    return r;
}

/* The output name of input tensor `name` into out; false: mlx-lm drops it. */
static bool mlx_name(const struct mlx_rules *r, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s", name);
    if (!r->hybrid) return true;
    if (strstr(name, "mtp.")) return false;
    if (!strncmp(name, "model.visual", 12) || !strncmp(name, "vision_tower", 12)) return false;
    if (!r->wrapper) return true;
    const char *inner = "model.language_model.";
    if (!strncmp(name, inner, strlen(inner))) snprintf(out, n, "%smodel.%s", r->wrapper, name + strlen(inner));
    else if (strncmp(name, r->wrapper, strlen(r->wrapper))) snprintf(out, n, "%s%s", r->wrapper, name);
    return true;
}

static bool is_shifted_norm(const struct mlx_rules *r, const struct st_tensor *t, const char *out_name)
{
    const char *keys[] = { ".input_layernorm.weight", ".post_attention_layernorm.weight", "model.norm.weight",
                           ".q_norm.weight", ".k_norm.weight" };
    if (!r->hybrid || !r->hf_layout || t->n_dims != 1) return false;
    for (int i = 0; i < 5; i++)
        if (ends_with(out_name, keys[i])) return true;
    return false;
}

static enum status make_plan(const struct quantize_opts *o, const struct arch *a, const struct hparams *hp,
                             const struct model_file *mf, enum dtype out_dt, json_t *block, struct plan *p,
                             int *n_quant)
{
    enum status st = STATUS_OK;
    struct mlx_rules rules = mlx_rules_of(a, hp, mf);
    for (int i = 0; i < mf->n_tensors && st == STATUS_OK; i++) {
        const struct st_tensor *t = &mf->tensors[i];
        char base[160], proj[64], name[256];
        int expert;
        if (hp->tie_embed && !strcmp(t->name, "lm_head.weight")) continue;   // mlx-lm's sanitize drops it
        if (!mlx_name(&rules, t->name, name, sizeof name)) continue;
        if (is_float(t->dtype) && expert_name(name, base, sizeof base, &expert, proj, sizeof proj)) {
            st = add_expert(p, mf, t, base, expert, proj, hp->n_experts > 0 ? hp->n_experts : 1);
            continue;
        }
        struct job *j = job_new(p);
        snprintf(j->path, sizeof j->path, "%s", name);
        snprintf(j->name, sizeof j->name, "%s", name);
        j->copy = t;
        j->n_exp = 1;
        j->plus_one = is_shifted_norm(&rules, t, name);
        j->keep_dtype = rules.wrapper && ends_with(name, ".A_log");   // Qwen3.5's cast_predicate
        size_t len = strlen(name);
        if (is_float(t->dtype) && t->n_dims == 2 && len > 7 && !strcmp(name + len - 7, ".weight") &&
            !strstr(name, "conv")) {
            j->path[len - 7] = 0;
            j->rows = t->shape[0];
            j->in = t->shape[1];
            j->src = xcalloc(1, sizeof *j->src);
            j->src_off = xcalloc(1, sizeof *j->src_off);
            j->src[0] = t;
            j->quant = true;   // decided below
        }
    }
    for (int i = 0; i < p->n_jobs && st == STATUS_OK; i++) {
        struct job *j = &p->jobs[i];
        j->out_dt = out_dt;
        if (j->stacked)
            for (int64_t e = 0; e < j->n_exp; e++)
                if (!j->src[e]) {
                    LOG_ERR("%s: expert %lld of %s missing", o->in_dir, (long long)e, j->path);
                    st = STATUS_EFORMAT;
                }
        if (j->stacked || j->quant) {
            // mlx-lm skips modules whose input dim is no multiple of the top-level group size
            j->quant = j->in % o->group_size == 0 &&
                       recipe_params(o, hp->n_layers, j->path, block, &j->mode, &j->bits, &j->group_size);
            if (j->quant && j->in % j->group_size) j->quant = false;
            if (j->quant) (*n_quant)++;
            if (!j->quant && !j->stacked) {   // a plain float copy after all
                snprintf(j->path, sizeof j->path, "%s", j->name);
            }
        }
        plan_outputs(p, j);
    }
    return st;
}

/* ==== Writing ==== */

static int cmp_out(const void *a, const void *b)
{
    return strcmp(((const struct out_tensor *)a)->name, ((const struct out_tensor *)b)->name);
}

static enum status pwrite_all(int fd, const void *buf, size_t n, size_t off, const char *path)
{
    const char *p = buf;
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            LOG_ERR("%s: write failed: %s", path, strerror(errno));
            return STATUS_EIO;
        }
        p += w;
        off += (size_t)w;
        n -= (size_t)w;
    }
    return STATUS_OK;
}

struct shard_out {
    char   path[4200];
    char   file[64];
    int    fd;
    size_t data_off;   // 8 + header
    size_t bytes;
};

static const struct out_tensor *find_out(const struct plan *p, const char *name)
{
    struct out_tensor key;
    snprintf(key.name, sizeof key.name, "%s", name);
    return bsearch(&key, p->outs, (size_t)p->n_outs, sizeof *p->outs, cmp_out);
}

static enum status write_out(const struct plan *p, struct shard_out *sh, const char *name, const void *data)
{
    const struct out_tensor *o = find_out(p, name);
    CHECK(o, "unplanned output %s", name);
    return pwrite_all(sh[o->shard].fd, data, o->bytes, sh[o->shard].data_off + o->off, sh[o->shard].path);
}

static const uint8_t *src_row(const struct model_file *mf, const struct job *j, int64_t e, int64_t r)
{
    const struct st_tensor *t = j->src[e];
    return safetensors_data(mf, t) + j->src_off[e] + (size_t)r * (size_t)j->in * dtype_size(t->dtype);
}

/* x rounded to dtype dt (and back to f32), as a cast to dt would store it. */
static void round_to(enum dtype dt, float *x, size_t n)
{
    if (dt == DTYPE_F32) return;
    void *tmp = xmalloc(n * dtype_size(dt));
    dtype_from_f32(dt, x, tmp, n);
    dtype_to_f32(dt, tmp, x, n);
    free(tmp);
}

static enum status run_job(const struct plan *p, const struct model_file *mf, struct shard_out *sh, const struct job *j)
{
    char name[300];
    if (!j->quant && !j->stacked) {   // copy, converting floats to the output dtype
        const struct st_tensor *t = j->copy;
        const struct out_tensor *o = find_out(p, j->name);
        const uint8_t *src = safetensors_data(mf, t);
        if (o->dt == t->dtype && !j->plus_one) return write_out(p, sh, j->name, src);
        size_t n = t->bytes / dtype_size(t->dtype);
        float *f = xmalloc(n * sizeof *f);
        void *dst = xmalloc(n * dtype_size(o->dt));
        dtype_to_f32(t->dtype, src, f, n);
        if (j->plus_one) {   // v + 1.0 in the checkpoint's dtype, then the cast (mlx-lm's order)
            for (size_t i = 0; i < n; i++) f[i] += 1.0f;
            round_to(t->dtype, f, n);
        }
        dtype_from_f32(o->dt, f, dst, n);
        enum status st = write_out(p, sh, j->name, dst);
        free(f);
        free(dst);
        return st;
    }
    int64_t R = j->n_exp * j->rows, in = j->in;
    float *x = xmalloc((size_t)in * sizeof *x);
    enum status st = STATUS_OK;
    if (!j->quant) {   // stacked float experts
        void *dst = xmalloc((size_t)(R * in) * dtype_size(j->out_dt));
        for (int64_t e = 0; e < j->n_exp; e++)
            for (int64_t r = 0; r < j->rows; r++) {
                dtype_to_f32(j->src[e]->dtype, src_row(mf, j, e, r), x, (size_t)in);
                dtype_from_f32(j->out_dt, x, (char *)dst + (size_t)((e * j->rows + r) * in) * dtype_size(j->out_dt),
                               (size_t)in);
            }
        snprintf(name, sizeof name, "%s.weight", j->path);
        st = write_out(p, sh, name, dst);
        free(dst);
        free(x);
        return st;
    }
    int64_t words = in * j->bits / 32, groups = in / j->group_size;
    uint32_t *w = xmalloc((size_t)(R * words) * 4);
    float *sf = xmalloc((size_t)groups * sizeof *sf), *bf = xmalloc((size_t)groups * sizeof *bf);
    size_t ss = j->mode == QMODE_AFFINE ? dtype_size(j->out_dt) : 1;
    uint8_t *scales = xmalloc((size_t)(R * groups) * ss), *biases = xmalloc((size_t)(R * groups) * ss);
    for (int64_t e = 0; e < j->n_exp && st == STATUS_OK; e++)
        for (int64_t r = 0; r < j->rows; r++) {
            int64_t row = e * j->rows + r;
            dtype_to_f32(j->src[e]->dtype, src_row(mf, j, e, r), x, (size_t)in);
            if (j->src[e]->dtype != j->out_dt) round_to(j->out_dt, x, (size_t)in);   // mlx-lm casts, then quantizes
            if (!qweight_quantize_row(j->mode, j->bits, j->group_size, x, in, w + row * words, sf, bf,
                                      scales + row * groups)) {
                LOG_ERR("%s: tensor %s: non-finite weights in row %lld; refusing to quantize", mf->shards[j->src[e]->shard].path,
                        j->src[e]->name, (long long)r);
                st = STATUS_EFORMAT;
                break;
            }
            if (j->mode == QMODE_AFFINE) {
                dtype_from_f32(j->out_dt, sf, scales + (size_t)(row * groups) * ss, (size_t)groups);
                dtype_from_f32(j->out_dt, bf, biases + (size_t)(row * groups) * ss, (size_t)groups);
            }
        }
    if (st == STATUS_OK) {
        snprintf(name, sizeof name, "%s.weight", j->path);
        st = write_out(p, sh, name, w);
    }
    if (st == STATUS_OK) {
        snprintf(name, sizeof name, "%s.scales", j->path);
        st = write_out(p, sh, name, scales);
    }
    if (st == STATUS_OK && j->mode == QMODE_AFFINE) {
        snprintf(name, sizeof name, "%s.biases", j->path);
        st = write_out(p, sh, name, biases);
    }
    free(w); free(sf); free(bf); free(scales); free(biases); free(x);
    return st;
}

static enum status write_headers(struct plan *p, struct shard_out *sh, int n_shards)
{
    for (int s = 0; s < n_shards; s++) {
        json_t *h = json_object();
        json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "mlx"));
        for (int i = 0; i < p->n_outs; i++) {
            const struct out_tensor *o = &p->outs[i];
            if (o->shard != s) continue;
            json_t *shape = json_array();
            for (int d = 0; d < o->n_dims; d++) json_array_append_new(shape, json_integer(o->shape[d]));
            json_object_set_new(h, o->name, json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_name(o->dt), "shape",
                                                      shape, "data_offsets", (json_int_t)o->off,
                                                      (json_int_t)(o->off + o->bytes)));
        }
        char *text = json_dumps(h, JSON_COMPACT);
        json_decref(h);
        size_t len = strlen(text), padded = (len + 7) & ~(size_t)7;
        uint8_t *buf = xmalloc(8 + padded);
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)padded >> (8 * i));
        memcpy(buf + 8, text, len);
        memset(buf + 8 + len, ' ', padded - len);
        free(text);
        sh[s].data_off = 8 + padded;
        enum status st = pwrite_all(sh[s].fd, buf, 8 + padded, 0, sh[s].path);
        free(buf);
        if (st == STATUS_OK && ftruncate(sh[s].fd, (off_t)(sh[s].data_off + sh[s].bytes)) != 0) {
            LOG_ERR("%s: cannot size the file: %s", sh[s].path, strerror(errno));
            st = STATUS_EIO;
        }
        if (st != STATUS_OK) return st;
    }
    return STATUS_OK;
}

static enum status copy_file(const char *src, const char *dst)
{
    char *text;
    size_t len;
    enum status st = file_read_all(src, &text, &len);
    if (st != STATUS_OK) return st;
    FILE *f = fopen(dst, "wb");
    if (!f || fwrite(text, 1, len, f) != len) {
        LOG_ERR("%s: cannot write: %s", dst, strerror(errno));
        st = STATUS_EIO;
    }
    if (f && fclose(f) != 0) st = STATUS_EIO;
    free(text);
    return st;
}

/* Tokenizer, generation config, chat template...: every plain file but weights and config.json. */
static enum status copy_side_files(const char *in, const char *out)
{
    DIR *d = opendir(in);
    if (!d) return STATUS_OK;
    enum status st = STATUS_OK;
    struct dirent *e;
    while (st == STATUS_OK && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || !strcmp(e->d_name, "config.json") ||
            (len > 12 && !strcmp(e->d_name + len - 12, ".safetensors")) ||
            !strcmp(e->d_name, "model.safetensors.index.json"))
            continue;
        char src[4200], dst[4200];
        snprintf(src, sizeof src, "%s/%s", in, e->d_name);
        snprintf(dst, sizeof dst, "%s/%s", out, e->d_name);
        struct stat sb;
        if (stat(src, &sb) == 0 && S_ISREG(sb.st_mode)) st = copy_file(src, dst);
    }
    closedir(d);
    return st;
}

static enum status check_opts(struct quantize_opts *o)
{
    int dg, db;
    qmode_defaults(o->mode, &dg, &db);
    if (!o->bits) o->bits = db;
    if (!o->group_size) o->group_size = dg;
    if (!qweight_supported(o->mode, o->bits, o->group_size)) {
        LOG_ERR("quantize: %s with %d bits and group size %d is not supported (supported: %s)", qmode_name(o->mode),
                o->bits, o->group_size, qweight_supported_list());
        return STATUS_EUNSUPPORTED;
    }
    if (o->recipe) {
        const char *ok[] = { "mixed_2_6", "mixed_3_4", "mixed_3_6", "mixed_4_6", "mixed_4_8" };
        bool found = false;
        for (int i = 0; i < 5; i++) found |= !strcmp(o->recipe, ok[i]);
        if (!found) {
            LOG_ERR("quantize: unknown recipe %s (supported: mixed_2_6, mixed_3_4, mixed_3_6, mixed_4_6, mixed_4_8)",
                    o->recipe);
            return STATUS_EUNSUPPORTED;
        }
        if (strcmp(o->recipe, "mixed_4_8") && o->mode != QMODE_AFFINE) {
            LOG_ERR("quantize: recipe %s is affine only (mlx-lm's mixed predicates)", o->recipe);
            return STATUS_EUNSUPPORTED;
        }
        if (strcmp(o->recipe, "mixed_4_8")) o->bits = o->recipe[6] - '0';
    }
    return STATUS_OK;
}

enum status quantize_model(const struct quantize_opts *opts)
{
    struct quantize_opts o = *opts;
    enum status st = check_opts(&o);
    if (st != STATUS_OK) return st;
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", o.in_dir);
    json_t *root = json_load_file(cfg_path, 0, NULL);
    if (!root) {
        LOG_ERR("%s: cannot read or parse", cfg_path);
        return STATUS_EFORMAT;
    }
    if (json_object_get(root, "quantization") || json_object_get(root, "quantization_config")) {
        LOG_ERR("%s: the checkpoint is already quantized (config.json has a quantization block)", cfg_path);
        json_decref(root);
        return STATUS_EINVAL;
    }
    struct hparams hp;
    struct arch_features f;
    const struct arch *a;
    struct model_file *mf = NULL;
    if ((st = config_load(o.in_dir, &hp, &f, &a)) != STATUS_OK || (st = safetensors_open_dir(o.in_dir, &mf))) {
        json_decref(root);
        return st;
    }
    enum dtype out_dt = is_float(hp.dtype) ? hp.dtype : DTYPE_BF16;
    if (hp.n_linear_layers > 0 && hp.n_experts > 0 && !o.recipe) {
        // Qwen3-Next / Qwen3.5-MoE define quant_predicate in mlx-lm; -q without a recipe applies it
        o.recipe = "mixed_4_8";
        if (!o.quiet)
            fprintf(stderr, "quantize: %s: routers and shared-expert gates at 8 bit (mlx-lm's quant_predicate of %s)\n",
                    o.in_dir, hp.arch);
    }
    if (hp.n_linear_layers > 0) json_object_del(root, "vision_config");   // mlx-lm drops the vision tower
    json_t *block = json_pack("{s:i, s:i, s:s}", "group_size", o.group_size, "bits", o.bits, "mode", qmode_name(o.mode));
    struct plan p = { 0 };
    int n_quant = 0;
    struct shard_out *sh = NULL;
    int n_shards = 0;
    double t0 = clock_now_s();
    if ((st = make_plan(&o, a, &hp, mf, out_dt, block, &p, &n_quant)) != STATUS_OK) goto out;
    if (!n_quant) LOG_WARN("%s: no weight has an input dim that is a multiple of %d; nothing quantized", o.in_dir,
                           o.group_size);
    // shards in name order, each at most shard_bytes (a larger tensor gets a shard of its own)
    qsort(p.outs, (size_t)p.n_outs, sizeof *p.outs, cmp_out);
    uint64_t limit = o.shard_bytes ? o.shard_bytes : DEFAULT_SHARD_BYTES, cur = 0, total = 0;
    for (int i = 0; i < p.n_outs; i++) {
        if (!n_shards || (cur && cur + p.outs[i].bytes > limit)) {
            n_shards++;
            cur = 0;
        }
        p.outs[i].shard = n_shards - 1;
        p.outs[i].off = cur;
        cur += p.outs[i].bytes;
        total += p.outs[i].bytes;
    }
    if (mkdir(o.out_dir, 0755) != 0 && errno != EEXIST) {
        LOG_ERR("%s: cannot create: %s", o.out_dir, strerror(errno));
        st = STATUS_EIO;
        goto out;
    }
    sh = xcalloc((size_t)n_shards + 1, sizeof *sh);
    for (int s = 0; s < n_shards; s++) sh[s].fd = -1;
    for (int i = 0; i < p.n_outs; i++) sh[p.outs[i].shard].bytes = p.outs[i].off + p.outs[i].bytes;
    for (int s = 0; s < n_shards; s++) {
        if (n_shards == 1) snprintf(sh[s].file, sizeof sh[s].file, "model.safetensors");
        else snprintf(sh[s].file, sizeof sh[s].file, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        snprintf(sh[s].path, sizeof sh[s].path, "%s/%s", o.out_dir, sh[s].file);
        sh[s].fd = open(sh[s].path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (sh[s].fd < 0) {
            LOG_ERR("%s: cannot create: %s", sh[s].path, strerror(errno));
            st = STATUS_EIO;
            goto out;
        }
    }
    if ((st = write_headers(&p, sh, n_shards)) != STATUS_OK) goto out;
    double last = 0;
    for (int i = 0; i < p.n_jobs && st == STATUS_OK; i++) {
        st = run_job(&p, mf, sh, &p.jobs[i]);
        double now = clock_now_s();
        if (!o.quiet && (now - last > 1.0 || i + 1 == p.n_jobs)) {
            fprintf(stderr, "\rquantize: %d/%d tensors, %.1fs", i + 1, p.n_jobs, now - t0);
            if (i + 1 == p.n_jobs) fputc('\n', stderr);
            last = now;
        }
    }
    if (st != STATUS_OK) goto out;
    if (n_shards > 1) {
        json_t *idx = json_pack("{s:{s:I}, s:{}}", "metadata", "total_size", (json_int_t)total, "weight_map");
        json_t *map = json_object_get(idx, "weight_map");
        for (int i = 0; i < p.n_outs; i++) json_object_set_new(map, p.outs[i].name, json_string(sh[p.outs[i].shard].file));
        char ip[4200];
        snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", o.out_dir);
        if (json_dump_file(idx, ip, JSON_INDENT(4)) != 0) {
            LOG_ERR("%s: cannot write", ip);
            st = STATUS_EIO;
        }
        json_decref(idx);
        if (st != STATUS_OK) goto out;
    }
    json_object_set(root, "quantization", block);
    json_object_set_new(root, "quantization_config", json_deep_copy(block));
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", o.out_dir);
    if (json_dump_file(root, cfg_path, JSON_INDENT(4)) != 0) {
        LOG_ERR("%s: cannot write", cfg_path);
        st = STATUS_EIO;
        goto out;
    }
    if ((st = copy_side_files(o.in_dir, o.out_dir)) != STATUS_OK) goto out;
    if (!o.quiet)
        fprintf(stderr, "quantize: %s -> %s: %d of %d modules quantized (%s %d-bit, group %d%s%s), %.2f GB in %d shard%s\n",
                o.in_dir, o.out_dir, n_quant, p.n_jobs, qmode_name(o.mode), o.bits, o.group_size,
                o.recipe ? ", recipe " : "", o.recipe ? o.recipe : "", (double)total / 1e9, n_shards,
                n_shards == 1 ? "" : "s");
out:
    for (int s = 0; sh && s < n_shards; s++)
        if (sh[s].fd >= 0) close(sh[s].fd);
    free(sh);
    for (int i = 0; i < p.n_jobs; i++) {
        free(p.jobs[i].src);
        free(p.jobs[i].src_off);
    }
    free(p.jobs);
    free(p.outs);
    json_decref(block);
    json_decref(root);
    safetensors_close(mf);
    return st;
}
