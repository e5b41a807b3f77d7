/* The tiled GEMM kernel of the shared text (backends/kernels/gemm.cl) on the default accelerator
 * device (SPIN_DEVICE, e.g. opencl:0 on PoCL in CI), forced with SPIN_GEMM=tiled, against the CPU
 * backend's MATMUL (BLAS sgemm) on the same data and views: tile-edge sizes, transposed and sliced
 * views, batches, stride-0 batch broadcasting, alpha/beta, beta == 0 over a NaN output, K = 0.
 * Without an accelerator device (CPU builds) every case is skipped.
 *
 * Tolerance: ||tiled - cpu|| / ||cpu|| <= 1e-5. Both accumulate in f32 in different orders (the
 * kernel: one fused multiply-add chain per output, k ascending; BLAS: blocked); for K <= 300 and
 * values in [-1, 1] the difference is a few 1e-7. Cases with exact results (K = 0) compare to 0. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "core/dispatch.h"
#include "ops/ops.h"

#define TOL 1e-5

static spin_device *dev;

/* Deterministic values in [-1, 1]. */
static void fill_host(float *x, int64_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 12345u;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / (double)(1u << 24) * 2.0 - 1.0);
    }
}

static spin_tensor *make(spin_device *d, int ndim, const int64_t *shape, uint32_t seed, float value_or_nan,
                         bool random) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    float *h = malloc((size_t)(n ? n : 1) * sizeof *h);
    assert_non_null(h);
    if (random)
        fill_host(h, n, seed);
    else
        for (int64_t i = 0; i < n; i++)
            h[i] = value_or_nan;
    spin_tensor *t = spin_from_host(d, SPIN_F32, ndim, shape, h);
    free(h);
    assert_non_null(t);
    return t;
}

/* One MATMUL case: how to build a, b and c (views included) on a device. */
typedef struct {
    const char *name;
    spin_tensor *(*build)(spin_device *d, int which); /* which: 0 a, 1 b, 2 c */
    float alpha, beta;
} gcase;

static void run_on(spin_device *d, const gcase *g, float **out, int64_t *n) {
    spin_scope_begin();
    spin_tensor *a = g->build(d, 0), *b = g->build(d, 1), *c = g->build(d, 2);
    spin_tensor *in[2] = {a, b};
    spin_status s = spin_launch(SPIN_K_MATMUL, 2, in, 1, &c, &(spin_kparams){.f = {g->alpha, g->beta}});
    if (s != SPIN_OK)
        fail_msg("%s on %s: %s", g->name, d->name, spin_last_error());
    spin_tensor *cc = spin_contiguous(c);
    assert_non_null(cc);
    *n = spin_tensor_numel(cc);
    *out = malloc((size_t)(*n ? *n : 1) * sizeof **out);
    assert_non_null(*out);
    assert_int_equal(spin_tensor_read_f32(cc, *out, *n), SPIN_OK);
    spin_scope_end();
}

static void run_case(void **state) {
    const gcase *g = *state;
    if (dev == spin_cpu_device())
        skip();
    float *got, *want;
    int64_t n, n2;
    run_on(dev, g, &got, &n);
    run_on(spin_cpu_device(), g, &want, &n2);
    assert_int_equal(n, n2);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            fail_msg("%s: element %lld is %g (the output's old NaN leaked?)", g->name, (long long)i, got[i]);
        num += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        den += (double)want[i] * want[i];
    }
    double err = den > 0 ? sqrt(num / den) : sqrt(num);
    printf("  %-52s n=%-7lld err %.2e\n", g->name, (long long)n, err);
    free(got);
    free(want);
    if (!(err <= TOL))
        fail_msg("%s: normalised error %.3e > %.0e", g->name, err, TOL);
}

/* ---- the cases ---- */

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

static spin_tensor *plain_small(spin_device *d, int w) { /* [1,1] @ [1,1] */
    return make(d, 2, SHAPE(1, 1), 11u + (uint32_t)w, 0, true);
}

static spin_tensor *edges(spin_device *d, int w) { /* [67,45] @ [45,71]: partial tiles on every side */
    return w == 0   ? make(d, 2, SHAPE(67, 45), 1, 0, true)
           : w == 1 ? make(d, 2, SHAPE(45, 71), 2, 0, true)
                    : make(d, 2, SHAPE(67, 71), 3, 0, true);
}

static spin_tensor *nan_out(spin_device *d, int w) { /* [130,300] @ [300,129], c full of NaN, beta 0 */
    return w == 0   ? make(d, 2, SHAPE(130, 300), 4, 0, true)
           : w == 1 ? make(d, 2, SHAPE(300, 129), 5, 0, true)
                    : make(d, 2, SHAPE(130, 129), 0, NAN, false);
}

