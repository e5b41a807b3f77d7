#include "tests/harness/opcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/device.h"
#include "core/rng.h"
#include "core/scope.h"

#define MAX_FD_ELEMS 384

int64_t opc_numel(const opc_input *in) {
    int64_t n = 1;
    for (int i = 0; i < in->ndim; i++)
        n *= in->shape[i];
    return n;
}

static uint64_t hash_str(uint64_t h, const char *s) {
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Input values, rounded to what the f32 device will hold. */
static void make_values(const opcase *c, int idx, double *v, int64_t n) {
    const opc_input *in = &c->in[idx];
    if (in->init) {
        in->init(c, idx, v, n);
    } else {
        uint64_t seed = hash_str(hash_str(14695981039346656037ull, c->op), c->params) + (uint64_t)idx;
        float lo = in->lo, hi = in->hi;
        if (lo == 0 && hi == 0)
            lo = -1, hi = 1;
        for (int64_t i = 0; i < n; i++) {
            double u = spin_rng_uniform(seed, (uint64_t)i);
            v[i] = in->dtype == SPIN_I32 ? floor(lo + u * (hi - lo)) : lo + u * (hi - lo);
        }
    }
    for (int64_t i = 0; i < n; i++)
        v[i] = (double)(float)v[i];
}

/* Creates input idx on dev with the requested layout. */
static spin_tensor *make_input(spin_device *dev, const opcase *c, int idx, const double *v) {
    const opc_input *in = &c->in[idx];
    int64_t n = opc_numel(in), sh[4];
    memcpy(sh, in->shape, sizeof sh);
    spin_scope_manual_begin();
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    for (int64_t i = 0; i < n; i++)
        f[i] = (float)v[i];
    spin_tensor *base = NULL, *t = NULL;
    int nd = in->ndim;
    if (in->layout == OPC_TRANSPOSED && nd >= 2) {
        int64_t bs[4];
        memcpy(bs, sh, sizeof bs);
        bs[nd - 1] = sh[nd - 2];
        bs[nd - 2] = sh[nd - 1];
        base = spin_tensor_new(dev, in->dtype, nd, bs);
        int64_t st[4];
        memcpy(st, spin_tensor_strides(base), sizeof st);
        int64_t tmp = st[nd - 1];
        st[nd - 1] = st[nd - 2];
        st[nd - 2] = tmp;
        t = spin_tensor_view_of(base, nd, sh, st, 0);
    } else if (in->layout == OPC_SLICED && nd >= 1) {
        int64_t bs[4];
        memcpy(bs, sh, sizeof bs);
        bs[nd - 1] += 5;
        base = spin_tensor_new(dev, in->dtype, nd, bs);
        float *nanfill = malloc((size_t)spin_tensor_numel(base) * sizeof *nanfill);
        for (int64_t i = 0; i < spin_tensor_numel(base); i++)
            nanfill[i] = NAN; /* must not be read */
        spin_tensor_write_f32(base, nanfill, spin_tensor_numel(base));
        free(nanfill);
        t = spin_tensor_view_of(base, nd, sh, spin_tensor_strides(base), 2);
    } else {
        t = spin_tensor_new(dev, in->dtype, nd, sh);
    }
    spin_tensor_write_f32(t, f, n);
    spin_tensor_release(base);
    free(f);
    spin_scope_manual_end();
    return spin_scope_adopt(t);
}

static double norm2(const double *a, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * a[i];
    return sqrt(s);
}

/* Normalised error and the index of the worst element. */
static double nerr(const double *got, const double *want, int64_t n, int64_t *worst) {
    double d = 0, w = 0;
    *worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = got[i] - want[i];
        d += e * e;
        if (fabs(e) > w)
            w = fabs(e), *worst = i;
    }
    double r = norm2(want, n);
    return r > 1e-30 ? sqrt(d) / r : sqrt(d);
}

typedef struct {
    const opcase *c;
    double **in;
    int64_t out_n;
    double *dy;
    double *tmp;
} fd_ctx;

static double loss_at(fd_ctx *f) {
    f->c->ref(f->c, (const double *const *)f->in, f->tmp);
    double s = 0;
    for (int64_t i = 0; i < f->out_n; i++)
        s += f->dy[i] * f->tmp[i];
    return s;
}

static spin_device *current_device;

