/* constraint_grammar: building the byte grammar, UTF-8 classes, and the analysis that makes the
 * matcher safe (shortest expansions, pruning of alternatives that never finish, left recursion).
 *
 * Why prune: the mask only checks that a token leaves some live parse; if a parse could enter a
 * rule with no finite expansion (a recursive schema without a base case), sampling would walk into
 * a state that can never end. Dropping such alternatives makes every live state completable, and
 * the shortest completion (suffix_min) is what the max_tokens budget rule counts on.
 */
#include "text/constraint_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"

void cg_init(struct cg_grammar *g, const struct constraint_budget *budget, char *err, size_t err_cap)
{
    memset(g, 0, sizeof *g);
    if (budget) g->budget = *budget;
    if (!g->budget.max_rules) g->budget.max_rules = 200000;
    if (!g->budget.max_elements) g->budget.max_elements = 2000000;
    if (!g->budget.max_depth) g->budget.max_depth = 128;
    if (g->budget.max_ms <= 0) g->budget.max_ms = 500;
    g->deadline_ns = clock_now_ns() + (int64_t)(g->budget.max_ms * 1e6);
    g->err = err;
    g->err_cap = err_cap;
    if (err && err_cap) err[0] = 0;
}

void cg_deinit(struct cg_grammar *g)
{
    for (uint32_t r = 0; r < g->n_rules; r++) {
        free(g->rules[r].name);
        for (uint32_t a = 0; a < g->rules[r].n_b; a++) free(g->rules[r].b[a].e);
        free(g->rules[r].b);
    }
    free(g->rules);
    free(g->names);
    free(g->sets);
    free(g->elems);
    free(g->alt_start);
    free(g->rule_min);
    free(g->suffix_min);
    memset(g, 0, sizeof *g);
}

enum status cg_fail(struct cg_grammar *g, enum status st, const char *fmt, ...)
{
    if (g->err && g->err_cap && !g->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(g->err, g->err_cap, fmt, ap);
        va_end(ap);
    }
    return st;
}

enum status cg_check_budget(struct cg_grammar *g)
{
    if (g->n_rules > g->budget.max_rules)
        return cg_fail(g, STATUS_ENOMEM, "grammar too large: more than %u rules", g->budget.max_rules);
    if (g->n_elems_built > g->budget.max_elements)
        return cg_fail(g, STATUS_ENOMEM, "grammar too large: more than %u elements", g->budget.max_elements);
    if (clock_now_ns() > g->deadline_ns)
        return cg_fail(g, STATUS_ENOMEM, "compile took longer than %.0f ms", g->budget.max_ms);
    return STATUS_OK;
}

static uint32_t rule_add(struct cg_grammar *g, char *name)
{
    if (g->n_rules == g->cap_rules) {
        g->cap_rules = g->cap_rules ? g->cap_rules * 2 : 64;
        g->rules = xrealloc(g->rules, g->cap_rules * sizeof *g->rules);
    }
    struct cg_rule *r = &g->rules[g->n_rules];
    memset(r, 0, sizeof *r);
    r->name = name;
    return g->n_rules++;
}

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* Open addressing over rule indices + 1 (0 = empty); rebuilt at half load. */
static void names_grow(struct cg_grammar *g)
{
    free(g->names);
    g->cap_names = g->cap_names ? g->cap_names * 2 : 256;
    while (g->cap_names < 2 * (g->n_rules + 1)) g->cap_names *= 2;   // anonymous rules may be many: room for all
    g->names = xcalloc(g->cap_names, sizeof *g->names);
    for (uint32_t r = 0; r < g->n_rules; r++) {
        uint32_t i = name_hash(g->rules[r].name, strlen(g->rules[r].name)) & (g->cap_names - 1);
        while (g->names[i]) i = (i + 1) & (g->cap_names - 1);
        g->names[i] = r + 1;
    }
}

uint32_t cg_rule_get(struct cg_grammar *g, const char *name, size_t len)
{
    if (2 * (g->n_rules + 1) > g->cap_names) names_grow(g);
    uint32_t i = name_hash(name, len) & (g->cap_names - 1);
    for (; g->names[i]; i = (i + 1) & (g->cap_names - 1)) {
        const char *rn = g->rules[g->names[i] - 1].name;
        if (strlen(rn) == len && !memcmp(rn, name, len)) return g->names[i] - 1;
    }
    uint32_t r = rule_add(g, xstrndup(name, len));
    g->names[i] = r + 1;
    return r;
}

