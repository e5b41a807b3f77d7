/* The vendor GEMM behind the GPU backend's MATMUL: cuBLAS (backends/cuda/cuda_blas.c) or rocBLAS
 * loaded at run time (backends/rocm/rocm_blas.c). Row-major semantics as core/kernels.h MATMUL:
 * c[i] = alpha * op(a[i]) @ op(b[i]) + beta * c[i] for i < batch, operands `stride` elements apart
 * (0 broadcasts); beta == 0 never reads c. Without a vendor library the backend uses the tiled
 * GEMM of backends/kernels/gemm.cl. */
#ifndef SPIN_BACKENDS_GPU_BLAS_H
#define SPIN_BACKENDS_GPU_BLAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/gpu/gpu_vendor.h"
#include "core/dtype.h"
#include "core/status.h"

typedef struct gpu_blas gpu_blas;

typedef struct {
    const void *ptr; /* device address of element 0 (offset applied) */
    spin_dtype dtype;
    bool trans; /* the row-major matrix is stored transposed */
    int64_t ld, stride;
} gpu_blas_operand;

/* A handle on `stream`. *out is NULL (and SPIN_OK) when the library is absent, with `why` saying
 * which library could not be loaded; failures of a present library are errors. */
spin_status gpu_blas_open(gpu_blas **out, gpuStream_t stream, char *why, size_t why_size);
void gpu_blas_close(gpu_blas *b);
/* Whether gemm takes these operand types (a, b, c). */
bool gpu_blas_supports(const gpu_blas *b, spin_dtype a, spin_dtype bt, spin_dtype c);
spin_status gpu_blas_gemm(gpu_blas *b, int64_t m, int64_t n, int64_t k, float alpha,
                          const gpu_blas_operand *a, const gpu_blas_operand *bb, float beta, void *c,
                          spin_dtype c_dtype, int64_t ldc, int64_t c_stride, int64_t batch);
/* Whether c must hold finite values even when beta == 0 (then the backend zeroes c first). */
bool gpu_blas_needs_zeroed_c(const gpu_blas *b);
/* e.g. "cuBLAS 130000, f32 GEMMs without TF32" */
void gpu_blas_describe(const gpu_blas *b, char *buf, size_t size);

#endif
