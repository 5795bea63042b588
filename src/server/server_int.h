/* server_int: what server.c shares with the API files (api_openai.c, api_anthropic.c,
 * params.c): the server and request structs, response helpers and the parameter validators.
 * Not for use outside src/server/. */
#ifndef CAIRN_SERVER_SERVER_INT_H
#define CAIRN_SERVER_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <microhttpd.h>

#include "base/mem.h"
#include "server/constrain.h"
#include "server/errors.h"
#include "server/gen.h"
#include "server/job.h"
#include "server/metrics.h"
#include "server/server.h"
#include "text/tokenizer.h"
#include "text/toolparse.h"

struct server {
    struct server_cfg   cfg;
    char               *host, *api_key, *served_name, *cors_origin;   // served_name: the first name, what responses say
    char              **names;               // every --served-model-name but '*'
    int                 n_names;
    bool                any_model;           // '*' given: every model id is answered
    json_t             *kwargs_default;      // object
    struct MHD_Daemon  *d;
    int                 port;
    _Atomic(struct gen *) g;
    struct metrics     *m;
    atomic_bool         shutting_down;            // no new requests
    atomic_bool         cancel_all;          // grace period over: cancel in-flight generations
    atomic_uint_fast64_t next_id;
    atomic_int          n_active;            // requests being handled
    enum tool_family    family;
    bool                family_forced;
    int                 reasoning_mode;      // -1 auto, 0 off, 1 on
    struct grammar_cache *grammars;          // compiled output constraints by source hash (constrain.h)
    pthread_mutex_t     mu;                  // jobs registry
    struct req        **live;
    int                 n_live, cap_live;
    atomic_int          n_suspended;         // connections handed to a request worker
    atomic_int          n_workers;           // request worker threads alive
    pthread_mutex_t     watch_mu;            // the connection watch list (conn_watch in server.c)
    struct conn_watch  *watches;
    pthread_t           sweeper;
    bool                sweeper_started;
    atomic_bool         sweeper_stop;
};

enum route {
    ROUTE_NONE = 0, ROUTE_HEALTH, ROUTE_METRICS, ROUTE_MODELS, ROUTE_CHAT, ROUTE_COMPLETIONS,
    ROUTE_MESSAGES, ROUTE_COUNT_TOKENS, ROUTE_TOKENIZE, ROUTE_DETOKENIZE, ROUTE_RESPONSES, ROUTE_EMBEDDINGS,
    ROUTE_OLLAMA_CHAT, ROUTE_OLLAMA_GENERATE, ROUTE_OLLAMA_TAGS, ROUTE_OLLAMA_SHOW, ROUTE_OLLAMA_VERSION, ROUTE_OLLAMA_PS,
    ROUTE_ROOT,
};

struct req {
    struct server          *s;
    struct gen             *g;
    struct MHD_Connection  *conn;
    uint64_t                id;
    char                    method[16];
    char                    path[160];
    enum route              route;
    enum api_kind           api;
    struct strbuf           body;
    size_t                  n_body;         // body bytes received so far, kept or not
    bool                    too_large, too_slow;
    bool                    has_early;      // answer early_err once the body is read (keeps keep-alive)
    bool                    is_preflight;   // CORS OPTIONS
    struct api_error        early_err;
    double                  t0_s;
    int                     http_status;
    atomic_int              refs;
    // generation
    struct job             *job;
    bool                    streaming;
    bool                    sse_done;       // fill wrote the stream's end: fill is not called again
    bool                    ndjson;         // an NDJSON stream (Ollama): no keep-alive lines, clients parse every line
    struct strbuf           out;            // SSE bytes not yet handed to MHD
    size_t                  out_pos;
    double                  last_write_s;
    void                  (*fill)(struct req *r);   // job events -> SSE bytes in out
    void                   *wstate;         // API writer state
    void                  (*wstate_free)(void *wstate);
    json_t                 *tools;          // kept alive for the parsers
    int                     n_prompt, n_cached, n_generated;
    double                  ttft_s;
    // hand-off to the request's worker thread (server.c): while the connection is suspended the
    // worker owns the request
    pthread_mutex_t         hand_mu;
    int                     hand;           // HAND_* in server.c
    bool                    deferred;       // responses are kept in pending and queued on resume
    struct MHD_Response    *pending;
    int                     pending_code;
    enum MHD_Result         answer_ret;
    bool                    peer_gone;      // the client closed its socket mid-request
    struct conn_watch      *watch;          // this connection's timers
    // the rendered chat prompt's byte ranges that came from message content (srv_render_ex): a
    // special token's text there is tokenized as text (srv_encode_prompt)
    const char             *lit_prompt;     // the prompt they belong to (borrowed; compared by address)
    struct tk_literal      *lit;
    int                     n_lit;
};

