/* Model and training parity of the build's accelerator (OpenCL on PoCL in CI) against the CPU
 * backend, both open in this one process: a tiny GQA Llama with seeded weights (tests/parity/parity_step.c)
 * is built twice from the same host arrays, once per device.
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
#include "tests/parity/parity_step.h"

/* The training step's tolerances and their reasoning: tests/parity/parity_step.[ch]. */
#define TOL_LOGPROB 1e-4 /* absolute, per generated token's log-prob (values around -1..-4) */
/* Identical greedy tokens are only a fair demand where the CPU's top-2 logit margin is far above
 * the devices' rounding difference (~1e-6 here): the seeded weights below give every greedy step a
 * margin of at least this much, and the test checks that it does. */
#define MIN_MARGIN 1e-3

static spin_device *cpu, *acc;

static spin_llama *make_model(spin_device *dev, uint64_t seed) {
    spin_llama *m = NULL;
    if (spin_parity_model(dev, seed, &m) != SPIN_OK)
        fail_msg("spin_parity_model: %s", spin_last_error());
    return m;
}

/* ---- comparisons ---- */

enum { BATCH = 4 };

static float *read_all(spin_tensor *t) {
    int64_t n = spin_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    assert_non_null(v);
    assert_int_equal(spin_tensor_read_f32(t, v, n), SPIN_OK);
    return v;
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

    spin_parity_step rc, ra;
    if (spin_parity_train_step(cpu, &batch, &rc) != SPIN_OK ||
        spin_parity_train_step(acc, &batch, &ra) != SPIN_OK)
        fail_msg("training step: %s", spin_last_error());
    /* the step must be a real one: a loss away from log 2, parameters that moved */
    assert_true(fabs(rc.loss - 0.6931472) > 1e-3);
    spin_llama *names = make_model(cpu, 1);
    spin_parity_errors e;
    spin_parity_compare(&ra, &rc, names->names, &e);
    print_message("    %lld rows of %lld tokens; loss cpu %.7f %s %.7f (rel %.1e), grad norm rel %.1e, "
                  "rewards rel %.1e\n",
                  (long long)(2 * batch.batch), (long long)batch.len, rc.loss, acc->name, ra.loss, e.loss,
                  e.grad_norm, e.rewards);
    print_message(
        "    %d parameters: worst normalised error of gradient %.2e (tol %.0e), parameter after the "
        "step %.2e (tol %.0e), update %.2e (tol %.0e); %d over a tolerance%s%s\n",
        rc.n, e.grad, SPIN_PARITY_TOL_GRAD, e.param, SPIN_PARITY_TOL_PARAM, e.update, SPIN_PARITY_TOL_UPDATE,
        e.bad, e.first_bad ? ", the first " : "", e.first_bad ? e.first_bad : "");
    assert_true(spin_parity_ok(&e));
    spin_llama_free(names);
    spin_parity_step_free(&rc);
    spin_parity_step_free(&ra);
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
