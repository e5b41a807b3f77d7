/* Writes a llama model as GGUF (f32 / f16) for llama.cpp and ollama: llama.* keys, the
 * tokenizer.ggml.* vocabulary of the source GGUF or converted from the source directory's
 * tokenizer.json (models/tokenizer_gguf_write.c), GGUF tensor names and convert_hf_to_gguf.py's
 * Q/K row permutation. See models/llama.h and docs/models.md. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/log.h"
#include "models/gguf.h"
#include "models/llama.h"
#include "models/tokenizer.h"

/* Copies tokenizer.* (and general.name) from the GGUF the model was loaded from, if any. */
static spin_status copy_vocab(const spin_llama *m, spin_gguf_writer *w, bool *copied) {
    *copied = false;
    size_t n = m->source ? strlen(m->source) : 0;
    if (n <= 5 || strcasecmp(m->source + n - 5, ".gguf"))
        return SPIN_OK;
    spin_gguf *g = spin_gguf_open(m->source);
    if (!g)
        return SPIN_ERR_INVALID;
    spin_status s = SPIN_OK;
    for (int64_t i = 0; s == SPIN_OK && i < spin_gguf_n_kv(g); i++) {
        const char *key = spin_gguf_kv_key(g, i);
        if (!strncmp(key, "tokenizer.", 10) || !strcmp(key, "general.name")) {
            s = spin_gguf_writer_set_value(w, key, spin_gguf_kv_value(g, i));
            *copied |= !strncmp(key, "tokenizer.ggml.tokens", 21);
        }
    }
    spin_gguf_close(g);
    return s;
}

/* tokenizer.json beside the model's source (its directory, or the directory of its file). */
static bool source_tokenizer(const spin_llama *m, char *out, size_t cap) {
    if (!m->source)
        return false;
    struct stat st;
    if (stat(m->source, &st) != 0)
        return false;
    int n;
    if (S_ISDIR(st.st_mode))
        n = snprintf(out, cap, "%s/tokenizer.json", m->source);
    else {
        const char *slash = strrchr(m->source, '/');
        n = slash ? snprintf(out, cap, "%.*s/tokenizer.json", (int)(slash - m->source), m->source)
                  : snprintf(out, cap, "tokenizer.json");
    }
    return n > 0 && (size_t)n < cap && stat(out, &st) == 0 && S_ISREG(st.st_mode);
}

static spin_status set_keys(const spin_llama *m, spin_gguf_writer *w, spin_ggml_type type) {
    const spin_llama_config *c = &m->cfg;
    SPIN_TRY(spin_gguf_writer_set_string(w, "general.architecture", "llama"));
    /* replaced by the source file's name when there is one (transformers requires the key) */
    SPIN_TRY(spin_gguf_writer_set_string(w, "general.name", "llama"));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "general.file_type", type == SPIN_GGML_F16 ? 1 : 0));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->max_position_embeddings));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->hidden_size));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->num_hidden_layers));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->intermediate_size));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->num_attention_heads));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->num_key_value_heads));
    SPIN_TRY(spin_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", (float)c->rms_norm_eps));
    SPIN_TRY(spin_gguf_writer_set_f32(w, "llama.rope.freq_base", (float)c->rope_theta));
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim));
    if (c->head_dim * c->num_attention_heads != c->hidden_size) {
        SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim));
        SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim));
    }
    SPIN_TRY(spin_gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size));
    bool copied;
    SPIN_TRY(copy_vocab(m, w, &copied));
    if (!copied) {
        /* the configuration's special ids; a tokenizer.json's (tokenizer_config.json) replace them */
        if (c->bos_token_id >= 0)
            SPIN_TRY(spin_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos_token_id));
        if (c->n_eos > 0)
            SPIN_TRY(
                spin_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)c->eos_token_ids[0]));
        if (c->pad_token_id >= 0)
            SPIN_TRY(
                spin_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)c->pad_token_id));
        char tj[4096];
        if (source_tokenizer(m, tj, sizeof tj))
            SPIN_TRY(spin_tokenizer_to_gguf(tj, c->vocab_size, w));
        else
            spin_log_msg(
                SPIN_LOG_WARN,
                "llama: GGUF written without a tokenizer.ggml vocabulary (the model came neither from "
                "a GGUF file nor from a directory with tokenizer.json): llama.cpp cannot run it as is");
    }
    if (c->n_eos > 1)
        spin_log_msg(SPIN_LOG_WARN, "llama: GGUF keeps only the first of %d eos token ids (%d)", c->n_eos,
                     c->eos_token_ids[0]);
    return SPIN_OK;
}

spin_status spin_llama_save_gguf(const spin_llama *m, const char *path, spin_ggml_type type, bool overwrite) {
    const spin_llama_config *c = &m->cfg;
    if (type != SPIN_GGML_F32 && type != SPIN_GGML_F16)
        return spin_fail(SPIN_ERR_INVALID, "%s: GGUF tensors can be written as F32 or F16, not %s", path,
                         spin_ggml_type_name(type) ? spin_ggml_type_name(type) : "?");
    if (c->rope_scaling != SPIN_ROPE_SCALING_NONE)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "%s: llama3 rope_scaling is not written to GGUF (rope_freqs)",
                         path);
    if (c->sliding_window)
        spin_log_msg(SPIN_LOG_WARN,
                     "%s: sliding_window %lld is not representable in GGUF llama: llama.cpp attends to the "
                     "whole context (identical up to %lld tokens)",
                     path, (long long)c->sliding_window, (long long)c->sliding_window);
    spin_gguf_writer *w = spin_gguf_writer_new();
    if (!w)
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    float **bufs = calloc((size_t)m->n_params, sizeof *bufs);
    spin_status s = bufs ? set_keys(m, w, type) : spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    for (int i = 0; s == SPIN_OK && i < m->n_params; i++) {
        spin_tensor *t = m->params[i];
        const char *hf = m->names[i];
        char name[128];
        s = spin_gguf_name_from_hf(hf, name, sizeof name);
        if (s != SPIN_OK)
            break;
        int ndim = spin_tensor_ndim(t);
        spin_ggml_type tt = ndim == 1 ? SPIN_GGML_F32 : type; /* norms stay f32, as llama.cpp writes them */
        int64_t heads = 0;
        if (strstr(hf, ".self_attn.q_proj.weight"))
            heads = c->num_attention_heads;
        else if (strstr(hf, ".self_attn.k_proj.weight"))
            heads = c->num_key_value_heads;
        if (!heads) {
            s = spin_gguf_writer_add_device_tensor(w, name, tt, t);
            continue;
        }
        int64_t rows = spin_tensor_dim(t, 0), cols = spin_tensor_dim(t, 1);
        if (!(bufs[i] = malloc((size_t)(rows * cols) * sizeof(float)))) {
            s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory for tensor '%s'", path, name);
            break;
        }
        s = spin_tensor_read_f32(t, bufs[i], rows * cols);
        if (s == SPIN_OK)
            s = spin_gguf_permute_qk(bufs[i], rows, cols, heads);
        if (s == SPIN_OK)
            s = spin_gguf_writer_add_tensor(w, name, tt, 2, (int64_t[]){rows, cols}, bufs[i]);
    }
    if (s == SPIN_OK)
        s = spin_gguf_writer_write(w, path, overwrite);
    spin_gguf_writer_free(w);
    for (int i = 0; bufs && i < m->n_params; i++)
        free(bufs[i]);
    free(bufs);
    return s;
}
