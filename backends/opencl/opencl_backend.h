/* The OpenCL backend (built with -DBACKEND=opencl): CLBlast for matmuls, the embedded kernel text of
 * backends/kernels for the rest; kernels it lacks run on the CPU through the dispatcher. */
#ifndef SPIN_BACKENDS_OPENCL_BACKEND_H
#define SPIN_BACKENDS_OPENCL_BACKEND_H

#include <stddef.h>

#include "core/backend.h"

const spin_backend *spin_opencl_backend(void);
/* The OpenCL devices of every platform, one per line as "opencl:N  platform / device". */
void spin_opencl_device_list(char *buf, size_t size);

#endif
