/* Op cases: elementwise, reductions, matmul, views and copies. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tests/harness/opcheck.h"

/* Shape of input k padded on the left to 4 dims. */
static void pad4(const opc_input *in, int64_t *n4) {
    for (int i = 0; i < 4; i++)
        n4[i] = i < 4 - in->ndim ? 1 : in->shape[i - (4 - in->ndim)];
}

/* Broadcast shape of inputs 0..n-1, padded to 4 dims. */
static void bshape(const opcase *c, int n, int64_t *o4) {
    for (int d = 0; d < 4; d++)
        o4[d] = 1;
    for (int k = 0; k < n; k++) {
        int64_t s4[4];
        pad4(&c->in[k], s4);
        for (int d = 0; d < 4; d++)
            if (s4[d] != 1)
                o4[d] = s4[d];
    }
}

/* Element of input k at broadcast index (a, b, c, d). */
static double bget(const opcase *c, const double *const *in, int k, int64_t a, int64_t b, int64_t cc,
                   int64_t d) {
    int64_t s4[4];
    pad4(&c->in[k], s4);
    int64_t i[4] = {a, b, cc, d};
    for (int j = 0; j < 4; j++)
        if (s4[j] == 1)
            i[j] = 0;
    return in[k][opc_idx4(s4, i[0], i[1], i[2], i[3])];
}

/* ---- elementwise ---- */

enum {
    E_ADD,
    E_SUB,
    E_MUL,
    E_DIV,
    E_SCALE,
    E_EXP,
    E_LOG,
    E_SQRT,
    E_RSQRT,
    E_NEG,
    E_CLAMP,
    E_SILU,
    E_GELU,
    E_RELU,
    E_LOGSIG,
    E_WHERE
};

static double ew(const opcase *c, double a, double b, double cond) {
    switch (c->p.i[0]) {
    case E_ADD: return a + b;
    case E_SUB: return a - b;
    case E_MUL: return a * b;
    case E_DIV: return a / b;
    case E_SCALE: return c->p.f[0] * a + c->p.f[1];
    case E_EXP: return exp(a);
    case E_LOG: return log(a);
    case E_SQRT: return sqrt(a);
    case E_RSQRT: return 1 / sqrt(a);
    case E_NEG: return -a;
    case E_CLAMP: return a < c->p.f[0] ? c->p.f[0] : a > c->p.f[1] ? c->p.f[1] : a;
    case E_SILU: return a / (1 + exp(-a));
    case E_GELU: return 0.5 * a * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (a + 0.044715 * a * a * a)));
    case E_RELU: return a > 0 ? a : 0;
    case E_LOGSIG: return -log1p(exp(-a));
    case E_WHERE: return cond != 0 ? a : b;
    }
    return NAN;
}

static void ref_ew(const opcase *c, const double *const *in, double *out) {
    int64_t o4[4];
    bshape(c, c->n_in, o4);
    bool where = c->p.i[0] == E_WHERE;
    for (int64_t a = 0; a < o4[0]; a++)
        for (int64_t b = 0; b < o4[1]; b++)
            for (int64_t cc = 0; cc < o4[2]; cc++)
                for (int64_t d = 0; d < o4[3]; d++) {
                    double x = bget(c, in, where ? 1 : 0, a, b, cc, d);
                    double y = c->n_in > 1 ? bget(c, in, where ? 2 : 1, a, b, cc, d) : 0;
                    double cond = where ? bget(c, in, 0, a, b, cc, d) : 0;
                    out[opc_idx4(o4, a, b, cc, d)] = ew(c, x, y, cond);
                }
}

