/* test_tokenizer_config_tokens: tokens that only tokenizer_config.json's added_tokens_decoder lists
 * are added to the tokenizer as transformers' PreTrainedTokenizerFast does at load (through
 * tokenizers' add_tokens): a content that is a vocabulary entry keeps its id, a new content gets the
 * next id after the vocabulary and the added tokens, in id order; a content tokenizer.json already
 * has is not added twice. The tokenizer is tests/text/golden/synth/synth_ws (192 vocab entries,
 * added tokens 0-2). The config is read as Python reads it (its model_max_length is int(1e30)).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "harness.h"
#include "text/tokenizer.h"

static const char *CONFIG =
    "{\"model_max_length\": 1000000000000000019884624838656, \"added_tokens_decoder\": {"
    " \"1\": {\"content\": \"<|x|>\", \"special\": true},"
    " \"400\": {\"content\": \"<|tool|>\", \"special\": true, \"normalized\": false},"
    " \"69\": {\"content\": \"token\", \"special\": false, \"normalized\": false},"
    " \"300\": {\"content\": \"<|new|>\", \"special\": true}}}";

TEST(config_only_tokens_are_added)
{
    char *js;
    size_t len;
    ASSERT(file_read_all("tests/text/golden/synth/synth_ws/tokenizer.json", &js, &len) == STATUS_OK);
    struct tokenizer *tk = NULL;
    ASSERT(tokenizer_load_json(js, len, CONFIG, &tk) == STATUS_OK);
    // in id order: 69 "token" is a vocabulary entry (keeps 69), 300 "<|new|>" gets 192 (the next id
    // after 192 vocab entries), 400 "<|tool|>" gets 193; "<|x|>" is tokenizer.json's already
    EXPECT(tokenizer_token_id(tk, "<|new|>") == 192);
    EXPECT(tokenizer_token_id(tk, "<|tool|>") == 193);
    EXPECT(tokenizer_token_id(tk, "<|x|>") == 1);
    EXPECT(tokenizer_is_special(tk, 192) && tokenizer_is_special(tk, 193) && !tokenizer_is_special(tk, 69));
    int32_t *ids = NULL;
    int n = 0;
    const char *text = "a<|tool|>b<|new|>";
    ASSERT(tokenizer_encode(tk, text, strlen(text), false, &ids, &n) == STATUS_OK);
    bool has_tool = false, has_new = false;
    for (int i = 0; i < n; i++) { has_tool |= ids[i] == 193; has_new |= ids[i] == 192; }
    EXPECT(has_tool && has_new);
    char *back = tokenizer_decode(tk, ids, n, false);
    EXPECT(back && strstr(back, "<|tool|>") && strstr(back, "<|new|>"));
    free(back);
    free(ids);
    tokenizer_free(tk);
    free(js);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    RUN(config_only_tokens_are_added);
    return test_summary();
}
