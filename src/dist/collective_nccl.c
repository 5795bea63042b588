/* collective_nccl: the collective over NCCL, one GPU per rank of one process. See collective.h.
 *
 * Design note. NCCL is opened with dlopen the first time a group is made (as cuBLAS is,
 * backend/cuda/cublas_load.cu): a cairn that never runs ranks on GPUs never loads it, and a
 * missing libnccl is a start-up error naming the library, not a loader failure. The entry points
 * are declared here from nccl.h's stable ABI (2.x: the handle and id types, ncclSuccess,
 * ncclInProgress, ncclFloat32, ncclSum, the call signatures), so the build needs no nccl.h; when
 * the compiler finds one the constants are checked against it.
 *
 * The communicators come from one ncclCommInitAll (one process, one thread per GPU afterwards).
 * all_reduce_sum is ncclAllReduce in place on the rank's backend stream; all_gather_cols is
 * ncclAllGather into a staging buffer [N, rows, c] (NCCL gathers contiguous blocks) and one 2-D
 * copy per rank into its columns of out. Both are plain stream work, so step graphs record them.
 * The staging buffer comes from the rank's backend (buffer_new moves the backend's memory
 * generation, so a recording that used an older staging buffer is dropped) and grows on a step's
 * first, op-by-op run, never while a step is recorded.
 *
 * Failure: a call NCCL refuses, an asynchronous NCCL error or a backend error at collective_sync
 * marks the group failed. Every rank waits in collective_sync by polling its stream, and a rank
 * that sees the group failed aborts its own communicator (ncclCommAbort, from the one thread that
 * uses it), which ends its collectives still waiting for the failed rank; its sync then reports
 * EDEVICE, and later calls do nothing. A GPU that hangs without an error is not detected here.
 */
#include "dist/collective.h"

#include "base/log.h"

#ifndef CAIRN_HAVE_CUDA

enum status collective_nccl_new(int n_ranks, const int *devices, struct collective **ranks)
{
    LOG_ERR("collective: NCCL needs a CUDA build of cairn (this binary was built without CUDA)");
    return STATUS_EUNSUPPORTED;
}

#else

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "base/mem.h"

/* ==== The NCCL entry points, from libnccl.so.2 ==== */

#define NCCL_LIB "libnccl.so.2"

struct ncclComm;   // NCCL's opaque communicator
enum { NCCL_SUCCESS = 0, NCCL_IN_PROGRESS = 7, NCCL_FLOAT32 = 7, NCCL_SUM = 0 };

#if __has_include(<nccl.h>)
#include <nccl.h>
_Static_assert((int)ncclSuccess == NCCL_SUCCESS && (int)ncclInProgress == NCCL_IN_PROGRESS, "nccl.h: ncclResult_t");
_Static_assert((int)ncclFloat32 == NCCL_FLOAT32 && (int)ncclSum == NCCL_SUM, "nccl.h: data type, reduction");
_Static_assert(sizeof(ncclResult_t) == sizeof(int) && sizeof(ncclDataType_t) == sizeof(int), "nccl.h: enum sizes");
#endif

struct nccl_api {
    int         (*get_version)(int *version);
    const char *(*get_error_string)(int result);
    int         (*comm_init_all)(struct ncclComm **comms, int n, const int *devices);
    int         (*comm_destroy)(struct ncclComm *comm);
    int         (*comm_abort)(struct ncclComm *comm);
    int         (*comm_get_async_error)(struct ncclComm *comm, int *result);
    int         (*all_reduce)(const void *send, void *recv, size_t count, int dtype, int op, struct ncclComm *comm,
                              cudaStream_t stream);
    int         (*all_gather)(const void *send, void *recv, size_t send_count, int dtype, struct ncclComm *comm,
                              cudaStream_t stream);
    bool        ok;
};

// Written once by nccl_load under pthread_once, read-only afterwards (the logger's exception: the
// process's one copy of a shared library's entry points).
static struct nccl_api g_nccl;
static pthread_once_t  g_nccl_once = PTHREAD_ONCE_INIT;

static void nccl_load(void)
{
    void *lib = dlopen(NCCL_LIB, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        LOG_ERR("collective: cannot load %s (NCCL, needed by --tensor-parallel on cuda): %s; put the directory "
                "holding it on LD_LIBRARY_PATH (it ships in NVIDIA's libnccl2 package and PyTorch's nvidia-nccl wheels)",
                NCCL_LIB, dlerror());
        return;
    }
    struct { void **slot; const char *sym; } syms[] = {
        { (void **)&g_nccl.get_version, "ncclGetVersion" },
        { (void **)&g_nccl.get_error_string, "ncclGetErrorString" },
        { (void **)&g_nccl.comm_init_all, "ncclCommInitAll" },
        { (void **)&g_nccl.comm_destroy, "ncclCommDestroy" },
        { (void **)&g_nccl.comm_abort, "ncclCommAbort" },
        { (void **)&g_nccl.comm_get_async_error, "ncclCommGetAsyncError" },
        { (void **)&g_nccl.all_reduce, "ncclAllReduce" },
        { (void **)&g_nccl.all_gather, "ncclAllGather" },
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(lib, syms[i].sym);
        if (!*syms[i].slot) {
            LOG_ERR("collective: %s has no %s", NCCL_LIB, syms[i].sym);
            return;   // the library stays open: harmless, and closing it could unload a dependency in use
        }
    }
    g_nccl.ok = true;
}

