/* test_cuda_attention: the cuda attention kernels (attention_tiled.cu for prefill, the split-K
 * kernels of attention_decode.cu and attention.cu for decode steps and other head dims,
 * attention_decode_mma.cu for fp8 decode) against the ref backend: decode
 * steps and small shapes of every cache dtype (split_kernel_cases), and random batches: several sequences per step, each with a cached prefix and a chunk
 * of new tokens of odd lengths (across the 128-token tiles and 64-key tiles), GQA ratios 1/4/8,
 * head_dim 64/128/256 (and 80: the WMMA fallback), windows, soft-caps, block sizes that are and
 * are not multiples of 16, bf16/f16/f32/f8e4m3 caches. Needs a GPU (make test-cuda).
 *
 * Traps: cache slots that no position of the step may read (unused blocks, the tail of each
 * sequence's last block) hold NaN, and the output is NaN-poisoned before the call, so a stray
 * read or an unwritten row fails. A control case checks that the comparison rejects a kernel run
 * with a 5% wrong scale. CAIRN_TEST_QUICK=1 runs a few small cases (for compute-sanitizer).
 *
 * Tolerance: the tensor-core kernels round Q, K, V and P to 16 bits as FlashAttention does; the
 * split-K kernel computes in f32 and is held tight. An f8e4m3 cache holds values that bf16 and
 * f32 represent exactly, so ref (reading the same bytes) is held to the same bounds.
 */
#include "cuda/cuda_util.h"

#include "backend/backend.h"
#include "base/rng.h"

struct acase {
    int   n_seq, ctx[4], n_new[4];   // per sequence: cached positions before the step, new tokens
    int   n_heads, n_kv, hd, window, bs;
    float softcap;
    enum dtype kvdt;
};

static struct buffer *dev_buf(size_t bytes)
{
    struct buffer *b;
    if (g_cuda->ops->buffer_new(g_cuda, bytes ? bytes : 4, &b) != STATUS_OK) abort();
    return b;
}

static int urange(struct rng *r, int lo, int hi) { return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1)); }

/* Runs one case; scale_err != 1 runs the cuda side with a wrong scale (the control) and returns
 * whether the comparison passed, without recording a failure. */
