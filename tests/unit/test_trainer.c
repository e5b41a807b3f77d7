#define _DEFAULT_SOURCE
/* The training loop against golden trajectories from transformers + torch
 * (tests/ref/make_train_golden.py): 10 SPIN updates of a tiny Llama with RMSProp and with AdamW
 * under the linear warmup schedule, with the opponent as a frozen model (mode a) and as stored
 * scores (mode b); the two modes agree; resume is bit-exact; a signal writes a checkpoint and stops;
 * non-finite values stop the run or are skipped; stale scores are refused. */
#include <json-c/json.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "models/safetensors.h"
#include "train/checkpoint.h"
#include "train/opponent_scores.h"
#include "train/pref_step.h"
#include "train/trainer.h"

static spin_device *dev;
#define DATA SPIN_TEST_DATA "/train/"

typedef struct {
    int n;
    spin_pref_tokens *ex;
} examples;

static int32_t *ints(json_object *a, int64_t *n) {
    *n = (int64_t)json_object_array_length(a);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    for (int64_t i = 0; i < *n; i++)
        v[i] = json_object_get_int(json_object_array_get_idx(a, (size_t)i));
    return v;
}

static uint8_t *bits(json_object *a) {
    size_t n = json_object_array_length(a);
    uint8_t *v = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint8_t)json_object_get_int(json_object_array_get_idx(a, i));
    return v;
}

static json_object *key(json_object *o, const char *k) {
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, k, &v));
    return v;
}

/* The golden script's token rows (already collator-shaped: EOS appended, attention bits). */
static examples load_examples(void) {
    json_object *root = json_object_from_file(DATA "trajectory_examples.json");
    assert_non_null(root);
    examples e = {(int)json_object_array_length(root), NULL};
    e.ex = calloc((size_t)e.n, sizeof *e.ex);
    for (int i = 0; i < e.n; i++) {
        json_object *o = json_object_array_get_idx(root, (size_t)i);
        spin_pref_tokens *t = &e.ex[i];
        t->prompt = ints(key(o, "prompt"), &t->n_prompt);
        t->chosen = ints(key(o, "chosen"), &t->n_chosen);
        t->rejected = ints(key(o, "rejected"), &t->n_rejected);
        t->prompt_attn = bits(key(o, "prompt_attn"));
        t->chosen_attn = bits(key(o, "chosen_attn"));
        t->rejected_attn = bits(key(o, "rejected_attn"));
    }
    json_object_put(root);
    return e;
}

static void free_examples(examples *e) {
    for (int i = 0; i < e->n; i++)
        spin_pref_tokens_free(&e->ex[i]);
    free(e->ex);
}

static spin_collate_opts collate_opts(void) {
    return (spin_collate_opts){.max_length = 64, .max_prompt_length = 32, .eos_id = 2, .pad_id = 2};
}

static spin_llama *load_tiny(void) {
    spin_llama *m = NULL;
    assert_int_equal(spin_llama_load(DATA "tiny", dev, &m), SPIN_OK);
    return m;
}

static char *tmpdir(void) {
    char *d = strdup("/tmp/spin_trainer_XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

static void rm_rf(const char *d) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    assert_int_equal(system(cmd), 0);
}

static double norm_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / (sqrt(den) > 0 ? sqrt(den) : 1);
}

/* Largest normalised error over the parameters against a safetensors file. */
static double params_err(spin_llama *m, const char *path) {
    spin_safetensors *st = NULL;
    assert_int_equal(spin_st_open(path, &st), SPIN_OK);
    double worst = 0;
    for (int i = 0; i < m->n_params; i++) {
        int64_t n = spin_tensor_numel(m->params[i]);
        float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
        spin_tensor *g = spin_st_load(st, m->names[i], dev, -1, NULL);
        assert_non_null(g);
        assert_int_equal(spin_tensor_read_f32(m->params[i], a, n), SPIN_OK);
        assert_int_equal(spin_tensor_read_f32(g, b, n), SPIN_OK);
        double e = norm_err(a, b, n);
        if (e > worst)
            worst = e;
        spin_tensor_release(g);
        free(a);
        free(b);
    }
    spin_st_close(st);
    return worst;
}

static spin_train_config golden_config(spin_optim_kind k) {
    spin_train_config c = spin_train_defaults();
    c.optim = spin_optim_defaults(k);
    if (k == SPIN_OPTIM_ADAMW)
        c.optim.weight_decay = 0.01f;
    c.learning_rate = 1e-3;
    c.warmup_steps = 3;
    c.max_steps = 10;
    c.per_device_train_batch_size = 4;
    c.shuffle = false;
    c.logging_steps = 1;
    c.save_each_epoch = false;
    return c;
}

