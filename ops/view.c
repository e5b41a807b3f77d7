/* Views (no copy), copies, casts, concat and split, with their backward rules. */
#include <string.h>

#include "ops/op_util.h"

/* ---- reshape: y = x with a new shape (same elements in row-major order) ---- */

static spin_status reshape_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *x = n->in[0];
    spin_tensor *gc = spin_contiguous(g);
    if (!gc)
        return SPIN_ERR_OOM;
    gin[0] = spin_reshape(gc, spin_tensor_ndim(x), spin_tensor_shape(x));
    spin_tensor_release(gc);
    return gin[0] ? SPIN_OK : SPIN_ERR_INVALID;
}

spin_tensor *spin_reshape(spin_tensor *x, int ndim, const int64_t *shape) {
    op_begin();
    OP_REQUIRE(ndim >= 0 && ndim <= SPIN_MAX_DIMS, "reshape: %d dims (max %d)", ndim, SPIN_MAX_DIMS);
    int64_t sh[SPIN_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        sh[i] = shape[i];
        if (sh[i] == -1) {
            OP_REQUIRE(infer < 0, "reshape: more than one -1");
            infer = i;
        } else {
            known *= sh[i];
        }
    }
    int64_t n = spin_tensor_numel(x);
    if (infer >= 0) {
        OP_REQUIRE(known > 0 && n % known == 0, "reshape: cannot infer a dimension");
        sh[infer] = n / known;
        known *= sh[infer];
    }
    char buf[64];
    OP_REQUIRE(known == n, "reshape: %lld elements cannot take the new shape (from %s)", (long long)n,
               spin_shape_str(x, buf, sizeof buf));
    spin_tensor *src = spin_contiguous(x); /* a view when x is contiguous */
    if (!src)
        return op_end(NULL);
    int64_t st[SPIN_MAX_DIMS], s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        st[i] = s;
        s *= sh[i];
    }
    spin_tensor *y = spin_tensor_view_of(src, ndim, sh, st, spin_tensor_offset(src));
    spin_tensor_release(src);
    spin_autograd_record(y, "reshape", reshape_backward, 1, &x);
    return op_end(y);
}

/* ---- permute: y[.., i_perm[d], ..] = x (dims reordered) ---- */

static spin_status permute_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    int inv[SPIN_MAX_DIMS];
    for (int i = 0; i < n->out_ndim; i++)
        inv[n->p.i[i]] = i;
    spin_tensor *v = spin_permute(g, inv);
    if (!v)
        return SPIN_ERR_INVALID;
    gin[0] = spin_contiguous(v);
    spin_tensor_release(v);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

spin_tensor *spin_permute(spin_tensor *x, const int *perm) {
    op_begin();
    int nd = spin_tensor_ndim(x);
    int64_t sh[SPIN_MAX_DIMS], st[SPIN_MAX_DIMS];
    unsigned seen = 0;
    for (int i = 0; i < nd; i++) {
        OP_REQUIRE(perm[i] >= 0 && perm[i] < nd && !(seen & (1u << perm[i])), "permute: bad permutation");
        seen |= 1u << perm[i];
        sh[i] = spin_tensor_dim(x, perm[i]);
        st[i] = spin_tensor_stride(x, perm[i]);
    }
    spin_tensor *y = spin_tensor_view_of(x, nd, sh, st, spin_tensor_offset(x));
    spin_node *n = spin_autograd_record(y, "permute", permute_backward, 1, &x);
    if (n)
        for (int i = 0; i < nd; i++)
            n->p.i[i] = perm[i];
    return op_end(y);
}

spin_tensor *spin_transpose(spin_tensor *x, int d0, int d1) {
    int nd = spin_tensor_ndim(x), perm[SPIN_MAX_DIMS];
    if (d0 < 0)
        d0 += nd;
    if (d1 < 0)
        d1 += nd;
    if (d0 < 0 || d0 >= nd || d1 < 0 || d1 >= nd) {
        spin_fail(SPIN_ERR_INVALID, "transpose: dims %d, %d of a %d-d tensor", d0, d1, nd);
        return NULL;
    }
    for (int i = 0; i < nd; i++)
        perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return spin_permute(x, perm);
}

