/* The optimizers (train/optim.c and the GRAD_SUMSQ / GRAD_CLIP_STAT / RMSPROP_STEP / ADAMW_STEP
 * kernels) against torch: tests/ref/make_optim_golden.py runs torch.optim.RMSprop and AdamW with
 * clip_grad_norm_(1.0) and transformers' schedules over 6 steps of fixed gradients (global norms
 * 3, 0.25, 1.7, 0.05, 12, 0.6: clipped and not) on parameters [7], [13, 5], [1000], and records
 * the learning rates, the grad norms, and the final parameters and state. Also: the bf16 model
 * copy path, a non-finite gradient leaves everything bit-for-bit unchanged, GRAD_SUMSQ gives the
 * same bits for any OpenMP thread count, checkpoint state round trips exactly, and the errors.
 *
 * Host reads: spin_optim_step reads the device once per step. No counter of host reads exists;
 * the argument is in train/optim.c above spin_optim_step (every other call there only queues
 * kernels or drops references). */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "core/dispatch.h"
#include "models/safetensors.h"
#include "ops/ops.h"
#include "train/optim.h"

enum { N_PARAMS = 3, N_STEPS = 6 };

/* Parameters and optimizer state after 6 steps, f32 against torch's f32 with the same operation
 * order: what remains is torch's FMA-contracted vector kernels and its f32 (ours f64) norm
 * reduction, an ulp here and there, compounded over the steps (measured 4e-8 and 1.5e-7). */
#define TOL_PARAM 2e-7
#define TOL_STATE 5e-7
/* The grad norm: ours is the f64 sum of squares rounded once, torch's an f32 norm of f32 norms
 * (measured 1.6e-7: about one f32 ulp). */
#define TOL_NORM 5e-7

static spin_device *dev;
static spin_safetensors *gold;

typedef struct {
    const char *name;
    spin_optim_kind kind;
    double weight_decay; /* parameters 1 and 2; parameter 0 (a "bias") has 0, as HF groups it */
    double max_grad_norm;
    bool bf16;
} run_cfg;

static const run_cfg runs[] = {
    {"rms_lin", SPIN_OPTIM_RMSPROP, 0.0, 1.0, false},    {"rms_cos_wd", SPIN_OPTIM_RMSPROP, 0.01, 1.0, false},
    {"adamw_lin", SPIN_OPTIM_ADAMW, 0.0, 1.0, false},    {"adamw_cos_wd", SPIN_OPTIM_ADAMW, 0.01, 1.0, false},
    {"adamw_noclip", SPIN_OPTIM_ADAMW, 0.1, 0.0, false}, {"rms_bf16", SPIN_OPTIM_RMSPROP, 0.0, 1.0, true},
};
enum { N_RUNS = sizeof runs / sizeof runs[0] };

