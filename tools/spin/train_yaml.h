/* The configuration of `spin train` and `spin score`: uclaml/SPIN's YAML config (the keys of its
 * ModelArguments, DataArguments and SPINConfig(TrainingArguments), transformers 4.37) followed by
 * `--key=value` overrides, as its H4ArgumentParser reads them, with spin's own keys added.
 *
 * Every key has one of three fates: it is used; it has no effect here and is listed once as
 * ignored with the reason; or it asks for something spin does not do (use_peft: true, fp16: true,
 * do_eval: true, ...) and is an error. Any other key is an error naming file:line (or the command
 * line) and the key. Keys given twice (in the file, or on the command line) are errors. */
#ifndef SPIN_TOOLS_TRAIN_YAML_H
#define SPIN_TOOLS_TRAIN_YAML_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char *path;  /* a JSONL file, or a directory holding <split>*.jsonl files */
    double frac; /* the prefix fraction of its train split (dataset_mixer's value) */
} train_dataset;

#define TRAIN_WHERE_LEN 512

typedef struct {
    /* model */
    char *model_name_or_path, *tokenizer, *chat_template, *torch_dtype;
    /* data */
    train_dataset *datasets;
    int n_datasets;
    char **dataset_splits;
    int n_splits;
    /* loss and opponent */
    char *loss_type, *truncation_mode, *opponent, *opponent_scores;
    double beta, label_smoothing;
    bool reference_free;
    /* optimizer and schedule */
    char *optim, *lr_scheduler_type;
    double learning_rate, num_train_epochs, warmup_ratio, weight_decay, adam_beta1, adam_beta2, adam_epsilon,
        max_grad_norm;
    int64_t warmup_steps, max_steps;
    int64_t per_device_train_batch_size, gradient_accumulation_steps, max_length, max_prompt_length;
    int64_t seed, data_seed; /* data_seed < 0: seed */
    bool bf16, gradient_checkpointing;
    /* output */
    char *output_dir, *save_strategy, *on_nonfinite;
    int64_t logging_steps, save_steps, save_total_limit, stop_after;
    int64_t zero_stage; /* data parallel under mpirun: 0 or 1 (ZeRO-1); 2 and 3 are refused */
    bool overwrite_output_dir, resume_from_checkpoint;
    /* where each key was last set ("config.yaml:12", "--beta=0.2", "default"), by key index */
    char (*where)[TRAIN_WHERE_LEN];
    /* the keys given that have no effect here, with their reasons ("key: reason" lines) */
    char **ignored;
    int n_ignored;
} train_cli_config;

/* uclaml/SPIN's configs/config.yaml values (spin_train_defaults), spin's additions at their defaults. */
void train_config_defaults(train_cli_config *c);
void train_config_free(train_cli_config *c);

/* Reads a YAML config file into c. Returns 0, or prints "spin CMD: <file>:<line>: ..." and returns 2. */
int train_config_read_yaml(const char *cmd, const char *path, train_cli_config *c);

/* Applies one command-line setting: `name` is a key (dashes read as underscores) or one of the
 * aliases (--model, --data, --output, --loss, --template, --scores, --overwrite, --resume);
 * eq_value is the text after '=' (NULL when there was none), next the following argument (NULL at
 * the end). A boolean without '=' is true; any other key without '=' takes `next` (*consumed = 1).
 * Returns 0; -1 on a bad value, a refused value or a key given twice on the command line (message
 * printed); -2 when `name` is not a config key (nothing printed). */
int train_config_set_cli(const char *cmd, train_cli_config *c, const char *name, const char *eq_value,
                         const char *next, int *consumed);

/* Checks the resolved values together (ranges, required keys, combinations); prints and returns 2
 * on the first problem, naming the key and where it was set. */
int train_config_check(const char *cmd, const train_cli_config *c);

/* Where key `name` was set ("default" when it was not). */
const char *train_config_where(const train_cli_config *c, const char *name);

/* Writes the resolved configuration, one "key: value  # where" line per used key, as YAML. */
void train_config_print(FILE *f, const train_cli_config *c);

/* Prints the ignored keys once (to stderr), with the reason each has no effect. */
void train_config_print_ignored(const char *cmd, const train_cli_config *c);

/* The option help shared by both commands: every used key with its default. */
extern const char train_config_help[];

#endif
