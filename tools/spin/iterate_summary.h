/* The per-iteration summary of `spin iterate`: what each iteration's files say (the last training
 * metrics, the held-out eval report, exact match of greedy test answers, stage times), written as
 * JSON lines and printed as a table. */
#ifndef SPIN_TOOLS_ITERATE_SUMMARY_H
#define SPIN_TOOLS_ITERATE_SUMMARY_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    int iteration;
    const char *opponent, *model;      /* θ_t and θ_t+1 directories */
    const char *metrics;               /* θ_t+1's metrics.jsonl */
    const char *eval_json;             /* NULL when eval is off */
    const char *test_answers_opponent; /* θ_t's greedy answers to the test prompts (loser_0_test.jsonl) */
    const char *test_answers_model;    /* θ_t+1's */
    const char *const *datasets;       /* the mixer of the iteration */
    int n_datasets;
    int64_t train_examples;
    double learning_rate, beta, epochs;
    double seconds_generate, seconds_score, seconds_train, seconds_eval;
} iterate_row_src;

/* Exact match of the answers in a generated shard against its ground truth: the share of rows whose
 * generated[1] equals real[1] after leading and trailing white space is removed. Returns 0 with
 * *em and *n set, or 1 after printing. */
int iterate_exact_match(const char *shard, double *em, int64_t *n);

/* Builds each iteration's summary line from its files, writes them to path (atomically, replacing
 * it: the summary is derived from the iteration directories) and prints the table to out.
 * Returns 0 or 1 after printing. */
int iterate_summary_write(const iterate_row_src *rows, int n, const char *path, FILE *out);

#endif
