/* RMSProp and AdamW with torch semantics, global gradient-norm clipping and a non-finite check,
 * all as device kernels (core/kernels.h: GRAD_SUMSQ, GRAD_CLIP_STAT, RMSPROP_STEP, ADAMW_STEP).
 * A step reads one small tensor back to the host ({norm, coef, finite}), nothing else.
 *
 * Hyperparameters are doubles because torch's are Python floats: the f32 factors the kernels use
 * (1 - alpha, 1 - beta, the bias corrections) are formed in double and rounded once, as torch does,
 * so the updates match torch.optim.RMSprop / AdamW (foreach=False) to an ulp or two in f32. */
#ifndef SPIN_TRAIN_OPTIM_H
#define SPIN_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "ops/ops.h"

typedef enum { SPIN_OPTIM_RMSPROP, SPIN_OPTIM_ADAMW } spin_optim_kind;

/* Maps a Hugging Face TrainingArguments.optim name: "rmsprop" -> RMSPROP; "adamw_torch",
 * "adamw_torch_fused", "adamw_hf", "adamw" -> ADAMW (adamw_hf is transformers' own AdamW, which
 * adds eps before the bias correction and decays after the update; it is run with torch's
 * semantics here). Anything else: SPIN_ERR_INVALID naming it and listing the supported names. */
spin_status spin_optim_kind_from_name(const char *name, spin_optim_kind *out);
const char *spin_optim_kind_name(spin_optim_kind k);

typedef struct {
    spin_optim_kind kind;
    double alpha;         /* RMSProp smoothing constant */
    double eps;           /* both */
    double beta1, beta2;  /* AdamW */
    double weight_decay;  /* RMSProp: L2 added to the gradient; AdamW: decoupled, p *= 1 - lr * wd */
    double max_grad_norm; /* global L2 clip (torch clip_grad_norm_); <= 0: no clipping */
} spin_optim_config;

/* torch / HF TrainingArguments defaults: RMSProp alpha 0.99, eps 1e-8 (no momentum, not centred);
 * AdamW betas 0.9 / 0.999, eps 1e-8 (adam_epsilon); weight decay 0; max_grad_norm 1.0. */
spin_optim_config spin_optim_defaults(spin_optim_kind k);

typedef struct spin_optim spin_optim;

/* An optimizer over n parameters (contiguous; f32, or bf16 / f16 model weights: then the
 * optimizer keeps an f32 master copy initialised from them and writes every update back to the
 * model weight rounded to its dtype). The parameters are retained until spin_optim_free. State
 * (squared averages, first moments) starts at zero, as torch's lazily created state does.
 * NULL with spin_last_error on a bad config (torch's range checks: eps, alpha, weight decay >= 0,
 * betas in [0, 1)), a non-contiguous or non-float parameter (named by index), or OOM. */
spin_optim *spin_optim_new(const spin_optim_config *c, spin_tensor *const *params, int n);
void spin_optim_free(spin_optim *o);

/* Per-parameter weight decay (HF puts biases and norm weights in a group with decay 0); starts at
 * config.weight_decay. SPIN_ERR_INVALID for a bad index or a negative value. */
spin_status spin_optim_set_weight_decay(spin_optim *o, int i, double weight_decay);

typedef struct {
    float grad_norm; /* the global L2 norm before clipping (NaN / inf when not finite) */
    bool finite;
} spin_optim_result;

/* One update with learning rate lr (>= 0) from the parameters' accumulated gradients; parameters
 * without a gradient are skipped (no decay, no state change). On the device: sum of squares of
 * every gradient -> {norm, clip coef, finite} -> one step kernel per parameter, which does nothing
 * when the gradients are not all finite. Then the one host read (the stat), and every gradient is
 * cleared. When !res->finite the parameters and state are unchanged, the step count does not
 * advance, and the caller decides (stop or skip). With no gradient at all nothing runs: res is
 * {0, true} and the step count stays. A failing launch (OOM in a CPU fallback) returns its status
 * and may leave the update half applied; the gradients are then kept. */
spin_status spin_optim_step(spin_optim *o, double lr, spin_optim_result *res);

/* Updates applied so far (AdamW's bias correction uses steps + 1 for the next one; one count for
 * all parameters, where torch counts per parameter: they differ only for parameters that go
 * without a gradient on some steps). */
int64_t spin_optim_steps(const spin_optim *o);
void spin_optim_set_steps(spin_optim *o, int64_t steps);

/* Checkpoint state as named f32 tensors, in a fixed order: per parameter i, "master.<i>" (only for
 * bf16 / f16 parameters), then torch's state names: "state.<i>.square_avg" (RMSProp), or
 * "state.<i>.exp_avg" and "state.<i>.exp_avg_sq" (AdamW). The step count is separate
 * (spin_optim_steps). state_at gives borrowed pointers; SPIN_ERR_INVALID for a bad index. */
int spin_optim_state_count(const spin_optim *o);
spin_status spin_optim_state_at(const spin_optim *o, int i, const char **name, spin_tensor **t);
/* Copies src (any float dtype, same shape) into the state tensor called name: exact for f32.
 * SPIN_ERR_INVALID naming the tensor for an unknown name or a shape mismatch. Loading a master
 * does not touch the model weight (that comes from the model checkpoint). */
spin_status spin_optim_state_load(spin_optim *o, const char *name, spin_tensor *src);

#endif
