/* test_chat_load: where chat_template_load finds the template and the special tokens, as
 * transformers does: chat_template.jinja over tokenizer_config.json, named template lists
 * ("default", "tool_use" when tools are given), chat_template.json, AddedToken objects for bos/eos.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "harness.h"
#include "text/chat.h"

static char dir[64];

static void put(const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void rm(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    unlink(p);
}

/* renders one user message "hi" (with tools when with_tools) and compares */
static bool renders(bool with_tools, const char *want)
{
    struct chat_template *ct = NULL;
    if (chat_template_load(dir, NULL, &ct) != STATUS_OK) { fprintf(stderr, "    load failed\n"); return false; }
    json_t *msgs = json_loads("[{\"role\": \"user\", \"content\": \"hi\"}]", 0, NULL);
    json_t *tools = with_tools ? json_loads("[{\"type\": \"function\", \"function\": {\"name\": \"f\"}}]", 0, NULL) : NULL;
    char *out = NULL, *err = NULL;
    enum status st = chat_render(ct, msgs, tools, NULL, true, &out, &err);
    bool ok = st == STATUS_OK && !strcmp(out, want);
    if (!ok) fprintf(stderr, "    got [%s] (%s), want [%s]\n", out ? out : "", err ? err : "", want);
    free(out);
    free(err);
    json_decref(msgs);
    json_decref(tools);
    chat_template_free(ct);
    return ok;
}

TEST(sources_and_tokens)
{
    strcpy(dir, "/tmp/cairn_chatloadXXXXXX");
    ASSERT(mkdtemp(dir) != NULL);
    struct chat_template *ct = NULL;
    EXPECT(chat_template_load(dir, NULL, &ct) == STATUS_ENOTFOUND);

    put("tokenizer_config.json",
        "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<B>\"}, \"eos_token\": \"<E>\", \"unk_token\": null,"
        " \"chat_template\": \"{{ bos_token }}{{ messages[0].content }}{{ eos_token }}{{ unk_token is defined }}\"}");
    EXPECT(renders(false, "<B>hi<E>False"));

    put("chat_template.jinja", "jinja:{{ messages[0].content }}\n");   // one trailing newline is dropped
    EXPECT(renders(false, "jinja:hi"));
    rm("chat_template.jinja");

    put("tokenizer_config.json",
        "{\"eos_token\": \"<E>\", \"chat_template\": [{\"name\": \"default\", \"template\": \"D{{ tools is none }}\"},"
        " {\"name\": \"tool_use\", \"template\": \"T{{ tools | length }}\"}]}");
    EXPECT(renders(false, "DTrue"));
    EXPECT(renders(true, "T1"));

    // additional_chat_templates/tool_use.jinja beside chat_template.jinja (transformers' named templates)
    char sub[128];
    snprintf(sub, sizeof sub, "%s/additional_chat_templates", dir);
    ASSERT(mkdir(sub, 0700) == 0);
    put("chat_template.jinja", "J{{ tools is none }}");
    put("additional_chat_templates/tool_use.jinja", "U{{ tools[0].function.name }}");
    EXPECT(renders(false, "JTrue"));
    EXPECT(renders(true, "Uf"));
    rm("chat_template.jinja");
    // only a tool_use template: chats without tools raise as transformers does, with tools it renders
    put("tokenizer_config.json", "{\"eos_token\": \"<E>\"}");
    EXPECT(renders(true, "Uf"));
    EXPECT(!renders(false, ""));
    rm("additional_chat_templates/tool_use.jinja");
    rmdir(sub);
    put("tokenizer_config.json", "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}]}");
    EXPECT(renders(true, "T"));
    EXPECT(!renders(false, ""));

    // additional_special_tokens is in the context (a list, AddedToken objects as their content); a
    // config as transformers writes it (model_max_length int(1e30)) and a NaN load
    put("tokenizer_config.json",
        "{\"model_max_length\": 1000000000000000019884624838656, \"x\": NaN, \"additional_special_tokens\": [\"<a>\","
        " {\"content\": \"<b>\", \"special\": true}], \"chat_template\": \"{{ additional_special_tokens }}\"}");
    EXPECT(renders(false, "['<a>', '<b>']"));

    put("tokenizer_config.json", "{\"eos_token\": \"<E>\"}");
    put("chat_template.json", "{\"chat_template\": \"json:{{ eos_token }}\"}");
    EXPECT(renders(false, "json:<E>"));
    rm("chat_template.json");

    put("tokenizer_config.json", "{\"chat_template\": \"{% if %}\"}");
    EXPECT(chat_template_load(dir, NULL, &ct) == STATUS_EFORMAT);
    put("tokenizer_config.json", "{not json");
    EXPECT(chat_template_load(dir, NULL, &ct) == STATUS_EFORMAT);
    rm("tokenizer_config.json");
    rmdir(dir);
}

TEST(render_input_errors)
{
    struct chat_template *ct = NULL;
    ASSERT(chat_template_from_source("{{ messages | length }}", NULL, NULL, &ct) == STATUS_OK);
    json_t *obj = json_object();
    char *out = NULL, *err = NULL;
    EXPECT(chat_render(ct, obj, NULL, NULL, true, &out, &err) == STATUS_EINVAL);
    EXPECT(err != NULL);
    free(err);
    err = NULL;
    json_t *arr = json_array();
    EXPECT(chat_render(ct, arr, NULL, arr, true, &out, &err) == STATUS_EINVAL);   // kwargs must be an object
    free(err);
    json_decref(obj);
    json_decref(arr);
    chat_template_free(ct);
}

int main(void)
{
    log_set_level(LOG_LEVEL_OFF);
    RUN(sources_and_tokens);
    RUN(render_input_errors);
    return test_summary();
}