static spin_tensor *gload(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static spin_tensor *gload(const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    spin_tensor *t = spin_st_load(gold, name, dev, -1, NULL);
    if (!t)
        fail_msg("golden %s: %s", name, spin_last_error());
    return t;
}

static void gload_f64(const char *name, double *out, int64_t n) {
    const spin_st_info *in = spin_st_find(gold, name);
    assert_non_null(in);
    assert_string_equal(in->dtype, "F64");
    assert_int_equal(in->nbytes, (size_t)n * sizeof(double));
    memcpy(out, in->data, in->nbytes);
}

static float *read_f32(spin_tensor *t) {
    int64_t n = spin_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    assert_int_equal(spin_tensor_read_f32(t, v, n), SPIN_OK);
    return v;
}

/* ||a - b|| / ||b|| in double. */
static double nerr(spin_tensor *a, spin_tensor *b) {
    assert_int_equal(spin_tensor_numel(a), spin_tensor_numel(b));
    float *x = read_f32(a), *y = read_f32(b);
    double d = 0, n = 0;
    for (int64_t i = 0; i < spin_tensor_numel(a); i++) {
        d += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        n += (double)y[i] * y[i];
    }
    free(x);
    free(y);
    return n > 0 ? sqrt(d / n) : sqrt(d);
}

static void make_params(const run_cfg *r, spin_tensor **ps) {
    for (int i = 0; i < N_PARAMS; i++) {
        spin_tensor *t = gload(r->bf16 ? "bf16.init.%d" : "init.%d", i);
        if (r->bf16) { /* the golden values are bf16 already: the cast is exact */
            spin_tensor *b = spin_cast(t, SPIN_BF16);
            spin_tensor_release(t);
            t = b;
        }
        spin_tensor_set_requires_grad(t, true);
        ps[i] = t;
    }
}

static void release_all(spin_tensor **ts, int n) {
    for (int i = 0; i < n; i++)
        spin_tensor_release(ts[i]);
}

/* Gives every parameter the golden gradient of `step` (bf16 for the bf16 run, as a bf16 model's
 * backward produces). */
static void seed_grads(const run_cfg *r, spin_tensor **ps, int step) {
    for (int i = 0; i < N_PARAMS; i++) {
        spin_tensor *g = gload(r->bf16 ? "bf16.grad.%d.%d" : "grad.%d.%d", step, i);
        if (r->bf16) {
            spin_tensor *b = spin_cast(g, SPIN_BF16);
            spin_tensor_release(g);
            g = b;
        }
        assert_int_equal(spin_backward_seeded(ps[i], g, false), SPIN_OK);
        spin_tensor_release(g);
    }
}

static spin_optim *make_optim(const run_cfg *r, spin_tensor **ps) {
    spin_optim_config c = spin_optim_defaults(r->kind);
    c.weight_decay = r->weight_decay;
    c.max_grad_norm = r->max_grad_norm;
    spin_optim *o = spin_optim_new(&c, ps, N_PARAMS);
    if (!o)
        fail_msg("spin_optim_new: %s", spin_last_error());
    assert_int_equal(spin_optim_set_weight_decay(o, 0, 0.0), SPIN_OK);
    return o;
}

static spin_tensor *find_state(const spin_optim *o, const char *fmt, int i) {
    char name[64];
    snprintf(name, sizeof name, fmt, i);
    for (int k = 0; k < spin_optim_state_count(o); k++) {
        const char *nm;
        spin_tensor *t;
        assert_int_equal(spin_optim_state_at(o, k, &nm, &t), SPIN_OK);
        if (!strcmp(nm, name))
            return t;
    }
    fail_msg("no optimizer state %s", name);
    return NULL;
}

/* The f32 weights the optimizer updates: the parameter, or its master copy. */
static spin_tensor *master_of(const run_cfg *r, const spin_optim *o, spin_tensor **ps, int i) {
    return r->bf16 ? find_state(o, "master.%d", i) : ps[i];
}

/* Runs steps [from, to) of run r with the golden learning rates, checking each grad norm. */
static void run_steps(const run_cfg *r, spin_optim *o, spin_tensor **ps, int from, int to,
                      double *worst_norm) {
    double lr[N_STEPS];
    float norm[N_STEPS];
    char name[64];
    snprintf(name, sizeof name, "%s.lr", r->name);
    gload_f64(name, lr, N_STEPS);
    spin_tensor *gn = gload("%s.norm", r->name);
    assert_int_equal(spin_tensor_read_f32(gn, norm, N_STEPS), SPIN_OK);
    spin_tensor_release(gn);
    for (int s = from; s < to; s++) {
        seed_grads(r, ps, s);
        spin_optim_result res;
        assert_int_equal(spin_optim_step(o, lr[s], &res), SPIN_OK);
        assert_true(res.finite);
        double e = fabs((double)res.grad_norm - norm[s]) / norm[s];
        if (worst_norm && e > *worst_norm)
            *worst_norm = e;
        assert_true(e <= TOL_NORM);
        for (int i = 0; i < N_PARAMS; i++)
            assert_null(spin_tensor_grad(ps[i])); /* cleared by the step */
    }
}

static void test_golden_runs(void **state) {
    (void)state;
    for (int k = 0; k < N_RUNS; k++) {
        const run_cfg *r = &runs[k];
        int64_t live = spin_tensor_live_count();
        spin_tensor *ps[N_PARAMS];
        make_params(r, ps);
        spin_optim *o = make_optim(r, ps);
        double e_norm = 0, e_param = 0, e_state = 0;
        run_steps(r, o, ps, 0, N_STEPS, &e_norm);
        assert_int_equal(spin_optim_steps(o), N_STEPS);
        for (int i = 0; i < N_PARAMS; i++) {
            spin_tensor *want = gload("%s.final.%d", r->name, i);
            double e = nerr(master_of(r, o, ps, i), want);
            e_param = fmax(e_param, e);
            spin_tensor_release(want);
            const char *names[2] = {"square_avg", NULL};
            if (r->kind == SPIN_OPTIM_ADAMW) {
                names[0] = "exp_avg";
                names[1] = "exp_avg_sq";
            }
            for (int j = 0; j < 2 && names[j]; j++) {
                char fmt[64];
                snprintf(fmt, sizeof fmt, "state.%%d.%s", names[j]);
                want = gload("%s.%s.%d", r->name, names[j], i);
                e_state = fmax(e_state, nerr(find_state(o, fmt, i), want));
                spin_tensor_release(want);
            }
        }
        printf("    %-13s norm rel err %.1e (tol %.0e), params %.1e (tol %.0e), state %.1e (tol %.0e)\n",
               r->name, e_norm, TOL_NORM, e_param, TOL_PARAM, e_state, TOL_STATE);
        assert_true(e_param <= TOL_PARAM);
        assert_true(e_state <= TOL_STATE);
        if (r->bf16) {
            double e_bf = 0;
            for (int i = 0; i < N_PARAMS; i++) {
                /* torch's rounding of its own master: a one-ulp master difference may flip a bf16
                 * rounding (2^-8 relative on that element) */
                spin_tensor *want = gload("%s.final_bf16.%d", r->name, i);
                e_bf = fmax(e_bf, nerr(ps[i], want));
                spin_tensor_release(want);
                /* the model weight is exactly the master rounded to bf16 */
                int64_t n = spin_tensor_numel(ps[i]);
                float *m = read_f32(master_of(r, o, ps, i));
                uint16_t *b = malloc((size_t)n * sizeof *b);
                assert_int_equal(spin_tensor_read(ps[i], b, (size_t)n * sizeof *b), SPIN_OK);
                for (int64_t j = 0; j < n; j++)
                    assert_int_equal(b[j], spin_f32_to_bf16(m[j]));
                free(m);
                free(b);
            }
            printf("    %-13s bf16 model weights vs torch rel err %.1e (tol 1e-3)\n", r->name, e_bf);
            assert_true(e_bf <= 1e-3);
        }
        spin_optim_free(o);
        release_all(ps, N_PARAMS);
        assert_int_equal(spin_tensor_live_count(), live);
    }
}

/* f16 model weights (no torch run): after every step each f16 weight is exactly its f32 master
 * rounded by core/dtype.c, for both optimizers and on whichever device runs the test. */
static void test_f16_model_copy(void **state) {
    (void)state;
    const run_cfg *cases[] = {&runs[0], &runs[3]};
    for (int c = 0; c < 2; c++) {
        spin_tensor *ps[N_PARAMS];
        for (int i = 0; i < N_PARAMS; i++) {
            spin_tensor *t = gload("init.%d", i);
            ps[i] = spin_cast(t, SPIN_F16);
            spin_tensor_release(t);
            spin_tensor_set_requires_grad(ps[i], true);
        }
        spin_optim *o = make_optim(cases[c], ps);
        for (int s = 0; s < 3; s++) {
            for (int i = 0; i < N_PARAMS; i++) {
                spin_tensor *g = gload("grad.%d.%d", s, i);
                assert_int_equal(spin_backward_seeded(ps[i], g, false), SPIN_OK);
                spin_tensor_release(g);
            }
            spin_optim_result res;
            assert_int_equal(spin_optim_step(o, 1e-2, &res), SPIN_OK);
            assert_true(res.finite);
            for (int i = 0; i < N_PARAMS; i++) {
                int64_t n = spin_tensor_numel(ps[i]);
                float *m = read_f32(find_state(o, "master.%d", i));
                uint16_t *h = malloc((size_t)n * sizeof *h);
                assert_int_equal(spin_tensor_read(ps[i], h, (size_t)n * sizeof *h), SPIN_OK);
                int moved = 0;
                for (int64_t j = 0; j < n; j++) {
                    assert_int_equal(h[j], spin_f32_to_f16(m[j]));
                    moved += spin_f16_to_f32(h[j]) != m[j];
                }
                assert_true(moved > 0); /* the master carries precision the f16 copy lacks */
                free(m);
                free(h);
            }
        }
        spin_optim_free(o);
        release_all(ps, N_PARAMS);
    }
}

/* Every byte of the parameters and the optimizer state. */
typedef struct {
    int n;
    void *bytes[16];
    size_t size[16];
} snapshot;

static void snap_add(snapshot *s, spin_tensor *t) {
    size_t sz = (size_t)spin_tensor_numel(t) * spin_dtype_size(spin_tensor_dtype(t));
    assert_true(s->n < 16);
    s->bytes[s->n] = malloc(sz);
    s->size[s->n] = sz;
    assert_int_equal(spin_tensor_read(t, s->bytes[s->n], sz), SPIN_OK);
    s->n++;
}

static snapshot take_snapshot(const spin_optim *o, spin_tensor **ps) {
    snapshot s = {0};
    for (int i = 0; i < N_PARAMS; i++)
        snap_add(&s, ps[i]);
    for (int k = 0; k < spin_optim_state_count(o); k++) {
        spin_tensor *t;
        assert_int_equal(spin_optim_state_at(o, k, NULL, &t), SPIN_OK);
        snap_add(&s, t);
    }
    return s;
}

static void snapshot_free(snapshot *s) {
    for (int i = 0; i < s->n; i++)
        free(s->bytes[i]);
}

/* A NaN or an inf in one gradient: the step reports it and changes nothing (bit-for-bit), the step
 * count stays and the gradients are dropped; the next finite step proceeds. */
static void test_nonfinite_gradient_changes_nothing(void **state) {
    (void)state;
    const run_cfg *cases[] = {&runs[0], &runs[3], &runs[5]};
    for (int c = 0; c < 3; c++) {
        const run_cfg *r = cases[c];
        for (int kind = 0; kind < 2; kind++) {
            spin_tensor *ps[N_PARAMS];
            make_params(r, ps);
            spin_optim *o = make_optim(r, ps);
            run_steps(r, o, ps, 0, 2, NULL);
            snapshot before = take_snapshot(o, ps);

            spin_tensor *g[N_PARAMS];
            for (int i = 0; i < N_PARAMS; i++)
                g[i] = gload("grad.2.%d", i);
            float *v = read_f32(g[1]);
            v[3] = kind == 0 ? NAN : -INFINITY;
            assert_int_equal(spin_tensor_write_f32(g[1], v, spin_tensor_numel(g[1])), SPIN_OK);
            free(v);
            for (int i = 0; i < N_PARAMS; i++) {
                assert_int_equal(spin_backward_seeded(ps[i], g[i], false), SPIN_OK);
                spin_tensor_release(g[i]);
            }
            spin_optim_result res;
            assert_int_equal(spin_optim_step(o, 1e-2, &res), SPIN_OK);
            assert_false(res.finite);
            assert_true(kind == 0 ? isnan(res.grad_norm) : isinf(res.grad_norm));
            assert_int_equal(spin_optim_steps(o), 2);
            for (int i = 0; i < N_PARAMS; i++)
                assert_null(spin_tensor_grad(ps[i]));
            snapshot after = take_snapshot(o, ps);
            assert_int_equal(after.n, before.n);
            for (int i = 0; i < before.n; i++)
                assert_memory_equal(after.bytes[i], before.bytes[i], before.size[i]);
            snapshot_free(&before);
            snapshot_free(&after);

            run_steps(r, o, ps, 2, 3, NULL);
            assert_int_equal(spin_optim_steps(o), 3);
            spin_optim_free(o);
            release_all(ps, N_PARAMS);
        }
    }
}

/* Stopping after 3 steps, saving the state and the weights, and resuming in a fresh optimizer gives
 * the uninterrupted run's result bit for bit (AdamW: the step count feeds the bias correction; the
 * bf16 run: the f32 master must come from the checkpoint, not from the bf16 weights). */
static void test_checkpoint_resume_is_exact(void **state) {
    (void)state;
    const run_cfg *cases[] = {&runs[3], &runs[5]};
    for (int c = 0; c < 2; c++) {
        const run_cfg *r = cases[c];
        spin_tensor *full[N_PARAMS];
        make_params(r, full);
        spin_optim *of = make_optim(r, full);
        run_steps(r, of, full, 0, N_STEPS, NULL);
        snapshot want = take_snapshot(of, full);
        spin_optim_free(of);
        release_all(full, N_PARAMS);

        spin_tensor *ps[N_PARAMS];
        make_params(r, ps);
        spin_optim *o = make_optim(r, ps);
        run_steps(r, o, ps, 0, 3, NULL);
        snapshot mid = take_snapshot(o, ps);
        int n_state = spin_optim_state_count(o);
        char names[16][48];
        spin_tensor *shapes[16];
        for (int k = 0; k < n_state; k++) {
            const char *nm;
            assert_int_equal(spin_optim_state_at(o, k, &nm, &shapes[k]), SPIN_OK);
            snprintf(names[k], sizeof names[k], "%s", nm);
            shapes[k] = spin_tensor_retain(shapes[k]);
        }
        int64_t steps = spin_optim_steps(o);
        spin_optim_free(o);

        spin_tensor *rs[N_PARAMS];
        for (int i = 0; i < N_PARAMS; i++) {
            rs[i] = spin_from_host(dev, spin_tensor_dtype(ps[i]), spin_tensor_ndim(ps[i]),
                                   spin_tensor_shape(ps[i]), mid.bytes[i]);
            spin_tensor_set_requires_grad(rs[i], true);
        }
        spin_optim *o2 = make_optim(r, rs);
        assert_int_equal(spin_optim_state_count(o2), n_state);
        for (int k = 0; k < n_state; k++) {
            spin_tensor *t = spin_from_host(dev, SPIN_F32, spin_tensor_ndim(shapes[k]),
                                            spin_tensor_shape(shapes[k]), mid.bytes[N_PARAMS + k]);
            assert_int_equal(spin_optim_state_load(o2, names[k], t), SPIN_OK);
            spin_tensor_release(t);
            spin_tensor_release(shapes[k]);
        }
        spin_optim_set_steps(o2, steps);
        run_steps(r, o2, rs, 3, N_STEPS, NULL);
        snapshot got = take_snapshot(o2, rs);
        assert_int_equal(got.n, want.n);
        for (int i = 0; i < want.n; i++)
            assert_memory_equal(got.bytes[i], want.bytes[i], want.size[i]);
        snapshot_free(&want);
        snapshot_free(&mid);
        snapshot_free(&got);
        spin_optim_free(o2);
        release_all(ps, N_PARAMS);
        release_all(rs, N_PARAMS);
    }
}

/* GRAD_SUMSQ: the same bits at 1, 2 and 3 OpenMP threads; accumulates over launches; matches a
 * double sum. */
static void test_grad_sumsq_deterministic(void **state) {
    (void)state;
    const int64_t n = 1000003; /* 245 blocks of 4096, the last partial */
    spin_tensor *g = spin_rand_normal(dev, 1, (int64_t[]){n}, 7, 0, 0.5f, 2.0f);
    spin_tensor *g2 = spin_rand_normal(dev, 1, (int64_t[]){4099}, 8, 0, 0.0f, 30.0f);
    spin_tensor *acc = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){2});
    float bits[3][2];
    int saved = omp_get_max_threads();
    for (int t = 0; t < 3; t++) {
        omp_set_num_threads(t + 1);
        assert_int_equal(spin_fill_(acc, 0.0f), SPIN_OK);
        assert_int_equal(spin_launch(SPIN_K_GRAD_SUMSQ, 1, &g, 1, &acc, NULL), SPIN_OK);
        assert_int_equal(spin_launch(SPIN_K_GRAD_SUMSQ, 1, &g2, 1, &acc, NULL), SPIN_OK);
        assert_int_equal(spin_tensor_read(acc, bits[t], sizeof bits[t]), SPIN_OK);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(bits[0], bits[1], sizeof bits[0]);
    assert_memory_equal(bits[0], bits[2], sizeof bits[0]);
    /* the reference: a compensated (Neumaier) double sum, exact to ~2^-52 */
    float *x = read_f32(g), *y = read_f32(g2);
    double ref = 0, comp = 0;
    for (int64_t i = 0; i < n + 4099; i++) {
        double v = i < n ? x[i] : y[i - n], term = v * v, t = ref + term;
        comp += fabs(ref) >= fabs(term) ? (ref - t) + term : (term - t) + ref;
        ref = t;
    }
    ref += comp;
    double got = (double)bits[0][0] + (double)bits[0][1];
    /* the kernel's f64 sums (8 lanes of <= 512 terms per block, then 245 + 2 block partials): at
     * most ~800 * 2^-53 = 1e-13 relative, and hi + lo floats hold 2^-48 */
    printf("    GRAD_SUMSQ rel err vs compensated double sum %.1e (tol 2e-13)\n", fabs(got - ref) / ref);
    assert_true(fabs(got - ref) / ref <= 2e-13);
    free(x);
    free(y);
    spin_tensor_release(g);
    spin_tensor_release(g2);
    spin_tensor_release(acc);
}

