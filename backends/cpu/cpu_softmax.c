/* Softmax and log-softmax over the last axis of a contiguous view, and their backward rules.
 * One row per loop iteration with double accumulation in a fixed order, so the result does not
 * depend on the thread count. */
#include <math.h>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/cpu_math.h"

/* Rows are independent; below this many elements threads cost more than they save. */
#define PAR_MIN 32768

/* The row maximum, the shift that keeps exp() in range (stable softmax). An all -inf row keeps
 * a shift of 0 so that x - shift stays -inf instead of becoming NaN. */
static inline float row_max(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        m = x[j] > m ? x[j] : m;
    return m == -INFINITY ? 0.0f : m;
}

/* Row bodies, each compiled per vector ISA (cpu_math.h). */
CPU_VECTOR_CLONES static void softmax_row(const float *xr, float *yr, int64_t cols) {
    float m = row_max(xr, cols);
    float inv = (float)(1.0 / cpu_sum_exp(xr, cols, m));
    for (int64_t j = 0; j < cols; j++)
        yr[j] = cpu_expf(xr[j] - m) * inv;
}

CPU_VECTOR_CLONES static void log_softmax_row(const float *xr, float *yr, int64_t cols) {
    float m = row_max(xr, cols);
    double lse = m + log(cpu_sum_exp(xr, cols, m));
    for (int64_t j = 0; j < cols; j++)
        yr[j] = (float)((double)xr[j] - lse);
}

CPU_VECTOR_CLONES static void log_softmax_back_row(const float *yr, const float *gr, float *dr,
                                                   int64_t cols) {
    double s = 0;
    for (int64_t j = 0; j < cols; j++)
        s += gr[j];
    float sf = (float)s;
    for (int64_t j = 0; j < cols; j++)
        dr[j] = gr[j] - cpu_expf(yr[j]) * sf;
}

/* y = exp(x - max) / sum exp(x - max) */
spin_status cpu_SOFTMAX(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t rows, cols;
    cpu_rows(&c->in[0], &rows, &cols);
    const float *x = cpu_f32(&c->in[0]);
    float *y = cpu_f32(&c->out[0]);
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        softmax_row(x + r * cols, y + r * cols, cols);
    return SPIN_OK;
}

/* y = x - max - log sum exp(x - max) */
spin_status cpu_LOG_SOFTMAX(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t rows, cols;
    cpu_rows(&c->in[0], &rows, &cols);
    const float *x = cpu_f32(&c->in[0]);
    float *y = cpu_f32(&c->out[0]);
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        log_softmax_row(x + r * cols, y + r * cols, cols);
    return SPIN_OK;
}
/* dx = y * (dy - sum(dy * y)) */
spin_status cpu_SOFTMAX_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t rows, cols;
    cpu_rows(&c->in[0], &rows, &cols);
    const float *y = cpu_f32(&c->in[0]), *dy = cpu_f32(&c->in[1]);
    float *dx = cpu_f32(&c->out[0]);
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * cols, *gr = dy + r * cols;
        float *dr = dx + r * cols;
        double dot = 0;
        for (int64_t j = 0; j < cols; j++)
            dot += (double)gr[j] * yr[j];
        for (int64_t j = 0; j < cols; j++)
            dr[j] = (float)(yr[j] * (gr[j] - dot));
    }
    return SPIN_OK;
}

/* dx = dy - exp(y) * sum(dy), y being the log-softmax output */
spin_status cpu_LOG_SOFTMAX_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t rows, cols;
    cpu_rows(&c->in[0], &rows, &cols);
    const float *y = cpu_f32(&c->in[0]), *dy = cpu_f32(&c->in[1]);
    float *dx = cpu_f32(&c->out[0]);
#pragma omp parallel for schedule(static) if (rows * cols > PAR_MIN)
    for (int64_t r = 0; r < rows; r++)
        log_softmax_back_row(y + r * cols, dy + r * cols, dx + r * cols, cols);
    return SPIN_OK;
}
