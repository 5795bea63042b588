/* fim: see fim.h. The table is ordered by how common the spelling is among served code models. */
#include "text/fim.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"

static const struct { const char *family, *prefix, *suffix, *middle; bool suffix_first; } formats[] = {
    { "qwen", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", false },
    { "starcoder", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", false },
    { "deepseek", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "begin\xEF\xBD\x9C>", "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "hole\xEF\xBD\x9C>",
      "<\xEF\xBD\x9C" "fim\xE2\x96\x81" "end\xEF\xBD\x9C>", false },
    { "codestral", "[PREFIX]", "[SUFFIX]", "", true },
};

void fim_detect(bool (*is_token)(void *ctx, const char *s), void *ctx, struct fim_format *out)
{
    memset(out, 0, sizeof *out);
    if (!is_token) return;
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (!is_token(ctx, formats[i].prefix) || !is_token(ctx, formats[i].suffix)) continue;
        if (formats[i].middle[0] && !is_token(ctx, formats[i].middle)) continue;
        out->supported = true;
        out->suffix_first = formats[i].suffix_first;
        snprintf(out->prefix, sizeof out->prefix, "%s", formats[i].prefix);
        snprintf(out->suffix, sizeof out->suffix, "%s", formats[i].suffix);
        snprintf(out->middle, sizeof out->middle, "%s", formats[i].middle);
        snprintf(out->family, sizeof out->family, "%s", formats[i].family);
        return;
    }
}

char *fim_prompt(const struct fim_format *f, const char *prefix, const char *suffix)
{
    CHECK(f->supported, "fim_prompt on a model without FIM tokens");
    struct strbuf sb = {0};
    if (f->suffix_first) {
        strbuf_puts(&sb, f->suffix);
        strbuf_puts(&sb, suffix);
        strbuf_puts(&sb, f->prefix);
        strbuf_puts(&sb, prefix);
    } else {
        strbuf_puts(&sb, f->prefix);
        strbuf_puts(&sb, prefix);
        strbuf_puts(&sb, f->suffix);
        strbuf_puts(&sb, suffix);
    }
    strbuf_puts(&sb, f->middle);
    return strbuf_take(&sb);
}
