/* constraint: constrained decoding. Compiles a JSON Schema, "any JSON object", a regular
 * expression or a GBNF grammar into one pushdown automaton over bytes, and turns its state into
 * the set of token ids a model may sample next (a bitmask over the vocabulary).
 *
 * Three objects, from shared to per sequence:
 *   - struct constraint_grammar: a compiled grammar. Immutable, shareable between threads and
 *     requests (cache it by the hash of its source). Compiling runs under a budget (rules,
 *     elements, milliseconds) so huge or pathological inputs fail fast; errors come back as a status
 *     and a message naming the cause (the unsupported keyword, the grammar line), which the server
 *     answers with 400. An unsupported schema feature is always an error, never a looser constraint.
 *   - struct constraint_vocab: the tokenizer's tokens as byte strings in a trie, plus the stop ids.
 *     Immutable, built once per tokenizer, shareable.
 *   - struct constraint: one sequence's matcher state. Not thread-safe: one thread at a time. The
 *     engine's step: sample token t under mask t, constraint_advance(c, t), then compute mask t+1
 *     (constraint_mask) on a worker thread while the forward pass for t+1 runs: it depends only on
 *     the tokens so far. It keeps caches (automaton states, their byte transitions, the masks of
 *     states seen before), so a repeated state costs a memcpy. constraint_free hands a finished
 *     matcher back to its grammar (up to 16 of them, 16 MB together) and constraint_new takes one
 *     from there, rewound with its caches kept: a schema that comes back (agents send the same
 *     tools every turn) starts warm instead of rebuilding its states token by token.
 *
 * Masks cover constraint_vocab_size ids; a model whose vocabulary is padded beyond the tokenizer
 * must treat the extra ids as disallowed.
 *
 * Output semantics: the text of the sampled tokens (special tokens excluded) must be a complete
 * match when a stop id is sampled; stop ids are allowed exactly when the match may end. JSON comes
 * out compact (no whitespace between tokens) unless constraint_json_opts.ws_max allows some.
 *
 * Budget rule: constraint_mask(c, tokens_left, mask) with tokens_left >= 0 allows only tokens after
 * which the shortest completion still fits in the tokens that remain (counting one byte per token,
 * which byte-level vocabularies always allow), so the output is always closed before max_tokens.
 * constraint_min_tokens_to_finish(c) is that bound at the current state (at the start: the smallest
 * max_tokens that can hold a valid output). Safe, not tight: byte counts bound the tokens from
 * above (a single-byte token for every byte, so the next byte of a shortest completion is always
 * allowed and the bound holds step by step), but an output whose shortest text has long multi-byte
 * tokens (fixed markup) could fit in fewer; admitting a smaller max_tokens would take a per-state
 * fewest-token distance, which the matcher does not compute.
 *
 *     struct constraint_grammar *g;  char err[256];
 *     if (constraint_compile_json_schema(schema, len, NULL, NULL, &g, err, sizeof err)) return 400 + err;
 *     if (constraint_grammar_min_bytes(g) > max_tokens) return 400 "max_tokens too small";
 *     struct constraint *c = constraint_new(g, vocab);
 *     loop: constraint_mask(c, max_tokens - n_out, mask); sample under mask; constraint_advance(c, tok);
 */
#ifndef CAIRN_TEXT_CONSTRAINT_H
#define CAIRN_TEXT_CONSTRAINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

struct tokenizer;
struct constraint_grammar;
struct constraint_vocab;
struct constraint;

/* Limits on one compile; zero fields take the defaults below. */
struct constraint_budget {
    uint32_t max_rules;      // grammar rules after expansion (default 200000)
    uint32_t max_elements;   // grammar elements after expansion (default 2000000)
    uint32_t max_depth;      // schema / regex / grammar nesting (default 128)
    double   max_ms;         // wall time (default 500)
};

struct constraint_json_opts {
    int ws_max;   // whitespace bytes allowed between JSON tokens (default 0: compact)
};

/* Each compile returns STATUS_OK, or EINVAL (syntax error, contradiction, nothing can match),
 * EUNSUPPORTED (a feature outside the supported subset) or ENOMEM (budget exceeded), with a
 * NUL-terminated message in err (err may be NULL). budget may be NULL. */
enum status constraint_compile_json_schema(const char *schema, size_t len, const struct constraint_json_opts *opts,
                                           const struct constraint_budget *budget,
                                           struct constraint_grammar **out, char *err, size_t err_cap);
/* Any JSON object (OpenAI's response_format json_object). */
enum status constraint_compile_json_object(const struct constraint_json_opts *opts,
                                           struct constraint_grammar **out, char *err, size_t err_cap);
/* The GBNF rules of a JSON Schema (NULL schema: any object) with every rule name prefixed and the
 * top rule named <prefix>root, to embed in a larger grammar: a tool-call envelope such as
 *     root ::= "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " w-root "}\n</tool_call>"
 * followed by the rules this returns for prefix "w-". Caller frees *out. */
enum status constraint_json_schema_gbnf(const char *schema, size_t len, const struct constraint_json_opts *opts,
                                        const char *prefix, char **out, char *err, size_t err_cap);
