/* test_jinja_snippets: one Jinja feature per snippet, rendered byte-identical to Python's jinja2 in
 * the environment transformers uses (tests/text/golden/tpl_snippets.json, made by
 * tools/make_template_goldens.py --snippets; its "engine" field says which Python produced it).
 * Snippets that raise in Python must fail here too (parse or render error).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "base/log.h"
#include "harness.h"
#include "text/jinja.h"
#include "text/pyjson.h"

TEST(snippets)
{
    json_error_t jerr;
    json_t *doc = pyjson_load_file("tests/text/golden/tpl_snippets.json", 0, &jerr);   // NaN, ints beyond 64 bits
    ASSERT(doc != NULL);
    json_t *ctx = json_object_get(doc, "context"), *c;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(doc, "cases"), i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        const char *want = json_string_value(json_object_get(c, "text"));
        const char *want_err = json_string_value(json_object_get(c, "error"));
        struct jinja_template *t = NULL;
        char *out = NULL, *err = NULL;
        enum status st = jinja_parse(src, strlen(src), &t, &err);
        if (st == STATUS_OK) st = jinja_render(t, ctx, NULL, &out, NULL, &err);
        n++;
        if (want) {
            EXPECTF(st == STATUS_OK && !strcmp(out, want), "snippet %zu: %s\n    want [%s]\n    got  [%s]", i, src, want,
                    st == STATUS_OK ? out : err);
        } else {
            EXPECTF(st != STATUS_OK, "snippet %zu: %s\n    Python raised %s, we rendered [%s]", i, src, want_err, out);
            if (st != STATUS_OK && !strncmp(want_err, "TemplateError: ", 15))
                EXPECTF(err && !strcmp(err, want_err + 15), "snippet %zu: message [%s], want [%s]", i, err, want_err + 15);
        }
        free(out);
        free(err);
        jinja_template_free(t);
    }
    fprintf(stderr, "  %d snippets (%s)\n", n, json_string_value(json_object_get(doc, "engine")));
    EXPECT(n >= 100);
    json_decref(doc);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    RUN(snippets);
    return test_summary();
}
