/* Reductions over one axis or all elements, and their backward rules. */
#include <string.h>

#include "ops/op_util.h"

/* g (shape of the reduced output) broadcast back to x's shape, contiguous. Owned ref. */
static spin_tensor *spread(spin_tensor *g, const spin_tensor *x, int axis) {
    int nd = spin_tensor_ndim(x);
    int64_t sh[SPIN_MAX_DIMS];
    memcpy(sh, spin_tensor_shape(x), sizeof sh);
    sh[axis] = 1;
    spin_tensor *gk = spin_reshape(g, nd, sh);
    spin_tensor *ge = gk ? spin_expand(gk, nd, spin_tensor_shape(x)) : NULL;
    spin_tensor *out = ge ? spin_copy(ge) : NULL;
    spin_tensor_release(gk);
    spin_tensor_release(ge);
    return out;
}

static spin_tensor *reduce(spin_kernel k, const char *name, spin_backward_fn bw, spin_tensor *x, int axis,
                           bool keepdim) {
    op_begin();
    int a = op_axis(x, axis), nd = spin_tensor_ndim(x);
    OP_REQUIRE(a >= 0, "%s: axis %d of a %d-d tensor", name, axis, nd);
    OP_REQUIRE(op_float(x), "%s: f32 or bf16 input only (got %s)", name,
               spin_dtype_name(spin_tensor_dtype(x)));
    int64_t sh[SPIN_MAX_DIMS];
    memcpy(sh, spin_tensor_shape(x), sizeof sh);
    sh[a] = 1;
    spin_tensor *y = op_launch(k, 1, &x, op_new(x, spin_tensor_dtype(x), nd, sh), &(spin_kparams){.i = {a}});
    if (y && !keepdim) {
        for (int i = a; i < nd - 1; i++)
            sh[i] = sh[i + 1];
        int64_t st[SPIN_MAX_DIMS], s = 1;
        for (int i = nd - 2; i >= 0; i--) {
            st[i] = s;
            s *= sh[i];
        }
        spin_tensor *v = spin_tensor_view_of(y, nd - 1, sh, st, 0);
        spin_tensor_release(y);
        y = v;
    }
    spin_node *n = spin_autograd_record(y, name, bw, 1, &x);
    if (n) {
        n->p.i[0] = a;
        if (k == SPIN_K_SUMSQ_AXIS)
            spin_node_save(n, x);
    }
    return op_end(y);
}

/* y = sum_axis x: gx = g broadcast */
static spin_status sum_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = spread(g, n->in[0], (int)n->p.i[0]);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

/* y = sum_axis x^2: gx = 2 x g broadcast */
static spin_status sumsq_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *gs = spread(g, n->in[0], (int)n->p.i[0]);
    spin_tensor *t = gs ? spin_mul(gs, n->saved[0]) : NULL;
    gin[0] = t ? spin_scale(t, 2.0f) : NULL;
    spin_tensor_release(gs);
    spin_tensor_release(t);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

spin_tensor *spin_sum(spin_tensor *x, int axis, bool keepdim) {
    return reduce(SPIN_K_SUM_AXIS, "sum", sum_backward, x, axis, keepdim);
}

spin_tensor *spin_sumsq(spin_tensor *x, int axis, bool keepdim) {
    return reduce(SPIN_K_SUMSQ_AXIS, "sumsq", sumsq_backward, x, axis, keepdim);
}

spin_tensor *spin_mean(spin_tensor *x, int axis, bool keepdim) {
    op_begin();
    int a = op_axis(x, axis);
    OP_REQUIRE(a >= 0, "mean: axis %d of a %d-d tensor", axis, spin_tensor_ndim(x));
    spin_tensor *s = spin_sum(x, a, keepdim);
    int64_t len = spin_tensor_dim(x, a);
    spin_tensor *m = s ? spin_scale(s, len ? 1.0f / (float)len : 0.0f) : NULL;
    spin_tensor_release(s);
    return op_end(m);
}

/* Reduces all elements: flatten, reduce axis 0, view as a 0-d tensor. */
static spin_tensor *reduce_all(spin_tensor *(*fn)(spin_tensor *, int, bool), spin_tensor *x) {
    op_begin();
    int64_t n = spin_tensor_numel(x);
    spin_tensor *flat = spin_reshape(x, 1, &n);
    spin_tensor *s = flat ? fn(flat, 0, false) : NULL;
    spin_tensor_release(flat);
    return op_end(s);
}

spin_tensor *spin_sum_all(spin_tensor *x) {
    return reduce_all(spin_sum, x);
}
spin_tensor *spin_sumsq_all(spin_tensor *x) {
    return reduce_all(spin_sumsq, x);
}

spin_tensor *spin_mean_all(spin_tensor *x) {
    op_begin();
    spin_tensor *s = spin_sum_all(x);
    int64_t n = spin_tensor_numel(x);
    spin_tensor *m = s ? spin_scale(s, n ? 1.0f / (float)n : 0.0f) : NULL;
    spin_tensor_release(s);
    return op_end(m);
}

/* y[b] = sum_t x[b, t] mask[b, t] (composed: its gradient follows from mul and sum). */
spin_tensor *spin_masked_sum(spin_tensor *x, spin_tensor *mask) {
    op_begin();
    char a[64], b[64];
    OP_REQUIRE(spin_tensor_same_shape(x, mask), "masked_sum: x %s and mask %s differ",
               spin_shape_str(x, a, sizeof a), spin_shape_str(mask, b, sizeof b));
    spin_tensor *xm = spin_mul(x, mask);
    spin_tensor *s = xm ? spin_sum(xm, -1, false) : NULL;
    spin_tensor_release(xm);
    return op_end(s);
}
