/* gdn_io: one Gated DeltaNet layer's inputs, states and outputs as host tensors, batches of
 * sequences for it, and the layer's three ops run over them on any backend; shared by the op
 * tests (tests/ops/test_gdn.c) and the cuda test (tests/cuda/test_cuda_gdn.c).
 *
 *     struct gdn_io io;  gdn_io_new(&io, &c, n_tok, n_slots, &rng);
 *     struct gdn_step st;  gdn_step_make(&st, 2, (int[]){ 0, 17 }, (int[]){ 5, 1 }, (int[]){ 3, 0 });
 *     struct tensor t[GDN_IO_N];  gdn_io_host(&io, t);  gdn_run_ops(be, t, &io.c, &st.meta, 0);
 *
 * The tensors are, in order (GDN_IO_N of them; gdn_io_all): x, taps, a, b, z, a_log, dt_bias,
 * norm_w (inputs), conv_st, ssm_st (states), u, o, y (outputs: conv, delta rule, gated norm),
 * conv_snap, ssm_snap (the snapshot store, GDN_IO_SNAPS slots, that meta->tok_snap writes).
 */
#ifndef CAIRN_TESTS_OPS_GDN_IO_H
#define CAIRN_TESTS_OPS_GDN_IO_H

#include "harness.h"
#include "ops/ops_util.h"

#include "backend/backend.h"
#include "base/log.h"
#include "base/rng.h"

/* ==== Steps ==== */

#define GDN_MAX_TOK 2048
#define GDN_MAX_SEQ 8

struct gdn_step {
    int32_t tok_id[GDN_MAX_TOK], tok_pos[GDN_MAX_TOK], tok_seq[GDN_MAX_TOK], slot[GDN_MAX_SEQ], seq_len[GDN_MAX_SEQ];
    int32_t tok_snap[GDN_MAX_TOK];
    struct batch_meta meta;
};

/* Tokens of n_seq sequences, sequence s covering positions [pos0[s], pos0[s] + n[s]) in state slot
 * slot[s]: interleaved round-robin in the batch (gdn_step_make), or each sequence's tokens in one
 * run as the engine lays them out (gdn_step_make_runs); each sequence's tokens stay in order. */
static inline void gdn_step_layout(struct gdn_step *st, int n_seq, const int *pos0, const int *n, const int *slot,
                                   bool runs)
{
    memset(st, 0, sizeof *st);
    memset(st->tok_snap, 0xff, sizeof st->tok_snap);
    CHECK(n_seq <= GDN_MAX_SEQ, "too many sequences");
    int k = 0, done[GDN_MAX_SEQ] = { 0 };
    for (bool more = true; more;) {
        more = false;
        for (int s = 0; s < n_seq; s++)
            while (done[s] < n[s]) {
                CHECK(k < GDN_MAX_TOK, "too many tokens");
                st->tok_pos[k] = pos0[s] + done[s];
                st->tok_seq[k] = s;
                done[s]++, k++;
                more = true;
                if (!runs) break;
            }
    }
    for (int s = 0; s < n_seq; s++) {
        st->slot[s] = slot[s];
        st->seq_len[s] = pos0[s] + n[s];
    }
    st->meta = (struct batch_meta){ .n_tok = k, .tok_id = st->tok_id, .tok_pos = st->tok_pos, .tok_seq = st->tok_seq,
                                    .n_seq = n_seq, .seq_len = st->seq_len, .seq_state_slot = st->slot };
}

static inline void gdn_step_make(struct gdn_step *st, int n_seq, const int *pos0, const int *n, const int *slot)
{
    gdn_step_layout(st, n_seq, pos0, n, slot, false);
}

static inline void gdn_step_make_runs(struct gdn_step *st, int n_seq, const int *pos0, const int *n, const int *slot)
{
    gdn_step_layout(st, n_seq, pos0, n, slot, true);
}

/* Sequence seq's state after positions [0, pos) also goes to snapshot slot snap (pos - 1 in the step). */
static inline void gdn_step_snap(struct gdn_step *st, int seq, int pos, int snap)
{
    int k = 0;
    while (k < st->meta.n_tok && !(st->tok_seq[k] == seq && st->tok_pos[k] == pos - 1)) k++;
    CHECK(k < st->meta.n_tok, "sequence %d has no position %d in the step", seq, pos - 1);
    st->tok_snap[k] = snap;
    st->meta.tok_snap = st->tok_snap;
}

