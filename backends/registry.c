#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "backends/cpu/cpu_backend.h"
#include "core/log.h"
#ifdef SPIN_WITH_OPENCL
#include <stdio.h>

#include "backends/opencl/opencl_backend.h"
#endif
#if defined(SPIN_WITH_CUDA) || defined(SPIN_WITH_ROCM)
#include "backends/gpu/gpu_backend.h"
#endif

#ifndef SPIN_BACKEND_NAME
#define SPIN_BACKEND_NAME "cpu"
#endif

const char *spin_build_backend(void) {
    return SPIN_BACKEND_NAME;
}

spin_device *spin_init(void) {
    static bool done;
    if (!done) {
        const spin_backend *cpu = spin_cpu_backend();
        for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
            SPIN_ASSERT(cpu->kernels[k], "CPU backend lacks kernel %s", spin_kernel_name((spin_kernel)k));
        spin_backend_register(cpu);
#ifdef SPIN_WITH_OPENCL
        spin_backend_register(spin_opencl_backend());
#endif
#if defined(SPIN_WITH_CUDA) || defined(SPIN_WITH_ROCM)
        spin_backend_register(spin_gpu_backend());
#endif
        done = true;
    }
    const char *spec = getenv("SPIN_DEVICE");
    if (spec && *spec) {
        spin_device *dev = spin_device_from_spec(spec);
#ifdef SPIN_WITH_OPENCL
        if (!dev && !strncmp(spec, "opencl", 6)) {
            char why[512], list[1024];
            snprintf(why, sizeof why, "%s", spin_last_error());
            spin_opencl_device_list(list, sizeof list);
            spin_fail(SPIN_ERR_INVALID, "SPIN_DEVICE=%s: %s; OpenCL devices:\n%s", spec, why, list);
        }
#endif
        return dev;
    }
    /* The configured accelerator's first device when it has one; otherwise the CPU. */
    const spin_backend *acc = spin_backend_find(SPIN_BACKEND_NAME);
    if (acc && strcmp(SPIN_BACKEND_NAME, "cpu") && acc->device_count() > 0) {
        spin_device *dev = spin_device_get(SPIN_BACKEND_NAME, 0);
        if (dev)
            return dev;
    }
    return spin_cpu_device();
}
