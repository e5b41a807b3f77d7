/* Shared by spin train and spin score (train_cli.h). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backends/backends.h"
#include "core/log.h"
#include "core/rng.h"
#include "tools/spin/cli_comm.h"
#include "tools/spin/train_cli.h"

/* ---- the command line ---- */

int train_cli_parse(const char *cmd, int argc, char **argv, train_cli_config *c, train_cli_option_fn own,
                    void *ctx) {
    train_config_defaults(c);
    if (!c->where) {
        fprintf(stderr, "spin %s: out of memory\n", cmd);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return 1;
    /* the config file first (as H4ArgumentParser: `run_spin.py config.yaml --k=v ...`), then the
     * overrides in order */
    const char *yaml = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
    if (yaml && train_config_read_yaml(cmd, yaml, c) != 0)
        return 2;
    for (int i = yaml ? 2 : 1; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || !argv[i][2]) {
            fprintf(stderr, "spin %s: unexpected argument '%s' (the config file comes first)\n", cmd,
                    argv[i]);
            return 2;
        }
        char name[128];
        const char *eq = strchr(argv[i] + 2, '=');
        size_t n = eq ? (size_t)(eq - argv[i] - 2) : strlen(argv[i] + 2);
        if (n >= sizeof name) {
            fprintf(stderr, "spin %s: unknown option '%s'\n", cmd, argv[i]);
            return 2;
        }
        memcpy(name, argv[i] + 2, n);
        name[n] = 0;
        const char *val = eq ? eq + 1 : NULL, *next = i + 1 < argc ? argv[i + 1] : NULL;
        int consumed = 0;
        if (!strcmp(name, "threads") || !strcmp(name, "device")) {
            const char *v = val ? val : next;
            if (!v) {
                fprintf(stderr, "spin %s: --%s needs a value\n", cmd, name);
                return 2;
            }
            if (!val)
                i++;
            if (!strcmp(name, "device")) {
                setenv("SPIN_DEVICE", v, 1);
                continue;
            }
            char *end;
            long t = strtol(v, &end, 10);
            if (*end || end == v || t < 1 || t > 4096) {
                fprintf(stderr, "spin %s: --threads expects an integer >= 1 (got '%s')\n", cmd, v);
                return 2;
            }
            omp_set_num_threads((int)t);
            continue;
        }
        int r = own ? own(ctx, name, val, next, &consumed) : -2;
        if (r == -2)
            r = train_config_set_cli(cmd, c, name, val, next, &consumed);
        if (r == -2) {
            fprintf(stderr, "spin %s: unknown option or config key '--%s' (see spin %s --help)\n", cmd, name,
                    cmd);
            return 2;
        }
        if (r != 0)
            return 2;
        i += consumed;
    }
    if (cli_rank() == 0) /* once per job */
        train_config_print_ignored(cmd, c);
    return 0;
}

/* ---- data ---- */

static bool blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

static bool empty_text(const char *s) {
    return blank(s, strlen(s));
}

/* The response text of column `key` (a string, or the last message's content), or NULL. */
static const char *response_of(json_object *row, const char *key) {
    json_object *v, *last, *content;
    if (!json_object_object_get_ex(row, key, &v))
        return NULL;
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    if (!json_object_is_type(v, json_type_array) || json_object_array_length(v) == 0)
        return NULL;
    last = json_object_array_get_idx(v, json_object_array_length(v) - 1);
    if (!json_object_is_type(last, json_type_object) ||
        !json_object_object_get_ex(last, "content", &content) ||
        !json_object_is_type(content, json_type_string))
        return NULL;
    return json_object_get_string(content);
}

/* The 1-based line of each row of a file spin_pref_data_read accepted (*lines[n]), refusing rows
 * whose response is empty: training on "" teaches the model to stop at once, and it is what the
 * reformat step leaves in "generated" before generation ran. */
