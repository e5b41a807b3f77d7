#define _DEFAULT_SOURCE
/* Mixed precision (docs/training.md): bf16 storage with f32 computation.
 *
 * - Rounding: f32 -> bf16 is round to nearest even (bit patterns of IEEE / torch written out
 *   below), and the dispatcher runs f32-only kernels on bf16 tensors through f32 copies (counted).
 * - Ops: each op on bf16 tensors against the same op on f32 tensors holding the same
 *   (bf16-representable) values, forward and backward. The kernels compute both in f32 from
 *   identical numbers, so a bf16 result differs from the f32 one by its final rounding alone:
 *   at most 2^-8 relative per element (TOL_ROUND). Where a bf16-rounded intermediate feeds the
 *   backward (attention's o), TOL_CHAIN. f32 results (log-probs, lse, parameter gradients) match
 *   to TOL_SAME (summation order is the same; the bound leaves room for an ulp).
 * - f32 accumulation: long positive sums (K = 4096) against a double reference computed here from
 *   the bf16 inputs: one rounding per element. A bf16 accumulator stalls at 2^8 ulps and misses
 *   this by orders of magnitude. The bf16 GEMM (AVX-512 BF16) likewise in all four transpose
 *   layouts with partial tiles and an odd K.
 * - Training: the tiny Llama of tests/data/train/tiny trained 10 SPIN updates (RMSProp, lr 1e-3,
 *   the golden setup of test_trainer.c) in bf16 and in f32: losses track within TOL_TRAIN_LOSS
 *   relative and the final parameters within TOL_TRAIN_PARAM (normalised), and track torch's bf16
 *   run of the same setup (tests/ref/make_bf16_golden.py, bf16 model with f32 masters as DeepSpeed
 *   runs it) within TOL_TORCH_LOSS / TOL_TORCH_GNORM; the bf16 checkpoint
 *   holds BF16 weights (torch_dtype bfloat16) and F32 optimizer masters; a bf16 resume is bit-exact;
 *   resuming with the other precision is refused. */
#include <json-c/json.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "core/device.h"
#include "core/dispatch.h"
#include "models/safetensors.h"
#include "train/trainer.h"

/* One bf16 rounding: half an ulp of an 8-bit significand, relative. */
#define TOL_ROUND 0x1p-8
/* An f32 result computed from the same values in the same order: equal up to an ulp or two. */
#define TOL_SAME 1e-6
/* A gradient whose kernel also reads a bf16-rounded forward output (attention's o). Measured
 * 1.6e-3 to 2.0e-3 (dq, dk, dv). */
#define TOL_CHAIN 1e-2
/* 10 updates of the tiny model, bf16 against f32, RMSProp at lr 1e-3 (per-element steps of ~lr /
 * sqrt(1 - alpha) = 1e-2 at first, against weights of ~0.2). Measured: loss 9.0e-3 relative at
 * the worst step (1.3e-3 at the last), final parameters 3.2e-3 normalised, while training moved
 * them by 5.0e-2. */
/* Against torch's own bf16 run of that setup (tests/ref/make_bf16_golden.py), which also rounds
 * the logits and the parameter gradients to bf16 where we keep f32. Two bf16 runs differ by their
 * rounding noise, which grows as the gradients shrink: torch's bf16 run is 1.0e-2 (loss) and 4.6e-2
 * (grad norm, at step 8) from torch's f32 run; ours is 1.5e-2 and 5.1e-2 from torch's bf16 run
 * (and 9.0e-3 / 2.1e-2 from our f32 run). The bounds sit above that noise and far below what a
 * wrong gradient does (the pad row's embedding gradient alone moved the loss by 1e-1). */
#define TOL_TORCH_LOSS 3e-2
#define TOL_TORCH_GNORM 1e-1
#define TOL_TRAIN_LOSS 2e-2
#define TOL_TRAIN_PARAM 1e-2

static spin_device *dev;
#define DATA SPIN_TEST_DATA "/train/"

/* ---- helpers ---- */

static float *read_all(spin_tensor *t) {
    int64_t n = spin_tensor_numel(t);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    assert_non_null(v);
    assert_int_equal(spin_tensor_read_f32(t, v, n), SPIN_OK);
    return v;
}

/* ||a - b|| / ||b|| */
static double nerr(spin_tensor *a, spin_tensor *b) {
    assert_int_equal(spin_tensor_numel(a), spin_tensor_numel(b));
    int64_t n = spin_tensor_numel(a);
    float *x = read_all(a), *y = read_all(b);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        den += (double)y[i] * y[i];
    }
    free(x);
    free(y);
    return sqrt(num) / (den > 0 ? sqrt(den) : 1);
}

/* Uniform [lo, hi) values rounded to bf16, as an f32 tensor *f and a bf16 tensor *b (both leaves
 * that require grad when grad is set). Inside a scope, which owns them. */
static void pair_rand(int nd, const int64_t *sh, uint64_t seed, float lo, float hi, bool grad,
                      spin_tensor **f, spin_tensor **b) {
    spin_tensor *u = spin_rand_uniform(dev, nd, sh, seed, 0, lo, hi);
    assert_non_null(u);
    *b = spin_cast(u, SPIN_BF16);
    *f = spin_cast(*b, SPIN_F32);
    assert_non_null(*b);
    assert_non_null(*f);
    assert_int_equal(spin_tensor_dtype(*b), SPIN_BF16);
    spin_tensor_set_requires_grad(*f, grad);
    spin_tensor_set_requires_grad(*b, grad);
}

