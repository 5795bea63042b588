/* test_fim: fill-in-the-middle markers are found from a tokenizer's added tokens, and the prompt
 * is the one each family's model card documents (Qwen2.5-Coder: <|fim_prefix|>P<|fim_suffix|>S
 * <|fim_middle|>; StarCoder: <fim_prefix>P<fim_suffix>S<fim_middle>; DeepSeek-Coder:
 * <｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>; Codestral: [SUFFIX]S[PREFIX]P). With the real Qwen3
 * tokenizer (build/tokenizers/qwen3, fetched by tests/text/fetch_tokenizers.sh) the prompt encodes
 * to the ids of Qwen's tokenizer.json: 151659 <|fim_prefix|>, 151661 <|fim_suffix|>, 151660
 * <|fim_middle|>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "text/fim.h"
#include "text/tokenizer.h"

/* A vocabulary of added tokens: a NULL-terminated list. */
static bool in_list(void *ctx, const char *s)
{
    for (const char *const *t = ctx; *t; t++)
        if (!strcmp(*t, s)) return true;
    return false;
}

static void expect_prompt(const char *const *tokens, const char *family, const char *want)
{
    struct fim_format f;
    fim_detect(in_list, (void *)tokens, &f);
    EXPECTF(f.supported && !strcmp(f.family, family), "%s: detected %s", family, f.supported ? f.family : "(none)");
    if (!f.supported) return;
    char *p = fim_prompt(&f, "def f(", "):\n");
    EXPECTF(!strcmp(p, want), "%s: got '%s'", family, p);
    free(p);
}

TEST(families)
{
    expect_prompt((const char *const[]){ "<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", NULL },
                  "qwen", "<|fim_prefix|>def f(<|fim_suffix|>):\n<|fim_middle|>");
    expect_prompt((const char *const[]){ "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", NULL },
                  "starcoder", "<fim_prefix>def f(<fim_suffix>):\n<fim_middle>");
    expect_prompt((const char *const[]){ "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>",
                                         "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", NULL },
                  "deepseek", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>def f(<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>):\n"
                              "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>");
    expect_prompt((const char *const[]){ "[INST]", "[PREFIX]", "[SUFFIX]", "[MIDDLE]", NULL }, "codestral", "[SUFFIX]):\n[PREFIX]def f(");
}

TEST(none_or_partial)
{
    struct fim_format f;
    fim_detect(in_list, (void *)(const char *const[]){ "<|im_start|>", "<|im_end|>", "<think>", NULL }, &f);
    EXPECT(!f.supported);
    // two of three markers are not a format: the model could not be asked for the middle
    fim_detect(in_list, (void *)(const char *const[]){ "<|fim_prefix|>", "<|fim_suffix|>", NULL }, &f);
    EXPECT(!f.supported);
    fim_detect(NULL, NULL, &f);
    EXPECT(!f.supported);
}

static bool tk_has(void *ctx, const char *s) { return tokenizer_token_id(ctx, s) >= 0; }

TEST(qwen3_tokenizer_ids)
{
    struct tokenizer *tk;
    if (tokenizer_load("build/tokenizers/qwen3", &tk) != STATUS_OK) {
        fprintf(stderr, "  (build/tokenizers/qwen3 not fetched: the id check is left out)\n");
        EXPECT(true);
        return;
    }
    struct fim_format f;
    fim_detect(tk_has, tk, &f);
    EXPECT(f.supported && !strcmp(f.family, "qwen"));
    char *p = fim_prompt(&f, "def add(a, b):\n", "\n    return c\n");
    int32_t *ids;
    int n;
    ASSERT(tokenizer_encode(tk, p, strlen(p), true, &ids, &n) == STATUS_OK);
    EXPECTF(n > 4 && ids[0] == 151659 && ids[n - 1] == 151660, "first %d last %d", ids[0], ids[n - 1]);
    int n_suffix = 0;
    for (int i = 0; i < n; i++) n_suffix += ids[i] == 151661;
    EXPECT(n_suffix == 1);
    free(ids);
    free(p);
    tokenizer_free(tk);
}

int main(void)
{
    RUN(families);
    RUN(none_or_partial);
    RUN(qwen3_tokenizer_ids);
    return test_summary();
}
