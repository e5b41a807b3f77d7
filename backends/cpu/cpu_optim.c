/* Optimizer kernels: the global gradient norm, the clip factor with the non-finite flag, and the
 * RMSProp / AdamW updates. Every view is contiguous (the optimizer guarantees it). The updates
 * follow torch's single-tensor f32 code operation by operation (separate IEEE operations: the
 * project builds with -ffp-contract=off), so the results track torch to an ulp or two.
 *
 * State updated in place (outputs marked "rw" in core/kernels.h: acc, p, m, v) is passed only as
 * an output, which the kernel reads and writes, as MATMUL's c with f1 != 0; it is never also an
 * input, so no input aliases an output. The dispatcher's CPU fallback copies outputs to the host
 * before running a kernel, so this works unchanged for a device that lacks these kernels. */
#include <math.h>
#include <stdlib.h>

#include "backends/cpu/cpu_kernels.h"
#include "core/dtype.h"

/* Fixed block size of the gradient sum: the partition, and so the rounding, never depends on the
 * thread count. */
#define SUMSQ_BLOCK 4096

/* sum of x^2 over one block in double, 8 interleaved partial sums in a fixed order (vectorisable,
 * deterministic). */
static double block_sumsq(const float *x, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)x[j + k] * (double)x[j + k];
    for (int k = 0; j < n; j++, k++)
        acc[k] += (double)x[j] * (double)x[j];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

spin_status cpu_GRAD_SUMSQ(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const float *g = cpu_f32(&c->in[0]);
    float *acc = cpu_f32(&c->out[0]);
    int64_t n = cpu_numel(&c->in[0]), nb = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double small[64];
    double *part = nb <= 64 ? small : malloc((size_t)nb * sizeof *part);
    if (!part)
        return spin_fail(SPIN_ERR_OOM, "GRAD_SUMSQ: %lld block partials", (long long)nb);
#pragma omp parallel for schedule(static) if (nb > 4)
    for (int64_t b = 0; b < nb; b++) {
        int64_t lo = b * SUMSQ_BLOCK, len = n - lo < SUMSQ_BLOCK ? n - lo : SUMSQ_BLOCK;
        part[b] = block_sumsq(g + lo, len);
    }
    double total = (double)acc[0] + (double)acc[1];
    for (int64_t b = 0; b < nb; b++)
        total += part[b];
    if (part != small)
        free(part);
    /* hi + lo keeps the running sum to ~48 bits, so adding hundreds of parameters loses nothing to
     * f32 rounding; a non-finite total stays in hi (lo 0) */
    float hi = (float)total;
    acc[0] = hi;
    acc[1] = isfinite(total) && isfinite(hi) ? (float)(total - (double)hi) : 0.0f;
    return SPIN_OK;
}

spin_status cpu_GRAD_CLIP_STAT(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const float *acc = cpu_f32(&c->in[0]);
    float *stat = cpu_f32(&c->out[0]);
    float max_norm = c->p.f[0];
    float norm = (float)sqrt((double)acc[0] + (double)acc[1]);
    float coef = 1.0f;
    /* torch: max_norm / (total_norm + 1e-6) is Tensor.__rdiv__, i.e. reciprocal() * max_norm, in
     * f32, then clamp(max=1) */
    if (max_norm > 0) {
        float c_ = (1.0f / (norm + 1e-6f)) * max_norm;
        coef = c_ < 1.0f ? c_ : 1.0f;
    }
    stat[0] = norm;
    stat[1] = coef;
    stat[2] = isfinite(norm) ? 1.0f : 0.0f;
    return SPIN_OK;
}

/* The optional model copy of the updated master weight (slot `slot` of the outputs). */
typedef struct {
    spin_dtype dt;
    void *base;
} copy_dst;

static copy_dst copy_of(const spin_kcall *c, int slot) {
    copy_dst d = {SPIN_F32, NULL};
    if (c->n_out > slot) {
        const spin_view *v = &c->out[slot];
        d.dt = v->dtype;
        d.base = (char *)v->buf + v->offset * spin_dtype_size(v->dtype);
    }
    return d;
}

static inline void store_copy(copy_dst d, int64_t i, float v) {
    if (d.dt == SPIN_BF16)
        ((uint16_t *)d.base)[i] = spin_f32_to_bf16(v);
    else if (d.dt == SPIN_F16)
        ((uint16_t *)d.base)[i] = spin_f32_to_f16(v);
    else
        ((float *)d.base)[i] = v;
}

spin_status cpu_RMSPROP_STEP(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const float *stat = cpu_f32(&c->in[1]);
    if (stat[2] == 0.0f)
        return SPIN_OK;
    const float *g = cpu_f32(&c->in[0]);
    float *p = cpu_f32(&c->out[0]), *v = cpu_f32(&c->out[1]);
    copy_dst cp = copy_of(c, 2);
    const float coef = stat[1], neg_lr = c->p.f[0], alpha = c->p.f[1], one_m_alpha = c->p.f[2],
                eps = c->p.f[3], wd = c->p.f[4];
    int64_t n = cpu_numel(&c->out[0]);
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * coef; /* clip_grad_norm_: g.mul_(clip_coef_clamped) */
        if (wd != 0.0f)
            gi = gi + wd * p[i];                         /* grad.add(param, alpha=weight_decay) */
        float vi = v[i] * alpha + one_m_alpha * gi * gi; /* mul_(alpha).addcmul_(g, g, value=1-alpha) */
        float avg = sqrtf(vi) + eps;
        float pi = p[i] + neg_lr * gi / avg; /* addcdiv_(g, avg, value=-lr) */
        v[i] = vi;
        p[i] = pi;
        if (cp.base)
            store_copy(cp, i, pi);
    }
    return SPIN_OK;
}

spin_status cpu_ADAMW_STEP(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const float *stat = cpu_f32(&c->in[1]);
    if (stat[2] == 0.0f)
        return SPIN_OK;
    const float *g = cpu_f32(&c->in[0]);
    float *p = cpu_f32(&c->out[0]), *m = cpu_f32(&c->out[1]), *v = cpu_f32(&c->out[2]);
    copy_dst cp = copy_of(c, 3);
    const float coef = stat[1], decay = c->p.f[0], w1 = c->p.f[1], beta2 = c->p.f[2], one_m_beta2 = c->p.f[3],
                neg_step = c->p.f[4], bc2_sqrt = c->p.f[5], eps = c->p.f[6];
    /* torch's lerp switches formula at weight 0.5 for accuracy */
    const bool small_w = fabsf(w1) < 0.5f;
    const float one_m_w1 = 1.0f - w1;
    int64_t n = cpu_numel(&c->out[0]);
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * coef;
        float pi = p[i] * decay; /* param.mul_(1 - lr * weight_decay) */
        float mi = small_w ? m[i] + w1 * (gi - m[i]) : gi - (gi - m[i]) * one_m_w1; /* lerp_(g, 1-beta1) */
        float vi = v[i] * beta2 + one_m_beta2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        pi = pi + neg_step * mi / denom; /* addcdiv_(exp_avg, denom, value=-step_size) */
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (cp.base)
            store_copy(cp, i, pi);
    }
    return SPIN_OK;
}