/* On an accelerator (SPIN_DEVICE, or the OpenCL build's default device) the four optimizer kernels
 * run on the device itself: no CPU fallback during the golden runs above, bf16 model copy included;
 * GRAD_SUMSQ agrees with the CPU reference and repeats bit for bit. Skipped on the CPU. */
static void test_device_kernels_native(void **state) {
    (void)state;
    spin_device *cpu = spin_cpu_device();
    if (dev == cpu) {
        printf("    the default device is the CPU: nothing to compare\n");
        skip();
    }
    const spin_kernel ks[] = {SPIN_K_GRAD_SUMSQ, SPIN_K_GRAD_CLIP_STAT, SPIN_K_RMSPROP_STEP,
                              SPIN_K_ADAMW_STEP};
    for (int k = 0; k < 4; k++)
        if (dev->fallbacks[ks[k]])
            fail_msg("%s ran %s on the CPU %llu times", dev->name, spin_kernel_name(ks[k]),
                     (unsigned long long)dev->fallbacks[ks[k]]);
    const int64_t n = 300001;
    spin_tensor *gc = spin_rand_normal(cpu, 1, (int64_t[]){n}, 11, 0, 0.0f, 1.0f);
    float *host = read_f32(gc);
    spin_tensor *gd = spin_from_host(dev, SPIN_F32, 1, (int64_t[]){n}, host);
    float sums[3][2];
    for (int r = 0; r < 3; r++) {
        spin_tensor *g = r == 0 ? gc : gd;
        spin_tensor *acc = spin_zeros(spin_tensor_device(g), SPIN_F32, 1, (int64_t[]){2});
        assert_int_equal(spin_launch(SPIN_K_GRAD_SUMSQ, 1, &g, 1, &acc, NULL), SPIN_OK);
        assert_int_equal(spin_tensor_read(acc, sums[r], sizeof sums[r]), SPIN_OK);
        spin_tensor_release(acc);
    }
    assert_memory_equal(sums[1], sums[2], sizeof sums[1]);
    double c = (double)sums[0][0] + sums[0][1], d = (double)sums[1][0] + sums[1][1];
    /* two f64 summation orders of 3e5 squares, each within ~1e-13 (see the CPU test) */
    printf("    %s GRAD_SUMSQ vs CPU rel err %.1e (tol 2e-13)\n", dev->name, fabs(d - c) / c);
    assert_true(fabs(d - c) / c <= 2e-13);
    free(host);
    spin_tensor_release(gc);
    spin_tensor_release(gd);
}

