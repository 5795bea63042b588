/* fuzz_constraint: libFuzzer target for the constraint compilers (GBNF, regex, JSON Schema) and
 * the matcher. Input: one selector byte (0: GBNF, 1: regex, 2: JSON Schema), the source text, then
 * optionally a 0 byte and bytes to feed the compiled automaton. Must never crash or hang; compiles
 * run under a small budget. On OK: the shortest completion is finite, feeding bytes either matches
 * or is refused without changing the state, and a mask over the default vocabulary is consistent
 * with constraint_can_end.
 *     make fuzz && build-fuzz/fuzz_constraint -max_total_time=300 tests/fuzz/corpus_constraint */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "text/constraint.h"
#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct constraint_vocab *vocab;
static int32_t stop_id;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!vocab) {
        log_set_level(LOG_LEVEL_OFF);
        struct tokenizer *tk;
        CHECK(tokenizer_load("models/default", &tk) == STATUS_OK, "run from the repository root");
        stop_id = tokenizer_token_id(tk, "<|im_end|>");
        CHECK(constraint_vocab_new(tk, &stop_id, 1, &vocab) == STATUS_OK, "vocab");
        tokenizer_free(tk);   // the vocab copies what it needs (LeakSanitizer checks the replay)
    }
    if (size < 1) return 0;
    const char *src = (const char *)data + 1;
    const uint8_t *nul = memchr(data + 1, 0, size - 1);
    size_t len = nul ? (size_t)(nul - data - 1) : size - 1;
    const char *feed = nul ? (const char *)nul + 1 : NULL;
    size_t feed_len = nul ? size - len - 2 : 0;
    struct constraint_budget budget = { .max_rules = 20000, .max_elements = 200000, .max_depth = 64, .max_ms = 200 };
    struct constraint_grammar *g = NULL;
    char err[256];
    enum status st;
    switch (data[0] % 3) {
    case 0: st = constraint_compile_gbnf(src, len, &budget, &g, err, sizeof err); break;
    case 1: st = constraint_compile_regex(src, len, &budget, &g, err, sizeof err); break;
    default: st = constraint_compile_json_schema(src, len, NULL, &budget, &g, err, sizeof err); break;
    }
    if (st != STATUS_OK) {
        CHECK(!g && err[0], "a failed compile returns no grammar and says why");
        return 0;
    }
    CHECK(constraint_grammar_min_bytes(g) < (1u << 30), "min bytes");
    struct constraint *c = constraint_new(g, vocab);
    for (size_t i = 0; feed && i < feed_len; i++) {
        int before = constraint_min_tokens_to_finish(c);
        if (constraint_advance_bytes(c, feed + i, 1) != STATUS_OK)
            CHECK(constraint_min_tokens_to_finish(c) == before, "a refused byte leaves the state");
    }
    uint32_t *mask = calloc((size_t)constraint_mask_words(vocab), 4);
    if (constraint_mask(c, 64, mask) == STATUS_OK) {
        bool stop = mask[stop_id >> 5] >> (stop_id & 31) & 1;
        CHECK(stop == constraint_can_end(c), "stop allowed exactly when the match may end");
    }
    free(mask);
    constraint_free(c);
    constraint_grammar_free(g);
    return 0;
}
