/* One preference forward: policy (and reference) sequence log-probs of a collated batch, the loss of
 * train/pref_loss.h, and the per-batch metrics uclaml/SPIN and TRL log. The reference log-probs come
 * from a frozen model evaluated in no-grad mode (mode a) or from stored opponent scores computed
 * once over the same token rows (mode b, train/opponent_scores.h); the two agree to float rounding. */
#ifndef SPIN_TRAIN_PREF_STEP_H
#define SPIN_TRAIN_PREF_STEP_H

#include "models/llama.h"
#include "train/collate.h"
#include "train/pref_loss.h"

/* Where the reference log-probs of a batch come from: exactly one of model (mode a) or the stored
 * arrays chosen/rejected [B] (mode b) is set; neither when the loss is reference-free or sft. */
typedef struct {
    spin_llama *model;
    const float *chosen, *rejected;
} spin_pref_ref;

/* SPPO columns for the batch's examples ([B] each), NULL for the other kinds. */
typedef struct {
    const float *chosen, *win, *lose;
} spin_pref_probs;

/* Means over the batch's B examples, named as uclaml/SPIN logs them (rewards/real, ...; TRL's
 * rewards/chosen, ... for DPO data). logits_* average every logit of the side's [B, T, V] slice. */
typedef struct {
    double loss, rewards_chosen, rewards_rejected, accuracies, margins;
    double logps_chosen, logps_rejected, logits_chosen, logits_rejected;
    int64_t tokens; /* attended tokens (attention 1) of the 2B rows: the tokens/s numerator */
    int64_t batch;
} spin_pref_metrics;

/* Computes the loss of batch c for the policy (recorded for autograd) and returns it scaled by
 * loss_scale (1/grad_accum) in *loss (a new reference in the caller's scope); fills *m with one
 * host read. Errors name what is missing (a reference for a loss that needs one, SPPO columns). */
spin_status spin_pref_forward(spin_llama *policy, const spin_pref_ref *ref, const spin_pref_probs *probs,
                              const spin_collated *c, const spin_pref_loss_opts *lo, bool average_logprob,
                              float loss_scale, spin_tensor **loss, spin_pref_metrics *m);

/* Reference log-probs of batch c under a frozen model, in no-grad mode, to the host ([B] each). */
spin_status spin_pref_ref_logps(spin_llama *ref, const spin_collated *c, bool average_logprob, float *chosen,
                                float *rejected);

#endif
