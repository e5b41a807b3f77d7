/* Shared by `spin complete` and `spin chat` (tools/spin/gen_cli.h). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backends.h"
#include "models/gguf.h"
#include "tools/spin/gen_cli.h"

const char gen_cli_options_help[] =
    "  --batch-size N       prompts decoded at once (default 8)\n"
    "  --max-new-tokens N   tokens generated per prompt at most (default 256)\n"
    "  --temperature T      0: greedy (default 0)\n"
    "  --top-p P            nucleus sampling mass, 1: off (default 1)\n"
    "  --top-k K            sample among the K most likely tokens, 0: off (default 0)\n"
    "  --seed S             sampling seed; a prompt's samples depend only on (seed, its index,\n"
    "                       position), not on the batch (default 0)\n"
    "  --stop STR           stop when STR appears in the completion, which is cut before it\n"
    "                       (repeatable; default none)\n"
    "  --generation-config  take do_sample, temperature, top_p, top_k and max_new_tokens from the\n"
    "                       model's generation_config.json for the options not given here\n"
    "                       (default: off; the defaults above apply)\n"
    "  --ignore-eos         do not stop at EOS tokens (default: stop at the model's EOS ids from\n"
    "                       generation_config.json / config.json)\n";

static int parse_i64(const char *cmd, const char *opt, const char *s, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) {
        fprintf(stderr, "spin %s: %s expects an integer >= %lld (got '%s')\n", cmd, opt, (long long)lo, s);
        return -1;
    }
    *out = v;
    return 1;
}

static int parse_f(const char *cmd, const char *opt, const char *s, double lo, double hi, bool lo_open,
                   float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi) || (lo_open && v == lo)) {
        fprintf(stderr, "spin %s: %s expects a number in %c%g, %g] (got '%s')\n", cmd, opt,
                lo_open ? '(' : '[', lo, hi, s);
        return -1;
    }
    *out = (float)v;
    return 1;
}

/* Options given on the command line (one process runs one command). */
static bool given_temperature, given_top_p, given_top_k, given_max_new, use_gen_config;

void gen_cli_apply_generation_config(const spin_llama *m, spin_gen_opts *o) {
    const spin_generation_config *g = &m->cfg.gen;
    if (!use_gen_config || !g->present)
        return;
    if (!given_max_new && g->max_new_tokens > 0)
        o->max_new_tokens = g->max_new_tokens;
    if (!g->do_sample) {
        if (!given_temperature)
            o->temperature = 0; /* transformers: greedy when do_sample is false */
        return;
    }
    if (!given_temperature)
        o->temperature = (float)g->temperature;
    if (!given_top_p)
        o->top_p = (float)g->top_p;
    if (!given_top_k)
        o->top_k = g->top_k;
}

int gen_cli_option(const char *cmd, int argc, char **argv, int *i, spin_gen_opts *o) {
    const char *a = argv[*i];
    given_temperature |= !strcmp(a, "--temperature");
    given_top_p |= !strcmp(a, "--top-p");
    given_top_k |= !strcmp(a, "--top-k");
    given_max_new |= !strcmp(a, "--max-new-tokens");
    if (!strcmp(a, "--generation-config")) {
        use_gen_config = true;
        return 1;
    }
    if (!strcmp(a, "--ignore-eos")) {
        o->ignore_eos = true;
        return 1;
    }
    static const char *const with_value[] = {"--batch-size", "--max-new-tokens", "--temperature", "--top-p",
                                             "--top-k",      "--seed",           "--stop"};
    bool known = false;
    for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++)
        known |= !strcmp(a, with_value[k]);
    if (!known)
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "spin %s: %s needs a value\n", cmd, a);
        return -1;
    }
    const char *v = argv[++*i];
    int64_t n = 0;
    if (!strcmp(a, "--batch-size"))
        return parse_i64(cmd, a, v, 1, &o->batch_size);
    if (!strcmp(a, "--max-new-tokens"))
        return parse_i64(cmd, a, v, 1, &o->max_new_tokens);
    if (!strcmp(a, "--top-k"))
        return parse_i64(cmd, a, v, 0, &o->top_k);
    if (!strcmp(a, "--seed")) {
        int r = parse_i64(cmd, a, v, 0, &n);
        o->seed = (uint64_t)n;
        return r;
    }
    if (!strcmp(a, "--temperature"))
        return parse_f(cmd, a, v, 0, 1e6, false, &o->temperature);
    if (!strcmp(a, "--top-p"))
        return parse_f(cmd, a, v, 0, 1, true, &o->top_p);
    /* --stop */
    if (!*v) {
        fprintf(stderr, "spin %s: --stop expects a non-empty string\n", cmd);
        return -1;
    }
    const char **s = realloc((void *)o->stop, (size_t)(o->n_stop + 1) * sizeof *s);
    if (!s) {
        fprintf(stderr, "spin %s: out of memory\n", cmd);
        return -1;
    }
    s[o->n_stop++] = v;
    o->stop = s;
    return 1;
}

