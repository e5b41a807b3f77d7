/* spin iterate: uclaml/SPIN's self-play loop as one program. For t = 0..T-1 the current model θ_t
 * answers the train and test prompts (`spin generate`), the answers become SPIN rows (`spin
 * convert`), the opponent θ_t is scored once on the mixed rows (`spin score`; for t >= 1 the mixer
 * holds iter_{t-1}'s and iter_t's data, as uclaml/SPIN's recipes), θ_t+1 is trained (`spin train`)
 * and evaluated on the held-out rows against θ_t (`spin eval`); θ_T answers the test prompts last.
 *
 * Each stage is the subcommand's own entry point called in this process with the argv printed in
 * the plan (each loads, frees and writes its files atomically), so a stage behaves exactly as the
 * command typed by hand. A stage that finished leaves OUTPUT_DIR/iter<t>/<stage>.done; a rerun
 * skips those and resumes the others through the commands' own resume (generate continues its
 * shard, train continues from its newest checkpoint).
 *
 * Under mpirun (docs/distributed.md) every rank walks the same plan: generate, score and train run
 * distributed (every rank calls them); convert and eval run on rank 0 while the others wait for the
 * stage's agreed status; rank 0 alone decides what is done, writes the markers, the config copy, the
 * summary and the charts. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "models/safetensors.h"
#include "tools/spin/cli_comm.h"
#include "tools/spin/commands.h"
#include "tools/spin/iterate_config.h"
#include "tools/spin/iterate_summary.h"
#include "tools/spin/jsonl_io.h"
#include "tools/spin/plot.h"
#include "tools/spin/train_cli.h"
#include "train/pref_loss.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin iterate CONFIG.yaml [--key=value | --key value]... [--dry-run] [--threads N] [--device "
        "D]\n"
        "\n"
        "Runs uclaml/SPIN's self-play loop: for t = 0..T-1, θ_t answers the train and test prompts of\n"
        "iterate.input (spin generate), the answers become SPIN rows (spin convert), θ_t is scored as the\n"
        "opponent (spin score), θ_t+1 is trained (spin train) and evaluated against θ_t on the test rows\n"
        "(spin eval); θ_T answers the test prompts at the end. For t >= 1 the training data is\n"
        "iter_{t-1}'s and iter_t's rows (dataset_mixer {iter_{t-1}: 1.0, iter_t: 1.0}, uclaml/SPIN).\n"
        "\n"
        "CONFIG.yaml is uclaml/SPIN's training config (the keys of `spin train --help`) with\n"
        "model_name_or_path = θ_0 and output_dir = the root of the run, plus a section:\n"
        "  iterate:\n"
        "    input: DIR              `spin reformat` output: train and test splits (required)\n"
        "    num_iterations: T       (default: the length of `iterations`)\n"
        "    mix_previous: BOOL      previous iteration's data in the mixer for t >= 1 (default true)\n"
        "    eval: BOOL              held-out eval of θ_t+1 against θ_t (default true)\n"
        "    eval_batch_size: N      (default 8)\n"
        "    generate:               spin generate options: batch_size, max_new_tokens, temperature,\n"
        "                            top_p, top_k, seed, stop, generation_config, ignore_eos, add_special,\n"
        "                            attend_prompt_eos, max_length, chat_template (BOOL: prompts through\n"
        "                            the chat template as training renders them, its EOS tokens masked as\n"
        "                            training masks them unless attend_prompt_eos; default false,\n"
        "                            uclaml/SPIN's \"### Instruction\" prompt), template NAME,\n"
        "                            frac_len N (rows per shard; 0: one shard)\n"
        "    iterations:             per-iteration training keys, e.g.\n"
        "      - {}                    iteration 0: the config as it is\n"
        "      - {learning_rate: 1.0e-7, beta: 5.0}\n"
        "dataset_mixer, opponent_scores, overwrite_output_dir and resume_from_checkpoint are set by\n"
        "spin iterate and refused in the config. --key=value overrides apply to every iteration and win\n"
        "over `iterations` entries.\n"
        "\n"
        "Layout: OUTPUT_DIR/train_config.yaml (the config without the iterate section, same line numbers),\n"
        "OUTPUT_DIR/iter<t>/{generated/, data/, opponent_scores.jsonl, model/, eval.json, *.done},\n"
        "OUTPUT_DIR/iter<T>/generated/ (θ_T's test answers), OUTPUT_DIR/iterate_summary.jsonl and\n"
        "OUTPUT_DIR/metrics.png (every iteration's training metrics), both rewritten on every run.\n"
        "\n"
        "Rerunning the same command resumes: finished stages (iter<t>/<stage>.done) are skipped, an\n"
        "interrupted generation continues its shard, an interrupted training continues from its newest\n"
        "checkpoint. SIGINT/SIGTERM during training write a checkpoint and stop (status 130).\n"
        "\n"
        "options:\n"
        "  --dry-run     print the plan (each stage, whether it is done, its command) and exit; writes\n"
        "                only OUTPUT_DIR/train_config.yaml, which the printed commands read\n"
        "  --threads N   CPU threads;  --device D  device (as spin train)\n"
        "  --help, -h    this help\n"
        "\n"
        "`mpirun -np N spin iterate ...` (a -DSPIN_MPI=ON build): generate, score and train run on the N\n"
        "ranks (prompts and rows split, data-parallel training); convert and eval run on rank 0 while\n"
        "the others wait; rank 0 writes every file.\n");
}

/* ---- argument vectors ---- */

