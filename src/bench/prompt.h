/* prompt: the text the benchmark sends. Sweep and burst prompts are filler of a target token
 * count asking for a summary, with a unique nonce as their very first characters, so that no
 * prefix cache can serve any part of them from an earlier run. Agentic prompts are a fixed
 * ~7 KB orchestrator system prompt (itself led by a per-session nonce, so the first call of a
 * session is cold) with tool definitions, and ~150-token user messages that change per call.
 *
 * Token counts without a tokenizer are estimates: the filler is made of common English words
 * that byte-level BPE vocabularies hold as one token each (with their leading space).
 * prompt_filler_calibrated() corrects the estimate with a real token counter when one is given.
 * Pure functions, thread-safe. Called by bench/sweep.c, bench/agentic.c, bench/burst.c.
 *
 *     char nonce[PROMPT_NONCE_LEN + 1];  prompt_nonce(&rng, nonce);
 *     struct strbuf p = {0};  prompt_filler(2048, nonce, 7, &p);
 */
#ifndef CAIRN_BENCH_PROMPT_H
#define CAIRN_BENCH_PROMPT_H

#include <jansson.h>
#include <stdint.h>

#include "base/mem.h"
#include "base/rng.h"

#define PROMPT_NONCE_LEN 16

/* Writes PROMPT_NONCE_LEN random lowercase hex digits and a NUL. */
void prompt_nonce(struct rng *r, char *out);
/* Rough token count: one per word, one per punctuation mark (what the filler is built from). */
int  prompt_estimate_tokens(const char *text);
/* Filler prompt of about n_tokens tokens (>= 16), starting with "[nonce] ". seed picks the words. */
void prompt_filler(int n_tokens, const char *nonce, uint64_t seed, struct strbuf *out);
/* Same, sized with count(ctx, text) (a real tokenizer) instead of the estimate; count returns < 0
 * on failure, which falls back to the estimate. */
void prompt_filler_calibrated(int n_tokens, const char *nonce, uint64_t seed,
                              int (*count)(void *ctx, const char *text), void *ctx, struct strbuf *out);

/* The agentic system prompt (about 7 KB), starting with "[session nonce] ". */
void    prompt_agentic_system(const char *session_nonce, struct strbuf *out);
/* The tools array (OpenAI "tools" format). New reference each call; caller json_decref's. */
json_t *prompt_agentic_tools(void);
/* User message number index (about 150 tokens), starting with "[nonce] ". */
void    prompt_agentic_user(int index, const char *nonce, struct strbuf *out);

#endif