static void clip_stat(float hi, float lo, float max_norm, float out[3]) {
    spin_tensor *acc = spin_from_host(dev, SPIN_F32, 1, (int64_t[]){2}, (float[]){hi, lo});
    spin_tensor *st = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){3});
    spin_kparams p = {.f = {max_norm}};
    assert_int_equal(spin_launch(SPIN_K_GRAD_CLIP_STAT, 1, &acc, 1, &st, &p), SPIN_OK);
    assert_int_equal(spin_tensor_read(st, out, 3 * sizeof(float)), SPIN_OK);
    spin_tensor_release(acc);
    spin_tensor_release(st);
}

/* GRAD_CLIP_STAT by hand: coef = min(1, max_norm * (1 / (norm + 1e-6))) in f32, as torch evaluates
 * max_norm / (total_norm + 1e-6); no clipping for max_norm <= 0; finite flag. */
static void test_clip_stat(void **state) {
    (void)state;
    float s[3];
    clip_stat(16.0f, 0.0f, 1.0f, s);
    assert_true(s[0] == 4.0f && s[2] == 1.0f);
    assert_true(s[1] == (1.0f / (4.0f + 1e-6f)) * 1.0f);
    clip_stat(16.0f, 0.0f, 0.0f, s); /* no clipping */
    assert_true(s[0] == 4.0f && s[1] == 1.0f && s[2] == 1.0f);
    clip_stat(0.25f, 0.0f, 1.0f, s); /* norm 0.5 below the clip norm */
    assert_true(s[0] == 0.5f && s[1] == 1.0f && s[2] == 1.0f);
    clip_stat(0.0f, 0.0f, 1.0f, s); /* no gradient signal: coef 1, finite */
    assert_true(s[0] == 0.0f && s[1] == 1.0f && s[2] == 1.0f);
    clip_stat(9.0f, 1e-7f, 2.5f, s); /* lo takes part: sqrt(9 + 1e-7) */
    assert_true(s[0] == (float)sqrt(9.0 + (double)1e-7f));
    assert_true(s[1] == (1.0f / (s[0] + 1e-6f)) * 2.5f);
    clip_stat(NAN, 0.0f, 1.0f, s);
    assert_true(isnan(s[0]) && s[2] == 0.0f);
    clip_stat(INFINITY, 0.0f, 1.0f, s);
    assert_true(isinf(s[0]) && s[2] == 0.0f);
}

