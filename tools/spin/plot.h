/* Charts of the trainer's metrics.jsonl files (loss, rewards, reward accuracy, log-probs, learning
 * rate per step), used by `spin plot` and at the end of train and iterate. */
#ifndef SPIN_TOOLS_PLOT_H
#define SPIN_TOOLS_PLOT_H

#include <stdbool.h>

/* Draws the metrics of paths[0..n) one after another on a shared step axis (each later file's steps
 * are offset by the previous files' last step, with a labelled separator; labels may be NULL: the
 * name of each file's directory) into out (.png or .svg), written atomically; an existing out is
 * an error unless overwrite. Returns 0, or 1 after printing an error that names the file and line. */
int spin_plot_metrics(const char *const *paths, const char *const *labels, int n, const char *out,
                      const char *title, bool overwrite);

#endif
