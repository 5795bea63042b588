/* cmd_tokenize: `cairn tokenize DIR --text-file F [--add-special]` prints the ids as a JSON array;
 * `cairn detokenize DIR --ids 1,2,3 [--skip-special]` prints the decoded text exactly (no newline
 * added). Both are stable contracts used by tests and outside tooling. Single-threaded.
 *
 *     cairn tokenize models/qwen3 --text-file prompt.txt --add-special   -> [151644, 872, ...]
 *     cairn detokenize models/qwen3 --ids 9707,11,1879                 -> Hello, world
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "base/log.h"
#include "base/mem.h"
#include "text/tokenizer.h"

static int usage(const char *line)
{
    fprintf(stderr, "usage: %s\n", line);
    return 2;
}

/* Both commands' line: DIR, a flag with a value and a switch, in any order. false: not that line. */
static bool parse_line(int argc, char **argv, const char *value_flag, const char **value, const char *switch_flag,
                       bool *on, const char **dir)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], value_flag) && i + 1 < argc) *value = argv[++i];
        else if (!strcmp(argv[i], switch_flag)) *on = true;
        else if (argv[i][0] != '-' && !*dir) *dir = argv[i];
        else return false;
    }
    return *dir && *value;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *dir = NULL, *file = NULL;
    bool add_special = false;
    if (!parse_line(argc, argv, "--text-file", &file, "--add-special", &add_special, &dir))
        return usage("cairn tokenize DIR --text-file F [--add-special]");
    char *text;
    size_t len;
    if (file_read_all(file, &text, &len) != STATUS_OK) return 1;
    struct tokenizer *tk;
    if (tokenizer_load(dir, &tk) != STATUS_OK) { free(text); return 1; }
    int32_t *ids;
    int n;
    enum status st = tokenizer_encode(tk, text, len, add_special, &ids, &n);
    if (st == STATUS_OK) {
        struct strbuf sb = {0};
        strbuf_putc(&sb, '[');
        for (int i = 0; i < n; i++) strbuf_printf(&sb, i ? ", %d" : "%d", ids[i]);
        strbuf_puts(&sb, "]\n");
        fwrite(sb.data, 1, sb.len, stdout);
        strbuf_free(&sb);
        free(ids);
    }
    tokenizer_free(tk);
    free(text);
    return st == STATUS_OK ? 0 : 1;
}

int cmd_detokenize(int argc, char **argv)
{
    const char *dir = NULL, *ids_arg = NULL;
    bool skip = false;
    if (!parse_line(argc, argv, "--ids", &ids_arg, "--skip-special", &skip, &dir))
        return usage("cairn detokenize DIR --ids 1,2,3 [--skip-special]");
    int32_t *ids = NULL;
    int n = 0;
    if (*ids_arg && parse_int_list(ids_arg, &ids, &n) != STATUS_OK) {
        fprintf(stderr, "cairn detokenize: --ids: not a comma-separated list of integers\n");
        return 2;
    }
    struct tokenizer *tk;
    if (tokenizer_load(dir, &tk) != STATUS_OK) { free(ids); return 1; }
    size_t len;
    char *s = tokenizer_decode_n(tk, ids, n, skip, &len);
    fwrite(s, 1, len, stdout);
    free(s);
    tokenizer_free(tk);
    free(ids);
    return 0;
}
