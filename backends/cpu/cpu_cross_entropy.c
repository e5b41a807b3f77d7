/* Row-wise cross-entropy pieces for the chunked linear + log-prob gather: per row the log-prob of
 * the target, the log-sum-exp and the sum of the logits, and the logits' gradient. Views are
 * contiguous (the ops layer ensures it). One row per iteration, double accumulation in a fixed
 * order: deterministic for any thread count. */
#include <math.h>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/cpu_math.h"
#include "backends/cpu/id_errors.h"

#define PAR_MIN 32768

/* Targets are validated before any row is computed, so a bad id is reported by the first
 * offending row (deterministically) and nothing is written. */
static spin_status check_targets(const char *kname, const int32_t *t, int64_t n, int64_t v, int64_t ignore) {
    for (int64_t r = 0; r < n; r++)
        if (t[r] != ignore && (t[r] < 0 || t[r] >= v))
            return spin_bad_target_error(kname, t[r], r, v, ignore);
    return SPIN_OK;
}

/* Row bodies, each compiled per vector ISA (cpu_math.h). */
CPU_VECTOR_CLONES static void ce_row(const float *xr, int64_t v, int32_t t, int64_t ignore, float *logp,
                                     float *lse, float *lsum) {
    float m = -INFINITY;
    double sum = 0;
    for (int64_t j = 0; j < v; j++) {
        m = xr[j] > m ? xr[j] : m;
        sum += xr[j];
    }
    if (m == -INFINITY)
        m = 0.0f; /* keeps x - m at -inf rather than NaN */
    double l = m + log(cpu_sum_exp(xr, v, m));
    *lse = (float)l;
    *lsum = (float)sum;
    *logp = t == ignore ? 0.0f : (float)((double)xr[t] - l);
}

CPU_VECTOR_CLONES static void ce_back_row(const float *xr, int64_t v, int32_t t, int64_t ignore, float lse,
                                          float g, float *dr) {
    if (t == ignore) {
        for (int64_t j = 0; j < v; j++)
            dr[j] = 0.0f;
        return;
    }
    for (int64_t j = 0; j < v; j++)
        dr[j] = -g * cpu_expf(xr[j] - lse);
    dr[t] = (float)((double)g * (1.0 - (double)cpu_expf(xr[t] - lse)));
}

/* logp[r] = x[r, t] - lse[r] (0 when t == ignore), lse[r] = log sum_j exp x[r, j],
 * logit_sum[r] = sum_j x[r, j] */
spin_status cpu_CE_ROWS(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t n, v;
    cpu_rows(&c->in[0], &n, &v);
    const float *x = cpu_f32(&c->in[0]);
    const int32_t *t = cpu_i32(&c->in[1]);
    float *logp = cpu_f32(&c->out[0]), *lse = cpu_f32(&c->out[1]), *lsum = cpu_f32(&c->out[2]);
    int64_t ignore = c->p.i[0];
    SPIN_TRY(check_targets("CE_ROWS", t, n, v, ignore));
#pragma omp parallel for schedule(static) if (n * v > PAR_MIN)
    for (int64_t r = 0; r < n; r++)
        ce_row(x + r * v, v, t[r], ignore, &logp[r], &lse[r], &lsum[r]);
    return SPIN_OK;
}

/* dlogits[r, j] = dlogp[r] * ([j == t] - exp(x[r, j] - lse[r])); 0 rows for ignored targets */
spin_status cpu_CE_ROWS_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    int64_t n, v;
    cpu_rows(&c->in[0], &n, &v);
    const float *x = cpu_f32(&c->in[0]), *lse = cpu_f32(&c->in[2]), *dlogp = cpu_f32(&c->in[3]);
    const int32_t *t = cpu_i32(&c->in[1]);
    float *dx = cpu_f32(&c->out[0]);
    int64_t ignore = c->p.i[0];
    SPIN_TRY(check_targets("CE_ROWS_BACK", t, n, v, ignore));
#pragma omp parallel for schedule(static) if (n * v > PAR_MIN)
    for (int64_t r = 0; r < n; r++)
        ce_back_row(x + r * v, v, t[r], ignore, lse[r], dlogp[r], dx + r * v);
    return SPIN_OK;
}