static const struct nccl_api *nccl_api(void)
{
    pthread_once(&g_nccl_once, nccl_load);
    return g_nccl.ok ? &g_nccl : NULL;
}

/* ==== The collective ==== */

struct rank_state {   // touched by its rank's thread only (and by free_group)
    struct ncclComm *comm;       // NULL once aborted
    struct backend  *gather_be;  // the backend that owns gather_buf
    struct buffer   *gather_buf; // [n_ranks, rows, c] f32 staging of all_gather_cols
};

struct group {
    const struct nccl_api *nccl;
    int                    n_ranks;
    atomic_bool            failed;   // set once by whichever rank sees a failure first
    struct rank_state      rank[COLLECTIVE_MAX_RANKS];
};

static void group_fail(struct group *g, int rank, const char *what, int result)
{
    LOG_ERR("collective: rank %d: %s failed: %s", rank, what, g->nccl->get_error_string(result));
    atomic_store(&g->failed, true);
}

static void check_device_f32(const struct tensor *t, const char *what)
{
    CHECK(t->dtype == DTYPE_F32 && t->buf && t->buf->kind == BUF_DEVICE && t->nb[0] == sizeof(float) &&
              (tensor_rows(t) == 1 || t->nb[1] == (size_t)t->ne[0] * sizeof(float)),
          "collective_nccl: %s must be a device f32 tensor of contiguous rows", what);
}

/* Usable: the group has not failed (a failed group's communicators may be gone). */
static struct ncclComm *live_comm(struct collective *c)
{
    struct group *g = c->group;
    return atomic_load(&g->failed) ? NULL : g->rank[c->rank].comm;
}

static void nccl_all_reduce_sum(struct collective *c, struct backend *be, struct tensor *t)
{
    struct group *g = c->group;
    check_device_f32(t, "all_reduce_sum's tensor");
    struct ncclComm *comm = live_comm(c);
    if (!comm) return;
    void *p = tensor_data(t);
    int r = g->nccl->all_reduce(p, p, (size_t)(t->ne[0] * tensor_rows(t)), NCCL_FLOAT32, NCCL_SUM, comm,
                                (cudaStream_t)backend_cuda_stream(be));
    if (r != NCCL_SUCCESS) group_fail(g, c->rank, "ncclAllReduce", r);
}

static void nccl_all_gather_cols(struct collective *c, struct backend *be, struct tensor *out, const struct tensor *in)
{
    struct group *g = c->group;
    struct rank_state *rs = &g->rank[c->rank];
    check_device_f32(in, "all_gather_cols' input");
    CHECK(out->dtype == DTYPE_F32 && out->buf && out->buf->kind == BUF_DEVICE && out->nb[0] == sizeof(float),
          "collective_nccl: all_gather_cols' output must be a device f32 tensor");
    int64_t rows = tensor_rows(in), cols = in->ne[0], n = g->n_ranks;
    CHECK(tensor_rows(out) == rows && out->ne[0] <= cols * n && out->ne[0] > cols * (n - 1),
          "all_gather_cols: out [%lld, %lld] from %lld blocks of [%lld, %lld]", (long long)rows, (long long)out->ne[0],
          (long long)n, (long long)rows, (long long)cols);
    struct ncclComm *comm = live_comm(c);
    if (!comm) return;
    size_t block = (size_t)(rows * cols), bytes = block * (size_t)n * sizeof(float);
    if (!rs->gather_buf || rs->gather_buf->bytes < bytes) {   // grows on a step's first run, op by op
        if (rs->gather_buf) be->ops->buffer_free(be, rs->gather_buf);
        rs->gather_buf = NULL;
        CHECK(be->ops->buffer_new(be, bytes, &rs->gather_buf) == STATUS_OK,
              "collective_nccl: no device memory for %zu bytes of gather staging", bytes);
        rs->gather_be = be;
    }
    cudaStream_t stream = (cudaStream_t)backend_cuda_stream(be);
    float *stage = rs->gather_buf->data;
    int r = g->nccl->all_gather(tensor_data(in), stage, block, NCCL_FLOAT32, comm, stream);
    if (r != NCCL_SUCCESS) {
        group_fail(g, c->rank, "ncclAllGather", r);
        return;
    }
    for (int64_t q = 0; q < n; q++) {   // rank q's [rows, cols] block -> columns [q cols, q cols + nc) of out
        int64_t c0 = q * cols, nc = out->ne[0] - c0 < cols ? out->ne[0] - c0 : cols;
        cudaError_t e = cudaMemcpy2DAsync((float *)tensor_data(out) + c0, out->nb[1], stage + (size_t)q * block,
                                          (size_t)cols * sizeof(float), (size_t)nc * sizeof(float), (size_t)rows,
                                          cudaMemcpyDeviceToDevice, stream);
        CHECK(e == cudaSuccess, "collective_nccl: gather copy: %s", cudaGetErrorString(e));
    }
}

