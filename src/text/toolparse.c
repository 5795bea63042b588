/* toolparse: incremental tool-call parsing; see toolparse.h.
 *
 * Design: all input is appended to one buffer; `pos` is how far it has been decided. Every state
 * looks at buf[pos..] and either consumes a decided piece (emitting events) or waits for more text.
 * Decisions are taken only on complete evidence (a whole marker, or text that can no longer become
 * one), which is why any chunking yields the same events. JSON bodies are scanned by a resumable
 * depth scanner (strings and escapes aware) that finds the "name" and "arguments"/"parameters"
 * values at depth 1, so argument text streams out while it is generated; the finished object is
 * then checked with jansson.
 */
#include "text/toolparse.h"

#include <ctype.h>
#include <string.h>

#include "base/log.h"
#include "base/mem.h"
#include "server/jsonw.h"

#define DS_CALLS_BEGIN "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_CALLS_END   "<\xEF\xBD\x9Ctool\xE2\x96\x81" "calls\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_CALL_BEGIN  "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "begin\xEF\xBD\x9C>"
#define DS_CALL_END    "<\xEF\xBD\x9Ctool\xE2\x96\x81" "call\xE2\x96\x81" "end\xEF\xBD\x9C>"
#define DS_SEP         "<\xEF\xBD\x9Ctool\xE2\x96\x81" "sep\xEF\xBD\x9C>"

enum tp_state {
    ST_TEXT = 0,
    ST_TC_OPEN,       // after <tool_call>: JSON or XML body?
    ST_JSON,          // object scanner: {"name":..., "arguments":...}
    ST_RAW_ARGS,      // value scanner: the arguments object itself (name known)
    ST_TC_CLOSE,      // expect </tool_call>
    ST_LLAMA_AFTER,   // after a Llama 3 call: ';' or another call
    ST_XML_FUNC,      // expect <function=NAME>
    ST_XML_BODY,      // expect <parameter=P> or </function>
    ST_XML_VALUE,     // inside a parameter value
    ST_MI_BEGIN,      // after [TOOL_CALLS]
    ST_MI_ARRAY,      // inside [ ... ] between call objects
    ST_MI_NAME,       // name[ARGS]
    ST_DS_CALLS,      // between DeepSeek calls
    ST_DS_HEAD,       // after call begin, up to tool_sep
    ST_DS_NAME,       // "function<sep>NAME\n"
    ST_DS_FENCE,      // "```json" before the arguments
    ST_DS_AFTER,      // after the arguments: ``` and call end
};

// depth-1 states of the object scanner
enum { D1_KEY, D1_IN_KEY, D1_COLON, D1_VALUE, D1_IN_STR, D1_IN_NESTED, D1_IN_SCALAR, D1_AFTER };

struct jscan {
    size_t p;             // next byte to scan
    size_t start;         // first byte of the value ('{')
    int    depth;
    bool   in_str, esc;
    int    d1;
    size_t key_start;
    char   key[32];
    size_t val_start;
    int    val_role;      // 0 other, 1 name, 2 arguments
    size_t args_start, args_end;   // args_end = 0 while open
    bool   has_args;
    bool   args_streaming;
    size_t args_emitted;
};

struct toolparse {
    enum tool_family f;
    const json_t    *tools;
    int             *n_calls;
    void           (*emit)(void *ctx, const struct tp_event *ev);
    void            *ctx;
    struct strbuf    buf;
    size_t           pos;
    enum tp_state    st;
    enum tp_state    after;          // where ST_JSON / ST_RAW_ARGS go when done
    size_t           raw_start;      // where the current call's markup began (for give-back)
    bool             committed;      // CALL_START emitted for the current call
    size_t           call_start;     // where the committed call's markup began (CALL_CUT gives it back)
    size_t           last_end;       // buffer position when the last call ended
    int              index;          // current call index
    bool             text_seen;      // non-whitespace text emitted (Llama 3: calls only at start)
    bool             llama_probe;    // current JSON call started without a marker
    struct jscan     js;
    // XML
    char             xml_param[128];
    bool             xml_first;
    bool             xml_stream;     // string-typed value: streamed as it arrives
    bool             xml_lead_done;  // the value's leading newline has been dealt with
    size_t           xml_emitted;    // value bytes before this offset were streamed
    char             fname[256];
};

/* ==== Families ==== */

static const char *family_names[TOOL_FAMILY_COUNT] = {
    "none", "hermes", "qwen3_coder", "llama3", "mistral", "deepseek_v3",
};

const char *tool_family_name(enum tool_family f)
{
    return f >= 0 && f < TOOL_FAMILY_COUNT ? family_names[f] : "none";
}

