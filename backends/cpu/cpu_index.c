/* Argmax and top-k over the last axis of a contiguous view. Order is total and index-aware, so
 * results are the same for any thread count: larger value first, NaN above every number (as in
 * PyTorch), equal values by lower index. */
#include <math.h>
#include <stdlib.h>

#include "backends/cpu/cpu_kernels.h"

#define PAR_MIN 32768
/* Up to this k an insertion buffer (O(C k)) beats sorting the row (O(C log C)). */
#define TOPK_INSERT_MAX 64

/* Whether (a, ia) ranks before (b, ib). */
static inline bool ranks_before(float a, int64_t ia, float b, int64_t ib) {
    bool na = isnan(a), nb = isnan(b);
    if (na != nb)
        return na;
    if (!na && a != b)
        return a > b;
    return ia < ib;
}

spin_status cpu_ARGMAX(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t rows, cols;
    cpu_rows(&c->in[0], &rows, &cols);
    const float *x = cpu_f32(&c->in[0]);
    int32_t *idx = cpu_i32(&c->out[0]);
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        int64_t best = 0;
        for (int64_t j = 1; j < cols; j++)
            if (ranks_before(xr[j], j, xr[best], best))
                best = j;
        idx[r] = (int32_t)best;
    }
    return SPIN_OK;
}

typedef struct {
    float v;
    int64_t i;
} ranked;

static int cmp_ranked(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (a->i == b->i)
        return 0;
    return ranks_before(a->v, a->i, b->v, b->i) ? -1 : 1;
}

/* The k best of row xr into buf[0..k), in rank order. buf has room for max(k, cols) entries. */
static void row_topk(const float *xr, int64_t cols, int64_t k, ranked *buf) {
    if (k > TOPK_INSERT_MAX) {
        for (int64_t j = 0; j < cols; j++)
            buf[j] = (ranked){xr[j], j};
        qsort(buf, (size_t)cols, sizeof *buf, cmp_ranked); /* a total order: no instability */
        return;
    }
    int64_t have = 0;
    for (int64_t j = 0; j < cols; j++) {
        /* j increases, so an equal value never ranks before one already held */
        if (have == k && !ranks_before(xr[j], j, buf[k - 1].v, buf[k - 1].i))
            continue;
        int64_t p = have < k ? have++ : k - 1;
        while (p > 0 && ranks_before(xr[j], j, buf[p - 1].v, buf[p - 1].i)) {
            buf[p] = buf[p - 1];
            p--;
        }
        buf[p] = (ranked){xr[j], j};
    }
}

spin_status cpu_TOPK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t rows, cols;
    cpu_rows(&c->in[0], &rows, &cols);
    int64_t k = c->p.i[0];
    if (k < 0 || k > cols)
        return spin_fail(SPIN_ERR_INVALID, "TOPK: k = %lld outside [0, %lld]", (long long)k, (long long)cols);
    if (k == 0 || rows == 0)
        return SPIN_OK;
    const float *x = cpu_f32(&c->in[0]);
    float *val = cpu_f32(&c->out[0]);
    int32_t *idx = cpu_i32(&c->out[1]);
    size_t cap = (size_t)(k > TOPK_INSERT_MAX ? cols : k);
    bool oom = false;
#pragma omp parallel if (rows * cols > PAR_MIN) reduction(|| : oom)
    {
        ranked *buf = malloc(cap * sizeof *buf); /* per-thread scratch */
        if (!buf)
            oom = true;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!buf)
                continue;
            row_topk(x + r * cols, cols, k, buf);
            for (int64_t q = 0; q < k; q++) {
                val[r * k + q] = buf[q].v;
                idx[r * k + q] = (int32_t)buf[q].i;
            }
        }
        free(buf);
    }
    return oom ? spin_fail(SPIN_ERR_OOM, "TOPK: cannot allocate %zu bytes of scratch", cap * sizeof(ranked))
               : SPIN_OK;
}