static void expect_dtype(spin_tensor *t, spin_dtype dt) {
    assert_non_null(t);
    if (spin_tensor_dtype(t) != dt)
        fail_msg("dtype %s, expected %s", spin_dtype_name(spin_tensor_dtype(t)), spin_dtype_name(dt));
}

static void expect_err(const char *what, double e, double tol) {
    print_message("  %-28s %.2e (tolerance %.1e)\n", what, e, tol);
    if (!(e <= tol))
        fail_msg("%s: normalised error %.3e over %.3e", what, e, tol);
}

/* Backward from y with the seed gradient g (y's shape). */
static void backward(spin_tensor *y, spin_tensor *g) {
    assert_int_equal(spin_backward_seeded(y, g, false), SPIN_OK);
}

/* ---- rounding and the dispatcher ---- */

static void test_round_to_nearest_even(void **s) {
    (void)s;
    spin_scope_begin();
    /* inputs and the bf16 bit patterns IEEE round-to-nearest-even gives (as torch's .bfloat16()) */
    static const uint32_t in[] = {
        0x3f800000u, /* 1 */
        0x3f808000u, /* 1 + 2^-8: a tie, to the even 1 */
        0x3f818000u, /* 1 + 3 * 2^-8: a tie, to the even 1 + 2^-6 */
        0x3f808001u, /* just above the tie: up */
        0x3f807fffu, /* just below: down */
        0x80000000u, /* -0 */
        0x7f800000u, /* inf */
        0x7f7fffffu, /* the largest f32: rounds to inf */
        0x00000001u, /* the smallest subnormal: to +0 */
        0xc0490fdbu, /* -pi */
    };
    static const uint16_t want[] = {0x3f80, 0x3f80, 0x3f82, 0x3f81, 0x3f80,
                                    0x8000, 0x7f80, 0x7f80, 0x0000, 0xc049};
    enum { N = sizeof in / sizeof in[0] };
    float f[N];
    memcpy(f, in, sizeof f);
    spin_tensor *x = spin_from_host(dev, SPIN_F32, 1, (int64_t[]){N}, f);
    spin_tensor *y = spin_cast(x, SPIN_BF16);
    uint16_t got[N];
    assert_int_equal(spin_tensor_read(y, got, sizeof got), SPIN_OK);
    for (int i = 0; i < N; i++)
        if (got[i] != want[i])
            fail_msg("f32 0x%08x -> bf16 0x%04x, expected 0x%04x", in[i], got[i], want[i]);
    /* NaN stays NaN (quiet) */
    float nan = NAN;
    spin_tensor *xn = spin_from_host(dev, SPIN_F32, 1, (int64_t[]){1}, &nan);
    spin_tensor *yn = spin_cast(xn, SPIN_BF16);
    uint16_t hn;
    assert_int_equal(spin_tensor_read(yn, &hn, sizeof hn), SPIN_OK);
    assert_true((hn & 0x7f80u) == 0x7f80u && (hn & 0x7fu) != 0);
    /* and back: exact */
    spin_tensor *z = spin_cast(y, SPIN_F32);
    float back[N];
    assert_int_equal(spin_tensor_read(z, back, sizeof back), SPIN_OK);
    for (int i = 0; i < N; i++) {
        uint32_t u;
        memcpy(&u, &back[i], 4);
        assert_int_equal(u, (uint32_t)want[i] << 16);
    }
    spin_scope_end();
}

/* A kernel the CPU has only in f32 runs on bf16 tensors through f32 copies, counted; one it has
 * in bf16 (the embedding gather) runs directly. */
static void test_dispatch_widens(void **s) {
    (void)s;
    spin_scope_begin();
    spin_device *d = dev; /* the widening runs on the test's device (SPIN_DEVICE), not the CPU's */
    spin_tensor *af, *ab, *bf, *bb;
    pair_rand(2, (int64_t[]){3, 5}, 1, -2, 2, false, &af, &ab);
    pair_rand(2, (int64_t[]){3, 5}, 2, -2, 2, false, &bf, &bb);
    uint64_t w0 = d->widened[SPIN_K_ADD];
    spin_tensor *yb = spin_add(ab, bb), *yf = spin_add(af, bf);
    expect_dtype(yb, SPIN_BF16);
    assert_int_equal(d->widened[SPIN_K_ADD], w0 + 1);
    /* a + b in f32, rounded once */
    spin_tensor *r = spin_cast(yf, SPIN_BF16);
    assert_true(nerr(yb, r) == 0);
    /* mixed: f32 result (torch's promotion) */
    expect_dtype(spin_add(af, bb), SPIN_F32);
    uint64_t e0 = d->widened[SPIN_K_EMBEDDING];
    int32_t ids[2] = {2, 0};
    spin_tensor *id = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){2}, ids);
    expect_dtype(spin_embedding(ab, id), SPIN_BF16);
    assert_int_equal(d->widened[SPIN_K_EMBEDDING], e0);
    spin_scope_end();
}

/* ---- ops, bf16 against f32 on the same values ---- */