bool tool_family_from_name(const char *name, enum tool_family *out)
{
    static const struct { const char *alias; enum tool_family f; } aliases[] = {
        { "none", TOOL_FAMILY_NONE }, { "hermes", TOOL_FAMILY_HERMES }, { "qwen3", TOOL_FAMILY_HERMES },
        { "qwen2.5", TOOL_FAMILY_HERMES }, { "qwen3_coder", TOOL_FAMILY_QWEN3_CODER },
        { "qwen3-coder", TOOL_FAMILY_QWEN3_CODER }, { "qwen3.5", TOOL_FAMILY_QWEN3_CODER },
        { "qwen3_xml", TOOL_FAMILY_QWEN3_CODER }, { "xml", TOOL_FAMILY_QWEN3_CODER },
        { "llama3", TOOL_FAMILY_LLAMA3 }, { "llama3_json", TOOL_FAMILY_LLAMA3 },
        { "mistral", TOOL_FAMILY_MISTRAL }, { "deepseek_v3", TOOL_FAMILY_DEEPSEEK_V3 },
        { "deepseek-v3", TOOL_FAMILY_DEEPSEEK_V3 }, { "deepseek", TOOL_FAMILY_DEEPSEEK_V3 },
    };
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcmp(name, aliases[i].alias)) { *out = aliases[i].f; return true; }
    return false;
}

/* ==== Buffer helpers ==== */

static const char *B(struct toolparse *tp) { return tp->buf.data ? tp->buf.data : ""; }

static void emit_text(struct toolparse *tp, size_t from, size_t to)
{
    if (to <= from) return;
    for (size_t i = from; i < to; i++)
        if (!isspace((unsigned char)B(tp)[i])) { tp->text_seen = true; break; }
    struct tp_event ev = { .kind = TP_TEXT, .text = B(tp) + from, .len = to - from };
    tp->emit(tp->ctx, &ev);
}

static void emit_args(struct toolparse *tp, const char *s, size_t n)
{
    if (!n) return;
    struct tp_event ev = { .kind = TP_CALL_ARGS, .index = tp->index, .text = s, .len = n };
    tp->emit(tp->ctx, &ev);
}

static void commit(struct toolparse *tp, const char *name)
{
    tp->index = (*tp->n_calls)++;
    tp->committed = true;
    tp->call_start = tp->raw_start > tp->last_end ? tp->raw_start : tp->last_end;
    struct tp_event ev = { .kind = TP_CALL_START, .index = tp->index, .name = name };
    tp->emit(tp->ctx, &ev);
}

static void end_call(struct toolparse *tp)
{
    struct tp_event ev = { .kind = TP_CALL_END, .index = tp->index };
    tp->emit(tp->ctx, &ev);
    tp->committed = false;
    tp->last_end = tp->pos;
}

/* 1: buf[pos..] starts with lit; 0: it cannot; -1: undecided (buffer is a proper prefix). */
static int match_at(struct toolparse *tp, size_t pos, const char *lit)
{
    size_t n = strlen(lit), avail = tp->buf.len - pos;
    size_t k = avail < n ? avail : n;
    if (memcmp(B(tp) + pos, lit, k)) return 0;
    return avail >= n ? 1 : -1;
}

/* Skips whitespace from pos; false when the buffer ends first. */
static bool skip_ws(struct toolparse *tp)
{
    while (tp->pos < tp->buf.len && isspace((unsigned char)B(tp)[tp->pos])) tp->pos++;
    return tp->pos < tp->buf.len;
}

static const char *find(struct toolparse *tp, size_t from, const char *lit)
{
    if (from >= tp->buf.len) return NULL;
    return memmem(B(tp) + from, tp->buf.len - from, lit, strlen(lit));
}

/* Malformed before the name was known: give the markup back as text and rescan after its start. */
static void give_back(struct toolparse *tp, size_t upto, const char *why)
{
    if (!tp->llama_probe)
        LOG_WARN("tool call (%s) malformed: %s; passing it through as text", tool_family_name(tp->f), why);
    if (upto <= tp->raw_start) upto = tp->raw_start + 1;
    if (upto > tp->buf.len) upto = tp->buf.len;
    emit_text(tp, tp->raw_start, upto);
    tp->pos = upto;
    tp->llama_probe = false;
    tp->st = ST_TEXT;
}

/* Malformed after the name was emitted: close the call with what we have, resume as text. */
static void abandon(struct toolparse *tp, const char *why)
{
    LOG_WARN("tool call %d (%s) malformed after its name: %s; closing it", tp->index,
             tool_family_name(tp->f), why);
    end_call(tp);
    tp->st = ST_TEXT;
}

/* ==== Tool schema lookup ==== */

static const json_t *tool_params(const json_t *tools, const char *name)
{
    if (!json_is_array(tools)) return NULL;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        if (!fn) fn = t;   // Anthropic shape
        const char *n = json_string_value(json_object_get(fn, "name"));
        if (!n || strcmp(n, name)) continue;
        const json_t *p = json_object_get(fn, "parameters");
        if (!p) p = json_object_get(fn, "input_schema");
        return p;
    }
    return NULL;
}

