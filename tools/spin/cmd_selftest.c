/* spin selftest: the op case table on the chosen device, then one tiny SPIN training step there
 * against the same step on the CPU reference, as a pass/fail table with timings. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "tests/harness/opcheck.h"
#include "tests/parity/parity_step.h"
#include "tools/spin/commands.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One SPIN step (sigmoid loss against a frozen opponent, backward, RMSProp) on dev and on the CPU,
 * compared within tests/parity/parity_step.h's tolerances; one table row. */
static bool train_step_row(spin_device *dev) {
    double t0 = now_s();
    spin_collated batch;
    spin_parity_step on_dev = {0}, on_cpu = {0};
    spin_llama *names = NULL;
    spin_status s = spin_parity_synthetic_batch(&batch);
    if (s == SPIN_OK)
        s = spin_parity_train_step(dev, &batch, &on_dev);
    double t1 = now_s();
    if (s == SPIN_OK)
        s = spin_parity_train_step(spin_cpu_device(), &batch, &on_cpu);
    if (s == SPIN_OK)
        s = spin_parity_model(spin_cpu_device(), 1, &names);
    spin_parity_errors e = {0};
    bool ok = s == SPIN_OK;
    if (ok) {
        spin_parity_compare(&on_dev, &on_cpu, names->names, &e);
        ok = spin_parity_ok(&e);
    }
    printf("%-12s %-46.46s %-6s %10.2e %10.2e %9.2f\n", "train", "SPIN step, tiny GQA llama, vs the cpu",
           ok ? "pass" : "FAIL", e.loss, e.grad, (t1 - t0) * 1e3);
    if (s != SPIN_OK)
        printf("    %s\n", spin_last_error());
    else
        printf("    loss %.7f (rel %.1e), grad norm rel %.1e, rewards rel %.1e; worst gradient %.1e, update "
               "%.1e, "
               "parameter %.1e over %d parameters%s%s\n",
               on_dev.loss, e.loss, e.grad_norm, e.rewards, e.grad, e.update, e.param, on_cpu.n,
               e.first_bad ? "; first over tolerance: " : "", e.first_bad ? e.first_bad : "");
    spin_llama_free(names);
    spin_parity_step_free(&on_dev);
    spin_parity_step_free(&on_cpu);
    if (batch.ids)
        spin_collated_free(&batch);
    return ok;
}

int cmd_selftest(int argc, char **argv) {
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: spin selftest [--op NAME]\n  runs every op case (forward and gradients) on the\n"
                   "  device chosen by SPIN_DEVICE, then one SPIN training step of a tiny seeded Llama\n"
                   "  there against the same step on the CPU (loss, every gradient, the update), and\n"
                   "  prints a pass/fail table; --op NAME runs that op's cases only (\"train\": the step);\n"
                   "  exit 1 on any failure\n");
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
    if (!filter || !strcmp(filter, "train")) {
        bool ok = train_step_row(dev);
        pass += ok;
        fail += !ok;
    }
    printf("selftest on %s: %d passed, %d failed, %d skipped\n", dev->name, pass, fail, skip);
    return fail ? 1 : 0;
}
