/* bench_generate: prefill and decode tokens/s of the generation engine (models/generate.h) at
 * batch 1 and batch 32, next to their rooflines measured in the same run:
 *   - batch-1 decode reads every weight once per token: bound = weight bytes / memory bandwidth
 *     (a multi-threaded memcpy over a buffer far larger than the caches);
 *   - batched decode and prefill are matmuls: bound = the time the raw BLAS sgemm takes for the
 *     step's matmuls (every projection of every layer plus the lm head on the last position).
 * Also measured: the k/v copy that attention makes of the used part of the cache each layer and
 * step (docs/models.md), as a share of the decode step.
 *
 * Default model: SmolLM2-135M's shapes (30 layers, hidden 576, 9 heads, 3 kv heads, intermediate
 * 1536, vocab 49152, tied) with random weights from spin_llama_init, so nothing is downloaded;
 * --model DIR loads a real one. Every number is measured; see docs/generation.md. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backends.h"
#include "benchmarks/bench_json.h"
#include "backends/cpu/cpu_kernels.h"
#include "core/device.h"
#include "models/generate.h"
#include "ops/ops.h"

#ifndef SPIN_GIT_COMMIT
#define SPIN_GIT_COMMIT "unknown"
#endif

typedef struct {
    bool quick, force;
    const char *json, *model;
    int64_t prompt_len, new_tokens, layers;
} options;

static options opt;
static spin_device *dev;

/* A device error surfacing at the wait (a bad id, ids.cl) makes every timing after it meaningless. */
static void sync_dev(void) {
    if (dev->backend->synchronize && dev->backend->synchronize(dev) != SPIN_OK) {
        fprintf(stderr, "%s: synchronize: %s\n", dev->name, spin_last_error());
        exit(1);
    }
}

/* ---- rooflines ---- */

/* Memory bandwidth (GB/s of read + write traffic) of a parallel memcpy of `bytes`, best of 5. */
static double memcpy_bandwidth(size_t bytes, int threads) {
    char *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes);
    if (!a || !b) {
        fprintf(stderr, "bench_generate: out of host memory\n");
        exit(1);
    }
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double best = INFINITY;
    for (int r = 0; r < 6; r++) {
        double t0 = omp_get_wtime();
#pragma omp parallel num_threads(threads)
        {
            int t = omp_get_thread_num(), n = omp_get_num_threads();
            size_t chunk = (bytes / (size_t)n + 63) / 64 * 64, lo = chunk * (size_t)t;
            size_t hi = lo + chunk < bytes ? lo + chunk : bytes;
            if (lo < hi)
                memcpy(b + lo, a + lo, hi - lo);
        }
        double s = omp_get_wtime() - t0;
        if (r > 0 && s < best)
            best = s;
    }
    volatile char sink = b[bytes / 2];
    (void)sink;
    free(a);
    free(b);
    return 2.0 * (double)bytes / best * 1e-9;
}

/* Best seconds of the raw sgemm C[m, n] = A[m, k] B[n, k]^T (the model's y = x W^T). */
static double sgemm_seconds(int m, int k, int n) {
    cpu_sgemm_fn gemm = cpu_blas_sgemm();
    float *a = aligned_alloc(64, ((size_t)m * k * 4 + 63) / 64 * 64),
          *w = aligned_alloc(64, ((size_t)n * k * 4 + 63) / 64 * 64),
          *c = aligned_alloc(64, ((size_t)m * n * 4 + 63) / 64 * 64);
    if (!a || !w || !c) {
        fprintf(stderr, "bench_generate: out of host memory\n");
        exit(1);
    }
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)n * k; i++)
        w[i] = (float)(i % 5) * 0.01f;
    enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
    double best = INFINITY, total = 0;
    for (int r = 0; r < 100 && (r < 4 || total < 0.1); r++) {
        double t0 = omp_get_wtime();
        gemm(ROW_MAJOR, NO_TRANS, TRANS, m, n, k, 1.0f, a, k, w, k, 0.0f, c, n);
        double s = omp_get_wtime() - t0;
        if (r > 0) {
            total += s;
            best = s < best ? s : best;
        }
    }
    free(a);
    free(w);
    free(c);
    return best;
}

/* Raw sgemm seconds of all the matmuls of one forward over `rows` token rows, with the lm head on
 * `head_rows` rows. */
static double blas_step_seconds(const spin_llama_config *c, int rows, int head_rows) {
    int h = (int)c->hidden_size, q = (int)(c->num_attention_heads * c->head_dim),
        kv = (int)(c->num_key_value_heads * c->head_dim), f = (int)c->intermediate_size;
    double layer = sgemm_seconds(rows, h, q) + 2 * sgemm_seconds(rows, h, kv) + sgemm_seconds(rows, q, h) +
                   2 * sgemm_seconds(rows, h, f) + sgemm_seconds(rows, f, h);
    return layer * (double)c->num_hidden_layers + sgemm_seconds(head_rows, h, (int)c->vocab_size);
}

