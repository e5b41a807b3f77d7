/* What `spin train` and `spin score` share: the command line (config file, overrides, --threads,
 * --device), and building exactly the token rows the trainer trains on (tokenizer, chat template,
 * dataset_mixer, the collator), so the opponent scores of `spin score` match `spin train`'s rows. */
#ifndef SPIN_TOOLS_TRAIN_CLI_H
#define SPIN_TOOLS_TRAIN_CLI_H

#include "models/llama.h"
#include "models/tokenizer.h"
#include "tools/spin/train_yaml.h"
#include "train/collate.h"
#include "train/opponent_scores.h"
#include "train/pref_data.h"

/* A command's own options: returns 0 when it took `name` (setting *consumed to 1 when it used
 * `next`), -1 on a bad value (message printed), -2 when `name` is not its option. */
typedef int (*train_cli_option_fn)(void *ctx, const char *name, const char *eq_value, const char *next,
                                   int *consumed);

/* Parses `spin CMD [CONFIG.yaml] [--key=value | --key value | --flag]...`: the YAML file first,
 * then the overrides in order; --threads N, --device D (sets SPIN_DEVICE) and the command's own
 * options (own, may be NULL). Returns 0, 1 for --help (nothing else done), or 2 after printing
 * an error. Prints the ignored keys once. */
int train_cli_parse(const char *cmd, int argc, char **argv, train_cli_config *c, train_cli_option_fn own,
                    void *ctx);

typedef struct {
    spin_tokenizer *tok;
    spin_chat_template tpl;
    const char *bos, *eos;  /* the tokenizer's special-token strings (borrowed) */
    spin_llama_config mcfg; /* the model's config.json */
    spin_pref_data data;    /* every example, in dataset_mixer order (after its shuffle) */
    spin_pref_tokens *rows; /* [data.n] */
    spin_collate_opts collate;
    char *scores_path; /* where the opponent scores are (default or opponent_scores) */
    /* where each example comes from: src_file[i] (borrowed from files) and its 1-based line */
    const char **src_file;
    int64_t *src_line;
    char **files;
    int n_files;
} train_rows;

/* Loads the tokenizer, the chat template, the model's config.json, the datasets (mixed as
 * uclaml/SPIN's mix_datasets: the prefix fraction of each train split, concatenated, shuffled with
 * seed 42) and tokenises every example with the collator. Rows that are refused name file:line.
 * Returns 0, or prints "spin CMD: ..." and returns 1 (data, files) or 2 (usage). */
int train_rows_build(const char *cmd, const train_cli_config *c, train_rows *r);
void train_rows_free(train_rows *r);

/* The fingerprint of scores computed by `opp` on these rows. */
int train_rows_fingerprint(const char *cmd, const train_cli_config *c, const train_rows *r,
                           const spin_llama *opp, spin_score_fingerprint *fp);

/* Whether the run stores weights in bf16 (bf16: true, or torch_dtype: bfloat16). */
bool train_cli_bf16(const train_cli_config *c);

/* Loads the model directory onto the default device, in bf16 when train_cli_bf16 (the opponent's
 * scores then come from the same bf16 weights the policy starts from); prints and returns 1 on
 * failure. */
int train_cli_load_model(const char *cmd, const train_cli_config *c, spin_llama **out);

/* Runs the opponent over the rows (no grad) with a progress line on stderr, writing chosen[n] and
 * rejected[n]. Returns 0, or prints and returns 1. Under mpirun (cli_comm.h) every rank calls it:
 * each scores its block of rows (spin_shard_range), every rank gets all the scores, and the status
 * is agreed. */
int train_cli_score(const char *cmd, spin_llama *opp, const train_cli_config *c, const train_rows *r,
                    float *chosen, float *rejected);

#endif
