/* fuzz_tokenizer_encode: libFuzzer target for tokenizer_encode / tokenizer_decode / detok on fixed
 * tokenizers: the synthetic ones in tests/text/golden/synth and, when cached, the real Qwen3,
 * Llama 2 and Gemma 3 ones ($BUILD/tokenizers, BUILD defaulting to build). Input byte 0 picks the
 * tokenizer and flags; the rest is text (any bytes, invalid UTF-8 included). Checks, by abort:
 * the streamed deltas concatenate to the full decode; decoding the input bytes as ids is safe.
 *
 *     build-fuzz/fuzz_tokenizer_encode -max_total_time=600 corpus_dir
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "text/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct tokenizer *g_tk[8];
static int g_n;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    log_set_level(LOG_LEVEL_ERROR);
    static const char *const synth[] = { "synth_meta", "synth_fallback", "synth_split", "synth_ws" };
    static const char *const real[] = { "qwen3", "llama2", "gemma3" };
    char dir[512];
    for (size_t i = 0; i < sizeof synth / sizeof synth[0]; i++) {
        snprintf(dir, sizeof dir, "tests/text/golden/synth/%s", synth[i]);
        if (tokenizer_load(dir, &g_tk[g_n]) == STATUS_OK) g_n++;
    }
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        snprintf(dir, sizeof dir, "%s/tokenizers/%s", build, real[i]);
        if (tokenizer_load(dir, &g_tk[g_n]) == STATUS_OK) g_n++;
    }
    if (!g_n) { fprintf(stderr, "fuzz_tokenizer_encode: no tokenizer loaded (run from the repo root)\n"); abort(); }
    fprintf(stderr, "fuzz_tokenizer_encode: %d tokenizers\n", g_n);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct tokenizer *tk = g_tk[data[0] % g_n];
    bool add_special = data[0] & 0x80, skip = data[0] & 0x40;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    int32_t *ids;
    int n;
    if (tokenizer_encode(tk, text, len, add_special, &ids, &n) != STATUS_OK) return 0;
    size_t full_len;
    char *full = tokenizer_decode_n(tk, ids, n, skip, &full_len);
    struct detok *d = detok_new(tk, skip);
    size_t cap = full_len + 1, got = 0;
    char *cat = malloc(cap + 1);
    bool over = false;
    for (int i = 0; i <= n; i++) {
        size_t k;
        char *delta = i < n ? detok_push_n(d, ids[i], &k) : detok_flush_n(d, &k);
        if (got + k > cap) over = true;
        else memcpy(cat + got, delta, k);
        got += k;
        free(delta);
    }
    if (over || got != full_len || memcmp(cat, full, got)) {
        fprintf(stderr, "streamed text differs from decode\n");
        abort();
    }
    free(cat);
    detok_free(d);
    free(full);
    free(ids);
    // arbitrary ids (negative and out of range included)
    int m = (int)(len / 4);
    if (m > 0) {
        int32_t *raw = malloc((size_t)m * sizeof *raw);
        memcpy(raw, text, (size_t)m * sizeof *raw);
        for (int i = 0; i < m; i++) if (i % 2) raw[i] = (int32_t)((uint32_t)raw[i] % 300000u);
        char *s = tokenizer_decode(tk, raw, m, skip);
        struct detok *d2 = detok_new(tk, !skip);
        for (int i = 0; i < m; i++) free(detok_push(d2, raw[i]));
        free(detok_flush(d2));
        detok_free(d2);
        free(s);
        free(raw);
    }
    return 0;
}
