#include "backend/backend.h"

#include <string.h>

#include "base/log.h"

#ifdef CAIRN_HAVE_CUDA
#define HAVE_CUDA 1
#else
#define HAVE_CUDA 0
enum status backend_cuda_new(const struct backend_cfg *cfg, struct backend **out)
{
    (void)cfg;
    (void)out;
    LOG_ERR("backend cuda: this binary was built without CUDA (nvcc not found at build time)");
    return STATUS_EUNSUPPORTED;
}
#endif

enum status backend_new(const char *name, const struct backend_cfg *cfg, struct backend **out)
{
    static const struct backend_cfg defaults = { 0 };
    if (!cfg) cfg = &defaults;
    if (!strcmp(name, "ref")) return backend_ref_new(cfg, out);
    if (!strcmp(name, "cpu")) return backend_cpu_new(cfg, out);
    if (!strcmp(name, "cuda")) return backend_cuda_new(cfg, out);
    if (!strcmp(name, "cuda-precise") || !strcmp(name, "cuda-deterministic")) {
        struct backend_cfg c = *cfg;
        c.precise = c.precise || !strcmp(name, "cuda-precise");
        c.deterministic = c.deterministic || !strcmp(name, "cuda-deterministic");
        return backend_cuda_new(&c, out);
    }
    LOG_ERR("unknown backend '%s' (available: %s)", name, backend_list());
    return STATUS_EUNSUPPORTED;
}

void backend_free(struct backend *be)
{
    if (be) be->ops->destroy(be);
}

const char *backend_list(void)
{
    return HAVE_CUDA ? "ref, cpu, cuda, cuda-precise, cuda-deterministic" : "ref, cpu";
}
