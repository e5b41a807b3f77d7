/* Model and training parity of the build's accelerator (OpenCL on PoCL in CI) against the CPU
 * backend, both open in this one process: a tiny GQA Llama with seeded weights made here is built
 * twice from the same host arrays, once per device.
 *   - one SPIN training step (spin_16.jsonl through the zephyr template and the character
 *     tokenizer of tests/data/cli/train, sigmoid loss against a second seeded model as the frozen
 *     opponent, RMSProp with global clipping as train/ runs it): the loss, the reward metrics,
 *     every parameter's gradient, the gradient norm and every parameter after the update;
 *   - greedy generation with the KV cache (spin_generate, 2 slots refilled over 5 prompts): the
 *     tokens must be identical, the log-probs close.
 * Kernels the device lacks run on the CPU through the dispatcher (counted and printed), so the test
 * holds whichever kernels are native. SKIPPED (77) with the reason when the default device
 * (SPIN_DEVICE, else the build's accelerator) is the CPU: a CPU-only build has nothing to compare. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
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
#include "models/generate.h"
#include "train/optim.h"
#include "train/pref_data.h"
#include "train/pref_step.h"

/* Tolerances, all on ||dev - cpu|| / ||cpu|| (or |dev - cpu| / |cpu| for scalars). Both devices
 * compute in f32 with different summation orders (CLBlast vs OpenBLAS GEMM blocking, work-group
 * vs OpenMP reductions), so results agree to a few f32 ulps amplified by the depth of the graph.
 * Measured on PoCL: loss 2e-7, gradients <= 8e-7, log-probs 3e-6 (absolute).
 * RMSProp's first update is lr * g / (sqrt(1 - alpha) |g| + eps): about 10 lr * sign(g) whatever
 * |g|, so elements whose gradient is a millionth of the largest (where f32 cancellation leaves a
 * relative error of ~1e-2 between the devices) move as much as the large ones, and near
 * |g| ~ eps / sqrt(1 - alpha) that relative error passes into the update with a factor up to 1/3.
 * Measured: update 6e-5 (25 such elements of 40k), parameters after the step 5e-6. The bounds
 * leave >= 10x room for rounding and stay far below a real mistake (a wrong mask, scale, sign or
 * missing term moves these by 1e-2 or more). */
#define TOL_LOSS 1e-5
#define TOL_GRAD 1e-5
#define TOL_UPDATE 1e-3
#define TOL_PARAM 1e-4
#define TOL_LOGPROB 1e-4 /* absolute, per generated token's log-prob (values around -1..-4) */
/* Identical greedy tokens are only a fair demand where the CPU's top-2 logit margin is far above
 * the devices' rounding difference (~1e-6 here): the seeded weights below give every greedy step a
 * margin of at least this much, and the test checks that it does. */
#define MIN_MARGIN 1e-3

static spin_device *cpu, *acc;

/* ---- the tiny model: GQA (6 query heads over 2 KV heads), 3 layers, untied head ---- */

static const char *const model_json =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 48, \"intermediate_size\": 96, "
    "\"num_hidden_layers\": 3, \"num_attention_heads\": 6, \"num_key_value_heads\": 2, "
    "\"vocab_size\": 64, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, "
    "\"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"bos_token_id\": 1, "
    "\"eos_token_id\": 2, \"pad_token_id\": 2}";

typedef struct {
    spin_device *dev;
    uint64_t seed;
} init_ctx;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform weights with std 1/sqrt(fan_in) (embedding: std 1, so hidden states start at unit RMS;
 * lm head: x3, so logits are spread and greedy steps are decisive), norms 1 +- 0.1. The same
 * (seed, name) gives the same host values, whatever the device. */
