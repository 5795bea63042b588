/* kern: the portable kernel family (plain C, 8 lanes, the fallback that always works) and the
 * run-time choice of family (see kern.h). The CPU is probed here, in a file compiled without
 * ISA flags, so nothing runs an instruction the CPU lacks before the probe says it may. */
#include "backend/cpu/kern.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#define VLANES 8
struct v8 { float f[VLANES]; };
#define VEC struct v8

static inline struct v8 v_zero(void) { struct v8 r = { { 0 } }; return r; }
static inline struct v8 v_bcast(float f)
{
    struct v8 r;
    for (int i = 0; i < VLANES; i++) r.f[i] = f;
    return r;
}
/* a * b + c in two roundings (-std=c11 keeps -ffp-contract=off), the same on every machine. */
static inline struct v8 v_fma(struct v8 a, struct v8 b, struct v8 acc)
{
    for (int i = 0; i < VLANES; i++) acc.f[i] = a.f[i] * b.f[i] + acc.f[i];
    return acc;
}
static inline struct v8 v_ldx(const float *p) { struct v8 r; memcpy(r.f, p, sizeof r.f); return r; }
static inline struct v8 v_ldx_part(const float *p, int n)
{
    struct v8 r = v_zero();
    memcpy(r.f, p, (size_t)n * sizeof(float));
    return r;
}
static inline void v_st(float *p, struct v8 v) { memcpy(p, v.f, sizeof v.f); }
static inline void v_st_part(float *p, struct v8 v, int n) { memcpy(p, v.f, (size_t)n * sizeof(float)); }
static inline struct v8 v_ldw_part(enum dtype dt, const void *p, int n)
{
    struct v8 r = v_zero();
    if (dt == DTYPE_F32) memcpy(r.f, p, (size_t)n * sizeof(float));
    else if (dt == DTYPE_BF16) for (int i = 0; i < n; i++) r.f[i] = bf16_to_f32(((const uint16_t *)p)[i]);
    else if (dt == DTYPE_F8E4M3) for (int i = 0; i < n; i++) r.f[i] = e4m3_to_f32(((const uint8_t *)p)[i]);
    else for (int i = 0; i < n; i++) r.f[i] = f16_to_f32(((const uint16_t *)p)[i]);
    return r;
}
static inline struct v8 v_ldw(enum dtype dt, const void *p) { return v_ldw_part(dt, p, VLANES); }
static inline float v_hsum(struct v8 v)
{
    float a0 = v.f[0] + v.f[4], a1 = v.f[1] + v.f[5], a2 = v.f[2] + v.f[6], a3 = v.f[3] + v.f[7];
    return (a0 + a2) + (a1 + a3);
}

static inline struct v8 v_add(struct v8 a, struct v8 b) { for (int i = 0; i < VLANES; i++) a.f[i] += b.f[i]; return a; }
static inline struct v8 v_mul(struct v8 a, struct v8 b) { for (int i = 0; i < VLANES; i++) a.f[i] *= b.f[i]; return a; }
static inline struct v8 v_div(struct v8 a, struct v8 b) { for (int i = 0; i < VLANES; i++) a.f[i] /= b.f[i]; return a; }
static inline struct v8 v_max(struct v8 a, struct v8 b)
{
    for (int i = 0; i < VLANES; i++) a.f[i] = a.f[i] > b.f[i] ? a.f[i] : b.f[i];
    return a;
}
static inline float v_hmax(struct v8 v)
{
    float m = v.f[0];
    for (int i = 1; i < VLANES; i++) m = v.f[i] > m ? v.f[i] : m;
    return m;
}
static inline struct v8 v_exp(struct v8 v) { for (int i = 0; i < VLANES; i++) v.f[i] = expf(v.f[i]); return v; }

#define KERN_NAME  "portable"
#define KERN_TABLE cpu_kern_portable_table
#define KERN_MR    4
#define KERN_NR    4
#include "backend/cpu/kern_tmpl.h"

#if defined(__x86_64__) || defined(__i386__)
/* F16C straight from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports has no "f16c". */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

static bool cpu_has(const char *isa)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (!strcmp(isa, "avx512"))
        return cpu_kern_avx512_table.name && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    if (!strcmp(isa, "avx2"))
        return cpu_kern_avx2_table.name && __builtin_cpu_supports("avx2") &&
               __builtin_cpu_supports("fma") && cpu_has_f16c();
#endif
    return !strcmp(isa, "portable");
}

const struct cpu_kern *cpu_kern_by_name(const char *name)
{
    if (!cpu_has(name)) return NULL;
    if (!strcmp(name, "avx512")) return &cpu_kern_avx512_table;
    if (!strcmp(name, "avx2")) return &cpu_kern_avx2_table;
    return &cpu_kern_portable_table;
}

const struct cpu_kern *cpu_kern_pick(void)
{
    const char *want = getenv("CAIRN_CPU_ISA");
    if (want && *want) {
        const struct cpu_kern *k = cpu_kern_by_name(want);
        if (k) return k;
        LOG_WARN("CAIRN_CPU_ISA=%s is unknown or unsupported here; picking automatically", want);
    }
    if (cpu_has("avx512")) return &cpu_kern_avx512_table;
    if (cpu_has("avx2")) return &cpu_kern_avx2_table;
    return &cpu_kern_portable_table;
}
