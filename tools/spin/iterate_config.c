/* The `iterate:` section of a `spin iterate` config (tools/spin/iterate_config.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "tools/spin/iterate_config.h"

typedef struct {
    const char *path;
    yaml_document_t *doc;
} ctx;

static unsigned long line_of(const yaml_node_t *n) {
    return n ? (unsigned long)n->start_mark.line + 1 : 0;
}

static int bad(const ctx *c, const yaml_node_t *n, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "spin iterate: %s:%lu: ", c->path, line_of(n));
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int get_bool(const ctx *c, const char *key, const yaml_node_t *v, bool *out) {
    const char *s = scalar(v);
    if (s && (!strcmp(s, "true") || !strcmp(s, "True"))) {
        *out = true;
        return 0;
    }
    if (s && (!strcmp(s, "false") || !strcmp(s, "False"))) {
        *out = false;
        return 0;
    }
    return bad(c, v, "iterate.%s: expected true or false, got '%s'", key, s ? s : "(not a scalar)");
}

static int get_int(const ctx *c, const char *key, const yaml_node_t *v, int64_t lo, int64_t *out) {
    const char *s = scalar(v);
    char *end = NULL;
    errno = 0;
    long long x = s ? strtoll(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || x < lo) {
        char want[64];
        snprintf(want, sizeof want, "%lld", (long long)lo);
        fprintf(stderr, "spin iterate: %s:%lu: iterate.%s: expected an integer >= %s, got '%s'\n", c->path,
                line_of(v), key, want, s ? s : "(not a scalar)");
        return 2;
    }
    *out = x;
    return 0;
}

/* generate.* keys: the `spin generate` option each becomes, and the value's kind */
static const struct {
    const char *key, *opt;
    char kind; /* i: integer >= 0, f: number, b: flag, s: string, l: string or list of strings */
} gen_keys[] = {
    {"batch_size", "--batch-size", 'i'},
    {"max_new_tokens", "--max-new-tokens", 'i'},
    {"temperature", "--temperature", 'f'},
    {"top_p", "--top-p", 'f'},
    {"top_k", "--top-k", 'i'},
    {"seed", "--seed", 'i'},
    {"stop", "--stop", 'l'},
    {"generation_config", "--generation-config", 'b'},
    {"ignore_eos", "--ignore-eos", 'b'},
    {"add_special", "--add-special", 'b'},
    {"attend_prompt_eos", "--attend-prompt-eos", 'b'},
    {"max_length", "--max-length", 'i'},
    {"chat_template", NULL, 'b'},
    {"template", NULL, 's'},
    {"frac_len", NULL, 'i'},
};

static int push(iterate_config *ic, const char *s) {
    char **n = realloc(ic->gen_argv, (size_t)(ic->n_gen_argv + 1) * sizeof *n);
    if (!n)
        return 1;
    ic->gen_argv = n;
    if (!(n[ic->n_gen_argv] = strdup(s)))
        return 1;
    ic->n_gen_argv++;
    return 0;
}

static int read_generate(const ctx *c, const yaml_node_t *m, iterate_config *ic) {
    if (m->type != YAML_MAPPING_NODE)
        return bad(c, m, "iterate.generate: expected a mapping of %s options%s", "`spin generate`", "");
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key),
                    *vn = yaml_document_get_node(c->doc, p->value);
        const char *k = scalar(kn), *v = scalar(vn);
        size_t i = 0, n = sizeof gen_keys / sizeof *gen_keys;
        while (k && i < n && strcmp(k, gen_keys[i].key))
            i++;
        if (!k || i == n)
            return bad(c, kn,
                       "iterate.generate: unknown key '%s' (batch_size, max_new_tokens, temperature, top_p, "
                       "top_k, seed, stop, generation_config, ignore_eos, add_special, attend_prompt_eos, "
                       "max_length, "
                       "chat_template, template, frac_len)%s",
                       k ? k : "?", "");
        char full[96];
        snprintf(full, sizeof full, "generate.%s", k);
        int64_t x = 0;
        bool b = false;
        int rc = 0;
        switch (gen_keys[i].kind) {
        case 'i':
            rc = get_int(c, full, vn, 0, &x);
            if (rc == 0 && !strcmp(k, "frac_len"))
                ic->frac_len = x;
            if (rc == 0 && !strcmp(k, "max_new_tokens"))
                ic->max_new_tokens = x;
            if (rc == 0 && gen_keys[i].opt)
                rc = push(ic, gen_keys[i].opt) || push(ic, v);
            break;
        case 'f': {
            char *end = NULL;
            double d = v ? strtod(v, &end) : 0;
            (void)d;
            if (!v || end == v || *end)
                return bad(c, vn, "iterate.%s: expected a number, got '%s'", full, v ? v : "(not a scalar)");
            rc = push(ic, gen_keys[i].opt) || push(ic, v);
            break;
        }
        case 'b':
            rc = get_bool(c, full, vn, &b);
            if (rc == 0 && !strcmp(k, "chat_template"))
                ic->gen_chat = b;
            else if (rc == 0 && b)
                rc = push(ic, gen_keys[i].opt);
            break;
        case 's':
            if (!v || !*v)
                return bad(c, vn, "iterate.%s: expected a template name, got '%s'", full, v ? v : "");
            free(ic->gen_template);
            ic->gen_template = strdup(v);
            rc = ic->gen_template ? 0 : 1;
            break;
        default: /* 'l' */
            if (vn->type == YAML_SEQUENCE_NODE) {
                for (yaml_node_item_t *it = vn->data.sequence.items.start;
                     rc == 0 && it < vn->data.sequence.items.top; it++) {
                    const char *s = scalar(yaml_document_get_node(c->doc, *it));
                    if (!s || !*s)
                        return bad(c, vn, "iterate.%s: expected non-empty strings%s", full, "");
                    rc = push(ic, gen_keys[i].opt) || push(ic, s);
                }
            } else if (v && *v) {
                rc = push(ic, gen_keys[i].opt) || push(ic, v);
            } else {
                return bad(c, vn, "iterate.%s: expected a string or a list of strings%s", full, "");
            }
        }
        if (rc == 1) {
            fprintf(stderr, "spin iterate: out of memory\n");
            return 2;
        }
        if (rc)
            return rc;
    }
    return 0;
}