/* ---- the engine ---- */

typedef struct {
    int64_t batch;
    spin_gen_stats st;
    double blas_prefill_s, blas_decode_s; /* BLAS-only time of the same work */
    double copy_ms, step_ms;              /* attention k/v copy per decode step; the step */
    bool ok;
    char err[200];
} run;

static spin_status count_only(void *ctx, const spin_gen_result *r) {
    (void)r;
    (*(int64_t *)ctx)++;
    return SPIN_OK;
}

static bool generate(spin_llama *m, int64_t batch, int64_t plen, int64_t new_tokens, spin_gen_stats *st) {
    int32_t *ids = malloc((size_t)(batch * plen) * sizeof *ids);
    const int32_t **pp = malloc((size_t)batch * sizeof *pp);
    int64_t *lens = malloc((size_t)batch * sizeof *lens);
    if (!ids || !pp || !lens)
        exit(1);
    uint64_t s = 7;
    for (int64_t i = 0; i < batch * plen; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((s >> 33) % (uint64_t)m->cfg.vocab_size);
    }
    for (int64_t b = 0; b < batch; b++) {
        pp[b] = ids + b * plen;
        lens[b] = plen;
    }
    spin_gen_opts o = spin_gen_opts_default();
    o.batch_size = batch;
    o.max_new_tokens = new_tokens;
    o.ignore_eos = true;
    int64_t done = 0;
    spin_status rc = spin_generate(m, NULL, pp, lens, batch, &o, count_only, &done, st);
    free(ids);
    free(pp);
    free(lens);
    return rc == SPIN_OK && done == batch;
}

/* Seconds per decode step spent copying the used part of every layer's k and v cache to
 * contiguous memory, as spin_attention does for the narrowed cache views. */
static double kv_copy_seconds(spin_llama *m, int64_t batch, int64_t len) {
    spin_llama_cache *c = spin_llama_cache_new(m, batch, len);
    if (!c)
        return NAN;
    double best = INFINITY;
    for (int r = 0; r < 4; r++) {
        spin_scope_begin();
        double t0 = omp_get_wtime();
        for (int l = 0; l < c->n_layers; l++) {
            spin_contiguous(spin_narrow(c->k[l], 2, 0, len - 1));
            spin_contiguous(spin_narrow(c->v[l], 2, 0, len - 1));
        }
        sync_dev();
        double s = omp_get_wtime() - t0;
        spin_scope_end();
        if (r > 0 && s < best)
            best = s;
    }
    spin_llama_cache_free(c);
    return best;
}

/* ---- output ---- */

typedef struct {
    char phase[16];
    int64_t batch, tokens;
    double tok_s, ms, bound_tok_s;
    char bound_kind[16];
    char note[120];
} row;

#define MAX_ROWS 8
static row rows[MAX_ROWS];
static int n_rows;

static int write_json(const char *path, const char *model_desc, int threads, double bw, double weight_bytes) {
    bench_json j;
    if (bench_json_open(&j, "bench_generate", path, opt.force))
        return 1;
    FILE *f = j.f;
    for (int i = -1; i < n_rows; i++) {
        bench_json_row_begin(f, dev, threads);
        fputs(", \"model\": ", f);
        bench_json_str(f, model_desc);
        if (i < 0) {
            fprintf(f,
                    ", \"op\": \"memcpy_bandwidth\", \"metric\": \"GB/s\", \"value\": %.3f, "
                    "\"weight_bytes\": %.0f}\n",
                    bw, weight_bytes);
            continue;
        }
        const row *r = &rows[i];
        fputs(", \"op\": ", f);
        bench_json_str(f, r->phase);
        fprintf(f,
                ", \"batch\": %lld, \"tokens\": %lld, \"metric\": \"tokens/s\", \"value\": %.3f, "
                "\"time_ms\": %.4f, "
                "\"bound\": %.3f, \"bound_kind\": ",
                (long long)r->batch, (long long)r->tokens, r->tok_s, r->ms, r->bound_tok_s);
        bench_json_str(f, r->bound_kind);
        fputs(", \"note\": ", f);
        bench_json_str(f, r->note);
        fputs("}\n", f);
    }
    return bench_json_close(&j);
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_generate [--model DIR] [--quick] [--prompt-len N] [--new-tokens N] [--layers N]\n"
            "                      [--json FILE [--force]]\n"
            "  Prefill and decode tokens/s of the generation engine at batch 1 and batch 32, with the\n"
            "  memory-bandwidth bound (batch-1 decode) and the BLAS bound (batched decode, prefill)\n"
            "  measured in the same run; threads from OMP_NUM_THREADS.\n"
            "  --model DIR     a model directory (default: SmolLM2-135M's shapes with random weights)\n"
            "  --quick         4 layers, 32-token prompts, 8 new tokens (finishes in seconds)\n"
            "  --prompt-len N  prompt tokens per sequence (default 128; quick 32)\n"
            "  --new-tokens N  tokens generated per sequence (default 64; quick 8)\n"
            "  --layers N      layers of the default model (default 30; quick 4)\n"
            "  --json FILE     also write one JSON object per row (atomically; refuses to overwrite\n"
            "                  FILE unless --force)\n"
            "  --help          this text\n");
}

