/* test_cuda_gdn: the cuda backend's Gated DeltaNet ops (gdn_conv, gdn_recurrent, rmsnorm_gated,
 * sigmoid_mul) against ref, on batches mixing fresh, continuing and decoding sequences in
 * scattered state slots, at small, odd and Qwen3.6 head shapes; the chunked prefill and decode
 * forms against ref (lengths 1 to 1000, fresh or continuing, mixed batches); chunking invariance
 * (a sequence fed whole or 1, 7 or 64 tokens at a time); state snapshots taken inside a step; and
 * the whole hybrid forward (Qwen3-Next, Qwen3.5, Qwen3.5-MoE, tiny synthesized models) through the
 * runner on cuda and cuda-precise against ref.
 * Needs a GPU: run by `make test-cuda` on the GPU machine. */
#include "cuda/cuda_util.h"
#include "ops/gdn_io.h"

#include "backend/backend.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rng.h"
#include "engine/runner.h"


/* ==== Steps (as in tests/ops/test_gdn.c) ==== */

struct dev_io { struct dt d[GDN_IO_N]; };

static void dev_up(struct gdn_io *io, struct dev_io *dv, struct tensor *t)
{
    struct tt *all[GDN_IO_N];
    gdn_io_all(io, all);
    for (int i = 0; i < GDN_IO_N; i++) {
        dv->d[i] = dev_of(all[i]);
        t[i] = dv->d[i].t;
    }
}

static void dev_down(struct gdn_io *io, struct dev_io *dv)
{
    struct tt *all[GDN_IO_N];
    gdn_io_all(io, all);
    for (int i = 8; i < GDN_IO_N; i++) dev_get(&dv->d[i], all[i]);   // states and outputs
    for (int i = 0; i < GDN_IO_N; i++) dev_free(&dv->d[i]);
}

TEST(ops_vs_ref)
{
    static const struct gdn_case cases[] = {
        { 1, 1, 4, 4, 4, DTYPE_F32 }, { 2, 4, 16, 8, 4, DTYPE_BF16 }, { 2, 6, 12, 20, 3, DTYPE_F32 },
        { 3, 3, 33, 17, 2, DTYPE_F16 }, { 16, 32, 128, 128, 4, DTYPE_BF16 },
    };
    struct rng r;
    rng_seed(&r, 31);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const struct gdn_case *c = &cases[ci];
        struct gdn_step st;
        gdn_step_make(&st, 3, (int[]){ 0, 17, 3 }, (int[]){ 5, 1, 9 }, (int[]){ 3, 0, 4 });
        struct gdn_io h, d;
        gdn_io_new(&h, c, st.meta.n_tok, 5, &r);
        rng_seed(&r, 31 + ci);   // the same inputs again for the device copy
        gdn_io_new(&d, c, st.meta.n_tok, 5, &r);
        memcpy(d.x.p, h.x.p, (size_t)tensor_nelem(&h.x.t) * 4);
        struct tt *hs[] = { &h.x, &h.taps, &h.a, &h.b, &h.z, &h.a_log, &h.dt_bias, &h.norm_w, &h.conv_st, &h.ssm_st };
        struct tt *ds[] = { &d.x, &d.taps, &d.a, &d.b, &d.z, &d.a_log, &d.dt_bias, &d.norm_w, &d.conv_st, &d.ssm_st };
        for (int i = 0; i < 10; i++) tt_copy(ds[i], hs[i]);
        struct tensor th[GDN_IO_N], td[GDN_IO_N];
        gdn_io_host(&h, th);
        gdn_run_ops(g_ref, th, c, &st.meta, 0);
        struct dev_io dv;
        dev_up(&d, &dv, td);
        gdn_run_ops(g_cuda, td, c, &st.meta, 0);
        dev_down(&d, &dv);
        char what[128];
        snprintf(what, sizeof what, "gdn nk=%d nv=%d dk=%d dv=%d K=%d %s", c->nk, c->nv, c->dk, c->dv, c->K,
                 dtype_name(c->wdt));
        int64_t n = st.meta.n_tok, w = (int64_t)c->nv * c->dv;
        EXPECTF(tt_close("conv", d.u.p, h.u.p, n * h.conv_dim, 1e-5, 1e-4, 1e-10), "%s", what);
        EXPECTF(tt_close("delta rule", d.o.p, h.o.p, n * w, 1e-5, 1e-4, 1e-10), "%s", what);
        EXPECTF(tt_close("gated norm", d.y.p, h.y.p, n * w, 1e-5, 1e-4, 1e-10), "%s", what);
        EXPECTF(tt_close("conv state", d.conv_st.p, h.conv_st.p, 5 * (c->K - 1) * h.conv_dim, 1e-6, 1e-6, 1e-12), "%s", what);
        EXPECTF(tt_close("ssm state", d.ssm_st.p, h.ssm_st.p, 5 * w * c->dk, 1e-5, 1e-4, 1e-10), "%s", what);
        gdn_io_free(&h);
        gdn_io_free(&d);
    }
}

