/* tokenizer_internal: the data structures shared by the tokenizer_*.c files (not a public API).
 *
 * The pipeline of tokenizer.json is compiled at load into plain structs: a tree of normalizers, a
 * tree of pre-tokenizers, the BPE model (vocab map, merge map, word cache), the post-processor and
 * a chain of decoders. Everything here is immutable after load except the BPE word cache, which
 * has its own striped locks (tokenizer_bpe.c).
 *
 * Byte-level tokenizers (a ByteLevel pre-tokenizer) run BPE on raw bytes: at load the vocabulary
 * and merges are translated from GPT-2's byte-to-unicode alphabet back to bytes, so encoding never
 * builds the "Ġ"-strings; decoding maps the other way. Results are identical, work is less.
 *
 *     struct tk_pieces p = {0}; tk_pieces_push(&p, "ab", 2); ... tk_pieces_free(&p);
 *     int32_t v; if (tk_map_get(&m, key, len, &v)) ...
 */
#ifndef CAIRN_TEXT_TOKENIZER_INTERNAL_H
#define CAIRN_TEXT_TOKENIZER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>

#include "base/mem.h"
#include "base/status.h"

/* ==== UTF-8 and small helpers (tokenizer_util.c) ==== */

/* Length of the valid UTF-8 sequence at s[0..n) (1..4), or 0 if invalid/incomplete. */
int      tk_utf8_valid_len(const unsigned char *s, size_t n);
/* Decodes one char of valid UTF-8 (as checked by tk_utf8_valid_len); *len gets its byte length. */
uint32_t tk_utf8_decode(const char *s, int *len);
int      tk_utf8_encode(uint32_t cp, char out[4]);
/* Appends s with every maximal invalid subsequence replaced by U+FFFD (Rust from_utf8_lossy,
 * Python errors="replace"). Returns true when s was valid. */
bool     tk_utf8_lossy(struct strbuf *out, const char *s, size_t n);
bool     tk_is_whitespace(uint32_t cp);     // Unicode White_Space (Rust char::is_whitespace)
bool     tk_is_alnum(uint32_t cp);          // Rust char::is_alphanumeric
bool     tk_is_numeric(uint32_t cp);        // Rust char::is_numeric (Nd, Nl, No)
bool     tk_is_punct(uint32_t cp);          // ASCII punctuation or Unicode P*

/* GPT-2 byte <-> unicode alphabet. */
struct tk_bytelevel {
    uint32_t byte_to_cp[256];
    int16_t  cp_to_byte[512];   // -1 where the code point is not in the alphabet (all are < 512)
};
void tk_bytelevel_init(struct tk_bytelevel *bl);

/* Open-addressing map from byte strings (borrowed, must outlive the map) to int32. */
struct tk_map_ent {
    const char *key;
    uint32_t    len;
    uint32_t    hash;
    int32_t     val;
};
struct tk_map {
    struct tk_map_ent *ents;
    uint32_t           cap;    // power of two
    uint32_t           n;
};
void tk_map_init(struct tk_map *m, uint32_t n_expected);
void tk_map_free(struct tk_map *m);
/* Inserts unless present; returns false if the key was already there (value unchanged). */
bool tk_map_put(struct tk_map *m, const char *key, uint32_t len, int32_t val);
bool tk_map_get(const struct tk_map *m, const char *key, uint32_t len, int32_t *val);
uint32_t tk_hash(const char *s, size_t n);

/* Pieces of text: spans into one byte buffer. */
struct tk_span {
    uint32_t off;
    uint32_t len;
    uint32_t orig;   // offset in the segment before pre-tokenization (for Metaspace "first")
};
struct tk_pieces {
    struct strbuf   buf;
    struct tk_span *sp;
    int             n;
    int             cap;
};
void tk_pieces_push(struct tk_pieces *p, const char *s, size_t len, uint32_t orig);
void tk_pieces_clear(struct tk_pieces *p);
void tk_pieces_free(struct tk_pieces *p);

/* Compiled regex (PCRE2, UTF|UCP, JIT when available), or a literal string pattern. */
struct tk_regex {
    pcre2_code *code;
};
enum status tk_regex_compile(struct tk_regex *re, const char *pattern, size_t len, bool literal);
/* Rewrites pattern so that its \p{..} classes also hold the code points utf8proc assigns and PCRE2's
 * older tables do not (tokenizer_unicode.c); false (out untouched) when nothing changes. */
