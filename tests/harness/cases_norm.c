/* Op cases: rmsnorm, layernorm, rope and embedding, against double-precision references. */
#include <math.h>
#include <stdint.h>

#include "tests/harness/opcheck.h"

/* Rows of input 0: all dims but the last, and the last. */
static void rows_of(const opc_input *x, int64_t *rows, int64_t *cols) {
    *cols = x->shape[x->ndim - 1];
    *rows = opc_numel(x) / *cols;
}

/* ---- rmsnorm: y = x w / sqrt(mean(x^2) + eps) ---- */

static spin_tensor *run_rmsnorm(const opcase *c, spin_tensor *const *in) {
    return spin_rmsnorm(in[0], in[1], c->p.f[0]);
}

static void ref_rmsnorm(const opcase *c, const double *const *in, double *out) {
    int64_t rows, cols;
    rows_of(&c->in[0], &rows, &cols);
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0] + r * cols;
        double ss = 0;
        for (int64_t j = 0; j < cols; j++)
            ss += x[j] * x[j];
        double rstd = 1 / sqrt(ss / (double)cols + (double)c->p.f[0]);
        for (int64_t j = 0; j < cols; j++)
            out[r * cols + j] = x[j] * rstd * in[1][j];
    }
}

/* ---- layernorm: y = (x - mean) / sqrt(var + eps) w + b, biased variance ---- */

static spin_tensor *run_layernorm(const opcase *c, spin_tensor *const *in) {
    return spin_layernorm(in[0], in[1], in[2], c->p.f[0]);
}

static void ref_layernorm(const opcase *c, const double *const *in, double *out) {
    int64_t rows, cols;
    rows_of(&c->in[0], &rows, &cols);
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0] + r * cols;
        double mu = 0, var = 0;
        for (int64_t j = 0; j < cols; j++)
            mu += x[j];
        mu /= (double)cols;
        for (int64_t j = 0; j < cols; j++)
            var += (x[j] - mu) * (x[j] - mu);
        var /= (double)cols;
        double rstd = 1 / sqrt(var + (double)c->p.f[0]);
        for (int64_t j = 0; j < cols; j++)
            out[r * cols + j] = (x[j] - mu) * rstd * in[1][j] + in[2][j];
    }
}

/* ---- rope: pairs rotate by pos[b, t] * inv_freq[j]; p.i[0] layout, p.f[0] theta when the
 * frequencies come from spin_rope_inv_freq (input 2 absent) ---- */

static spin_tensor *run_rope(const opcase *c, spin_tensor *const *in) {
    if (in[2])
        return spin_rope(in[0], in[1], in[2], (int)c->p.i[0]);
    spin_tensor *f = spin_rope_inv_freq(spin_tensor_device(in[0]), c->in[0].shape[3], c->p.f[0]);
    return f ? spin_rope(in[0], in[1], f, (int)c->p.i[0]) : NULL; /* f belongs to the harness's scope */
}

static void ref_rope(const opcase *c, const double *const *in, double *out) {
    const int64_t *s = c->in[0].shape;
    int64_t B = s[0], H = s[1], T = s[2], D = s[3], half = D / 2;
    bool inter = c->p.i[0] == SPIN_ROPE_INTERLEAVED;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t t = 0; t < T; t++) {
                const double *x = in[0] + ((b * H + h) * T + t) * D;
                double *y = out + ((b * H + h) * T + t) * D;
                for (int64_t j = 0; j < half; j++) {
                    double f = in[2] ? in[2][j] : 1 / pow((double)c->p.f[0], (double)(2 * j) / (double)D);
                    double a = in[1][b * T + t] * f;
                    int64_t i1 = inter ? 2 * j : j, i2 = inter ? 2 * j + 1 : j + half;
                    y[i1] = x[i1] * cos(a) - x[i2] * sin(a);
                    y[i2] = x[i2] * cos(a) + x[i1] * sin(a);
                }
            }
}

