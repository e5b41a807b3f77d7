/* The shared kernel text compiled as CUDA (nvcc) or HIP (hipcc -x hip): the macro header, then every
 * .cl file of backends/kernels (the generated spin_kernel_sources.h includes them; no copies), and the
 * table of their host-side handles that gpu_backend.c passes to the runtime's launch call. */
#include "backends/gpu/gpu_vendor.h"
#include "backends/kernels/spin_kernel.h"
#include "spin_kernel_sources.h"

#include "backends/gpu/gpu_kernel_list.h"

extern "C" const void *const spin_gpu_kernel_fns[GK_COUNT] = {
#define GK_FN_(n) (const void *)n,
    SPIN_GPU_KERNELS(GK_FN_)
#undef GK_FN_
};
