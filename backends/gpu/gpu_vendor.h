/* The one vendor header: the GPU runtime names used by backends/gpu, mapped to CUDA (SPIN_WITH_CUDA)
 * or HIP (SPIN_WITH_ROCM). Host code (C, compiled by the C compiler against the runtime's C API) and
 * the kernel translation unit (compiled by nvcc or hipcc) both include it, so the same sources build
 * for either vendor; nothing else in backends/gpu names a vendor. */
#ifndef SPIN_BACKENDS_GPU_VENDOR_H
#define SPIN_BACKENDS_GPU_VENDOR_H

#if defined(SPIN_WITH_CUDA) == defined(SPIN_WITH_ROCM)
#error "define exactly one of SPIN_WITH_CUDA and SPIN_WITH_ROCM"
#endif

#ifdef SPIN_WITH_CUDA
#if defined(__CUDACC__)
#include <cuda_runtime.h>
#else
#include <cuda_runtime_api.h>
#endif
#define GPU_VENDOR "cuda"
#define GPU_RUNTIME "CUDA"
typedef cudaError_t gpuError_t;
typedef cudaStream_t gpuStream_t;
typedef struct cudaDeviceProp gpuDeviceProp;
#define gpuSuccess cudaSuccess
#define gpuGetErrorName cudaGetErrorName
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuSetDevice cudaSetDevice
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuRuntimeGetVersion cudaRuntimeGetVersion
#define gpuDriverGetVersion cudaDriverGetVersion
#define gpuMemGetInfo cudaMemGetInfo
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define gpuStreamCreateWithFlags cudaStreamCreateWithFlags
#define gpuStreamNonBlocking cudaStreamNonBlocking
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuStreamDestroy cudaStreamDestroy
#define gpuLaunchKernel cudaLaunchKernel
typedef struct cudaFuncAttributes gpuFuncAttributes;
#define gpuFuncGetAttributes cudaFuncGetAttributes
/* how to build the kernels for another architecture */
#define GPU_ARCH_OPTION "-DCMAKE_CUDA_ARCHITECTURES"
/* "sm_90" style architecture name of a device */
#define GPU_ARCH_FORMAT(buf, size, prop) snprintf(buf, size, "sm_%d%d", (prop)->major, (prop)->minor)
#else
#if defined(__HIP__) || defined(__HIPCC__)
#include <hip/hip_runtime.h>
#else
#ifndef __HIP_PLATFORM_AMD__
#define __HIP_PLATFORM_AMD__ 1
#endif
#include <hip/hip_runtime_api.h>
#endif
#define GPU_VENDOR "rocm"
#define GPU_RUNTIME "HIP"
typedef hipError_t gpuError_t;
typedef hipStream_t gpuStream_t;
typedef hipDeviceProp_t gpuDeviceProp;
#define gpuSuccess hipSuccess
#define gpuGetErrorName hipGetErrorName
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuSetDevice hipSetDevice
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuRuntimeGetVersion hipRuntimeGetVersion
#define gpuDriverGetVersion hipDriverGetVersion
#define gpuMemGetInfo hipMemGetInfo
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define gpuStreamCreateWithFlags hipStreamCreateWithFlags
#define gpuStreamNonBlocking hipStreamNonBlocking
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuStreamDestroy hipStreamDestroy
#define gpuLaunchKernel hipLaunchKernel
typedef hipFuncAttributes gpuFuncAttributes;
#define gpuFuncGetAttributes hipFuncGetAttributes
/* how to build the kernels for another architecture */
#define GPU_ARCH_OPTION "-DSPIN_HIP_ARCHITECTURES"
/* "gfx90a:sramecc+:xnack-" style architecture name of a device */
#define GPU_ARCH_FORMAT(buf, size, prop) snprintf(buf, size, "%.63s", (prop)->gcnArchName)
#endif

#endif