/* ---- narrow: y = x[.., start:start+len, ..] along dim ---- */

static spin_status narrow_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *x = n->in[0];
    spin_tensor *z =
        spin_zeros(spin_tensor_device(g), spin_tensor_dtype(g), spin_tensor_ndim(x), spin_tensor_shape(x));
    if (!z)
        return SPIN_ERR_OOM;
    spin_tensor *slot = spin_narrow(z, (int)n->p.i[0], n->p.i[1], n->p.i[2]);
    spin_status s = slot ? spin_copy_into(slot, g) : SPIN_ERR_INVALID;
    spin_tensor_release(slot);
    if (s != SPIN_OK) {
        spin_tensor_release(z);
        return s;
    }
    gin[0] = z;
    return SPIN_OK;
}

spin_tensor *spin_narrow(spin_tensor *x, int dim, int64_t start, int64_t len) {
    op_begin();
    int d = op_axis(x, dim);
    OP_REQUIRE(d >= 0, "narrow: dim %d of a %d-d tensor", dim, spin_tensor_ndim(x));
    OP_REQUIRE(start >= 0 && len >= 0 && start + len <= spin_tensor_dim(x, d),
               "narrow: [%lld, %lld) outside dim %d of size %lld", (long long)start, (long long)(start + len),
               d, (long long)spin_tensor_dim(x, d));
    int nd = spin_tensor_ndim(x);
    int64_t sh[SPIN_MAX_DIMS];
    memcpy(sh, spin_tensor_shape(x), sizeof sh);
    sh[d] = len;
    size_t off = spin_tensor_offset(x) + (size_t)(start * spin_tensor_stride(x, d));
    spin_tensor *y = spin_tensor_view_of(x, nd, sh, spin_tensor_strides(x), off);
    spin_node *n = spin_autograd_record(y, "narrow", narrow_backward, 1, &x);
    if (n) {
        n->p.i[0] = d;
        n->p.i[1] = start;
        n->p.i[2] = len;
    }
    return op_end(y);
}

/* ---- expand: broadcast view, y = x repeated along size-1 / missing leading dims ---- */

static spin_status expand_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = op_unbroadcast(g, n->in[0]);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

spin_tensor *spin_expand(spin_tensor *x, int ndim, const int64_t *shape) {
    op_begin();
    int xn = spin_tensor_ndim(x);
    OP_REQUIRE(ndim >= xn && ndim <= SPIN_MAX_DIMS, "expand: %d dims to %d", xn, ndim);
    int64_t st[SPIN_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        int xi = i - (ndim - xn);
        if (xi < 0) {
            st[i] = 0;
            continue;
        }
        int64_t xs = spin_tensor_dim(x, xi);
        OP_REQUIRE(xs == shape[i] || xs == 1, "expand: dim %d of size %lld cannot become %lld", xi,
                   (long long)xs, (long long)shape[i]);
        st[i] = xs == shape[i] ? spin_tensor_stride(x, xi) : 0;
    }
    spin_tensor *y = spin_tensor_view_of(x, ndim, shape, st, spin_tensor_offset(x));
    spin_autograd_record(y, "expand", expand_backward, 1, &x);
    return op_end(y);
}

/* ---- copies ---- */

static spin_status copy_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    (void)n;
    gin[0] = spin_copy(g);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

spin_tensor *spin_copy(spin_tensor *x) {
    op_begin();
    spin_tensor *y = op_launch(SPIN_K_COPY, 1, &x, spin_tensor_new_like(x), NULL);
    spin_autograd_record(y, "copy", copy_backward, 1, &x);
    return op_end(y);
}

spin_tensor *spin_contiguous(spin_tensor *x) {
    if (spin_tensor_is_contiguous(x))
        return spin_scope_adopt(spin_tensor_retain(x));
    return spin_copy(x);
}

static spin_status cast_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = spin_cast(g, spin_tensor_dtype(n->in[0]));
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

spin_tensor *spin_cast(spin_tensor *x, spin_dtype dt) {
    op_begin();
    spin_tensor *y =
        op_launch(SPIN_K_COPY, 1, &x, op_new(x, dt, spin_tensor_ndim(x), spin_tensor_shape(x)), NULL);
    if (dt != SPIN_I32 && spin_tensor_dtype(x) != SPIN_I32)
        spin_autograd_record(y, "cast", cast_backward, 1, &x);
    return op_end(y);
}