static spin_tensor *run_ew(const opcase *c, spin_tensor *const *in) {
    switch (c->p.i[0]) {
    case E_ADD: return spin_add(in[0], in[1]);
    case E_SUB: return spin_sub(in[0], in[1]);
    case E_MUL: return spin_mul(in[0], in[1]);
    case E_DIV: return spin_div(in[0], in[1]);
    case E_SCALE: return spin_affine(in[0], c->p.f[0], c->p.f[1]);
    case E_EXP: return spin_exp(in[0]);
    case E_LOG: return spin_log(in[0]);
    case E_SQRT: return spin_sqrt(in[0]);
    case E_RSQRT: return spin_rsqrt(in[0]);
    case E_NEG: return spin_neg(in[0]);
    case E_CLAMP: return spin_clamp(in[0], c->p.f[0], c->p.f[1]);
    case E_SILU: return spin_silu(in[0]);
    case E_GELU: return spin_gelu(in[0]);
    case E_RELU: return spin_relu(in[0]);
    case E_LOGSIG: return spin_logsigmoid(in[0]);
    case E_WHERE: return spin_where(in[0], in[1], in[2]);
    }
    return NULL;
}

/* Uniform values in [-1, 1) kept 0.01 away from clamp's bounds, where the derivative jumps. */
static void init_away_from_bounds(const opcase *c, int idx, double *v, int64_t n) {
    (void)idx;
    for (int64_t i = 0; i < n; i++) {
        v[i] = -1.0 + 2.0 * (double)((i * 37 + 11) % 101) / 101.0;
        for (int b = 0; b < 2; b++)
            if (fabs(v[i] - c->p.f[b]) < 0.01)
                v[i] += 0.02;
    }
}

/* A mask of 0/1 values for where(). */
static void init_mask(const opcase *c, int idx, double *v, int64_t n) {
    (void)c, (void)idx;
    for (int64_t i = 0; i < n; i++)
        v[i] = (i * 7 + 3) % 5 < 2;
}

#define F(...) __VA_ARGS__
#define IN(nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .grad = true }
#define INR(lo_, hi_, nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .grad = true, .lo = lo_, .hi = hi_ }
#define INL(layout_, nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .grad = true, .layout = layout_ }
#define CASE(name, desc, nin, ins, prm, runf, reff, tol_, gtol)                                              \
    {                                                                                                        \
        .op = name, .params = desc, .n_in = nin, .in = ins, .p = prm, .run = runf, .ref = reff, .tol = tol_, \
        .grad_tol = gtol                                                                                     \
    }
#define EW1(name, code, desc, in0, ...) \
    CASE(name, desc, 1, F({in0}), F({.i = {code}, __VA_ARGS__}), run_ew, ref_ew, 1e-6, 1e-3)
#define EW2(name, code, desc, in0, in1) \
    CASE(name, desc, 2, F({in0, in1}), {.i = {code}}, run_ew, ref_ew, 1e-6, 1e-3)

/* ---- reductions ---- */

enum { R_SUM, R_MEAN, R_SUMSQ, R_SUM_ALL, R_MEAN_ALL, R_SUMSQ_ALL, R_MASKED };

static spin_tensor *run_reduce(const opcase *c, spin_tensor *const *in) {
    int axis = (int)c->p.i[1];
    bool keep = c->p.i[2];
    switch (c->p.i[0]) {
    case R_SUM: return spin_sum(in[0], axis, keep);
    case R_MEAN: return spin_mean(in[0], axis, keep);
    case R_SUMSQ: return spin_sumsq(in[0], axis, keep);
    case R_SUM_ALL: return spin_sum_all(in[0]);
    case R_MEAN_ALL: return spin_mean_all(in[0]);
    case R_SUMSQ_ALL: return spin_sumsq_all(in[0]);
    case R_MASKED: return spin_masked_sum(in[0], in[1]);
    }
    return NULL;
}

static void ref_reduce(const opcase *c, const double *const *in, double *out) {
    const opc_input *x = &c->in[0];
    int64_t n = opc_numel(x);
    int kind = (int)c->p.i[0];
    if (kind == R_SUM_ALL || kind == R_MEAN_ALL || kind == R_SUMSQ_ALL) {
        double s = 0;
        for (int64_t i = 0; i < n; i++)
            s += kind == R_SUMSQ_ALL ? in[0][i] * in[0][i] : in[0][i];
        out[0] = kind == R_MEAN_ALL ? s / (double)n : s;
        return;
    }
    int axis = kind == R_MASKED ? x->ndim - 1 : (int)(c->p.i[1] < 0 ? c->p.i[1] + x->ndim : c->p.i[1]);
    int64_t outer = 1, len = x->shape[axis], inner = 1;
    for (int i = 0; i < axis; i++)
        outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++)
        inner *= x->shape[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t q = 0; q < inner; q++) {
            double s = 0;
            for (int64_t j = 0; j < len; j++) {
                int64_t at = (o * len + j) * inner + q;
                double v = in[0][at];
                s += kind == R_SUMSQ ? v * v : kind == R_MASKED ? v * in[1][at] : v;
            }
            out[o * inner + q] = kind == R_MEAN ? s / (double)len : s;
        }
}

