/* config.json / generation_config.json for the Llama family (json-c). See models/llama_config.h. */
#define _POSIX_C_SOURCE 200809L
#include "models/llama_config.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/safetensors.h"

/* ---- reading helpers: each fails naming the file and the key ---- */

static json_object *field(json_object *o, const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return v; /* NULL also for JSON null */
}

static spin_status get_int(json_object *o, const char *where, const char *key, bool required, int64_t dflt,
                           int64_t *out) {
    json_object *v = field(o, key);
    if (!v) {
        if (required)
            return spin_fail(SPIN_ERR_INVALID, "%s: missing required key \"%s\"", where, key);
        *out = dflt;
        return SPIN_OK;
    }
    if (!json_object_is_type(v, json_type_int))
        return spin_fail(SPIN_ERR_INVALID, "%s: key \"%s\" must be an integer (got %s)", where, key,
                         json_object_to_json_string(v));
    *out = json_object_get_int64(v);
    return SPIN_OK;
}

static spin_status get_pos_int(json_object *o, const char *where, const char *key, bool required,
                               int64_t dflt, int64_t *out) {
    SPIN_TRY(get_int(o, where, key, required, dflt, out));
    if (*out <= 0 && (required || field(o, key)))
        return spin_fail(SPIN_ERR_INVALID, "%s: key \"%s\" must be positive (got %lld)", where, key,
                         (long long)*out);
    return SPIN_OK;
}

static spin_status get_num(json_object *o, const char *where, const char *key, bool required, double dflt,
                           double *out) {
    json_object *v = field(o, key);
    if (!v) {
        if (required)
            return spin_fail(SPIN_ERR_INVALID, "%s: missing required key \"%s\"", where, key);
        *out = dflt;
        return SPIN_OK;
    }
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return spin_fail(SPIN_ERR_INVALID, "%s: key \"%s\" must be a number (got %s)", where, key,
                         json_object_to_json_string(v));
    *out = json_object_get_double(v);
    return SPIN_OK;
}

static spin_status get_bool(json_object *o, const char *where, const char *key, bool dflt, bool *out) {
    json_object *v = field(o, key);
    if (!v) {
        *out = dflt;
        return SPIN_OK;
    }
    if (!json_object_is_type(v, json_type_boolean))
        return spin_fail(SPIN_ERR_INVALID, "%s: key \"%s\" must be true or false (got %s)", where, key,
                         json_object_to_json_string(v));
    *out = json_object_get_boolean(v);
    return SPIN_OK;
}

/* A token id (null/absent: -1). */
static spin_status get_token(json_object *o, const char *where, const char *key, int32_t *out) {
    int64_t v = -1;
    SPIN_TRY(get_int(o, where, key, false, -1, &v));
    if (v < -1 || v > INT32_MAX)
        return spin_fail(SPIN_ERR_INVALID, "%s: key \"%s\": token id %lld out of range", where, key,
                         (long long)v);
    *out = (int32_t)v;
    return SPIN_OK;
}

/* eos_token_id: an int, a list of ints, or null. */
static spin_status get_eos(json_object *o, const char *where, int32_t *ids, int *n) {
    json_object *v = field(o, "eos_token_id");
    *n = 0;
    if (!v)
        return SPIN_OK;
    if (json_object_is_type(v, json_type_int)) {
        ids[(*n)++] = (int32_t)json_object_get_int64(v);
        return SPIN_OK;
    }
    if (!json_object_is_type(v, json_type_array))
        return spin_fail(SPIN_ERR_INVALID, "%s: key \"eos_token_id\" must be an integer or a list (got %s)",
                         where, json_object_to_json_string(v));
    size_t len = json_object_array_length(v);
    if (len > SPIN_LLAMA_MAX_EOS)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: key \"eos_token_id\" lists %zu ids (at most %d)", where,
                         len, SPIN_LLAMA_MAX_EOS);
    for (size_t i = 0; i < len; i++) {
        json_object *e = json_object_array_get_idx(v, i);
        if (!json_object_is_type(e, json_type_int) || json_object_get_int64(e) < 0 ||
            json_object_get_int64(e) > INT32_MAX)
            return spin_fail(SPIN_ERR_INVALID, "%s: key \"eos_token_id\"[%zu] is not a token id", where, i);
        ids[(*n)++] = (int32_t)json_object_get_int64(e);
    }
    return SPIN_OK;
}

