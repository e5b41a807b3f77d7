/* Batched strided matmul through BLAS sgemm; a transposed operand is a view whose second-to-last
 * dimension has stride 1. bf16 operands go to the AVX-512 BF16 GEMM (cpu_gemm_bf16.c). */
#include <stdlib.h>

#include "backends/cpu/cpu_kernels.h"

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* How BLAS sees the last two dims of v: 0 on success with trans and leading dimension set. */
static int blas_layout(const spin_view *v, int *trans, int64_t *ld) {
    int nd = v->ndim;
    int64_t r = v->shape[nd - 2], k = v->shape[nd - 1], sr = v->stride[nd - 2], sk = v->stride[nd - 1];
    if ((k == 1 || sk == 1) && (r == 1 || sr >= k)) {
        *trans = NO_TRANS;
        *ld = r == 1 ? (k > 1 ? k : 1) : sr;
        if (*ld < k)
            *ld = k;
        return 0;
    }
    if ((r == 1 || sr == 1) && (k == 1 || sk >= r)) {
        *trans = TRANS;
        *ld = k == 1 ? (r > 1 ? r : 1) : sk;
        if (*ld < r)
            *ld = r;
        return 0;
    }
    return -1;
}

/* bf16 operands (cpu_gemm_bf16), y f32 or bf16 (computed in f32, rounded once). */
static spin_status matmul_bf16(const spin_kcall *c) {
    const spin_view *a = &c->in[0], *b = &c->in[1], *y = &c->out[0];
    int64_t m = y->shape[y->ndim - 2], n = y->shape[y->ndim - 1], k = a->shape[a->ndim - 1];
    cpu_shape4 as = cpu_pad4(a), bs = cpu_pad4(b), ys = cpu_pad4(y);
    int64_t ars = a->stride[a->ndim - 2], acs = a->stride[a->ndim - 1];
    int64_t brs = b->stride[b->ndim - 2], bcs = b->stride[b->ndim - 1];
    int64_t yrs = y->stride[y->ndim - 2], ycs = y->stride[y->ndim - 1];
    float alpha = c->p.f[0], beta = c->p.f[1];
    bool direct = y->dtype == SPIN_F32 && (ycs == 1 || n == 1);
    float *tmp = NULL;
    if (!direct && m * n > 0 && !(tmp = malloc((size_t)(m * n) * sizeof *tmp)))
        return spin_fail(SPIN_ERR_OOM, "MATMUL (bf16): cannot allocate a [%lld, %lld] f32 tile", (long long)m,
                         (long long)n);
    spin_status s = SPIN_OK;
    for (int64_t i0 = 0; i0 < ys.n[0] && s == SPIN_OK; i0++)
        for (int64_t i1 = 0; i1 < ys.n[1] && s == SPIN_OK; i1++) {
            const uint16_t *ap = cpu_u16(a) + i0 * as.s[0] + i1 * as.s[1];
            const uint16_t *bp = cpu_u16(b) + i0 * bs.s[0] + i1 * bs.s[1];
            size_t yo = (size_t)(i0 * ys.s[0] + i1 * ys.s[1]);
            if (direct) {
                s = cpu_gemm_bf16(m, n, k, alpha, ap, ars, acs, bp, brs, bcs, beta, cpu_f32(y) + yo, yrs);
                continue;
            }
            /* through an f32 tile: the old y when beta reads it, then one rounding per element */
            for (int64_t r = 0; r < m && beta != 0.0f; r++)
                for (int64_t q = 0; q < n; q++)
                    tmp[r * n + q] =
                        spin_dtype_load(y->dtype, y->buf, y->offset + yo + (size_t)(r * yrs + q * ycs));
            s = cpu_gemm_bf16(m, n, k, alpha, ap, ars, acs, bp, brs, bcs, beta, tmp, n);
            if (y->dtype == SPIN_BF16) {
                uint16_t *yp = cpu_u16(y) + yo;
#pragma omp parallel for schedule(static) if (m * n > 32768)
                for (int64_t r = 0; r < m; r++)
                    for (int64_t q = 0; q < n; q++)
                        yp[r * yrs + q * ycs] = cpu_bf16_round(tmp[r * n + q]);
            } else {
                float *yp = cpu_f32(y) + yo;
                for (int64_t r = 0; r < m; r++)
                    for (int64_t q = 0; q < n; q++)
                        yp[r * yrs + q * ycs] = tmp[r * n + q];
            }
        }
    free(tmp);
    return s;
}

spin_status cpu_MATMUL(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    if (c->in[0].dtype == SPIN_BF16)
        return matmul_bf16(c);
    const spin_view *a = &c->in[0], *b = &c->in[1], *y = &c->out[0];
    int ta, tb, tc;
    int64_t lda, ldb, ldc;
    if (blas_layout(a, &ta, &lda) || blas_layout(b, &tb, &ldb) || blas_layout(y, &tc, &ldc) || tc != NO_TRANS)
        return spin_fail(SPIN_ERR_INVALID, "MATMUL: operand layout is not BLAS-compatible");
    int64_t m = y->shape[y->ndim - 2], n = y->shape[y->ndim - 1], k = a->shape[a->ndim - 1];
    cpu_shape4 as = cpu_pad4(a), bs = cpu_pad4(b), ys = cpu_pad4(y);
    cpu_sgemm_fn gemm = cpu_blas_sgemm();
    /* One output row (batch-1 decode): sgemm would pack the whole weight matrix for a single row,
     * tripling the memory traffic of a step that is bound by reading the weights; sgemv streams
     * it once. */
    cpu_sgemv_fn gemv = m == 1 ? cpu_blas_sgemv() : NULL;
    float alpha = c->p.f[0], beta = c->p.f[1];
    for (int64_t i0 = 0; i0 < ys.n[0]; i0++)
        for (int64_t i1 = 0; i1 < ys.n[1]; i1++) {
            const float *ap = cpu_f32(a) + i0 * as.s[0] + i1 * as.s[1];
            const float *bp = cpu_f32(b) + i0 * bs.s[0] + i1 * bs.s[1];
            float *yp = cpu_f32(y) + i0 * ys.s[0] + i1 * ys.s[1];
            if (m == 0 || n == 0)
                continue;
            if (k == 0) {
                for (int64_t r = 0; r < m; r++)
                    for (int64_t q = 0; q < n; q++)
                        yp[r * ldc + q] = beta == 0.0f ? 0.0f : beta * yp[r * ldc + q];
                continue;
            }
            if (gemv) {
                int64_t inc = ta == NO_TRANS ? 1 : lda;
                if (tb == NO_TRANS) /* b stored [k, n]: y = b^T a */
                    gemv(ROW_MAJOR, TRANS, (int)k, (int)n, alpha, bp, (int)ldb, ap, (int)inc, beta, yp, 1);
                else /* b stored [n, k]: y = b a */
                    gemv(ROW_MAJOR, NO_TRANS, (int)n, (int)k, alpha, bp, (int)ldb, ap, (int)inc, beta, yp, 1);
                continue;
            }
            gemm(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, alpha, ap, (int)lda, bp, (int)ldb, beta, yp,
                 (int)ldc);
        }
    return SPIN_OK;
}