static void test_names_and_defaults(void **state) {
    (void)state;
    spin_optim_kind k;
    const char *adamw[] = {"adamw_torch", "adamw_hf", "adamw_torch_fused", "adamw"};
    assert_int_equal(spin_optim_kind_from_name("rmsprop", &k), SPIN_OK);
    assert_int_equal(k, SPIN_OPTIM_RMSPROP);
    for (int i = 0; i < 4; i++) {
        k = SPIN_OPTIM_RMSPROP;
        assert_int_equal(spin_optim_kind_from_name(adamw[i], &k), SPIN_OK);
        assert_int_equal(k, SPIN_OPTIM_ADAMW);
    }
    assert_int_equal(spin_optim_kind_from_name("adafactor", &k), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "adafactor"));
    assert_non_null(strstr(spin_last_error(), "rmsprop"));
    assert_non_null(strstr(spin_last_error(), "adamw_torch"));
    assert_int_equal(spin_optim_kind_from_name("RMSprop", &k), SPIN_ERR_INVALID);

    spin_optim_config r = spin_optim_defaults(SPIN_OPTIM_RMSPROP), a = spin_optim_defaults(SPIN_OPTIM_ADAMW);
    assert_int_equal(r.kind, SPIN_OPTIM_RMSPROP);
    assert_true(r.alpha == 0.99 && r.eps == 1e-8 && r.weight_decay == 0.0 && r.max_grad_norm == 1.0);
    assert_int_equal(a.kind, SPIN_OPTIM_ADAMW);
    assert_true(a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8 && a.weight_decay == 0.0 &&
                a.max_grad_norm == 1.0);
}

