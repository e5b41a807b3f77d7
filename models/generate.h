/* Batched generation with a KV cache (continuous batching) over a spin_llama model.
 *
 * A queue of prompts (token id arrays) runs through `batch_size` slots backed by one KV cache.
 * Prompts are prefilled in groups (left-padded inside the group, padding masked out, RoPE positions
 * counted from each prompt's first token) in a scratch cache whose rows are then moved into free
 * slots; then all slots decode one token per step. Each sequence finishes on its own (an EOS id, a
 * stop string found in its decoded text, or max_new_tokens); its slot is emptied at once and
 * refilled with the next waiting prompts, so the batch stays full on long jobs. Logits are
 * computed for the last position of each row only.
 *
 * Sampling (greedy by default; temperature, top-k, top-p as transformers applies them, in that
 * order) draws its uniform from the counter-based RNG keyed by (seed, prompt index, position), so
 * a prompt's output does not depend on its batch neighbours, the batch size or the queue order
 * (up to float rounding differences between batch shapes, which only matter at near-ties).
 * docs/generation.md describes the engine and its costs. */
#ifndef SPIN_MODELS_GENERATE_H
#define SPIN_MODELS_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "models/llama.h"
#include "models/tokenizer.h"

typedef enum {
    SPIN_FINISH_EOS = 0, /* generated one of the EOS ids (kept as the last token) */
    SPIN_FINISH_STOP,    /* a stop string appeared in the decoded text */
    SPIN_FINISH_LENGTH,  /* max_new_tokens reached */
} spin_finish_reason;

/* "eos", "stop", "length". */
const char *spin_finish_reason_name(spin_finish_reason r);

typedef struct {
    int64_t batch_size;     /* slots decoding at once (default 8) */
    int64_t max_new_tokens; /* per prompt (default 256) */
    float temperature;      /* 0: greedy (default) */
    float top_p;            /* nucleus mass, 1: off (default) */
    int64_t top_k;          /* 0: off (default) */
    uint64_t seed;          /* sampling seed (default 0) */
    /* the sampling streams of prompt i are keyed by index_offset + i (default 0): a caller that
     * answers rows k.. of a longer list passes k, so a row's samples depend only on (seed, its row)
     * whichever run, resumed run or rank answers it */
    int64_t index_offset;
    /* mask_prompt_id: prompt_mask_id gets attention 0 wherever it occurs in a prompt (default off),
     * as uclaml/SPIN's training collator masks EOS inside the text, so generating with the prompt
     * the model is trained and scored on conditions on what training sees */
    bool mask_prompt_id;
    int32_t prompt_mask_id;
    bool logprobs; /* report each token's log-prob under the unmodified softmax */
    /* EOS ids; n_eos == 0: the model's (generation_config.json, else config.json, else the
     * tokenizer's EOS token). ignore_eos: never stop on EOS (benchmarks). */
    const int32_t *eos_ids;
    int n_eos;
    bool ignore_eos;
    /* stop strings, matched in the decoded text (needs a tokenizer); the text is cut before the
     * first match and the tokens end with the one that completed it */
    const char *const *stop;
    int n_stop;
    bool skip_special; /* decode text without special tokens (default true) */
    /* optional: called with every generated token as it is chosen (streaming), before the
     * sequence's finish is decided; the tokens of one index arrive in order */
    void (*on_token)(void *ctx, int64_t index, int32_t token);
    void *on_token_ctx;
} spin_gen_opts;

/* The defaults above. */
spin_gen_opts spin_gen_opts_default(void);

/* One finished prompt. Everything is borrowed for the duration of the callback. */
typedef struct {
    int64_t index;         /* position of the prompt in the queue */
    const int32_t *prompt; /* the prompt's ids */
    int64_t prompt_len;
    const int32_t *tokens; /* generated ids (an EOS id that stopped the sequence included) */
    int64_t n_tokens;
    const float *logprobs; /* [n_tokens] when opts.logprobs, else NULL */
    const char *text;      /* decoded completion (NULL without a tokenizer); EOS and, with
                              skip_special, other special tokens left out; cut at a stop string */
    spin_finish_reason finish;
} spin_gen_result;

/* Called once per prompt, in order of completion. A non-OK return stops generation and is
 * returned by spin_generate (set spin_fail first). */
typedef spin_status (*spin_gen_callback)(void *ctx, const spin_gen_result *r);

/* Work done and time spent (seconds, wall clock; the host read of the logits synchronises). */
typedef struct {
    int64_t prompts, prefill_tokens, prefill_calls, decode_tokens, decode_steps;
    double prefill_s, decode_s;
} spin_gen_stats;

/* Generates for prompts[0..n) (prompt i has lens[i] >= 1 ids, each < vocab_size). tok may be NULL
 * (no text, no stop strings). stats may be NULL. Errors (SPIN_ERR_INVALID naming the prompt
 * index / option, or a model or callback error) stop the run; results already delivered stay
 * delivered. */
spin_status spin_generate(spin_llama *m, const spin_tokenizer *tok, const int32_t *const *prompts,
                          const int64_t *lens, int64_t n, const spin_gen_opts *opts, spin_gen_callback cb,
                          void *ctx, spin_gen_stats *stats);

/* ---- sampling on one row of logits (host memory), exposed for tests ---- */

/* Scratch buffers reused across calls (grown on demand); zero-initialise, free with
 * spin_sampler_free. */
typedef struct {
    int32_t *idx;
    float *val;
    int64_t cap;
} spin_sampler;
void spin_sampler_free(spin_sampler *s);

/* The uniform in [0, 1) for (seed, prompt index, position): Philox on counter
 * (index << 32 | position), 53 bits. */
double spin_gen_uniform(uint64_t seed, int64_t index, int64_t position);

/* Picks a token from logits[0..V): greedy (argmax, first index on ties) when temperature <= 0;
 * otherwise softmax(logits / temperature) restricted to the top_k largest (ties with the k-th
 * kept) and then to the smallest most-probable set whose mass reaches top_p, sampled by inverse
 * CDF with u in [0, 1). *logprob (if not NULL) gets log softmax(logits)[token] (unmodified).
 * -1 when out of host memory. */
int32_t spin_sample(spin_sampler *s, const float *logits, int64_t V, float temperature, int64_t top_k,
                    float top_p, double u, float *logprob);

#endif
