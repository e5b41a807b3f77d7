/* MATMUL's vendor GEMM on CUDA: cublasGemmEx / cublasGemmStridedBatchedEx on the device's stream.
 * f32 GEMMs compute in f32 without TF32 by default (parity with the CPU reference); TF32 tensor
 * cores are allowed with -DSPIN_CUDA_ALLOW_TF32=ON or SPIN_ALLOW_TF32=1 at run time (0 forbids).
 * bf16 and f16 operands accumulate in f32 (CUBLAS_COMPUTE_32F) into an f32 or same-type c. */
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/gpu/gpu_blas.h"
#include "core/log.h"

#ifndef SPIN_CUDA_ALLOW_TF32
#define SPIN_CUDA_ALLOW_TF32 0
#endif

struct gpu_blas {
    cublasHandle_t h;
    bool tf32;
    int version;
};

#define CUBLAS_FAIL_(st, what)                                                       \
    spin_fail(SPIN_ERR_DEVICE, "%s:%d: %s failed: %s: %s", __FILE__, __LINE__, what, \
              cublasGetStatusName(st), cublasGetStatusString(st))
#define CUBLAS_CHECK(call)                   \
    do {                                     \
        cublasStatus_t st_ = (call);         \
        if (st_ != CUBLAS_STATUS_SUCCESS)    \
            return CUBLAS_FAIL_(st_, #call); \
    } while (0)

static spin_status tf32_allowed(bool *on) {
    const char *s = getenv("SPIN_ALLOW_TF32");
    *on = SPIN_CUDA_ALLOW_TF32 != 0;
    if (!s || !*s)
        return SPIN_OK;
    if (strcmp(s, "0") && strcmp(s, "1"))
        return spin_fail(SPIN_ERR_INVALID, "SPIN_ALLOW_TF32='%s': expected 0 or 1", s);
    *on = s[0] == '1';
    return SPIN_OK;
}

spin_status gpu_blas_open(gpu_blas **out, gpuStream_t stream, char *why, size_t why_size) {
    (void)why;
    (void)why_size;
    *out = NULL;
    gpu_blas *b = calloc(1, sizeof *b);
    if (!b)
        return spin_fail(SPIN_ERR_OOM, "out of host memory");
    spin_status s = tf32_allowed(&b->tf32);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    if (s == SPIN_OK && (st = cublasCreate(&b->h)) != CUBLAS_STATUS_SUCCESS) {
        b->h = NULL;
        s = CUBLAS_FAIL_(st, "cublasCreate");
    }
    if (s == SPIN_OK && (st = cublasSetStream(b->h, stream)) != CUBLAS_STATUS_SUCCESS)
        s = CUBLAS_FAIL_(st, "cublasSetStream");
    if (s == SPIN_OK && (st = cublasGetVersion(b->h, &b->version)) != CUBLAS_STATUS_SUCCESS)
        s = CUBLAS_FAIL_(st, "cublasGetVersion");
    if (s != SPIN_OK) {
        gpu_blas_close(b);
        return s;
    }
    *out = b;
    return SPIN_OK;
}

void gpu_blas_close(gpu_blas *b) {
    if (!b)
        return;
    cublasStatus_t st = b->h ? cublasDestroy(b->h) : CUBLAS_STATUS_SUCCESS;
    if (st != CUBLAS_STATUS_SUCCESS)
        spin_log_msg(SPIN_LOG_ERROR, "%s:%d: cublasDestroy failed: %s: %s", __FILE__, __LINE__,
                     cublasGetStatusName(st), cublasGetStatusString(st));
    free(b);
}

static bool cuda_type(spin_dtype t, cudaDataType *ct) {
    switch (t) {
    case SPIN_F32: *ct = CUDA_R_32F; return true;
    case SPIN_BF16: *ct = CUDA_R_16BF; return true;
    case SPIN_F16: *ct = CUDA_R_16F; return true;
    default: return false;
    }
}

bool gpu_blas_supports(const gpu_blas *b, spin_dtype a, spin_dtype bt, spin_dtype c) {
    (void)b;
    cudaDataType t;
    if (a != bt || !cuda_type(a, &t))
        return false;
    return c == SPIN_F32 || c == a;
}

bool gpu_blas_needs_zeroed_c(const gpu_blas *b) {
    (void)b;
    return false; /* cuBLAS documents that c is not read when beta == 0 */
}

spin_status gpu_blas_gemm(gpu_blas *b, int64_t m, int64_t n, int64_t k, float alpha,
                          const gpu_blas_operand *a, const gpu_blas_operand *bb, float beta, void *c,
                          spin_dtype c_dtype, int64_t ldc, int64_t c_stride, int64_t batch) {
    cudaDataType ta, tb, tc;
    if (!cuda_type(a->dtype, &ta) || !cuda_type(bb->dtype, &tb) || !cuda_type(c_dtype, &tc))
        return spin_fail(SPIN_ERR_UNSUPPORTED, "cuBLAS GEMM: unsupported operand types");
    cublasComputeType_t compute =
        a->dtype == SPIN_F32 && b->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    /* Row-major c = a @ b is column-major c^T = b^T @ a^T: swap the operands, keep the strides. */
    cublasOperation_t opb = bb->trans ? CUBLAS_OP_T : CUBLAS_OP_N, opa = a->trans ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (batch == 1)
        CUBLAS_CHECK(cublasGemmEx(b->h, opb, opa, (int)n, (int)m, (int)k, &alpha, bb->ptr, tb, (int)bb->ld,
                                  a->ptr, ta, (int)a->ld, &beta, c, tc, (int)ldc, compute,
                                  CUBLAS_GEMM_DEFAULT));
    else
        CUBLAS_CHECK(cublasGemmStridedBatchedEx(b->h, opb, opa, (int)n, (int)m, (int)k, &alpha, bb->ptr, tb,
                                                (int)bb->ld, bb->stride, a->ptr, ta, (int)a->ld, a->stride,
                                                &beta, c, tc, (int)ldc, c_stride, (int)batch, compute,
                                                CUBLAS_GEMM_DEFAULT));
    return SPIN_OK;
}

void gpu_blas_describe(const gpu_blas *b, char *buf, size_t size) {
    snprintf(buf, size, "cuBLAS %d (cublasGemmEx; f32 GEMMs %s TF32, bf16/f16 with f32 accumulation)",
             b->version, b->tf32 ? "with" : "without");
}