static bool tool_known(const json_t *tools, const char *name)
{
    if (!json_is_array(tools)) return false;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        if (!fn) fn = t;
        const char *n = json_string_value(json_object_get(fn, "name"));
        if (n && !strcmp(n, name)) return true;
    }
    return false;
}

/* ==== JSON scanners ==== */

static void js_reset(struct jscan *js, size_t start)
{
    memset(js, 0, sizeof *js);
    js->p = start;
    js->start = start;
}

/* Streams argument bytes scanned so far (object scanner and raw scanner). */
static void js_stream_args(struct toolparse *tp)
{
    struct jscan *js = &tp->js;
    if (!js->args_streaming || !tp->committed) return;
    size_t end = js->args_end ? js->args_end : js->p;
    if (end > js->args_emitted) {
        emit_args(tp, B(tp) + js->args_emitted, end - js->args_emitted);
        js->args_emitted = end;
    }
}

static void js_value_done(struct toolparse *tp, size_t end)
{
    struct jscan *js = &tp->js;
    if (js->val_role == 1 && !tp->committed) {
        json_t *v = json_loadb(B(tp) + js->val_start, end - js->val_start, JSON_DECODE_ANY, NULL);
        const char *name = json_string_value(v);
        if (name && *name && (!tp->llama_probe || tool_known(tp->tools, name))) {
            snprintf(tp->fname, sizeof tp->fname, "%s", name);
            commit(tp, tp->fname);
            if (js->has_args && !js->args_end) {   // arguments already open (unusual order)
                js->args_streaming = B(tp)[js->args_start] != '"';
                js->args_emitted = js->args_start;
            }
        }
        json_decref(v);
    } else if (js->val_role == 2) {
        js->args_end = end;
    }
}

/* One byte inside a JSON string: 1 when it closes the string, -1 when it is a raw control
 * character (not valid JSON), 0 otherwise. */
static int js_string_byte(struct jscan *js, char c)
{
    if (js->esc) js->esc = false;
    else if (c == '\\') js->esc = true;
    else if (c == '"') { js->in_str = false; return 1; }
    else if ((unsigned char)c < 0x20) return -1;
    return 0;
}

/* One byte of a nested value outside its strings: opens a string or tracks the bracket depth.
 * True when the byte closes a bracket back down to depth `outer`. */
static bool js_nested_byte(struct jscan *js, char c, int outer)
{
    if (c == '"') js->in_str = true;
    else if (c == '{' || c == '[') js->depth++;
    else if (c == '}' || c == ']') return --js->depth == outer;
    return false;
}

/* Object scanner. 1: complete (js.p past '}'); 0: need more; -1: malformed at js.p. */
static int js_object(struct toolparse *tp)
{
    struct jscan *js = &tp->js;
    const char *b = B(tp);
    size_t n = tp->buf.len;
    while (js->p < n) {
        char c = b[js->p];
        if (js->in_str) {
            int r = js_string_byte(js, c);
            if (r < 0) return -1;
            if (r > 0) {
                if (js->depth == 1 && js->d1 == D1_IN_KEY) {
                    size_t kl = js->p - js->key_start;
                    if (kl >= sizeof js->key) kl = sizeof js->key - 1;
                    memcpy(js->key, b + js->key_start, kl);
                    js->key[kl] = 0;
                    js->d1 = D1_COLON;
                } else if (js->depth == 1 && js->d1 == D1_IN_STR) {
                    js_value_done(tp, js->p + 1);
                    js->d1 = D1_AFTER;
                }
            }
            js->p++;
            continue;
        }
        if (js->depth == 0) {
            if (isspace((unsigned char)c)) { js->p++; continue; }
            if (c != '{') return -1;
            js->start = js->p;
            js->depth = 1;
            js->d1 = D1_KEY;
            js->p++;
            continue;
        }
        if (js->depth == 1) {
            switch (js->d1) {
            case D1_KEY:
                if (isspace((unsigned char)c) || c == ',') break;
                if (c == '}') { js->p++; js->depth = 0; return 1; }
                if (c != '"') return -1;
                js->in_str = true;
                js->key_start = js->p + 1;
                js->d1 = D1_IN_KEY;
                break;
            case D1_COLON:
                if (isspace((unsigned char)c)) break;
                if (c != ':') return -1;
                js->d1 = D1_VALUE;
                break;
            case D1_VALUE:
                if (isspace((unsigned char)c)) break;
                js->val_start = js->p;
                js->val_role = !strcmp(js->key, "name") ? 1
                             : (!strcmp(js->key, "arguments") || !strcmp(js->key, "parameters")) ? 2 : 0;
                if (js->val_role == 2) {
                    js->has_args = true;
                    js->args_start = js->p;
                    js->args_end = 0;
                    js->args_streaming = c == '{' || c == '[';
                    js->args_emitted = js->p;
                }
                if (c == '"') { js->in_str = true; js->d1 = D1_IN_STR; }
                else if (c == '{' || c == '[') { js->depth++; js->d1 = D1_IN_NESTED; }
                else if (c == '}' || c == ',' || c == ':' || c == ']') return -1;
                else js->d1 = D1_IN_SCALAR;
                break;
            case D1_IN_SCALAR:
                if (c == ',' || c == '}' || isspace((unsigned char)c)) {
                    js_value_done(tp, js->p);
                    js->d1 = D1_AFTER;
                    continue;   // re-examine c in D1_AFTER
                }
                break;
            case D1_AFTER:
                if (isspace((unsigned char)c)) break;
                if (c == ',') { js->d1 = D1_KEY; break; }
                if (c == '}') { js->p++; js->depth = 0; js_stream_args(tp); return 1; }
                return -1;
            default:
                return -1;
            }
            js->p++;
            continue;
        }
        // depth >= 2: inside a nested value of a depth-1 key
        if (js_nested_byte(js, c, 1)) {
            js_value_done(tp, js->p + 1);
            js->d1 = D1_AFTER;
        }
        js->p++;
    }
    js_stream_args(tp);
    return 0;
}

