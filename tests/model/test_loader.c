/* test_loader: safetensors validation, model_load binding and synth, on checkpoints this test
 * builds itself (a tiny Qwen3 written by synth_write, then corrupted in every way we check), plus
 * the committed transformers fixtures (tests/model/fixtures). Every corrupt input must give its
 * status and never crash (run under `make asan` too). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "harness.h"
#include "scratch_dir.h"
#include "engine/runner.h"
#include "model/config.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/synth.h"
#include "tensor/qweight.h"

/* vocab 64, d 32, ffn 48, 2 layers, heads 2/1, head_dim 16: small enough to corrupt by hand. */
static const char *TINY_CFG =
    "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": 32,"
    " \"intermediate_size\": 48, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
    " \"num_key_value_heads\": 1, \"head_dim\": 16, \"max_position_embeddings\": 128,"
    " \"rope_theta\": 10000, \"tie_word_embeddings\": false, \"eos_token_id\": 3}";

static char tmp[64];
static uint8_t *good;          // the valid model.safetensors
static size_t good_len;
static json_t *good_hdr;       // its header
static size_t good_data_off;   // 8 + header length

static char *pathf(const char *fmt, const char *name)
{
    static char buf[4][256];
    static int k;
    char *b = buf[k++ & 3];
    snprintf(b, 256, fmt, tmp, name);
    return b;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f, "cannot write %s", path);
    CHECK(fwrite(p, 1, n, f) == n, "short write %s", path);
    fclose(f);
}

/* Writes dir tmp/<name> with config text and a safetensors file of header text + data, the
 * 8-byte length being hlen_override if non-zero. */
static char *write_model(const char *name, const char *cfg, const char *hdr, const void *data, size_t data_len,
                         uint64_t hlen_override)
{
    char *dir = pathf("%s/%s", name);
    mkdir(dir, 0755);
    char p[300];
    snprintf(p, sizeof p, "%s/config.json", dir);
    write_file(p, cfg, strlen(cfg));
    size_t h = (strlen(hdr) + 7) & ~(size_t)7;   // padded with spaces, as writers do
    uint64_t n = hlen_override ? hlen_override : h;
    size_t total = 8 + h + data_len;
    uint8_t *buf = xmalloc(total);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memset(buf + 8, ' ', h);
    memcpy(buf + 8, hdr, strlen(hdr));
    if (data_len) memcpy(buf + 8 + h, data, data_len);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    write_file(p, buf, total);
    free(buf);
    return dir;
}

/* Loads a model written from the good header after `edit` changed a copy of it. */
static enum status load_edited(const char *name, void (*edit)(json_t *hdr), const char *cfg)
{
    json_t *h = json_deep_copy(good_hdr);
    edit(h);
    char *text = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    char *dir = write_model(name, cfg ? cfg : TINY_CFG, text, good + good_data_off, good_len - good_data_off, 0);
    free(text);
    struct model *m = NULL;
    enum status st = model_load(dir, &m);
    model_free(m);
    return st;
}

static enum status open_mem_str(const char *hdr, size_t data_len, uint64_t hlen_override)
{
    size_t h = (strlen(hdr) + 7) & ~(size_t)7;
    uint64_t n = hlen_override ? hlen_override : h;
    uint8_t *buf = xcalloc(1, 8 + h + data_len);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memset(buf + 8, ' ', h);
    memcpy(buf + 8, hdr, strlen(hdr));
    struct model_file *mf = NULL;
    enum status st = safetensors_open_mem("mem", buf, 8 + h + data_len, &mf);
    safetensors_close(mf);
    free(buf);
    return st;
}

static void setup(void)
{
    scratch_dir_make(tmp, sizeof tmp, "loader");
    write_file(pathf("%s/%s", "tiny.json"), TINY_CFG, strlen(TINY_CFG));
    struct synth_opts o = { .config_path = pathf("%s/%s", "tiny.json"), .out_dir = pathf("%s/%s", "good"),
                            .seed = 7, .quiet = 1 };
    CHECK(synth_write(&o, NULL) == STATUS_OK, "synth of the tiny model failed");
    char *text;
    CHECK(file_read_all(pathf("%s/%s", "good/model.safetensors"), &text, &good_len) == STATUS_OK, "read");
    good = (uint8_t *)text;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | good[i];
    good_data_off = 8 + (size_t)n;
    json_error_t err;
    good_hdr = json_loadb((const char *)good + 8, (size_t)n, 0, &err);
    CHECK(good_hdr, "header of the synthesized file does not parse");
}

/* ==== Valid checkpoints ==== */

TEST(loads_synthesized)
{
    struct model *m = NULL;
    ASSERT(model_load(pathf("%s/%s", "good"), &m) == STATUS_OK);
    // Parameters by hand: embed + lm_head + final norm + 2 layers of
    // (2 norms 32, q 32x32, k 16x32, v 16x32, o 32x32, q/k norms 16, gate/up 48x32, down 32x48).
    uint64_t layer = 2 * 32 + 32 * 32 + 2 * 16 * 32 + 32 * 32 + 2 * 16 + 3 * 48 * 32;
    EXPECT(m->n_params == 2 * 64 * 32 + 32 + 2 * layer);
    EXPECT(m->weight_bytes == 2 * m->n_params);
    EXPECT(m->hp.n_layers == 2 && m->hp.head_dim == 16 && m->f.qk_norm && !m->hp.tie_embed);
    EXPECT(m->layers[1].wq.ne[0] == 32 && m->layers[1].wq.ne[1] == 32 && m->layers[1].wq.dtype == DTYPE_BF16);
    EXPECT(m->layers[0].w_down.ne[0] == 48 && m->layers[0].w_down.ne[1] == 32);
    EXPECT(m->lm_head.buf && m->lm_head.offset != m->tok_embed.offset);
    EXPECT(model_kv_bytes_per_token(m, DTYPE_BF16) == 2 * 2 * 16 * 2);
    // Values: matrices N(0, 0.02), norms 1 + N(0, 0.02).
    const uint16_t *w = tensor_data(&m->tok_embed);
    double s = 0, s2 = 0;
    for (int i = 0; i < 64 * 32; i++) {
        double x = bf16_to_f32(w[i]);
        s += x;
        s2 += x * x;
    }
    double mean = s / 2048, sd = sqrt(s2 / 2048 - mean * mean);
    EXPECTF(fabs(mean) < 0.003 && sd > 0.017 && sd < 0.023, "mean %g sd %g", mean, sd);
    const uint16_t *nw = tensor_data(&m->layers[0].attn_norm);
    EXPECT(fabs(bf16_to_f32(nw[0]) - 1.0) < 0.1 && fabs(bf16_to_f32(nw[5]) - 1.0) < 0.1);
    model_free(m);
}

TEST(synth_in_memory_matches_file)
{
    struct model *a = NULL, *b = NULL, *c = NULL;
    ASSERT(model_load(pathf("%s/%s", "good"), &a) == STATUS_OK);
    ASSERT(model_synthesize(pathf("%s/%s", "tiny.json"), 7, &b) == STATUS_OK);
    ASSERT(model_synthesize(pathf("%s/%s", "tiny.json"), 8, &c) == STATUS_OK);
    EXPECT(a->n_params == b->n_params);
    EXPECT(!memcmp(tensor_data(&a->tok_embed), tensor_data(&b->tok_embed), tensor_bytes(&a->tok_embed)));
    EXPECT(!memcmp(tensor_data(&a->layers[1].w_down), tensor_data(&b->layers[1].w_down), tensor_bytes(&a->layers[1].w_down)));
    EXPECT(!memcmp(tensor_data(&a->out_norm), tensor_data(&b->out_norm), tensor_bytes(&a->out_norm)));
    EXPECT(memcmp(tensor_data(&a->tok_embed), tensor_data(&c->tok_embed), tensor_bytes(&a->tok_embed)));
    model_free(a);
    model_free(b);
    model_free(c);
}