static int read_iterations(const ctx *c, const yaml_node_t *s, iterate_config *ic) {
    if (s->type != YAML_SEQUENCE_NODE)
        return bad(c, s,
                   "iterate.iterations: expected a list with one mapping of training keys per iteration%s%s",
                   "", "");
    int n = (int)(s->data.sequence.items.top - s->data.sequence.items.start);
    ic->iter = calloc((size_t)(n ? n : 1), sizeof *ic->iter);
    ic->n_iter = calloc((size_t)(n ? n : 1), sizeof *ic->n_iter);
    if (!ic->iter || !ic->n_iter) {
        fprintf(stderr, "spin iterate: out of memory\n");
        return 2;
    }
    ic->n_listed = n;
    for (int t = 0; t < n; t++) {
        yaml_node_t *m = yaml_document_get_node(c->doc, s->data.sequence.items.start[t]);
        const char *empty = scalar(m);
        if (m && m->type == YAML_SCALAR_NODE && empty &&
            (!*empty || !strcmp(empty, "null") || !strcmp(empty, "~")))
            continue; /* `- ` or `- null`: nothing changes in that iteration */
        char idx[32];
        snprintf(idx, sizeof idx, "%d", t);
        if (!m || m->type != YAML_MAPPING_NODE)
            return bad(c, m, "iterate.iterations[%s]: expected a mapping of training keys%s", idx, "");
        int k = (int)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
        ic->iter[t] = calloc((size_t)(k ? k : 1), sizeof **ic->iter);
        if (!ic->iter[t]) {
            fprintf(stderr, "spin iterate: out of memory\n");
            return 2;
        }
        for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(c->doc, p->key),
                        *vn = yaml_document_get_node(c->doc, p->value);
            const char *key = scalar(kn), *v = scalar(vn);
            if (!key || !v)
                return bad(c, kn ? kn : m, "iterate.iterations[%s]: '%s' needs a single value (a scalar)",
                           idx, key ? key : "?");
            for (int j = 0; j < ic->n_iter[t]; j++)
                if (!strcmp(ic->iter[t][j].key, key))
                    return bad(c, kn, "iterate.iterations[%s]: %s is given twice", idx, key);
            iterate_kv *e = &ic->iter[t][ic->n_iter[t]++];
            e->key = strdup(key);
            e->value = strdup(v);
            e->line = (int)line_of(kn);
            if (!e->key || !e->value) {
                fprintf(stderr, "spin iterate: out of memory\n");
                return 2;
            }
        }
    }
    return 0;
}