static void test_errors(void **state) {
    (void)state;
    int64_t live = spin_tensor_live_count();
    spin_tensor *ps[N_PARAMS];
    make_params(&runs[2], ps);

    spin_optim_config bad = spin_optim_defaults(SPIN_OPTIM_ADAMW);
    bad.beta1 = 1.0;
    assert_null(spin_optim_new(&bad, ps, N_PARAMS));
    assert_non_null(strstr(spin_last_error(), "betas"));
    bad = spin_optim_defaults(SPIN_OPTIM_RMSPROP);
    bad.eps = -1;
    assert_null(spin_optim_new(&bad, ps, N_PARAMS));
    assert_non_null(strstr(spin_last_error(), "eps"));

    spin_tensor *t = spin_transpose(ps[1], 0, 1); /* not contiguous */
    spin_tensor *withview[N_PARAMS] = {ps[0], t, ps[2]};
    spin_optim_config c = spin_optim_defaults(SPIN_OPTIM_ADAMW);
    assert_null(spin_optim_new(&c, withview, N_PARAMS));
    assert_non_null(strstr(spin_last_error(), "parameter 1"));
    spin_tensor_release(t);

    spin_optim *o = spin_optim_new(&c, ps, N_PARAMS);
    assert_non_null(o);
    assert_int_equal(spin_optim_set_weight_decay(o, 3, 0.1), SPIN_ERR_INVALID);
    assert_int_equal(spin_optim_set_weight_decay(o, 0, -0.1), SPIN_ERR_INVALID);
    spin_optim_result res;
    assert_int_equal(spin_optim_step(o, -1e-3, &res), SPIN_ERR_INVALID);
    /* no gradients: nothing runs, nothing counts */
    assert_int_equal(spin_optim_step(o, 1e-3, &res), SPIN_OK);
    assert_true(res.finite && res.grad_norm == 0.0f);
    assert_int_equal(spin_optim_steps(o), 0);

    const char *nm;
    assert_int_equal(spin_optim_state_count(o), 2 * N_PARAMS);
    assert_int_equal(spin_optim_state_at(o, 2 * N_PARAMS, &nm, NULL), SPIN_ERR_INVALID);
    spin_tensor *wrong = spin_zeros(dev, SPIN_F32, 2, (int64_t[]){5, 13});
    assert_int_equal(spin_optim_state_load(o, "state.1.exp_avg_sq", wrong), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "state.1.exp_avg_sq"));
    assert_int_equal(spin_optim_state_load(o, "state.1.square_avg", wrong), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "state.1.square_avg"));
    spin_tensor_release(wrong);
    spin_optim_free(o);
    release_all(ps, N_PARAMS);
    assert_int_equal(spin_tensor_live_count(), live);
}

static int setup(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/train/optim_golden.safetensors", SPIN_TEST_DATA);
    if (spin_st_open(path, &gold) != SPIN_OK) {
        fprintf(stderr, "%s\n", spin_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    spin_st_close(gold);
    return 0;
}

int main(void) {
    dev = spin_init();
    if (!dev) {
        fprintf(stderr, "%s\n", spin_last_error());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_runs),
        cmocka_unit_test(test_f16_model_copy),
        cmocka_unit_test(test_nonfinite_gradient_changes_nothing),
        cmocka_unit_test(test_checkpoint_resume_is_exact),
        cmocka_unit_test(test_grad_sumsq_deterministic),
        cmocka_unit_test(test_device_kernels_native),
        cmocka_unit_test(test_clip_stat),
        cmocka_unit_test(test_names_and_defaults),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
