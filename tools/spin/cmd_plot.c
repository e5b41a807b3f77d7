/* spin plot: metrics.jsonl -> PNG/SVG charts of loss, rewards, accuracy, log-probs and lr. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <json-c/json.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/safetensors.h"
#include "tools/spin/chart.h"
#include "tools/spin/commands.h"
#include "tools/spin/plot.h"

/* The metrics drawn, by panel. "%s" stands for real/chosen or generated/rejected. */
enum { K_LOSS, K_RC, K_RR, K_MARGIN, K_ACC, K_LC, K_LR_, K_LRATE, K_GNORM, NKEYS };
static const char *const key_fmt[NKEYS] = {
    "loss",     "rewards/%s", "rewards/%s",    "rewards/margins", "rewards/accuracies",
    "logps/%s", "logps/%s",   "learning_rate", "grad_norm"};

typedef struct {
    double *x, *y;
    size_t n, cap;
} column;

static int push(column *c, double x, double y) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        double *nx = realloc(c->x, cap * sizeof *nx);
        if (!nx)
            return -1;
        c->x = nx;
        double *ny = realloc(c->y, cap * sizeof *ny);
        if (!ny)
            return -1;
        c->y = ny;
        c->cap = cap;
    }
    c->x[c->n] = x;
    c->y[c->n] = y;
    c->n++;
    return 0;
}

/* Appends one file's lines to the columns with steps offset by *offset; on return *offset is the
 * file's last step (offset included). */
static int read_metrics(const char *path, column *col, double *offset, int *spin_names) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "spin plot: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    double last = *offset;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        int torn = line[len - 1] != '\n';
        if (len == 1 && !torn)
            continue;
        json_object *o = json_tokener_parse(line);
        if (!o || !json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            if (torn) { /* a run still writing (or killed mid-line) leaves a partial last line */
                fprintf(stderr, "spin plot: %s:%ld: skipping a partial last line\n", path, lineno);
                break;
            }
            fprintf(stderr, "spin plot: %s:%ld: not a JSON object\n", path, lineno);
            rc = 1;
            break;
        }
        json_object *v;
        if (!json_object_object_get_ex(o, "step", &v) || !json_object_is_type(v, json_type_int)) {
            fprintf(stderr, "spin plot: %s:%ld: missing integer field \"step\"\n", path, lineno);
            json_object_put(o);
            rc = 1;
            break;
        }
        double x = *offset + (double)json_object_get_int64(v);
        last = fmax(last, x);
        if (*spin_names < 0)
            *spin_names = json_object_object_get_ex(o, "rewards/real", NULL) ? 1 : 0;
        const char *cn = *spin_names ? "real" : "chosen", *rn = *spin_names ? "generated" : "rejected";
        for (int k = 0; k < NKEYS && !rc; k++) {
            char key[64];
            snprintf(key, sizeof key, key_fmt[k], (k == K_RR || k == K_LR_) ? rn : cn);
            if (!json_object_object_get_ex(o, key, &v))
                continue;
            if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int)) {
                fprintf(stderr, "spin plot: %s:%ld: field \"%s\" is not a number\n", path, lineno, key);
                rc = 1;
            } else if (push(&col[k], x, json_object_get_double(v))) {
                fprintf(stderr, "spin plot: out of memory\n");
                rc = 1;
            }
        }
        json_object_put(o);
        if (rc)
            break;
    }
    if (!rc && ferror(f)) {
        fprintf(stderr, "spin plot: %s: read error\n", path);
        rc = 1;
    }
    free(line);
    fclose(f);
    *offset = last;
    return rc;
}

static chart_series series(const char *name, const column *c) {
    return (chart_series){.name = name, .x = c->x, .y = c->y, .n = c->n};
}

