/* cpu_weights: weight_prepare and buffer_new of the cpu backend: huge-page memory.
 *
 * Why: safetensors are mmapped, and a file mapping is mostly 4 KiB pages. Decode streams every
 * weight byte once per token, and over 4 KiB pages the page walks cost about 40% of the DRAM
 * bandwidth (measured here: lm_head GEMV 19 GB/s on the file mapping, 32 GB/s on 2 MiB pages,
 * one thread). So each weight is copied into anonymous memory that asks for transparent huge
 * pages (madvise), carved from 256 MiB chunks the backend owns and frees at destroy. The bytes
 * and layout stay the same; only w->buf and w->offset change (for an MLX-quantized weight, those
 * of its scales and biases too). The same source bytes prepared twice (tied embeddings) share one
 * copy.
 *
 * cpu_buffer_new puts the backend's large buffers (KV pool, activations) on huge pages too, touched
 * at creation (see there).
 *
 * Limits: copies stop once they would pass 60% of physical memory (the rest of the weights stay
 * mapped, which is only slower); CAIRN_CPU_WEIGHT_COPY=0 turns copying off. Called by
 * model_prepare() on the engine thread before any step.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "backend/host.h"
#include "base/log.h"
#include "base/mem.h"

#define CHUNK_BYTES ((size_t)256 << 20)
#define HUGE_BYTES  ((size_t)2 << 20)

struct wcopy {
    const void    *src;     // source bytes
    size_t         bytes;
    struct buffer *buf;     // chunk holding the copy
    size_t         offset;
};

struct cpu_weights {
    struct buffer **chunks;     // [n_chunks], each an mmapped region
    int             n_chunks;
    size_t          used;       // bytes used in the last chunk
    struct wcopy   *copies;
    int             n_copies, cap_copies;
    size_t          total;      // bytes copied so far
    size_t          budget;     // stop copying past this
    bool            disabled;
    bool            warned;
};

void cpu_weights_free(struct cpu_weights *cw)
{
    if (!cw) return;
    for (int i = 0; i < cw->n_chunks; i++) {
        munmap(cw->chunks[i]->data, cw->chunks[i]->bytes);
        free(cw->chunks[i]);
    }
    free(cw->chunks);
    free(cw->copies);
    free(cw);
}

static struct cpu_weights *weights_state(struct cpu *c)
{
    if (!c->weights) {
        struct cpu_weights *cw = xcalloc(1, sizeof *cw);
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        cw->budget = pages > 0 && page > 0 ? (size_t)pages * (size_t)page / 10 * 6 : (size_t)8 << 30;
        const char *e = getenv("CAIRN_CPU_WEIGHT_COPY");
        cw->disabled = e && !strcmp(e, "0");
        c->weights = cw;
    }
    return c->weights;
}

/* size bytes (a multiple of HUGE_BYTES) of anonymous memory starting on a huge-page boundary,
 * asking for transparent huge pages; NULL if mmap fails. */
static char *huge_map(size_t size)
{
    // over-allocate by 2 MiB so the region can start on a huge-page boundary, then trim
    size_t map = size + HUGE_BYTES;
    char *p = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    char *base = (char *)(((uintptr_t)p + HUGE_BYTES - 1) & ~(uintptr_t)(HUGE_BYTES - 1));
    if (base > p) munmap(p, (size_t)(base - p));
    if (base + size < p + map) munmap(base + size, (size_t)(p + map - (base + size)));
    (void)madvise(base, size, MADV_HUGEPAGE);   // best effort: THP may be off
    return base;
}