static void test_matmul(void **s) {
    (void)s;
    spin_scope_begin();
    spin_tensor *xf, *xb, *wf, *wb, *gf, *gb;
    pair_rand(3, (int64_t[]){2, 7, 24}, 11, -1, 1, true, &xf, &xb);
    pair_rand(2, (int64_t[]){10, 24}, 12, -1, 1, true, &wf, &wb); /* [out, in], y = x w^T */
    pair_rand(3, (int64_t[]){2, 7, 10}, 13, -1, 1, false, &gf, &gb);
    spin_tensor *x2f = spin_scale(xf, 1.0f), *x2b = spin_scale(xb, 1.0f); /* non-leaf: bf16 dx */
    spin_tensor *yf = spin_matmul(x2f, wf, false, true), *yb = spin_matmul(x2b, wb, false, true);
    expect_dtype(yb, SPIN_BF16);
    expect_err("matmul y", nerr(yb, yf), TOL_ROUND);
    backward(yf, gf);
    backward(yb, gb);
    /* dx bf16 (an activation), dw f32 (a parameter's gradient straight from the f32 product) */
    expect_dtype(spin_tensor_grad(wb), SPIN_F32);
    expect_err("matmul dw", nerr(spin_tensor_grad(wb), spin_tensor_grad(wf)), TOL_SAME);
    /* the leaf x's gradient: scale's bf16 gradient, accumulated in f32 */
    expect_dtype(spin_tensor_grad(xb), SPIN_F32);
    expect_err("matmul dx", nerr(spin_tensor_grad(xb), spin_tensor_grad(xf)), TOL_ROUND);
    spin_scope_end();
}

static void test_rmsnorm(void **s) {
    (void)s;
    spin_scope_begin();
    spin_tensor *xf, *xb, *wf, *wb, *gf, *gb;
    pair_rand(2, (int64_t[]){9, 64}, 21, -3, 3, true, &xf, &xb);
    pair_rand(1, (int64_t[]){64}, 22, 0.5f, 1.5f, true, &wf, &wb);
    pair_rand(2, (int64_t[]){9, 64}, 23, -1, 1, false, &gf, &gb);
    /* through a non-leaf x, so dx is an activation gradient (bf16) */
    spin_tensor *x2f = spin_scale(xf, 1.0f), *x2b = spin_scale(xb, 1.0f);
    spin_tensor *yf = spin_rmsnorm(x2f, wf, 1e-5f), *yb = spin_rmsnorm(x2b, wb, 1e-5f);
    expect_dtype(yb, SPIN_BF16);
    expect_err("rmsnorm y", nerr(yb, yf), TOL_ROUND);
    backward(yf, gf);
    backward(yb, gb);
    expect_err("rmsnorm dx", nerr(spin_tensor_grad(xb), spin_tensor_grad(xf)), TOL_ROUND);
    expect_dtype(spin_tensor_grad(wb), SPIN_F32);
    expect_err("rmsnorm dw", nerr(spin_tensor_grad(wb), spin_tensor_grad(wf)), TOL_SAME);
    spin_scope_end();
}

static void test_attention(void **s) {
    (void)s;
    spin_scope_begin();
    spin_tensor *qf, *qb, *kf, *kb, *vf, *vb, *gf, *gb;
    pair_rand(4, (int64_t[]){2, 4, 6, 8}, 31, -1, 1, true, &qf, &qb);
    pair_rand(4, (int64_t[]){2, 2, 6, 8}, 32, -1, 1, true, &kf, &kb);
    pair_rand(4, (int64_t[]){2, 2, 6, 8}, 33, -1, 1, true, &vf, &vb);
    pair_rand(4, (int64_t[]){2, 4, 6, 8}, 34, -1, 1, false, &gf, &gb);
    float mask[12] = {1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1};
    spin_tensor *km = spin_from_host(dev, SPIN_F32, 2, (int64_t[]){2, 6}, mask);
    /* non-leaf q, k, v (projections in a model): their gradients are bf16 */
    spin_tensor *q2f = spin_scale(qf, 1.0f), *k2f = spin_scale(kf, 1.0f), *v2f = spin_scale(vf, 1.0f);
    spin_tensor *q2b = spin_scale(qb, 1.0f), *k2b = spin_scale(kb, 1.0f), *v2b = spin_scale(vb, 1.0f);
    spin_tensor *of = spin_attention(q2f, k2f, v2f, NULL, km, NULL);
    spin_tensor *ob = spin_attention(q2b, k2b, v2b, NULL, km, NULL);
    expect_dtype(ob, SPIN_BF16);
    expect_err("attention o", nerr(ob, of), TOL_ROUND);
    backward(of, gf);
    backward(ob, gb);
    expect_err("attention dq", nerr(spin_tensor_grad(qb), spin_tensor_grad(qf)), TOL_CHAIN);
    expect_err("attention dk", nerr(spin_tensor_grad(kb), spin_tensor_grad(kf)), TOL_CHAIN);
    expect_err("attention dv", nerr(spin_tensor_grad(vb), spin_tensor_grad(vf)), TOL_CHAIN);
    spin_scope_end();
}

