/* kern_tmpl: the body of a cpu kernel family, written once over a small vector vocabulary.
 *
 * Included (only) by kern.c, kern_avx2.c and kern_avx512.c after they define:
 *   VEC                 the vector type of VLANES f32 lanes
 *   v_zero() v_fma(a, b, acc) v_bcast(f) v_hsum(v)      arithmetic (v_hsum: one fixed tree)
 *   v_ldx(p) v_ldx_part(p, n)                            f32 loads (part: n < VLANES, rest 0)
 *   v_ldw(dt, p) v_ldw_part(dt, p, n)                    bf16/f16/f32 (and f8e4m3 for KV caches)
 *                                                        loads converted to f32
 *   v_st(p, v) v_st_part(p, v, n)                        f32 stores
 *   KERN_NAME, KERN_TABLE, KERN_MR, KERN_NR              the family's name, table symbol, tile
 * The tile body is the only place a matmul dot product is computed, so its operation order (see
 * kern.h) is the same for every tile shape of a family.
 */
#ifndef KERN_TABLE
#error "kern_tmpl.h needs the vector vocabulary; include it from a kern*.c file"
#endif

#define KT_ESIZE(dt) ((dt) == DTYPE_F32 ? 4 : (dt) == DTYPE_F8E4M3 ? 1 : 2)
#define KT_INLINE static inline __attribute__((always_inline))

/* Tile loops are fully unrolled (MR, NR are constants after inlining) so that the accumulators
 * live in registers; without the pragma GCC keeps them on the stack. */
#define KT_UNROLL _Pragma("GCC unroll 6")

/* The MR x NR dot products of a tile over k chunks [k0, k1) only (k0, k1 multiples of VLANES, or
 * k1 == k): the accumulators start from zero (k0 == 0) or from part, and end in c (k1 == k, after
 * the tail chunk and the horizontal sums) or back in part. Storing and reloading a vector is
 * exact, so a product split into k blocks is bit-identical to the whole one (kt_tile_body). */
KT_INLINE void kt_tilek_body(const int MR, const int NR, const enum dtype DT, int64_t k, int64_t k0, int64_t k1,
                             const float *x, int64_t ldx, const void *w, size_t ldw, float *c, int64_t ldc,
                             float *part)
{
    const char *wb = w;
    VEC acc[CPU_KERN_MR_MAX][CPU_KERN_NR_MAX];
    KT_UNROLL for (int i = 0; i < MR; i++)
        KT_UNROLL for (int j = 0; j < NR; j++) acc[i][j] = k0 == 0 ? v_zero() : v_ldx(part + (i * NR + j) * VLANES);
    int64_t kk = k0;
    for (; kk + VLANES <= k1; kk += VLANES) {
        VEC xv[CPU_KERN_MR_MAX];
        KT_UNROLL for (int i = 0; i < MR; i++) xv[i] = v_ldx(x + i * ldx + kk);
        KT_UNROLL for (int j = 0; j < NR; j++) {
            VEC wv = v_ldw(DT, wb + j * ldw + (size_t)kk * KT_ESIZE(DT));
            KT_UNROLL for (int i = 0; i < MR; i++) acc[i][j] = v_fma(xv[i], wv, acc[i][j]);
        }
    }
    if (k1 < k) {
        KT_UNROLL for (int i = 0; i < MR; i++)
            KT_UNROLL for (int j = 0; j < NR; j++) v_st(part + (i * NR + j) * VLANES, acc[i][j]);
        return;
    }
    if (kk < k) {
        int n = (int)(k - kk);
        VEC xv[CPU_KERN_MR_MAX];
        KT_UNROLL for (int i = 0; i < MR; i++) xv[i] = v_ldx_part(x + i * ldx + kk, n);
        KT_UNROLL for (int j = 0; j < NR; j++) {
            VEC wv = v_ldw_part(DT, wb + j * ldw + (size_t)kk * KT_ESIZE(DT), n);
            KT_UNROLL for (int i = 0; i < MR; i++) acc[i][j] = v_fma(xv[i], wv, acc[i][j]);
        }
    }
    KT_UNROLL for (int i = 0; i < MR; i++)
        KT_UNROLL for (int j = 0; j < NR; j++) c[i * ldc + j] = v_hsum(acc[i][j]);
}