typedef struct {
    char **v;
    int n, cap;
} argvec;

static int av_add(argvec *a, const char *fmt, ...) {
    if (a->n + 2 > a->cap) {
        int nc = a->cap ? 2 * a->cap : 16;
        char **nv = realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv)
            return 1;
        a->v = nv;
        a->cap = nc;
    }
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = k >= 0 ? malloc((size_t)k + 1) : NULL;
    if (!s)
        return 1;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)k + 1, fmt, ap);
    va_end(ap);
    a->v[a->n++] = s;
    a->v[a->n] = NULL;
    return 0;
}

static void av_free(argvec *a) {
    for (int i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}

static int av_copy(argvec *dst, const argvec *src) {
    for (int i = 0; i < src->n; i++)
        if (av_add(dst, "%s", src->v[i]))
            return 1;
    return 0;
}

/* `spin ARGV...` with shell quoting where needed */
static void print_command(FILE *f, const argvec *a) {
    fprintf(f, "spin");
    for (int i = 0; i < a->n; i++) {
        const char *s = a->v[i];
        bool plain = *s != 0;
        for (const char *p = s; *p && plain; p++)
            plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *p) !=
                    NULL;
        if (plain) {
            fprintf(f, " %s", s);
            continue;
        }
        fputs(" '", f);
        for (const char *p = s; *p; p++)
            if (*p == '\'')
                fputs("'\\''", f);
            else
                fputc(*p, f);
        fputc('\'', f);
    }
    fputc('\n', f);
}

/* ---- the command line ---- */

typedef struct {
    bool dry;
} own_opts;

static int own_option(void *ctx, const char *name, const char *eq, const char *next, int *consumed) {
    (void)next;
    (void)consumed;
    if (strcmp(name, "dry-run") && strcmp(name, "dry_run"))
        return -2;
    if (eq) {
        fprintf(stderr, "spin iterate: --dry-run takes no value\n");
        return -1;
    }
    ((own_opts *)ctx)->dry = true;
    return 0;
}

/* Keys spin iterate sets itself in every iteration. */
static const char *const managed[] = {"dataset_mixer", "opponent_scores", "overwrite_output_dir",
                                      "resume_from_checkpoint"};

static bool set_here(const train_cli_config *c, const char *key) {
    return strcmp(train_config_where(c, key), "default") != 0;
}

/* The user's overrides as `--key=value` arguments for every iteration's train and score, without the
 * keys iterate handles (model_name_or_path and output_dir: θ_0 and the root; the managed keys are
 * refused). Assumes train_cli_parse accepted argv already. */
static int forward_overrides(int argc, char **argv, argvec *fwd) {
    for (int i = 2; i < argc; i++) {
        char name[128];
        const char *a = argv[i] + 2, *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        if (n >= sizeof name)
            return 2;
        memcpy(name, a, n);
        name[n] = 0;
        const char *val = eq ? eq + 1 : NULL, *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(name, "dry-run") || !strcmp(name, "dry_run"))
            continue;
        if (!strcmp(name, "threads") || !strcmp(name, "device")) {
            i += !val;
            continue;
        }
        train_cli_config s;
        train_config_defaults(&s);
        int consumed = 0;
        int r = train_config_set_cli("iterate", &s, name, val, next, &consumed);
        bool skip = set_here(&s, "model_name_or_path") || set_here(&s, "output_dir"), refused = false;
        for (size_t k = 0; k < sizeof managed / sizeof *managed; k++)
            if (set_here(&s, managed[k])) {
                fprintf(stderr, "spin iterate: --%s: %s is set by spin iterate in each iteration\n", name,
                        managed[k]);
                refused = true;
            }
        train_config_free(&s);
        if (r != 0 || refused)
            return 2;
        const char *v = val ? val : consumed ? next : "true";
        i += consumed;
        if (!skip && av_add(fwd, "--%s=%s", name, v))
            return 1;
    }
    return 0;
}

/* ---- the plan ---- */

typedef enum { ST_GENERATE, ST_CONVERT, ST_SCORE, ST_TRAIN, ST_EVAL } stage_kind;

