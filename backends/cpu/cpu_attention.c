/* Causal grouped-query attention on the CPU: an online-softmax forward that keeps only the
 * log-sum-exp per query row, and a backward that recomputes the probabilities from it.
 * Every output element is written by exactly one loop iteration in a fixed order, so the results
 * do not depend on the OpenMP thread count (no atomics, no reductions across threads). */
#include <math.h>
#include <stdlib.h>

#include "backends/cpu/cpu_kernels.h"

/* Rows of less work than this run on one thread: thread start-up would cost more. */
#define ATTN_PAR_WORK 32768

typedef struct {
    int64_t B, Hq, Hkv, Tq, Tk, D, group, window;
    float scale;
    const int32_t *qpos;
    const float *kmask; /* NULL: every key valid */
} attn_dims;

static bool view_contiguous(const spin_view *v) {
    int64_t s = 1;
    for (int i = v->ndim - 1; i >= 0; i--) {
        if (v->shape[i] != 1 && v->stride[i] != s)
            return false;
        s *= v->shape[i];
    }
    return true;
}

/* The shapes come from the ops layer, which has validated them; the kernel re-checks only what
 * would make it read out of bounds if another caller got them wrong. */
static spin_status attn_setup(const spin_kcall *c, int qpos_slot, int n_fixed, const char *name,
                              attn_dims *d) {
    const spin_view *q = &c->in[0], *k = &c->in[1];
    if (q->ndim != 4 || k->ndim != 4 || c->in[qpos_slot].ndim != 2)
        return spin_fail(SPIN_ERR_INVALID, "%s: q and k must be 4-D and qpos 2-D", name);
    for (int i = 0; i < c->n_in; i++)
        if (!view_contiguous(&c->in[i]))
            return spin_fail(SPIN_ERR_INVALID, "%s: input %d is not contiguous", name, i);
    for (int i = 0; i < c->n_out; i++)
        if (!view_contiguous(&c->out[i]))
            return spin_fail(SPIN_ERR_INVALID, "%s: output %d is not contiguous", name, i);
    d->B = q->shape[0], d->Hq = q->shape[1], d->Tq = q->shape[2], d->D = q->shape[3];
    d->Hkv = k->shape[1], d->Tk = k->shape[2];
    if (d->Hkv <= 0 || d->Hq % d->Hkv != 0 || k->shape[0] != d->B || k->shape[3] != d->D)
        return spin_fail(SPIN_ERR_INVALID, "%s: q and k shapes disagree", name);
    d->group = d->Hq / d->Hkv;
    d->scale = c->p.f[0];
    d->window = c->p.i[0];
    d->qpos = cpu_i32(&c->in[qpos_slot]);
    d->kmask = c->n_in > n_fixed ? cpu_f32(&c->in[n_fixed]) : NULL;
    return SPIN_OK;
}

/* The visible keys of a query at slot qp form the range [lo, hi] (then filtered by the mask). */
static inline void attn_range(const attn_dims *d, int32_t qp, int64_t *lo, int64_t *hi) {
    *hi = (int64_t)qp < d->Tk - 1 ? (int64_t)qp : d->Tk - 1;
    *lo = d->window > 0 && (int64_t)qp - d->window + 1 > 0 ? (int64_t)qp - d->window + 1 : 0;
}

static inline float dotf(const float *a, const float *b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

spin_status cpu_ATTENTION(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    attn_dims d;
    spin_status st = attn_setup(c, 3, 4, "ATTENTION", &d);
    if (st != SPIN_OK)
        return st;
    const float *q = cpu_f32(&c->in[0]), *k = cpu_f32(&c->in[1]), *v = cpu_f32(&c->in[2]);
    float *o = cpu_f32(&c->out[0]), *lse = cpu_f32(&c->out[1]);
    const int64_t B = d.B, Hq = d.Hq, Tq = d.Tq, Tk = d.Tk, D = d.D;
    const int64_t work = B * Hq * Tq * Tk * D;
#pragma omp parallel for collapse(3) schedule(static) if (work > ATTN_PAR_WORK)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < Tq; i++) {
                const int64_t row = (b * Hq + h) * Tq + i;
                const int64_t kvbase = (b * d.Hkv + h / d.group) * Tk;
                const float *qi = q + row * D;
                const float *mrow = d.kmask ? d.kmask + b * Tk : NULL;
                float *oi = o + row * D;
                int64_t lo, hi;
                attn_range(&d, d.qpos[b * Tq + i], &lo, &hi);
                for (int64_t e = 0; e < D; e++)
                    oi[e] = 0;
                /* Online softmax: oi holds sum exp(s - m) v with the running max m, rescaled
                 * whenever m grows, so no score exceeds exp(0) and nothing overflows. */
                float m = -INFINITY, l = 0;
                for (int64_t j = lo; j <= hi; j++) {
                    if (mrow && mrow[j] == 0.0f)
                        continue;
                    const float *kj = k + (kvbase + j) * D, *vj = v + (kvbase + j) * D;
                    float s = d.scale * dotf(qi, kj, D);
                    if (s > m) {
                        float r = expf(m - s); /* 0 on the first visible key */
                        l *= r;
                        for (int64_t e = 0; e < D; e++)
                            oi[e] *= r;
                        m = s;
                    }
                    float p = expf(s - m);
                    l += p;
                    for (int64_t e = 0; e < D; e++)
                        oi[e] += p * vj[e];
                }
                if (l > 0) {
                    float inv = 1.0f / l;
                    for (int64_t e = 0; e < D; e++)
                        oi[e] *= inv;
                    lse[row] = m + logf(l);
                } else {
                    lse[row] = -INFINITY;
                }
            }
    return SPIN_OK;
}

