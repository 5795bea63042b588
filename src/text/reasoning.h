/* reasoning: splits generated text into reasoning and answer by the model's think markers
 * (<think>...</think> for Qwen3 / DeepSeek-R1 style models), incrementally.
 *
 * Text that could still become a marker is held back, so any chunking gives the same split.
 * When the rendered prompt already opened the think block (templates that end the generation
 * prompt with "<think>\n"), start inside. Whitespace right after a marker is dropped.
 * One per generation stream; not thread-safe.
 *
 *     struct reasoning *r = reasoning_new("<think>", "</think>", reasoning_prompt_open(prompt, ...), emit, ctx);
 *     reasoning_feed(r, text, len);  ...  reasoning_finish(r);  reasoning_free(r);
 */
#ifndef CAIRN_TEXT_REASONING_H
#define CAIRN_TEXT_REASONING_H

#include <stdbool.h>
#include <stddef.h>

struct reasoning;

struct reasoning *reasoning_new(const char *open, const char *close, bool start_inside,
                                void (*emit)(void *ctx, bool is_reasoning, const char *text, size_t len),
                                void *ctx);
void reasoning_feed(struct reasoning *r, const char *text, size_t len);
void reasoning_finish(struct reasoning *r);
bool reasoning_inside(const struct reasoning *r);
/* After the first close marker everything is answer text, markers included (the constrained
 * part of an output that thought first: its content is the grammar's, whatever bytes it holds). */
void reasoning_single_block(struct reasoning *r);
void reasoning_free(struct reasoning *r);

/* True when the prompt's last open marker is not closed (generation starts inside the block). */
bool reasoning_prompt_open(const char *prompt, const char *open, const char *close);

#endif
