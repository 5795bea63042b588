/* Model reference tests: every fixture in tests/model/fixtures/ (made by
 * tools/make_model_fixtures.py and tools/train_default_model.py with HF transformers) runs on the
 * ref and cpu backends; logits of every prompt position must match transformers' float32 logits
 * (max |Δ| / max |ref| <= 1e-3 per position) and the greedy continuation must be identical.
 * On cuda the tolerance is 2e-2 and the first 8 greedy tokens must match; cuda-precise (hi + lo
 * GEMM inputs, f32 attention) is held to the ref/cpu bounds.
 * Set CAIRN_TEST_BACKENDS=cuda,cuda-precise (or "ref,cpu,cuda") to run others, and
 * CAIRN_TEST_FIXTURES=a,b to run only those fixtures. */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "engine/runner.h"
#include "harness.h"

#define FIXTURES "tests/model/fixtures"

struct opened { struct model *m; struct backend *be; };

static enum status open_model(const char *dir, const char *backend, struct opened *o)
{
    enum status st = model_load(dir, &o->m);
    if (st != STATUS_OK) return st;
    st = backend_new(backend, &(struct backend_cfg){ .n_threads = 2 }, &o->be);
    if (st == STATUS_OK) st = model_prepare(o->m, o->be);
    if (st != STATUS_OK) {
        backend_free(o->be);
        model_free(o->m);
    }
    return st;
}

static int32_t *json_ids(json_t *arr, int *n)
{
    *n = (int)json_array_size(arr);
    int32_t *v = xmalloc(sizeof *v * (size_t)(*n ? *n : 1));
    for (int i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return v;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Returns the worst per-position relative error of logits vs the reference file. */
static double compare_logits(const char *name, const char *backend, int prompt_idx, const float *got,
                             const float *ref, int n_tok, int vocab)
{
    double worst = 0;
    for (int t = 0; t < n_tok; t++) {
        double max_ref = 0, max_diff = 0;
        for (int v = 0; v < vocab; v++) {
            double r = ref[(size_t)t * vocab + v], g = got[(size_t)t * vocab + v];
            if (fabs(r) > max_ref) max_ref = fabs(r);
            double d = fabs(g - r);
            if (!(d <= max_diff)) max_diff = d;   // NaN propagates as a failure
        }
        double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
        if (!(rel <= worst)) worst = rel;
    }
    fprintf(stderr, "  %-28s %-4s prompt %d (%3d tokens): max rel err %.2e\n", name, backend, prompt_idx, n_tok, worst);
    return worst;
}

static void run_fixture(const char *dir, const char *name, const char *backend, double tol)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/ref.json", dir);
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    EXPECTF(ref != NULL, "%s: %s", path, jerr.text);
    if (!ref) return;
    const char *model_dir = json_string_value(json_object_get(ref, "model_dir"));
    char mdir[1024];
    if (model_dir) snprintf(mdir, sizeof mdir, "%s", model_dir);
    else snprintf(mdir, sizeof mdir, "%s", dir);

    struct opened am;
    enum status st = open_model(mdir, backend, &am);
    EXPECTF(st == STATUS_OK, "%s: cannot open model on %s: %s", name, backend, status_str(st));
    if (st != STATUS_OK) { json_decref(ref); return; }
    int vocab = am.m->hp.n_vocab;
    EXPECTF(vocab == json_integer_value(json_object_get(ref, "vocab")), "%s: vocab %d", name, vocab);

    json_t *prompts = json_object_get(ref, "prompts"), *files = json_object_get(ref, "logits_files");
    for (size_t p = 0; p < json_array_size(prompts); p++) {
        int n;
        int32_t *ids = json_ids(json_array_get(prompts, p), &n);
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(json_array_get(files, p)));
        char *data;
        size_t len;
        ASSERT(file_read_all(path, &data, &len) == STATUS_OK);
        int n_rows = (int)(len / sizeof(float) / (size_t)vocab);   // a fixture may keep fewer rows than tokens
        EXPECTF(n_rows > 0 && n_rows <= n && len == (size_t)n_rows * vocab * sizeof(float),
                "%s: %s has %zu bytes", name, path, len);
        struct runner *r;
        // The whole prompt in one step, as transformers runs it (dynamic NTK rope depends on it).
        ASSERT(runner_new(am.m, am.be, n + 64, n, DTYPE_F32, &r) == STATUS_OK);
        float *got = xmalloc(sizeof(float) * (size_t)n * (size_t)vocab);
        EXPECT(runner_feed(r, ids, n, got, true) == STATUS_OK);
        double err = compare_logits(name, backend, (int)p, got, (const float *)data, n_rows, vocab);
        // bf16 GEMM inputs flip near-tied expert choices of MoE models on long prompts (as in any
        // bf16 engine): plain cuda reports those, cuda-precise (f32-accurate) is held to the bound.
        bool moe_long = !strcmp(backend, "cuda") && am.m->f.moe && n > 64;
        if (moe_long && err > tol)
            fprintf(stderr, "  note: %s on cuda: prompt %zu (%d tokens, MoE) off by %.3e; cuda-precise must pass it\n",
                    name, p, n, err);
        else
            EXPECTF(err <= tol, "%s on %s: prompt %zu logits off by %.3e (tolerance %.0e)", name, backend, p, err, tol);
        runner_free(r);
        free(got);
        free(data);
        free(ids);
    }

    // greedy: one continuation of prompts[greedy_prompt], or one per prompt (default model
    // fixture), where greedy_reliable says which prompts have no near-tie on the way.
    json_t *greedy = json_object_get(ref, "greedy"), *reliable = json_object_get(ref, "greedy_reliable");
    bool per_prompt = json_is_array(json_array_get(greedy, 0));
    int n_checks = per_prompt ? (int)json_array_size(greedy) : 1;
    for (int c = 0; greedy && c < n_checks; c++) {
        if (per_prompt && reliable && !json_is_true(json_array_get(reliable, (size_t)c))) continue;
        int pi = per_prompt ? c : (int)json_integer_value(json_object_get(ref, "greedy_prompt"));
        int n, n_want;
        int32_t *ids = json_ids(json_array_get(prompts, (size_t)pi), &n);
        int32_t *want = json_ids(per_prompt ? json_array_get(greedy, (size_t)c) : greedy, &n_want);
        // cuda rounds activations to bf16 in its GEMMs: it must agree for the first 8 tokens
        int need = !strcmp(backend, "cuda") && n_want > 8 ? 8 : n_want;
        struct runner *r;
        ASSERT(runner_new(am.m, am.be, n + n_want + 1, 64, DTYPE_F32, &r) == STATUS_OK);
        float *lg = xmalloc(sizeof(float) * (size_t)vocab);
        EXPECT(runner_feed(r, ids, n, lg, false) == STATUS_OK);
        int same = 0;
        for (int i = 0; i < n_want; i++) {
            int32_t tok = argmax(lg, vocab);
            if (tok != want[i]) break;
            same++;
            if (i + 1 < n_want) EXPECT(runner_feed(r, &tok, 1, lg, false) == STATUS_OK);
        }
        EXPECTF(same >= need, "%s on %s: greedy continuation of prompt %d diverges at token %d of %d", name, backend,
                pi, same, n_want);
        runner_free(r);
        free(lg);
        free(want);
        free(ids);
    }
    backend_free(am.be);
    model_free(am.m);
    json_decref(ref);
}

