/* The training loop: epochs over a tokenised preference dataset with a seeded shuffle, micro-batches
 * and gradient accumulation, the loss of train/pref_loss.h against a frozen reference model (mode a)
 * or stored opponent scores (mode b), the optimizer and schedule of train/optim.h and
 * train/schedule.h with Hugging Face Trainer (transformers 4.37) step arithmetic, metrics as JSON
 * lines, a progress line on a terminal, checkpoints every N steps / each epoch / at the end, bit-exact
 * resume, and SIGINT/SIGTERM writing a checkpoint before a clean exit. */
#ifndef SPIN_TRAIN_TRAINER_H
#define SPIN_TRAIN_TRAINER_H

#include "models/llama.h"
#include "train/collate.h"
#include "train/comm.h"
#include "train/optim.h"
#include "train/pref_loss.h"
#include "train/schedule.h"

typedef enum {
    SPIN_NONFINITE_STOP, /* a NaN/Inf loss or gradient stops the run; the last checkpoint stays intact */
    SPIN_NONFINITE_SKIP  /* the step's update is skipped and counted */
} spin_nonfinite_policy;

/* Which parameters optim.weight_decay applies to. */
typedef enum {
    SPIN_DECAY_ALL, /* every parameter */
    /* as the Hugging Face Trainer of transformers 4.37 (uclaml/SPIN's pin) groups them: no decay for
     * biases and for the weights of norm layers it knows, which are LlamaRMSNorm's (modeling_llama
     * adds them to ALL_LAYERNORM_LAYERS) but not MistralRMSNorm's: a Mistral model's norm weights
     * decay (spin_train_decays) */
    SPIN_DECAY_HF
} spin_decay_rule;

typedef struct {
    spin_pref_loss_opts loss;
    bool average_logprob;
    spin_optim_config optim;
    spin_decay_rule decay_rule; /* which parameters optim.weight_decay applies to */
    spin_sched_kind scheduler;
    double learning_rate, warmup_ratio;
    int64_t warmup_steps;
    double num_train_epochs;
    int64_t max_steps; /* > 0 overrides the epochs */
    int64_t per_device_train_batch_size, gradient_accumulation_steps;
    bool gradient_checkpointing; /* recompute each block in backward: less memory, the same gradients */
    /* SPIN_F32 (default) or SPIN_BF16 (HF bf16=True): the policy and a mode-(a) reference are stored
     * in bf16 for the run (and the policy stays so: checkpoints hold it as BF16), every kernel computes
     * in f32, log-probs and losses are f32, the optimizer keeps f32 master weights and state
     * (docs/training.md, Mixed precision). A resume must use the checkpoint's precision. */
    spin_dtype precision;
    uint64_t seed;
    bool shuffle;             /* a seeded shuffle each epoch (HF's RandomSampler); off: dataset order */
    int64_t logging_steps;    /* a metrics line every N updates, and after the first (logging_first_step) */
    int64_t save_steps;       /* a checkpoint every N updates (0: none) */
    bool save_each_epoch;     /* save_strategy "epoch" */
    int save_total_limit;     /* 0: keep all */
    const char *output_dir;   /* checkpoints and metrics.jsonl; NULL: neither */
    const char *metrics_path; /* NULL: output_dir/metrics.jsonl */
    bool resume;              /* continue from the newest checkpoint in output_dir when there is one */
    spin_nonfinite_policy nonfinite;
    bool progress;      /* a progress line on stderr when it is a terminal */
    bool spin_names;    /* metrics named real/generated (SPIN data) rather than chosen/rejected */
    int64_t stop_after; /* stop with a checkpoint after this many updates in this run (0: none) */
    /* Data parallel (train/dist_train.h, docs/distributed.md): NULL trains in this process alone;
     * otherwise every rank of comm runs spin_train_run with the same config and data, and
     * per_device_train_batch_size is per rank (a global batch of size x that, as HF). */
    spin_comm *comm;
    int zero_stage; /* with comm: 0 (each rank keeps the whole optimizer) or 1 (ZeRO-1, sharded) */
} spin_train_config;

/* Whether parameter i of m takes weight decay under rule. */
bool spin_train_decays(spin_decay_rule rule, const spin_llama *m, int i);

/* uclaml/SPIN's defaults: sigmoid loss, beta 0.1, summed log-probs, RMSProp, linear schedule with
 * warmup_ratio 0.1, lr 5e-7, 1 epoch, batch 8, accumulation 1, seed 42, logging every 10 steps,
 * max_grad_norm 1.0, save each epoch, stop on non-finite values. */
spin_train_config spin_train_defaults(void);

typedef struct {
    spin_llama *policy;
    spin_llama *reference; /* mode (a): a frozen copy; NULL otherwise */
    const spin_pref_tokens *examples;
    int64_t n;
    const float *ref_chosen, *ref_rejected;             /* mode (b): stored scores [n], or NULL */
    const float *probs_chosen, *probs_win, *probs_lose; /* SPPO columns [n], or NULL */
    spin_collate_opts collate;
} spin_train_data;

typedef struct {
    int64_t global_step, total_steps, skipped;
    double last_loss;
    bool interrupted;           /* stopped by a signal or stop_after (a checkpoint was written) */
    char last_checkpoint[4096]; /* "" when none was written */
} spin_train_result;

/* Trains d->policy in place. Errors: bad configuration (naming the field), data problems, a
 * non-finite loss or gradient under SPIN_NONFINITE_STOP (the message names the step and the last
 * checkpoint), I/O errors writing checkpoints or metrics. */
spin_status spin_train_run(const spin_train_config *cfg, const spin_train_data *d, spin_train_result *res);

#endif
