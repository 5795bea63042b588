/* synth: random-weight checkpoints. See synth.h for the contract.
 *
 * Design note: each element is a hash of (tensor seed, element index), turned into an
 * approximately normal value by summing four 16-bit uniforms (Irwin-Hall, bounded at +-3.5 sigma).
 * That makes generation embarrassingly parallel and independent of chunking, so an 8B model's
 * 16 GB stream out at disk speed: a chunk is filled by n threads, then written, while memory stays
 * at one chunk. Headers are written before data, so every shard's layout is planned first.
 */
#include "model/synth.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/hash.h"
#include "base/log.h"
#include "base/mem.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/weights.h"

#define CHUNK_ELEMS   (4u << 20)   // 8 MiB of bf16 per write
#define MAX_THREADS   16

/* ==== Values ==== */

uint64_t synth_tensor_seed(uint64_t seed, const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;   // FNV-1a over the name, then mixed with the seed
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return hash_mix64(h ^ hash_mix64(seed + HASH_GOLDEN64));
}

void synth_fill_bf16(uint16_t *dst, size_t n, uint64_t tseed, uint64_t first, float base, float std)
{
    // Sum of four uniforms on [0, 65535]: mean 131070, std 65536 / sqrt(3).
    const float k = std * 1.7320508f / 65536.0f;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hash_mix64(tseed + (first + i) * HASH_GOLDEN64);
        float s = (float)((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48));
        dst[i] = f32_to_bf16(base + (s - 131070.0f) * k);
    }
}

float synth_base(bool is_norm, bool norm_plus_one)
{
    return is_norm && !norm_plus_one ? 1.0f : 0.0f;
}

struct fill_job {
    uint16_t *dst;
    size_t    n;
    uint64_t  tseed, first;
    float     base, std;
};

static void *fill_thread(void *arg)
{
    struct fill_job *j = arg;
    synth_fill_bf16(j->dst, j->n, j->tseed, j->first, j->base, j->std);
    return NULL;
}

void synth_fill_bf16_mt(uint16_t *dst, size_t n, uint64_t tseed, uint64_t first, float base, float std, int n_threads)
{
    if (n_threads <= 0) n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    if (n_threads <= 1 || n < 65536) {
        synth_fill_bf16(dst, n, tseed, first, base, std);
        return;
    }
    pthread_t th[MAX_THREADS];
    struct fill_job jobs[MAX_THREADS];
    size_t per = (n + (size_t)n_threads - 1) / (size_t)n_threads;
    int started = 0;
    for (int t = 0; t < n_threads; t++) {
        size_t a = (size_t)t * per, b = a + per < n ? a + per : n;
        if (a >= b) break;
        jobs[t] = (struct fill_job){ dst + a, b - a, tseed, first + a, base, std };
        if (pthread_create(&th[t], NULL, fill_thread, &jobs[t]) != 0) {
            fill_thread(&jobs[t]);   // no thread: do it here
            continue;
        }
        started |= 1 << t;
    }
    for (int t = 0; t < n_threads; t++)
        if (started & (1 << t)) pthread_join(th[t], NULL);
}

/* ==== Files ==== */

static enum status mkdir_p(const char *dir)
{
    char *p = xstrdup(dir);
    enum status st = STATUS_OK;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            LOG_ERR("%s: mkdir: %s", p, strerror(errno));
            st = STATUS_EIO;
            break;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    return st;
}

static enum status copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb");
    if (!in) return STATUS_ENOTFOUND;
    FILE *out = fopen(dst, "wb");
    if (!out) {
        LOG_ERR("%s: %s", dst, strerror(errno));
        fclose(in);
        return STATUS_EIO;
    }
    char buf[65536];
    size_t n;
    enum status st = STATUS_OK;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) st = STATUS_EIO;
    if (ferror(in)) st = STATUS_EIO;
    fclose(in);
    if (fclose(out) != 0) st = STATUS_EIO;
    if (st != STATUS_OK) LOG_ERR("copying %s to %s failed", src, dst);
    return st;
}

static enum status copy_tokenizer(const char *from, const char *to)
{
    static const char *files[] = {
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
        "chat_template.json", "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json",
    };
    int copied = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct strbuf a = {0}, b = {0};
        strbuf_printf(&a, "%s/%s", from, files[i]);
        strbuf_printf(&b, "%s/%s", to, files[i]);
        enum status st = copy_file(a.data, b.data);
        strbuf_free(&a);
        strbuf_free(&b);
        if (st == STATUS_OK) copied++;
        else if (st != STATUS_ENOTFOUND) return st;
    }
    if (!copied) {
        LOG_ERR("%s: no tokenizer files (tokenizer.json, tokenizer_config.json, ...)", from);
        return STATUS_ENOTFOUND;
    }
    return STATUS_OK;
}

