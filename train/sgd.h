/* Plain SGD: p -= lr * grad for each parameter, outside the graph, then the gradient is cleared.
 * (RMSProp and AdamW as device kernels come with the training engine.) */
#ifndef SPIN_TRAIN_SGD_H
#define SPIN_TRAIN_SGD_H

#include "ops/ops.h"

/* Parameters without a gradient are skipped. */
spin_status spin_sgd_step(spin_tensor *const *params, int n, float lr);

#endif
