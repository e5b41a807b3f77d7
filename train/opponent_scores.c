#define _POSIX_C_SOURCE 200809L
#include "train/opponent_scores.h"

#include <inttypes.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/safetensors.h"
#include "train/pref_step.h"

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

static uint64_t fnv_i64(uint64_t h, int64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)((uint64_t)v >> (8 * i));
    return fnv(h, b, 8);
}

spin_status spin_llama_weights_hash(const spin_llama *m, uint64_t *out) {
    const spin_llama_config *c = &m->cfg;
    uint64_t h = FNV_OFFSET;
    int64_t arch[] = {c->vocab_size,        c->hidden_size,         c->intermediate_size,
                      c->num_hidden_layers, c->num_attention_heads, c->num_key_value_heads,
                      c->head_dim};
    for (size_t i = 0; i < sizeof arch / sizeof arch[0]; i++)
        h = fnv_i64(h, arch[i]);
    float *buf = NULL;
    int64_t cap = 0;
    for (int p = 0; p < m->n_params; p++) {
        int64_t n = spin_tensor_numel(m->params[p]);
        if (n > cap) {
            float *nb = realloc(buf, (size_t)n * sizeof *buf);
            if (!nb) {
                free(buf);
                return spin_fail(SPIN_ERR_OOM, "weights hash: out of host memory for %s", m->names[p]);
            }
            buf = nb;
            cap = n;
        }
        spin_status s = spin_tensor_read_f32(m->params[p], buf, n);
        if (s != SPIN_OK) {
            free(buf);
            return s;
        }
        h = fnv(h, m->names[p], strlen(m->names[p]));
        h = fnv(h, buf, (size_t)n * sizeof *buf);
    }
    free(buf);
    *out = h;
    return SPIN_OK;
}

uint64_t spin_tokenizer_hash(const spin_tokenizer *tok) {
    uint64_t h = FNV_OFFSET;
    int32_t n = spin_tokenizer_vocab_size(tok);
    h = fnv_i64(h, n);
    for (int32_t i = 0; i < n; i++) {
        const char *t = spin_tokenizer_id_to_token(tok, i);
        h = fnv_i64(h, t ? (int64_t)strlen(t) : -1);
        if (t)
            h = fnv(h, t, strlen(t));
        h = fnv_i64(h, spin_tokenizer_is_special(tok, i));
    }
    h = fnv_i64(h, spin_tokenizer_bos_id(tok));
    return fnv_i64(h, spin_tokenizer_eos_id(tok));
}

spin_status spin_score_examples(spin_llama *opp, const spin_pref_tokens *ex, int64_t n, int64_t batch_size,
                                const spin_collate_opts *o, bool average, float *chosen, float *rejected,
                                void (*progress)(void *ctx, int64_t done, int64_t total), void *ctx) {
    if (batch_size <= 0)
        return spin_fail(SPIN_ERR_INVALID, "scoring: batch size must be positive (got %lld)",
                         (long long)batch_size);
    const spin_pref_tokens **rows = malloc((size_t)batch_size * sizeof *rows);
    if (!rows)
        return spin_fail(SPIN_ERR_OOM, "scoring: out of host memory");
    spin_status s = SPIN_OK;
    for (int64_t i0 = 0; i0 < n && s == SPIN_OK; i0 += batch_size) {
        int64_t b = n - i0 < batch_size ? n - i0 : batch_size;
        for (int64_t j = 0; j < b; j++)
            rows[j] = &ex[i0 + j];
        spin_collated c;
        s = spin_collate_batch(rows, b, o, &c);
        if (s != SPIN_OK)
            break;
        s = spin_pref_ref_logps(opp, &c, average, chosen + i0, rejected + i0);
        spin_collated_free(&c);
        if (s == SPIN_OK && progress)
            progress(ctx, i0 + b, n);
    }
    free(rows);
    return s;
}

/* A growing text buffer. */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} text;

