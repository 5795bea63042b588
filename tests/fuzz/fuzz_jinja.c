/* fuzz_jinja: libFuzzer target for the Jinja chat-template interpreter (text/jinja.h).
 *
 * Input: arbitrary template text. It is parsed and, when it parses, rendered against a fixed
 * context shaped like a chat request (messages with tool calls, tools, kwargs), with tight limits
 * so runaway loops end quickly. Parse and render errors are fine; crashes, sanitizer reports,
 * hangs and leaks are bugs.
 *     make fuzz && build-fuzz/fuzz_jinja tests/fuzz/corpus_jinja -max_total_time=600
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <jansson.h>

#include "base/log.h"
#include "text/jinja.h"

static const char CTX[] =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"sys\"},"
    " {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"hi \\u00fc\"}]},"
    " {\"role\": \"assistant\", \"content\": null, \"reasoning_content\": \"r\","
    "  \"tool_calls\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": {\"a\": [1, 2.5, true, null]}}}]},"
    " {\"role\": \"tool\", \"content\": \"{\\\"x\\\": 1}\"}],"
    " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}],"
    " \"add_generation_prompt\": true, \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"enable_thinking\": false,"
    " \"n\": 3, \"f\": 0.5, \"s\": \"abc\"}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *ctx;
    if (!ctx) {
        log_set_level(LOG_LEVEL_OFF);
        ctx = json_loads(CTX, 0, NULL);
        if (!ctx) abort();
    }
    struct jinja_template *t;
    char *err = NULL;
    if (jinja_parse((const char *)data, size, &t, &err) != STATUS_OK) {
        free(err);
        return 0;
    }
    struct jinja_limits lim;
    jinja_limits_default(&lim);
    lim.mem_bytes = 32u << 20;
    lim.out_bytes = 1u << 20;
    lim.steps = 200000;
    lim.depth = 64;
    char *out = NULL;
    size_t n;
    jinja_render(t, ctx, &lim, &out, &n, &err);
    free(out);
    free(err);
    jinja_template_free(t);
    return 0;
}
