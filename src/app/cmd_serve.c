/* cmd_serve: `cairn serve [MODEL_DIR | --synthetic CONFIG.json --tokenizer DIR]`: flags,
 * model/engine wiring, signals.
 *
 * The HTTP server starts first (so /health answers 503 "loading" while weights load), then the
 * tokenizer and the chat template are loaded (a bad one fails before minutes of weight loading: a
 * template that cannot be found, read or compiled stops start-up with its own error unless
 * --no-chat-template asks for a completions-only server), the model is opened on
 * the backend and the engine thread started; SIGINT/SIGTERM start a
 * graceful shutdown (no new requests, in-flight ones get --shutdown-grace seconds, the rest are
 * cancelled), then everything is freed in reverse order.
 * --synthetic CONFIG.json serves random weights of that shape (made in GPU memory on cuda) for
 * load tests and benchmarks of 8B-30B shapes without a checkpoint. Every endpoint speaks text, so
 * it needs --tokenizer DIR (e.g. build/tokenizers/qwen3 for the Qwen3 configs); without one serve
 * refuses to start (docs/server.md).
 * --fake (test-only) serves a built-in byte-level fake model without weights.
 */
#include <ctype.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "app/cmd.h"
#include "app/common.h"
#include "base/log.h"
#include "base/mem.h"
#include "engine/engine.h"
#include "server/gen.h"
#include "server/server.h"
#include "text/chat.h"
#include "text/tokenizer.h"
#include "model/arch.h"
#include "model/config.h"
#include "model/model.h"
#include "model/quant_load.h"

