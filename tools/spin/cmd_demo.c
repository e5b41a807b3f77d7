/* spin demo: the whole SPIN pipeline on a task small enough for two CPU cores. The program makes
 * everything itself (no downloads): a tiny Llama with a byte-level tokenizer and the zephyr chat
 * template, and a string task (reverse a string of 4-8 letters from a-l; long and varied enough that
 * the SFT model is still wrong on about half the held-out prompts, so there is room to improve). It reformats
 * the task into SPIN rows (spin reformat), under-trains the model on the train split (spin train --loss sft),
 * runs two SPIN iterations on the same prompts (spin iterate), and, as a control, continues the SFT run for
 * as many updates as SPIN made. Every model is then measured on the held-out prompts: exact match of its
 * greedy answers, the mean log-prob of the ground truth, and the SPIN reward accuracy against the SFT model.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tools/spin/commands.h"
#include "tools/spin/demo_model.h"
#include "tools/spin/iterate_summary.h"
#include "tools/spin/jsonl_io.h"

typedef struct {
    const char *name;
    demo_model_size model;
    int prompts, min_len, max_len, alphabet;
    double test_fraction;
    const char *sft_lr, *sft_epochs, *spin_lr, *spin_epochs, *beta, *batch;
    int gen_batch;
} demo_preset;

/* full: about 35 s on two cores (docs/spin.md, "The demo", has the sweep behind these values and
 * its numbers); quick: seconds (the CLI test) */
static const demo_preset presets[] = {
    {"full", {96, 2, 4, 2, 256, 64, 1234}, 1000, 4, 8, 12, 0.2, "1e-3", "6", "5e-6", "2", "1.0", "16", 100},
    {"quick", {32, 1, 4, 2, 64, 64, 1234}, 40, 3, 4, 6, 0.25, "1e-2", "30", "1e-4", "1", "0.1", "8", 16},
};

static void help(FILE *f) {
    fprintf(f, "usage: spin demo [--dir DIR] [--quick] [--seed S] [--threads N] [--sft-epochs E]\n"
               "                 [--spin-lr LR] [--spin-epochs E] [--beta B]\n"
               "\n"
               "SPIN end to end on a task the program makes itself: reverse a string of 4-8 letters (a-l).\n"
               "  1. a tiny Llama (byte-level tokenizer.json, zephyr chat template, seeded random weights)\n"
               "     and the task as SFT records, split by `spin reformat`\n"
               "  2. SFT on the train split (`spin train --loss sft`), stopped while many answers are wrong\n"
               "  3. two SPIN iterations on the same prompts (`spin iterate`: generate, convert, score,\n"
               "     train, eval)\n"
               "  4. a control: the SFT run continued for as many updates as SPIN made\n"
               "  5. every model on the held-out prompts: exact match of greedy answers, mean log-prob of\n"
               "     the ground truth, reward accuracy and margin against the SFT model (`spin eval`), and\n"
               "     a verdict in words computed from those numbers\n"
               "\n"
               "options:\n"
               "  --dir DIR    where everything goes (default spin-demo); must not exist or be empty\n"
               "  --quick      a smaller model and task that finish in seconds (a smoke test)\n"
               "  --seed S     one seed for the task's strings, the initial weights and every training\n"
               "               run's shuffling (default 42)\n"
               "  --threads N  CPU threads (default: OMP_NUM_THREADS or all cores)\n"
               "  to try other settings (defaults: the preset's, printed at the start):\n"
               "  --sft-epochs E  epochs of the SFT run\n"
               "  --spin-lr LR    SPIN's learning rate (both iterations)\n"
               "  --spin-epochs E SPIN's epochs per iteration\n"
               "  --beta B        SPIN's beta\n"
               "  --help, -h   this help\n");
}

static int run(int (*fn)(int, char **), const char *first, ...) {
    char *v[64];
    int n = 0;
    va_list ap;
    va_start(ap, first);
    for (const char *s = first; s && n < 63; s = va_arg(ap, const char *))
        v[n++] = (char *)s;
    va_end(ap);
    v[n] = NULL;
    printf("\n== spin demo:");
    for (int i = 0; i < n; i++)
        printf(" %s", v[i]);
    printf("\n");
    fflush(stdout);
    int rc = fn(n, v);
    fflush(stdout);
    if (rc)
        fprintf(stderr, "spin demo: `spin %s` failed (status %d)\n", v[0], rc);
    return rc;
}

