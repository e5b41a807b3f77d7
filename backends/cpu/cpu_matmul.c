/* Batched strided matmul through BLAS sgemm; a transposed operand is a view whose second-to-last
 * dimension has stride 1. */
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

spin_status cpu_MATMUL(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
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
