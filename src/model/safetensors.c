/* safetensors: mmap + validation of safetensors files (format: 8-byte little-endian header
 * length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {}},
 * then the data region; offsets are relative to the data region).
 *
 * Design note: nothing from the file is trusted. Sizes are multiplied with overflow checks, every
 * range is checked against the data region before a tensor view can exist, and overlaps are found
 * by sorting each shard's ranges. Names are copied, so the JSON document is freed after parsing.
 * Shard file names from the index must be plain names in the model directory (no '/' or "..").
 */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"

#define ST_MAX_SHARDS 4096

/* ==== Header parsing ==== */

static void tensors_push(struct model_file *mf, int *cap, const struct st_tensor *t)
{
    if (mf->n_tensors == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        mf->tensors = xrealloc(mf->tensors, sizeof *mf->tensors * (size_t)*cap);
    }
    mf->tensors[mf->n_tensors++] = *t;
}

static int cmp_range(const void *a, const void *b)
{
    const struct st_tensor *x = *(const struct st_tensor *const *)a, *y = *(const struct st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->bytes < y->bytes ? -1 : x->bytes > y->bytes;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(((const struct st_tensor *)a)->name, ((const struct st_tensor *)b)->name);
}

/* Reads one integer >= 0 from a JSON value. */
static bool json_uint(const json_t *v, uint64_t *out)
{
    if (!json_is_integer(v)) return false;
    json_int_t x = json_integer_value(v);
    if (x < 0) return false;
    *out = (uint64_t)x;
    return true;
}

/* Parses and validates one tensor entry of shard si's header. */
static enum status parse_entry(struct model_file *mf, int si, const char *name, const json_t *e,
                               struct st_tensor *t)
{
    const struct st_shard *sh = &mf->shards[si];
    const char *path = sh->path;
    if (!json_is_object(e)) {
        LOG_ERR("%s: tensor %s: header entry is not an object", path, name);
        return STATUS_EFORMAT;
    }
    const json_t *jdt = json_object_get(e, "dtype");
    const json_t *jshape = json_object_get(e, "shape");
    const json_t *joff = json_object_get(e, "data_offsets");
    if (!json_is_string(jdt) || !json_is_array(jshape) || !json_is_array(joff)) {
        LOG_ERR("%s: tensor %s: needs string dtype, array shape and array data_offsets", path, name);
        return STATUS_EFORMAT;
    }
    int dt = dtype_from_safetensors(json_string_value(jdt));
    if (dt < 0) {
        LOG_ERR("%s: tensor %s: dtype %s not supported (supported: BF16, F16, F32, I32, I64, U8, U32)",
                path, name, json_string_value(jdt));
        return STATUS_EUNSUPPORTED;
    }
    memset(t, 0, sizeof *t);
    t->dtype = (enum dtype)dt;
    t->shard = si;
    size_t n_dims = json_array_size(jshape);
    if (n_dims > ST_MAX_DIMS) {
        LOG_ERR("%s: tensor %s: %zu dims (at most %d)", path, name, n_dims, ST_MAX_DIMS);
        return STATUS_EFORMAT;
    }
    t->n_dims = (int)n_dims;
    uint64_t nelem = 1;
    for (size_t i = 0; i < n_dims; i++) {
        uint64_t d;
        if (!json_uint(json_array_get(jshape, i), &d) || d > INT64_MAX) {
            LOG_ERR("%s: tensor %s: shape[%zu] is not a non-negative integer", path, name, i);
            return STATUS_EFORMAT;
        }
        t->shape[i] = (int64_t)d;
        if (__builtin_mul_overflow(nelem, d, &nelem)) {
            LOG_ERR("%s: tensor %s: shape overflows", path, name);
            return STATUS_EFORMAT;
        }
    }
    uint64_t want, begin, end;
    if (__builtin_mul_overflow(nelem, (uint64_t)dtype_size(t->dtype), &want)) {
        LOG_ERR("%s: tensor %s: size overflows", path, name);
        return STATUS_EFORMAT;
    }
    if (json_array_size(joff) != 2 || !json_uint(json_array_get(joff, 0), &begin) ||
        !json_uint(json_array_get(joff, 1), &end) || end < begin) {
        LOG_ERR("%s: tensor %s: data_offsets must be [begin, end] with 0 <= begin <= end", path, name);
        return STATUS_EFORMAT;
    }
    size_t data_bytes = sh->size - sh->data_off;
    if (end > data_bytes) {
        LOG_ERR("%s: tensor %s: data_offsets [%llu, %llu] past the end of the data region (%zu bytes)",
                path, name, (unsigned long long)begin, (unsigned long long)end, data_bytes);
        return STATUS_EFORMAT;
    }
    if (end - begin != want) {
        LOG_ERR("%s: tensor %s: %llu bytes in data_offsets but shape x %s needs %llu", path, name,
                (unsigned long long)(end - begin), dtype_name(t->dtype), (unsigned long long)want);
        return STATUS_EFORMAT;
    }
    t->begin = (size_t)begin;
    t->bytes = (size_t)(end - begin);
    // Kernels read elements through typed pointers, but MLX's writer puts tensors back to back, so
    // one after an odd-sized u8 / bf16 tensor (quantization scales) can be unaligned: such a
    // tensor gets an aligned copy.
    if ((sh->data_off + begin) % dtype_size(t->dtype)) {
        void *p = NULL;
        if (posix_memalign(&p, 64, t->bytes ? t->bytes : 64) != 0) {
            LOG_ERR("%s: tensor %s: cannot allocate %zu bytes for an aligned copy", path, name, t->bytes);
            return STATUS_ENOMEM;
        }
        memcpy(p, sh->map + sh->data_off + t->begin, t->bytes);
        t->copy = xcalloc(1, sizeof *t->copy);
        *t->copy = (struct buffer){ .kind = BUF_HOST, .data = p, .bytes = t->bytes };
    }
    return STATUS_OK;
}

/* Parses shard si (already mapped) and appends its tensors to mf. */
static enum status parse_shard(struct model_file *mf, int si, int *cap)
{
    struct st_shard *sh = &mf->shards[si];
    if (sh->size < 8) {
        LOG_ERR("%s: %zu bytes: too small for a safetensors file", sh->path, sh->size);
        return STATUS_EFORMAT;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | sh->map[i];
    if (n > sh->size - 8) {
        LOG_ERR("%s: header length %llu past the end of the file (%zu bytes)", sh->path,
                (unsigned long long)n, sh->size);
        return STATUS_EFORMAT;
    }
    if (n > ST_MAX_HEADER_BYTES || n < 2) {
        LOG_ERR("%s: header length %llu out of range", sh->path, (unsigned long long)n);
        return STATUS_EFORMAT;
    }
    sh->data_off = 8 + (size_t)n;
    json_error_t err;
    json_t *root = json_loadb((const char *)sh->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        LOG_ERR("%s: bad header JSON at line %d column %d: %s", sh->path, err.line, err.column, err.text);
        return STATUS_EFORMAT;
    }
    enum status st = STATUS_OK;
    if (!json_is_object(root)) {
        LOG_ERR("%s: header JSON is not an object", sh->path);
        st = STATUS_EFORMAT;
        goto out_free_json;
    }
    int first = mf->n_tensors;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        struct st_tensor t;
        st = parse_entry(mf, si, key, val, &t);
        if (st != STATUS_OK) goto out_free_json;
        t.name = xstrdup(key);
        tensors_push(mf, cap, &t);
    }
    // No two non-empty tensors of this shard may share a byte.
    int cnt = mf->n_tensors - first;
    if (cnt > 1) {
        const struct st_tensor **v = xmalloc(sizeof *v * (size_t)cnt);
        for (int i = 0; i < cnt; i++) v[i] = &mf->tensors[first + i];
        qsort(v, (size_t)cnt, sizeof *v, cmp_range);
        size_t end = 0;
        const struct st_tensor *prev = NULL;
        for (int i = 0; i < cnt && st == STATUS_OK; i++) {
            if (!v[i]->bytes) continue;
            if (prev && v[i]->begin < end) {
                LOG_ERR("%s: tensors %s and %s overlap (bytes [%zu, %zu) and [%zu, %zu))", sh->path,
                        prev->name, v[i]->name, prev->begin, prev->begin + prev->bytes, v[i]->begin,
                        v[i]->begin + v[i]->bytes);
                st = STATUS_EFORMAT;
            }
            prev = v[i];
            end = v[i]->begin + v[i]->bytes;
        }
        free(v);
    }
out_free_json:
    json_decref(root);
    return st;
}

/* ==== Shards ==== */

static int shard_add(struct model_file *mf, const char *path)
{
    mf->shards = xrealloc(mf->shards, sizeof *mf->shards * (size_t)(mf->n_shards + 1));
    struct st_shard *sh = &mf->shards[mf->n_shards];
    memset(sh, 0, sizeof *sh);
    sh->path = xstrdup(path);
    return mf->n_shards++;
}

static enum status shard_map(struct st_shard *sh)
{
    int fd = open(sh->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        LOG_ERR("%s: %s", sh->path, strerror(errno));
        return errno == ENOENT ? STATUS_ENOTFOUND : STATUS_EIO;
    }
    struct stat s;
    if (fstat(fd, &s) != 0 || !S_ISREG(s.st_mode)) {
        LOG_ERR("%s: not a regular file", sh->path);
        close(fd);
        return STATUS_EIO;
    }
    sh->size = (size_t)s.st_size;
    if (sh->size < 8) {
        close(fd);
        LOG_ERR("%s: %zu bytes: too small for a safetensors file", sh->path, sh->size);
        return STATUS_EFORMAT;
    }
    void *p = mmap(NULL, sh->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        LOG_ERR("%s: mmap: %s", sh->path, strerror(errno));
        return STATUS_EIO;
    }
    sh->map = p;
    sh->mapped = true;
    return STATUS_OK;
}

static void shard_finish(struct st_shard *sh)
{
    sh->buf = (struct buffer){ .kind = BUF_MMAP, .data = (void *)sh->map, .bytes = sh->size };
}

/* Sorts the name table and rejects a name present twice (across shards). */
static enum status finish(struct model_file *mf)
{
    for (int i = 0; i < mf->n_shards; i++) shard_finish(&mf->shards[i]);
    if (mf->n_tensors > 1) qsort(mf->tensors, (size_t)mf->n_tensors, sizeof *mf->tensors, cmp_name);
    for (int i = 1; i < mf->n_tensors; i++) {
        if (!strcmp(mf->tensors[i - 1].name, mf->tensors[i].name)) {
            LOG_ERR("tensor %s is in both %s and %s", mf->tensors[i].name,
                    mf->shards[mf->tensors[i - 1].shard].path, mf->shards[mf->tensors[i].shard].path);
            return STATUS_EFORMAT;
        }
    }
    return STATUS_OK;
}

void safetensors_close(struct model_file *mf)
{
    if (!mf) return;
    for (int i = 0; i < mf->n_tensors; i++) {
        free((char *)mf->tensors[i].name);
        if (mf->tensors[i].copy) free(mf->tensors[i].copy->data);
        free(mf->tensors[i].copy);
    }
    free(mf->tensors);
    for (int i = 0; i < mf->n_shards; i++) {
        struct st_shard *sh = &mf->shards[i];
        if (sh->mapped) munmap((void *)sh->map, sh->size);
        if (sh->owned) free((void *)sh->map);
        free(sh->path);
    }
    free(mf->shards);
    free(mf->extra);
    free(mf);
}

enum status safetensors_open_mem(const char *label, const void *data, size_t size, struct model_file **out)
{
    *out = NULL;
    struct model_file *mf = xcalloc(1, sizeof *mf);
    int si = shard_add(mf, label);
    mf->shards[si].map = data;
    mf->shards[si].size = size;
    int cap = 0;
    enum status st = parse_shard(mf, si, &cap);
    if (st == STATUS_OK) st = finish(mf);
    if (st != STATUS_OK) {
        safetensors_close(mf);
        return st;
    }
    *out = mf;
    return STATUS_OK;
}

enum status safetensors_open_file(const char *path, struct model_file **out)
{
    *out = NULL;
    struct model_file *mf = xcalloc(1, sizeof *mf);
    int si = shard_add(mf, path);
    int cap = 0;
    enum status st = shard_map(&mf->shards[si]);
    if (st == STATUS_OK) st = parse_shard(mf, si, &cap);
    if (st == STATUS_OK) st = finish(mf);
    if (st != STATUS_OK) {
        safetensors_close(mf);
        return st;
    }
    *out = mf;
    return STATUS_OK;
}

static bool plain_file_name(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < 256 && !strchr(s, '/') && strcmp(s, ".") && strcmp(s, "..");
}

static enum status open_index(const char *dir, const char *index_path, struct model_file **out)
{
    char *text;
    size_t len;
    enum status st = file_read_all(index_path, &text, &len);
    if (st != STATUS_OK) return st;
    json_error_t err;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!root) {
        LOG_ERR("%s: bad JSON at line %d column %d: %s", index_path, err.line, err.column, err.text);
        return STATUS_EFORMAT;
    }
    struct model_file *mf = xcalloc(1, sizeof *mf);
    json_t *wm = json_object_get(root, "weight_map");
    const char *key;
    json_t *val;
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        LOG_ERR("%s: no weight_map object", index_path);
        st = STATUS_EFORMAT;
        goto out;
    }
    // Each distinct shard file, in order of first appearance.
    json_object_foreach(wm, key, val) {
        const char *file = json_string_value(val);
        if (!file || !plain_file_name(file)) {
            LOG_ERR("%s: tensor %s: shard must be a file name in the model directory", index_path, key);
            st = STATUS_EFORMAT;
            goto out;
        }
        bool seen = false;
        for (int i = 0; i < mf->n_shards && !seen; i++) {
            const char *base = strrchr(mf->shards[i].path, '/');
            seen = !strcmp(base ? base + 1 : mf->shards[i].path, file);
        }
        if (seen) continue;
        if (mf->n_shards >= ST_MAX_SHARDS) {
            LOG_ERR("%s: more than %d shards", index_path, ST_MAX_SHARDS);
            st = STATUS_EFORMAT;
            goto out;
        }
        struct strbuf p = {0};
        strbuf_printf(&p, "%s/%s", dir, file);
        shard_add(mf, p.data);
        strbuf_free(&p);
    }
    int cap = 0;
    for (int i = 0; i < mf->n_shards; i++) {
        st = shard_map(&mf->shards[i]);
        if (st == STATUS_OK) st = parse_shard(mf, i, &cap);
        if (st != STATUS_OK) goto out;
    }
    st = finish(mf);
    if (st != STATUS_OK) goto out;
    // Every tensor the index names must be in the shard it names.
    json_object_foreach(wm, key, val) {
        const struct st_tensor *t = safetensors_find(mf, key);
        const char *file = json_string_value(val);
        if (!t) {
            LOG_ERR("%s: tensor %s: listed in the index but not in %s", index_path, key, file);
            st = STATUS_ENOTFOUND;
            goto out;
        }
        const char *p = mf->shards[t->shard].path;
        const char *base = strrchr(p, '/');
        if (strcmp(base ? base + 1 : p, file)) {
            LOG_ERR("%s: tensor %s: index says %s but it is in %s", index_path, key, file, p);
            st = STATUS_EFORMAT;
            goto out;
        }
    }