static void text_printf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_printf(text *t, const char *fmt, ...) {
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            t->oom = true;
            return;
        }
        if (t->p && t->n + (size_t)k < t->cap) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->n + (size_t)k + 1)
            cap *= 2;
        char *np = realloc(t->p, cap);
        if (!np) {
            t->oom = true;
            return;
        }
        t->p = np;
        t->cap = cap;
    }
}

static const char *truncation_name(bool keep_start) {
    return keep_start ? "keep_start" : "keep_end";
}

spin_status spin_scores_write(const char *path, const spin_score_fingerprint *fp, const spin_pref_tokens *ex,
                              int64_t n, const float *chosen, const float *rejected, bool overwrite) {
    text t = {0};
    text_printf(&t,
                "{\"spin_opponent_scores\": 1, \"rows\": %lld, \"fingerprint\": {\"weights\": \"%016" PRIx64
                "\", \"tokenizer\": \"%016" PRIx64 "\", \"template\": \"%s\", \"max_length\": %lld, "
                "\"max_prompt_length\": %lld, \"truncation\": \"%s\", \"logprob\": \"%s\"}}\n",
                (long long)n, fp->weights, fp->tokenizer, fp->template_name, (long long)fp->max_length,
                (long long)fp->max_prompt_length, truncation_name(fp->keep_start),
                fp->average ? "mean" : "sum");
    for (int64_t i = 0; i < n; i++)
        text_printf(&t, "{\"i\": %lld, \"rows\": \"%016" PRIx64 "\", \"chosen\": %.9g, \"rejected\": %.9g}\n",
                    (long long)i, spin_pref_tokens_hash(&ex[i]), (double)chosen[i], (double)rejected[i]);
    if (t.oom) {
        free(t.p);
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    }
    spin_status s = spin_write_file_atomic(path, t.p, t.n, overwrite);
    free(t.p);
    return s;
}

static json_object *get(json_object *o, const char *key) {
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static spin_status check_str(const char *path, json_object *fp, const char *key, const char *want,
                             const char *what) {
    json_object *v = get(fp, key);
    const char *have = v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
    if (!have)
        return spin_fail(SPIN_ERR_INVALID, "%s:1: fingerprint has no string \"%s\"", path, key);
    if (strcmp(have, want) != 0)
        return spin_fail(
            SPIN_ERR_INVALID,
            "%s:1: stale opponent scores: they were computed with %s %s \"%s\", this run has \"%s\"; "
            "rerun the scoring pass",
            path, what, key, have, want);
    return SPIN_OK;
}

static spin_status check_int(const char *path, json_object *fp, const char *key, int64_t want) {
    json_object *v = get(fp, key);
    if (!v || !json_object_is_type(v, json_type_int))
        return spin_fail(SPIN_ERR_INVALID, "%s:1: fingerprint has no integer \"%s\"", path, key);
    int64_t have = json_object_get_int64(v);
    if (have != want)
        return spin_fail(
            SPIN_ERR_INVALID,
            "%s:1: stale opponent scores: they were computed with %s %lld, this run has %lld; rerun "
            "the scoring pass",
            path, key, (long long)have, (long long)want);
    return SPIN_OK;
}

static spin_status check_header(const char *path, json_object *h, const spin_score_fingerprint *e,
                                int64_t n) {
    json_object *ver = get(h, "spin_opponent_scores"), *rows = get(h, "rows"), *fp = get(h, "fingerprint");
    if (!ver || json_object_get_int(ver) != 1 || !fp || !json_object_is_type(fp, json_type_object))
        return spin_fail(SPIN_ERR_INVALID, "%s:1: not an opponent scores file (version 1 header expected)",
                         path);
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, e->weights);
    SPIN_TRY(check_str(path, fp, "weights", hex, "opponent"));
    snprintf(hex, sizeof hex, "%016" PRIx64, e->tokenizer);
    SPIN_TRY(check_str(path, fp, "tokenizer", hex, "a different"));
    SPIN_TRY(check_str(path, fp, "template", e->template_name, "chat"));
    SPIN_TRY(check_int(path, fp, "max_length", e->max_length));
    SPIN_TRY(check_int(path, fp, "max_prompt_length", e->max_prompt_length));
    SPIN_TRY(check_str(path, fp, "truncation", truncation_name(e->keep_start), "mode"));
    SPIN_TRY(check_str(path, fp, "logprob", e->average ? "mean" : "sum", "reduction"));
    if (!rows || json_object_get_int64(rows) != n)
        return spin_fail(SPIN_ERR_INVALID, "%s:1: the file scores %lld examples, the dataset has %lld", path,
                         rows ? (long long)json_object_get_int64(rows) : -1LL, (long long)n);
    return SPIN_OK;
}