TEST(sharded_matches_single)
{
    struct synth_opts o = { .config_path = pathf("%s/%s", "tiny.json"), .out_dir = pathf("%s/%s", "sharded"),
                            .seed = 7, .quiet = 1, .shard_bytes = 6000 };
    ASSERT(synth_write(&o, NULL) == STATUS_OK);
    EXPECT(access(pathf("%s/%s", "sharded/model.safetensors.index.json"), F_OK) == 0);
    EXPECT(access(pathf("%s/%s", "sharded/model.safetensors"), F_OK) != 0);
    struct model *a = NULL, *b = NULL;
    ASSERT(model_load(pathf("%s/%s", "good"), &a) == STATUS_OK);
    ASSERT(model_load(pathf("%s/%s", "sharded"), &b) == STATUS_OK);
    EXPECT(b->files->n_shards > 3);
    EXPECT(a->n_params == b->n_params);
    EXPECT(!memcmp(tensor_data(&a->lm_head), tensor_data(&b->lm_head), tensor_bytes(&a->lm_head)));
    EXPECT(!memcmp(tensor_data(&a->layers[1].k_norm), tensor_data(&b->layers[1].k_norm), tensor_bytes(&a->layers[1].k_norm)));
    model_free(a);
    model_free(b);
}

TEST(tied_embeddings_alias)
{
    const char *cfg = "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": 32,"
                      " \"intermediate_size\": 48, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                      " \"num_key_value_heads\": 2, \"tie_word_embeddings\": true}";
    write_file(pathf("%s/%s", "tied.json"), cfg, strlen(cfg));
    struct synth_opts o = { .config_path = pathf("%s/%s", "tied.json"), .out_dir = pathf("%s/%s", "tied"), .quiet = 1 };
    ASSERT(synth_write(&o, NULL) == STATUS_OK);
    struct model *m = NULL;
    ASSERT(model_load(pathf("%s/%s", "tied"), &m) == STATUS_OK);
    EXPECT(m->hp.tie_embed && m->hp.head_dim == 16);
    EXPECT(m->lm_head.buf == m->tok_embed.buf && m->lm_head.offset == m->tok_embed.offset);
    EXPECT(!safetensors_find(m->files, "lm_head.weight"));
    model_free(m);
}

/* ==== Corrupt safetensors (in memory) ==== */

TEST(corrupt_headers)
{
    const char *ok = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},\"__metadata__\":{\"format\":\"pt\"}}";
    EXPECT(open_mem_str(ok, 12, 0) == STATUS_OK);
    EXPECT(open_mem_str(ok, 11, 0) == STATUS_EFORMAT);                          // data region too short
    EXPECT(open_mem_str(ok, 12, 1u << 20) == STATUS_EFORMAT);                   // header length past EOF
    EXPECT(open_mem_str(ok, 12, ~0ull) == STATUS_EFORMAT);                      // absurd header length
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],", 12, 0) == STATUS_EFORMAT);   // bad JSON
    EXPECT(open_mem_str("[1,2]", 0, 0) == STATUS_EFORMAT);                      // not an object
    EXPECT(open_mem_str("{\"a\":7}", 0, 0) == STATUS_EFORMAT);                  // entry not an object
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 12, 0) == STATUS_EFORMAT);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 12, 0) == STATUS_EFORMAT);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[12],\"data_offsets\":[0,12]}}", 12, 0) == STATUS_EUNSUPPORTED);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":7,\"shape\":[6],\"data_offsets\":[0,12]}}", 12, 0) == STATUS_EFORMAT);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[-2,3],\"data_offsets\":[0,12]}}", 12, 0) == STATUS_EFORMAT);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2.5],\"data_offsets\":[0,12]}}", 12, 0) == STATUS_EFORMAT);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[12,0]}}", 12, 0) == STATUS_EFORMAT);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[0]}}", 12, 0) == STATUS_EFORMAT);
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,2]}}", 12, 0) == STATUS_EFORMAT);
    // shape product overflows 64 bits
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,0]}}", 12, 0) == STATUS_EFORMAT);
    // offsets past 2^63
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[18446744073709551614,0]}}", 12, 0) == STATUS_EFORMAT);
    // overlap: b starts inside a
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]}}", 12, 0) == STATUS_EFORMAT);
    // same range twice
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, 0) == STATUS_EFORMAT);
    // duplicate name
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                        "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}", 12, 0) == STATUS_EFORMAT);
    // adjacent, empty and scalar tensors are fine; I64/I32/U8 parse
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]},"
                        "\"e\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                        "\"s\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[8,12]}}", 12, 0) == STATUS_OK);
    // a bf16 tensor at an odd file offset (MLX writes tensors back to back): read from an aligned copy
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[1,5]}}", 12, 0) == STATUS_OK);
    {
        const char *h = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[1,5]}}";
        size_t hl = (strlen(h) + 7) & ~(size_t)7;
        uint8_t *buf = xcalloc(1, 8 + hl + 8);
        buf[0] = (uint8_t)hl;
        memset(buf + 8, ' ', hl);
        memcpy(buf + 8, h, strlen(h));
        memcpy(buf + 8 + hl + 1, "\x01\x02\x03\x04", 4);
        struct model_file *mfa = NULL;
        struct tensor v;
        EXPECT(safetensors_open_mem("unaligned", buf, 8 + hl + 8, &mfa) == STATUS_OK &&
               safetensors_get(mfa, "a", &v) == STATUS_OK && (uintptr_t)tensor_data(&v) % 2 == 0 &&
               !memcmp(tensor_data(&v), "\x01\x02\x03\x04", 4));
        safetensors_close(mfa);
        free(buf);
    }
    EXPECT(open_mem_str("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[1,3]}}", 12, 0) == STATUS_OK);
    struct model_file *mf = NULL;
    EXPECT(safetensors_open_mem("tiny", "1234567", 7, &mf) == STATUS_EFORMAT && !mf);   // shorter than 8 bytes
    EXPECT(safetensors_open_mem("empty", "", 0, &mf) == STATUS_EFORMAT);
}

TEST(lookup_and_views)
{
    const char *hdr = "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[0,12]},"
                      "\"big\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1],\"data_offsets\":[12,13]}}";
    size_t h = strlen(hdr);
    uint8_t *buf = xcalloc(1, 8 + h + 13);
    buf[0] = (uint8_t)h;
    memcpy(buf + 8, hdr, h);
    struct model_file *mf = NULL;
    ASSERT(safetensors_open_mem("mem", buf, 8 + h + 13, &mf) == STATUS_OK);
    struct tensor t;
    EXPECT(safetensors_get(mf, "w", &t) == STATUS_OK);
    EXPECT(t.ne[0] == 2 && t.ne[1] == 3 && t.dtype == DTYPE_BF16 && tensor_data(&t) == buf + 8 + h);
    EXPECT(safetensors_get(mf, "nope", &t) == STATUS_ENOTFOUND);
    EXPECT(safetensors_get(mf, "big", &t) == STATUS_EUNSUPPORTED);
    safetensors_close(mf);
    free(buf);
}

/* ==== Corrupt checkpoints (files, through model_load) ==== */

static void edit_drop_tensor(json_t *h) { json_object_del(h, "model.layers.1.self_attn.v_proj.weight"); }
static void edit_bad_shape(json_t *h)
{
    json_t *e = json_object_get(h, "model.layers.0.mlp.up_proj.weight");
    json_object_set_new(e, "shape", json_pack("[I,I]", (json_int_t)32, (json_int_t)48));   // transposed
}
static void edit_int_dtype(json_t *h)
{
    json_t *e = json_object_get(h, "model.norm.weight");   // 32 bf16 = 64 bytes = 16 I32
    json_object_set_new(e, "dtype", json_string("I32"));
    json_object_set_new(e, "shape", json_pack("[I]", (json_int_t)16));
}
static void edit_offset_out(json_t *h)
{
    json_t *e = json_object_get(h, "model.norm.weight");
    json_t *o = json_object_get(e, "data_offsets");
    json_int_t b = json_integer_value(json_array_get(o, 0)) + 1000000;
    json_object_set_new(e, "data_offsets", json_pack("[I,I]", b, b + 64));
}
static void edit_overlap(json_t *h)
{
    json_t *a = json_object_get(h, "model.norm.weight");
    json_t *b = json_object_get(h, "model.layers.0.input_layernorm.weight");
    json_object_set(b, "data_offsets", json_object_get(a, "data_offsets"));
}
static void edit_wrong_dtype_size(json_t *h)
{
    json_object_set_new(json_object_get(h, "model.norm.weight"), "dtype", json_string("F32"));
}
static void edit_extra_unused(json_t *h) { json_object_set_new(h, "__metadata__", json_pack("{s:s}", "x", "y")); }

