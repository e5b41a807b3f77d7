/* Mode (b) of the opponent: a scoring pass runs the frozen opponent once over exactly the token
 * rows the trainer builds and stores S_op(chosen/real) and S_op(rejected/generated) per example, so
 * training holds one model. The file carries a fingerprint of everything that determines the
 * scores; reading refuses a file that does not match the run, naming the field.
 *
 * File format (JSON lines): a header
 *   {"spin_opponent_scores": 1, "rows": N, "fingerprint": {"weights": "<hex64>", "tokenizer":
 *    "<hex64>", "template": "zephyr", "max_length": L, "max_prompt_length": P, "truncation":
 *    "keep_end", "logprob": "sum"}}
 * then one line per example, in dataset order:
 *   {"i": k, "rows": "<hex64 of the example's token rows>", "chosen": S_op(y), "rejected": S_op(y')}
 * Scores are written with 9 significant digits, which round-trips f32 exactly. */
#ifndef SPIN_TRAIN_OPPONENT_SCORES_H
#define SPIN_TRAIN_OPPONENT_SCORES_H

#include "models/llama.h"
#include "models/tokenizer.h"
#include "train/collate.h"

typedef struct {
    uint64_t weights;   /* spin_llama_weights_hash of the opponent */
    uint64_t tokenizer; /* spin_tokenizer_hash */
    char template_name[32];
    int64_t max_length, max_prompt_length;
    bool keep_start; /* truncation_mode */
    bool average;    /* averaged rather than summed log-probs */
} spin_score_fingerprint;

/* FNV-1a over the architecture (config) and every parameter's f32 values in HF order (reads the
 * weights to the host once). */
spin_status spin_llama_weights_hash(const spin_llama *m, uint64_t *out);
/* FNV-1a over every id's token string and special flag, and the bos/eos ids. */
uint64_t spin_tokenizer_hash(const spin_tokenizer *tok);

/* Runs opp (no grad) over the examples' rows in batches of batch_size, in order, writing chosen[i]
 * and rejected[i]. progress (may be NULL) is called after each batch with the examples done. */
spin_status spin_score_examples(spin_llama *opp, const spin_pref_tokens *ex, int64_t n, int64_t batch_size,
                                const spin_collate_opts *o, bool average, float *chosen, float *rejected,
                                void (*progress)(void *ctx, int64_t done, int64_t total), void *ctx);

/* Writes the file atomically (path.tmp, fsync, rename); an existing file is an error unless
 * overwrite. */
spin_status spin_scores_write(const char *path, const spin_score_fingerprint *fp, const spin_pref_tokens *ex,
                              int64_t n, const float *chosen, const float *rejected, bool overwrite);

/* Reads a scores file for exactly these examples: the header must match expect field by field and
 * every line's row hash the example's current token rows (a changed dataset, tokenizer, template
 * or truncation is refused with "<path>:<line>: ..."). */
spin_status spin_scores_read(const char *path, const spin_score_fingerprint *expect,
                             const spin_pref_tokens *ex, int64_t n, float *chosen, float *rejected);

#endif
