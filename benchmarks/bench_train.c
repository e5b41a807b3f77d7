/* bench_train: one SPIN training step (collate, policy forward + backward over the 2B rows of B
 * pairs, the sigmoid loss against the opponent's log-probs, RMSProp update: SPIN's defaults) for a
 * SmolLM2-135M-shaped model with random weights, at several sequence lengths, with and without
 * per-block recompute, with the opponent's scores stored (mode b) or computed each step by a frozen
 * reference model in no-grad mode (mode a). Reported per configuration: the median step time,
 * tokens/s, model FLOP utilisation against the best sgemm rate measured in the same run, the step
 * time over the time its GEMMs take at raw-sgemm speed (also measured in the same run), and the
 * peak RSS.
 *
 * Each configuration runs in a process of its own (this program re-executed with --child), so
 * its peak RSS is its own; the parent reads it with wait4. (A plain fork of a process that has run
 * OpenMP would hang in libgomp, hence fork + exec.) See docs/benchmarks.md for the method. */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backends/backends.h"
#include "backends/cpu/cpu_kernels.h"
#include "benchmarks/bench_json.h"
#include "core/device.h"
#include "ops/ops.h"
#include "train/collate.h"
#include "train/optim.h"
#include "train/pref_step.h"
#include "train/trainer.h"

#ifndef SPIN_GIT_COMMIT
#define SPIN_GIT_COMMIT "unknown"
#endif

#define PROG "bench_train"
#define MAX_T 8
#define MAX_ROWS 32
#define RSS_LIMIT_KB (16.0 * 1024 * 1024) /* the 16 GiB the issue asks every configuration to fit in */

typedef struct {
    bool quick, force, no_gemms;
    bool gemms; /* measure the GEMM and peak references (not with --no-gemms) */
    const char *json;
    int64_t seq[MAX_T];
    int n_seq;
    bool mode_a, mode_b, rec_off, rec_on; /* which configurations run */
    int64_t iters, warmup, layers, vocab, batch;
} options;

static options opt;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_train [--quick] [--seq-len N[,N...]] [--mode a|b|a,b] [--recompute off|on|off,on]\n"
            "                   [--iters N] [--warmup N] [--layers N] [--batch N] [--json FILE [--force]]\n"
            "  One SPIN training step (policy forward + backward on the 2B rows of B pairs, sigmoid loss,\n"
            "  RMSProp update) of a SmolLM2-135M-shaped model with random weights: step time, tokens/s,\n"
            "  model FLOP utilisation against the best sgemm rate of this run, step time over the time\n"
            "  of the step's GEMMs at raw-sgemm speed, and peak RSS (each configuration in a process of\n"
            "  its own). Threads from OMP_NUM_THREADS.\n"
            "  --seq-len LIST   sequence lengths (default 256,512; quick 32)\n"
            "  --mode LIST      b: stored opponent scores; a: a frozen reference model run every step\n"
            "                   (default a,b)\n"
            "  --recompute LIST per-block activation recompute off / on (default off,on)\n"
            "  --iters N        timed steps per configuration, the median is reported (default 2; quick 1)\n"
            "  --warmup N       untimed steps first (default 1)\n"
            "  --layers N       decoder layers (default 30; quick 2)\n"
            "  --batch N        pairs per step, i.e. 2N rows (default 8)\n"
            "  --vocab N        vocabulary size (default 49152; quick 8192)\n"
            "  --no-gemms       skip the GEMM and peak references (no MFU, no step/GEMM; for profiling)\n"
            "  --quick          2 layers, vocabulary 8192, T = 32, 1 timed step (a smoke run, seconds)\n"
            "  --json FILE      also write one JSON object per row (atomically; refuses to overwrite FILE\n"
            "                   unless --force)\n"
            "  --help           this text\n");
}

static int64_t arg_i64(const char *s, const char *name, int64_t min) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < min) {
        fprintf(stderr, PROG ": %s expects an integer >= %lld (got '%s')\n", name, (long long)min, s);
        exit(2);
    }
    return v;
}

/* Splits a comma list into words; calls fn(word) for each. */
static void each_word(const char *list, const char *name, void (*fn)(const char *w, const char *name)) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save))
        fn(w, name);
}

static void add_seq(const char *w, const char *name) {
    if (opt.n_seq == MAX_T) {
        fprintf(stderr, PROG ": %s: at most %d lengths\n", name, MAX_T);
        exit(2);
    }
    opt.seq[opt.n_seq++] = arg_i64(w, name, 4);
}

static void add_mode(const char *w, const char *name) {
    if (!strcmp(w, "a"))
        opt.mode_a = true;
    else if (!strcmp(w, "b"))
        opt.mode_b = true;
    else {
        fprintf(stderr, PROG ": %s: unknown mode '%s' (a or b)\n", name, w);
        exit(2);
    }
}

static void add_rec(const char *w, const char *name) {
    if (!strcmp(w, "off"))
        opt.rec_off = true;
    else if (!strcmp(w, "on"))
        opt.rec_on = true;
    else {
        fprintf(stderr, PROG ": %s: expected off or on (got '%s')\n", name, w);
        exit(2);
    }
}

