/* bench_ops: per-op throughput (GFLOP/s or GB/s) on the default device, next to the machine's
 * measured fp32 FMA peak and the raw BLAS sgemm on the same matmul shapes. On a device other than
 * the CPU every row is measured again on the CPU device in the same process, right after the
 * device's run, and both times are printed.
 *
 * Every number is the best of at least 5 timed runs after one untimed warm-up run (runs repeat
 * until 0.2 s of timed work has accumulated); the clock stops only after the device has
 * synchronised. All rows are measured in one process so their ratios compare like with like.
 * An op that is missing from the build, or that fails (e.g. "not implemented yet"), is printed as
 * "n/a (reason)": no number is ever made up. See docs/benchmarks.md. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backends.h"
#include "benchmarks/bench_json.h"
#include "backends/cpu/cpu_kernels.h"
#include "core/autograd.h"
#include "core/device.h"
#include "core/dispatch.h"
#include "core/tensor.h"
#include "ops/ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#else
#define BENCH_X86 0
#endif

#ifndef SPIN_GIT_COMMIT
#define SPIN_GIT_COMMIT "unknown"
#endif

/* Ops still being written elsewhere are referenced weakly: while one is absent from the build its
 * address is NULL and its row says so instead of failing the link. (benchmarks/CMakeLists.txt
 * links spin_ops whole, so an op that exists is always found.) */
#pragma weak spin_attention
#pragma weak spin_rmsnorm
#pragma weak spin_softmax
#pragma weak spin_linear_logprob
#pragma weak spin_logprob_gather

#define MIN_REPS 5
#define MIN_TIMED_S 0.2
#define MAX_REPS 1000

/* ------------------------------------------------------------------------------------------ */
/* options and results */

typedef struct {
    bool quick, force;
    const char *json;
    const char *device; /* --device SPEC; NULL: SPIN_DEVICE, else the build's accelerator */
    char *ops[32];
    int n_ops;
} options;

typedef struct {
    char op[32], group[32], shape[96], metric[12];
    bool ok;
    char err[200];
    double value, seconds;
    bool has_raw;
    double raw, peak; /* raw BLAS GFLOP/s on the same shape; the machine's FMA peak */
    int64_t m, k, n;  /* matmul rows: [m, k] @ [k, n] */
    char note[96];
    /* the same row on the CPU device (only when the device measured is not the CPU) */
    bool cpu_ok;
    double cpu_seconds;
    char cpu_err[200];
    uint64_t fallbacks; /* kernel launches of the device's runs that went to the CPU fallback */
} row;

#define MAX_ROWS 64
static row rows[MAX_ROWS];
static int n_rows;
static options opt;
static spin_device *dev;      /* the device the row being measured runs on */
static spin_device *main_dev; /* the device asked for */
static spin_device *cpu_dev;  /* the CPU, when main_dev is another device; else NULL */

/* A device error surfacing at the wait (a bad id, ids.cl) makes every timing after it meaningless. */
static void sync_dev(void) {
    if (dev->backend->synchronize && dev->backend->synchronize(dev) != SPIN_OK) {
        fprintf(stderr, "%s: synchronize: %s\n", dev->name, spin_last_error());
        exit(1);
    }
}

static bool selected(const char *op, const char *group) {
    if (opt.n_ops == 0)
        return true;
    for (int i = 0; i < opt.n_ops; i++)
        if (!strcmp(opt.ops[i], op) || !strcmp(opt.ops[i], group))
            return true;
    return false;
}

static row *new_row(const char *op, const char *group, const char *shape, const char *metric) {
    if (n_rows == MAX_ROWS) {
        fprintf(stderr, "bench_ops: too many rows\n");
        exit(2);
    }
    row *r = &rows[n_rows++];
    memset(r, 0, sizeof *r);
    snprintf(r->op, sizeof r->op, "%s", op);
    snprintf(r->group, sizeof r->group, "%s", group);
    snprintf(r->shape, sizeof r->shape, "%s", shape);
    snprintf(r->metric, sizeof r->metric, "%s", metric);
    fprintf(stderr, "  measuring %s %s\n", op, shape);
    return r;
}

/* The device against the CPU device, row by row: best times and CPU time / device time (> 1: the
 * device is faster). */
static void print_compare(void) {
    char dcol[40];
    snprintf(dcol, sizeof dcol, "%s ms", main_dev->backend->name);
    printf("\n%s against the CPU device (same process, same inputs, each row on the CPU right after "
           "the device)\n",
           main_dev->name);
    printf("%-16s %-34s %11s %11s %9s  %s\n", "op", "shape", dcol, "cpu ms", "cpu/dev", "note");
    printf("%.*s\n", 108,
           "---------------------------------------------------------------------"
           "---------------------------------------------------------------------");
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        char d[32], c[32], ratio[16];
        snprintf(d, sizeof d, r->ok ? "%.3f" : "n/a", r->seconds * 1e3);
        snprintf(c, sizeof c, r->cpu_ok ? "%.3f" : "n/a", r->cpu_seconds * 1e3);
        snprintf(ratio, sizeof ratio, r->ok && r->cpu_ok ? "%.3f" : "-", r->cpu_seconds / r->seconds);
        char note[440];
        snprintf(note, sizeof note, "%s%s%s%s%s", r->fallbacks ? "device runs used the CPU fallback" : "",
                 r->ok ? "" : " device: ", r->ok ? "" : r->err,
                 r->cpu_ok ? "" : " cpu: ", r->cpu_ok ? "" : r->cpu_err);
        printf("%-16s %-34s %11s %11s %9s  %s\n", r->op, r->shape, d, c, ratio, note);
    }
}

