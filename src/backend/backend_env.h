/* backend_env: the documented CAIRN_* environment switches of the backends, read into a
 * struct backend_cfg.
 *
 * The backends never read the environment: their switches are backend_cfg fields. This is the one
 * place that maps variables to fields, for the programs that let a user set them (the app, the
 * benchmarks, the model fixture test). Unset or malformed variables leave a field as it was.
 *
 *     struct backend_cfg cfg = { .n_threads = 4 };
 *     backend_cfg_from_env(&cfg);
 *     backend_new("cuda", &cfg, &be);
 *
 * Variables (docs/server.md, "CUDA switches"): CAIRN_CUDA_GRAPHS=0 (cuda_graphs_off),
 * CAIRN_CUDA_SKINNY=0 (cuda_skinny_off), CAIRN_CUDA_ATT_MMA_MIN_LEN=N (cuda_fp8_mma_min_len),
 * CAIRN_CUDA_MOE_DEVICE_N=N (cuda_moe_device_n), CAIRN_PROFILE=1 (profile).
 */
#ifndef CAIRN_BACKEND_BACKEND_ENV_H
#define CAIRN_BACKEND_BACKEND_ENV_H

#include "backend/backend.h"

void backend_cfg_from_env(struct backend_cfg *cfg);

#endif