/* One step of the three ops on ref and on cuda from the same inputs and initial states; outputs
 * and all five state slots compared. */
static void step_vs_ref(const struct gdn_case *c, const struct gdn_step *st, struct rng *r, const char *what)
{
    struct gdn_io base, rio, dio;
    gdn_io_new(&base, c, st->meta.n_tok, 5, r);
    gdn_io_clone(&rio, &base);
    gdn_io_clone(&dio, &base);
    struct tensor th[GDN_IO_N], td[GDN_IO_N];
    gdn_io_host(&rio, th);
    gdn_run_ops(g_ref, th, c, &st->meta, 0);
    struct dev_io dv;
    dev_up(&dio, &dv, td);
    gdn_run_ops(g_cuda, td, c, &st->meta, 0);
    dev_down(&dio, &dv);
    int64_t n = st->meta.n_tok, w = (int64_t)c->nv * c->dv;
    EXPECTF(tt_close("conv", dio.u.p, rio.u.p, n * base.conv_dim, 1e-5, 1e-4, 1e-10), "%s", what);
    EXPECTF(tt_close("delta rule", dio.o.p, rio.o.p, n * w, 1e-5, 1e-4, 1e-10), "%s", what);
    EXPECTF(tt_close("gated norm", dio.y.p, rio.y.p, n * w, 1e-5, 1e-4, 1e-10), "%s", what);
    EXPECTF(tt_close("conv state", dio.conv_st.p, rio.conv_st.p, 5 * (c->K - 1) * base.conv_dim, 1e-6, 1e-6, 1e-12),
            "%s", what);
    EXPECTF(tt_close("ssm state", dio.ssm_st.p, rio.ssm_st.p, 5 * w * c->dk, 1e-5, 1e-4, 1e-10), "%s", what);
    gdn_io_free(&base);
    gdn_io_free(&rio);
    gdn_io_free(&dio);
}

/* The conv's two cuda forms and the delta rule's three (gdn.cu) against ref: the chunked prefill (a
 * step with a run of 16 or more tokens of one sequence) on one sequence of each length, fresh or
 * continuing from a random state at a position off the 64-grid; the decode kernel on a step of
 * one token per sequence (one of them fresh); five sequences of mixed lengths in one step, a
 * decode token among them, as runs (the conv over tiles, the chunked rule) and interleaved (the
 * walks over the step's tokens); three long runs off the 64-grid (fresh, continuing at 64 and at
 * 5). Head shapes: the chunked kernels' paddings (dk 16, 33, 100: q and k copied 4 or 16 bytes
 * at a time), one and several column tiles of S (dv 8 to 256), Qwen3.6's 128 x 128. */
