/* test_gdn: the Gated DeltaNet ops (gdn_conv, gdn_recurrent, rmsnorm_gated).
 *
 * ref against independent formulations computed here in f64 (the conv as a zero-padded sum over
 * the whole sequence, the delta rule in its closed form S_t = (I - b k k^T) e^g S_{t-1} + b k v^T);
 * cpu (1 and 2 threads) against ref on batches that mix sequences starting at position 0,
 * continuing from a stored state, decoding one token, interleaved in the batch and kept in
 * scattered state slots, at small, odd and real (Qwen3.6) head shapes with f32/bf16 parameters;
 * cpu's chunked prefill form (pieces of 2-64 tokens between multiples of 64) against ref's
 * recurrent one on fresh and continuing prefills; and chunking invariance: one 300-token
 * sequence fed whole or 1, 7, 64, 100 or 256 tokens at a time gives the same outputs and the
 * same final conv and recurrent states, on ref and on cpu (cpu: decode steps, chunked pieces
 * and their mixes, all within f32 rounding of each other); state snapshots taken inside a step
 * equal, bit for bit, the states of steps cut at their positions.
 */
#include "ops/gdn_io.h"

#include "backend/backend.h"
#include "base/log.h"
#include "base/rng.h"

static struct backend *g_ref, *g_cpu, *g_cpu1;

/* conv -> delta rule -> gated norm over tokens [t0, t0 + n) of the io's rows on a host backend. */
static void io_run(struct backend *be, struct gdn_io *io, const struct batch_meta *meta, int t0)
{
    struct tensor t[GDN_IO_N];
    gdn_io_host(io, t);
    gdn_run_ops(be, t, &io->c, meta, t0);
}

/* ==== ref against independent formulations ==== */

static double wval(const struct tt *t, int64_t i)
{
    float f;
    dtype_to_f32(t->t.dtype, (const char *)t->p + (size_t)i * dtype_size(t->t.dtype), &f, 1);
    return f;
}

static double silu_d(double x) { return x / (1.0 + exp(-x)); }

