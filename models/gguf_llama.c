/* GGUF for the Llama family: {arch}.* parameters, the tokenizer.ggml.* vocabulary, tensor names
#define _POSIX_C_SOURCE 200809L
 * and the Q/K row permutation of convert_hf_to_gguf.py. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/gguf.h"

/* Optional integer key: absent leaves *out unchanged; present with a wrong type is an error. */
static spin_status opt_i64(const spin_gguf *g, const char *key, int64_t *out) {
    if (spin_gguf_find_key(g, key) < 0)
        return SPIN_OK;
    return spin_gguf_get_i64(g, key, out);
}

static spin_status opt_f32(const spin_gguf *g, const char *key, float *out) {
    if (spin_gguf_find_key(g, key) < 0)
        return SPIN_OK;
    return spin_gguf_get_f32(g, key, out);
}

static spin_status positive(const spin_gguf *g, const char *key, int64_t v) {
    if (v <= 0)
        return spin_fail(SPIN_ERR_INVALID, "%s: metadata key '%s' is %lld, expected a positive value",
                         spin_gguf_path(g), key, (long long)v);
    return SPIN_OK;
}

spin_status spin_gguf_llm_params_read(const spin_gguf *g, spin_gguf_llm_params *p) {
    memset(p, 0, sizeof *p);
    const char *arch;
    SPIN_TRY(spin_gguf_get_string(g, "general.architecture", &arch));
    if (strlen(arch) >= sizeof p->architecture || strlen(arch) == 0)
        return spin_fail(SPIN_ERR_INVALID, "%s: general.architecture '%.40s' is empty or too long",
                         spin_gguf_path(g), arch);
    strcpy(p->architecture, arch);
    char key[160];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, arch), key)
    struct {
        const char *suffix;
        int64_t *dst;
    } req[] = {
        {"context_length", &p->context_length},   {"embedding_length", &p->embedding_length},
        {"block_count", &p->block_count},         {"feed_forward_length", &p->feed_forward_length},
        {"attention.head_count", &p->head_count},
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", arch, req[i].suffix);
        SPIN_TRY(spin_gguf_get_i64(g, key, req[i].dst));
        SPIN_TRY(positive(g, key, *req[i].dst));
    }
    SPIN_TRY(spin_gguf_get_f32(g, KEY("attention.layer_norm_rms_epsilon"), &p->rms_norm_eps));
    p->head_count_kv = p->head_count;
    SPIN_TRY(opt_i64(g, KEY("attention.head_count_kv"), &p->head_count_kv));
    SPIN_TRY(positive(g, key, p->head_count_kv));
    if (p->head_count % p->head_count_kv != 0)
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: %s.attention.head_count %lld is not a multiple of head_count_kv %lld",
                         spin_gguf_path(g), arch, (long long)p->head_count, (long long)p->head_count_kv);
    p->rope_dimension_count = p->embedding_length / p->head_count;
    SPIN_TRY(opt_i64(g, KEY("rope.dimension_count"), &p->rope_dimension_count));
    p->rope_freq_base = 10000.0f;
    SPIN_TRY(opt_f32(g, KEY("rope.freq_base"), &p->rope_freq_base));
    SPIN_TRY(opt_i64(g, KEY("vocab_size"), &p->vocab_size));
    if (p->vocab_size == 0 && spin_gguf_find_key(g, "tokenizer.ggml.tokens") >= 0)
        SPIN_TRY(spin_gguf_get_arr_len(g, "tokenizer.ggml.tokens", NULL, &p->vocab_size));
    if (spin_gguf_find_key(g, KEY("rope.scaling.type")) >= 0) {
        const char *st;
        SPIN_TRY(spin_gguf_get_string(g, key, &st));
        snprintf(p->rope_scaling_type, sizeof p->rope_scaling_type, "%s", st);
    }
    SPIN_TRY(opt_f32(g, KEY("rope.scaling.factor"), &p->rope_scaling_factor));
    SPIN_TRY(opt_i64(g, KEY("rope.scaling.original_context_length"), &p->rope_scaling_orig_ctx));
#undef KEY
    return SPIN_OK;
}

/* ---- vocabulary ---- */
static spin_status opt_id(const spin_gguf *g, const char *key, int64_t *out) {
    *out = -1;
    return opt_i64(g, key, out);
}

static spin_status opt_flag(const spin_gguf *g, const char *key, int *out) {
    *out = -1;
    if (spin_gguf_find_key(g, key) < 0)
        return SPIN_OK;
    bool b = false;
    SPIN_TRY(spin_gguf_get_bool(g, key, &b));
    *out = b;
    return SPIN_OK;
}

static spin_status check_len(const spin_gguf *g, const char *key, int64_t want) {
    int64_t n = 0;
    SPIN_TRY(spin_gguf_get_arr_len(g, key, NULL, &n));
    if (n != want)
        return spin_fail(SPIN_ERR_INVALID, "%s: %s has %lld entries but tokenizer.ggml.tokens has %lld",
                         spin_gguf_path(g), key, (long long)n, (long long)want);
    return SPIN_OK;
}