static void smollm2_shape(spin_llama_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
    c->hidden_size = 576;
    c->intermediate_size = 1536;
    c->num_hidden_layers = opt.layers;
    c->num_attention_heads = 9;
    c->num_key_value_heads = 3;
    c->head_dim = 64;
    c->vocab_size = opt.vocab;
    c->max_position_embeddings = 8192;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 100000;
    c->tie_word_embeddings = true;
    c->bos_token_id = 1;
    c->pad_token_id = -1;
    c->eos_token_ids[0] = 2;
    c->n_eos = 1;
}

/* kB value of a "Name:   123 kB" line of /proc/self/status; -1 when absent. */
static long status_kb(const char *name) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t n = strlen(name);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, name, n) && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

/* User + system CPU seconds of this process so far. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One configuration: its sequence length, recompute, and mode a (reference model) or b. */
typedef struct {
    int64_t T;
    bool recompute, mode_a;
} config;

/* ------------------------------------------------------------------------------------------ */
/* GEMMs at raw-sgemm speed */

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

/* GEMM buffers are mapped and unmapped directly, so their pages leave the process as soon as a
 * measurement is done (malloc may keep freed memory, which would then count in the next step's
 * peak RSS). */
static float *buf_new(size_t n, float v) {
    void *p = mmap(NULL, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        fprintf(stderr, PROG ": out of host memory (%zu floats)\n", n);
        exit(1);
    }
    float *f = p;
    for (size_t i = 0; i < n; i++)
        f[i] = v * (float)(i % 7 + 1);
    return f;
}

static void buf_free(float *p, size_t n) {
    munmap(p, n * sizeof(float));
}

/* Each GEMM reference is timed until this much timed work (and at least 3 runs) */
static double min_timed_s(void) {
    return opt.quick ? 0.01 : 0.1;
}

/* Best seconds of C[m, n] = op(A) op(B) (+ beta C), row-major, as the CPU backend's MATMUL calls
 * it (op(A) is [m, k], op(B) is [k, n]). Warm-up, then at least 3 runs and min_timed_s(). */
static double sgemm_seconds(int ta, int tb, int m, int n, int k, float beta) {
    cpu_sgemm_fn gemm = cpu_blas_sgemm();
    float *a = buf_new((size_t)m * k, 0.01f), *b = buf_new((size_t)k * n, 0.01f),
          *c = buf_new((size_t)m * n, 0);
    int lda = ta == TRANS ? m : k, ldb = tb == TRANS ? k : n;
    double best = INFINITY, total = 0;
    for (int r = 0; r < 50 && (r < 4 || total < min_timed_s()); r++) {
        double t0 = omp_get_wtime();
        gemm(ROW_MAJOR, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, n);
        double s = omp_get_wtime() - t0;
        if (r > 0) {
            total += s;
            best = s < best ? s : best;
        }
    }
    buf_free(a, (size_t)m * k);
    buf_free(b, (size_t)k * n);
    buf_free(c, (size_t)m * n);
    return best;
}

/* The forward GEMM of y = x W^T (x [M, K], W [N, K]) and its two backward GEMMs:
 * dx = dy W ([M, N] [N, K]) and dW = dy^T x ([N, M] [M, K]). */
static double linear_fwd(int M, int K, int N) {
    return sgemm_seconds(NO_TRANS, TRANS, M, N, K, 0.0f);
}
static double linear_bwd(int M, int K, int N) {
    return sgemm_seconds(NO_TRANS, NO_TRANS, M, K, N, 0.0f) + sgemm_seconds(TRANS, NO_TRANS, N, K, M, 0.0f);
}

/* Attention's GEMMs for `tasks` (row, query head) pairs at T x T x D, each single-threaded with
 * the pairs spread over the OpenMP threads (as backends/cpu/cpu_attention.c runs them; OpenBLAS
 * runs one thread inside an OpenMP region). Forward: S = Q K^T, O = P V. Backward: S again (the
 * kernel recomputes P from the log-sum-exp), dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q.
 * The full T x T products are timed and scaled by the causal share T(T+1)/2 / T^2. */
static double attn_seconds(int tasks, int T, int D, bool backward) {
    cpu_sgemm_fn gemm = cpu_blas_sgemm();
    int nt = omp_get_max_threads();
    float **bufs = calloc((size_t)nt, sizeof *bufs);
    if (!bufs)
        exit(1);
    size_t td = (size_t)T * D, tt = (size_t)T * T;
    for (int i = 0; i < nt; i++)
        bufs[i] = buf_new(5 * td + 2 * tt, 0.01f);
    double best = INFINITY, total = 0;
    for (int r = 0; r < 50 && (r < 4 || total < min_timed_s()); r++) {
        double t0 = omp_get_wtime();
#pragma omp parallel num_threads(nt)
        {
            float *q = bufs[omp_get_thread_num()], *k = q + td, *v = k + td, *o = v + td, *x = o + td,
                  *s = x + td, *p = s + tt;
#pragma omp for schedule(dynamic, 1)
            for (int t = 0; t < tasks; t++) {
                gemm(ROW_MAJOR, NO_TRANS, TRANS, T, T, D, 1.0f, q, D, k, D, 0.0f, s, T);
                if (!backward) {
                    gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, T, D, T, 1.0f, s, T, v, D, 0.0f, o, D);
                    continue;
                }
                gemm(ROW_MAJOR, NO_TRANS, TRANS, T, T, D, 1.0f, o, D, v, D, 0.0f, p, T);    /* dP */
                gemm(ROW_MAJOR, TRANS, NO_TRANS, T, D, T, 1.0f, s, T, o, D, 1.0f, x, D);    /* dV */
                gemm(ROW_MAJOR, NO_TRANS, NO_TRANS, T, D, T, 1.0f, p, T, k, D, 1.0f, q, D); /* dQ */
                gemm(ROW_MAJOR, TRANS, NO_TRANS, T, D, T, 1.0f, p, T, q, D, 1.0f, x, D);    /* dK */
            }
        }
        double sec = omp_get_wtime() - t0;
        if (r > 0) {
            total += sec;
            best = sec < best ? sec : best;
        }
    }
    for (int i = 0; i < nt; i++)
        buf_free(bufs[i], 5 * td + 2 * tt);
    free(bufs);
    return best * (double)(T + 1) / (2.0 * T);
}

