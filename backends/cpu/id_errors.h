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

/* The device backends check ids on the device without reading the verdict back at the launch: the
 * first failing check writes this record (layout as backends/kernels/ids.cl), read where the host
 * blocks anyway. */
enum {
    SPIN_IDS_ERR_KERNEL = 0, /* 0: no error; else a spin_ids_kernel */
    SPIN_IDS_ERR_POS = 1,
    SPIN_IDS_ERR_ID = 2,
    SPIN_IDS_ERR_V = 3,      /* lo, hi words of an int64 */
    SPIN_IDS_ERR_IGNORE = 5, /* lo, hi words */
    SPIN_IDS_ERR_LAUNCH = 7, /* the running check's lowest bad position; SPIN_IDS_NONE between checks */
    SPIN_IDS_ERR_INTS = 8
};
#define SPIN_IDS_NONE 0x7fffffff

typedef enum {
    SPIN_IDS_EMBEDDING = 1,
    SPIN_IDS_EMBEDDING_BACK,
    SPIN_IDS_CE_ROWS,
    SPIN_IDS_CE_ROWS_BACK
} spin_ids_kernel;

/* The record with no error, as a device buffer starts and is reset after a report. */
void spin_ids_record_clear(int32_t rec[SPIN_IDS_ERR_INTS]);
/* SPIN_OK for a clear record, else the CPU's error for the id it holds. */
spin_status spin_ids_record_error(const int32_t rec[SPIN_IDS_ERR_INTS]);

#endif
