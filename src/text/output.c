/* output: the per-stream text pipeline and the per-model output format; see output.h.
 *
 * Design note: the stages are push-driven callbacks (stopstr returns text, reasoning and toolparse
 * call back), so one token flows through all of them before output_push_token returns and the
 * events it produced are ready to drain; nothing here blocks or knows about HTTP.
 */
#include "text/output.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/rng.h"
#include "text/reasoning.h"
#include "text/stopstr.h"

/* ==== Per-model format ==== */

/* Tool-call markup, most specific first: what the template renders calls with, else an added
 * token of the family's markup, else Hermes (the most common markup among open models). */
static const struct { const char *needle; enum tool_family f; } family_marks[] = {
    { "<function=", TOOL_FAMILY_QWEN3_CODER },
    { "<parameter=", TOOL_FAMILY_QWEN3_CODER },
    { "<tool_call>", TOOL_FAMILY_HERMES },
    { "tool\xE2\x96\x81" "calls\xE2\x96\x81" "begin", TOOL_FAMILY_DEEPSEEK_V3 },
    { "[TOOL_CALLS]", TOOL_FAMILY_MISTRAL },
    { "<|python_tag|>", TOOL_FAMILY_LLAMA3 },
    { "<|eom_id|>", TOOL_FAMILY_LLAMA3 },
    { "\"parameters\"", TOOL_FAMILY_LLAMA3 },
};

/* Added tokens that identify a family when the template does not show the markup. */
static const struct { const char *token; enum tool_family f; } family_tokens[] = {
    { "[TOOL_CALLS]", TOOL_FAMILY_MISTRAL },
    { "<\xEF\xBD\x9C" "tool\xE2\x96\x81" "calls\xE2\x96\x81" "begin\xEF\xBD\x9C>", TOOL_FAMILY_DEEPSEEK_V3 },
    { "<|python_tag|>", TOOL_FAMILY_LLAMA3 },
};

void output_format_detect(const char *template_src, bool (*is_token)(void *ctx, const char *s), void *ctx,
                          struct output_format *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->think_open, sizeof out->think_open, "%s", "<think>");
    snprintf(out->think_close, sizeof out->think_close, "%s", "</think>");
    out->thinks = template_src && strstr(template_src, out->think_close);
    if (!template_src) return;   // no template, no chat, no tool calls
    out->tool_family = TOOL_FAMILY_NONE;
    for (size_t i = 0; i < sizeof family_marks / sizeof family_marks[0] && !out->tool_family; i++)
        if (strstr(template_src, family_marks[i].needle)) out->tool_family = family_marks[i].f;
    for (size_t i = 0; i < sizeof family_tokens / sizeof family_tokens[0] && !out->tool_family && is_token; i++)
        if (is_token(ctx, family_tokens[i].token)) out->tool_family = family_tokens[i].f;
    if (!out->tool_family) out->tool_family = TOOL_FAMILY_HERMES;
    if (out->tool_family == TOOL_FAMILY_MISTRAL)
        out->tool_name_first = strstr(template_src, "[ARGS]") || (is_token && is_token(ctx, "[ARGS]"));
    if (out->tool_family == TOOL_FAMILY_DEEPSEEK_V3) out->tool_name_first = !strstr(template_src, "```json");
}

bool output_format_prompt_in_think(const struct output_format *f, const char *prompt)
{
    return prompt && reasoning_prompt_open(prompt, f->think_open, f->think_close);
}

/* ==== Events ==== */

struct output {
    struct output_cfg   cfg;
    struct stopstr      ss;
    struct reasoning   *rs;              // NULL: no reasoning split
    struct toolparse   *tp_content;      // NULL: no tool parsing
    struct toolparse   *tp_reason;
    int                 n_calls;
    int                 n_calls_done;
    bool                calls_capped;    // max_tool_calls calls ended: nothing more is emitted
    struct strbuf       ws_held;         // whitespace after a tool call, until text follows
    bool                stop_matched;
    bool                finished;
    struct rng          rng;             // tool-call ids
    char                id_prefix[24];
    struct output_ev   *evs;             // since the last drain
    int                 n_evs, cap_evs;
    bool                drained;         // evs were handed out: the next event starts a new list
    struct output_ev   *blocks;
    int                 n_blocks, cap_blocks;
};

static struct output_ev *ev_push(struct output_ev **arr, int *n, int *cap)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        *arr = xrealloc(*arr, (size_t)*cap * sizeof **arr);
        memset(*arr + *n, 0, (size_t)(*cap - *n) * sizeof **arr);
    }
    struct output_ev *e = &(*arr)[(*n)++];
    strbuf_clear(&e->text);
    e->name[0] = e->id[0] = 0;
    return e;
}

