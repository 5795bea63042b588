/* cairn run [MODEL_DIR | --synthetic CONFIG.json] (--prompt TEXT | --chat MESSAGE | --prompt-ids IDS) [options]
 *
 * One generation from the terminal, through the same engine the server uses. Text is streamed
 * to stdout as it is generated; `--output ids` prints the generated ids comma-separated on one
 * line instead (a stable contract for tests and tools; it needs no tokenizer files). Timing goes
 * to stderr. Without MODEL_DIR the built-in default model is used.
 *
 * --synthetic CONFIG.json runs random weights of that shape (model/synth.h; the same values as
 * `cairn synth --config CONFIG.json --seed N`), made in device memory on cuda. A config has no
 * tokenizer: text in or out needs --tokenizer DIR (whose vocabulary must fit the config's);
 * without one only --prompt-ids with --output ids works. --tokenizer also overrides MODEL_DIR's.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/cmd.h"
#include "app/common.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "text/chat.h"
#include "text/pyjson.h"
#include "text/tokenizer.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: cairn run [MODEL_DIR | --synthetic CONFIG.json] (--prompt TEXT | --chat MESSAGE | --prompt-ids 5,17,42) [options]\n"
            "  --synthetic CONFIG    random weights of this config.json's shape (no checkpoint; in GPU memory on cuda)\n"
            "  --synth-seed N        seed of the synthetic weights (default 0, as `cairn synth`)\n"
            "  --tokenizer DIR       tokenizer (and chat template) directory (default: MODEL_DIR; none for --synthetic)\n"
            "  --max-tokens N        tokens to generate (default 128)\n"
            "  --temperature T --top-k K --top-p P --min-p P --seed N --repetition-penalty R\n"
            "  --presence-penalty P --frequency-penalty P\n"
            "  --system TEXT         system message for --chat\n"
            "  --kwargs-json JSON    extra chat-template variables, e.g. '{\"enable_thinking\":false}'\n"
            "  --output text|ids     what to print (default: text; ids for --prompt-ids)\n"
            "  --ignore-eos          keep going past end-of-sequence tokens\n"
            "  --backend ref|cpu|cuda  --threads N\n"
            "  --tensor-parallel N   split the model over N ranks (ref, cpu; cuda: N GPUs over NCCL)\n"
            "  --expert-parallel     MoE: whole experts per rank (with --tensor-parallel N >= 2)\n"
            "  --kv-cache-bytes N    KV cache budget, with hybrid models' state slots (suffixes K, M, G;\n"
            "                        default: free GPU memory on cuda, 1G on cpu)\n"
            "  --kv-dtype f32|f16|bf16|fp8  KV cache dtype (default bf16 on cuda, f32 on cpu; fp8 = f8e4m3,\n"
            "                        half of bf16's memory, no scales)\n");
}

/* Renders --chat through the model's template into prompt text. */
static enum status render_chat(const char *dir, const struct tokenizer *tk, const char *system, const char *message,
                               const char *kwargs_json, char **out)
{
    struct chat_template *ct;
    enum status st = chat_template_load(dir, tk, &ct);
    if (st != STATUS_OK) {
        fprintf(stderr, "run: %s has no chat template\n", dir);
        return st;
    }
    json_t *messages = json_array();
    if (system) json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "system", "content", system));
    json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", message));
    json_t *kwargs = NULL;
    if (kwargs_json) {
        json_error_t err;
        kwargs = pyjson_loads(kwargs_json, 0, &err);
        if (!json_is_object(kwargs)) {
            fprintf(stderr, "run: --kwargs-json: not a JSON object (%s)\n", err.text);
            json_decref(kwargs);
            json_decref(messages);
            chat_template_free(ct);
            return STATUS_EINVAL;
        }
    }
    char *err_msg = NULL;
    st = chat_render(ct, messages, NULL, kwargs, true, out, &err_msg);
    if (st != STATUS_OK) fprintf(stderr, "run: chat template: %s\n", err_msg ? err_msg : status_str(st));
    free(err_msg);
    json_decref(kwargs);
    json_decref(messages);
    chat_template_free(ct);
    return st;
}

