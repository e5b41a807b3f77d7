/* Normalisation over the last axis, and their backward rules:
 *   rmsnorm   y = x / sqrt(mean(x^2) + eps) * w
 *   layernorm y = (x - mean(x)) / sqrt(var(x) + eps) * w + b   (biased variance, as torch)
 * The kernels see rows [N, C]; the row statistics (mean, rstd) are saved for backward. */
#include "ops/op_util.h"

/* x as a contiguous tensor, without recording a copy node: the op's own node covers it. */
static spin_tensor *contig(spin_tensor *x) {
    spin_no_grad_begin();
    spin_tensor *c = spin_contiguous(x);
    spin_no_grad_end();
    return c;
}

/* A [N, C] view of a contiguous tensor whose last dim is C (no graph). */
static spin_tensor *rows_view(spin_tensor *t, int64_t cols) {
    int64_t n = cols ? spin_tensor_numel(t) / cols : 0;
    return spin_tensor_view_of(t, 2, (const int64_t[]){n, cols}, (const int64_t[]){cols, 1},
                               spin_tensor_offset(t));
}

/* Shared argument checks: x [.., C] (f32 or bf16) with at least one dim, and a parameter p [C]. */
static bool param_ok(const spin_tensor *x, const spin_tensor *p) {
    return p && op_float(p) && spin_tensor_ndim(p) == 1 && spin_tensor_dim(p, 0) == spin_tensor_dim(x, -1);
}

/* Backward of either norm: one *_BACK kernel call gives dx and the parameter gradients. The
 * saved tensors are, in order, x (contiguous), w, then the row statistics; the kernel takes them
 * followed by dy, and writes dx then one gradient per parameter input of the node. */
static spin_status norm_backward(spin_kernel k, spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *x = n->saved[0];
    int64_t cols = spin_tensor_dim(x, -1);
    spin_tensor *gc = contig(g);
    if (!gc)
        return SPIN_ERR_OOM;
    spin_tensor *in[SPIN_KMAX_IN] = {0}, *out[SPIN_KMAX_OUT] = {0};
    int n_in = 0, n_out = n->n_in;
    in[n_in++] = rows_view(x, cols);
    for (int i = 1; i < n->n_saved; i++)
        in[n_in++] = spin_tensor_retain(n->saved[i]);
    in[n_in++] = rows_view(gc, cols);
    /* dx in x's dtype; the parameter gradients are column sums over every row: kept in f32 */
    spin_tensor *dx = op_new(x, op_grad_dtype(n->in[0]), spin_tensor_ndim(x), spin_tensor_shape(x));
    out[0] = dx ? rows_view(dx, cols) : NULL;
    for (int i = 1; i < n_out; i++)
        out[i] = op_new(x, SPIN_F32, 1, &cols);
    bool ok = true;
    for (int i = 0; i < n_out; i++)
        ok &= out[i] != NULL;
    spin_status s = ok ? spin_launch(k, n_in, in, n_out, out, &n->p) : SPIN_ERR_OOM;
    if (s == SPIN_OK) {
        /* dx takes the shape of the original x (the node's first input) */
        gin[0] = n->needs[0] ? spin_tensor_retain(dx) : NULL;
        for (int i = 1; i < n_out; i++)
            gin[i] = n->needs[i] ? spin_tensor_retain(out[i]) : NULL;
    }
    spin_tensor_release(gc);
    spin_tensor_release(dx);
    for (int i = 0; i < n_in; i++)
        spin_tensor_release(in[i]);
    for (int i = 0; i < n_out; i++)
        spin_tensor_release(out[i]);
    return s;
}

static spin_status rmsnorm_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    return norm_backward(SPIN_K_RMSNORM_BACK, n, g, gin);
}

static spin_status layernorm_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    return norm_backward(SPIN_K_LAYERNORM_BACK, n, g, gin);
}

/* Runs a forward norm kernel. params are w (and b); the outputs are y with x's shape and n_stats
 * row statistics [N]. Records the node with inputs (x, params..). */
