/* test_chat_golden: chat templates render byte-identical to transformers' apply_chat_template.
 *
 * Reads tests/text/golden/tpl_<name>.json (made by tools/make_template_goldens.py on the GPU
 * machine): the tokenizer_config's template and special tokens, and per conversation the text or
 * the exception. Each template is loaded through chat_template_load from a temporary directory
 * holding that tokenizer_config.json; cases that raised in transformers must fail here too, with
 * the same message when the template called raise_exception. The "extra" section holds our own
 * feature templates (tests/text/golden/tpl_extra_*.jinja).
 */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base/log.h"
#include "harness.h"
#include "text/chat.h"

static int n_cases, n_raise;

static void show_diff(const char *name, const char *id, const char *want, const char *got)
{
    size_t i = 0;
    while (want[i] && got[i] && want[i] == got[i]) i++;
    size_t from = i > 60 ? i - 60 : 0;
    fprintf(stderr, "  %s/%s: first difference at byte %zu\n    want: ...%.120s\n    got:  ...%.120s\n", name, id, i,
            want + from, got + from);
}

static void check_case(const char *name, struct chat_template *ct, json_t *c)
{
    const char *id = json_string_value(json_object_get(c, "id"));
    json_t *tools = json_object_get(c, "tools");
    if (json_is_null(tools)) tools = NULL;
    json_t *kwargs = json_object_get(c, "kwargs");
    bool gen = json_is_true(json_object_get(c, "add_generation_prompt"));
    const char *want = json_string_value(json_object_get(c, "text"));
    const char *want_err = json_string_value(json_object_get(c, "error"));
    char *got = NULL, *err = NULL;
    enum status st = chat_render(ct, json_object_get(c, "messages"), tools, kwargs, gen, &got, &err);
    n_cases++;
    if (want) {
        EXPECTF(st == STATUS_OK, "%s/%s: render failed: %s", name, id, err ? err : "?");
        if (st == STATUS_OK) {
            bool same = !strcmp(want, got);
            EXPECTF(same, "%s/%s: output differs", name, id);
            if (!same) show_diff(name, id, want, got);
        }
    } else {
        n_raise++;
        EXPECTF(st != STATUS_OK, "%s/%s: transformers raised (%s) but we rendered", name, id, want_err);
        // raise_exception(msg) reaches the caller as "TemplateError: msg"
        if (st != STATUS_OK && want_err && !strncmp(want_err, "TemplateError: ", 15))
            EXPECTF(err && !strcmp(err, want_err + 15), "%s/%s: message '%s', want '%s'", name, id, err ? err : "",
                    want_err + 15);
    }
    free(got);
    free(err);
}

static void check_file(const char *path)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    EXPECTF(doc != NULL, "%s: %s", path, jerr.text);
    if (!doc) return;
    const char *name = json_string_value(json_object_get(doc, "name"));
    json_t *config = json_object_get(doc, "config");

    char dir[] = "/tmp/cairn_tplXXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char cfg_path[256];
    snprintf(cfg_path, sizeof cfg_path, "%s/tokenizer_config.json", dir);
    ASSERT(json_dump_file(config, cfg_path, 0) == 0);

    struct chat_template *ct = NULL;
    enum status st = chat_template_load(dir, NULL, &ct);
    json_t *cases = json_object_get(doc, "cases"), *c;
    size_t i;
    if (!json_object_get(config, "chat_template")) {
        // transformers raises for every conversation: we have no template either
        EXPECTF(st == STATUS_ENOTFOUND, "%s: expected ENOTFOUND, got %s", name, status_str(st));
        json_array_foreach(cases, i, c) EXPECTF(json_object_get(c, "error") != NULL, "%s: golden renders without a template", name);
    } else {
        EXPECTF(st == STATUS_OK, "%s: chat_template_load: %s", name, status_str(st));
        if (st == STATUS_OK) json_array_foreach(cases, i, c) check_case(name, ct, c);
    }
    chat_template_free(ct);

    json_t *extra = json_object_get(doc, "extra");
    json_array_foreach(extra, i, c) {
        char tpath[512];
        snprintf(tpath, sizeof tpath, "tests/text/golden/%s", json_string_value(json_object_get(c, "template")));
        FILE *f = fopen(tpath, "rb");
        EXPECTF(f != NULL, "missing %s", tpath);
        if (!f) continue;
        static char src[1 << 20];
        size_t n = fread(src, 1, sizeof src - 1, f);
        fclose(f);
        src[n] = 0;
        struct chat_template *xt = NULL;
        st = chat_template_from_source(src, json_string_value(json_object_get(config, "bos_token")),
                                       json_string_value(json_object_get(config, "eos_token")), &xt);
        EXPECTF(st == STATUS_OK, "%s: does not parse", tpath);
        if (st == STATUS_OK) check_case(tpath, xt, c);
        chat_template_free(xt);
    }
    unlink(cfg_path);
    rmdir(dir);
    json_decref(doc);
}

TEST(goldens)
{
    glob_t g;
    int rc = glob("tests/text/golden/tpl_*.json", 0, NULL, &g);
    ASSERT(rc == 0 && g.gl_pathc >= 7);
    int n_files = 0;
    for (size_t i = 0; i < g.gl_pathc; i++) {
        if (strstr(g.gl_pathv[i], "tpl_snippets.json")) continue;   // test_jinja_snippets' file
        check_file(g.gl_pathv[i]);
        n_files++;
    }
    EXPECT(n_files >= 7);
    globfree(&g);
    fprintf(stderr, "  %d conversations checked, %d of them raise\n", n_cases, n_raise);
    EXPECT(n_cases >= 7 * 20);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    RUN(goldens);
    return test_summary();
}