TEST(ref_closed_form)
{
    struct rng r;
    rng_seed(&r, 21);
    const struct gdn_case c = { 1, 2, 4, 3, 4, DTYPE_F32 };
    const int T = 9;
    struct gdn_io io;
    gdn_io_new(&io, &c, T, 2, &r);
    struct gdn_step st;
    gdn_step_make(&st, 1, (int[]){ 0 }, (int[]){ T }, (int[]){ 1 });
    io_run(g_ref, &io, &st.meta, 0);
    int64_t C = io.conv_dim, K = c.K, dk = c.dk, dv = c.dv;
    const float *x = io.x.p, *u = io.u.p, *o = io.o.p, *a = io.a.p, *b = io.b.p;
    // the conv over the zero-padded whole sequence
    double err = 0;
    for (int t = 0; t < T; t++)
        for (int64_t ch = 0; ch < C; ch++) {
            double acc = 0;
            for (int64_t j = 0; j < K; j++) {
                int64_t src = t - (K - 1) + j;
                if (src >= 0) acc += wval(&io.taps, ch * K + j) * x[src * C + ch];
            }
            err = fmax(err, fabs(silu_d(acc) - u[t * C + ch]));
        }
    EXPECTF(err < 1e-6, "conv max err %g", err);
    // the delta rule in closed form, per value head (one key head shared by both)
    err = 0;
    for (int h = 0; h < c.nv; h++) {
        double S[4][3] = { { 0 } };
        for (int t = 0; t < T; t++) {
            double q[4], k[4], sq = 0, sk = 0;
            for (int j = 0; j < dk; j++) {
                q[j] = u[t * C + j];
                k[j] = u[t * C + dk + j];
                sq += q[j] * q[j];
                sk += k[j] * k[j];
            }
            for (int j = 0; j < dk; j++) {
                q[j] /= sqrt(sq + 1e-6) * sqrt((double)dk);
                k[j] /= sqrt(sk + 1e-6);
            }
            double sp = a[t * c.nv + h] + wval(&io.dt_bias, h);
            double g = -exp(wval(&io.a_log, h)) * (sp > 20 ? sp : log1p(exp(sp)));
            double beta = 1 / (1 + exp(-b[t * c.nv + h]));
            double N[4][3];   // (I - beta k k^T) e^g S + beta k v^T
            for (int i = 0; i < dk; i++)
                for (int j = 0; j < dv; j++) {
                    double acc = 0;
                    for (int l = 0; l < dk; l++) acc += ((i == l) - beta * k[i] * k[l]) * exp(g) * S[l][j];
                    N[i][j] = acc + beta * k[i] * u[t * C + 2 * dk + h * dv + j];
                }
            memcpy(S, N, sizeof S);
            for (int j = 0; j < dv; j++) {
                double acc = 0;
                for (int i = 0; i < dk; i++) acc += S[i][j] * q[i];
                err = fmax(err, fabs(acc - o[t * c.nv * dv + h * dv + j]));
            }
        }
        // the stored state is S after the last token, [dk][dv] per head
        const float *Ss = (const float *)io.ssm_st.p + 1 * c.nv * dk * dv + h * dk * dv;
        for (int i = 0; i < dk; i++)
            for (int j = 0; j < dv; j++) err = fmax(err, fabs(S[i][j] - Ss[i * dv + j]));
    }
    EXPECTF(err < 1e-5, "delta rule max err %g", err);
    // gated norm: w * x / rms(x) * silu(z) per head
    err = 0;
    const float *y = io.y.p, *z = io.z.p;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < c.nv; h++) {
            double ss = 0;
            for (int j = 0; j < dv; j++) ss += (double)o[t * 6 + h * 3 + j] * o[t * 6 + h * 3 + j];
            for (int j = 0; j < dv; j++) {
                int64_t e = t * 6 + h * 3 + j;
                double want = wval(&io.norm_w, j) * o[e] / sqrt(ss / dv + 1e-6) * silu_d(z[e]);
                err = fmax(err, fabs(want - y[e]));
            }
        }
    EXPECTF(err < 1e-6, "gated norm max err %g", err);
    // the conv state holds the last K-1 inputs, oldest first
    const float *cs = (const float *)io.conv_st.p + 1 * (K - 1) * C;
    EXPECT(cs[0] == x[(T - 3) * C] && cs[2 * C + 5] == x[(T - 1) * C + 5]);
    gdn_io_free(&io);
}

/* ==== cpu against ref ==== */

static const struct gdn_case cases[] = {
    { 1, 1, 4, 4, 4, DTYPE_F32 },  { 2, 4, 16, 8, 4, DTYPE_BF16 }, { 2, 6, 12, 20, 3, DTYPE_F32 },
    { 3, 3, 33, 17, 2, DTYPE_BF16 }, { 16, 32, 128, 128, 4, DTYPE_BF16 },   // Qwen3.6-35B-A3B heads
};