TEST(forms_vs_ref)
{
    static const struct gdn_case cases[] = {
        { 2, 4, 16, 8, 4, DTYPE_BF16 }, { 3, 3, 33, 17, 2, DTYPE_F32 }, { 16, 32, 128, 128, 4, DTYPE_BF16 },
        { 4, 8, 64, 256, 4, DTYPE_BF16 }, { 2, 2, 100, 48, 3, DTYPE_F32 },
    };
    static const int lens[] = { 1, 7, 63, 64, 65, 200, 1000 };
    struct rng r;
    rng_seed(&r, 34);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const struct gdn_case *c = &cases[ci];
        char what[160];
        struct gdn_step st;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
            for (int cont = 0; cont < 2; cont++) {
                int pos0 = cont ? 37 : 0;
                gdn_step_make_runs(&st, 1, &pos0, &lens[li], (int[]){ 2 });
                snprintf(what, sizeof what, "nk=%d nv=%d dk=%d dv=%d: %d tokens from position %d", c->nk, c->nv, c->dk,
                         c->dv, lens[li], pos0);
                step_vs_ref(c, &st, &r, what);
            }
        gdn_step_make(&st, 5, (int[]){ 17, 0, 37, 64, 130 }, (int[]){ 1, 1, 1, 1, 1 }, (int[]){ 0, 3, 1, 4, 2 });
        snprintf(what, sizeof what, "nk=%d nv=%d dk=%d dv=%d: a decode step of five sequences", c->nk, c->nv, c->dk,
                 c->dv);
        step_vs_ref(c, &st, &r, what);
        for (int runs = 0; runs < 2; runs++) {
            gdn_step_layout(&st, 5, (int[]){ 17, 0, 37, 64, 130 }, (int[]){ 1, 7, 65, 200, 300 }, (int[]){ 0, 3, 1, 4, 2 },
                            runs);
            snprintf(what, sizeof what, "nk=%d nv=%d dk=%d dv=%d: five sequences, %s", c->nk, c->nv, c->dk, c->dv,
                     runs ? "runs" : "interleaved");
            step_vs_ref(c, &st, &r, what);
        }
        gdn_step_make_runs(&st, 3, (int[]){ 0, 64, 5 }, (int[]){ 130, 64, 257 }, (int[]){ 1, 4, 0 });
        snprintf(what, sizeof what, "nk=%d nv=%d dk=%d dv=%d: three long runs", c->nk, c->nv, c->dk, c->dv);
        step_vs_ref(c, &st, &r, what);
    }
}

TEST(chunking_invariance)
{
    const struct gdn_case c = { 2, 4, 16, 8, 4, DTYPE_BF16 };
    const int T = 150, chunks[] = { 1, 7, 64 };
    struct rng r;
    rng_seed(&r, 32);
    struct gdn_io whole;
    gdn_io_new(&whole, &c, T, 3, &r);
    struct tensor tw[GDN_IO_N];
    struct dev_io dw;
    dev_up(&whole, &dw, tw);
    struct gdn_step st;
    gdn_step_make(&st, 1, (int[]){ 0 }, (int[]){ T }, (int[]){ 2 });
    gdn_run_ops(g_cuda, tw, &c, &st.meta, 0);
    dev_down(&whole, &dw);
    for (int k = 0; k < 3; k++) {
        struct gdn_io part;
        rng_seed(&r, 32);
        gdn_io_new(&part, &c, T, 3, &r);   // same inputs and initial states
        struct tensor tp[GDN_IO_N];
        struct dev_io dp;
        dev_up(&part, &dp, tp);
        for (int t0 = 0; t0 < T; t0 += chunks[k]) {
            int n = T - t0 < chunks[k] ? T - t0 : chunks[k];
            gdn_step_make(&st, 1, (int[]){ t0 }, (int[]){ n }, (int[]){ 2 });
            gdn_run_ops(g_cuda, tp, &c, &st.meta, t0);
        }
        dev_down(&part, &dp);
        char what[64];
        snprintf(what, sizeof what, "cuda, chunks of %d", chunks[k]);
        int64_t w = (int64_t)c.nv * c.dv;
        EXPECTF(tt_close("outputs", part.y.p, whole.y.p, T * w, 1e-6, 1e-5, 1e-12), "%s", what);
        EXPECTF(tt_close("ssm state", part.ssm_st.p, whole.ssm_st.p, 3 * w * c.dk, 1e-6, 1e-5, 1e-12), "%s", what);
        gdn_io_free(&part);
    }
    gdn_io_free(&whole);
}

/* gdn_run_fn for ref (host tensors) and for cuda (uploaded, run, downloaded). */
static void host_run(struct backend *be, struct gdn_io *io, const struct batch_meta *meta, int t0)
{
    struct tensor t[GDN_IO_N];
    gdn_io_host(io, t);
    gdn_run_ops(be, t, &io->c, meta, t0);
}

static void dev_run(struct backend *be, struct gdn_io *io, const struct batch_meta *meta, int t0)
{
    struct tensor t[GDN_IO_N];
    struct dev_io dv;
    dev_up(io, &dv, t);
    gdn_run_ops(be, t, &io->c, meta, t0);
    dev_down(io, &dv);
}

/* Snapshots inside a step (meta->tok_snap; gdn_io.h: gdn_snap_step): the long case takes the
 * conv's tile pass and the chunked rule (batch_begin ends a tile at each snapshot token), the
 * short one the walk; at a small shape and Qwen3.6's heads, outputs, states and every snapshot
 * slot against ref's steps cut at the snapshot positions. */
