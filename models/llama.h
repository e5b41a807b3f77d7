/* The Llama-family decoder (LlamaForCausalLM, MistralForCausalLM) with the math of Hugging Face
 * transformers: token embedding; per layer x += o(attn(rope(q(n1(x))), rope(k(n1(x))), v(n1(x))))
 * and x += down(silu(gate(n2(x))) * up(n2(x))) with RMSNorm n1, n2 (f32, weighted), HF rotate-half
 * RoPE (default or llama3-scaled frequencies), causal grouped-query attention (Mistral: sliding
 * window); a final RMSNorm; the lm head (or the tied embedding). Weights use HF names and the HF
 * Linear layout [out, in] (y = x W^T).
 *
 * One block function serves training (autograd, optional per-layer recompute) and inference with
 * a KV cache, so the two cannot drift apart. */
#ifndef SPIN_MODELS_LLAMA_H
#define SPIN_MODELS_LLAMA_H

#include "models/gguf.h"
#include "models/llama_config.h"
#include "ops/ops.h"

typedef struct {
    spin_tensor *input_norm, *q, *k, *v, *o, *post_norm, *gate, *up, *down;
} spin_llama_layer;

typedef struct {
    spin_llama_config cfg;
    spin_device *dev;
    spin_tensor *embed, *norm;
    spin_tensor *lm_head; /* == embed when tie_word_embeddings (not a separate reference) */
    spin_llama_layer *layers;
    /* every parameter (requires grad) with its HF name, in HF order; a tied head is not repeated */
    int n_params;
    spin_tensor **params;
    char **names;
    spin_tensor *inv_freq; /* [head_dim / 2] f32 constant */
    bool recompute;        /* recompute each layer in backward instead of keeping its activations */
    int64_t loss_chunk;    /* tokens per chunk in the fused head + loss (default 256) */
    char *source;          /* the path it was loaded from (directory, .safetensors, index or .gguf file;
                              owned; NULL when built in code): saving copies the tokenizer files from
                              there, and spin_llama_save_gguf its tokenizer.ggml.* vocabulary (from the
                              GGUF, or converted from tokenizer.json) */
} spin_llama;

/* Loads a model: `path` is a .gguf file (see spin_llama_load_gguf), a directory (config.json,
 * generation_config.json when present, and model.safetensors or model.safetensors.index.json), or a
 * .safetensors / index file whose directory holds config.json. F32/F16/BF16 weights become f32 parameters
 * (requires grad) on dev. Every expected tensor must be present with its shape; an unexpected tensor is an
 * error (except the rotary_emb.inv_freq buffers of old checkpoints, and lm_head.weight of a tied model). */
spin_status spin_llama_load(const char *path, spin_device *dev, spin_llama **out);
/* A llama model from a GGUF file (llama.cpp; general.architecture must be "llama"): the llama.*
 * keys become the configuration (tied embeddings when output.weight is absent; bos/eos/pad from
 * tokenizer.ggml.*), every tensor is dequantized to an f32 parameter under its HF name, with the
 * attn_q/attn_k rows un-permuted to the HF order. A tensor the configuration does not explain,
 * rope scaling or partial rotary are errors naming the file and key or tensor. The tokenizer of the
 * same file: spin_tokenizer_load(path); its chat template: spin_gguf_vocab_read + chat_template.h. */
spin_status spin_llama_load_gguf(const char *path, spin_device *dev, spin_llama **out);
/* The configuration a GGUF file describes (as spin_llama_load_gguf reads it). */
spin_status spin_llama_config_from_gguf(const spin_gguf *g, spin_llama_config *cfg);
/* Writes the model as one GGUF v3 file that llama.cpp loads (general.architecture "llama"):
 * llama.* keys, tokenizer.ggml.* copied from the source file when the model came from a GGUF, or
 * converted from the tokenizer.json beside its source (spin_tokenizer_to_gguf, padded to vocab_size;
 * a tokenizer llama.cpp cannot name is an error), otherwise only the bos/eos/pad ids (llama.cpp
 * needs a vocabulary to run it), tensors under their
 * GGUF names with attn_q/attn_k rows permuted as convert_hf_to_gguf.py does; matrices stored as
 * type (SPIN_GGML_F32 or SPIN_GGML_F16), norms always F32. llama3 rope scaling is refused; a
 * Mistral sliding window is not representable (llama.cpp ignores it) and is logged. Atomic; an
 * existing file is an error unless overwrite. */
spin_status spin_llama_save_gguf(const spin_llama *m, const char *path, spin_ggml_type type, bool overwrite);
/* Builds a model for cfg (copied) from any source of weights (safetensors, GGUF, ...): fn is
 * called once per parameter, in HF order, with its HF name and shape [out, in], and returns a new
 * f32 tensor of exactly that shape on dev (the model takes the reference), or NULL after
 * spin_fail. The model marks them requires-grad. */
typedef spin_tensor *(*spin_llama_tensor_fn)(void *ctx, const char *hf_name, int ndim, const int64_t *shape);
spin_status spin_llama_build(const spin_llama_config *cfg, spin_device *dev, spin_llama_tensor_fn fn,
                             void *ctx, spin_llama **out);
