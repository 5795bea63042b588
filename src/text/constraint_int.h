/* constraint_int: the data shared by the constraint_*.c files (not a public API).
 *
 * Every input (JSON Schema, regex, GBNF) ends up as a context-free grammar over bytes, struct
 * cg_grammar: rules with alternatives, each a sequence of elements that are either a byte set
 * (256-bit bitmap) or a reference to a rule. JSON Schema and regexes are first translated to GBNF
 * text (constraint_json_schema.c, constraint_regex.c), which constraint_gbnf.c parses; code point
 * classes become alternatives of UTF-8 byte sequences there (constraint_grammar.c). After
 * building, cg_finish computes each rule's shortest expansion, drops alternatives that can never
 * finish (so every reachable state can complete: no dead ends at run time), and rejects left
 * recursion (the matcher expands rules eagerly and would not terminate on it).
 *
 * Layout after cg_finish: elems is flat; an alternative is a run of elements ended by CG_END;
 * rule r's alternatives start at alt_start[rules[r].alt0 .. + n_alts].
 */
#ifndef CAIRN_TEXT_CONSTRAINT_INT_H
#define CAIRN_TEXT_CONSTRAINT_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/mem.h"
#include "text/constraint.h"

#define CG_INF 0x3fffffffu   // "never finishes" in min-length arithmetic (sums saturate here)

enum cg_kind { CG_BYTES, CG_RULE, CG_END };

struct cg_elem {
    uint32_t kind;   // enum cg_kind
    uint32_t arg;    // CG_BYTES: index into sets; CG_RULE: rule index
};

struct cg_alt_build {
    struct cg_elem *e;
    uint32_t        n, cap;
};

struct cg_rule {
    char                *name;     // owned
    bool                 defined;
    uint32_t             alt0;     // after cg_finish: first index into alt_start
    uint32_t             n_alts;
    struct cg_alt_build *b;        // while building: the alternatives
    uint32_t             n_b, cap_b;
};

struct cg_grammar {
    struct cg_rule *rules;
    uint32_t        n_rules, cap_rules;
    uint32_t       *names;         // hash of rule names: rule index + 1, 0 = empty
    uint32_t        cap_names;
    uint8_t       (*sets)[32];     // byte bitmaps
    uint32_t        n_sets, cap_sets;
    struct cg_elem *elems;         // after cg_finish
    uint32_t        n_elems;
    uint32_t       *alt_start;
    uint32_t        n_alts;
    uint32_t       *rule_min;      // [n_rules] shortest expansion in bytes (CG_INF: none)
    uint32_t       *suffix_min;    // [n_elems] shortest completion of the alternative from here
    uint32_t        root;
    /* compile state */
    uint32_t        n_elems_built;
    struct constraint_budget budget;
    int64_t         deadline_ns;
    char           *err;
    size_t          err_cap;
};

/* ==== Building (constraint_grammar.c) ==== */