static int read_section(const ctx *c, const yaml_node_t *m, iterate_config *ic) {
    if (m->type != YAML_MAPPING_NODE)
        return bad(c, m, "iterate: expected a mapping (input, num_iterations, ...)%s%s", "", "");
    bool have_n = false;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key),
                    *vn = yaml_document_get_node(c->doc, p->value);
        const char *k = scalar(kn);
        int64_t x = 0;
        int rc = 0;
        if (!k)
            return bad(c, kn, "iterate: keys must be plain names%s%s", "", "");
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(scalar(yaml_document_get_node(c->doc, q->key)), k))
                return bad(c, kn, "iterate.%s is given twice%s", k, "");
        if (!strcmp(k, "input")) {
            const char *v = scalar(vn);
            if (!v || !*v)
                return bad(c, vn, "iterate.input: expected the path of `spin reformat`'s output%s%s", "", "");
            ic->input = strdup(v);
        } else if (!strcmp(k, "num_iterations")) {
            rc = get_int(c, k, vn, 1, &x);
            if (rc == 0 && x > 1000)
                return bad(c, vn, "iterate.num_iterations: %s is more than 1000%s", scalar(vn), "");
            ic->num_iterations = (int)x;
            have_n = true;
        } else if (!strcmp(k, "mix_previous")) {
            rc = get_bool(c, k, vn, &ic->mix_previous);
        } else if (!strcmp(k, "eval")) {
            rc = get_bool(c, k, vn, &ic->eval);
        } else if (!strcmp(k, "eval_batch_size")) {
            rc = get_int(c, k, vn, 1, &ic->eval_batch_size);
        } else if (!strcmp(k, "generate")) {
            rc = read_generate(c, vn, ic);
        } else if (!strcmp(k, "iterations")) {
            rc = read_iterations(c, vn, ic);
        } else {
            return bad(
                c, kn,
                "iterate: unknown key '%s' (input, num_iterations, mix_previous, eval, eval_batch_size, "
                "generate, iterations)%s",
                k, "");
        }
        if (rc)
            return rc;
    }
    if (!ic->input)
        return bad(c, m, "iterate.input is required (the directory `spin reformat` wrote)%s%s", "", "");
    if (!have_n)
        ic->num_iterations = ic->n_listed;
    if (ic->num_iterations < 1)
        return bad(c, m, "iterate.num_iterations is required (or an `iterations` list)%s%s", "", "");
    if (ic->n_listed > ic->num_iterations) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%d", ic->n_listed);
        snprintf(b, sizeof b, "%d", ic->num_iterations);
        return bad(c, m, "iterate.iterations lists %s iterations, num_iterations is %s", a, b);
    }
    return 0;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap + 1);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(b, 2 * cap + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (b && err) {
        free(b);
        return NULL;
    }
    if (b)
        b[n] = 0;
    return b;
}

int iterate_config_read(const char *path, iterate_config *ic) {
    memset(ic, 0, sizeof *ic);
    ic->mix_previous = true;
    ic->eval = true;
    ic->eval_batch_size = 8;
    ic->max_new_tokens = 256;
    ic->path = strdup(path);
    char *text = slurp(path);
    if (!text || !ic->path) {
        fprintf(stderr, "spin iterate: cannot read %s: %s\n", path, strerror(errno));
        free(text);
        return 2;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        free(text);
        fprintf(stderr, "spin iterate: out of memory\n");
        return 2;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, strlen(text));
    if (!yaml_parser_load(&parser, &doc)) {
        fprintf(stderr, "spin iterate: %s:%lu: %s\n", path, (unsigned long)parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        free(text);
        return 2;
    }
    ctx c = {path, &doc};
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = 0;
    const yaml_node_t *sec_key = NULL, *sec_val = NULL;
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = bad(&c, root, "the config must be a mapping of keys%s%s", "", "");
    } else {
        for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
            const char *k = scalar(kn);
            if (k && !strcmp(k, "iterate")) {
                if (sec_key) {
                    rc = bad(&c, kn, "iterate: the section is given twice%s%s", "", "");
                    break;
                }
                sec_key = kn;
                sec_val = yaml_document_get_node(&doc, p->value);
            }
        }
        if (rc == 0 && !sec_key)
            rc = bad(&c, root,
                     "no `iterate:` section (input, num_iterations, ...; see spin iterate --help)%s%s", "",
                     "");
    }
    if (rc == 0) {
        ic->section_line = (int)line_of(sec_key);
        rc = read_section(&c, sec_val, ic);
    }
    if (rc == 0) {
        /* blank the section, keeping newlines: `spin train` names the same lines */
        size_t a = sec_key->start_mark.index, b = sec_val->end_mark.index, n = strlen(text);
        for (size_t i = a; i < b && i < n; i++)
            if (text[i] != '\n')
                text[i] = ' ';
        ic->train_yaml = text;
        text = NULL;
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

void iterate_config_free(iterate_config *ic) {
    free(ic->path);
    free(ic->input);
    free(ic->gen_template);
    for (int i = 0; i < ic->n_gen_argv; i++)
        free(ic->gen_argv[i]);
    free(ic->gen_argv);
    for (int t = 0; t < ic->n_listed; t++) {
        for (int j = 0; ic->iter && ic->iter[t] && j < ic->n_iter[t]; j++) {
            free(ic->iter[t][j].key);
            free(ic->iter[t][j].value);
        }
        if (ic->iter)
            free(ic->iter[t]);
    }
    free(ic->iter);
    free(ic->n_iter);
    free(ic->train_yaml);
    memset(ic, 0, sizeof *ic);
}