static void print_row(const row *r) {
    if (!r->ok) {
        printf("%-16s %-34s %-8s n/a (%s)\n", r->op, r->shape, r->metric, r->err);
    } else if (r->has_raw) {
        printf("%-16s %-34s %-8s %9.2f %9.3f %9.2f %7.3f %8.3f%s%s\n", r->op, r->shape, r->metric, r->value,
               r->seconds * 1e3, r->raw, r->value / r->raw, r->raw / r->peak, r->note[0] ? "  " : "",
               r->note);
    } else {
        printf("%-16s %-34s %-8s %9.2f %9.3f %9s %7s %8s%s%s\n", r->op, r->shape, r->metric, r->value,
               r->seconds * 1e3, "", "", "", r->note[0] ? "  " : "", r->note);
    }
    fflush(stdout);
}

/* ------------------------------------------------------------------------------------------ */
/* timing */

/* One run: returns the seconds it took, or a negative number on failure (spin_last_error set). */
typedef double (*run_fn)(void *ctx);

typedef struct {
    bool ok;
    double best;
    int reps;
    char err[200];
} timing;

static void set_err(char *dst, size_t size, const char *fallback) {
    const char *e = spin_last_error();
    snprintf(dst, size, "%s", e && *e ? e : fallback);
}

/* Kernel launches the timed runs (warm-up included) sent to the CPU fallback, since MEASURE reset it:
 * input creation is left out, so a row is flagged only when the op itself left the device. */
static uint64_t timed_fallbacks;

/* Warm-up, then at least MIN_REPS timed runs and until MIN_TIMED_S of timed work; best time. */
static timing time_it_(run_fn f, void *ctx) {
    timing t = {0};
    spin_clear_error();
    if (f(ctx) < 0) {
        set_err(t.err, sizeof t.err, "failed");
        return t;
    }
    double total = 0;
    t.best = INFINITY;
    while (t.reps < MIN_REPS || (total < MIN_TIMED_S && t.reps < MAX_REPS)) {
        double s = f(ctx);
        if (s < 0) {
            set_err(t.err, sizeof t.err, "failed");
            return t;
        }
        total += s;
        if (s < t.best)
            t.best = s;
        t.reps++;
    }
    t.ok = true;
    return t;
}

static timing time_it(run_fn f, void *ctx) {
    uint64_t fb0 = spin_fallback_total(dev);
    timing t = time_it_(f, ctx);
    timed_fallbacks += spin_fallback_total(dev) - fb0;
    return t;
}

/* Two functions timed alternately (so drift in clock speed or neighbours hits both alike); fb is
 * the host BLAS, which never launches a kernel. */
static void time_pair_(run_fn fa, void *ca, timing *ta, run_fn fb, void *cb, timing *tb) {
    memset(ta, 0, sizeof *ta);
    memset(tb, 0, sizeof *tb);
    spin_clear_error();
    bool a_ok = fa(ca) >= 0;
    if (!a_ok)
        set_err(ta->err, sizeof ta->err, "failed");
    bool b_ok = fb(cb) >= 0;
    if (!b_ok)
        set_err(tb->err, sizeof tb->err, "failed");
    double total = 0;
    ta->best = tb->best = INFINITY;
    int reps = 0;
    while ((a_ok || b_ok) && (reps < MIN_REPS || (total < 2 * MIN_TIMED_S && reps < MAX_REPS))) {
        if (a_ok) {
            double s = fa(ca);
            if (s < 0) {
                a_ok = false;
                set_err(ta->err, sizeof ta->err, "failed");
            } else {
                total += s;
                if (s < ta->best)
                    ta->best = s;
            }
        }
        if (b_ok) {
            double s = fb(cb);
            if (s < 0) {
                b_ok = false;
                set_err(tb->err, sizeof tb->err, "failed");
            } else {
                total += s;
                if (s < tb->best)
                    tb->best = s;
            }
        }
        reps++;
    }
    ta->ok = a_ok;
    tb->ok = b_ok;
    ta->reps = tb->reps = reps;
}

static void time_pair(run_fn fa, void *ca, timing *ta, run_fn fb, void *cb, timing *tb) {
    uint64_t fb0 = spin_fallback_total(dev);
    time_pair_(fa, ca, ta, fb, cb, tb);
    timed_fallbacks += spin_fallback_total(dev) - fb0;
}

/* ------------------------------------------------------------------------------------------ */
/* fp32 FMA peak: many independent FMA chains per thread, on every OpenMP thread at once */

typedef float (*fma_kernel)(int64_t iters);
typedef struct {
    const char *name;
    fma_kernel fn;
    int flops_per_iter; /* per thread */
} fma_variant;

#define STEP8(f, m, c) \
    a0 = f(a0, m, c);  \
    a1 = f(a1, m, c);  \
    a2 = f(a2, m, c);  \
    a3 = f(a3, m, c);  \
    a4 = f(a4, m, c);  \
    a5 = f(a5, m, c);  \
    a6 = f(a6, m, c);  \
    a7 = f(a7, m, c);
#define STEP8B(f, m, c) \
    b0 = f(b0, m, c);   \
    b1 = f(b1, m, c);   \
    b2 = f(b2, m, c);   \
    b3 = f(b3, m, c);   \
    b4 = f(b4, m, c);   \
    b5 = f(b5, m, c);   \
    b6 = f(b6, m, c);   \
    b7 = f(b7, m, c);
#define STEP8C(f, m, c) \
    c0 = f(c0, m, c);   \
    c1 = f(c1, m, c);   \
    c2 = f(c2, m, c);   \
    c3 = f(c3, m, c);   \
    c4 = f(c4, m, c);   \
    c5 = f(c5, m, c);   \
    c6 = f(c6, m, c);   \
    c7 = f(c7, m, c);