TEST(cpu_vs_ref)
{
    struct rng r;
    rng_seed(&r, 22);
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const struct gdn_case *c = &cases[ci];
        // fresh prefill of 5 at slot 3, a decode step at position 17 in slot 0, a prefill chunk
        // continuing at position 3 in slot 4 (9 tokens), interleaved in the batch; at the small
        // shapes also a fresh 150-token prefill (slot 1) and a 90-token chunk from position 40
        // (slot 2): whole 64-token chunks and pieces cut at position 64 and 128 (the chunked form)
        struct gdn_step st;
        bool big = c->dk * c->dv > 4096;
        if (big) gdn_step_make(&st, 3, (int[]){ 0, 17, 3 }, (int[]){ 5, 1, 9 }, (int[]){ 3, 0, 4 });
        else gdn_step_make(&st, 5, (int[]){ 0, 17, 3, 0, 40 }, (int[]){ 5, 1, 9, 150, 90 }, (int[]){ 3, 0, 4, 1, 2 });
        struct gdn_io base, rio, cio, c1io;
        gdn_io_new(&base, c, st.meta.n_tok, 5, &r);
        gdn_io_clone(&rio, &base);
        gdn_io_clone(&cio, &base);
        gdn_io_clone(&c1io, &base);
        io_run(g_ref, &rio, &st.meta, 0);
        io_run(g_cpu, &cio, &st.meta, 0);
        io_run(g_cpu1, &c1io, &st.meta, 0);
        char what[128];
        snprintf(what, sizeof what, "gdn nk=%d nv=%d dk=%d dv=%d K=%d %s", c->nk, c->nv, c->dk, c->dv, c->K,
                 dtype_name(c->wdt));
        int n = st.meta.n_tok;
        int64_t w = (int64_t)c->nv * c->dv;
        EXPECTF(tt_close("conv", cio.u.p, rio.u.p, n * base.conv_dim, 1e-6, 1e-5, 1e-12), "%s", what);
        EXPECTF(tt_close("delta rule", cio.o.p, rio.o.p, n * w, 1e-5, 1e-4, 1e-10), "%s", what);
        EXPECTF(tt_close("gated norm", cio.y.p, rio.y.p, n * w, 1e-5, 1e-4, 1e-10), "%s", what);
        EXPECTF(tt_close("conv state", cio.conv_st.p, rio.conv_st.p, 5 * (c->K - 1) * base.conv_dim, 0, 0, 0), "%s", what);
        EXPECTF(tt_close("ssm state", cio.ssm_st.p, rio.ssm_st.p, 5 * w * c->dk, 1e-5, 1e-4, 1e-10), "%s", what);
        // at the big shape slots 1 and 2 belong to no sequence of the step: untouched
        if (big)
            EXPECT(!memcmp((float *)cio.ssm_st.p + w * c->dk, (float *)base.ssm_st.p + w * c->dk,
                           sizeof(float) * (size_t)(2 * w * c->dk)));
        // the thread count does not change a bit
        EXPECTF(!memcmp(cio.y.p, c1io.y.p, sizeof(float) * (size_t)(n * w)) &&
                !memcmp(cio.ssm_st.p, c1io.ssm_st.p, sizeof(float) * (size_t)(5 * w * c->dk)), "%s: 1 vs 2 threads", what);
        gdn_io_free(&base);
        gdn_io_free(&rio);
        gdn_io_free(&cio);
        gdn_io_free(&c1io);
    }
}

/* ==== Chunking invariance ==== */

TEST(chunking_invariance)
{
    struct rng r;
    rng_seed(&r, 23);
    const struct gdn_case c = { 2, 4, 16, 8, 4, DTYPE_BF16 };
    const int T = 300, chunks[] = { 1, 7, 64, 100, 256 };
    struct backend *bes[] = { g_ref, g_cpu };
    struct gdn_io base;
    gdn_io_new(&base, &c, T, 3, &r);
    for (int bi = 0; bi < 2; bi++) {
        struct gdn_io whole;
        gdn_io_clone(&whole, &base);
        struct gdn_step st;
        gdn_step_make(&st, 1, (int[]){ 0 }, (int[]){ T }, (int[]){ 2 });
        io_run(bes[bi], &whole, &st.meta, 0);
        for (size_t k = 0; k < sizeof chunks / sizeof chunks[0]; k++) {
            struct gdn_io part;
            gdn_io_clone(&part, &base);
            for (int t0 = 0; t0 < T; t0 += chunks[k]) {
                int n = T - t0 < chunks[k] ? T - t0 : chunks[k];
                gdn_step_make(&st, 1, (int[]){ t0 }, (int[]){ n }, (int[]){ 2 });
                io_run(bes[bi], &part, &st.meta, t0);
            }
            char what[64];
            snprintf(what, sizeof what, "%s, chunks of %d", bes[bi]->ops->name, chunks[k]);
            int64_t w = (int64_t)c.nv * c.dv;
            EXPECTF(tt_close("outputs", part.y.p, whole.y.p, T * w, 1e-6, 1e-5, 1e-12), "%s", what);
            EXPECTF(tt_close("conv state", part.conv_st.p, whole.conv_st.p, 3 * (c.K - 1) * base.conv_dim, 1e-6, 1e-5,
                             1e-12), "%s", what);
            EXPECTF(tt_close("ssm state", part.ssm_st.p, whole.ssm_st.p, 3 * w * c.dk, 1e-6, 1e-5, 1e-12), "%s", what);
            gdn_io_free(&part);
        }
        gdn_io_free(&whole);
    }
    gdn_io_free(&base);
}