static void usage(void)
{
    fprintf(stderr,
        "usage: cairn serve [MODEL | --synthetic CONFIG.json --tokenizer DIR] [options]\n"
        "  MODEL                       a model directory, or a Hugging Face repo id ORG/NAME in the local hub cache\n"
        "                              ($HF_HUB_CACHE or $HF_HOME/hub); also --model MODEL. Default: the built-in model\n"
        "  --max-model-len N, -c N     tokens a request may reach, prompt + output (default: the model's context)\n"
        "  --synthetic CONFIG.json     random weights of this config's shape, no checkpoint (in GPU memory on cuda)\n"
        "  --synth-seed N              seed of the synthetic weights (0, as `cairn synth`)\n"
        "  --tokenizer DIR             tokenizer and chat template directory (default: MODEL_DIR; required with --synthetic)\n"
        "  --host ADDR                 listen address (127.0.0.1)\n"
        "  --port N                    port (8080; 0 = any free port)\n"
        "  --api-key KEY               require 'Authorization: Bearer KEY' or 'x-api-key: KEY' (or CAIRN_API_KEY)\n"
        "  --served-model-name NAME    model name clients send and see (default: directory name); repeat it or\n"
        "                              give a comma list for more names; '*' answers to any model id\n"
        "  --chat-template T           the chat template to use instead of the model's: a file, or the Jinja\n"
        "                              text itself (also --chat-template-file FILE)\n"
        "  --chat-template-kwargs JSON default template kwargs, e.g. '{\"enable_thinking\":false}'\n"
        "  --no-chat-template          serve /v1/completions only, without loading the chat template (without\n"
        "                              this flag a template that cannot be loaded stops start-up)\n"
        "  --runner auto|generate|pooling  pooling: serve /v1/embeddings only (last-token pooling, normalised);\n"
        "                              auto: pooling for a base-model checkpoint (Qwen3Model, no lm_head), else\n"
        "                              generate. Also --task generate|embed|embedding and --embedding(s)\n"
        "  --max-queue N               requests waiting for admission before 429 (256)\n"
        "  --max-queue N               requests waiting beyond the free running slots before 429 (256)\n"
        "  --content-special-tokens M  text|control: a special token's text in message content is tokenized as\n"
        "                              text (default: content cannot forge turns) or as the control token\n"
        "  --cors-origin ORIGIN        send CORS headers for this origin ('*' for any)\n"
        "  --tool-parser NAME          (or --tool-call-parser) hermes|qwen3|qwen3_coder|qwen3.5|llama3|mistral|deepseek_v3|none (auto)\n"
        "  --reasoning-parser NAME     auto|qwen3|deepseek_r1|none (auto: <think> when the template uses it)\n"
        "  --backend NAME              ref|cpu|cuda (default: cuda if a GPU is present, else cpu)\n"
        "  --threads N                 CPU threads\n"
        "  --tensor-parallel N         split the model over N ranks (Megatron layout; also -tp,\n"
        "                              --tensor-parallel-size): ref, cpu, and cuda on GPUs 0..N-1 over NCCL\n"
        "  --expert-parallel           MoE: whole experts per rank instead of each expert split (needs N >= 2)\n"
        "  --kv-cache-bytes N          KV cache budget (suffixes K, M, G; default: free GPU memory after the\n"
        "                              weights minus a margin on cuda, 1G on cpu); hybrid models' recurrent\n"
        "                              state slots come out of it too\n"
        "  --kv-dtype f32|f16|bf16|fp8 KV cache dtype (bf16 on cuda, f32 on cpu; fp8 = f8e4m3: half of\n"
        "                              bf16's memory and reads, no scales; see docs/server.md)\n"
        "  --max-batch-tokens N        tokens per engine step (GPU 8192, CPU 256)\n"
        "  --max-running N             sequences decoding at once (GPU: from KV memory, 64-256; CPU 64)\n"
        "  --max-itl-ms MS|off         inter-token target of running streams while prompts are ingested\n"
        "                              (GPU: 2x the measured decode step; CPU: off)\n"
        "  --no-prefix-cache           do not share prompt blocks across requests\n"
        "  --no-generation-defaults    sampling fields a request leaves out take the API's defaults\n"
        "                              (temperature 1, no top-k/top-p), not the model's generation_config.json\n"
        "  --max-body-bytes N          413 above this (32M)\n"
        "  --http-timeout S            idle connection timeout (60)\n"
        "  --header-timeout S          a request header must be complete S s after the connection opened\n"
        "                              or its previous response ended (10; slowloris)\n"
        "  --body-min-rate B           a body arriving slower than B bytes/s (average, after 5 s) is cut (1024)\n"
        "  --max-connections N         open connections in all (4096)\n"
        "  --per-ip-connections N      open connections from one address (256)\n"
        "  --body-timeout S            a request body must arrive within S seconds (60)\n"
        "  --keepalive S               SSE keep-alive comment interval (5)\n"
        "  --stall-seconds S           /health is 503 when the engine has work but no progress for S s (30)\n"
        "  --shutdown-grace S          seconds in-flight requests may finish on SIGTERM (5)\n"
        "  --test-script FILE          TEST ONLY: scripted outputs [{\"match\",\"output\",\"delay_ms\",\"last\"}]\n"
        "  --fake                      TEST ONLY: serve a built-in fake model (no weights)\n");
}

/* The model creator's sampling defaults (generation_config.json) over the API's, for the fields a
 * request leaves out (vLLM's --generation-config auto does the same); logged, since they change
 * what an unparameterised request gets. */
static void apply_generation_defaults(const struct gen_defaults *gd, struct sampling *sp)
{
    if (!gd->set) return;
    if (gd->set & GEN_TEMPERATURE) sp->temperature = gd->temperature;
    if (gd->set & GEN_TOP_K) sp->top_k = gd->top_k;
    if (gd->set & GEN_TOP_P) sp->top_p = gd->top_p;
    if (gd->set & GEN_MIN_P) sp->min_p = gd->min_p;
    if (gd->set & GEN_REPETITION_PENALTY) sp->repetition_penalty = gd->repetition_penalty;
    char desc[160];
    gen_defaults_describe(gd, desc, sizeof desc);
    LOG_INFO("sampling defaults from generation_config.json:%s (a request's own values win; "
             "--no-generation-defaults for the API's)", desc);
}