static bool case_run(const struct acase *ac, struct rng *r, float scale_err)
{
    const int bs = ac->bs;
    int len[4], n_tok = 0, n_blocks = 0;
    for (int s = 0; s < ac->n_seq; s++) {
        len[s] = ac->ctx[s] + ac->n_new[s];
        n_blocks += (len[s] + bs - 1) / bs;
        n_tok += ac->n_new[s];
    }
    int n_alloc = n_blocks + 5;   // 5 blocks nobody owns
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_alloc);
    for (int i = 0; i < n_alloc; i++) perm[i] = i;
    for (int i = n_alloc - 1; i > 0; i--) {
        int j = (int)(rng_next(r) % (uint64_t)(i + 1));
        int32_t t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    int32_t seq_block0[5] = { 0 };
    for (int s = 0; s < ac->n_seq; s++) seq_block0[s + 1] = seq_block0[s] + (len[s] + bs - 1) / bs;

    // Cache: every slot NaN, then random values at the slots of positions [0, len) of each sequence.
    int row = ac->n_kv * ac->hd, qrow = ac->n_heads * ac->hd;
    int64_t n_slots = (int64_t)n_alloc * bs;
    struct tt kc = tt_new(ac->kvdt, row, n_slots), vc = tt_new(ac->kvdt, row, n_slots);
    struct tt one = tt_new(DTYPE_F32, row, 1);
    float nan = NAN;
    for (int64_t i = 0; i < n_slots * row; i++) {
        size_t es = dtype_size(ac->kvdt);
        dtype_from_f32(ac->kvdt, &nan, (char *)kc.p + i * es, 1);
        dtype_from_f32(ac->kvdt, &nan, (char *)vc.p + i * es, 1);
    }
    for (int s = 0; s < ac->n_seq; s++) {
        for (int j = 0; j < len[s]; j++) {
            int64_t slot = (int64_t)perm[seq_block0[s] + j / bs] * bs + j % bs;
            size_t es = dtype_size(ac->kvdt), off = (size_t)slot * row * es;
            tt_randn(&one, r, 1.0f);
            dtype_from_f32(ac->kvdt, one.p, (char *)kc.p + off, (size_t)row);
            tt_randn(&one, r, 1.0f);
            dtype_from_f32(ac->kvdt, one.p, (char *)vc.p + off, (size_t)row);
        }
    }
    size_t kv_bytes = (size_t)n_slots * row * dtype_size(ac->kvdt);
    struct buffer *bk = dev_buf(kv_bytes), *bv = dev_buf(kv_bytes);
    struct kv_layer lr = { *tt_t(&kc), *tt_t(&vc) }, ld = { kc.t, vc.t };
    ld.k.buf = bk; ld.k.offset = 0;
    ld.v.buf = bv; ld.v.offset = 0;
    g_cuda->ops->upload(g_cuda, &ld.k, kc.p, kv_bytes);
    g_cuda->ops->upload(g_cuda, &ld.v, vc.p, kv_bytes);

    int32_t *pos = malloc(sizeof(int32_t) * (size_t)n_tok), *seq = malloc(sizeof(int32_t) * (size_t)n_tok);
    int64_t *slots = calloc((size_t)n_tok, sizeof(int64_t));
    for (int s = 0, t = 0; s < ac->n_seq; s++)
        for (int j = ac->ctx[s]; j < len[s]; j++, t++) {
            pos[t] = j;
            seq[t] = s;
            slots[t] = (int64_t)perm[seq_block0[s] + j / bs] * bs + j % bs;
        }
    struct batch_meta meta = { .n_tok = n_tok, .tok_pos = pos, .tok_seq = seq, .n_seq = ac->n_seq, .seq_len = len,
                               .seq_block0 = seq_block0, .block_ids = perm, .block_size = bs, .tok_slot = slots,
                               .tok_id = pos, .out_tok = pos };
    struct attn_params ap = { .n_heads = ac->n_heads, .n_kv_heads = ac->n_kv, .head_dim = ac->hd,
                              .scale = 1.0f / sqrtf((float)ac->hd), .window = ac->window, .softcap = ac->softcap };
    struct tt q = tt_new(DTYPE_F32, qrow, n_tok), o_ref = tt_new(DTYPE_F32, qrow, n_tok), o = tt_new(DTYPE_F32, qrow, n_tok);
    tt_randn(&q, r, 2.0f);
    for (int64_t i = 0; i < (int64_t)qrow * n_tok; i++) ((float *)o.p)[i] = NAN;
    g_ref->ops->attention(g_ref, tt_t(&o_ref), tt_t(&q), &lr, &ap, &meta);

    struct buffer *bq = dev_buf((size_t)qrow * n_tok * 4), *bo = dev_buf((size_t)qrow * n_tok * 4);
    struct tensor dq = tensor_2d(DTYPE_F32, qrow, n_tok, bq, 0), dout = tensor_2d(DTYPE_F32, qrow, n_tok, bo, 0);
    g_cuda->ops->upload(g_cuda, &dq, q.p, (size_t)qrow * n_tok * 4);
    g_cuda->ops->upload(g_cuda, &dout, o.p, (size_t)qrow * n_tok * 4);   // NaN poison
    struct attn_params apc = ap;
    apc.scale *= scale_err;
    g_cuda->ops->batch_begin(g_cuda, &meta);
    g_cuda->ops->attention(g_cuda, &dout, &dq, &ld, &apc, &meta);
    g_cuda->ops->download(g_cuda, o.p, &dout, (size_t)qrow * n_tok * 4);
    bool synced = g_cuda->ops->sync(g_cuda) == STATUS_OK;

    char what[200];
    int n = snprintf(what, sizeof what, "attn %s heads=%d/%d hd=%d win=%d cap=%g bs=%d seqs", dtype_name(ac->kvdt),
                     ac->n_heads, ac->n_kv, ac->hd, ac->window, ac->softcap, bs);
    for (int s = 0; s < ac->n_seq && n < (int)sizeof what - 20; s++) n += snprintf(what + n, sizeof what - n, " %d+%d", ac->ctx[s], ac->n_new[s]);
    // Tensor-core kernels (any step with several tokens of a sequence, head_dim % 16 == 0) compute
    // in bf16/f16, f32 caches too (the WMMA fallback rounds K and V on load); decode steps and other
    // head dims run the f32 split-K kernel and are held tight.
    // fp8 caches: the split-K kernels multiply in f16x2 (e4m3 widens to f16 exactly; q and the
    // probabilities round to f16), about 1e-3 relative, still far below e4m3's own rounding.
    bool tiled = n_tok > ac->n_seq && ac->hd % 16 == 0, half = ac->kvdt == DTYPE_F8E4M3;
    bool ok = synced && tt_close(what, o.p, o_ref.p, (int64_t)qrow * n_tok, tiled ? 3e-2 : half ? 2e-3 : 2e-5,
                                 tiled ? 2e-2 : half ? 2e-3 : 1e-4, tiled ? 2e-4 : half ? 1e-5 : 1e-10);
    if (scale_err == 1.0f) EXPECTF(ok, "%s", what);
    g_cuda->ops->buffer_free(g_cuda, bk); g_cuda->ops->buffer_free(g_cuda, bv);
    g_cuda->ops->buffer_free(g_cuda, bq); g_cuda->ops->buffer_free(g_cuda, bo);
    tt_free(&kc); tt_free(&vc); tt_free(&one); tt_free(&q); tt_free(&o_ref); tt_free(&o);
    free(pos); free(seq); free(slots); free(perm);
    return ok;
}

