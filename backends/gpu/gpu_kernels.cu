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

/* Each kernel's parameter sizes in bytes, 0-terminated, from its signature: gpu_backend.c checks every
 * launch's arguments against them before the launch (a wrapper out of step with the text is an
 * error naming the kernel, not a corrupted launch). */
template <typename... A> struct gk_params {
    static constexpr unsigned char size[] = {(unsigned char)sizeof(A)..., 0};
};
template <typename... A> static constexpr const unsigned char *gk_sizes(void (*)(A...)) {
    return gk_params<A...>::size;
}

extern "C" const unsigned char *const spin_gpu_kernel_arg_sizes[GK_COUNT] = {
#define GK_SIZES_(n) gk_sizes(n),
    SPIN_GPU_KERNELS(GK_SIZES_)
#undef GK_SIZES_
};