static void add_event(struct output *o, enum output_ev_kind kind, int idx, const char *text, size_t len,
                      const char *name, const char *id)
{
    if (o->calls_capped) return;   // past the last call allowed: the rest of the output is dropped
    if (o->drained) {
        o->n_evs = 0;
        o->drained = false;
    }
    // pending events: merge text of the same kind
    struct output_ev *last = o->n_evs ? &o->evs[o->n_evs - 1] : NULL;
    bool is_text = kind == OUTPUT_REASONING || kind == OUTPUT_CONTENT || kind == OUTPUT_TOOL_ARGS || kind == OUTPUT_TOOL_CUT;
    if (last && is_text && kind != OUTPUT_TOOL_CUT && last->kind == kind && last->tool_index == idx)
        strbuf_append(&last->text, text, len);
    else {
        struct output_ev *e = ev_push(&o->evs, &o->n_evs, &o->cap_evs);
        e->kind = kind;
        e->tool_index = idx;
        if (is_text) strbuf_append(&e->text, text, len);
        if (name) snprintf(e->name, sizeof e->name, "%s", name);
        if (id) snprintf(e->id, sizeof e->id, "%s", id);
    }
    // whole output: text blocks merge, a tool call is one block that collects its arguments
    if (kind == OUTPUT_TOOL_END || kind == OUTPUT_TOOL_CUT) return;
    if (kind == OUTPUT_TOOL_ARGS) {
        for (int i = o->n_blocks - 1; i >= 0; i--)
            if (o->blocks[i].kind == OUTPUT_TOOL_START && o->blocks[i].tool_index == idx) {
                strbuf_append(&o->blocks[i].text, text, len);
                return;
            }
        return;
    }
    struct output_ev *b = o->n_blocks ? &o->blocks[o->n_blocks - 1] : NULL;
    if (b && kind != OUTPUT_TOOL_START && b->kind == kind) {
        strbuf_append(&b->text, text, len);
        return;
    }
    b = ev_push(&o->blocks, &o->n_blocks, &o->cap_blocks);
    b->kind = kind;
    b->tool_index = idx;
    if (kind != OUTPUT_TOOL_START) strbuf_append(&b->text, text, len);
    if (name) snprintf(b->name, sizeof b->name, "%s", name);
    if (id) snprintf(b->id, sizeof b->id, "%s", id);
}

/* A cut call's block goes; the element is kept at the end of the array for reuse (its strbuf). */
static void drop_call_block(struct output *o, int idx)
{
    for (int i = o->n_blocks - 1; i >= 0; i--) {
        if (o->blocks[i].kind != OUTPUT_TOOL_START || o->blocks[i].tool_index != idx) continue;
        struct output_ev gone = o->blocks[i];
        memmove(o->blocks + i, o->blocks + i + 1, (size_t)(o->n_blocks - i - 1) * sizeof *o->blocks);
        o->blocks[--o->n_blocks] = gone;
        return;
    }
}

/* Text into the blocks alone (merged into the last block of its kind). */
static void add_block_text(struct output *o, enum output_ev_kind kind, const char *text, size_t len)
{
    if (!len) return;
    struct output_ev *b = o->n_blocks ? &o->blocks[o->n_blocks - 1] : NULL;
    if (!b || b->kind != kind) {
        b = ev_push(&o->blocks, &o->n_blocks, &o->cap_blocks);
        b->kind = kind;
        b->tool_index = 0;
    }
    strbuf_append(&b->text, text, len);
}

/* ==== Stages ==== */

static bool is_space(const char *t, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (t[i] != ' ' && t[i] != '\n' && t[i] != '\r' && t[i] != '\t') return false;
    return true;
}

static void on_tool(struct output *o, bool reasoning, const struct tp_event *ev)
{
    switch (ev->kind) {
    case TP_TEXT: {
        // after a tool call, the whitespace at the end of text is the format's (between or after
        // calls), not an answer: held until more text follows, dropped when none does
        size_t keep = ev->len;
        if (!reasoning && o->n_calls_done)
            while (keep && is_space(ev->text + keep - 1, 1)) keep--;
        if (keep && !reasoning && o->ws_held.len) {
            add_event(o, OUTPUT_CONTENT, 0, o->ws_held.data, o->ws_held.len, NULL, NULL);
            strbuf_clear(&o->ws_held);
        }
        if (keep) add_event(o, reasoning ? OUTPUT_REASONING : OUTPUT_CONTENT, 0, ev->text, keep, NULL, NULL);
        if (keep < ev->len) strbuf_append(&o->ws_held, ev->text + keep, ev->len - keep);
        break;
    }
    case TP_CALL_START: {
        static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        char id[48];
        int k = snprintf(id, sizeof id, "%s", o->id_prefix);
        for (int i = 0; i < 24 && k < (int)sizeof id - 1; i++) id[k++] = alnum[rng_next(&o->rng) % 62];
        id[k] = 0;
        add_event(o, OUTPUT_TOOL_START, ev->index, NULL, 0, ev->name, id);
        break;
    }
    case TP_CALL_ARGS: add_event(o, OUTPUT_TOOL_ARGS, ev->index, ev->text, ev->len, NULL, NULL); break;
    case TP_CALL_END:
        add_event(o, OUTPUT_TOOL_END, ev->index, NULL, 0, NULL, NULL);
        o->n_calls_done++;
        o->calls_capped = o->cfg.max_tool_calls && o->n_calls_done >= o->cfg.max_tool_calls;
        break;
    case TP_CALL_CUT:
        add_event(o, OUTPUT_TOOL_CUT, ev->index, ev->text, ev->len, NULL, NULL);
        drop_call_block(o, ev->index);
        o->n_calls--;   // the output ends here: no later call took a higher index
        // its markup goes back to its channel as text (the block only: the stream has the CUT)
        add_block_text(o, reasoning ? OUTPUT_REASONING : OUTPUT_CONTENT, ev->text, ev->len);
        break;
    }
}

