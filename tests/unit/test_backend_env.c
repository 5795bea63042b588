/* backend_cfg_from_env: the documented CAIRN_* switches land in their backend_cfg fields, and
 * unset, other or malformed values leave the fields as they were. */
#include <stdlib.h>

#include "backend/backend_env.h"
#include "base/log.h"
#include "harness.h"

static void clear_env(void)
{
    unsetenv("CAIRN_CUDA_GRAPHS");
    unsetenv("CAIRN_CUDA_SKINNY");
    unsetenv("CAIRN_CUDA_ATT_MMA_MIN_LEN");
    unsetenv("CAIRN_CUDA_MOE_DEVICE_N");
    unsetenv("CAIRN_PROFILE");
}

TEST(unset_leaves_defaults)
{
    clear_env();
    struct backend_cfg cfg = { .n_threads = 3, .cuda_moe_device_n = 7 };
    backend_cfg_from_env(&cfg);
    EXPECT(cfg.n_threads == 3);
    EXPECT(!cfg.cuda_graphs_off && !cfg.cuda_skinny_off && !cfg.profile);
    EXPECT(cfg.cuda_fp8_mma_min_len == 0);
    EXPECT(cfg.cuda_moe_device_n == 7);
}

TEST(switches_set)
{
    clear_env();
    setenv("CAIRN_CUDA_GRAPHS", "0", 1);
    setenv("CAIRN_CUDA_SKINNY", "0", 1);
    setenv("CAIRN_CUDA_ATT_MMA_MIN_LEN", "1", 1);
    setenv("CAIRN_CUDA_MOE_DEVICE_N", "64", 1);
    setenv("CAIRN_PROFILE", "1", 1);
    struct backend_cfg cfg = { 0 };
    backend_cfg_from_env(&cfg);
    EXPECT(cfg.cuda_graphs_off && cfg.cuda_skinny_off && cfg.profile);
    EXPECT(cfg.cuda_fp8_mma_min_len == 1);
    EXPECT(cfg.cuda_moe_device_n == 64);
}

TEST(other_values_ignored)
{
    clear_env();
    setenv("CAIRN_CUDA_GRAPHS", "1", 1);            // only "0" turns graphs off
    setenv("CAIRN_CUDA_SKINNY", "off", 1);
    setenv("CAIRN_CUDA_ATT_MMA_MIN_LEN", "12x", 1); // malformed
    setenv("CAIRN_CUDA_MOE_DEVICE_N", "65", 1);     // out of 1-64
    setenv("CAIRN_PROFILE", "0", 1);
    struct backend_cfg cfg = { 0 };
    backend_cfg_from_env(&cfg);
    EXPECT(!cfg.cuda_graphs_off && !cfg.cuda_skinny_off && !cfg.profile);
    EXPECT(cfg.cuda_fp8_mma_min_len == 0);
    EXPECT(cfg.cuda_moe_device_n == 0);
    clear_env();
}

int main(void)
{
    log_set_level(LOG_LEVEL_ERROR);   // the ignored values are logged as warnings
    RUN(unset_leaves_defaults);
    RUN(switches_set);
    RUN(other_values_ignored);
    return test_summary();
}