/* Raw value scanner for an arguments object. 1 complete, 0 need more, -1 malformed. */
static int js_raw(struct toolparse *tp)
{
    struct jscan *js = &tp->js;
    const char *b = B(tp);
    size_t n = tp->buf.len;
    while (js->p < n) {
        char c = b[js->p];
        if (js->in_str) {
            js_string_byte(js, c);   // raw control characters are left to the final parse
            js->p++;
            continue;
        }
        if (js->depth == 0) {
            if (isspace((unsigned char)c)) { js->p++; continue; }
            if (c != '{' && c != '[') return -1;
            js->args_start = js->args_emitted = js->p;
            js->args_streaming = true;
            js->has_args = true;
        }
        if (js_nested_byte(js, c, 0)) {
            js->p++;
            js->args_end = js->p;
            js_stream_args(tp);
            return 1;
        }
        js->p++;
    }
    js_stream_args(tp);
    return 0;
}

/* The object call finished: validate and close. */
static void json_call_done(struct toolparse *tp)
{
    struct jscan *js = &tp->js;
    json_error_t jerr;
    json_t *obj = json_loadb(B(tp) + js->start, js->p - js->start, 0, &jerr);
    if (!tp->committed) {
        if (!obj || !json_string_value(json_object_get(obj, "name"))) {
            json_decref(obj);
            give_back(tp, js->p, "no function name");
            return;
        }
        // name was not committed (Llama 3 content that merely looks like a call)
        json_decref(obj);
        give_back(tp, js->p, "not a declared tool");
        return;
    }
    if (!obj) LOG_WARN("tool call %d: arguments are not valid JSON (%s)", tp->index, jerr.text);
    if (!js->has_args) emit_args(tp, "{}", 2);
    else if (!js->args_streaming) {
        json_t *a = json_object_get(obj, "arguments");
        if (!a) a = json_object_get(obj, "parameters");
        if (json_is_string(a)) emit_args(tp, json_string_value(a), json_string_length(a));
        else if (a) {
            char *s = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
            if (s) emit_args(tp, s, strlen(s));
            free(s);
        } else emit_args(tp, "{}", 2);
    }
    json_decref(obj);
    end_call(tp);
    tp->pos = js->p;
    tp->st = tp->after;
}

/* ==== XML parameters (Qwen3-Coder) ==== */

static void xml_emit_param(struct toolparse *tp, const char *v, size_t len)
{
    struct strbuf sb = {0};
    strbuf_puts(&sb, tp->xml_first ? "{" : ", ");
    tp->xml_first = false;
    json_t *k = json_string(tp->xml_param);
    char *ks = json_dumps(k, JSON_ENCODE_ANY);
    strbuf_puts(&sb, ks ? ks : "\"\"");
    strbuf_puts(&sb, ": ");
    free(ks);
    json_decref(k);
    // value: the schema type decides; otherwise JSON when it parses, else a string
    const json_t *props = json_object_get(tool_params(tp->tools, tp->fname), "properties");
    const char *type = json_string_value(json_object_get(json_object_get(props, tp->xml_param), "type"));
    json_t *val = NULL;
    // The Qwen3.5/3.6 templates render history values with Jinja's |string, i.e. Python's str():
    // True, False, None. A model imitates them, so for typed parameters they mean the JSON values.
    bool typed = type && strcmp(type, "string");
    if (typed && len == 4 && !memcmp(v, "True", 4)) val = json_true();
    else if (typed && len == 5 && !memcmp(v, "False", 5)) val = json_false();
    else if (typed && len == 4 && !memcmp(v, "None", 4)) val = json_null();
    else if (!type || strcmp(type, "string")) val = json_loadb(v, len, JSON_DECODE_ANY, NULL);
    if (!val) val = json_stringn_nocheck(v, len);
    char *vs = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
    strbuf_puts(&sb, vs ? vs : "null");
    free(vs);
    json_decref(val);
    emit_args(tp, sb.data, sb.len);
    strbuf_free(&sb);
}