/* A view of columns [col0, col0 + n) of every row of x (rows keep x's stride). */
static inline struct tensor gdn_cols_view(const struct tensor *x, int64_t col0, int64_t n)
{
    struct tensor t = *x;
    t.ne[0] = n;
    t.offset += (size_t)col0 * sizeof(float);
    return t;
}

/* ==== One layer's worth of inputs ==== */

struct gdn_case {
    int nk, nv, dk, dv, K;
    enum dtype wdt;        // dtype of the conv taps, A_log, dt_bias, norm weight
};

enum { GDN_IO_N = 15, GDN_IO_SNAPS = 4 };

struct gdn_io {
    struct gdn_case c;
    int64_t conv_dim, n_slots;
    struct tt x, taps, a, b, z, a_log, dt_bias, norm_w;     // inputs
    struct tt conv_st, ssm_st;                              // states
    struct tt u, o, y;                                      // outputs
    struct tt conv_snap, ssm_snap;                          // snapshots
};

static inline void gdn_io_all(struct gdn_io *io, struct tt **all)
{
    struct tt *v[GDN_IO_N] = { &io->x, &io->taps, &io->a, &io->b, &io->z, &io->a_log, &io->dt_bias, &io->norm_w,
                               &io->conv_st, &io->ssm_st, &io->u, &io->o, &io->y, &io->conv_snap, &io->ssm_snap };
    memcpy(all, v, sizeof v);
}

/* Random inputs and initial states (continuing sequences read the states; fresh ones must not). */
static inline void gdn_io_new(struct gdn_io *io, const struct gdn_case *c, int n_tok, int64_t n_slots, struct rng *r)
{
    memset(io, 0, sizeof *io);
    io->c = *c;
    io->conv_dim = 2 * (int64_t)c->nk * c->dk + (int64_t)c->nv * c->dv;
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
    io->conv_snap = tt_new(DTYPE_F32, (int64_t)(c->K - 1) * io->conv_dim, GDN_IO_SNAPS);
    io->ssm_snap = tt_new(DTYPE_F32, w * c->dk, GDN_IO_SNAPS);
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
    tt_randn(&io->conv_snap, r, 1.0f);   // slots a step does not write must keep these
    tt_randn(&io->ssm_snap, r, 0.1f);
}

static inline void gdn_io_free(struct gdn_io *io)
{
    struct tt *all[GDN_IO_N];
    gdn_io_all(io, all);
    for (int i = 0; i < GDN_IO_N; i++) tt_free(all[i]);
}

/* A copy with its own states and outputs (same inputs, same initial states). */
static inline void gdn_io_clone(struct gdn_io *dst, const struct gdn_io *src)
{
    *dst = *src;
    struct tt *own[GDN_IO_N], *from[GDN_IO_N];
    gdn_io_all(dst, own);
    gdn_io_all((struct gdn_io *)src, from);
    for (int i = 0; i < GDN_IO_N; i++) {
        *own[i] = tt_new(from[i]->t.dtype, from[i]->t.ne[0], from[i]->t.ne[1]);
        tt_copy(own[i], from[i]);
    }
}

/* The io's tensors as they live on the host (in gdn_io_all's order). */
static inline void gdn_io_host(struct gdn_io *io, struct tensor *t)
{
    struct tt *all[GDN_IO_N];
    gdn_io_all(io, all);
    for (int i = 0; i < GDN_IO_N; i++) t[i] = *tt_t(all[i]);
}

/* conv -> delta rule -> gated norm over rows [t0, t0 + meta->n_tok) of the tensors t (host or
 * device, in gdn_io_all's order; meta indexes those rows from 0). */
static inline void gdn_run_ops(struct backend *be, struct tensor *t, const struct gdn_case *c,
                               const struct batch_meta *meta, int t0)
{
    int n = meta->n_tok;
    struct tensor x = tensor_rows_view(&t[0], t0, n), u = tensor_rows_view(&t[10], t0, n);
    struct tensor o = tensor_rows_view(&t[11], t0, n), y = tensor_rows_view(&t[12], t0, n);
    struct tensor a = tensor_rows_view(&t[2], t0, n), b = tensor_rows_view(&t[3], t0, n), z = tensor_rows_view(&t[4], t0, n);
    struct tensor taps = tensor_3d(c->wdt, c->K, 1, t[1].ne[1], t[1].buf, t[1].offset);
    struct gdn_state_layer st = { t[8], t[9] }, snap = { t[13], t[14] };
    struct gdn_state_layer *snaps = meta->tok_snap ? &snap : NULL;
    be->ops->batch_begin(be, meta);
    be->ops->gdn_conv(be, &u, &x, &taps, &st, snaps, meta);
    int64_t kd = (int64_t)c->nk * c->dk;
    struct tensor q = gdn_cols_view(&u, 0, kd), k = gdn_cols_view(&u, kd, kd);
    struct tensor v = gdn_cols_view(&u, 2 * kd, (int64_t)c->nv * c->dv);
    struct gdn_params p = { c->nk, c->nv, c->dk, c->dv };
    be->ops->gdn_recurrent(be, &o, &q, &k, &v, &a, &b, &t[5], &t[6], &st, snaps, &p, meta);
    be->ops->rmsnorm_gated(be, &y, &o, &z, &t[7], 1e-6f);
    CHECK(be->ops->sync(be) == STATUS_OK, "sync");
}