uint32_t cg_rule_new_anon(struct cg_grammar *g, const char *hint)
{
    char buf[96];
    snprintf(buf, sizeof buf, "%s#%u", hint, g->n_rules);
    uint32_t r = rule_add(g, xstrdup(buf));
    g->rules[r].defined = true;
    return r;
}

uint32_t cg_alt_add(struct cg_grammar *g, uint32_t rule)
{
    struct cg_rule *r = &g->rules[rule];
    if (r->n_b == r->cap_b) {
        r->cap_b = r->cap_b ? r->cap_b * 2 : 2;
        r->b = xrealloc(r->b, r->cap_b * sizeof *r->b);
    }
    memset(&r->b[r->n_b], 0, sizeof r->b[0]);
    g->n_elems_built++;   // its CG_END
    return r->n_b++;
}

static void alt_push(struct cg_grammar *g, uint32_t rule, uint32_t alt, struct cg_elem e)
{
    struct cg_alt_build *a = &g->rules[rule].b[alt];
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4;
        a->e = xrealloc(a->e, a->cap * sizeof *a->e);
    }
    a->e[a->n++] = e;
    g->n_elems_built++;
}

void cg_push_rule(struct cg_grammar *g, uint32_t rule, uint32_t alt, uint32_t ref)
{
    alt_push(g, rule, alt, (struct cg_elem){ CG_RULE, ref });
}

uint32_t cg_set_index(struct cg_grammar *g, const uint8_t set[32])
{
    // Byte sets repeat a lot (digits, hex, UTF-8 continuation bytes): share them. The few distinct
    // sets keep the linear search cheap; past 256 it stops looking further than the last 256.
    uint32_t i = g->n_sets > 256 ? g->n_sets - 256 : 0;
    for (; i < g->n_sets; i++)
        if (!memcmp(g->sets[i], set, 32)) break;
    if (i == g->n_sets) {
        if (g->n_sets == g->cap_sets) {
            g->cap_sets = g->cap_sets ? g->cap_sets * 2 : 64;
            g->sets = xrealloc(g->sets, g->cap_sets * sizeof *g->sets);
        }
        memcpy(g->sets[g->n_sets++], set, 32);
    }
    return i;
}

void cg_push_bytes(struct cg_grammar *g, uint32_t rule, uint32_t alt, const uint8_t set[32])
{
    alt_push(g, rule, alt, (struct cg_elem){ CG_BYTES, cg_set_index(g, set) });
}

/* ==== Code point sets and UTF-8 ==== */

void cg_cpset_add(struct cg_cpset *s, uint32_t lo, uint32_t hi)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->r = xrealloc(s->r, s->cap * sizeof *s->r);
    }
    s->r[s->n][0] = lo;
    s->r[s->n][1] = hi;
    s->n++;
}

static int range_cmp(const void *a, const void *b)
{
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

void cg_cpset_normalize(struct cg_cpset *s)
{
    if (!s->n) return;
    qsort(s->r, s->n, sizeof *s->r, range_cmp);
    uint32_t w = 0;
    for (uint32_t i = 1; i < s->n; i++) {
        if (s->r[i][0] <= s->r[w][1] + 1) {
            if (s->r[i][1] > s->r[w][1]) s->r[w][1] = s->r[i][1];
        } else {
            s->r[++w][0] = s->r[i][0];
            s->r[w][1] = s->r[i][1];
        }
    }
    s->n = w + 1;
}

void cg_cpset_negate(struct cg_cpset *s)
{
    cg_cpset_normalize(s);
    struct cg_cpset out = {0};
    uint32_t next = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->r[i][0] > next) cg_cpset_add(&out, next, s->r[i][0] - 1);
        next = s->r[i][1] + 1;
    }
    if (next <= 0x10FFFF) cg_cpset_add(&out, next, 0x10FFFF);
    cg_cpset_free(s);
    *s = out;
}

void cg_cpset_free(struct cg_cpset *s)
{
    free(s->r);
    memset(s, 0, sizeof *s);
}

