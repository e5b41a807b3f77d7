/* Every op case on the CPU backend: forward against the double reference, gradients against
 * central differences. One cmocka test per case. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "backends/backends.h"
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
    /* the reference backend, whatever the build's default device is */
    dev = spin_init() ? spin_cpu_device() : NULL;
    if (!dev) {
        fprintf(stderr, "%s\n", spin_last_error());
        return 1;
    }
    int n = opc_case_count();
    struct CMUnitTest *tests = calloc((size_t)n, sizeof *tests);
    char(*names)[160] = calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        const opcase *c = opc_case_at(i);
        snprintf(names[i], sizeof names[i], "%s %s", c->op, c->params);
        tests[i] = (struct CMUnitTest){.name = names[i], .test_func = run_case, .initial_state = (void *)c};
    }
    int failed = _cmocka_run_group_tests("ops_cpu", tests, (size_t)n, NULL, NULL);
    free(tests);
    free(names);
    return failed;
}