TEST(corrupt_checkpoints)
{
    EXPECT(load_edited("unused_meta", edit_extra_unused, NULL) == STATUS_OK);
    EXPECT(load_edited("missing", edit_drop_tensor, NULL) == STATUS_ENOTFOUND);
    EXPECT(load_edited("badshape", edit_bad_shape, NULL) == STATUS_EFORMAT);
    EXPECT(load_edited("intdtype", edit_int_dtype, NULL) == STATUS_EUNSUPPORTED);
    EXPECT(load_edited("offset", edit_offset_out, NULL) == STATUS_EFORMAT);
    EXPECT(load_edited("overlap", edit_overlap, NULL) == STATUS_EFORMAT);
    EXPECT(load_edited("dtypesize", edit_wrong_dtype_size, NULL) == STATUS_EFORMAT);
    // config.json disagrees with the file: a larger FFN than the tensors have
    const char *wide = "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": 32,"
                       " \"intermediate_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
                       " \"num_key_value_heads\": 1, \"head_dim\": 16}";
    EXPECT(load_edited("wide", edit_extra_unused, wide) == STATUS_EFORMAT);
    // tie_word_embeddings false but no lm_head.weight: a base model saved without its head (as
    // Qwen3-Embedding-4B/8B ship): it loads for embeddings only, and generation is refused clearly
    const char *untied3 = "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": 32,"
                          " \"intermediate_size\": 48, \"num_hidden_layers\": 1, \"num_attention_heads\": 2,"
                          " \"num_key_value_heads\": 2}";
    char p[300];
    snprintf(p, sizeof p, "%s/config.json", pathf("%s/%s", "tied"));
    write_file(p, untied3, strlen(untied3));
    struct model *m = NULL;
    EXPECT(model_load(pathf("%s/%s", "tied"), &m) == STATUS_OK && m);
    if (m) {
        EXPECT(!model_has_lm_head(m) && model_is_embedder(m));
        struct backend *be = NULL;
        struct runner *rn = NULL;
        EXPECT(backend_new("ref", &(struct backend_cfg){ 0 }, &be) == STATUS_OK);
        if (be) EXPECT(runner_new(m, be, 32, 16, DTYPE_F32, &rn) == STATUS_EUNSUPPORTED && !rn);
        model_free(m);
        backend_free(be);
    }

    // Truncations of the good file: every prefix length class.
    size_t cuts[] = { 0, 5, 8, 9, good_data_off - 1, good_data_off, good_data_off + 10, good_len - 1 };
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char *dir = pathf("%s/%s", "good");
        char f[300];
        snprintf(f, sizeof f, "%s/trunc.safetensors", tmp);
        write_file(f, good, cuts[i]);
        struct model_file *mf = NULL;
        enum status st = safetensors_open_file(f, &mf);
        EXPECTF(st == STATUS_EFORMAT, "cut at %zu: %s", cuts[i], status_str(st));
        safetensors_close(mf);
        (void)dir;
    }
    // Garbage bytes in the header region.
    uint8_t *bad = xmalloc(good_len);
    memcpy(bad, good, good_len);
    memset(bad + 20, 0xff, 16);
    struct model_file *mf = NULL;
    EXPECT(safetensors_open_mem("garbage", bad, good_len, &mf) == STATUS_EFORMAT);
    free(bad);
    // No weights at all.
    mkdir(pathf("%s/%s", "empty"), 0755);
    EXPECT(safetensors_open_dir(pathf("%s/%s", "empty"), &mf) == STATUS_ENOTFOUND);
    EXPECT(model_load(pathf("%s/%s", "nonexistent"), &m) == STATUS_ENOTFOUND);
}