#define RED(name, code, axis, keep, desc, in0) \
    CASE(name, desc, 1, F({in0}), F({.i = {code, axis, keep}}), run_reduce, ref_reduce, 1e-6, 1e-3)

/* ---- matmul ---- */

static spin_tensor *run_matmul(const opcase *c, spin_tensor *const *in) {
    return spin_matmul(in[0], in[1], c->p.i[0], c->p.i[1]);
}

/* a is [.., M, K] or [.., K, M] when ta; b is [.., K, N] or [.., N, K] when tb; b may be 2-D. */
static void ref_matmul(const opcase *c, const double *const *in, double *out) {
    const opc_input *a = &c->in[0], *b = &c->in[1];
    bool ta = c->p.i[0], tb = c->p.i[1];
    int na = a->ndim, nb = b->ndim;
    int64_t m = ta ? a->shape[na - 1] : a->shape[na - 2], k = ta ? a->shape[na - 2] : a->shape[na - 1];
    int64_t n = tb ? b->shape[nb - 2] : b->shape[nb - 1];
    int64_t batch = 1;
    for (int i = 0; i < na - 2; i++)
        batch *= a->shape[i];
    for (int64_t z = 0; z < batch; z++) {
        const double *A = in[0] + z * m * k, *B = in[1] + (nb == 2 ? 0 : z * k * n);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t q = 0; q < k; q++)
                    s += (ta ? A[q * m + i] : A[i * k + q]) * (tb ? B[j * k + q] : B[q * n + j]);
                out[(z * m + i) * n + j] = s;
            }
    }
}

#define MM(desc, ta, tb, in0, in1) \
    CASE("matmul", desc, 2, F({in0, in1}), F({.i = {ta, tb}}), run_matmul, ref_matmul, 1e-5, 1e-3)

/* ---- views and copies: the output is a contiguous copy of the view, so its values and the
 * gradient flowing back through the view are both checked ---- */

enum { V_RESHAPE, V_PERMUTE, V_TRANSPOSE, V_NARROW, V_EXPAND, V_CONCAT, V_SPLIT1, V_CAST_RT, V_COPY_INTO };

static spin_tensor *run_view(const opcase *c, spin_tensor *const *in) {
    spin_tensor *v = NULL;
    const int64_t *q = &c->p.i[1];
    switch (c->p.i[0]) {
    case V_RESHAPE: v = spin_reshape(in[0], (int)q[0], (const int64_t[]){q[1], q[2], q[3], q[4]}); break;
    case V_PERMUTE: v = spin_permute(in[0], (const int[]){(int)q[0], (int)q[1], (int)q[2], (int)q[3]}); break;
    case V_TRANSPOSE: v = spin_transpose(in[0], (int)q[0], (int)q[1]); break;
    case V_NARROW: v = spin_narrow(in[0], (int)q[0], q[1], q[2]); break;
    case V_EXPAND: v = spin_expand(in[0], (int)q[0], (const int64_t[]){q[1], q[2], q[3], q[4]}); break;
    case V_CONCAT: v = spin_concat(in, c->n_in, (int)q[0]); break;
    case V_SPLIT1: {
        spin_tensor *parts[3];
        if (spin_split(in[0], (int)q[0], 3, (const int64_t[]){q[1], q[2], q[3]}, parts) != SPIN_OK)
            return NULL;
        v = parts[1]; /* the other parts belong to the harness's scope */
        break;
    }
    case V_CAST_RT: {
        spin_tensor *h = spin_cast(in[0], (spin_dtype)q[0]);
        v = h ? spin_cast(h, SPIN_F32) : NULL;
        break;
    }
    case V_COPY_INTO: {
        /* a KV-cache-style write: copy in[1] into rows [q0, q0 + len) of a copy of in[0] */
        spin_tensor *dst = spin_copy(in[0]);
        spin_tensor *slot = spin_narrow(dst, 0, q[0], spin_tensor_dim(in[1], 0));
        spin_no_grad_begin();
        spin_status s = spin_copy_into(slot, in[1]);
        spin_no_grad_end();
        return s == SPIN_OK ? spin_detach(dst) : NULL;
    }
    }
    return v ? spin_copy(v) : NULL;
}