static spin_tensor *init_param(void *p, const char *name, int ndim, const int64_t *shape) {
    init_ctx *c = p;
    int64_t n = shape[0] * (ndim == 2 ? shape[1] : 1);
    uint64_t s = c->seed;
    for (const char *q = name; *q; q++)
        s = s * 131 + (unsigned char)*q;
    double std = ndim == 1                      ? 0.1
                 : strstr(name, "embed_tokens") ? 1.0
                 : strstr(name, "lm_head")      ? 3.0 / sqrt((double)shape[1])
                                                : 1.0 / sqrt((double)shape[1]);
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix(&s) >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* [-1, 1) */
        v[i] = (float)((ndim == 1 ? 1.0 : 0.0) + u * std * sqrt(3.0));
    }
    spin_tensor *t = spin_from_host(c->dev, SPIN_F32, ndim, shape, v);
    free(v);
    return t;
}

static spin_llama *make_model(spin_device *dev, uint64_t seed) {
    spin_llama_config cfg;
    assert_int_equal(spin_llama_config_parse(model_json, "test_opencl_parity", &cfg), SPIN_OK);
    init_ctx c = {dev, seed};
    spin_llama *m = NULL;
    spin_status s = spin_llama_build(&cfg, dev, init_param, &c, &m);
    spin_llama_config_free(&cfg);
    if (s != SPIN_OK)
        fail_msg("spin_llama_build: %s", spin_last_error());
    return m;
}

/* ---- comparisons ---- */

static float *read_all(spin_tensor *t) {
    int64_t n = spin_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    assert_int_equal(spin_tensor_read_f32(t, v, n), SPIN_OK);
    return v;
}

/* ||a - b|| / ||b|| in double (||a - b|| when b is all zero). */
static double nerr(const float *a, const float *b, int64_t n) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static double rel(double a, double b) {
    return fabs(a - b) / fmax(fabs(b), 1e-30);
}

/* ---- one SPIN training step on one device ---- */

enum { BATCH = 4 };

typedef struct {
    int n;
    int64_t *numel;
    float **grad, **before, **after;
    spin_pref_metrics m;
    float loss, grad_norm;
} step_result;

static void step_free(step_result *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->grad[i]);
        free(r->before[i]);
        free(r->after[i]);
    }
    free(r->numel);
    free(r->grad);
    free(r->before);
    free(r->after);
}

static void train_step(spin_device *dev, const spin_collated *batch, step_result *r) {
    spin_llama *policy = make_model(dev, 1), *opponent = make_model(dev, 2);
    spin_pref_loss_opts lo = {.type = SPIN_LOSS_SIGMOID, .beta = 0.1f};
    spin_pref_ref ref = {.model = opponent};
    memset(r, 0, sizeof *r);
    r->n = policy->n_params;
    r->numel = calloc((size_t)r->n, sizeof *r->numel);
    r->grad = calloc((size_t)r->n, sizeof *r->grad);
    r->before = calloc((size_t)r->n, sizeof *r->before);
    r->after = calloc((size_t)r->n, sizeof *r->after);
    for (int i = 0; i < r->n; i++) {
        r->numel[i] = spin_tensor_numel(policy->params[i]);
        r->before[i] = read_all(policy->params[i]);
    }
    spin_scope_begin();
    spin_tensor *loss = NULL;
    if (spin_pref_forward(policy, &ref, NULL, batch, &lo, false, 1.0f, &loss, &r->m) != SPIN_OK)
        fail_msg("spin_pref_forward on %s: %s", dev->name, spin_last_error());
    assert_int_equal(spin_tensor_read_f32(loss, &r->loss, 1), SPIN_OK);
    assert_int_equal(spin_backward(loss), SPIN_OK);
    spin_scope_end();
    for (int i = 0; i < r->n; i++) {
        spin_tensor *g = spin_tensor_grad(policy->params[i]);
        if (!g)
            fail_msg("%s: no gradient for %s", dev->name, policy->names[i]);
        r->grad[i] = read_all(g);
    }
    /* RMSProp (torch defaults: alpha 0.99, eps 1e-8, clip at global norm 1) at a learning rate
     * high enough that the update is a visible part of the parameters after it */
    spin_optim_config oc = spin_optim_defaults(SPIN_OPTIM_RMSPROP);
    spin_optim *o = spin_optim_new(&oc, policy->params, policy->n_params);
    assert_non_null(o);
    spin_optim_result res;
    assert_int_equal(spin_optim_step(o, 1e-3, &res), SPIN_OK);
    assert_true(res.finite);
    r->grad_norm = res.grad_norm;
    for (int i = 0; i < r->n; i++)
        r->after[i] = read_all(policy->params[i]);
    spin_optim_free(o);
    spin_llama_free(policy);
    spin_llama_free(opponent);
}