/* ==== Snapshots inside a step ==== */

/* A step that takes snapshots (meta->tok_snap) leaves, bit for bit, the outputs, the states and in
 * each snapshot slot the state that steps cut at the snapshot positions give (the chunked form
 * ends its pieces there; gdn_io.h: gdn_snap_step, gdn_snap_reference); slots it does not write
 * keep their contents. Marked as cuts only (TOK_SNAP_CUT), the same tokens give the same outputs
 * and states and write nothing. */
TEST(snapshots_inside_a_step)
{
    struct rng r;
    rng_seed(&r, 24);
    const struct gdn_case cs[] = { { 2, 4, 16, 8, 4, DTYPE_BF16 }, { 3, 3, 33, 17, 2, DTYPE_F32 } };
    const struct gdn_snap_case *scs[] = { &gdn_snap_long, &gdn_snap_short };
    struct backend *bes[] = { g_ref, g_cpu };
    for (size_t ci = 0; ci < 2; ci++)
        for (size_t si = 0; si < 2; si++) {
            const struct gdn_case *c = &cs[ci];
            const struct gdn_snap_case *sc = scs[si];
            int rows = gdn_snap_rows(sc);
            struct gdn_io base;
            gdn_io_new(&base, c, rows, 3, &r);
            int64_t w = (int64_t)c->nv * c->dv, conv_row = (c->K - 1) * base.conv_dim;
            for (int bi = 0; bi < 2; bi++) {
                struct gdn_io whole, cut;
                gdn_io_clone(&whole, &base);
                gdn_io_clone(&cut, &base);
                struct gdn_step st;
                gdn_snap_step(&st, sc);
                io_run(bes[bi], &whole, &st.meta, 0);
                gdn_snap_reference(bes[bi], io_run, &cut, sc);
                char what[96];
                snprintf(what, sizeof what, "%s, dk=%d dv=%d K=%d, %d rows", bes[bi]->ops->name, c->dk, c->dv, c->K, rows);
                EXPECTF(!memcmp(whole.y.p, cut.y.p, sizeof(float) * (size_t)(rows * w)), "%s: outputs", what);
                EXPECTF(!memcmp(whole.conv_st.p, cut.conv_st.p, sizeof(float) * (size_t)(3 * conv_row)) &&
                        !memcmp(whole.ssm_st.p, cut.ssm_st.p, sizeof(float) * (size_t)(3 * w * c->dk)), "%s: states", what);
                EXPECTF(!memcmp(whole.conv_snap.p, cut.conv_snap.p, sizeof(float) * (size_t)(GDN_IO_SNAPS * conv_row)),
                        "%s: conv snapshots", what);
                EXPECTF(!memcmp(whole.ssm_snap.p, cut.ssm_snap.p, sizeof(float) * (size_t)(GDN_IO_SNAPS * w * c->dk)),
                        "%s: recurrent-state snapshots", what);
                gdn_io_free(&whole);
                gdn_io_free(&cut);
            }
            // the same marks as cuts only (TOK_SNAP_CUT): the same outputs and states, no snapshot written
            struct gdn_io cuts;
            gdn_io_clone(&cuts, &base);
            struct gdn_step st;
            gdn_snap_step(&st, sc);
            for (int t = 0; t < st.meta.n_tok; t++)
                if (st.tok_snap[t] >= 0) st.tok_snap[t] = TOK_SNAP_CUT;
            io_run(g_cpu, &cuts, &st.meta, 0);
            struct gdn_io whole;
            gdn_io_clone(&whole, &base);
            gdn_snap_step(&st, sc);
            io_run(g_cpu, &whole, &st.meta, 0);
            EXPECTF(!memcmp(cuts.y.p, whole.y.p, sizeof(float) * (size_t)(rows * w)) &&
                    !memcmp(cuts.ssm_st.p, whole.ssm_st.p, sizeof(float) * (size_t)(3 * w * c->dk)),
                    "cpu, %d rows: cuts alone change the outputs or states", rows);
            EXPECTF(!memcmp(cuts.ssm_snap.p, base.ssm_snap.p, sizeof(float) * (size_t)(GDN_IO_SNAPS * w * c->dk)),
                    "cpu, %d rows: a cut wrote a snapshot", rows);
            gdn_io_free(&cuts);
            gdn_io_free(&whole);
            gdn_io_free(&base);
        }
}

