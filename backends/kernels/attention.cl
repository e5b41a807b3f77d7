/* Causal grouped-query attention, flash style: the scores are never stored; each work-group walks
 * key tiles of ATTN_GROUP keys with an online softmax and keeps only the row's log-sum-exp, from
 * which the backward recomputes the probabilities. Semantics of backends/cpu/cpu_attention.c:
 * query head h reads kv head h / (Hq / Hkv); query row i at slot qpos sees the keys
 * [max(0, qpos - window + 1) (window > 0), min(qpos, Tk - 1)] whose kmask is nonzero; a row that
 * sees none gets o = 0 and lse = -inf, and no gradient.
 *
 * Every view is contiguous ([B, H, T, D] rows of D floats; element offsets qo, ko, ...). Each
 * work-group owns whole output rows (o, dq: a query row; dk, dv: a key row), so there are no
 * atomics: the backward is one pass over key tiles per query row for dq and one pass over query
 * tiles per key row for dk and dv. Work-item t scores key (or query) t of the tile; the tile's
 * probabilities go through local memory, then work-item t accumulates dims t, t + ATTN_GROUP, ...
 * of its group's row. Sums over D and over a tile are in acc_t; rows between tiles in f32. */
#include "spin_kernel.h"

/* Work-items per group and keys (queries) per tile; the backends launch exactly this many. */
#define ATTN_GROUP 64

/* The visible key range of a query at slot qp: [attn_lo, attn_hi], empty when lo > hi. */
DEVICE_FN i64 attn_hi(i64 qp, i64 Tk) {
    return qp < Tk - 1 ? qp : Tk - 1;
}

DEVICE_FN i64 attn_lo(i64 qp, i64 window) {
    return window > 0 && qp - window + 1 > 0 ? qp - window + 1 : 0;
}

/* Four partial sums (element e into partial e % 4), added in a fixed order: independent chains
 * that a compiler can overlap, where one running sum waits on every add. */
DEVICE_FN acc_t attn_dot(GLOBAL const float *a, GLOBAL const float *b, i64 n) {
    acc_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    i64 e = 0;
    for (; e + 4 <= n; e += 4) {
        d0 += (acc_t)a[e] * b[e];
        d1 += (acc_t)a[e + 1] * b[e + 1];
        d2 += (acc_t)a[e + 2] * b[e + 2];
        d3 += (acc_t)a[e + 3] * b[e + 3];
    }
    for (; e < n; e++)
        d0 += (acc_t)a[e] * b[e];
    return (d0 + d1) + (d2 + d3);
}

/* sum_t w[t] x[t * stride] over a tile, in partial sums as attn_dot. */
DEVICE_FN acc_t attn_tile_sum(LOCAL_PTR const float *w, GLOBAL const float *x, i64 stride, int n) {
    acc_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    int t = 0;
    for (; t + 4 <= n; t += 4) {
        d0 += (acc_t)w[t] * x[t * stride];
        d1 += (acc_t)w[t + 1] * x[(t + 1) * stride];
        d2 += (acc_t)w[t + 2] * x[(t + 2) * stride];
        d3 += (acc_t)w[t + 3] * x[(t + 3) * stride];
    }
    for (; t < n; t++)
        d0 += (acc_t)w[t] * x[t * stride];
    return (d0 + d1) + (d2 + d3);
}

