/* Softmax and log-softmax over the last axis; backward through the *_BACK kernels from the saved
 * output (no need to keep the input). */
#include "ops/op_util.h"

/* dx = K(y, g): SOFTMAX_BACK gives y (g - sum g y), LOG_SOFTMAX_BACK gives g - exp(y) sum g. */
static spin_tensor *back_from_output(spin_kernel k, spin_node *n, spin_tensor *g) {
    op_begin();
    spin_tensor *gc = spin_contiguous(g); /* the kernels take contiguous rows */
    spin_tensor *in[2] = {n->saved[0], gc};
    spin_tensor *dx =
        gc ? op_launch(k, 2, in,
                       op_new(g, op_grad_dtype(n->in[0]), spin_tensor_ndim(g), spin_tensor_shape(g)), NULL)
           : NULL;
    spin_tensor_release(gc);
    return op_end(dx);
}

static spin_status softmax_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = back_from_output(SPIN_K_SOFTMAX_BACK, n, g);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

static spin_status log_softmax_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = back_from_output(SPIN_K_LOG_SOFTMAX_BACK, n, g);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

static spin_tensor *softmax_op(spin_kernel k, const char *name, spin_backward_fn bw, spin_tensor *x) {
    op_begin();
    char sx[64];
    OP_REQUIRE(spin_tensor_ndim(x) >= 1, "%s: needs at least 1 dim (got %s)", name,
               spin_shape_str(x, sx, sizeof sx));
    OP_REQUIRE(op_float(x), "%s: f32 or bf16 input only (got %s)", name,
               spin_dtype_name(spin_tensor_dtype(x)));
    spin_no_grad_begin();                 /* the copy is covered by this op's node */
    spin_tensor *xc = spin_contiguous(x); /* the kernel takes contiguous rows */
    spin_no_grad_end();
    spin_tensor *y =
        xc ? op_launch(k, 1, &xc, op_new(x, spin_tensor_dtype(x), spin_tensor_ndim(x), spin_tensor_shape(x)),
                       NULL)
           : NULL;
    spin_tensor_release(xc);
    spin_node *n = spin_autograd_record(y, name, bw, 1, &x);
    if (n)
        spin_node_save(n, y);
    return op_end(y);
}

/* y = exp(x - max) / sum exp(x - max) over the last axis */
spin_tensor *spin_softmax(spin_tensor *x) {
    return softmax_op(SPIN_K_SOFTMAX, "softmax", softmax_backward, x);
}

/* y = x - log sum exp(x) over the last axis */
spin_tensor *spin_log_softmax(spin_tensor *x) {
    return softmax_op(SPIN_K_LOG_SOFTMAX, "log_softmax", log_softmax_backward, x);
}