/* Responses (server.c). */
enum MHD_Result srv_send_json(struct req *r, int code, const char *body, size_t len);
enum MHD_Result srv_send_error(struct req *r, const struct api_error *e);
enum MHD_Result srv_start_sse(struct req *r);
/* The same stream plumbing for NDJSON (application/x-ndjson, one JSON object per line). */
enum MHD_Result srv_start_ndjson(struct req *r);
bool            srv_peer_closed(struct req *r);
/* Waits for a non-streaming job, cancelling it when the client leaves. false: client gone. */
bool            srv_wait_job(struct req *r);
/* Answers a started job with the API's writer state w (r->wstate, freed by w_free): streamed
 * through fill (as SSE, or NDJSON when ndjson), or once done as whole(r) builds it (a job with a
 * failed choice is answered with the error instead: whole sees only jobs whose choices all ran). */
enum MHD_Result srv_answer_job(struct req *r, void *w, void (*w_free)(void *), bool stream, bool ndjson,
                               void (*fill)(struct req *r), enum MHD_Result (*whole)(struct req *r));
/* Request id, "chatcmpl-..." style. */
void            srv_make_id(struct req *r, const char *prefix, char *out, size_t cap);
/* Whether a request's model id is one this server answers to (a served name, the model's id, any
 * id under '*'). */
bool            srv_model_known(struct server *s, const char *id);
/* Effective tool family / reasoning for this model. */
enum tool_family srv_tool_family(struct server *s);
bool            srv_reasoning(struct server *s);
void            srv_job_hooks(struct req *r, struct job_cfg *jc);
void            srv_register(struct req *r);

/* APIs. */
enum MHD_Result api_openai_chat(struct req *r, json_t *body);
enum MHD_Result api_openai_completions(struct req *r, json_t *body);
enum MHD_Result api_anthropic_messages(struct req *r, json_t *body);
enum MHD_Result api_anthropic_count_tokens(struct req *r, json_t *body);
enum MHD_Result api_responses(struct req *r, json_t *body);
enum MHD_Result api_openai_embeddings(struct req *r, json_t *body);   // api_embed.c
enum MHD_Result api_ollama_chat(struct req *r, json_t *body);
enum MHD_Result api_ollama_generate(struct req *r, json_t *body);
enum MHD_Result api_ollama_show(struct req *r, json_t *body);
/* GET /api/tags, /api/ps and /api/version (answered on MHD's thread: they never wait on the model). */
enum MHD_Result api_ollama_get(struct req *r);

/* Parameter validation (params.c): each returns true when absent (writes the default) or valid,
 * else fills *e with a 400 naming the field. */
bool param_int(json_t *o, const char *key, long long lo, long long hi, long long def, long long *out, struct api_error *e);
bool param_num(json_t *o, const char *key, double lo, double hi, double def, double *out, struct api_error *e);
bool param_bool(json_t *o, const char *key, bool def, bool *out, struct api_error *e);
bool param_str(json_t *o, const char *key, bool required, const char **out, struct api_error *e);
/* stop: a string or an array of at most 16 strings. */
bool param_stops(json_t *o, const char *key, const char **out, int *n, struct api_error *e);
/* Sampling fields shared by the APIs (temperature, top_p, top_k, min_p, penalties, seed); a field
 * left out (or null) takes def's value (the served model's gen->sampling_default). */
bool param_sampling(json_t *o, const struct sampling *def, struct sampling *sp, struct api_error *e);
/* The request's model name must be the served one (404 otherwise); absent is fine. */
bool param_model(struct req *r, json_t *o, struct api_error *e);
/* Template kwargs: server defaults overlaid with the request's object (new reference). */
json_t *param_kwargs(struct req *r, json_t *req_kwargs);
/* EINVAL for an empty prompt, ETOOLONG (400 with the counts) when the prompt alone fills the
 * context; *max_out: max_tokens clamped to what is left (all of it when not given). */
bool param_prompt_fits(struct req *r, int n_prompt, long long max_tokens, bool max_given, long long *max_out,
                       struct api_error *e);


/* Generation set-up shared by the APIs (api_common.c). */
struct gen_params {
    const char        *prompt_text;     // rendered prompt (chat) or NULL when prompt_ids given
    int32_t          **prompt_ids;      // completions: one id list per prompt (borrowed)
    int               *n_prompt_ids;
    int                n_prompts;       // 1 for chat
    long long          max_tokens;
    bool               max_given;
    struct sampling    sp;
    struct logit_bias *bias;            // borrowed
    int                n_bias;
    const char        *stops[16];
    int                n_stops;
    int                n;               // choices per prompt
    int                n_logprobs;      // 0 none, -1 chosen only, k top
    json_t            *tools;           // borrowed; kept alive by r->tools
    enum tool_family   family;          // NONE: no tool parsing
    bool               reasoning;
    const char        *tool_id_prefix;
    bool               add_special;     // encode prompt_text with BOS etc.
    int                max_tool_calls;  // 0: any; 1: parallel_tool_calls false / disable_parallel_tool_use
    const int32_t     *stop_ids;        // extra stop token ids (borrowed)
    int                n_stop_ids;
    bool               ignore_eos;
    int                min_tokens;
    struct constraint_grammar *grammar; // output constraint (a reference; NULL: none), from grammar_field
    const char        *grammar_field;
    bool               keep_tokens;     // the job keeps prompt and output ids (job_tokens)
    bool               grammar_has_text;   // the grammar allows free text (strict tools under auto): think blocks still split
};
/* Encodes a prompt; the one srv_render_ex returned keeps message content's special-token text as
 * text (unless --content-special-tokens control). */
