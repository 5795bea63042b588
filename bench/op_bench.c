/* op_bench: micro-benchmarks of the cpu backend's matmul against the machine's measured peaks.
 *
 * Prints the memory read bandwidth (membw), then for 1 and 2 threads:
 *  - GEMV at decode shapes (n = 1, bf16 weights, f16 with --dtype f16, of a Qwen3-0.6B-shaped layer and its lm_head):
 *    median µs, GB/s of weights streamed and the % of the measured read bandwidth. Weights are
 *    rotated through copies totalling > 256 MB so every call reads from DRAM, as decode does.
 *  - the whole decode step's matmuls (28 layers + lm_head) as tok/s, and as % of the roofline.
 *  - GEMM at prefill shapes (n = 512, 64): median µs and GFLOP/s.
 *  - decode attention over a bf16 KV cache at 512, 4096 and 32768 tokens: µs and GB/s of K/V.
 * One CSV-ish line per measurement: `gemv bf16 [3072,1024] n=1 t=2 181.2us 34.7GB/s 81%`.
 *
 *     bench/op_bench.sh            # builds build-bench/ and runs this
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "backend/cpu/kern.h"
#include "backend/cpu/membw.h"
#include "base/clock.h"
#include "base/rng.h"

#define ROTATE_BYTES ((size_t)256 << 20)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

struct mat {
    struct buffer buf;
    struct tensor w[64];   // copies, rotated
    int           n_copies;
};

static void mat_init(struct mat *m, int rows, int cols, enum dtype dt, bool rotate)
{
    size_t one = (size_t)rows * cols * dtype_size(dt);
    m->n_copies = rotate ? (int)((ROTATE_BYTES + one - 1) / one) : 1;
    if (m->n_copies > 64) m->n_copies = 64;
    if (m->n_copies < 1) m->n_copies = 1;
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, one * (size_t)m->n_copies)) abort();
    (void)madvise(p, one * (size_t)m->n_copies, MADV_HUGEPAGE);   // as membw and file-backed weights
    struct rng r;
    rng_seed(&r, 1);
    uint16_t *h = p;
    for (size_t i = 0; i < one * (size_t)m->n_copies / 2; i++) h[i] = dt == DTYPE_F16 ? f32_to_f16(rng_normal(&r) * 0.02f) : f32_to_bf16(rng_normal(&r) * 0.02f);
    m->buf = (struct buffer){ .kind = BUF_HOST, .data = p, .bytes = one * (size_t)m->n_copies };
    for (int c = 0; c < m->n_copies; c++) m->w[c] = tensor_2d(dt, cols, rows, &m->buf, one * (size_t)c);
}

/* One call of a measured op; i counts the calls (a matmul rotates through its weight copies by it). */
typedef void (*op_call)(void *ctx, int i);

/* Median µs of reps timed calls of op, after n_warm untimed ones. */
static double median_us(op_call op, void *ctx, int n_warm, int reps)
{
    for (int i = 0; i < n_warm; i++) op(ctx, i);
    double *us = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps; r++) {
        int64_t t0 = clock_now_ns();
        op(ctx, r);
        us[r] = (double)(clock_now_ns() - t0) / 1e3;
    }
    qsort(us, (size_t)reps, sizeof(double), cmp_double);
    double med = us[reps / 2];
    free(us);
    return med;
}

struct matmul_call {
    struct backend    *be;
    struct tensor     *out, *x;
    const struct mat  *m;
};

static void call_matmul(void *ctx, int i)
{
    struct matmul_call *c = ctx;
    c->be->ops->matmul(c->be, c->out, c->x, &c->m->w[i % c->m->n_copies], NULL);
}