/* The whole dot products of a tile (the constant k0 = 0, k1 = k fold the chunk logic away). */
KT_INLINE void kt_tile_body(const int MR, const int NR, const enum dtype DT, int64_t k, const float *x,
                            int64_t ldx, const void *w, size_t ldw, float *c, int64_t ldc)
{
    kt_tilek_body(MR, NR, DT, k, 0, k, x, ldx, w, ldw, c, ldc, NULL);
}

/* Every (dtype, MR, NR) tile as two functions, the whole-k one and the k-chunk one, and a table
 * of each kind indexed by dtype (DTYPE_F32 = 0, DTYPE_F16 = 1, DTYPE_BF16 = 2), then mr - 1, nr - 1. */
#define KT_TILE_FNS(DTN, DT, MR, NR) \
    static void kt_tile_##DTN##_##MR##_##NR(int64_t k, const float *x, int64_t ldx, const void *w, \
                                            size_t ldw, float *c, int64_t ldc) \
    { kt_tile_body(MR, NR, DT, k, x, ldx, w, ldw, c, ldc); } \
    static void kt_tilek_##DTN##_##MR##_##NR(int64_t k, int64_t k0, int64_t k1, const float *x, int64_t ldx, \
                                             const void *w, size_t ldw, float *c, int64_t ldc, float *part) \
    { kt_tilek_body(MR, NR, DT, k, k0, k1, x, ldx, w, ldw, c, ldc, part); }
#define KT_TILES_NR(DTN, DT, MR) KT_TILE_FNS(DTN, DT, MR, 1) KT_TILE_FNS(DTN, DT, MR, 2) \
                                 KT_TILE_FNS(DTN, DT, MR, 3) KT_TILE_FNS(DTN, DT, MR, 4)
#define KT_TILES(DTN, DT) KT_TILES_NR(DTN, DT, 1) KT_TILES_NR(DTN, DT, 2) KT_TILES_NR(DTN, DT, 3) \
                          KT_TILES_NR(DTN, DT, 4) KT_TILES_NR(DTN, DT, 5) KT_TILES_NR(DTN, DT, 6)
KT_TILES(f32, DTYPE_F32)
KT_TILES(f16, DTYPE_F16)
KT_TILES(bf16, DTYPE_BF16)

#define KT_ROW(FN, DTN, MR) { FN##_##DTN##_##MR##_1, FN##_##DTN##_##MR##_2, FN##_##DTN##_##MR##_3, FN##_##DTN##_##MR##_4 }
#define KT_DT(FN, DTN) { KT_ROW(FN, DTN, 1), KT_ROW(FN, DTN, 2), KT_ROW(FN, DTN, 3), KT_ROW(FN, DTN, 4), \
                         KT_ROW(FN, DTN, 5), KT_ROW(FN, DTN, 6) }
#define KT_TABLE(FN) { KT_DT(FN, f32), KT_DT(FN, f16), KT_DT(FN, bf16) }

typedef void (*kt_tile_fn)(int64_t, const float *, int64_t, const void *, size_t, float *, int64_t);
typedef void (*kt_tilek_fn)(int64_t, int64_t, int64_t, const float *, int64_t, const void *, size_t, float *, int64_t, float *);
static const kt_tile_fn kt_tiles[3][CPU_KERN_MR_MAX][CPU_KERN_NR_MAX] = KT_TABLE(kt_tile);
static const kt_tilek_fn kt_tilesk[3][CPU_KERN_MR_MAX][CPU_KERN_NR_MAX] = KT_TABLE(kt_tilek);