TEST(corrupt_index)
{
    // The sharded checkpoint with a broken index in several ways.
    char *dir = pathf("%s/%s", "sharded");
    char idx[300];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    char *orig;
    size_t len;
    ASSERT(file_read_all(idx, &orig, &len) == STATUS_OK);
    struct { const char *from, *to; enum status want; } cases[] = {
        { "model-00001-of-", "../model-00001-of-", STATUS_EFORMAT },   // path outside the directory
        { "\"weight_map\"", "\"weight_mop\"", STATUS_EFORMAT },
        { "model-00002-of-", "model-00099-of-", STATUS_ENOTFOUND },    // shard file missing
        { "\"model.norm.weight\"", "\"model.nrom.weight\"", STATUS_ENOTFOUND },   // listed but absent
        { "{", "[", STATUS_EFORMAT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *at = strstr(orig, cases[i].from);
        ASSERT(at);
        struct strbuf sb = {0};
        strbuf_append(&sb, orig, (size_t)(at - orig));
        strbuf_puts(&sb, cases[i].to);
        strbuf_puts(&sb, at + strlen(cases[i].from));
        write_file(idx, sb.data, sb.len);
        strbuf_free(&sb);
        struct model_file *mf = NULL;
        enum status st = safetensors_open_dir(dir, &mf);
        EXPECTF(st == cases[i].want, "case %zu: %s", i, status_str(st));
        safetensors_close(mf);
    }
    // A tensor attributed to the wrong shard.
    json_error_t err;
    json_t *j = json_loads(orig, 0, &err);
    ASSERT(j);
    json_t *wm = json_object_get(j, "weight_map");
    const char *s1 = json_string_value(json_object_get(wm, "model.norm.weight"));
    json_object_set_new(wm, "model.embed_tokens.weight", json_string(s1));
    json_dump_file(j, idx, 0);
    json_decref(j);
    struct model_file *mf = NULL;
    EXPECT(safetensors_open_dir(dir, &mf) == STATUS_EFORMAT);
    write_file(idx, orig, len);
    EXPECT(safetensors_open_dir(dir, &mf) == STATUS_OK);
    safetensors_close(mf);
    free(orig);
}

/* ==== Fused experts (transformers 5 in-memory layout) ==== */

struct blob {
    uint8_t *p;
    size_t   n;
};

static void blob_add(struct blob *b, const void *p, size_t n)
{
    b->p = xrealloc(b->p, b->n + n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

/* Rewrites a per-expert MoE checkpoint with fused gate_up_proj [E, 2fe, d] and down_proj [E, d, fe]. */
TEST(fused_experts_match_per_expert)
{
    const char *cfg = "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"vocab_size\": 16, \"hidden_size\": 8,"
                      " \"intermediate_size\": 12, \"num_hidden_layers\": 2, \"num_attention_heads\": 2,"
                      " \"num_key_value_heads\": 1, \"head_dim\": 4, \"num_experts\": 3, \"num_experts_per_tok\": 2,"
                      " \"moe_intermediate_size\": 4, \"mlp_only_layers\": [0]}";
    write_file(pathf("%s/%s", "moe.json"), cfg, strlen(cfg));
    struct synth_opts o = { .config_path = pathf("%s/%s", "moe.json"), .out_dir = pathf("%s/%s", "moe"), .seed = 5, .quiet = 1 };
    ASSERT(synth_write(&o, NULL) == STATUS_OK);
    struct model *a = NULL, *b = NULL;
    ASSERT(model_load(pathf("%s/%s", "moe"), &a) == STATUS_OK);
    ASSERT(a->f.moe && !a->hp.layer_moe[0] && a->hp.layer_moe[1]);
    json_t *hdr = json_object();
    struct blob data = {0};
    for (int i = 0; i < a->files->n_tensors; i++) {
        const struct st_tensor *t = &a->files->tensors[i];
        if (strstr(t->name, ".experts.")) continue;
        struct tensor v;
        ASSERT(safetensors_view(a->files, t, &v) == STATUS_OK);
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(hdr, t->name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", "BF16", "shape", shape,
                                                     "data_offsets", (json_int_t)data.n, (json_int_t)(data.n + t->bytes)));
        blob_add(&data, tensor_data(&v), t->bytes);
    }
    const struct layer_weights *lw = &a->layers[1];
    size_t off = data.n;
    for (int e = 0; e < 3; e++) {
        blob_add(&data, tensor_data(&lw->exp_gate[e]), tensor_bytes(&lw->exp_gate[e]));
        blob_add(&data, tensor_data(&lw->exp_up[e]), tensor_bytes(&lw->exp_up[e]));
    }
    json_object_set_new(hdr, "model.layers.1.mlp.experts.gate_up_proj",
                        json_pack("{s:s,s:[i,i,i],s:[I,I]}", "dtype", "BF16", "shape", 3, 8, 8, "data_offsets",
                                  (json_int_t)off, (json_int_t)data.n));
    off = data.n;
    for (int e = 0; e < 3; e++) blob_add(&data, tensor_data(&lw->exp_down[e]), tensor_bytes(&lw->exp_down[e]));
    json_object_set_new(hdr, "model.layers.1.mlp.experts.down_proj",
                        json_pack("{s:s,s:[i,i,i],s:[I,I]}", "dtype", "BF16", "shape", 3, 8, 4, "data_offsets",
                                  (json_int_t)off, (json_int_t)data.n));
    char *text = json_dumps(hdr, JSON_COMPACT);
    char *dir = write_model("moe_fused", cfg, text, data.p, data.n, 0);
    ASSERT(model_load(dir, &b) == STATUS_OK);
    EXPECT(a->n_params == b->n_params);
    for (int e = 0; e < 3; e++) {
        const struct layer_weights *lb = &b->layers[1];
        EXPECT(lb->exp_gate[e].ne[0] == 8 && lb->exp_gate[e].ne[1] == 4 && lb->exp_down[e].ne[0] == 4 && lb->exp_down[e].ne[1] == 8);
        EXPECT(!memcmp(tensor_data(&lb->exp_gate[e]), tensor_data(&lw->exp_gate[e]), 64));
        EXPECT(!memcmp(tensor_data(&lb->exp_up[e]), tensor_data(&lw->exp_up[e]), 64));
        EXPECT(!memcmp(tensor_data(&lb->exp_down[e]), tensor_data(&lw->exp_down[e]), 64));
    }
    model_free(b);
    // a fused tensor of the wrong shape is an error naming it
    json_object_set_new(hdr, "model.layers.1.mlp.experts.down_proj",
                        json_pack("{s:s,s:[i,i,i],s:[I,I]}", "dtype", "BF16", "shape", 3, 4, 8, "data_offsets",
                                  (json_int_t)off, (json_int_t)data.n));
    free(text);
    text = json_dumps(hdr, JSON_COMPACT);
    dir = write_model("moe_fused_bad", cfg, text, data.p, data.n, 0);
    b = NULL;
    EXPECT(model_load(dir, &b) == STATUS_EFORMAT && !b);
    free(text);
    free(data.p);
    json_decref(hdr);
    model_free(a);
}

/* Gemma3ForConditionalGeneration: the text model under model.language_model. (transformers >= 4.52)
 * or language_model.model. (older), dims in text_config, vision tensors ignored. */
TEST(gemma3_multimodal_prefixes)
{
    const char *text_cfg = "{\"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 64,"
                           " \"num_hidden_layers\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 1,"
                           " \"head_dim\": 16, \"sliding_window\": 8, \"query_pre_attn_scalar\": 16}";
    char cfg[1024];
    snprintf(cfg, sizeof cfg, "{\"architectures\": [\"Gemma3ForCausalLM\"], %s", text_cfg + 1);
    write_file(pathf("%s/%s", "g3.json"), cfg, strlen(cfg));
    struct synth_opts o = { .config_path = pathf("%s/%s", "g3.json"), .out_dir = pathf("%s/%s", "g3"), .seed = 9, .quiet = 1 };
    ASSERT(synth_write(&o, NULL) == STATUS_OK);
    struct model *a = NULL;
    ASSERT(model_load(pathf("%s/%s", "g3"), &a) == STATUS_OK);
    ASSERT(a->f.norm_plus_one && a->hp.tie_embed);
    snprintf(cfg, sizeof cfg, "{\"architectures\": [\"Gemma3ForConditionalGeneration\"], \"text_config\": %s,"
             " \"vision_config\": {\"hidden_size\": 16}, \"eos_token_id\": [1, 60]}", text_cfg);
    static const char *prefixes[] = { "model.language_model.", "language_model.model." };
    for (int k = 0; k < 2; k++) {
        json_t *hdr = json_object();
        struct blob data = {0};
        for (int i = 0; i < a->files->n_tensors; i++) {
            const struct st_tensor *t = &a->files->tensors[i];
            struct tensor v;
            ASSERT(safetensors_view(a->files, t, &v) == STATUS_OK);
            char name[256];
            snprintf(name, sizeof name, "%s%s", prefixes[k], t->name + strlen("model."));
            json_t *shape = json_array();
            for (int d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->shape[d]));
            json_object_set_new(hdr, name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", "BF16", "shape", shape,
                                                     "data_offsets", (json_int_t)data.n, (json_int_t)(data.n + t->bytes)));
            blob_add(&data, tensor_data(&v), t->bytes);
        }
        // a vision tower tensor the text model does not use
        json_object_set_new(hdr, "model.vision_tower.patch_embedding.weight",
                            json_pack("{s:s,s:[i],s:[I,I]}", "dtype", "F32", "shape", 4, "data_offsets",
                                      (json_int_t)data.n, (json_int_t)(data.n + 16)));
        blob_add(&data, "0123456789abcdef", 16);
        char *text = json_dumps(hdr, JSON_COMPACT);
        char *dir = write_model(k ? "g3_old" : "g3_new", cfg, text, data.p, data.n, 0);
        struct model *b = NULL;
        enum status st = model_load(dir, &b);
        EXPECTF(st == STATUS_OK, "prefix %s: %s", prefixes[k], status_str(st));
        if (b) {
            EXPECT(!strcmp(b->hp.arch, "Gemma3ForConditionalGeneration") && b->hp.n_layers == 2 && b->hp.tie_embed);
            EXPECT(b->hp.n_eos == 2 && b->hp.eos_ids[1] == 60 && b->hp.layer_sliding[0] && b->hp.sliding_window == 8);
            EXPECT(b->n_params == a->n_params);
            EXPECT(!memcmp(tensor_data(&b->layers[1].ffn_post_norm), tensor_data(&a->layers[1].ffn_post_norm), 64));
            EXPECT(b->lm_head.offset == b->tok_embed.offset);
        }
        model_free(b);
        free(text);
        free(data.p);
        json_decref(hdr);
    }
    model_free(a);
}

/* ==== Hybrid (Gated DeltaNet) families ==== */

/* d 32, 4 layers (3 DeltaNet + 1 attention), nk 2 x 8, nv 4 x 8, conv 4; the arch line comes first. */
#define HYBRID_DIMS "\"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 48, \"num_hidden_layers\": 4," \
    " \"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 16, \"max_position_embeddings\": 128," \
    " \"linear_num_key_heads\": 2, \"linear_num_value_heads\": 4, \"linear_key_head_dim\": 8," \
    " \"linear_value_head_dim\": 8, \"linear_conv_kernel_dim\": 4, \"mtp_num_hidden_layers\": 1"
#define HYBRID_MOE ", \"num_experts\": 4, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 16," \
    " \"shared_expert_intermediate_size\": 24"

/* Copies model a's tensors into a new checkpoint dir `name` with config cfg: tensors whose name
 * contains `drop` are left out, a leading "model." becomes `prefix` (NULL: unchanged), and the
 * tensor named `reshape` (if any) gets its first dim halved. */
