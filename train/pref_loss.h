/* Preference losses on per-example summed log-probabilities: SPIN/DPO's sigmoid loss and the
 * relatives from TRL's DPOTrainer and uclaml/SPPO (spin-reference.md §1.2, §3.1, §5.2).
 *
 * Notation: a = πc − rc and b = πr − rr (r* = 0 when reference_free), Δ = a − b, β = beta,
 * ε = label_smoothing. For SPIN data "chosen" is the real response and "rejected" the generated one.
 *
 *   sigmoid      −(1−ε)·logσ(βΔ) − ε·logσ(−βΔ)            (ε = 0: SPIN / DPO; ε > 0: cDPO)
 *   robust       [−(1−ε)·logσ(βΔ) + ε·logσ(−βΔ)] / (1−2ε)
 *   hinge        relu(1 − βΔ)
 *   ipo          (a/|c| − b/|r| − 1/(2β))²                 (TRL: logps divided by their lengths)
 *   sppo         ½·[(a − (Pw − ½)/β)² + (b − (Pl − ½)/β)²]
 *   sppo_single  ½·[(a − (P − ½)/β)² + (b + (P − ½)/β)²]
 *   sppo_hard    (a − 1/(2β))² + (b + 1/(2β))²
 *   sft          −πc/|c|, batch loss −Σπc / Σ|c| (token-mean cross-entropy of the chosen response)
 *
 * The loss is built from ops, so spin_backward differentiates it. */
#ifndef SPIN_TRAIN_PREF_LOSS_H
#define SPIN_TRAIN_PREF_LOSS_H

#include <stdbool.h>

#include "ops/ops.h"

typedef enum {
    SPIN_LOSS_SIGMOID,
    SPIN_LOSS_ROBUST,
    SPIN_LOSS_HINGE,
    SPIN_LOSS_IPO,
    SPIN_LOSS_SPPO,
    SPIN_LOSS_SPPO_SINGLE,
    SPIN_LOSS_SPPO_HARD,
    SPIN_LOSS_SFT,
    SPIN_LOSS_COUNT
} spin_loss_type;

/* Parses the TRL / uclaml-SPPO name ("sigmoid", "robust", "hinge", "ipo", "sppo", "sppo_single",
 * "sppo_hard", "sft"; exact, case-sensitive) into *out. Unknown or NULL name: SPIN_ERR_INVALID with
 * a message listing the valid names, *out unchanged. */
spin_status spin_loss_type_from_name(const char *name, spin_loss_type *out);

/* The name of t as spin_loss_type_from_name accepts it; "unknown" for a value out of range. */
const char *spin_loss_type_name(spin_loss_type t);

typedef struct {
    spin_loss_type type;
    float beta;            /* > 0 */
    float label_smoothing; /* sigmoid: [0, 1); robust: [0, 0.5); every other type: 0 */
    bool reference_free;   /* the ref_* inputs are ignored and taken as 0 everywhere, rewards included */
} spin_pref_loss_opts;

/* Per-example inputs, every one f32 [B] on one device. policy_* come out of the model graph (may
 * require grad). ref_* must not require grad; they are needed unless reference_free. len_* are
 * response token counts (> 0): len_chosen for ipo and sft, len_rejected for ipo. probs_* only for
 * the sppo kinds: sppo needs probs_win and probs_lose (SPPO's chosen_probs_win/lose), sppo_single
 * needs probs_chosen (SPPO's chosen_probs). Inputs a type does not use are ignored. */
typedef struct {
    spin_tensor *policy_chosen, *policy_rejected, *ref_chosen, *ref_rejected;
    spin_tensor *len_chosen, *len_rejected;
    spin_tensor *probs_chosen, *probs_win, *probs_lose;
} spin_pref_inputs;

typedef struct {
    spin_tensor *loss;   /* [] the value to backprop: mean of losses (sft: −Σπc / Σ|c|) */
    spin_tensor *losses; /* [B] per example */
    /* [B] β·(π − ref) per side, without graph or requires_grad. For ipo these are the
     * length-normalised log-probs, β·(π − ref)/|y|, as in TRL 0.12 (its concatenated_forward
     * divides both models' logps by the length before dpo_loss computes the rewards). */
    spin_tensor *chosen_rewards, *rejected_rewards;
} spin_pref_outputs;

/* Builds the preference loss of o->type from in into *out (four new references, owned by the
 * caller or by the enclosing collecting scope).
 * Errors (SPIN_ERR_INVALID, message naming the field, *out all NULL, nothing allocated): type out
 * of range; beta not > 0 or not finite; label_smoothing outside the type's range; policy_chosen,
 * policy_rejected, or an input the type needs, missing, not f32, not 1-D, of another length B than
 * policy_chosen, on another device, or B = 0; ref_* requiring grad. An op failing while the loss
 * is built (out of memory, device error) returns SPIN_ERR_OOM with the op's message. */
spin_status spin_pref_loss(const spin_pref_loss_opts *o, const spin_pref_inputs *in, spin_pref_outputs *out);

#endif
