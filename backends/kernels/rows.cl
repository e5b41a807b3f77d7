/* Row kernels over contiguous [rows, cols] views (element offsets xo, yo, ...): one work-group per
 * row (LOCAL_SIZE0 work-items, ROW_GROUP by default), reductions through group_sum / group_max /
 * group_best. The formulas follow
 * backends/cpu/cpu_softmax.c and cpu_norm.c (acc_t accumulation, f32 elementwise). */
#include "spin_kernel.h"

/* mode 0: softmax, y = exp(x - max) / sum; mode 1: log-softmax, y = x - max - log sum. */
KERNEL softmax_rows_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL float *y, i64 yo, int mode) {
    LOCAL acc_t acc_scratch[ROW_GROUP_MAX];
    LOCAL float max_scratch[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    GLOBAL float *yr = y + yo + r * cols;
    float m = -INFINITY;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        m = xr[j] > m ? xr[j] : m;
    m = group_max(m, max_scratch);
    if (m == -INFINITY) /* an all -inf row keeps x - m at -inf instead of NaN */
        m = 0.0f;
    acc_t s = 0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        s += (acc_t)M_EXP(xr[j] - m);
    s = group_sum(s, acc_scratch);
    if (mode == 0) {
        const float inv = (float)((acc_t)1 / s);
        for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
            yr[j] = M_EXP(xr[j] - m) * inv;
    } else {
        const acc_t lse = (acc_t)m + log(s);
        for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
            yr[j] = (float)((acc_t)xr[j] - lse);
    }
}

/* mode 0: softmax backward, dx = y (dy - sum(dy y)); mode 1: log-softmax backward,
 * dx = dy - exp(y) sum(dy). */
KERNEL softmax_back_rows_f32(i64 cols, GLOBAL const float *y, i64 yo, GLOBAL const float *g, i64 go,
                             GLOBAL float *dx, i64 dxo, int mode) {
    LOCAL acc_t acc_scratch[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    GLOBAL const float *yr = y + yo + r * cols;
    GLOBAL const float *gr = g + go + r * cols;
    GLOBAL float *dr = dx + dxo + r * cols;
    acc_t s = 0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        s += mode == 0 ? (acc_t)gr[j] * yr[j] : (acc_t)gr[j];
    s = group_sum(s, acc_scratch);
    if (mode == 0) {
        for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
            dr[j] = (float)(yr[j] * (gr[j] - s));
    } else {
        const float sf = (float)s;
        for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
            dr[j] = gr[j] - M_EXP(yr[j]) * sf;
    }
}

/* y = w * (x * rstd), rstd = 1 / sqrt(mean(x^2) + eps) per row. */
KERNEL rmsnorm_rows_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL const float *w, i64 wo, GLOBAL float *y,
                        i64 yo, GLOBAL float *rstd, i64 ro, float eps) {
    LOCAL acc_t acc_scratch[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    GLOBAL float *yr = y + yo + r * cols;
    acc_t ss = 0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        ss += (acc_t)xr[j] * xr[j];
    ss = group_sum(ss, acc_scratch);
    /* sqrt and log on acc_t values: the double overloads (OpenCL C, CUDA and HIP all have them) */
    const float rs = (float)((acc_t)1 / sqrt(ss / (acc_t)cols + (acc_t)eps));
    if (lid == 0)
        rstd[ro + r] = rs;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        yr[j] = w[wo + j] * (xr[j] * rs);
}

/* dx = rstd (w dy - x rstd^2 mean(w dy x)) per row. */
KERNEL rmsnorm_back_rows_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL const float *w, i64 wo,
                             GLOBAL const float *rstd, i64 ro, GLOBAL const float *g, i64 go, GLOBAL float *dx,
                             i64 dxo) {
    LOCAL acc_t acc_scratch[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    GLOBAL const float *gr = g + go + r * cols;
    GLOBAL float *dr = dx + dxo + r * cols;
    acc_t dot = 0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        dot += (acc_t)w[wo + j] * gr[j] * xr[j];
    dot = group_sum(dot, acc_scratch);
    const acc_t rs = rstd[ro + r];
    const float k = (float)(dot * rs * rs / (acc_t)cols), rsf = rstd[ro + r];
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        dr[j] = rsf * (w[wo + j] * gr[j] - xr[j] * k);
}

/* dw[j] = sum over rows of dy x rstd: one work-item per column, rows in order. */
KERNEL rmsnorm_dw_f32(i64 rows, i64 cols, GLOBAL const float *x, i64 xo, GLOBAL const float *rstd, i64 ro,
                      GLOBAL const float *g, i64 go, GLOBAL float *dw, i64 dwo) {
    const i64 j = GLOBAL_ID0;
    if (j >= cols)
        return;
    acc_t acc = 0;
    for (i64 r = 0; r < rows; r++)
        acc += (acc_t)g[go + r * cols + j] * x[xo + r * cols + j] * (acc_t)rstd[ro + r];
    dw[dwo + j] = (float)acc;
}

/* Layer norm: two passes (mean, then the centred sum of squares), y = (x - mu) rstd w + b. */
KERNEL layernorm_rows_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL const float *w, i64 wo,
                          GLOBAL const float *b, i64 bo, GLOBAL float *y, i64 yo, GLOBAL float *mean, i64 mo,
                          GLOBAL float *rstd, i64 ro, float eps) {
    LOCAL acc_t acc_scratch[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    GLOBAL float *yr = y + yo + r * cols;
    acc_t s = 0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        s += xr[j];
    s = group_sum(s, acc_scratch);
    const acc_t mu = cols ? s / (acc_t)cols : (acc_t)0;
    acc_t ss = 0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        ss += (xr[j] - mu) * (xr[j] - mu);
    ss = group_sum(ss, acc_scratch);
    const acc_t rs = (acc_t)1 / sqrt((cols ? ss / (acc_t)cols : (acc_t)0) + (acc_t)eps);
    if (lid == 0) {
        mean[mo + r] = (float)mu;
        rstd[ro + r] = (float)rs;
    }
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0)
        yr[j] = (float)((xr[j] - mu) * rs) * w[wo + j] + b[bo + j];
}

/* dx = rstd (dy w - mean(dy w) - xhat mean(dy w xhat)) per row. */
KERNEL layernorm_back_rows_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL const float *w, i64 wo,
                               GLOBAL const float *mean, i64 mo, GLOBAL const float *rstd, i64 ro,
                               GLOBAL const float *g, i64 go, GLOBAL float *dx, i64 dxo) {
    LOCAL acc_t acc_scratch[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    GLOBAL const float *gr = g + go + r * cols;
    GLOBAL float *dr = dx + dxo + r * cols;
    const acc_t mu = mean[mo + r], rs = rstd[ro + r];
    acc_t sg = 0, sgx = 0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0) {
        const acc_t gw = (acc_t)gr[j] * w[wo + j];
        sg += gw;
        sgx += gw * (xr[j] - mu) * rs;
    }
    sg = group_sum(sg, acc_scratch);
    sgx = group_sum(sgx, acc_scratch);
    const acc_t a = cols ? sg / (acc_t)cols : (acc_t)0, bb = cols ? sgx / (acc_t)cols : (acc_t)0;
    for (i64 j = lid; j < cols; j += LOCAL_SIZE0) {
        const acc_t xh = (xr[j] - mu) * rs;
        dr[j] = (float)(rs * ((acc_t)gr[j] * w[wo + j] - a - xh * bb));
    }
}

