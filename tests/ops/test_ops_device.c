/* Every op case on the default device (spin_init: SPIN_DEVICE, e.g. opencl:0; the CPU when unset):
 * forward against the double reference, gradients against central differences. Kernels the device
 * lacks run through the CPU fallback; the count per kernel is printed at the end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "core/dispatch.h"
#include "tests/harness/opcheck.h"

static spin_device *dev;

static void run_case(void **state) {
    const opcase *c = *state;
    opc_result r = opc_check(dev, c);
    if (r.skipped)
        skip();
    if (!r.passed)
        fail_msg("%s", r.msg);
}

int main(void) {
    dev = spin_init();
    if (!dev) {
        fprintf(stderr, "%s\n", spin_last_error());
        return 1;
    }
    printf("op cases on %s\n", dev->name);
    int n = opc_case_count();
    struct CMUnitTest *tests = calloc((size_t)n, sizeof *tests);
    char(*names)[160] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        const opcase *c = opc_case_at(i);
        snprintf(names[i], sizeof names[i], "%s %s", c->op, c->params);
        tests[i] = (struct CMUnitTest){.name = names[i], .test_func = run_case, .initial_state = (void *)c};
    }
    int failed = _cmocka_run_group_tests("ops_device", tests, (size_t)n, NULL, NULL);
    printf("CPU fallbacks on %s: %llu", dev->name, (unsigned long long)spin_fallback_total(dev));
    const char *sep = " (";
    for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
        if (dev->fallbacks[k]) {
            printf("%s%s %llu", sep, spin_kernel_name((spin_kernel)k), (unsigned long long)dev->fallbacks[k]);
            sep = ", ";
        }
    printf("%s\n", sep[0] == ',' ? ")" : "");
    free(tests);
    free(names);
    return failed;
}