static void kt_tile(int mr, int nr, enum dtype wdt, int64_t k, const float *x, int64_t ldx,
                    const void *w, size_t ldw, float *c, int64_t ldc)
{
    kt_tiles[wdt][mr - 1][nr - 1](k, x, ldx, w, ldw, c, ldc);
}

static void kt_tile_k(int mr, int nr, enum dtype wdt, int64_t k, int64_t k0, int64_t k1, const float *x, int64_t ldx,
                      const void *w, size_t ldw, float *c, int64_t ldc, float *part)
{
    kt_tilesk[wdt][mr - 1][nr - 1](k, k0, k1, x, ldx, w, ldw, c, ldc, part);
}

/* ==== Attention helpers ==== */

/* Scores of NQ q heads (constant) against keys k_rows[j0, j1): KB keys at a time so that KB * NQ
 * FMA chains run in parallel, accumulators in registers. */
KT_INLINE void kt_qk_group(const int NQ, const int KB, const enum dtype DT, const float *q, int hd,
                           const void *const *k_rows, int j0, int j1, float *s, int ld_s)
{
    for (int j = j0; j + KB <= j1; j += KB) {
        VEC acc[4][4];
        KT_UNROLL for (int b = 0; b < KB; b++)
            KT_UNROLL for (int r = 0; r < NQ; r++) acc[b][r] = v_zero();
        int i = 0;
        for (; i + VLANES <= hd; i += VLANES) {
            VEC qv[4];
            KT_UNROLL for (int r = 0; r < NQ; r++) qv[r] = v_ldx(q + (size_t)r * hd + i);
            KT_UNROLL for (int b = 0; b < KB; b++) {
                VEC kv = v_ldw(DT, (const char *)k_rows[j + b] + (size_t)i * KT_ESIZE(DT));
                KT_UNROLL for (int r = 0; r < NQ; r++) acc[b][r] = v_fma(qv[r], kv, acc[b][r]);
            }
        }
        if (i < hd) {
            VEC qv[4];
            KT_UNROLL for (int r = 0; r < NQ; r++) qv[r] = v_ldx_part(q + (size_t)r * hd + i, hd - i);
            KT_UNROLL for (int b = 0; b < KB; b++) {
                VEC kv = v_ldw_part(DT, (const char *)k_rows[j + b] + (size_t)i * KT_ESIZE(DT), hd - i);
                KT_UNROLL for (int r = 0; r < NQ; r++) acc[b][r] = v_fma(qv[r], kv, acc[b][r]);
            }
        }
        KT_UNROLL for (int b = 0; b < KB; b++)
            KT_UNROLL for (int r = 0; r < NQ; r++) s[(size_t)r * ld_s + j + b] = v_hsum(acc[b][r]);
    }
}

KT_INLINE void kt_qk_body(const enum dtype DT, int n_q, const float *q, int hd, const void *const *k_rows,
                          int n_k, float *s, int ld_s)
{
    int n4 = n_k / 4 * 4;
    for (int r0 = 0; r0 < n_q; r0 += 4) {
        int nq = n_q - r0 < 4 ? n_q - r0 : 4;
        const float *qr = q + (size_t)r0 * hd;
        float *sr = s + (size_t)r0 * ld_s;
        switch (nq) {
        case 1: kt_qk_group(1, 4, DT, qr, hd, k_rows, 0, n4, sr, ld_s); kt_qk_group(1, 1, DT, qr, hd, k_rows, n4, n_k, sr, ld_s); break;
        case 2: kt_qk_group(2, 4, DT, qr, hd, k_rows, 0, n4, sr, ld_s); kt_qk_group(2, 1, DT, qr, hd, k_rows, n4, n_k, sr, ld_s); break;
        case 3: kt_qk_group(3, 4, DT, qr, hd, k_rows, 0, n4, sr, ld_s); kt_qk_group(3, 1, DT, qr, hd, k_rows, n4, n_k, sr, ld_s); break;
        default: kt_qk_group(4, 4, DT, qr, hd, k_rows, 0, n4, sr, ld_s); kt_qk_group(4, 1, DT, qr, hd, k_rows, n4, n_k, sr, ld_s); break;
        }
    }
}

