/* CPU kernel declarations and the strided-iteration helpers they share. */
#ifndef SPIN_BACKENDS_CPU_KERNELS_H
#define SPIN_BACKENDS_CPU_KERNELS_H

#include "core/backend.h"

#define SPIN_CPU_DECLARE_(name) spin_status cpu_##name(struct spin_device *dev, const spin_kcall *c);
SPIN_KERNELS(SPIN_CPU_DECLARE_)
#undef SPIN_CPU_DECLARE_

/* Element pointer arithmetic on a view (CPU buffers are host addresses). */
static inline float *cpu_f32(const spin_view *v) {
    return (float *)v->buf + v->offset;
}
static inline int32_t *cpu_i32(const spin_view *v) {
    return (int32_t *)v->buf + v->offset;
}

static inline uint16_t *cpu_u16(const spin_view *v) {
    return (uint16_t *)v->buf + v->offset;
}

/* bf16 <-> f32 as core/dtype.c does it (round to nearest even, NaN kept quiet), inline so the
 * conversion loops vectorise. */
static inline float cpu_bf16_widen(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v = {(uint32_t)h << 16};
    return v.f;
}
static inline uint16_t cpu_bf16_round(float f) {
    union {
        float f;
        uint32_t u;
    } v = {f};
    uint32_t u = v.u;
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)((u & 0x7fffffffu) > 0x7f800000u ? (u >> 16) | 0x40u : r);
}

/* A view padded to 4 dims on the left (size 1, stride 0). */
typedef struct {
    int64_t n[4], s[4];
} cpu_shape4;

static inline cpu_shape4 cpu_pad4(const spin_view *v) {
    cpu_shape4 r;
    int pad = 4 - v->ndim;
    for (int i = 0; i < 4; i++) {
        r.n[i] = i < pad ? 1 : v->shape[i - pad];
        r.s[i] = i < pad ? 0 : v->stride[i - pad];
    }
    return r;
}

static inline int64_t cpu_numel(const spin_view *v) {
    int64_t n = 1;
    for (int i = 0; i < v->ndim; i++)
        n *= v->shape[i];
    return n;
}

/* Rows of a contiguous view: product of all dims but the last, and the last dim. */
static inline void cpu_rows(const spin_view *v, int64_t *rows, int64_t *cols) {
    *cols = v->ndim ? v->shape[v->ndim - 1] : 1;
    *rows = *cols ? cpu_numel(v) / *cols : 0;
}

/* The BLAS loaded at start-up (backends/cpu/cpu_blas.c). */
typedef void (*cpu_sgemm_fn)(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                             int lda, const float *b, int ldb, float beta, float *c, int ldc);
cpu_sgemm_fn cpu_blas_sgemm(void);
typedef void (*cpu_sgemv_fn)(int order, int trans, int m, int n, float alpha, const float *a, int lda,
                             const float *x, int incx, float beta, float *y, int incy);
/* NULL when the library has no cblas_sgemv (matmul then uses sgemm for every shape). */
cpu_sgemv_fn cpu_blas_sgemv(void);
/* bf16 GEMM (backends/cpu/cpu_gemm_bf16.c): c = alpha * a b + beta * c with a [m, k] and b [k, n]
 * read through (row, column) strides, c f32 row-major with leading dimension ldc (not read when
 * beta == 0). Available on CPUs with AVX-512 BF16. */
bool cpu_gemm_bf16_available(void);
spin_status cpu_gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, const uint16_t *a, int64_t rsa,
                          int64_t csa, const uint16_t *b, int64_t rsb, int64_t csb, float beta, float *c,
                          int64_t ldc);
const char *cpu_blas_describe(void);
const char *cpu_blas_corename(void);
int cpu_threads(void);

#endif
