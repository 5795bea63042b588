/* test_jinja: the Jinja interpreter's error paths and guards against hostile templates, plus a few
 * semantics checked by hand against Python's jinja2 3.1 (ImmutableSandboxedEnvironment with
 * trim_blocks/lstrip_blocks, as transformers sets it up). Output parity on real templates is
 * test_chat_golden's job.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "harness.h"
#include "text/jinja.h"

/* Renders src with ctx_json (may be NULL); returns the status, *out / *err heap strings. */
static enum status render(const char *src, const char *ctx_json, const struct jinja_limits *lim, char **out, char **err)
{
    struct jinja_template *t;
    *out = NULL;
    *err = NULL;
    enum status st = jinja_parse(src, strlen(src), &t, err);
    if (st != STATUS_OK) return st;
    json_t *ctx = ctx_json ? json_loads(ctx_json, 0, NULL) : NULL;
    st = jinja_render(t, ctx, lim, out, NULL, err);
    json_decref(ctx);
    jinja_template_free(t);
    return st;
}

static bool renders_to(const char *src, const char *ctx, const char *want)
{
    char *out, *err;
    enum status st = render(src, ctx, NULL, &out, &err);
    bool ok = st == STATUS_OK && !strcmp(out, want);
    if (!ok) fprintf(stderr, "    %s -> %s [%s], want [%s]\n", src, status_str(st), st == STATUS_OK ? out : err, want);
    free(out);
    free(err);
    return ok;
}

/* true when rendering fails with ETEMPLATE (or parsing with EFORMAT) and the message contains needle */
static bool fails_with(const char *src, const char *ctx, const struct jinja_limits *lim, enum status want, const char *needle)
{
    char *out, *err;
    enum status st = render(src, ctx, lim, &out, &err);
    bool ok = st == want && err && strstr(err, needle);
    if (!ok) fprintf(stderr, "    %s -> %s [%s], want %s containing [%s]\n", src, status_str(st), err ? err : (out ? out : ""),
                     status_str(want), needle);
    free(out);
    free(err);
    return ok;
}

TEST(python_printing)
{
    // values checked in Python: str() of floats, containers and None/True
    EXPECT(renders_to("{{ 1e-5 }} {{ 1e16 }} {{ 1.5e15 }} {{ 0.1 + 0.2 }} {{ 10 / 4 }} {{ 3.0 }} {{ -0.0 }}", NULL,
                      "1e-05 1e+16 1500000000000000.0 0.30000000000000004 2.5 3.0 -0.0"));
    EXPECT(renders_to("{{ [1, 2.5, 'a', none, true, {'k': (1,)}] }}", NULL, "[1, 2.5, 'a', None, True, {'k': (1,)}]"));
    EXPECT(renders_to("{{ [\"it's\", 'a\\nb'] }}", NULL, "[\"it's\", 'a\\nb']"));
    EXPECT(renders_to("{{ x }}|{{ x.y is defined }}", "{\"x\": {}}", "{}|False"));
    // transformers' tojson(ensure_ascii=...): Python json.dumps output
    EXPECT(renders_to("{{ {'a': '\u00e9\U0001F600\x7f\x01'} | tojson(ensure_ascii=true) }}", NULL,
                      "{\"a\": \"\\u00e9\\ud83d\\ude00\\u007f\\u0001\"}"));
    EXPECT(renders_to("{{ {'a': '\u00e9'} | tojson }}", NULL, "{\"a\": \"\u00e9\"}"));
}

TEST(strftime_now)
{
    // the current local time through strftime, as datetime.now().strftime(fmt)
    char *out, *err;
    EXPECT(render("{{ strftime_now('%Y-%m-%d') }}", NULL, NULL, &out, &err) == STATUS_OK);
    EXPECT(out && strlen(out) == 10 && out[4] == '-' && out[7] == '-' && out[0] == '2');
    free(out);
    free(err);
    EXPECT(fails_with("{{ strftime_now(3) }}", NULL, NULL, STATUS_ETEMPLATE, "format string"));
}

TEST(whitespace)
{
    EXPECT(renders_to("a\n  {% if true %}\n  x\n  {% endif %}\nb\n", NULL, "a\n  x\nb"));
    EXPECT(renders_to("a {{- ' b ' -}} c", NULL, "a b c"));
    EXPECT(renders_to("{% for i in range(3) %}{{ i }}{% else %}none{% endfor %}", NULL, "012"));
    EXPECT(renders_to("{%- for i in [] -%}x{%- else -%} none {%- endfor -%}", NULL, "none"));
}

TEST(undefined_semantics)
{
    EXPECT(renders_to("[{{ missing }}]{{ missing | length }}{{ missing is iterable }}{{ missing | default('d') }}", NULL,
                      "[]0Trued"));
    EXPECT(fails_with("{{ missing.attr }}", NULL, NULL, STATUS_ETEMPLATE, "'missing' is undefined"));
    EXPECT(fails_with("\n\n{{ x.foo + 'a' }}", "{\"x\": {}}", NULL, STATUS_ETEMPLATE, "line 3"));
    EXPECT(fails_with("{{ 1 + 'a' }}", NULL, NULL, STATUS_ETEMPLATE, "unsupported operand"));
    EXPECT(fails_with("{{ 1 / 0 }}", NULL, NULL, STATUS_ETEMPLATE, "division by zero"));
}

