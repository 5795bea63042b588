/* fuzz_tokenizer_load: libFuzzer target for tokenizer_load_json. The input is a tokenizer.json
 * document, optionally followed by "\x00" and text; whatever loads is then used to encode that
 * text (or a fixed sentence), decode the ids both ways and stream them through a detok.
 * Malformed documents must give an error status, never a crash, a leak or undefined behaviour.
 * Seeds: tests/text/golden/synth/<name>/tokenizer.json.
 *
 *     make fuzz && build-fuzz/fuzz_tokenizer_load -max_total_time=600 corpus_dir seeds_dir
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "text/tokenizer.h"

#include "fuzz_quiet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t json_len = nul ? (size_t)(nul - data) : size;
    const char *text = "Hello world! 123 <s> ünïcödé 東京 😀\n\t  end";
    size_t text_len = strlen(text);
    if (nul) { text = (const char *)nul + 1; text_len = size - json_len - 1; }
    struct tokenizer *tk;
    if (tokenizer_load_json((const char *)data, json_len, "{\"clean_up_tokenization_spaces\": true}", &tk) != STATUS_OK)
        return 0;
    int32_t *ids;
    int n;
    if (tokenizer_encode(tk, text, text_len, true, &ids, &n) == STATUS_OK) {
        for (int skip = 0; skip < 2; skip++) {
            char *s = tokenizer_decode(tk, ids, n, skip);
            struct detok *d = detok_new(tk, skip);
            size_t got = 0;
            for (int i = 0; i <= n; i++) {
                char *delta = i < n ? detok_push(d, ids[i]) : detok_flush(d);
                got += strlen(delta);
                free(delta);
            }
            detok_free(d);
            free(s);
            (void)got;
        }
        free(ids);
    }
    for (int32_t id = -2; id < 300; id += 7) (void)tokenizer_token_str(tk, id);
    tokenizer_free(tk);
    return 0;
}
