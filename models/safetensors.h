/* Hugging Face safetensors: reading (memory-mapped; single files and sharded checkpoints) and
 * writing.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header
 *   {"__metadata__": {...}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ..}
 * then the data buffer; offsets are relative to the buffer. Everything in the header is checked
 * against the mapping when the file is opened (header length, offsets in range, no overlap, no
 * hole, byte size = numel * dtype size, no duplicate names), so no later read can leave it. */
#ifndef SPIN_MODELS_SAFETENSORS_H
#define SPIN_MODELS_SAFETENSORS_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/ops.h"

#define SPIN_ST_MAX_DIMS 8

typedef struct spin_safetensors spin_safetensors;

/* Information about one stored tensor (borrowed from the open checkpoint). */
typedef struct {
    const char *name;
    const char *dtype; /* the safetensors dtype string: "F32", "BF16", "I64", ... */
    int ndim;
    int64_t shape[SPIN_ST_MAX_DIMS];
    const char *file; /* the file holding it */
    const void *data; /* inside the mapping */
    size_t nbytes;
} spin_st_info;

/* Opens `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding
 * model.safetensors or model.safetensors.index.json. Every file is mapped and validated. */
spin_status spin_st_open(const char *path, spin_safetensors **out);
void spin_st_close(spin_safetensors *st);

int spin_st_count(const spin_safetensors *st);
/* Tensor i in name order, or by name (NULL when absent). */
const spin_st_info *spin_st_at(const spin_safetensors *st, int i);
const spin_st_info *spin_st_find(const spin_safetensors *st, const char *name);
/* The description of what was opened (the path), for messages. */
const char *spin_st_path(const spin_safetensors *st);

/* Loads tensor `name` (F32, F16 or BF16) as a new contiguous f32 tensor on dev (I32 stays i32). When ndim >=
 * 0 the stored shape must equal shape[0..ndim) (error naming file, tensor and both shapes). */
spin_tensor *spin_st_load(const spin_safetensors *st, const char *name, spin_device *dev, int ndim,
                          const int64_t *shape);

/* Writes tensors (any device, any dtype; stored as `dtype`: SPIN_F32, SPIN_BF16 or SPIN_F16) into
 * one safetensors file: 8-byte aligned header with __metadata__ {"format": "pt"}, data in the
 * given order. Atomic (PATH.tmp, fsync, rename); an existing file is an error unless overwrite. */
spin_status spin_st_save(const char *path, int n, const char *const *names, spin_tensor *const *tensors,
                         spin_dtype dtype, bool overwrite);

/* Shared by the model writers: writes bytes to path atomically (path.tmp, fsync, rename), refusing
 * to replace an existing file unless overwrite. */
spin_status spin_write_file_atomic(const char *path, const void *data, size_t size, bool overwrite);

#endif
