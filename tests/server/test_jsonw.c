/* JSON writer (escaping of any bytes, numbers) and the status -> HTTP/error-body mapping. */
#include "harness.h"

#include <jansson.h>

#include "base/rng.h"
#include "server/errors.h"
#include "server/jsonw.h"

static char *w(const char *s, size_t n)
{
    struct strbuf sb = {0};
    jsonw_str(&sb, s, n);
    return strbuf_take(&sb);
}

TEST(escapes)
{
    char *a = w("a\"b\\c\n\t\x01\x1f/", 10);
    EXPECTF(!strcmp(a, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/\""), "%s", a);
    free(a);
    char *b = w("\xE2\x80\xA8|\xE2\x80\xA9", 7);   // U+2028/9 escaped for JS
    EXPECTF(!strcmp(b, "\"\\u2028|\\u2029\""), "%s", b);
    free(b);
    char *c = w("ok \xC3\xA9 \xF0\x9F\x98\x80", 10);
    EXPECT(!strcmp(c, "\"ok \xC3\xA9 \xF0\x9F\x98\x80\""));
    free(c);
    char *d = w("x\xFFy\xC0\xAFz\xED\xA0\x80", 9);   // bad byte, overlong, surrogate
    EXPECTF(!strcmp(d, "\"x\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\""), "%s", d);
    free(d);
    char *e = w("\0a", 2);
    EXPECT(!strcmp(e, "\"\\u0000a\""));
    free(e);
}

TEST(random_bytes_always_parse)
{
    struct rng r;
    rng_seed(&r, 11);
    int bad = 0;
    for (int t = 0; t < 2000; t++) {
        char buf[64];
        size_t n = rng_next(&r) % sizeof buf;
        for (size_t i = 0; i < n; i++) buf[i] = (char)(rng_next(&r) & 0xff);
        char *s = w(buf, n);
        json_error_t err;
        json_t *v = json_loads(s, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        if (!json_is_string(v)) bad++;
        // valid UTF-8 input must come back byte for byte
        else if (utf8_is_valid(buf, n) && (json_string_length(v) != n || memcmp(json_string_value(v), buf, n))) bad++;
        json_decref(v);
        free(s);
    }
    EXPECTF(bad == 0, "%d outputs did not parse back", bad);
}

TEST(numbers)
{
    struct strbuf sb = {0};
    jsonw_int(&sb, -42);
    jsonw_raw(&sb, " ");
    jsonw_double(&sb, 0.1);
    jsonw_raw(&sb, " ");
    jsonw_double(&sb, 1.0 / 0.0);
    jsonw_raw(&sb, " ");
    jsonw_double(&sb, -1.5e-300);
    EXPECTF(!strcmp(sb.data, "-42 0.1 null -1.5e-300"), "%s", sb.data);
    strbuf_free(&sb);
}

TEST(utf8_prefix)
{
    EXPECT(utf8_valid_prefix("ab\xC3", 3) == 2);
    EXPECT(utf8_valid_prefix("ab\xC3\xA9", 4) == 4);
    EXPECT(utf8_valid_prefix("\xF0\x9F\x98", 3) == 0);
    uint32_t cp;
    EXPECT(utf8_next("\xF0\x9F\x98", 3, &cp) == -1);
    EXPECT(utf8_next("\xFF", 1, &cp) == 0);
}

TEST(error_mapping)
{
    struct { enum status st; int http; } m[] = {
        { STATUS_EINVAL, 400 }, { STATUS_EFORMAT, 400 }, { STATUS_ETOOLONG, 400 }, { STATUS_ETEMPLATE, 400 },
        { STATUS_EUNSUPPORTED, 400 }, { STATUS_EAUTH, 401 }, { STATUS_ENOTFOUND, 404 }, { STATUS_EBUSY, 429 },
        { STATUS_ENOMEM, 500 }, { STATUS_EDEVICE, 500 },
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        struct api_error e = api_error_make(m[i].st, NULL, "x");
        EXPECTF(api_error_http(&e) == m[i].http, "%s -> %d", status_str(m[i].st), api_error_http(&e));
    }
    struct api_error k = api_error_kind_make(API_ERROR_METHOD, "m");
    EXPECT(api_error_http(&k) == 405);
    k = api_error_kind_make(API_ERROR_BODY_TOO_LARGE, "b");
    EXPECT(api_error_http(&k) == 413);
    struct api_error e = api_error_make(STATUS_EBUSY, "q", "queue \"full\"");
    EXPECT(e.retry_after_s > 0);
    struct strbuf sb = {0};
    api_error_body(&sb, API_OPENAI, &e);
    json_t *o = json_loads(sb.data, 0, NULL);
    EXPECT(o && !strcmp(json_string_value(json_object_get(json_object_get(o, "error"), "message")), "queue \"full\""));
    EXPECT(o && !strcmp(json_string_value(json_object_get(json_object_get(o, "error"), "param")), "q"));
    EXPECT(o && !strcmp(json_string_value(json_object_get(json_object_get(o, "error"), "type")), "rate_limit_error"));
    json_decref(o);
    strbuf_clear(&sb);
    api_error_body(&sb, API_ANTHROPIC, &e);
    o = json_loads(sb.data, 0, NULL);
    EXPECT(o && !strcmp(json_string_value(json_object_get(o, "type")), "error"));
    EXPECT(o && !strcmp(json_string_value(json_object_get(json_object_get(o, "error"), "type")), "rate_limit_error"));
    json_decref(o);
    strbuf_free(&sb);
}

int main(void)
{
    RUN(escapes);
    RUN(random_bytes_always_parse);
    RUN(numbers);
    RUN(utf8_prefix);
    RUN(error_mapping);
    return test_summary();
}