/* ==== Snapshots inside a step ==== */

/* A step of two sequences as runs (as the engine lays them out), sequence s over positions
 * [pos0[s], pos0[s] + n[s]) in state slot slot[s], and the snapshots it takes (sequence, position,
 * snapshot slot), in position order per sequence. */
struct gdn_snap_case {
    int pos0[2], n[2], slot[2];
    int n_snaps;
    struct { int seq, pos, snap; } snaps[GDN_IO_SNAPS];
};

/* The chunked form's case: A fresh over [0, 300) in slot 2, B continuing over [40, 70) in slot 0;
 * snapshots of A at 80 and 208 (off the 64-grid), of B at 64 (on it) and at 70 (its last token). */
static const struct gdn_snap_case gdn_snap_long = {
    { 0, 40 }, { 300, 30 }, { 2, 0 }, 4, { { 0, 80, 1 }, { 0, 208, 3 }, { 1, 64, 0 }, { 1, 70, 2 } } };
/* Runs too short for the chunked form (cuda walks them): A fresh over [0, 12), B over [40, 46). */
static const struct gdn_snap_case gdn_snap_short = {
    { 0, 40 }, { 12, 6 }, { 2, 0 }, 3, { { 0, 5, 3 }, { 0, 12, 0 }, { 1, 44, 1 } } };

static inline int gdn_snap_rows(const struct gdn_snap_case *sc) { return sc->n[0] + sc->n[1]; }

static inline void gdn_snap_step(struct gdn_step *st, const struct gdn_snap_case *sc)
{
    gdn_step_make_runs(st, 2, sc->pos0, sc->n, sc->slot);
    for (int i = 0; i < sc->n_snaps; i++) gdn_step_snap(st, sc->snaps[i].seq, sc->snaps[i].pos, sc->snaps[i].snap);
}

/* Runs one step over rows [t0, t0 + meta->n_tok) of the io on be (host tensors in, states and
 * outputs back in the io). */
typedef void (*gdn_run_fn)(struct backend *be, struct gdn_io *io, const struct batch_meta *meta, int t0);

/* What gdn_snap_step must give, on io: each sequence alone, in steps cut at its snapshot
 * positions, each snapshot copied from its state slot after the step that ends there. */
static inline void gdn_snap_reference(struct backend *be, gdn_run_fn run, struct gdn_io *io,
                                      const struct gdn_snap_case *sc)
{
    size_t conv_row = (size_t)(io->c.K - 1) * (size_t)io->conv_dim * sizeof(float);
    size_t ssm_row = (size_t)io->c.nv * (size_t)io->c.dv * (size_t)io->c.dk * sizeof(float);
    for (int s = 0, row0 = 0; s < 2; row0 += sc->n[s], s++) {
        int at = sc->pos0[s];
        for (int i = 0; i <= sc->n_snaps; i++) {
            bool last = i == sc->n_snaps;
            if (!last && sc->snaps[i].seq != s) continue;
            int end = last ? sc->pos0[s] + sc->n[s] : sc->snaps[i].pos, n = end - at;
            struct gdn_step st;
            if (n > 0) {
                gdn_step_make(&st, 1, &at, &n, &sc->slot[s]);
                run(be, io, &st.meta, row0 + at - sc->pos0[s]);
            }
            if (!last) {
                int j = sc->snaps[i].snap;
                memcpy((char *)io->conv_snap.p + j * conv_row, (char *)io->conv_st.p + sc->slot[s] * conv_row, conv_row);
                memcpy((char *)io->ssm_snap.p + j * ssm_row, (char *)io->ssm_st.p + sc->slot[s] * ssm_row, ssm_row);
            }
            at = end;
        }
    }
}

#endif
