#include "backend/backend_env.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"

static bool env_is(const char *name, const char *value)
{
    const char *e = getenv(name);
    return e && !strcmp(e, value);
}

/* A positive integer within [lo, hi], or 0 (unset, or out of range: logged). */
static int env_int(const char *name, int lo, int hi)
{
    const char *e = getenv(name);
    if (!e || !*e) return 0;
    char *end;
    long v = strtol(e, &end, 10);
    if (*end || v < lo || v > hi) {
        LOG_WARN("%s=%s ignored (an integer in %d..%d)", name, e, lo, hi);
        return 0;
    }
    return (int)v;
}

void backend_cfg_from_env(struct backend_cfg *cfg)
{
    if (env_is("CAIRN_CUDA_GRAPHS", "0")) cfg->cuda_graphs_off = true;
    if (env_is("CAIRN_CUDA_SKINNY", "0")) cfg->cuda_skinny_off = true;
    int v = env_int("CAIRN_CUDA_ATT_MMA_MIN_LEN", 1, 1 << 30);
    if (v) cfg->cuda_fp8_mma_min_len = v;
    if ((v = env_int("CAIRN_CUDA_MOE_DEVICE_N", 1, 64))) cfg->cuda_moe_device_n = v;
    const char *prof = getenv("CAIRN_PROFILE");
    if (prof && *prof && strcmp(prof, "0")) cfg->profile = true;
}
