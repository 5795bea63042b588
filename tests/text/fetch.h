/* fetch: the real Hugging Face tokenizers for the C tests, through tests/text/fetch_tokenizers.sh
 * (cached in $BUILD/tokenizers; only the first run needs the network). A test that needs them and
 * cannot get them skips (test_skip, exit 77) after running what it can without them.
 *
 *     if (!fetch_tokenizers("qwen3")) test_skip("the qwen3 tokenizer could not be fetched");
 */
#ifndef CAIRN_TEST_TEXT_FETCH_H
#define CAIRN_TEST_TEXT_FETCH_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* names: space-separated (empty: all seven). True when every one is in the cache afterwards. */
static inline bool fetch_tokenizers(const char *names)
{
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "BUILD='%s' bash tests/text/fetch_tokenizers.sh %s", build, names);
    return system(cmd) == 0;
}

/* $BUILD/tokenizers/NAME */
static inline void tokenizer_dir(char *out, size_t cap, const char *name)
{
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(out, cap, "%s/tokenizers/%s", build, name);
}

#endif
