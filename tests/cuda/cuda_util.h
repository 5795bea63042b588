/* cuda_util: what every cuda test shares: the ref and cuda backends, host tensors mirrored on the
 * device, and the rule for a machine without a GPU.
 *
 *     int main(void) { cuda_tests_open(true); RUN(x); cuda_tests_close(); return test_summary(); }
 *     struct dt d = dev_of(&host);   ...   dev_get(&d, &host);   dev_free(&d);
 *
 * A machine without the NVIDIA driver's device node skips (exit 77, reported as a skip); on a
 * machine with one, a cuda backend that does not start is a failure.
 */
#ifndef CAIRN_TESTS_CUDA_UTIL_H
#define CAIRN_TESTS_CUDA_UTIL_H

#include <unistd.h>

#include "harness.h"
#include "ops/ops_util.h"

#include "backend/backend.h"

static struct backend *g_ref, *g_cuda;

static inline void cuda_tests_open(bool with_ref)
{
    if (with_ref && backend_new("ref", NULL, &g_ref) != STATUS_OK) exit(1);
    if (backend_new("cuda", NULL, &g_cuda) == STATUS_OK) return;
    if (access("/dev/nvidiactl", F_OK) != 0) test_skip("no NVIDIA GPU here (run it with make test-cuda on the GPU machine)");
    fprintf(stderr, "FAIL: cannot create the cuda backend on this GPU machine\n");
    exit(1);
}

static inline void cuda_tests_close(void)
{
    backend_free(g_cuda);
    if (g_ref) backend_free(g_ref);
}

/* A device tensor with the shape of a host one. */
struct dt { struct tensor t; struct buffer *b; };

static inline struct dt dev_new(const struct tt *h)
{
    struct dt d;
    size_t bytes = (size_t)tensor_nelem(&h->t) * dtype_size(h->t.dtype);
    if (g_cuda->ops->buffer_new(g_cuda, bytes ? bytes : 4, &d.b) != STATUS_OK) abort();
    d.t = h->t;
    d.t.buf = d.b;
    d.t.offset = 0;
    return d;
}

static inline struct dt dev_of(struct tt *h)
{
    struct dt d = dev_new(h);
    g_cuda->ops->upload(g_cuda, &d.t, h->p, (size_t)tensor_nelem(&h->t) * dtype_size(h->t.dtype));
    return d;
}

static inline void dev_get(struct dt *d, struct tt *h)
{
    g_cuda->ops->download(g_cuda, h->p, &d->t, (size_t)tensor_nelem(&h->t) * dtype_size(h->t.dtype));
}

static inline void dev_free(struct dt *d) { g_cuda->ops->buffer_free(g_cuda, d->b); }

#endif