static int64_t arg_i64(const char *s, const char *name) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < 1) {
        fprintf(stderr, "bench_generate: %s expects a positive integer (got '%s')\n", name, s);
        exit(2);
    }
    return v;
}

static void smollm2_shape(spin_llama_config *c, int64_t layers) {
    memset(c, 0, sizeof *c);
    snprintf(c->architecture, sizeof c->architecture, "LlamaForCausalLM");
    c->hidden_size = 576;
    c->intermediate_size = 1536;
    c->num_hidden_layers = layers;
    c->num_attention_heads = 9;
    c->num_key_value_heads = 3;
    c->head_dim = 64;
    c->vocab_size = 49152;
    c->max_position_embeddings = 8192;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 100000;
    c->tie_word_embeddings = true;
    c->bos_token_id = 1;
    c->pad_token_id = -1;
    c->eos_token_ids[0] = 2;
    c->n_eos = 1;
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quick")) {
            opt.quick = true;
        } else if (!strcmp(a, "--force")) {
            opt.force = true;
        } else if (!strcmp(a, "--json") && i + 1 < argc) {
            opt.json = argv[++i];
        } else if (!strcmp(a, "--model") && i + 1 < argc) {
            opt.model = argv[++i];
        } else if (!strcmp(a, "--prompt-len") && i + 1 < argc) {
            opt.prompt_len = arg_i64(argv[++i], a);
        } else if (!strcmp(a, "--new-tokens") && i + 1 < argc) {
            opt.new_tokens = arg_i64(argv[++i], a);
        } else if (!strcmp(a, "--layers") && i + 1 < argc) {
            opt.layers = arg_i64(argv[++i], a);
        } else {
            fprintf(stderr, "bench_generate: bad argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!opt.prompt_len)
        opt.prompt_len = opt.quick ? 32 : 128;
    if (!opt.new_tokens)
        opt.new_tokens = opt.quick ? 8 : 64;
    if (!opt.layers)
        opt.layers = opt.quick ? 4 : 30;
    if (opt.json && !opt.force && access(opt.json, F_OK) == 0) {
        fprintf(stderr, "bench_generate: %s exists (use --force to overwrite)\n", opt.json);
        return 1;
    }
    dev = spin_init();
    if (!dev) {
        fprintf(stderr, "bench_generate: no device: %s\n", spin_last_error());
        return 1;
    }
    int threads = omp_get_max_threads();
    double t_start = omp_get_wtime();
    spin_llama *m;
    char desc[200];
    if (opt.model) {
        if (spin_llama_load(opt.model, dev, &m) != SPIN_OK) {
            fprintf(stderr, "bench_generate: --model %s: %s\n", opt.model, spin_last_error());
            return 1;
        }
        snprintf(desc, sizeof desc, "%s", opt.model);
    } else {
        spin_llama_config c;
        smollm2_shape(&c, opt.layers);
        if (spin_llama_init(&c, dev, 1, &m) != SPIN_OK) {
            fprintf(stderr, "bench_generate: spin_llama_init: %s\n", spin_last_error());
            return 1;
        }
        snprintf(desc, sizeof desc, "SmolLM2-135M shape, random weights, %lld layers", (long long)opt.layers);
    }
    const spin_llama_config *c = &m->cfg;
    double params = 0;
    for (int i = 0; i < m->n_params; i++)
        params += (double)spin_tensor_numel(m->params[i]);
    if (!c->tie_word_embeddings)
        params -= (double)(c->vocab_size * c->hidden_size); /* the input embedding is only gathered */
    double weight_bytes = params * sizeof(float);

    printf("bench_generate  commit %s  backend %s  device %s  threads %d%s\n", SPIN_GIT_COMMIT,
           dev->backend->name, dev->name, threads, opt.quick ? "  (quick)" : "");
    printf("model           %s: %.1fM weights read per token (%.0f MB f32)\n", desc, params * 1e-6,
           weight_bytes * 1e-6);
    printf("blas            %s\n", cpu_blas_describe());
    fprintf(stderr, "  measuring memcpy bandwidth\n");
    double bw = memcpy_bandwidth((size_t)512 << 20, threads);
    printf("memory          %.1f GB/s (parallel memcpy of 512 MB, read + write traffic)\n", bw);
    printf("workload        prompts of %lld tokens, %lld new tokens each (greedy, EOS ignored)\n\n",
           (long long)opt.prompt_len, (long long)opt.new_tokens);

    const int64_t batches[2] = {1, 32};
    run runs[2];
    for (int bi = 0; bi < 2; bi++) {
        run *r = &runs[bi];
        memset(r, 0, sizeof *r);
        r->batch = batches[bi];
        fprintf(stderr, "  generating at batch %lld (warm-up, then timed)\n", (long long)r->batch);
        spin_gen_stats warm;
        r->ok = generate(m, r->batch, opt.prompt_len, 2, &warm) &&
                generate(m, r->batch, opt.prompt_len, opt.new_tokens, &r->st);
        if (!r->ok) {
            snprintf(r->err, sizeof r->err, "%s", spin_last_error());
            continue;
        }
        fprintf(stderr, "  BLAS bound at batch %lld\n", (long long)r->batch);
        r->blas_prefill_s = blas_step_seconds(c, (int)(r->batch * opt.prompt_len), (int)r->batch);
        r->blas_decode_s = blas_step_seconds(c, (int)r->batch, (int)r->batch);
        r->step_ms = r->st.decode_steps ? r->st.decode_s / (double)r->st.decode_steps * 1e3 : NAN;
        fprintf(stderr, "  attention k/v copy at batch %lld\n", (long long)r->batch);
        r->copy_ms = kv_copy_seconds(m, r->batch, opt.prompt_len + opt.new_tokens / 2) * 1e3;
    }

    printf("%-8s %6s %8s %11s %10s %12s %8s  %s\n", "phase", "batch", "tokens", "tokens/s", "ms/call",
           "bound tok/s", "of bound", "bound");
    printf("%.*s\n", 100,
           "-----------------------------------------------------------------------------------------"
           "-----------------------------------");
    for (int bi = 0; bi < 2; bi++) {
        run *r = &runs[bi];
        if (!r->ok) {
            printf("%-8s %6lld n/a (%s)\n", "both", (long long)r->batch, r->err);
            continue;
        }
        row *p = &rows[n_rows++];
        memset(p, 0, sizeof *p);
        snprintf(p->phase, sizeof p->phase, "prefill");
        p->batch = r->batch;
        p->tokens = r->st.prefill_tokens;
        p->tok_s = (double)r->st.prefill_tokens / r->st.prefill_s;
        p->ms = r->st.prefill_s / (double)r->st.prefill_calls * 1e3;
        p->bound_tok_s = (double)(r->batch * opt.prompt_len) / r->blas_prefill_s;
        snprintf(p->bound_kind, sizeof p->bound_kind, "blas");
        snprintf(p->note, sizeof p->note, "%lld call(s); lm head on the last position only",
                 (long long)r->st.prefill_calls);
        row *d = &rows[n_rows++];
        memset(d, 0, sizeof *d);
        snprintf(d->phase, sizeof d->phase, "decode");
        d->batch = r->batch;
        d->tokens = r->st.decode_tokens;
        d->tok_s = (double)r->st.decode_tokens / r->st.decode_s;
        d->ms = r->step_ms;
        double mem_bound = bw * 1e9 / weight_bytes * (double)r->batch,
               blas_bound = (double)r->batch / r->blas_decode_s;
        bool mem = r->batch == 1;
        d->bound_tok_s = mem ? mem_bound : blas_bound;
        snprintf(d->bound_kind, sizeof d->bound_kind, "%s", mem ? "memory" : "blas");
        snprintf(d->note, sizeof d->note, "k/v copy %.2f ms/step (%.0f%%); %s bound %.1f tok/s", r->copy_ms,
                 100.0 * r->copy_ms / r->step_ms, mem ? "blas" : "memory", mem ? blas_bound : mem_bound);
    }
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        printf("%-8s %6lld %8lld %11.1f %10.2f %12.1f %8.2f  %s; %s\n", r->phase, (long long)r->batch,
               (long long)r->tokens, r->tok_s, r->ms, r->bound_tok_s, r->tok_s / r->bound_tok_s,
               r->bound_kind, r->note);
    }
    printf(
        "\nbounds: memory = bandwidth / weight bytes x batch (weights read once per step); blas = the raw\n"
        "sgemm time of the step's matmuls (all projections + lm head on the last position).\n");
    printf("total %.1f s\n", omp_get_wtime() - t_start);
    int rc = 0;
    if (opt.json)
        rc = write_json(opt.json, desc, threads, bw, weight_bytes);
    spin_llama_free(m);
    return rc;
}