/* Reference rounding of a double to f16 / bf16 precision (round to nearest even). */
static double round_bf16(double x) {
    float f = (float)x;
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t lsb = (u >> 16) & 1u;
    u = (u + 0x7fffu + lsb) & 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}

static double round_f16(double x) {
    return (double)(_Float16)(float)x;
}

static void ref_view(const opcase *c, const double *const *in, double *out) {
    const opc_input *x = &c->in[0];
    const int64_t *q = &c->p.i[1];
    int64_t n = opc_numel(x), s4[4];
    pad4(x, s4);
    switch (c->p.i[0]) {
    case V_RESHAPE: memcpy(out, in[0], (size_t)n * sizeof *out); return;
    case V_PERMUTE:
    case V_TRANSPOSE: {
        int nd = x->ndim, perm[4] = {0, 1, 2, 3};
        if (c->p.i[0] == V_PERMUTE)
            for (int i = 0; i < nd; i++)
                perm[i] = (int)q[i];
        else
            perm[q[0]] = (int)q[1], perm[q[1]] = (int)q[0];
        int64_t os[4], idx[4];
        for (int i = 0; i < nd; i++)
            os[i] = x->shape[perm[i]];
        for (int64_t f = 0; f < n; f++) {
            int64_t r = f;
            for (int i = nd - 1; i >= 0; i--)
                idx[i] = r % os[i], r /= os[i];
            int64_t src = 0, xi[4];
            for (int i = 0; i < nd; i++)
                xi[perm[i]] = idx[i];
            for (int i = 0; i < nd; i++)
                src = src * x->shape[i] + xi[i];
            out[f] = in[0][src];
        }
        return;
    }
    case V_NARROW:
    case V_SPLIT1: {
        int d = (int)q[0] + (4 - x->ndim);
        int64_t start = c->p.i[0] == V_NARROW ? q[1] : q[1], len = c->p.i[0] == V_NARROW ? q[2] : q[2];
        int64_t o4[4] = {s4[0], s4[1], s4[2], s4[3]}, k = 0;
        o4[d] = len;
        for (int64_t a = 0; a < o4[0]; a++)
            for (int64_t b = 0; b < o4[1]; b++)
                for (int64_t cc = 0; cc < o4[2]; cc++)
                    for (int64_t e = 0; e < o4[3]; e++) {
                        int64_t i[4] = {a, b, cc, e};
                        i[d] += start;
                        out[k++] = in[0][opc_idx4(s4, i[0], i[1], i[2], i[3])];
                    }
        return;
    }
    case V_EXPAND: {
        int nd = (int)q[0];
        int64_t o4[4];
        for (int i = 0; i < 4; i++)
            o4[i] = i < 4 - nd ? 1 : q[1 + i - (4 - nd)];
        for (int64_t a = 0; a < o4[0]; a++)
            for (int64_t b = 0; b < o4[1]; b++)
                for (int64_t cc = 0; cc < o4[2]; cc++)
                    for (int64_t e = 0; e < o4[3]; e++)
                        out[opc_idx4(o4, a, b, cc, e)] = bget(c, in, 0, a, b, cc, e);
        return;
    }
    case V_CONCAT: {
        int d = (int)q[0] + (4 - x->ndim);
        int64_t o4[4] = {s4[0], s4[1], s4[2], s4[3]};
        o4[d] = 0;
        for (int k = 0; k < c->n_in; k++) {
            int64_t t4[4];
            pad4(&c->in[k], t4);
            o4[d] += t4[d];
        }
        int64_t start = 0;
        for (int k = 0; k < c->n_in; k++) {
            int64_t t4[4];
            pad4(&c->in[k], t4);
            for (int64_t a = 0; a < t4[0]; a++)
                for (int64_t b = 0; b < t4[1]; b++)
                    for (int64_t cc = 0; cc < t4[2]; cc++)
                        for (int64_t e = 0; e < t4[3]; e++) {
                            int64_t i[4] = {a, b, cc, e};
                            i[d] += start;
                            out[opc_idx4(o4, i[0], i[1], i[2], i[3])] = in[k][opc_idx4(t4, a, b, cc, e)];
                        }
            start += t4[d];
        }
        return;
    }
    case V_CAST_RT:
        for (int64_t i = 0; i < n; i++)
            out[i] = q[0] == SPIN_BF16 ? round_bf16(in[0][i]) : round_f16(in[0][i]);
        return;
    case V_COPY_INTO: {
        int64_t row = n / x->shape[0], m = opc_numel(&c->in[1]);
        memcpy(out, in[0], (size_t)n * sizeof *out);
        memcpy(out + q[0] * row, in[1], (size_t)m * sizeof *out);
        return;
    }
    }
}

