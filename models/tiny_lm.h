/* A tiny causal language model built from the ops: token embedding, L blocks of (RMSNorm, RoPE,
 * grouped-query causal attention, RMSNorm, SwiGLU MLP) with residuals, a final RMSNorm and an
 * output head tied to the embedding. It exercises the tensor library end to end (tests and the
 * demo); the Llama/Mistral family model of the model issue supersedes it for real checkpoints. */
#ifndef SPIN_MODELS_TINY_LM_H
#define SPIN_MODELS_TINY_LM_H

#include "ops/ops.h"

typedef struct {
    int vocab, dim, n_layers, n_heads, n_kv_heads, head_dim, ffn;
    float rope_theta, norm_eps;
    bool recompute; /* recompute each block in backward instead of storing its activations */
} spin_tiny_lm_config;

#define SPIN_TINY_LM_MAX_LAYERS 8
#define SPIN_TINY_LM_PER_LAYER 8

typedef struct {
    spin_tiny_lm_config cfg;
    spin_tensor *emb, *final_norm, *inv_freq;
    /* per layer: attn_norm, wq, wk, wv, wo, mlp_norm, w_gate_up, w_down */
    spin_tensor *layer[SPIN_TINY_LM_MAX_LAYERS][SPIN_TINY_LM_PER_LAYER];
    spin_tensor *params[2 + SPIN_TINY_LM_MAX_LAYERS * SPIN_TINY_LM_PER_LAYER];
    int n_params;
} spin_tiny_lm;

/* Seeded initialisation (normal, std 0.02 scaled like GPT-2 for the residual projections). */
spin_status spin_tiny_lm_init(spin_tiny_lm *m, spin_device *dev, const spin_tiny_lm_config *cfg,
                              uint64_t seed);
void spin_tiny_lm_free(spin_tiny_lm *m);

/* Final hidden states [B*T, dim] for ids i32 [B, T] (positions 0..T-1). */
spin_tensor *spin_tiny_lm_hidden(spin_tiny_lm *m, spin_tensor *ids);
/* Mean next-token cross-entropy; targets i32 [B*T] with -100 for ignored positions. */
spin_tensor *spin_tiny_lm_loss(spin_tiny_lm *m, spin_tensor *ids, spin_tensor *targets);
/* Greedy continuation of prompt[0..n) to `total` tokens (no KV cache: each step reruns the
 * sequence; fine for the small demo). */
spin_status spin_tiny_lm_greedy(spin_tiny_lm *m, int32_t *tokens, int n, int total);

#endif
