/* Optimizer kernels (core/kernels.h GRAD_SUMSQ, GRAD_CLIP_STAT, RMSPROP_STEP, ADAMW_STEP), following
 * backends/cpu/cpu_optim.c: the gradient sum of squares over fixed 4096-element blocks (acc_t per
 * block, then the blocks in order, so the result does not depend on scheduling), the clip stat,
 * and the updates in torch's f32 operation order. Views are contiguous (buffer, element offset). */
#include "spin_kernel.h"

#define OPTIM_BLOCK 4096

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define OPTIM_F32_BITS(x) as_uint(x)
#define OPTIM_BITS_F32(x) as_float(x)
#define OPTIM_RINT(x) rint(x)
typedef uint optim_u32;
typedef ushort optim_u16;
#else
#define OPTIM_F32_BITS(x) __float_as_uint(x)
#define OPTIM_BITS_F32(x) __uint_as_float(x)
#define OPTIM_RINT(x) rintf(x)
typedef unsigned int optim_u32;
typedef unsigned short optim_u16;
#endif

/* One work-group (LOCAL_SIZE0 work-items) per block: each work-item sums a fixed strided subset, then the
 * group's fixed-order tree. part[b] = sum of g^2 over block b. */
KERNEL grad_sumsq_blocks_f32(i64 n, GLOBAL const float *g, i64 go, GLOBAL acc_t *part) {
    LOCAL acc_t scratch[ROW_GROUP_MAX];
    const i64 b = GROUP_ID0, lo = b * OPTIM_BLOCK;
    const i64 hi = n - lo < OPTIM_BLOCK ? n : lo + OPTIM_BLOCK;
    acc_t s = 0;
    for (i64 i = lo + LOCAL_ID0; i < hi; i += LOCAL_SIZE0) {
        const acc_t v = g[go + i];
        s += v * v;
    }
    s = group_sum(s, scratch);
    if (LOCAL_ID0 == 0)
        part[b] = s;
}

/* acc[0] + acc[1] += the block partials in block order; kept as hi + lo floats. One work-item. */
KERNEL grad_sumsq_combine_f32(i64 nb, GLOBAL const acc_t *part, GLOBAL float *acc, i64 ao) {
    if (GLOBAL_ID0 != 0)
        return;
    acc_t t = (acc_t)acc[ao] + (acc_t)acc[ao + 1];
    for (i64 b = 0; b < nb; b++)
        t += part[b];
    const float hi = (float)t;
    acc[ao] = hi;
    acc[ao + 1] = isfinite(t) && isfinite(hi) ? (float)(t - (acc_t)hi) : 0.0f;
}

/* stat = {norm, coef, finite}; coef = min(1, max_norm * (1 / (norm + 1e-6))) as torch evaluates
 * max_norm / (total_norm + 1e-6); max_norm <= 0: 1. One work-item. */
KERNEL grad_clip_stat_f32(GLOBAL const float *acc, i64 ao, GLOBAL float *stat, i64 so, float max_norm) {
    if (GLOBAL_ID0 != 0)
        return;
    const float norm = (float)M_SQRT((acc_t)acc[ao] + (acc_t)acc[ao + 1]);
    float coef = 1.0f;
    if (max_norm > 0.0f) {
        const float c = (1.0f / (norm + 1e-6f)) * max_norm;
        coef = c < 1.0f ? c : 1.0f;
    }
    stat[so] = norm;
    stat[so + 1] = coef;
    stat[so + 2] = isfinite(norm) ? 1.0f : 0.0f;
}

/* Round to nearest even, NaN quieted: core/dtype.c spin_f32_to_bf16. */
DEVICE_FN optim_u16 optim_to_bf16(float f) {
    optim_u32 u = OPTIM_F32_BITS(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (optim_u16)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (optim_u16)(u >> 16);
}

/* core/dtype.c spin_f32_to_f16. */
DEVICE_FN optim_u16 optim_to_f16(float f) {
    const optim_u32 x = OPTIM_F32_BITS(f);
    const optim_u32 sign = (x >> 16) & 0x8000u, absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u)
        return (optim_u16)(sign | 0x7e00u);
    if (absx >= 0x477ff000u)
        return (optim_u16)(sign | 0x7c00u);
    if (absx < 0x38800000u)
        return (optim_u16)(sign | (optim_u32)OPTIM_RINT(OPTIM_BITS_F32(absx) * 16777216.0f));
    const optim_u32 mant = absx & 0x7fffffu, rest = mant & 0x1fffu;
    optim_u32 h = (((absx >> 23) - 127 + 15) << 10) | (mant >> 13);
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (optim_u16)(sign | h);
}

/* The model copy of an updated master weight: kind 0 none, 1 f32, 2 bf16, 3 f16. */
DEVICE_FN void optim_store_copy(GLOBAL float *cp, i64 co, int kind, i64 i, float v) {
    if (kind == 1)
        cp[co + i] = v;
    else if (kind == 2)
        ((GLOBAL optim_u16 *)cp)[co + i] = optim_to_bf16(v);
    else if (kind == 3)
        ((GLOBAL optim_u16 *)cp)[co + i] = optim_to_f16(v);
}

/* torch.optim.RMSprop (single tensor, no momentum, not centred); nothing when stat.finite == 0. */
KERNEL rmsprop_step_f32(i64 n, GLOBAL const float *g, i64 go, GLOBAL const float *stat, i64 so,
                        GLOBAL float *p, i64 po, GLOBAL float *v, i64 vo, GLOBAL float *cp, i64 co,
                        int copy_kind, float neg_lr, float alpha, float one_m_alpha, float eps, float wd) {
    const i64 i = GLOBAL_ID0;
    if (i >= n || stat[so + 2] == 0.0f)
        return;
    float gi = g[go + i] * stat[so + 1];
    float pv = p[po + i];
    if (wd != 0.0f)
        gi = gi + wd * pv;
    const float vi = v[vo + i] * alpha + one_m_alpha * gi * gi;
    const float avg = M_SQRT(vi) + eps;
    pv = pv + neg_lr * gi / avg;
    v[vo + i] = vi;
    p[po + i] = pv;
    optim_store_copy(cp, co, copy_kind, i, pv);
}

/* torch.optim.AdamW (single tensor); nothing when stat.finite == 0. */
KERNEL adamw_step_f32(i64 n, GLOBAL const float *g, i64 go, GLOBAL const float *stat, i64 so, GLOBAL float *p,
                      i64 po, GLOBAL float *m, i64 mo, GLOBAL float *v, i64 vo, GLOBAL float *cp, i64 co,
                      int copy_kind, float decay, float w1, float beta2, float one_m_beta2, float neg_step,
                      float bc2_sqrt, float eps) {
    const i64 i = GLOBAL_ID0;
    if (i >= n || stat[so + 2] == 0.0f)
        return;
    const float gi = g[go + i] * stat[so + 1];
    float pv = p[po + i] * decay;
    const float mo_ = m[mo + i];
    /* torch's lerp switches formula at weight 0.5 */
    const float mi = fabs(w1) < 0.5f ? mo_ + w1 * (gi - mo_) : gi - (gi - mo_) * (1.0f - w1);
    const float vi = v[vo + i] * beta2 + one_m_beta2 * gi * gi;
    const float denom = M_SQRT(vi) / bc2_sqrt + eps;
    pv = pv + neg_step * mi / denom;
    m[mo + i] = mi;
    v[vo + i] = vi;
    p[po + i] = pv;
    optim_store_copy(cp, co, copy_kind, i, pv);
}