static void test_cross_entropy(void **s) {
    (void)s;
    spin_scope_begin();
    spin_tensor *hf, *hb, *wf, *wb;
    pair_rand(2, (int64_t[]){13, 16}, 41, -1, 1, true, &hf, &hb);
    pair_rand(2, (int64_t[]){40, 16}, 42, -1, 1, true, &wf, &wb);
    int32_t t[13] = {3, 7, -100, 0, 39, 12, 12, 5, -100, 1, 2, 30, 8};
    spin_tensor *tg = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){13}, t);
    spin_tensor *h2f = spin_scale(hf, 1.0f), *h2b = spin_scale(hb, 1.0f);
    spin_tensor *lf = spin_linear_logprob(h2f, wf, tg, -100, 4, NULL, NULL);
    spin_tensor *lb = spin_linear_logprob(h2b, wb, tg, -100, 4, NULL, NULL);
    /* log-probs in f32 from f32 logits of the same values */
    expect_dtype(lb, SPIN_F32);
    expect_err("linear_logprob logp", nerr(lb, lf), TOL_SAME);
    spin_tensor *cf = spin_cross_entropy(hf, wf, tg, -100, 5), *cb = spin_cross_entropy(hb, wb, tg, -100, 5);
    expect_dtype(cb, SPIN_F32);
    expect_err("cross_entropy loss", nerr(cb, cf), TOL_SAME);
    float gv[13];
    for (int i = 0; i < 13; i++)
        gv[i] = (float)(i % 5) * 0.25f - 0.5f;
    spin_tensor *g = spin_from_host(dev, SPIN_F32, 1, (int64_t[]){13}, gv);
    backward(lf, g);
    backward(lb, g);
    expect_err("linear_logprob dh", nerr(spin_tensor_grad(hb), spin_tensor_grad(hf)), TOL_ROUND);
    expect_dtype(spin_tensor_grad(wb), SPIN_F32);
    expect_err("linear_logprob dw", nerr(spin_tensor_grad(wb), spin_tensor_grad(wf)), TOL_SAME);
    spin_scope_end();
}

static void test_embedding(void **s) {
    (void)s;
    spin_scope_begin();
    spin_tensor *wf, *wb, *gf, *gb;
    pair_rand(2, (int64_t[]){11, 12}, 51, -1, 1, true, &wf, &wb);
    pair_rand(2, (int64_t[]){7, 12}, 52, -1, 1, false, &gf, &gb);
    int32_t ids[7] = {3, 0, 3, 10, 5, 3, 1};
    spin_tensor *id = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){7}, ids);
    spin_tensor *yf = spin_embedding_pad(wf, id, 5), *yb = spin_embedding_pad(wb, id, 5);
    expect_dtype(yb, SPIN_BF16);
    expect_err("embedding y (a copy)", nerr(yb, yf), 0);
    backward(yf, gf);
    backward(yb, gb);
    expect_dtype(spin_tensor_grad(wb), SPIN_F32);
    expect_err("embedding dw", nerr(spin_tensor_grad(wb), spin_tensor_grad(wf)), TOL_SAME);
    spin_scope_end();
}

static void test_elementwise_softmax_rope(void **s) {
    (void)s;
    spin_scope_begin();
    spin_tensor *xf, *xb, *uf, *ub, *gf, *gb;
    pair_rand(4, (int64_t[]){1, 2, 5, 8}, 61, -3, 3, true, &xf, &xb);
    pair_rand(4, (int64_t[]){1, 2, 5, 8}, 62, -3, 3, true, &uf, &ub);
    pair_rand(4, (int64_t[]){1, 2, 5, 8}, 63, -1, 1, false, &gf, &gb);
    /* silu(x) * u, as the MLP: two roundings in bf16 */
    spin_tensor *mf = spin_mul(spin_silu(xf), uf), *mb = spin_mul(spin_silu(xb), ub);
    expect_dtype(mb, SPIN_BF16);
    expect_err("silu(x) * u", nerr(mb, mf), 2 * TOL_ROUND);
    spin_tensor *sf = spin_softmax(xf), *sb = spin_softmax(xb);
    expect_dtype(sb, SPIN_BF16);
    expect_err("softmax", nerr(sb, sf), TOL_ROUND);
    int32_t pos[5] = {0, 1, 2, 7, 9};
    spin_tensor *p = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){1, 5}, pos);
    spin_tensor *inv = spin_rope_inv_freq(dev, 8, 10000.0);
    spin_tensor *rf = spin_rope(xf, p, inv, SPIN_ROPE_HALF), *rb = spin_rope(xb, p, inv, SPIN_ROPE_HALF);
    expect_dtype(rb, SPIN_BF16);
    expect_err("rope", nerr(rb, rf), TOL_ROUND);
    spin_tensor *tf = spin_add(mf, rf), *tb = spin_add(mb, rb);
    backward(tf, gf);
    backward(tb, gb);
    /* d/dx through silu and rope: each branch rounds once, the f32 leaf sums them */
    expect_err("d(silu(x) u + rope(x))/dx", nerr(spin_tensor_grad(xb), spin_tensor_grad(xf)), 2 * TOL_ROUND);
    expect_err("d(silu(x) u)/du", nerr(spin_tensor_grad(ub), spin_tensor_grad(uf)), 2 * TOL_ROUND);
    spin_scope_end();
}

/* ---- accumulation in f32 ---- */

static void check_one_rounding(const char *what, const float *got, const double *ref, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - ref[i]) / fabs(ref[i]);
        worst = e > worst ? e : worst;
    }
    /* one rounding, plus the f32 sum's own error over 4096 terms (~1e-6 here; a bf16 accumulator
     * is off by ~1e-1) */
    print_message("  %-28s worst element %.2e (one bf16 rounding: <= %.1e)\n", what, worst, TOL_ROUND);
    if (!(worst <= TOL_ROUND + 1e-4))
        fail_msg("%s: element error %.3e: not accumulated in f32", what, worst);
}