static const struct acase fixed[] = {
    // n_seq, ctx, new, heads, kv, hd, window, bs, softcap, dtype
    { 1, { 0 }, { 300 }, 8, 2, 128, 0, 16, 0, DTYPE_BF16 },                          // 2 full tiles + 44
    { 1, { 0 }, { 257 }, 32, 8, 128, 0, 16, 0, DTYPE_BF16 },                         // Qwen3-8B heads
    { 1, { 61 }, { 128 }, 8, 8, 64, 0, 16, 0, DTYPE_BF16 },                          // MHA, unaligned prefix
    { 3, { 0, 100, 37 }, { 129, 1, 64 }, 8, 1, 128, 0, 32, 0, DTYPE_F16 },           // MQA, a decode row among prefills
    { 2, { 5, 0 }, { 200, 33 }, 8, 4, 256, 0, 16, 0, DTYPE_BF16 },                   // head_dim 256
    { 2, { 0, 70 }, { 190, 90 }, 8, 2, 64, 37, 16, 0, DTYPE_BF16 },                  // sliding window
    { 1, { 300 }, { 150 }, 16, 8, 256, 100, 16, 50.0f, DTYPE_BF16 },                 // Gemma-style: window + softcap
    { 2, { 0, 3 }, { 77, 140 }, 4, 4, 128, 0, 24, 30.0f, DTYPE_F16 },                // block size 24 (not 16k)
    { 1, { 40 }, { 100 }, 4, 1, 80, 0, 16, 0, DTYPE_BF16 },                          // head_dim 80: WMMA fallback
    { 1, { 10 }, { 150 }, 4, 2, 128, 20, 16, 0, DTYPE_F32 },                         // f32 cache: WMMA fallback
    { 4, { 0, 0, 0, 0 }, { 1, 1, 1, 1 }, 8, 2, 128, 0, 16, 0, DTYPE_BF16 },          // pure decode (split-K)
    // f8e4m3 caches: the fa2 kernel's fp8 staging (head dims 64/128/256, GQA 1/4/8, odd lengths,
    // windows, softcap, block sizes 16/24/32), the WMMA fallback (80) and split-K decode
    { 1, { 0 }, { 300 }, 8, 2, 128, 0, 16, 0, DTYPE_F8E4M3 },
    { 1, { 0 }, { 257 }, 32, 8, 128, 0, 16, 0, DTYPE_F8E4M3 },
    { 1, { 61 }, { 128 }, 8, 8, 64, 0, 16, 0, DTYPE_F8E4M3 },
    { 3, { 0, 100, 37 }, { 129, 1, 64 }, 8, 1, 128, 0, 32, 0, DTYPE_F8E4M3 },
    { 2, { 5, 0 }, { 200, 33 }, 8, 4, 256, 0, 16, 0, DTYPE_F8E4M3 },
    { 2, { 0, 70 }, { 190, 90 }, 8, 2, 64, 37, 16, 0, DTYPE_F8E4M3 },
    { 1, { 300 }, { 150 }, 16, 8, 256, 100, 16, 50.0f, DTYPE_F8E4M3 },
    { 2, { 0, 3 }, { 77, 140 }, 4, 4, 128, 0, 24, 30.0f, DTYPE_F8E4M3 },
    { 1, { 40 }, { 100 }, 4, 1, 80, 0, 16, 0, DTYPE_F8E4M3 },
    { 4, { 0, 9, 500, 77 }, { 1, 1, 1, 1 }, 32, 8, 128, 0, 16, 0, DTYPE_F8E4M3 },
    // fp8 decodes for the tensor-core kernel (attention_decode_mma.cu; the short ones reach it in
    // the any-length pass): windows that start mid-tile, block sizes 32/48, 16 query heads per KV
    // head (S rows 8-15), softcap, GQA 6 (heads past the group)
    { 2, { 500, 36 }, { 1, 1 }, 8, 2, 128, 100, 32, 0, DTYPE_F8E4M3 },
    { 3, { 1000, 17, 250 }, { 1, 1, 1 }, 16, 1, 64, 0, 32, 30.0f, DTYPE_F8E4M3 },
    { 1, { 69 }, { 1 }, 6, 1, 128, 0, 48, 0, DTYPE_F8E4M3 },
    { 2, { 2000, 4 }, { 1, 1 }, 32, 2, 128, 333, 16, 0, DTYPE_F8E4M3 },
};

