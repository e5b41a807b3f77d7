/* Elementwise ops with numpy broadcasting, and their backward rules. */
#include <string.h>

#include "ops/op_util.h"

/* Broadcast shape of a and b (aligned right); false when incompatible. */
static bool broadcast_shape(const spin_tensor *a, const spin_tensor *b, int *nd, int64_t *sh) {
    int na = spin_tensor_ndim(a), nb = spin_tensor_ndim(b);
    *nd = na > nb ? na : nb;
    for (int i = 0; i < *nd; i++) {
        int ia = i - (*nd - na), ib = i - (*nd - nb);
        int64_t da = ia >= 0 ? spin_tensor_dim(a, ia) : 1, db = ib >= 0 ? spin_tensor_dim(b, ib) : 1;
        if (da != db && da != 1 && db != 1)
            return false;
        sh[i] = da == 1 ? db : da;
    }
    return true;
}

/* A stride-0 view of x at shape sh (no graph: the op's own node covers it). */
static spin_tensor *broadcast_view(spin_tensor *x, int nd, const int64_t *sh) {
    int xn = spin_tensor_ndim(x);
    int64_t st[SPIN_MAX_DIMS];
    for (int i = 0; i < nd; i++) {
        int xi = i - (nd - xn);
        st[i] = xi < 0 || spin_tensor_dim(x, xi) != sh[i] ? 0 : spin_tensor_stride(x, xi);
    }
    return spin_tensor_view_of(x, nd, sh, st, spin_tensor_offset(x));
}

spin_tensor *op_unbroadcast(spin_tensor *g, const spin_tensor *like) {
    op_begin();
    spin_tensor *cur = spin_tensor_retain(g);
    int gn = spin_tensor_ndim(g), ln = spin_tensor_ndim(like);
    for (int i = 0; i < gn && cur; i++) {
        int li = i - (gn - ln);
        int64_t want = li >= 0 ? spin_tensor_dim(like, li) : 1;
        if (spin_tensor_dim(cur, i) == want)
            continue;
        int64_t sh[SPIN_MAX_DIMS];
        memcpy(sh, spin_tensor_shape(cur), sizeof sh);
        sh[i] = 1;
        spin_tensor *r = op_launch(SPIN_K_SUM_AXIS, 1, &cur, op_new(cur, spin_tensor_dtype(cur), gn, sh),
                                   &(spin_kparams){.i = {i}});
        spin_tensor_release(cur);
        cur = r;
    }
    if (!cur)
        return op_end(NULL);
    spin_tensor *out = spin_reshape(cur, ln, spin_tensor_shape(like));
    spin_tensor_release(cur);
    if (out && !spin_tensor_is_contiguous(out)) {
        spin_tensor *c = spin_copy(out);
        spin_tensor_release(out);
        out = c;
    }
    return op_end(out);
}

/* ---- binary ---- */

static spin_tensor *binary(spin_kernel k, const char *name, spin_backward_fn bw, spin_tensor *a,
                           spin_tensor *b) {
    op_begin();
    int nd;
    int64_t sh[SPIN_MAX_DIMS];
    char sa[64], sb[64];
    OP_REQUIRE(broadcast_shape(a, b, &nd, sh), "%s: shapes %s and %s do not broadcast", name,
               spin_shape_str(a, sa, sizeof sa), spin_shape_str(b, sb, sizeof sb));
    OP_REQUIRE(op_float(a) && op_float(b), "%s: f32 or bf16 operands only (got %s and %s)", name,
               spin_dtype_name(spin_tensor_dtype(a)), spin_dtype_name(spin_tensor_dtype(b)));
    spin_tensor *in[2] = {broadcast_view(a, nd, sh), broadcast_view(b, nd, sh)};
    spin_tensor *y = op_launch(k, 2, in, op_new(a, op_promote(a, b), nd, sh), NULL);
    spin_tensor_release(in[0]);
    spin_tensor_release(in[1]);
    spin_tensor *ab[2] = {a, b};
    spin_node *n = spin_autograd_record(y, name, bw, 2, ab);
    if (n && (k == SPIN_K_DIV))
        spin_node_save(n, y);
    return op_end(y);
}

/* y = a + b: ga = g, gb = g */
static spin_status add_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    for (int i = 0; i < 2; i++)
        if (n->needs[i] && !(gin[i] = op_unbroadcast(g, n->in[i])))
            return SPIN_ERR_OOM;
    return SPIN_OK;
}

/* y = a - b: ga = g, gb = -g */
static spin_status sub_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    if (n->needs[0] && !(gin[0] = op_unbroadcast(g, n->in[0])))
        return SPIN_ERR_OOM;
    if (n->needs[1]) {
        spin_tensor *ng = spin_neg(g);
        gin[1] = ng ? op_unbroadcast(ng, n->in[1]) : NULL;
        spin_tensor_release(ng);
        if (!gin[1])
            return SPIN_ERR_OOM;
    }
    return SPIN_OK;
}

