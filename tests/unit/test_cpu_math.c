/* The CPU backend's vectorisable exp: accuracy against libm's double exp over the f32 range, and
 * its edge cases (softmax masks rely on exp(-inf) == 0 exactly). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backends/cpu/cpu_math.h"

static void test_expf_accuracy(void **state) {
    (void)state;
    double worst = 0;
    float at = 0;
    /* a dense sweep of the range where exp is a normal float */
    for (float x = -87.3f; x < 88.7f; x += 1.37e-3f) {
        double want = exp((double)x), rel = fabs(cpu_expf(x) - want) / want;
        if (rel > worst)
            worst = rel, at = x;
    }
    print_message("    cpu_expf: worst relative error %.3g at %g\n", worst, at);
    assert_true(worst < 3e-7); /* about 2.5 ulp */
}

static void test_expf_edges(void **state) {
    (void)state;
    assert_true(cpu_expf(0.0f) == 1.0f);
    assert_true(cpu_expf(-INFINITY) == 0.0f);
    assert_true(cpu_expf(-100.0f) == 0.0f);
    assert_true(isinf(cpu_expf(INFINITY)) && cpu_expf(INFINITY) > 0);
    assert_true(isinf(cpu_expf(89.0f)));
    assert_true(isnan(cpu_expf(NAN)));
    assert_true(fabs(cpu_expf(88.5f) / exp(88.5) - 1) < 3e-7);
}

static void test_sum_exp_matches_double(void **state) {
    (void)state;
    float x[37];
    double want = 0;
    for (int i = 0; i < 37; i++) {
        x[i] = (float)(i % 11) * 0.7f - 3.0f;
        want += exp((double)x[i] - 1.5);
    }
    assert_true(fabs(cpu_sum_exp(x, 37, 1.5f) / want - 1) < 1e-6);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_accuracy),
        cmocka_unit_test(test_expf_edges),
        cmocka_unit_test(test_sum_exp_matches_double),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
