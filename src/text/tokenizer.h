/* tokenizer: Hugging Face tokenizer.json, exactly (added tokens, normalizers, pre-tokenizers,
 * BPE, post-processors, decoders), plus a streaming detokenizer.
 *
 * Reference: HF `tokenizers` (Tokenizer.from_file(...).encode/decode); tests/text/golden holds its
 * output for 7 real tokenizers (Qwen3, Llama 3/3.1, Llama 2, Gemma 3, DeepSeek-V3, GPT-OSS) and 4
 * synthetic ones, made by tools/make_tokenizer_goldens.py. Supported: added tokens (special,
 * lstrip, rstrip, normalized, single_word); normalizers NFC/NFD/NFKC/NFKD, Lowercase, Strip,
 * StripAccents, Replace, Prepend, Sequence; pre-tokenizers Split (5 behaviours, invert),
 * ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer,
 * Sequence; model BPE (both merges formats, ignore_merges, byte_fallback, unk/fuse_unk,
 * continuing_subword_prefix, end_of_word_suffix); post-processors TemplateProcessing, ByteLevel,
 * RobertaProcessing, BertProcessing, Sequence; decoders ByteLevel, Metaspace, ByteFallback, Fuse,
 * Strip, Replace, WordPiece, Sequence. Anything else fails to load with EUNSUPPORTED.
 * Invalid UTF-8 input: each maximal invalid subsequence becomes U+FFFD first (Rust's
 * from_utf8_lossy, Python's errors="replace"), then the text is encoded as usual.
 * Decode = tokenizer.decode(ids, skip_special_tokens): unknown ids are dropped; transformers 5
 * applies no clean_up_tokenization to BPE models, so neither does this. Decoded text may contain
 * U+0000 (a <0x00> byte token): use the _n variants to get the length.
 *
 * A tokenizer is immutable after tokenizer_load and safe to share between threads; encoding
 * keeps a per-call state (the BPE word cache is internally synchronized). A detok belongs to one
 * thread.
 *
 *     struct tokenizer *tk;  tokenizer_load("models/tiny", &tk);
 *     int32_t *ids; int n;  tokenizer_encode(tk, text, len, true, &ids, &n);
 *     char *s = tokenizer_decode(tk, ids, n, false);
 */
#ifndef CAIRN_TEXT_TOKENIZER_H
#define CAIRN_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"

struct tokenizer;

/* Loads dir/tokenizer.json (+ tokenizer_config.json, special_tokens_map.json when present). */
enum status tokenizer_load(const char *dir, struct tokenizer **out);
/* Same from a tokenizer.json document in memory (config_json may be NULL). */
enum status tokenizer_load_json(const char *tokenizer_json, size_t len, const char *config_json,
                                struct tokenizer **out);
void        tokenizer_free(struct tokenizer *tk);

/* Encodes text; add_special applies the post-processor (BOS etc.). Caller frees *ids. */
enum status tokenizer_encode(const struct tokenizer *tk, const char *text, size_t len, bool add_special,
                             int32_t **ids, int *n_ids);
/* A byte range [start, end) of a text to encode. */
struct tk_literal { size_t start, end; };
/* tokenizer_encode, except that a special added token whose text overlaps one of the literal
 * ranges is not matched there: its text is tokenized as text (HF split_special_tokens, for those
 * ranges only). The server passes the ranges of a rendered prompt that came from message content,
 * so content cannot inject control tokens (<|im_start|>, <|eot_id|>...). Ranges sorted, disjoint. */
enum status tokenizer_encode_literal(const struct tokenizer *tk, const char *text, size_t len, bool add_special,
                                     const struct tk_literal *literal, int n_literal, int32_t **ids, int *n_ids);
/* The texts of the special added tokens (special: true), NULL-terminated; lives with tk. */
const char *const *tokenizer_special_texts(const struct tokenizer *tk);
/* Decodes ids to a heap string, like tokenizer.decode(ids, skip_special_tokens=skip_special). */
char       *tokenizer_decode(const struct tokenizer *tk, const int32_t *ids, int n, bool skip_special);
/* Same, with the length in bytes: decoded text may contain U+0000 (e.g. a <0x00> token). */
char       *tokenizer_decode_n(const struct tokenizer *tk, const int32_t *ids, int n, bool skip_special,
                               size_t *len);

int         tokenizer_vocab_size(const struct tokenizer *tk);
/* Token string as in the vocabulary (e.g. "Ġthe"), NULL if out of range. */
const char *tokenizer_token_str(const struct tokenizer *tk, int32_t id);
/* Id of a token string (vocab or added token), -1 if none. */
int32_t     tokenizer_token_id(const struct tokenizer *tk, const char *token);
bool        tokenizer_is_special(const struct tokenizer *tk, int32_t id);
/* bos/eos/pad strings from tokenizer_config.json, NULL when unset. */
const char *tokenizer_bos_str(const struct tokenizer *tk);
const char *tokenizer_eos_str(const struct tokenizer *tk);
/* The raw tokenizer_config.json document, NULL if none (chat templates read it). */
const char *tokenizer_config_json(const struct tokenizer *tk);

/* Streaming detokenizer: feed ids one at a time, get text deltas that are always valid UTF-8 and
 * concatenate to tokenizer_decode of all ids. */
struct detok;
struct detok *detok_new(const struct tokenizer *tk, bool skip_special);
void          detok_free(struct detok *d);
/* Special ids that are text to this stream although skip_special is set: a model's tool-call
 * markers ([TOOL_CALLS], <|python_tag|>), which the tool parser reads. At most DETOK_KEEP_MAX. */
#define DETOK_KEEP_MAX 8
void          detok_keep_special(struct detok *d, const int32_t *ids, int n);
/* Appends id; writes the newly complete text (may be empty) to a heap string the caller frees. */
char         *detok_push(struct detok *d, int32_t id);
/* Flushes what is held back (incomplete UTF-8 becomes U+FFFD as HF does). */
char         *detok_flush(struct detok *d);
/* Same as detok_push/detok_flush with the delta's length in bytes (deltas may contain U+0000). */
char         *detok_push_n(struct detok *d, int32_t id, size_t *len);
char         *detok_flush_n(struct detok *d, size_t *len);

#endif