static const char *xml_param_type(struct toolparse *tp)
{
    const json_t *props = json_object_get(tool_params(tp->tools, tp->fname), "properties");
    return json_string_value(json_object_get(json_object_get(props, tp->xml_param), "type"));
}

/* Streams value text as JSON string content (no quotes). */
static void xml_emit_escaped(struct toolparse *tp, size_t from, size_t to)
{
    if (to <= from) return;
    struct strbuf sb = {0};
    jsonw_str(&sb, B(tp) + from, to - from);
    emit_args(tp, sb.data + 1, sb.len - 2);
    strbuf_free(&sb);
}

/* Opens a streamed string value: {"p": " */
static void xml_stream_begin(struct toolparse *tp)
{
    struct strbuf sb = {0};
    strbuf_puts(&sb, tp->xml_first ? "{" : ", ");
    tp->xml_first = false;
    jsonw_str(&sb, tp->xml_param, strlen(tp->xml_param));
    strbuf_puts(&sb, ": \"");
    emit_args(tp, sb.data, sb.len);
    strbuf_free(&sb);
}

/* Streams what is decided of a string value that has no terminator yet. */
static void xml_stream_some(struct toolparse *tp)
{
    size_t n = tp->buf.len;
    if (!tp->xml_lead_done) {
        if (n <= tp->raw_start) return;
        tp->xml_emitted = tp->raw_start + (B(tp)[tp->raw_start] == '\n');
        tp->xml_lead_done = true;
    }
    static const char *ends[2] = { "</parameter>", "</function>" };
    size_t keep = 0;
    for (int i = 0; i < 2; i++)
        for (size_t k = strlen(ends[i]) - 1; k > keep; k--)
            if (k <= n - tp->xml_emitted && !memcmp(B(tp) + n - k, ends[i], k)) { keep = k; break; }
    size_t safe = n - keep;
    if (safe > tp->xml_emitted && B(tp)[safe - 1] == '\n') safe--;   // may be the stripped final newline
    // never cut a UTF-8 character in two (input split mid-character)
    for (size_t q = safe, back = 0; q > tp->xml_emitted && back < 4; back++) {
        q--;
        unsigned char c = (unsigned char)B(tp)[q];
        if ((c & 0xC0) == 0x80) continue;
        uint32_t cp;
        if (c >= 0xC0 && utf8_next(B(tp) + q, safe - q, &cp) < 0) safe = q;
        break;
    }
    if (safe > tp->xml_emitted) {
        xml_emit_escaped(tp, tp->xml_emitted, safe);
        tp->xml_emitted = safe;
    }
}

/* ==== The state machine ==== */

static const char *text_markers[TOOL_FAMILY_COUNT][2] = {
    [TOOL_FAMILY_HERMES]      = { "<tool_call>", NULL },
    [TOOL_FAMILY_QWEN3_CODER] = { "<tool_call>", NULL },
    [TOOL_FAMILY_LLAMA3]      = { "<|python_tag|>", NULL },
    [TOOL_FAMILY_MISTRAL]     = { "[TOOL_CALLS]", NULL },
    [TOOL_FAMILY_DEEPSEEK_V3] = { DS_CALLS_BEGIN, DS_CALL_BEGIN },
};

/* Hands the bytes from `at` to a JSON scanner (ST_JSON: a whole call object; ST_RAW_ARGS: an
 * arguments value); the parser goes on in state `after` once the scanner is done. */
static void scan_json(struct toolparse *tp, size_t at, enum tp_state scanner, enum tp_state after)
{
    js_reset(&tp->js, at);
    tp->after = after;
    tp->st = scanner;
}

/* Llama 3 calls have no marker: an object at `at` is scanned as a call, given back as text from
 * tp->pos when it does not name a declared tool. */
static void llama_probe(struct toolparse *tp, size_t at)
{
    tp->raw_start = tp->pos;
    tp->llama_probe = true;
    scan_json(tp, at, ST_JSON, ST_LLAMA_AFTER);
}

