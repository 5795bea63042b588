/* fim: fill-in-the-middle prompts, from the model's own FIM tokens.
 *
 * Code models trained for infilling read the text before and after a hole between marker tokens
 * and write the middle. The markers are special tokens of the tokenizer, spelled per family; which
 * spelling a model has is decided once at load (fim_detect) from the tokenizer's added tokens,
 * never guessed from the model's name. A model with none has no FIM (the server answers 400).
 *
 *   Qwen2.5-Coder, Qwen3-Coder, CodeGemma  <|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>
 *   StarCoder(2), Granite Code, SantaCoder <fim_prefix>P<fim_suffix>S<fim_middle>
 *   DeepSeek-Coder (V1, V2, V3)             <｜fim▁begin｜>P<｜fim▁hole｜>S<｜fim▁end｜>
 *   Codestral (Mistral)                     [SUFFIX]S[PREFIX]P        (suffix first, no middle marker)
 * The BOS the tokenizer adds (DeepSeek, Codestral) comes from encoding with add_special, as for
 * /v1/completions prompts. Pure functions; any thread.
 *
 *     struct fim_format f;  fim_detect(is_token, tk, &f);
 *     if (f.supported) { char *p = fim_prompt(&f, before, after);  ...encode p...;  free(p); }
 */
#ifndef CAIRN_TEXT_FIM_H
#define CAIRN_TEXT_FIM_H

#include <stdbool.h>

struct fim_format {
    bool supported;
    bool suffix_first;     // suffix, then prefix (Codestral's SPM order)
    char prefix[32];       // marker before the text ahead of the hole
    char suffix[32];       // marker before the text after the hole
    char middle[32];       // marker that asks for the middle ("" when the format has none)
    char family[24];       // a name for logs and docs: "qwen", "starcoder", "deepseek", "codestral"
};

/* The first family whose markers are all tokens (is_token(ctx, s)); supported false when none. */
void  fim_detect(bool (*is_token)(void *ctx, const char *s), void *ctx, struct fim_format *out);
/* The prompt text around a hole (heap string, caller frees); f must be supported. */
char *fim_prompt(const struct fim_format *f, const char *prefix, const char *suffix);

#endif