static json_object *parse_text(const char *json, const char *where, spin_status *s) {
    json_tokener *tok = json_tokener_new();
    json_object *root = tok ? json_tokener_parse_ex(tok, json, (int)strlen(json)) : NULL;
    enum json_tokener_error e = tok ? json_tokener_get_error(tok) : json_tokener_error_depth;
    if (tok)
        json_tokener_free(tok);
    if (!root) {
        *s = spin_fail(SPIN_ERR_INVALID, "%s: not valid JSON: %s", where,
                       e == json_tokener_continue ? "truncated" : json_tokener_error_desc(e));
        return NULL;
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        *s = spin_fail(SPIN_ERR_INVALID, "%s: not a JSON object", where);
        return NULL;
    }
    *s = SPIN_OK;
    return root;
}

static void gen_defaults(spin_generation_config *g) {
    memset(g, 0, sizeof *g);
    g->temperature = 1.0;
    g->top_p = 1.0;
    g->top_k = 50;
    g->max_new_tokens = -1;
    g->bos_token_id = g->pad_token_id = -1;
}

static spin_status parse_config(json_object *r, const char *w, spin_llama_config *c) {
    json_object *ar = field(r, "architectures");
    if (!ar || !json_object_is_type(ar, json_type_array) || json_object_array_length(ar) != 1 ||
        !json_object_is_type(json_object_array_get_idx(ar, 0), json_type_string))
        return spin_fail(SPIN_ERR_INVALID, "%s: key \"architectures\" must be a list of one name", w);
    const char *arch = json_object_get_string(json_object_array_get_idx(ar, 0));
    if (strcmp(arch, "LlamaForCausalLM") && strcmp(arch, "MistralForCausalLM"))
        return spin_fail(
            SPIN_ERR_UNSUPPORTED,
            "%s: key \"architectures\": %s is not supported (LlamaForCausalLM, MistralForCausalLM)", w, arch);
    snprintf(c->architecture, sizeof c->architecture, "%s", arch);
    c->mistral = !strcmp(arch, "MistralForCausalLM");
    SPIN_TRY(get_pos_int(r, w, "hidden_size", true, 0, &c->hidden_size));
    SPIN_TRY(get_pos_int(r, w, "intermediate_size", true, 0, &c->intermediate_size));
    SPIN_TRY(get_pos_int(r, w, "num_hidden_layers", true, 0, &c->num_hidden_layers));
    SPIN_TRY(get_pos_int(r, w, "num_attention_heads", true, 0, &c->num_attention_heads));
    SPIN_TRY(
        get_pos_int(r, w, "num_key_value_heads", false, c->num_attention_heads, &c->num_key_value_heads));
    SPIN_TRY(get_pos_int(r, w, "head_dim", false, c->hidden_size / c->num_attention_heads, &c->head_dim));
    SPIN_TRY(get_pos_int(r, w, "vocab_size", true, 0, &c->vocab_size));
    SPIN_TRY(get_pos_int(r, w, "max_position_embeddings", false, c->mistral ? 131072 : 2048,
                         &c->max_position_embeddings));
    SPIN_TRY(get_num(r, w, "rms_norm_eps", false, 1e-6, &c->rms_norm_eps));
    SPIN_TRY(get_num(r, w, "rope_theta", false, 10000.0, &c->rope_theta));
    if (c->rms_norm_eps < 0 || !(c->rope_theta > 0))
        return spin_fail(SPIN_ERR_INVALID, "%s: keys \"rms_norm_eps\" / \"rope_theta\" out of range", w);
    SPIN_TRY(get_bool(r, w, "tie_word_embeddings", false, &c->tie_word_embeddings));
    SPIN_TRY(get_token(r, w, "bos_token_id", &c->bos_token_id));
    SPIN_TRY(get_token(r, w, "pad_token_id", &c->pad_token_id));
    SPIN_TRY(get_eos(r, w, c->eos_token_ids, &c->n_eos));

    /* fields whose other values would change the math */
    json_object *act = field(r, "hidden_act");
    if (act && (!json_object_is_type(act, json_type_string) || strcmp(json_object_get_string(act), "silu")))
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: key \"hidden_act\" = %s is not supported (only \"silu\")",
                         w, json_object_to_json_string(act));
    bool bias;
    SPIN_TRY(get_bool(r, w, "attention_bias", false, &bias));
    if (bias)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: key \"attention_bias\" = true is not supported", w);
    SPIN_TRY(get_bool(r, w, "mlp_bias", false, &bias));
    if (bias)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: key \"mlp_bias\" = true is not supported", w);

    c->sliding_window = 0;
    if (field(r, "sliding_window")) {
        SPIN_TRY(get_pos_int(r, w, "sliding_window", false, 0, &c->sliding_window));
        if (!c->mistral) /* LlamaForCausalLM has no sliding window: transformers ignores it */
            c->sliding_window = 0;
    }

    json_object *rs = field(r, "rope_scaling");
    c->rope_scaling = SPIN_ROPE_SCALING_NONE;
    if (rs) {
        if (!json_object_is_type(rs, json_type_object))
            return spin_fail(SPIN_ERR_INVALID, "%s: key \"rope_scaling\" must be null or an object", w);
        json_object *t = field(rs, "rope_type");
        if (!t)
            t = field(rs, "type");
        const char *type = t && json_object_is_type(t, json_type_string) ? json_object_get_string(t) : NULL;
        if (!type || strcmp(type, "llama3"))
            return spin_fail(SPIN_ERR_UNSUPPORTED,
                             "%s: key \"rope_scaling\": type %s is not supported (null or \"llama3\")", w,
                             t ? json_object_to_json_string(t) : "(missing)");
        c->rope_scaling = SPIN_ROPE_SCALING_LLAMA3;
        char where[600];
        snprintf(where, sizeof where, "%s: rope_scaling", w);
        SPIN_TRY(get_num(rs, where, "factor", true, 0, &c->rope_factor));
        SPIN_TRY(get_num(rs, where, "low_freq_factor", true, 0, &c->rope_low_freq_factor));
        SPIN_TRY(get_num(rs, where, "high_freq_factor", true, 0, &c->rope_high_freq_factor));
        SPIN_TRY(get_pos_int(rs, where, "original_max_position_embeddings", true, 0,
                             &c->rope_original_max_position_embeddings));
        if (!(c->rope_factor > 0) || !(c->rope_low_freq_factor > 0) ||
            !(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: need factor > 0 and high_freq_factor > low_freq_factor > 0", where);
    }
    json_object *td = field(r, "torch_dtype");
    if (td && json_object_is_type(td, json_type_string))
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", json_object_get_string(td));
    return spin_llama_config_validate(c, w);
}

spin_status spin_llama_config_validate(const spin_llama_config *c, const char *w) {
    if (c->num_attention_heads % c->num_key_value_heads)
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: num_key_value_heads %lld must divide num_attention_heads %lld", w,
                         (long long)c->num_key_value_heads, (long long)c->num_attention_heads);
    if (c->head_dim % 2)
        return spin_fail(SPIN_ERR_INVALID, "%s: head_dim %lld must be even for rotary embeddings", w,
                         (long long)c->head_dim);
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] >= c->vocab_size)
            return spin_fail(SPIN_ERR_INVALID, "%s: eos_token_id %d is outside the vocabulary (%lld)", w,
                             c->eos_token_ids[i], (long long)c->vocab_size);
    if (c->bos_token_id >= c->vocab_size)
        return spin_fail(SPIN_ERR_INVALID, "%s: bos_token_id %d is outside the vocabulary (%lld)", w,
                         c->bos_token_id, (long long)c->vocab_size);
    return SPIN_OK;
}