/* Decode steps and small shapes for every cache dtype: head dims 16-256 (72: the split-K kernel
 * even for prefill), GQA up to 16 heads per KV head, a 5,000-key decode (many splits), windows,
 * soft-caps. Sequence s of a case has len + 3 s positions, the last n_new of them new. */
TEST(split_kernel_cases)
{
    struct rng r;
    rng_seed(&r, 9);
    const struct { int n_seq, len, n_new, n_heads, n_kv, hd, window; float softcap; } cases[] = {
        { 1, 1, 1, 1, 1, 16, 0, 0 },         // a single key
        { 3, 40, 1, 8, 2, 64, 0, 0 },        // decode, GQA 4:1
        { 2, 70, 70, 4, 4, 128, 0, 0 },      // prefill, MHA
        { 4, 33, 5, 16, 8, 128, 0, 0 },      // chunked prefill
        { 2, 300, 1, 4, 1, 256, 0, 0 },      // decode, MQA, hd 256
        { 1, 5000, 1, 32, 8, 128, 0, 0 },    // long decode: many splits
        { 2, 50, 17, 4, 2, 64, 7, 0 },       // sliding window
        { 2, 45, 3, 4, 2, 80, 0, 50.0f },    // softcap, head_dim 80
        { 1, 129, 129, 2, 1, 72, 64, 0 },    // window, prefill, head_dim 72
        { 1, 700, 300, 16, 2, 128, 0, 0 },   // long prefill chunk, GQA 8:1
        { 2, 90, 1, 16, 1, 64, 0, 0 },       // decode, 16 query heads per KV head
        { 1, 3000, 1, 32, 4, 128, 0, 0 },    // long decode, GQA 8:1 (Qwen3-30B-A3B)
        { 3, 200, 1, 12, 2, 64, 100, 30.0f },// decode, GQA 6:1, window and softcap
        { 2, 1100, 2, 8, 2, 256, 0, 0 },     // two new tokens per sequence, hd 256
        { 3, 37, 1, 16, 2, 256, 0, 0 },      // decode, hd 256, GQA 8:1 (Qwen3.5/3.6: the decode kernel's folded warp merge)
        { 1, 6000, 1, 16, 2, 256, 0, 0 },    // long decode of that shape: many splits
        { 2, 500, 1, 6, 1, 256, 0, 30.0f },  // hd 256, GQA 6:1 (heads past the group), softcap
    };
    const enum dtype dts[4] = { DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_F8E4M3 };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int d = 0; d < 4; d++) {
            struct acase ac = { .n_seq = cases[c].n_seq, .n_heads = cases[c].n_heads, .n_kv = cases[c].n_kv,
                                .hd = cases[c].hd, .window = cases[c].window, .bs = 16, .softcap = cases[c].softcap,
                                .kvdt = dts[d] };
            for (int s = 0; s < ac.n_seq; s++) {
                int len = cases[c].len + 3 * s;
                ac.n_new[s] = cases[c].n_new < len ? cases[c].n_new : len;
                ac.ctx[s] = len - ac.n_new[s];
            }
            case_run(&ac, &r, 1.0f);
        }
}

TEST(fixed_cases)
{
    struct rng r;
    rng_seed(&r, 11);
    for (size_t c = 0; c < sizeof fixed / sizeof fixed[0]; c++) case_run(&fixed[c], &r, 1.0f);
}