#if BENCH_X86
/* 24 chains of 16 lanes: enough independent work to cover 2 FMA ports x 4-6 cycles latency. */
__attribute__((target("avx512f"))) static float fma_avx512(int64_t iters) {
    __m512 a0 = _mm512_set1_ps(0.10f), a1 = _mm512_set1_ps(0.11f), a2 = _mm512_set1_ps(0.12f),
           a3 = _mm512_set1_ps(0.13f), a4 = _mm512_set1_ps(0.14f), a5 = _mm512_set1_ps(0.15f),
           a6 = _mm512_set1_ps(0.16f), a7 = _mm512_set1_ps(0.17f);
    __m512 b0 = _mm512_set1_ps(0.20f), b1 = _mm512_set1_ps(0.21f), b2 = _mm512_set1_ps(0.22f),
           b3 = _mm512_set1_ps(0.23f), b4 = _mm512_set1_ps(0.24f), b5 = _mm512_set1_ps(0.25f),
           b6 = _mm512_set1_ps(0.26f), b7 = _mm512_set1_ps(0.27f);
    __m512 c0 = _mm512_set1_ps(0.30f), c1 = _mm512_set1_ps(0.31f), c2 = _mm512_set1_ps(0.32f),
           c3 = _mm512_set1_ps(0.33f), c4 = _mm512_set1_ps(0.34f), c5 = _mm512_set1_ps(0.35f),
           c6 = _mm512_set1_ps(0.36f), c7 = _mm512_set1_ps(0.37f);
    const __m512 m = _mm512_set1_ps(0.9999f), k = _mm512_set1_ps(1e-4f);
    for (int64_t i = 0; i < iters; i++) {
        STEP8(_mm512_fmadd_ps, m, k)
        STEP8B(_mm512_fmadd_ps, m, k)
        STEP8C(_mm512_fmadd_ps, m, k)
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                             _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)),
                                       _mm512_add_ps(_mm512_add_ps(b4, b5), _mm512_add_ps(b6, b7))));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                                       _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7))));
    return _mm512_reduce_add_ps(s);
}

/* 12 chains of 8 lanes (16 ymm registers: 12 accumulators + 2 constants). */
__attribute__((target("avx2,fma"))) static float fma_avx2(int64_t iters) {
    __m256 a0 = _mm256_set1_ps(0.10f), a1 = _mm256_set1_ps(0.11f), a2 = _mm256_set1_ps(0.12f),
           a3 = _mm256_set1_ps(0.13f), a4 = _mm256_set1_ps(0.14f), a5 = _mm256_set1_ps(0.15f),
           a6 = _mm256_set1_ps(0.16f), a7 = _mm256_set1_ps(0.17f);
    __m256 b0 = _mm256_set1_ps(0.20f), b1 = _mm256_set1_ps(0.21f), b2 = _mm256_set1_ps(0.22f),
           b3 = _mm256_set1_ps(0.23f);
    const __m256 m = _mm256_set1_ps(0.9999f), k = _mm256_set1_ps(1e-4f);
    for (int64_t i = 0; i < iters; i++) {
        STEP8(_mm256_fmadd_ps, m, k)
        b0 = _mm256_fmadd_ps(b0, m, k);
        b1 = _mm256_fmadd_ps(b1, m, k);
        b2 = _mm256_fmadd_ps(b2, m, k);
        b3 = _mm256_fmadd_ps(b3, m, k);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                             _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

/* Portable: 32 independent scalar multiply-add chains (the compiler may vectorise them; with no
 * FMA instruction a multiply-add still counts as the 2 flops it performs). */
static float fma_portable(int64_t iters) {
    float a[32];
    for (int j = 0; j < 32; j++)
        a[j] = 0.1f + 0.01f * (float)j;
    const float m = 0.9999f, k = 1e-4f;
    for (int64_t i = 0; i < iters; i++)
        for (int j = 0; j < 32; j++)
            a[j] = a[j] * m + k;
    float s = 0;
    for (int j = 0; j < 32; j++)
        s += a[j];
    return s;
}

static volatile float fma_sink;

/* Seconds for one run of `iters` on `threads` threads (all running the kernel at once). */
static double fma_run(fma_kernel fn, int64_t iters, int threads) {
    float sum = 0;
    double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    sum += fn(iters);
    double t1 = omp_get_wtime();
    fma_sink = sum;
    return t1 - t0;
}

/* Best GFLOP/s of one variant on `threads` threads: runs sized to about 0.05 s, best of 10. */
static double fma_gflops(const fma_variant *v, int threads) {
    int64_t iters = 1 << 14;
    fma_run(v->fn, iters, threads); /* warm-up: starts the thread pool, wakes the FPU */
    for (;;) {
        double s = fma_run(v->fn, iters, threads);
        if (s >= 0.02 || iters > ((int64_t)1 << 40)) {
            iters = (int64_t)((double)iters * 0.05 / (s > 1e-6 ? s : 1e-6)) + 1;
            break;
        }
        iters *= 4;
    }
    double best = INFINITY;
    for (int r = 0; r < 2 * MIN_REPS; r++) {
        double s = fma_run(v->fn, iters, threads);
        if (s < best)
            best = s;
    }
    return (double)iters * v->flops_per_iter * threads / best * 1e-9;
}

typedef struct {
    double peak, peak_1t; /* GFLOP/s on all threads and on one */
    char variant[32];
    char detail[160];
} peak_info;

static peak_info measure_peak(int threads) {
    fma_variant vs[3];
    int nv = 0;
#if BENCH_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        vs[nv++] = (fma_variant){"avx512f", fma_avx512, 24 * 16 * 2};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        vs[nv++] = (fma_variant){"avx2+fma", fma_avx2, 12 * 8 * 2};
#endif
    vs[nv++] = (fma_variant){"portable", fma_portable, 32 * 2};
    peak_info p = {0};
    size_t off = 0;
    /* The peak is the best variant: on some CPUs (e.g. AMD Zen 4) 512-bit FMAs are issued as two
     * 256-bit halves and AVX2 reaches the same rate. The portable loop is measured only when no
     * vector variant exists (compiled without -mfma it cannot reach the FMA peak). */
    for (int i = 0; i < nv; i++) {
        if (i > 0 && !strcmp(vs[i].name, "portable"))
            break;
        double g = fma_gflops(&vs[i], threads);
        off += (size_t)snprintf(p.detail + off, sizeof p.detail - off, "%s%s %.1f", i ? ", " : "", vs[i].name,
                                g);
        if (g > p.peak) {
            p.peak = g;
            snprintf(p.variant, sizeof p.variant, "%s", vs[i].name);
            if (threads > 1)
                p.peak_1t = fma_gflops(&vs[i], 1);
            else
                p.peak_1t = g;
        }
    }
    return p;
}

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static spin_tensor *rand_t(int ndim, const int64_t *shape, uint64_t seed) {
    spin_tensor *t = spin_rand_uniform(dev, ndim, shape, seed, 0, -1.0f, 1.0f);
    if (!t) {
        fprintf(stderr, "bench_ops: spin_rand_uniform failed: %s\n", spin_last_error());
        exit(1);
    }
    return t;
}

static spin_tensor *targets_t(int64_t n, int64_t vocab) {
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    if (!ids)
        exit(1);
    uint64_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)vocab);
    }
    spin_tensor *t = spin_from_host(dev, SPIN_I32, 1, &n, ids);
    free(ids);
    if (!t) {
        fprintf(stderr, "bench_ops: spin_from_host failed: %s\n", spin_last_error());
        exit(1);
    }
    return t;
}

