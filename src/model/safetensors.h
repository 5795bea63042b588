/* safetensors: read-only access to the weights of a Hugging Face checkpoint, mmapped.
 *
 * Owns `struct model_file`: the mappings of one `model.safetensors`, or of every shard named by
 * `model.safetensors.index.json`, plus a name-sorted table of all tensors. Everything read from
 * disk is validated before anyone sees it: header length against the file size, the header JSON,
 * each tensor's dtype, shape x dtype size against its byte range, the range inside the data
 * region, and no two tensors overlapping. Failures log the file and tensor once and return
 * STATUS_EFORMAT (corrupt), STATUS_ENOTFOUND (missing file or tensor) or STATUS_EIO.
 * Called by model_load() and `cairn info`; read-only after open, so any thread may look up.
 *
 *     struct model_file *mf;
 *     if (safetensors_open_dir("models/tiny", &mf) != STATUS_OK) return st;
 *     struct tensor w;  safetensors_get(mf, "model.norm.weight", &w);  ...  safetensors_close(mf);
 */
#ifndef CAIRN_MODEL_SAFETENSORS_H
#define CAIRN_MODEL_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/status.h"
#include "tensor/tensor.h"

#define ST_MAX_DIMS          8
#define ST_MAX_HEADER_BYTES  (100u << 20)   // 100 MiB, as the reference implementation

struct st_tensor {
    const char *name;                 // owned by the model_file
    enum dtype  dtype;
    int         n_dims;               // 0 (scalar) .. ST_MAX_DIMS
    int64_t     shape[ST_MAX_DIMS];   // as written in the file: outermost first
    size_t      begin;                // byte offset in the shard's data region
    size_t      bytes;                // end - begin == nelem * dtype_size
    int         shard;                // index into model_file shards
    struct buffer *copy;              // owned aligned copy when the file offset is not a multiple of the
                                      // element size (MLX writes tensors back to back); NULL otherwise
};

struct st_shard {
    char         *path;               // owned
    const uint8_t *map;               // whole file; NULL for an empty in-memory shard
    size_t        size;               // bytes of the file
    size_t        data_off;           // 8 + header length: start of the data region
    bool          mapped;             // true: map came from mmap and is unmapped at close
    bool          owned;              // true: map is malloc'd memory, freed at close (synthetic)
    struct buffer buf;                // BUF_MMAP over the whole file; tensors point into it
};

struct model_file {
    struct st_shard  *shards;         // [n_shards]
    int               n_shards;
    struct st_tensor *tensors;        // [n_tensors], sorted by name
    int               n_tensors;
    void             *extra;          // owned by-product of the creator (free()d at close), or NULL
};

/* Opens a model directory: model.safetensors.index.json if present, else model.safetensors. */
enum status safetensors_open_dir(const char *dir, struct model_file **out);
/* Opens one safetensors file. */
enum status safetensors_open_file(const char *path, struct model_file **out);
/* Validates a safetensors image in memory (borrowed: must outlive the model_file). `label`
 * names it in errors. Used by tests and the fuzzer. */
enum status safetensors_open_mem(const char *label, const void *data, size_t size, struct model_file **out);
void        safetensors_close(struct model_file *mf);   // NULL is fine

/* NULL if absent (no logging). */
const struct st_tensor *safetensors_find(const struct model_file *mf, const char *name);
/* A tensor view (ne reversed from the file's shape, BUF_MMAP buffer) of the named tensor.
 * ENOTFOUND (logged) if absent; EUNSUPPORTED if it has more than 4 dims. */
enum status safetensors_get(const struct model_file *mf, const char *name, struct tensor *out);
/* The bytes of an entry (its aligned copy if it has one). */
const uint8_t *safetensors_data(const struct model_file *mf, const struct st_tensor *t);
/* The view of an entry; same rules as safetensors_get. */
enum status safetensors_view(const struct model_file *mf, const struct st_tensor *t, struct tensor *out);

#endif