/* The GBNF rules of a tool call's parameters in Qwen3-Coder's XML form (Qwen3.5/3.6 too), top rule
 * <prefix>root, to embed after "<function=NAME>\n": each listed property in schema order as
 *     "<parameter=" name ">\n" value "\n</parameter>\n"
 * (required ones always, optional ones may be left out, no others). A property whose type is
 * exactly "string" has its raw text as the value, any other its compact JSON, which is how the
 * parser types them back. No value can contain "</" (it would close the element): JSON strings
 * write '<' as \u003c, raw text never has "</" (under length bounds, pattern or format no '<').
 * schema NULL: no parameters. EUNSUPPORTED for a top level that is not an object schema with
 * properties, or a name the form cannot carry. Caller frees *out. */
enum status constraint_tool_xml_gbnf(const char *schema, size_t len, const char *prefix, char **out, char *err,
                                     size_t err_cap);
/* The whole output matches the ECMAScript regular expression (no lookaround, no backreferences). */
enum status constraint_compile_regex(const char *re, size_t len, const struct constraint_budget *budget,
                                     struct constraint_grammar **out, char *err, size_t err_cap);
/* A llama.cpp GBNF grammar; the output matches its rule "root". */
enum status constraint_compile_gbnf(const char *text, size_t len, const struct constraint_budget *budget,
                                    struct constraint_grammar **out, char *err, size_t err_cap);
/* A grammar whose outputs are those of a and those of b (strict tool calls beside an output
 * format: either a call or the format). a and b stay the caller's. ENOMEM when the two together
 * exceed the default budget. */
enum status constraint_grammar_union(const struct constraint_grammar *a, const struct constraint_grammar *b,
                                     struct constraint_grammar **out, char *err, size_t err_cap);
/* Drops the caller's reference: each constraint made from g holds one of its own, so g may be
 * freed (or evicted from a cache) while sequences still use it; the last one frees it. */
void        constraint_grammar_free(struct constraint_grammar *g);
/* Another reference to g (a cache handing it out); thread-safe. */
void        constraint_grammar_ref(struct constraint_grammar *g);
/* Matchers of finished sequences g keeps for the next ones (for tests and metrics). */
int         constraint_grammar_n_idle(struct constraint_grammar *g);
/* Shortest output of the grammar in bytes. */
uint32_t    constraint_grammar_min_bytes(const struct constraint_grammar *g);

/* The tokenizer's vocabulary as byte strings (byte-level BPE: exact; added tokens: their content;
 * special tokens other than stop_ids: never allowed). stop_ids end the output (EOS, <|im_end|>). */
enum status constraint_vocab_new(const struct tokenizer *tk, const int32_t *stop_ids, int n_stop,
                                 struct constraint_vocab **out);
/* The same, with special tokens that are text here: text_ids (a model's tool-call markers such as
 * [TOOL_CALLS]) are allowed wherever their content's bytes are, like any other token. */
enum status constraint_vocab_new_text(const struct tokenizer *tk, const int32_t *stop_ids, int n_stop,
                                      const int32_t *text_ids, int n_text, struct constraint_vocab **out);
void        constraint_vocab_free(struct constraint_vocab *v);
int         constraint_vocab_size(const struct constraint_vocab *v);     // ids, = mask bits
int         constraint_mask_words(const struct constraint_vocab *v);     // uint32 words per mask
/* Bytes of token id (not NUL-terminated); NULL for special/unknown ids. */
const uint8_t *constraint_vocab_token(const struct constraint_vocab *v, int32_t id, int *len);

/* One sequence's state at the start of the grammar: a matcher g kept from a finished sequence of
 * the same vocabulary when it has one, else a new one. It keeps g alive (a reference); v is
 * borrowed and must outlive it. Thread-safe. */
struct constraint *constraint_new(const struct constraint_grammar *g, const struct constraint_vocab *v);
/* Ends c's sequence: its matcher goes back to the grammar for the next one when there is room. */
void               constraint_free(struct constraint *c);
/* Bytes the matcher's caches hold (states, transitions, masks; for tests and metrics). */
size_t             constraint_bytes(const struct constraint *c);
/* Back to the start of the grammar, keeping the caches (automaton states, transitions, masks). */
void               constraint_reset(struct constraint *c);
/* Writes the allowed ids into mask (constraint_mask_words words, bit id%32 of word id/32).
 * tokens_left < 0: no budget; otherwise the tokens that may still be generated, this one included.
 * Returns ENOMEM if the state outgrew its memory budget. */
enum status constraint_mask(struct constraint *c, int tokens_left, uint32_t *mask);
/* Moves past a sampled token. EINVAL (state unchanged) if the token is not allowed here. */
enum status constraint_advance(struct constraint *c, int32_t id);
/* Moves past raw bytes (tests, forced prefixes). EINVAL (state unchanged) if they do not match. */
enum status constraint_advance_bytes(struct constraint *c, const char *s, size_t n);
/* The matcher position as a value: saving and restoring it is free (states are interned and kept),
 * so speculative decoding can advance through draft tokens and roll back past a rejected one. */
uint64_t    constraint_save(const struct constraint *c);
void        constraint_restore(struct constraint *c, uint64_t saved);
bool        constraint_can_end(const struct constraint *c);      // a stop id is allowed now
bool        constraint_is_finished(const struct constraint *c);  // a stop id was accepted
/* Tokens needed at least to reach a valid end from here (0 when it may end now), as guaranteed
 * by the budget rule: the bytes of the shortest completion. */
int         constraint_min_tokens_to_finish(const struct constraint *c);

#endif
