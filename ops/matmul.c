/* Matmul: c = a @ b over the last two dims with batch dims, either operand transposed.
 * Backward: ga = g @ b^T, gb = a^T @ g (transposes are views; BLAS reads them in place). */
#include <string.h>

#include "ops/op_util.h"

/* The operand as the kernel wants it: [.., rows, cols] with one of the last two strides 1. */
static spin_tensor *blas_ready(spin_tensor *x, bool t) {
    int nd = spin_tensor_ndim(x);
    int64_t s1 = spin_tensor_stride(x, nd - 1), s2 = spin_tensor_stride(x, nd - 2);
    bool ok = s1 == 1 || s2 == 1 || spin_tensor_dim(x, nd - 1) == 1 || spin_tensor_dim(x, nd - 2) == 1;
    spin_tensor *base = ok ? spin_tensor_retain(x) : spin_copy(x);
    if (!base || !t)
        return base;
    int64_t sh[SPIN_MAX_DIMS], st[SPIN_MAX_DIMS];
    memcpy(sh, spin_tensor_shape(base), sizeof sh);
    memcpy(st, spin_tensor_strides(base), sizeof st);
    int64_t tmp = sh[nd - 1];
    sh[nd - 1] = sh[nd - 2];
    sh[nd - 2] = tmp;
    tmp = st[nd - 1];
    st[nd - 1] = st[nd - 2];
    st[nd - 2] = tmp;
    spin_tensor *v = spin_tensor_view_of(base, nd, sh, st, spin_tensor_offset(base));
    spin_tensor_release(base);
    return v;
}

static spin_tensor *matmul_as(spin_tensor *a, spin_tensor *b, bool ta, bool tb, spin_dtype out_dt);

static spin_status matmul_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    bool ta = n->p.i[0], tb = n->p.i[1];
    spin_tensor *a = n->in[0], *b = n->in[1];
    if (n->needs[0]) {
        /* d op(a) = g @ op(b)^T; transposed back to a's layout when ta. */
        spin_tensor *t = matmul_as(g, b, false, !tb, op_grad_dtype(a));
        if (t && ta) {
            spin_tensor *tt = spin_transpose(t, -1, -2);
            spin_tensor_release(t);
            t = tt ? spin_contiguous(tt) : NULL;
            spin_tensor_release(tt);
        }
        if (!(gin[0] = t))
            return SPIN_ERR_OOM;
    }
    if (n->needs[1]) {
        /* d op(b) = op(a)^T @ g, or its transpose g^T @ op(a) when tb. */
        spin_dtype dt = op_grad_dtype(b);
        spin_tensor *gb = tb ? matmul_as(g, a, true, ta, dt) : matmul_as(a, g, !ta, false, dt);
        if (gb && spin_tensor_ndim(b) == 2 && spin_tensor_ndim(gb) > 2) {
            /* b was shared across the batch: sum its per-batch gradients. */
            int64_t sh3[3] = {-1, spin_tensor_dim(gb, -2), spin_tensor_dim(gb, -1)};
            spin_tensor *r = spin_reshape(gb, 3, sh3);
            spin_tensor_release(gb);
            gb = r ? spin_sum(r, 0, false) : NULL;
            spin_tensor_release(r);
        }
        if (!(gin[1] = gb))
            return SPIN_ERR_OOM;
    }
    return SPIN_OK;
}

spin_tensor *spin_matmul(spin_tensor *a, spin_tensor *b, bool ta, bool tb) {
    return matmul_as(a, b, ta, tb, op_promote(a, b));
}

/* The product stored as out_dt (the kernel accumulates in f32 either way). */
static spin_tensor *matmul_as(spin_tensor *a, spin_tensor *b, bool ta, bool tb, spin_dtype out_dt) {
    op_begin();
    int na = spin_tensor_ndim(a), nb = spin_tensor_ndim(b);
    char sa[64], sb[64];
    OP_REQUIRE(na >= 2 && nb >= 2, "matmul: operands need 2+ dims (got %s and %s)",
               spin_shape_str(a, sa, sizeof sa), spin_shape_str(b, sb, sizeof sb));
    OP_REQUIRE(op_float(a) && op_float(b), "matmul: f32 or bf16 operands only (got %s and %s)",
               spin_dtype_name(spin_tensor_dtype(a)), spin_dtype_name(spin_tensor_dtype(b)));
    int64_t m = spin_tensor_dim(a, ta ? -1 : -2), k = spin_tensor_dim(a, ta ? -2 : -1);
    int64_t kb = spin_tensor_dim(b, tb ? -1 : -2), nn = spin_tensor_dim(b, tb ? -2 : -1);
    OP_REQUIRE(k == kb, "matmul: inner dimensions differ: %s%s @ %s%s", spin_shape_str(a, sa, sizeof sa),
               ta ? "^T" : "", spin_shape_str(b, sb, sizeof sb), tb ? "^T" : "");
    OP_REQUIRE(nb == 2 || nb == na, "matmul: b must be 2-D or have a's batch dims");
    int64_t sh[SPIN_MAX_DIMS], bsh[SPIN_MAX_DIMS];
    for (int i = 0; i < na - 2; i++) {
        sh[i] = bsh[i] = spin_tensor_dim(a, i);
        OP_REQUIRE(nb == 2 || spin_tensor_dim(b, i) == sh[i], "matmul: batch dim %d differs (%s vs %s)", i,
                   spin_shape_str(a, sa, sizeof sa), spin_shape_str(b, sb, sizeof sb));
    }
    sh[na - 2] = m;
    sh[na - 1] = nn;
    bsh[na - 2] = k;
    bsh[na - 1] = nn;
    spin_tensor *av = blas_ready(a, ta), *bv = blas_ready(b, tb), *y = NULL;
    if (bv && nb == 2 && na > 2) {
        /* a 2-D b is shared by every batch: a stride-0 view, no copy */
        int64_t st[SPIN_MAX_DIMS] = {0};
        st[na - 2] = spin_tensor_stride(bv, 0);
        st[na - 1] = spin_tensor_stride(bv, 1);
        spin_tensor *e = spin_tensor_view_of(bv, na, bsh, st, spin_tensor_offset(bv));
        spin_tensor_release(bv);
        bv = e;
    }
    if (av && bv) {
        spin_tensor *in[2] = {av, bv};
        y = op_launch(SPIN_K_MATMUL, 2, in, op_new(a, out_dt, na, sh), &(spin_kparams){.f = {1.0f, 0.0f}});
    }
    spin_tensor_release(av);
    spin_tensor_release(bv);
    spin_tensor *ab[2] = {a, b};
    spin_node *n = spin_autograd_record(y, "matmul", matmul_backward, 2, ab);
    if (n) {
        n->p.i[0] = ta;
        n->p.i[1] = tb;
    }
    return op_end(y);
}