static spin_status vocab_read(const spin_gguf *g, spin_gguf_vocab *v) {
    SPIN_TRY(spin_gguf_get_string(g, "tokenizer.ggml.model", &v->model));
    if (spin_gguf_find_key(g, "tokenizer.ggml.pre") >= 0)
        SPIN_TRY(spin_gguf_get_string(g, "tokenizer.ggml.pre", &v->pre));
    SPIN_TRY(spin_gguf_get_arr_str(g, "tokenizer.ggml.tokens", &v->tokens, &v->n_tokens));
    if (spin_gguf_find_key(g, "tokenizer.ggml.scores") >= 0) {
        SPIN_TRY(check_len(g, "tokenizer.ggml.scores", v->n_tokens));
        v->scores = malloc((size_t)(v->n_tokens + 1) * sizeof *v->scores);
        if (!v->scores)
            return spin_fail(SPIN_ERR_OOM, "%s: out of memory for tokenizer.ggml.scores", spin_gguf_path(g));
        SPIN_TRY(spin_gguf_get_arr_f32(g, "tokenizer.ggml.scores", v->scores, v->n_tokens));
    }
    if (spin_gguf_find_key(g, "tokenizer.ggml.token_type") >= 0) {
        SPIN_TRY(check_len(g, "tokenizer.ggml.token_type", v->n_tokens));
        v->token_type = malloc((size_t)(v->n_tokens + 1) * sizeof *v->token_type);
        if (!v->token_type)
            return spin_fail(SPIN_ERR_OOM, "%s: out of memory for tokenizer.ggml.token_type",
                             spin_gguf_path(g));
        SPIN_TRY(spin_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", v->token_type, v->n_tokens));
    }
    if (spin_gguf_find_key(g, "tokenizer.ggml.merges") >= 0)
        SPIN_TRY(spin_gguf_get_arr_str(g, "tokenizer.ggml.merges", &v->merges, &v->n_merges));
    struct {
        const char *key;
        int64_t *dst;
    } ids[] = {{"tokenizer.ggml.bos_token_id", &v->bos_id},
               {"tokenizer.ggml.eos_token_id", &v->eos_id},
               {"tokenizer.ggml.padding_token_id", &v->pad_id},
               {"tokenizer.ggml.unknown_token_id", &v->unk_id}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        SPIN_TRY(opt_id(g, ids[i].key, ids[i].dst));
        if (*ids[i].dst >= v->n_tokens || *ids[i].dst < -1)
            return spin_fail(SPIN_ERR_INVALID, "%s: %s = %lld is outside the vocabulary of %lld tokens",
                             spin_gguf_path(g), ids[i].key, (long long)*ids[i].dst, (long long)v->n_tokens);
    }
    SPIN_TRY(opt_flag(g, "tokenizer.ggml.add_bos_token", &v->add_bos));
    SPIN_TRY(opt_flag(g, "tokenizer.ggml.add_eos_token", &v->add_eos));
    if (spin_gguf_find_key(g, "tokenizer.chat_template") >= 0)
        SPIN_TRY(spin_gguf_get_string(g, "tokenizer.chat_template", &v->chat_template));
    return SPIN_OK;
}

spin_status spin_gguf_vocab_read(const spin_gguf *g, spin_gguf_vocab *v) {
    memset(v, 0, sizeof *v);
    spin_status s = vocab_read(g, v);
    if (s != SPIN_OK)
        spin_gguf_vocab_free(v);
    return s;
}

void spin_gguf_vocab_free(spin_gguf_vocab *v) {
    if (!v)
        return;
    free(v->scores);
    free(v->token_type);
    memset(v, 0, sizeof *v);
}

/* ---- tensor names ---- */
static const struct {
    const char *gguf, *hf;
} global_names[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

static const struct {
    const char *gguf, *hf;
} layer_names[] = {
    {"attn_q", "self_attn.q_proj"},
    {"attn_k", "self_attn.k_proj"},
    {"attn_v", "self_attn.v_proj"},
    {"attn_output", "self_attn.o_proj"},
    {"ffn_gate", "mlp.gate_proj"},
    {"ffn_up", "mlp.up_proj"},
    {"ffn_down", "mlp.down_proj"},
    {"attn_norm", "input_layernorm"},
    {"ffn_norm", "post_attention_layernorm"},
};

__attribute__((format(printf, 4, 5))) static spin_status put(char *out, size_t cap, const char *name,
                                                             const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return spin_fail(SPIN_ERR_INVALID, "tensor name for '%s' does not fit in %zu bytes", name, cap);
    return SPIN_OK;
}

/* Parses "<prefix><N>.<part>.<suffix>" with N a decimal layer number (no sign, no leading zeros
 * beyond "0"); returns the number of bytes of <part>, or -1. */
static int split_layer(const char *name, const char *prefix, long *layer, const char **part,
                       const char **suffix) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0)
        return -1;
    const char *p = name + pl;
    if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
        return -1;
    char *end;
    *layer = strtol(p, &end, 10);
    if (*end != '.' || *layer > 100000)
        return -1;
    *part = end + 1;
    /* <part> runs to the last '.' (suffix is "weight" or "bias") */
    const char *dot = strrchr(*part, '.');
    if (!dot || dot == *part)
        return -1;
    *suffix = dot + 1;
    if (strcmp(*suffix, "weight") != 0 && strcmp(*suffix, "bias") != 0)
        return -1;
    return (int)(dot - *part);
}

