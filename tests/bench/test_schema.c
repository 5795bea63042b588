/* JSON-schema subset checker: type, properties, required, enum, items, additionalProperties. */
#include "harness.h"

#include <jansson.h>

#include "bench/prompt.h"
#include "base/log.h"
#include "bench/schema.h"

static bool check(const char *schema, const char *value, char *why, size_t n)
{
    json_t *s = json_loads(schema, 0, NULL), *v = json_loads(value, JSON_DECODE_ANY, NULL);
    CHECK(s && v, "bad test JSON");
    bool ok = schema_check(s, v, why, n);
    json_decref(s);
    json_decref(v);
    return ok;
}

static const char *tool = "{\"type\":\"object\",\"properties\":{"
    "\"path\":{\"type\":\"string\"},\"n\":{\"type\":\"integer\"},\"ratio\":{\"type\":\"number\"},"
    "\"mode\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]},\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"}},"
    "\"opt\":{\"type\":[\"string\",\"null\"]},\"flag\":{\"type\":\"boolean\"},"
    "\"sub\":{\"type\":\"object\",\"properties\":{\"k\":{\"type\":\"integer\"}},\"required\":[\"k\"]}},"
    "\"required\":[\"path\"],\"additionalProperties\":false}";

TEST(valid_documents_pass)
{
    char why[200];
    EXPECT(check(tool, "{\"path\":\"x\"}", why, sizeof why));
    EXPECT(check(tool, "{\"path\":\"x\",\"n\":3,\"ratio\":0.5,\"mode\":\"b\",\"tags\":[\"p\",\"q\"],\"opt\":null,"
                       "\"flag\":true,\"sub\":{\"k\":1}}", why, sizeof why));
    EXPECT(check(tool, "{\"path\":\"x\",\"n\":3.0,\"ratio\":2}", why, sizeof why));   // 3.0 is an integer, 2 a number
    EXPECT(why[0] == '\0');
}

TEST(each_violation_is_caught_with_its_path)
{
    char why[200];
    EXPECT(!check(tool, "{}", why, sizeof why));
    EXPECT(strstr(why, "missing required property \"path\"") != NULL);
    EXPECT(!check(tool, "{\"path\":1}", why, sizeof why));
    EXPECT(strstr(why, "$.path: expected string, got integer") != NULL);
    EXPECT(!check(tool, "{\"path\":\"x\",\"n\":1.5}", why, sizeof why));
    EXPECT(strstr(why, "$.n") != NULL);
    EXPECT(!check(tool, "{\"path\":\"x\",\"mode\":\"c\"}", why, sizeof why));
    EXPECT(strstr(why, "not in enum") != NULL);
    EXPECT(!check(tool, "{\"path\":\"x\",\"tags\":[\"a\",2]}", why, sizeof why));
    EXPECTF(strstr(why, "$.tags[1]") != NULL, "%s", why);
    EXPECT(!check(tool, "{\"path\":\"x\",\"extra\":1}", why, sizeof why));
    EXPECT(strstr(why, "unexpected property \"extra\"") != NULL);
    EXPECT(!check(tool, "{\"path\":\"x\",\"opt\":3}", why, sizeof why));
    EXPECT(!check(tool, "{\"path\":\"x\",\"flag\":\"yes\"}", why, sizeof why));
    EXPECT(!check(tool, "{\"path\":\"x\",\"sub\":{}}", why, sizeof why));
    EXPECTF(strstr(why, "$.sub") != NULL, "%s", why);
    EXPECT(!check(tool, "[\"path\"]", why, sizeof why));
}

TEST(additional_properties_schema_and_default)
{
    char why[200];
    const char *s = "{\"type\":\"object\",\"additionalProperties\":{\"type\":\"integer\"}}";
    EXPECT(check(s, "{\"a\":1,\"b\":2}", why, sizeof why));
    EXPECT(!check(s, "{\"a\":1,\"b\":\"x\"}", why, sizeof why));
    EXPECT(check("{\"type\":\"object\"}", "{\"anything\":[1,{}]}", why, sizeof why));   // default: allowed
    EXPECT(check("{}", "42", why, sizeof why));
    EXPECT(check("{\"enum\":[1,\"a\",null]}", "null", why, sizeof why));
    EXPECT(!check("{\"enum\":[1,\"a\",null]}", "2", why, sizeof why));
}

TEST(builtin_tools_have_checkable_schemas)
{
    json_t *tools = prompt_agentic_tools();
    ASSERT(json_array_size(tools) >= 5);
    const json_t *rf = json_object_get(json_object_get(json_array_get(tools, 0), "function"), "parameters");
    json_t *good = json_loads("{\"path\":\"src/a.c\",\"max_lines\":40}", 0, NULL);
    json_t *bad = json_loads("{\"file\":\"src/a.c\"}", 0, NULL);
    EXPECT(schema_check(rf, good, NULL, 0));
    EXPECT(!schema_check(rf, bad, NULL, 0));
    json_decref(good);
    json_decref(bad);
    json_decref(tools);
}

int main(void)
{
    RUN(valid_documents_pass);
    RUN(each_violation_is_caught_with_its_path);
    RUN(additional_properties_schema_and_default);
    RUN(builtin_tools_have_checkable_schemas);
    return test_summary();
}
