/* main: dispatches `cairn <command> ...` to app/cmd_<command>.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "backend/backend.h"
#include "base/log.h"

// Weak so that the binary links while a subcommand's file is being written; each one is defined
// in its own cmd_*.c, and a missing one is reported at run time.
#pragma weak cmd_serve
#pragma weak cmd_run
#pragma weak cmd_chat
#pragma weak cmd_bench
#pragma weak cmd_logits
#pragma weak cmd_tokenize
#pragma weak cmd_detokenize
#pragma weak cmd_template
#pragma weak cmd_synth
#pragma weak cmd_info
#pragma weak cmd_quantize

struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
};

static const struct command commands[] = {
    { "serve",      cmd_serve,      "[MODEL_DIR]  OpenAI/Anthropic-compatible HTTP server" },
    { "run",        cmd_run,        "[MODEL_DIR] --prompt TEXT | --prompt-ids IDS | --chat MSG  one generation" },
    { "chat",       cmd_chat,       "[MODEL_DIR]  interactive chat in the terminal" },
    { "bench",      cmd_bench,      "--url URL  benchmark any OpenAI-compatible server" },
    { "logits",     cmd_logits,     "MODEL_DIR --ids IDS --out FILE  dump logits (f32) of every position" },
    { "tokenize",   cmd_tokenize,   "DIR --text-file F [--add-special]  print token ids as JSON" },
    { "detokenize", cmd_detokenize, "DIR --ids IDS [--skip-special]  print text" },
    { "template",   cmd_template,   "DIR --messages-file M.json  render the chat template" },
    { "synth",      cmd_synth,      "--arch ARCH --config CONFIG.json --out DIR  random-weight checkpoint" },
    { "info",       cmd_info,       "MODEL_DIR  architecture, parameters, memory" },
    { "quantize",   cmd_quantize,   "IN_DIR OUT_DIR [--bits 4] [--group-size 64] [--mode M] [--recipe R]  MLX-format quantization" },
};

static void usage(FILE *f)
{
    fprintf(f, "usage: cairn <command> [options]    (cairn --version)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    log_init_from_env();
    if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
        printf("cairn %s (backends: %s)\n", CAIRN_VERSION, backend_list());
        return 0;
    }
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name)) continue;
        if (!commands[i].fn) {
            fprintf(stderr, "cairn: command '%s' is not built into this binary\n", argv[1]);
            return 2;
        }
        return commands[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "cairn: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
