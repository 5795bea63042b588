/* tokenizer_unicode: brings the character classes of tokenizer regexes up to utf8proc's Unicode
 * version.
 *
 * HF tokenizers matches pre-tokenizer patterns (\p{L}, \p{N}, [^\s\p{L}\p{N}], \p{P}\p{S}, ...)
 * with Unicode tables newer than Debian 12's PCRE2 10.42 (Unicode 14; Debian's Oniguruma 6.9.8 is
 * Unicode 14 too, so switching engines would not help). Characters assigned since, such as the
 * 2022 emoji and CJK Extension H, are "unassigned" to PCRE2 and fall out of every \p{..} class,
 * which changes how a pattern splits text after a space. utf8proc (2.8: Unicode 15.0) knows them.
 *
 * So before compiling, tk_regex_modernize adds to each general-category escape the code points
 * PCRE2 calls unassigned that utf8proc puts in that category: \p{L} becomes [\p{L}\x{..}-\x{..}],
 * and inside a class the ranges join the class. PCRE2 keeps its fast property tests for everything
 * else. Which code points those are is measured, not listed: one pass of PCRE2's own \p{Cn} over
 * every code point utf8proc calls assigned, done once per process (pthread_once) into an immutable
 * table. \P{..} inside a class and \p{C} cannot gain members by adding ranges; they are left as
 * PCRE2 has them (no tokenizer in use writes them).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "base/log.h"
#include "base/mem.h"
#include "text/tokenizer_internal.h"

/* A run of consecutive code points PCRE2 calls unassigned and utf8proc assigns, all in one
 * utf8proc category. */
struct uc_run {
    int32_t lo, hi;
    int     cat;   // utf8proc_category_t
};

/* Written once by build_table under pthread_once, read-only afterwards. */
static struct { struct uc_run *runs; int n; } g_newer;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
    int err;
    PCRE2_SIZE off;
    pcre2_code *cn = pcre2_compile((PCRE2_SPTR) "\\p{Cn}", PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    CHECK(cn != NULL, "tokenizer: PCRE2 cannot compile \\p{Cn}");
    pcre2_jit_compile(cn, PCRE2_JIT_COMPLETE);
    struct strbuf text = {0};   // every code point utf8proc calls assigned, as UTF-8
    for (int32_t cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        if (utf8proc_category(cp) == UTF8PROC_CATEGORY_CN) continue;
        utf8proc_uint8_t u[4];
        utf8proc_ssize_t k = utf8proc_encode_char(cp, u);
        strbuf_append(&text, (const char *)u, (size_t)k);
    }
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    int cap = 0;
    for (size_t at = 0; at < text.len;) {
        int rc = pcre2_match(cn, (PCRE2_SPTR)text.data, text.len, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text.data + ov[0], (utf8proc_ssize_t)(text.len - ov[0]), &cp);
        CHECK(k > 0, "tokenizer: bad UTF-8 in the Unicode table text");
        int cat = utf8proc_category(cp);
        struct uc_run *last = g_newer.n ? &g_newer.runs[g_newer.n - 1] : NULL;
        if (last && last->hi + 1 == cp && last->cat == cat) last->hi = cp;
        else {
            if (g_newer.n == cap) {
                cap = cap ? cap * 2 : 256;
                g_newer.runs = xrealloc(g_newer.runs, (size_t)cap * sizeof *g_newer.runs);
            }
            g_newer.runs[g_newer.n++] = (struct uc_run){ cp, cp, cat };
        }
        at = ov[0] + (size_t)k;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(cn);
    strbuf_free(&text);
    LOG_DEBUG("tokenizer: %d runs of code points newer than PCRE2's Unicode tables", g_newer.n);
}

/* Whether utf8proc category cat is in the general category named name[0..n) (one or two letters,
 * "L&" too); *known is false for names this does not handle (scripts, C, Cn). */
static bool cat_in(int cat, const char *name, size_t n, bool *known)
{
    static const char *const NAMES[] = { "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc",
                                         "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp",
                                         "Cc", "Cf", "Cs", "Co" };   // utf8proc_category_t order
    *known = true;
    if (n == 1 && strchr("LMNPSZ", name[0])) return NAMES[cat][0] == name[0];
    if (n == 2 && name[0] == 'L' && name[1] == '&') return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LT;
    if (n == 2 && name[0] != 'C')
        for (int i = 1; i < (int)(sizeof NAMES / sizeof NAMES[0]); i++)
            if (!memcmp(NAMES[i], name, 2)) return cat == i;
    *known = false;
    return false;
}

/* Appends the ranges of newer code points in the category; false if there are none or the
 * category is not one handled here. */
static bool put_newer(struct strbuf *out, const char *name, size_t n)
{
    bool any = false;
    for (int i = 0; i < g_newer.n; i++) {
        bool known;
        if (!cat_in(g_newer.runs[i].cat, name, n, &known)) {
            if (!known) return false;
            continue;
        }
        if (!out) return true;
        if (g_newer.runs[i].lo == g_newer.runs[i].hi) strbuf_printf(out, "\\x{%x}", (unsigned)g_newer.runs[i].lo);
        else strbuf_printf(out, "\\x{%x}-\\x{%x}", (unsigned)g_newer.runs[i].lo, (unsigned)g_newer.runs[i].hi);
        any = true;
    }
    return any;
}

bool tk_regex_modernize(const char *p, size_t n, struct strbuf *out)
{
    if (!memmem(p, n, "\\p", 2) && !memmem(p, n, "\\P", 2)) return false;
    pthread_once(&g_once, build_table);
    if (!g_newer.n) return false;
    bool changed = false, in_class = false;
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\\' && i + 1 < n) {
            char e = p[i + 1];
            if (e == 'Q') {   // \Q...\E is literal
                const char *q = memmem(p + i + 2, n - i - 2, "\\E", 2);
                i = q ? (size_t)(q - p) + 1 : n;
                continue;
            }
            if ((e == 'p' || e == 'P') && i + 2 < n) {
                const char *name = p + i + 2;
                size_t nl = 1, len = 3;   // \pL
                if (*name == '{') {
                    const char *close = memchr(name, '}', n - (i + 2));
                    if (!close) { i++; continue; }
                    name++;
                    nl = (size_t)(close - name);
                    len = 4 + nl;
                }
                bool neg = e == 'P';
                if (nl && name[0] == '^') { name++; nl--; neg = !neg; }
                if (!(neg && in_class) && put_newer(NULL, name, nl)) {
                    strbuf_append(out, p + done, i - done);
                    if (!in_class) strbuf_puts(out, neg ? "[^" : "[");
                    strbuf_puts(out, "\\p{");
                    strbuf_append(out, name, nl);
                    strbuf_puts(out, "}");
                    put_newer(out, name, nl);
                    if (!in_class) strbuf_puts(out, "]");
                    done = i + len;
                    changed = true;
                }
                i += len - 1;
                continue;
            }
            i++;   // any other escape: skip the escaped character
            continue;
        }
        if (!in_class && ch == '[') {
            in_class = true;
            if (i + 1 < n && p[i + 1] == '^') i++;
            if (i + 1 < n && p[i + 1] == ']') i++;   // a leading ] is literal
        } else if (in_class && ch == '[' && i + 1 < n && p[i + 1] == ':') {
            const char *q = memmem(p + i + 2, n - i - 2, ":]", 2);   // [:alpha:]
            if (q) i = (size_t)(q - p) + 1;
        } else if (in_class && ch == ']') {
            in_class = false;
        }
    }
    if (changed) strbuf_append(out, p + done, n - done);
    return changed;
}