/* metrics.jsonl -> per-line loss, grad_norm and learning_rate. */
static int read_metrics(const char *path, double *loss, double *gn, double *lr, int max) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        json_object *o = json_tokener_parse(line);
        assert_non_null(o);
        loss[n] = json_object_get_double(key(o, "loss"));
        gn[n] = json_object_get_double(key(o, "grad_norm"));
        lr[n] = json_object_get_double(key(o, "learning_rate"));
        json_object_put(o);
        n++;
    }
    fclose(f);
    return n;
}

static void check_golden(const char *name, spin_optim_kind k, bool stored_scores, bool recompute) {
    examples e = load_examples();
    spin_llama *policy = load_tiny(), *ref = NULL;
    spin_collate_opts co = collate_opts();
    float *rc = NULL, *rr = NULL;
    if (stored_scores) {
        rc = malloc((size_t)e.n * sizeof *rc);
        rr = malloc((size_t)e.n * sizeof *rr);
        spin_llama *opp = load_tiny();
        assert_int_equal(spin_score_examples(opp, e.ex, e.n, 3, &co, false, rc, rr, NULL, NULL), SPIN_OK);
        spin_llama_free(opp);
    } else {
        ref = load_tiny();
    }
    char *dir = tmpdir();
    spin_train_config c = golden_config(k);
    c.output_dir = dir;
    c.gradient_checkpointing = recompute;
    spin_train_data d = {.policy = policy,
                         .reference = ref,
                         .examples = e.ex,
                         .n = e.n,
                         .ref_chosen = rc,
                         .ref_rejected = rr,
                         .collate = co};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_int_equal(r.global_step, 10);

    char path[4200], gold[256];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    double loss[16], gn[16], lr[16];
    assert_int_equal(read_metrics(path, loss, gn, lr, 16), 10);
    snprintf(gold, sizeof gold, DATA "trajectory_%s.json", name);
    json_object *g = json_object_from_file(gold), *steps = key(g, "steps");
    double worst_loss = 0, worst_gn = 0;
    for (int i = 0; i < 10; i++) {
        json_object *s = json_object_array_get_idx(steps, (size_t)i);
        double gl = json_object_get_double(key(s, "loss")), gg = json_object_get_double(key(s, "grad_norm"));
        double glr = json_object_get_double(key(s, "lr"));
        if (fabs(loss[i] - gl) > 1e-4 * fabs(gl) || fabs(gn[i] - gg) > 1e-4 * fabs(gg))
            print_message("  step %d: loss %.7g (golden %.7g), grad norm %.7g (golden %.7g)\n", i + 1,
                          loss[i], gl, gn[i], gg);
        worst_loss = fmax(worst_loss, fabs(loss[i] - gl) / fabs(gl));
        worst_gn = fmax(worst_gn, fabs(gn[i] - gg) / fabs(gg));
        assert_true(fabs(lr[i] - glr) <= 1e-7 * fmax(glr, 1e-3));
    }
    json_object_put(g);
    snprintf(gold, sizeof gold, DATA "trajectory_%s.safetensors", name);
    double perr = params_err(policy, gold);
    print_message("%s %s%s: loss rel err %.2e, grad norm rel err %.2e, final params normalised err %.2e\n",
                  name, stored_scores ? "stored scores" : "reference model", recompute ? ", recompute" : "",
                  worst_loss, worst_gn, perr);
    /* f32 here and in torch, different summation orders; ten updates of RMSProp (whose first
     * steps are ~lr/sqrt(1-alpha) per element) amplify rounding. Measured: <= 1e-6. 1e-5 leaves
     * room for rounding and is far below any real mistake (the pad row's embedding gradient
     * alone, which torch zeroes, moved the loss by 1e-1). */
    assert_true(worst_loss <= 1e-5);
    assert_true(worst_gn <= 1e-5);
    assert_true(perr <= 1e-5);
    rm_rf(dir);
    free(dir);
    free(rc);
    free(rr);
    spin_llama_free(policy);
    spin_llama_free(ref);
    free_examples(&e);
}

