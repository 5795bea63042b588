/* test_hybrid: the hybrid models' forward pass (Gated DeltaNet + gated attention + shared-expert
 * MoE) end to end through the runner, on tiny synthesized Qwen3-Next, Qwen3.5 and Qwen3.5-MoE
 * models: cpu against ref on every prompt position; the same 300-token prompt fed whole, in steps of 1, 7,
 * 64 and 256 tokens, and as a prompt followed by one-token decode steps gives the same logits (the
 * recurrent state carries across steps exactly as within one); a reset sequence starts afresh.
 * Agreement with transformers is checked by the fixtures (tools/make_model_fixtures.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/mem.h"
#include "engine/runner.h"
#include "harness.h"
#include "scratch_dir.h"

#define N_PROMPT 300

static const char *DIMS =
    "\"vocab_size\": 96, \"hidden_size\": 64, \"intermediate_size\": 96, \"num_hidden_layers\": 4,"
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 32, \"max_position_embeddings\": 512,"
    " \"linear_num_key_heads\": 2, \"linear_num_value_heads\": 4, \"linear_key_head_dim\": 16,"
    " \"linear_value_head_dim\": 16, \"rope_theta\": 10000";
static const char *MOE = ", \"num_experts\": 8, \"num_experts_per_tok\": 2, \"moe_intermediate_size\": 32,"
                         " \"shared_expert_intermediate_size\": 48";

static const struct { const char *arch; bool moe; } fams[] = {
    { "Qwen3NextForCausalLM", true }, { "Qwen3_5ForCausalLM", false }, { "Qwen3_5MoeForCausalLM", true },
};

static char tmpdir[64];

static struct model *synth(size_t i)
{
    char cfg[2048], path[128];
    snprintf(cfg, sizeof cfg, "{\"architectures\": [\"%s\"], %s%s, \"layer_types\": [\"linear_attention\","
             " \"full_attention\", \"linear_attention\", \"linear_attention\"]}", fams[i].arch, DIMS,
             fams[i].moe ? MOE : "");
    snprintf(path, sizeof path, "%s/c%zu.json", tmpdir, i);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs(cfg, f) >= 0, "write %s", path);
    fclose(f);
    struct model *m = NULL;
    CHECK(model_synthesize(path, 5 + i, &m) == STATUS_OK, "synthesize %s", fams[i].arch);
    return m;
}

static double max_rel(const float *a, const float *r, size_t n)
{
    double mr = 0, md = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(r[i]) > mr) mr = fabs(r[i]);
        double d = fabs((double)a[i] - r[i]);
        if (!(d <= md)) md = d;
    }
    return mr > 0 ? md / mr : md;
}

/* Logits of every position of ids, fed in steps of `chunk` tokens (runner_feed calls of `feed`). */
static float *run(struct model *m, struct backend *be, const int32_t *ids, int n, int chunk, int feed)
{
    struct runner *r;
    CHECK(runner_new(m, be, 512, chunk, DTYPE_F32, &r) == STATUS_OK, "runner");
    size_t V = (size_t)m->hp.n_vocab;
    float *lg = xmalloc(sizeof(float) * V * (size_t)n);
    for (int done = 0; done < n; done += feed) {
        int k = n - done < feed ? n - done : feed;
        CHECK(runner_feed(r, ids + done, k, lg + (size_t)done * V, true) == STATUS_OK, "feed");
    }
    runner_free(r);
    return lg;
}

TEST(cpu_vs_ref_and_chunking)
{
    struct backend *ref, *cpu;
    ASSERT(backend_new("ref", NULL, &ref) == STATUS_OK);
    ASSERT(backend_new("cpu", &(struct backend_cfg){ .n_threads = 2 }, &cpu) == STATUS_OK);
    int32_t ids[N_PROMPT];
    for (int i = 0; i < N_PROMPT; i++) ids[i] = (int32_t)((i * 37 + 11) % 96);
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        struct model *m = synth(f);
        size_t V = (size_t)m->hp.n_vocab, n = (size_t)N_PROMPT * V;
        float *whole_ref = run(m, ref, ids, N_PROMPT, N_PROMPT, N_PROMPT);
        float *whole = run(m, cpu, ids, N_PROMPT, N_PROMPT, N_PROMPT);
        double e = max_rel(whole, whole_ref, n);
        EXPECTF(e < 1e-4, "%s: cpu vs ref max rel err %.3g", fams[f].arch, e);
        fprintf(stderr, "  %-24s cpu vs ref %.2e", fams[f].arch, e);
        static const int chunks[] = { 1, 7, 64, 256 };
        for (int c = 0; c < 4; c++) {
            float *part = run(m, cpu, ids, N_PROMPT, chunks[c], N_PROMPT);
            e = max_rel(part, whole, n);
            EXPECTF(e < 1e-5, "%s: steps of %d vs whole: %.3g", fams[f].arch, chunks[c], e);
            fprintf(stderr, ", steps of %d %.1e", chunks[c], e);
            free(part);
        }
        // prompt of 50 in one step, then one token per step (decode)
        float *dec = run(m, cpu, ids, N_PROMPT, N_PROMPT, 1);
        float *pre = run(m, cpu, ids, 50, N_PROMPT, 50);
        e = max_rel(dec, whole, n);
        EXPECTF(e < 1e-5, "%s: decode steps vs whole: %.3g", fams[f].arch, e);
        EXPECTF(max_rel(pre, whole, 50 * V) < 1e-5, "%s: prefix", fams[f].arch);
        fprintf(stderr, ", decode %.1e\n", e);
        // a reset sequence starts from an empty state: the same logits again
        struct runner *r;
        ASSERT(runner_new(m, cpu, 512, 64, DTYPE_F32, &r) == STATUS_OK);
        float *a = xmalloc(sizeof(float) * V), *b = xmalloc(sizeof(float) * V);
        EXPECT(runner_feed(r, ids, 30, a, false) == STATUS_OK);
        runner_reset(r);
        EXPECT(runner_feed(r, ids, 30, b, false) == STATUS_OK);
        EXPECT(!memcmp(a, b, sizeof(float) * V));
        EXPECT(max_rel(a, whole + 29 * V, V) < 1e-5);
        runner_free(r);
        free(a);
        free(b);
        free(dec);
        free(pre);
        free(whole);
        free(whole_ref);
        model_free(m);
    }
    backend_free(cpu);
    backend_free(ref);
}

int main(void)
{
    scratch_dir_make(tmpdir, sizeof tmpdir, "hybrid");
    RUN(cpu_vs_ref_and_chunking);
    scratch_dir_remove(tmpdir);
    return test_summary();
}
