/* Learning-rate schedules with Hugging Face semantics (transformers 4.37.0, the version SPIN pins):
 * the Trainer's total-step arithmetic, the warmup rule, and the LambdaLR factors of
 * transformers.get_scheduler, in double as Python computes them. */
#ifndef SPIN_TRAIN_SCHEDULE_H
#define SPIN_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "core/status.h"

typedef enum {
    SPIN_SCHED_LINEAR,
    SPIN_SCHED_COSINE,
    SPIN_SCHED_CONSTANT,
    SPIN_SCHED_CONSTANT_WITH_WARMUP
} spin_sched_kind;

/* Maps a TrainingArguments.lr_scheduler_type name ("linear", "cosine", "constant",
 * "constant_with_warmup"). Anything else: SPIN_ERR_INVALID naming it and listing the supported
 * names. */
spin_status spin_sched_kind_from_name(const char *name, spin_sched_kind *out);
const char *spin_sched_kind_name(spin_sched_kind k);

/* Optimizer updates in a run, as transformers 4.37.0 Trainer._inner_training_loop computes them:
 *   len_dataloader    = ceil(n_train / (per_device_bs * world))  (per process, accelerate's
 *                       even_batches sharding: ceil(ceil(N / bs) / world) is the same number)
 *   updates_per_epoch = max(len_dataloader // grad_accum, 1)     (FLOOR in 4.37; newer versions
 *                       round up, which differs when grad_accum does not divide len_dataloader)
 *   total             = max_steps > 0 ? max_steps : ceil(epochs * updates_per_epoch)
 * Returns -1 (with spin_last_error) when n_train, per_device_bs, world or grad_accum is < 1 or
 * epochs is not positive (and max_steps <= 0). */
int64_t spin_sched_total_steps(double epochs, int64_t n_train, int64_t per_device_bs, int64_t world,
                               int64_t grad_accum, int64_t max_steps);

/* TrainingArguments.get_warmup_steps: warmup_steps > 0 ? warmup_steps : ceil(total * warmup_ratio),
 * the product in double as Python takes it (total 100, ratio 0.07 gives 8: 100 * 0.07 is
 * 7.000000000000001). */
int64_t spin_sched_warmup_steps(double warmup_ratio, int64_t warmup_steps, int64_t total);

typedef struct {
    spin_sched_kind kind;
    double lr; /* the peak (base) learning rate */
    int64_t warmup, total;
} spin_schedule;

/* The learning rate of the update made after `step` updates (step 0 is the first update, at lr 0
 * when warmup > 0), base lr times transformers' factor:
 *   warmup (not CONSTANT): step < W: step / max(1, W)
 *   LINEAR:   max(0, (T - step) / max(1, T - W))
 *   COSINE:   max(0, 0.5 * (1 + cos(pi * 0.5 * 2 * (step - W) / max(1, T - W))))  (num_cycles 0.5)
 *   CONSTANT, CONSTANT_WITH_WARMUP after warmup: 1. */
double spin_sched_lr(const spin_schedule *s, int64_t step);

#endif