TEST(snapshots_inside_a_step)
{
    const struct gdn_case cs[] = { { 2, 4, 16, 8, 4, DTYPE_BF16 }, { 16, 32, 128, 128, 4, DTYPE_BF16 } };
    const struct gdn_snap_case *scs[] = { &gdn_snap_long, &gdn_snap_short };
    struct rng r;
    rng_seed(&r, 34);
    for (size_t ci = 0; ci < 2; ci++)
        for (size_t si = 0; si < 2; si++) {
            const struct gdn_case *c = &cs[ci];
            const struct gdn_snap_case *sc = scs[si];
            int rows = gdn_snap_rows(sc);
            struct gdn_io base, rio, dio;
            gdn_io_new(&base, c, rows, 3, &r);
            gdn_io_clone(&rio, &base);
            gdn_io_clone(&dio, &base);
            gdn_snap_reference(g_ref, host_run, &rio, sc);
            struct gdn_step st;
            gdn_snap_step(&st, sc);
            dev_run(g_cuda, &dio, &st.meta, 0);
            char what[96];
            snprintf(what, sizeof what, "dk=%d dv=%d K=%d, %d rows", c->dk, c->dv, c->K, rows);
            int64_t w = (int64_t)c->nv * c->dv, conv_row = (c->K - 1) * base.conv_dim;
            EXPECTF(tt_close("gated norm", dio.y.p, rio.y.p, rows * w, 1e-5, 1e-4, 1e-10), "%s", what);
            EXPECTF(tt_close("conv state", dio.conv_st.p, rio.conv_st.p, 3 * conv_row, 1e-6, 1e-6, 1e-12), "%s", what);
            EXPECTF(tt_close("ssm state", dio.ssm_st.p, rio.ssm_st.p, 3 * w * c->dk, 1e-5, 1e-4, 1e-10), "%s", what);
            EXPECTF(tt_close("conv snapshots", dio.conv_snap.p, rio.conv_snap.p, GDN_IO_SNAPS * conv_row, 1e-6, 1e-6,
                             1e-12), "%s", what);
            EXPECTF(tt_close("ssm snapshots", dio.ssm_snap.p, rio.ssm_snap.p, GDN_IO_SNAPS * w * c->dk, 1e-5, 1e-4,
                             1e-10), "%s", what);
            // the same marks as cuts only (TOK_SNAP_CUT): the same outputs and states bit for bit
            // (the tiles end at the same tokens), and no snapshot slot written
            struct gdn_io cio;
            gdn_io_clone(&cio, &base);
            gdn_snap_step(&st, sc);
            for (int t = 0; t < st.meta.n_tok; t++)
                if (st.tok_snap[t] >= 0) st.tok_snap[t] = TOK_SNAP_CUT;
            dev_run(g_cuda, &cio, &st.meta, 0);
            EXPECTF(!memcmp(cio.y.p, dio.y.p, sizeof(float) * (size_t)(rows * w)) &&
                    !memcmp(cio.conv_st.p, dio.conv_st.p, sizeof(float) * (size_t)(3 * conv_row)) &&
                    !memcmp(cio.ssm_st.p, dio.ssm_st.p, sizeof(float) * (size_t)(3 * w * c->dk)),
                    "%s: cuts alone change the outputs or states", what);
            EXPECTF(!memcmp(cio.conv_snap.p, base.conv_snap.p, sizeof(float) * (size_t)(GDN_IO_SNAPS * conv_row)) &&
                    !memcmp(cio.ssm_snap.p, base.ssm_snap.p, sizeof(float) * (size_t)(GDN_IO_SNAPS * w * c->dk)),
                    "%s: a cut wrote a snapshot", what);
            gdn_io_free(&cio);
            gdn_io_free(&base);
            gdn_io_free(&rio);
            gdn_io_free(&dio);
        }
}

