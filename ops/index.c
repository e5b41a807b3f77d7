/* Argmax and top-k over the last axis. Not differentiable: nothing is recorded. */
#include "ops/op_util.h"

/* idx[..] = the first j maximising x[.., j] */
spin_tensor *spin_argmax(spin_tensor *x) {
    op_begin();
    char sx[64];
    int nd = spin_tensor_ndim(x);
    OP_REQUIRE(nd >= 1 && spin_tensor_dim(x, -1) > 0, "argmax: needs a non-empty last axis (got %s)",
               spin_shape_str(x, sx, sizeof sx));
    OP_REQUIRE(op_float(x), "argmax: f32 or bf16 input only (got %s)", spin_dtype_name(spin_tensor_dtype(x)));
    spin_tensor *xc = spin_contiguous(x);
    spin_tensor *idx =
        xc ? op_launch(SPIN_K_ARGMAX, 1, &xc, op_new(x, SPIN_I32, nd - 1, spin_tensor_shape(x)), NULL) : NULL;
    spin_tensor_release(xc);
    return op_end(idx);
}

/* values[.., q], indices[.., q] = the q-th largest x[.., j] and its j (ties: lower j first) */
spin_status spin_topk(spin_tensor *x, int64_t k, spin_tensor **values, spin_tensor **indices) {
    *values = *indices = NULL;
    char sx[64];
    int nd = spin_tensor_ndim(x);
    if (nd < 1 || k < 0 || k > spin_tensor_dim(x, -1))
        return spin_fail(SPIN_ERR_INVALID, "topk: k = %lld of %s (needs 0 <= k <= last dim)", (long long)k,
                         spin_shape_str(x, sx, sizeof sx));
    if (!op_float(x))
        return spin_fail(SPIN_ERR_INVALID, "topk: f32 or bf16 input only (got %s)",
                         spin_dtype_name(spin_tensor_dtype(x)));
    spin_scope_manual_begin();
    int64_t sh[SPIN_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        sh[i] = spin_tensor_dim(x, i);
    sh[nd - 1] = k;
    spin_tensor *xc = spin_contiguous(x);
    spin_tensor *out[2] = {op_new(x, spin_tensor_dtype(x), nd, sh), op_new(x, SPIN_I32, nd, sh)};
    spin_status s = xc && out[0] && out[1] ? SPIN_OK : SPIN_ERR_OOM;
    if (s == SPIN_OK)
        s = spin_launch(SPIN_K_TOPK, 1, &xc, 2, out, &(spin_kparams){.i = {k}});
    spin_tensor_release(xc);
    if (s != SPIN_OK) {
        spin_tensor_release(out[0]);
        spin_tensor_release(out[1]);
        out[0] = out[1] = NULL;
    }
    spin_scope_manual_end();
    *values = spin_scope_adopt(out[0]);
    *indices = spin_scope_adopt(out[1]);
    return s;
}