TEST(sandbox_and_raise)
{
    EXPECT(fails_with("{% set x = [] %}{{ x.append(1) }}", NULL, NULL, STATUS_ETEMPLATE,
                      "access to attribute 'append' of 'list' object is unsafe."));
    char *out, *err;
    EXPECT(render("{{ raise_exception('Roles must alternate') }}", NULL, NULL, &out, &err) == STATUS_ETEMPLATE);
    EXPECT(err && !strcmp(err, "Roles must alternate"));   // exactly the message, for the HTTP 400
    free(out);
    free(err);
    EXPECT(fails_with("{% set ns = namespace(a=1) %}{% set d = {} %}{% set d.a = 2 %}", NULL, NULL, STATUS_ETEMPLATE,
                      "non-namespace"));
}

TEST(parse_errors)
{
    EXPECT(fails_with("{% if true %}x", NULL, NULL, STATUS_EFORMAT, "endif"));
    EXPECT(fails_with("a\n{{ x | no_such_filter }}", NULL, NULL, STATUS_EFORMAT, "line 2: No filter named 'no_such_filter'"));
    EXPECT(fails_with("{% endfor %}", NULL, NULL, STATUS_EFORMAT, "unexpected 'endfor'"));
    EXPECT(fails_with("{{ 'unterminated }}", NULL, NULL, STATUS_EFORMAT, "unterminated string"));
    EXPECT(fails_with("{% include 'x' %}", NULL, NULL, STATUS_EFORMAT, "unsupported tag 'include'"));
    EXPECT(fails_with("{{ x is no_such_test }}", NULL, NULL, STATUS_EFORMAT, "No test named"));
    // deep nesting is refused, not a stack overflow
    size_t n = 100000;
    char *deep = malloc(2 * n + 16);
    strcpy(deep, "{{ ");
    memset(deep + 3, '(', n);
    strcpy(deep + 3 + n, "1 }}");
    EXPECT(fails_with(deep, NULL, NULL, STATUS_EFORMAT, "nested too deeply"));
    for (size_t i = 0; i < 5000; i++) memcpy(deep + i * 13, "{% if true %}", 13);
    deep[5000 * 13] = 0;
    EXPECT(fails_with(deep, NULL, NULL, STATUS_EFORMAT, "nested too deeply"));
    free(deep);
}

TEST(runaway_guards)
{
    struct jinja_limits lim;
    jinja_limits_default(&lim);
    lim.steps = 1000000;
    EXPECT(fails_with("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", NULL, &lim,
                      STATUS_ETEMPLATE, "steps"));
    EXPECT(fails_with("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, NULL, STATUS_ETEMPLATE, "nested more than"));
    EXPECT(fails_with("{% set s = 'x' * 1000000 %}{% for i in range(1000) %}{{ s }}{% endfor %}", NULL, NULL,
                      STATUS_ETEMPLATE, "output exceeds"));
    EXPECT(fails_with("{{ range(1000000) | length }}", NULL, NULL, STATUS_ETEMPLATE, "Range too big"));
    EXPECT(fails_with("{% set ns = namespace(s='xx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
                      NULL, NULL, STATUS_ETEMPLATE, "exceeds"));
    EXPECT(fails_with("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}", NULL, NULL, STATUS_ETEMPLATE, "nested too deeply"));
    // quadratic work is charged to the step budget, and deep nesting cannot overflow the C stack
    EXPECT(fails_with("{{ (range(100000) | list + range(100000) | list) | unique | length }}", NULL, &lim, STATUS_ETEMPLATE, "steps"));
    EXPECT(fails_with("{% set r = range(100000) | list %}{% for i in r %}{% if i in r %}{% endif %}{% endfor %}", NULL, &lim,
                      STATUS_ETEMPLATE, "steps"));
    EXPECT(renders_to("{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}"
                      "{{ ns.x == ns.x }}", NULL, "True"));
}

static struct jinja_template *shared_tpl;
static void *render_many(void *arg)
{
    json_t *ctx = json_pack("{s:[{s:s,s:s},{s:s,s:s}]}", "messages", "role", "user", "content", "hi", "role",
                            "assistant", "content", "yo");
    long ok = 0;
    for (int i = 0; i < 200; i++) {
        char *out = NULL, *err = NULL;
        if (jinja_render(shared_tpl, ctx, NULL, &out, NULL, &err) == STATUS_OK && !strcmp(out, "user:hi|assistant:yo|")) ok++;
        free(out);
        free(err);
    }
    json_decref(ctx);
    (void)arg;
    return (void *)ok;
}

TEST(concurrent_renders)
{
    const char *src = "{% for m in messages %}{{ m.role }}:{{ m.content }}|{% endfor %}";
    char *err = NULL;
    ASSERT(jinja_parse(src, strlen(src), &shared_tpl, &err) == STATUS_OK);
    pthread_t th[4];
    for (int i = 0; i < 4; i++) pthread_create(&th[i], NULL, render_many, NULL);
    long total = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(th[i], &r);
        total += (long)r;
    }
    EXPECT(total == 800);
    jinja_template_free(shared_tpl);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    RUN(python_printing);
    RUN(strftime_now);
    RUN(whitespace);
    RUN(undefined_semantics);
    RUN(sandbox_and_raise);
    RUN(parse_errors);
    RUN(runaway_guards);
    RUN(concurrent_renders);
    return test_summary();
}
