/* Helpers shared by the op implementations (private to ops/). */
#ifndef SPIN_OPS_OP_UTIL_H
#define SPIN_OPS_OP_UTIL_H

#include "core/dispatch.h"
#include "core/scope.h"
#include "ops/ops.h"

/* Every op body runs between op_begin and op_end: its temporaries are released explicitly and
 * the result is handed to the caller's scope. */
static inline void op_begin(void) {
    spin_scope_manual_begin();
}
static inline spin_tensor *op_end(spin_tensor *out) {
    spin_scope_manual_end();
    return spin_scope_adopt(out);
}

/* Launches and, on failure, releases `out` and returns NULL. */
static inline spin_tensor *op_launch(spin_kernel k, int n_in, spin_tensor *const *in, spin_tensor *out,
                                     const spin_kparams *p) {
    if (!out)
        return NULL;
    if (spin_launch(k, n_in, in, 1, &out, p) != SPIN_OK) {
        spin_tensor_release(out);
        return NULL;
    }
    return out;
}

/* A new f32 (or given dtype) tensor on x's device. */
static inline spin_tensor *op_new(const spin_tensor *like, spin_dtype dt, int ndim, const int64_t *shape) {
    return spin_tensor_new(spin_tensor_device(like), dt, ndim, shape);
}

/* Mixed precision (docs/training.md): float tensors are f32 or bf16. An op's float result has its
 * float inputs' dtype, f32 when they differ (torch's promotion); row statistics, log-probs and
 * losses are f32 whatever the inputs. Kernels compute in f32 (core/dispatch.c widens bf16). */
static inline bool op_float(const spin_tensor *t) {
    return spin_tensor_dtype(t) == SPIN_F32 || spin_tensor_dtype(t) == SPIN_BF16;
}
static inline spin_dtype op_promote(const spin_tensor *a, const spin_tensor *b) {
    return spin_tensor_dtype(a) == spin_tensor_dtype(b) ? spin_tensor_dtype(a) : SPIN_F32;
}

/* The dtype of the gradient an op produces for input x: x's own, except f32 for a leaf (a
 * parameter), whose gradient is accumulated in f32 anyway (core/autograd.c). */
static inline spin_dtype op_grad_dtype(const spin_tensor *x) {
    return spin_tensor_grad_dtype(x);
}

/* Fails with a message naming the op when cond is false. */
#define OP_REQUIRE(cond, ...)                         \
    do {                                              \
        if (!(cond)) {                                \
            spin_fail(SPIN_ERR_INVALID, __VA_ARGS__); \
            return op_end(NULL);                      \
        }                                             \
    } while (0)

/* Normalises a possibly negative axis; -1 when out of range. */
static inline int op_axis(const spin_tensor *x, int axis) {
    int nd = spin_tensor_ndim(x);
    if (axis < 0)
        axis += nd;
    return axis >= 0 && axis < nd ? axis : -1;
}

/* Reduces a broadcast gradient g back to `like`'s shape (sums over broadcast dims). Owned ref. */
spin_tensor *op_unbroadcast(spin_tensor *g, const spin_tensor *like);

#endif
