/* Tensors: a reference-counted device storage seen through a strided view (up to 4 dims).
 * The struct is opaque; host code moves data only through spin_tensor_write/read.
 *
 * Ownership: every function returning a spin_tensor* hands the caller one reference. Inside a
 * scope (spin_scope_begin/end) the scope holds that reference instead and drops it at
 * spin_scope_end; spin_scope_keep gives the caller a reference of its own that outlives it. */
#ifndef SPIN_CORE_TENSOR_H
#define SPIN_CORE_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/device.h"
#include "core/dtype.h"
#include "core/status.h"

typedef struct spin_tensor spin_tensor;
struct spin_node;

/* A new uninitialised contiguous tensor; NULL (with spin_last_error) when the device is out of
 * memory. */
spin_tensor *spin_tensor_new(spin_device *dev, spin_dtype dtype, int ndim, const int64_t *shape);
/* A new tensor with the same device, dtype and shape as t (contiguous). */
spin_tensor *spin_tensor_new_like(const spin_tensor *t);
/* A view on base's storage: no copy. Bounds are checked against the storage. */
spin_tensor *spin_tensor_view_of(spin_tensor *base, int ndim, const int64_t *shape, const int64_t *stride,
                                 size_t offset);

spin_tensor *spin_tensor_retain(spin_tensor *t);
void spin_tensor_release(spin_tensor *t);

int spin_tensor_ndim(const spin_tensor *t);
int64_t spin_tensor_dim(const spin_tensor *t, int i); /* negative i counts from the end */
int64_t spin_tensor_stride(const spin_tensor *t, int i);
const int64_t *spin_tensor_shape(const spin_tensor *t);
const int64_t *spin_tensor_strides(const spin_tensor *t);
size_t spin_tensor_offset(const spin_tensor *t);
int64_t spin_tensor_numel(const spin_tensor *t);
spin_dtype spin_tensor_dtype(const spin_tensor *t);
spin_device *spin_tensor_device(const spin_tensor *t);
bool spin_tensor_is_contiguous(const spin_tensor *t);
bool spin_tensor_same_shape(const spin_tensor *a, const spin_tensor *b);
/* True when a and b view the same storage. */
bool spin_tensor_shares_storage(const spin_tensor *a, const spin_tensor *b);
void spin_tensor_set_name(spin_tensor *t, const char *name);
const char *spin_tensor_name(const spin_tensor *t);
/* "[2, 3, 5]" into buf. */
const char *spin_shape_str(const spin_tensor *t, char *buf, size_t size);

/* Host transfer of a contiguous tensor; bytes must equal numel * dtype size. read waits for the
 * device (the only kind of synchronisation). */
spin_status spin_tensor_write(spin_tensor *t, const void *src, size_t bytes);
spin_status spin_tensor_read(const spin_tensor *t, void *dst, size_t bytes);
/* Convenience for tests and tools: any dtype/layout, converted to/from f32. */
spin_status spin_tensor_read_f32(const spin_tensor *t, float *dst, int64_t n);
spin_status spin_tensor_write_f32(spin_tensor *t, const float *src, int64_t n);

/* Autograd state (see core/autograd.h). */
bool spin_tensor_requires_grad(const spin_tensor *t);
void spin_tensor_set_requires_grad(spin_tensor *t, bool on);
/* The accumulated gradient (borrowed; NULL if none). */
spin_tensor *spin_tensor_grad(const spin_tensor *t);
void spin_tensor_zero_grad(spin_tensor *t);
struct spin_node *spin_tensor_node(const spin_tensor *t);
/* The dtype of a gradient for t: f32 for a leaf (a parameter; its gradient sums in f32), t's own for
 * an interior tensor and for a recompute boundary's stand-in of one (core/autograd.c). */
spin_dtype spin_tensor_grad_dtype(const spin_tensor *t);

/* Scopes. */
void spin_scope_begin(void);
void spin_scope_end(void);
spin_tensor *spin_scope_keep(spin_tensor *t);
int spin_scope_depth(void);

/* Live tensor structs (for leak tests). */
int64_t spin_tensor_live_count(void);

#endif