/* dw[j] = sum_r dy xhat, db[j] = sum_r dy: one work-item per column, rows in order. */
KERNEL layernorm_dwdb_f32(i64 rows, i64 cols, GLOBAL const float *x, i64 xo, GLOBAL const float *mean, i64 mo,
                          GLOBAL const float *rstd, i64 ro, GLOBAL const float *g, i64 go, GLOBAL float *dw,
                          i64 dwo, GLOBAL float *db, i64 dbo) {
    const i64 j = GLOBAL_ID0;
    if (j >= cols)
        return;
    acc_t aw = 0, ab = 0;
    for (i64 r = 0; r < rows; r++) {
        const acc_t mu = mean[mo + r], rs = rstd[ro + r], gv = g[go + r * cols + j];
        aw += gv * ((x[xo + r * cols + j] - mu) * rs);
        ab += gv;
    }
    dw[dwo + j] = (float)aw;
    db[dbo + j] = (float)ab;
}

/* Rotary embedding of contiguous x [B, H, T, D]: one work-item per (row, pair); the angle
 * pos * inv_freq is formed in acc_t (double where the device has it, as the CPU reference). */
KERNEL rope_f32(i64 H, i64 T, i64 D, i64 total, GLOBAL const float *x, i64 xo, GLOBAL const int *pos, i64 po,
                GLOBAL const float *inv_freq, i64 fo, GLOBAL float *y, i64 yo, int interleaved, int inverse) {
    const i64 gid = GLOBAL_ID0;
    if (gid >= total)
        return;
    const i64 npairs = D / 2, per_row = npairs + (D & 1);
    const i64 row = gid / per_row, j = gid % per_row;
    GLOBAL const float *xr = x + xo + row * D;
    GLOBAL float *yr = y + yo + row * D;
    if (j == npairs) { /* an odd trailing element has no partner */
        yr[D - 1] = xr[D - 1];
        return;
    }
    const i64 t = row % T, b = row / (H * T);
    const acc_t a = (acc_t)pos[po + b * T + t] * (acc_t)inv_freq[fo + j];
    const float co = (float)cos(a), si = (float)((inverse ? -1 : 1) * sin(a));
    const i64 step = interleaved ? 1 : npairs, i1 = interleaved ? 2 * j : j;
    const float x1 = xr[i1], x2 = xr[i1 + step];
    yr[i1] = x1 * co - x2 * si;
    yr[i1 + step] = x2 * co + x1 * si;
}

/* idx[r] = the index of the row's top-ranked element. */
KERNEL argmax_rows_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL int *idx, i64 io) {
    LOCAL float best_v[ROW_GROUP_MAX];
    LOCAL i64 best_i[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    float bv = 0.0f;
    i64 bi = -1;
    for (i64 j = LOCAL_ID0; j < cols; j += LOCAL_SIZE0)
        BEST_MERGE_(bv, bi, xr[j], j);
    group_best(&bv, &bi, best_v, best_i);
    if (LOCAL_ID0 == 0)
        idx[io + r] = (int)(bi < 0 ? 0 : bi);
}