/* Values at the edges of f16 and bf16 rounding: f16 overflow (65520 and up) and its largest
 * finite value, f16 subnormals and their round-to-even ties (2^-25, 3 2^-25), ties of both
 * formats' mantissas (1 + 2^-11, 1 + 3 2^-11; 1 + 2^-8, 1 + 3 2^-8) and just above them, signed
 * zero, an f32 subnormal and the f32 maximum (inf in bf16). */
static void init_cast_edges(const opcase *c, int idx, double *v, int64_t n) {
    (void)c, (void)idx;
    static const double e[] = {0.0,
                               -0.0,
                               1.0,
                               -1.0,
                               65504.0,
                               65519.0,
                               65520.0,
                               70000.0,
                               -70000.0,
                               1e-5,
                               6.1e-5,
                               6.0e-5,
                               0x1p-24,
                               0x1p-25,
                               0x3p-25,
                               0x1p-26,
                               -0x5p-26,
                               1.0 + 0x1p-11,
                               1.0 + 0x3p-11,
                               1.0 + 0x1p-11 + 0x1p-20,
                               1.0 + 0x1p-8,
                               1.0 + 0x3p-8,
                               1.0 + 0x1p-8 + 0x1p-20,
                               -(1.0 + 0x3p-8),
                               0.1,
                               1.0 / 3.0,
                               3.14159265358979,
                               1e-8,
                               -3e-7,
                               1e-40,
                               3.4028234663852886e38,
                               -3.0e38,
                               2.5e37,
                               1234.5678,
                               -0.000123,
                               7.0,
                               0.5,
                               -2.75,
                               100.25,
                               1e-3};
    for (int64_t i = 0; i < n; i++)
        v[i] = e[i % 40];
}

#define VW(name, code, desc, nin, ins, ...) \
    CASE(name, desc, nin, F(ins), F({.i = {code, __VA_ARGS__}}), run_view, ref_view, 1e-7, 1e-4)

/* ---- a composite graph: y[n] = sum_j logsigmoid((gelu(x w1 + b1) w2)[n, j]) ----
 * Gradients flow through matmul, broadcast add, gelu, a second matmul, logsigmoid and sum. */
static spin_tensor *run_composite(const opcase *c, spin_tensor *const *in) {
    (void)c;
    spin_tensor *h = spin_gelu(spin_add(spin_matmul(in[0], in[1], false, false), in[2]));
    return spin_sum(spin_logsigmoid(spin_matmul(h, in[3], false, false)), -1, false);
}