spin_device *opc_device(void) {
    return current_device;
}

opc_result opc_check(spin_device *dev, const opcase *c) {
    opc_result r = {0};
    current_device = dev;
    spin_scope_begin();
    double *vals[8] = {0};
    spin_tensor *tin[8] = {0};
    for (int i = 0; i < c->n_in; i++) {
        if (c->in[i].absent)
            continue;
        int64_t n = opc_numel(&c->in[i]);
        vals[i] = malloc((size_t)(n ? n : 1) * sizeof(double));
        make_values(c, i, vals[i], n);
        tin[i] = make_input(dev, c, i, vals[i]);
        if (c->in[i].grad)
            spin_tensor_set_requires_grad(tin[i], true);
    }
    double t0 = now();
    spin_tensor *out = c->run(c, tin);
    if (c->error) {
        /* The CPU fails the call. A device checks ids without a host read and reports a bad one at
         * the next read (backends/kernels/ids.cl), so there the call may succeed and the read of its
         * output must fail; an error that never surfaces fails the case. */
        const char *what = "the call";
        bool failed = !out;
        if (out && dev != spin_cpu_device()) {
            what = "the call and the read of its output";
            int64_t on = spin_tensor_numel(out);
            float *of = malloc((size_t)(on ? on : 1) * sizeof *of);
            failed = spin_tensor_read_f32(out, of, on) != SPIN_OK;
            free(of);
        }
        r.passed = failed && strstr(spin_last_error(), c->error);
        if (!failed)
            snprintf(r.msg, sizeof r.msg, "%s %s: %s succeeded where one must fail with \"%s\"", c->op,
                     c->params, what, c->error);
        else if (!r.passed)
            snprintf(r.msg, sizeof r.msg, "%s %s: failed with \"%s\", expected \"%s\"", c->op, c->params,
                     spin_last_error(), c->error);
        goto done;
    }
    if (!out) {
        if (strstr(spin_last_error(), "not implemented")) {
            r.skipped = true;
            snprintf(r.msg, sizeof r.msg, "%s %s: skipped: %s", c->op, c->params, spin_last_error());
        } else {
            snprintf(r.msg, sizeof r.msg, "%s %s: op failed: %s", c->op, c->params, spin_last_error());
        }
        goto done;
    }
    int64_t on = spin_tensor_numel(out);
    float *of = malloc((size_t)(on ? on : 1) * sizeof *of);
    double *got = malloc((size_t)(on ? on : 1) * sizeof *got),
           *want = calloc((size_t)(on ? on : 1), sizeof *want);
    if (spin_tensor_read_f32(out, of, on) != SPIN_OK) {
        snprintf(r.msg, sizeof r.msg, "%s %s: read failed: %s", c->op, c->params, spin_last_error());
        free(of), free(got), free(want);
        goto done;
    }
    c->ref(c, (const double *const *)vals, want);
    bool ok = true;
    for (int64_t i = 0; i < on && ok; i++) {
        got[i] = of[i];
        if (isfinite(want[i]) && !isfinite(got[i])) {
            snprintf(r.msg, sizeof r.msg, "%s %s: output[%lld] = %g where the reference is %g", c->op,
                     c->params, (long long)i, got[i], want[i]);
            ok = false;
        }
    }
    for (int64_t i = on; i-- > 0;)
        got[i] = of[i];
    free(of);
    int64_t worst = 0;
    if (ok) {
        if (c->exact) {
            for (int64_t i = 0; i < on; i++)
                if (got[i] != want[i]) {
                    snprintf(r.msg, sizeof r.msg,
                             "%s %s: output[%lld] = %g, reference %g (exact match required)", c->op,
                             c->params, (long long)i, got[i], want[i]);
                    ok = false;
                    break;
                }
        } else {
            /* -inf in both (e.g. masked log-probs) counts as equal */
            for (int64_t i = 0; i < on; i++)
                if (isinf(want[i]) && got[i] == want[i])
                    got[i] = want[i] = 0;
            r.fwd_err = nerr(got, want, on, &worst);
            if (!(r.fwd_err <= c->tol)) {
                snprintf(r.msg, sizeof r.msg,
                         "%s %s: forward error %.3g > %.3g; worst output[%lld] = %.8g, reference %.8g", c->op,
                         c->params, r.fwd_err, c->tol, (long long)worst, got[worst], want[worst]);
                ok = false;
            }
        }
    }
    if (ok && c->grad_tol > 0) {
        double *dy = malloc((size_t)(on ? on : 1) * sizeof *dy);
        float *dyf = malloc((size_t)(on ? on : 1) * sizeof *dyf);
        uint64_t seed = hash_str(hash_str(99, c->op), c->params);
        for (int64_t i = 0; i < on; i++)
            dy[i] = dyf[i] = (float)(2.0 * spin_rng_uniform(seed, (uint64_t)i) - 1.0);
        spin_tensor *seed_t = spin_tensor_new(dev, SPIN_F32, spin_tensor_ndim(out), spin_tensor_shape(out));
        spin_tensor_write_f32(seed_t, dyf, on);
        free(dyf);
        if (spin_backward_seeded(out, seed_t, false) != SPIN_OK) {
            snprintf(r.msg, sizeof r.msg, "%s %s: backward failed: %s", c->op, c->params, spin_last_error());
            ok = false;
        }
        fd_ctx f = {c, vals, on, dy, malloc((size_t)(on ? on : 1) * sizeof(double))};
        double eps = c->eps > 0 ? c->eps : 1e-3;
        for (int i = 0; i < c->n_in && ok; i++) {
            if (!c->in[i].grad || !tin[i])
                continue;
            spin_tensor *g = spin_tensor_grad(tin[i]);
            int64_t n = opc_numel(&c->in[i]);
            if (!g) {
                snprintf(r.msg, sizeof r.msg, "%s %s: input %d received no gradient", c->op, c->params, i);
                ok = false;
                break;
            }
            float *gf = malloc((size_t)n * sizeof *gf);
            spin_tensor_read_f32(g, gf, n);
            int64_t m = n < MAX_FD_ELEMS ? n : MAX_FD_ELEMS;
            double *ga = malloc((size_t)m * sizeof *ga), *gn = malloc((size_t)m * sizeof *gn);
            int64_t *at = malloc((size_t)m * sizeof *at);
            for (int64_t s = 0; s < m; s++) {
                int64_t j = n <= MAX_FD_ELEMS ? s : (s * n) / m + (s % 3); /* spread, not aligned */
                if (j >= n)
                    j = n - 1;
                at[s] = j;
                double x0 = vals[i][j];
                vals[i][j] = x0 + eps;
                double lp = loss_at(&f);
                vals[i][j] = x0 - eps;
                double lm = loss_at(&f);
                vals[i][j] = x0;
                gn[s] = (lp - lm) / (2 * eps);
                ga[s] = gf[j];
            }
            int64_t w;
            double e = nerr(ga, gn, m, &w);
            if (e > r.grad_err)
                r.grad_err = e;
            if (!(e <= c->grad_tol)) {
                snprintf(r.msg, sizeof r.msg,
                         "%s %s: gradient of input %d: error %.3g > %.3g; worst element %lld: analytic %.8g, "
                         "numerical %.8g",
                         c->op, c->params, i, e, c->grad_tol, (long long)at[w], ga[w], gn[w]);
                ok = false;
            }
            free(gf), free(ga), free(gn), free(at);
        }
        free(f.tmp);
        free(dy);
    }
    free(got), free(want);
    r.seconds = now() - t0;
    if (ok && spin_alloc_guard_enabled() && spin_device_check_guards(dev) > 0) {
        snprintf(r.msg, sizeof r.msg, "%s %s: a kernel wrote outside its buffer (guard bytes changed)", c->op,
                 c->params);
        ok = false;
    }
    r.passed = ok;
done:
    spin_scope_end();
    for (int i = 0; i < c->n_in; i++)
        free(vals[i]);
    return r;
}

typedef struct {
    const opcase *cases;
    const int *n;
} family;

static const family families[] = {
#define OPC_FAMILY_(name) {opc_cases_##name, &opc_n_##name},
    OPC_FAMILIES(OPC_FAMILY_)
#undef OPC_FAMILY_
};

int opc_case_count(void) {
    int n = 0;
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        n += *families[f].n;
    return n;
}

const opcase *opc_case_at(int i) {
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        if (i < *families[f].n)
            return &families[f].cases[i];
        i -= *families[f].n;
    }
    return NULL;
}