/* --served-model-name NAME, repeatable (and NAME may be a comma list): appended to names. */
static bool served_name_flag(int argc, char **argv, int *i, char *names, size_t cap, bool *bad)
{
    const char *v;
    if (!flag_str(argc, argv, i, "--served-model-name", &v, bad)) return false;
    if (*bad) return true;
    size_t len = strlen(names);
    if (len + strlen(v) + 2 > cap) {
        fprintf(stderr, "cairn serve: --served-model-name: too many names\n");
        *bad = true;
        return true;
    }
    snprintf(names + len, cap - len, "%s%s", len ? "," : "", v);
    return true;
}

/* Waits for SIGINT/SIGTERM on its own thread, so that a signal during a long model load ends the
 * process at once (nothing is served yet, so there is nothing to drain); once the model is served
 * the main thread joins it and shuts down gracefully. */
struct sig_waiter {
    sigset_t    sigs;
    atomic_bool serving;
    int         sig;
};

static void *sig_main(void *arg)
{
    struct sig_waiter *w = arg;
    sigwait(&w->sigs, &w->sig);
    if (!atomic_load(&w->serving)) {
        LOG_INFO("signal %d during model load: exiting", w->sig);
        _exit(0);
    }
    return NULL;
}

/* What the Ollama API lists about the model: family from the architecture name ("Qwen3MoeForCausalLM"
 * -> "qwen3moe", Ollama's spelling), size, and the weights' precision. */
static void describe_model(const struct model *m, struct gen_model_info *out)
{
    const char *arch = m->arch ? m->arch->name : "";
    const char *cut = strstr(arch, "For");
    size_t n = cut ? (size_t)(cut - arch) : strlen(arch);
    for (size_t i = 0; i < n && i + 1 < sizeof out->family; i++) out->family[i] = (char)tolower((unsigned char)arch[i]);
    out->n_params = m->n_params;
    out->weight_bytes = m->weight_bytes;
    enum qmode mode;
    int bits = 0, group;
    if (m->quant) quant_cfg_default(m->quant, &mode, &bits, &group);
    if (bits) snprintf(out->quant, sizeof out->quant, "Q%d", bits);
    else
        for (size_t i = 0; i + 1 < sizeof out->quant && dtype_name(m->tok_embed.dtype)[i]; i++)
            out->quant[i] = (char)toupper((unsigned char)dtype_name(m->tok_embed.dtype)[i]);
}

/* The model's chat template, or the one --chat-template names: a file's contents, else (as vLLM
 * does) the argument itself when it reads as Jinja. */
static enum status load_template(const char *dir, const struct tokenizer *tk, const char *arg,
                                 struct chat_template **ct)
{
    if (!arg) return chat_template_load(dir, tk, ct);
    char *text = NULL;
    enum status st;
    if (access(arg, F_OK) == 0) {
        if ((st = file_read_all(arg, &text, NULL)) != STATUS_OK) return st;
    } else if (strstr(arg, "{%") || strstr(arg, "{{")) {
        text = xstrdup(arg);
    } else {
        LOG_ERR("--chat-template %s: no such file (and not a Jinja template)", arg);
        return STATUS_ENOTFOUND;
    }
    st = chat_template_load_with(dir, tk, text, ct);
    if (st == STATUS_OK) LOG_INFO("chat template: %s", access(arg, F_OK) == 0 ? arg : "from --chat-template");
    free(text);
    return st;
}

/* A sentence-transformers layout (modules.json, as Qwen3-Embedding ships): 1 when its Pooling
 * module pools the last token (or it has none), -1 (logged) for another pooling, which cairn does
 * not compute; 0 when the directory has no modules.json. */
static int st_pooling(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/modules.json", dir);
    json_t *mods = json_load_file(path, 0, NULL);
    if (!mods) return 0;
    int verdict = 1;
    size_t i;
    json_t *mod;
    json_array_foreach(mods, i, mod) {
        const char *type = json_string_value(json_object_get(mod, "type"));
        const char *sub = json_string_value(json_object_get(mod, "path"));
        if (!type || !sub || !strstr(type, "Pooling")) continue;
        snprintf(path, sizeof path, "%s/%s/config.json", dir, sub);
        json_t *pc = json_load_file(path, 0, NULL);
        if (pc && !json_is_true(json_object_get(pc, "pooling_mode_lasttoken"))) {
            const char *k;
            json_t *v;
            json_object_foreach(pc, k, v)
                if (json_is_true(v) && !strncmp(k, "pooling_mode_", 13)) {
                    LOG_ERR("%s: %s asks for %s; cairn pools the last token only", dir, path, k);
                    verdict = -1;
                }
        }
        json_decref(pc);
    }
    json_decref(mods);
    return verdict;
}