/* The bf16 GEMM against a double reference: each operand stored plain or transposed, sizes that
 * leave partial 6 x 64 tiles and an odd K. */
static void test_matmul_layouts(void **s) {
    (void)s;
    enum { M = 13, K = 4095, N = 70 };
    spin_device *cpu = spin_cpu_device();
    for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t & 2;
        spin_scope_begin();
        spin_tensor *af, *ab, *bf, *bb;
        pair_rand(2, ta ? (int64_t[]){K, M} : (int64_t[]){M, K}, 81 + t, 0, 1, false, &af, &ab);
        pair_rand(2, tb ? (int64_t[]){N, K} : (int64_t[]){K, N}, 91 + t, 0, 1, false, &bf, &bb);
        float *a = read_all(af), *b = read_all(bf);
        double *ref = malloc(M * N * sizeof *ref);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double acc = 0;
                for (int k = 0; k < K; k++)
                    acc += (double)a[ta ? k * M + i : i * K + k] * b[tb ? j * K + k : k * N + j];
                ref[i * N + j] = acc;
            }
        uint64_t w0 = cpu->widened[SPIN_K_MATMUL];
        spin_tensor *yb = spin_matmul(ab, bb, ta, tb);
        expect_dtype(yb, SPIN_BF16);
        /* the AVX-512 BF16 GEMM where the CPU has it, f32 copies and sgemm where not */
        print_message("  %s: %s\n", ta ? (tb ? "a^T b^T" : "a^T b") : (tb ? "a b^T" : "a b"),
                      cpu->widened[SPIN_K_MATMUL] == w0 ? "bf16 GEMM" : "widened to sgemm");
        float *y = read_all(yb);
        check_one_rounding("matmul 13 x 4095 x 70", y, ref, M * N);
        free(a);
        free(b);
        free(y);
        free(ref);
        spin_scope_end();
    }
}

static void test_long_sums_in_f32(void **s) {
    (void)s;
    spin_scope_begin();
    enum { M = 3, K = 4096, N = 4 };
    spin_tensor *af, *ab, *bf, *bb;
    pair_rand(2, (int64_t[]){M, K}, 71, 0, 1, false, &af, &ab);
    pair_rand(2, (int64_t[]){K, N}, 72, 0, 1, false, &bf, &bb);
    float *a = read_all(af), *b = read_all(bf);
    double ref[M * N], rn[M * K];
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++)
                acc += (double)a[i * K + k] * b[k * N + j];
            ref[i * N + j] = acc;
        }
    float *y = read_all(spin_matmul(ab, bb, false, false));
    check_one_rounding("matmul, K = 4096", y, ref, M * N);
    /* rmsnorm over 4096 positive columns (w = 1) */
    for (int i = 0; i < M; i++) {
        double ss = 0;
        for (int k = 0; k < K; k++)
            ss += (double)a[i * K + k] * a[i * K + k];
        double r = 1 / sqrt(ss / K + 1e-5);
        for (int k = 0; k < K; k++)
            rn[i * K + k] = a[i * K + k] * r;
    }
    spin_tensor *ones = spin_full(dev, SPIN_BF16, 1, (int64_t[]){K}, 1.0f);
    float *yn = read_all(spin_rmsnorm(ab, ones, 1e-5f));
    /* elements near 0 have relative error dominated by the f32 rstd; skip |ref| < 1e-3 */
    int64_t m = 0;
    for (int64_t i = 0; i < M * K; i++)
        if (fabs(rn[i]) >= 1e-3) {
            rn[m] = rn[i];
            yn[m++] = yn[i];
        }
    check_one_rounding("rmsnorm, C = 4096", yn, rn, m);
    free(a);
    free(b);
    free(y);
    free(yn);
    spin_scope_end();
}

/* ---- the model and training ---- */

typedef struct {
    int n;
    spin_pref_tokens *ex;
} examples;

static int32_t *ints(json_object *a, int64_t *n) {
    *n = (int64_t)json_object_array_length(a);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    for (int64_t i = 0; i < *n; i++)
        v[i] = json_object_get_int(json_object_array_get_idx(a, (size_t)i));
    return v;
}

static uint8_t *bits(json_object *a) {
    size_t n = json_object_array_length(a);
    uint8_t *v = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint8_t)json_object_get_int(json_object_array_get_idx(a, i));
    return v;
}

static json_object *key(json_object *o, const char *k) {
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, k, &v));
    return v;
}

/* The trainer test's token rows (tests/data/train/trajectory_examples.json). */
static examples load_examples(void) {
    json_object *root = json_object_from_file(DATA "trajectory_examples.json");
    assert_non_null(root);
    examples e = {(int)json_object_array_length(root), NULL};
    e.ex = calloc((size_t)e.n, sizeof *e.ex);
    for (int i = 0; i < e.n; i++) {
        json_object *o = json_object_array_get_idx(root, (size_t)i);
        spin_pref_tokens *t = &e.ex[i];
        t->prompt = ints(key(o, "prompt"), &t->n_prompt);
        t->chosen = ints(key(o, "chosen"), &t->n_chosen);
        t->rejected = ints(key(o, "rejected"), &t->n_rejected);
        t->prompt_attn = bits(key(o, "prompt_attn"));
        t->chosen_attn = bits(key(o, "chosen_attn"));
        t->rejected_attn = bits(key(o, "rejected_attn"));
    }
    json_object_put(root);
    return e;
}