static void test_spin_training_step(void **state) {
    (void)state;
    spin_tokenizer *tok = spin_tokenizer_load(SPIN_TEST_DATA "/cli/train/tokenizer.json");
    if (!tok)
        fail_msg("%s", spin_last_error());
    spin_pref_data d;
    if (spin_pref_data_read(SPIN_TEST_DATA "/cli/train/spin_16.jsonl", SPIN_CHAT_ZEPHYR, "<s>", "</s>", &d) !=
        SPIN_OK)
        fail_msg("%s", spin_last_error());
    assert_true(d.n >= BATCH);
    spin_collate_opts co = {.max_length = 128, .max_prompt_length = 64, .eos_id = 2, .pad_id = 2};
    spin_pref_tokens t[BATCH];
    const spin_pref_tokens *rows[BATCH];
    for (int i = 0; i < BATCH; i++) {
        if (spin_collate_tokenize(tok, &d.ex[i], &co, &t[i]) != SPIN_OK)
            fail_msg("%s", spin_last_error());
        rows[i] = &t[i];
    }
    spin_collated batch;
    assert_int_equal(spin_collate_batch(rows, BATCH, &co, &batch), SPIN_OK);

    step_result rc, ra;
    train_step(cpu, &batch, &rc);
    train_step(acc, &batch, &ra);
    assert_int_equal(rc.n, ra.n);

    /* the step must be a real one: a loss away from log 2, a gradient that gets clipped or not,
     * parameters that moved */
    assert_true(fabs(rc.loss - 0.6931472) > 1e-3);
    double e_loss = rel(ra.loss, rc.loss), e_gn = rel(ra.grad_norm, rc.grad_norm);
    double e_rc = rel(ra.m.rewards_chosen, rc.m.rewards_chosen),
           e_rr = rel(ra.m.rewards_rejected, rc.m.rewards_rejected);
    print_message(
        "    %lld rows of %lld tokens; loss cpu %.7f %s %.7f (rel %.1e), grad norm %.5f (rel %.1e), "
        "rewards real/generated rel %.1e / %.1e\n",
        (long long)(2 * batch.batch), (long long)batch.len, rc.loss, acc->name, ra.loss, e_loss, rc.grad_norm,
        e_gn, e_rc, e_rr);
    assert_true(e_loss <= TOL_LOSS);
    assert_true(e_gn <= TOL_LOSS);
    assert_true(e_rc <= TOL_LOSS && e_rr <= TOL_LOSS);

    spin_llama *names = make_model(cpu, 1);
    double worst_g = 0, worst_p = 0, worst_u = 0;
    int bad = 0;
    for (int i = 0; i < rc.n; i++) {
        int64_t n = rc.numel[i];
        float *du = malloc((size_t)n * sizeof *du), *dc = malloc((size_t)n * sizeof *dc);
        assert_non_null(du);
        assert_non_null(dc);
        for (int64_t j = 0; j < n; j++) {
            du[j] = ra.after[i][j] - ra.before[i][j];
            dc[j] = rc.after[i][j] - rc.before[i][j];
        }
        assert_memory_equal(ra.before[i], rc.before[i], (size_t)n * sizeof(float)); /* same weights */
        double eg = nerr(ra.grad[i], rc.grad[i], n), ep = nerr(ra.after[i], rc.after[i], n),
               eu = nerr(du, dc, n);
        double gsum = 0;
        for (int64_t j = 0; j < n; j++)
            gsum += fabs(rc.grad[i][j]);
        if (gsum == 0 || eg > TOL_GRAD || ep > TOL_PARAM || eu > TOL_UPDATE) {
            print_message("    %-36s grad %.2e  param %.2e  update %.2e%s\n", names->names[i], eg, ep, eu,
                          gsum == 0 ? "  (zero gradient on the CPU)" : "");
            bad++;
        }
        worst_g = fmax(worst_g, eg);
        worst_p = fmax(worst_p, ep);
        worst_u = fmax(worst_u, eu);
        free(du);
        free(dc);
    }
    print_message(
        "    %d parameters: worst normalised error of gradient %.2e (tol %.0e), parameter after the "
        "step %.2e (tol %.0e), update %.2e (tol %.0e)\n",
        rc.n, worst_g, TOL_GRAD, worst_p, TOL_PARAM, worst_u, TOL_UPDATE);
    assert_int_equal(bad, 0);

    spin_llama_free(names);
    step_free(&rc);
    step_free(&ra);
    spin_collated_free(&batch);
    for (int i = 0; i < BATCH; i++)
        spin_pref_tokens_free(&t[i]);
    spin_pref_data_free(&d);
    spin_tokenizer_free(tok);
}