TEST(sigmoid_mul_vs_ref)
{
    struct rng r;
    rng_seed(&r, 24);
    static const int shapes[][2] = { { 1, 1 }, { 7, 33 }, { 64, 512 } };
    for (size_t i = 0; i < 3; i++)
        for (int bcast = 0; bcast < 2; bcast++) {
            int n = shapes[i][0], m = shapes[i][1];
            struct tt x = tt_new(DTYPE_F32, m, n), g = tt_new(DTYPE_F32, bcast ? 1 : m, n);
            struct tt o_ref = tt_new(DTYPE_F32, m, n), o_cpu = tt_new(DTYPE_F32, m, n);
            tt_randn(&x, &r, 1.0f);
            tt_randn(&g, &r, 3.0f);
            g_ref->ops->sigmoid_mul(g_ref, tt_t(&o_ref), tt_t(&x), tt_t(&g));
            g_cpu->ops->sigmoid_mul(g_cpu, tt_t(&o_cpu), tt_t(&x), tt_t(&g));
            EXPECT(tt_close("sigmoid_mul", o_cpu.p, o_ref.p, (int64_t)n * m, 1e-7, 1e-6, 1e-12));
            // the definition, at one element
            int64_t c = m - 1, row = n - 1;
            double gv = ((float *)g.p)[row * (bcast ? 1 : m) + (bcast ? 0 : c)];
            double want = ((float *)x.p)[row * m + c] / (1 + exp(-gv));
            EXPECT(fabs(((float *)o_ref.p)[row * m + c] - want) < 1e-6 * (1 + fabs(want)));
            // in place
            g_cpu->ops->sigmoid_mul(g_cpu, tt_t(&x), tt_t(&x), tt_t(&g));
            EXPECT(!memcmp(x.p, o_cpu.p, sizeof(float) * (size_t)(n * m)));
            tt_free(&x); tt_free(&g); tt_free(&o_ref); tt_free(&o_cpu);
        }
}

int main(void)
{
    if (backend_new("ref", NULL, &g_ref) || backend_new("cpu", &(struct backend_cfg){ .n_threads = 2 }, &g_cpu) ||
        backend_new("cpu", &(struct backend_cfg){ .n_threads = 1 }, &g_cpu1))
        return 1;
    RUN(ref_closed_form);
    RUN(cpu_vs_ref);
    RUN(chunking_invariance);
    RUN(snapshots_inside_a_step);
    RUN(sigmoid_mul_vs_ref);
    backend_free(g_cpu1);
    backend_free(g_cpu);
    backend_free(g_ref);
    return test_summary();
}
