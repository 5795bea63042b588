/* constraint_pda: the byte-level pushdown matcher over a cg_grammar (see constraint_int.h).
 *
 * Step(state, byte): every node whose byte set holds the byte moves one element on; the moved
 * nodes are expanded (closure): a rule reference pushes each of the rule's alternatives, the end
 * of an alternative returns to the parent, until every node waits on a byte set or is ACCEPT.
 * The grammar has no left recursion (cg_finish), so expansion always terminates. Results are
 * memoized per (state, byte), so each distinct transition is computed once per sequence.
 */
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "text/constraint_int.h"

static uint32_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return (uint32_t)x;
}

static void account(struct pda *p, size_t bytes)
{
    p->bytes_used += bytes;
    if (p->bytes_used > p->bytes_max) p->oom = true;
}

static uint32_t node_intern(struct pda *p, uint32_t pos, uint32_t parent)
{
    if (2 * (p->n_nodes + 1) > p->cap_node_tab) {
        uint32_t cap = p->cap_node_tab ? p->cap_node_tab * 2 : 1024;
        free(p->node_tab);
        p->node_tab = xcalloc(cap, sizeof *p->node_tab);
        p->cap_node_tab = cap;
        account(p, cap / 2 * sizeof *p->node_tab);
        for (uint32_t n = 1; n < p->n_nodes; n++) {
            uint32_t i = mix(((uint64_t)p->node_pos[n] << 32) | p->node_parent[n]) & (cap - 1);
            while (p->node_tab[i]) i = (i + 1) & (cap - 1);
            p->node_tab[i] = n + 1;
        }
    }
    uint32_t mask = p->cap_node_tab - 1;
    uint32_t i = mix(((uint64_t)pos << 32) | parent) & mask;
    for (; p->node_tab[i]; i = (i + 1) & mask) {
        uint32_t n = p->node_tab[i] - 1;
        if (p->node_pos[n] == pos && p->node_parent[n] == parent) return n;
    }
    if (p->n_nodes == p->cap_nodes) {
        p->cap_nodes *= 2;
        p->node_pos = xrealloc(p->node_pos, p->cap_nodes * sizeof *p->node_pos);
        p->node_parent = xrealloc(p->node_parent, p->cap_nodes * sizeof *p->node_parent);
        p->node_dist = xrealloc(p->node_dist, p->cap_nodes * sizeof *p->node_dist);
        p->stamp = xrealloc(p->stamp, p->cap_nodes * sizeof *p->stamp);
        account(p, p->cap_nodes / 2 * 16);
    }
    uint32_t n = p->n_nodes++;
    p->node_pos[n] = pos;
    p->node_parent[n] = parent;
    uint32_t d = p->g->suffix_min[pos] + (parent == PDA_ROOT ? 0 : p->node_dist[parent]);
    p->node_dist[n] = d > CG_INF ? CG_INF : d;
    p->stamp[n] = 0;
    p->node_tab[i] = n + 1;
    return n;
}

static void work_push(struct pda *p, uint32_t n)
{
    if (p->stamp[n] == p->gen) return;
    p->stamp[n] = p->gen;
    if (p->n_work == p->cap_work) {
        p->cap_work = p->cap_work ? p->cap_work * 2 : 256;
        p->work = xrealloc(p->work, p->cap_work * sizeof *p->work);
    }
    p->work[p->n_work++] = n;
}

static void out_push(struct pda *p, uint32_t n)
{
    if (p->n_out == p->cap_out) {
        p->cap_out = p->cap_out ? p->cap_out * 2 : 256;
        p->out = xrealloc(p->out, p->cap_out * sizeof *p->out);
    }
    p->out[p->n_out++] = n;
}