static spin_tensor *transposed(spin_device *d, int w) { /* a [40,70]^T @ b [33,40]^T */
    if (w == 2)
        return make(d, 2, SHAPE(70, 33), 6, 0, true);
    spin_tensor *x = w == 0 ? make(d, 2, SHAPE(40, 70), 7, 0, true) : make(d, 2, SHAPE(33, 40), 8, 0, true);
    return spin_transpose(x, 0, 1);
}

static spin_tensor *sliced(spin_device *d, int w) { /* column slices of wider tensors, c a slice too */
    spin_tensor *x = w == 0   ? make(d, 2, SHAPE(19, 50), 9, 0, true)
                     : w == 1 ? make(d, 2, SHAPE(23, 90), 10, 0, true)
                              : make(d, 2, SHAPE(19, 80), 11, 0, true);
    return w == 0 ? spin_narrow(x, 1, 7, 23) : w == 1 ? spin_narrow(x, 1, 3, 65) : spin_narrow(x, 1, 10, 65);
}

static spin_tensor *batched(spin_device *d, int w) { /* [3,33,20] @ [3,20,17], alpha 0.5, beta 2 */
    return w == 0   ? make(d, 3, SHAPE(3, 33, 20), 12, 0, true)
           : w == 1 ? make(d, 3, SHAPE(3, 20, 17), 13, 0, true)
                    : make(d, 3, SHAPE(3, 33, 17), 14, 0, true);
}

static spin_tensor *broadcast(spin_device *d, int w) { /* [2,3,9,40] @ [40,11] expanded (stride-0 batches) */
    if (w == 0)
        return make(d, 4, SHAPE(2, 3, 9, 40), 15, 0, true);
    if (w == 2)
        return make(d, 4, SHAPE(2, 3, 9, 11), 0, NAN, false);
    return spin_expand(make(d, 2, SHAPE(40, 11), 16, 0, true), 4, SHAPE(2, 3, 40, 11));
}

static spin_tensor *k_zero(spin_device *d, int w) { /* K = 0: c = beta * c */
    return w == 0   ? make(d, 2, SHAPE(5, 0), 0, 0, true)
           : w == 1 ? make(d, 2, SHAPE(0, 6), 0, 0, true)
                    : make(d, 2, SHAPE(5, 6), 17, 0, true);
}

static const gcase cases[] = {
    {"[1,1]@[1,1]", plain_small, 1.0f, 0.0f},
    {"[67,45]@[45,71] partial tiles, beta 1", edges, 1.0f, 1.0f},
    {"[130,300]@[300,129] beta 0 over NaN", nan_out, 1.0f, 0.0f},
    {"[40,70]^T@[33,40]^T", transposed, 1.0f, 0.0f},
    {"sliced [19,23]@sliced [23,65] into sliced c", sliced, 1.0f, 0.0f},
    {"batched [3,33,20]@[3,20,17] alpha 0.5 beta 2", batched, 0.5f, 2.0f},
    {"[2,3,9,40]@expanded [40,11] beta 0 over NaN", broadcast, 1.0f, 0.0f},
    {"K=0 [5,0]@[0,6] beta 0.5", k_zero, 1.0f, 0.5f},
};

int main(void) {
    /* before the device opens: the backends read it then */
    if (setenv("SPIN_GEMM", "tiled", 1) != 0)
        return 1;
    dev = spin_init();
    if (!dev) {
        fprintf(stderr, "%s\n", spin_last_error());
        return 1;
    }
    if (dev == spin_cpu_device()) {
        printf("SKIPPED: no accelerator device (SPIN_DEVICE unset and none configured); the tiled GEMM "
               "runs on OpenCL, CUDA and ROCm devices\n");
    } else {
        char desc[1024] = "";
        if (dev->backend->describe)
            dev->backend->describe(dev, desc, sizeof desc);
        printf("tiled GEMM on %s: %s\n", dev->name, desc);
        if (!strstr(desc, "tiled kernel")) {
            fprintf(stderr, "%s does not report the tiled GEMM although SPIN_GEMM=tiled\n", dev->name);
            return 1;
        }
    }
    enum { N = sizeof cases / sizeof cases[0] };
    struct CMUnitTest tests[N];
    for (int i = 0; i < N; i++)
        tests[i] = (struct CMUnitTest){
            .name = cases[i].name, .test_func = run_case, .initial_state = (void *)&cases[i]};
    return _cmocka_run_group_tests("gemm_tiled", tests, N, NULL, NULL);
}