/* config.json's Matryoshka keys, as vLLM reads them: is_matryoshka (any width) or
 * matryoshka_dimensions (only those). */
static void matryoshka_of(const char *dir, struct gen *g)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (!cfg) return;
    json_t *list = json_object_get(cfg, "matryoshka_dimensions");
    if (json_is_true(json_object_get(cfg, "is_matryoshka"))) g->matryoshka = true;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
        if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) <= g->n_embd &&
            g->n_matryoshka_dims < (int)(sizeof g->matryoshka_dims / sizeof g->matryoshka_dims[0])) {
            g->matryoshka_dims[g->n_matryoshka_dims++] = (int)json_integer_value(v);
            g->matryoshka = true;
        }
    json_decref(cfg);
}

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int cmd_serve(int argc, char **argv)
{
    struct server_cfg sc = { .host = "127.0.0.1", .port = 8080, .shutdown_grace_s = 5 };
    const char *test_script = NULL;
    const char *dir = NULL, *body_bytes = NULL;
    struct model_flags mf = {0};
    int max_queue = 0, max_batch = -1, max_running = -1, max_model_len = -1;
    const char *max_itl_s = NULL, *runner = NULL, *task = NULL, *content_special = NULL;
    bool no_prefix = false, fake = false, bad = false, no_chat_template = false, no_gen_defaults = false;
    const char *template_arg = NULL;
    char names[1024] = "";   // every --served-model-name, comma-joined
    for (int i = 1; i < argc && !bad; i++) {
        if (flag_str(argc, argv, &i, "--host", &sc.host, &bad) || flag_int(argc, argv, &i, "--port", &sc.port, &bad) ||
            flag_str(argc, argv, &i, "--api-key", &sc.api_key, &bad) ||
            served_name_flag(argc, argv, &i, names, sizeof names, &bad) ||
            flag_str(argc, argv, &i, "--chat-template-kwargs", &sc.chat_template_kwargs, &bad) ||
            flag_str(argc, argv, &i, "--chat-template", &template_arg, &bad) ||         // vLLM's
            flag_str(argc, argv, &i, "--chat-template-file", &template_arg, &bad) ||    // llama.cpp's
            flag_int(argc, argv, &i, "--max-queue", &max_queue, &bad) ||
            flag_str(argc, argv, &i, "--cors-origin", &sc.cors_origin, &bad) ||
            flag_str(argc, argv, &i, "--tool-parser", &sc.tool_parser, &bad) ||
            flag_str(argc, argv, &i, "--tool-call-parser", &sc.tool_parser, &bad) ||   // vLLM's spelling
            flag_str(argc, argv, &i, "--model", &dir, &bad) ||                          // vLLM's spelling
            flag_int(argc, argv, &i, "--max-model-len", &max_model_len, &bad) ||        // vLLM's spelling
            flag_int(argc, argv, &i, "-c", &max_model_len, &bad) ||                     // llama.cpp's spelling
            flag_str(argc, argv, &i, "--reasoning-parser", &sc.reasoning_parser, &bad) ||
            flag_model(argc, argv, &i, &mf, &bad) ||
            flag_int(argc, argv, &i, "--max-batch-tokens", &max_batch, &bad) ||
            flag_int(argc, argv, &i, "--max-running", &max_running, &bad) ||
            flag_str(argc, argv, &i, "--max-itl-ms", &max_itl_s, &bad) ||
            flag_str(argc, argv, &i, "--max-body-bytes", &body_bytes, &bad) ||
            flag_int(argc, argv, &i, "--http-timeout", &sc.http_timeout_s, &bad) ||
            flag_int(argc, argv, &i, "--header-timeout", &sc.header_timeout_s, &bad) ||
            flag_int(argc, argv, &i, "--body-min-rate", &sc.body_min_rate, &bad) ||
            flag_int(argc, argv, &i, "--max-connections", &sc.max_connections, &bad) ||
            flag_int(argc, argv, &i, "--per-ip-connections", &sc.per_ip_connections, &bad) ||
            flag_int(argc, argv, &i, "--body-timeout", &sc.body_timeout_s, &bad) ||
            flag_int(argc, argv, &i, "--keepalive", &sc.keepalive_s, &bad) ||
            flag_int(argc, argv, &i, "--stall-seconds", &sc.stall_s, &bad) ||
            flag_int(argc, argv, &i, "--shutdown-grace", &sc.shutdown_grace_s, &bad) ||
            flag_str(argc, argv, &i, "--runner", &runner, &bad) ||                      // vLLM's spelling
            flag_str(argc, argv, &i, "--task", &task, &bad) ||                          // older vLLM's
            flag_str(argc, argv, &i, "--content-special-tokens", &content_special, &bad) ||
            flag_str(argc, argv, &i, "--test-script", &test_script, &bad))
            continue;
        if (!strcmp(argv[i], "--no-prefix-cache")) no_prefix = true;
        else if (!strcmp(argv[i], "--no-generation-defaults")) no_gen_defaults = true;
        else if (!strcmp(argv[i], "--no-chat-template")) no_chat_template = true;
        else if (!strcmp(argv[i], "--fake")) fake = true;
        else if (!strcmp(argv[i], "--embedding") || !strcmp(argv[i], "--embeddings")) runner = "pooling";   // llama.cpp's
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(); return 0; }
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else { fprintf(stderr, "cairn serve: unknown option '%s'\n", argv[i]); bad = true; }
    }
    if (content_special) {
        if (!strcmp(content_special, "control")) sc.content_special_control = true;
        else if (strcmp(content_special, "text")) {
            fprintf(stderr, "cairn serve: --content-special-tokens must be text or control, not '%s'\n", content_special);
            bad = true;
        }
    }
    if (bad) { usage(); return 2; }
    // -1: decided by the model (auto); 0: generate; 1: pooling (embeddings)
    int pooling = -1;
    if (task) {
        if (!strcmp(task, "generate")) pooling = 0;
        else if (!strcmp(task, "embed") || !strcmp(task, "embedding") || !strcmp(task, "embeddings")) pooling = 1;
        else if (strcmp(task, "auto")) {
            fprintf(stderr, "cairn serve: --task takes auto, generate or embed (got '%s')\n", task);
            return 2;
        }
    }
    if (runner) {
        int want = !strcmp(runner, "generate") ? 0 : !strcmp(runner, "pooling") ? 1 : !strcmp(runner, "auto") ? -1 : -2;
        if (want == -2) {
            fprintf(stderr, "cairn serve: --runner takes auto, generate or pooling (got '%s')\n", runner);
            return 2;
        }
        if (task && want != pooling) {
            fprintf(stderr, "cairn serve: --runner %s and --task %s disagree\n", runner, task);
            return 2;
        }
        pooling = want;
    }
    if (fake && pooling == 1) {
        fprintf(stderr, "cairn serve: --fake computes no embeddings\n");
        return 2;
    }
    if (names[0]) sc.served_model_name = names;
    if (!sc.api_key) sc.api_key = getenv("CAIRN_API_KEY");
    if (body_bytes && !app_parse_bytes(body_bytes, &sc.max_body_bytes)) {
        fprintf(stderr, "cairn serve: bad --max-body-bytes '%s'\n", body_bytes);
        return 2;
    }
    if (!app_model_flags_parse("cairn serve", &mf)) return 2;
    if (fake && mf.tensor_parallel > 1) {
        fprintf(stderr, "cairn serve: --tensor-parallel with --fake: the fake engine has no model to split\n");
        return 2;
    }
    struct engine_cfg ec = engine_cfg_default();
    ec.kv_cache_bytes = mf.kv_bytes;
    if (mf.kv_dtype_s) ec.kv_dtype = mf.kv_dtype;
    if (max_queue > 0) ec.max_queue = max_queue;
    if (max_batch != -1 && max_batch < 1) {
        fprintf(stderr, "cairn serve: --max-batch-tokens must be at least 1 (got %d)\n", max_batch);
        return 2;
    }
    if (max_running != -1 && max_running < 1) {
        fprintf(stderr, "cairn serve: --max-running must be at least 1 (got %d)\n", max_running);
        return 2;
    }
    if (max_model_len != -1 && max_model_len < 2) {
        fprintf(stderr, "cairn serve: --max-model-len must be at least 2 tokens (got %d)\n", max_model_len);
        return 2;
    }
    if (max_model_len > 0) ec.max_context = max_model_len;
    if (max_batch > 0) ec.max_batch_tokens = max_batch;
    if (max_running > 0) ec.max_running = max_running;
    if (max_itl_s && !app_parse_itl_ms(max_itl_s, &ec.max_itl_ms)) {
        fprintf(stderr, "cairn serve: --max-itl-ms takes a number of milliseconds > 0 or 'off' (got '%s')\n", max_itl_s);
        return 2;
    }
    if (no_prefix) ec.prefix_cache = false;
    const char *synthetic = mf.synthetic, *tok_dir = mf.tokenizer;
    if (synthetic && (fake || dir)) {
        fprintf(stderr, "cairn serve: --synthetic CONFIG.json replaces MODEL_DIR (and --fake)\n");
        return 2;
    }
    if (synthetic && !tok_dir) {
        fprintf(stderr, "cairn serve: --synthetic needs --tokenizer DIR: every endpoint takes and returns text.\n"
                        "  For the Qwen3 configs: bash tests/text/fetch_tokenizers.sh qwen3, then --tokenizer build/tokenizers/qwen3\n"
                        "  (any tokenizer whose ids fit the config's vocab_size works; `cairn run --synthetic` needs none\n"
                        "  with --prompt-ids and --output ids)\n");
        return 2;
    }
    if (tok_dir && !is_dir(tok_dir)) {
        LOG_ERR("tokenizer directory '%s' not found", tok_dir);
        return 1;
    }
    char model_dir[PATH_MAX], model_name[256] = "";
    if (!fake && !synthetic) {
        if (!dir && !is_dir(app_default_model_dir())) {
            LOG_ERR("the built-in default model is missing (%s); pass MODEL_DIR", app_default_model_dir());
            return 1;
        }
        if (!app_resolve_model(dir ? dir : app_default_model_dir(), model_dir, sizeof model_dir, model_name,
                               sizeof model_name))
            return 1;
        dir = model_dir;
    }

    // Signals: blocked in every thread (inherited); the signal thread waits for them (sig_main).
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);   // a closed terminal or a config-reload habit must not kill live streams
    static struct sig_waiter waiter;
    waiter.sigs = sigs;
    atomic_init(&waiter.serving, false);
    pthread_t sig_thread;
    if (pthread_create(&sig_thread, NULL, sig_main, &waiter) != 0) {
        LOG_ERR("cannot start the signal thread");
        return 1;
    }

    int rc = 1;
    struct server *srv = NULL;
    struct gen *g = NULL;
    struct app_model am = {0};
    struct engine *eng = NULL;
    struct tokenizer *tk = NULL;
    struct chat_template *ct = NULL;
    struct gen_script *script = NULL;
    struct gen *served = NULL;   // g, or g wrapped with the test script
    if (test_script && gen_script_load(test_script, &script) != STATUS_OK) return 1;
    if (server_new(&sc, &srv) != STATUS_OK) { gen_script_free(script); return 1; }
    if (fake) {
        struct gen_fake_cfg fc = { .token_us = 1000, .n_ctx = max_model_len > 0 ? max_model_len : 4096, .max_live = max_queue };
        const char *tu = getenv("CAIRN_FAKE_TOKEN_US");
        if (tu) fc.token_us = atoi(tu);
        if (gen_fake_new(&fc, &g) != STATUS_OK) goto out;
        const char *load_ms = getenv("CAIRN_FAKE_LOAD_MS");   // test-only: simulate a slow load
        if (load_ms) {
            struct timespec ts = { atoi(load_ms) / 1000, (long)(atoi(load_ms) % 1000) * 1000000L };
            nanosleep(&ts, NULL);
        }
    } else {
        if (!tok_dir) tok_dir = dir;
        if (tokenizer_load(tok_dir, &tk) != STATUS_OK) goto out;
        if (app_model_load(&mf, dir, &am) != STATUS_OK)
            goto out;
        int st_pool = synthetic ? 0 : st_pooling(dir);
        if (pooling == -1) pooling = model_is_embedder(am.m) || st_pool == 1;
        if (pooling == 1 && st_pool == -1) goto out;
        if (pooling == 0 && !model_has_lm_head(am.m)) {
            LOG_ERR("%s has no lm_head (a base model): it cannot generate; serve it with --runner pooling", dir);
            goto out;
        }
        if (pooling) LOG_INFO("runner: pooling: /v1/embeddings only (last token, L2-normalised; %d dimensions)",
                              am.m->hp.d_model);
        if (!no_chat_template && !pooling && load_template(tok_dir, tk, template_arg, &ct) != STATUS_OK) {
            // the template's own error is logged above; chat requests would all fail, so refuse to start
            LOG_ERR("%s: the chat template cannot be loaded (see above); fix it, or pass --no-chat-template "
                    "to serve /v1/completions only", tok_dir);
            goto out;
        }
        if (no_chat_template && !pooling) LOG_INFO("--no-chat-template: serving /v1/completions only");
        if (app_tokenizer_check(tk, am.m, tok_dir) != STATUS_OK) goto out;
        if (!mf.kv_dtype_s) ec.kv_dtype = app_default_kv_dtype(am.be);
        if (app_engine_new(&ec, &am, &eng) != STATUS_OK) goto out;
        if (engine_start(eng) != STATUS_OK) goto out;
        // Default served name: the repo id or the directory's name, or the config's file name without .json.
        char name[256];
        if (synthetic) {
            const char *base = strrchr(synthetic, '/');
            snprintf(name, sizeof name, "%s", base && base[1] ? base + 1 : synthetic);
            size_t nl = strlen(name);
            if (nl > 5 && !strcmp(name + nl - 5, ".json")) name[nl - 5] = 0;
        } else {
            snprintf(name, sizeof name, "%s", model_name);
        }
        if (gen_engine_new(eng, tk, ct, name, &g) != STATUS_OK) goto out;
        g->embedder = pooling == 1;
        g->n_embd = am.m->hp.d_model;
        // Qwen3-Embedding is trained with Matryoshka representation learning (its model card:
        // any output size up to the hidden size), so truncation is allowed for the Qwen3 family
        g->matryoshka = g->embedder && (!strcmp(am.m->hp.arch, "Qwen3ForCausalLM") || !strcmp(am.m->hp.arch, "Qwen3Model"));
        describe_model(am.m, &g->info);
        if (!no_gen_defaults) apply_generation_defaults(&am.m->hp.gen, &g->sampling_default);
        if (g->embedder && !synthetic) matryoshka_of(dir, g);
    }
    served = g;
    if (script) {
        served = gen_script_wrap(script, g);
        script = NULL;
    }
    atomic_store(&waiter.serving, true);
    server_set_gen(srv, served);
    pthread_join(sig_thread, NULL);
    LOG_INFO("signal %d: shutting down (grace %d s)", waiter.sig, sc.shutdown_grace_s);
    rc = 0;
out:
    server_free(srv);          // joins every connection thread; no request uses g after this
    if (eng) engine_shutdown(eng);   // before gen_free: the engine thread may still use g's constraint vocabulary
    if (served != g) gen_free(served);
    gen_script_free(script);
    gen_free(g);
    if (eng) { engine_shutdown(eng); engine_free(eng); }
    chat_template_free(ct);
    tokenizer_free(tk);
    if (am.m || am.be) app_model_close(&am);
    return rc;
}