out:
    json_decref(root);
    if (st != STATUS_OK) {
        safetensors_close(mf);
        return st;
    }
    *out = mf;
    return STATUS_OK;
}

enum status safetensors_open_dir(const char *dir, struct model_file **out)
{
    *out = NULL;
    struct strbuf p = {0};
    strbuf_printf(&p, "%s/model.safetensors.index.json", dir);
    enum status st;
    if (access(p.data, F_OK) == 0) {
        st = open_index(dir, p.data, out);
    } else {
        strbuf_clear(&p);
        strbuf_printf(&p, "%s/model.safetensors", dir);
        if (access(p.data, F_OK) != 0) {
            LOG_ERR("%s: no model.safetensors or model.safetensors.index.json", dir);
            st = STATUS_ENOTFOUND;
        } else {
            st = safetensors_open_file(p.data, out);
        }
    }
    strbuf_free(&p);
    return st;
}

/* ==== Lookup ==== */

const struct st_tensor *safetensors_find(const struct model_file *mf, const char *name)
{
    int lo = 0, hi = mf->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(mf->tensors[mid].name, name);
        if (!c) return &mf->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

enum status safetensors_view(const struct model_file *mf, const struct st_tensor *t, struct tensor *out)
{
    struct st_shard *sh = &mf->shards[t->shard];
    if (t->n_dims > 4) {
        LOG_ERR("%s: tensor %s: %d dims (at most 4 supported)", sh->path, t->name, t->n_dims);
        return STATUS_EUNSUPPORTED;
    }
    int64_t ne[4] = { 1, 1, 1, 1 };
    for (int i = 0; i < t->n_dims; i++) ne[i] = t->shape[t->n_dims - 1 - i];
    if (t->copy) *out = tensor_make(t->dtype, t->n_dims ? t->n_dims : 1, ne, t->copy, 0);
    else *out = tensor_make(t->dtype, t->n_dims ? t->n_dims : 1, ne, &sh->buf, sh->data_off + t->begin);
    out->name = t->name;
    return STATUS_OK;
}

const uint8_t *safetensors_data(const struct model_file *mf, const struct st_tensor *t)
{
    if (t->copy) return t->copy->data;
    const struct st_shard *sh = &mf->shards[t->shard];
    return sh->map + sh->data_off + t->begin;
}

enum status safetensors_get(const struct model_file *mf, const char *name, struct tensor *out)
{
    const struct st_tensor *t = safetensors_find(mf, name);
    if (!t) {
        LOG_ERR("tensor %s not found in %s%s", name, mf->n_shards ? mf->shards[0].path : "?",
                mf->n_shards > 1 ? " (and other shards)" : "");
        return STATUS_ENOTFOUND;
    }
    return safetensors_view(mf, t, out);
}