TEST(sigmoid_mul)
{
    struct rng r;
    rng_seed(&r, 33);
    for (int bcast = 0; bcast < 2; bcast++) {
        int n = 37, m = 300;
        struct tt x = tt_new(DTYPE_F32, m, n), g = tt_new(DTYPE_F32, bcast ? 1 : m, n);
        struct tt o_ref = tt_new(DTYPE_F32, m, n), o = tt_new(DTYPE_F32, m, n);
        tt_randn(&x, &r, 1.0f);
        tt_randn(&g, &r, 3.0f);
        g_ref->ops->sigmoid_mul(g_ref, tt_t(&o_ref), tt_t(&x), tt_t(&g));
        struct dt dx = dev_of(&x), dg = dev_of(&g), dout = dev_of(&o);
        g_cuda->ops->sigmoid_mul(g_cuda, &dout.t, &dx.t, &dg.t);
        dev_get(&dout, &o);
        EXPECT(g_cuda->ops->sync(g_cuda) == STATUS_OK);
        EXPECT(tt_close("sigmoid_mul", o.p, o_ref.p, (int64_t)n * m, 1e-6, 1e-5, 1e-12));
        dev_free(&dx); dev_free(&dg); dev_free(&dout);
        tt_free(&x); tt_free(&g); tt_free(&o_ref); tt_free(&o);
    }
}

/* ==== The whole forward ==== */

TEST(models_vs_ref)
{
    static const char *archs[] = { "Qwen3NextForCausalLM", "Qwen3_5ForCausalLM", "Qwen3_5MoeForCausalLM" };
    char dir[] = "/tmp/cairn_cuda_gdn_XXXXXX";
    ASSERT(mkdtemp(dir));
    enum { N = 90 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((i * 37 + 11) % 96);
    for (int a = 0; a < 3; a++) {
        char cfg[1024], path[128];
        snprintf(cfg, sizeof cfg, "{\"architectures\": [\"%s\"], \"vocab_size\": 96, \"hidden_size\": 64,"
                 " \"intermediate_size\": 96, \"num_hidden_layers\": 4, \"num_attention_heads\": 4,"
                 " \"num_key_value_heads\": 2, \"head_dim\": 32, \"max_position_embeddings\": 512,"
                 " \"linear_num_key_heads\": 2, \"linear_num_value_heads\": 4, \"linear_key_head_dim\": 16,"
                 " \"linear_value_head_dim\": 16, \"num_experts\": 8, \"num_experts_per_tok\": 2,"
                 " \"moe_intermediate_size\": 32, \"shared_expert_intermediate_size\": 48,"
                 " \"layer_types\": [\"linear_attention\", \"full_attention\", \"linear_attention\", \"linear_attention\"]}",
                 archs[a]);
        snprintf(path, sizeof path, "%s/c%d.json", dir, a);
        FILE *f = fopen(path, "w");
        ASSERT(f && fputs(cfg, f) >= 0);
        fclose(f);
        struct model *m_ref = NULL;
        ASSERT(model_synthesize(path, 9, &m_ref) == STATUS_OK);
        size_t V = (size_t)m_ref->hp.n_vocab;
        float *ref = xmalloc(sizeof(float) * V * N), *got = xmalloc(sizeof(float) * V * N);
        struct runner *r;
        ASSERT(runner_new(m_ref, g_ref, 256, N, DTYPE_F32, &r) == STATUS_OK);
        EXPECT(runner_feed(r, ids, N, ref, true) == STATUS_OK);
        runner_free(r);
        static const char *bes[] = { "cuda", "cuda-precise" };
        for (int b = 0; b < 2; b++) {
            struct backend *be;
            ASSERT(backend_new(bes[b], NULL, &be) == STATUS_OK);
            struct model *m = NULL;
            // the same host weights as the reference, copied to the device (weight_prepare): the
            // kernels are under test, not synthesis (device-made hybrids keep the fused layout)
            ASSERT(model_synthesize(path, 9, &m) == STATUS_OK);
            ASSERT(model_prepare(m, be) == STATUS_OK);
            ASSERT(runner_new(m, be, 256, 32, DTYPE_BF16, &r) == STATUS_OK);   // three steps: state across steps
            EXPECT(runner_feed(r, ids, N, got, true) == STATUS_OK);
            runner_free(r);
            double worst = logits_max_rel(got, ref, N, (int64_t)V);
            fprintf(stderr, "  %-24s %-12s max rel err %.2e\n", archs[a], bes[b], worst);
            EXPECTF(worst < 2e-2, "%s on %s: %.3g", archs[a], bes[b], worst);
            model_free(m);
            backend_free(be);
        }
        free(ref);
        free(got);
        model_free(m_ref);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    cuda_tests_open(true);
    RUN(ops_vs_ref);
    RUN(forms_vs_ref);
    RUN(chunking_invariance);
    RUN(snapshots_inside_a_step);
    RUN(sigmoid_mul);
    RUN(models_vs_ref);
    backend_free(g_cuda);
    backend_free(g_ref);
    return test_summary();
}