enum status srv_encode_prompt(struct req *r, const char *text, bool add_special, int32_t **ids, int *n);
/* Tokenizes, checks the context, submits; false with *e on failure. r->job is set on success. */
bool srv_start_job(struct req *r, struct gen_params *p, struct api_error *e);
/* How an API spells tools and tool_choice. */
struct tool_api {
    json_t            *(*convert)(json_t *tool, size_t i, struct api_error *e);   // -> OpenAI shape (new ref), json null to leave it out, or NULL
    const char        *(*choice_mode)(json_t *tool_choice, struct api_error *e);  // its mode, or NULL with *e
    const char          *not_array;         // message when "tools" is not an array
    const char *const   *constrained;       // modes that force a call (NULL-terminated): srv_tool_constraint
    const char          *invalid_choice;    // message for any other mode but auto and none
};
/* The request's "tools" (absent or null: none), converted for the templates (*out: a new array,
 * NULL when empty), and its tool_choice. *use: tools given and tool_choice auto. */
bool srv_tools(json_t *body, const struct tool_api *api, json_t **out, bool *use, struct api_error *e);
/* OpenAI chat messages validated and normalized for the template (content as text, media in history
 * as placeholders, tool results matched to earlier calls, developer -> system); new reference, or
 * NULL with a 400 in *e. */
json_t *srv_chat_messages(json_t *msgs, struct api_error *e);
/* OpenAI's chat tools ({type:function, function:{name, parameters}}); Ollama's /api/chat spells them the same. */
extern const struct tool_api srv_chat_tool_api;
/* A fill-in-the-middle prompt around a hole (prefix, suffix) in the model's FIM markers (caller
 * frees *out); false with a 400 naming field when the model has no FIM tokens. */
bool srv_fim_prompt(struct req *r, const char *prefix, const char *suffix, const char *field, char **out, struct api_error *e);
/* After srv_chat_params: a tool_choice that forces a call (api->constrained modes) becomes the
 * tool-call envelope grammar in p->grammar (a reference the caller frees); strict tools under auto
 * become the envelope with free text around it, or, beside an output format already in
 * p->grammar, the union of that format and the calls; false with a 400. */
bool srv_tool_constraint(struct req *r, json_t *body, const struct tool_api *api, struct gen_params *p,
                         struct api_error *e);
/* Renders a chat prompt with the generation prompt added (tools: NULL unless they are used);
 * false with a 400 naming the template's message. */
bool srv_render(struct req *r, json_t *msgs, json_t *tools, json_t *kwargs, char **prompt, struct api_error *e);
/* srv_render with the choice of the generation prompt (add_generation_prompt: false). */
bool srv_render_ex(struct req *r, json_t *msgs, json_t *tools, json_t *kwargs, bool add_gen_prompt, char **prompt,
                   struct api_error *e);
/* reasoning_effort (OpenAI) / reasoning.effort (Responses): none, minimal and low turn the
 * template's thinking switch off in kwargs; medium and high leave it; other values are a 400. */
bool srv_reasoning_effort(json_t *effort, const char *field, json_t *kwargs, struct api_error *e);
/* vLLM's stop_token_ids: *ids (caller frees) of valid token ids, or a 400. */
bool srv_stop_token_ids(struct req *r, json_t *body, int32_t **ids, int *n, struct api_error *e);
/* A chat request's generation set-up: the rendered prompt, its tools (*tools moves to r->tools),
 * the model's tool family when use_tools, reasoning as the model and --reasoning-parser say. */
void srv_chat_params(struct req *r, struct gen_params *p, const char *prompt, json_t **tools, bool use_tools,
                     const char *tool_id_prefix);
/* Text of a content value: a string, or the concatenated "text" of an array of text parts.
 * false with *e (naming field) for other shapes or part types. Caller frees *out. */
bool content_text(json_t *content, const char *field, bool allow_null, char **out, struct api_error *e);
/* content_text, also counting the media parts (images, documents, audio) it replaced by a short
 * placeholder (the models served are text-only; the history must keep working). */
bool content_text_media(json_t *content, const char *field, bool allow_null, char **out, int *n_media,
                        struct api_error *e);
/* Whether a content part type is media (image, document, file, audio) in either API. */
bool content_is_media(const char *type);
/* Appends the placeholder of a media part and logs a warning. */
void content_media_placeholder(struct strbuf *out, const char *type);

#endif