spin_status cpu_ATTENTION_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    attn_dims d;
    spin_status st = attn_setup(c, 6, 7, "ATTENTION_BACK", &d);
    if (st != SPIN_OK)
        return st;
    const float *q = cpu_f32(&c->in[0]), *k = cpu_f32(&c->in[1]), *v = cpu_f32(&c->in[2]);
    const float *o = cpu_f32(&c->in[3]), *lse = cpu_f32(&c->in[4]), *dout = cpu_f32(&c->in[5]);
    float *dq = cpu_f32(&c->out[0]), *dk = cpu_f32(&c->out[1]), *dv = cpu_f32(&c->out[2]);
    const int64_t B = d.B, Hq = d.Hq, Hkv = d.Hkv, Tq = d.Tq, Tk = d.Tk, D = d.D, G = d.group;
    const int64_t work = B * Hq * Tq * Tk * D;
    /* rowdot[row] = do_i . o_i, the softmax-backward correction shared by dq and dk. */
    float *rowdot = malloc((size_t)(B * Hq * Tq > 0 ? B * Hq * Tq : 1) * sizeof *rowdot);
    if (!rowdot)
        return spin_fail(SPIN_ERR_OOM, "ATTENTION_BACK: no host memory for %lld rows",
                         (long long)(B * Hq * Tq));

        /* dq: each query row gathers over its visible keys. */
#pragma omp parallel for collapse(3) schedule(static) if (work > ATTN_PAR_WORK)
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < Tq; i++) {
                const int64_t row = (b * Hq + h) * Tq + i;
                const int64_t kvbase = (b * Hkv + h / G) * Tk;
                const float *qi = q + row * D, *doi = dout + row * D;
                const float *mrow = d.kmask ? d.kmask + b * Tk : NULL;
                float *dqi = dq + row * D;
                const float Di = dotf(doi, o + row * D, D), L = lse[row];
                rowdot[row] = Di;
                for (int64_t e = 0; e < D; e++)
                    dqi[e] = 0;
                if (L == -INFINITY)
                    continue; /* no visible key: the output was a constant 0 */
                int64_t lo, hi;
                attn_range(&d, d.qpos[b * Tq + i], &lo, &hi);
                for (int64_t j = lo; j <= hi; j++) {
                    if (mrow && mrow[j] == 0.0f)
                        continue;
                    const float *kj = k + (kvbase + j) * D, *vj = v + (kvbase + j) * D;
                    float p = expf(d.scale * dotf(qi, kj, D) - L);
                    float ds = p * (dotf(doi, vj, D) - Di) * d.scale;
                    for (int64_t e = 0; e < D; e++)
                        dqi[e] += ds * kj[e];
                }
            }

            /* dk, dv: each key gathers over the query heads of its group and the queries that see it,
             * in a fixed order, instead of queries scattering into shared keys. */
#pragma omp parallel for collapse(3) schedule(static) if (work > ATTN_PAR_WORK)
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < Hkv; g++)
            for (int64_t j = 0; j < Tk; j++) {
                const int64_t kv = (b * Hkv + g) * Tk + j;
                const float *kj = k + kv * D, *vj = v + kv * D;
                float *dkj = dk + kv * D, *dvj = dv + kv * D;
                for (int64_t e = 0; e < D; e++)
                    dkj[e] = dvj[e] = 0;
                if (d.kmask && d.kmask[b * Tk + j] == 0.0f)
                    continue;
                for (int64_t i = 0; i < Tq; i++) {
                    int64_t lo, hi;
                    attn_range(&d, d.qpos[b * Tq + i], &lo, &hi);
                    if (j < lo || j > hi)
                        continue;
                    for (int64_t h = g * G; h < (g + 1) * G; h++) {
                        const int64_t row = (b * Hq + h) * Tq + i;
                        const float L = lse[row];
                        if (L == -INFINITY)
                            continue;
                        const float *qi = q + row * D, *doi = dout + row * D;
                        float p = expf(d.scale * dotf(qi, kj, D) - L);
                        float ds = p * (dotf(doi, vj, D) - rowdot[row]) * d.scale;
                        for (int64_t e = 0; e < D; e++) {
                            dvj[e] += p * doi[e];
                            dkj[e] += ds * qi[e];
                        }
                    }
                }
            }
    free(rowdot);
    return SPIN_OK;
}
