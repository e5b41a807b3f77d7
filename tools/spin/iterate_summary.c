/* The per-iteration summary of `spin iterate` (tools/spin/iterate_summary.h). */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/spin/iterate_summary.h"
#include "tools/spin/jsonl_io.h"

/* s without its leading and trailing white space: [*b, *b + *n) */
static void trimmed(const char *s, const char **b, size_t *n) {
    while (*s && isspace((unsigned char)*s))
        s++;
    size_t k = strlen(s);
    while (k && isspace((unsigned char)s[k - 1]))
        k--;
    *b = s;
    *n = k;
}

int iterate_exact_match(const char *shard, double *em, int64_t *n) {
    jl_rows r = {0};
    if (jl_read_file("iterate", shard, true, false, &r) != 0)
        return 1;
    int64_t hit = 0;
    for (int64_t i = 0; i < r.n; i++) {
        const char *a, *b;
        size_t na, nb;
        trimmed(r.row[i].real, &a, &na);
        trimmed(r.row[i].generated ? r.row[i].generated : "", &b, &nb);
        hit += na == nb && !memcmp(a, b, na);
    }
    *n = r.n;
    *em = r.n ? (double)hit / (double)r.n : NAN;
    jl_rows_free(&r);
    return 0;
}

/* The last complete line of a metrics file as JSON (NULL when there is none). */
static json_object *last_metrics(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char *line = NULL, *last = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0)
        if (line[len - 1] == '\n') {
            free(last);
            last = strdup(line);
        }
    free(line);
    fclose(f);
    json_object *o = last ? json_tokener_parse(last) : NULL;
    free(last);
    return o;
}

/* o[a][b] as a number (NAN when absent). */
static double num_at(json_object *o, const char *a, const char *b) {
    json_object *x = NULL, *y = NULL;
    if (!o || !json_object_object_get_ex(o, a, &x))
        return NAN;
    if (b && !json_object_object_get_ex(x, b, &y))
        return NAN;
    json_object *v = b ? y : x;
    return json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)
               ? json_object_get_double(v)
               : NAN;
}

static json_object *jnum(double v) {
    return isfinite(v) ? json_object_new_double(v) : NULL; /* JSON null for what is not known */
}

static void col(FILE *out, double v, const char *fmt, int w) {
    if (isfinite(v))
        fprintf(out, fmt, w, v);
    else
        fprintf(out, "%*s", w, "-");
}

