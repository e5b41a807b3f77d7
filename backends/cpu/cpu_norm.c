/* Row normalisations over the last axis of contiguous rows x [N, C]:
 *   RMSNorm   y = x * rstd * w,              rstd = 1 / sqrt(mean(x^2) + eps)
 *   LayerNorm y = (x - mean) * rstd * w + b, rstd = 1 / sqrt(var(x) + eps), var biased (as torch)
 * Row statistics accumulate in double. Weight and bias gradients are column sums: each column
 * block is one task that walks the rows in order, so the sums do not depend on the thread count. */
#include <math.h>

#include "backends/cpu/cpu_kernels.h"

/* Columns per weight-gradient task: a fixed partition, independent of the thread count. */
#define COL_BLOCK 64

/* Parallelise only when the work pays for the thread start-up. */
#define PAR_MIN 32768

spin_status cpu_RMSNORM(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t n, cols;
    cpu_rows(&c->in[0], &n, &cols);
    const float *x = cpu_f32(&c->in[0]), *w = cpu_f32(&c->in[1]);
    float *y = cpu_f32(&c->out[0]), *rstd = cpu_f32(&c->out[1]);
    const double eps = c->p.f[0];
#pragma omp parallel for schedule(static) if (n * cols > PAR_MIN)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        double ss = 0;
        for (int64_t j = 0; j < cols; j++)
            ss += (double)xr[j] * xr[j];
        float rs = (float)(1.0 / sqrt(ss / (double)cols + eps));
        rstd[r] = rs;
        /* HF order: normalise in f32, then scale by the weight */
        for (int64_t j = 0; j < cols; j++)
            yr[j] = w[j] * (xr[j] * rs);
    }
    return SPIN_OK;
}

/* dx = rstd * (w dy - x rstd^2 mean(w dy x)),  dw = sum_rows dy x rstd */
spin_status cpu_RMSNORM_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t n, cols;
    cpu_rows(&c->in[0], &n, &cols);
    const float *x = cpu_f32(&c->in[0]), *w = cpu_f32(&c->in[1]), *rstd = cpu_f32(&c->in[2]),
                *dy = cpu_f32(&c->in[3]);
    float *dx = cpu_f32(&c->out[0]), *dw = cpu_f32(&c->out[1]);
#pragma omp parallel for schedule(static) if (n * cols > PAR_MIN)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        double dot = 0;
        for (int64_t j = 0; j < cols; j++)
            dot += (double)w[j] * dyr[j] * xr[j];
        const double rs = rstd[r];
        const float k = (float)(dot * rs * rs / (double)cols), rsf = rstd[r];
        for (int64_t j = 0; j < cols; j++)
            dxr[j] = rsf * (w[j] * dyr[j] - xr[j] * k);
    }
    const int64_t nblk = (cols + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (n * cols > PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t j0 = blk * COL_BLOCK, len = cols - j0 < COL_BLOCK ? cols - j0 : COL_BLOCK;
        double acc[COL_BLOCK] = {0};
        for (int64_t r = 0; r < n; r++) {
            const float *xr = x + r * cols + j0, *dyr = dy + r * cols + j0;
            const double rs = rstd[r];
            for (int64_t j = 0; j < len; j++)
                acc[j] += (double)dyr[j] * xr[j] * rs;
        }
        for (int64_t j = 0; j < len; j++)
            dw[j0 + j] = (float)acc[j];
    }
    return SPIN_OK;
}

spin_status cpu_LAYERNORM(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t n, cols;
    cpu_rows(&c->in[0], &n, &cols);
    const float *x = cpu_f32(&c->in[0]), *w = cpu_f32(&c->in[1]), *b = cpu_f32(&c->in[2]);
    float *y = cpu_f32(&c->out[0]), *mean = cpu_f32(&c->out[1]), *rstd = cpu_f32(&c->out[2]);
    const double eps = c->p.f[0];
#pragma omp parallel for schedule(static) if (n * cols > PAR_MIN)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        /* two passes: the centred sum of squares does not cancel like E[x^2] - E[x]^2 */
        double s = 0;
        for (int64_t j = 0; j < cols; j++)
            s += xr[j];
        const double mu = cols ? s / (double)cols : 0;
        double ss = 0;
        for (int64_t j = 0; j < cols; j++)
            ss += (xr[j] - mu) * (xr[j] - mu);
        const double rs = 1.0 / sqrt((cols ? ss / (double)cols : 0) + eps);
        mean[r] = (float)mu;
        rstd[r] = (float)rs;
        for (int64_t j = 0; j < cols; j++)
            yr[j] = (float)((xr[j] - mu) * rs) * w[j] + b[j];
    }
    return SPIN_OK;
}

/* xhat = (x - mean) rstd, g = dy w: dx = rstd (g - mean(g) - xhat mean(g xhat)),
 * dw = sum_rows dy xhat, db = sum_rows dy */
spin_status cpu_LAYERNORM_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t n, cols;
    cpu_rows(&c->in[0], &n, &cols);
    const float *x = cpu_f32(&c->in[0]), *w = cpu_f32(&c->in[1]), *mean = cpu_f32(&c->in[2]),
                *rstd = cpu_f32(&c->in[3]), *dy = cpu_f32(&c->in[4]);
    float *dx = cpu_f32(&c->out[0]), *dw = cpu_f32(&c->out[1]), *db = cpu_f32(&c->out[2]);
#pragma omp parallel for schedule(static) if (n * cols > PAR_MIN)
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        const double mu = mean[r], rs = rstd[r];
        double sg = 0, sgx = 0;
        for (int64_t j = 0; j < cols; j++) {
            double g = (double)dyr[j] * w[j];
            sg += g;
            sgx += g * (xr[j] - mu) * rs;
        }
        const double a = cols ? sg / (double)cols : 0, bb = cols ? sgx / (double)cols : 0;
        for (int64_t j = 0; j < cols; j++) {
            double xh = (xr[j] - mu) * rs;
            dxr[j] = (float)(rs * ((double)dyr[j] * w[j] - a - xh * bb));
        }
    }
    const int64_t nblk = (cols + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if (n * cols > PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
        const int64_t j0 = blk * COL_BLOCK, len = cols - j0 < COL_BLOCK ? cols - j0 : COL_BLOCK;
        double aw[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
        for (int64_t r = 0; r < n; r++) {
            const float *xr = x + r * cols + j0, *dyr = dy + r * cols + j0;
            const double mu = mean[r], rs = rstd[r];
            for (int64_t j = 0; j < len; j++) {
                aw[j] += (double)dyr[j] * ((xr[j] - mu) * rs);
                ab[j] += dyr[j];
            }
        }
        for (int64_t j = 0; j < len; j++) {
            dw[j0 + j] = (float)aw[j];
            db[j0 + j] = (float)ab[j];
        }
    }
    return SPIN_OK;
}