/* One work-group per query row r = (b * Hq + h) * Tq + i: o row and lse[r]. */
KERNEL attention_fwd_f32(i64 Hq, i64 Hkv, i64 Tq, i64 Tk, i64 D, GLOBAL const float *q, i64 qo,
                         GLOBAL const float *k, i64 ko, GLOBAL const float *v, i64 vo, GLOBAL const int *qpos,
                         i64 po, GLOBAL const float *kmask, i64 mo, int has_mask, GLOBAL float *o, i64 oo,
                         GLOBAL float *lse, i64 lo_off, float scale, i64 window) {
    LOCAL acc_t acc_scratch[ATTN_GROUP];
    LOCAL float max_scratch[ATTN_GROUP];
    LOCAL float p_tile[ATTN_GROUP];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    const i64 i = r % Tq, h = (r / Tq) % Hq, b = r / (Tq * Hq);
    const i64 kv0 = (b * Hkv + h / (Hq / Hkv)) * Tk;
    GLOBAL const float *qr = q + qo + r * D;
    GLOBAL const float *kb = k + ko + kv0 * D;
    GLOBAL const float *vb = v + vo + kv0 * D;
    GLOBAL float *orow = o + oo + r * D;
    const i64 qp = qpos[po + b * Tq + i], jlo = attn_lo(qp, window), jhi = attn_hi(qp, Tk);
    for (i64 e = lid; e < D; e += ATTN_GROUP)
        orow[e] = 0.0f;
    float m = -INFINITY;
    acc_t l = 0;
    for (i64 j0 = jlo; j0 <= jhi; j0 += ATTN_GROUP) {
        const i64 j = j0 + lid;
        float s = -INFINITY;
        if (j <= jhi && (!has_mask || kmask[mo + b * Tk + j] != 0.0f))
            s = scale * (float)attn_dot(qr, kb + j * D, D);
        const float mt = group_max(s, max_scratch);
        if (mt == -INFINITY) /* nothing visible in this tile (the same for the whole group) */
            continue;
        /* The running max m only grows; o and l are rescaled by e^(m_old - m_new) (0 at first). */
        const float mnew = mt > m ? mt : m;
        const float alpha = M_EXP(m - mnew);
        const float p = M_EXP(s - mnew);
        p_tile[lid] = p;
        l = l * alpha + group_sum((acc_t)p, acc_scratch); /* its barriers publish p_tile */
        m = mnew;
        const int nk = jhi + 1 - j0 < ATTN_GROUP ? (int)(jhi + 1 - j0) : ATTN_GROUP;
        for (i64 e = lid; e < D; e += ATTN_GROUP)
            orow[e] = orow[e] * alpha + (float)attn_tile_sum(p_tile, vb + j0 * D + e, D, nk);
        BARRIER(); /* p_tile is read before the next tile writes it */
    }
    if (l > 0) {
        const float inv = (float)((acc_t)1 / l);
        for (i64 e = lid; e < D; e += ATTN_GROUP)
            orow[e] *= inv;
    }
    if (lid == 0)
        lse[lo_off + r] = l > 0 ? (float)((acc_t)m + log(l)) : -INFINITY;
}

/* dq for one query row r per work-group: dq = scale * sum_j p_j (dp_j - Drow) k_j with
 * p_j = e^(s_j - lse), dp_j = do . v_j and Drow = do . o (the softmax-backward correction). */
KERNEL attention_back_dq_f32(i64 Hq, i64 Hkv, i64 Tq, i64 Tk, i64 D, GLOBAL const float *q, i64 qo,
                             GLOBAL const float *k, i64 ko, GLOBAL const float *v, i64 vo, GLOBAL const float *o,
                             i64 oo, GLOBAL const float *lse, i64 lo_off, GLOBAL const float *dout, i64 doo,
                             GLOBAL const int *qpos, i64 po, GLOBAL const float *kmask, i64 mo, int has_mask,
                             GLOBAL float *dq, i64 dqo, float scale, i64 window) {
    LOCAL acc_t acc_scratch[ATTN_GROUP];
    LOCAL float ds_tile[ATTN_GROUP];
    const i64 r = GROUP_ID0;
    const int lid = LOCAL_ID0;
    const i64 i = r % Tq, h = (r / Tq) % Hq, b = r / (Tq * Hq);
    const i64 kv0 = (b * Hkv + h / (Hq / Hkv)) * Tk;
    GLOBAL const float *qr = q + qo + r * D;
    GLOBAL const float *dor = dout + doo + r * D;
    GLOBAL const float *kb = k + ko + kv0 * D;
    GLOBAL const float *vb = v + vo + kv0 * D;
    GLOBAL float *dqr = dq + dqo + r * D;
    for (i64 e = lid; e < D; e += ATTN_GROUP)
        dqr[e] = 0.0f;
    const float L = lse[lo_off + r];
    if (L == -INFINITY) /* the row saw no key: its output was a constant 0 */
        return;
    acc_t dd = 0;
    for (i64 e = lid; e < D; e += ATTN_GROUP)
        dd += (acc_t)dor[e] * o[oo + r * D + e];
    const float Dr = (float)group_sum(dd, acc_scratch);
    const i64 qp = qpos[po + b * Tq + i], jlo = attn_lo(qp, window), jhi = attn_hi(qp, Tk);
    for (i64 j0 = jlo; j0 <= jhi; j0 += ATTN_GROUP) {
        const i64 j = j0 + lid;
        float ds = 0.0f;
        if (j <= jhi && (!has_mask || kmask[mo + b * Tk + j] != 0.0f)) {
            const float p = M_EXP(scale * (float)attn_dot(qr, kb + j * D, D) - L);
            ds = p * ((float)attn_dot(dor, vb + j * D, D) - Dr);
        }
        ds_tile[lid] = ds;
        BARRIER();
        const int nk = jhi + 1 - j0 < ATTN_GROUP ? (int)(jhi + 1 - j0) : ATTN_GROUP;
        for (i64 e = lid; e < D; e += ATTN_GROUP)
            dqr[e] += scale * (float)attn_tile_sum(ds_tile, kb + j0 * D + e, D, nk);
        BARRIER();
    }
}

