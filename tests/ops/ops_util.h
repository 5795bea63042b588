/* ops_util: helpers for the op tests and the op bench: host tensors with random contents and
 * the comparison of a backend's output with ref's (|a - r| <= atol + rtol * |r| per element,
 * plus an NMSE bound; the first 5 mismatches are printed).
 *
 *     struct tt x = tt_new(DTYPE_F32, 1024, 7);  tt_randn(&x, &rng, 1.0f);
 *     EXPECT(tt_close("matmul", a.f, r.f, n, 1e-4, 1e-4, 1e-10));
 *     tt_free(&x);
 */
#ifndef CAIRN_TESTS_OPS_UTIL_H
#define CAIRN_TESTS_OPS_UTIL_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/rng.h"
#include "tensor/dtype.h"
#include "tensor/tensor.h"

/* A host tensor that owns its buffer (tests only). */
struct tt {
    struct tensor  t;
    struct buffer  b;
    void          *p;
};

static inline struct tt tt_new(enum dtype dt, int64_t ne0, int64_t ne1)
{
    struct tt x;
    memset(&x, 0, sizeof x);
    size_t bytes = (size_t)(ne0 * ne1) * dtype_size(dt);
    if (posix_memalign(&x.p, 64, bytes ? (bytes + 63) / 64 * 64 : 64)) abort();
    memset(x.p, 0, bytes);
    x.b = (struct buffer){ .kind = BUF_HOST, .data = x.p, .bytes = bytes };
    x.t = tensor_2d(dt, ne0, ne1, NULL, 0);
    return x;
}

/* The tensor of x (its buffer pointer fixed up: struct tt may have been copied). */
static inline struct tensor *tt_t(struct tt *x)
{
    x->t.buf = &x->b;
    return &x->t;
}

static inline void tt_free(struct tt *x) { free(x->p); x->p = NULL; }

static inline void tt_randn(struct tt *x, struct rng *r, float scale)
{
    int64_t n = x->t.ne[0] * x->t.ne[1];
    for (int64_t i = 0; i < n; i++) {
        float v = rng_normal(r) * scale;
        if (x->t.dtype == DTYPE_F32) ((float *)x->p)[i] = v;
        else dtype_from_f32(x->t.dtype, &v, (char *)x->p + (size_t)i * dtype_size(x->t.dtype), 1);
    }
}

static inline void tt_copy(struct tt *dst, const struct tt *src)
{
    memcpy(dst->p, src->p, (size_t)(src->t.ne[0] * src->t.ne[1]) * dtype_size(src->t.dtype));
}

#define TT_MAX_EXPERTS 64

/* The weights of n (<= TT_MAX_EXPERTS) MoE experts: gate, up [f, d] and down [d, f] of dtype dt, N(0, 0.2^2)
 * drawn expert by expert (gate, up, down); tg/tu/td are the tensor arrays moe_ffn takes. */
struct tt_experts {
    int           n;
    struct tt     g[TT_MAX_EXPERTS], u[TT_MAX_EXPERTS], d[TT_MAX_EXPERTS];
    struct tensor tg[TT_MAX_EXPERTS], tu[TT_MAX_EXPERTS], td[TT_MAX_EXPERTS];
};

static inline void tt_experts_new(struct tt_experts *x, struct rng *r, enum dtype dt, int n, int64_t d, int64_t f)
{
    if (n > TT_MAX_EXPERTS) abort();
    x->n = n;
    for (int e = 0; e < n; e++) {
        x->g[e] = tt_new(dt, d, f);
        x->u[e] = tt_new(dt, d, f);
        x->d[e] = tt_new(dt, f, d);
        tt_randn(&x->g[e], r, 0.2f);
        tt_randn(&x->u[e], r, 0.2f);
        tt_randn(&x->d[e], r, 0.2f);
        x->tg[e] = *tt_t(&x->g[e]);
        x->tu[e] = *tt_t(&x->u[e]);
        x->td[e] = *tt_t(&x->d[e]);
    }
}

static inline void tt_experts_free(struct tt_experts *x)
{
    for (int e = 0; e < x->n; e++) { tt_free(&x->g[e]); tt_free(&x->u[e]); tt_free(&x->d[e]); }
}

/* Compares a (backend) with r (ref): per-element tolerance and NMSE. Prints up to 5 mismatches. */
static inline bool tt_close(const char *what, const float *a, const float *r, int64_t n, double atol,
                            double rtol, double nmse_max)
{
    double se = 0, sr = 0;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - r[i]);
        se += d * d;
        sr += (double)r[i] * r[i];
        if (!(d <= atol + rtol * fabs(r[i]))) {
            if (bad < 5) fprintf(stderr, "    %s: [%lld] got %.9g want %.9g (diff %.3g)\n", what, (long long)i, a[i], r[i], d);
            bad++;
        }
    }
    double nmse = sr > 0 ? se / sr : se;
    if (!(nmse <= nmse_max)) fprintf(stderr, "    %s: nmse %.3g > %.3g\n", what, nmse, nmse_max);
    if (bad) fprintf(stderr, "    %s: %lld of %lld elements out of tolerance\n", what, (long long)bad, (long long)n);
    return bad == 0 && nmse <= nmse_max;
}

/* The model fixtures' error measure: per row (one position's logits), the largest |a - r| over the
 * largest |r|; the worst row. NaN anywhere counts as the worst (it fails every bound). */
static inline double logits_max_rel(const float *a, const float *r, int64_t n_rows, int64_t row_len)
{
    double worst = 0;
    for (int64_t t = 0; t < n_rows; t++) {
        double max_r = 0, max_d = 0;
        for (int64_t v = 0; v < row_len; v++) {
            double x = r[t * row_len + v], d = fabs(a[t * row_len + v] - x);
            if (fabs(x) > max_r) max_r = fabs(x);
            if (!(d <= max_d)) max_d = d;
        }
        double rel = max_r > 0 ? max_d / max_r : max_d;
        if (!(rel <= worst)) worst = rel;
    }
    return worst;
}

#endif