void        cg_init(struct cg_grammar *g, const struct constraint_budget *budget, char *err, size_t err_cap);
void        cg_deinit(struct cg_grammar *g);
/* Formats the error message (the first one wins) and returns st. */
enum status cg_fail(struct cg_grammar *g, enum status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* STATUS_ENOMEM with a message when the rule/element/time budget is spent. */
enum status cg_check_budget(struct cg_grammar *g);
uint32_t    cg_rule_get(struct cg_grammar *g, const char *name, size_t len);   // finds or declares
uint32_t    cg_rule_new_anon(struct cg_grammar *g, const char *hint);          // fresh helper rule
uint32_t    cg_alt_add(struct cg_grammar *g, uint32_t rule);                   // returns alt index
void        cg_push_rule(struct cg_grammar *g, uint32_t rule, uint32_t alt, uint32_t ref);
uint32_t    cg_set_index(struct cg_grammar *g, const uint8_t set[32]);                // shared byte set
void        cg_push_bytes(struct cg_grammar *g, uint32_t rule, uint32_t alt, const uint8_t set[32]);

/* Code point ranges [lo, hi], sorted and merged. */
struct cg_cpset {
    uint32_t (*r)[2];
    uint32_t  n, cap;
};
void cg_cpset_add(struct cg_cpset *s, uint32_t lo, uint32_t hi);
void cg_cpset_normalize(struct cg_cpset *s);            // sort + merge
void cg_cpset_negate(struct cg_cpset *s);               // complement in [0, 0x10FFFF]
void cg_cpset_free(struct cg_cpset *s);
/* A rule matching exactly one UTF-8 encoded code point of s (surrogates excluded). */
uint32_t cg_rule_for_cpset(struct cg_grammar *g, const struct cg_cpset *s);

/* Flattens, computes min lengths, prunes never-finishing alternatives, rejects left recursion,
 * sets root (the rule named root_name). */
enum status cg_finish(struct cg_grammar *g, const char *root_name);

/* ==== Front ends ==== */

/* Parses GBNF text into g (constraint_gbnf.c). */
enum status cg_parse_gbnf(struct cg_grammar *g, const char *text, size_t len);
/* Appends GBNF for a regex to out as rule `name` (constraint_regex.c). mode CG_RX_JSON: the regex
 * applies to a JSON string's content, so quotes, backslashes and control characters are emitted
 * escaped; CG_RX_NO_LT: '<' never appears as a byte (escaped as \u003c in JSON mode, left out of
 * raw text), so the text cannot close a surrounding XML element; search: unanchored (JSON Schema
 * pattern semantics: ^/$ anchor, otherwise any text around). */
enum { CG_RX_RAW = 0, CG_RX_JSON = 1, CG_RX_NO_LT = 2 };
enum status cg_regex_to_gbnf(struct cg_grammar *g, const char *re, size_t len, int mode, bool search,
                             const char *name, struct strbuf *out);

/* JSON Schema integer / number with their bounds as a GBNF expression appended to o
 * (constraint_json_number.c); s is the schema object, path its location for errors. */
struct json_t;
enum status cg_json_integer(struct cg_grammar *g, struct json_t *s, const char *path, struct strbuf *o);
enum status cg_json_number(struct cg_grammar *g, struct json_t *s, const char *path, struct strbuf *o);

/* A compiled grammar handed out by constraint_compile_* . idle: matchers of finished sequences,
 * kept warm for the next sequence of this grammar (constraint_free puts them there,
 * constraint_new takes them); they hold no reference, and go when the grammar goes. */
#define CG_IDLE_MAX       16                   // idle matchers kept per grammar
#define CG_IDLE_BYTES_MAX ((size_t)16 << 20)   // and their memory together
struct constraint_grammar {
    struct cg_grammar  g;
    atomic_int         refs;   // the compiler's reference + one per live constraint made from it
    pthread_mutex_t    idle_mu;
    struct constraint *idle[CG_IDLE_MAX];
    size_t             idle_bytes[CG_IDLE_MAX];
    int                n_idle;
};
/* Frees cg's idle matchers (constraint_mask.c; when the grammar goes). */
void cg_idle_free(struct constraint_grammar *cg);
enum status cg_compile_text(const char *gbnf, size_t len, const struct constraint_budget *budget,
                            struct constraint_grammar **out, char *err, size_t err_cap);

#endif

/* ==== The matcher (constraint_pda.c) ====
 *
 * A parse position is a node: (element position, parent node), where the parent is the frame to
 * return to when the alternative ends (ROOT at the top). Nodes are hash-consed, so a stack is one
 * id and identical stacks share. After expansion (closure), a state is the sorted set of nodes that
 * wait on a byte set, plus ACCEPT when the whole grammar may end; states are interned too, and
 * each caches its 256 byte transitions once computed, so matching builds a DFA lazily and a walk
 * over the token trie is mostly table lookups. A tail reference (the last element of an
 * alternative) reuses the caller's parent, so right recursion (x*) runs in constant stack. */

#define PDA_ROOT   UINT32_MAX
#define PDA_ACCEPT 0u          // node id of "the grammar has ended"
#define PDA_DEAD   0u          // state id of the empty set

struct pda_state {
    uint32_t off, n;          // node ids in pool[off .. off + n), sorted
    uint32_t dist;            // shortest completion in bytes (0: may end now)
    uint32_t hash;
    int32_t *trans;           // [256] next state, -1 not computed yet; NULL until the first step
    uint32_t *mask;           // cached token mask (no budget), NULL when not cached
    uint32_t mask_max_dist;   // largest dist after any token the cached mask allows
    int32_t  plain_next;      // the state every plain string character leads to (may be DEAD);
                              // -1: they lead to different states; -2: not computed yet
};

struct pda {
    const struct cg_grammar *g;
    uint32_t *node_pos, *node_parent, *node_dist;
    uint32_t  n_nodes, cap_nodes;
    uint32_t *node_tab;       // hash of (pos, parent): node id + 1, 0 = empty
    uint32_t  cap_node_tab;
    struct pda_state *states;
    uint32_t  n_states, cap_states;
    uint32_t *state_tab;      // hash of node sets: state id + 1, 0 = empty
    uint32_t  cap_state_tab;
    uint32_t *pool;
    size_t    n_pool, cap_pool;
    int32_t **trans_blocks;   // trans arrays are carved from blocks of 64
    uint32_t  n_trans_blocks, trans_used;
    uint32_t *stamp;          // [cap_nodes] closure visit marks
    uint32_t  gen;
    uint32_t *work, *out;
    uint32_t  cap_work, cap_out, n_work, n_out;
    size_t    bytes_used;     // for the memory budget
    size_t    bytes_max;
    bool      oom;            // sticky: the budget was exceeded
};

void     pda_init(struct pda *p, const struct cg_grammar *g, size_t bytes_max);
void     pda_deinit(struct pda *p);
uint32_t pda_start(struct pda *p);
uint32_t pda_step_slow(struct pda *p, uint32_t s, uint8_t b);
static inline uint32_t pda_step(struct pda *p, uint32_t s, uint8_t b)
{
    const int32_t *t = p->states[s].trans;
    if (t && t[b] >= 0) return (uint32_t)t[b];
    return pda_step_slow(p, s, b);
}
static inline bool pda_accepts(const struct pda *p, uint32_t s)
{
    return p->states[s].n && p->pool[p->states[s].off] == PDA_ACCEPT;
}