static void free_examples(examples *e) {
    for (int i = 0; i < e->n; i++)
        spin_pref_tokens_free(&e->ex[i]);
    free(e->ex);
}

static spin_collate_opts collate_opts(void) {
    return (spin_collate_opts){.max_length = 64, .max_prompt_length = 32, .eos_id = 2, .pad_id = 2};
}

static spin_llama *load_tiny(void) {
    spin_llama *m = NULL;
    assert_int_equal(spin_llama_load(DATA "tiny", dev, &m), SPIN_OK);
    return m;
}

static char *tmpdir(void) {
    char *d = strdup("/tmp/spin_bf16_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

/* Every parameter, as f32 values, concatenated. */
static float *read_params(spin_llama *m, int64_t *n) {
    int64_t total = 0;
    for (int i = 0; i < m->n_params; i++)
        total += spin_tensor_numel(m->params[i]);
    float *v = malloc((size_t)total * sizeof *v);
    for (int64_t i = 0, o = 0; i < m->n_params; i++) {
        int64_t k = spin_tensor_numel(m->params[i]);
        assert_int_equal(spin_tensor_read_f32(m->params[i], v + o, k), SPIN_OK);
        o += k;
    }
    *n = total;
    return v;
}

static double vec_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (den > 0 ? sqrt(den) : 1);
}

/* set_dtype rounds every parameter once; the bf16 forward tracks the f32 one. */
static void test_model_set_dtype(void **s) {
    (void)s;
    spin_llama *mf = load_tiny(), *mb = load_tiny();
    assert_int_equal(spin_llama_set_dtype(mb, SPIN_BF16), SPIN_OK);
    assert_int_equal(spin_llama_dtype(mb), SPIN_BF16);
    assert_ptr_equal(spin_llama_head(mb), mb->lm_head);
    spin_scope_begin();
    for (int i = 0; i < mb->n_params; i++) {
        expect_dtype(mb->params[i], SPIN_BF16);
        assert_true(spin_tensor_requires_grad(mb->params[i]));
        assert_string_equal(spin_tensor_name(mb->params[i]), spin_tensor_name(mf->params[i]));
        spin_tensor *r = spin_cast(mf->params[i], SPIN_BF16);
        assert_true(nerr(mb->params[i], r) == 0);
    }
    int32_t ids[2 * 9];
    for (int i = 0; i < 18; i++)
        ids[i] = (i * 7 + 3) % 64;
    spin_tensor *id = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 9}, ids);
    spin_tensor *hf = spin_llama_forward(mf, id, NULL, NULL, NULL),
                *hb = spin_llama_forward(mb, id, NULL, NULL, NULL);
    expect_dtype(hb, SPIN_BF16);
    /* two layers of bf16 weights and activations: a few roundings deep */
    expect_err("tiny llama hidden", nerr(hb, hf), 2e-2);
    spin_tensor *lf = spin_llama_logits(mf, hf), *lb = spin_llama_logits(mb, hb);
    expect_dtype(lb, SPIN_F32);
    expect_err("tiny llama logits", nerr(lb, lf), 2e-2);
    /* inference: a bf16 KV cache; the prefill of the 9 tokens is the training forward's math on
     * the same numbers, and one decode step continues it */
    spin_llama_cache *cache = spin_llama_cache_new(mb, 2, 16);
    assert_non_null(cache);
    expect_dtype(cache->k[0], SPIN_BF16);
    spin_tensor *hc = spin_llama_forward(mb, id, NULL, NULL, cache);
    expect_dtype(hc, SPIN_BF16);
    expect_err("bf16 prefill vs forward", nerr(hc, hb), TOL_SAME);
    int32_t next[2] = {5, 9}, ids10[2 * 10];
    for (int b = 0; b < 2; b++) {
        memcpy(ids10 + b * 10, ids + b * 9, 9 * sizeof *ids);
        ids10[b * 10 + 9] = next[b];
    }
    spin_tensor *hd =
        spin_llama_forward(mb, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 1}, next), NULL, NULL, cache);
    spin_tensor *h10 =
        spin_llama_forward(mb, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 10}, ids10), NULL, NULL, NULL);
    spin_tensor *last = spin_narrow(spin_reshape(h10, 3, (int64_t[]){2, 10, -1}), 1, 9, 1);
    expect_err("bf16 decode step vs forward", nerr(hd, spin_contiguous(last)), TOL_ROUND);
    spin_llama_cache_free(cache);
    spin_scope_end();
    assert_int_equal(spin_llama_set_dtype(mb, SPIN_I32), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "i32"));
    spin_llama_free(mf);
    spin_llama_free(mb);
}

static spin_train_config train_config(const char *dir, spin_dtype precision) {
    spin_train_config c = spin_train_defaults();
    c.optim = spin_optim_defaults(SPIN_OPTIM_RMSPROP);
    c.learning_rate = 1e-3;
    c.warmup_steps = 3;
    c.max_steps = 10;
    c.per_device_train_batch_size = 4;
    c.shuffle = false;
    c.logging_steps = 1;
    c.save_each_epoch = false;
    c.output_dir = dir;
    c.precision = precision;
    return c;
}

/* One metric (loss, grad_norm, ...) of each metrics.jsonl line. */
static int read_metric(const char *dir, const char *name, double *v, int max) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        json_object *o = json_tokener_parse(line);
        assert_non_null(o);
        v[n++] = json_object_get_double(key(o, name));
        json_object_put(o);
    }
    fclose(f);
    return n;
}

