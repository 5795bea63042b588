/* replay: runs a fuzz target's corpus through its LLVMFuzzerTestOneInput with the normal
 * compiler, so every corpus file is a regression test in `make test` (and in `make asan`).
 *
 * Linked with one tests/fuzz/fuzz_<name>.c; the Makefile builds build/tests/fuzz/replay_<name>
 * with REPLAY_INPUTS, the ':'-separated files or directories replayed when no argument is given
 * (tests/fuzz/corpus_<name>, plus the documented seeds for some targets). Arguments replace
 * them, so a crash file from `make fuzz` replays on its own:
 *
 *     build/tests/fuzz/replay_jinja crash-5f2e...
 *
 * Directories are walked recursively in name order. A target's invariant checks abort, so a
 * regression ends the process with the failing file's name printed just before. No input at
 * all is a failure: a replay that ran nothing tested nothing.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/mem.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int g_files;

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Replays one file, or every file under a directory; returns 0, or -1 if the path is unusable. */
static int replay_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: no such file or directory\n", path);
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d) { fprintf(stderr, "replay: cannot open %s\n", path); return -1; }
        char **names = NULL;
        size_t n = 0, cap = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) names = xrealloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
            names[n++] = xstrdup(e->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof *names, by_name);
        int rc = 0;
        for (size_t i = 0; i < n; i++) {
            struct strbuf sub = {0};
            strbuf_printf(&sub, "%s/%s", path, names[i]);
            if (replay_path(sub.data) != 0) rc = -1;
            strbuf_free(&sub);
            free(names[i]);
        }
        free(names);
        return rc;
    }
    char *data;
    size_t len;
    if (file_read_all(path, &data, &len) != STATUS_OK) return -1;
    fprintf(stderr, "replay %s (%zu bytes)\n", path, len);
    // a copy of exactly len bytes, as libFuzzer passes, so reads past the end are caught by ASan
    uint8_t *copy = xmalloc(len ? len : 1);
    memcpy(copy, data, len);
    free(data);
    LLVMFuzzerTestOneInput(copy, len);
    free(copy);
    g_files++;
    return 0;
}

int main(int argc, char **argv)
{
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            if (replay_path(argv[i]) != 0) rc = 1;
    } else {
        char *inputs = xstrdup(REPLAY_INPUTS);
        for (char *save, *p = strtok_r(inputs, ":", &save); p; p = strtok_r(NULL, ":", &save))
            if (replay_path(p) != 0) rc = 1;
        free(inputs);
    }
    fprintf(stderr, "%d inputs replayed\n", g_files);
    if (g_files == 0) {
        fprintf(stderr, "replay: no input files\n");
        return 1;
    }
    return rc;
}
