/* bench_args: command-line helpers shared by the bench/ programs (engine_bench, model_bench). */
#ifndef CAIRN_BENCH_ARGS_H
#define CAIRN_BENCH_ARGS_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/mem.h"

/* Reads the value of flag, a comma-separated list of 1 to cap integers ("1,4,8"), into out and *n.
 * Returns false, having said why on stderr, when it is not such a list. */
static inline bool bench_int_list(const char *flag, const char *s, int *out, int cap, int *n)
{
    int32_t *v = NULL;
    int m = 0;
    if (parse_int_list(s, &v, &m) != STATUS_OK || m < 1 || m > cap) {
        fprintf(stderr, "%s: expected 1 to %d comma-separated integers, got '%s'\n", flag, cap, s);
        free(v);
        return false;
    }
    for (int i = 0; i < m; i++) out[i] = v[i];
    *n = m;
    free(v);
    return true;
}

#endif
