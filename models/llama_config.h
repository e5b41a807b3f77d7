/* Llama-family configuration as Hugging Face writes it: config.json (LlamaForCausalLM,
 * MistralForCausalLM) and generation_config.json. Fields that would change the math and are not
 * implemented (another architecture, activation, rope scaling type, biases) are errors naming the
 * file and the key, never silently ignored. */
#ifndef SPIN_MODELS_LLAMA_CONFIG_H
#define SPIN_MODELS_LLAMA_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

#define SPIN_LLAMA_MAX_EOS 8

typedef enum { SPIN_ROPE_SCALING_NONE = 0, SPIN_ROPE_SCALING_LLAMA3 = 1 } spin_rope_scaling;

typedef struct {
    bool present; /* generation_config.json was found */
    bool do_sample;
    double temperature, top_p;          /* defaults 1.0, 1.0 */
    int64_t top_k;                      /* default 50 (transformers' default) */
    int64_t max_new_tokens;             /* -1: not set */
    int32_t bos_token_id, pad_token_id; /* -1: not set */
    int32_t eos_token_ids[SPIN_LLAMA_MAX_EOS];
    int n_eos;
} spin_generation_config;

typedef struct {
    char architecture[64]; /* "LlamaForCausalLM" or "MistralForCausalLM" */
    bool mistral;
    int64_t hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
        head_dim, vocab_size, max_position_embeddings;
    double rms_norm_eps, rope_theta;
    spin_rope_scaling rope_scaling;
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_original_max_position_embeddings;
    int64_t sliding_window; /* 0: none */
    bool tie_word_embeddings;
    int32_t bos_token_id, pad_token_id; /* -1: not set */
    int32_t eos_token_ids[SPIN_LLAMA_MAX_EOS];
    int n_eos;
    char torch_dtype[16]; /* as read ("float32", "bfloat16", ...; "" if absent) */
    spin_generation_config gen;
    char *raw_json;     /* the config.json text as read (owned; NULL when built in code): written back
                           with the known fields updated, so unknown keys survive a save */
    char *gen_raw_json; /* the same for generation_config.json (NULL when absent) */
} spin_llama_config;

/* Reads config.json from `path` (a model directory or the config.json file) and, from the same
 * directory, generation_config.json when present. */
spin_status spin_llama_config_load(const char *path, spin_llama_config *cfg);
/* Parses config.json text; `where` names the file in messages. */
spin_status spin_llama_config_parse(const char *json, const char *where, spin_llama_config *cfg);
spin_status spin_generation_config_parse(const char *json, const char *where, spin_generation_config *gen);
/* Checks the derived invariants (heads divide, even head_dim, ...). */
spin_status spin_llama_config_validate(const spin_llama_config *cfg, const char *where);
void spin_llama_config_free(spin_llama_config *cfg);
/* Deep copy (raw_json duplicated). */
spin_status spin_llama_config_copy(spin_llama_config *dst, const spin_llama_config *src);

/* Writes dir/config.json (and dir/generation_config.json: from cfg->gen when present, otherwise
 * derived from the token ids) atomically; existing files are an error unless overwrite.
 * torch_dtype is written as `torch_dtype` when non-NULL. */
spin_status spin_llama_config_save(const spin_llama_config *cfg, const char *dir, const char *torch_dtype,
                                   bool overwrite);

/* The RoPE inverse frequencies [head_dim / 2] exactly as transformers computes them in float32
 * (default, or llama3 scaling per _compute_llama3_parameters). */
void spin_llama_inv_freq(const spin_llama_config *cfg, float *out);

#endif