/* Raw-sgemm seconds of the GEMMs of one step at length T, per part (whole model). */
enum { G_LAYER_FWD, G_LAYER_BWD, G_ATTN_FWD, G_ATTN_BWD, G_HEAD_FWD, G_HEAD_BWD, G_PARTS };
static const char *const gemm_part_names[G_PARTS] = {"layers_fwd",    "layers_bwd", "attention_fwd",
                                                     "attention_bwd", "head_fwd",   "head_bwd"};
typedef struct {
    double s[G_PARTS];
} gemm_parts;

static gemm_parts measure_gemms(const spin_llama_config *c, int64_t T, int64_t chunk) {
    int M = (int)(2 * opt.batch * T), h = (int)c->hidden_size,
        q = (int)(c->num_attention_heads * c->head_dim), kv = (int)(c->num_key_value_heads * c->head_dim),
        f = (int)c->intermediate_size, V = (int)c->vocab_size;
    double L = (double)c->num_hidden_layers;
    gemm_parts g;
    /* q, k, v, o, gate, up, down */
    g.s[G_LAYER_FWD] = L * (linear_fwd(M, h, q) + 2 * linear_fwd(M, h, kv) + linear_fwd(M, q, h) +
                            2 * linear_fwd(M, h, f) + linear_fwd(M, f, h));
    g.s[G_LAYER_BWD] = L * (linear_bwd(M, h, q) + 2 * linear_bwd(M, h, kv) + linear_bwd(M, q, h) +
                            2 * linear_bwd(M, h, f) + linear_bwd(M, f, h));
    int tasks = (int)(2 * opt.batch * c->num_attention_heads);
    g.s[G_ATTN_FWD] = L * attn_seconds(tasks, (int)T, (int)c->head_dim, false);
    g.s[G_ATTN_BWD] = L * attn_seconds(tasks, (int)T, (int)c->head_dim, true);
    /* The fused head + log-softmax (spin_linear_logprob) in chunks of `chunk` rows: forward
     * logits = h W^T; backward recomputes them, then dh = dlogits W and dW += dlogits^T h. */
    int64_t full = M / chunk, rest = M % chunk;
    double hf = (double)full * linear_fwd((int)chunk, h, V) + (rest ? linear_fwd((int)rest, h, V) : 0);
    double hb = (double)full * (sgemm_seconds(NO_TRANS, NO_TRANS, (int)chunk, h, V, 0.0f) +
                                sgemm_seconds(TRANS, NO_TRANS, V, h, (int)chunk, 1.0f)) +
                (rest ? sgemm_seconds(NO_TRANS, NO_TRANS, (int)rest, h, V, 0.0f) +
                            sgemm_seconds(TRANS, NO_TRANS, V, h, (int)rest, 1.0f)
                      : 0);
    g.s[G_HEAD_FWD] = hf;
    g.s[G_HEAD_BWD] = hf + hb;
    return g;
}

/* The GEMM seconds of a configuration's step, as it runs them: the policy forward and backward,
 * plus every block's forward again with recompute, plus the reference forward in mode a. */
static double step_gemm_seconds(const gemm_parts *g, const config *cf) {
    const double *p = g->s;
    double fwd = p[G_LAYER_FWD] + p[G_ATTN_FWD];
    double s = fwd + p[G_HEAD_FWD] + p[G_LAYER_BWD] + p[G_ATTN_BWD] + p[G_HEAD_BWD];
    if (cf->recompute)
        s += fwd;
    if (cf->mode_a)
        s += fwd + p[G_HEAD_FWD];
    return s;
}

/* Best GFLOP/s of a large square sgemm: the machine's peak as this run sees it. */
static double peak_gflops(void) {
    const int n = 2048;
    return 2.0 * n * n * n / sgemm_seconds(NO_TRANS, NO_TRANS, n, n, n, 0.0f) * 1e-9;
}

/* Model FLOPs of a step: 6 N per token for the policy's forward + backward (N: every parameter,
 * the tied embedding counted once as the lm head), plus attention's QK^T and PV over the causal
 * T(T+1)/2 pairs per head and layer, 4 D FLOPs per pair forward and 3x that forward + backward;
 * mode a adds the reference's forward (2 N per token plus attention's forward). Recompute is not
 * counted (it is not model work). */