static float *host_rand(size_t n, uint64_t seed) {
    size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
    float *p = aligned_alloc(64, bytes);
    if (!p) {
        fprintf(stderr, "bench_ops: out of host memory\n");
        exit(1);
    }
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (float)((double)(s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
    }
    return p;
}

/* An op was not linked into this build. */
static void missing(row *r, const char *fn) {
    r->ok = false;
    snprintf(r->err, sizeof r->err, "%s is not in this build", fn);
}

/* ------------------------------------------------------------------------------------------ */
/* matmul: the op and the raw sgemm */

typedef struct {
    spin_tensor *a, *b;
    bool tb;
} mm_ctx;

static double run_mm(void *p) {
    mm_ctx *c = p;
    spin_scope_begin();
    double t0 = omp_get_wtime();
    spin_tensor *y = spin_matmul(c->a, c->b, false, c->tb);
    sync_dev();
    double t1 = omp_get_wtime();
    spin_scope_end();
    return y ? t1 - t0 : -1;
}

typedef struct {
    int m, n, k;
    bool tb;
    const float *a, *b;
    float *c;
} raw_ctx;

static double run_raw(void *p) {
    raw_ctx *c = p;
    cpu_sgemm_fn gemm = cpu_blas_sgemm();
    enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
    double t0 = omp_get_wtime();
    gemm(ROW_MAJOR, NO_TRANS, c->tb ? TRANS : NO_TRANS, c->m, c->n, c->k, 1.0f, c->a, c->k, c->b,
         c->tb ? c->k : c->n, 0.0f, c->c, c->n);
    double t1 = omp_get_wtime();
    return t1 - t0;
}

static void bench_matmul(const char *op, int64_t m, int64_t k, int64_t n, bool tb, double peak,
                         const char *label) {
    char shape[96];
    if (tb)
        snprintf(shape, sizeof shape, "%lldx%lld @ (%lldx%lld)^T", (long long)m, (long long)k, (long long)n,
                 (long long)k);
    else
        snprintf(shape, sizeof shape, "%lldx%lld @ %lldx%lld", (long long)m, (long long)k, (long long)k,
                 (long long)n);
    row *r = new_row(op, "matmul", shape, "GFLOP/s");
    if (label)
        snprintf(r->note, sizeof r->note, "%s", label);
    double flops = 2.0 * (double)m * (double)n * (double)k;
    r->m = m;
    r->k = k;
    r->n = n;

    spin_no_grad_begin();
    spin_scope_begin();
    int64_t sa[2] = {m, k}, sb[2] = {k, n}, sw[2] = {n, k};
    mm_ctx mc = {rand_t(2, sa, 1), tb ? rand_t(2, sw, 2) : rand_t(2, sb, 2), tb};
    raw_ctx rc = {(int)m, (int)n, (int)k, tb, host_rand((size_t)(m * k), 3), host_rand((size_t)(k * n), 4),
                  NULL};
    rc.c = aligned_alloc(64, ((size_t)(m * n) * sizeof(float) + 63) / 64 * 64);
    if (!rc.c)
        exit(1);
    timing t_op, t_raw;
    time_pair(run_mm, &mc, &t_op, run_raw, &rc, &t_raw);
    free((void *)rc.a);
    free((void *)rc.b);
    free(rc.c);
    spin_scope_end();
    spin_no_grad_end();

    r->peak = peak;
    if (!t_op.ok) {
        snprintf(r->err, sizeof r->err, "%s", t_op.err);
        return;
    }
    r->ok = true;
    r->value = flops / t_op.best * 1e-9;
    r->seconds = t_op.best;
    r->has_raw = t_raw.ok;
    r->raw = t_raw.ok ? flops / t_raw.best * 1e-9 : NAN;
}

/* ------------------------------------------------------------------------------------------ */
/* attention, rmsnorm, softmax, cross-entropy */

typedef struct {
    spin_tensor *q, *k, *v;
} attn_ctx;

static double run_attn(void *p) {
    attn_ctx *c = p;
    spin_attn_opts o = {0};
    spin_scope_begin();
    double t0 = omp_get_wtime();
    spin_tensor *y = spin_attention(c->q, c->k, c->v, NULL, NULL, &o);
    sync_dev();
    double t1 = omp_get_wtime();
    spin_scope_end();
    return y ? t1 - t0 : -1;
}

static void bench_attention(int64_t b, int64_t hq, int64_t hkv, int64_t t, int64_t d) {
    char shape[96];
    snprintf(shape, sizeof shape, "B%lld Hq%lld Hkv%lld T%lld D%lld causal", (long long)b, (long long)hq,
             (long long)hkv, (long long)t, (long long)d);
    row *r = new_row("attention", "attention", shape, "GFLOP/s");
    if (!spin_attention) {
        missing(r, "spin_attention");
        return;
    }
    spin_no_grad_begin();
    spin_scope_begin();
    int64_t sq[4] = {b, hq, t, d}, skv[4] = {b, hkv, t, d};
    attn_ctx c = {rand_t(4, sq, 11), rand_t(4, skv, 12), rand_t(4, skv, 13)};
    timing tm = time_it(run_attn, &c);
    spin_scope_end();
    spin_no_grad_end();
    /* QK^T and PV, 2 flops per multiply-add each, half the pairs visible under the causal mask */
    double flops = 4.0 * (double)b * (double)hq * (double)t * (double)t * (double)d / 2.0;
    if (!tm.ok) {
        snprintf(r->err, sizeof r->err, "%s", tm.err);
        return;
    }
    r->ok = true;
    r->seconds = tm.best;
    r->value = flops / tm.best * 1e-9;
}

typedef struct {
    spin_tensor *x, *w;
} norm_ctx;

static double run_norm(void *p) {
    norm_ctx *c = p;
    spin_scope_begin();
    double t0 = omp_get_wtime();
    spin_tensor *y = spin_rmsnorm(c->x, c->w, 1e-5f);
    sync_dev();
    double t1 = omp_get_wtime();
    spin_scope_end();
    return y ? t1 - t0 : -1;
}

static void bench_rmsnorm(int64_t n, int64_t c) {
    char shape[96];
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)n, (long long)c);
    row *r = new_row("rmsnorm", "rmsnorm", shape, "GB/s");
    snprintf(r->note, sizeof r->note, "bytes = read x + w, write y");
    if (!spin_rmsnorm) {
        missing(r, "spin_rmsnorm");
        return;
    }
    spin_no_grad_begin();
    spin_scope_begin();
    int64_t sx[2] = {n, c};
    norm_ctx ctx = {rand_t(2, sx, 21), rand_t(1, &c, 22)};
    timing tm = time_it(run_norm, &ctx);
    spin_scope_end();
    spin_no_grad_end();
    double bytes = (2.0 * (double)n * (double)c + (double)c) * sizeof(float);
    if (!tm.ok) {
        snprintf(r->err, sizeof r->err, "%s", tm.err);
        return;
    }
    r->ok = true;
    r->seconds = tm.best;
    r->value = bytes / tm.best * 1e-9;
}

