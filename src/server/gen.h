/* gen: what the server needs from a model, as one small table of functions: tokenize, detokenize,
 * render the chat template, and generate (submit / next / cancel / release / stats).
 *
 * Two providers implement it: gen_engine.c (the real thing: tokenizer.h, chat.h, engine.h) and
 * gen_fake.c (test-only: a byte-level tokenizer, a ChatML renderer and a word generator with the
 * engine's stream semantics, so the HTTP layer can be tested without model weights). gen_script.c
 * (test-only, --test-script) wraps either with scripted outputs. The server cannot tell them apart. All functions are thread-safe; a stream is used by one thread at a time
 * (engine_cancel semantics: cancel may come from any thread).
 *
 *     struct gen *g;  gen_fake_new(&cfg, &g);
 *     g->ops->submit(g->self, &req, &stream);  g->ops->next(stream, &ev, 100);  ...
 *     g->ops->release(stream);  gen_free(g);
 */
#ifndef CAIRN_SERVER_GEN_H
#define CAIRN_SERVER_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "base/status.h"
#include "engine/engine.h"
#include "text/fim.h"
#include "text/output.h"

struct tk_literal;   // text/tokenizer.h

struct gen_req {
    struct gen_request base;
    int            test_delay_ms; // test-only (set by gen_script; the fake provider delays its first token)
    /* Constrained decoding: the output must match this grammar (borrowed; the provider makes each
     * stream's matcher from it, which keeps it alive). after_think: it starts after the reasoning
     * block's close marker (the prompt opened one). Providers without it answer EUNSUPPORTED. */
    const struct constraint_grammar *grammar;
    bool           grammar_after_think;
};

struct gen_ops {
    enum status (*encode)(void *self, const char *text, size_t len, bool add_special, int32_t **ids, int *n);
    /* Optional pair (NULL: nothing to protect): encode, with the special tokens' texts inside the
     * literal ranges tokenized as text (tokenizer_encode_literal); the special tokens' texts,
     * NULL-terminated, living with the provider. */
    enum status (*encode_literal)(void *self, const char *text, size_t len, bool add_special,
                                  const struct tk_literal *literal, int n_literal, int32_t **ids, int *n);
    const char *const *(*special_texts)(void *self);
    char       *(*decode)(void *self, const int32_t *ids, int n, bool skip_special);
    void       *(*detok_new)(void *self);
    char       *(*detok_push)(void *detok, int32_t id);   // heap string, may be ""
    char       *(*detok_flush)(void *detok);
    void        (*detok_free)(void *detok);
    const char *(*token_str)(void *self, int32_t id);
    enum status (*render)(void *self, json_t *messages, json_t *tools, json_t *kwargs, bool add_gen_prompt,
                          char **out_text, char **err_msg);
    /* On failure msg (may be NULL) gets a one-line reason, with token counts for ETOOLONG. */
    enum status (*submit)(void *self, const struct gen_req *req, void **stream, char *msg, size_t msg_len);
    enum status (*next)(void *stream, struct token_event *ev, int timeout_ms);   // EBUSY on timeout
    void        (*cancel)(void *self, void *stream);    // client gone: ends with FINISH_CANCELED
    void        (*end_on_stop_string)(void *self, void *stream);   // ends with FINISH_STOP_MATCHED
    void        (*release)(void *stream);
    void        (*stats)(void *self, struct engine_stats *out);
    /* An embedding request's result (req.base.embed) once its stream ended with FINISH_EMBEDDED:
     * n_embd floats owned by the stream; 0 otherwise. NULL: the provider computes no embeddings. */
    int         (*embedding)(void *stream, const float **out);
    void        (*destroy)(void *self);
};

/* What the Ollama API's /api/tags, /api/show and /api/ps describe (filled by whoever loads the
 * model; zeros and "" when unknown, e.g. the fake provider). */
struct gen_model_info {
    char     family[32];            // "qwen3", "qwen3moe", "llama": the architecture name before "For", lowercased
    uint64_t n_params;
    uint64_t weight_bytes;
    char     quant[16];             // "BF16", "F32", "Q4" (MLX-quantized, its bits)
};

struct gen {
    const struct gen_ops *ops;
    void                 *self;
    char                  model_id[256];    // default served name
    struct output_format  fmt;              // think markers and tool-call family (output_format_detect at load)
    bool                  chat;             // a chat template is loaded (false: --no-chat-template, completions only)
    int                   n_ctx;            // context length in tokens
    int                   n_vocab;
    bool                  add_bos;          // completions: encode with add_special
    int32_t               eot_id;           // token that ends a chat turn (message-end hints), -1 if unknown
    /* Embeddings (set by cmd_serve from --runner; docs/server.md, "Embeddings"): an embedder serves
     * /v1/embeddings and no generation route; a generator the reverse. */
    bool                  embedder;
    int                   n_embd;           // the model's hidden size: the width of an embedding
    bool                  matryoshka;       // `dimensions` may truncate (the model was trained for it)
    struct fim_format     fim;              // fill-in-the-middle markers (fim_detect at load); unsupported: none
    const char           *template_src;     // chat template source (borrowed; NULL without one)
    struct gen_model_info info;
    /* What the sampling fields a request leaves out take (param_sampling): the APIs' defaults
     * (temperature 1, nothing filtered or penalised), overlaid by cmd_serve with the model's
     * generation_config.json values unless --no-generation-defaults. */
    struct sampling       sampling_default;
    int                   matryoshka_dims[16];   // when n_matryoshka_dims > 0: the only widths allowed
    int                   n_matryoshka_dims;
};

struct gen_fake_cfg {
    int token_us;       // simulated decode time per token (per stream)
    int n_ctx;
    int max_live;       // streams at once before submit answers EBUSY (0: 256)
};

enum status gen_fake_new(const struct gen_fake_cfg *cfg, struct gen **out);

struct tokenizer;
struct chat_template;

/* Wraps a started engine with its tokenizer and chat template (ct may be NULL: chat routes then
 * answer 400). Borrows all three; they must outlive the gen. model_id: default served name. */
enum status gen_engine_new(struct engine *eng, const struct tokenizer *tk, const struct chat_template *ct,
                           const char *model_id, struct gen **out);

/* Test-only scripted outputs (gen_script.c): loads [{"match","output","delay_ms"}] from path
 * (EFORMAT, logged, when malformed), then wraps a provider: a request whose decoded prompt
 * contains a match gets that output as its tokens. The wrapper owns sc and borrows inner, which
 * must outlive it; gen_free(wrapper) leaves inner alone. */
struct gen_script;
enum status gen_script_load(const char *path, struct gen_script **out);
void        gen_script_free(struct gen_script *sc);
struct gen *gen_script_wrap(struct gen_script *sc, struct gen *inner);

void gen_free(struct gen *g);

#endif
