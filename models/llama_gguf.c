/* A Llama model from a GGUF file (llama.cpp's format): llama.* parameters -> spin_llama_config,
 * tensors dequantized to f32 under their Hugging Face names with attn_q/attn_k rows un-permuted to
 * the HF rotate-half order. See models/llama.h and docs/models.md. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "models/gguf.h"
#include "models/llama.h"

/* The shortest %g text of a float that reads back as the same float (1e-05, not 9.99999975e-06). */
static void fmt_float(char *buf, size_t cap, float v) {
    if (v == (float)(int64_t)v && v > -1e15f && v < 1e15f) { /* 100000.0, not 1e+05 */
        snprintf(buf, cap, "%.1f", (double)v);
        return;
    }
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, cap, "%.*g", prec, (double)v);
        if ((float)strtod(buf, NULL) == v)
            return;
    }
}

/* An optional integer key: *out unchanged when absent. */
static spin_status opt_i64(const spin_gguf *g, const char *key, int64_t *out) {
    if (spin_gguf_find_key(g, key) < 0)
        return SPIN_OK;
    return spin_gguf_get_i64(g, key, out);
}

spin_status spin_llama_config_from_gguf(const spin_gguf *g, spin_llama_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *path = spin_gguf_path(g), *arch;
    SPIN_TRY(spin_gguf_get_string(g, "general.architecture", &arch));
    if (strcmp(arch, "llama"))
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "%s: key general.architecture: \"%s\" is not supported (only \"llama\")", path,
                         arch);
    spin_gguf_llm_params p;
    SPIN_TRY(spin_gguf_llm_params_read(g, &p));
    if (p.rope_scaling_type[0] && strcmp(p.rope_scaling_type, "none"))
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: key llama.rope.scaling.type: \"%s\" is not supported",
                         path, p.rope_scaling_type);
    if (spin_gguf_find_tensor(g, "rope_freqs.weight"))
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "%s: tensor 'rope_freqs.weight' (llama3 rope scaling factors) is not supported",
                         path);
    spin_clear_error();
    int64_t head_dim = p.embedding_length / p.head_count, vdim = -1;
    SPIN_TRY(opt_i64(g, "llama.attention.key_length", &head_dim));
    SPIN_TRY(opt_i64(g, "llama.attention.value_length", &vdim));
    if (vdim >= 0 && vdim != head_dim)
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "%s: key llama.attention.value_length %lld differs from key_length %lld", path,
                         (long long)vdim, (long long)head_dim);
    if (p.rope_dimension_count != head_dim && spin_gguf_find_key(g, "llama.rope.dimension_count") >= 0)
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "%s: key llama.rope.dimension_count %lld != head dim %lld (partial rotary is not "
                         "supported)",
                         path, (long long)p.rope_dimension_count, (long long)head_dim);
    const spin_gguf_tensor *emb = spin_gguf_find_tensor(g, "token_embd.weight");
    if (!emb)
        return SPIN_ERR_INVALID;
    int64_t vocab = emb->n_dims == 2 ? emb->shape[0] : 0;
    if (p.vocab_size && p.vocab_size != vocab)
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor 'token_embd.weight' has %lld rows, vocabulary is %lld",
                         path, (long long)vocab, (long long)p.vocab_size);
    bool tied = !spin_gguf_find_tensor(g, "output.weight");
    spin_clear_error();
    int64_t bos = -1, eos = -1, pad = -1;
    SPIN_TRY(opt_i64(g, "tokenizer.ggml.bos_token_id", &bos));
    SPIN_TRY(opt_i64(g, "tokenizer.ggml.eos_token_id", &eos));
    SPIN_TRY(opt_i64(g, "tokenizer.ggml.padding_token_id", &pad));

    char eps[32], theta[32], tok[160] = "";
    fmt_float(eps, sizeof eps, p.rms_norm_eps);
    fmt_float(theta, sizeof theta, p.rope_freq_base);
    size_t k = 0;
    if (bos >= 0)
        k += (size_t)snprintf(tok + k, sizeof tok - k, ", \"bos_token_id\": %lld", (long long)bos);
    if (eos >= 0)
        k += (size_t)snprintf(tok + k, sizeof tok - k, ", \"eos_token_id\": %lld", (long long)eos);
    if (pad >= 0)
        snprintf(tok + k, sizeof tok - k, ", \"pad_token_id\": %lld", (long long)pad);
    char json[2048];
    snprintf(
        json, sizeof json,
        "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\", "
        "\"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_hidden_layers\": %lld, "
        "\"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"head_dim\": %lld, "
        "\"vocab_size\": %lld, \"max_position_embeddings\": %lld, \"rms_norm_eps\": %s, "
        "\"rope_theta\": %s, \"rope_scaling\": null, \"tie_word_embeddings\": %s, "
        "\"attention_bias\": false, \"mlp_bias\": false, \"torch_dtype\": \"float32\"%s}",
        (long long)p.embedding_length, (long long)p.feed_forward_length, (long long)p.block_count,
        (long long)p.head_count, (long long)p.head_count_kv, (long long)head_dim, (long long)vocab,
        (long long)p.context_length, eps, theta, tied ? "true" : "false", tok);
    char where[4200];
    snprintf(where, sizeof where, "%s (llama.* keys)", path);
    return spin_llama_config_parse(json, where, cfg);
}