static enum status rewrite_load(const struct model *a, const char *name, const char *cfg, const char *drop,
                                const char *prefix, const char *reshape, struct model **out)
{
    json_t *hdr = json_object();
    struct blob data = {0};
    for (int i = 0; i < a->files->n_tensors; i++) {
        const struct st_tensor *t = &a->files->tensors[i];
        if (drop && strstr(t->name, drop)) continue;
        struct tensor v;
        CHECK(safetensors_view(a->files, t, &v) == STATUS_OK, "view");
        char tname[256];
        if (prefix && !strncmp(t->name, "model.", 6)) snprintf(tname, sizeof tname, "%s%s", prefix, t->name + 6);
        else snprintf(tname, sizeof tname, "%s", t->name);
        json_t *shape = json_array();
        for (int d = 0; d < t->n_dims; d++) {
            int64_t n = t->shape[d];
            if (d == 0 && reshape && !strcmp(t->name, reshape)) n /= 2;
            json_array_append_new(shape, json_integer(n));
        }
        size_t bytes = t->bytes;
        if (reshape && !strcmp(t->name, reshape)) bytes /= 2;
        json_object_set_new(hdr, tname, json_pack("{s:s,s:o,s:[I,I]}", "dtype", "BF16", "shape", shape,
                                                  "data_offsets", (json_int_t)data.n, (json_int_t)(data.n + bytes)));
        blob_add(&data, tensor_data(&v), bytes);
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    char *dir = write_model(name, cfg, text, data.p, data.n, 0);
    enum status st = model_load(dir, out);
    free(text);
    free(data.p);
    json_decref(hdr);
    return st;
}

TEST(hybrid_families_load)
{
    static const struct { const char *arch, *extra; bool grouped, moe, cg; } fams[] = {
        { "Qwen3NextForCausalLM", HYBRID_MOE, true, true, false },
        { "Qwen3_5ForCausalLM", "", false, false, false },
        { "Qwen3_5MoeForCausalLM", HYBRID_MOE, false, true, false },
        { "Qwen3_5ForConditionalGeneration", "", false, false, true },
        { "Qwen3_5MoeForConditionalGeneration", HYBRID_MOE, false, true, true },
    };
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        char cfg[2048], cfgname[64], outname[64];
        if (fams[i].cg)
            snprintf(cfg, sizeof cfg, "{\"architectures\": [\"%s\"], \"text_config\": {" HYBRID_DIMS "%s},"
                     " \"vision_config\": {\"depth\": 2}}", fams[i].arch, fams[i].extra);
        else
            snprintf(cfg, sizeof cfg, "{\"architectures\": [\"%s\"], " HYBRID_DIMS "%s}", fams[i].arch, fams[i].extra);
        snprintf(cfgname, sizeof cfgname, "hy%zu.json", i);
        snprintf(outname, sizeof outname, "hy%zu", i);
        write_file(pathf("%s/%s", cfgname), cfg, strlen(cfg));
        struct synth_opts o = { .config_path = pathf("%s/%s", cfgname), .out_dir = pathf("%s/%s", outname),
                                .seed = 11, .quiet = 1 };
        ASSERT(synth_write(&o, NULL) == STATUS_OK);
        struct model *m = NULL;
        enum status st = model_load(pathf("%s/%s", outname), &m);
        EXPECTF(st == STATUS_OK, "%s: %s", fams[i].arch, status_str(st));
        if (!m) continue;
        const struct hparams *hp = &m->hp;
        EXPECT(hp->layer_linear[0] && hp->layer_linear[1] && hp->layer_linear[2] && !hp->layer_linear[3]);
        EXPECT(hp->n_linear_layers == 3 && hp->partial_rotary == 0.25f && m->f.attn_out_gate && m->f.norm_plus_one);
        EXPECT(m->f.gdn_grouped_proj == fams[i].grouped && m->f.moe == fams[i].moe);
        const struct layer_weights *g = &m->layers[0], *att = &m->layers[3];
        // conv_dim = 2 * 2 * 8 + 4 * 8 = 64; conv1d [64, 1, 4] -> ne {4, 1, 64}
        EXPECT(g->gdn_conv.ne[0] == 4 && g->gdn_conv.ne[1] == 1 && g->gdn_conv.ne[2] == 64);
        EXPECT(g->gdn_a_log.ne[0] == 4 && g->gdn_dt_bias.ne[0] == 4 && g->gdn_norm.ne[0] == 8);
        EXPECT(g->gdn_out.ne[0] == 32 && g->gdn_out.ne[1] == 32 && !g->wq.buf);
        // Qwen3-Next's grouped projections are split into Qwen3.5's at load
        EXPECT(g->gdn_qkv.ne[1] == 64 && g->gdn_z.ne[1] == 32 && g->gdn_b.ne[1] == 4 && g->gdn_a.ne[1] == 4);
        EXPECT(!g->gdn_qkvz.buf && !g->gdn_ba.buf);
        // gated q_proj [q_h | gate_h] per head, split into wq and wq_gate
        EXPECT(att->wq.ne[1] == 2 * 16 && att->wq_gate.ne[1] == 2 * 16 && att->q_norm.buf && !att->gdn_conv.buf);
        {
            // the rows moved where qwen35-arch.md section 3.1/4 says: compare with the file's rows
            const struct st_tensor *fq = safetensors_find(m->files, "model.layers.3.self_attn.q_proj.weight");
            ASSERT(fq);
            size_t row = 32 * 2;   // d 32, bf16
            const char *file_q = (const char *)m->files->shards[fq->shard].buf.data + m->files->shards[fq->shard].data_off + fq->begin;
            // head 1: q rows 32..47 of the file -> wq rows 16..31; gate rows 48..63 -> wq_gate rows 16..31
            EXPECT(!memcmp((const char *)tensor_data(&att->wq) + 16 * row, file_q + 32 * row, 16 * row));
            EXPECT(!memcmp((const char *)tensor_data(&att->wq_gate) + 16 * row, file_q + 48 * row, 16 * row));
            EXPECT(!memcmp((const char *)tensor_data(&att->wq_gate), file_q + 16 * row, 16 * row));
            if (fams[i].grouped) {
                const struct st_tensor *fz = safetensors_find(m->files, "model.layers.0.linear_attn.in_proj_qkvz.weight");
                const struct st_tensor *fb = safetensors_find(m->files, "model.layers.0.linear_attn.in_proj_ba.weight");
                ASSERT(fz && fb);
                const char *qkvz = (const char *)m->files->shards[fz->shard].buf.data + m->files->shards[fz->shard].data_off + fz->begin;
                const char *ba = (const char *)m->files->shards[fb->shard].buf.data + m->files->shards[fb->shard].data_off + fb->begin;
                // group 1 (rows 48..95): q_1 8, k_1 8, v of heads 2,3 (16), z of heads 2,3 (16)
                EXPECT(!memcmp((const char *)tensor_data(&g->gdn_qkv) + 8 * row, qkvz + 48 * row, 8 * row));        // q_1
                EXPECT(!memcmp((const char *)tensor_data(&g->gdn_qkv) + 24 * row, qkvz + 56 * row, 8 * row));       // k_1
                EXPECT(!memcmp((const char *)tensor_data(&g->gdn_qkv) + 48 * row, qkvz + 64 * row, 16 * row));      // v_2,3
                EXPECT(!memcmp((const char *)tensor_data(&g->gdn_z) + 16 * row, qkvz + 80 * row, 16 * row));        // z_2,3
                // ba group 1 (rows 4..7): b of heads 2,3, a of heads 2,3
                EXPECT(!memcmp((const char *)tensor_data(&g->gdn_b) + 2 * row, ba + 4 * row, 2 * row));
                EXPECT(!memcmp((const char *)tensor_data(&g->gdn_a) + 2 * row, ba + 6 * row, 2 * row));
            }
        }
        if (fams[i].moe) {
            EXPECT(hp->norm_topk && hp->d_ff_shared == 24 && att->shared_expert_gate.ne[1] == 1);
            EXPECT(g->exp_gate[3].ne[1] == 16 && g->shared_down.ne[0] == 24);
        } else {
            EXPECT(g->w_gate.ne[1] == 48 && !g->router.buf);
        }
        // the MTP head: globals and one gated-attention layer after the main ones
        EXPECT(m->has_mtp && m->mtp.fc.ne[0] == 64 && m->mtp.fc.ne[1] == 32 && m->layers[4].wq_gate.ne[1] == 32);
        EXPECT(!hp->layer_linear[4] && hp->layer_moe[4] == fams[i].moe);
        // only the attention layer keeps a KV cache: 1 layer * 2 * 1 head * 16 * 2 bytes
        EXPECT(model_kv_bytes_per_token(m, DTYPE_BF16) == 64);
        // per layer: conv 3 * 64 f32 + state 4 * 8 * 8 f32; 3 layers
        EXPECT(model_seq_state_bytes(hp, DTYPE_F32) == 3 * (3 * 64 * 4 + 4 * 8 * 8 * 4));
        // norms: (1 + w) ones centred on 0, the DeltaNet output norm on 1
        EXPECT(fabs(bf16_to_f32(((const uint16_t *)tensor_data(&g->attn_norm))[1])) < 0.1);
        EXPECT(fabs(bf16_to_f32(((const uint16_t *)tensor_data(&g->gdn_norm))[1]) - 1.0) < 0.1);
        uint64_t n_params = m->n_params;

        // the multimodal wrapper's prefix loads the same weights
        if (fams[i].cg) {
            struct model *b = NULL;
            EXPECT(rewrite_load(m, "hy_prefixed", cfg, NULL, "model.language_model.", NULL, &b) == STATUS_OK);
            EXPECT(b && b->n_params == n_params);
            model_free(b);
        }
        // no mtp.* (transformers does not save them): loads without the head
        struct model *b = NULL;
        EXPECT(rewrite_load(m, "hy_nomtp", cfg, "mtp.", NULL, NULL, &b) == STATUS_OK);
        EXPECT(b && !b->has_mtp && b->n_params < n_params && !b->mtp.fc.buf);
        model_free(b);
        // a missing DeltaNet tensor, a broken MTP head, a conv of the wrong shape: errors
        b = NULL;
        EXPECT(rewrite_load(m, "hy_bad", cfg, "layers.1.linear_attn.dt_bias", NULL, NULL, &b) == STATUS_ENOTFOUND);
        EXPECT(rewrite_load(m, "hy_bad", cfg, "mtp.norm.", NULL, NULL, &b) == STATUS_ENOTFOUND);
        EXPECT(rewrite_load(m, "hy_bad", cfg, NULL, NULL, "model.layers.2.linear_attn.conv1d.weight", &b) ==
               STATUS_EFORMAT);
        EXPECT(!b);
        model_free(m);
    }
}

