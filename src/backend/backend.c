#include "backend/backend.h"

#include <string.h>

#include "base/log.h"

#pragma weak backend_cuda_new

enum status backend_new(const char *name, const struct backend_cfg *cfg, struct backend **out)
{
    static const struct backend_cfg defaults = { 0 };
    if (!cfg) cfg = &defaults;
    if (!strcmp(name, "ref")) return backend_ref_new(cfg, out);
    if (!strcmp(name, "cpu")) return backend_cpu_new(cfg, out);
    if (!strcmp(name, "cuda")) {
        if (!backend_cuda_new) {
            LOG_ERR("backend cuda: this binary was built without CUDA (nvcc not found at build time)");
            return STATUS_EUNSUPPORTED;
        }
        return backend_cuda_new(cfg, out);
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
    return backend_cuda_new ? "ref, cpu, cuda" : "ref, cpu";
}