static spin_tensor *norm_forward(spin_kernel k, const char *name, spin_backward_fn bw, spin_tensor *x,
                                 spin_tensor *const *params, int n_params, int n_stats, float eps) {
    op_begin();
    char sx[64], sp[64];
    OP_REQUIRE(x && spin_tensor_ndim(x) >= 1 && op_float(x), "%s: x must be f32 or bf16 [.., C] (got %s %s)",
               name, x ? spin_dtype_name(spin_tensor_dtype(x)) : "NULL",
               x ? spin_shape_str(x, sx, sizeof sx) : "");
    for (int i = 0; i < n_params; i++)
        OP_REQUIRE(param_ok(x, params[i]), "%s: %s must be f32 or bf16 [%lld] for x %s (got %s)", name,
                   i ? "b" : "w", (long long)spin_tensor_dim(x, -1), spin_shape_str(x, sx, sizeof sx),
                   params[i] ? spin_shape_str(params[i], sp, sizeof sp) : "NULL");
    OP_REQUIRE(eps >= 0, "%s: eps %g is negative", name, (double)eps);
    int64_t cols = spin_tensor_dim(x, -1), rows = cols ? spin_tensor_numel(x) / cols : 0;
    spin_tensor *xc = contig(x), *pc[2] = {NULL, NULL};
    for (int i = 0; i < n_params; i++)
        pc[i] = contig(params[i]);
    spin_dtype ydt = spin_tensor_dtype(x);
    for (int i = 0; i < n_params; i++)
        ydt = spin_tensor_dtype(params[i]) == ydt ? ydt : SPIN_F32;
    spin_tensor *y = op_new(x, ydt, spin_tensor_ndim(x), spin_tensor_shape(x));
    spin_tensor *in[4] = {0}, *out[4] = {0};
    in[0] = xc ? rows_view(xc, cols) : NULL;
    for (int i = 0; i < n_params; i++)
        in[1 + i] = pc[i];
    out[0] = y ? rows_view(y, cols) : NULL;
    for (int i = 0; i < n_stats; i++)
        out[1 + i] = op_new(x, SPIN_F32, 1, &rows);
    bool ok = true;
    for (int i = 0; i < 1 + n_params; i++)
        ok &= in[i] != NULL;
    for (int i = 0; i < 1 + n_stats; i++)
        ok &= out[i] != NULL;
    spin_kparams p = {.f = {eps}};
    if (!ok || spin_launch(k, 1 + n_params, in, 1 + n_stats, out, &p) != SPIN_OK) {
        spin_tensor_release(y);
        y = NULL;
    }
    spin_tensor *node_in[3] = {x, params[0], n_params > 1 ? params[1] : NULL};
    spin_node *n = spin_autograd_record(y, name, bw, 1 + n_params, node_in);
    if (n) {
        n->p = p;
        spin_node_save(n, xc);
        spin_node_save(n, pc[0]); /* the kernels need w for dx */
        for (int i = 0; i < n_stats; i++)
            spin_node_save(n, out[1 + i]);
    }
    spin_tensor_release(xc);
    for (int i = 0; i < n_params; i++)
        spin_tensor_release(pc[i]);
    spin_tensor_release(in[0]);
    for (int i = 0; i < 1 + n_stats; i++)
        spin_tensor_release(out[i]);
    return op_end(y);
}

spin_tensor *spin_rmsnorm(spin_tensor *x, spin_tensor *w, float eps) {
    return norm_forward(SPIN_K_RMSNORM, "rmsnorm", rmsnorm_backward, x, (spin_tensor *[]){w}, 1, 1, eps);
}

spin_tensor *spin_layernorm(spin_tensor *x, spin_tensor *w, spin_tensor *b, float eps) {
    return norm_forward(SPIN_K_LAYERNORM, "layernorm", layernorm_backward, x, (spin_tensor *[]){w, b}, 2, 2,
                        eps);
}
