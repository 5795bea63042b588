/* attn_bench: attention speed through the backend API (paged KV cache, batch_meta as the engine
 * builds them): prefill cases in attention TFLOP/s, decode cases in GB/s of the cache read.
 *
 *   attn_bench [--backend cuda] [--reps N] [--kv-dtype bf16|f16|f32|fp8] [--only 4096]
 *
 * Cases: one causal prompt of 4K and of 32K tokens in one step, Qwen3-8B shape (32 query heads,
 * 8 KV heads, head_dim 128), plus a few other shapes (8 prompts of 512, head_dim 64 and 256,
 * a chunk of 4K new tokens after a 12K cached prefix). Blocks of the cache are shuffled, as a
 * pool hands them out. FLOPs: 4 * head_dim * heads per visible (query, key) pair (QK^T and PV;
 * causal counts only the pairs it computes). Time: median over reps of one call plus sync, after
 * two warm-up calls. Prints one key=value line per case.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/backend_env.h"
#include "base/clock.h"
#include "base/mem.h"
#include "tensor/dtype.h"

struct acase { const char *name; int n_seq, ctx, n_new, n_heads, n_kv, hd, window, n_layers, in_order; };   // n_layers 0: 1

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL; x ^= x >> 33;
    return x;
}

/* Uniform in [-1, 1), cheap (the 32K case fills half a gigabyte). */
static float urand(uint64_t i) { return (float)(mix(i) >> 40) / (float)(1 << 23) - 1.0f; }