bool        tk_regex_modernize(const char *pattern, size_t len, struct strbuf *out);
void        tk_regex_free(struct tk_regex *re);
/* Finds the next match at or after start in s[0..n); returns false when none. */
bool        tk_regex_find(const struct tk_regex *re, pcre2_match_data *md, const char *s, size_t n,
                          size_t start, size_t *m_start, size_t *m_end);
/* Parses {"String": "..."} or {"Regex": "..."} into re. */
enum status tk_pattern_parse(json_t *pattern, struct tk_regex *re);

/* ==== Normalizers (tokenizer_norm.c) ==== */

enum tk_norm_type {
    TK_NORM_SEQUENCE, TK_NORM_NFC, TK_NORM_NFD, TK_NORM_NFKC, TK_NORM_NFKD, TK_NORM_LOWERCASE,
    TK_NORM_STRIP, TK_NORM_STRIP_ACCENTS, TK_NORM_REPLACE, TK_NORM_PREPEND,
};
struct tk_norm {
    enum tk_norm_type type;
    struct tk_norm   *subs;      // SEQUENCE
    int               n_subs;
    bool              left, right;   // STRIP
    struct tk_regex   re;        // REPLACE
    char             *content;   // REPLACE content, PREPEND string
    uint8_t          *safe;      // NF*: bitmap over code points that normalization leaves alone
};
enum status tk_norm_parse(json_t *j, struct tk_norm **out);   // NULL j: *out = NULL
void        tk_norm_free(struct tk_norm *n);
/* Normalizes s into out (cleared first). */
void        tk_norm_apply(const struct tk_norm *n, const char *s, size_t len, struct strbuf *out);

/* ==== Pre-tokenizers (tokenizer_pretok.c) ==== */

enum tk_split_behavior {
    TK_SPLIT_REMOVED, TK_SPLIT_ISOLATED, TK_SPLIT_MERGED_PREV, TK_SPLIT_MERGED_NEXT, TK_SPLIT_CONTIGUOUS,
};
enum tk_pre_type {
    TK_PRE_SEQUENCE, TK_PRE_SPLIT, TK_PRE_BYTELEVEL, TK_PRE_METASPACE, TK_PRE_DIGITS, TK_PRE_WHITESPACE,
    TK_PRE_WHITESPACE_SPLIT, TK_PRE_PUNCTUATION, TK_PRE_BERT,
};
enum tk_prepend { TK_PREPEND_ALWAYS, TK_PREPEND_FIRST, TK_PREPEND_NEVER };
struct tk_pre {
    enum tk_pre_type       type;
    struct tk_pre         *subs;   // SEQUENCE
    int                    n_subs;
    struct tk_regex        re;     // SPLIT, BYTELEVEL (use_regex), WHITESPACE
    bool                   has_re;
    enum tk_split_behavior behavior;
    bool                   invert;
    bool                   add_prefix_space;   // BYTELEVEL
    char                   repl[8];            // METASPACE replacement (UTF-8)
    enum tk_prepend        prepend;            // METASPACE
    bool                   split;              // METASPACE
    bool                   individual_digits;  // DIGITS
};
enum status tk_pre_parse(json_t *j, struct tk_pre **out);
/* Reads "prepend_scheme" (or the older "add_prefix_space") of a Metaspace pre-tokenizer/decoder. */
enum status tk_prepend_parse(json_t *j, enum tk_prepend *out);
void        tk_pre_free(struct tk_pre *p);
bool        tk_pre_has_bytelevel(const struct tk_pre *p);
/* Splits the pieces in place (in: the segment as one piece). */
void        tk_pre_apply(const struct tk_pre *p, struct tk_pieces *pcs, pcre2_match_data *md,
                         struct tk_pieces *tmp);

/* ==== BPE model (tokenizer_bpe.c) ==== */

struct tk_cache_ent {
    char    *key;
    uint32_t len;
    uint32_t hash;
    int32_t *ids;
    int      n_ids;
};
#define TK_CACHE_SLOTS 65536
#define TK_CACHE_LOCKS 64
#define TK_CACHE_MAX_WORD 256