/* A model with random weights (normal, std 0.02; norms 1), seeded. cfg is copied. */
spin_status spin_llama_init(const spin_llama_config *cfg, spin_device *dev, uint64_t seed, spin_llama **out);
void spin_llama_free(spin_llama *m);
/* Mixed precision (docs/training.md): stores every parameter as dt (SPIN_F32 or SPIN_BF16), rounded
 * to nearest even; activations then take that dtype (every kernel still computes in f32), the
 * final hidden states too, while log-probs, losses and spin_llama_logits are f32. Gradients are
 * dropped; a KV cache made afterwards has dt. On failure the model is unchanged. */
spin_status spin_llama_set_dtype(spin_llama *m, spin_dtype dt);
/* The parameters' dtype. */
spin_dtype spin_llama_dtype(const spin_llama *m);
/* The parameter with HF name `name` (borrowed), or NULL. */
spin_tensor *spin_llama_param(const spin_llama *m, const char *name);
/* The output projection [vocab, hidden] (borrowed): lm_head.weight, or the embedding when tied. */
spin_tensor *spin_llama_head(const spin_llama *m);

/* Writes dir/model.safetensors (f32), dir/config.json, dir/generation_config.json, creating dir
 * if needed, and copies tokenizer.json, tokenizer_config.json and special_tokens_map.json byte for
 * byte from the source directory (m->source) where it has them. Nothing is written when one of
 * them exists, unless overwrite. */
spin_status spin_llama_save(const spin_llama *m, const char *dir, bool overwrite);
/* Same, storing the weights as dtype (SPIN_F32, SPIN_BF16 or SPIN_F16). */
spin_status spin_llama_save_as(const spin_llama *m, const char *dir, spin_dtype dtype, bool overwrite);

/* KV cache for `batch` rows of up to max_len slots: per layer k and v [batch, kv_heads, max_len,
 * head_dim] and a key mask [batch, max_len] of valid slots. Each row has its own length: a forward
 * with the cache writes row b's T new tokens into its slots row_len[b] .. row_len[b]+T-1 (then
 * row_len[b] += T); len is the longest row. Rows can be emptied and refilled independently. */
typedef struct {
    int64_t batch, max_len, len;
    int64_t *row_len; /* [batch] */
    int n_layers;
    spin_tensor **k, **v;
    spin_tensor *kmask;
} spin_llama_cache;

spin_llama_cache *spin_llama_cache_new(const spin_llama *m, int64_t batch, int64_t max_len);
void spin_llama_cache_free(spin_llama_cache *c);
/* Empties the cache (every row length 0, every slot invalid). */
spin_status spin_llama_cache_reset(spin_llama_cache *c);
/* Empties one row (e.g. a finished sequence whose slot gets the next prompt). */
spin_status spin_llama_cache_reset_row(spin_llama_cache *c, int64_t row);
/* Replaces row drow of dst with row srow of src (e.g. a prompt prefilled alone in a batch-1
 * cache): its k, v, valid slots and length. Same model, any batch sizes. */
spin_status spin_llama_cache_copy_row(spin_llama_cache *dst, int64_t drow, const spin_llama_cache *src,
                                      int64_t srow);

/* Final hidden states [B*T, hidden] (after the final norm) for ids i32 [B, T].
 * pos: i32 [B, T] RoPE positions, or NULL for 0..T-1 (with a cache: each row's slots
 * row_len[b] .. row_len[b]+T-1).
 * key_mask: f32 [B, T], 0 for padding tokens no query may attend to, or NULL (all valid).
 * cache: NULL for a training/scoring forward (recorded for autograd when parameters require grad);
 * otherwise an inference step that appends to the cache (run without recording) and attends to
 * every valid slot up to its own, with the query at its slot position. */
spin_tensor *spin_llama_forward(spin_llama *m, spin_tensor *ids, spin_tensor *pos, spin_tensor *key_mask,
                                spin_llama_cache *cache);
/* hidden [N, hidden] -> logits [N, vocab] f32 (materialised: for inference and tests; a bf16
 * model's logits are rounded to bf16 and then widened, as transformers' logits.float()). */
spin_tensor *spin_llama_logits(spin_llama *m, spin_tensor *hidden);
/* Mean cross-entropy over non-ignored targets i32 [N] through the lm head, chunked: the [N, vocab]
 * logits never exist whole. Shape []. */
spin_tensor *spin_llama_loss(spin_llama *m, spin_tensor *hidden, spin_tensor *targets, int32_t ignore_index);
/* Per-token log-probs [N] of targets (0 where ignored); see spin_linear_logprob for the extras. */
spin_tensor *spin_llama_logprob(spin_llama *m, spin_tensor *hidden, spin_tensor *targets,
                                int32_t ignore_index, spin_tensor **logit_sum, spin_tensor **lse);
/* transformers' causal-LM label shift on the host: targets[b, t] = labels[b, t + 1], and
 * ignore_index at t = T - 1, so position t predicts token t + 1. */
void spin_llama_shift_labels(const int32_t *labels, int64_t batch, int64_t t, int32_t ignore_index,
                             int32_t *targets);

#endif