spin_status spin_llama_config_parse(const char *json, const char *where, spin_llama_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    gen_defaults(&cfg->gen);
    spin_status s;
    json_object *root = parse_text(json, where, &s);
    if (!root)
        return s;
    s = parse_config(root, where, cfg);
    json_object_put(root);
    if (s == SPIN_OK) {
        cfg->raw_json = strdup(json);
        if (!cfg->raw_json)
            s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory", where);
    }
    return s;
}

spin_status spin_generation_config_parse(const char *json, const char *w, spin_generation_config *g) {
    gen_defaults(g);
    spin_status s;
    json_object *r = parse_text(json, w, &s);
    if (!r)
        return s;
    g->present = true;
    if ((s = get_bool(r, w, "do_sample", false, &g->do_sample)) == SPIN_OK &&
        (s = get_num(r, w, "temperature", false, 1.0, &g->temperature)) == SPIN_OK &&
        (s = get_num(r, w, "top_p", false, 1.0, &g->top_p)) == SPIN_OK &&
        (s = get_int(r, w, "top_k", false, 50, &g->top_k)) == SPIN_OK &&
        (s = get_int(r, w, "max_new_tokens", false, -1, &g->max_new_tokens)) == SPIN_OK &&
        (s = get_token(r, w, "bos_token_id", &g->bos_token_id)) == SPIN_OK &&
        (s = get_token(r, w, "pad_token_id", &g->pad_token_id)) == SPIN_OK)
        s = get_eos(r, w, g->eos_token_ids, &g->n_eos);
    if (s == SPIN_OK && (g->temperature < 0 || g->top_p < 0 || g->top_p > 1 || g->top_k < 0))
        s = spin_fail(SPIN_ERR_INVALID, "%s: temperature, top_p (0..1) or top_k out of range", w);
    json_object_put(r);
    return s;
}