typedef struct {
    stage_kind kind;
    int iteration;
    char name[48];  /* "generate-train-0", "convert", ... */
    char *dir;      /* iter<t>: where the marker goes */
    char *output;   /* what the stage writes (a file or directory), for the partial check */
    argvec argv;    /* the command, from its name on */
    bool resumable; /* the command resumes by itself (generate) */
} stage;

typedef struct {
    stage *s;
    int n, cap;
} plan;

static stage *plan_add(plan *p, stage_kind k, int t, const char *dir, const char *fmt, ...) {
    if (p->n == p->cap) {
        int nc = p->cap ? 2 * p->cap : 16;
        stage *ns = realloc(p->s, (size_t)nc * sizeof *ns);
        if (!ns)
            return NULL;
        p->s = ns;
        p->cap = nc;
    }
    stage *s = &p->s[p->n];
    memset(s, 0, sizeof *s);
    s->kind = k;
    s->iteration = t;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->name, sizeof s->name, fmt, ap);
    va_end(ap);
    s->dir = strdup(dir);
    if (!s->dir)
        return NULL;
    p->n++;
    return s;
}

static void plan_free(plan *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->s[i].dir);
        free(p->s[i].output);
        av_free(&p->s[i].argv);
    }
    free(p->s);
    memset(p, 0, sizeof *p);
}

static char *path2(const char *a, const char *b) {
    return jl_join(a, b);
}

static char *marker_path(const stage *s) {
    char n[64];
    snprintf(n, sizeof n, "%s.done", s->name);
    return path2(s->dir, n);
}

static bool exists(const char *p) {
    struct stat st;
    return p && stat(p, &st) == 0;
}

static bool stage_done(const stage *s) {
    char *m = marker_path(s);
    bool d = exists(m);
    free(m);
    return d;
}

/* Seconds the stage took, from its marker (NAN when it has none). */
static double stage_seconds(const stage *s) {
    char *m = marker_path(s);
    json_object *o = m ? json_object_from_file(m) : NULL, *v = NULL;
    double sec = o && json_object_object_get_ex(o, "seconds", &v) ? json_object_get_double(v) : NAN;
    json_object_put(o);
    free(m);
    return sec;
}

static int write_marker(const stage *s, double seconds) {
    char *m = marker_path(s), *tmp = NULL;
    FILE *f = m ? jl_begin("iterate", m, true, &tmp) : NULL;
    if (!f) {
        free(m);
        return 1;
    }
    json_object *o = json_object_new_object(), *a = json_object_new_array();
    for (int i = 0; i < s->argv.n; i++)
        json_object_array_add(a, json_object_new_string(s->argv.v[i]));
    time_t now = time(NULL);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_object_add(o, "stage", json_object_new_string(s->name));
    json_object_object_add(o, "seconds", json_object_new_double(seconds));
    json_object_object_add(o, "finished", json_object_new_string(when));
    json_object_object_add(o, "argv", a);
    fprintf(f, "%s\n",
            json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(o);
    int rc = jl_commit("iterate", f, tmp, m, true);
    free(m);
    return rc;
}

/* Whether a train output_dir holds a checkpoint (resume) or other files of a run (start over). */
static void train_dir_state(const char *dir, bool *checkpoint, bool *other) {
    *checkpoint = *other = false;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strncmp(e->d_name, "checkpoint-", 11) && e->d_name[11])
            *checkpoint = true;
        else if (!strcmp(e->d_name, "metrics.jsonl") || !strcmp(e->d_name, "model.safetensors"))
            *other = true;
    }
    closedir(d);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_stage(stage *s) {
    argvec a = {0};
    int rc = av_copy(&a, &s->argv) ? 1 : 0;
    int rank = cli_rank();
    if (s->kind == ST_TRAIN) {
        bool ck = false, other = false;
        if (rank == 0) /* rank 0 looks; every rank continues the same way */
            train_dir_state(s->output, &ck, &other);
        bool st[2] = {ck, other};
        rc |= cli_bcast(st, sizeof st);
        ck = st[0];
        other = st[1];
        /* a checkpoint: continue the interrupted run (also when it had finished but not been
         * recorded); other files only: it stopped before its first checkpoint, nothing to keep */
        if (rc == 0 && ck)
            rc = av_add(&a, "--resume_from_checkpoint=true");
        else if (rc == 0 && other)
            rc = av_add(&a, "--overwrite_output_dir=true");
    }
    if (rc == 0 && s->kind == ST_CONVERT && rank == 0 && exists(s->output)) {
        /* convert writes each file atomically; files without the marker are rewritten */
        rc = av_add(&a, "--overwrite");
    }
    if (rc) {
        av_free(&a);
        fprintf(stderr, "spin iterate: out of memory\n");
        return cli_agree(1);
    }
    if (rank == 0) {
        printf("\n== spin iterate: iteration %d: %s\n   ", s->iteration, s->name);
        print_command(stdout, &a);
        fflush(stdout);
    }
    double t0 = now_s();
    /* generate, score and train are distributed (every rank calls them and they agree on their
     * status); convert and eval run on rank 0 while the others wait at the agreement below */
    switch (s->kind) {
    case ST_GENERATE: rc = cmd_generate(a.n, a.v); break;
    case ST_CONVERT: rc = rank == 0 ? cmd_convert(a.n, a.v) : 0; break;
    case ST_SCORE: rc = cmd_score(a.n, a.v); break;
    case ST_TRAIN: rc = cmd_train(a.n, a.v); break;
    case ST_EVAL: rc = rank == 0 ? cmd_eval(a.n, a.v) : 0; break;
    }
    fflush(stdout);
    rc = cli_agree(rc);
    double dt = now_s() - t0;
    av_free(&a);
    if (rc != 0 && rank != 0)
        return rc; /* rank 0 reports it */
    if (rc == 130) {
        fprintf(stderr,
                "spin iterate: interrupted during %s of iteration %d; rerun the same command to resume\n",
                s->name, s->iteration);
        return rc;
    }
    if (rc != 0) {
        fprintf(stderr,
                "spin iterate: iteration %d: %s failed (status %d); fix the cause and rerun to resume\n",
                s->iteration, s->name, rc);
        return rc;
    }
    return cli_agree(rank == 0 ? write_marker(s, dt) : 0);
}