static double run_softmax(void *p) {
    spin_tensor *x = p;
    spin_scope_begin();
    double t0 = omp_get_wtime();
    spin_tensor *y = spin_softmax(x);
    sync_dev();
    double t1 = omp_get_wtime();
    spin_scope_end();
    return y ? t1 - t0 : -1;
}

static void bench_softmax(int64_t n, int64_t v) {
    char shape[96];
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)n, (long long)v);
    row *r = new_row("softmax", "softmax", shape, "GB/s");
    snprintf(r->note, sizeof r->note, "bytes = read x, write y");
    if (!spin_softmax) {
        missing(r, "spin_softmax");
        return;
    }
    spin_no_grad_begin();
    spin_scope_begin();
    int64_t sx[2] = {n, v};
    timing tm = time_it(run_softmax, rand_t(2, sx, 31));
    spin_scope_end();
    spin_no_grad_end();
    double bytes = 2.0 * (double)n * (double)v * sizeof(float);
    if (!tm.ok) {
        snprintf(r->err, sizeof r->err, "%s", tm.err);
        return;
    }
    r->ok = true;
    r->seconds = tm.best;
    r->value = bytes / tm.best * 1e-9;
}

typedef struct {
    spin_tensor *h, *w, *tgt;
    int64_t chunk;
} ce_ctx;

static double run_ce(void *p) {
    ce_ctx *c = p;
    spin_scope_begin();
    double t0 = omp_get_wtime();
    spin_tensor *y = spin_linear_logprob(c->h, c->w, c->tgt, -100, c->chunk, NULL, NULL);
    sync_dev();
    double t1 = omp_get_wtime();
    spin_scope_end();
    return y ? t1 - t0 : -1;
}

static void bench_linear_logprob(int64_t n, int64_t c, int64_t v, int64_t chunk) {
    char shape[96];
    snprintf(shape, sizeof shape, "h %lldx%lld, w %lldx%lld", (long long)n, (long long)c, (long long)v,
             (long long)c);
    row *r = new_row("linear_logprob", "cross_entropy", shape, "GFLOP/s");
    if (chunk > 0)
        snprintf(r->note, sizeof r->note, "flops = 2*N*V*C (the matmul); chunk %lld", (long long)chunk);
    else
        snprintf(r->note, sizeof r->note, "flops = 2*N*V*C (the matmul); default chunk");
    if (!spin_linear_logprob) {
        missing(r, "spin_linear_logprob");
        return;
    }
    spin_no_grad_begin();
    spin_scope_begin();
    int64_t sh[2] = {n, c}, sw[2] = {v, c};
    ce_ctx ctx = {rand_t(2, sh, 41), rand_t(2, sw, 42), targets_t(n, v), chunk};
    timing tm = time_it(run_ce, &ctx);
    spin_scope_end();
    spin_no_grad_end();
    double flops = 2.0 * (double)n * (double)v * (double)c;
    if (!tm.ok) {
        snprintf(r->err, sizeof r->err, "%s", tm.err);
        return;
    }
    r->ok = true;
    r->seconds = tm.best;
    r->value = flops / tm.best * 1e-9;
}

