/* One SPIN training step of a tiny seeded Llama on a device, to compare with the same step on the
 * CPU reference: used by `spin selftest` (on the build's accelerator, with a synthetic batch) and by
 * tests/unit/test_opencl_parity.c (with real data). The weights come from host arrays seeded per
 * (seed, parameter name), so every device builds the same model. */
#ifndef SPIN_TESTS_PARITY_STEP_H
#define SPIN_TESTS_PARITY_STEP_H

#include "models/llama.h"
#include "train/collate.h"

/* Tolerances on ||dev - cpu|| / ||cpu|| (|dev - cpu| / |cpu| for scalars), the reasoning in
 * parity_step.c: loss, rewards and grad norm; each gradient; each update; each parameter after. */
#define SPIN_PARITY_TOL_LOSS 1e-5
#define SPIN_PARITY_TOL_GRAD 1e-5
#define SPIN_PARITY_TOL_UPDATE 1e-3
#define SPIN_PARITY_TOL_PARAM 1e-4

/* The tiny model: GQA (6 query heads over 2 KV heads), hidden 48, 3 layers, vocab 64, untied head. */
spin_status spin_parity_model(spin_device *dev, uint64_t seed, spin_llama **out);

typedef struct {
    int n;
    int64_t *numel;
    float **grad, **before, **after;
    double loss, grad_norm, rewards_chosen, rewards_rejected;
} spin_parity_step;

/* policy (seed 1) against the frozen opponent (seed 2): sigmoid loss, beta 0.1, backward, one RMSProp
 * update (torch defaults, clip 1.0) at lr 1e-3. *r owns host copies; spin_parity_step_free. */
spin_status spin_parity_train_step(spin_device *dev, const spin_collated *batch, spin_parity_step *r);
void spin_parity_step_free(spin_parity_step *r);

typedef struct {
    double loss, grad_norm, rewards; /* relative */
    double grad, update, param;      /* worst normalised error over the parameters */
    int bad;                         /* parameters over a tolerance, or with no gradient on the CPU */
    const char *first_bad;           /* the first such parameter's name (borrowed), or NULL */
} spin_parity_errors;

/* Compares dev's step with the CPU's (same model, same batch). names: a model's parameter names. */
void spin_parity_compare(const spin_parity_step *dev, const spin_parity_step *cpu, char *const *names,
                         spin_parity_errors *e);
/* Whether every error is within its tolerance. */
bool spin_parity_ok(const spin_parity_errors *e);

/* A synthetic batch of 4 pairs (prompt 7-10 tokens, responses 5-12, ids in [3, 64), seeded), as the
 * collator builds it: what `spin selftest` trains on without any data file. */
spin_status spin_parity_synthetic_batch(spin_collated *out);

#endif