/* ---- the configuration of iteration t ---- */

typedef struct {
    char *model;   /* θ_t */
    char *data[2]; /* the mixer */
    int n_data;
    char *idir, *gen, *dat, *out, *scores, *eval; /* iter<t>/..., model/ = θ_t+1 */
    argvec train;                                 /* the config file and the training overrides */
    train_cli_config c;                           /* what they resolve to */
    bool have_c;
} iteration;

static void iteration_free(iteration *it) {
    free(it->model);
    for (int i = 0; i < 2; i++)
        free(it->data[i]);
    free(it->idir);
    free(it->gen);
    free(it->dat);
    free(it->out);
    free(it->scores);
    free(it->eval);
    av_free(&it->train);
    if (it->have_c)
        train_config_free(&it->c);
}

/* Resolves the train config of an iteration as spin train will (the file, then the overrides), and
 * checks it, so a bad per-iteration value stops the run before any work. */
static int resolve(const char *yaml, iteration *it) {
    train_config_defaults(&it->c);
    it->have_c = true;
    if (train_config_read_yaml("iterate", yaml, &it->c) != 0)
        return 2;
    for (int i = 1; i < it->train.n; i++) {
        const char *a = it->train.v[i] + 2, *eq = strchr(a, '=');
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(eq - a), a);
        int consumed = 0;
        if (train_config_set_cli("iterate", &it->c, name, eq + 1, NULL, &consumed) != 0)
            return 2;
    }
    return train_config_check("iterate", &it->c);
}

static int count_rows(const char *input, const char *split, int64_t *n) {
    jl_rows r = {0};
    if (jl_read_split("iterate", input, split, false, false, &r) != 0)
        return 1;
    *n = r.n;
    jl_rows_free(&r);
    return 0;
}

static int mkdirs(const char *path) {
    char *p = strdup(path);
    if (!p)
        return 1;
    for (char *q = p + 1; *q; q++)
        if (*q == '/') {
            *q = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                fprintf(stderr, "spin iterate: cannot create %s: %s\n", p, strerror(errno));
                free(p);
                return 1;
            }
            *q = '/';
        }
    int rc = mkdir(p, 0777) != 0 && errno != EEXIST;
    if (rc)
        fprintf(stderr, "spin iterate: cannot create %s: %s\n", p, strerror(errno));
    free(p);
    return rc;
}

/* output_dir from the command line (as train reads it), else NULL */
static const char *cli_output_dir(int argc, char **argv) {
    const char *r = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        static const char *const names[] = {"--output_dir", "--output-dir", "--output"};
        for (size_t k = 0; k < 3; k++) {
            size_t n = strlen(names[k]);
            if (!strncmp(a, names[k], n) && a[n] == '=')
                r = a + n + 1;
            else if (!strcmp(a, names[k]) && i + 1 < argc)
                r = argv[i + 1];
        }
    }
    return r;
}