int spin_plot_metrics(const char *const *paths, const char *const *labels, int n, const char *out,
                      const char *title, bool overwrite) {
    const char *dot = strrchr(out, '.');
    chart_format fmt;
    if (dot && !strcmp(dot, ".png"))
        fmt = CHART_PNG;
    else if (dot && !strcmp(dot, ".svg"))
        fmt = CHART_SVG;
    else {
        fprintf(stderr, "spin plot: %s: the output must end in .png or .svg\n", out);
        return 1;
    }
    if (n < 1 || n > CHART_MAX_MARKS) {
        fprintf(stderr, "spin plot: give 1 to %d metrics files (got %d)\n", CHART_MAX_MARKS, n);
        return 1;
    }
    column col[NKEYS] = {0};
    chart c = {.title = title, .xlabel = "optimizer step"};
    char names[CHART_MAX_MARKS][256];
    double offset = 0;
    int spin_names = -1, rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (n > 1) {
            const char *lab = labels ? labels[i] : NULL;
            if (!lab) { /* the file's directory: iter0/metrics.jsonl -> "iter0" */
                char tmp[4096];
                snprintf(tmp, sizeof tmp, "%s", paths[i]);
                snprintf(names[i], sizeof names[i], "%s", basename(dirname(tmp)));
                lab = names[i];
            }
            c.marks[c.nmarks++] = (chart_mark){.x = offset, .label = lab};
            for (int k = 0; k < NKEYS && i > 0; k++) /* lines break between runs */
                if (col[k].n && push(&col[k], offset, NAN))
                    rc = 1;
        }
        rc = read_metrics(paths[i], col, &offset, &spin_names);
    }
    if (!rc && col[K_LOSS].n == 0) {
        fprintf(stderr, "spin plot: %s: no metrics lines with a loss\n", paths[0]);
        rc = 1;
    }
    if (!rc) {
        const char *cn = spin_names > 0 ? "real" : "chosen", *rn = spin_names > 0 ? "generated" : "rejected";
        chart_panel *p = &c.panels[c.npanels++];
        *p = (chart_panel){.title = "loss", .nseries = 1, .series = {series("loss", &col[K_LOSS])}};
        if (col[K_RC].n) {
            p = &c.panels[c.npanels++];
            *p = (chart_panel){.title = "rewards",
                               .nseries = 3,
                               .series = {series(cn, &col[K_RC]), series(rn, &col[K_RR]),
                                          series("margins", &col[K_MARGIN])}};
        }
        if (col[K_ACC].n) {
            p = &c.panels[c.npanels++];
            *p = (chart_panel){
                .title = "reward accuracy", .nseries = 1, .series = {series("accuracy", &col[K_ACC])}};
        }
        if (col[K_LC].n) {
            p = &c.panels[c.npanels++];
            *p = (chart_panel){.title = "sequence log-probs (policy)",
                               .nseries = 2,
                               .series = {series(cn, &col[K_LC]), series(rn, &col[K_LR_])}};
        }
        if (col[K_LRATE].n) {
            p = &c.panels[c.npanels++];
            *p = (chart_panel){
                .title = "learning rate", .nseries = 1, .series = {series("learning rate", &col[K_LRATE])}};
        }
        if (col[K_GNORM].n) {
            p = &c.panels[c.npanels++];
            *p = (chart_panel){.title = "grad norm (before clipping)",
                               .nseries = 1,
                               .series = {series("grad norm", &col[K_GNORM])}};
        }
        unsigned char *img;
        size_t size;
        char err[256];
        if (chart_render(&c, fmt, &img, &size, err, sizeof err)) {
            fprintf(stderr, "spin plot: %s: %s\n", out, err);
            rc = 1;
        } else {
            if (spin_write_file_atomic(out, img, size, overwrite) != SPIN_OK) {
                fprintf(stderr, "spin plot: %s%s\n", spin_last_error(),
                        overwrite ? "" : " (use --overwrite to replace it)");
                rc = 1;
            }
            free(img);
        }
    }
    for (int k = 0; k < NKEYS; k++) {
        free(col[k].x);
        free(col[k].y);
    }
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: spin plot [options] METRICS.jsonl [MORE.jsonl ...]\n"
               "  Charts of a training run's metrics (the trainer's metrics.jsonl): loss, rewards\n"
               "  (real/generated or chosen/rejected, margins), reward accuracy, log-probs, learning\n"
               "  rate and grad norm per optimizer step. Several files (one per SPIN iteration) are\n"
               "  drawn one after another with a labelled separator.\n"
               "options:\n"
               "  --output FILE     .png or .svg (default: metrics.png beside the first file)\n"
               "  --labels A,B,...  separator labels, one per file (default: each file's directory)\n"
               "  --title TEXT      chart title (default: none)\n"
               "  --overwrite       replace an existing output (default: refuse)\n");
}

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *title = NULL;
    char *labels_arg = NULL;
    bool overwrite = false;
    const char *paths[CHART_MAX_MARKS];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--output") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(a, "--title") && i + 1 < argc)
            title = argv[++i];
        else if (!strcmp(a, "--labels") && i + 1 < argc)
            labels_arg = argv[++i];
        else if (!strcmp(a, "--overwrite"))
            overwrite = true;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "spin plot: unknown option '%s' (or missing value)\n", a);
            usage(stderr);
            return 2;
        } else if (n < CHART_MAX_MARKS)
            paths[n++] = a;
        else {
            fprintf(stderr, "spin plot: at most %d metrics files\n", CHART_MAX_MARKS);
            return 2;
        }
    }
    if (n == 0) {
        usage(stderr);
        return 2;
    }
    char def[4096];
    if (!out) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s", paths[0]);
        snprintf(def, sizeof def, "%s/metrics.png", dirname(tmp));
        out = def;
    }
    const char *labels[CHART_MAX_MARKS];
    int nl = 0;
    char *save = NULL;
    for (char *t = labels_arg ? strtok_r(labels_arg, ",", &save) : NULL; t && nl < CHART_MAX_MARKS;
         t = strtok_r(NULL, ",", &save))
        labels[nl++] = t;
    if (labels_arg && nl != n) {
        fprintf(stderr, "spin plot: --labels gives %d labels for %d files\n", nl, n);
        return 2;
    }
    int rc = spin_plot_metrics(paths, labels_arg ? labels : NULL, n, out, title, overwrite);
    if (!rc)
        printf("wrote %s\n", out);
    return rc;
}