typedef struct {
    spin_tensor *logits, *tgt;
} gather_ctx;

static double run_gather(void *p) {
    gather_ctx *c = p;
    spin_scope_begin();
    double t0 = omp_get_wtime();
    spin_tensor *y = spin_logprob_gather(c->logits, c->tgt, -100, NULL);
    sync_dev();
    double t1 = omp_get_wtime();
    spin_scope_end();
    return y ? t1 - t0 : -1;
}

static void bench_logprob_gather(int64_t n, int64_t v) {
    char shape[96];
    snprintf(shape, sizeof shape, "logits %lldx%lld", (long long)n, (long long)v);
    row *r = new_row("logprob_gather", "cross_entropy", shape, "GB/s");
    snprintf(r->note, sizeof r->note, "bytes = read logits once");
    if (!spin_logprob_gather) {
        missing(r, "spin_logprob_gather");
        return;
    }
    spin_no_grad_begin();
    spin_scope_begin();
    int64_t sx[2] = {n, v};
    gather_ctx ctx = {rand_t(2, sx, 51), targets_t(n, v)};
    timing tm = time_it(run_gather, &ctx);
    spin_scope_end();
    spin_no_grad_end();
    double bytes = (double)n * (double)v * sizeof(float);
    if (!tm.ok) {
        snprintf(r->err, sizeof r->err, "%s", tm.err);
        return;
    }
    r->ok = true;
    r->seconds = tm.best;
    r->value = bytes / tm.best * 1e-9;
}

/* ------------------------------------------------------------------------------------------ */
/* oversubscription probe: an OpenMP elementwise op between two BLAS calls (an MLP block), timed
 * as a whole and as separate parts. OpenMP workers that spin after their loop, or OpenBLAS
 * threads that spin after theirs, slow the next phase when both pools share the cores. */

typedef struct {
    spin_tensor *x, *w1, *w2, *hmid;
    int phase; /* 0: the whole block; 1: first matmul; 2: silu; 3: second matmul */
} mix_ctx;

static double run_mix(void *p) {
    mix_ctx *c = p;
    spin_scope_begin();
    double t0 = omp_get_wtime();
    spin_tensor *y = NULL;
    switch (c->phase) {
    case 0: {
        spin_tensor *h = spin_matmul(c->x, c->w1, false, false);
        spin_tensor *a = h ? spin_silu(h) : NULL;
        y = a ? spin_matmul(a, c->w2, false, false) : NULL;
        break;
    }
    case 1: y = spin_matmul(c->x, c->w1, false, false); break;
    case 2: y = spin_silu(c->hmid); break;
    default: y = spin_matmul(c->hmid, c->w2, false, false); break;
    }
    sync_dev();
    double t1 = omp_get_wtime();
    spin_scope_end();
    return y ? t1 - t0 : -1;
}

static void bench_mix(int64_t n, int64_t c, int64_t f) {
    char shape[96];
    snprintf(shape, sizeof shape, "%lldx%lld @%lld, silu, @%lld", (long long)n, (long long)c, (long long)f,
             (long long)c);
    row *r = new_row("mlp_mix", "mix", shape, "GFLOP/s");
    spin_no_grad_begin();
    spin_scope_begin();
    int64_t sx[2] = {n, c}, s1[2] = {c, f}, s2[2] = {f, c}, sh[2] = {n, f};
    mix_ctx ctx = {rand_t(2, sx, 61), rand_t(2, s1, 62), rand_t(2, s2, 63), rand_t(2, sh, 64), 0};
    timing parts[4];
    for (int ph = 0; ph < 4; ph++) {
        ctx.phase = ph;
        parts[ph] = time_it(run_mix, &ctx);
    }
    spin_scope_end();
    spin_no_grad_end();
    double flops = 2.0 * 2.0 * (double)n * (double)c * (double)f; /* matmuls only */
    for (int ph = 0; ph < 4; ph++)
        if (!parts[ph].ok) {
            snprintf(r->err, sizeof r->err, "%s", parts[ph].err);
            return;
        }
    double sum = parts[1].best + parts[2].best + parts[3].best;
    r->ok = true;
    r->seconds = parts[0].best;
    r->value = flops / parts[0].best * 1e-9;
    snprintf(r->note, sizeof r->note, "block/sum of parts %.3f (parts %.3f+%.3f+%.3f ms)",
             parts[0].best / sum, parts[1].best * 1e3, parts[2].best * 1e3, parts[3].best * 1e3);
}

/* ------------------------------------------------------------------------------------------ */
/* output */

