/* Crash-safe training checkpoints in the Hugging Face Trainer layout:
 *
 *   <output_dir>/checkpoint-<step>/
 *       model.safetensors, config.json, generation_config.json   (spin_llama_save_as in the model's
 *       tokenizer files when the model's source directory has them  dtype, f32 or bf16 with torch_dtype
 *                                                                  set; transformers' from_pretrained)
 *       optimizer.safetensors   the caller's named f32 state tensors (optimizer moments, ...)
 *       trainer_state.json      the caller's JSON object (scheduler step, RNG state, data position, ...)
 *
 * A checkpoint is built as <output_dir>/.checkpoint-<step>.tmp-<pid>/ (every file fsync'ed, then the
 * directory), renamed to checkpoint-<step>, and the parent directory is fsync'ed, so a crash or kill
 * at any moment leaves either the complete new checkpoint or none of it, and never damages an older
 * one. Replacing an existing checkpoint swaps the two directories in one rename (Linux
 * RENAME_EXCHANGE); where the file system cannot, the old one is renamed aside first and put back by
 * the next save/latest if the process died before the new one took its place. Leftovers of killed
 * runs (temporary and set-aside directories of processes that no longer exist) are removed, with a
 * log line, by the next spin_ckpt_save, spin_ckpt_latest or spin_ckpt_prune on that output_dir. */
#ifndef SPIN_TRAIN_CHECKPOINT_H
#define SPIN_TRAIN_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "models/llama.h"

/* n tensors with their names (borrowed). */
typedef struct {
    int n;
    const char *const *names;
    spin_tensor *const *tensors;
} spin_named_tensors;

/* The files every complete checkpoint directory holds (the tokenizer files are optional). */
#define SPIN_CKPT_N_REQUIRED 5
extern const char *const spin_ckpt_required_files[SPIN_CKPT_N_REQUIRED];

/* Writes output_dir/checkpoint-<step>/ atomically (see above), creating output_dir if needed.
 * model: its parameters under their HF names; state: f32 tensors with distinct non-empty names
 * (n may be 0); trainer_state_json: the text of a JSON object, written byte for byte.
 * An existing checkpoint-<step> is an error unless overwrite, which replaces it atomically.
 * *path (when path is not NULL) gets the malloc'd path of the new directory, or NULL on error.
 * Errors: step < 0, a state tensor that is not f32, trainer_state_json that is not a JSON object
 * (SPIN_ERR_INVALID); an existing checkpoint, any file system failure (SPIN_ERR_IO, naming the path).
 * On error nothing is left behind and an existing checkpoint-<step> is untouched, except when the
 * final fsync of output_dir fails: the new checkpoint is then in place but not known to be durable. */
spin_status spin_ckpt_save(const char *output_dir, int64_t step, const spin_llama *model,
                           spin_named_tensors state, const char *trainer_state_json, bool overwrite,
                           char **path);

/* *path gets the malloc'd path of the checkpoint-<step> directory of output_dir with the highest step,
 * or NULL (returning SPIN_OK) when there is none or output_dir does not exist. Only directories named
 * exactly checkpoint-<digits> count, so unfinished writes (hidden temporary directories) never do.
 * Errors: that checkpoint lacks one of spin_ckpt_required_files (SPIN_ERR_IO naming the file), output_dir
 * cannot be read. */
spin_status spin_ckpt_latest(const char *output_dir, char **path);

/* Restores checkpoint directory ckpt_dir into existing objects, checking everything before changing
 * anything: every parameter of model must be stored in model.safetensors in its dtype
 * (F32, or BF16 for a bf16 model) with its shape (an
 * extra tensor is an error); every state name must be in optimizer.safetensors as F32 with the shape of
 * its (f32) tensor (a stored name not in state is an error); trainer_state.json must hold a JSON object.
 * Values are copied bit for bit. *trainer_state_json (when not NULL) gets the file's text (malloc'd).
 * Errors name the file and the tensor or key: SPIN_ERR_IO for missing or unreadable files,
 * SPIN_ERR_INVALID for content that does not match. On error the outputs are NULL and model and state
 * are unchanged (except after a device failure while copying). */
spin_status spin_ckpt_load(const char *ckpt_dir, spin_llama *model, spin_named_tensors state,
                           char **trainer_state_json);

/* Keeps the newest `keep` checkpoint-<step> directories of output_dir (HF save_total_limit; 0 keeps
 * all) and removes the older ones completely; each is first renamed to a temporary name so a crash
 * midway never leaves a partial checkpoint-<step>. Errors: keep < 0 (SPIN_ERR_INVALID), file system
 * failures (SPIN_ERR_IO naming the path). */
spin_status spin_ckpt_prune(const char *output_dir, int keep);

#endif
