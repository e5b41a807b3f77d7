/* Data-parallel training over a communicator (train/comm.h), the pieces spin_train_run calls when
 * spin_train_config.comm is set (docs/distributed.md):
 *
 *  - the global micro-batch: with W ranks and per_device_train_batch_size B, micro-batch k of an
 *    epoch is the same B*W examples of the seeded order that a single process with batch B*W takes;
 *    rank r computes a contiguous slice of it (spin_shard_range), and its loss is scaled by
 *    (slice / batch) / gradient_accumulation_steps, so the summed gradient is exactly the
 *    single-process one, a short last batch included (HF's DDP instead pads it with repeats);
 *  - gradients summed once per update (not per micro-batch), bucket by bucket, one bucket per
 *    transformer block (the embedding and the final norm their own), each bucket's reduction
 *    started during the last micro-batch's backward as soon as its gradients are complete;
 *  - zero_stage 0: every rank keeps the whole optimizer and applies the same update;
 *    zero_stage 1 (ZeRO-1, as torch's ZeroRedundancyOptimizer): each parameter belongs to one rank
 *    (greedy by size), which alone keeps its optimizer state and f32 master; gradients are
 *    reduce-scattered to the owners, the clip uses the global norm (sum of the owners' squares),
 *    owners update, and the parameters are all-gathered;
 *  - checkpoints in the single-process format, written by rank 0 from the gathered state, loaded by
 *    rank 0 and broadcast, so a run resumes on another number of ranks with the same global batch;
 *  - collective agreement: a failure or a signal on one rank ends the run on every rank. */
#ifndef SPIN_TRAIN_DIST_TRAIN_H
#define SPIN_TRAIN_DIST_TRAIN_H

#include "models/llama.h"
#include "train/checkpoint.h"
#include "train/comm.h"
#include "train/optim.h"
#include "train/pref_step.h"

typedef struct spin_dist spin_dist;

/* Data-parallel state for model over comm: the local optimizer (all parameters for zero_stage 0,
 * the owned ones for 1), buckets and the checkpoint state list. SPIN_ERR_INVALID for a zero_stage
 * other than 0 or 1. */
spin_status spin_dist_new(spin_comm *comm, int zero_stage, const spin_optim_config *oc, spin_llama *model,
                          spin_dist **out);
void spin_dist_free(spin_dist *d);

/* 0 and 1 for NULL (the single-process run). */
int spin_dist_rank(const spin_dist *d);
int spin_dist_size(const spin_dist *d);
/* The optimizer this rank steps (borrowed). */
spin_optim *spin_dist_optim(spin_dist *d);
/* The index of model parameter i in that optimizer; -1 when another rank owns it (ZeRO-1). */
int spin_dist_local_index(const spin_dist *d, int i);
/* The checkpoint's optimizer state in the single-process names and order ("master.<i>",
 * "state.<i>.square_avg", ...). Complete on rank 0 (tensors of other owners are rank-0 copies,
 * filled by spin_dist_ckpt_save); other ranks hold only their own entries (NULL elsewhere). */
spin_named_tensors spin_dist_state(const spin_dist *d);

/* This rank's part [*lo, *lo + *cnt) of a global micro-batch of b examples, and its loss scale. */
void spin_dist_slice(const spin_dist *d, int64_t b, int64_t grad_accum, int64_t *lo, int64_t *cnt,
                     float *loss_scale);
/* After a micro-batch: agrees on the status (an error on any rank is returned on every rank) and
 * combines the metrics (means weighted by each rank's examples, tokens summed), so *m and *finite
 * describe the global micro-batch on every rank. */
spin_status spin_dist_combine(spin_dist *d, spin_status s, spin_pref_metrics *m, bool *finite);
/* Overlap of the gradient reduction with backward: called around the last micro-batch of an
 * update (its forward, backward and whatever else this rank does for it). Between the two, each
 * bucket's reduction starts as soon as backward has completed its gradients (a leaf hook,
 * core/autograd.h); overlap_end starts those not started yet (every rank starts every bucket in the
 * same order, also one whose backward failed or had no examples) and returns s, or the error of a
 * start. spin_dist_step then waits for them; an update that is skipped calls spin_dist_drop. */
void spin_dist_overlap_begin(spin_dist *d);
spin_status spin_dist_overlap_end(spin_dist *d, spin_status s);
/* Waits for the reductions in flight and discards them (the gradients are left as they were). */
spin_status spin_dist_drop(spin_dist *d);
/* The update: gradients reduced (started here when overlap_end did not), the global norm, the clip, the step,
 * (ZeRO-1) the all-gather. Same contract as spin_optim_step, with the global norm in res on every rank. */
spin_status spin_dist_step(spin_dist *d, double lr, spin_optim_result *res);
/* Agreement: returns s when it failed here, else an error naming the first rank that failed (with
 * its message), else SPIN_OK; *flag (when not NULL) becomes true on every rank when it was on any. */
spin_status spin_dist_agree(spin_dist *d, spin_status s, bool *flag);

/* spin_ckpt_save for the whole job: the state is gathered to rank 0, which writes; the status and
 * the path are agreed (*path on every rank). */
spin_status spin_dist_ckpt_save(spin_dist *d, const char *output_dir, int64_t step, const spin_llama *model,
                                const char *trainer_state_json, char **path);
/* Resume: rank 0 finds the newest checkpoint of output_dir and loads it (model and state); the
 * parameters and each state tensor go to the ranks that hold them. *ckpt is NULL when there is
 * none; *trainer_state_json the file's text on every rank (both malloc'd). */
spin_status spin_dist_ckpt_resume(spin_dist *d, const char *output_dir, spin_llama *model, char **ckpt,
                                  char **trainer_state_json);

#endif
