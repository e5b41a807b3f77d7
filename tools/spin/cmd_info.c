/* spin info: what this build is and what it found on this machine. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "backends/backends.h"
#include "core/kernels.h"
#include "tools/spin/commands.h"

int cmd_info(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: spin info\n  prints build options, compiled backends and their devices, the BLAS\n"
               "  library and the kernel it selected, and the thread count\n");
        return 0;
    }
    spin_device *def = spin_init();
    printf("spin %s (commit %s)\n", SPIN_VERSION, SPIN_GIT_COMMIT);
    printf("build:\n  type %s, compiler %s, sanitizers %s\n  accelerator backend (-DBACKEND): %s\n",
           SPIN_BUILD_TYPE, SPIN_C_COMPILER, SPIN_SANITIZE_ON ? "on" : "off", spin_build_backend());
    printf("  kernels in the kernel list: %d\n", SPIN_KERNEL_COUNT);
    printf("backends:\n");
    for (int b = 0; b < spin_backend_count(); b++) {
        const spin_backend *be = spin_backend_at(b);
        int n = be->device_count();
        int have = 0;
        for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
            have += be->kernels[k] != NULL;
        printf("  %s: %d device(s), %d/%d kernels\n", be->name, n, have, SPIN_KERNEL_COUNT);
        for (int i = 0; i < n; i++) {
            spin_device *d = spin_device_get(be->name, i);
            if (!d) {
                printf("    %d: unavailable: %s\n", i, spin_last_error());
                continue;
            }
            char desc[1024] = "";
            if (be->describe)
                be->describe(d, desc, sizeof desc);
            printf("    %s%s: %s\n", d->name, d == def ? " (default)" : "", desc);
        }
    }
    printf("threads: %d (OpenMP; set OMP_NUM_THREADS to change)\n", omp_get_max_threads());
    if (!def) {
        fprintf(stderr, "spin: SPIN_DEVICE: %s\n", spin_last_error());
        return 1;
    }
    return 0;
}