static int write_json(const char *path, int threads, const peak_info *pk) {
    bench_json j;
    if (bench_json_open(&j, "bench_ops", path, opt.force))
        return 1;
    FILE *f = j.f;
    for (int i = -1; i < n_rows; i++) {
        const row *r = i >= 0 ? &rows[i] : NULL;
        bench_json_row_begin(f, dev, threads);
        fputs(", \"op\": ", f);
        if (!r) { /* the peak itself, as its own row */
            bench_json_str(f, "fma_peak");
            fputs(", \"shape\": ", f);
            bench_json_str(f, pk->variant);
            fprintf(f, ", \"metric\": \"GFLOP/s\", \"value\": %.3f, \"value_1thread\": %.3f}\n", pk->peak,
                    pk->peak_1t);
            continue;
        }
        bench_json_str(f, r->op);
        fputs(", \"shape\": ", f);
        bench_json_str(f, r->shape);
        fputs(", \"metric\": ", f);
        bench_json_str(f, r->metric);
        if (r->ok)
            fprintf(f, ", \"value\": %.3f, \"time_ms\": %.4f", r->value, r->seconds * 1e3);
        else {
            fputs(", \"value\": null, \"error\": ", f);
            bench_json_str(f, r->err);
        }
        if (cpu_dev) { /* the same row on the CPU device, and the device's CPU fallback launches */
            if (r->cpu_ok)
                fprintf(f, ", \"cpu_time_ms\": %.4f", r->cpu_seconds * 1e3);
            else
                fputs(", \"cpu_time_ms\": null", f);
            fprintf(f, ", \"cpu_fallbacks\": %llu", (unsigned long long)r->fallbacks);
        }
        if (!strcmp(r->group, "matmul")) {
            if (r->has_raw)
                fprintf(f, ", \"raw\": %.3f", r->raw);
            else
                fputs(", \"raw\": null", f);
            fprintf(f, ", \"peak\": %.3f", r->peak);
        }
        fputs("}\n", f);
    }
    return bench_json_close(&j);
}