/* The two parsers differ only in the channel their plain text goes back to. */
static void on_tool_content(void *ctx, const struct tp_event *ev) { on_tool(ctx, false, ev); }
static void on_tool_reason(void *ctx, const struct tp_event *ev) { on_tool(ctx, true, ev); }

static void on_channel(void *ctx, bool is_reasoning, const char *text, size_t len)
{
    struct output *o = ctx;
    struct toolparse *tp = is_reasoning ? o->tp_reason : o->tp_content;
    if (tp) toolparse_feed(tp, text, len);
    else add_event(o, is_reasoning ? OUTPUT_REASONING : OUTPUT_CONTENT, 0, text, len, NULL, NULL);
}

/* Text past the stop strings. */
static void feed_safe(struct output *o, const char *text, size_t len)
{
    if (!len) return;
    if (o->rs) reasoning_feed(o->rs, text, len);
    else on_channel(o, false, text, len);
}

struct output *output_new(const struct output_cfg *cfg)
{
    struct output *o = xcalloc(1, sizeof *o);
    o->cfg = *cfg;
    o->cfg.stops = NULL;   // copied by stopstr
    snprintf(o->id_prefix, sizeof o->id_prefix, "%s", cfg->tool_id_prefix ? cfg->tool_id_prefix : "call_");
    o->cfg.tool_id_prefix = NULL;
    rng_seed(&o->rng, cfg->id_seed);
    stopstr_init(&o->ss, cfg->stops, cfg->n_stops);
    if (cfg->tool_family != TOOL_FAMILY_NONE) {
        o->tp_content = toolparse_new(cfg->tool_family, cfg->tools, &o->n_calls, on_tool_content, o);
        o->tp_reason = toolparse_new(cfg->tool_family, cfg->tools, &o->n_calls, on_tool_reason, o);
    }
    if (cfg->reasoning && (!cfg->constrained || cfg->start_in_think)) {
        o->rs = reasoning_new(cfg->fmt->think_open, cfg->fmt->think_close, cfg->start_in_think, on_channel, o);
        if (cfg->constrained) reasoning_single_block(o->rs);
    }
    return o;
}

bool output_push_text(struct output *o, const char *text, size_t len)
{
    if (o->stop_matched || o->finished || !len) return false;
    struct strbuf safe = {0};
    stopstr_feed(&o->ss, text, len, &safe);
    feed_safe(o, safe.data, safe.len);
    strbuf_free(&safe);
    o->stop_matched = o->ss.hit || o->calls_capped;
    return o->stop_matched;
}

bool output_push_token(struct output *o, int32_t id)
{
    if (o->stop_matched || o->finished) return false;
    char *t = o->cfg.detok.push(o->cfg.detok.self, id);
    bool hit = t && output_push_text(o, t, strlen(t));
    free(t);
    return hit;
}

void output_finish(struct output *o)
{
    if (o->finished) return;
    char *tail = o->cfg.detok.flush(o->cfg.detok.self);
    if (tail) output_push_text(o, tail, strlen(tail));
    free(tail);
    if (!o->stop_matched) {
        struct strbuf held = {0};
        stopstr_flush(&o->ss, &held);
        feed_safe(o, held.data, held.len);
        strbuf_free(&held);
    }
    if (o->rs) reasoning_finish(o->rs);
    if (o->tp_reason) toolparse_finish(o->tp_reason);
    if (o->tp_content) toolparse_finish(o->tp_content);
    o->finished = true;
}

const struct output_ev *output_drain(struct output *o, int *n)
{
    *n = o->drained ? 0 : o->n_evs;
    o->drained = true;
    return o->evs;
}

const struct output_ev *output_blocks(const struct output *o, int *n)
{
    *n = o->n_blocks;
    return o->blocks;
}

bool output_in_reasoning(const struct output *o) { return o->rs && reasoning_inside(o->rs); }

int output_n_tool_calls(const struct output *o) { return o->n_calls; }

const char *output_stop_string(const struct output *o) { return o->ss.hit ? o->ss.stops[o->ss.which] : NULL; }

static void free_evs(struct output_ev *e, int cap)
{
    for (int i = 0; i < cap; i++) strbuf_free(&e[i].text);
    free(e);
}

void output_free(struct output *o)
{
    if (!o) return;
    if (o->cfg.detok.free) o->cfg.detok.free(o->cfg.detok.self);
    stopstr_deinit(&o->ss);
    reasoning_free(o->rs);
    toolparse_free(o->tp_content);
    toolparse_free(o->tp_reason);
    strbuf_free(&o->ws_held);
    free_evs(o->evs, o->cap_evs);
    free_evs(o->blocks, o->cap_blocks);
    free(o);
}