/* The stored dtype of tensor name in path. */
static void expect_stored(const char *path, const char *name, const char *dtype) {
    spin_safetensors *st = NULL;
    assert_int_equal(spin_st_open(path, &st), SPIN_OK);
    const spin_st_info *in = spin_st_find(st, name);
    assert_non_null(in);
    assert_string_equal(in->dtype, dtype);
    spin_st_close(st);
}

static void test_training_tracks_f32(void **s) {
    (void)s;
    examples e = load_examples();
    double loss[2][16], gnorm[2][16];
    float *params[2];
    int64_t np[2];
    char *dirs[2];
    for (int k = 0; k < 2; k++) {
        spin_llama *p = load_tiny(), *ref = load_tiny();
        dirs[k] = tmpdir();
        spin_train_config c = train_config(dirs[k], k ? SPIN_BF16 : SPIN_F32);
        spin_train_data d = {
            .policy = p, .reference = ref, .examples = e.ex, .n = e.n, .collate = collate_opts()};
        spin_train_result r;
        assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
        assert_int_equal(r.global_step, 10);
        assert_int_equal(read_metric(dirs[k], "loss", loss[k], 16), 10);
        assert_int_equal(read_metric(dirs[k], "grad_norm", gnorm[k], 16), 10);
        /* the run's storage type stays on the models */
        assert_int_equal(spin_llama_dtype(p), k ? SPIN_BF16 : SPIN_F32);
        assert_int_equal(spin_llama_dtype(ref), k ? SPIN_BF16 : SPIN_F32);
        params[k] = read_params(p, &np[k]);
        spin_llama_free(p);
        spin_llama_free(ref);
    }
    double worst = 0;
    for (int i = 0; i < 10; i++) {
        double r = fabs(loss[1][i] - loss[0][i]) / fabs(loss[0][i]);
        print_message("  step %2d: loss f32 %.6f bf16 %.6f (rel %.1e)\n", i + 1, loss[0][i], loss[1][i], r);
        worst = r > worst ? r : worst;
    }
    expect_err("10 updates: loss (worst step)", worst, TOL_TRAIN_LOSS);
    /* against torch's bf16 run of the same setup (tests/ref/make_bf16_golden.py) */
    json_object *g = json_object_from_file(DATA "trajectory_rmsprop_bf16.json"), *steps = key(g, "steps");
    assert_non_null(g);
    double wl = 0, wg = 0;
    for (int i = 0; i < 10; i++) {
        json_object *st = json_object_array_get_idx(steps, (size_t)i);
        double tl = json_object_get_double(key(st, "loss")),
               tg = json_object_get_double(key(st, "grad_norm"));
        wl = fmax(wl, fabs(loss[1][i] - tl) / fabs(tl));
        wg = fmax(wg, fabs(gnorm[1][i] - tg) / fabs(tg));
    }
    json_object_put(g);
    expect_err("vs torch bf16: loss", wl, TOL_TORCH_LOSS);
    expect_err("vs torch bf16: grad norm", wg, TOL_TORCH_GNORM);
    double wf = 0;
    for (int i = 0; i < 10; i++)
        wf = fmax(wf, fabs(gnorm[1][i] - gnorm[0][i]) / gnorm[0][i]);
    expect_err("10 updates: grad norm vs f32", wf, TOL_TORCH_GNORM);
    assert_int_equal(np[0], np[1]);
    expect_err("10 updates: parameters", vec_err(params[1], params[0], np[0]), TOL_TRAIN_PARAM);
    /* the learning happened in both: the parameters moved well beyond the bf16 gap */
    spin_llama *init = load_tiny();
    int64_t ni;
    float *p0 = read_params(init, &ni);
    double moved = vec_err(params[0], p0, ni);
    print_message("  parameters moved by %.2e (normalised) in f32\n", moved);
    assert_true(moved > 4 * vec_err(params[1], params[0], np[0]));

    /* the bf16 checkpoint: BF16 weights, torch_dtype bfloat16, f32 masters and state */
    char path[4300];
    snprintf(path, sizeof path, "%s/checkpoint-10/model.safetensors", dirs[1]);
    expect_stored(path, "model.layers.0.self_attn.q_proj.weight", "BF16");
    expect_stored(path, "model.norm.weight", "BF16");
    snprintf(path, sizeof path, "%s/checkpoint-10/optimizer.safetensors", dirs[1]);
    expect_stored(path, "master.0", "F32");
    expect_stored(path, "state.0.square_avg", "F32");
    snprintf(path, sizeof path, "%s/checkpoint-10/config.json", dirs[1]);
    json_object *cfg = json_object_from_file(path);
    assert_non_null(cfg);
    assert_string_equal(json_object_get_string(key(cfg, "torch_dtype")), "bfloat16");
    json_object_put(cfg);
    /* a bf16 checkpoint loads back as a (f32) model with the same values */
    spin_llama *back = NULL;
    snprintf(path, sizeof path, "%s/checkpoint-10", dirs[1]);
    assert_int_equal(spin_llama_load(path, dev, &back), SPIN_OK);
    int64_t nb;
    float *pb = read_params(back, &nb);
    assert_int_equal(nb, np[1]);
    assert_memory_equal(pb, params[1], (size_t)nb * sizeof *pb);
    free(pb);
    spin_llama_free(back);

    /* resuming the f32 run's directory in bf16 is refused, naming the setting */
    spin_llama *p = load_tiny(), *ref = load_tiny();
    spin_train_config c = train_config(dirs[0], SPIN_BF16);
    c.resume = true;
    c.max_steps = 12;
    spin_train_data d = {
        .policy = p, .reference = ref, .examples = e.ex, .n = e.n, .collate = collate_opts()};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "precision"));
    spin_llama_free(p);
    spin_llama_free(ref);
    spin_llama_free(init);
    free(p0);
    for (int k = 0; k < 2; k++) {
        rm_rf(dirs[k]);
        free(dirs[k]);
        free(params[k]);
    }
    free_examples(&e);
}

