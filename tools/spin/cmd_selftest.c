/* spin selftest: the op case table on the chosen device, as a pass/fail table with timings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "tests/harness/opcheck.h"
#include "tools/spin/commands.h"

int cmd_selftest(int argc, char **argv) {
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: spin selftest [--op NAME]\n  runs every op case (forward and gradients) on the\n"
                   "  device chosen by SPIN_DEVICE and prints a pass/fail table; exit 1 on any failure\n");
            return 0;
        }
        if (!strcmp(argv[i], "--op") && i + 1 < argc)
            filter = argv[++i];
        else {
            fprintf(stderr, "spin selftest: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    spin_device *dev = spin_init();
    if (!dev) {
        fprintf(stderr, "spin selftest: %s\n", spin_last_error());
        return 1;
    }
    /* A build for an accelerator is there to test that accelerator: without one the table would only
     * repeat the CPU's, so say so and fail. SPIN_DEVICE=cpu chooses the CPU explicitly. */
    const char *target = spin_build_backend(), *spec = getenv("SPIN_DEVICE");
    if ((!spec || !*spec) && strcmp(target, "cpu") && strcmp(dev->backend->name, target)) {
        fprintf(
            stderr,
            "spin selftest: this build targets %s, but no %s device is available (see the warning above); "
            "nothing was tested (SPIN_DEVICE=cpu runs the table on the CPU)\n",
            target, target);
        return 1;
    }
    int pass = 0, fail = 0, skip = 0;
    printf("%-12s %-46s %-6s %10s %10s %9s\n", "op", "case", "result", "fwd err", "grad err", "ms");
    for (int i = 0; i < opc_case_count(); i++) {
        const opcase *c = opc_case_at(i);
        if (filter && strcmp(filter, c->op))
            continue;
        opc_result r = opc_check(dev, c);
        const char *res = r.skipped ? "SKIP" : r.passed ? "pass" : "FAIL";
        printf("%-12s %-46.46s %-6s %10.2e %10.2e %9.2f\n", c->op, c->params, res, r.fwd_err, r.grad_err,
               r.seconds * 1e3);
        if (!r.passed && !r.skipped)
            printf("    %s\n", r.msg);
        pass += r.passed;
        fail += !r.passed && !r.skipped;
        skip += r.skipped;
    }
    printf("selftest on %s: %d passed, %d failed, %d skipped\n", dev->name, pass, fail, skip);
    return fail ? 1 : 0;
}