TEST(all_fixtures)
{
    const char *backends = getenv("CAIRN_TEST_BACKENDS");
    if (!backends) backends = "ref,cpu";
    DIR *d = opendir(FIXTURES);
    ASSERT(d != NULL);
    struct dirent *e;
    char *names[128];
    int n_names = 0;
    const char *only = getenv("CAIRN_TEST_FIXTURES");   // comma-separated subset (GPU bisecting)
    while ((e = readdir(d)) && n_names < 128) {
        if (e->d_name[0] == '.' || e->d_type != DT_DIR) continue;
        if (only) {
            char pat[300];
            snprintf(pat, sizeof pat, ",%s,", e->d_name);
            char list[1024];
            snprintf(list, sizeof list, ",%s,", only);
            if (!strstr(list, pat)) continue;
        }
        names[n_names++] = xstrdup(e->d_name);
    }
    closedir(d);
    EXPECTF(n_names >= (only ? 1 : 6), "only %d fixtures in %s", n_names, FIXTURES);
    char *list = xstrdup(backends), *save = NULL;
    for (char *be = strtok_r(list, ",", &save); be; be = strtok_r(NULL, ",", &save)) {
        double tol = !strcmp(be, "cuda") ? 2e-2 : 1e-3;   // cuda-precise: as ref and cpu
        for (int i = 0; i < n_names; i++) {
            char dir[512];
            snprintf(dir, sizeof dir, "%s/%s", FIXTURES, names[i]);
            run_fixture(dir, names[i], be, tol);
        }
    }
    free(list);
    for (int i = 0; i < n_names; i++) free(names[i]);
}

int main(void)
{
    log_init_from_env();
    RUN(all_fixtures);
    return test_summary();
}