/* ==== Committed transformers fixtures ==== */


/* ==== MLX-quantized checkpoints (fixtures by tools/mlx_quant_ref.py) ==== */

#define QMODELS "tests/model/fixtures/quant/models"

/* Copies fixture `src` to tmp/<name> with its header, config and data bytes edited (any edit
 * may be NULL), and loads it. */
static enum status load_q_edited(const char *name, const char *src, void (*edit_hdr)(json_t *),
                                 void (*edit_cfg)(json_t *), void (*edit_data)(json_t *hdr, uint8_t *data),
                                 size_t truncate_to)
{
    char p[300];
    snprintf(p, sizeof p, "%s/%s/model.safetensors", QMODELS, src);
    char *file;
    size_t len;
    CHECK(file_read_all(p, &file, &len) == STATUS_OK, "read %s", p);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | (uint8_t)file[i];
    json_t *h = json_loadb(file + 8, (size_t)n, 0, NULL);
    CHECK(h, "header of %s", p);
    if (edit_hdr) edit_hdr(h);
    if (edit_data) edit_data(h, (uint8_t *)file + 8 + n);
    snprintf(p, sizeof p, "%s/%s/config.json", QMODELS, src);
    json_t *cfg = json_load_file(p, 0, NULL);
    CHECK(cfg, "config of %s", src);
    if (edit_cfg) edit_cfg(cfg);
    char *htext = json_dumps(h, JSON_COMPACT), *ctext = json_dumps(cfg, 0);
    size_t data_len = len - 8 - (size_t)n;
    char *dir = write_model(name, ctext, htext, file + 8 + n, data_len, 0);
    if (truncate_to) {
        snprintf(p, sizeof p, "%s/model.safetensors", dir);
        CHECK(truncate(p, (off_t)truncate_to) == 0, "truncate");
    }
    free(htext);
    free(ctext);
    json_decref(h);
    json_decref(cfg);
    free(file);
    struct model *m = NULL;
    enum status st = model_load(dir, &m);
    if (st == STATUS_OK) CHECK(m->n_qw > 0, "%s loaded without quantized weights", name);
    model_free(m);
    return st;
}

static json_t *qblock(json_t *cfg) { return json_object_get(cfg, "quantization"); }
static void set_shape(json_t *h, const char *t, int64_t a, int64_t b)
{
    json_object_set_new(json_object_get(h, t), "shape", json_pack("[I, I]", (json_int_t)a, (json_int_t)b));
}
static void edit_packed_shape(json_t *h) { set_shape(h, "model.layers.0.self_attn.q_proj.weight", 64, 16); }
static void edit_scales_shape(json_t *h) { set_shape(h, "model.layers.0.mlp.up_proj.scales", 64, 2); }
static void edit_scales_dtype(json_t *h)
{
    json_t *e = json_object_get(h, "model.layers.0.mlp.up_proj.scales");
    json_object_set_new(e, "dtype", json_string("U8"));
    set_shape(h, "model.layers.0.mlp.up_proj.scales", 128, 2);
}
static void edit_drop_biases(json_t *h) { json_object_del(h, "model.layers.0.mlp.up_proj.biases"); }
static void edit_cfg_bits8(json_t *c) { json_object_set_new(qblock(c), "bits", json_integer(8)); }
static void edit_cfg_bits7(json_t *c) { json_object_set_new(qblock(c), "bits", json_integer(7)); }
static void edit_cfg_group16(json_t *c) { json_object_set_new(qblock(c), "group_size", json_integer(16)); }
static void edit_cfg_mode(json_t *c) { json_object_set_new(qblock(c), "mode", json_string("int4")); }
static void edit_cfg_group_null(json_t *c) { json_object_set_new(qblock(c), "group_size", json_null()); }
static void edit_cfg_no_block(json_t *c)
{
    json_object_del(c, "quantization");
    json_object_del(c, "quantization_config");
}
static void edit_cfg_group_string(json_t *c) { json_object_set_new(qblock(c), "group_size", json_string("64")); }
static void edit_cfg_override_number(json_t *c) { json_object_set_new(qblock(c), "model.layers.0.mlp.up_proj", json_integer(4)); }
static void edit_cfg_hf_method(json_t *c)
{
    json_object_del(c, "quantization");
    json_object_set_new(c, "quantization_config", json_pack("{s:s, s:i}", "quant_method", "awq", "bits", 4));
}
static void edit_cfg_only_hf_copy(json_t *c) { json_object_del(c, "quantization"); }
static void edit_cfg_ghost_override(json_t *c)
{
    json_object_set_new(qblock(c), "model.layers.9.mlp.gate", json_pack("{s:i, s:i}", "group_size", 64, "bits", 8));
}
static void edit_cfg_override_false(json_t *c) { json_object_set_new(qblock(c), "model.layers.0.mlp.up_proj", json_false()); }
static void edit_cfg_router_null_group(json_t *c)
{
    json_object_set_new(qblock(c), "model.layers.1.mlp.gate", json_pack("{s:n, s:i}", "group_size", "bits", 8));
}
static void edit_cfg_router_4bit(json_t *c)
{
    json_object_set_new(qblock(c), "model.layers.1.mlp.gate", json_pack("{s:i, s:i}", "group_size", 64, "bits", 4));
}
/* The first scale byte of a tensor set to 0xFF (E8M0 +Inf in MLX). */
static void poison_scale(json_t *h, uint8_t *data, const char *name)
{
    json_t *off = json_object_get(json_object_get(h, name), "data_offsets");
    CHECK(off, "no %s", name);
    data[json_integer_value(json_array_get(off, 0)) + 3] = 0xFF;
}
static void edit_e8m0_inf(json_t *h, uint8_t *d) { poison_scale(h, d, "model.layers.1.mlp.down_proj.scales"); }
static void edit_e4m3_nan(json_t *h, uint8_t *d) { poison_scale(h, d, "model.layers.0.self_attn.o_proj.scales"); }