/* Returns false when it needs more input. */
static bool step_text(struct toolparse *tp, bool final)
{
    const char *b = B(tp);
    size_t n = tp->buf.len;
    if (tp->f == TOOL_FAMILY_LLAMA3 && !tp->text_seen) {
        size_t p = tp->pos;
        while (p < n && isspace((unsigned char)b[p])) p++;
        if (p == n && !final) return false;
        if (p < n && b[p] == '{') {
            llama_probe(tp, p);
            return true;
        }
    }
    // earliest full marker
    size_t best = n;
    const char *which = NULL;
    for (int i = 0; i < 2; i++) {
        const char *m = text_markers[tp->f][i];
        if (!m) continue;
        const char *hit = find(tp, tp->pos, m);
        if (hit && (size_t)(hit - b) < best) { best = (size_t)(hit - b); which = m; }
    }
    if (which) {
        emit_text(tp, tp->pos, best);
        tp->raw_start = best;
        tp->pos = best + strlen(which);
        tp->committed = false;
        switch (tp->f) {
        case TOOL_FAMILY_HERMES:
        case TOOL_FAMILY_QWEN3_CODER: tp->st = ST_TC_OPEN; break;
        case TOOL_FAMILY_LLAMA3: scan_json(tp, tp->pos, ST_JSON, ST_LLAMA_AFTER); break;
        case TOOL_FAMILY_MISTRAL: tp->st = ST_MI_BEGIN; break;
        case TOOL_FAMILY_DEEPSEEK_V3:
            if (which == text_markers[tp->f][1]) tp->pos = best;   // bare call begin: no calls_begin
            tp->st = ST_DS_CALLS;
            break;
        default: break;
        }
        return true;
    }
    // hold back a suffix that may start a marker
    size_t keep = 0;
    if (!final) {
        for (int i = 0; i < 2; i++) {
            const char *m = text_markers[tp->f][i];
            if (!m) continue;
            size_t ml = strlen(m);
            for (size_t k = ml - 1; k > keep; k--) {
                if (k <= n - tp->pos && !memcmp(b + n - k, m, k)) { keep = k; break; }
            }
        }
    }
    emit_text(tp, tp->pos, n - keep);
    tp->pos = n - keep;
    return false;
}

/* Reads an identifier-ish token up to the terminator; 1 ok (pos past terminator), 0 more, -1 bad. */
static int read_until(struct toolparse *tp, const char *term, char *out, size_t cap, bool allow_space)
{
    const char *hit = find(tp, tp->pos, term);
    size_t tl = strlen(term);
    // without the terminator, leave its possible partial start unchecked
    size_t limit = hit ? (size_t)(hit - B(tp)) : tp->buf.len - tp->pos >= tl ? tp->buf.len - tl + 1 : tp->pos;
    for (size_t i = tp->pos; i < limit; i++) {
        char c = B(tp)[i];
        if (c == '<' || c == '>' || c == '\n' || c == '{' || (!allow_space && c == ' ')) {
            if (!(c == '\n' && !strcmp(term, "\n"))) return -1;
        }
        if (i - tp->pos >= cap - 1) return -1;
    }
    if (!hit) return 0;
    size_t len = limit - tp->pos;
    memcpy(out, B(tp) + tp->pos, len);
    out[len] = 0;
    while (len && isspace((unsigned char)out[len - 1])) out[--len] = 0;
    tp->pos = limit + strlen(term);
    return len ? 1 : -1;
}

/* The function name up to `term` into tp->fname, committing the call to it: 1 done (pos past
 * term), 0 needs more input, -1 malformed (given back as text, `why` logged). */
static int read_call_name(struct toolparse *tp, const char *term, const char *why)
{
    size_t save = tp->pos;
    int r = read_until(tp, term, tp->fname, sizeof tp->fname, false);
    if (r < 0) give_back(tp, save, why);
    if (r > 0) commit(tp, tp->fname);
    return r;
}

