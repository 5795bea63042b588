/* cmd_template: `cairn template DIR --messages-file M.json [--tools-file T.json]
 * [--kwargs-json '{"enable_thinking":false}'] [--no-generation-prompt]`
 *
 * Renders the chat template of DIR (see text/chat.h) and prints the prompt exactly, with nothing
 * added. A template that raises exits 1 with its message on stderr; bad usage exits 2.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "app/cmd.h"
#include "text/chat.h"
#include "text/pyjson.h"

static void usage(void)
{
    fprintf(stderr, "usage: cairn template DIR --messages-file M.json [--tools-file T.json] "
                    "[--kwargs-json JSON] [--no-generation-prompt]\n");
}

static json_t *load(const char *path, const char *what)
{
    json_error_t e;
    json_t *j = pyjson_load_file(path, JSON_DECODE_ANY, &e);
    if (!j) fprintf(stderr, "cairn template: %s %s:%d: %s\n", what, path, e.line, e.text);
    return j;
}

int cmd_template(int argc, char **argv)
{
    const char *dir = NULL, *msgs_path = NULL, *tools_path = NULL, *kwargs_text = NULL;
    bool gen = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--messages-file") && i + 1 < argc) msgs_path = argv[++i];
        else if (!strcmp(a, "--tools-file") && i + 1 < argc) tools_path = argv[++i];
        else if (!strcmp(a, "--kwargs-json") && i + 1 < argc) kwargs_text = argv[++i];
        else if (!strcmp(a, "--no-generation-prompt")) gen = false;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else if (a[0] != '-' && !dir) dir = a;
        else { fprintf(stderr, "cairn template: unexpected argument '%s'\n", a); usage(); return 2; }
    }
    if (!dir || !msgs_path) { usage(); return 2; }

    int rc = 1;
    json_t *msgs = NULL, *tools = NULL, *kwargs = NULL;
    struct chat_template *ct = NULL;
    msgs = load(msgs_path, "messages");
    if (!msgs) goto out;
    if (!json_is_array(msgs)) {
        fprintf(stderr, "cairn template: %s: messages must be a JSON array\n", msgs_path);
        goto out;
    }
    if (tools_path && !(tools = load(tools_path, "tools"))) goto out;
    if (json_is_null(tools)) {   // a file holding `null`: no tools, as tools=None
        json_decref(tools);
        tools = NULL;
    }
    if (kwargs_text) {
        json_error_t e;
        kwargs = pyjson_loads(kwargs_text, 0, &e);
        if (!json_is_object(kwargs)) {
            fprintf(stderr, "cairn template: --kwargs-json must be a JSON object (%s)\n", kwargs ? "not an object" : e.text);
            rc = 2;
            goto out;
        }
    }
    if (chat_template_load(dir, NULL, &ct) != STATUS_OK) {
        fprintf(stderr, "cairn template: %s: no usable chat template\n", dir);
        goto out;
    }
    char *text = NULL, *err = NULL;
    enum status st = chat_render(ct, msgs, tools, kwargs, gen, &text, &err);
    if (st != STATUS_OK) {
        fprintf(stderr, "cairn template: %s: %s\n", status_str(st), err ? err : "render failed");
        free(err);
        goto out;
    }
    fwrite(text, 1, strlen(text), stdout);
    fflush(stdout);
    free(text);
    rc = 0;
out:
    chat_template_free(ct);
    json_decref(msgs);
    json_decref(tools);
    json_decref(kwargs);
    return rc;
}
