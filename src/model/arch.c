/* arch: the table of supported families (the entries live in arch/, one file per family). */
#include "model/arch.h"

#include <stdio.h>
#include <string.h>

static const struct arch *const archs[] = {
    &arch_llama, &arch_mistral, &arch_qwen2, &arch_qwen3, &arch_qwen3_base, &arch_qwen3_moe, &arch_gemma3, &arch_gemma3_cg,
    &arch_qwen3_next, &arch_qwen3_5, &arch_qwen3_5_cg, &arch_qwen3_5_moe, &arch_qwen3_5_moe_cg,
};

const struct arch *arch_find(const char *name)
{
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (!strcmp(archs[i]->name, name)) return archs[i];
    return NULL;
}

void arch_list(char *buf, size_t n)
{
    size_t used = 0;
    if (n) buf[0] = 0;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0] && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", archs[i]->name);
        if (w < 0) break;
        used += (size_t)w;
    }
}