/* bf16: N updates straight equal k updates, stop, resume from the checkpoint (BF16 weights, f32
 * masters and state), N - k updates, bit for bit. */
static void test_resume_bf16_bit_exact(void **s) {
    (void)s;
    examples e = load_examples();
    char *d1 = tmpdir(), *d2 = tmpdir();
    spin_llama *p1 = load_tiny(), *ref = load_tiny();
    spin_train_config c = train_config(d1, SPIN_BF16);
    c.optim = spin_optim_defaults(SPIN_OPTIM_ADAMW);
    c.max_steps = 6;
    c.per_device_train_batch_size = 3;
    c.gradient_accumulation_steps = 2;
    c.shuffle = true;
    spin_train_data d = {
        .policy = p1, .reference = ref, .examples = e.ex, .n = e.n, .collate = collate_opts()};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_int_equal(r.global_step, 6);

    spin_llama *p2 = load_tiny(), *ref2 = load_tiny();
    c.output_dir = d2;
    c.stop_after = 3;
    d.policy = p2;
    d.reference = ref2;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_true(r.interrupted);
    spin_llama_free(p2);
    spin_llama_free(ref2);
    p2 = load_tiny(); /* a fresh process starts from the initial f32 weights */
    ref2 = load_tiny();
    d.policy = p2;
    d.reference = ref2;
    c.stop_after = 0;
    c.resume = true;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_int_equal(r.global_step, 6);
    int64_t na, nb;
    float *a = read_params(p1, &na), *b = read_params(p2, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    double l1[16], l2[16];
    int n1 = read_metric(d1, "loss", l1, 16), n2 = read_metric(d2, "loss", l2, 16);
    assert_int_equal(n1, n2);
    for (int i = 0; i < n1; i++)
        assert_true(l1[i] == l2[i]);
    free(a);
    free(b);
    rm_rf(d1);
    rm_rf(d2);
    free(d1);
    free(d2);
    spin_llama_free(p1);
    spin_llama_free(p2);
    spin_llama_free(ref);
    spin_llama_free(ref2);
    free_examples(&e);
}

/* gradient_checkpointing in bf16: block-input gradients cross the recompute boundary in f32 (they are
 * bf16 without it), so the runs are close rather than bit-identical. Measured 2.1e-3 after 10
 * updates; bounded like bf16 against f32. */
static void test_recompute_bf16(void **s) {
    (void)s;
    examples e = load_examples();
    float *v[2];
    int64_t n[2];
    for (int k = 0; k < 2; k++) {
        spin_llama *p = load_tiny(), *ref = load_tiny();
        char *dir = tmpdir();
        spin_train_config c = train_config(dir, SPIN_BF16);
        c.gradient_checkpointing = k == 1;
        spin_train_data d = {
            .policy = p, .reference = ref, .examples = e.ex, .n = e.n, .collate = collate_opts()};
        spin_train_result r;
        assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
        assert_int_equal(r.global_step, 10);
        v[k] = read_params(p, &n[k]);
        rm_rf(dir);
        free(dir);
        spin_llama_free(p);
        spin_llama_free(ref);
    }
    assert_int_equal(n[0], n[1]);
    /* the recomputed blocks' input gradients sum in the dtype the pass without recompute gives
     * them (core/autograd.c, grad_as_interior), so the updates are the same bits */
    printf("  recompute vs not (bf16)      %.2e (must be 0: bit-identical)\n", vec_err(v[1], v[0], n[0]));
    assert_memory_equal(v[0], v[1], (size_t)n[0] * sizeof(float));
    free(v[0]);
    free(v[1]);
    free_examples(&e);
}

/* Run last: on a device other than the CPU, every bf16 kernel above ran there (natively, or in f32
 * through the device's own casts), none through the CPU fallback. */
static void test_no_cpu_fallback(void **s) {
    (void)s;
    printf("  %s: %llu kernel calls widened to f32 there, %llu on the CPU fallback\n", dev->name,
           (unsigned long long)spin_widened_total(dev), (unsigned long long)spin_fallback_total(dev));
    if (dev != spin_cpu_device())
        assert_int_equal(spin_fallback_total(dev), 0);
}

int main(void) {
    dev = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_to_nearest_even),
        cmocka_unit_test(test_dispatch_widens),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_elementwise_softmax_rope),
        cmocka_unit_test(test_long_sums_in_f32),
        cmocka_unit_test(test_matmul_layouts),
        cmocka_unit_test(test_model_set_dtype),
        cmocka_unit_test(test_training_tracks_f32),
        cmocka_unit_test(test_resume_bf16_bit_exact),
        cmocka_unit_test(test_recompute_bf16),
        cmocka_unit_test(test_no_cpu_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