static double model_flops(const spin_llama_config *c, int64_t params, const config *cf) {
    double rows = 2.0 * (double)opt.batch, T = (double)cf->T, tokens = rows * T;
    double attn_fwd = (double)c->num_hidden_layers * (double)c->num_attention_heads * rows *
                      (T * (T + 1) / 2) * 4.0 * (double)c->head_dim;
    double f = 6.0 * (double)params * tokens + 3.0 * attn_fwd;
    if (cf->mode_a)
        f += 2.0 * (double)params * tokens + attn_fwd;
    return f;
}

/* ------------------------------------------------------------------------------------------ */
/* the child: one configuration */

/* What a child reports back (one line on its pipe). */
typedef struct {
    bool ok;
    char err[300];
    double step_s, step_min_s, fwd_s, bwd_s, opt_s, loss;
    double cpu_share;          /* CPU seconds of the step / (wall seconds x threads): below 1, the process
                                  did not have every core to itself (a busy machine) */
    long rss_setup_kb, hwm_kb; /* after building the models and optimizer; peak of the process */
    int64_t params;
    gemm_parts gemm; /* the step's GEMMs at raw-sgemm speed, median over the timed steps */
    double peak;     /* best 2048^3 sgemm GFLOP/s measured between the steps */
} result;

/* B examples whose rows are all exactly T tokens long: a prompt of T/2 tokens and two responses
 * of T - T/2 tokens (EOS appended by the collator's rules is already counted), random ids. */
static spin_pref_tokens *make_examples(int64_t B, int64_t T, int64_t vocab) {
    spin_pref_tokens *ex = calloc((size_t)B, sizeof *ex);
    if (!ex)
        return NULL;
    int64_t P = T / 2, R = T - P;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < B; i++) {
        spin_pref_tokens *e = &ex[i];
        e->n_prompt = P;
        e->n_chosen = e->n_rejected = R;
        e->prompt = malloc((size_t)P * sizeof(int32_t));
        e->chosen = malloc((size_t)R * sizeof(int32_t));
        e->rejected = malloc((size_t)R * sizeof(int32_t));
        e->prompt_attn = malloc((size_t)P);
        e->chosen_attn = malloc((size_t)R);
        e->rejected_attn = malloc((size_t)R);
        if (!e->prompt || !e->chosen || !e->rejected || !e->prompt_attn || !e->chosen_attn ||
            !e->rejected_attn)
            return NULL;
        int32_t *arr[3] = {e->prompt, e->chosen, e->rejected};
        int64_t len[3] = {P, R, R};
        for (int a = 0; a < 3; a++)
            for (int64_t j = 0; j < len[a]; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                arr[a][j] = 3 + (int32_t)((s >> 33) % (uint64_t)(vocab - 3)); /* no bos/eos/pad ids */
            }
        memset(e->prompt_attn, 1, (size_t)P);
        memset(e->chosen_attn, 1, (size_t)R);
        memset(e->rejected_attn, 1, (size_t)R);
    }
    return ex;
}

/* One step as the trainer runs it (train/trainer.c micro_batch + the update): collate, forward
 * (the reference first in mode a), backward, optimizer. Seconds of each phase into t[0..2]. */
static spin_status one_step(spin_llama *policy, spin_llama *ref, const spin_pref_tokens *const *rows,
                            int64_t B, const spin_collate_opts *co, const float *ref_c, const float *ref_r,
                            const spin_train_config *tc, spin_optim *o, double t[3], double *loss) {
    double t0 = omp_get_wtime();
    spin_collated cb;
    spin_status s = spin_collate_batch(rows, B, co, &cb);
    if (s != SPIN_OK)
        return s;
    spin_pref_ref pr = {.model = ref, .chosen = ref ? NULL : ref_c, .rejected = ref ? NULL : ref_r};
    spin_pref_metrics m;
    spin_tensor *l = NULL;
    spin_scope_begin();
    s = spin_pref_forward(policy, &pr, NULL, &cb, &tc->loss, tc->average_logprob, 1.0f, &l, &m);
    double t1 = omp_get_wtime();
    if (s == SPIN_OK && !isfinite(m.loss))
        s = spin_fail(SPIN_ERR_INVALID, "non-finite loss %g", m.loss);
    if (s == SPIN_OK)
        s = spin_backward(l);
    spin_scope_end();
    spin_collated_free(&cb);
    double t2 = omp_get_wtime();
    spin_optim_result r;
    if (s == SPIN_OK)
        s = spin_optim_step(o, tc->learning_rate, &r);
    if (s == SPIN_OK && !r.finite)
        s = spin_fail(SPIN_ERR_INVALID, "non-finite gradient");
    double t3 = omp_get_wtime();
    t[0] = t1 - t0;
    t[1] = t2 - t1;
    t[2] = t3 - t2;
    *loss = m.loss;
    return s;
}