/* acc[r][i0 .. i0 + DG * VLANES) += p[r][j] * v_j for NQ heads (constant): NQ * DG accumulators in
 * registers while the keys stream by. Full chunks only (i0 + DG * VLANES <= hd). */
KT_INLINE void kt_pv_group(const int NQ, const int DG, const enum dtype DT, float *acc, int hd, int i0,
                           const float *p, int ld_p, const void *const *v_rows, int n_k)
{
    VEC a[4][4];
    KT_UNROLL for (int r = 0; r < NQ; r++)
        KT_UNROLL for (int d = 0; d < DG; d++) a[r][d] = v_ldx(acc + (size_t)r * hd + i0 + d * VLANES);
    for (int j = 0; j < n_k; j++) {
        const char *vr = (const char *)v_rows[j] + (size_t)i0 * KT_ESIZE(DT);
        VEC pb[4];
        KT_UNROLL for (int r = 0; r < NQ; r++) pb[r] = v_bcast(p[(size_t)r * ld_p + j]);
        KT_UNROLL for (int d = 0; d < DG; d++) {
            VEC vv = v_ldw(DT, vr + (size_t)d * VLANES * KT_ESIZE(DT));
            KT_UNROLL for (int r = 0; r < NQ; r++) a[r][d] = v_fma(pb[r], vv, a[r][d]);
        }
    }
    KT_UNROLL for (int r = 0; r < NQ; r++)
        KT_UNROLL for (int d = 0; d < DG; d++) v_st(acc + (size_t)r * hd + i0 + d * VLANES, a[r][d]);
}