static char *read_text(const char *path, spin_status *s) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *s = spin_fail(SPIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            char *p = realloc(buf, cap);
            if (!p) {
                free(buf);
                fclose(f);
                *s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
                return NULL;
            }
            buf = p;
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n < 4096)
            break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        *s = spin_fail(SPIN_ERR_IO, "%s: read failed", path);
        return NULL;
    }
    buf[len] = 0;
    *s = SPIN_OK;
    return buf;
}

spin_status spin_llama_config_load(const char *path, spin_llama_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    char dir[4096], file[4200];
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
    } else {
        snprintf(dir, sizeof dir, "%s", path);
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        else
            snprintf(dir, sizeof dir, ".");
    }
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        snprintf(file, sizeof file, "%s/config.json", dir);
    else
        snprintf(file, sizeof file, "%s", path);
    spin_status s;
    char *text = read_text(file, &s);
    if (!text)
        return s;
    s = spin_llama_config_parse(text, file, cfg);
    free(text);
    if (s != SPIN_OK)
        return s;
    snprintf(file, sizeof file, "%s/generation_config.json", dir);
    if (stat(file, &sb) == 0) {
        text = read_text(file, &s);
        if (text) {
            s = spin_generation_config_parse(text, file, &cfg->gen);
            if (s == SPIN_OK)
                cfg->gen_raw_json = text;
            else
                free(text);
        }
    }
    if (s != SPIN_OK)
        spin_llama_config_free(cfg);
    return s;
}

void spin_llama_config_free(spin_llama_config *cfg) {
    free(cfg->raw_json);
    free(cfg->gen_raw_json);
    cfg->raw_json = cfg->gen_raw_json = NULL;
}