int cmd_run(int argc, char **argv)
{
    const char *dir = NULL, *prompt = NULL, *chat = NULL, *ids_s = NULL, *output = NULL;
    const char *system = NULL, *kwargs_json = NULL;
    struct model_flags mf = {0};
    int max_tokens = 128, top_k = 0, seed = -1;
    float temperature = 0.7f, top_p = 1.0f, min_p = 0.0f, rep = 1.0f, presence = 0.0f, frequency = 0.0f;
    bool ignore_eos = false, bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (flag_str(argc, argv, &i, "--prompt", &prompt, &bad) || flag_str(argc, argv, &i, "--chat", &chat, &bad) ||
            flag_str(argc, argv, &i, "--prompt-ids", &ids_s, &bad) || flag_str(argc, argv, &i, "--output", &output, &bad) ||
            flag_str(argc, argv, &i, "--system", &system, &bad) ||
            flag_str(argc, argv, &i, "--kwargs-json", &kwargs_json, &bad) || flag_model(argc, argv, &i, &mf, &bad) ||
            flag_int(argc, argv, &i, "--max-tokens", &max_tokens, &bad) ||
            flag_int(argc, argv, &i, "--top-k", &top_k, &bad) || flag_int(argc, argv, &i, "--seed", &seed, &bad) ||
            flag_float(argc, argv, &i, "--temperature", &temperature, &bad) || flag_float(argc, argv, &i, "--top-p", &top_p, &bad) ||
            flag_float(argc, argv, &i, "--min-p", &min_p, &bad) ||
            flag_float(argc, argv, &i, "--repetition-penalty", &rep, &bad) ||
            flag_float(argc, argv, &i, "--presence-penalty", &presence, &bad) ||
            flag_float(argc, argv, &i, "--frequency-penalty", &frequency, &bad))
            continue;
        if (!strcmp(argv[i], "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(); return 0; }
        else if (argv[i][0] == '-' || dir) { fprintf(stderr, "run: unexpected argument %s\n", argv[i]); bad = true; }
        else dir = argv[i];
    }
    int n_inputs = !!prompt + !!chat + !!ids_s;
    if (bad || n_inputs != 1 || max_tokens <= 0) {
        if (!bad) fprintf(stderr, "run: give exactly one of --prompt, --chat, --prompt-ids, and --max-tokens > 0\n");
        usage();
        return 2;
    }
    if (!output) output = ids_s ? "ids" : "text";
    bool out_ids = !strcmp(output, "ids");
    if (!out_ids && strcmp(output, "text")) { fprintf(stderr, "run: --output must be text or ids\n"); return 2; }
    if (mf.synthetic && dir) { fprintf(stderr, "run: give MODEL_DIR or --synthetic CONFIG.json, not both\n"); return 2; }
    if (!app_model_flags_parse("run", &mf)) return 2;
    if (!dir && !mf.synthetic) dir = app_default_model_dir();
    const char *tok_dir = mf.tokenizer ? mf.tokenizer : dir;   // NULL with --synthetic: no tokenizer unless given

    int rc = 1;
    struct tokenizer *tk = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;
    char *text = NULL;
    bool need_tk = prompt || chat || !out_ids;
    if (need_tk && !tok_dir) {
        fprintf(stderr, "run: --synthetic weights come without a tokenizer: pass --tokenizer DIR (e.g. build/tokenizers/qwen3\n"
                        "     from tests/text/fetch_tokenizers.sh for the Qwen3 configs), or use --prompt-ids with --output ids\n");
        return 2;
    }
    if (need_tk && tokenizer_load(tok_dir, &tk) != STATUS_OK) {
        fprintf(stderr, "run: cannot load the tokenizer of %s (use --prompt-ids and --output ids without one)\n", tok_dir);
        return 1;
    }
    if (ids_s) {
        if (parse_int_list(ids_s, &ids, &n_ids) != STATUS_OK || n_ids == 0) {
            fprintf(stderr, "run: --prompt-ids must be a non-empty list of token ids\n");
            goto out_tk;
        }
    } else {
        if (chat && render_chat(tok_dir, tk, system, chat, kwargs_json, &text) != STATUS_OK) goto out_tk;
        const char *src = chat ? text : prompt;
        // A chat template writes its own special tokens; raw prompts get the tokenizer's.
        if (tokenizer_encode(tk, src, strlen(src), !chat, &ids, &n_ids) != STATUS_OK || n_ids == 0) {
            fprintf(stderr, "run: the prompt encodes to no tokens\n");
            goto out_tk;
        }
    }

    struct app_model am;
    if (app_model_load(&mf, dir, &am) != STATUS_OK) goto out_ids;
    if (tk && app_tokenizer_check(tk, am.m, tok_dir) != STATUS_OK) goto out_model;
    for (int i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= am.m->hp.n_vocab) {
            fprintf(stderr, "run: token id %d out of range [0, %d)\n", ids[i], am.m->hp.n_vocab);
            goto out_model;
        }
    }
    struct engine_cfg cfg = engine_cfg_default();
    cfg.max_running = 1;
    cfg.kv_cache_bytes = mf.kv_bytes;
    cfg.kv_dtype = mf.kv_dtype_s ? mf.kv_dtype : app_default_kv_dtype(am.be);
    struct engine *eng;
    if (app_engine_new(&cfg, &am, &eng) != STATUS_OK) goto out_model;

    struct gen_request req = {
        .prompt = ids, .n_prompt = n_ids, .max_tokens = max_tokens, .ignore_eos = ignore_eos,
        .sampling = {
            .temperature = temperature, .top_k = top_k, .top_p = top_p, .min_p = min_p, .repetition_penalty = rep,
            .presence_penalty = presence, .frequency_penalty = frequency, .seed = (uint64_t)seed, .has_seed = seed >= 0,
        },
    };
    struct token_stream *ts;
    char msg[256] = "";
    enum status st = engine_submit_msg(eng, &req, &ts, msg, sizeof msg);
    if (st != STATUS_OK) {
        fprintf(stderr, "run: %s\n", msg[0] ? msg : status_str(st));
        goto out_engine;
    }
    struct detok *dt = out_ids ? NULL : detok_new(tk, true);
    struct token_event ev;
    bool first = true;
    for (;;) {   // this thread is the engine's: step, then drain what the step emitted
        engine_step(eng);
        while (token_stream_next(ts, &ev, 0) == STATUS_OK) {
            if (ev.has_token) {
                if (out_ids) {
                    printf("%s%d", first ? "" : ",", ev.token);
                } else {
                    char *delta = detok_push(dt, ev.token);
                    fputs(delta, stdout);
                    free(delta);
                }
                fflush(stdout);
                first = false;
            }
            if (ev.done) goto done;
        }
    }
done:
    if (dt) {
        char *rest = detok_flush(dt);
        fputs(rest, stdout);
        free(rest);
        detok_free(dt);
    }
    putchar('\n');
    {
        static const char *reasons[] = { "none", "stop", "length", "canceled", "error" };
        double decode_s = ev.t_done_s - ev.t_first_s;
        fprintf(stderr, "[%d prompt tokens, %d generated, finish %s, TTFT %.1f ms, %.1f tok/s decode]\n", ev.n_prompt,
                ev.n_generated, reasons[ev.finish], ev.t_first_s * 1e3,
                ev.n_generated > 1 && decode_s > 0 ? (ev.n_generated - 1) / decode_s : 0.0);
        rc = ev.finish == FINISH_ERROR ? 1 : 0;
    }
    token_stream_release(ts);
out_engine:
    engine_free(eng);
out_model:
    app_model_close(&am);
out_ids:
    free(ids);
    free(text);
out_tk:
    tokenizer_free(tk);
    return rc;
}
