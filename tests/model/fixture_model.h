/* fixture_model: a model fixture opened on a backend, as the fixture tests (test_fixtures,
 * test_embed) use it: model_load + backend_new (2 threads on cpu; the CAIRN_* backend switches
 * from the environment, so make test-cuda's CAIRN_CUDA_ATT_MMA_MIN_LEN=1 run applies) +
 * model_prepare.
 *
 *     struct opened o;  if (open_model("tests/model/fixtures/qwen3", "cpu", &o) == STATUS_OK) ...
 *     close_model(&o);
 */
#ifndef CAIRN_TESTS_MODEL_FIXTURE_MODEL_H
#define CAIRN_TESTS_MODEL_FIXTURE_MODEL_H

#include "backend/backend.h"
#include "backend/backend_env.h"
#include "model/model.h"

struct opened { struct model *m; struct backend *be; };

static inline enum status open_model(const char *dir, const char *backend, struct opened *o)
{
    enum status st = model_load(dir, &o->m);
    if (st != STATUS_OK) return st;
    struct backend_cfg bcfg = { .n_threads = 2 };
    backend_cfg_from_env(&bcfg);
    st = backend_new(backend, &bcfg, &o->be);
    if (st == STATUS_OK) st = model_prepare(o->m, o->be);
    if (st != STATUS_OK) {
        backend_free(o->be);
        model_free(o->m);
    }
    return st;
}

static inline void close_model(struct opened *o)
{
    model_free(o->m);
    backend_free(o->be);
}

#endif