/* Expands everything on the work list into out. */
static void closure(struct pda *p)
{
    const struct cg_grammar *g = p->g;
    while (p->n_work) {
        uint32_t n = p->work[--p->n_work];
        if (n == PDA_ACCEPT) { out_push(p, n); continue; }
        uint32_t pos = p->node_pos[n];
        const struct cg_elem *e = &g->elems[pos];
        if (e->kind == CG_BYTES) {
            out_push(p, n);
        } else if (e->kind == CG_END) {
            uint32_t parent = p->node_parent[n];
            work_push(p, parent == PDA_ROOT ? PDA_ACCEPT : parent);
        } else {
            uint32_t parent = p->node_parent[n];
            // Tail reference: returning to (pos + 1) would end the alternative at once.
            uint32_t ret = g->elems[pos + 1].kind == CG_END ? parent : node_intern(p, pos + 1, parent);
            const struct cg_rule *r = &g->rules[e->arg];
            for (uint32_t a = 0; a < r->n_alts; a++) work_push(p, node_intern(p, g->alt_start[r->alt0 + a], ret));
        }
    }
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Interns the node set in out (any order, no duplicates) as a state. */
static uint32_t state_intern(struct pda *p)
{
    if (!p->n_out) return PDA_DEAD;
    qsort(p->out, p->n_out, sizeof *p->out, u32_cmp);
    uint64_t h = p->n_out;
    for (uint32_t k = 0; k < p->n_out; k++) h = h * 0x100000001b3ULL ^ p->out[k];
    uint32_t hash = mix(h);
    if (2 * (p->n_states + 1) > p->cap_state_tab) {
        uint32_t cap = p->cap_state_tab ? p->cap_state_tab * 2 : 1024;
        free(p->state_tab);
        p->state_tab = xcalloc(cap, sizeof *p->state_tab);
        p->cap_state_tab = cap;
        account(p, cap / 2 * sizeof *p->state_tab);
        for (uint32_t s = 1; s < p->n_states; s++) {
            uint32_t i = p->states[s].hash & (cap - 1);
            while (p->state_tab[i]) i = (i + 1) & (cap - 1);
            p->state_tab[i] = s + 1;
        }
    }
    uint32_t mask = p->cap_state_tab - 1;
    uint32_t i = hash & mask;
    for (; p->state_tab[i]; i = (i + 1) & mask) {
        const struct pda_state *st = &p->states[p->state_tab[i] - 1];
        if (st->hash == hash && st->n == p->n_out && !memcmp(p->pool + st->off, p->out, p->n_out * sizeof *p->out))
            return p->state_tab[i] - 1;
    }
    if (p->n_pool + p->n_out > p->cap_pool) {
        while (p->n_pool + p->n_out > p->cap_pool) p->cap_pool *= 2;
        p->pool = xrealloc(p->pool, p->cap_pool * sizeof *p->pool);
        account(p, p->cap_pool / 2 * sizeof *p->pool);
    }
    if (p->n_states == p->cap_states) {
        p->cap_states *= 2;
        p->states = xrealloc(p->states, p->cap_states * sizeof *p->states);
        account(p, p->cap_states / 2 * sizeof *p->states);
    }
    uint32_t s = p->n_states++;
    struct pda_state *st = &p->states[s];
    memset(st, 0, sizeof *st);
    st->off = (uint32_t)p->n_pool;
    st->n = p->n_out;
    st->hash = hash;
    st->dist = CG_INF;
    st->plain_next = -2;
    for (uint32_t k = 0; k < p->n_out; k++) {
        uint32_t d = p->out[k] == PDA_ACCEPT ? 0 : p->node_dist[p->out[k]];
        if (d < st->dist) st->dist = d;
    }
    memcpy(p->pool + p->n_pool, p->out, p->n_out * sizeof *p->out);
    p->n_pool += p->n_out;
    p->state_tab[i] = s + 1;
    return s;
}

void pda_init(struct pda *p, const struct cg_grammar *g, size_t bytes_max)
{
    memset(p, 0, sizeof *p);
    p->g = g;
    p->bytes_max = bytes_max;
    p->cap_nodes = 1024;
    p->node_pos = xmalloc(p->cap_nodes * sizeof *p->node_pos);
    p->node_parent = xmalloc(p->cap_nodes * sizeof *p->node_parent);
    p->node_dist = xmalloc(p->cap_nodes * sizeof *p->node_dist);
    p->stamp = xcalloc(p->cap_nodes, sizeof *p->stamp);
    p->node_pos[0] = UINT32_MAX;   // ACCEPT
    p->node_parent[0] = PDA_ROOT;
    p->node_dist[0] = 0;
    p->n_nodes = 1;
    p->cap_states = 256;
    p->states = xmalloc(p->cap_states * sizeof *p->states);
    memset(&p->states[0], 0, sizeof p->states[0]);   // DEAD
    p->states[0].dist = CG_INF;
    p->n_states = 1;
    p->cap_pool = 4096;
    p->pool = xmalloc(p->cap_pool * sizeof *p->pool);
    p->bytes_used = p->cap_nodes * 16 + p->cap_states * sizeof *p->states + p->cap_pool * 4;
}

void pda_deinit(struct pda *p)
{
    free(p->node_pos);
    free(p->node_parent);
    free(p->node_dist);
    free(p->node_tab);
    for (uint32_t s = 0; s < p->n_states; s++) free(p->states[s].mask);
    free(p->states);
    free(p->state_tab);
    free(p->pool);
    for (uint32_t b = 0; b < p->n_trans_blocks; b++) free(p->trans_blocks[b]);
    free(p->trans_blocks);
    free(p->stamp);
    free(p->work);
    free(p->out);
    memset(p, 0, sizeof *p);
}

uint32_t pda_start(struct pda *p)
{
    const struct cg_grammar *g = p->g;
    p->gen++;
    p->n_out = 0;
    const struct cg_rule *r = &g->rules[g->root];
    for (uint32_t a = 0; a < r->n_alts; a++) work_push(p, node_intern(p, g->alt_start[r->alt0 + a], PDA_ROOT));
    closure(p);
    return state_intern(p);
}

static int32_t *trans_alloc(struct pda *p)
{
    if (p->trans_used % 64 == 0) {
        p->trans_blocks = xrealloc(p->trans_blocks, (p->n_trans_blocks + 1) * sizeof *p->trans_blocks);
        p->trans_blocks[p->n_trans_blocks++] = xmalloc(64 * 256 * sizeof(int32_t));
        account(p, 64 * 256 * sizeof(int32_t));
    }
    int32_t *t = p->trans_blocks[p->n_trans_blocks - 1] + (p->trans_used % 64) * 256;
    p->trans_used++;
    memset(t, 0xff, 256 * sizeof *t);
    return t;
}

uint32_t pda_step_slow(struct pda *p, uint32_t s, uint8_t b)
{
    if (s == PDA_DEAD) return PDA_DEAD;
    if (p->oom) return PDA_DEAD;   // out of memory: refuse everything; the caller reports it
    const struct cg_grammar *g = p->g;
    p->gen++;
    p->n_out = 0;
    for (uint32_t k = 0; k < p->states[s].n; k++) {
        uint32_t n = p->pool[p->states[s].off + k];
        if (n == PDA_ACCEPT) continue;
        uint32_t pos = p->node_pos[n];
        const uint8_t *set = g->sets[g->elems[pos].arg];
        if (set[b >> 3] & (1u << (b & 7))) work_push(p, node_intern(p, pos + 1, p->node_parent[n]));
    }
    closure(p);
    uint32_t next = state_intern(p);
    if (!p->states[s].trans) p->states[s].trans = trans_alloc(p);
    p->states[s].trans[b] = (int32_t)next;
    return next;
}
