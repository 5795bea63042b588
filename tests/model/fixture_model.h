/* fixture_model: a model fixture opened on a backend, as the fixture tests (test_fixtures,
 * test_embed) use it: model_load + backend_new (2 threads on cpu; the CAIRN_* backend switches
 * from the environment, so make test-cuda's CAIRN_CUDA_ATT_MMA_MIN_LEN=1 run applies) +
 * model_prepare.
 *
 *     struct opened o;  if (open_model("tests/model/fixtures/qwen3", "cpu", &o) == STATUS_OK) ...
 *     close_model(&o);
 * Also what reading a fixture's ref.json needs: its id lists (fixture_ids) and the greedy pick
 * (fixture_argmax).
 */
#ifndef CAIRN_TESTS_MODEL_FIXTURE_MODEL_H
#define CAIRN_TESTS_MODEL_FIXTURE_MODEL_H

#include <jansson.h>

#include "backend/backend.h"
#include "backend/backend_env.h"
#include "backend/cpu/kbf16.h"
#include "backend/cpu/kern.h"
#include "base/mem.h"
#include "model/model.h"

/* A JSON array of token ids as a new int32 array (caller frees; never NULL), *n its length. */
static inline int32_t *fixture_ids(json_t *arr, int *n)
{
    *n = (int)json_array_size(arr);
    int32_t *v = xmalloc(sizeof *v * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return v;
}

/* The lowest index of the largest of x[0..n) (the backends' argmax rule). */
static inline int fixture_argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Whether a backend rounds its GEMM inputs to bf16 (cuda; cpu where cpu_bf16_kern_pick gives it
 * the bf16 tiles, kbf16.h: AMD CPUs with AVX-512 BF16), as bf16 engines do: the fixture tests hold such a backend to 2e-2 on logits and to
 * the first 8 tokens of a greedy continuation; cpu-precise and cuda-precise to the f32 bounds. */
static inline bool backend_rounds_bf16(const char *name)
{
    return !strcmp(name, "cuda") || (!strcmp(name, "cpu") && cpu_bf16_kern_pick(cpu_kern_pick()->name));
}

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