static void test_golden_rmsprop_reference_model(void **s) {
    (void)s;
    check_golden("rmsprop", SPIN_OPTIM_RMSPROP, false, false);
}
static void test_golden_rmsprop_stored_scores(void **s) {
    (void)s;
    check_golden("rmsprop", SPIN_OPTIM_RMSPROP, true, false);
}
static void test_golden_adamw_reference_model(void **s) {
    (void)s;
    check_golden("adamw", SPIN_OPTIM_ADAMW, false, false);
}
static void test_golden_adamw_stored_scores(void **s) {
    (void)s;
    check_golden("adamw", SPIN_OPTIM_ADAMW, true, true);
}

/* Mode (a) (a frozen model per training batch) and mode (b) (one scoring pass in other batches,
 * so other padding) give the same reference log-probs. */
static void test_modes_agree(void **s) {
    (void)s;
    examples e = load_examples();
    spin_llama *opp = load_tiny();
    spin_collate_opts co = collate_opts();
    float b_c[8], b_r[8], a_c[8], a_r[8];
    assert_int_equal(spin_score_examples(opp, e.ex, e.n, 5, &co, false, b_c, b_r, NULL, NULL), SPIN_OK);
    for (int i = 0; i < e.n; i += 4) {
        const spin_pref_tokens *rows[4] = {&e.ex[i], &e.ex[i + 1], &e.ex[i + 2], &e.ex[i + 3]};
        spin_collated cb;
        assert_int_equal(spin_collate_batch(rows, 4, &co, &cb), SPIN_OK);
        assert_int_equal(spin_pref_ref_logps(opp, &cb, false, a_c + i, a_r + i), SPIN_OK);
        spin_collated_free(&cb);
    }
    double ec = norm_err(b_c, a_c, 8), er = norm_err(b_r, a_r, 8);
    print_message("modes a/b: chosen %.2e rejected %.2e\n", ec, er);
    assert_true(ec <= 1e-5 && er <= 1e-5); /* the bound */
    spin_llama_free(opp);
    free_examples(&e);
}

static spin_train_config resume_config(const char *dir) {
    spin_train_config c = spin_train_defaults();
    c.learning_rate = 1e-3;
    c.num_train_epochs = 4;
    c.per_device_train_batch_size = 3; /* 8 examples: batches of 3, 3, 2 */
    c.gradient_accumulation_steps = 2;
    c.output_dir = dir;
    c.logging_steps = 1;
    return c;
}

static void read_params(spin_llama *m, float **out, int64_t *n) {
    int64_t total = 0;
    for (int i = 0; i < m->n_params; i++)
        total += spin_tensor_numel(m->params[i]);
    float *v = malloc((size_t)total * sizeof *v);
    int64_t o = 0;
    for (int i = 0; i < m->n_params; i++) {
        int64_t k = spin_tensor_numel(m->params[i]);
        assert_int_equal(spin_tensor_read_f32(m->params[i], v + o, k), SPIN_OK);
        o += k;
    }
    *out = v;
    *n = total;
}

/* N updates straight equal k updates, stop, resume, N - k updates, bit for bit (same backend,
 * build and thread count), including the shuffle, accumulation across an epoch boundary and the
 * optimizer state. */