static void ref_composite(const opcase *c, const double *const *in, double *out) {
    int64_t n = c->in[0].shape[0], k = c->in[0].shape[1], hd = c->in[1].shape[1], m = c->in[3].shape[1];
    for (int64_t r = 0; r < n; r++) {
        double h[16], acc = 0;
        for (int64_t j = 0; j < hd; j++) {
            double z = in[2][j];
            for (int64_t q = 0; q < k; q++)
                z += in[0][r * k + q] * in[1][q * hd + j];
            h[j] = 0.5 * z * (1 + tanh(sqrt(2 / 3.14159265358979323846) * (z + 0.044715 * z * z * z)));
        }
        for (int64_t j = 0; j < m; j++) {
            double z = 0;
            for (int64_t q = 0; q < hd; q++)
                z += h[q] * in[3][q * m + j];
            acc += -log1p(exp(-z));
        }
        out[r] = acc;
    }
}

/* ---- creation: fill and arange (no inputs, no gradient) ---- */
static spin_tensor *run_create(const opcase *c, spin_tensor *const *in) {
    (void)in;
    spin_device *dev = opc_device();
    if (c->p.i[0] == 0)
        return spin_full(dev, SPIN_F32, 2, (const int64_t[]){3, 5}, c->p.f[0]);
    return spin_arange(dev, (spin_dtype)c->p.i[1], c->p.i[2], c->p.f[0], c->p.f[1]);
}

static void ref_create(const opcase *c, const double *const *in, double *out) {
    (void)in;
    int64_t n = c->p.i[0] == 0 ? 15 : c->p.i[2];
    for (int64_t i = 0; i < n; i++)
        out[i] = c->p.i[0] == 0 ? c->p.f[0] : c->p.f[0] + (double)i * c->p.f[1];
}