static int child_run(const config *cf, result *res) {
    spin_device *dev = spin_init();
    if (!dev) {
        snprintf(res->err, sizeof res->err, "no device: %s", spin_last_error());
        return 1;
    }
    spin_llama_config c;
    smollm2_shape(&c);
    spin_llama *policy = NULL, *ref = NULL;
    /* mode a: the opponent is the policy as the iteration started, so the same weights */
    if (spin_llama_init(&c, dev, 1, &policy) != SPIN_OK ||
        (cf->mode_a && spin_llama_init(&c, dev, 1, &ref) != SPIN_OK)) {
        snprintf(res->err, sizeof res->err, "spin_llama_init: %s", spin_last_error());
        spin_llama_free(policy);
        return 1;
    }
    policy->recompute = cf->recompute;
    for (int i = 0; i < policy->n_params; i++)
        res->params += spin_tensor_numel(policy->params[i]);

    const int64_t B = opt.batch, T = cf->T;
    spin_pref_tokens *ex = make_examples(B, T, c.vocab_size);
    const spin_pref_tokens **rows = malloc((size_t)B * sizeof *rows);
    float *scores = malloc((size_t)(2 * B) * sizeof *scores);
    spin_train_config tc = spin_train_defaults();
    spin_optim *o = spin_optim_new(&tc.optim, policy->params, policy->n_params);
    int n = (int)(opt.warmup + opt.iters);
    double *ts = malloc((size_t)((5 + G_PARTS) * n) * sizeof *ts);
    int rc = 1;
    if (!ex || !rows || !scores || !o || !ts) {
        snprintf(res->err, sizeof res->err, "setup: %s", o ? "out of host memory" : spin_last_error());
        goto done;
    }
    for (int64_t i = 0; i < B; i++)
        rows[i] = &ex[i];
    /* stored scores: what a near-uniform model gives a response (their values do not change the
     * work of a step) */
    for (int64_t i = 0; i < 2 * B; i++)
        scores[i] = -(float)(T - T / 2) * logf((float)c.vocab_size);
    spin_collate_opts co = {.max_length = T, .max_prompt_length = T / 2, .eos_id = 2, .pad_id = 2};
    res->rss_setup_kb = status_kb("VmRSS");
    int64_t M = 2 * B * T, chunk = policy->loss_chunk < M ? policy->loss_chunk : M;
    for (int it = 0; it < n; it++) {
        double t[3], c0 = cpu_seconds();
        if (one_step(policy, ref, rows, B, &co, scores, scores + B, &tc, o, t, &res->loss) != SPIN_OK) {
            snprintf(res->err, sizeof res->err, "step %d: %s", it + 1, spin_last_error());
            goto done;
        }
        fprintf(stderr, "    step %d%s: %.2f s (forward %.2f, backward %.2f, optimizer %.2f)\n", it + 1,
                it < opt.warmup ? " (warm-up)" : "", t[0] + t[1] + t[2], t[0], t[1], t[2]);
        if (it >= opt.warmup) {
            int k = it - (int)opt.warmup;
            ts[k] = t[0] + t[1] + t[2];
            ts[n + k] = t[0];
            ts[2 * n + k] = t[1];
            ts[3 * n + k] = t[2];
            ts[4 * n + k] = (cpu_seconds() - c0) / ((t[0] + t[1] + t[2]) * omp_get_max_threads());
            /* Peak RSS before any GEMM buffer existed (the steps are alike, so this is every step's) */
            if (k == 0)
                res->hwm_kb = status_kb("VmHWM");
            if (opt.gemms) {
                /* the references right after each step, so a busy machine slows both alike */
                gemm_parts g = measure_gemms(&c, T, chunk);
                for (int j = 0; j < G_PARTS; j++)
                    ts[(5 + j) * n + k] = g.s[j];
                if (!opt.quick) { /* a smoke run keeps the parent's two peak measurements */
                    double pk = peak_gflops();
                    res->peak = pk > res->peak ? pk : res->peak;
                }
            }
        }
    }
    int k = (int)opt.iters;
    res->step_min_s = INFINITY;
    for (int i = 0; i < k; i++)
        res->step_min_s = ts[i] < res->step_min_s ? ts[i] : res->step_min_s;
    res->step_s = median(ts, k);
    res->fwd_s = median(ts + n, k);
    res->bwd_s = median(ts + 2 * n, k);
    res->opt_s = median(ts + 3 * n, k);
    res->cpu_share = median(ts + 4 * n, k);
    for (int j = 0; opt.gemms && j < G_PARTS; j++)
        res->gemm.s[j] = median(ts + (5 + j) * n, k);
    res->ok = true;
    rc = 0;
done:
    for (int64_t i = 0; ex && i < B; i++)
        spin_pref_tokens_free(&ex[i]);
    free(ex);
    free(rows);
    free(scores);
    free(ts);
    spin_optim_free(o);
    spin_llama_free(ref);
    spin_llama_free(policy);
    return rc;
}

static int child_main(int fd, const config *cf) {
    result r;
    memset(&r, 0, sizeof r);
    int rc = child_run(cf, &r);
    /* parent and child are the same executable: the struct goes over the pipe as it is */
    bool written = write(fd, &r, sizeof r) == (ssize_t)sizeof r;
    return close(fd) != 0 || !written || rc;
}

/* Runs one configuration in a new process (this program with --child) and collects its result
 * and its peak RSS. */
