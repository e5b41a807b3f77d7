/* Reductions over one axis of a strided view; double accumulation in a fixed order, so results
 * do not depend on the thread count. */
#include <math.h>

#include "backends/cpu/cpu_kernels.h"

static spin_status reduce_axis(const spin_kcall *c, bool square) {
    const spin_view *x = &c->in[0], *y = &c->out[0];
    int axis = (int)c->p.i[0];
    cpu_shape4 xs = cpu_pad4(x), ys = cpu_pad4(y);
    int a4 = axis + (4 - x->ndim);
    int64_t len = xs.n[a4], step = xs.s[a4];
    const float *xp = cpu_f32(x);
    float *yp = cpu_f32(y);
    int64_t total = ys.n[0] * ys.n[1] * ys.n[2] * ys.n[3];
#pragma omp parallel for schedule(static) if (total * len > 32768)
    for (int64_t o = 0; o < total; o++) {
        int64_t i3 = o % ys.n[3], i2 = (o / ys.n[3]) % ys.n[2], i1 = (o / (ys.n[3] * ys.n[2])) % ys.n[1],
                i0 = o / (ys.n[3] * ys.n[2] * ys.n[1]);
        const float *p = xp + i0 * xs.s[0] + i1 * xs.s[1] + i2 * xs.s[2] + i3 * xs.s[3];
        double acc = 0;
        for (int64_t j = 0; j < len; j++) {
            double v = p[j * step];
            acc += square ? v * v : v;
        }
        yp[i0 * ys.s[0] + i1 * ys.s[1] + i2 * ys.s[2] + i3 * ys.s[3]] = (float)acc;
    }
    return SPIN_OK;
}

spin_status cpu_SUM_AXIS(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    return reduce_axis(c, false);
}

spin_status cpu_SUMSQ_AXIS(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    return reduce_axis(c, true);
}
