/* Rotary position embedding: each pair of x[b, h, t, :] rotates by pos[b, t] * inv_freq[j].
 * A rotation is orthogonal, so the backward rotates the gradient by the opposite angle. */
#include <math.h>
#include <stdlib.h>

#include "ops/op_util.h"

/* x as a contiguous tensor, without recording a copy node: the op's own node covers it. */
static spin_tensor *contig(spin_tensor *x) {
    spin_no_grad_begin();
    spin_tensor *c = spin_contiguous(x);
    spin_no_grad_end();
    return c;
}

/* One ROPE kernel call on contiguous copies; inverse rotates by -angle. Owned ref or NULL. */
static spin_tensor *rope_apply(spin_tensor *x, spin_tensor *pos, spin_tensor *inv_freq, int64_t layout,
                               bool inverse) {
    spin_tensor *in[3] = {contig(x), contig(pos), contig(inv_freq)};
    spin_tensor *y = NULL;
    if (in[0] && in[1] && in[2])
        y = op_launch(SPIN_K_ROPE, 3, in, op_new(x, spin_tensor_dtype(x), 4, spin_tensor_shape(x)),
                      &(spin_kparams){.i = {layout, inverse}});
    for (int i = 0; i < 3; i++)
        spin_tensor_release(in[i]);
    return y;
}

/* y = R(a) x: gx = R(-a) g */
static spin_status rope_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = rope_apply(g, n->saved[0], n->saved[1], n->p.i[0], true);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

spin_tensor *spin_rope(spin_tensor *x, spin_tensor *pos, spin_tensor *inv_freq, int layout) {
    op_begin();
    char sx[64], sp[64], sf[64];
    OP_REQUIRE(x && pos && inv_freq, "rope: x, pos and inv_freq are required");
    spin_shape_str(x, sx, sizeof sx);
    spin_shape_str(pos, sp, sizeof sp);
    spin_shape_str(inv_freq, sf, sizeof sf);
    OP_REQUIRE(layout == SPIN_ROPE_HALF || layout == SPIN_ROPE_INTERLEAVED, "rope: unknown layout %d",
               layout);
    OP_REQUIRE(spin_tensor_ndim(x) == 4 && op_float(x),
               "rope: x must be f32 or bf16 [B, H, T, D] (got %s %s)", spin_dtype_name(spin_tensor_dtype(x)),
               sx);
    int64_t B = spin_tensor_dim(x, 0), T = spin_tensor_dim(x, 2), D = spin_tensor_dim(x, 3);
    OP_REQUIRE(D % 2 == 0, "rope: head dim D must be even (x %s)", sx);
    OP_REQUIRE(spin_tensor_dtype(pos) == SPIN_I32 && spin_tensor_ndim(pos) == 2 &&
                   spin_tensor_dim(pos, 0) == B && spin_tensor_dim(pos, 1) == T,
               "rope: pos must be i32 [%lld, %lld] for x %s (got %s %s)", (long long)B, (long long)T, sx,
               spin_dtype_name(spin_tensor_dtype(pos)), sp);
    OP_REQUIRE(spin_tensor_dtype(inv_freq) == SPIN_F32 && spin_tensor_ndim(inv_freq) == 1 &&
                   spin_tensor_dim(inv_freq, 0) == D / 2,
               "rope: inv_freq must be f32 [%lld] for x %s (got %s %s)", (long long)(D / 2), sx,
               spin_dtype_name(spin_tensor_dtype(inv_freq)), sf);
    spin_tensor *y = rope_apply(x, pos, inv_freq, layout, false);
    /* only x is differentiated: positions are integers and the frequencies are constants */
    spin_node *n = spin_autograd_record(y, "rope", rope_backward, 1, &x);
    if (n) {
        n->p.i[0] = layout;
        spin_node_save(n, pos);
        spin_node_save(n, inv_freq);
    }
    return op_end(y);
}

/* inv_freq[j] = 1 / theta^(2j / D), rounded as HF computes it: the exponent (2j) / D in f32, the
 * power in f32 of the f32 theta (formed in double here, so correctly rounded), the reciprocal in f32. */
spin_tensor *spin_rope_inv_freq(spin_device *dev, int64_t head_dim, double theta) {
    op_begin();
    OP_REQUIRE(dev, "rope_inv_freq: no device");
    OP_REQUIRE(head_dim > 0 && head_dim % 2 == 0, "rope_inv_freq: head_dim %lld must be even and positive",
               (long long)head_dim);
    OP_REQUIRE(theta > 0 && isfinite(theta), "rope_inv_freq: theta %g must be positive", theta);
    int64_t half = head_dim / 2;
    float *f = malloc((size_t)half * sizeof *f);
    OP_REQUIRE(f, "rope_inv_freq: out of host memory for %lld frequencies", (long long)half);
    const float base = (float)theta;
    for (int64_t j = 0; j < half; j++) {
        float e = (float)(2 * j) / (float)head_dim;
        float p = (float)pow((double)base, (double)e);
        f[j] = 1.0f / p;
    }
    spin_tensor *t = spin_from_host(dev, SPIN_F32, 1, &half, f);
    free(f);
    return op_end(t);
}