static int utf8_encode(uint32_t cp, uint8_t *b)
{
    if (cp < 0x80) { b[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { b[0] = 0xC0 | (cp >> 6); b[1] = 0x80 | (cp & 0x3F); return 2; }
    if (cp < 0x10000) {
        b[0] = 0xE0 | (cp >> 12); b[1] = 0x80 | ((cp >> 6) & 0x3F); b[2] = 0x80 | (cp & 0x3F);
        return 3;
    }
    b[0] = 0xF0 | (cp >> 18); b[1] = 0x80 | ((cp >> 12) & 0x3F); b[2] = 0x80 | ((cp >> 6) & 0x3F);
    b[3] = 0x80 | (cp & 0x3F);
    return 4;
}

/* Emits [lo, hi] as alternatives of rule, each a sequence of byte ranges. Splits the range until
 * lo and hi have the same encoded length and every continuation position spans a full or aligned
 * block, so that the product of per-position byte ranges is exactly the code points in [lo, hi]. */
static void utf8_range(struct cg_grammar *g, uint32_t rule, uint32_t lo, uint32_t hi)
{
    if (lo > hi) return;
    if (lo <= 0xDFFF && hi >= 0xD800) {   // surrogates have no UTF-8 form
        if (lo < 0xD800) utf8_range(g, rule, lo, 0xD7FF);
        if (hi > 0xDFFF) utf8_range(g, rule, 0xE000, hi);
        return;
    }
    static const uint32_t len_max[] = { 0x7F, 0x7FF, 0xFFFF };
    for (int i = 0; i < 3; i++)
        if (lo <= len_max[i] && hi > len_max[i]) {
            utf8_range(g, rule, lo, len_max[i]);
            utf8_range(g, rule, len_max[i] + 1, hi);
            return;
        }
    for (int i = 1; i < 4; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if (lo & m) {
                utf8_range(g, rule, lo, lo | m);
                utf8_range(g, rule, (lo | m) + 1, hi);
                return;
            }
            if ((hi & m) != m) {
                utf8_range(g, rule, lo, (hi & ~m) - 1);
                utf8_range(g, rule, hi & ~m, hi);
                return;
            }
        }
    }
    uint8_t a[4], b[4];
    int n = utf8_encode(lo, a);
    utf8_encode(hi, b);
    uint32_t alt = cg_alt_add(g, rule);
    for (int k = 0; k < n; k++) {
        uint8_t set[32] = {0};
        for (int x = a[k]; x <= b[k]; x++) set[x >> 3] |= (uint8_t)(1u << (x & 7));
        cg_push_bytes(g, rule, alt, set);
    }
}

uint32_t cg_rule_for_cpset(struct cg_grammar *g, const struct cg_cpset *s)
{
    uint32_t rule = cg_rule_new_anon(g, "class");
    // ASCII part as one byte set (the common case: a single element).
    uint8_t ascii[32] = {0};
    bool any_ascii = false;
    for (uint32_t i = 0; i < s->n; i++) {
        for (uint32_t c = s->r[i][0]; c <= s->r[i][1] && c < 0x80; c++) {
            ascii[c >> 3] |= (uint8_t)(1u << (c & 7));
            any_ascii = true;
        }
        if (s->r[i][1] >= 0x80) utf8_range(g, rule, s->r[i][0] < 0x80 ? 0x80 : s->r[i][0], s->r[i][1]);
    }
    if (any_ascii) cg_push_bytes(g, rule, cg_alt_add(g, rule), ascii);
    return rule;
}

/* ==== Finishing: flatten, min lengths, pruning, left recursion ==== */

static uint32_t sat_add(uint32_t a, uint32_t b)
{
    uint32_t s = a + b;
    return s >= CG_INF || a >= CG_INF || b >= CG_INF ? CG_INF : s;
}

static bool set_empty(const uint8_t *set)
{
    for (int i = 0; i < 32; i++)
        if (set[i]) return false;
    return true;
}

static uint32_t build_alt_min(const struct cg_grammar *g, const struct cg_alt_build *a, const uint32_t *rule_min)
{
    uint32_t m = 0;
    for (uint32_t k = 0; k < a->n && m < CG_INF; k++)
        m = sat_add(m, a->e[k].kind == CG_BYTES ? (set_empty(g->sets[a->e[k].arg]) ? CG_INF : 1)
                                                : rule_min[a->e[k].arg]);
    return m;
}

/* DFS over "may begin with" edges; state 1 = on the stack, 2 = done. */
static enum status left_rec_visit(struct cg_grammar *g, uint32_t r, uint8_t *state, uint32_t depth)
{
    if (state[r] == 2) return STATUS_OK;
    if (state[r] == 1) return cg_fail(g, STATUS_EINVAL, "rule '%s' is left-recursive", g->rules[r].name);
    if (depth > 10000) return cg_fail(g, STATUS_ENOMEM, "grammar nests too deeply");
    state[r] = 1;
    struct cg_rule *R = &g->rules[r];
    for (uint32_t a = 0; a < R->n_alts; a++) {
        for (uint32_t p = g->alt_start[R->alt0 + a]; g->elems[p].kind != CG_END; p++) {
            if (g->elems[p].kind == CG_BYTES) break;
            enum status st = left_rec_visit(g, g->elems[p].arg, state, depth + 1);
            if (st) return st;
            if (g->rule_min[g->elems[p].arg] > 0) break;
        }
    }
    state[r] = 2;
    return STATUS_OK;
}

enum status cg_finish(struct cg_grammar *g, const char *root_name)
{
    enum status st = cg_check_budget(g);
    if (st) return st;
    for (uint32_t r = 0; r < g->n_rules; r++)
        if (!g->rules[r].defined) return cg_fail(g, STATUS_EINVAL, "rule '%s' is used but not defined", g->rules[r].name);
    uint32_t root = UINT32_MAX;
    for (uint32_t r = 0; r < g->n_rules; r++)
        if (!strcmp(g->rules[r].name, root_name)) root = r;
    if (root == UINT32_MAX) return cg_fail(g, STATUS_EINVAL, "grammar has no rule '%s'", root_name);
    g->root = root;

    // Shortest expansion of each rule: relax until nothing changes (lengths only shrink).
    uint32_t *rule_min = xmalloc(g->n_rules * sizeof *rule_min);
    for (uint32_t r = 0; r < g->n_rules; r++) rule_min[r] = CG_INF;
    for (bool changed = true; changed;) {
        changed = false;
        for (uint32_t r = 0; r < g->n_rules; r++)
            for (uint32_t a = 0; a < g->rules[r].n_b; a++) {
                uint32_t m = build_alt_min(g, &g->rules[r].b[a], rule_min);
                if (m < rule_min[r]) { rule_min[r] = m; changed = true; }
            }
        if (clock_now_ns() > g->deadline_ns) {
            free(rule_min);
            return cg_fail(g, STATUS_ENOMEM, "compile took longer than %.0f ms", g->budget.max_ms);
        }
    }
    if (rule_min[root] >= CG_INF) {
        free(rule_min);
        return cg_fail(g, STATUS_EINVAL, "nothing can match: the grammar has no finite output "
                                         "(recursion without a base case, contradictory constraints, or a shortest output over 1 GB)");
    }

    // Flatten, keeping only alternatives that can finish.
    uint32_t n_elems = 0, n_alts = 0;
    for (uint32_t r = 0; r < g->n_rules; r++)
        for (uint32_t a = 0; a < g->rules[r].n_b; a++)
            if (build_alt_min(g, &g->rules[r].b[a], rule_min) < CG_INF) { n_elems += g->rules[r].b[a].n + 1; n_alts++; }
    g->elems = xmalloc((n_elems + 1) * sizeof *g->elems);
    g->alt_start = xmalloc((n_alts + 1) * sizeof *g->alt_start);
    g->n_elems = 0;
    g->n_alts = 0;
    for (uint32_t r = 0; r < g->n_rules; r++) {
        struct cg_rule *R = &g->rules[r];
        R->alt0 = g->n_alts;
        R->n_alts = 0;
        for (uint32_t a = 0; a < R->n_b; a++) {
            if (build_alt_min(g, &R->b[a], rule_min) >= CG_INF) continue;
            g->alt_start[g->n_alts++] = g->n_elems;
            R->n_alts++;
            if (R->b[a].n) memcpy(g->elems + g->n_elems, R->b[a].e, R->b[a].n * sizeof *g->elems);
            g->n_elems += R->b[a].n;
            g->elems[g->n_elems++] = (struct cg_elem){ CG_END, 0 };
        }
        for (uint32_t a = 0; a < R->n_b; a++) free(R->b[a].e);
        free(R->b);
        R->b = NULL;
        R->n_b = R->cap_b = 0;
    }
    g->rule_min = rule_min;
    g->suffix_min = xmalloc((g->n_elems + 1) * sizeof *g->suffix_min);
    for (uint32_t p = g->n_elems; p-- > 0;) {
        const struct cg_elem *e = &g->elems[p];
        g->suffix_min[p] = e->kind == CG_END ? 0
                         : sat_add(e->kind == CG_BYTES ? 1 : rule_min[e->arg], g->suffix_min[p + 1]);
        CHECK(g->suffix_min[p] < CG_INF, "kept an alternative that cannot finish");
    }

    uint8_t *state = xcalloc(g->n_rules, 1);
    st = left_rec_visit(g, root, state, 0);
    free(state);
    return st;
}

/* ==== Compiled grammar objects ==== */

static struct constraint_grammar *grammar_new(const struct constraint_budget *budget, char *err, size_t err_cap)
{
    struct constraint_grammar *cg = xcalloc(1, sizeof *cg);
    atomic_init(&cg->refs, 1);
    pthread_mutex_init(&cg->idle_mu, NULL);
    cg_init(&cg->g, budget, err, err_cap);
    return cg;
}

/* Finishes a built grammar (root rule "root") into *out, or frees it on failure (st or the finish's). */
static enum status grammar_finish(struct constraint_grammar *cg, enum status st, struct constraint_grammar **out)
{
    if (!st) st = cg_finish(&cg->g, "root");
    cg->g.err = NULL;
    cg->g.err_cap = 0;
    if (st) {
        cg_deinit(&cg->g);
        pthread_mutex_destroy(&cg->idle_mu);
        free(cg);
        *out = NULL;
        return st;
    }
    *out = cg;
    return STATUS_OK;
}

enum status cg_compile_text(const char *gbnf, size_t len, const struct constraint_budget *budget,
                            struct constraint_grammar **out, char *err, size_t err_cap)
{
    struct constraint_grammar *cg = grammar_new(budget, err, err_cap);
    return grammar_finish(cg, cg_parse_gbnf(&cg->g, gbnf, len), out);
}

/* Appends the finished grammar src's rules to g under fresh names; returns the index of its root. */
static uint32_t copy_rules(struct cg_grammar *g, const struct cg_grammar *src, const char *hint)
{
    uint32_t base = g->n_rules;
    uint32_t *set_of = xmalloc((src->n_sets + 1) * sizeof *set_of);
    for (uint32_t i = 0; i < src->n_sets; i++) set_of[i] = cg_set_index(g, src->sets[i]);
    for (uint32_t r = 0; r < src->n_rules; r++) cg_rule_new_anon(g, hint);
    for (uint32_t r = 0; r < src->n_rules; r++) {
        const struct cg_rule *R = &src->rules[r];
        for (uint32_t a = 0; a < R->n_alts; a++) {
            uint32_t alt = cg_alt_add(g, base + r);
            for (const struct cg_elem *e = src->elems + src->alt_start[R->alt0 + a]; e->kind != CG_END; e++)
                alt_push(g, base + r, alt, (struct cg_elem){ e->kind, e->kind == CG_RULE ? base + e->arg : set_of[e->arg] });
        }
    }
    free(set_of);
    return base + src->root;
}

enum status constraint_grammar_union(const struct constraint_grammar *a, const struct constraint_grammar *b,
                                     struct constraint_grammar **out, char *err, size_t err_cap)
{
    struct constraint_grammar *cg = grammar_new(NULL, err, err_cap);
    uint32_t ra = copy_rules(&cg->g, &a->g, "a"), rb = copy_rules(&cg->g, &b->g, "b");
    uint32_t root = cg_rule_get(&cg->g, "root", 4);   // the copies' names hold '#': no clash
    cg->g.rules[root].defined = true;
    cg_push_rule(&cg->g, root, cg_alt_add(&cg->g, root), ra);
    cg_push_rule(&cg->g, root, cg_alt_add(&cg->g, root), rb);
    return grammar_finish(cg, STATUS_OK, out);
}

enum status constraint_compile_gbnf(const char *text, size_t len, const struct constraint_budget *budget,
                                    struct constraint_grammar **out, char *err, size_t err_cap)
{
    return cg_compile_text(text, len, budget, out, err, err_cap);
}

void constraint_grammar_free(struct constraint_grammar *cg)
{
    if (!cg || atomic_fetch_sub(&cg->refs, 1) > 1) return;
    cg_idle_free(cg);
    cg_deinit(&cg->g);
    pthread_mutex_destroy(&cg->idle_mu);
    free(cg);
}

void constraint_grammar_ref(struct constraint_grammar *cg)
{
    atomic_fetch_add(&cg->refs, 1);
}

uint32_t constraint_grammar_min_bytes(const struct constraint_grammar *cg)
{
    return cg->g.rule_min[cg->g.root];
}
