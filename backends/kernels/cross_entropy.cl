/* The cross-entropy rows (core/kernels.h CE_ROWS, CE_ROWS_BACK) over contiguous [rows, V] logits,
 * following backends/cpu/cpu_cross_entropy.c: acc_t sums, f32 exponentials. check_ids_i32 (ids.cl)
 * recorded any target outside [0, V) that is not the ignore index before these run; such a row
 * reads no logit through it (logp 0, dx 0) and its error reaches the host at the next read. */
#include "spin_kernel.h"

/* One work-group per row: logp = x[t] - lse (0 when t == ignore), lse = m + log sum exp(x - m),
 * logit_sum = sum x. */
KERNEL ce_rows_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL const int *t, i64 to, GLOBAL float *logp,
                   i64 lpo, GLOBAL float *lse, i64 lseo, GLOBAL float *lsum, i64 lsumo, i64 ignore) {
    LOCAL acc_t acc_scratch[ROW_GROUP_MAX];
    LOCAL float max_scratch[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    float m = -INFINITY;
    acc_t s = 0;
    for (i64 j = LOCAL_ID0; j < cols; j += LOCAL_SIZE0) {
        m = xr[j] > m ? xr[j] : m;
        s += (acc_t)xr[j];
    }
    m = group_max(m, max_scratch);
    s = group_sum(s, acc_scratch);
    if (m == -INFINITY) /* keeps x - m at -inf rather than NaN */
        m = 0.0f;
    acc_t e = 0;
    for (i64 j = LOCAL_ID0; j < cols; j += LOCAL_SIZE0)
        e += (acc_t)M_EXP(xr[j] - m);
    e = group_sum(e, acc_scratch);
    if (LOCAL_ID0 == 0) {
        const acc_t l = (acc_t)m + log(e);
        const int tr = t[to + r];
        lse[lseo + r] = (float)l;
        lsum[lsumo + r] = (float)s;
        const bool skip = (i64)tr == ignore || tr < 0 || (i64)tr >= cols;
        logp[lpo + r] = skip ? 0.0f : (float)((acc_t)xr[tr] - l);
    }
}

/* One work-item per logit: dx = -g exp(x - lse), at the target g (1 - exp(x - lse)); 0 rows for
 * ignored targets (and bad ones). */
KERNEL ce_rows_back_f32(i64 cols, i64 total, GLOBAL const float *x, i64 xo, GLOBAL const int *t, i64 to,
                        GLOBAL const float *lse, i64 lseo, GLOBAL const float *g, i64 go, GLOBAL float *dx,
                        i64 dxo, i64 ignore) {
    const i64 gid = GLOBAL_ID0;
    if (gid >= total)
        return;
    const i64 r = gid / cols, j = gid % cols;
    const int tr = t[to + r];
    if ((i64)tr == ignore || tr < 0 || (i64)tr >= cols) {
        dx[dxo + gid] = 0.0f;
        return;
    }
    const float gr = g[go + r], p = M_EXP(x[xo + gid] - lse[lseo + r]);
    dx[dxo + gid] = j == tr ? (float)((acc_t)gr * ((acc_t)1 - (acc_t)p)) : -gr * p;
}
