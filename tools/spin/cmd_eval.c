/* spin eval: how a model stands against its opponent on a held-out split, in uclaml/SPIN's terms:
 * the summed log-probs of the real and generated responses (the rows `spin train` builds: same
 * template and collator), the SPIN rewards β·(S_θ − S_op), their accuracy and margin and the
 * sigmoid loss, plus length statistics of generated answers. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backends.h"
#include "tools/spin/commands.h"
#include "tools/spin/gen_cli.h"
#include "tools/spin/jsonl_io.h"
#include "train/collate.h"
#include "train/opponent_scores.h"
#include "train/pref_data.h"

static void help(FILE *f) {
    fprintf(
        f,
        "usage: spin eval --model DIR [--opponent DIR] --data PATH [--split NAME] [--generated PATH]\n"
        "                 [--output FILE] [options]\n"
        "\n"
        "On a split of SPIN rows ({real, generated}; DPO chosen/rejected rows work too) builds the\n"
        "token rows `spin train` builds (chat template, uclaml/SPIN's collator) and reports:\n"
        "  logps      mean summed log-prob of the real and of the generated responses under --model\n"
        "             (and per real response token)\n"
        "  rewards    with --opponent: r = beta * (S_model - S_opponent) for real and generated,\n"
        "             accuracy = mean 1[r_real > r_generated], margin = mean (r_real - r_generated),\n"
        "             loss = mean -log sigmoid(r_real - r_generated) (SPIN's sigmoid loss)\n"
        "  lengths    tokens of the generated answers of --generated: mean, median, p90, min, max,\n"
        "             empty ones, ones at --max-new-tokens or longer (probably cut)\n"
        "printed as a table and written as JSON to --output.\n"
        "\n"
        "options:\n"
        "  --model DIR          the model evaluated (θ_t+1) (required)\n"
        "  --opponent DIR       the opponent θ_t (default: none; no rewards)\n"
        "  --data PATH          JSONL file, or directory with <split>.jsonl / <split>_*.jsonl /\n"
        "                       <split>-*.jsonl files (`spin convert` output) (required)\n"
        "  --split NAME         split of a directory (default test)\n"
        "  --generated PATH     generated answers for the length statistics: a shard or directory\n"
        "                       as --data (default: the generated answers of --data)\n"
        "  --output FILE        the JSON report (default eval.json); never replaced unless --overwrite\n"
        "  --overwrite          replace an existing --output\n"
        "  --beta B             SPIN's beta (default 0.1)\n"
        "  --template NAME      chat template (default: recognised from the model's tokenizer_config.json)\n"
        "  --max-length N       rows longer are cut as the collator cuts them (default 1024)\n"
        "  --max-prompt-length N  (default 512); a prompt longer than --max-length is an error\n"
        "  --batch-size N       examples per forward pass (default 8)\n"
        "  --max-new-tokens N   the generation cap, for the count of cut answers (default 256)\n"
        "  --help, -h           this help\n");
}

static int parse_pos(const char *opt, const char *v, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo) {
        fprintf(stderr, "spin eval: %s expects an integer >= %lld (got '%s')\n", opt, (long long)lo, v);
        return 2;
    }
    *out = x;
    return 0;
}

/* 1-based line numbers of the non-blank lines of path (the rows spin_pref_data_read returns). */
static int64_t *row_lines(const char *path, int64_t n) {
    FILE *f = fopen(path, "r");
    int64_t *l = calloc((size_t)(n ? n : 1), sizeof *l), k = 0, line = 0;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t got;
    while (f && l && k < n && (got = getline(&buf, &cap, f)) >= 0) {
        line++;
        bool blank = true;
        for (ssize_t i = 0; i < got && blank; i++)
            blank = strchr(" \t\r\n", buf[i]) != NULL;
        if (!blank)
            l[k++] = line;
    }
    free(buf);
    if (f)
        fclose(f);
    return l;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

typedef struct {
    int64_t n, empty, at_cap, min, max;
    double mean, median, p90, chars;
} len_stats;

static int lengths(const char *path, const char *split, spin_tokenizer *tok, int64_t cap, len_stats *ls) {
    jl_rows r = {0};
    memset(ls, 0, sizeof *ls);
    int rc = jl_read_split("eval", path, split, true, false, &r);
    int64_t *t = rc ? NULL : malloc((size_t)(r.n ? r.n : 1) * sizeof *t);
    if (rc == 0 && !t) {
        fprintf(stderr, "spin eval: out of memory\n");
        rc = 1;
    }
    double sum = 0, chars = 0;
    for (int64_t i = 0; rc == 0 && i < r.n; i++) {
        int32_t *ids = NULL;
        size_t k = 0;
        const char *g = r.row[i].generated;
        if (spin_tokenizer_encode(tok, g, strlen(g), false, &ids, &k) != SPIN_OK) {
            fprintf(stderr, "spin eval: %s:%lld: generated[1].content: %s\n", r.row[i].file,
                    (long long)r.row[i].line, spin_last_error());
            rc = 1;
        }
        free(ids);
        t[i] = (int64_t)k;
        sum += (double)k;
        chars += (double)strlen(g);
        ls->empty += k == 0;
        ls->at_cap += (int64_t)k >= cap;
    }
    if (rc == 0 && r.n > 0) {
        qsort(t, (size_t)r.n, sizeof *t, cmp_i64);
        ls->n = r.n;
        ls->mean = sum / (double)r.n;
        ls->chars = chars / (double)r.n;
        ls->median = r.n % 2 ? (double)t[r.n / 2] : 0.5 * (double)(t[r.n / 2 - 1] + t[r.n / 2]);
        ls->p90 = (double)t[(int64_t)ceil(0.9 * (double)r.n) - 1]; /* nearest rank */
        ls->min = t[0];
        ls->max = t[r.n - 1];
    }
    free(t);
    jl_rows_free(&r);
    return rc;
}

static double mean_of(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += x[i];
    return n ? s / (double)n : 0;
}

static json_object *num(double v) {
    return json_object_new_double(v);
}

int cmd_eval(int argc, char **argv) {
    const char *model = NULL, *opponent = NULL, *data = NULL, *split = "test", *generated = NULL,
               *output = "eval.json", *tpl = NULL;
    bool overwrite = false;
    double beta = 0.1;
    int64_t max_length = 1024, max_prompt = 512, batch = 8, cap = 256;
    int rc = 0;
    jl_dash_options(argc, argv);
    for (int i = 1; i < argc && rc == 0; i++) {

        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 0;
        } else if (!strcmp(a, "--overwrite")) {
            overwrite = true;
        } else if (i + 1 < argc && !strcmp(a, "--model")) {
            model = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--opponent")) {
            opponent = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--data")) {
            data = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--split")) {
            split = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--generated")) {
            generated = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--output")) {
            output = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--template")) {
            tpl = argv[++i];
        } else if (i + 1 < argc && !strcmp(a, "--beta")) {
            char *end;
            beta = strtod(argv[++i], &end);
            if (end == argv[i] || *end || !(beta > 0) || !isfinite(beta)) {
                fprintf(stderr, "spin eval: --beta expects a number > 0 (got '%s')\n", argv[i]);
                rc = 2;
            }
        } else if (i + 1 < argc && !strcmp(a, "--max-length")) {
            rc = parse_pos(a, argv[++i], 2, &max_length);
        } else if (i + 1 < argc && !strcmp(a, "--max-prompt-length")) {
            rc = parse_pos(a, argv[++i], 1, &max_prompt);
        } else if (i + 1 < argc && !strcmp(a, "--batch-size")) {
            rc = parse_pos(a, argv[++i], 1, &batch);
        } else if (i + 1 < argc && !strcmp(a, "--max-new-tokens")) {
            rc = parse_pos(a, argv[++i], 1, &cap);
        } else {
            fprintf(stderr, "spin eval: unknown or incomplete option '%s'\n", a);
            help(stderr);
            rc = 2;
        }
    }
    if (rc == 0 && (!model || !data)) {
        fprintf(stderr, "spin eval: --model DIR and --data PATH are required\n");
        help(stderr);
        rc = 2;
    }
    if (rc == 0 && max_prompt >= max_length) {
        fprintf(stderr, "spin eval: --max-prompt-length (%lld) must be below --max-length (%lld)\n",
                (long long)max_prompt, (long long)max_length);
        rc = 2;
    }
    if (rc == 0 && !overwrite && access(output, F_OK) == 0) {
        fprintf(stderr, "spin eval: %s exists (--overwrite replaces it)\n", output);
        rc = 1;
    }
    if (rc)
        return rc;
    gen_cli_model g;
    rc = gen_cli_load("eval", model, NULL, tpl, &g);
    if (rc)
        return rc;
    spin_llama *opp = NULL;
    if (opponent && spin_llama_load(opponent, spin_init(), &opp) != SPIN_OK) {
        fprintf(stderr, "spin eval: --opponent %s: %s\n", opponent, spin_last_error());
        rc = 1;
    }
    if (rc == 0 && opp && opp->cfg.vocab_size != g.m->cfg.vocab_size) {
        fprintf(stderr, "spin eval: --opponent %s has a vocabulary of %lld, --model %s of %lld\n", opponent,
                (long long)opp->cfg.vocab_size, model, (long long)g.m->cfg.vocab_size);
        rc = 1;
    }
    if (rc == 0 && !g.have_template) {
        fprintf(stderr, "spin eval: no chat template: %s (pass --template NAME)\n",
                g.template_error ? g.template_error : "none recognised");
        rc = 2;
    }
    /* the examples, file by file, each with its file:line */
    char **files = NULL;
    int n_files = 0;
    if (rc == 0)
        rc = jl_split_files("eval", data, split, &files, &n_files);
    spin_pref_tokens *rows = NULL;
    int64_t n = 0, cap_rows = 0, real_tokens = 0;
    spin_data_kind kind = SPIN_DATA_SPIN;
    int32_t eos = spin_tokenizer_eos_id(g.tok);
    spin_collate_opts co = {
        .max_length = max_length, .max_prompt_length = max_prompt, .eos_id = eos, .pad_id = eos};
    if (rc == 0 && eos < 0) {
        fprintf(stderr, "spin eval: the tokenizer has no EOS token\n");
        rc = 1;
    }
    for (int f = 0; rc == 0 && f < n_files; f++) {
        spin_pref_data d;
        if (spin_pref_data_read(files[f], g.tpl, g.bos, g.eos, &d) != SPIN_OK) {
            fprintf(stderr, "spin eval: %s\n", spin_last_error());
            rc = 1;
            break;
        }
        kind = d.kind;
        if (kind == SPIN_DATA_SPIN) { /* an empty answer (generation not run) is templated into "</s>\n" */
            jl_rows chk = {0};
            rc = jl_read_file("eval", files[f], true, true, &chk);
            jl_rows_free(&chk);
            if (rc) {
                spin_pref_data_free(&d);
                break;
            }
        }
        int64_t *line = row_lines(files[f], d.n);
        spin_pref_tokens *nr = realloc(rows, (size_t)(cap_rows = n + d.n) * sizeof *nr);
        if (!line || !nr) {
            fprintf(stderr, "spin eval: out of memory\n");
            rc = 1;
        } else {
            rows = nr;
        }
        for (int64_t i = 0; rc == 0 && i < d.n; i++) {
            int32_t *ids = NULL;
            size_t k = 0;
            const char *p = d.ex[i].prompt;
            if (spin_tokenizer_encode(g.tok, p, strlen(p), false, &ids, &k) != SPIN_OK ||
                spin_collate_tokenize(g.tok, &d.ex[i], &co, &rows[n]) != SPIN_OK) {
                fprintf(stderr, "spin eval: %s:%lld: %s\n", files[f], (long long)line[i], spin_last_error());
                rc = 1;
            } else if ((int64_t)k > max_length) {
                fprintf(stderr, "spin eval: %s:%lld: the prompt is %zu tokens, longer than max_length %lld\n",
                        files[f], (long long)line[i], k, (long long)max_length);
                spin_pref_tokens_free(&rows[n]);
                rc = 1;
            } else {
                real_tokens += rows[n].n_chosen;
                n++;
            }
            free(ids);
        }
        free(line);
        spin_pref_data_free(&d);
    }
    float *pc = NULL, *pr = NULL, *oc = NULL, *or_ = NULL;
    if (rc == 0) {
        pc = malloc((size_t)n * sizeof *pc);
        pr = malloc((size_t)n * sizeof *pr);
        oc = malloc((size_t)n * sizeof *oc);
        or_ = malloc((size_t)n * sizeof *or_);
        if (!pc || !pr || !oc || !or_) {
            fprintf(stderr, "spin eval: out of memory\n");
            rc = 1;
        }
    }
    if (rc == 0 &&
        (spin_score_examples(g.m, rows, n, batch, &co, false, pc, pr, NULL, NULL) != SPIN_OK ||
         (opp && spin_score_examples(opp, rows, n, batch, &co, false, oc, or_, NULL, NULL) != SPIN_OK))) {
        fprintf(stderr, "spin eval: %s\n", spin_last_error());
        rc = 1;
    }
    len_stats ls;
    const char *gen_path = generated ? generated : data;
    if (rc == 0)
        rc = lengths(gen_path, split, g.tok, cap, &ls);
    json_object *rep = NULL;
    if (rc == 0) {
        const char *cn = kind == SPIN_DATA_SPIN ? "real" : "chosen",
                   *rn = kind == SPIN_DATA_SPIN ? "generated" : "rejected";
        double lp_real = mean_of(pc, n), lp_gen = mean_of(pr, n), tot = 0;
        for (int64_t i = 0; i < n; i++)
            tot += pc[i];
        rep = json_object_new_object();
        json_object_object_add(rep, "model", json_object_new_string(model));
        json_object_object_add(rep, "data", json_object_new_string(data));
        json_object_object_add(rep, "split", json_object_new_string(split));
        json_object_object_add(rep, "examples", json_object_new_int64(n));
        json_object_object_add(rep, "template", json_object_new_string(spin_chat_template_name(g.tpl)));
        json_object_object_add(rep, "max_length", json_object_new_int64(max_length));
        json_object_object_add(rep, "max_prompt_length", json_object_new_int64(max_prompt));
        json_object *lp = json_object_new_object();
        char k1[48], k2[48];
        snprintf(k1, sizeof k1, "%s", cn);
        snprintf(k2, sizeof k2, "%s", rn);
        json_object_object_add(lp, k1, num(lp_real));
        json_object_object_add(lp, k2, num(lp_gen));
        json_object_object_add(lp, "per_token_real", num(real_tokens ? tot / (double)real_tokens : 0));
        json_object_object_add(rep, "logps", lp);
        printf("spin eval: %lld examples of %s (%s split), template %s\n", (long long)n, data, split,
               spin_chat_template_name(g.tpl));
        printf("  %-34s %12s\n", "metric", "value");
        printf("  %-34s %12.4f\n",
               kind == SPIN_DATA_SPIN ? "logps/real (mean sum)" : "logps/chosen (mean sum)", lp_real);
        printf("  %-34s %12.4f\n",
               kind == SPIN_DATA_SPIN ? "logps/generated (mean sum)" : "logps/rejected (mean sum)", lp_gen);
        printf("  %-34s %12.4f\n", "logps/real per token", real_tokens ? tot / (double)real_tokens : 0);
        if (opp) {
            double acc = 0, margin = 0, rr = 0, rg = 0, loss = 0;
            for (int64_t i = 0; i < n; i++) {
                double a = beta * ((double)pc[i] - oc[i]), b = beta * ((double)pr[i] - or_[i]), z = a - b;
                acc += a > b;
                margin += z;
                rr += a;
                rg += b;
                loss += z > 0 ? log1p(exp(-z)) : -z + log1p(exp(z)); /* softplus(-z) */
            }
            double dn = n ? (double)n : 1;
            json_object *rw = json_object_new_object();
            json_object_object_add(rw, "beta", num(beta));
            json_object_object_add(rw, k1, num(rr / dn));
            json_object_object_add(rw, k2, num(rg / dn));
            json_object_object_add(rw, "accuracy", num(acc / dn));
            json_object_object_add(rw, "margin", num(margin / dn));
            json_object_object_add(rw, "loss", num(loss / dn));
            json_object_object_add(rw, "opponent", json_object_new_string(opponent));
            json_object *ol = json_object_new_object();
            json_object_object_add(ol, k1, num(mean_of(oc, n)));
            json_object_object_add(ol, k2, num(mean_of(or_, n)));
            json_object_object_add(rw, "opponent_logps", ol);
            json_object_object_add(rep, "rewards", rw);
            printf("  %-34s %12.4f\n", "opponent logps/real (mean sum)", mean_of(oc, n));
            printf("  %-34s %12.4f\n", "opponent logps/generated (mean sum)", mean_of(or_, n));
            printf("  %-34s %12.4f\n", "rewards/real", rr / dn);
            printf("  %-34s %12.4f\n", "rewards/generated", rg / dn);
            printf("  %-34s %12.4f\n", "rewards/accuracies", acc / dn);
            printf("  %-34s %12.4f\n", "rewards/margins", margin / dn);
            printf("  %-34s %12.4f\n", "loss (sigmoid)", loss / dn);
        }
        json_object *gl = json_object_new_object();
        json_object_object_add(gl, "file", json_object_new_string(gen_path));
        json_object_object_add(gl, "answers", json_object_new_int64(ls.n));
        json_object_object_add(gl, "mean_tokens", num(ls.mean));
        json_object_object_add(gl, "median_tokens", num(ls.median));
        json_object_object_add(gl, "p90_tokens", num(ls.p90));
        json_object_object_add(gl, "min_tokens", json_object_new_int64(ls.min));
        json_object_object_add(gl, "max_tokens", json_object_new_int64(ls.max));
        json_object_object_add(gl, "mean_chars", num(ls.chars));
        json_object_object_add(gl, "empty", json_object_new_int64(ls.empty));
        json_object_object_add(gl, "at_max_new_tokens", json_object_new_int64(ls.at_cap));
        json_object_object_add(gl, "max_new_tokens", json_object_new_int64(cap));
        json_object_object_add(rep, "generation_lengths", gl);
        printf("  %-34s %12lld\n", "generated answers", (long long)ls.n);
        printf("  %-34s %12.1f\n", "generated tokens mean", ls.mean);
        printf("  %-34s %12.1f\n", "generated tokens median", ls.median);
        printf("  %-34s %12.1f\n", "generated tokens p90", ls.p90);
        printf("  %-34s %5lld..%-6lld\n", "generated tokens min..max", (long long)ls.min, (long long)ls.max);
        printf("  %-34s %12lld\n", "generated answers empty", (long long)ls.empty);
        printf("  %-34s %12lld\n", "generated answers at the cap", (long long)ls.at_cap);
        char *tmp = NULL;
        FILE *f = jl_begin("eval", output, overwrite, &tmp);
        if (!f) {
            rc = 1;
        } else {
            fprintf(f, "%s\n",
                    json_object_to_json_string_ext(rep,
                                                   JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
            rc = jl_commit("eval", f, tmp, output, overwrite);
        }
        if (rc == 0)
            printf("spin eval: report -> %s\n", output);
    }
    json_object_put(rep);
    for (int64_t i = 0; i < n; i++)
        spin_pref_tokens_free(&rows[i]);
    free(rows);
    free(pc);
    free(pr);
    free(oc);
    free(or_);
    jl_free_names(files, n_files);
    spin_llama_free(opp);
    gen_cli_free(&g);
    return rc;
}
