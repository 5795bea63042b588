/* test_pyjson: JSON that Python's json.loads accepts and jansson alone refuses (integers beyond
 * 64 bits, NaN, Infinity, -Infinity, overflowing floats) loads, keeps the literal's exact text, and
 * reaches the Jinja interpreter as the Python value; everything else stays jansson's parse.
 * The printed forms each render must match are Python's: checked against python3 (json.loads, then
 * jinja2 / json.dumps) when the expectations were written, and the snippet goldens pin the same
 * values through tests/text/golden/tpl_snippets.json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "harness.h"
#include "text/jinja.h"
#include "text/pyjson.h"

static const char *lit_of(json_t *root, const char *key) { return pyjson_literal(json_object_get(root, key)); }

TEST(huge_ints_and_literals)
{
    const char *text = "{\"model_max_length\": 1000000000000000019884624838656, \"neg\": -99999999999999999999,\n"
                       " \"max64\": 9223372036854775807, \"min64\": -9223372036854775808, \"over\": 9223372036854775808,\n"
                       " \"nan\": NaN, \"inf\": Infinity, \"ninf\": -Infinity, \"big_float\": 1e400, \"nbig\": -2.5e999,\n"
                       " \"s\": \"NaN 1000000000000000019884624838656 \\\" Infinity\", \"arr\": [NaN,1e30,123456789012345678901]}";
    json_error_t e;
    json_t *j = pyjson_loads(text, 0, &e);
    ASSERT(j != NULL);
    EXPECT(!strcmp(lit_of(j, "model_max_length"), "1000000000000000019884624838656"));
    EXPECT(!strcmp(lit_of(j, "neg"), "-99999999999999999999"));
    EXPECT(json_integer_value(json_object_get(j, "max64")) == INT64_MAX);
    EXPECT(json_integer_value(json_object_get(j, "min64")) == INT64_MIN);
    EXPECT(!strcmp(lit_of(j, "over"), "9223372036854775808"));
    EXPECT(!strcmp(lit_of(j, "nan"), "NaN"));
    EXPECT(!strcmp(lit_of(j, "inf"), "Infinity"));
    EXPECT(!strcmp(lit_of(j, "ninf"), "-Infinity"));
    EXPECT(!strcmp(lit_of(j, "big_float"), "Infinity"));
    EXPECT(!strcmp(lit_of(j, "nbig"), "-Infinity"));
    EXPECT(!strcmp(json_string_value(json_object_get(j, "s")), "NaN 1000000000000000019884624838656 \" Infinity"));
    json_t *arr = json_object_get(j, "arr");
    EXPECT(!strcmp(pyjson_literal(json_array_get(arr, 0)), "NaN"));
    EXPECT(json_is_real(json_array_get(arr, 1)) && json_real_value(json_array_get(arr, 1)) == 1e30);
    EXPECT(!strcmp(pyjson_literal(json_array_get(arr, 2)), "123456789012345678901"));
    EXPECT(pyjson_literal(json_object_get(j, "max64")) == NULL);
    json_decref(j);
}

TEST(errors_stay_errors)
{
    json_error_t e;
    json_t *j = pyjson_loads("{\"a\": 1,\n \"b\": 1000000000000000019884624838656,\n \"c\": nan}", 0, &e);
    EXPECT(j == NULL && e.line == 3);   // lower-case nan is not JSON for Python either; line kept
    json_decref(j);
    j = pyjson_loads("[0123]", 0, &e);
    EXPECT(j == NULL);
    json_decref(j);
    j = pyjson_loads("[NaNa]", 0, &e);
    EXPECT(j == NULL);
    json_decref(j);
    j = pyjson_loads("{\"a\": 1, \"a\": 2}", JSON_REJECT_DUPLICATES, &e);
    EXPECT(j == NULL);   // the caller's flags still apply
    json_decref(j);
    char *digits = malloc(4400);
    memset(digits, '7', 4310);
    digits[4310] = 0;
    j = pyjson_loads(digits, JSON_DECODE_ANY, &e);
    EXPECT(j == NULL);   // Python: "Exceeds the limit (4300 digits) for integer string conversion"
    json_decref(j);
    free(digits);
    j = pyjson_load_file("/nonexistent/x.json", 0, &e);
    EXPECT(j == NULL && strstr(e.text, "/nonexistent/x.json"));
}

/* renders tpl with the JSON context ctx_text (parsed as Python would) */
static char *render(const char *ctx_text, const char *tpl)
{
    json_error_t e;
    json_t *ctx = pyjson_loads(ctx_text, 0, &e);
    struct jinja_template *t = NULL;
    char *out = NULL, *err = NULL;
    if (!ctx || jinja_parse(tpl, strlen(tpl), &t, &err) != STATUS_OK ||
        jinja_render(t, ctx, NULL, &out, NULL, &err) != STATUS_OK) {
        fprintf(stderr, "    %s: %s\n", tpl, err ? err : e.text);
        out = NULL;
    }
    free(err);
    jinja_template_free(t);
    json_decref(ctx);
    return out;
}

static void expect_render(const char *ctx, const char *tpl, const char *want)
{
    char *got = render(ctx, tpl);
    EXPECTF(got && !strcmp(got, want), "%s -> [%s], want [%s]", tpl, got ? got : "(error)", want);
    free(got);
}

TEST(jinja_sees_python_values)
{
    const char *ctx = "{\"m\": 1000000000000000019884624838656, \"n\": -99999999999999999999, \"x\": NaN, "
                      "\"i\": Infinity, \"d\": {\"k\": 1000000000000000019884624838656}}";
    // python3: jinja2 with the same context, json.loads'ed
    expect_render(ctx, "{{ m }}|{{ n }}|{{ x }}|{{ i }}", "1000000000000000019884624838656|-99999999999999999999|nan|inf");
    expect_render(ctx, "{{ d|tojson }}|{{ [x, i]|tojson }}", "{\"k\": 1000000000000000019884624838656}|[NaN, Infinity]");
    expect_render(ctx, "{{ d }}", "{'k': 1000000000000000019884624838656}");
    expect_render(ctx, "{{ m + 1 }}|{{ m - m }}|{{ n * 2 }}|{{ m // 7 }}|{{ m % 7 }}|{{ -n }}",
                  "1000000000000000019884624838657|0|-199999999999999999998|142857142857142859983517834093|5|"
                  "99999999999999999999");
    expect_render(ctx, "{{ m > 5 }}|{{ n < -5 }}|{{ m == 1000000000000000019884624838656 }}|{{ m is integer }}|"
                  "{{ m|int }}|{{ m|float }}|{{ x is number }}|{{ x == x }}",
                  "True|True|True|True|1000000000000000019884624838656|1e+30|True|False");
    expect_render("{}", "{{ 9223372036854775807 + 1 }}|{{ 99999999999999999999999 }}|{{ '123456789012345678901234'|int }}",
                  "9223372036854775808|99999999999999999999999|123456789012345678901234");
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    RUN(huge_ints_and_literals);
    RUN(errors_stay_errors);
    RUN(jinja_sees_python_values);
    return test_summary();
}