static int scan_rows(const char *cmd, const char *path, int64_t n, int64_t **lines) {
    FILE *f = fopen(path, "rb");
    *lines = malloc((size_t)(n > 0 ? n : 1) * sizeof **lines);
    if (!f || !*lines) {
        fprintf(stderr, "spin %s: %s: cannot read: %s\n", cmd, path, strerror(errno));
        if (f)
            fclose(f);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int64_t lineno = 0, k = 0;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        if (blank(line, (size_t)got))
            continue;
        if (k < n)
            (*lines)[k] = lineno;
        k++;
        json_object *row = json_tokener_parse(line);
        static const char *const cols[] = {"real", "generated", "chosen", "rejected"};
        for (size_t i = 0; row && i < sizeof cols / sizeof *cols; i++) {
            const char *t = response_of(row, cols[i]);
            if (t && empty_text(t)) {
                fprintf(stderr, "spin %s: %s:%lld: the %s response is empty%s\n", cmd, path,
                        (long long)lineno, cols[i],
                        !strcmp(cols[i], "generated") ? " (was `spin generate` run on this data?)" : "");
                rc = 1;
                break;
            }
        }
        json_object_put(row);
    }
    free(line);
    fclose(f);
    if (rc == 0 && k != n) {
        fprintf(stderr, "spin %s: %s: changed while being read (%lld rows, then %lld)\n", cmd, path,
                (long long)n, (long long)k);
        rc = 1;
    }
    return rc;
}

typedef struct {
    spin_pref_example *ex;
    const char **file; /* borrowed from `files` */
    int64_t *line;
    int64_t n;
    char **files;
    int n_files;
    bool have_kind;
    spin_data_kind kind;
} pool;

static void pool_free(pool *p) {
    for (int64_t i = 0; i < p->n; i++) {
        free(p->ex[i].prompt);
        free(p->ex[i].chosen);
        free(p->ex[i].rejected);
    }
    free(p->ex);
    free(p->file);
    free(p->line);
    for (int i = 0; i < p->n_files; i++)
        free(p->files[i]);
    free(p->files);
    memset(p, 0, sizeof *p);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The JSONL files of split `split` of dataset entry `path`: the file itself, or the directory's
 * <split>.jsonl / <split>_*.jsonl / <split>-*.jsonl (sorted; `spin convert` writes
 * train_prefs-00000-of-00001.jsonl as uclaml/SPIN's parquet files are named). */
static int split_files(const char *cmd, const char *path, const char *split, const char *where, char ***out,
                       int *n_out) {
    *out = NULL;
    *n_out = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "spin %s: %s: dataset_mixer: %s: %s\n", cmd, where, path, strerror(errno));
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        *out = malloc(sizeof **out);
        if (!*out || !((*out)[0] = strdup(path)))
            return 1;
        *n_out = 1;
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "spin %s: %s: cannot read the directory: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    struct dirent *e;
    size_t sl = strlen(split);
    bool parquet = false;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        size_t n = strlen(nm);
        if (strncmp(nm, split, sl) != 0 || !(nm[sl] == '.' || nm[sl] == '_' || nm[sl] == '-'))
            continue;
        if (n > 8 && !strcmp(nm + n - 8, ".parquet"))
            parquet = true;
        if (n < 6 || strcmp(nm + n - 6, ".jsonl"))
            continue;
        /* train.opponent_scores.jsonl (spin score's default beside train.jsonl) is not data */
        if (n > 22 && !strcmp(nm + n - 22, ".opponent_scores.jsonl"))
            continue;
        char **l = realloc(*out, (size_t)(*n_out + 1) * sizeof *l);
        size_t pl = strlen(path) + n + 2;
        char *full = malloc(pl);
        if (!l || !full) {
            free(full);
            closedir(d);
            return 1;
        }
        snprintf(full, pl, "%s/%s", path, nm);
        *out = l;
        l[(*n_out)++] = full;
    }
    closedir(d);
    if (*n_out == 0) {
        fprintf(stderr,
                "spin %s: %s: dataset %s has no %s split: no %s.jsonl, %s_*.jsonl or %s-*.jsonl in it%s\n",
                cmd, where, path, split, split, split, split,
                parquet ? " (parquet files are not read: `spin convert` writes JSONL)" : "");
        return 1;
    }
    qsort(*out, (size_t)*n_out, sizeof **out, cmp_str);
    return 0;
}