/* Aborts the rank's own communicator: its collectives still waiting for a failed rank end. */
static void abort_comm(struct group *g, int rank)
{
    struct rank_state *rs = &g->rank[rank];
    if (!rs->comm) return;
    g->nccl->comm_abort(rs->comm);
    rs->comm = NULL;
}

static enum status nccl_sync(struct collective *c, struct backend *be)
{
    struct group *g = c->group;
    struct rank_state *rs = &g->rank[c->rank];
    cudaStream_t stream = (cudaStream_t)backend_cuda_stream(be);
    // Polls instead of blocking in cudaStreamSynchronize: a collective waiting for a rank that failed
    // would never complete, and this rank must notice the failure to abort it.
    while (cudaStreamQuery(stream) == cudaErrorNotReady) {
        if (rs->comm && !atomic_load(&g->failed)) {
            int async = NCCL_SUCCESS;
            g->nccl->comm_get_async_error(rs->comm, &async);
            if (async != NCCL_SUCCESS && async != NCCL_IN_PROGRESS) group_fail(g, c->rank, "NCCL (asynchronous)", async);
        }
        if (atomic_load(&g->failed)) abort_comm(g, c->rank);
        sched_yield();
    }
    enum status st = be->ops->sync(be);   // the backend's own error, logged there
    if (st != STATUS_OK) atomic_store(&g->failed, true);
    if (!atomic_load(&g->failed)) return STATUS_OK;
    abort_comm(g, c->rank);   // a failed group's communicators are not used again
    return st != STATUS_OK ? st : STATUS_EDEVICE;
}

static void nccl_free_group(struct collective **ranks, int n_ranks)
{
    if (!n_ranks || !ranks[0]) return;
    struct group *g = ranks[0]->group;
    for (int r = 0; r < n_ranks; r++) {
        struct rank_state *rs = &g->rank[r];
        if (rs->comm) {   // a failed group's peers are gone: destroying could wait for them
            if (atomic_load(&g->failed)) g->nccl->comm_abort(rs->comm);
            else g->nccl->comm_destroy(rs->comm);
        }
        if (rs->gather_buf) rs->gather_be->ops->buffer_free(rs->gather_be, rs->gather_buf);
        free(ranks[r]);
    }
    free(g);
}

static const struct collective_ops nccl_ops = {
    .name = "nccl",
    .all_reduce_sum = nccl_all_reduce_sum,
    .all_gather_cols = nccl_all_gather_cols,
    .sync = nccl_sync,
    .free_group = nccl_free_group,
};

enum status collective_nccl_new(int n_ranks, const int *devices, struct collective **ranks)
{
    if (n_ranks < 1 || n_ranks > COLLECTIVE_MAX_RANKS) {
        LOG_ERR("collective: %d ranks (1 to %d)", n_ranks, COLLECTIVE_MAX_RANKS);
        return STATUS_EINVAL;
    }
    const struct nccl_api *nccl = nccl_api();
    if (!nccl) return STATUS_EUNSUPPORTED;   // logged, naming the library
    // NVLink multicast (NVLS) off unless the user chose: our GPU hosts require it off (a program
    // using it can take the host's shared GPUs out of service).
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    struct group *g = xcalloc(1, sizeof *g);
    g->nccl = nccl;
    g->n_ranks = n_ranks;
    struct ncclComm *comms[COLLECTIVE_MAX_RANKS] = { 0 };
    int r = nccl->comm_init_all(comms, n_ranks, devices);
    if (r != NCCL_SUCCESS) {
        LOG_ERR("collective: ncclCommInitAll over %d GPUs failed: %s", n_ranks, nccl->get_error_string(r));
        free(g);
        return STATUS_EDEVICE;
    }
    int version = 0;
    nccl->get_version(&version);
    LOG_INFO("collective: NCCL %d.%d.%d, %d ranks (NCCL_NVLS_ENABLE=%s)", version / 10000, version / 100 % 100,
             version % 100, n_ranks, getenv("NCCL_NVLS_ENABLE"));
    for (int k = 0; k < n_ranks; k++) {
        g->rank[k].comm = comms[k];
        ranks[k] = xcalloc(1, sizeof *ranks[k]);
        *ranks[k] = (struct collective){ .ops = &nccl_ops, .rank = k, .n_ranks = n_ranks, .group = g };
    }
    return STATUS_OK;
}

#endif