static uint64_t next_u64(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The task as SFT records (messages), distinct prompts. */
static int write_task(const char *path, const demo_preset *p, uint64_t seed) {
    char(*seen)[16] = calloc((size_t)p->prompts, sizeof *seen);
    char *tmp = NULL;
    FILE *f = seen ? jl_begin("demo", path, false, &tmp) : NULL;
    if (!f) {
        free(seen);
        return 1;
    }
    uint64_t st = seed;
    for (int i = 0; i < p->prompts;) {
        int len = p->min_len + (int)(next_u64(&st) % (uint64_t)(p->max_len - p->min_len + 1));
        char s[16], r[16];
        for (int k = 0; k < len; k++)
            s[k] = (char)('a' + (int)(next_u64(&st) % (uint64_t)p->alphabet));
        s[len] = 0;
        bool dup = false;
        for (int j = 0; j < i && !dup; j++)
            dup = !strcmp(seen[j], s);
        if (dup)
            continue;
        snprintf(seen[i++], sizeof *seen, "%s", s);
        for (int k = 0; k < len; k++)
            r[k] = s[len - 1 - k];
        r[len] = 0;
        fprintf(
            f,
            "{\"messages\": [{\"role\": \"user\", \"content\": \"reverse %s\"}, {\"role\": \"assistant\", "
            "\"content\": \"%s\"}]}\n",
            s, r);
    }
    free(seen);
    return jl_commit("demo", f, tmp, path, false);
}

/* The SFT rows: the train split with the ground truth as `generated` too (the sft loss reads only
 * the real answer; the SPIN reader wants both columns filled). */
static int write_sft(const char *data, const char *path) {
    jl_rows r = {0};
    if (jl_read_split("demo", data, "train", false, false, &r) != 0)
        return 1;
    char *tmp = NULL;
    FILE *f = jl_begin("demo", path, false, &tmp);
    int rc = f ? 0 : 1;
    for (int64_t i = 0; rc == 0 && i < r.n; i++) {
        char *line = jl_pair_line(r.row[i].user, r.row[i].real, r.row[i].real);
        rc = line ? 0 : 1;
        if (line)
            fprintf(f, "%s\n", line);
        free(line);
    }
    if (f)
        rc = jl_commit("demo", f, tmp, path, false) || rc;
    jl_rows_free(&r);
    return rc;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The step of the last line of a metrics file (0 when there is none). */
static long long last_step(const char *metrics) {
    FILE *f = fopen(metrics, "r");
    long long step = 0;
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_object *o = json_tokener_parse(line), *v = NULL;
        if (o && json_object_object_get_ex(o, "step", &v))
            step = json_object_get_int64(v);
        json_object_put(o);
    }
    free(line);
    if (f)
        fclose(f);
    return step;
}

static double num_at(json_object *o, const char *a, const char *b) {
    json_object *x = NULL, *y = NULL;
    if (!o || !json_object_object_get_ex(o, a, &x) || (b && !json_object_object_get_ex(x, b, &y)))
        return NAN;
    return json_object_get_double(b ? y : x);
}

static bool empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)))
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty;
}

/* "raised WHAT from A to B", "lowered ...", or "left WHAT at A" */
static void change(char *out, size_t cap, const char *what, double from, double to) {
    if (to == from)
        snprintf(out, cap, "left %s at %.3f", what, from);
    else
        snprintf(out, cap, "%s %s from %.3f to %.3f", to > from ? "raised" : "lowered", what, from, to);
}

/* The closing lines, computed from the table (em: exact match, lp: mean logp of the ground truth;
 * 0 = SFT, 1 and 2 = SPIN iterations 0 and 1, 3 = the control). A change in exact match under
 * 1/sqrt(n) (two standard errors of a rate near 0.5) is called noise. */
