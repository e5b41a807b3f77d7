/* Rotary position embedding: each pair (x1, x2) of a head vector rotates by the angle
 * a = pos[b, t] * inv_freq[j]:  y1 = x1 cos a - x2 sin a,  y2 = x2 cos a + x1 sin a
 * (inverse: rotate by -a, which is the backward). Pairs are (j, j + D/2) for SPIN_ROPE_HALF (HF
 * rotate_half) and (2j, 2j + 1) for SPIN_ROPE_INTERLEAVED. */
#include <math.h>
#include <stdlib.h>

#include "backends/cpu/cpu_kernels.h"

spin_status cpu_ROPE(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const spin_view *xv = &c->in[0];
    if (xv->ndim != 4)
        return spin_fail(SPIN_ERR_INVALID, "ROPE: x must be [B, H, T, D] (got %d dims)", xv->ndim);
    const int64_t B = xv->shape[0], H = xv->shape[1], T = xv->shape[2], D = xv->shape[3], half = D / 2;
    const float *x = cpu_f32(xv), *inv_freq = cpu_f32(&c->in[2]);
    const int32_t *pos = cpu_i32(&c->in[1]);
    float *y = cpu_f32(&c->out[0]);
    const bool interleaved = c->p.i[0] == SPIN_ROPE_INTERLEAVED;
    const double sign = c->p.i[1] ? -1.0 : 1.0;
    if (B * T * half == 0)
        return SPIN_OK;
    /* cos and sin per (b, t, j), shared by the H heads. The angle is formed in double: in f32 a
     * position of 4000 would already carry ~2e-4 of absolute angle error. */
    float *cs = malloc((size_t)(B * T * half) * 2 * sizeof *cs);
    if (!cs)
        return spin_fail(SPIN_ERR_OOM, "ROPE: cannot allocate the %lld-entry cos/sin table",
                         (long long)(B * T * half));
#pragma omp parallel for schedule(static) if (B * T * half > 4096)
    for (int64_t bt = 0; bt < B * T; bt++) {
        const double p = pos[bt];
        for (int64_t j = 0; j < half; j++) {
            const double a = p * (double)inv_freq[j];
            cs[(bt * half + j) * 2] = (float)cos(a);
            cs[(bt * half + j) * 2 + 1] = (float)(sign * sin(a));
        }
    }
    /* partner offsets: pair k is (i1, i1 + step) */
    const int64_t step = interleaved ? 1 : half;
#pragma omp parallel for collapse(2) schedule(static) if (B * H * T * D > 32768)
    for (int64_t bh = 0; bh < B * H; bh++) {
        for (int64_t t = 0; t < T; t++) {
            const int64_t b = bh / H, row = (bh * T + t) * D;
            const float *tab = cs + (b * T + t) * half * 2;
            const float *xr = x + row;
            float *yr = y + row;
            for (int64_t j = 0; j < half; j++) {
                const int64_t i1 = interleaved ? 2 * j : j;
                const float co = tab[2 * j], si = tab[2 * j + 1];
                const float x1 = xr[i1], x2 = xr[i1 + step];
                yr[i1] = x1 * co - x2 * si;
                yr[i1 + step] = x2 * co + x1 * si;
            }
            if (D & 1)
                yr[D - 1] = xr[D - 1]; /* an odd trailing element has no partner */
        }
    }
    free(cs);
    return SPIN_OK;
}
