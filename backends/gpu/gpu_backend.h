/* The GPU backend (built with -DBACKEND=cuda or -DBACKEND=rocm): one source for both vendors
 * (backends/gpu/gpu_vendor.h), the shared kernel text compiled as CUDA or HIP, GEMM through cuBLAS or
 * rocBLAS (or the tiled kernel of the shared text); kernels it lacks run on the CPU through the
 * dispatcher. */
#ifndef SPIN_BACKENDS_GPU_BACKEND_H
#define SPIN_BACKENDS_GPU_BACKEND_H

#include "core/backend.h"

/* Named "cuda" or "rocm" after the vendor the build was configured for. */
const spin_backend *spin_gpu_backend(void);

#endif
