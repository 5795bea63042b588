/* sse: an incremental parser for Server-Sent Events (text/event-stream), as the WHATWG spec
 * frames them: lines end in LF, CRLF or CR (a CRLF may be split across two chunks), a line that
 * starts with ':' is a comment, "field: value" drops one leading space, several data lines join
 * with '\n', and a blank line dispatches the event. Unknown fields are ignored.
 *
 * Who calls it: bench/client.c feeds it every chunk libcurl hands over, in order. One parser
 * per stream, one thread per parser. Lenient on one point: sse_finish() dispatches a last event
 * that the server did not end with a blank line (a stream cut right after "data: [DONE]").
 *
 *     struct sse_parser p;  sse_init(&p, on_event, ctx);
 *     sse_feed(&p, chunk, n);  ...  sse_finish(&p);
 *     sse_deinit(&p);
 */
#ifndef CAIRN_BENCH_SSE_H
#define CAIRN_BENCH_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/mem.h"
#include "base/status.h"

/* Called once per dispatched event; event is "message" when the stream named none. data is
 * NUL-terminated (data_len bytes). A status other than STATUS_OK stops the parser and is
 * returned from sse_feed/sse_finish. */
typedef enum status (*sse_event_fn)(void *ctx, const char *event, const char *data, size_t data_len);

struct sse_parser {
    sse_event_fn  on_event;
    void         *ctx;
    struct strbuf line;        // the line being assembled (without its terminator)
    struct strbuf data;        // data lines of the pending event, each followed by '\n'
    struct strbuf event;       // event name of the pending event, empty = "message"
    bool          has_data;    // a data field was seen since the last dispatch
    bool          skip_lf;     // the previous chunk ended in CR: a leading LF belongs to it
    bool          stopped;     // the callback returned an error; later input is ignored
    size_t        max_bytes;   // bound on one line and on one event's data (default 16 MiB)
    size_t        n_events;    // events dispatched so far
    size_t        n_comments;  // comment lines seen so far
};

void        sse_init(struct sse_parser *p, sse_event_fn on_event, void *ctx);
/* Parses n bytes. Returns the callback's error, or STATUS_ETOOLONG past max_bytes. */
enum status sse_feed(struct sse_parser *p, const char *buf, size_t n);
/* End of stream: treats a pending unterminated line as complete and dispatches a pending event. */
enum status sse_finish(struct sse_parser *p);
void        sse_deinit(struct sse_parser *p);

#endif