static void verdict(const double em[4], const double lp[4], int64_t n) {
    double noise = n > 0 ? 1.0 / sqrt((double)n) : NAN;
    printf("\nspin demo: verdict (held-out, %lld prompts; exact-match changes under %.3f are within noise)\n",
           (long long)n, noise);
    for (int k = 1; k <= 2; k++) {
        char e[96], l[96];
        change(e, sizeof e, "exact match", em[0], em[k]);
        change(l, sizeof l, "logp(real)", lp[0], lp[k]);
        printf("  SPIN iteration %d (θ_%d) %s (%s) and %s.\n", k - 1, k, e,
               fabs(em[k] - em[0]) < noise ? "within noise" : "beyond noise", l);
    }
    bool em_better = em[3] > em[2], lp_better = lp[3] > lp[2];
    printf("  The control (SFT continued for as many updates) reached %.3f and %.3f: exact match %s SPIN "
           "iteration 1's%s, logp(real) %s.\n",
           em[3], lp[3],
           em_better       ? "higher than"
           : em[3] < em[2] ? "lower than"
                           : "equal to",
           fabs(em[3] - em[2]) < noise ? " (within noise)" : "", lp_better ? "higher" : "not higher");
    bool em_up = em[2] - em[0] >= noise, em_down = em[0] - em[2] >= noise, lp_up = lp[2] > lp[0];
    const char *self = em_up && lp_up      ? "improved the SFT model on both measures"
                       : em_up             ? "raised exact match but lowered logp(real)"
                       : lp_up && !em_down ? "raised logp(real), with exact match within noise"
                                           : "did not improve the SFT model";
    /* against the control: who has the higher logp(real), and whether exact match differs beyond noise */
    int em_cmp = em[3] - em[2] >= noise ? 1 : em[2] - em[3] >= noise ? -1 : 0;
    bool ctrl_lp = lp[3] > lp[2];
    const char *hi = ctrl_lp ? "the SFT control" : "SPIN", *lo = ctrl_lp ? "SPIN" : "the SFT control";
    char vs[160];
    if (em_cmp == 0)
        snprintf(vs, sizeof vs, "%s reached the higher logp(real), exact match within noise of %s's", hi, lo);
    else if ((em_cmp > 0) == ctrl_lp)
        snprintf(vs, sizeof vs, "%s did better than %s on both", hi, lo);
    else
        snprintf(vs, sizeof vs, "%s reached the higher exact match, %s the higher logp(real)", lo, hi);
    printf("  In this run self-play (two iterations) %s; %s.\n", self, vs);
}

/* A positive number, as the option's value (the trainer parses it again; this names the option). */
static bool positive(const char *opt, const char *v) {
    char *end;
    double x = strtod(v, &end);
    if (*v && !*end && x > 0 && isfinite(x))
        return true;
    fprintf(stderr, "spin demo: %s expects a positive number (got '%s')\n", opt, v);
    return false;
}