static spin_status read_row(const char *path, int64_t line, json_object *r, const spin_pref_tokens *ex,
                            int64_t i, float *chosen, float *rejected) {
    json_object *idx = get(r, "i"), *hash = get(r, "rows"), *c = get(r, "chosen"), *j = get(r, "rejected");
    if (!idx || !hash || !c || !j || !json_object_is_type(hash, json_type_string) ||
        !(json_object_is_type(c, json_type_double) || json_object_is_type(c, json_type_int)) ||
        !(json_object_is_type(j, json_type_double) || json_object_is_type(j, json_type_int)))
        return spin_fail(SPIN_ERR_INVALID, "%s:%lld: expected {\"i\", \"rows\", \"chosen\", \"rejected\"}",
                         path, (long long)line);
    if (json_object_get_int64(idx) != i)
        return spin_fail(SPIN_ERR_INVALID, "%s:%lld: example %lld expected, found \"i\": %lld", path,
                         (long long)line, (long long)i, (long long)json_object_get_int64(idx));
    char hex[17];
    snprintf(hex, sizeof hex, "%016" PRIx64, spin_pref_tokens_hash(&ex[i]));
    if (strcmp(json_object_get_string(hash), hex) != 0)
        return spin_fail(
            SPIN_ERR_INVALID,
            "%s:%lld: stale opponent scores: example %lld's token rows differ from the ones scored "
            "(changed data, tokenizer, template or truncation); rerun the scoring pass",
            path, (long long)line, (long long)i);
    chosen[i] = (float)json_object_get_double(c);
    rejected[i] = (float)json_object_get_double(j);
    return SPIN_OK;
}

spin_status spin_scores_read(const char *path, const spin_score_fingerprint *expect,
                             const spin_pref_tokens *ex, int64_t n, float *chosen, float *rejected) {
    FILE *f = fopen(path, "r");
    if (!f)
        return spin_fail(SPIN_ERR_IO, "%s: cannot open opponent scores", path);
    char *line = NULL;
    size_t cap = 0;
    int64_t lineno = 0, i = 0;
    spin_status s = SPIN_OK;
    while (s == SPIN_OK && getline(&line, &cap, f) >= 0) {
        lineno++;
        json_object *o = json_tokener_parse(line);
        if (!o || !json_object_is_type(o, json_type_object)) {
            s = spin_fail(SPIN_ERR_INVALID, "%s:%lld: not a JSON object", path, (long long)lineno);
        } else if (lineno == 1) {
            s = check_header(path, o, expect, n);
        } else if (i >= n) {
            s = spin_fail(SPIN_ERR_INVALID, "%s:%lld: more rows than the %lld examples", path,
                          (long long)lineno, (long long)n);
        } else {
            s = read_row(path, lineno, o, ex, i, chosen, rejected);
            i++;
        }
        json_object_put(o);
    }
    free(line);
    fclose(f);
    if (s == SPIN_OK && lineno == 0)
        s = spin_fail(SPIN_ERR_INVALID, "%s: empty opponent scores file", path);
    if (s == SPIN_OK && i != n)
        s = spin_fail(SPIN_ERR_INVALID, "%s: %lld scored examples, expected %lld (truncated file?)", path,
                      (long long)i, (long long)n);
    return s;
}