TEST(quantized_fixtures_load)
{
    const char *dirs[] = { "qwen3_q4g64", "qwen3_mixed_3_6_g32", "qwen3_moe_mixed_4_8", "qwen3_tied_nvfp4",
                           "llama_mxfp4", "mistral_mxfp8", "qwen2_mxfp8" };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char p[300];
        snprintf(p, sizeof p, "%s/%s", QMODELS, dirs[i]);
        struct model *m = NULL;
        EXPECTF(model_load(p, &m) == STATUS_OK, "%s", dirs[i]);
        if (!m) continue;
        EXPECT(m->n_qw > 0 && m->tok_embed.dtype == DTYPE_QMLX && m->lm_head.dtype == DTYPE_QMLX);
        EXPECT(m->hp.tie_embed == (m->lm_head.q == m->tok_embed.q));
        EXPECT(m->layers[0].wq.ne[0] == m->hp.d_model && m->layers[0].wq.q);
        if (!strcmp(dirs[i], "qwen3_moe_mixed_4_8")) {
            const struct layer_weights *lw = &m->layers[1];
            EXPECT(lw->router.q && lw->router.q->bits == 8 && lw->exp_gate[7].q && lw->exp_gate[7].q->bits == 4);
            EXPECT(lw->exp_down[3].dtype == DTYPE_BF16);   // in 32 is no multiple of 64: mlx-lm leaves it float
            // expert 7 of the stacked switch_mlp is the last slice of its packed words and scales
            EXPECT(lw->exp_gate[7].offset == lw->exp_gate[0].offset + 7 * 32 * lw->exp_gate[0].nb[1]);
            EXPECT(lw->exp_gate[7].q->scales.offset == lw->exp_gate[0].q->scales.offset + 7 * 32 * 2);
        }
        if (!strcmp(dirs[i], "qwen3_mixed_3_6_g32"))
            EXPECT(m->layers[2].wv.q->bits == 6 && m->layers[1].wv.q->bits == 3 && m->lm_head.q->bits == 6 &&
                   m->layers[0].wq.q->group_size == 32);
        model_free(m);
    }
}

