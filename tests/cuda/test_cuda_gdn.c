/* test_cuda_gdn: the cuda backend's Gated DeltaNet ops (gdn_conv, gdn_recurrent, rmsnorm_gated,
 * sigmoid_mul) against ref, on batches mixing fresh, continuing and decoding sequences in
 * scattered state slots, at small, odd and Qwen3.6 head shapes; chunking invariance (a sequence fed
 * whole or 1, 7 or 64 tokens at a time); and the whole hybrid forward (Qwen3-Next, Qwen3.5,
 * Qwen3.5-MoE, tiny synthesized models) through the runner on cuda and cuda-precise against ref.
 * Needs a GPU: run by `make test-cuda` on the GPU machine. */
#include "cuda/cuda_util.h"

#include "backend/backend.h"
#include "base/log.h"
#include "base/mem.h"
#include "base/rng.h"
#include "engine/runner.h"


/* ==== Steps (as in tests/ops/test_gdn.c) ==== */

#define MAX_TOK 512
#define MAX_SEQ 8

struct step {
    int32_t tok_id[MAX_TOK], tok_pos[MAX_TOK], tok_seq[MAX_TOK], slot[MAX_SEQ], seq_len[MAX_SEQ];
    struct batch_meta meta;
};

static void step_make(struct step *st, int n_seq, const int *pos0, const int *n, const int *slot)
{
    memset(st, 0, sizeof *st);
    int k = 0, done[MAX_SEQ] = { 0 };
    for (bool more = true; more;) {
        more = false;
        for (int s = 0; s < n_seq; s++)
            if (done[s] < n[s]) {
                st->tok_pos[k] = pos0[s] + done[s];
                st->tok_seq[k] = s;
                done[s]++, k++;
                more = true;
            }
    }
    for (int s = 0; s < n_seq; s++) {
        st->slot[s] = slot[s];
        st->seq_len[s] = pos0[s] + n[s];
    }
    st->meta = (struct batch_meta){ .n_tok = k, .tok_id = st->tok_id, .tok_pos = st->tok_pos, .tok_seq = st->tok_seq,
                                    .n_seq = n_seq, .seq_len = st->seq_len, .seq_state_slot = st->slot };
}

struct gdn_case { int nk, nv, dk, dv, K; enum dtype wdt; };

/* One layer's inputs and states on the host; run() computes on a backend (host or device). */
struct io {
    struct gdn_case c;
    int64_t conv_dim, n_tok, n_slots;
    struct tt x, taps, a, b, z, a_log, dt_bias, norm_w, conv_st, ssm_st, u, o, y;
};

static void io_new(struct io *io, const struct gdn_case *c, int n_tok, int n_slots, struct rng *r)
{
    memset(io, 0, sizeof *io);
    io->c = *c;
    io->conv_dim = 2 * (int64_t)c->nk * c->dk + (int64_t)c->nv * c->dv;
    io->n_tok = n_tok;
    io->n_slots = n_slots;
    int64_t w = (int64_t)c->nv * c->dv;
    io->x = tt_new(DTYPE_F32, io->conv_dim, n_tok);
    io->taps = tt_new(c->wdt, c->K, io->conv_dim);
    io->a = tt_new(DTYPE_F32, c->nv, n_tok);
    io->b = tt_new(DTYPE_F32, c->nv, n_tok);
    io->z = tt_new(DTYPE_F32, w, n_tok);
    io->a_log = tt_new(c->wdt, c->nv, 1);
    io->dt_bias = tt_new(c->wdt, c->nv, 1);
    io->norm_w = tt_new(c->wdt, c->dv, 1);
    io->conv_st = tt_new(DTYPE_F32, (int64_t)(c->K - 1) * io->conv_dim, n_slots);
    io->ssm_st = tt_new(DTYPE_F32, w * c->dk, n_slots);
    io->u = tt_new(DTYPE_F32, io->conv_dim, n_tok);
    io->o = tt_new(DTYPE_F32, w, n_tok);
    io->y = tt_new(DTYPE_F32, w, n_tok);
    tt_randn(&io->x, r, 1.0f);
    tt_randn(&io->taps, r, 0.5f);
    tt_randn(&io->a, r, 1.0f);
    tt_randn(&io->b, r, 1.0f);
    tt_randn(&io->z, r, 1.0f);
    tt_randn(&io->a_log, r, 0.7f);
    tt_randn(&io->dt_bias, r, 0.5f);
    tt_randn(&io->norm_w, r, 0.3f);
    tt_randn(&io->conv_st, r, 1.0f);
    tt_randn(&io->ssm_st, r, 0.1f);
}