typedef struct {
    const spin_gguf *g;
    spin_device *dev;
    spin_gguf_llm_params p;
} gguf_ctx;

static spin_tensor *gguf_fn(void *vctx, const char *hf_name, int ndim, const int64_t *shape) {
    gguf_ctx *c = vctx;
    char name[128];
    if (spin_gguf_name_from_hf(hf_name, name, sizeof name) != SPIN_OK)
        return NULL;
    const spin_gguf_tensor *t = spin_gguf_find_tensor(c->g, name);
    if (!t)
        return NULL;
    bool ok = t->n_dims == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has shape [%lld, %lld] (%d dims), expected [%lld, %lld]",
                  spin_gguf_path(c->g), name, (long long)t->shape[0],
                  (long long)(t->n_dims > 1 ? t->shape[1] : 0), t->n_dims, (long long)shape[0],
                  (long long)(ndim > 1 ? shape[1] : 0));
        return NULL;
    }
    return spin_gguf_load_f32_hf_order(c->g, c->dev, name, &c->p);
}

spin_status spin_llama_load_gguf(const char *path, spin_device *dev, spin_llama **out) {
    *out = NULL;
    spin_gguf *g = spin_gguf_open(path);
    if (!g)
        return SPIN_ERR_INVALID;
    spin_llama_config cfg;
    gguf_ctx c = {.g = g, .dev = dev};
    spin_status s = spin_llama_config_from_gguf(g, &cfg);
    if (s != SPIN_OK) {
        spin_gguf_close(g);
        return s;
    }
    s = spin_gguf_llm_params_read(g, &c.p);
    spin_llama *m = NULL;
    if (s == SPIN_OK)
        s = spin_llama_build(&cfg, dev, gguf_fn, &c, &m);
    spin_llama_config_free(&cfg);
    /* a tensor the configuration does not explain means a model we do not implement */
    for (int64_t i = 0; s == SPIN_OK && i < spin_gguf_n_tensors(g); i++) {
        const spin_gguf_tensor *t = spin_gguf_tensor_at(g, i);
        char hf[128];
        if (spin_gguf_name_to_hf(t->name, hf, sizeof hf) == SPIN_OK && spin_llama_param(m, hf))
            continue;
        if (m->cfg.tie_word_embeddings && !strcmp(t->name, "output.weight"))
            continue;
        s = spin_fail(SPIN_ERR_UNSUPPORTED, "%s: unexpected tensor '%s' for llama (%lld layers)", path,
                      t->name, (long long)m->cfg.num_hidden_layers);
    }
    spin_gguf_close(g);
    if (s == SPIN_OK && !(m->source = strdup(path)))
        s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    if (s != SPIN_OK) {
        spin_llama_free(m);
        return s;
    }
    spin_log_msg(SPIN_LOG_DEBUG, "%s: llama %lld layers, hidden %lld, %lld/%lld heads%s", path,
                 (long long)m->cfg.num_hidden_layers, (long long)m->cfg.hidden_size,
                 (long long)m->cfg.num_attention_heads, (long long)m->cfg.num_key_value_heads,
                 m->cfg.tie_word_embeddings ? ", tied embeddings" : "");
    *out = m;
    return SPIN_OK;
}