int iterate_summary_write(const iterate_row_src *rows, int n, const char *path, FILE *out) {
    char *tmp = NULL;
    FILE *f = jl_begin("iterate", path, true, &tmp);
    if (!f)
        return 1;
    fprintf(
        out,
        "\nspin iterate: summary (%s)\n"
        "  iter  examples  | train at the end:        | held-out, θ_t+1 against θ_t:  | logp(real) test     "
        "| exact match test  | seconds\n"
        "                  |   loss    acc   margin   |  loss    acc   margin       | θ_t      θ_t+1      "
        "| θ_t     θ_t+1     |   gen   train   eval\n",
        path);
    for (int i = 0; i < n; i++) {
        const iterate_row_src *s = &rows[i];
        json_object *m = last_metrics(s->metrics);
        json_object *ev = s->eval_json ? json_object_from_file(s->eval_json) : NULL;
        double em_op = NAN, em_m = NAN;
        int64_t n_op = 0, n_m = 0;
        if (s->test_answers_opponent && iterate_exact_match(s->test_answers_opponent, &em_op, &n_op) != 0)
            em_op = NAN;
        if (s->test_answers_model && iterate_exact_match(s->test_answers_model, &em_m, &n_m) != 0)
            em_m = NAN;
        double loss = num_at(m, "loss", NULL), acc = num_at(m, "rewards/accuracies", NULL),
               margin = num_at(m, "rewards/margins", NULL), steps = num_at(m, "step", NULL);
        double e_loss = num_at(ev, "rewards", "loss"), e_acc = num_at(ev, "rewards", "accuracy"),
               e_margin = num_at(ev, "rewards", "margin"), lp_m = num_at(ev, "logps", "real"),
               e_n = num_at(ev, "examples", NULL), lp_op = NAN;
        json_object *rw = NULL, *ol = NULL;
        if (ev && json_object_object_get_ex(ev, "rewards", &rw) &&
            json_object_object_get_ex(rw, "opponent_logps", &ol))
            lp_op = num_at(ol, "real", NULL);

        json_object *j = json_object_new_object();
        json_object_object_add(j, "iteration", json_object_new_int(s->iteration));
        json_object_object_add(j, "opponent", json_object_new_string(s->opponent));
        json_object_object_add(j, "model", json_object_new_string(s->model));
        json_object *ds = json_object_new_array();
        for (int k = 0; k < s->n_datasets; k++)
            json_object_array_add(ds, json_object_new_string(s->datasets[k]));
        json_object_object_add(j, "datasets", ds);
        json_object_object_add(j, "train_examples", json_object_new_int64(s->train_examples));
        json_object_object_add(j, "learning_rate", jnum(s->learning_rate));
        json_object_object_add(j, "beta", jnum(s->beta));
        json_object_object_add(j, "num_train_epochs", jnum(s->epochs));
        json_object *tr = json_object_new_object();
        json_object_object_add(tr, "steps", jnum(steps));
        json_object_object_add(tr, "loss", jnum(loss));
        json_object_object_add(tr, "rewards/accuracies", jnum(acc));
        json_object_object_add(tr, "rewards/margins", jnum(margin));
        json_object_object_add(tr, "rewards/real", jnum(num_at(m, "rewards/real", NULL)));
        json_object_object_add(tr, "rewards/generated", jnum(num_at(m, "rewards/generated", NULL)));
        json_object_object_add(j, "train_last_log", tr);
        if (s->eval_json) {
            json_object *e = json_object_new_object();
            json_object_object_add(e, "examples", jnum(e_n));
            json_object_object_add(e, "loss", jnum(e_loss));
            json_object_object_add(e, "reward_accuracy", jnum(e_acc));
            json_object_object_add(e, "reward_margin", jnum(e_margin));
            json_object_object_add(e, "logps_real_opponent", jnum(lp_op));
            json_object_object_add(e, "logps_real_model", jnum(lp_m));
            json_object_object_add(j, "eval", e);
        }
        json_object *x = json_object_new_object();
        json_object_object_add(x, "opponent", jnum(em_op));
        json_object_object_add(x, "model", jnum(em_m));
        json_object_object_add(x, "examples", json_object_new_int64(n_m ? n_m : n_op));
        json_object_object_add(j, "exact_match_test", x);
        json_object *sec = json_object_new_object();
        json_object_object_add(sec, "generate", jnum(s->seconds_generate));
        json_object_object_add(sec, "score", jnum(s->seconds_score));
        json_object_object_add(sec, "train", jnum(s->seconds_train));
        json_object_object_add(sec, "eval", jnum(s->seconds_eval));
        json_object_object_add(j, "seconds", sec);
        fprintf(f, "%s\n",
                json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(j);

        fprintf(out, "  %4d  %8lld  | ", s->iteration, (long long)s->train_examples);
        col(out, loss, "%*.4f", 7);
        col(out, acc, "%*.3f", 7);
        col(out, margin, "%*.4f", 9);
        fprintf(out, "   | ");
        col(out, e_loss, "%*.4f", 5);
        col(out, e_acc, "%*.3f", 7);
        col(out, e_margin, "%*.4f", 9);
        fprintf(out, "       | ");
        col(out, lp_op, "%*.3f", 8);
        col(out, lp_m, "%*.3f", 10);
        fprintf(out, "  | ");
        col(out, em_op, "%*.3f", 5);
        col(out, em_m, "%*.3f", 9);
        fprintf(out, "     | ");
        col(out, s->seconds_generate, "%*.1f", 5);
        col(out, s->seconds_train, "%*.1f", 7);
        col(out, s->seconds_eval, "%*.1f", 6);
        fputc('\n', out);
        json_object_put(m);
        json_object_put(ev);
    }
    fprintf(out,
            "  (loss/acc/margin: SPIN's sigmoid loss, reward accuracy and margin; logp(real): mean summed\n"
            "   log-prob of the held-out ground truth; exact match: greedy test answers equal to it)\n");
    fflush(out);
    return jl_commit("iterate", f, tmp, path, true);
}