static void io_free(struct io *io)
{
    struct tt *all[] = { &io->x, &io->taps, &io->a, &io->b, &io->z, &io->a_log, &io->dt_bias, &io->norm_w,
                         &io->conv_st, &io->ssm_st, &io->u, &io->o, &io->y };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tt_free(all[i]);
}

static struct tensor cols(const struct tensor *x, int64_t col0, int64_t n)
{
    struct tensor t = *x;
    t.ne[0] = n;
    t.offset += (size_t)col0 * sizeof(float);
    return t;
}

/* The three ops over rows [t0, t0 + meta->n_tok) of the io's tensors, given as t (host or device). */
static void run_ops(struct backend *be, struct tensor *t, const struct gdn_case *c, const struct batch_meta *meta,
                    int t0)
{
    // t: x, taps, a, b, z, a_log, dt_bias, norm_w, conv_st, ssm_st, u, o, y
    int n = meta->n_tok;
    struct tensor x = tensor_rows_view(&t[0], t0, n), u = tensor_rows_view(&t[10], t0, n);
    struct tensor o = tensor_rows_view(&t[11], t0, n), y = tensor_rows_view(&t[12], t0, n);
    struct tensor a = tensor_rows_view(&t[2], t0, n), b = tensor_rows_view(&t[3], t0, n), z = tensor_rows_view(&t[4], t0, n);
    struct tensor taps = tensor_3d(c->wdt, c->K, 1, t[1].ne[1], t[1].buf, t[1].offset);
    struct gdn_state_layer st = { t[8], t[9] };
    be->ops->batch_begin(be, meta);
    be->ops->gdn_conv(be, &u, &x, &taps, &st, meta);
    int64_t kd = (int64_t)c->nk * c->dk;
    struct tensor q = cols(&u, 0, kd), k = cols(&u, kd, kd), v = cols(&u, 2 * kd, (int64_t)c->nv * c->dv);
    struct gdn_params p = { c->nk, c->nv, c->dk, c->dv };
    be->ops->gdn_recurrent(be, &o, &q, &k, &v, &a, &b, &t[5], &t[6], &st, &p, meta);
    be->ops->rmsnorm_gated(be, &y, &o, &z, &t[7], 1e-6f);
    CHECK(be->ops->sync(be) == STATUS_OK, "sync");
}

static void host_tensors(struct io *io, struct tensor *t)
{
    struct tt *all[] = { &io->x, &io->taps, &io->a, &io->b, &io->z, &io->a_log, &io->dt_bias, &io->norm_w,
                         &io->conv_st, &io->ssm_st, &io->u, &io->o, &io->y };
    for (int i = 0; i < 13; i++) t[i] = *tt_t(all[i]);
}

struct dev_io { struct dt d[13]; };

static void dev_up(struct io *io, struct dev_io *dv, struct tensor *t)
{
    struct tt *all[] = { &io->x, &io->taps, &io->a, &io->b, &io->z, &io->a_log, &io->dt_bias, &io->norm_w,
                         &io->conv_st, &io->ssm_st, &io->u, &io->o, &io->y };
    for (int i = 0; i < 13; i++) {
        dv->d[i] = dev_of(all[i]);
        t[i] = dv->d[i].t;
    }
}