/* Reads the input config, applies --arch, validates it and returns the text to write. */
static enum status prepare_config(const struct synth_opts *o, char **out_text, struct hparams *hp,
                                  struct arch_features *f, const struct arch **a)
{
    json_error_t err;
    json_t *root = json_load_file(o->config_path, JSON_REJECT_DUPLICATES, &err);
    if (!root || !json_is_object(root)) {
        LOG_ERR("%s: bad JSON at line %d column %d: %s", o->config_path, err.line, err.column,
                root ? "not an object" : err.text);
        json_decref(root);
        return STATUS_EFORMAT;
    }
    if (o->arch) {
        json_t *arr = json_array();
        json_array_append_new(arr, json_string(o->arch));
        json_object_set_new(root, "architectures", arr);
    }
    if (!json_object_get(root, "torch_dtype") && !json_object_get(root, "dtype"))
        json_object_set_new(root, "torch_dtype", json_string("bfloat16"));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    CHECK(text, "json_dumps failed");
    enum status st = config_parse(o->config_path, text, strlen(text), NULL, 0, hp, f, a);
    if (st != STATUS_OK) {
        free(text);
        return st;
    }
    *out_text = text;
    return STATUS_OK;
}

static enum status write_all(FILE *fp, const void *p, size_t n, const char *path)
{
    if (fwrite(p, 1, n, fp) != n) {
        LOG_ERR("%s: write failed: %s", path, strerror(errno));
        return STATUS_EIO;
    }
    return STATUS_OK;
}

/* Writes tensors [i0, i1) of the plan as one safetensors file. */
static enum status write_shard(const struct synth_opts *o, const char *path, const struct weight_spec *plan,
                               int i0, int i1, const struct arch_features *f, uint16_t *chunk, int n_threads,
                               uint64_t *done, uint64_t total)
{
    json_t *hdr = json_object();
    json_object_set_new(hdr, "__metadata__", json_pack("{s:s}", "format", "pt"));
    uint64_t off = 0;
    for (int i = i0; i < i1; i++) {
        const struct weight_spec *s = &plan[i];
        uint64_t bytes = (uint64_t)weights_nelem(s) * 2;
        json_t *shape = json_array();   // outermost first
        for (int k = s->n_dims - 1; k >= 0; k--) json_array_append_new(shape, json_integer((json_int_t)s->ne[k]));
        json_object_set_new(hdr, s->name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", "BF16", "shape", shape,
                                                    "data_offsets", (json_int_t)off, (json_int_t)(off + bytes)));
        off += bytes;
    }
    char *text = json_dumps(hdr, JSON_COMPACT);
    json_decref(hdr);
    CHECK(text, "json_dumps failed");
    size_t hlen = strlen(text), padded = (hlen + 7) & ~(size_t)7;
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        LOG_ERR("%s: %s", path, strerror(errno));
        free(text);
        return STATUS_EIO;
    }
    uint8_t len8[8];
    for (int b = 0; b < 8; b++) len8[b] = (uint8_t)((uint64_t)padded >> (8 * b));
    enum status st = write_all(fp, len8, 8, path);
    if (st == STATUS_OK) st = write_all(fp, text, hlen, path);
    for (size_t p = hlen; p < padded && st == STATUS_OK; p++) st = write_all(fp, " ", 1, path);
    free(text);
    for (int i = i0; i < i1 && st == STATUS_OK; i++) {
        const struct weight_spec *s = &plan[i];
        uint64_t n = (uint64_t)weights_nelem(s);
        uint64_t tseed = synth_tensor_seed(o->seed, s->name);
        float base = weights_synth_base(s->role, f);
        for (uint64_t e = 0; e < n && st == STATUS_OK; e += CHUNK_ELEMS) {
            size_t k = n - e < CHUNK_ELEMS ? (size_t)(n - e) : CHUNK_ELEMS;
            synth_fill_bf16_mt(chunk, k, tseed, e, base, SYNTH_STD, n_threads);
            st = write_all(fp, chunk, k * 2, path);
            *done += k * 2;
        }
        if (!o->quiet && isatty(2))
            fprintf(stderr, "\rsynth: %5.1f%% (%.2f of %.2f GB)", 100.0 * (double)*done / (double)total,
                    (double)*done / 1e9, (double)total / 1e9);
    }
    if (fclose(fp) != 0 && st == STATUS_OK) {
        LOG_ERR("%s: close failed: %s", path, strerror(errno));
        st = STATUS_EIO;
    }
    return st;
}

/* Assigns plan entries to shards of at most `limit` bytes (a larger tensor gets its own shard).
 * first[s] is the first plan index of shard s; first[n_shards] = n. Returns n_shards. */