TEST(random_cases)
{
    struct rng r;
    rng_seed(&r, 12);
    const int hds[3] = { 64, 128, 256 }, gs[3] = { 1, 4, 8 }, bss[4] = { 16, 32, 64, 8 };
    for (int c = 0; c < 32; c++) {
        struct acase ac;
        memset(&ac, 0, sizeof ac);
        ac.n_seq = urange(&r, 1, 4);
        for (int s = 0; s < ac.n_seq; s++) {
            ac.ctx[s] = urange(&r, 0, 3) == 0 ? 0 : urange(&r, 0, 400);
            ac.n_new[s] = urange(&r, 1, 300 / ac.n_seq + 20);
        }
        ac.n_kv = urange(&r, 1, 2);
        ac.n_heads = ac.n_kv * gs[urange(&r, 0, 2)];
        ac.hd = hds[urange(&r, 0, 2)];
        ac.window = urange(&r, 0, 2) == 0 ? urange(&r, 1, 300) : 0;
        ac.softcap = urange(&r, 0, 3) == 0 ? 30.0f : 0.0f;
        ac.bs = bss[urange(&r, 0, 3)];
        int d = urange(&r, 0, 3);
        ac.kvdt = d == 0 ? DTYPE_F16 : d == 1 ? DTYPE_F8E4M3 : DTYPE_BF16;
        case_run(&ac, &r, 1.0f);
    }
}

/* The comparison has teeth: a 5% error in the scale must be rejected. */
TEST(control_rejects_wrong_scale)
{
    struct rng r;
    rng_seed(&r, 13);
    fprintf(stderr, "  (control: mismatches below are expected)\n");
    EXPECT(!case_run(&fixed[1], &r, 1.05f));
}

TEST(quick)
{
    struct rng r;
    rng_seed(&r, 14);
    const struct acase quick[] = {
        { 2, { 0, 20 }, { 130, 40 }, 4, 1, 128, 0, 16, 0, DTYPE_BF16 },
        { 1, { 9 }, { 70 }, 2, 1, 256, 33, 16, 20.0f, DTYPE_F16 },
        { 1, { 0 }, { 100 }, 2, 2, 64, 0, 32, 0, DTYPE_BF16 },
        { 2, { 3, 0 }, { 90, 1 }, 8, 2, 128, 0, 16, 0, DTYPE_F8E4M3 },
        { 2, { 300, 40 }, { 1, 1 }, 8, 2, 128, 0, 16, 0, DTYPE_BF16 },    // decode: the streaming kernel, splits
        { 1, { 700 }, { 1 }, 16, 2, 128, 0, 16, 0, DTYPE_F8E4M3 },       // decode, GQA 8:1, fp8 cache
        { 2, { 300, 20 }, { 1, 1 }, 16, 1, 64, 50, 32, 0, DTYPE_F8E4M3 }, // fp8 decode, 16 heads per KV head
    };
    for (size_t c = 0; c < sizeof quick / sizeof quick[0]; c++) case_run(&quick[c], &r, 1.0f);
}

/* fp8 decode runs on tensor cores (attention_decode_mma.cu) from 1,024 keys by default; from here
 * on at every length, so the short cases reach it too. */
static void use_mma_at_any_length(void)
{
    backend_free(g_cuda);
    if (backend_new("cuda", &(struct backend_cfg){ .cuda_fp8_mma_min_len = 1 }, &g_cuda) != STATUS_OK) exit(1);
    fprintf(stderr, "  fp8 decode on tensor cores at every length:\n");
}

int main(void)
{
    cuda_tests_open(true);
    const char *quick = getenv("CAIRN_TEST_QUICK");
    if (quick && !strcmp(quick, "1")) {
        RUN(quick);
        use_mma_at_any_length();
        RUN(quick);
    } else {
        RUN(split_kernel_cases);
        RUN(fixed_cases);
        RUN(random_cases);
        RUN(control_rejects_wrong_scale);
        use_mma_at_any_length();
        RUN(split_kernel_cases);
        RUN(fixed_cases);
        // cuda-deterministic runs every step (prefill too) through the split-K kernels, with
        // splits chosen per token
        backend_free(g_cuda);
        if (backend_new("cuda-deterministic", NULL, &g_cuda) != STATUS_OK) return 1;
        fprintf(stderr, "  deterministic:\n");
        RUN(split_kernel_cases);
    }
    backend_free(g_cuda);
    backend_free(g_ref);
    return test_summary();
}