TEST(corrupt_quantized)
{
    const char *q4 = "qwen3_q4g64", *moe = "qwen3_moe_mixed_4_8";
    EXPECT(load_q_edited("q_ok", q4, NULL, NULL, NULL, 0) == STATUS_OK);
    EXPECT(load_q_edited("q_null_group", q4, NULL, edit_cfg_group_null, NULL, 0) == STATUS_OK);
    EXPECT(load_q_edited("q_hf_copy", q4, NULL, edit_cfg_only_hf_copy, NULL, 0) == STATUS_OK);
    EXPECT(load_q_edited("q_router_null", moe, NULL, edit_cfg_router_null_group, NULL, 0) == STATUS_OK);
    EXPECT(load_q_edited("q_packed", q4, edit_packed_shape, NULL, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_bits8", q4, NULL, edit_cfg_bits8, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_router4", moe, NULL, edit_cfg_router_4bit, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_sshape", q4, edit_scales_shape, NULL, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_sdtype", q4, edit_scales_dtype, NULL, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_nobias", q4, edit_drop_biases, NULL, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_ghost", moe, NULL, edit_cfg_ghost_override, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_false", q4, NULL, edit_cfg_override_false, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_noblock", q4, NULL, edit_cfg_no_block, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_bits7", q4, NULL, edit_cfg_bits7, NULL, 0) == STATUS_EUNSUPPORTED);
    EXPECT(load_q_edited("q_group16", q4, NULL, edit_cfg_group16, NULL, 0) == STATUS_EUNSUPPORTED);
    EXPECT(load_q_edited("q_mode", q4, NULL, edit_cfg_mode, NULL, 0) == STATUS_EUNSUPPORTED);
    EXPECT(load_q_edited("q_e8m0", "llama_mxfp4", NULL, NULL, edit_e8m0_inf, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_e4m3", "qwen3_tied_nvfp4", NULL, NULL, edit_e4m3_nan, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_trunc", q4, NULL, NULL, NULL, 40000) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_gstr", q4, NULL, edit_cfg_group_string, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_ovnum", q4, NULL, edit_cfg_override_number, NULL, 0) == STATUS_EFORMAT);
    EXPECT(load_q_edited("q_awq", q4, NULL, edit_cfg_hf_method, NULL, 0) == STATUS_EUNSUPPORTED);
}

/* ==== MLX-quantized hybrids (mlx_lm's names and layouts; tools/mlx_quant_ref.py) ==== */

#define NEXT_L0 "model.layers.0.linear_attn."
#define VLM_L0 "language_model.model.layers.0."
static void set_shape3(json_t *h, const char *t, int64_t a, int64_t b, int64_t c)
{
    json_object_set_new(json_object_get(h, t), "shape", json_pack("[I, I, I]", (json_int_t)a, (json_int_t)b, (json_int_t)c));
}
static void edit_h_drop_qkvz_scales(json_t *h) { json_object_del(h, NEXT_L0 "in_proj_qkvz.scales"); }
static void edit_h_qkvz_packed(json_t *h) { set_shape(h, NEXT_L0 "in_proj_qkvz.weight", 96, 16); }
static void edit_h_ba_scales(json_t *h) { set_shape(h, NEXT_L0 "in_proj_ba.scales", 4, 2); }
static void edit_h_conv_mixed(json_t *h) { set_shape3(h, NEXT_L0 "conv1d.weight", 128, 1, 4); }
static void edit_h_conv_shape(json_t *h) { set_shape3(h, NEXT_L0 "conv1d.weight", 64, 8, 1); }
static void edit_h_drop_a_log(json_t *h) { json_object_del(h, NEXT_L0 "A_log"); }
static void edit_h_switch_scales(json_t *h) { set_shape3(h, "model.layers.1.mlp.switch_mlp.up_proj.scales", 8, 16, 2); }
static void edit_h_drop_seg_biases(json_t *h) { json_object_del(h, VLM_L0 "mlp.shared_expert_gate.biases"); }
static void edit_h_drop_head_scales(json_t *h) { json_object_del(h, "language_model.lm_head.scales"); }
static void edit_h_qproj_packed(json_t *h) { set_shape(h, "language_model.model.layers.3.self_attn.q_proj.weight", 128, 16); }
static void edit_hc_router4(json_t *c)
{
    json_object_set_new(qblock(c), VLM_L0 "mlp.gate", json_pack("{s:i, s:i}", "group_size", 64, "bits", 4));
}
static void edit_hc_ghost(json_t *c)
{
    json_object_set_new(qblock(c), "language_model.model.layers.9.mlp.gate", json_pack("{s:i, s:i}", "group_size", 64, "bits", 8));
}
static void edit_hc_no_text_config(json_t *c) { json_object_del(c, "text_config"); }
static void edit_hd_e8m0_inf(json_t *h, uint8_t *d) { poison_scale(h, d, NEXT_L0 "in_proj_qkvz.scales"); }

TEST(quantized_hybrids_load)
{
    struct model *m = NULL;
    ASSERT(model_load(QMODELS "/qwen3_next_q4g64", &m) == STATUS_OK);
    const struct layer_weights *l0 = &m->layers[0], *l2 = &m->layers[2];
    EXPECT(!m->f.norm_plus_one);   // conv1d [C, K, 1]: norms stored as 1 + w
    EXPECT(l0->gdn_conv.ne[0] == 4 && l0->gdn_conv.ne[1] == 1 && l0->gdn_conv.ne[2] == 128);
    // in_proj_qkvz / in_proj_ba split into q|k|v, z, b, a with their scale rows
    EXPECT(l0->gdn_qkv.q && l0->gdn_qkv.ne[1] == 128 && l0->gdn_z.q && l0->gdn_z.ne[1] == 64 && l0->gdn_b.q &&
           l0->gdn_a.q && l0->gdn_a.ne[1] == 4 && !l0->gdn_qkvz.buf && !l0->gdn_ba.buf);
    EXPECT(l0->gdn_qkv.q->scales.ne[1] == 128 && l0->gdn_a.q->biases.ne[1] == 4);
    EXPECT(l2->wq.q && l2->wq_gate.q && l2->wq.ne[1] == 128 && l2->wq_gate.ne[1] == 128);
    EXPECT(l0->router.q->bits == 8 && l0->shared_expert_gate.q->bits == 8 && l0->exp_up[5].q->bits == 4);
    EXPECT(l0->shared_down.dtype == DTYPE_BF16);   // in 48: no multiple of 64, left float by mlx-lm
    // row r of the split part equals row r of the dequantized original's permutation (q rows of head 1
    // of gated q_proj = original rows [2 hd, 3 hd)); checked through the dequantizer
    float a[64], b[64];
    qweight_dequant_row(&l2->wq, 32, a);
    const struct st_tensor *qt = safetensors_find(m->files, "model.layers.2.self_attn.q_proj.weight");
    struct qweight qo = *l2->wq.q;
    struct tensor packed;
    ASSERT(qt && safetensors_view(m->files, qt, &packed) == STATUS_OK);
    ASSERT(safetensors_view(m->files, safetensors_find(m->files, "model.layers.2.self_attn.q_proj.scales"), &qo.scales) == STATUS_OK);
    ASSERT(safetensors_view(m->files, safetensors_find(m->files, "model.layers.2.self_attn.q_proj.biases"), &qo.biases) == STATUS_OK);
    struct tensor orig = qweight_tensor(&qo, &packed, 64);
    qweight_dequant_row(&orig, 64, b);
    EXPECT(!memcmp(a, b, sizeof a));
    qweight_dequant_row(&l2->wq_gate, 0, a);
    qweight_dequant_row(&orig, 32, b);
    EXPECT(!memcmp(a, b, sizeof a));
    model_free(m);

    ASSERT(model_load(QMODELS "/qwen3_next_mxfp4", &m) == STATUS_OK);
    EXPECT(m->layers[0].gdn_qkv.q->mode == QMODE_MXFP4 && m->layers[0].router.q->mode == QMODE_AFFINE &&
           m->layers[0].router.q->bits == 8);   // the override has no mode: affine (spec 4, rule 3)
    model_free(m);

    ASSERT(model_load(QMODELS "/qwen3_5_moe_vlm_q4g32", &m) == STATUS_OK);
    EXPECT(!strcmp(m->hp.arch, "Qwen3_5MoeForConditionalGeneration") && !m->f.norm_plus_one);
    EXPECT(m->lm_head.q && m->tok_embed.q && m->layers[3].wq_gate.q && m->layers[0].gdn_a.q &&
           m->layers[0].gdn_out.q && m->layers[0].gdn_a_log.dtype == DTYPE_BF16);
    model_free(m);
}

TEST(corrupt_quantized_hybrids)
{
    static const char *next = "qwen3_next_q4g64", *vlm = "qwen3_5_moe_vlm_q4g32";
    static const struct {
        const char *name, *src;
        void (*hdr)(json_t *);
        void (*cfg)(json_t *);
        void (*data)(json_t *, uint8_t *);
        size_t truncate_to;
        enum status want;
    } cases[] = {
        { "h_ok", NULL, NULL, NULL, NULL, 0, STATUS_OK },
        { "h_noscales", NULL, edit_h_drop_qkvz_scales, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_qkvz", NULL, edit_h_qkvz_packed, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_ba_scales", NULL, edit_h_ba_scales, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_conv_mixed", NULL, edit_h_conv_mixed, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_conv_shape", NULL, edit_h_conv_shape, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_no_a_log", NULL, edit_h_drop_a_log, NULL, NULL, 0, STATUS_ENOTFOUND },
        { "h_switch", NULL, edit_h_switch_scales, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_e8m0", "qwen3_next_mxfp4", NULL, NULL, edit_hd_e8m0_inf, 0, STATUS_EFORMAT },
        { "h_trunc", NULL, NULL, NULL, NULL, 100000, STATUS_EFORMAT },
        { "h_vlm_ok", "vlm", NULL, NULL, NULL, 0, STATUS_OK },
        { "h_seg_biases", "vlm", edit_h_drop_seg_biases, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_head_scales", "vlm", edit_h_drop_head_scales, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_qproj", "vlm", edit_h_qproj_packed, NULL, NULL, 0, STATUS_EFORMAT },
        { "h_router4", "vlm", NULL, edit_hc_router4, NULL, 0, STATUS_EFORMAT },
        { "h_ghost", "vlm", NULL, edit_hc_ghost, NULL, 0, STATUS_EFORMAT },
        { "h_no_text_cfg", "vlm", NULL, edit_hc_no_text_config, NULL, 0, STATUS_EFORMAT },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *src = !cases[i].src ? next : !strcmp(cases[i].src, "vlm") ? vlm : cases[i].src;
        enum status st = load_q_edited(cases[i].name, src, cases[i].hdr, cases[i].cfg, cases[i].data,
                                       cases[i].truncate_to);
        EXPECTF(st == cases[i].want, "%s: %s, want %s", cases[i].name, status_str(st), status_str(cases[i].want));
    }
}

TEST(fixtures_load)
{
    static const char *names[] = { "llama", "llama_rope_llama3", "llama_rope_linear", "llama_rope_dynamic",
                                   "llama_rope_yarn", "mistral", "qwen2", "qwen3", "qwen3_tied", "qwen3_moe",
                                   "qwen3_moe_b", "gemma3", "gemma3_scaled", "qwen3_next", "qwen3_5",
                                   "qwen3_5_moe" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char dir[256], ref[300];
        snprintf(dir, sizeof dir, "tests/model/fixtures/%s", names[i]);
        snprintf(ref, sizeof ref, "%s/ref.json", dir);
        json_error_t err;
        json_t *r = json_load_file(ref, 0, &err);
        EXPECTF(r, "%s: %s", ref, err.text);
        if (!r) continue;
        struct model *m = NULL;
        enum status st = model_load(dir, &m);
        EXPECTF(st == STATUS_OK, "%s: %s", names[i], status_str(st));
        if (st == STATUS_OK) {
            EXPECT(!strcmp(m->hp.arch, json_string_value(json_object_get(r, "arch"))));
            EXPECT(m->hp.n_vocab == json_integer_value(json_object_get(r, "vocab")));
            // Every tensor of the file is bound: parameters = all elements in the file.
            uint64_t all = 0;
            for (int t = 0; t < m->files->n_tensors; t++)
                all += m->files->tensors[t].bytes / dtype_size(m->files->tensors[t].dtype);
            EXPECTF(m->n_params == all, "%s: %llu bound vs %llu in file", names[i],
                    (unsigned long long)m->n_params, (unsigned long long)all);
            const json_t *lm = json_object_get(r, "layer_moe");
            if (lm) {
                bool same = json_array_size(lm) == (size_t)m->hp.n_layers;
                for (int l = 0; same && l < m->hp.n_layers; l++)
                    same = json_is_true(json_array_get(lm, (size_t)l)) == m->hp.layer_moe[l];
                EXPECTF(same, "%s: layer_moe differs from ref.json", names[i]);
            }
            const json_t *lt = json_object_get(r, "layer_types");   // hybrid fixtures
            if (lt) {
                bool same = json_array_size(lt) == (size_t)m->hp.n_layers;
                for (int l = 0; same && l < m->hp.n_layers; l++) {
                    const char *kind = json_string_value(json_array_get(lt, (size_t)l));
                    same = kind && !strcmp(kind, m->hp.layer_linear[l] ? "linear_attention" : "full_attention");
                }
                EXPECTF(same, "%s: layer_types differ from ref.json", names[i]);
            }
        }
        model_free(m);
        json_decref(r);
    }
}

int main(void)
{
    setup();
    RUN(loads_synthesized);
    RUN(synth_in_memory_matches_file);
    RUN(sharded_matches_single);
    RUN(tied_embeddings_alias);
    RUN(corrupt_headers);
    RUN(lookup_and_views);
    RUN(corrupt_checkpoints);
    RUN(corrupt_index);
    RUN(fused_experts_match_per_expert);
    RUN(gemma3_multimodal_prefixes);
    RUN(hybrid_families_load);
    RUN(quantized_hybrids_load);
    RUN(corrupt_quantized_hybrids);
    RUN(fixtures_load);
    RUN(quantized_fixtures_load);
    RUN(corrupt_quantized);
    json_decref(good_hdr);
    free(good);
    scratch_dir_remove(tmp);
    return test_summary();
}