spin_status spin_llama_config_copy(spin_llama_config *dst, const spin_llama_config *src) {
    *dst = *src;
    dst->raw_json = dst->gen_raw_json = NULL;
    if ((src->raw_json && !(dst->raw_json = strdup(src->raw_json))) ||
        (src->gen_raw_json && !(dst->gen_raw_json = strdup(src->gen_raw_json))))
        return spin_fail(SPIN_ERR_OOM, "llama config: out of host memory");
    return SPIN_OK;
}

/* ---- writing ---- */

/* A double written with the fewest digits that read back exactly (1e-05, not 1.0000000000000001e-05). */
static json_object *new_double(double d) {
    char buf[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (!strpbrk(buf, ".eEn")) /* keep it a float for Python: 10000 -> 10000.0 */
        strcat(buf, ".0");
    return json_object_new_double_s(d, buf);
}

static json_object *eos_value(const int32_t *ids, int n) {
    if (n == 0)
        return NULL;
    if (n == 1)
        return json_object_new_int(ids[0]);
    json_object *a = json_object_new_array();
    for (int i = 0; i < n; i++)
        json_object_array_add(a, json_object_new_int(ids[i]));
    return a;
}

static json_object *token_value(int32_t id) {
    return id >= 0 ? json_object_new_int(id) : NULL;
}

static spin_status write_json(json_object *o, const char *path, bool overwrite) {
    const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = strlen(text);
    char *buf = malloc(n + 2);
    if (!buf)
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    memcpy(buf, text, n);
    buf[n] = '\n';
    spin_status s = spin_write_file_atomic(path, buf, n + 1, overwrite);
    free(buf);
    return s;
}

spin_status spin_llama_config_save(const spin_llama_config *c, const char *dir, const char *torch_dtype,
                                   bool overwrite) {
    char cpath[4200], gpath[4200];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    snprintf(gpath, sizeof gpath, "%s/generation_config.json", dir);
    struct stat sb;
    if (!overwrite && (stat(cpath, &sb) == 0 || stat(gpath, &sb) == 0))
        return spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten unless asked)",
                         stat(cpath, &sb) == 0 ? cpath : gpath);
    spin_status s = SPIN_OK;
    json_object *r = c->raw_json ? parse_text(c->raw_json, cpath, &s) : json_object_new_object();
    if (!r)
        return s;
    json_object *ar = json_object_new_array();
    json_object_array_add(ar, json_object_new_string(c->architecture));
    json_object_object_add(r, "architectures", ar);
    if (!field(r, "model_type"))
        json_object_object_add(r, "model_type", json_object_new_string(c->mistral ? "mistral" : "llama"));
    json_object_object_add(r, "hidden_size", json_object_new_int64(c->hidden_size));
    json_object_object_add(r, "intermediate_size", json_object_new_int64(c->intermediate_size));
    json_object_object_add(r, "num_hidden_layers", json_object_new_int64(c->num_hidden_layers));
    json_object_object_add(r, "num_attention_heads", json_object_new_int64(c->num_attention_heads));
    json_object_object_add(r, "num_key_value_heads", json_object_new_int64(c->num_key_value_heads));
    json_object_object_add(r, "head_dim", json_object_new_int64(c->head_dim));
    json_object_object_add(r, "vocab_size", json_object_new_int64(c->vocab_size));
    json_object_object_add(r, "max_position_embeddings", json_object_new_int64(c->max_position_embeddings));
    json_object_object_add(r, "rms_norm_eps", new_double(c->rms_norm_eps));
    json_object_object_add(r, "rope_theta", new_double(c->rope_theta));
    json_object_object_add(r, "hidden_act", json_object_new_string("silu"));
    if (!c->mistral) {
        json_object_object_add(r, "attention_bias", json_object_new_boolean(0));
        json_object_object_add(r, "mlp_bias", json_object_new_boolean(0));
    }
    if (c->rope_scaling == SPIN_ROPE_SCALING_LLAMA3) {
        json_object *rs = json_object_new_object();
        json_object_object_add(rs, "rope_type", json_object_new_string("llama3"));
        json_object_object_add(rs, "factor", new_double(c->rope_factor));
        json_object_object_add(rs, "low_freq_factor", new_double(c->rope_low_freq_factor));
        json_object_object_add(rs, "high_freq_factor", new_double(c->rope_high_freq_factor));
        json_object_object_add(rs, "original_max_position_embeddings",
                               json_object_new_int64(c->rope_original_max_position_embeddings));
        json_object_object_add(r, "rope_scaling", rs);
    } else {
        json_object_object_add(r, "rope_scaling", NULL);
    }
    if (c->mistral)
        json_object_object_add(r, "sliding_window",
                               c->sliding_window > 0 ? json_object_new_int64(c->sliding_window) : NULL);
    json_object_object_add(r, "tie_word_embeddings", json_object_new_boolean(c->tie_word_embeddings));
    json_object_object_add(r, "bos_token_id", token_value(c->bos_token_id));
    json_object_object_add(r, "eos_token_id", eos_value(c->eos_token_ids, c->n_eos));
    json_object_object_add(r, "pad_token_id", token_value(c->pad_token_id));
    if (torch_dtype)
        json_object_object_add(r, "torch_dtype", json_object_new_string(torch_dtype));

    const spin_generation_config *g = &c->gen;
    json_object *gj = c->gen_raw_json ? parse_text(c->gen_raw_json, gpath, &s) : json_object_new_object();
    if (!gj) {
        json_object_put(r);
        return s;
    }
    json_object_object_add(gj, "bos_token_id", token_value(g->present ? g->bos_token_id : c->bos_token_id));
    json_object_object_add(gj, "eos_token_id",
                           g->present ? eos_value(g->eos_token_ids, g->n_eos)
                                      : eos_value(c->eos_token_ids, c->n_eos));
    json_object_object_add(gj, "pad_token_id", token_value(g->present ? g->pad_token_id : c->pad_token_id));
    if (g->present) {
        json_object_object_add(gj, "do_sample", json_object_new_boolean(g->do_sample));
        json_object_object_add(gj, "temperature", new_double(g->temperature));
        json_object_object_add(gj, "top_p", new_double(g->top_p));
        json_object_object_add(gj, "top_k", json_object_new_int64(g->top_k));
        if (g->max_new_tokens >= 0)
            json_object_object_add(gj, "max_new_tokens", json_object_new_int64(g->max_new_tokens));
    }
    s = write_json(r, cpath, overwrite);
    if (s == SPIN_OK)
        s = write_json(gj, gpath, overwrite);
    json_object_put(r);
    json_object_put(gj);
    return s;
}

void spin_llama_inv_freq(const spin_llama_config *c, float *out) {
    int64_t dim = c->head_dim, half = dim / 2;
    float base = (float)c->rope_theta;
    for (int64_t i = 0; i < half; i++)
        out[i] = 1.0f / powf(base, (float)(2 * i) / (float)dim);
    if (c->rope_scaling != SPIN_ROPE_SCALING_LLAMA3)
        return;
    /* transformers' _compute_llama3_parameters, in float32 like its tensors */
    float factor = (float)c->rope_factor, lo = (float)c->rope_low_freq_factor,
          hi = (float)c->rope_high_freq_factor;
    double old = (double)c->rope_original_max_position_embeddings;
    float low_wavelen = (float)(old / c->rope_low_freq_factor),
          high_wavelen = (float)(old / c->rope_high_freq_factor);
    for (int64_t i = 0; i < half; i++) {
        float f = out[i];
        float wavelen = (float)(2 * 3.141592653589793) / f;
        float scaled = wavelen > low_wavelen ? f / factor : f;
        float smooth =
            ((float)old / wavelen - lo) / (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
        float smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
        bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
        out[i] = medium ? smoothed : scaled;
    }
    (void)hi;
}
