/* tokenizer_speed: times tokenizer_encode single-threaded over the benchmark text of
 * bench/tokenizer_speed_text.py, one document (text up to and including each "\n\n") per call,
 * the unit HF tokenizers is timed on in tools/make_tokenizer_goldens.py.
 * Prints one JSON line: bytes, tokens, seconds and MB/s of the first (cold word cache) and the
 * best of the following runs.
 *
 *     tokenizer_speed build/tokenizers/qwen3 /tmp/bench.txt [--runs 3]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/mem.h"
#include "text/tokenizer.h"

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tokenizer_speed TOKENIZER_DIR TEXT_FILE [--runs N]\n");
        return 2;
    }
    int runs = argc > 4 && !strcmp(argv[3], "--runs") ? atoi(argv[4]) : 3;
    if (runs < 1) runs = 1;
    char *text;
    size_t len;
    if (file_read_all(argv[2], &text, &len) != STATUS_OK) return 1;
    double t0 = clock_now_s();
    struct tokenizer *tk;
    if (tokenizer_load(argv[1], &tk) != STATUS_OK) return 1;
    double load_s = clock_now_s() - t0;
    double first = 0, best = 1e30;
    long n_tok = 0;
    for (int r = 0; r < runs; r++) {
        n_tok = 0;
        double s0 = clock_now_s();
        for (size_t i = 0; i < len;) {
            const char *e = strstr(text + i, "\n\n");
            size_t end = e ? (size_t)(e - text) + 2 : len;
            int32_t *ids;
            int n;
            if (tokenizer_encode(tk, text + i, end - i, false, &ids, &n) != STATUS_OK) return 1;
            n_tok += n;
            free(ids);
            i = end;
        }
        double dt = clock_now_s() - s0;
        if (r == 0) first = dt;
        else if (dt < best) best = dt;
    }
    if (runs == 1) best = first;
    printf("{\"bytes\": %zu, \"tokens\": %ld, \"load_s\": %.3f, \"cold_s\": %.3f, \"cold_MBps\": %.2f, "
           "\"warm_s\": %.3f, \"warm_MBps\": %.2f}\n",
           len, n_tok, load_s, first, len / first / 1e6, best, len / best / 1e6);
    tokenizer_free(tk);
    free(text);
    return 0;
}
