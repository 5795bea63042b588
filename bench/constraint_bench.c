/* constraint_bench: the constraint engine's two costs.
 *   1. Schema compile time over the corpus (tests/text/schemas/valid.jsonl): median of 5 compiles per
 *      schema; typical tool schemas (Claude Code / Codex / OpenAI tool definitions) and the largest.
 *   2. Mask time per token (constraint_mask + constraint_advance) on the given tokenizer:
 *      a) "natural": a realistic tool call per tool schema, tokenized, fed token by token with a
 *         fresh per-sequence state (cold caches) and again on a second sequence with the same state
 *         object reset (what a second request with the same schema costs when caches are per sequence);
 *      b) "random": uniformly random allowed tokens (the random-weight-model worst case).
 * Each mask figure repeats identical runs 5 times and keeps each token's best time (shared-machine
 * noise). Prints one line per figure.
 *
 *     constraint_bench [TOKENIZER_DIR (default build/tokenizers/qwen3, else models/default)]
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/rng.h"
#include "text/constraint.h"
#include "text/tokenizer.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n ? v[(int)(p * (n - 1))] : 0;
}

static const char *tool_calls[][2] = {
    { "claude_code_bash", "{\"command\":\"git status && git diff --stat HEAD~3\",\"timeout\":120000,\"description\":\"Show working tree status and recent changes\"}" },
    { "claude_code_read", "{\"file_path\":\"/home/user/project/src/server/main.c\",\"offset\":120,\"limit\":200}" },
    { "claude_code_edit", "{\"file_path\":\"/repo/src/app.py\",\"old_string\":\"def handler(event):\\n    return None\",\"new_string\":\"def handler(event):\\n    return process(event)\",\"replace_all\":false}" },
    { "claude_code_grep", "{\"pattern\":\"TODO\\\\(.*\\\\)\",\"path\":\"src\",\"output_mode\":\"content\",\"-C\":2,\"-n\":true}" },
    { "claude_code_todowrite", "{\"todos\":[{\"content\":\"Write the parser tests\",\"status\":\"in_progress\",\"activeForm\":\"Writing the parser tests\"},{\"content\":\"Fix the tokenizer bug\",\"status\":\"pending\",\"activeForm\":\"Fixing the tokenizer bug\"}]}" },
    { "codex_shell", "{\"command\":[\"bash\",\"-lc\",\"cargo test --workspace 2>&1 | tail -50\"],\"workdir\":\"/workspace/project\",\"timeout_ms\":600000}" },
    { "codex_update_plan", "{\"explanation\":\"Split the work into small steps\",\"plan\":[{\"step\":\"Read the failing test\",\"status\":\"completed\"},{\"step\":\"Patch the allocator\",\"status\":\"in_progress\"}]}" },
    { "openai_math_reasoning", "{\"steps\":[{\"explanation\":\"Subtract 7 from both sides.\",\"output\":\"8x = -30\"},{\"explanation\":\"Divide both sides by 8.\",\"output\":\"x = -30 / 8 = -3.75\"}],\"final_answer\":\"x = -3.75\"}" },
};

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "build/tokenizers/qwen3";
    struct tokenizer *tk;
    if (tokenizer_load(dir, &tk) != STATUS_OK) {
        dir = "models/default";
        if (tokenizer_load(dir, &tk) != STATUS_OK) return 1;
    }
    int32_t stop = tokenizer_token_id(tk, "<|im_end|>");
    if (stop < 0) stop = tokenizer_token_id(tk, "<|eot_id|>");
    double t0 = clock_now_s();
    struct constraint_vocab *v;
    if (stop < 0 || constraint_vocab_new(tk, &stop, 1, &v) != STATUS_OK) return 1;
    printf("tokenizer %s: %d ids, vocab trie built in %.1f ms (once per tokenizer)\n", dir, constraint_vocab_size(v),
           (clock_now_s() - t0) * 1e3);

    // ---- compile times ----
    char *text;
    size_t len;
    if (file_read_all("tests/text/schemas/valid.jsonl", &text, &len) != STATUS_OK) return 1;
    json_t *schemas = json_object();
    double tool_ms[64], worst = 0;
    int n_tool = 0, n_all = 0;
    const char *worst_name = "";
    char worst_buf[128] = "";
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *row = json_loads(line, 0, NULL);
        if (!row) continue;
        const char *name = json_string_value(json_object_get(row, "name"));
        char *s = json_dumps(json_object_get(row, "schema"), JSON_COMPACT | JSON_ENCODE_ANY);
        json_object_set_new(schemas, name, json_string(s));
        double runs[5];
        for (int r = 0; r < 5; r++) {
            struct constraint_grammar *g;
            double c0 = clock_now_s();
            enum status st = constraint_compile_json_schema(s, strlen(s), NULL, NULL, &g, NULL, 0);
            runs[r] = (clock_now_s() - c0) * 1e3;
            if (!st) constraint_grammar_free(g);
        }
        double med = pct(runs, 5, 0.5);
        if (med > worst) { worst = med; snprintf(worst_buf, sizeof worst_buf, "%s (%zu bytes)", name, strlen(s)); worst_name = worst_buf; }
        if ((!strncmp(name, "claude_code_", 12) || !strncmp(name, "codex_", 6) || !strncmp(name, "openai_", 7)) && n_tool < 64)
            tool_ms[n_tool++] = med;
        n_all++;
        free(s);
        json_decref(row);
    }
    free(text);
    printf("compile: %d tool schemas median %.2f ms, max %.2f ms; slowest of all %d schemas %.2f ms: %s\n", n_tool,
           pct(tool_ms, n_tool, 0.5), pct(tool_ms, n_tool, 1.0), n_all, worst, worst_name);

    // ---- mask time, natural tool calls ----
    // Each figure is run REPS times on identical inputs and each token's best time kept: on a shared
    // machine that filters preemption out of microsecond timings.
    enum { REPS = 5 };
    int words = constraint_mask_words(v);
    uint32_t *mask = malloc((size_t)words * 4);
    double *nat[2] = { malloc(sizeof(double) * 100000), malloc(sizeof(double) * 100000) };
    int n_nat[2] = { 0, 0 };
    for (int rep = 0; rep < REPS; rep++) {
        int idx[2] = { 0, 0 };
        for (size_t k = 0; k < sizeof tool_calls / sizeof *tool_calls; k++) {
            const char *s = json_string_value(json_object_get(schemas, tool_calls[k][0]));
            struct constraint_grammar *g;
            if (!s || constraint_compile_json_schema(s, strlen(s), NULL, NULL, &g, NULL, 0)) { printf("skip %s\n", tool_calls[k][0]); continue; }
            int32_t *ids;
            int n;
            tokenizer_encode(tk, tool_calls[k][1], strlen(tool_calls[k][1]), false, &ids, &n);
            struct constraint *c = constraint_new(g, v);
            // Pass 0: a fresh state (cold caches). Pass 1: the same object after constraint_reset.
            for (int pass = 0; pass < 2; pass++) {
                if (pass) constraint_reset(c);
                for (int i = 0; i <= n; i++) {
                    double m0 = clock_now_s();
                    constraint_mask(c, 4096 - i, mask);
                    int32_t id = i < n ? ids[i] : stop;
                    if (!(mask[id >> 5] >> (id & 31) & 1)) { printf("  %s: token %d (step %d) not allowed!\n", tool_calls[k][0], id, i); break; }
                    constraint_advance(c, id);
                    double dt = (clock_now_s() - m0) * 1e6;
                    int at = idx[pass]++;
                    if (!rep || dt < nat[pass][at]) nat[pass][at] = dt;
                }
            }
            constraint_free(c);
            free(ids);
            constraint_grammar_free(g);
        }
        n_nat[0] = idx[0];
        n_nat[1] = idx[1];
    }
    for (int pass = 0; pass < 2; pass++) {
        double mean = 0;
        for (int i = 0; i < n_nat[pass]; i++) mean += nat[pass][i];
        mean /= n_nat[pass] ? n_nat[pass] : 1;
        printf("mask+advance, natural tool calls, %s: %d tokens, mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us (best of %d)\n",
               pass ? "reused state (constraint_reset, caches warm)" : "fresh state (cold caches)", n_nat[pass], mean,
               pct(nat[pass], n_nat[pass], 0.5), pct(nat[pass], n_nat[pass], 0.99), pct(nat[pass], n_nat[pass], 1.0), REPS);
    }

    // ---- mask time, random walks ----
    struct rng r;
    int32_t *allowed = malloc((size_t)constraint_vocab_size(v) * sizeof *allowed);
    double *rnd = malloc(sizeof(double) * 200000);
    int n_rnd = 0;
    for (int rep = 0; rep < REPS; rep++) {
    rng_seed(&r, 1);   // the same walks every repetition
    n_rnd = 0;
    for (size_t k = 0; k < sizeof tool_calls / sizeof *tool_calls; k++) {
        const char *s = json_string_value(json_object_get(schemas, tool_calls[k][0]));
        struct constraint_grammar *g;
        if (!s || constraint_compile_json_schema(s, strlen(s), NULL, NULL, &g, NULL, 0)) continue;
        for (int seed = 0; seed < 4; seed++) {
            struct constraint *c = constraint_new(g, v);
            int max_tokens = 256;
            for (int i = 0; i < max_tokens; i++) {
                double m0 = clock_now_s();
                constraint_mask(c, max_tokens - i, mask);
                double dt = (clock_now_s() - m0) * 1e6;
                int na = 0;
                bool can_stop = false;
                for (int w = 0; w < words; w++)
                    for (uint32_t m = mask[w]; m; m &= m - 1) {
                        int32_t id = w * 32 + __builtin_ctz(m);
                        if (id == stop) can_stop = true; else allowed[na++] = id;
                    }
                if (!na || (can_stop && rng_next(&r) % 8 == 0)) break;
                int32_t id = allowed[rng_next(&r) % (uint64_t)na];
                m0 = clock_now_s();
                constraint_advance(c, id);
                dt += (clock_now_s() - m0) * 1e6;
                if (!rep || dt < rnd[n_rnd]) rnd[n_rnd] = dt;
                n_rnd++;
            }
            constraint_free(c);
        }
        constraint_grammar_free(g);
    }
    }
    double rnd_mean = 0;
    for (int i = 0; i < n_rnd; i++) rnd_mean += rnd[i];
    rnd_mean /= n_rnd ? n_rnd : 1;
    printf("mask+advance, random walks (worst case), fresh state per walk: %d tokens, mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us (best of %d)\n",
           n_rnd, rnd_mean, pct(rnd, n_rnd, 0.5), pct(rnd, n_rnd, 0.99), pct(rnd, n_rnd, 1.0), REPS);
    free(allowed);
    free(rnd);
    free(nat[0]);
    free(nat[1]);
    free(mask);
    json_decref(schemas);
    constraint_vocab_free(v);
    tokenizer_free(tk);
    return 0;
}
