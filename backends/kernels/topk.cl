/* Top-k over the last axis of contiguous [rows, cols] data (core/kernels.h TOPK), in the CPU's total
 * order (ranks_before: NaN first, larger values, ties to the lower index; backends/cpu/cpu_index.c),
 * so values and indices match the CPU exactly. */
#include "spin_kernel.h"

/* Small k: one work-group per row and k rounds, round q taking the best element that ranks after
 * round q-1's pick (a total order: no element is taken twice or skipped). O(k cols) per row. */
KERNEL topk_rounds_f32(i64 cols, GLOBAL const float *x, i64 xo, GLOBAL float *val, i64 vo, GLOBAL int *idx,
                       i64 io, i64 k) {
    LOCAL float best_v[ROW_GROUP_MAX];
    LOCAL i64 best_i[ROW_GROUP_MAX];
    const i64 r = GROUP_ID0;
    GLOBAL const float *xr = x + xo + r * cols;
    float pv = 0.0f;
    i64 pi = -1;
    for (i64 q = 0; q < k; q++) {
        float bv = 0.0f;
        i64 bi = -1;
        for (i64 j = LOCAL_ID0; j < cols; j += LOCAL_SIZE0)
            if (pi < 0 || ranks_before(pv, pi, xr[j], j))
                BEST_MERGE_(bv, bi, xr[j], j);
        group_best(&bv, &bi, best_v, best_i);
        if (LOCAL_ID0 == 0) {
            val[vo + r * k + q] = bv;
            idx[io + r * k + q] = (int)bi;
        }
        pv = bv;
        pi = bi;
    }
}

/* Large k: one work-item per element, which counts the elements of its row ranked before it; that
 * rank is its output slot when below k. O(cols) per element. */
KERNEL topk_rank_f32(i64 cols, i64 total, GLOBAL const float *x, i64 xo, GLOBAL float *val, i64 vo,
                     GLOBAL int *idx, i64 io, i64 k) {
    const i64 gid = GLOBAL_ID0;
    if (gid >= total)
        return;
    const i64 r = gid / cols, j = gid % cols;
    GLOBAL const float *xr = x + xo + r * cols;
    const float xj = xr[j];
    i64 rank = 0;
    for (i64 q = 0; q < cols && rank < k; q++)
        rank += ranks_before(xr[q], q, xj, j);
    if (rank < k) {
        val[vo + r * k + rank] = xj;
        idx[io + r * k + rank] = (int)j;
    }
}