static bool step(struct toolparse *tp, bool final)
{
    int r;
    switch (tp->st) {
    case ST_TEXT:
        return step_text(tp, final);
    case ST_TC_OPEN:
        if (!skip_ws(tp)) return false;
        if (B(tp)[tp->pos] == '{') scan_json(tp, tp->pos, ST_JSON, ST_TC_CLOSE);
        else tp->st = ST_XML_FUNC;
        return true;
    case ST_JSON:
        r = js_object(tp);
        if (r == 0) return false;
        if (r < 0) {
            // what was scanned is streamed whatever the chunking, so the events do not depend on it
            if (tp->committed) { js_stream_args(tp); tp->pos = tp->js.p; abandon(tp, "bad JSON"); }
            else give_back(tp, tp->js.p, "bad JSON");
            return true;
        }
        json_call_done(tp);
        return true;
    case ST_RAW_ARGS:
        r = js_raw(tp);
        if (r == 0) return false;
        if (r < 0) { tp->pos = tp->js.p; abandon(tp, "arguments are not a JSON object"); return true; }
        {
            json_t *v = json_loadb(B(tp) + tp->js.args_start, tp->js.args_end - tp->js.args_start, 0, NULL);
            if (!v) LOG_WARN("tool call %d: arguments are not valid JSON", tp->index);
            json_decref(v);
        }
        end_call(tp);
        tp->pos = tp->js.p;
        tp->st = tp->after;
        return true;
    case ST_TC_CLOSE:
        if (!skip_ws(tp)) return false;
        r = match_at(tp, tp->pos, "</tool_call>");
        if (r < 0) return false;
        if (r > 0) tp->pos += strlen("</tool_call>");
        else LOG_WARN("tool call %d: missing </tool_call>", tp->index);
        tp->st = ST_TEXT;
        return true;
    case ST_LLAMA_AFTER: {
        size_t p = tp->pos;
        while (p < tp->buf.len && isspace((unsigned char)B(tp)[p])) p++;
        if (p == tp->buf.len) return false;
        if (B(tp)[p] == ';') p++;
        while (p < tp->buf.len && isspace((unsigned char)B(tp)[p])) p++;
        if (p == tp->buf.len) return false;
        if (B(tp)[p] == '{') llama_probe(tp, p);
        else tp->st = ST_TEXT;
        return true;
    }
    case ST_XML_FUNC:
        if (!skip_ws(tp)) return false;
        r = match_at(tp, tp->pos, "<function=");
        if (r < 0) return false;
        if (r == 0) { give_back(tp, tp->pos, "expected <function="); return true; }
        {
            size_t save = tp->pos;
            tp->pos += strlen("<function=");
            r = read_until(tp, ">", tp->fname, sizeof tp->fname, false);
            if (r == 0) { tp->pos = save; return false; }
            if (r < 0) { give_back(tp, save + 1, "bad function name"); return true; }
        }
        commit(tp, tp->fname);
        tp->xml_first = true;
        tp->st = ST_XML_BODY;
        return true;
    case ST_XML_BODY:
        if (!skip_ws(tp)) return false;
        r = match_at(tp, tp->pos, "<parameter=");
        if (r < 0) return false;
        if (r > 0) {
            size_t save = tp->pos;
            tp->pos += strlen("<parameter=");
            r = read_until(tp, ">", tp->xml_param, sizeof tp->xml_param, false);
            if (r == 0) { tp->pos = save; return false; }
            if (r < 0) { tp->pos = save; emit_args(tp, tp->xml_first ? "{}" : "}", tp->xml_first ? 2 : 1); abandon(tp, "bad parameter name"); return true; }
            tp->raw_start = tp->pos;   // value start
            tp->st = ST_XML_VALUE;
            const char *type = xml_param_type(tp);
            tp->xml_stream = type && !strcmp(type, "string");
            tp->xml_lead_done = false;
            tp->xml_emitted = tp->raw_start;
            if (tp->xml_stream) xml_stream_begin(tp);
            return true;
        }
        r = match_at(tp, tp->pos, "</function>");
        if (r < 0) return false;
        emit_args(tp, tp->xml_first ? "{}" : "}", tp->xml_first ? 2 : 1);
        if (r > 0) {
            tp->pos += strlen("</function>");
            end_call(tp);
            tp->st = ST_TC_CLOSE;
        } else abandon(tp, "expected <parameter= or </function>");
        return true;
    case ST_XML_VALUE: {
        const char *e1 = find(tp, tp->raw_start, "</parameter>");
        const char *e2 = find(tp, tp->raw_start, "</function>");
        const char *e = e1 && (!e2 || e1 < e2) ? e1 : e2;
        if (!e) {
            if (tp->xml_stream) xml_stream_some(tp);
            return false;
        }
        size_t vs = tp->raw_start, ve = (size_t)(e - B(tp));
        if (vs < ve && B(tp)[vs] == '\n') vs++;
        if (ve > vs && B(tp)[ve - 1] == '\n') ve--;
        if (tp->xml_stream) {
            xml_emit_escaped(tp, tp->xml_emitted > vs ? tp->xml_emitted : vs, ve);
            emit_args(tp, "\"", 1);
        } else xml_emit_param(tp, B(tp) + vs, ve - vs);
        tp->pos = (size_t)(e - B(tp)) + (e == e1 ? strlen("</parameter>") : 0);
        if (e != e1) LOG_WARN("tool call %d: parameter %s not closed", tp->index, tp->xml_param);
        tp->st = ST_XML_BODY;
        return true;
    }
    case ST_MI_BEGIN:
        if (!skip_ws(tp)) return false;
        if (B(tp)[tp->pos] == '[') { tp->pos++; tp->st = ST_MI_ARRAY; return true; }
        tp->st = ST_MI_NAME;
        return true;
    case ST_MI_ARRAY:
        if (!skip_ws(tp)) return false;
        {
            char c = B(tp)[tp->pos];
            if (c == ',') { tp->pos++; return true; }
            if (c == ']') { tp->pos++; tp->st = ST_TEXT; return true; }
            if (c == '{') { scan_json(tp, tp->pos, ST_JSON, ST_MI_ARRAY); return true; }
        }
        give_back(tp, tp->pos, "bad [TOOL_CALLS] array");
        return true;
    case ST_MI_NAME:
        r = read_call_name(tp, "[ARGS]", "bad [TOOL_CALLS] name");
        if (r > 0) scan_json(tp, tp->pos, ST_RAW_ARGS, ST_TEXT);
        return r != 0;
    case ST_DS_CALLS:
        if (!skip_ws(tp)) return false;
        if ((r = match_at(tp, tp->pos, DS_CALL_BEGIN)) != 0) {
            if (r < 0) return false;
            tp->pos += strlen(DS_CALL_BEGIN);
            tp->st = ST_DS_HEAD;
            return true;
        }
        if ((r = match_at(tp, tp->pos, DS_CALLS_END)) != 0) {
            if (r < 0) return false;
            tp->pos += strlen(DS_CALLS_END);
            tp->st = ST_TEXT;
            return true;
        }
        give_back(tp, tp->pos, "expected a call begin");
        return true;
    case ST_DS_HEAD: {
        size_t save = tp->pos;
        char word[256];
        r = read_until(tp, DS_SEP, word, sizeof word, false);
        if (r == 0) return false;
        if (r < 0) { give_back(tp, save, "bad call head"); return true; }
        if (!strcmp(word, "function")) { tp->st = ST_DS_NAME; return true; }
        snprintf(tp->fname, sizeof tp->fname, "%s", word);   // V3.1 form: name<sep>{args}
        commit(tp, tp->fname);
        scan_json(tp, tp->pos, ST_RAW_ARGS, ST_DS_AFTER);
        return true;
    }
    case ST_DS_NAME:
        r = read_call_name(tp, "\n", "bad function name");
        if (r > 0) {
            js_reset(&tp->js, tp->pos);
            tp->st = ST_DS_FENCE;
        }
        return r != 0;
    case ST_DS_FENCE:   // optional ```json before the arguments
        if (!skip_ws(tp)) return false;
        r = match_at(tp, tp->pos, "```json");
        if (r < 0) return false;
        if (r > 0) tp->pos += strlen("```json");
        scan_json(tp, tp->pos, ST_RAW_ARGS, ST_DS_AFTER);
        return true;
    case ST_DS_AFTER:
        if (!skip_ws(tp)) return false;
        if ((r = match_at(tp, tp->pos, "```")) != 0) {
            if (r < 0) return false;
            tp->pos += 3;
            return true;
        }
        r = match_at(tp, tp->pos, DS_CALL_END);
        if (r < 0) return false;
        if (r > 0) tp->pos += strlen(DS_CALL_END);
        else LOG_WARN("tool call %d: missing call end", tp->index);
        tp->st = ST_DS_CALLS;
        return true;
    }
    return false;
}

