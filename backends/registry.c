#include <stdlib.h>

#include "backends/backends.h"
#include "backends/cpu/cpu_backend.h"
#include "core/log.h"

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
        done = true;
    }
    const char *spec = getenv("SPIN_DEVICE");
    if (spec && *spec)
        return spin_device_from_spec(spec);
    return spin_cpu_device();
}
