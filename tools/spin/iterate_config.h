/* The `iterate:` section of a `spin iterate` config: uclaml/SPIN's YAML config (the keys of
 * `spin train`) plus one top-level mapping that drives the self-play loop:
 *
 *   iterate:
 *     input: reformatted       # `spin reformat` output: prompts and ground truth (train, test splits)
 *     num_iterations: 2        # T: trains θ_1 .. θ_T (default: the length of `iterations`)
 *     mix_previous: true       # t >= 1 trains on iter_{t-1} and iter_t data (uclaml/SPIN)
 *     eval: true               # held-out eval after each iteration (needs a test split)
 *     eval_batch_size: 8
 *     generate: {batch_size: 16, max_new_tokens: 256, chat_template: false, frac_len: 0, ...}
 *     iterations:              # per-iteration training overrides, by iteration
 *       - {}
 *       - {learning_rate: 1.0e-7, beta: 5.0}
 *
 * The rest of the file is handed to `spin train` / `spin score` unchanged, with the section
 * replaced by blank lines so that their file:line messages point at the same lines. */
#ifndef SPIN_TOOLS_ITERATE_CONFIG_H
#define SPIN_TOOLS_ITERATE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *key, *value; /* a training key of `spin train` and its scalar text */
    int line;          /* 1-based line in the config */
} iterate_kv;

typedef struct {
    char *path; /* the config file */
    int section_line;
    char *input;
    int num_iterations;
    bool mix_previous, eval;
    int64_t eval_batch_size, frac_len, max_new_tokens;
    char *gen_template; /* generate.template, or NULL */
    bool gen_chat;      /* generate.chat_template */
    char **gen_argv;    /* the other generate options as `spin generate` arguments */
    int n_gen_argv;
    iterate_kv **iter; /* iter[t][0..n_iter[t]) for t < n_listed */
    int *n_iter, n_listed;
    char *train_yaml; /* the file's text with the section blanked (NUL-terminated) */
} iterate_config;

/* Reads the section from path. Returns 0, or prints "spin iterate: FILE:LINE: ..." and returns 2. */
int iterate_config_read(const char *path, iterate_config *ic);
void iterate_config_free(iterate_config *ic);

#endif