spin_status spin_copy_into(spin_tensor *dst, spin_tensor *src) {
    if (!spin_tensor_same_shape(dst, src)) {
        char a[64], b[64];
        return spin_fail(SPIN_ERR_INVALID, "copy_into: destination %s, source %s",
                         spin_shape_str(dst, a, sizeof a), spin_shape_str(src, b, sizeof b));
    }
    if (spin_grad_enabled() && spin_tensor_requires_grad(dst))
        return spin_fail(SPIN_ERR_INVALID, "copy_into: destination requires grad");
    return spin_launch(SPIN_K_COPY, 1, &src, 1, &dst, NULL);
}

/* ---- concat: y = [x0; x1; ..] along dim, built from copies into narrowed views ---- */

static spin_status concat_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    int d = (int)n->p.i[0];
    int64_t start = 0;
    for (int i = 0; i < n->n_in; i++) {
        int64_t len = spin_tensor_dim(n->in[i], d);
        if (n->needs[i]) {
            spin_tensor *v = spin_narrow(g, d, start, len);
            gin[i] = v ? spin_contiguous(v) : NULL;
            spin_tensor_release(v);
            if (!gin[i])
                return SPIN_ERR_OOM;
        }
        start += len;
    }
    return SPIN_OK;
}

spin_tensor *spin_concat(spin_tensor *const *xs, int n, int dim) {
    op_begin();
    OP_REQUIRE(n >= 1 && n <= SPIN_NODE_MAX_IN, "concat: %d tensors (1..%d)", n, SPIN_NODE_MAX_IN);
    int d = op_axis(xs[0], dim), nd = spin_tensor_ndim(xs[0]);
    OP_REQUIRE(d >= 0, "concat: dim %d of a %d-d tensor", dim, nd);
    int64_t sh[SPIN_MAX_DIMS];
    memcpy(sh, spin_tensor_shape(xs[0]), sizeof sh);
    sh[d] = 0;
    for (int i = 0; i < n; i++) {
        OP_REQUIRE(spin_tensor_ndim(xs[i]) == nd, "concat: tensor %d has %d dims, not %d", i,
                   spin_tensor_ndim(xs[i]), nd);
        for (int j = 0; j < nd; j++)
            OP_REQUIRE(j == d || spin_tensor_dim(xs[i], j) == sh[j], "concat: tensor %d differs in dim %d", i,
                       j);
        sh[d] += spin_tensor_dim(xs[i], d);
    }
    spin_tensor *y = op_new(xs[0], spin_tensor_dtype(xs[0]), nd, sh);
    int64_t start = 0;
    for (int i = 0; i < n && y; i++) {
        int64_t len = spin_tensor_dim(xs[i], d);
        spin_no_grad_begin();
        spin_tensor *slot = spin_narrow(y, d, start, len);
        spin_status s = slot ? spin_copy_into(slot, xs[i]) : SPIN_ERR_INVALID;
        spin_no_grad_end();
        spin_tensor_release(slot);
        if (s != SPIN_OK) {
            spin_tensor_release(y);
            y = NULL;
        }
        start += len;
    }
    spin_node *node = spin_autograd_record(y, "concat", concat_backward, n, xs);
    if (node)
        node->p.i[0] = d;
    return op_end(y);
}

spin_status spin_split(spin_tensor *x, int dim, int n, const int64_t *sizes, spin_tensor **out) {
    int d = op_axis(x, dim);
    if (d < 0)
        return spin_fail(SPIN_ERR_INVALID, "split: dim %d of a %d-d tensor", dim, spin_tensor_ndim(x));
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += sizes[i];
    if (total != spin_tensor_dim(x, d))
        return spin_fail(SPIN_ERR_INVALID, "split: sizes add to %lld, dim %d has %lld", (long long)total, d,
                         (long long)spin_tensor_dim(x, d));
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        out[i] = spin_narrow(x, d, start, sizes[i]);
        if (!out[i])
            return SPIN_ERR_INVALID;
        start += sizes[i];
    }
    return SPIN_OK;
}
