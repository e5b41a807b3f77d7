/* Embedding lookup y[n, :] = w[ids[n], :], and its gradient dw[v, :] = sum_{n: ids[n] = v} dy[n, :].
 * The gradient is a scatter-add made deterministic without atomics: each task owns a fixed block
 * of columns and walks the tokens in order, so every sum has one order whatever the thread count. */
#include <string.h>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/id_errors.h"

/* Columns per scatter-add task (a partition fixed independently of the thread count). */
#define COL_BLOCK 64

/* Every id must lie in [0, V) before anything is read or written through it. */
static spin_status check_ids(const char *kernel, const int32_t *ids, int64_t n, int64_t v) {
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= v)
            return spin_bad_id_error(kernel, ids[i], i, v);
    return SPIN_OK;
}

spin_status cpu_EMBEDDING(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const spin_view *wv = &c->in[0];
    const int64_t v = wv->shape[0], cols = wv->shape[1], n = cpu_numel(&c->in[1]);
    /* a row copy: any float type, the same in w and y (bf16 tables are not widened whole) */
    const size_t es = spin_dtype_size(wv->dtype), row = (size_t)cols * es;
    const char *w = (const char *)wv->buf + wv->offset * es;
    const int32_t *ids = cpu_i32(&c->in[1]);
    char *y = (char *)c->out[0].buf + c->out[0].offset * es;
    SPIN_TRY(check_ids("embedding", ids, n, v));
#pragma omp parallel for schedule(static) if (n * cols > 65536)
    for (int64_t i = 0; i < n; i++)
        memcpy(y + (size_t)i * row, w + (size_t)ids[i] * row, row);
    return SPIN_OK;
}

spin_status cpu_EMBEDDING_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const spin_view *dwv = &c->out[0];
    const int64_t v = c->p.i[0], cols = dwv->shape[1], n = cpu_numel(&c->in[0]);
    if (v != dwv->shape[0])
        return spin_fail(SPIN_ERR_INVALID, "embedding backward: V = %lld but dw has %lld rows", (long long)v,
                         (long long)dwv->shape[0]);
    const int32_t *ids = cpu_i32(&c->in[0]);
    const float *dy = cpu_f32(&c->in[1]);
    float *dw = cpu_f32(dwv);
    SPIN_TRY(check_ids("embedding backward", ids, n, v));
#pragma omp parallel for schedule(static) if (v * cols > 65536)
    for (int64_t r = 0; r < v; r++)
        memset(dw + r * cols, 0, (size_t)cols * sizeof *dw);
    const int64_t nblk = (cols + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (n * cols > 32768)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t j0 = blk * COL_BLOCK, len = cols - j0 < COL_BLOCK ? cols - j0 : COL_BLOCK;
        for (int64_t i = 0; i < n; i++) {
            float *dst = dw + (int64_t)ids[i] * cols + j0;
            const float *src = dy + i * cols + j0;
            for (int64_t j = 0; j < len; j++)
                dst[j] += src[j];
        }
    }
    return SPIN_OK;
}