static void test_resume_is_bit_exact(void **s) {
    (void)s;
    examples e = load_examples();
    spin_collate_opts co = collate_opts();
    char *d1 = tmpdir(), *d2 = tmpdir();
    spin_llama *p1 = load_tiny(), *ref = load_tiny();
    spin_train_config c = resume_config(d1);
    spin_train_data d = {.policy = p1, .reference = ref, .examples = e.ex, .n = e.n, .collate = co};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    int64_t total = r.global_step;
    assert_true(total >= 4); /* 3 micro-batches an epoch, 1 update, 4 epochs */

    spin_llama *p2 = load_tiny();
    c = resume_config(d2);
    c.stop_after = 2;
    d.policy = p2;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_true(r.interrupted);
    assert_int_equal(r.global_step, 2);
    spin_llama_free(p2);
    p2 = load_tiny(); /* a fresh process would start from the initial weights */
    d.policy = p2;
    c.stop_after = 0;
    c.resume = true;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_int_equal(r.global_step, total);

    float *a, *b;
    int64_t na, nb;
    read_params(p1, &a, &na);
    read_params(p2, &b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    /* the metrics of the two runs are the same lines (the resumed one rewrote nothing twice) */
    char m1[4200], m2[4200];
    snprintf(m1, sizeof m1, "%s/metrics.jsonl", d1);
    snprintf(m2, sizeof m2, "%s/metrics.jsonl", d2);
    double l1[64], g1[64], r1[64], l2[64], g2[64], r2[64];
    int n1 = read_metrics(m1, l1, g1, r1, 64), n2 = read_metrics(m2, l2, g2, r2, 64);
    assert_int_equal(n1, n2);
    for (int i = 0; i < n1; i++)
        assert_true(l1[i] == l2[i] && g1[i] == g2[i] && r1[i] == r2[i]);
    free(a);
    free(b);
    rm_rf(d1);
    rm_rf(d2);
    free(d1);
    free(d2);
    spin_llama_free(p1);
    spin_llama_free(p2);
    spin_llama_free(ref);
    free_examples(&e);
}

/* The child of test_sigterm_checkpoints, in a fresh process image (a forked copy of a process that
 * has run OpenMP regions cannot start new ones): trains "forever" into dir. */
static int sigterm_child(const char *dir) {
    dev = spin_init();
    examples e = load_examples();
    spin_llama *p = NULL, *ref = NULL;
    if (spin_llama_load(DATA "tiny", dev, &p) != SPIN_OK ||
        spin_llama_load(DATA "tiny", dev, &ref) != SPIN_OK)
        return 2;
    spin_train_config c = resume_config(dir);
    c.num_train_epochs = 1000000; /* runs until the signal */
    spin_train_data d = {
        .policy = p, .reference = ref, .examples = e.ex, .n = e.n, .collate = collate_opts()};
    spin_train_result r;
    spin_status st = spin_train_run(&c, &d, &r);
    if (st != SPIN_OK)
        fprintf(stderr, "child: %s\n", spin_last_error());
    spin_llama_free(p);
    spin_llama_free(ref);
    free_examples(&e);
    return st == SPIN_OK && r.interrupted ? 0 : 1;
}

/* gradient_checkpointing recomputes each block in backward: the same updates, bit for bit. */
static void test_recompute_is_identical(void **s) {
    (void)s;
    examples e = load_examples();
    float *v[2];
    int64_t n[2];
    for (int k = 0; k < 2; k++) {
        spin_llama *p = load_tiny(), *ref = load_tiny();
        char *dir = tmpdir();
        spin_train_config c = golden_config(SPIN_OPTIM_ADAMW);
        c.output_dir = dir;
        c.max_steps = 4;
        c.gradient_checkpointing = k == 1;
        spin_train_data d = {
            .policy = p, .reference = ref, .examples = e.ex, .n = e.n, .collate = collate_opts()};
        spin_train_result r;
        assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
        assert_false(p->recompute); /* the model's own setting is given back */
        read_params(p, &v[k], &n[k]);
        rm_rf(dir);
        free(dir);
        spin_llama_free(p);
        spin_llama_free(ref);
    }
    assert_int_equal(n[0], n[1]);
    assert_memory_equal(v[0], v[1], (size_t)n[0] * sizeof(float));
    free(v[0]);
    free(v[1]);
    free_examples(&e);
}

/* Weight decay groups (spin_train_decays): one AdamW update (lr 1e-2, no warmup) with weight decay
 * 0.1 against the same update without. A decayed parameter differs by AdamW's decoupled term
 * -lr * wd * p0 (normalised error <= 1e-3: f32 rounding of p0 * (1 - lr * wd) and of the step,
 * ~1e-4 relative to the term); an exempt one is bit-identical. HF rule: Llama's norm weights are
 * exempt, a Mistral's are not (transformers 4.37); SPIN_DECAY_ALL decays every parameter. */
typedef enum { WD_NONE, WD_HF_LLAMA, WD_HF_MISTRAL, WD_ALL } wd_case;

static float **one_update(wd_case wc, const examples *e, spin_llama **model_out) {
    spin_llama *p = load_tiny(), *ref = load_tiny();
    if (wc == WD_HF_MISTRAL)
        snprintf(p->cfg.architecture, sizeof p->cfg.architecture, "MistralForCausalLM");
    spin_train_config c = golden_config(SPIN_OPTIM_ADAMW);
    c.optim.weight_decay = wc == WD_NONE ? 0.0 : 0.1;
    c.decay_rule = wc == WD_ALL ? SPIN_DECAY_ALL : SPIN_DECAY_HF;
    c.learning_rate = 1e-2;
    c.warmup_steps = 0;
    c.warmup_ratio = 0;
    c.max_steps = 1;
    spin_train_data d = {
        .policy = p, .reference = ref, .examples = e->ex, .n = e->n, .collate = collate_opts()};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    float **v = calloc((size_t)p->n_params, sizeof *v);
    for (int i = 0; i < p->n_params; i++) {
        int64_t n = spin_tensor_numel(p->params[i]);
        v[i] = malloc((size_t)n * sizeof **v);
        assert_int_equal(spin_tensor_read_f32(p->params[i], v[i], n), SPIN_OK);
    }
    spin_llama_free(ref);
    *model_out = p;
    return v;
}

static void test_weight_decay_groups(void **s) {
    (void)s;
    examples e = load_examples();
    spin_llama *m0 = load_tiny(), *m[4];
    float **v[4];
    for (int k = 0; k < 4; k++)
        v[k] = one_update((wd_case)k, &e, &m[k]);
    int exempt_seen = 0;
    for (int i = 0; i < m0->n_params; i++) {
        int64_t n = spin_tensor_numel(m0->params[i]);
        float *p0 = malloc((size_t)n * sizeof *p0), *want = malloc((size_t)n * sizeof *want),
              *got = malloc((size_t)n * sizeof *got);
        assert_int_equal(spin_tensor_read_f32(m0->params[i], p0, n), SPIN_OK);
        for (int64_t j = 0; j < n; j++)
            want[j] = (float)(-1e-2 * 0.1 * p0[j]);
        const char *name = m0->names[i];
        bool norm = strstr(name, "norm.weight") != NULL;
        exempt_seen += norm;
        for (int k = WD_HF_LLAMA; k <= WD_ALL; k++) {
            bool decays = !(norm && k == WD_HF_LLAMA);
            assert_true(spin_train_decays(k == WD_ALL ? SPIN_DECAY_ALL : SPIN_DECAY_HF, m[k], i) == decays);
            if (!decays) {
                assert_memory_equal(v[k][i], v[WD_NONE][i], (size_t)n * sizeof(float));
                continue;
            }
            for (int64_t j = 0; j < n; j++)
                got[j] = (float)((double)v[k][i][j] - v[WD_NONE][i][j]);
            double err = norm_err(got, want, n);
            if (err > 1e-3)
                fail_msg("%s (case %d): decay term off by %.2e (tolerance 1e-3)", name, k, err);
        }
        free(p0);
        free(want);
        free(got);
    }
    assert_int_equal(exempt_seen, 2 * 2 + 1); /* two norms per layer, two layers, the final norm */
    for (int k = 0; k < 4; k++) {
        for (int i = 0; i < m[k]->n_params; i++)
            free(v[k][i]);
        free(v[k]);
        spin_llama_free(m[k]);
    }
    spin_llama_free(m0);
    free_examples(&e);
}

/* SIGTERM during training: the child writes a checkpoint and exits cleanly; the checkpoint is
 * complete and resumable. */
static void test_sigterm_checkpoints(void **s) {
    (void)s;
    char *dir = tmpdir(), metrics[4200];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/proc/self/exe", "test_trainer", "--sigterm-child", dir, (char *)NULL);
        _exit(127);
    }
    /* the first metrics line means the handlers are installed and an update has happened */
    for (int i = 0; i < 600 && access(metrics, F_OK) != 0; i++)
        usleep(100 * 1000);
    assert_int_equal(access(metrics, F_OK), 0);
    kill(pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    char *ck = NULL;
    assert_int_equal(spin_ckpt_latest(dir, &ck), SPIN_OK);
    assert_non_null(ck);
    print_message("SIGTERM left %s\n", ck);
    /* the checkpoint it left loads and the run resumes from it */
    examples e = load_examples();
    spin_llama *p = load_tiny(), *ref = load_tiny();
    spin_train_config c = resume_config(dir);
    c.num_train_epochs = 1000000;
    c.resume = true;
    c.stop_after = 1;
    spin_train_data d = {
        .policy = p, .reference = ref, .examples = e.ex, .n = e.n, .collate = collate_opts()};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_true(r.global_step >= 2);
    free(ck);
    rm_rf(dir);
    free(dir);
    spin_llama_free(p);
    spin_llama_free(ref);
    free_examples(&e);
}

/* A NaN reference score makes the loss NaN: the run stops naming the step, or skips and counts. */
static void test_nonfinite(void **s) {
    (void)s;
    examples e = load_examples();
    spin_collate_opts co = collate_opts();
    float rc[8], rr[8];
    spin_llama *p = load_tiny();
    assert_int_equal(spin_score_examples(p, e.ex, e.n, 4, &co, false, rc, rr, NULL, NULL), SPIN_OK);
    rc[5] = NAN; /* example 5 is in the second batch (no shuffle, batch 4) */
    char *dir = tmpdir();
    spin_train_config c = golden_config(SPIN_OPTIM_RMSPROP);
    c.output_dir = dir;
    c.save_steps = 1;
    spin_train_data d = {
        .policy = p, .examples = e.ex, .n = e.n, .ref_chosen = rc, .ref_rejected = rr, .collate = co};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_ERR_INVALID);
    print_message("stop: %s\n", spin_last_error());
    assert_non_null(strstr(spin_last_error(), "non-finite loss at step 2"));
    assert_non_null(strstr(spin_last_error(), "checkpoint-1"));
    assert_int_equal(r.global_step, 1);
    rm_rf(dir);

    spin_llama_free(p);
    p = load_tiny();
    c.resume = false;
    c.nonfinite = SPIN_NONFINITE_SKIP;
    c.save_steps = 0;
    d.policy = p;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_int_equal(r.global_step, 10);
    assert_int_equal(r.skipped, 5); /* every second update sees example 5 */
    float *v;
    int64_t n;
    read_params(p, &v, &n);
    for (int64_t i = 0; i < n; i++)
        assert_true(isfinite(v[i]));
    free(v);
    rm_rf(dir);
    free(dir);
    spin_llama_free(p);
    free_examples(&e);
}