/* Room for bytes (64-byte aligned) in the current chunk or a new one; NULL if mmap fails. */
static struct buffer *weights_alloc(struct cpu *c, struct cpu_weights *cw, size_t bytes, size_t *offset)
{
    size_t need = (bytes + 63) & ~(size_t)63;
    if (cw->n_chunks && cw->used + need <= cw->chunks[cw->n_chunks - 1]->bytes) {
        *offset = cw->used;
        cw->used += need;
        return cw->chunks[cw->n_chunks - 1];
    }
    size_t size = need > CHUNK_BYTES ? (need + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES : CHUNK_BYTES;
    char *base = huge_map(size);
    if (!base) return NULL;
    struct buffer *b = host_buffer_wrap(&c->be, base, size);
    cw->chunks = xrealloc(cw->chunks, sizeof *cw->chunks * (size_t)(cw->n_chunks + 1));
    cw->chunks[cw->n_chunks++] = b;
    cw->used = need;
    *offset = 0;
    return b;
}

/* ==== Buffers ==== */

/* Buffers of a huge page or more (the KV pool, the activations) go on huge pages and are touched
 * here. Why: attention reads a slice of every cached position's row, one 4 KiB page each at f32,
 * so over small pages it walks a page table per position; and a decode step writes each layer's
 * K and V rows into fresh slots, where a first touch costs a page fault each (56 a token on
 * Qwen3-0.6B, measured here at about 85 us a layer). Touching the whole buffer once at creation
 * commits it, as a KV pool sized by its budget is meant to be. */
enum status cpu_buffer_new(struct backend *be, size_t bytes, struct buffer **out)
{
    if (bytes < HUGE_BYTES) return host_buffer_new(be, bytes, out);
    size_t size = (bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES;
    char *base = huge_map(size);
    if (!base) {
        LOG_ERR("cpu buffer: cannot map %zu bytes", bytes);
        return STATUS_ENOMEM;
    }
    memset(base, 0, size);
    *out = host_buffer_wrap(be, base, bytes);
    return STATUS_OK;
}

void cpu_buffer_free(struct backend *be, struct buffer *buf)
{
    if (!buf) return;
    if (buf->bytes < HUGE_BYTES) {   // host_buffer_new's
        host_buffer_free(be, buf);
        return;
    }
    munmap(buf->data, (buf->bytes + HUGE_BYTES - 1) / HUGE_BYTES * HUGE_BYTES);
    free(buf);
}

/* Moves t's bytes into the huge-page chunks (or onto an earlier copy of the same bytes). */
static void copy_tensor(struct cpu *c, struct cpu_weights *cw, struct tensor *t)
{
    const void *src = (const char *)t->buf->data + t->offset;
    size_t bytes = tensor_bytes(t);
    for (int i = 0; i < cw->n_copies; i++) {
        if (cw->copies[i].src == src && cw->copies[i].bytes >= bytes) {
            t->buf = cw->copies[i].buf;
            t->offset = cw->copies[i].offset;
            return;
        }
    }
    if (cw->total + bytes > cw->budget) {
        if (!cw->warned) LOG_INFO("cpu backend: weights past %.1f GiB stay file-mapped (slower decode)",
                                  (double)cw->budget / (double)(1ull << 30));
        cw->warned = true;
        return;
    }
    size_t off;
    struct buffer *b = weights_alloc(c, cw, bytes, &off);
    if (!b) {
        if (!cw->warned) LOG_WARN("cpu backend: cannot map memory for weight copies; using the file mapping");
        cw->warned = true;
        return;
    }
    memcpy((char *)b->data + off, src, bytes);
    if (cw->n_copies == cw->cap_copies) {
        cw->cap_copies = cw->cap_copies ? 2 * cw->cap_copies : 256;
        cw->copies = xrealloc(cw->copies, sizeof *cw->copies * (size_t)cw->cap_copies);
    }
    cw->copies[cw->n_copies++] = (struct wcopy){ src, bytes, b, off };
    cw->total += bytes;
    t->buf = b;
    t->offset = off;
}

enum status cpu_weight_prepare(struct backend *be, struct tensor *w)
{
    struct cpu *c = be->impl;
    if (!w->buf || !w->buf->data) return STATUS_OK;                 // absent tensor
    // quantized weights: the packed words are contiguous
    if (w->buf->owner == be || (!tensor_is_contiguous(w) && w->dtype != DTYPE_QMLX)) return STATUS_OK;
    struct cpu_weights *cw = weights_state(c);
    if (cw->disabled) return STATUS_OK;
    copy_tensor(c, cw, w);
    if (w->dtype == DTYPE_QMLX) {
        // the scales and biases stream beside the packed words (1/8 of their bytes at 4-bit g64)
        struct qweight *q = (struct qweight *)w->q;   // the model's descriptor (model.qw), writable there
        if (tensor_is_contiguous(&q->scales)) copy_tensor(c, cw, &q->scales);
        if (q->biases.buf && tensor_is_contiguous(&q->biases)) copy_tensor(c, cw, &q->biases);
    }
    return STATUS_OK;
}
