/* The errors for ids outside their range (EMBEDDING, EMBEDDING_BACK, CE_ROWS, CE_ROWS_BACK), worded
 * once: the CPU reference and every device backend report the same message for the same input. */
#ifndef SPIN_BACKENDS_CPU_ID_ERRORS_H
#define SPIN_BACKENDS_CPU_ID_ERRORS_H

#include <stdint.h>

#include "core/status.h"

/* An embedding id (token position `pos`) outside [0, v). */
spin_status spin_bad_id_error(const char *kernel, int32_t id, int64_t pos, int64_t v);
/* A cross-entropy target (row `row`) outside [0, v) that is not the ignore index. */
spin_status spin_bad_target_error(const char *kernel, int32_t target, int64_t row, int64_t v, int64_t ignore);

#endif
