/* Preference examples -> token rows, exactly as uclaml/SPIN's collator builds them: the decoder-only
 * path of DataCollatorWithPadding.tokenize_batch_element and .collate (spin/alignment/utils.py, a
 * copy of TRL-0.7.4's DPODataCollatorWithPadding) followed by SPINTrainer.concatenated_inputs
 * (spin/alignment/trainer.py); spin-reference.md §2.5.4. tests/ref/make_collate_golden.py
 * re-implements both in Python and tests/unit/test_collate.c checks the C output against it id for id.
 *
 * Per example (spin_collate_tokenize):
 *   1. prompt, chosen and rejected are tokenised separately without special tokens (no BOS ever).
 *   2. attention 0 at every position holding eos_id inside those tokenised texts (the id stays).
 *   3. eos_id is appended to chosen and to rejected, with attention 1.
 *   4. with L = n_prompt + max(n_chosen, n_rejected): if L > max_length the prompt keeps its last
 *      (keep_end, the default) or first (keep_start) max_prompt_length tokens; if it is then still
 *      too long, both responses keep their first max_length - max_prompt_length tokens (measured
 *      from max_prompt_length, not from the prompt's actual length; the appended EOS can be cut).
 * Per batch (spin_collate_batch): rows are prompt + response; labels are -100 on the prompt. */
#ifndef SPIN_TRAIN_COLLATE_H
#define SPIN_TRAIN_COLLATE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"
#include "models/tokenizer.h"
#include "train/pref_data.h"

typedef struct {
    int64_t max_length;        /* >= 2: the longest prompt + response kept */
    int64_t max_prompt_length; /* 1 .. max_length - 1 */
    bool keep_start;           /* truncation_mode keep_start; false: keep_end (the default) */
    int32_t eos_id, pad_id;    /* >= 0; zephyr: eos 2, pad 2 (its pad token is its EOS) */
} spin_collate_opts;

/* One example tokenised once, after truncation (steps 1-4 above): prompt ids, chosen/rejected
 * response ids (EOS appended, possibly cut), and their attention bits (0 at EOS positions that were
 * inside the tokenised text; 1 for the appended EOS and every other token). Arrays are malloc'd.
 * From spin_collate_tokenize every side has at least one token. */
typedef struct {
    int32_t *prompt, *chosen, *rejected;
    uint8_t *prompt_attn, *chosen_attn, *rejected_attn;
    int64_t n_prompt, n_chosen, n_rejected;
} spin_pref_tokens;

/* Tokenises ex->prompt/chosen/rejected with tok and applies the steps above. *out is overwritten
 * (not freed first) and owns its arrays on success; on failure it is all zero.
 * Errors (SPIN_ERR_INVALID unless noted): NULL arguments; options out of the ranges documented in
 * spin_collate_opts; a text the tokenizer rejects (its message, naming the field); a prompt that
 * tokenises to no tokens (the first response token would have no context and TRL scores only
 * labels[1:], so it would silently drop out); SPIN_ERR_OOM. */
spin_status spin_collate_tokenize(spin_tokenizer *tok, const spin_pref_example *ex,
                                  const spin_collate_opts *o, spin_pref_tokens *out);

/* Frees the arrays and zeroes *t. NULL is fine. */
void spin_pref_tokens_free(spin_pref_tokens *t);

/* A 64-bit hash of the token rows of one example, so a stored opponent score is only used with
 * exactly the rows it was computed on. FNV-1a 64 (offset basis 0xcbf29ce484222325, prime
 * 0x100000001b3) over this byte serialisation, for side = prompt, chosen, rejected in that order:
 * n_side as int64 little-endian (8 bytes), each id as int32 little-endian (4 bytes), then each
 * attention bit as one byte (0 or 1). */
uint64_t spin_pref_tokens_hash(const spin_pref_tokens *t);

/* A batch of B examples as 2B rows: rows 0..B-1 are prompt + chosen (SPIN: real), rows B..2B-1
 * prompt + rejected (generated), right-padded to T = the longest row, with exactly the ids SPIN
 * feeds the model: the collator pads the chosen rows with pad_id to the longest chosen row and the
 * rejected rows with pad_id to the longest rejected row, then concatenated_inputs pads both to T
 * with id 0 (the logits metrics average over every position, padding included). */
typedef struct {
    int64_t batch, len; /* B, T */
    int32_t *ids;       /* [2B*T] row-major */
    float *key_mask;    /* [2B*T] the attention mask as 1.0/0.0: the example's attention bits, 0 on padding */
    int32_t *labels;    /* [2B*T] the ids, -100 on the prompt and on padding */
    float *n_response;  /* [2B] number of labels != -100 (the response tokens the loss scores) */
} spin_collated;

/* Builds the batch of ex[0..b) (b >= 1; each from spin_collate_tokenize with the same options; only
 * o->pad_id is used here) into *out (overwritten; owns its arrays on success, all zero on failure).
 * Errors: SPIN_ERR_INVALID for NULL arguments, b < 1, an example with no prompt tokens, negative
 * lengths or NULL arrays behind non-zero lengths; SPIN_ERR_OOM. */
spin_status spin_collate_batch(const spin_pref_tokens *const *ex, int64_t b, const spin_collate_opts *o,
                               spin_collated *out);

/* Frees the arrays and zeroes *c. NULL is fine. */
void spin_collated_free(spin_collated *c);

#endif