/* Positions [B, T]: row 0 counts from 0, row 1 from 3 (a left-padded or continued sequence),
 * later rows from 100 (a decode step deep in a sequence). */
static void init_pos(const opcase *c, int idx, double *v, int64_t n) {
    int64_t T = c->in[idx].shape[1];
    static const double start[] = {0, 3, 100, 100};
    for (int64_t i = 0; i < n; i++)
        v[i] = start[(i / T) % 4] + (double)(i % T);
}

/* Positions around 4000, where an angle formed in f32 would be off by ~2e-4. */
static void init_pos_far(const opcase *c, int idx, double *v, int64_t n) {
    int64_t T = c->in[idx].shape[1];
    for (int64_t i = 0; i < n; i++)
        v[i] = 4000 + 37 * (double)(i / T) + (double)(i % T);
}

/* HF's frequencies for theta = 10000 (make_values rounds them to f32, as the device holds them). */
static void init_inv_freq(const opcase *c, int idx, double *v, int64_t n) {
    (void)c, (void)idx;
    for (int64_t j = 0; j < n; j++)
        v[j] = 1 / pow(10000.0, (double)(2 * j) / (double)(2 * n));
}

/* ---- embedding: y[n, :] = w[ids[n], :] ---- */

static spin_tensor *run_embedding(const opcase *c, spin_tensor *const *in) {
    (void)c;
    return spin_embedding(in[0], in[1]);
}

static void ref_embedding(const opcase *c, const double *const *in, double *out) {
    int64_t cols = c->in[0].shape[1], n = opc_numel(&c->in[1]);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < cols; j++)
            out[i * cols + j] = in[0][(int64_t)in[1][i] * cols + j];
}

/* Ids with repeats (3 three times, 7 twice) and both ends of the vocabulary [0, 11). */
static void init_ids(const opcase *c, int idx, double *v, int64_t n) {
    (void)c, (void)idx;
    static const double ids[] = {3, 0, 7, 3, 10, 1, 3, 5, 7, 2, 9, 4, 8, 6};
    for (int64_t i = 0; i < n; i++)
        v[i] = ids[i % 14];
}

#define F(...) __VA_ARGS__
#define X(nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .grad = true }
#define XL(layout_, nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .grad = true, .layout = layout_ }
#define W(c) \
    { .ndim = 1, .shape = {c}, .grad = true, .lo = 0.5f, .hi = 1.5f }
#define BIAS(c) \
    { .ndim = 1, .shape = {c}, .grad = true }
#define POS(b, t, fn) \
    { .ndim = 2, .shape = {b, t}, .dtype = SPIN_I32, .init = fn }
#define FREQ(h) \
    { .ndim = 1, .shape = {h}, .init = init_inv_freq }
/* Tolerances: forward 1e-5 normalised, gradients 1e-3 normalised, finite-difference step 1e-3. */
#define CASE(name, desc, nin, ins, prm, runf, reff)                                                          \
    {                                                                                                        \
        .op = name, .params = desc, .n_in = nin, .in = ins, .p = prm, .run = runf, .ref = reff, .tol = 1e-5, \
        .grad_tol = 1e-3, .eps = 1e-3                                                                        \
    }
#define RMS(desc, eps, xin, c) \
    CASE("rmsnorm", desc, 2, F({xin, W(c)}), F({.f = {eps}}), run_rmsnorm, ref_rmsnorm)
#define ROPE(desc, layout, xin, pin, fin) \
    CASE("rope", desc, 3, F({xin, pin, fin}), F({.i = {layout}}), run_rope, ref_rope)

