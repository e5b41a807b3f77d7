/* Shared by the comm implementations (train/comm/comm_*.c): argument checks with one wording. */
#ifndef SPIN_TRAIN_COMM_INTERNAL_H
#define SPIN_TRAIN_COMM_INTERNAL_H

#include <stdbool.h>

#include "train/comm.h"

/* t is contiguous, and f32 when need_f32; what names the call. */
spin_status spin_comm_check_tensor(const char *what, const spin_tensor *t, bool need_f32);
/* Appends a call to the log of spin_comm_trace, when one is set. */
void spin_comm_log(const char *call, int64_t numel);
/* The element counts of a reduce-scatter / all-gather: every count >= 0, part has counts[rank]
 * elements, whole has their sum, and the dtypes agree. */
spin_status spin_comm_check_pieces(const char *what, const spin_tensor *whole, const spin_tensor *part,
                                   const int64_t *counts, int rank, int size);

#endif
