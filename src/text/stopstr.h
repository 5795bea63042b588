/* stopstr: stop strings matched on detokenized text across token boundaries.
 *
 * Text is fed as it is generated; what comes back is safe to send: text that could still be the
 * start of a stop string is held back, and a matched stop string (and everything after it) is
 * never returned. One per generation stream; not thread-safe.
 *
 *     struct stopstr ss; stopstr_init(&ss, stops, n);
 *     size_t n = stopstr_feed(&ss, delta, len, &out);  if (ss.hit) -> finish with "stop"
 *     stopstr_flush(&ss, &out);  stopstr_deinit(&ss);
 */
#ifndef CAIRN_TEXT_STOPSTR_H
#define CAIRN_TEXT_STOPSTR_H

#include <stdbool.h>
#include <stddef.h>

#include "base/mem.h"

struct stopstr {
    char        **stops;    // owned copies
    int           n;
    struct strbuf held;
    bool          hit;      // a stop string matched; nothing more will be returned
    int           which;    // index into stops of the match (valid when hit)
};

void stopstr_init(struct stopstr *ss, const char *const *stops, int n);
/* Appends the text that became safe to out. */
void stopstr_feed(struct stopstr *ss, const char *text, size_t len, struct strbuf *out);
/* End of generation: releases held text (unless a stop matched). */
void stopstr_flush(struct stopstr *ss, struct strbuf *out);
void stopstr_deinit(struct stopstr *ss);

#endif