static void spawn(const char *self, const config *cf, result *r) {
    memset(r, 0, sizeof *r);
    int p[2];
    if (pipe(p) != 0) {
        snprintf(r->err, sizeof r->err, "pipe: %s", strerror(errno));
        return;
    }
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    char a[12][32];
    snprintf(a[0], 32, "%d", p[1]);
    snprintf(a[1], 32, "%lld", (long long)cf->T);
    snprintf(a[2], 32, "%d", cf->recompute);
    snprintf(a[3], 32, "%s", cf->mode_a ? "a" : "b");
    snprintf(a[4], 32, "%lld", (long long)opt.iters);
    snprintf(a[5], 32, "%lld", (long long)opt.warmup);
    snprintf(a[6], 32, "%lld", (long long)opt.layers);
    snprintf(a[7], 32, "%lld", (long long)opt.vocab);
    snprintf(a[8], 32, "%lld", (long long)opt.batch);
    char *argv[] = {(char *)self, "--child",  a[0], a[1],      a[2], a[3],      "--iters", a[4], "--warmup",
                    a[5],         "--layers", a[6], "--vocab", a[7], "--batch", a[8],      NULL, NULL};
    if (!opt.gemms)
        argv[16] = "--no-gemms";
    else if (opt.quick)
        argv[16] = "--quick";
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        snprintf(r->err, sizeof r->err, "fork: %s", strerror(errno));
        close(p[0]);
        return;
    }
    ssize_t got = 0;
    while (got < (ssize_t)sizeof *r) {
        ssize_t k = read(p[0], (char *)r + got, sizeof *r - (size_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += k;
    }
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (got == (ssize_t)sizeof *r && r->ok && !exited_ok) {
        r->ok = false;
        snprintf(r->err, sizeof r->err, "child exited with status %d", status);
    } else if (got != (ssize_t)sizeof *r) {
        memset(r, 0, sizeof *r);
        if (WIFSIGNALED(status))
            snprintf(r->err, sizeof r->err, "child killed by signal %d%s", WTERMSIG(status),
                     WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "");
        else
            snprintf(r->err, sizeof r->err, "child exited with status %d and no result",
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the parent */

typedef struct {
    config cf;
    result r;
    double gemm_s, flops;
} row;

static row rows[MAX_ROWS];
static int n_rows;

static const char *ok_str(bool ok) {
    return ok ? "PASS" : "MISS";
}

static const char *mode_str(const config *cf) {
    return cf->mode_a ? "a" : "b";
}

static const char *rec_str(const config *cf) {
    return cf->recompute ? "on" : "off";
}

static int write_json(const char *path, spin_device *dev, int threads, double peak, const char *load,
                      const char *load_end, const char *model) {
    bench_json j;
    if (bench_json_open(&j, PROG, path, opt.force))
        return 1;
    FILE *f = j.f;
    bench_json_row_begin(f, dev, threads);
    fprintf(
        f,
        ", \"op\": \"sgemm_peak\", \"metric\": \"GFLOP/s\", \"value\": %.3f, \"shape\": \"2048x2048x2048\"",
        peak);
    fputs(", \"loadavg_start\": ", f);
    bench_json_str(f, load);
    fputs(", \"loadavg_end\": ", f);
    bench_json_str(f, load_end);
    fputs("}\n", f);
    for (int i = 0; i < n_rows; i++) {
        const row *w = &rows[i];
        const result *r = &w->r;
        bench_json_row_begin(f, dev, threads);
        fputs(", \"op\": \"train_step\", \"model\": ", f);
        bench_json_str(f, model);
        fprintf(
            f,
            ", \"seq_len\": %lld, \"pairs\": %lld, \"tokens\": %lld, \"recompute\": %s, \"mode\": \"%s\", "
            "\"metric\": \"s\"",
            (long long)w->cf.T, (long long)opt.batch, (long long)(2 * opt.batch * w->cf.T),
            w->cf.recompute ? "true" : "false", mode_str(&w->cf));
        if (!r->ok) {
            fputs(", \"value\": null, \"error\": ", f);
            bench_json_str(f, r->err);
            fputs("}\n", f);
            continue;
        }
        double tokens = 2.0 * (double)opt.batch * (double)w->cf.T;
        fprintf(
            f,
            ", \"value\": %.4f, \"step_min_s\": %.4f, \"forward_s\": %.4f, \"backward_s\": %.4f, "
            "\"optimizer_s\": %.4f, \"warmup\": %lld, \"iters\": %lld, \"tokens_per_s\": %.2f, "
            "\"model_gflop\": %.2f, \"peak_gflops\": %.3f, \"peak_rss_mb\": %.1f, \"setup_rss_mb\": %.1f, "
            "\"params\": %lld, \"loss\": %.6g, \"cpu_share\": %.3f",
            r->step_s, r->step_min_s, r->fwd_s, r->bwd_s, r->opt_s, (long long)opt.warmup,
            (long long)opt.iters, tokens / r->step_s, w->flops * 1e-9, peak, (double)r->hwm_kb / 1024,
            (double)r->rss_setup_kb / 1024, (long long)r->params, r->loss, r->cpu_share);
        if (opt.gemms) {
            fprintf(f, ", \"mfu\": %.4f, \"gemm_s\": %.4f, \"step_over_gemm\": %.4f",
                    w->flops / r->step_s / (peak * 1e9), w->gemm_s, r->step_s / w->gemm_s);
            for (int k = 0; k < G_PARTS; k++)
                fprintf(f, ", \"gemm_%s_s\": %.4f", gemm_part_names[k], r->gemm.s[k]);
        }
        fputs("}\n", f);
    }
    return bench_json_close(&j);
}

static void read_loadavg(char *buf, size_t n) {
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = 0;
    if (f) {
        if (fgets(buf, (int)n, f))
            buf[strcspn(buf, "\n")] = 0;
        fclose(f);
    }
}

static void print_table(double peak) {
    printf("%5s %4s %4s %8s %8s %8s %8s %7s %8s %6s %8s %6s %5s %9s %9s\n", "T", "mode", "rec", "step s",
           "min s", "fwd s", "bwd s", "opt s", "tok/s", "MFU", "GEMM s", "step/G", "cpu", "peak RSS",
           "setup RSS");
    char dash[140];
    memset(dash, '-', sizeof dash - 1);
    dash[sizeof dash - 1] = 0;
    printf("%.*s\n", 124, dash);
    for (int i = 0; i < n_rows; i++) {
        const row *w = &rows[i];
        const result *r = &w->r;
        if (!r->ok) {
            printf("%5lld %4s %4s n/a (%s)\n", (long long)w->cf.T, mode_str(&w->cf), rec_str(&w->cf), r->err);
            continue;
        }
        double tokens = 2.0 * (double)opt.batch * (double)w->cf.T;
        printf("%5lld %4s %4s %8.2f %8.2f %8.2f %8.2f %7.2f %8.1f ", (long long)w->cf.T, mode_str(&w->cf),
               rec_str(&w->cf), r->step_s, r->step_min_s, r->fwd_s, r->bwd_s, r->opt_s, tokens / r->step_s);
        if (opt.gemms)
            printf("%6.3f %8.2f %6.2f ", w->flops / r->step_s / (peak * 1e9), w->gemm_s,
                   r->step_s / w->gemm_s);
        else
            printf("%6s %8s %6s ", "-", "-", "-");
        printf("%5.2f %6.0f MB %6.0f MB\n", r->cpu_share, (double)r->hwm_kb / 1024,
               (double)r->rss_setup_kb / 1024);
    }
    printf(
        "\nstep s: median of the timed steps; MFU = model FLOPs / step time / peak, model FLOPs = 6 N "
        "tokens\n"
        "+ attention (mode a: + 2 N tokens + attention forward); step/G = step time / the step's GEMMs at\n"
        "raw-sgemm speed (recompute and reference forwards included); cpu = the step's CPU seconds /\n"
        "(wall seconds x threads), well below 1 when the process did not have the cores to itself; peak\n"
        "RSS: VmHWM of the configuration's own process.\n");
    if (!opt.gemms)
        return;
    printf("\nGEMM seconds at raw-sgemm speed (median over the steps), per part of the step:\n");
    printf("%5s %4s %4s", "T", "mode", "rec");
    for (int k = 0; k < G_PARTS; k++)
        printf(" %13s", gemm_part_names[k]);
    printf("\n");
    for (int i = 0; i < n_rows; i++) {
        const row *w = &rows[i];
        if (!w->r.ok)
            continue;
        printf("%5lld %4s %4s", (long long)w->cf.T, mode_str(&w->cf), rec_str(&w->cf));
        for (int k = 0; k < G_PARTS; k++)
            printf(" %13.3f", w->r.gemm.s[k]);
        printf("\n");
    }
}

int main(int argc, char **argv) {
    int child_fd = -1;
    config child_cf = {0};
    const char *seq_list = NULL;
    opt.warmup = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--force")) {
            opt.force = true;
        } else if (!strcmp(a, "--no-gemms")) {
            opt.no_gemms = true;
        } else if (!strcmp(a, "--json") && more) {
            opt.json = argv[++i];
        } else if (!strcmp(a, "--seq-len") && more) {
            seq_list = argv[++i];
        } else if (!strcmp(a, "--mode") && more) {
            each_word(argv[++i], a, add_mode);
        } else if (!strcmp(a, "--recompute") && more) {
            each_word(argv[++i], a, add_rec);
        } else if (!strcmp(a, "--iters") && more) {
            opt.iters = arg_i64(argv[++i], a, 1);
        } else if (!strcmp(a, "--warmup") && more) {
            opt.warmup = arg_i64(argv[++i], a, 0);
        } else if (!strcmp(a, "--layers") && more) {
            opt.layers = arg_i64(argv[++i], a, 1);
        } else if (!strcmp(a, "--vocab") && more) {
            opt.vocab = arg_i64(argv[++i], a, 16);
        } else if (!strcmp(a, "--batch") && more) {
            opt.batch = arg_i64(argv[++i], a, 1);
        } else if (!strcmp(a, "--child") && i + 4 < argc) {
            /* internal: --child FD T RECOMPUTE MODE */
            child_fd = (int)arg_i64(argv[i + 1], a, 0);
            child_cf.T = arg_i64(argv[i + 2], a, 4);
            child_cf.recompute = arg_i64(argv[i + 3], a, 0) != 0;
            child_cf.mode_a = !strcmp(argv[i + 4], "a");
            i += 4;
        } else {
            fprintf(stderr, PROG ": bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!opt.iters)
        opt.iters = opt.quick ? 1 : 2;
    if (opt.warmup < 0)
        opt.warmup = 1;
    if (!opt.layers)
        opt.layers = opt.quick ? 2 : 30;
    if (!opt.vocab)
        opt.vocab = opt.quick ? 8192 : 49152;
    if (!opt.batch)
        opt.batch = 8;
    opt.gemms = !opt.no_gemms;
    if (child_fd >= 0)
        return child_main(child_fd, &child_cf);

    if (seq_list)
        each_word(seq_list, "--seq-len", add_seq);
    if (!opt.n_seq)
        opt.seq[opt.n_seq++] = opt.quick ? 32 : 256;
    if (!seq_list && !opt.quick)
        opt.seq[opt.n_seq++] = 512;
    if (!opt.mode_a && !opt.mode_b)
        opt.mode_a = opt.mode_b = true;
    if (!opt.rec_off && !opt.rec_on)
        opt.rec_off = opt.rec_on = true;
    if (opt.json && !opt.force && bench_json_exists(opt.json)) {
        fprintf(stderr, PROG ": %s exists (use --force to overwrite)\n", opt.json);
        return 1;
    }
    spin_device *dev = spin_init();
    if (!dev) {
        fprintf(stderr, PROG ": no device: %s\n", spin_last_error());
        return 1;
    }
    if (strcmp(dev->backend->name, "cpu") != 0)
        fprintf(stderr, PROG ": note: device %s; the GEMM and peak references are the host CPU's\n",
                dev->name);
    int threads = omp_get_max_threads();
    double t_start = omp_get_wtime();
    char load[128], load_end[128];
    read_loadavg(load, sizeof load);
    spin_llama_config c;
    smollm2_shape(&c);
    char model[160];
    snprintf(model, sizeof model, "SmolLM2-135M shape, random weights, %lld layers, vocab %lld",
             (long long)opt.layers, (long long)opt.vocab);
    printf("bench_train  commit %s  backend %s  device %s  threads %d%s\n", SPIN_GIT_COMMIT,
           dev->backend->name, dev->name, threads, opt.quick ? "  (quick)" : "");
    printf("model        %s\n", model);
    printf("blas         %s\n", cpu_blas_describe());
    printf("step         %lld pairs = %lld rows, sigmoid loss beta 0.1, RMSProp (SPIN's defaults); %lld "
           "warm-up + "
           "%lld timed steps\n",
           (long long)opt.batch, (long long)(2 * opt.batch), (long long)opt.warmup, (long long)opt.iters);
    fflush(stdout);
    double peak = 0;
    if (opt.gemms) {
        fprintf(stderr, "  measuring the sgemm peak\n");
        peak = peak_gflops();
    }
    for (int si = 0; si < opt.n_seq; si++)
        for (int mi = 0; mi < 2; mi++) {
            if (!(mi == 0 ? opt.mode_b : opt.mode_a))
                continue;
            for (int ri = 0; ri < 2; ri++) {
                if (!(ri == 0 ? opt.rec_off : opt.rec_on))
                    continue;
                row *w = &rows[n_rows++];
                memset(w, 0, sizeof *w);
                w->cf = (config){.T = opt.seq[si], .recompute = ri == 1, .mode_a = mi == 1};
                fprintf(stderr, "  T=%lld mode %s recompute %s\n", (long long)w->cf.T, mode_str(&w->cf),
                        rec_str(&w->cf));
                spawn(argv[0], &w->cf, &w->r);
                if (!w->r.ok) {
                    fprintf(stderr, "    failed: %s\n", w->r.err);
                    continue;
                }
                w->gemm_s = step_gemm_seconds(&w->r.gemm, &w->cf);
                w->flops = model_flops(&c, w->r.params, &w->cf);
                peak = w->r.peak > peak ? w->r.peak : peak;
            }
        }
    if (opt.gemms) {
        fprintf(stderr, "  measuring the sgemm peak again\n");
        double p1 = peak_gflops();
        peak = p1 > peak ? p1 : peak;
    }
    read_loadavg(load_end, sizeof load_end);
    if (opt.gemms)
        printf("peak         %.1f GFLOP/s (the best 2048^3 sgemm of the run: start, between steps, end)\n",
               peak);
    printf("load         %s at the start, %s at the end (/proc/loadavg)\n\n", load, load_end);
    print_table(peak);
    printf("\n");
    bool all_fit = true, any = false;
    for (int i = 0; i < n_rows; i++) {
        const row *w = &rows[i];
        if (!w->r.ok)
            continue;
        any = true;
        all_fit &= (double)w->r.hwm_kb <= RSS_LIMIT_KB;
        if (w->cf.mode_a || !opt.gemms)
            continue;
        double ratio = w->r.step_s / w->gemm_s, mfu = w->flops / w->r.step_s / (peak * 1e9);
        printf("%s  step <= 1.5 x GEMM time (T=%lld, mode b, recompute %s): %.2f\n", ok_str(ratio <= 1.5),
               (long long)w->cf.T, rec_str(&w->cf), ratio);
        printf("%s  MFU >= 0.50 (goal; T=%lld, mode b, recompute %s): %.3f\n", ok_str(mfu >= 0.5),
               (long long)w->cf.T, rec_str(&w->cf), mfu);
    }
    if (any)
        printf("%s  every configuration's peak RSS <= 16 GiB\n", ok_str(all_fit));
    printf("total %.1f s\n", omp_get_wtime() - t_start);
    int rc = 0;
    if (opt.json)
        rc = write_json(opt.json, dev, threads, peak, load, load_end, model);
    for (int i = 0; i < n_rows; i++)
        if (!rows[i].r.ok)
            rc = 1;
    return rc;
}
