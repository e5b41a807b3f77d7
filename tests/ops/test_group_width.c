/* The local-memory group reduction (backends/kernels/spin_kernel.h, the OpenCL path) at group widths
 * 32 and 64: every op case whose kernels reduce over a work-group (softmax, the norms, argmax,
 * top-k, the cross-entropy rows) runs on the OpenCL device with SPIN_ROW_GROUP=32 and then 64,
 * forward and gradients against the harness's double-precision references (tolerances: each
 * case's own, tests/harness). Each width runs in a child process, because the backend reads the
 * width when it opens the device. The CUDA/HIP shuffle path needs a GPU and is not run here.
 *
 * Only the OpenCL build has this path: other builds, and OpenCL builds without a device, SKIP
 * (exit 77) saying why. */
#define _POSIX_C_SOURCE 200809L /* setenv, fork */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "core/device.h"
#include "core/dispatch.h"
#include "tests/harness/opcheck.h"

#define SKIP_CODE 77

static spin_device *dev;

static const char *const reducing_ops[] = {"softmax",        "log_softmax",    "rmsnorm",
                                           "layernorm",      "argmax",         "topk",
                                           "logprob_gather", "linear_logprob", "cross_entropy"};

static bool reduces(const opcase *c) {
    for (size_t i = 0; i < sizeof reducing_ops / sizeof reducing_ops[0]; i++)
        if (!strcmp(c->op, reducing_ops[i]))
            return true;
    return false;
}

static void run_case(void **state) {
    const opcase *c = *state;
    opc_result r = opc_check(dev, c);
    if (!r.passed)
        fail_msg("%s", r.msg);
}

/* The child for one width: exit status = failed cases, or SKIP_CODE without an OpenCL device. */
static int run_width(const char *width) {
    if (setenv("SPIN_ROW_GROUP", width, 1) != 0)
        return 1;
    dev = spin_init();
    if (!dev) {
        fprintf(stderr, "%s\n", spin_last_error());
        return 1;
    }
    if (strcmp(dev->backend->name, "opencl")) {
        printf("SKIPPED: no OpenCL device (the default device is %s)\n", dev->name);
        return SKIP_CODE;
    }
    char desc[1024] = "", want[64];
    dev->backend->describe(dev, desc, sizeof desc);
    snprintf(want, sizeof want, "row groups of %s", width);
    printf("width %s on %s: %s\n", width, dev->name, desc);
    if (!strstr(desc, want)) {
        fprintf(stderr, "%s does not report \"%s\"\n", dev->name, want);
        return 1;
    }
    int n = 0;
    struct CMUnitTest *tests = calloc((size_t)opc_case_count(), sizeof *tests);
    char(*names)[200] = calloc((size_t)opc_case_count(), sizeof *names);
    for (int i = 0; i < opc_case_count(); i++) {
        const opcase *c = opc_case_at(i);
        if (!reduces(c) || c->error)
            continue;
        snprintf(names[n], sizeof names[n], "width %s: %s %s", width, c->op, c->params);
        tests[n] = (struct CMUnitTest){.name = names[n], .test_func = run_case, .initial_state = (void *)c};
        n++;
    }
    int failed = n > 0 ? _cmocka_run_group_tests(width, tests, (size_t)n, NULL, NULL) : 1;
    printf("CPU fallbacks at width %s: %llu\n", width, (unsigned long long)spin_fallback_total(dev));
    if (spin_fallback_total(dev) != 0)
        failed++;
    free(tests);
    free(names);
    return failed;
}

int main(void) {
    if (strcmp(spin_build_backend(), "opencl")) {
        printf("SKIPPED: the local-memory reduction path at widths 32 and 64 runs on OpenCL devices; this "
               "build's accelerator is '%s' (configure with -DBACKEND=opencl)\n",
               spin_build_backend());
        return SKIP_CODE;
    }
    static const char *const widths[] = {"32", "64"};
    int bad = 0, skipped = 0;
    for (int w = 0; w < 2; w++) {
        fflush(stdout);
        pid_t pid = fork(); /* before the parent touches OpenCL: each child opens the device itself */
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0)
            _exit(run_width(widths[w]));
        int st = 0;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
            fprintf(stderr, "width %s: the child did not exit normally\n", widths[w]);
            bad++;
            continue;
        }
        int code = WEXITSTATUS(st);
        skipped += code == SKIP_CODE;
        bad += code != 0 && code != SKIP_CODE;
        printf("width %s: %s\n", widths[w], code == 0 ? "passed" : code == SKIP_CODE ? "skipped" : "FAILED");
    }
    return bad ? 1 : skipped ? SKIP_CODE : 0;
}