/* y = a * b: ga = g b, gb = g a */
static spin_status mul_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    for (int i = 0; i < 2; i++) {
        if (!n->needs[i])
            continue;
        spin_tensor *t = spin_mul(g, n->in[1 - i]);
        gin[i] = t ? op_unbroadcast(t, n->in[i]) : NULL;
        spin_tensor_release(t);
        if (!gin[i])
            return SPIN_ERR_OOM;
    }
    return SPIN_OK;
}

/* y = a / b: ga = g / b, gb = -g y / b */
static spin_status div_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *gb_full = spin_div(g, n->in[1]);
    if (!gb_full)
        return SPIN_ERR_OOM;
    if (n->needs[0] && !(gin[0] = op_unbroadcast(gb_full, n->in[0]))) {
        spin_tensor_release(gb_full);
        return SPIN_ERR_OOM;
    }
    if (n->needs[1]) {
        spin_tensor *t = spin_mul(gb_full, n->saved[0]);
        spin_tensor *nt = t ? spin_neg(t) : NULL;
        gin[1] = nt ? op_unbroadcast(nt, n->in[1]) : NULL;
        spin_tensor_release(t);
        spin_tensor_release(nt);
    }
    spin_tensor_release(gb_full);
    return n->needs[1] && !gin[1] ? SPIN_ERR_OOM : SPIN_OK;
}

spin_tensor *spin_add(spin_tensor *a, spin_tensor *b) {
    return binary(SPIN_K_ADD, "add", add_backward, a, b);
}
spin_tensor *spin_sub(spin_tensor *a, spin_tensor *b) {
    return binary(SPIN_K_SUB, "sub", sub_backward, a, b);
}
spin_tensor *spin_mul(spin_tensor *a, spin_tensor *b) {
    return binary(SPIN_K_MUL, "mul", mul_backward, a, b);
}
spin_tensor *spin_div(spin_tensor *a, spin_tensor *b) {
    return binary(SPIN_K_DIV, "div", div_backward, a, b);
}

/* ---- unary ---- */

typedef enum { SAVE_NONE, SAVE_X, SAVE_Y } save_what;

static spin_tensor *unary(spin_kernel k, const char *name, spin_backward_fn bw, spin_tensor *x,
                          save_what save, float p0, float p1) {
    op_begin();
    OP_REQUIRE(op_float(x), "%s: f32 or bf16 input only (got %s)", name,
               spin_dtype_name(spin_tensor_dtype(x)));
    spin_kparams p = {.f = {p0, p1}};
    spin_tensor *y =
        op_launch(k, 1, &x, op_new(x, spin_tensor_dtype(x), spin_tensor_ndim(x), spin_tensor_shape(x)), &p);
    spin_node *n = spin_autograd_record(y, name, bw, 1, &x);
    if (n) {
        n->p = p;
        if (save == SAVE_X)
            spin_node_save(n, x);
        if (save == SAVE_Y)
            spin_node_save(n, y);
    }
    return op_end(y);
}

/* Backward through a *_BACK kernel: dx = K(x, g), in x's dtype. */
static spin_tensor *back_kernel(spin_kernel k, spin_node *n, spin_tensor *g) {
    spin_tensor *in[2] = {n->saved[0], g};
    return op_launch(k, 2, in, op_new(g, op_grad_dtype(n->in[0]), spin_tensor_ndim(g), spin_tensor_shape(g)),
                     &n->p);
}

#define BACK_VIA_KERNEL(fn, K)                                               \
    static spin_status fn(spin_node *n, spin_tensor *g, spin_tensor **gin) { \
        gin[0] = back_kernel(K, n, g);                                       \
        return gin[0] ? SPIN_OK : SPIN_ERR_OOM;                              \
    }

BACK_VIA_KERNEL(silu_backward, SPIN_K_SILU_BACK)
BACK_VIA_KERNEL(gelu_backward, SPIN_K_GELU_BACK)
BACK_VIA_KERNEL(relu_backward, SPIN_K_RELU_BACK)
BACK_VIA_KERNEL(logsigmoid_backward, SPIN_K_LOGSIGMOID_BACK)
BACK_VIA_KERNEL(clamp_backward, SPIN_K_CLAMP_BACK)

/* y = s x + b: gx = s g */
static spin_status affine_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = spin_scale(g, n->p.f[0]);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

/* y = exp x: gx = g y */
static spin_status exp_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = spin_mul(g, n->saved[0]);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

/* y = log x: gx = g / x */
static spin_status log_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    gin[0] = spin_div(g, n->saved[0]);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

/* y = sqrt x: gx = g / (2 y) */
static spin_status sqrt_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *t = spin_div(g, n->saved[0]);
    gin[0] = t ? spin_scale(t, 0.5f) : NULL;
    spin_tensor_release(t);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

