/* The CUDA/ROCm backend's launch wrappers against the compiled kernels' signatures, on a machine
 * without a GPU. Every kernel of the backend's table is called on a device handle that was never
 * opened: the wrapper builds its launch, the backend checks the arguments against the parameter
 * sizes taken from the compiled kernel (backends/gpu/gpu_kernels.cu) before it touches the runtime,
 * and only then fails in the runtime (no device). A wrapper out of step with the kernel text (an
 * argument missing, extra or of the wrong size) fails with SPIN_ERR_INVALID naming the kernel.
 * Wrappers with two launches (the norm backwards, GRAD_SUMSQ) are checked up to their first launch.
 *
 * Skipped on builds without the GPU backend, and on machines with a GPU (the fake handle would then
 * launch on it; `spin selftest` covers real launches there). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"

static void every_kernel_reaches_the_runtime(void **state) {
    (void)state;
    const char *name = spin_build_backend();
    const spin_backend *b = spin_backend_find(name);
    if (!b || (strcmp(name, "cuda") && strcmp(name, "rocm"))) {
        printf("SKIPPED: this build's accelerator is '%s', not cuda or rocm\n", name);
        skip();
    }
    if (b->device_count() > 0) {
        printf("SKIPPED: a %s device is present; spin selftest runs the kernels on it\n", name);
        skip();
    }
    /* zeroed context: device ordinal 0, the default stream, no BLAS (MATMUL takes the tiled kernel) */
    spin_device dev;
    memset(&dev, 0, sizeof dev);
    dev.backend = b;
    snprintf(dev.name, sizeof dev.name, "%s:0 (never opened)", name);
    dev.ctx = calloc(1, 1 << 16);
    assert_non_null(dev.ctx);
    spin_kcall c;
    memset(&c, 0, sizeof c);
    c.n_in = SPIN_KMAX_IN;
    c.n_out = SPIN_KMAX_OUT;
    for (int i = 0; i < SPIN_KMAX_IN + SPIN_KMAX_OUT; i++) {
        spin_view *v = i < SPIN_KMAX_IN ? &c.in[i] : &c.out[i - SPIN_KMAX_IN];
        v->dtype = SPIN_F32;
        v->ndim = 4;
        for (int d = 0; d < 4; d++) {
            v->shape[d] = d < 2 ? 1 : 2;
            v->stride[d] = d == 3 ? 1 : d == 2 ? 2 : 4;
        }
    }
    c.p.f[0] = 1.0f; /* MATMUL alpha; beta 0 */
    c.p.i[0] = 1;    /* TOPK's k (k = 0 launches nothing), EMBEDDING_BACK's V (the views' first dim) */
    int checked = 0, bad = 0;
    for (int k = 0; k < SPIN_KERNEL_COUNT; k++) {
        if (!b->kernels[k])
            continue;
        spin_clear_error();
        /* the attention kernels check their qpos input is 2-D [B, Tq] (backends/cpu/attn_shape.h) */
        int qpos = k == SPIN_K_ATTENTION ? 3 : k == SPIN_K_ATTENTION_BACK ? 6 : -1;
        spin_view keep = qpos >= 0 ? c.in[qpos] : c.in[0];
        if (qpos >= 0)
            c.in[qpos] =
                (spin_view){.buf = keep.buf, .dtype = SPIN_I32, .ndim = 2, .shape = {1, 2}, .stride = {2, 1}};
        spin_status s = b->kernels[k](&dev, &c);
        if (qpos >= 0)
            c.in[qpos] = keep;
        checked++;
        bool reached = s == SPIN_ERR_DEVICE || s == SPIN_ERR_OOM;
        printf("  %-18s %-13s %s\n", spin_kernel_name((spin_kernel)k), spin_status_name(s),
               spin_last_error());
        bad += !reached;
    }
    free(dev.ctx);
    printf("%d kernels of the %s table checked, %d with launches out of step\n", checked, name, bad);
    assert_true(checked > 0);
    assert_int_equal(bad, 0);
}

int main(void) {
    if (!spin_init()) {
        fprintf(stderr, "%s\n", spin_last_error());
        return 1;
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(every_kernel_reaches_the_runtime)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
