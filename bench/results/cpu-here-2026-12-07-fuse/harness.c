/* throwaway: quantized GEMV timing, cpu backend, n=1, weights rotated > 256 MB (cold) or one copy (hot) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "backend/backend.h"
#include "backend/cpu/qdeq.h"
#include "base/clock.h"
#include "base/rng.h"
#include "tensor/qweight.h"
#include <sys/mman.h>
static void *hmalloc(size_t n){ void *p; n=(n+(2<<20)-1)/(2<<20)*(2<<20); if (posix_memalign(&p, 2<<20, n)) abort(); madvise(p, n, MADV_HUGEPAGE); return p; }

struct qw { struct qweight q; struct tensor w; struct buffer bp, bs, bb; };
static struct qw *qw_new(int bits, int gs, int64_t rows, int64_t k, struct rng *r)
{
    struct qw *o = calloc(1, sizeof *o);
    int64_t words = k * bits / 32, groups = k / gs;
    uint32_t *packed = hmalloc((size_t)(rows * words) * 4);
    uint16_t *scales = hmalloc((size_t)(rows * groups) * 2), *biases = hmalloc((size_t)(rows * groups) * 2);
    for (int64_t i = 0; i < rows * words; i++) packed[i] = (uint32_t)rng_next(r);
    for (int64_t i = 0; i < rows * groups; i++) { float s = 0.01f + 0.001f * (i % 7), b = -0.05f; uint32_t u; memcpy(&u, &s, 4); scales[i] = u >> 16; memcpy(&u, &b, 4); biases[i] = u >> 16; }
    o->bp = (struct buffer){ .kind = BUF_HOST, .data = packed, .bytes = (size_t)(rows * words) * 4 };
    o->bs = (struct buffer){ .kind = BUF_HOST, .data = scales, .bytes = (size_t)(rows * groups) * 2 };
    o->bb = (struct buffer){ .kind = BUF_HOST, .data = biases, .bytes = (size_t)(rows * groups) * 2 };
    o->q = (struct qweight){ .mode = QMODE_AFFINE, .bits = bits, .group_size = gs };
    o->q.scales = tensor_2d(DTYPE_BF16, groups, rows, &o->bs, 0);
    o->q.biases = tensor_2d(DTYPE_BF16, groups, rows, &o->bb, 0);
    struct tensor p = tensor_2d(DTYPE_U32, words, rows, &o->bp, 0);
    o->w = qweight_tensor(&o->q, &p, k);
    return o;
}
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return x < y ? -1 : x > y; }
int main(int argc, char **argv)
{
    int bits = atoi(argv[1]), gs = atoi(argv[2]), threads = atoi(argv[3]), hot = argc > 4 && atoi(argv[4]);
    int64_t rows = argc > 5 ? atoll(argv[5]) : 3072, k = argc > 6 ? atoll(argv[6]) : 1024;
    int nx = argc > 7 ? atoi(argv[7]) : 1;
    struct rng r; rng_seed(&r, 1);
    struct backend *be;
    if (backend_new("cpu", &(struct backend_cfg){ .n_threads = threads }, &be) != STATUS_OK) return 1;
    size_t bytes = qweight_bytes(&qw_new(bits, gs, 16, k, &r)->w) / 16 * rows;
    int nc = hot ? 1 : (int)((300u << 20) / bytes) + 1;
    struct qw **w = malloc(sizeof *w * nc);
    for (int i = 0; i < nc; i++) w[i] = qw_new(bits, gs, rows, k, &r);
    float *x = malloc(k * 4 * nx), *out = malloc(rows * 4 * nx);
    for (int64_t i = 0; i < k * nx; i++) x[i] = rng_normal(&r);
    struct tensor tx = tensor_2d(DTYPE_F32, k, nx, &(struct buffer){ .kind = BUF_HOST, .data = x, .bytes = k * 4 * nx }, 0);
    struct buffer bo = { .kind = BUF_HOST, .data = out, .bytes = rows * 4 * nx };
    struct tensor to = tensor_2d(DTYPE_F32, rows, nx, &bo, 0);
    int iters = 400; double *t = malloc(iters * sizeof *t);
    for (int i = 0; i < iters; i++) {
        double t0 = clock_now_s();
        be->ops->matmul(be, &to, &tx, &w[i % nc]->w, NULL);
        t[i] = clock_now_s() - t0;
    }
    qsort(t, iters, sizeof *t, cmpd);
    double med = t[iters / 2], mn = t[0];
    printf("affine%d g%d [%lld,%lld] n=%d t=%d %s: median %.1fus (%.1f GB/s) min %.1fus (%.1f GB/s)  out0=%g\n", bits, gs, (long long)rows,
           (long long)k, nx, threads, hot ? "hot" : "cold", med * 1e6, bytes / med / 1e9, mn * 1e6, bytes / mn / 1e9, out[0]);
    return 0;
}