static struct tensor dev_tensor(struct backend *be, enum dtype dt, int64_t ne0, int64_t ne1, struct buffer **b)
{
    size_t bytes = (size_t)ne0 * (size_t)ne1 * dtype_size(dt);
    if (be->ops->buffer_new(be, bytes, b) != STATUS_OK) {
        fprintf(stderr, "attn_bench: out of device memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return tensor_2d(dt, ne0, ne1, *b, 0);
}

static void fill(struct backend *be, struct tensor *t, enum dtype dt, float scale, uint64_t seed)
{
    size_t n = (size_t)t->ne[0] * (size_t)t->ne[1];
    float *f = xmalloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) f[i] = urand(seed * 0x9e3779b97f4a7c15ULL + i) * scale;
    if (dt == DTYPE_F32) {
        be->ops->upload(be, t, f, n * 4);
    } else {
        void *h = xmalloc(n * dtype_size(dt));
        dtype_from_f32(dt, f, h, n);
        be->ops->upload(be, t, h, n * dtype_size(dt));
        free(h);
    }
    free(f);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void run_case(struct backend *be, const struct acase *c, enum dtype kvdt, int reps)
{
    const int bs = 16;
    int len = c->ctx + c->n_new, bps = (len + bs - 1) / bs, n_blocks = bps * c->n_seq, n_tok = c->n_new * c->n_seq;
    int32_t *perm = xmalloc(sizeof(int32_t) * (size_t)n_blocks), *seq_len = xmalloc(sizeof(int32_t) * (size_t)c->n_seq);
    int32_t *seq_block0 = xmalloc(sizeof(int32_t) * (size_t)(c->n_seq + 1));
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0 && !c->in_order; i--) {
        int j = (int)(mix((uint64_t)i + 77) % (uint64_t)(i + 1));
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    for (int s = 0; s <= c->n_seq; s++) seq_block0[s] = s * bps;
    for (int s = 0; s < c->n_seq; s++) seq_len[s] = len;
    int32_t *pos = xmalloc(sizeof(int32_t) * (size_t)n_tok), *seq = xmalloc(sizeof(int32_t) * (size_t)n_tok);
    int64_t *slot = xmalloc(sizeof(int64_t) * (size_t)n_tok);
    double pairs = 0;
    for (int s = 0, t = 0; s < c->n_seq; s++) {
        for (int p = c->ctx; p < len; p++, t++) {
            pos[t] = p;
            seq[t] = s;
            slot[t] = (int64_t)perm[s * bps + p / bs] * bs + p % bs;
            pairs += c->window > 0 && c->window < p + 1 ? c->window : p + 1;
        }
    }
    int n_layers = c->n_layers > 1 ? c->n_layers : 1;
    struct buffer *bq, *bo, **bk = xcalloc((size_t)n_layers, sizeof *bk), **bv = xcalloc((size_t)n_layers, sizeof *bv);
    struct kv_layer *kv = xcalloc((size_t)n_layers, sizeof *kv);
    struct tensor q = dev_tensor(be, DTYPE_F32, (int64_t)c->n_heads * c->hd, n_tok, &bq);
    struct tensor o = dev_tensor(be, DTYPE_F32, (int64_t)c->n_heads * c->hd, n_tok, &bo);
    fill(be, &q, DTYPE_F32, 2.0f, 1);
    // at least 4 MiB a cache, as in the engine's pool: the cpu backend puts buffers of 2 MiB or
    // more on huge pages, and a small decode cache on 4 KiB pages would time TLB misses
    int64_t row_bytes = (int64_t)c->n_kv * c->hd * (int64_t)dtype_size(kvdt), n_slots = (int64_t)n_blocks * bs;
    if (n_slots * row_bytes < (4 << 20)) n_slots = (4 << 20) / row_bytes + 1;
    for (int l = 0; l < n_layers; l++) {
        kv[l].k = dev_tensor(be, kvdt, (int64_t)c->n_kv * c->hd, n_slots, &bk[l]);
        kv[l].v = dev_tensor(be, kvdt, (int64_t)c->n_kv * c->hd, n_slots, &bv[l]);
        fill(be, &kv[l].k, kvdt, 1.0f, 2 + 2 * (uint64_t)l);
        fill(be, &kv[l].v, kvdt, 1.0f, 3 + 2 * (uint64_t)l);
    }
    struct batch_meta m = { .n_tok = n_tok, .tok_id = pos, .tok_pos = pos, .tok_seq = seq, .tok_slot = slot,
                            .n_seq = c->n_seq, .seq_len = seq_len, .seq_block0 = seq_block0, .block_ids = perm,
                            .n_out = 0, .out_tok = pos, .block_size = bs };
    struct attn_params ap = { .n_heads = c->n_heads, .n_kv_heads = c->n_kv, .head_dim = c->hd,
                              .scale = 1.0f / sqrtf((float)c->hd), .window = c->window, .softcap = 0 };
    be->ops->batch_begin(be, &m);
    double *t = xmalloc(sizeof(double) * (size_t)reps);
    for (int i = 0; i < 2; i++)
        for (int l = 0; l < n_layers; l++) be->ops->attention(be, &o, &q, &kv[l], &ap, &m);
    int ok = be->ops->sync(be) == STATUS_OK;
    for (int i = 0; i < reps && ok; i++) {
        double t0 = clock_now_s();
        for (int l = 0; l < n_layers; l++) be->ops->attention(be, &o, &q, &kv[l], &ap, &m);   // a decode step's layers
        ok = be->ops->sync(be) == STATUS_OK;
        t[i] = (clock_now_s() - t0) / n_layers;
    }
    if (ok) {
        qsort(t, (size_t)reps, sizeof *t, cmp_d);
        double med = t[reps / 2], flops = 4.0 * c->hd * c->n_heads * pairs;
        double kv_bytes = 2.0 * c->n_kv * c->hd * (double)dtype_size(kvdt) * pairs;   // K and V rows read (decode)
        printf("attn case=%s backend=%s kv=%s n_tok=%d seqs=%d ctx=%d heads=%d/%d hd=%d window=%d ms=%.3f "
               "min_ms=%.3f tflops=%.1f", c->name, be->ops->name, dtype_name(kvdt), n_tok, c->n_seq, c->ctx,
               c->n_heads, c->n_kv, c->hd, c->window, med * 1e3, t[0] * 1e3, flops / med / 1e12);
        if (c->n_new == 1) printf(" kv_gb_s=%.1f best_kv_gb_s=%.1f", kv_bytes / med / 1e9, kv_bytes / t[0] / 1e9);
        printf("\n");
    } else {
        printf("attn case=%s error=device\n", c->name);
    }
    fflush(stdout);
    free(t);
    be->ops->buffer_free(be, bq); be->ops->buffer_free(be, bo);
    for (int l = 0; l < n_layers; l++) { be->ops->buffer_free(be, bk[l]); be->ops->buffer_free(be, bv[l]); }
    free(bk); free(bv); free(kv);
    free(perm); free(seq_len); free(seq_block0); free(pos); free(seq); free(slot);
}

int main(int argc, char **argv)
{
    const char *backend = "cuda", *only = NULL;
    enum dtype kvdt = DTYPE_BF16;
    int reps = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--kv-dtype") && i + 1 < argc) {
            int d = dtype_parse_kv(argv[++i]);
            if (d < 0) { fprintf(stderr, "attn_bench: --kv-dtype must be f32, f16, bf16 or fp8\n"); return 2; }
            kvdt = (enum dtype)d;
        } else {
            fprintf(stderr, "usage: attn_bench [--backend cuda] [--reps N] [--kv-dtype bf16|f16|f32|fp8] [--only NAME]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    struct backend *be;
    struct backend_cfg bcfg = { 0 };
    backend_cfg_from_env(&bcfg);
    if (backend_new(backend, &bcfg, &be) != STATUS_OK) return 1;
    const struct acase cases[] = {
        { "4k", 1, 0, 4096, 32, 8, 128, 0, 1, 0 },
        { "32k", 1, 0, 32768, 32, 8, 128, 0, 1, 0 },
        { "8x512", 8, 0, 512, 32, 8, 128, 0, 1, 0 },
        { "4k_after_12k", 1, 12288, 4096, 32, 8, 128, 0, 1, 0 },
        { "4k_hd64", 1, 0, 4096, 32, 8, 64, 0, 1, 0 },
        { "4k_hd256", 1, 0, 4096, 16, 8, 256, 0, 1, 0 },
        { "4k_hd256_win1024", 1, 0, 4096, 16, 8, 256, 1024, 1, 0 },
        { "decode650_0.6b", 1, 650, 1, 16, 8, 128, 0, 28, 0 },
        { "decode4k_0.6b", 1, 4096, 1, 16, 8, 128, 0, 4, 0 },
        { "decode650_0.6b_inorder", 1, 650, 1, 16, 8, 128, 0, 28, 1 },   // blocks in address order
        { "decode650_0.6b_cached", 1, 650, 1, 16, 8, 128, 0, 1, 0 },    // one layer again and again: from cache
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (only && strcmp(only, cases[c].name)) continue;
        run_case(be, &cases[c], kvdt, cases[c].n_new >= 32768 ? (reps + 1) / 2 : reps);
    }
    backend_free(be);
    return 0;
}
