/* host: buffer functions of the host-memory backends (see host.h). */
#include "backend/ref/host.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

enum status host_buffer_new(struct backend *be, size_t bytes, struct buffer **out)
{
    void *data = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&data, 64, rounded ? rounded : 64) != 0) {
        LOG_ERR("host buffer: cannot allocate %zu bytes", bytes);
        return STATUS_ENOMEM;
    }
    struct buffer *b = xcalloc(1, sizeof *b);
    b->kind = BUF_HOST;
    b->data = data;
    b->bytes = bytes;
    b->owner = be;
    *out = b;
    return STATUS_OK;
}

void host_buffer_free(struct backend *be, struct buffer *buf)
{
    (void)be;
    if (!buf) return;
    free(buf->data);
    free(buf);
}

void host_upload(struct backend *be, struct tensor *t, const void *src, size_t bytes)
{
    (void)be;
    CHECK(t->offset + bytes <= t->buf->bytes, "upload of %zu bytes past buffer end", bytes);
    memcpy(tensor_data(t), src, bytes);
}

void host_download(struct backend *be, void *dst, const struct tensor *t, size_t bytes)
{
    (void)be;
    CHECK(t->offset + bytes <= t->buf->bytes, "download of %zu bytes past buffer end", bytes);
    memcpy(dst, tensor_data(t), bytes);
}