/* ---- greedy generation with the KV cache ---- */

enum { NPROMPT = 5, MAX_NEW = 12 };

typedef struct {
    int32_t toks[NPROMPT][MAX_NEW];
    float lp[NPROMPT][MAX_NEW];
    int64_t n[NPROMPT];
} gen_out;

static spin_status collect(void *ctx, const spin_gen_result *r) {
    gen_out *g = ctx;
    assert_true(r->index >= 0 && r->index < NPROMPT && r->n_tokens <= MAX_NEW);
    memcpy(g->toks[r->index], r->tokens, (size_t)r->n_tokens * sizeof(int32_t));
    memcpy(g->lp[r->index], r->logprobs, (size_t)r->n_tokens * sizeof(float));
    g->n[r->index] = r->n_tokens;
    return SPIN_OK;
}

static int32_t prompt_ids[NPROMPT][16];
static const int64_t prompt_len[NPROMPT] = {4, 9, 1, 13, 6};

static void generate_on(spin_device *dev, gen_out *out) {
    spin_llama *m = make_model(dev, 1);
    const int32_t *pp[NPROMPT];
    for (int q = 0; q < NPROMPT; q++)
        pp[q] = prompt_ids[q];
    spin_gen_opts o = spin_gen_opts_default();
    o.batch_size = 2; /* 5 prompts through 2 slots: prefills, refills and rows of different lengths */
    o.max_new_tokens = MAX_NEW;
    o.logprobs = true;
    o.ignore_eos = true;
    memset(out, 0, sizeof *out);
    if (spin_generate(m, NULL, pp, prompt_len, NPROMPT, &o, collect, out, NULL) != SPIN_OK)
        fail_msg("spin_generate on %s: %s", dev->name, spin_last_error());
    spin_llama_free(m);
}

/* The CPU's top-2 margin at every greedy step, by one full forward (no cache) of prompt +
 * generated tokens; also checks that the engine's token is that forward's argmax. */