/* Stored scores are refused when anything that determines them differs from the run. */
static void test_stale_scores_refused(void **s) {
    (void)s;
    examples e = load_examples();
    spin_collate_opts co = collate_opts();
    spin_llama *opp = load_tiny();
    float rc[8], rr[8], c2[8], r2[8];
    assert_int_equal(spin_score_examples(opp, e.ex, e.n, 4, &co, false, rc, rr, NULL, NULL), SPIN_OK);
    spin_score_fingerprint fp = {.tokenizer = 0x1234, .max_length = 64, .max_prompt_length = 32};
    snprintf(fp.template_name, sizeof fp.template_name, "zephyr");
    assert_int_equal(spin_llama_weights_hash(opp, &fp.weights), SPIN_OK);
    char *dir = tmpdir(), path[4200];
    snprintf(path, sizeof path, "%s/scores.jsonl", dir);
    assert_int_equal(spin_scores_write(path, &fp, e.ex, e.n, rc, rr, false), SPIN_OK);
    assert_int_equal(spin_scores_write(path, &fp, e.ex, e.n, rc, rr, false), SPIN_ERR_IO); /* no clobber */
    assert_int_equal(spin_scores_read(path, &fp, e.ex, e.n, c2, r2), SPIN_OK);
    assert_memory_equal(rc, c2, sizeof rc); /* %.9g round-trips f32 */
    assert_memory_equal(rr, r2, sizeof rr);

    spin_score_fingerprint bad = fp;
    bad.max_length = 128;
    assert_int_equal(spin_scores_read(path, &bad, e.ex, e.n, c2, r2), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "max_length 64, this run has 128"));
    bad = fp;
    snprintf(bad.template_name, sizeof bad.template_name, "chatml");
    assert_int_equal(spin_scores_read(path, &bad, e.ex, e.n, c2, r2), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "template"));
    /* other weights (e.g. the trained policy instead of the opponent) */
    bad = fp;
    bad.weights ^= 1;
    assert_int_equal(spin_scores_read(path, &bad, e.ex, e.n, c2, r2), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "weights"));
    /* one example's tokens changed (e.g. another truncation): its line is refused */
    e.ex[3].chosen[0] ^= 1;
    assert_int_equal(spin_scores_read(path, &fp, e.ex, e.n, c2, r2), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), ":5: stale opponent scores: example 3"));
    e.ex[3].chosen[0] ^= 1;
    assert_int_equal(spin_scores_read(path, &fp, e.ex, e.n - 1, c2, r2), SPIN_ERR_INVALID);
    rm_rf(dir);
    free(dir);
    spin_llama_free(opp);
    free_examples(&e);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--sigterm-child"))
        return sigterm_child(argv[2]);
    dev = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_rmsprop_reference_model),
        cmocka_unit_test(test_golden_rmsprop_stored_scores),
        cmocka_unit_test(test_golden_adamw_reference_model),
        cmocka_unit_test(test_golden_adamw_stored_scores),
        cmocka_unit_test(test_modes_agree),
        cmocka_unit_test(test_resume_is_bit_exact),
        cmocka_unit_test(test_recompute_is_identical),
        cmocka_unit_test(test_weight_decay_groups),
        cmocka_unit_test(test_sigterm_checkpoints),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_stale_scores_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