static int pool_push(const char *cmd, pool *p, spin_pref_example *ex, const char *file, int64_t line,
                     spin_data_kind kind) {
    if (p->have_kind && kind != p->kind) {
        fprintf(stderr, "spin %s: %s:%lld: %s data, but the rows before it are %s data\n", cmd, file,
                (long long)line, spin_data_kind_name(kind), spin_data_kind_name(p->kind));
        return 1;
    }
    spin_pref_example *e = realloc(p->ex, (size_t)(p->n + 1) * sizeof *e);
    if (e)
        p->ex = e;
    const char **fl = realloc(p->file, (size_t)(p->n + 1) * sizeof *fl);
    if (fl)
        p->file = fl;
    int64_t *ln = realloc(p->line, (size_t)(p->n + 1) * sizeof *ln);
    if (ln)
        p->line = ln;
    if (!e || !fl || !ln) {
        fprintf(stderr, "spin %s: out of memory\n", cmd);
        return 1;
    }
    p->have_kind = true;
    p->kind = kind;
    p->ex[p->n] = *ex;
    memset(ex, 0, sizeof *ex); /* moved */
    p->file[p->n] = file;
    p->line[p->n++] = line;
    return 0;
}

/* One dataset_mixer entry: its train splits' files, read in order; the first int(frac * rows) rows
 * go to p (the file names are kept in p->files). */
static int read_dataset(const char *cmd, const train_cli_config *c, const train_rows *r, int k, pool *p) {
    const train_dataset *ds = &c->datasets[k];
    const char *where = train_config_where(c, "dataset_mixer");
    pool mine = {0};
    int rc = 0;
    for (int s = 0; rc == 0 && s < c->n_splits; s++) {
        if (!strstr(c->dataset_splits[s], "train"))
            continue; /* test splits: evaluation is spin eval's */
        char **files = NULL;
        int nf = 0;
        rc = split_files(cmd, ds->path, c->dataset_splits[s], where, &files, &nf);
        for (int f = 0; rc == 0 && f < nf; f++) {
            spin_pref_data d;
            if (spin_pref_data_read(files[f], r->tpl, r->bos, r->eos, &d) != SPIN_OK) {
                fprintf(stderr, "spin %s: %s\n", cmd, spin_last_error());
                rc = 1;
                break;
            }
            int64_t *lines = NULL;
            rc = scan_rows(cmd, files[f], d.n, &lines);
            char **fl = rc == 0 ? realloc(p->files, (size_t)(p->n_files + 1) * sizeof *fl) : NULL;
            if (rc == 0 && !fl)
                rc = 1;
            if (rc == 0) {
                p->files = fl;
                fl[p->n_files++] = files[f];
                files[f] = NULL;
            }
            for (int64_t i = 0; rc == 0 && i < d.n; i++)
                rc = pool_push(cmd, &mine, &d.ex[i], fl[p->n_files - 1], lines[i], d.kind);
            free(lines);
            spin_pref_data_free(&d);
        }
        for (int f = 0; f < nf; f++)
            free(files[f]);
        free(files);
    }
    /* Python's int(frac * len(ds)): the product in double, truncated */
    int64_t take = (int64_t)(ds->frac * (double)mine.n);
    for (int64_t i = 0; rc == 0 && i < take; i++)
        rc = pool_push(cmd, p, &mine.ex[i], mine.file[i], mine.line[i], mine.kind);
    if (rc == 0)
        spin_log_msg(SPIN_LOG_INFO, "dataset %s: %lld of %lld rows (fraction %g)", ds->path, (long long)take,
                     (long long)mine.n, ds->frac);
    pool_free(&mine);
    return rc;
}