static int shard_plan(const struct weight_spec *plan, int n, uint64_t limit, int *first, uint64_t *total)
{
    uint64_t cur = 0;
    int n_shards = 0;
    *total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = (uint64_t)weights_nelem(&plan[i]) * 2;
        if (i == 0 || (cur > 0 && cur + bytes > limit)) {
            first[n_shards++] = i;
            cur = 0;
        }
        cur += bytes;
        *total += bytes;
    }
    first[n_shards] = n;
    return n_shards;
}

static enum status synth_plan_only(const struct synth_opts *o, const struct arch *a, const struct hparams *hp,
                                   const struct arch_features *f, struct synth_result *res)
{
    struct weight_spec *plan;
    int n = weights_plan(a, hp, f, &plan);
    int *first = xmalloc(sizeof *first * (size_t)(n + 1));
    uint64_t total;
    int n_shards = shard_plan(plan, n, o->shard_bytes ? o->shard_bytes : SYNTH_SHARD_BYTES, first, &total);
    if (res) *res = (struct synth_result){ .n_params = total / 2, .bytes = total, .n_tensors = n, .n_shards = n_shards };
    free(first);
    free(plan);
    return STATUS_OK;
}

enum status synth_write(const struct synth_opts *o, struct synth_result *res)
{
    struct hparams hp;
    struct arch_features f;
    const struct arch *a;
    char *cfg_text = NULL;
    enum status st = prepare_config(o, &cfg_text, &hp, &f, &a);
    if (st != STATUS_OK) return st;
    if (o->dry_run) {
        st = synth_plan_only(o, a, &hp, &f, res);
        goto out_free_cfg;
    }
    if ((st = mkdir_p(o->out_dir)) != STATUS_OK) goto out_free_cfg;

    struct strbuf path = {0};
    strbuf_printf(&path, "%s/config.json", o->out_dir);
    FILE *fp = fopen(path.data, "wb");
    if (!fp || fputs(cfg_text, fp) < 0 || fputc('\n', fp) == EOF) st = STATUS_EIO;
    if (fp && fclose(fp) != 0) st = STATUS_EIO;
    if (st != STATUS_OK) {
        LOG_ERR("%s: cannot write", path.data);
        goto out_free_path;
    }
    if (o->tokenizer_dir && (st = copy_tokenizer(o->tokenizer_dir, o->out_dir)) != STATUS_OK) goto out_free_path;

    struct weight_spec *plan;
    int n = weights_plan(a, &hp, &f, &plan);
    uint64_t total;
    int *first = xmalloc(sizeof *first * (size_t)(n + 1));   // first plan index of each shard
    int n_shards = shard_plan(plan, n, o->shard_bytes ? o->shard_bytes : SYNTH_SHARD_BYTES, first, &total);
    int n_threads = o->n_threads > 0 ? o->n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    uint16_t *chunk = malloc((size_t)CHUNK_ELEMS * 2);
    if (!chunk) {
        st = STATUS_ENOMEM;
        goto out_free_plan;
    }
    json_t *wmap = json_object();
    uint64_t done = 0;
    for (int s = 0; s < n_shards && st == STATUS_OK; s++) {
        struct strbuf name = {0};
        if (n_shards == 1) strbuf_puts(&name, "model.safetensors");
        else strbuf_printf(&name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        strbuf_clear(&path);
        strbuf_printf(&path, "%s/%s", o->out_dir, name.data);
        st = write_shard(o, path.data, plan, first[s], first[s + 1], &f, chunk, n_threads, &done, total);
        for (int i = first[s]; i < first[s + 1]; i++) json_object_set_new(wmap, plan[i].name, json_string(name.data));
        strbuf_free(&name);
    }
    if (!o->quiet && isatty(2)) fputc('\n', stderr);
    if (st == STATUS_OK && n_shards > 1) {
        json_t *index = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", wmap);
        wmap = NULL;
        strbuf_clear(&path);
        strbuf_printf(&path, "%s/model.safetensors.index.json", o->out_dir);
        if (json_dump_file(index, path.data, JSON_INDENT(2)) != 0) {
            LOG_ERR("%s: cannot write", path.data);
            st = STATUS_EIO;
        }
        json_decref(index);
    }
    json_decref(wmap);
    if (st == STATUS_OK && res)
        *res = (struct synth_result){ .n_params = total / 2, .bytes = total, .n_tensors = n, .n_shards = n_shards };
    if (st == STATUS_OK && !o->quiet)
        LOG_INFO("%s: wrote %s, %d tensors, %.2f GB in %d shard%s", o->out_dir, hp.arch, n, (double)total / 1e9,
                 n_shards, n_shards > 1 ? "s" : "");
    free(chunk);
out_free_plan:
    free(first);
    free(plan);
out_free_path:
    strbuf_free(&path);
out_free_cfg:
    free(cfg_text);
    return st;
}
