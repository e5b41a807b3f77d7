/* The tensor struct: private to core/. */
#ifndef SPIN_CORE_TENSOR_IMPL_H
#define SPIN_CORE_TENSOR_IMPL_H

#include "core/backend.h"
#include "core/tensor.h"

typedef struct spin_storage {
    int refcount;
    spin_device *dev;
    void *buf;
    size_t bytes;
} spin_storage;

struct spin_tensor {
    int refcount;
    spin_storage *st;
    size_t offset; /* elements */
    spin_dtype dtype;
    int ndim;
    int64_t shape[SPIN_MAX_DIMS];
    int64_t stride[SPIN_MAX_DIMS];
    bool requires_grad;
    bool grad_as_interior; /* a recompute boundary's stand-in: its gradient sums as an interior tensor's */
    int hook_pending;      /* a leaf in a hooked backward walk: edges still to run; -1 once reported */
    spin_tensor *grad;
    struct spin_node *node; /* the op that produced this tensor, when recorded */
    char name[32];
};

spin_view spin_tensor_kview(const spin_tensor *t);

#endif