/* Median µs of out = x @ w^T over reps calls (one warm-up per copy). */
static double time_matmul(struct backend *be, struct mat *m, int n, int reps)
{
    int64_t k = m->w[0].ne[0], rows = m->w[0].ne[1];
    float *x = calloc((size_t)(n * k), sizeof(float)), *o = calloc((size_t)(n * rows), sizeof(float));
    for (int64_t i = 0; i < n * k; i++) x[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
    struct buffer xb = { .kind = BUF_HOST, .data = x, .bytes = (size_t)(n * k) * 4 };
    struct buffer ob = { .kind = BUF_HOST, .data = o, .bytes = (size_t)(n * rows) * 4 };
    struct tensor xt = tensor_2d(DTYPE_F32, k, n, &xb, 0), ot = tensor_2d(DTYPE_F32, rows, n, &ob, 0);
    double med = median_us(call_matmul, &(struct matmul_call){ be, &ot, &xt, m }, m->n_copies, reps);
    free(x);
    free(o);
    return med;
}

struct attention_call {
    struct backend          *be;
    struct tensor           *out, *q;
    const struct kv_layer   *kv;
    const struct attn_params *ap;
    const struct batch_meta *meta;
};

static void call_attention(void *ctx, int i)
{
    struct attention_call *c = ctx;
    c->be->ops->attention(c->be, c->out, c->q, c->kv, c->ap, c->meta);
}

/* Median µs of decode attention: one token at position ctx - 1 of one sequence, Qwen3-0.6B
 * heads (16 q, 8 kv, head_dim 128), bf16 KV in 16-token blocks scattered over the cache. */
static double time_attention(struct backend *be, int ctx, int reps)
{
    const int nh = 16, nkv = 8, hd = 128, bs = 16, nblk = (ctx + bs - 1) / bs;
    size_t row = (size_t)nkv * hd, bytes = (size_t)nblk * bs * row * 2;
    void *kp = NULL, *vp = NULL;
    if (posix_memalign(&kp, (size_t)2 << 20, bytes) || posix_memalign(&vp, (size_t)2 << 20, bytes)) abort();
    (void)madvise(kp, bytes, MADV_HUGEPAGE);
    (void)madvise(vp, bytes, MADV_HUGEPAGE);
    memset(kp, 0x3c, bytes);
    memset(vp, 0x3c, bytes);
    struct buffer kb = { .kind = BUF_HOST, .data = kp, .bytes = bytes }, vb = { .kind = BUF_HOST, .data = vp, .bytes = bytes };
    struct kv_layer kv = { tensor_2d(DTYPE_BF16, (int64_t)row, (int64_t)nblk * bs, &kb, 0),
                           tensor_2d(DTYPE_BF16, (int64_t)row, (int64_t)nblk * bs, &vb, 0) };
    int32_t *blocks = malloc(sizeof(int32_t) * (size_t)nblk);
    for (int i = 0; i < nblk; i++) blocks[i] = (int32_t)((i * 7919L) % nblk);   // a permutation when nblk % 7919 != 0
    int32_t b0[2] = { 0, nblk }, len = ctx, pos = ctx - 1, seq = 0;
    struct batch_meta m = { .n_tok = 1, .tok_pos = &pos, .tok_seq = &seq, .n_seq = 1, .seq_len = &len,
                            .seq_block0 = b0, .block_ids = blocks, .block_size = bs };
    float q[16 * 128], o[16 * 128];
    for (int i = 0; i < nh * hd; i++) q[i] = (float)(i % 7) * 0.01f;
    struct buffer qb = { .kind = BUF_HOST, .data = q, .bytes = sizeof q }, ob = { .kind = BUF_HOST, .data = o, .bytes = sizeof o };
    struct tensor qt = tensor_2d(DTYPE_F32, nh * hd, 1, &qb, 0), ot = tensor_2d(DTYPE_F32, nh * hd, 1, &ob, 0);
    struct attn_params ap = { .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .scale = 0.0884f };
    double med = median_us(call_attention, &(struct attention_call){ be, &ot, &qt, &kv, &ap, &m }, 1, reps);
    free(blocks);
    free(kp);
    free(vp);
    return med;
}

int main(int argc, char **argv)
{
    int quick = 0;
    enum dtype wdt = DTYPE_BF16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc && (!strcmp(argv[i + 1], "bf16") || !strcmp(argv[i + 1], "f16")))
            wdt = !strcmp(argv[++i], "f16") ? DTYPE_F16 : DTYPE_BF16;
        else { fprintf(stderr, "usage: op_bench [--quick] [--dtype bf16|f16]\n"); return 2; }
    }
    const char *wname = wdt == DTYPE_F16 ? "f16" : "bf16";
    printf("cpu kernels: %s\n", cpu_kern_pick()->name);
    double bw[3] = { 0, 0, 0 };
    for (int t = 1; t <= 2; t++) {
        bw[t] = membw_measure_read_gbs(t, quick ? (size_t)256 << 20 : 0);
        printf("membw read t=%d %.1fGB/s\n", t, bw[t]);
    }
    // Qwen3-0.6B: hidden 1024, 16 q heads / 8 kv heads of 128, ffn 3072, vocab 151936, 28 layers
    struct { const char *name; int rows, cols, per_layer; } shapes[] = {
        { "q_proj", 2048, 1024, 1 }, { "k_proj", 1024, 1024, 1 }, { "v_proj", 1024, 1024, 1 },
        { "o_proj", 1024, 2048, 1 }, { "gate_proj", 3072, 1024, 1 }, { "up_proj", 3072, 1024, 1 },
        { "down_proj", 1024, 3072, 1 }, { "lm_head", 151936, 1024, 0 },
    };
    int n_shapes = sizeof shapes / sizeof shapes[0];
    struct mat *mats = calloc((size_t)n_shapes, sizeof *mats);
    for (int s = 0; s < n_shapes; s++) mat_init(&mats[s], shapes[s].rows, shapes[s].cols, wdt, true);
    for (int t = 1; t <= 2; t++) {
        struct backend *be;
        if (backend_new("cpu", &(struct backend_cfg){ .n_threads = t }, &be)) return 1;
        double step_us = 0, step_bytes = 0;
        for (int s = 0; s < n_shapes; s++) {
            double bytes = (double)shapes[s].rows * shapes[s].cols * 2;
            double us = time_matmul(be, &mats[s], 1, quick ? 9 : (shapes[s].rows > 100000 ? 15 : 101));
            double gbs = bytes / us / 1e3;
            printf("gemv %s %-9s [%d,%d] n=1 t=%d %8.1fus %6.1fGB/s %3.0f%%\n", wname, shapes[s].name, shapes[s].rows,
                   shapes[s].cols, t, us, gbs, 100 * gbs / bw[t]);
            int mult = shapes[s].per_layer ? 28 : 1;
            step_us += us * mult;
            step_bytes += bytes * mult;
        }
        double roof = bw[t] * 1e9 / step_bytes;
        printf("decode matmuls Qwen3-0.6B %s t=%d: %.1f ms/token = %.1f tok/s, roofline %.1f tok/s (%.0f%%)\n", wname, t,
               step_us / 1e3, 1e6 / step_us, roof, 100 * (1e6 / step_us) / roof);
        // prefill GEMM, weights hot (each is read n/panel times anyway)
        int ns[2] = { 512, 64 };
        for (int ni = 0; ni < 2; ni++) {
            for (int s = 4; s <= 6; s += 2) {
                struct mat one;
                mat_init(&one, shapes[s].rows, shapes[s].cols, wdt, false);
                int n = ns[ni];
                double us = time_matmul(be, &one, n, quick ? 3 : 7);
                double gflops = 2.0 * n * shapes[s].rows * shapes[s].cols / us / 1e3;
                printf("gemm %s %-9s [%d,%d] n=%d t=%d %8.1fus %6.1fGFLOP/s\n", wname, shapes[s].name, shapes[s].rows,
                       shapes[s].cols, n, t, us, gflops);
                free(one.buf.data);
            }
        }
        int ctxs[3] = { 512, 4096, 32768 };
        for (int ci = 0; ci < 3; ci++) {
            double us = time_attention(be, ctxs[ci], quick ? 5 : 21);
            double gbs = 2.0 * ctxs[ci] * 8 * 128 * 2 / us / 1e3;
            printf("attention decode bf16 kv ctx=%d h=16/8 hd=128 t=%d %8.1fus %6.1fGB/s %3.0f%%\n", ctxs[ci], t, us, gbs,
                   100 * gbs / bw[t]);
        }
        backend_free(be);
    }
    for (int s = 0; s < n_shapes; s++) free(mats[s].buf.data);
    free(mats);
    return 0;
}