/* The directory holding path (path itself when it is a directory). */
static char *dir_of(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return strdup(path);
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 2);
    if (d) {
        memcpy(d, path, n ? n : 1);
        d[n ? n : 1] = 0;
    }
    return d;
}

int gen_cli_load(const char *cmd, const char *model_dir, const char *tokenizer_path,
                 const char *template_name, gen_cli_model *out) {
    memset(out, 0, sizeof *out);
    if (template_name && spin_chat_template_from_name(template_name, &out->tpl) != SPIN_OK) {
        fprintf(stderr, "spin %s: --template: %s\n", cmd, spin_last_error());
        return 2;
    }
    out->have_template = template_name != NULL;
    spin_device *dev = spin_init();
    if (!dev) {
        fprintf(stderr, "spin %s: no device: %s\n", cmd, spin_last_error());
        return 1;
    }
    if (spin_llama_load(model_dir, dev, &out->m) != SPIN_OK) {
        fprintf(stderr, "spin %s: --model %s: %s\n", cmd, model_dir, spin_last_error());
        return 1;
    }
    const char *tp = tokenizer_path ? tokenizer_path : model_dir;
    out->tok = spin_tokenizer_load(tp);
    if (!out->tok) {
        fprintf(stderr, "spin %s: --tokenizer %s: %s\n", cmd, tp, spin_last_error());
        gen_cli_free(out);
        return 1;
    }
    int32_t b = spin_tokenizer_bos_id(out->tok), e = spin_tokenizer_eos_id(out->tok);
    out->bos = b >= 0 ? spin_tokenizer_id_to_token(out->tok, b) : NULL;
    out->eos = e >= 0 ? spin_tokenizer_id_to_token(out->tok, e) : NULL;
    size_t tpl_len = strlen(tp);
    if (!out->have_template && tpl_len > 5 && !strcmp(tp + tpl_len - 5, ".gguf")) {
        /* a GGUF file: tokenizer.chat_template, recognised by exact match */
        spin_gguf *gf = spin_gguf_open(tp);
        const char *jinja = NULL;
        if (gf && spin_gguf_get_string(gf, "tokenizer.chat_template", &jinja) == SPIN_OK && jinja &&
            spin_chat_template_from_jinja(jinja, &out->tpl) == SPIN_OK)
            out->have_template = true;
        else
            out->template_error =
                strdup(jinja ? spin_last_error() : "the GGUF file has no tokenizer.chat_template");
        spin_gguf_close(gf);
    } else if (!out->have_template) {
        char *dir = dir_of(tp);
        size_t n = dir ? strlen(dir) + 32 : 0;
        char *cfg = dir ? malloc(n) : NULL;
        if (cfg) {
            snprintf(cfg, n, "%s/tokenizer_config.json", dir);
            if (spin_chat_template_from_tokenizer_config(cfg, &out->tpl, NULL, NULL) == SPIN_OK)
                out->have_template = true;
            else
                out->template_error = strdup(spin_last_error());
        }
        free(cfg);
        free(dir);
    }
    return 0;
}

void gen_cli_free(gen_cli_model *g) {
    spin_llama_free(g->m);
    spin_tokenizer_free(g->tok);
    free(g->template_error);
    memset(g, 0, sizeof *g);
}
