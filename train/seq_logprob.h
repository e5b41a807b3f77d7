/* Sequence log-probabilities of a collated preference batch: the 2B rows (chosen/real first, then
 * rejected/generated) go through the model as one batch, each position t predicts token t + 1
 * (transformers' shift), prompt and padding positions carry label -100 and contribute nothing, and
 * the response tokens' log-probs are summed per row (uclaml/SPIN and TRL) or averaged. The head and
 * log-softmax run through the fused chunked op in f32, so [rows x T x vocab] logits never exist. */
#ifndef SPIN_TRAIN_SEQ_LOGPROB_H
#define SPIN_TRAIN_SEQ_LOGPROB_H

#include "models/llama.h"
#include "train/collate.h"

typedef struct {
    spin_tensor *logps;     /* [2B] response log-probs; in the graph when the model's weights require grad */
    spin_tensor *logit_sum; /* [2B] sum of every logit of the row (all T positions, all V), no graph:
                               uclaml/SPIN's logits/real and logits/generated metrics average the whole [B, T,
                               V] tensor */
} spin_seq_logprobs;

/* Runs m over c's rows (grad recorded unless in no-grad mode). average: divide each row's sum by
 * its response token count (a row with none gives 0). Both outputs are new references handed to
 * the caller's scope. Errors: the model's (shapes, OOM) and a token id outside the vocabulary. */
spin_status spin_seq_logprob(spin_llama *m, const spin_collated *c, bool average, spin_seq_logprobs *out);

#endif