/* The root's output_dir from the YAML text (a top-level scalar), else NULL (malloc'd). */
static char *yaml_output_dir(const iterate_config *ic) {
    char *r = NULL;
    const char *p = ic->train_yaml;
    while (p && *p) {
        if (!strncmp(p, "output_dir:", 11)) {
            const char *v = p + 11, *e = strchr(v, '\n');
            size_t n = e ? (size_t)(e - v) : strlen(v);
            while (n && (*v == ' ' || *v == '\t'))
                v++, n--;
            const char *hash = memchr(v, '#', n);
            if (hash)
                n = (size_t)(hash - v);
            while (n && (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r'))
                n--;
            if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0])
                v++, n -= 2;
            free(r);
            r = strndup(v, n);
        }
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    return r;
}

int cmd_iterate(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            help(stdout);
            return 0;
        }
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "spin iterate: the config file comes first\n");
        help(stderr);
        return 2;
    }
    iterate_config ic;
    if (iterate_config_read(argv[1], &ic) != 0) {
        iterate_config_free(&ic);
        return cli_agree(2);
    }
    int rank = cli_rank();
    /* the root: output_dir of the command line, else of the file (the training part is written there
     * so that the stages, and the commands the plan prints, read it) */
    const char *cli_root = cli_output_dir(argc, argv);
    char *root = cli_root ? strdup(cli_root) : yaml_output_dir(&ic);
    int rc = 0;
    if (!root || !*root) {
        fprintf(stderr, "spin iterate: %s: output_dir is required (the root of the run; --output_dir=DIR)\n",
                argv[1]);
        rc = 2;
    }
    char *yaml = rc ? NULL : path2(root, "train_config.yaml");
    if (rc == 0 && rank == 0)
        rc = mkdirs(root);
    if (rc == 0 && rank == 0 &&
        spin_write_file_atomic(yaml, ic.train_yaml, strlen(ic.train_yaml), true) != SPIN_OK) {
        fprintf(stderr, "spin iterate: %s\n", spin_last_error());
        rc = 1;
    }
    rc = cli_agree(rc); /* the other ranks read the file rank 0 wrote */
    /* the file and the user's overrides as spin train reads them; --threads/--device applied here */
    train_cli_config c0;
    bool have_c0 = false;
    own_opts own = {0};
    argvec fwd = {0};
    int T = ic.num_iterations;
    iteration *its = NULL;
    plan p = {0};
    if (rc == 0) {
        argvec a = {0};
        rc = av_add(&a, "iterate") || av_add(&a, "%s", yaml);
        for (int i = 2; rc == 0 && i < argc; i++)
            rc = av_add(&a, "%s", argv[i]);
        if (rc == 0) {
            rc = train_cli_parse("iterate", a.n, a.v, &c0, own_option, &own);
            have_c0 = true;
        }
        av_free(&a);
    }
    if (rc == 0)
        rc = forward_overrides(argc, argv, &fwd);
    if (rc == 0 && !c0.model_name_or_path) {
        fprintf(stderr, "spin iterate: %s: model_name_or_path (θ_0) is required\n", argv[1]);
        rc = 2;
    }
    for (size_t k = 0; rc == 0 && k < sizeof managed / sizeof *managed; k++)
        if (set_here(&c0, managed[k]) && strncmp(train_config_where(&c0, managed[k]), "--", 2)) {
            /* the filtered copy has the config's line numbers: name the config */
            const char *w = train_config_where(&c0, managed[k]), *colon = strrchr(w, ':');
            fprintf(stderr, "spin iterate: %s%s: %s is set by spin iterate in each iteration; remove it\n",
                    ic.path, colon ? colon : "", managed[k]);
            rc = 2;
        }
    /* the per-iteration keys: training keys, not managed ones; the command line wins */
    for (int t = 0; rc == 0 && t < ic.n_listed; t++)
        for (int j = 0; rc == 0 && j < ic.n_iter[t]; j++) {
            const iterate_kv *kv = &ic.iter[t][j];
            train_cli_config s;
            train_config_defaults(&s);
            int consumed = 0, r = train_config_set_cli("iterate", &s, kv->key, kv->value, NULL, &consumed);
            bool known = r != -2 && set_here(&s, kv->key),
                 bad_key =
                     known && (!strcmp(kv->key, "model_name_or_path") || !strcmp(kv->key, "output_dir"));
            for (size_t k = 0; k < sizeof managed / sizeof *managed; k++)
                bad_key |= known && !strcmp(kv->key, managed[k]);
            train_config_free(&s);
            if (r == -2 || (r == 0 && !known))
                fprintf(stderr,
                        "spin iterate: %s:%d: iterations[%d]: '%s' is not a training key (see spin train "
                        "--help)\n",
                        ic.path, kv->line, t, kv->key);
            else if (r != 0)
                fprintf(stderr, "spin iterate: %s:%d: iterations[%d].%s: bad value '%s'\n", ic.path, kv->line,
                        t, kv->key, kv->value);
            else if (bad_key)
                fprintf(stderr, "spin iterate: %s:%d: iterations[%d]: %s is set by spin iterate\n", ic.path,
                        kv->line, t, kv->key);
            if (r != 0 || !known || bad_key)
                rc = 2;
        }
    /* the input: prompts with ground truth; the test split is needed (held-out answers, convert) */
    int64_t n_train = 0, n_test = 0, shards = 1;
    if (rc == 0 && (count_rows(ic.input, "train", &n_train) || count_rows(ic.input, "test", &n_test))) {
        fprintf(stderr,
                "spin iterate: iterate.input %s needs a train and a test split (spin reformat with "
                "--test-fraction > 0)\n",
                ic.input);
        rc = 2;
    }
    if (rc == 0 && ic.frac_len > 0)
        shards = (n_train + ic.frac_len - 1) / ic.frac_len;
    if (rc == 0 && (n_train == 0 || n_test == 0)) {
        fprintf(stderr, "spin iterate: iterate.input %s: the %s split is empty\n", ic.input,
                n_train == 0 ? "train" : "test");
        rc = 2;
    }

    if (rc == 0 && !(its = calloc((size_t)T + 1, sizeof *its)))
        rc = 1;
    const char *tpl = have_c0 ? c0.chat_template : NULL;
    for (int t = 0; rc == 0 && t <= T; t++) {
        iteration *it = &its[t];
        char name[32];
        snprintf(name, sizeof name, "iter%d", t);
        it->idir = path2(root, name);
        it->gen = path2(it->idir, "generated");
        it->model = t == 0 ? strdup(c0.model_name_or_path) : strdup(its[t - 1].out);
        stage *s;
        /* θ_t answers: the train prompts (not for θ_T), then the test prompts */
        for (int64_t k = 0; t < T && k < shards; k++) {
            s = plan_add(&p, ST_GENERATE, t, it->idir, "generate-train-%lld", (long long)k);
            rc = !s || av_add(&s->argv, "generate") || av_add(&s->argv, "--model") ||
                 av_add(&s->argv, "%s", it->model) || av_add(&s->argv, "--input") ||
                 av_add(&s->argv, "%s", ic.input) || av_add(&s->argv, "--split") ||
                 av_add(&s->argv, "train") || av_add(&s->argv, "--output-dir") ||
                 av_add(&s->argv, "%s", it->gen);
            if (rc == 0 && ic.frac_len > 0)
                rc = av_add(&s->argv, "--frac-len") || av_add(&s->argv, "%lld", (long long)ic.frac_len) ||
                     av_add(&s->argv, "--data-frac") || av_add(&s->argv, "%lld", (long long)k);
            if (rc)
                break;
        }
        if (rc == 0) {
            s = plan_add(&p, ST_GENERATE, t, it->idir, "generate-test");
            rc = !s || av_add(&s->argv, "generate") || av_add(&s->argv, "--model") ||
                 av_add(&s->argv, "%s", it->model) || av_add(&s->argv, "--input") ||
                 av_add(&s->argv, "%s", ic.input) || av_add(&s->argv, "--split") ||
                 av_add(&s->argv, "test") || av_add(&s->argv, "--output-dir") ||
                 av_add(&s->argv, "%s", it->gen);
        }
        /* the shared generate options, on every generate stage of this iteration */
        for (int i = 0; rc == 0 && i < p.n; i++) {
            stage *g = &p.s[i];
            if (g->kind != ST_GENERATE || g->iteration != t)
                continue;
            for (int k = 0; rc == 0 && k < ic.n_gen_argv; k++)
                rc = av_add(&g->argv, "%s", ic.gen_argv[k]);
            if (rc == 0 && ic.gen_chat)
                rc = av_add(&g->argv, "--chat-template");
            const char *gt = ic.gen_template ? ic.gen_template : tpl;
            if (rc == 0 && ic.gen_chat && gt)
                rc = av_add(&g->argv, "--template") || av_add(&g->argv, "%s", gt);
            g->resumable = true;
        }
        if (rc || t == T)
            break;
        it->dat = path2(it->idir, "data");
        it->out = path2(it->idir, "model");
        it->scores = path2(it->idir, "opponent_scores.jsonl");
        it->eval = path2(it->idir, "eval.json");
        s = plan_add(&p, ST_CONVERT, t, it->idir, "convert");
        rc = !s || av_add(&s->argv, "convert") || av_add(&s->argv, "--input-dir") ||
             av_add(&s->argv, "%s", it->gen) || av_add(&s->argv, "--output-dir") ||
             av_add(&s->argv, "%s", it->dat) || av_add(&s->argv, "--num-fracs") ||
             av_add(&s->argv, "%lld", (long long)shards);
        if (rc == 0)
            s->output = path2(it->dat, "train_prefs-00000-of-00001.jsonl");
        if (rc)
            break;
        /* the training arguments: θ_t, the mixer, the output, the scores, then the overrides */
        if (t > 0 && ic.mix_previous)
            it->data[it->n_data++] = strdup(its[t - 1].dat);
        it->data[it->n_data++] = strdup(it->dat);
        rc = av_add(&it->train, "%s", yaml) || av_add(&it->train, "--model_name_or_path=%s", it->model) ||
             av_add(&it->train, "--dataset_mixer=%s%s%s", it->data[0], it->n_data > 1 ? "," : "",
                    it->n_data > 1 ? it->data[1] : "") ||
             av_add(&it->train, "--output_dir=%s", it->out) ||
             av_add(&it->train, "--opponent_scores=%s", it->scores);
        for (int j = 0; rc == 0 && t < ic.n_listed && j < ic.n_iter[t]; j++) {
            const iterate_kv *kv = &ic.iter[t][j];
            if (!strncmp(train_config_where(&c0, kv->key), "--", 2)) {
                fprintf(stderr, "spin iterate: note: iterations[%d].%s (%s:%d) is overridden by %s\n", t,
                        kv->key, ic.path, kv->line, train_config_where(&c0, kv->key));
                continue;
            }
            rc = av_add(&it->train, "--%s=%s", kv->key, kv->value);
        }
        if (rc == 0)
            rc = av_copy(&it->train, &fwd);
        if (rc == 0 && resolve(yaml, it) != 0) {
            fprintf(stderr, "spin iterate: (in the training config of iteration %d)\n", t);
            rc = 2;
            break;
        }
        if (rc)
            break;
        spin_loss_type lt;
        spin_loss_type_from_name(it->c.loss_type, &lt);
        bool scores = lt != SPIN_LOSS_SFT && !it->c.reference_free && strcmp(it->c.opponent, "model") != 0;
        if (scores) {
            s = plan_add(&p, ST_SCORE, t, it->idir, "score");
            rc = !s || av_add(&s->argv, "score") || av_copy(&s->argv, &it->train);
            if (rc == 0)
                s->output = strdup(it->scores);
        }
        s = rc ? NULL : plan_add(&p, ST_TRAIN, t, it->idir, "train");
        rc = rc || !s || av_add(&s->argv, "train") || av_copy(&s->argv, &it->train);
        if (rc == 0)
            s->output = strdup(it->out);
        if (rc == 0 && ic.eval) {
            s = plan_add(&p, ST_EVAL, t, it->idir, "eval");
            rc = !s || av_add(&s->argv, "eval") || av_add(&s->argv, "--model") ||
                 av_add(&s->argv, "%s", it->out) || av_add(&s->argv, "--opponent") ||
                 av_add(&s->argv, "%s", it->model) || av_add(&s->argv, "--data") ||
                 av_add(&s->argv, "%s", it->dat) || av_add(&s->argv, "--split") || av_add(&s->argv, "test") ||
                 av_add(&s->argv, "--output") || av_add(&s->argv, "%s", it->eval) ||
                 av_add(&s->argv, "--overwrite") || av_add(&s->argv, "--beta") ||
                 av_add(&s->argv, "%.17g", it->c.beta) || av_add(&s->argv, "--max-length") ||
                 av_add(&s->argv, "%lld", (long long)it->c.max_length) ||
                 av_add(&s->argv, "--max-prompt-length") ||
                 av_add(&s->argv, "%lld", (long long)it->c.max_prompt_length) ||
                 av_add(&s->argv, "--batch-size") ||
                 av_add(&s->argv, "%lld", (long long)ic.eval_batch_size) ||
                 av_add(&s->argv, "--max-new-tokens") ||
                 av_add(&s->argv, "%lld", (long long)ic.max_new_tokens);
            if (rc == 0 && it->c.chat_template)
                rc = av_add(&s->argv, "--template") || av_add(&s->argv, "%s", it->c.chat_template);
        }
    }
    if (rc == 1)
        fprintf(stderr, "spin iterate: out of memory\n");
    rc = cli_agree(rc);

    if (rc == 0 && rank == 0) {
        printf("spin iterate: %d iterations of %s (%lld train prompts, %lld test prompts) from %s -> %s\n", T,
               argv[1], (long long)n_train, (long long)n_test, c0.model_name_or_path, root);
        if (shards > 1)
            printf("  train prompts in %lld shards of %lld\n", (long long)shards, (long long)ic.frac_len);
    }
    if (rc == 0 && own.dry && rank != 0)
        goto done;
    if (rc == 0 && own.dry) {
        printf("plan (stages marked done are skipped):\n");
        for (int i = 0; i < p.n; i++) {
            const stage *s = &p.s[i];
            bool d = stage_done(s), part = !d && s->output && exists(s->output);
            if (!d && s->kind == ST_GENERATE) {
                char *sh = NULL;
                const char *tail = strstr(s->name, "test") ? "loser_0_test.jsonl" : NULL;
                char buf[64];
                if (!tail) {
                    snprintf(buf, sizeof buf, "loser_%s.jsonl", s->name + strlen("generate-train-"));
                    tail = buf;
                }
                sh = path2(its[s->iteration].gen, tail);
                part = exists(sh);
                free(sh);
            }
            printf("  [%s] iter%d %-18s ", d ? "done" : part ? "partial" : "to do", s->iteration, s->name);
            print_command(stdout, &s->argv);
        }
        goto done;
    }
    /* the run */
    for (int i = 0; rc == 0 && i < p.n; i++) {
        stage *s = &p.s[i];
        /* rank 0's markers decide for every rank */
        int d = rank == 0 && stage_done(s);
        if (cli_bcast(&d, sizeof d)) {
            rc = 1;
            break;
        }
        if (d) {
            if (rank == 0)
                printf("== spin iterate: iteration %d: %s done (%s.done)\n", s->iteration, s->name, s->name);
            continue;
        }
        rc = cli_agree(rank == 0 && mkdirs(s->dir) ? 1 : 0);
        if (rc == 0)
            rc = run_stage(s);
    }
    /* the summary and the charts, from the iteration directories (rank 0) */
    if (rc == 0 && rank == 0) {
        iterate_row_src *rows = calloc((size_t)T, sizeof *rows);
        char **tests = calloc((size_t)T + 1, sizeof *tests);
        const char **metrics = calloc((size_t)T, sizeof *metrics),
                   **labels = calloc((size_t)T, sizeof *labels);
        char(*lab)[16] = calloc((size_t)T, sizeof *lab);
        rc = rows && tests && metrics && labels && lab ? 0 : 1;
        for (int t = 0; rc == 0 && t <= T; t++)
            tests[t] = path2(its[t].gen, "loser_0_test.jsonl");
        for (int t = 0; rc == 0 && t < T; t++) {
            iterate_row_src *r = &rows[t];
            iteration *it = &its[t];
            r->iteration = t;
            r->opponent = it->model;
            r->model = it->out;
            metrics[t] = path2(it->out, "metrics.jsonl");
            snprintf(lab[t], sizeof lab[t], "iter%d", t);
            labels[t] = lab[t];
            r->metrics = metrics[t];
            r->eval_json = ic.eval ? it->eval : NULL;
            r->test_answers_opponent = tests[t];
            r->test_answers_model = tests[t + 1];
            r->datasets = (const char *const *)it->data;
            r->n_datasets = it->n_data;
            for (int k = 0; k < it->n_data; k++) {
                int64_t n = 0;
                if (count_rows(it->data[k], "train", &n) == 0)
                    r->train_examples += n;
            }
            r->learning_rate = it->c.learning_rate;
            r->beta = it->c.beta;
            r->epochs = it->c.num_train_epochs;
            r->seconds_generate = r->seconds_score = r->seconds_train = r->seconds_eval = 0;
            for (int i = 0; i < p.n; i++) {
                const stage *s = &p.s[i];
                double sec = stage_seconds(s);
                if (s->iteration != t || !isfinite(sec))
                    continue;
                switch (s->kind) {
                case ST_GENERATE:
                case ST_CONVERT: r->seconds_generate += sec; break;
                case ST_SCORE: r->seconds_score += sec; break;
                case ST_TRAIN: r->seconds_train += sec; break;
                case ST_EVAL: r->seconds_eval += sec; break;
                }
            }
        }
        char *sum = rc ? NULL : path2(root, "iterate_summary.jsonl");
        if (rc == 0)
            rc = iterate_summary_write(rows, T, sum, stdout);
        if (rc == 0)
            printf("spin iterate: summary -> %s\n", sum);
        char *png = rc ? NULL : path2(root, "metrics.png");
        if (rc == 0) {
            char title[512];
            snprintf(title, sizeof title, "spin iterate: %s", root);
            if (spin_plot_metrics(metrics, labels, T, png, title, true) != 0)
                rc = 1;
            else
                printf("spin iterate: charts -> %s\n", png);
        }
        free(sum);
        free(png);
        for (int t = 0; tests && t <= T; t++)
            free(tests[t]);
        for (int t = 0; metrics && t < T; t++)
            free((void *)metrics[t]);
        free(tests);
        free(metrics);
        free(labels);
        free(lab);
        free(rows);
    }
done:
    rc = cli_agree(rc); /* the summary's status */
    for (int t = 0; its && t <= T; t++)
        iteration_free(&its[t]);
    free(its);
    plan_free(&p);
    av_free(&fwd);
    if (have_c0)
        train_config_free(&c0);
    free(yaml);
    free(root);
    iterate_config_free(&ic);
    return rc;
}