KT_INLINE void kt_pv_body(const enum dtype DT, int n_q, float *acc, int hd, const float *p, int ld_p,
                          const void *const *v_rows, int n_k)
{
    for (int r0 = 0; r0 < n_q; r0 += 4) {
        int nq = n_q - r0 < 4 ? n_q - r0 : 4;
        float *ar = acc + (size_t)r0 * hd;
        const float *pr = p + (size_t)r0 * ld_p;
        int i = 0;
        for (; i + 4 * VLANES <= hd; i += 4 * VLANES) {
            switch (nq) {
            case 1: kt_pv_group(1, 4, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            case 2: kt_pv_group(2, 4, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            case 3: kt_pv_group(3, 4, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            default: kt_pv_group(4, 4, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            }
        }
        for (; i + VLANES <= hd; i += VLANES) {
            switch (nq) {
            case 1: kt_pv_group(1, 1, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            case 2: kt_pv_group(2, 1, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            case 3: kt_pv_group(3, 1, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            default: kt_pv_group(4, 1, DT, ar, hd, i, pr, ld_p, v_rows, n_k); break;
            }
        }
        if (i < hd) {   // partial last chunk of dims
            int n = hd - i;
            for (int r = 0; r < nq; r++) {
                VEC a = v_ldx_part(ar + (size_t)r * hd + i, n);
                for (int j = 0; j < n_k; j++)
                    a = v_fma(v_bcast(pr[(size_t)r * ld_p + j]),
                              v_ldw_part(DT, (const char *)v_rows[j] + (size_t)i * KT_ESIZE(DT), n), a);
                v_st_part(ar + (size_t)r * hd + i, a, n);
            }
        }
    }
}

/* One chunk of the online softmax for one q head: s[0..n) = softcap(s * scale); then with the
 * running max *m and sum *l: m' = max(*m, max s), s = exp(s - m'), *l = *l * exp(*m - m') + sum s.
 * Returns the factor exp(*m - m') the caller applies to its output accumulator. */
static float kt_softmax_step(float *s, int n, float scale, float softcap, float *m, float *l)
{
    VEC vscale = v_bcast(scale), mx = v_bcast(-INFINITY);
    for (int i = 0; i < n; i += VLANES) {
        int c = n - i < VLANES ? n - i : VLANES;
        VEC x = v_mul(c == VLANES ? v_ldx(s + i) : v_ldx_part(s + i, c), vscale);
        if (softcap > 0) {   // cap * tanh(x / cap), tanh(y) = 1 - 2 / (exp(2y) + 1)
            VEC e = v_exp(v_mul(x, v_bcast(2.0f / softcap)));
            VEC t = v_add(v_bcast(1.0f), v_div(v_bcast(-2.0f), v_add(e, v_bcast(1.0f))));
            x = v_mul(t, v_bcast(softcap));
        }
        if (c == VLANES) {
            v_st(s + i, x);
            mx = v_max(mx, x);
        } else {
            v_st_part(s + i, x, c);
            for (int k = 0; k < c; k++) mx = v_max(mx, v_bcast(s[i + k]));
        }
    }
    float cm = v_hmax(mx), corr = 1.0f;
    if (cm > *m) {
        corr = *m == -INFINITY ? 0.0f : expf(*m - cm);
        *m = cm;
    }
    VEC vm = v_bcast(*m), sum = v_zero();
    for (int i = 0; i < n; i += VLANES) {
        int c = n - i < VLANES ? n - i : VLANES;
        if (c == VLANES) {
            VEC e = v_exp(v_add(v_ldx(s + i), v_mul(vm, v_bcast(-1.0f))));
            v_st(s + i, e);
            sum = v_add(sum, e);
        } else {
            VEC e = v_exp(v_add(v_ldx_part(s + i, c), v_mul(vm, v_bcast(-1.0f))));
            v_st_part(s + i, e, c);
            sum = v_add(sum, v_ldx_part(s + i, c));
        }
    }
    *l = *l * corr + v_hsum(sum);
    return corr;
}

/* out = act(g) * u: silu(g) = g / (1 + exp(-g)); gelu_tanh(g) = g / (1 + exp(-2z)),
 * z = sqrt(2/pi) (g + 0.044715 g^3) (the same as 0.5 g (1 + tanh z), without cancellation). */
static void kt_glu(float *out, const float *g, const float *u, int64_t n, int gelu)
{
    VEC one = v_bcast(1.0f);
    for (int64_t i = 0; i < n; i += VLANES) {
        int c = n - i < VLANES ? (int)(n - i) : VLANES;
        VEC x = c == VLANES ? v_ldx(g + i) : v_ldx_part(g + i, c);
        VEC y = c == VLANES ? v_ldx(u + i) : v_ldx_part(u + i, c);
        VEC z;
        if (gelu) {
            VEC x3 = v_mul(v_mul(x, x), x);
            z = v_mul(v_fma(x3, v_bcast(0.044715f), x), v_bcast(-2.0f * 0.7978845608f));
        } else {
            z = v_mul(x, v_bcast(-1.0f));
        }
        VEC r = v_mul(v_div(x, v_add(one, v_exp(z))), y);
        if (c == VLANES) v_st(out + i, r);
        else v_st_part(out + i, r, c);
    }
}

/* o = o * a + x * b (x * b + (o * a) in one FMA). */
static void kt_axpby(float *o, float a, const float *x, float b, int64_t n)
{
    VEC va = v_bcast(a), vb = v_bcast(b);
    int64_t i = 0;
    for (; i + VLANES <= n; i += VLANES) v_st(o + i, v_fma(v_ldx(x + i), vb, v_mul(v_ldx(o + i), va)));
    if (i < n) {
        int c = (int)(n - i);
        v_st_part(o + i, v_fma(v_ldx_part(x + i, c), vb, v_mul(v_ldx_part(o + i, c), va)), c);
    }
}

static void kt_qk(int n_q, const float *q, int hd, const void *const *k_rows, int n_k, enum dtype dt,
                  float *s, int ld_s)
{
    switch (dt) {
    case DTYPE_F32: kt_qk_body(DTYPE_F32, n_q, q, hd, k_rows, n_k, s, ld_s); return;
    case DTYPE_F16: kt_qk_body(DTYPE_F16, n_q, q, hd, k_rows, n_k, s, ld_s); return;
    case DTYPE_BF16: kt_qk_body(DTYPE_BF16, n_q, q, hd, k_rows, n_k, s, ld_s); return;
    case DTYPE_F8E4M3: kt_qk_body(DTYPE_F8E4M3, n_q, q, hd, k_rows, n_k, s, ld_s); return;
    default: CHECK(0, "attention: kv dtype %s", dtype_name(dt));
    }
}

static void kt_pv(int n_q, float *acc, int hd, const float *p, int ld_p, const void *const *v_rows,
                  int n_k, enum dtype dt)
{
    switch (dt) {
    case DTYPE_F32: kt_pv_body(DTYPE_F32, n_q, acc, hd, p, ld_p, v_rows, n_k); return;
    case DTYPE_F16: kt_pv_body(DTYPE_F16, n_q, acc, hd, p, ld_p, v_rows, n_k); return;
    case DTYPE_BF16: kt_pv_body(DTYPE_BF16, n_q, acc, hd, p, ld_p, v_rows, n_k); return;
    case DTYPE_F8E4M3: kt_pv_body(DTYPE_F8E4M3, n_q, acc, hd, p, ld_p, v_rows, n_k); return;
    default: CHECK(0, "attention: kv dtype %s", dtype_name(dt));
    }
}

KT_INLINE void kt_to_f32_body(const enum dtype DT, const void *src, float *dst, int64_t n)
{
    const char *sb = src;
    int64_t i = 0;
    for (; i + VLANES <= n; i += VLANES) v_st(dst + i, v_ldw(DT, sb + (size_t)i * KT_ESIZE(DT)));
    if (i < n) v_st_part(dst + i, v_ldw_part(DT, sb + (size_t)i * KT_ESIZE(DT), (int)(n - i)), (int)(n - i));
}

static void kt_to_f32(enum dtype dt, const void *src, float *dst, int64_t n)
{
    switch (dt) {
    case DTYPE_F32: kt_to_f32_body(DTYPE_F32, src, dst, n); return;
    case DTYPE_F16: kt_to_f32_body(DTYPE_F16, src, dst, n); return;
    case DTYPE_BF16: kt_to_f32_body(DTYPE_BF16, src, dst, n); return;
    case DTYPE_F8E4M3: kt_to_f32_body(DTYPE_F8E4M3, src, dst, n); return;
    default: CHECK(0, "to_f32: dtype %s", dtype_name(dt));
    }
}

static float kt_read_sum(const float *p, int64_t n)
{
    VEC a0 = v_zero(), a1 = v_zero(), a2 = v_zero(), a3 = v_zero(), one = v_bcast(1.0f);
    for (int64_t i = 0; i + 4 * VLANES <= n; i += 4 * VLANES) {
        a0 = v_fma(v_ldx(p + i), one, a0);
        a1 = v_fma(v_ldx(p + i + VLANES), one, a1);
        a2 = v_fma(v_ldx(p + i + 2 * VLANES), one, a2);
        a3 = v_fma(v_ldx(p + i + 3 * VLANES), one, a3);
    }
    return v_hsum(a0) + v_hsum(a1) + v_hsum(a2) + v_hsum(a3);
}

const struct cpu_kern KERN_TABLE = {
    .name = KERN_NAME,
    .mr = KERN_MR,
    .nr = KERN_NR,
    .lanes = VLANES,
    .tile = kt_tile,
    .tile_k = kt_tile_k,
    .qk = kt_qk,
    .pv = kt_pv,
    .to_f32 = kt_to_f32,
    .read_sum = kt_read_sum,
    .softmax_step = kt_softmax_step,
    .glu = kt_glu,
    .axpby = kt_axpby,
};