static void cpu_model(char *buf, size_t size) {
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(buf, size, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

/* Measures one row (a bench_* call, which adds exactly one row) on the device, then, when that is
 * not the CPU, the same row on the CPU device; the CPU's result is folded into the device's row. */
#define MEASURE(call)                                                               \
    do {                                                                            \
        timed_fallbacks = 0;                                                        \
        dev = main_dev;                                                             \
        call;                                                                       \
        rows[n_rows - 1].fallbacks = timed_fallbacks;                               \
        if (cpu_dev) {                                                              \
            dev = cpu_dev;                                                          \
            call;                                                                   \
            dev = main_dev;                                                         \
            const row *c_ = &rows[--n_rows];                                        \
            row *r_ = &rows[n_rows - 1];                                            \
            r_->cpu_ok = c_->ok;                                                    \
            r_->cpu_seconds = c_->seconds;                                          \
            snprintf(r_->cpu_err, sizeof r_->cpu_err, "%s", c_->ok ? "" : c_->err); \
        }                                                                           \
    } while (0)

static void usage(FILE *f) {
    fprintf(f, "usage: bench_ops [--quick] [--device D] [--op NAME[,NAME..]]... [--json FILE [--force]]\n"
               "  Per-op throughput on the default device (SPIN_DEVICE), with the machine's fp32 FMA\n"
               "  peak and the raw BLAS sgemm on the same matmul shapes. Best of >= 5 runs after a\n"
               "  warm-up; threads from OMP_NUM_THREADS. On a device other than the CPU each row is\n"
               "  also measured on the CPU device and a second table compares the two.\n"
               "  --device D     device, e.g. cpu, opencl:0 (default: SPIN_DEVICE, else the build's\n"
               "                 accelerator)\n"
               "  --quick        smaller set for CI (no n=2048, no lm head, 128 tokens for the\n"
               "                 vocabulary-sized ops)\n"
               "  --op NAME      only these rows: matmul, attention, rmsnorm, softmax,\n"
               "                 cross_entropy (= linear_logprob + logprob_gather), linear_logprob,\n"
               "                 logprob_gather, mix (oversubscription probe); repeatable\n"
               "  --json FILE    also write one JSON object per row (written atomically; refuses to\n"
               "                 overwrite FILE unless --force)\n"
               "  --help         this text\n"
               "Columns: value (GFLOP/s or GB/s of the op), ms (best time), raw (GFLOP/s of the BLAS\n"
               "sgemm called directly), op/raw, raw/peak (peak = measured FMA GFLOP/s, all threads).\n");
}

static const char *known_ops[] = {"matmul",         "attention",      "rmsnorm", "softmax", "cross_entropy",
                                  "linear_logprob", "logprob_gather", "mix",     "mlp_mix"};

static int parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--force")) {
            opt.force = true;
        } else if (!strcmp(a, "--device") && i + 1 < argc) {
            opt.device = argv[++i];
        } else if (!strcmp(a, "--json") && i + 1 < argc) {
            opt.json = argv[++i];
        } else if (!strcmp(a, "--op") && i + 1 < argc) {
            char *list = argv[++i];
            for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
                bool known = false;
                for (size_t k = 0; k < sizeof known_ops / sizeof *known_ops; k++)
                    known |= !strcmp(tok, known_ops[k]);
                if (!known) {
                    fprintf(stderr, "bench_ops: unknown op '%s'\n", tok);
                    usage(stderr);
                    return 2;
                }
                if (opt.n_ops < (int)(sizeof opt.ops / sizeof *opt.ops))
                    opt.ops[opt.n_ops++] = tok;
            }
        } else {
            fprintf(stderr, "bench_ops: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    int rc = parse_args(argc, argv);
    if (rc)
        return rc;
    if (opt.json && !opt.force && bench_json_exists(opt.json)) {
        fprintf(stderr, "bench_ops: %s exists (use --force to overwrite)\n", opt.json);
        return 1;
    }
    dev = spin_init();
    if (dev && opt.device)
        dev = spin_device_from_spec(opt.device);
    if (!dev) {
        fprintf(stderr, "bench_ops: no device: %s\n", spin_last_error());
        return 1;
    }
    main_dev = dev;
    cpu_dev = dev == spin_cpu_device() ? NULL : spin_cpu_device();
    int threads = omp_get_max_threads();
    char cpu[160];
    cpu_model(cpu, sizeof cpu);
    double t_start = omp_get_wtime();

    printf("bench_ops  commit %s  backend %s  device %s  threads %d%s\n", SPIN_GIT_COMMIT, dev->backend->name,
           dev->name, threads, opt.quick ? "  (quick)" : "");
    printf("cpu        %s\n", cpu);
    printf("blas       %s\n", cpu_blas_describe());
    if (strcmp(dev->backend->name, "cpu"))
        printf("note       raw and peak are measured on the host CPU, not on %s\n", dev->name);

    /* The peak is measured before and after the rows and the higher value kept: a neighbour's
     * load during one measurement can only make it lower than the machine's true rate. */
    fprintf(stderr, "  measuring fma peak\n");
    peak_info pk = measure_peak(threads);

    if (selected("matmul", "matmul")) {
        int64_t sq[4] = {256, 512, 1024, 2048};
        for (int i = 0; i < 4; i++) {
            if (opt.quick && sq[i] > 1024)
                continue;
            MEASURE(bench_matmul("matmul", sq[i], sq[i], sq[i], false, pk.peak, NULL));
        }
        /* SmolLM2-135M at 512 tokens: hidden 576, 9 query / 3 kv heads of 64, MLP 1536. */
        MEASURE(bench_matmul("matmul", 512, 576, 576, false, pk.peak, "q/o proj"));
        MEASURE(bench_matmul("matmul", 512, 576, 192, false, pk.peak, "k/v proj"));
        MEASURE(bench_matmul("matmul", 512, 576, 1536, false, pk.peak, "gate/up"));
        MEASURE(bench_matmul("matmul", 512, 1536, 576, false, pk.peak, "down"));
        if (!opt.quick) {
            MEASURE(bench_matmul("matmul", 512, 576, 49152, true, pk.peak, "lm head"));
        }
    }
    if (selected("attention", "attention")) {
        MEASURE(bench_attention(1, 9, 3, 512, 64));
    }
    if (selected("rmsnorm", "rmsnorm")) {
        MEASURE(bench_rmsnorm(512, 576));
    }
    int64_t vocab_tokens = opt.quick ? 128 : 512;
    if (selected("softmax", "softmax")) {
        MEASURE(bench_softmax(vocab_tokens, 49152));
    }
    if (selected("linear_logprob", "cross_entropy")) {
        MEASURE(bench_linear_logprob(vocab_tokens, 576, 49152, 0));
    }
    if (selected("logprob_gather", "cross_entropy")) {
        MEASURE(bench_logprob_gather(vocab_tokens, 49152));
    }
    if (selected("mlp_mix", "mix")) {
        MEASURE(bench_mix(512, 576, 1536));
    }

    fprintf(stderr, "  measuring fma peak again\n");
    peak_info pk2 = measure_peak(threads);
    double peak_first = pk.peak;
    if (pk2.peak > pk.peak)
        pk = pk2;
    for (int i = 0; i < n_rows; i++)
        rows[i].peak = pk.peak;
    printf("fma peak   %.1f GFLOP/s on %d threads (%.1f on 1 thread), variant %s [%s]; "
           "higher of %.1f (start) and %.1f (end)\n\n",
           pk.peak, threads, pk.peak_1t, pk.variant, pk.detail, peak_first, pk2.peak);
    printf("%-16s %-34s %-8s %9s %9s %9s %7s %8s\n", "op", "shape", "metric", "value", "ms", "raw", "op/raw",
           "raw/peak");
    printf("%.*s\n", 108,
           "---------------------------------------------------------------------"
           "---------------------------------------------------------------------");
    for (int i = 0; i < n_rows; i++)
        print_row(&rows[i]);
    if (cpu_dev)
        print_compare();

    /* targets */
    bool any_target = false;
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        int64_t m = r->m;
        if (strcmp(r->group, "matmul") || m != r->k || m != r->n || m < 512)
            continue;
        if (!any_target)
            printf("\n");
        any_target = true;
        if (!r->ok || !r->has_raw)
            printf("MISS  matmul op >= 0.90 of raw at n=%lld: not measured (%s)\n", (long long)m,
                   r->ok ? "raw failed" : r->err);
        else
            printf("%s  matmul op >= 0.90 of raw at n=%lld: op/raw = %.3f (%.1f vs %.1f GFLOP/s)\n",
                   r->value / r->raw >= 0.90 ? "PASS" : "MISS", (long long)m, r->value / r->raw, r->value,
                   r->raw);
    }
    if (selected("matmul", "matmul")) {
        const row *r2048 = NULL;
        for (int i = 0; i < n_rows; i++)
            if (!strcmp(rows[i].group, "matmul") && rows[i].m == 2048 && rows[i].k == 2048 &&
                rows[i].n == 2048)
                r2048 = &rows[i];
        if (!r2048)
            printf("SKIP  raw sgemm >= 0.75 of peak on 2 threads at n=2048: n=2048 not run (--quick)\n");
        else if (!r2048->ok || !r2048->has_raw)
            printf("MISS  raw sgemm >= 0.75 of peak on 2 threads at n=2048: raw not measured\n");
        else
            printf("%s  raw sgemm >= 0.75 of peak on 2 threads at n=2048: raw/peak = %.3f (%.1f of "
                   "%.1f GFLOP/s)%s\n",
                   r2048->raw / pk.peak >= 0.75 ? "PASS" : "MISS", r2048->raw / pk.peak, r2048->raw, pk.peak,
                   threads == 2 ? "" : "  [measured with a thread count other than 2]");
    }
    printf("\ntotal %.1f s\n", omp_get_wtime() - t_start);

    if (opt.json)
        return write_json(opt.json, threads, &pk);
    return 0;
}