static void dev_down(struct io *io, struct dev_io *dv)
{
    struct tt *all[] = { &io->x, &io->taps, &io->a, &io->b, &io->z, &io->a_log, &io->dt_bias, &io->norm_w,
                         &io->conv_st, &io->ssm_st, &io->u, &io->o, &io->y };
    for (int i = 8; i < 13; i++) dev_get(&dv->d[i], all[i]);   // states and outputs
    for (int i = 0; i < 13; i++) dev_free(&dv->d[i]);
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
        struct step st;
        step_make(&st, 3, (int[]){ 0, 17, 3 }, (int[]){ 5, 1, 9 }, (int[]){ 3, 0, 4 });
        struct io h, d;
        io_new(&h, c, st.meta.n_tok, 5, &r);
        rng_seed(&r, 31 + ci);   // the same inputs again for the device copy
        io_new(&d, c, st.meta.n_tok, 5, &r);
        memcpy(d.x.p, h.x.p, (size_t)tensor_nelem(&h.x.t) * 4);
        struct tt *hs[] = { &h.x, &h.taps, &h.a, &h.b, &h.z, &h.a_log, &h.dt_bias, &h.norm_w, &h.conv_st, &h.ssm_st };
        struct tt *ds[] = { &d.x, &d.taps, &d.a, &d.b, &d.z, &d.a_log, &d.dt_bias, &d.norm_w, &d.conv_st, &d.ssm_st };
        for (int i = 0; i < 10; i++) tt_copy(ds[i], hs[i]);
        struct tensor th[13], td[13];
        host_tensors(&h, th);
        run_ops(g_ref, th, c, &st.meta, 0);
        struct dev_io dv;
        dev_up(&d, &dv, td);
        run_ops(g_cuda, td, c, &st.meta, 0);
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
        io_free(&h);
        io_free(&d);
    }
}

TEST(chunking_invariance)
{
    const struct gdn_case c = { 2, 4, 16, 8, 4, DTYPE_BF16 };
    const int T = 150, chunks[] = { 1, 7, 64 };
    struct rng r;
    rng_seed(&r, 32);
    struct io whole;
    io_new(&whole, &c, T, 3, &r);
    struct tensor tw[13];
    struct dev_io dw;
    dev_up(&whole, &dw, tw);
    struct step st;
    step_make(&st, 1, (int[]){ 0 }, (int[]){ T }, (int[]){ 2 });
    run_ops(g_cuda, tw, &c, &st.meta, 0);
    dev_down(&whole, &dw);
    for (int k = 0; k < 3; k++) {
        struct io part;
        rng_seed(&r, 32);
        io_new(&part, &c, T, 3, &r);   // same inputs and initial states
        struct tensor tp[13];
        struct dev_io dp;
        dev_up(&part, &dp, tp);
        for (int t0 = 0; t0 < T; t0 += chunks[k]) {
            int n = T - t0 < chunks[k] ? T - t0 : chunks[k];
            step_make(&st, 1, (int[]){ t0 }, (int[]){ n }, (int[]){ 2 });
            run_ops(g_cuda, tp, &c, &st.meta, t0);
        }
        dev_down(&part, &dp);
        char what[64];
        snprintf(what, sizeof what, "cuda, chunks of %d", chunks[k]);
        int64_t w = (int64_t)c.nv * c.dv;
        EXPECTF(tt_close("outputs", part.y.p, whole.y.p, T * w, 1e-6, 1e-5, 1e-12), "%s", what);
        EXPECTF(tt_close("ssm state", part.ssm_st.p, whole.ssm_st.p, 3 * w * c.dk, 1e-6, 1e-5, 1e-12), "%s", what);
        io_free(&part);
    }
    io_free(&whole);
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
    RUN(chunking_invariance);
    RUN(sigmoid_mul);
    RUN(models_vs_ref);
    backend_free(g_cuda);
    backend_free(g_ref);
    return test_summary();
}