const opcase opc_cases_basic[] = {
    CASE("fill", "[3,5] = 2.5", 0, F({{0}}), F({.i = {0}, .f = {2.5f}}), run_create, ref_create, 0, 0),
    CASE("arange", "f32 7 from 1.5 step 0.5", 0, F({{0}}), F({.i = {1, SPIN_F32, 7}, .f = {1.5f, 0.5f}}),
         run_create, ref_create, 0, 0),
    CASE("arange", "i32 9 from 3 step 2", 0, F({{0}}), F({.i = {1, SPIN_I32, 9}, .f = {3.0f, 2.0f}}),
         run_create, ref_create, 0, 0),
    CASE("composite", "sum(logsigmoid(gelu(x[5,7] w1[7,13] + b1) w2[13,3]))", 4,
         F({IN(2, 5, 7), IN(2, 7, 13), IN(1, 13), IN(2, 13, 3)}), {.i = {0}}, run_composite, ref_composite,
         1e-6, 1e-3),
    EW2("add", E_ADD, "[5,7]+[5,7]", IN(2, 5, 7), IN(2, 5, 7)),
    EW2("add", E_ADD, "broadcast [3,1,5]+[7,1]", IN(3, 3, 1, 5), IN(2, 7, 1)),
    EW2("add", E_ADD, "transposed [13,5]+sliced [5]", INL(OPC_TRANSPOSED, 2, 13, 5), INL(OPC_SLICED, 1, 5)),
    EW2("sub", E_SUB, "broadcast [2,3,5,7]-[5,1]", IN(4, 2, 3, 5, 7), IN(2, 5, 1)),
    EW2("mul", E_MUL, "broadcast [7,13]*[13]", IN(2, 7, 13), IN(1, 13)),
    EW2("mul", E_MUL, "sliced [3,7]*transposed [3,7]", INL(OPC_SLICED, 2, 3, 7),
        INL(OPC_TRANSPOSED, 2, 3, 7)),
    EW2("div", E_DIV, "broadcast [5,7]/[7] (b in [0.5,2])", IN(2, 5, 7), INR(0.5f, 2.0f, 1, 7)),
    EW2("div", E_DIV, "scalar [3,5]/[]", IN(2, 3, 5), INR(0.5f, 2.0f, 0, 0)),
    EW1("scale", E_SCALE, "[5,7] 2.5x-0.75", IN(2, 5, 7), .f = {2.5f, -0.75f}),
    EW1("exp", E_EXP, "[3,13]", IN(2, 3, 13)),
    EW1("log", E_LOG, "[3,13] in [0.2,3]", INR(0.2f, 3.0f, 2, 3, 13)),
    EW1("sqrt", E_SQRT, "[7,5] in [0.2,3]", INR(0.2f, 3.0f, 2, 7, 5)),
    EW1("rsqrt", E_RSQRT, "[7,5] in [0.2,3] transposed",
        F({.ndim = 2, .shape = {7, 5}, .grad = true, .lo = 0.2f, .hi = 3.0f, .layout = OPC_TRANSPOSED})),
    EW1("neg", E_NEG, "[5,3,7] sliced", INL(OPC_SLICED, 3, 5, 3, 7)),
    EW1("clamp", E_CLAMP, "[7,13] to [-0.5,0.3]",
        F({.ndim = 2, .shape = {7, 13}, .grad = true, .init = init_away_from_bounds}), .f = {-0.5f, 0.3f}),
    EW1("silu", E_SILU, "[5,13] in [-4,4]", INR(-4.0f, 4.0f, 2, 5, 13)),
    EW1("gelu", E_GELU, "[5,13] in [-4,4]", INR(-4.0f, 4.0f, 2, 5, 13)),
    EW1("relu", E_RELU, "[7,13]", IN(2, 7, 13)),
    EW1("logsigmoid", E_LOGSIG, "[7,13] in [-20,20]", INR(-20.0f, 20.0f, 2, 7, 13)),
    CASE("where", "cond[5,1] ? a[5,7] : b[7]", 3,
         F({{.ndim = 2, .shape = {5, 1}, .init = init_mask}, IN(2, 5, 7), IN(1, 7)}), {.i = {E_WHERE}},
         run_ew, ref_ew, 1e-7, 1e-4),
    RED("sum", R_SUM, 1, 0, "[5,7,3] axis 1", IN(3, 5, 7, 3)),
    RED("sum", R_SUM, -1, 1, "[7,13] axis -1 keepdim transposed", INL(OPC_TRANSPOSED, 2, 7, 13)),
    RED("sum", R_SUM, 0, 0, "[13,5] axis 0 sliced", INL(OPC_SLICED, 2, 13, 5)),
    RED("mean", R_MEAN, 2, 0, "[3,5,7] axis 2", IN(3, 3, 5, 7)),
    RED("sum_all", R_SUM_ALL, 0, 0, "[3,5,7]", IN(3, 3, 5, 7)),
    RED("mean_all", R_MEAN_ALL, 0, 0, "[7,13] transposed", INL(OPC_TRANSPOSED, 2, 7, 13)),
    RED("sumsq", R_SUMSQ, 1, 0, "[5,13] axis 1", IN(2, 5, 13)),
    RED("sumsq_all", R_SUMSQ_ALL, 0, 0, "[3,7,5]", IN(3, 3, 7, 5)),
    CASE("masked_sum", "x[3,13] mask[3,13]", 2,
         F({IN(2, 3, 13), {.ndim = 2, .shape = {3, 13}, .init = init_mask}}), {.i = {R_MASKED}}, run_reduce,
         ref_reduce, 1e-6, 1e-3),
    MM("[5,7]@[7,3]", 0, 0, IN(2, 5, 7), IN(2, 7, 3)),
    MM("[13,5]^T@[13,7]", 1, 0, IN(2, 13, 5), IN(2, 13, 7)),
    MM("[5,13]@[7,13]^T", 0, 1, IN(2, 5, 13), IN(2, 7, 13)),
    MM("[13,5]^T@[7,13]^T", 1, 1, IN(2, 13, 5), IN(2, 7, 13)),
    MM("batched [2,3,5,7]@[2,3,7,5]", 0, 0, IN(4, 2, 3, 5, 7), IN(4, 2, 3, 7, 5)),
    MM("batched [3,5,7]@shared [7,13]", 0, 0, IN(3, 3, 5, 7), IN(2, 7, 13)),
    MM("batched [3,7,5]^T@shared [13,7]^T", 1, 1, IN(3, 3, 7, 5), IN(2, 13, 7)),
    MM("transposed-view [5,7]@sliced [7,3]", 0, 0, INL(OPC_TRANSPOSED, 2, 5, 7), INL(OPC_SLICED, 2, 7, 3)),
    MM("one row [1,13]@[13,7] (gemv)", 0, 0, IN(2, 1, 13), IN(2, 13, 7)),
    MM("one row [1,13]@[7,13]^T (gemv)", 0, 1, IN(2, 1, 13), IN(2, 7, 13)),
    MM("one row [13,1]^T@sliced [13,7] (gemv, strided x)", 1, 0, IN(2, 13, 1), INL(OPC_SLICED, 2, 13, 7)),
    MM("batched one row [3,1,5]@shared [7,5]^T", 0, 1, IN(3, 3, 1, 5), IN(2, 7, 5)),
    MM("[32,48]@[48,40]", 0, 0, IN(2, 32, 48), IN(2, 48, 40)),
    VW("reshape", V_RESHAPE, "[3,5,7]->[15,-1]", 1, F({IN(3, 3, 5, 7)}), 2, 15, -1),
    VW("reshape", V_RESHAPE, "transposed [5,7]->[35]", 1, F({INL(OPC_TRANSPOSED, 2, 5, 7)}), 1, 35),
    VW("permute", V_PERMUTE, "[2,3,5,7] (0,2,3,1)", 1, F({IN(4, 2, 3, 5, 7)}), 0, 2, 3, 1),
    VW("transpose", V_TRANSPOSE, "[3,5,7] (0,2)", 1, F({IN(3, 3, 5, 7)}), 0, 2),
    VW("narrow", V_NARROW, "[5,13] dim 1 [3,10)", 1, F({IN(2, 5, 13)}), 1, 3, 7),
    VW("narrow", V_NARROW, "[7,5,3] dim 0 [2,7)", 1, F({IN(3, 7, 5, 3)}), 0, 2, 5),
    VW("expand", V_EXPAND, "[5,1]->[3,5,7]", 1, F({IN(2, 5, 1)}), 3, 3, 5, 7),
    VW("concat", V_CONCAT, "[3,5]+[3,2]+[3,7] dim 1", 3, F({IN(2, 3, 5), IN(2, 3, 2), IN(2, 3, 7)}), 1),
    VW("concat", V_CONCAT, "[2,5]+[3,5] dim 0", 2, F({IN(2, 2, 5), IN(2, 3, 5)}), 0),
    VW("split", V_SPLIT1, "[13,5] dim 0 into 3,7,3 (middle)", 1, F({IN(2, 13, 5)}), 0, 3, 7, 3),
    /* rounding has no useful numerical derivative: forward only (cast's backward is the identity) */
    CASE("cast", "[5,7] f32->bf16->f32", 1, F({{.ndim = 2, .shape = {5, 7}, .lo = -3, .hi = 3}}),
         F({.i = {V_CAST_RT, SPIN_BF16}}), run_view, ref_view, 0, 0),
    CASE("cast", "[5,7] f32->f16->f32", 1, F({{.ndim = 2, .shape = {5, 7}, .lo = -3, .hi = 3}}),
         F({.i = {V_CAST_RT, SPIN_F16}}), run_view, ref_view, 0, 0),
    CASE("cast", "[5,8] f32->bf16->f32 rounding edges", 1,
         F({{.ndim = 2, .shape = {5, 8}, .init = init_cast_edges}}), F({.i = {V_CAST_RT, SPIN_BF16}}),
         run_view, ref_view, 0, 0),
    CASE("cast", "[5,8] f32->f16->f32 rounding edges, subnormals, overflow", 1,
         F({{.ndim = 2, .shape = {5, 8}, .init = init_cast_edges}}), F({.i = {V_CAST_RT, SPIN_F16}}),
         run_view, ref_view, 0, 0),
    CASE("copy_into", "rows [2,5) of [7,3] (KV-cache write)", 2,
         F({{.ndim = 2, .shape = {7, 3}}, {.ndim = 2, .shape = {3, 3}}}), F({.i = {V_COPY_INTO, 2}}),
         run_view, ref_view, 0, 0),
};
const int opc_n_basic = sizeof opc_cases_basic / sizeof opc_cases_basic[0];