const opcase opc_cases_norm[] = {
    RMS("x[7,13] eps=1e-5", 1e-5f, X(2, 7, 13), 13),
    RMS("x[2,3,5] eps=1e-6", 1e-6f, X(3, 2, 3, 5), 5),
    RMS("x[7,13] transposed eps=1e-5", 1e-5f, XL(OPC_TRANSPOSED, 2, 7, 13), 13),
    RMS("x[5,3,7] sliced eps=1e-5", 1e-5f, XL(OPC_SLICED, 3, 5, 3, 7), 7),
    RMS("x[4,300] eps=1e-5 (2+ weight column blocks)", 1e-5f, X(2, 4, 300), 300),
    CASE("layernorm", "x[5,7] eps=1e-5", 3, F({X(2, 5, 7), W(7), BIAS(7)}), F({.f = {1e-5f}}), run_layernorm,
         ref_layernorm),
    CASE("layernorm", "x[2,3,9] transposed eps=1e-6", 3, F({XL(OPC_TRANSPOSED, 3, 2, 3, 9), W(9), BIAS(9)}),
         F({.f = {1e-6f}}), run_layernorm, ref_layernorm),
    CASE("layernorm", "x[3,300] eps=1e-5 (rows wider than a work-group)", 3,
         F({X(2, 3, 300), W(300), BIAS(300)}), F({.f = {1e-5f}}), run_layernorm, ref_layernorm),
    ROPE("half x[2,3,5,8] pos from 0/3", SPIN_ROPE_HALF, X(4, 2, 3, 5, 8), POS(2, 5, init_pos), FREQ(4)),
    ROPE("interleaved x[2,3,5,8] pos from 0/3", SPIN_ROPE_INTERLEAVED, X(4, 2, 3, 5, 8), POS(2, 5, init_pos),
         FREQ(4)),
    ROPE("half x[3,2,4,8] pos from 0/3/100", SPIN_ROPE_HALF, X(4, 3, 2, 4, 8), POS(3, 4, init_pos), FREQ(4)),
    ROPE("interleaved x[3,2,4,8] pos from 0/3/100 sliced", SPIN_ROPE_INTERLEAVED,
         XL(OPC_SLICED, 4, 3, 2, 4, 8), POS(3, 4, init_pos), FREQ(4)),
    ROPE("half x[2,3,5,6] D=6", SPIN_ROPE_HALF, X(4, 2, 3, 5, 6), POS(2, 5, init_pos), FREQ(3)),
    ROPE("interleaved x[2,3,5,6] D=6 transposed", SPIN_ROPE_INTERLEAVED, XL(OPC_TRANSPOSED, 4, 2, 3, 5, 6),
         POS(2, 5, init_pos), FREQ(3)),
    ROPE("half x[2,2,3,16] pos ~4000", SPIN_ROPE_HALF, X(4, 2, 2, 3, 16), POS(2, 3, init_pos_far), FREQ(8)),
    CASE("rope", "half x[2,3,5,8] inv_freq(theta=10000)", 3,
         F({X(4, 2, 3, 5, 8), POS(2, 5, init_pos), {.ndim = 1, .shape = {4}, .absent = true}}),
         F({.i = {SPIN_ROPE_HALF}, .f = {10000.0f}}), run_rope, ref_rope),
    CASE("rope", "interleaved x[1,2,4,64] inv_freq(theta=500000)", 3,
         F({X(4, 1, 2, 4, 64), POS(1, 4, init_pos), {.ndim = 1, .shape = {32}, .absent = true}}),
         F({.i = {SPIN_ROPE_INTERLEAVED}, .f = {500000.0f}}), run_rope, ref_rope),
    CASE("embedding", "w[11,5] ids[2,7] repeated", 2,
         F({X(2, 11, 5), {.ndim = 2, .shape = {2, 7}, .dtype = SPIN_I32, .init = init_ids}}), F({.i = {0}}),
         run_embedding, ref_embedding),
    CASE("embedding", "w[11,70] sliced ids[3] (2 column blocks)", 2,
         F({XL(OPC_SLICED, 2, 11, 70), {.ndim = 1, .shape = {3}, .dtype = SPIN_I32, .init = init_ids}}),
         F({.i = {0}}), run_embedding, ref_embedding),
};
const int opc_n_norm = sizeof opc_cases_norm / sizeof opc_cases_norm[0];