static void run(struct toolparse *tp, bool final)
{
    while (step(tp, final)) {}
    // compact decided text when no call is open
    if (tp->st == ST_TEXT && tp->pos > 4096 && tp->pos * 2 > tp->buf.len) {
        memmove(tp->buf.data, tp->buf.data + tp->pos, tp->buf.len - tp->pos);
        tp->buf.len -= tp->pos;
        tp->buf.data[tp->buf.len] = 0;
        tp->pos = 0;
        tp->last_end = 0;
    }
}

/* ==== API ==== */

struct toolparse *toolparse_new(enum tool_family f, const json_t *tools, int *n_calls,
                                void (*emit)(void *ctx, const struct tp_event *ev), void *ctx)
{
    struct toolparse *tp = xcalloc(1, sizeof *tp);
    tp->f = f;
    tp->tools = tools;
    tp->n_calls = n_calls;
    tp->emit = emit;
    tp->ctx = ctx;
    return tp;
}

void toolparse_feed(struct toolparse *tp, const char *text, size_t len)
{
    if (!len) return;
    if (tp->f == TOOL_FAMILY_NONE) {
        struct tp_event ev = { .kind = TP_TEXT, .text = text, .len = len };
        tp->emit(tp->ctx, &ev);
        return;
    }
    strbuf_append(&tp->buf, text, len);
    run(tp, false);
}

void toolparse_finish(struct toolparse *tp)
{
    if (tp->f == TOOL_FAMILY_NONE) return;
    run(tp, true);
    if (tp->st != ST_TEXT) {
        if (tp->committed) {
            // cut before its end: its arguments are incomplete, so it is not a call
            LOG_WARN("tool call %d (%s) unterminated at the end of the output; given back as text", tp->index,
                     tool_family_name(tp->f));
            size_t from = tp->call_start < tp->buf.len ? tp->call_start : tp->buf.len;
            struct tp_event ev = { .kind = TP_CALL_CUT, .index = tp->index, .text = B(tp) + from,
                                   .len = tp->buf.len - from };
            tp->emit(tp->ctx, &ev);
            tp->committed = false;
            tp->pos = tp->last_end = tp->buf.len;
        } else if (tp->st == ST_TC_CLOSE || tp->st == ST_LLAMA_AFTER || tp->st == ST_DS_CALLS ||
                   tp->st == ST_MI_ARRAY || tp->st == ST_DS_AFTER) {
            emit_text(tp, tp->pos, tp->buf.len);   // trailing text after complete calls
            tp->pos = tp->buf.len;
        } else {
            give_back(tp, tp->buf.len, "unterminated");
        }
        tp->st = ST_TEXT;
    }
    run(tp, true);
}

void toolparse_free(struct toolparse *tp)
{
    if (!tp) return;
    strbuf_free(&tp->buf);
    free(tp);
}
