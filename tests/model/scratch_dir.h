/* scratch_dir: the scratch folder of a test program that writes model files (test_loader,
 * test_quantize, test_hybrid): made under /tmp at the start, removed with all it holds at the end.
 *
 *     static char tmp[64];
 *     scratch_dir_make(tmp, sizeof tmp, "loader");  ...  scratch_dir_remove(tmp);
 */
#ifndef CAIRN_TESTS_MODEL_SCRATCH_DIR_H
#define CAIRN_TESTS_MODEL_SCRATCH_DIR_H

#include <stdio.h>
#include <stdlib.h>

#include "base/log.h"

/* Makes /tmp/cairn_test_<name>_XXXXXX (a fresh name) into dir; a failure is a broken machine. */
static inline void scratch_dir_make(char *dir, size_t cap, const char *name)
{
    snprintf(dir, cap, "/tmp/cairn_test_%s_XXXXXX", name);
    CHECK(mkdtemp(dir), "mkdtemp %s", dir);
}

static inline void scratch_dir_remove(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

#endif