/* dk, dv for one key row rk = (b * Hkv + g) * Tk + j per work-group, gathered over the query heads
 * of kv head g and their query rows in tiles: dv = sum_i p_i do_i, dk = scale * sum_i ds_i q_i. */
KERNEL attention_back_dkdv_f32(i64 Hq, i64 Hkv, i64 Tq, i64 Tk, i64 D, GLOBAL const float *q, i64 qo,
                               GLOBAL const float *k, i64 ko, GLOBAL const float *v, i64 vo,
                               GLOBAL const float *o, i64 oo, GLOBAL const float *lse, i64 lo_off,
                               GLOBAL const float *dout, i64 doo, GLOBAL const int *qpos, i64 po,
                               GLOBAL const float *kmask, i64 mo, int has_mask, GLOBAL float *dk, i64 dko,
                               GLOBAL float *dv, i64 dvo, float scale, i64 window) {
    LOCAL float max_scratch[ATTN_GROUP];
    LOCAL float p_tile[ATTN_GROUP];
    LOCAL float ds_tile[ATTN_GROUP];
    const i64 rk = GROUP_ID0;
    const int lid = LOCAL_ID0;
    const i64 j = rk % Tk, g = (rk / Tk) % Hkv, b = rk / (Tk * Hkv), G = Hq / Hkv;
    GLOBAL const float *kr = k + ko + rk * D;
    GLOBAL const float *vr = v + vo + rk * D;
    GLOBAL float *dkr = dk + dko + rk * D;
    GLOBAL float *dvr = dv + dvo + rk * D;
    for (i64 e = lid; e < D; e += ATTN_GROUP) {
        dkr[e] = 0.0f;
        dvr[e] = 0.0f;
    }
    if (has_mask && kmask[mo + b * Tk + j] == 0.0f) /* a masked key is seen by no query */
        return;
    for (i64 h = g * G; h < (g + 1) * G; h++) {
        const i64 row0 = (b * Hq + h) * Tq; /* query row of (b, h, i = 0) */
        for (i64 i0 = 0; i0 < Tq; i0 += ATTN_GROUP) {
            const i64 i = i0 + lid;
            float p = 0.0f, ds = 0.0f, seen = 0.0f;
            if (i < Tq) {
                const i64 qp = qpos[po + b * Tq + i];
                const float L = lse[lo_off + row0 + i];
                if (attn_lo(qp, window) <= j && j <= attn_hi(qp, Tk) && L != -INFINITY) {
                    GLOBAL const float *dor = dout + doo + (row0 + i) * D;
                    const float Dr = (float)attn_dot(dor, o + oo + (row0 + i) * D, D);
                    p = M_EXP(scale * (float)attn_dot(q + qo + (row0 + i) * D, kr, D) - L);
                    ds = p * ((float)attn_dot(dor, vr, D) - Dr);
                    seen = 1.0f;
                }
            }
            p_tile[lid] = p;
            ds_tile[lid] = ds;
            if (group_max(seen, max_scratch) == 0.0f) /* no row of the tile sees key j */
                continue;
            const int nq = Tq - i0 < ATTN_GROUP ? (int)(Tq - i0) : ATTN_GROUP;
            for (i64 e = lid; e < D; e += ATTN_GROUP) {
                dvr[e] += (float)attn_tile_sum(p_tile, dout + doo + (row0 + i0) * D + e, D, nq);
                dkr[e] += scale * (float)attn_tile_sum(ds_tile, q + qo + (row0 + i0) * D + e, D, nq);
            }
            BARRIER();
        }
    }
}