spin_status spin_gguf_name_to_hf(const char *name, char *out, size_t cap) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (strcmp(name, global_names[i].gguf) == 0)
            return put(out, cap, name, "%s", global_names[i].hf);
    long layer;
    const char *part, *suffix;
    int n = split_layer(name, "blk.", &layer, &part, &suffix);
    if (n > 0)
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
            if (strlen(layer_names[i].gguf) == (size_t)n &&
                strncmp(part, layer_names[i].gguf, (size_t)n) == 0)
                return put(out, cap, name, "model.layers.%ld.%s.%s", layer, layer_names[i].hf, suffix);
    return spin_fail(SPIN_ERR_INVALID, "GGUF tensor name '%s' has no Hugging Face Llama equivalent", name);
}

spin_status spin_gguf_name_from_hf(const char *name, char *out, size_t cap) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (strcmp(name, global_names[i].hf) == 0)
            return put(out, cap, name, "%s", global_names[i].gguf);
    long layer;
    const char *part, *suffix;
    int n = split_layer(name, "model.layers.", &layer, &part, &suffix);
    if (n > 0)
        for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
            if (strlen(layer_names[i].hf) == (size_t)n && strncmp(part, layer_names[i].hf, (size_t)n) == 0)
                return put(out, cap, name, "blk.%ld.%s.%s", layer, layer_names[i].gguf, suffix);
    return spin_fail(SPIN_ERR_INVALID, "Hugging Face tensor name '%s' has no GGUF Llama equivalent", name);
}

/* ---- Q/K permutation ----
 * HF row   h*hd + i*(hd/2) + j   (i in {0,1}, j < hd/2)
 * GGUF row h*hd + 2*j + i */
static spin_status permute(float *w, int64_t rows, int64_t cols, int64_t n_head, bool inverse) {
    if (n_head <= 0 || rows <= 0 || cols <= 0 || rows % (2 * n_head) != 0)
        return spin_fail(SPIN_ERR_INVALID,
                         "Q/K permutation: %lld rows do not split into %lld heads of an even size",
                         (long long)rows, (long long)n_head);
    int64_t hd = rows / n_head, half = hd / 2;
    size_t rb = (size_t)cols * sizeof(float);
    float *tmp = malloc((size_t)hd * rb);
    if (!tmp)
        return spin_fail(SPIN_ERR_OOM, "Q/K permutation: out of memory");
    for (int64_t h = 0; h < n_head; h++) {
        float *head = w + h * hd * cols;
        memcpy(tmp, head, (size_t)hd * rb);
        for (int64_t i = 0; i < 2; i++)
            for (int64_t j = 0; j < half; j++) {
                int64_t hf = i * half + j, gg = 2 * j + i;
                if (inverse)
                    memcpy(head + hf * cols, tmp + gg * cols, rb);
                else
                    memcpy(head + gg * cols, tmp + hf * cols, rb);
            }
    }
    free(tmp);
    return SPIN_OK;
}

spin_status spin_gguf_permute_qk(float *w, int64_t rows, int64_t cols, int64_t n_head) {
    return permute(w, rows, cols, n_head, false);
}

spin_status spin_gguf_unpermute_qk(float *w, int64_t rows, int64_t cols, int64_t n_head) {
    return permute(w, rows, cols, n_head, true);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

spin_tensor *spin_gguf_load_f32_hf_order(const spin_gguf *g, spin_device *dev, const char *name,
                                         const spin_gguf_llm_params *p) {
    int64_t heads = 0;
    if (strncmp(name, "blk.", 4) == 0 && ends_with(name, ".attn_q.weight"))
        heads = p->head_count;
    else if (strncmp(name, "blk.", 4) == 0 && ends_with(name, ".attn_k.weight"))
        heads = p->head_count_kv;
    if (!heads)
        return spin_gguf_load_f32(g, dev, name);
    const spin_gguf_tensor *t = spin_gguf_find_tensor(g, name);
    if (!t)
        return NULL;
    if (t->n_dims != 2) {
        spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has %d dims, expected a matrix", spin_gguf_path(g), name,
                  t->n_dims);
        return NULL;
    }
    float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *buf);
    if (!buf) {
        spin_fail(SPIN_ERR_OOM, "%s: out of host memory for tensor '%s'", spin_gguf_path(g), name);
        return NULL;
    }
    spin_tensor *out = NULL;
    if (spin_gguf_tensor_to_f32(g, t, buf, t->numel) == SPIN_OK) {
        if (spin_gguf_unpermute_qk(buf, t->shape[0], t->shape[1], heads) != SPIN_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", spin_last_error());
            spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': %s", spin_gguf_path(g), name, why);
        } else if ((out = spin_from_host(dev, SPIN_F32, 2, t->shape, buf))) {
            spin_tensor_set_name(out, name);
        }
    }
    free(buf);
    return out;
}