/* ---- tokenizer, template, rows ---- */

static char *model_file(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int resolve_template(const char *cmd, const train_cli_config *c, const char *tok_path, train_rows *r) {
    if (c->chat_template) {
        if (spin_chat_template_from_name(c->chat_template, &r->tpl) == SPIN_OK)
            return 0;
        if (spin_chat_template_from_jinja(c->chat_template, &r->tpl) == SPIN_OK)
            return 0;
        fprintf(stderr, "spin %s: %s: chat_template: neither a template name nor a template spin knows: %s\n",
                cmd, train_config_where(c, "chat_template"), spin_last_error());
        return 2;
    }
    struct stat st;
    char *dir = stat(tok_path, &st) == 0 && S_ISDIR(st.st_mode) ? strdup(tok_path) : NULL;
    if (!dir) {
        const char *sl = strrchr(tok_path, '/');
        dir = sl ? strndup(tok_path, (size_t)(sl - tok_path)) : strdup(".");
    }
    char *cfg = dir ? model_file(dir, "tokenizer_config.json") : NULL;
    free(dir);
    if (!cfg)
        return 1;
    int rc = 0;
    if (stat(cfg, &st) != 0) {
        r->tpl = SPIN_CHAT_ZEPHYR;
        spin_log_msg(SPIN_LOG_INFO, "no %s: using zephyr (uclaml/SPIN's DEFAULT_CHAT_TEMPLATE)", cfg);
    } else if (spin_chat_template_from_tokenizer_config(cfg, &r->tpl, NULL, NULL) != SPIN_OK) {
        /* a tokenizer without a template gets SPIN's default; an unknown template is an error */
        json_object *j = json_object_from_file(cfg), *t;
        if (j && !json_object_object_get_ex(j, "chat_template", &t)) {
            r->tpl = SPIN_CHAT_ZEPHYR;
            spin_log_msg(SPIN_LOG_INFO,
                         "%s has no chat_template: using zephyr (uclaml/SPIN's DEFAULT_CHAT_TEMPLATE)", cfg);
        } else {
            fprintf(stderr, "spin %s: %s (set chat_template to a template name)\n", cmd, spin_last_error());
            rc = 2;
        }
        json_object_put(j);
    }
    free(cfg);
    return rc;
}

int train_rows_build(const char *cmd, const train_cli_config *c, train_rows *r) {
    memset(r, 0, sizeof *r);
    if (spin_llama_config_load(c->model_name_or_path, &r->mcfg) != SPIN_OK) {
        fprintf(stderr, "spin %s: model_name_or_path %s: %s\n", cmd, c->model_name_or_path,
                spin_last_error());
        return 1;
    }
    const char *tp = c->tokenizer ? c->tokenizer : c->model_name_or_path;
    r->tok = spin_tokenizer_load(tp);
    if (!r->tok) {
        fprintf(stderr, "spin %s: tokenizer %s: %s\n", cmd, tp, spin_last_error());
        return 1;
    }
    int32_t bos = spin_tokenizer_bos_id(r->tok), eos = spin_tokenizer_eos_id(r->tok);
    r->bos = bos >= 0 ? spin_tokenizer_id_to_token(r->tok, bos) : NULL;
    r->eos = eos >= 0 ? spin_tokenizer_id_to_token(r->tok, eos) : NULL;
    if (eos < 0) {
        fprintf(stderr,
                "spin %s: tokenizer %s: no EOS token (tokenizer_config.json eos_token): the collator appends "
                "it\n",
                cmd, tp);
        return 1;
    }
    if (spin_tokenizer_vocab_size(r->tok) > r->mcfg.vocab_size) {
        fprintf(stderr, "spin %s: tokenizer %s has %d tokens, more than the model's vocab_size %lld\n", cmd,
                tp, spin_tokenizer_vocab_size(r->tok), (long long)r->mcfg.vocab_size);
        return 1;
    }
    int rc = resolve_template(cmd, c, tp, r);
    if (rc)
        return rc;
    /* get_tokenizer: pad_token = eos when the tokenizer has none; the model's pad_token_id names it */
    r->collate = (spin_collate_opts){.max_length = c->max_length,
                                     .max_prompt_length = c->max_prompt_length,
                                     .keep_start = !strcmp(c->truncation_mode, "keep_start"),
                                     .eos_id = eos,
                                     .pad_id = r->mcfg.pad_token_id >= 0 ? r->mcfg.pad_token_id : eos};

    pool p = {0};
    for (int k = 0; rc == 0 && k < c->n_datasets; k++)
        rc = read_dataset(cmd, c, r, k, &p);
    if (rc == 0 && p.n == 0) {
        fprintf(stderr, "spin %s: %s: dataset_mixer selects no rows\n", cmd,
                train_config_where(c, "dataset_mixer"));
        rc = 1;
    }
    /* mix_datasets: concatenate_datasets(...).shuffle(seed=42). The permutation is spin's own
     * (Philox-keyed Fisher-Yates), not numpy's; the trainer reshuffles every epoch anyway. */
    spin_rng g = {.seed = 42, .counter = 0};
    for (int64_t i = rc == 0 ? p.n - 1 : 0; i > 0; i--) {
        uint64_t x = ((uint64_t)spin_rng_next_u32(&g) << 32) | spin_rng_next_u32(&g);
        int64_t j = (int64_t)(x % (uint64_t)(i + 1));
        spin_pref_example t = p.ex[i];
        p.ex[i] = p.ex[j];
        p.ex[j] = t;
        const char *tf = p.file[i];
        p.file[i] = p.file[j];
        p.file[j] = tf;
        int64_t tl = p.line[i];
        p.line[i] = p.line[j];
        p.line[j] = tl;
    }
    if (rc == 0) {
        r->rows = calloc((size_t)p.n, sizeof *r->rows);
        if (!r->rows) {
            fprintf(stderr, "spin %s: out of memory\n", cmd);
            rc = 1;
        }
    }
    int64_t long_prompts = 0, cut_prompts = 0;
    for (int64_t i = 0; rc == 0 && i < p.n; i++) {
        if (spin_collate_tokenize(r->tok, &p.ex[i], &r->collate, &r->rows[i]) != SPIN_OK) {
            fprintf(stderr, "spin %s: %s:%lld: %s\n", cmd, p.file[i], (long long)p.line[i],
                    spin_last_error());
            rc = 1;
            break;
        }
        /* the prompt's length before truncation, for the report (the collator keeps only the result) */
        int32_t *ids = NULL;
        size_t np = 0;
        if (spin_tokenizer_encode(r->tok, p.ex[i].prompt, strlen(p.ex[i].prompt), false, &ids, &np) ==
            SPIN_OK) {
            if ((int64_t)np > r->rows[i].n_prompt) {
                if (cut_prompts++ == 0 && (int64_t)np < c->max_length)
                    fprintf(stderr,
                            "spin %s: %s:%lld: prompt of %zu tokens cut to %lld (max_prompt_length, %s)\n",
                            cmd, p.file[i], (long long)p.line[i], np, (long long)r->rows[i].n_prompt,
                            c->truncation_mode);
            }
            if ((int64_t)np >= c->max_length && long_prompts++ == 0)
                fprintf(
                    stderr,
                    "spin %s: %s:%lld: the prompt alone is %zu tokens, not shorter than max_length %lld: it "
                    "keeps %lld tokens (max_prompt_length, %s)\n",
                    cmd, p.file[i], (long long)p.line[i], np, (long long)c->max_length,
                    (long long)r->rows[i].n_prompt, c->truncation_mode);
        }
        free(ids);
    }
    if (rc == 0 && cut_prompts > 0)
        fprintf(stderr,
                "spin %s: %lld of %lld prompts were cut to max_prompt_length (%lld longer than max_length)\n",
                cmd, (long long)cut_prompts, (long long)p.n, (long long)long_prompts);
    if (rc == 0) {
        r->data = (spin_pref_data){.kind = p.kind, .n = p.n, .ex = p.ex};
        r->src_file = p.file;
        r->src_line = p.line;
        r->files = p.files;
        r->n_files = p.n_files;
        memset(&p, 0, sizeof p);
    } else if (r->rows) {
        for (int64_t i = 0; i < p.n; i++)
            spin_pref_tokens_free(&r->rows[i]);
        free(r->rows);
        r->rows = NULL;
    }
    pool_free(&p);
    if (rc)
        return rc;

    /* the default scores file: beside the data */
    if (c->opponent_scores) {
        r->scores_path = strdup(c->opponent_scores);
    } else if (c->n_datasets == 1) {
        const char *d = c->datasets[0].path;
        struct stat st;
        if (stat(d, &st) == 0 && S_ISDIR(st.st_mode)) {
            r->scores_path = model_file(d, "opponent_scores.jsonl");
        } else {
            size_t n = strlen(d);
            if (n > 6 && !strcmp(d + n - 6, ".jsonl"))
                n -= 6;
            r->scores_path = malloc(n + 32);
            if (r->scores_path)
                snprintf(r->scores_path, n + 32, "%.*s.opponent_scores.jsonl", (int)n, d);
        }
    } else if (c->output_dir) {
        r->scores_path = model_file(c->output_dir, "opponent_scores.jsonl");
    } else {
        fprintf(stderr, "spin %s: several datasets: give opponent_scores (--scores PATH) or output_dir\n",
                cmd);
        return 2;
    }
    return r->scores_path ? 0 : 1;
}

void train_rows_free(train_rows *r) {
    for (int64_t i = 0; r->rows && i < r->data.n; i++)
        spin_pref_tokens_free(&r->rows[i]);
    free(r->rows);
    spin_pref_data_free(&r->data);
    spin_tokenizer_free(r->tok);
    spin_llama_config_free(&r->mcfg);
    free(r->scores_path);
    free(r->src_file);
    free(r->src_line);
    for (int i = 0; i < r->n_files; i++)
        free(r->files[i]);
    free(r->files);
    memset(r, 0, sizeof *r);
}

int train_rows_fingerprint(const char *cmd, const train_cli_config *c, const train_rows *r,
                           const spin_llama *opp, spin_score_fingerprint *fp) {
    memset(fp, 0, sizeof *fp);
    if (spin_llama_weights_hash(opp, &fp->weights) != SPIN_OK) {
        fprintf(stderr, "spin %s: %s\n", cmd, spin_last_error());
        return 1;
    }
    fp->tokenizer = spin_tokenizer_hash(r->tok);
    snprintf(fp->template_name, sizeof fp->template_name, "%s", spin_chat_template_name(r->tpl));
    fp->max_length = c->max_length;
    fp->max_prompt_length = c->max_prompt_length;
    fp->keep_start = r->collate.keep_start;
    fp->average = false; /* SPIN and TRL sum the response log-probs */
    return 0;
}

bool train_cli_bf16(const train_cli_config *c) {
    return c->bf16 || (c->torch_dtype && !strcmp(c->torch_dtype, "bfloat16"));
}

int train_cli_load_model(const char *cmd, const train_cli_config *c, spin_llama **out) {
    spin_device *dev = spin_init();
    if (!dev) {
        fprintf(stderr, "spin %s: no device: %s\n", cmd, spin_last_error());
        return 1;
    }
    if (spin_llama_load(c->model_name_or_path, dev, out) != SPIN_OK) {
        fprintf(stderr, "spin %s: model_name_or_path %s: %s\n", cmd, c->model_name_or_path,
                spin_last_error());
        return 1;
    }
    if (train_cli_bf16(c) && spin_llama_set_dtype(*out, SPIN_BF16) != SPIN_OK) {
        fprintf(stderr, "spin %s: bf16: %s\n", cmd, spin_last_error());
        spin_llama_free(*out);
        *out = NULL;
        return 1;
    }
    return 0;
}

typedef struct {
    const char *cmd;
    struct timespec t0;
    bool tty, quiet, block; /* block: under mpirun, rank 0 reports its own rows */
    int64_t last_tenth;
} progress_ctx;

static double since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void on_progress(void *ctx, int64_t done, int64_t total) {
    progress_ctx *p = ctx;
    if (p->quiet)
        return;
    double el = since(&p->t0);
    double eta = done > 0 ? el * (double)(total - done) / (double)done : 0;
    /* a terminal gets one line rewritten in place; a log file a line at every tenth of the work */
    int64_t tenth = done * 10 / (total > 0 ? total : 1);
    if (!p->tty && (tenth == p->last_tenth || done == total))
        return;
    p->last_tenth = tenth;
    fprintf(stderr, "%sspin %s: scoring the opponent: %lld/%lld examples%s, %.1f/s, ETA %.0f s%s",
            p->tty ? "\r" : "", p->cmd, (long long)done, (long long)total,
            p->block ? " of rank 0's block" : "", el > 0 ? (double)done / el : 0, eta, p->tty ? "   " : "\n");
}

/* Under mpirun: every rank's block of scores to every rank, copied as bytes (rank order = row order). */
static int gather_scores(const char *cmd, spin_comm *comm, int64_t n, float *chosen, float *rejected) {
    for (int q = 0; q < spin_comm_size(comm); q++) {
        int64_t b, e;
        spin_shard_range(n, q, spin_comm_size(comm), &b, &e);
        size_t bytes = (size_t)(e - b) * sizeof *chosen;
        if (bytes && (spin_comm_broadcast_bytes(comm, chosen + b, bytes, q) != SPIN_OK ||
                      spin_comm_broadcast_bytes(comm, rejected + b, bytes, q) != SPIN_OK)) {
            fprintf(stderr, "spin %s: gathering the scores: %s\n", cmd, spin_last_error());
            return 1;
        }
    }
    return 0;
}

int train_cli_score(const char *cmd, spin_llama *opp, const train_cli_config *c, const train_rows *r,
                    float *chosen, float *rejected) {
    /* under mpirun each rank scores its contiguous block of rows (a row's score does not depend on
     * its batch); rank 0 reports its own block's progress */
    int rank = cli_rank(), world = cli_size();
    int64_t b, e;
    spin_shard_range(r->data.n, rank, world, &b, &e);
    progress_ctx p = {.cmd = cmd, .tty = isatty(2) && rank == 0, .quiet = rank != 0, .block = world > 1};
    clock_gettime(CLOCK_MONOTONIC, &p.t0);
    spin_status s = e > b ? spin_score_examples(opp, r->rows + b, e - b, c->per_device_train_batch_size,
                                                &r->collate, false, chosen + b, rejected + b, on_progress, &p)
                          : SPIN_OK;
    if (p.tty)
        fputc('\n', stderr);
    if (s != SPIN_OK)
        fprintf(stderr, "spin %s: %sscoring the opponent: %s\n", cmd, world > 1 ? "this rank: " : "",
                spin_last_error());
    int rc = cli_agree(s != SPIN_OK);
    if (rc == 0 && world > 1)
        rc = cli_agree(gather_scores(cmd, cli_comm(), r->data.n, chosen, rejected));
    if (rc != 0)
        return 1;
    if (rank == 0)
        fprintf(stderr, "spin %s: scored %lld examples in %.1f s%s\n", cmd, (long long)r->data.n,
                since(&p.t0), world > 1 ? " (rows split over the ranks)" : "");
    return 0;
}