struct tk_merge_ent {
    uint64_t pair;    // (left id << 32) | right id, + 1 so that 0 means empty
    int32_t  rank;
    int32_t  new_id;
};
struct tk_bpe {
    int               n_vocab;       // model vocab entries (ids may be sparse: n_ids = max id + 1)
    int               n_ids;
    char            **tok;           // [n_ids] token string as in the file (NULL for holes)
    uint32_t         *tok_len;       // [n_ids]
    struct tk_map     vocab;         // token key -> id (raw bytes in byte-level mode)
    char            **raw;           // [n_ids] byte-level mode: raw-byte keys (owned), else NULL
    struct tk_merge_ent *merges;     // open addressing
    uint32_t          merges_cap;
    bool              byte_level;
    int32_t           byte_id[256];  // byte-level mode: id of each single byte, -1 if none
    int32_t           fallback_id[256];  // byte_fallback: id of <0xXX>, -1 if none
    bool              byte_fallback;
    bool              ignore_merges;
    bool              fuse_unk;
    int32_t           unk_id;        // -1 when none
    char             *cont_prefix;   // continuing_subword_prefix, NULL when none/empty
    char             *eow_suffix;    // end_of_word_suffix, NULL when none/empty
    struct tk_cache_ent *cache;      // [TK_CACHE_SLOTS]
    pthread_mutex_t   locks[TK_CACHE_LOCKS];
};
enum status tk_bpe_load(json_t *model, bool byte_level, const struct tk_bytelevel *bl, struct tk_bpe *out);
void        tk_bpe_free(struct tk_bpe *b);
/* Id of a vocabulary string as written in tokenizer.json (e.g. "Ġthe"), -1 if none; may also
 * match a string with the same bytes in byte-level mode, so callers compare tok[id]. */
int32_t     tk_bpe_lookup(const struct tk_bpe *b, const struct tk_bytelevel *bl, const char *s, size_t n);
/* Appends the ids of one pre-tokenized word. */
void        tk_bpe_word(struct tk_bpe *b, const char *w, size_t n, int32_t **ids, int *n_ids, int *cap);

/* ==== Post-processor (tokenizer_decode.c) ==== */

struct tk_post {
    int32_t *pre;     // ids before the sequence (add_special)
    int      n_pre;
    int32_t *post;    // ids after
    int      n_post;
};

/* ==== Decoders (tokenizer_decode.c) ==== */

enum tk_dec_type {
    TK_DEC_SEQUENCE, TK_DEC_BYTELEVEL, TK_DEC_METASPACE, TK_DEC_BYTEFALLBACK, TK_DEC_FUSE, TK_DEC_STRIP,
    TK_DEC_REPLACE, TK_DEC_WORDPIECE,
};
struct tk_dec {
    enum tk_dec_type type;
    struct tk_dec   *subs;
    int              n_subs;
    char             repl[8];          // METASPACE
    enum tk_prepend  prepend;          // METASPACE
    char            *content;          // STRIP char / REPLACE content / WORDPIECE prefix
    int              start, stop;      // STRIP
    struct tk_regex  re;               // REPLACE
    bool             cleanup;          // WORDPIECE
};
enum status tk_dec_parse(json_t *j, struct tk_dec **out);
void        tk_dec_free(struct tk_dec *d);

/* ==== Added tokens (tokenizer.c) ==== */

struct tk_added {
    char   *content;
    uint32_t len;
    int32_t id;
    bool    special, lstrip, rstrip, normalized, single_word;
};
struct tk_trie_node {
    int32_t  child;     // first child node index, -1 none
    int32_t  sibling;   // next sibling, -1 none
    int32_t  added;     // index into added[] when a token ends here, -1 otherwise
    uint8_t  byte;
};
struct tk_trie {
    struct tk_trie_node *nodes;
    int                  n, cap;
    uint8_t              first[256];   // 1 when some token starts with this byte
};

/* ==== The tokenizer ==== */

struct tokenizer {
    struct tk_bytelevel bl;
    struct tk_norm     *norm;
    struct tk_pre      *pre;
    struct tk_bpe       bpe;
    struct tk_dec      *dec;
    struct tk_post      post;
    bool                has_post;

    struct tk_added    *added;       // added_tokens in file order
    int                 n_added;
    struct tk_trie      trie_raw;    // added tokens with normalized=false
    struct tk_trie      trie_norm;   // normalized=true
    int32_t            *added_of_id; // [n_ids_total] index into added[] or -1
    const char        **special_texts;   // contents of the special added tokens, NULL-terminated (borrowed from added[])
    int                 n_ids_total; // max id + 1 over vocab and added tokens

    bool                cleanup;     // clean_up_tokenization_spaces
    char               *bos, *eos, *pad, *unk;   // from tokenizer_config.json
    char               *config_json;
};

/* Decodes ids to out (appended). In tokenizer_decode.c. */
/* keep: special ids decoded as their content even with skip_special (a model's tool-call markers). */
void tk_decode(const struct tokenizer *tk, const int32_t *ids, int n, bool skip_special, const int32_t *keep, int n_keep,
               struct strbuf *out);
enum status tk_post_parse(const struct tokenizer *tk, json_t *j, struct tk_post *out);

#endif