int cmd_demo(int argc, char **argv) {
    const char *dir = "spin-demo";
    demo_preset preset = presets[0];
    const char *over[4] = {NULL, NULL, NULL, NULL}; /* sft-epochs, spin-lr, spin-epochs, beta */
    static const char *const over_opt[4] = {"--sft-epochs", "--spin-lr", "--spin-epochs", "--beta"};
    unsigned long long seed = 42;
    for (int i = 1; i < argc; i++) {
        int o = -1;
        for (int k = 0; k < 4; k++)
            if (!strcmp(argv[i], over_opt[k]) && i + 1 < argc)
                o = k;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--quick")) {
            preset = presets[1];
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) {
            dir = argv[++i];
        } else if (o >= 0) {
            over[o] = argv[++i];
            if (!positive(over_opt[o], over[o]))
                return 2;
        } else if (!strcmp(argv[i], "--seed") && i + 1 < argc) {
            char *end;
            errno = 0;
            seed = strtoull(argv[++i], &end, 10);
            if (*end || !*argv[i] || *argv[i] == '-' || errno) {
                fprintf(stderr, "spin demo: --seed expects an integer >= 0 (got '%s')\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 4096) {
                fprintf(stderr, "spin demo: --threads expects an integer >= 1 (got '%s')\n", argv[i]);
                return 2;
            }
            omp_set_num_threads((int)t);
        } else {
            fprintf(stderr, "spin demo: unknown or incomplete option '%s'\n", argv[i]);
            help(stderr);
            return 2;
        }
    }
    const char **field[4] = {&preset.sft_epochs, &preset.spin_lr, &preset.spin_epochs, &preset.beta};
    for (int k = 0; k < 4; k++)
        if (over[k])
            *field[k] = over[k];
    preset.model.seed = seed;
    const demo_preset *p = &preset;
    if (!empty_dir(dir)) {
        fprintf(stderr, "spin demo: %s exists and is not empty (remove it or pass --dir)\n", dir);
        return 1;
    }
    double t0 = now_s();
    char path[32][1024];
    enum {
        BASE,
        TASK,
        DATA,
        SFT_ROWS,
        SFT,
        RUN,
        CFG,
        CONTROL,
        CONTROL_GEN,
        CMP,
        CMP_SPIN1,
        CMP_SPIN2,
        CMP_CTRL,
        CTRL_STEPS
    };
    const char *names[] = {"base-model",
                           "task.jsonl",
                           "data",
                           "sft.jsonl",
                           "sft-model",
                           "spin",
                           "iterate.yaml",
                           "control-model",
                           "control-generated",
                           "compare",
                           "compare/spin-iter1.json",
                           "compare/spin-iter2.json",
                           "compare/control.json",
                           ""};
    for (int i = 0; i < CTRL_STEPS; i++)
        snprintf(path[i], sizeof path[i], "%s/%s", dir, names[i]);
    int rc = jl_mkdir("demo", dir);
    printf(
        "spin demo (%s): reverse strings of %d-%d letters; %d prompts, %.0f%% held out; a %d-layer Llama of "
        "hidden size %d\n",
        p->name, p->min_len, p->max_len, p->prompts, 100 * p->test_fraction, p->model.layers,
        p->model.hidden);
    printf("spin demo: seed %llu; SFT adamw lr %s, %s epochs; SPIN rmsprop lr %s, beta %s, %s epochs per "
           "iteration\n",
           seed, p->sft_lr, p->sft_epochs, p->spin_lr, p->beta, p->spin_epochs);
    if (rc == 0)
        rc = demo_model_write(path[BASE], &p->model) || write_task(path[TASK], p, seed);
    char frac[32], steps[32];
    snprintf(frac, sizeof frac, "%g", p->test_fraction);
    if (rc == 0)
        rc = run(cmd_reformat, "reformat", "--input", path[TASK], "--output-dir", path[DATA],
                 "--test-fraction", frac, NULL);
    if (rc == 0)
        rc = write_sft(path[DATA], path[SFT_ROWS]);
    char a_seed[64];
    snprintf(a_seed, sizeof a_seed, "--seed=%llu", seed);
    /* SFT, stopped early: the model knows the format but gets many answers wrong */
    const char *lr_sft = p->sft_lr,
               *common[] = {"--max_length=64",    "--max_prompt_length=40", "--logging_steps=5",
                            "--save_strategy=no", "--warmup_ratio=0",       a_seed};
    char a_lr[64], a_ep[64], a_bs[64], a_model[1100], a_data[1100], a_out[1100];
    snprintf(a_lr, sizeof a_lr, "--learning_rate=%s", lr_sft);
    snprintf(a_ep, sizeof a_ep, "--num_train_epochs=%s", p->sft_epochs);
    snprintf(a_bs, sizeof a_bs, "--per_device_train_batch_size=%s", p->batch);
    snprintf(a_model, sizeof a_model, "--model=%s", path[BASE]);
    snprintf(a_data, sizeof a_data, "--data=%s", path[SFT_ROWS]);
    snprintf(a_out, sizeof a_out, "--output=%s", path[SFT]);
    if (rc == 0)
        rc = run(cmd_train, "train", a_model, a_data, a_out, "--loss=sft", "--reference_free=true",
                 "--optim=adamw_torch", "--lr_scheduler_type=constant", a_lr, a_ep, a_bs, common[0],
                 common[1], common[2], common[3], common[4], common[5], NULL);
    /* SPIN: uclaml/SPIN's recipe (rmsprop, linear schedule, warmup 0.1, sigmoid loss, iteration 1 on
     * iteration 0's and 1's data) with this model's learning rate and beta: at lr 5e-5 logp(real)
     * collapsed; at beta 0.1 the second iteration undid part of the first on seed 42 */
    if (rc == 0) {
        char *tmp = NULL;
        FILE *f = jl_begin("demo", path[CFG], false, &tmp);
        rc = f ? 0 : 1;
        if (f) {
            fprintf(f,
                    "# spin demo: two SPIN iterations from the SFT model (spin iterate --help)\n"
                    "model_name_or_path: %s\n"
                    "output_dir: %s\n"
                    "loss_type: sigmoid\n"
                    "beta: %s\n"
                    "optim: rmsprop\n"
                    "learning_rate: %s\n"
                    "lr_scheduler_type: linear\n"
                    "warmup_ratio: 0.1\n"
                    "num_train_epochs: %s\n"
                    "per_device_train_batch_size: %s\n"
                    "max_length: 64\n"
                    "max_prompt_length: 40\n"
                    "logging_steps: 5\n"
                    "save_strategy: epoch\n"
                    "seed: %llu\n"
                    "iterate:\n"
                    "  input: %s\n"
                    "  num_iterations: 2\n"
                    "  eval_batch_size: 64\n"
                    "  generate:\n"
                    "    chat_template: true   # prompts as training renders them\n"
                    "    max_new_tokens: 12\n"
                    "    batch_size: %d\n",
                    path[SFT], path[RUN], p->beta, p->spin_lr, p->spin_epochs, p->batch, seed, path[DATA],
                    p->gen_batch);
            rc = jl_commit("demo", f, tmp, path[CFG], false);
        }
    }
    if (rc == 0)
        rc = run(cmd_iterate, "iterate", path[CFG], NULL);
    /* the control: SFT continued for as many updates as both SPIN iterations made */
    long long spin_steps = 0;
    char m0[1100], m1[1100];
    for (int t = 0; rc == 0 && t < 2; t++) {
        snprintf(m0, sizeof m0, "%s/iter%d/model/metrics.jsonl", path[RUN], t);
        spin_steps += last_step(m0);
    }
    snprintf(steps, sizeof steps, "--max_steps=%lld", spin_steps);
    snprintf(a_model, sizeof a_model, "--model=%s", path[SFT]);
    snprintf(a_out, sizeof a_out, "--output=%s", path[CONTROL]);
    if (rc == 0)
        rc = run(cmd_train, "train", a_model, a_data, a_out, "--loss=sft", "--reference_free=true",
                 "--optim=adamw_torch", "--lr_scheduler_type=constant", a_lr, steps, a_bs, common[0],
                 common[1], common[2], common[3], common[4], common[5], NULL);
    char gen_bs[16];
    snprintf(gen_bs, sizeof gen_bs, "%d", p->gen_batch);
    if (rc == 0)
        rc = run(cmd_generate, "generate", "--model", path[CONTROL], "--input", path[DATA], "--split", "test",
                 "--output-dir", path[CONTROL_GEN], "--max-new-tokens", "12", "--batch-size", gen_bs,
                 "--chat-template", NULL);
    /* every model against the SFT model on its held-out answers (iteration 0's test rows) */
    snprintf(m0, sizeof m0, "%s/iter0/data", path[RUN]);
    if (rc == 0)
        rc = jl_mkdir("demo", path[CMP]);
    const char *models[3][2] = {
        {"iter0/model", path[CMP_SPIN1]}, {"iter1/model", path[CMP_SPIN2]}, {NULL, path[CMP_CTRL]}};
    for (int k = 0; rc == 0 && k < 3; k++) {
        if (models[k][0])
            snprintf(m1, sizeof m1, "%s/%s", path[RUN], models[k][0]);
        else
            snprintf(m1, sizeof m1, "%s", path[CONTROL]);
        rc = run(cmd_eval, "eval", "--model", m1, "--opponent", path[SFT], "--data", m0, "--split", "test",
                 "--output", models[k][1], "--max-length", "64", "--max-prompt-length", "40", "--batch-size",
                 "64", "--beta", p->beta, "--max-new-tokens", "12", NULL);
    }
    if (rc == 0) {
        /* the table: each model on the held-out prompts */
        const char *label[4] = {"SFT (θ_0)", "SPIN iteration 0 (θ_1)", "SPIN iteration 1 (θ_2)",
                                "control: SFT continued"};
        char ans[4][1100];
        snprintf(ans[0], sizeof ans[0], "%s/iter0/generated/loser_0_test.jsonl", path[RUN]);
        snprintf(ans[1], sizeof ans[1], "%s/iter1/generated/loser_0_test.jsonl", path[RUN]);
        snprintf(ans[2], sizeof ans[2], "%s/iter2/generated/loser_0_test.jsonl", path[RUN]);
        snprintf(ans[3], sizeof ans[3], "%s/loser_0_test.jsonl", path[CONTROL_GEN]);
        char sft_metrics[1100];
        snprintf(sft_metrics, sizeof sft_metrics, "%s/metrics.jsonl", path[SFT]);
        long long sft_steps = last_step(sft_metrics), s0 = 0, s1 = 0;
        snprintf(m0, sizeof m0, "%s/iter0/model/metrics.jsonl", path[RUN]);
        s0 = last_step(m0);
        snprintf(m0, sizeof m0, "%s/iter1/model/metrics.jsonl", path[RUN]);
        s1 = last_step(m0);
        long long upd[4] = {sft_steps, sft_steps + s0, sft_steps + s0 + s1, sft_steps + spin_steps};
        json_object *ev[4] = {NULL, json_object_from_file(path[CMP_SPIN1]),
                              json_object_from_file(path[CMP_SPIN2]), json_object_from_file(path[CMP_CTRL])};
        printf("\nspin demo: held-out prompts (%s/data test split), every model measured the same way\n",
               dir);
        printf("  %-26s %8s %12s %16s %14s %12s\n", "model", "updates", "exact match", "logp(real) mean",
               "reward acc", "margin");
        double ems[4], lps[4];
        int64_t n_test = 0;
        for (int k = 0; k < 4; k++) {
            double em = NAN;
            int64_t n = 0;
            iterate_exact_match(ans[k], &em, &n);
            n_test = n;
            double lp = k == 0 ? num_at(ev[1], "rewards", NULL) : num_at(ev[k], "logps", "real");
            if (k == 0) { /* the SFT model is every eval's opponent */
                json_object *rw = NULL, *ol = NULL;
                lp = ev[1] && json_object_object_get_ex(ev[1], "rewards", &rw) &&
                             json_object_object_get_ex(rw, "opponent_logps", &ol)
                         ? num_at(ol, "real", NULL)
                         : NAN;
            }
            ems[k] = em, lps[k] = lp;
            printf("  %-26s %8lld %7.3f (%lld) %16.3f", label[k], upd[k], em, (long long)n, lp);
            if (k == 0)
                printf(" %14s %12s\n", "-", "-");
            else
                printf(" %14.3f %12.3f\n", num_at(ev[k], "rewards", "accuracy"),
                       num_at(ev[k], "rewards", "margin"));
        }
        printf(
            "  exact match: greedy answer == ground truth; logp(real): mean summed log-prob of the "
            "ground-truth\n"
            "  answer; reward acc / margin: SPIN rewards against the SFT model on its own held-out answers.\n"
            "  The greedy answers see the prompt as training scores it: its EOS tokens masked (quirk 3).\n"
            "  SPIN's per-iteration summary: %s/iterate_summary.jsonl; charts: %s/metrics.png\n",
            path[RUN], path[RUN]);
        for (int k = 1; k < 4; k++)
            json_object_put(ev[k]);
        verdict(ems, lps, n_test);
        printf("spin demo: %.0f s\n", now_s() - t0);
    }
    return rc;
}