static double cpu_min_margin(const gen_out *g) {
    spin_llama *m = make_model(cpu, 1);
    const int64_t V = m->cfg.vocab_size;
    double worst = INFINITY;
    spin_no_grad_begin();
    for (int q = 0; q < NPROMPT; q++) {
        int64_t L = prompt_len[q], n = g->n[q];
        int32_t ids[16 + MAX_NEW];
        memcpy(ids, prompt_ids[q], (size_t)L * sizeof *ids);
        memcpy(ids + L, g->toks[q], (size_t)n * sizeof *ids);
        spin_scope_begin();
        spin_tensor *ti = spin_from_host(cpu, SPIN_I32, 2, (int64_t[]){1, L + n}, ids);
        float *lg = read_all(spin_llama_logits(m, spin_llama_forward(m, ti, NULL, NULL, NULL)));
        spin_scope_end();
        for (int64_t j = 0; j < n; j++) {
            const float *row = lg + (L - 1 + j) * V;
            int64_t best = 0;
            for (int64_t v = 1; v < V; v++)
                best = row[v] > row[best] ? v : best;
            double second = -INFINITY;
            for (int64_t v = 0; v < V; v++)
                if (v != best && row[v] > second)
                    second = row[v];
            assert_int_equal(best, g->toks[q][j]);
            worst = fmin(worst, row[best] - second);
        }
        free(lg);
    }
    spin_no_grad_end();
    spin_llama_free(m);
    return worst;
}

static void test_greedy_generation(void **state) {
    (void)state;
    for (int q = 0; q < NPROMPT; q++)
        for (int t = 0; t < prompt_len[q]; t++)
            prompt_ids[q][t] = 3 + (q * 29 + t * (7 + q) + t * t * 3) % 61;
    gen_out gc, ga;
    generate_on(cpu, &gc);
    generate_on(acc, &ga);
    double margin = cpu_min_margin(&gc), worst_lp = 0;
    int tokens = 0;
    for (int q = 0; q < NPROMPT; q++) {
        assert_int_equal(ga.n[q], gc.n[q]);
        assert_int_equal(gc.n[q], MAX_NEW);
        for (int64_t j = 0; j < gc.n[q]; j++) {
            if (ga.toks[q][j] != gc.toks[q][j])
                fail_msg("prompt %d token %lld: %s chose %d, the CPU %d", q, (long long)j, acc->name,
                         ga.toks[q][j], gc.toks[q][j]);
            worst_lp = fmax(worst_lp, fabs((double)ga.lp[q][j] - gc.lp[q][j]));
            tokens++;
        }
    }
    print_message("    %d greedy tokens identical over %d prompts; smallest CPU top-2 margin %.3f (>= %.0e); "
                  "worst log-prob difference %.1e (tol %.0e)\n",
                  tokens, NPROMPT, margin, MIN_MARGIN, worst_lp, TOL_LOGPROB);
    assert_true(margin >= MIN_MARGIN);
    assert_true(worst_lp <= TOL_LOGPROB);
    /* which kernels ran on the CPU instead of the device in this process (information only) */
    char list[1024] = "";
    size_t off = 0;
    for (int k = 0; k < SPIN_KERNEL_COUNT; k++)
        if (acc->fallbacks[k] && off < sizeof list)
            off += (size_t)snprintf(list + off, sizeof list - off, " %s", spin_kernel_name((spin_kernel)k));
    print_message("    %s: %llu kernel launches in this process ran on the CPU instead:%s\n", acc->name,
                  (unsigned long long)spin_fallback_total(acc), off ? list : " none");
}

static int64_t live_at_start;
static void test_no_leaks(void **state) {
    (void)state;
    assert_int_equal(spin_tensor_live_count(), live_at_start);
}

int main(void) {
    acc = spin_init();
    cpu = spin_cpu_device();
    if (!acc) {
        fprintf(stderr, "test_opencl_parity: no device: %s\n", spin_last_error());
        return 1;
    }
    if (acc == cpu) {
        const char *spec = getenv("SPIN_DEVICE");
        const char *why =
            strcmp(spin_build_backend(), "cpu")
                ? (spec && *spec ? "SPIN_DEVICE chose the CPU" : "the build's accelerator has no device here")
                : "a CPU-only build (-DBACKEND=cpu) has no second device to compare with the CPU";
        printf("SKIPPED: %s\n", why);
        return 77;
    }
    printf("parity: %s against the CPU\n", acc->name);
    live_at_start = spin_tensor_live_count();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spin_training_step),
        cmocka_unit_test(test_greedy_generation),
        cmocka_unit_test(test_no_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
