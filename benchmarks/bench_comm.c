/* bench_comm (built with -DSPIN_MPI=ON; docs/distributed.md):
 *   1. all-reduce bandwidth of train/comm.h (spin_comm_allreduce on a CPU tensor: staged through a
 *      host copy) against the bare MPI_Allreduce on a host buffer, at several sizes (needs >= 2 ranks);
 *   2. one data-parallel training step (spin_train_run, SPIN sigmoid loss against stored scores,
 *      RMSProp) of a small random Llama: step time and tokens/s at this job's number of ranks, with the
 *      global batch fixed, so `mpirun -np 1` and `mpirun -np 2` give the scaling.
 * Usage: mpirun -np N bench_comm [--quick] [--zero 0|1]
 * Timings are medians; the machine's other load is printed (loadavg) since it moves them. */
#define _DEFAULT_SOURCE
#include <math.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backends.h"
#include "ops/ops.h"
#include "train/comm.h"
#include "train/trainer.h"

static int rank, size;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double loadavg1(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

/* ---- 1. all-reduce bandwidth ---- */
static void bench_allreduce(spin_comm *comm, spin_device *dev, bool quick) {
    const int64_t sizes[] = {1024, 16384, 262144, 1048576, 4194304, 16777216}; /* f32 elements */
    int nsizes = quick ? 4 : 6;
    if (rank == 0)
        printf("all-reduce (sum, f32, %d ranks): median of runs; bus bandwidth = bytes x 2 (n-1)/n / time\n"
               "%12s %14s %14s %12s %12s %8s\n",
               size, "bytes", "MPI_Allreduce", "spin_comm", "MPI GB/s", "comm GB/s", "ratio");
    for (int k = 0; k < nsizes; k++) {
        int64_t n = sizes[k];
        float *h = malloc((size_t)n * sizeof *h);
        for (int64_t i = 0; i < n; i++)
            h[i] = (float)(i % 7) * 0.25f;
        spin_scope_begin();
        spin_tensor *t = spin_from_host(dev, SPIN_F32, 1, &n, h);
        int reps = n >= 4194304 ? (quick ? 3 : 7) : (quick ? 10 : 30);
        double tm[64], tc[64];
        for (int r = -2; r < reps; r++) { /* two warm-up rounds */
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, h, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double t1 = MPI_Wtime();
            MPI_Barrier(MPI_COMM_WORLD);
            double t2 = MPI_Wtime();
            if (spin_comm_allreduce(comm, t, SPIN_REDUCE_SUM) != SPIN_OK) {
                fprintf(stderr, "rank %d: %s\n", rank, spin_last_error());
                MPI_Abort(MPI_COMM_WORLD, 1);
            }
            double t3 = MPI_Wtime();
            if (r >= 0) {
                tm[r] = t1 - t0;
                tc[r] = t3 - t2;
            }
        }
        /* the slowest rank's time is the collective's */
        double mm = median(tm, reps), mc = median(tc, reps);
        MPI_Allreduce(MPI_IN_PLACE, &mm, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &mc, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        double bytes = (double)n * 4, bus = bytes * 2.0 * (size - 1) / size;
        if (rank == 0)
            printf("%12.0f %12.1f us %12.1f us %12.2f %12.2f %8.2f\n", bytes, mm * 1e6, mc * 1e6,
                   bus / mm / 1e9, bus / mc / 1e9, mc / mm);
        spin_scope_end();
        free(h);
    }
}

/* ---- 2. one training step ---- */
static spin_pref_tokens *make_examples(int64_t n, int64_t T, int64_t vocab) {
    spin_pref_tokens *ex = calloc((size_t)n, sizeof *ex);
    int64_t P = T / 2, R = T - P - 1; /* the collator appends EOS to each response */
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int64_t i = 0; i < n; i++) {
        spin_pref_tokens *e = &ex[i];
        e->n_prompt = P;
        e->n_chosen = e->n_rejected = R;
        int32_t **arr[3] = {&e->prompt, &e->chosen, &e->rejected};
        uint8_t **att[3] = {&e->prompt_attn, &e->chosen_attn, &e->rejected_attn};
        int64_t len[3] = {P, R, R};
        for (int a = 0; a < 3; a++) {
            *arr[a] = malloc((size_t)len[a] * sizeof(int32_t));
            *att[a] = malloc((size_t)len[a]);
            memset(*att[a], 1, (size_t)len[a]);
            for (int64_t j = 0; j < len[a]; j++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                (*arr[a])[j] = 3 + (int32_t)((s >> 33) % (uint64_t)(vocab - 3));
            }
        }
    }
    return ex;
}

static double run_steps(spin_comm *comm, int zero, spin_llama *m, spin_pref_tokens *ex, int64_t n,
                        const float *zeros, int64_t global_batch, int64_t steps) {
    spin_train_config c = spin_train_defaults();
    c.learning_rate = 1e-5;
    c.max_steps = steps;
    c.per_device_train_batch_size = global_batch / size;
    c.logging_steps = 0;
    c.save_each_epoch = false;
    c.comm = size > 1 ? comm : NULL;
    c.zero_stage = zero;
    spin_train_data d = {
        .policy = m,
        .examples = ex,
        .n = n,
        .ref_chosen = zeros,
        .ref_rejected = zeros,
        .collate = {.max_length = 4096, .max_prompt_length = 2048, .eos_id = 2, .pad_id = 2}};
    spin_train_result r;
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    if (spin_train_run(&c, &d, &r) != SPIN_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, spin_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    double t = MPI_Wtime() - t0;
    MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return t;
}

static void bench_step(spin_comm *comm, spin_device *dev, bool quick, int zero) {
    spin_llama_config c;
    memset(&c, 0, sizeof c);
    snprintf(c.architecture, sizeof c.architecture, "LlamaForCausalLM");
    c.hidden_size = 256;
    c.intermediate_size = 768;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.vocab_size = 8192;
    c.max_position_embeddings = 4096;
    c.rms_norm_eps = 1e-5;
    c.rope_theta = 10000;
    c.tie_word_embeddings = true;
    c.bos_token_id = 1;
    c.pad_token_id = -1;
    c.eos_token_ids[0] = 2;
    c.n_eos = 1;
    const int64_t T = 128, GB = 8, n = 64;
    spin_llama *m = NULL;
    if (spin_llama_init(&c, dev, 7, &m) != SPIN_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, spin_last_error());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    int64_t params = 0;
    for (int i = 0; i < m->n_params; i++)
        params += spin_tensor_numel(m->params[i]);
    spin_pref_tokens *ex = make_examples(n, T, c.vocab_size);
    float *zeros = calloc((size_t)n, sizeof *zeros);
    int64_t k = quick ? 3 : 8;
    /* a 1-step run pays the set-up (optimizer, buckets, first allocations); the difference is the
     * steady-state steps */
    double t1 = run_steps(comm, zero, m, ex, n, zeros, GB, 1),
           tk = run_steps(comm, zero, m, ex, n, zeros, GB, 1 + k);
    double step = (tk - t1) / (double)k;
    double tokens = (double)GB * 2 * (double)T; /* real and generated rows */
    if (rank == 0)
        printf(
            "training step: %lld params (%d layers, hidden %d, vocab %d), global batch %lld x 2 rows x %lld "
            "tokens, RMSProp, %d rank(s) x %d OpenMP thread(s), zero_stage %d: %.1f ms/step, %.0f tokens/s\n",
            (long long)params, (int)c.num_hidden_layers, (int)c.hidden_size, (int)c.vocab_size, (long long)GB,
            (long long)T, size, omp_get_max_threads(), size > 1 ? zero : 0, step * 1e3, tokens / step);
    for (int64_t i = 0; i < n; i++)
        spin_pref_tokens_free(&ex[i]);
    free(ex);
    free(zeros);
    spin_llama_free(m);
}

int main(int argc, char **argv) {
    bool quick = false;
    int zero = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--zero") && i + 1 < argc)
            zero = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: mpirun -np N bench_comm [--quick] [--zero 0|1]\n");
            return 2;
        }
    }
    spin_comm *comm = NULL;
    if (spin_comm_world(&argc, &argv, &comm) != SPIN_OK) {
        fprintf(stderr, "bench_comm: %s\n", spin_last_error());
        return 1;
    }
    rank = spin_comm_rank(comm);
    size = spin_comm_size(comm);
    spin_device *dev = spin_init();
    if (rank == 0)
        printf("bench_comm: %d rank(s), %s, loadavg %.2f on %ld cores\n", size, spin_comm_kind(comm),
               loadavg1(), sysconf(_SC_NPROCESSORS_ONLN));
    if (size > 1)
        bench_allreduce(comm, dev, quick);
    else if (rank == 0)
        printf("all-reduce: skipped (one rank; run under mpirun -np 2)\n");
    bench_step(comm, dev, quick, zero);
    if (rank == 0)
        printf("loadavg at the end %.2f\n", loadavg1());
    spin_comm_free(comm);
    return 0;
}
