/* grammar_walk: the random walk of the constrained-decoding tests (tests/text/test_constraint_walk,
 * tests/server/test_constrain) and the schema corpus reader they share with
 * tests/engine/test_engine_constraint.
 *
 * A walk stands in for the hardest model: at each step it takes a uniformly random token of the
 * mask (a random-weight model rarely chooses to close a string), and the stop token, when the mask
 * allows it, with probability 1/stop_one_in. It fails, saying why, when a mask call fails, the
 * mask is empty, an allowed token (the stop included) is refused, or the budget runs out where the
 * constraint cannot end; so a walk that returns output ended within max_tokens on a stop the
 * constraint accepted (or exactly at a valid end). It also reports the slowest mask call.
 * Include after harness.h. */
#ifndef CAIRN_TEST_TEXT_GRAMMAR_WALK_H
#define CAIRN_TEST_TEXT_GRAMMAR_WALK_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "base/rng.h"
#include "text/constraint.h"

struct walk_cfg {
    const struct constraint_vocab *vocab;
    int32_t                        stop_id;
    int                            stop_one_in;   // the stop, when allowed, is taken with probability 1/stop_one_in
};

struct walk_result {
    char   *out;                // heap, NUL-terminated; NULL when the walk failed
    size_t  len;                // bytes of out
    int     min_tokens;         // constraint_min_tokens_to_finish at the start
    int64_t slowest_mask_ns;    // the slowest constraint_mask call, at step slowest_mask_step
    int     slowest_mask_step;
    char    why[160];           // why the walk failed
};

/* One walk under g of at most max_tokens tokens, seeded; r->out is NULL when it failed (r->why). */
static inline void grammar_walk(const struct walk_cfg *w, const struct constraint_grammar *g, uint64_t seed, int max_tokens,
                                struct walk_result *r)
{
    memset(r, 0, sizeof *r);
    struct rng rng;
    rng_seed(&rng, seed);
    struct constraint *c = constraint_new(g, w->vocab);
    r->min_tokens = constraint_min_tokens_to_finish(c);
    int words = constraint_mask_words(w->vocab);
    uint32_t *mask = xmalloc((size_t)words * 4);
    int32_t *ids = xmalloc((size_t)constraint_vocab_size(w->vocab) * sizeof *ids);
    struct strbuf out = {0};
    bool stopped = false;
    for (int n_out = 0; n_out < max_tokens && !r->why[0]; n_out++) {
        int64_t t0 = clock_now_ns();
        enum status st = constraint_mask(c, max_tokens - n_out, mask);
        int64_t dt = clock_now_ns() - t0;
        if (dt > r->slowest_mask_ns) {
            r->slowest_mask_ns = dt;
            r->slowest_mask_step = n_out;
        }
        if (st) {
            snprintf(r->why, sizeof r->why, "mask failed: %s", status_str(st));
            break;
        }
        int n = 0;
        bool stop_ok = false;
        for (int k = 0; k < words; k++)
            for (uint32_t m = mask[k]; m; m &= m - 1) {
                int32_t id = k * 32 + __builtin_ctz(m);
                if (id == w->stop_id) stop_ok = true;
                else ids[n++] = id;
            }
        if (!n && !stop_ok) {
            snprintf(r->why, sizeof r->why, "empty mask after %d tokens", n_out);
            break;
        }
        if (stop_ok && (!n || rng_next(&rng) % (uint64_t)w->stop_one_in == 0)) {
            if (constraint_advance(c, w->stop_id) != STATUS_OK) snprintf(r->why, sizeof r->why, "allowed stop refused");
            stopped = true;
            break;
        }
        int32_t id = ids[rng_next(&rng) % (uint64_t)n];
        int tlen;
        const uint8_t *tb = constraint_vocab_token(w->vocab, id, &tlen);
        strbuf_append(&out, (const char *)tb, (size_t)tlen);
        if (constraint_advance(c, id) != STATUS_OK) snprintf(r->why, sizeof r->why, "allowed token %d refused", id);
    }
    if (!r->why[0] && !stopped && !constraint_can_end(c))   // else the budget ran out exactly at a valid end
        snprintf(r->why, sizeof r->why, "not closed after %d tokens: '%.100s'", max_tokens, out.data ? out.data : "");
    constraint_free(c);
    free(mask);
    free(ids);
    if (r->why[0]) {
        strbuf_free(&out);
        return;
    }
    r->len = out.len;
    if (!out.data) strbuf_putc(&out, 0), out.len = 0;
    r->out = strbuf_take(&out);
}

/* The rows of a JSONL file (a JSON array), or NULL when it cannot be read; a line that is not JSON
 * is reported and left out. */
static inline json_t *walk_load_jsonl(const char *path)
{
    char *text;
    size_t n;
    if (file_read_all(path, &text, &n) != STATUS_OK) return NULL;
    json_t *arr = json_array();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t e;
        json_t *v = json_loads(line, 0, &e);
        if (!v) {
            fprintf(stderr, "%s: bad line: %s\n", path, e.text);
            continue;
        }
        json_array_append_new(arr, v);
    }
    free(text);
    return arr;
}

/* Writes {kind, entry, output, seed} as a line of out, the input of tests/text/validate_constraint.mjs.
 * Returns false when output is not UTF-8 (the row then says output null). */
static inline bool walk_write_row(FILE *out, const char *kind, json_t *entry, const char *output, size_t len, uint64_t seed)
{
    json_t *row = json_object();
    json_object_set_new(row, "kind", json_string(kind));
    json_object_set(row, "entry", entry);
    json_t *o = json_stringn(output, len);
    json_object_set_new(row, "output", o ? o : json_null());
    json_object_set_new(row, "seed", json_integer((json_int_t)seed));
    char *line = json_dumps(row, JSON_COMPACT | JSON_ENSURE_ASCII);
    fprintf(out, "%s\n", line);
    free(line);
    json_decref(row);
    return o != NULL;
}

#endif