/* y = x^-1/2: gx = -g y^3 / 2 */
static spin_status rsqrt_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *y = n->saved[0];
    spin_tensor *y2 = spin_mul(y, y);
    spin_tensor *y3 = y2 ? spin_mul(y2, y) : NULL;
    spin_tensor *t = y3 ? spin_mul(g, y3) : NULL;
    gin[0] = t ? spin_scale(t, -0.5f) : NULL;
    spin_tensor_release(y2);
    spin_tensor_release(y3);
    spin_tensor_release(t);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

/* y = -x: gx = -g */
static spin_status neg_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    (void)n;
    gin[0] = spin_neg(g);
    return gin[0] ? SPIN_OK : SPIN_ERR_OOM;
}

spin_tensor *spin_scale(spin_tensor *x, float s) {
    return unary(SPIN_K_SCALE, "scale", affine_backward, x, SAVE_NONE, s, 0);
}
spin_tensor *spin_affine(spin_tensor *x, float s, float b) {
    return unary(SPIN_K_SCALE, "affine", affine_backward, x, SAVE_NONE, s, b);
}
spin_tensor *spin_exp(spin_tensor *x) {
    return unary(SPIN_K_EXP, "exp", exp_backward, x, SAVE_Y, 0, 0);
}
spin_tensor *spin_log(spin_tensor *x) {
    return unary(SPIN_K_LOG, "log", log_backward, x, SAVE_X, 0, 0);
}
spin_tensor *spin_sqrt(spin_tensor *x) {
    return unary(SPIN_K_SQRT, "sqrt", sqrt_backward, x, SAVE_Y, 0, 0);
}
spin_tensor *spin_rsqrt(spin_tensor *x) {
    return unary(SPIN_K_RSQRT, "rsqrt", rsqrt_backward, x, SAVE_Y, 0, 0);
}
spin_tensor *spin_neg(spin_tensor *x) {
    return unary(SPIN_K_NEG, "neg", neg_backward, x, SAVE_NONE, 0, 0);
}
spin_tensor *spin_clamp(spin_tensor *x, float lo, float hi) {
    return unary(SPIN_K_CLAMP, "clamp", clamp_backward, x, SAVE_X, lo, hi);
}
spin_tensor *spin_silu(spin_tensor *x) {
    return unary(SPIN_K_SILU, "silu", silu_backward, x, SAVE_X, 0, 0);
}
spin_tensor *spin_gelu(spin_tensor *x) {
    return unary(SPIN_K_GELU, "gelu", gelu_backward, x, SAVE_X, 0, 0);
}
spin_tensor *spin_relu(spin_tensor *x) {
    return unary(SPIN_K_RELU, "relu", relu_backward, x, SAVE_X, 0, 0);
}
spin_tensor *spin_logsigmoid(spin_tensor *x) {
    return unary(SPIN_K_LOGSIGMOID, "logsigmoid", logsigmoid_backward, x, SAVE_X, 0, 0);
}

/* ---- where: y = cond ? a : b; ga = where(cond, g, 0), gb = where(cond, 0, g) ---- */

static spin_status where_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *zero = spin_zeros(spin_tensor_device(g), spin_tensor_dtype(g), 0, NULL);
    if (!zero)
        return SPIN_ERR_OOM;
    for (int i = 1; i <= 2; i++) {
        if (!n->needs[i])
            continue;
        spin_tensor *full = i == 1 ? spin_where(n->in[0], g, zero) : spin_where(n->in[0], zero, g);
        gin[i] = full ? op_unbroadcast(full, n->in[i]) : NULL;
        spin_tensor_release(full);
        if (!gin[i]) {
            spin_tensor_release(zero);
            return SPIN_ERR_OOM;
        }
    }
    spin_tensor_release(zero);
    return SPIN_OK;
}

spin_tensor *spin_where(spin_tensor *cond, spin_tensor *a, spin_tensor *b) {
    op_begin();
    int nd, nd2;
    int64_t sh[SPIN_MAX_DIMS], sh2[SPIN_MAX_DIMS];
    OP_REQUIRE(broadcast_shape(a, b, &nd, sh), "where: a and b do not broadcast");
    spin_tensor *tmp = spin_tensor_view_of(a, nd, sh, (int64_t[SPIN_MAX_DIMS]){0}, spin_tensor_offset(a));
    bool ok = broadcast_shape(cond, tmp, &nd2, sh2);
    spin_tensor_release(tmp);
    OP_REQUIRE(ok, "where: cond does not broadcast with a and b");
    spin_tensor *in[3] = {broadcast_view(cond, nd2, sh2), broadcast_view(a, nd2, sh2),
                          broadcast_view(b, nd2, sh2)};
    spin_tensor *y = op_launch(SPIN_K_WHERE, 3, in, op_new(a, op_promote(a, b), nd2, sh2), NULL);
    for (int i = 0; i < 3; i++)
        spin_tensor_release(in[i]);
    spin_tensor *abc[3] = {cond, a, b};
    spin_node *n = spin_autograd_record(y, "where", where_backward, 3, abc);
    if (n)
        n->needs[0] = false;
    return op_end(y);
}
