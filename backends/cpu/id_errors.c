#include "backends/cpu/id_errors.h"

spin_status spin_bad_id_error(const char *kernel, int32_t id, int64_t pos, int64_t v) {
    return spin_fail(SPIN_ERR_INVALID, "%s: token id %d at position %lld outside the vocabulary of %lld",
                     kernel, (int)id, (long long)pos, (long long)v);
}

spin_status spin_bad_target_error(const char *kernel, int32_t target, int64_t row, int64_t v,
                                  int64_t ignore) {
    return spin_fail(SPIN_ERR_INVALID,
                     "%s: target %d at row %lld is outside [0, %lld) and is not the ignore index %lld",
                     kernel, (int)target, (long long)row, (long long)v, (long long)ignore);
}

void spin_ids_record_clear(int32_t rec[SPIN_IDS_ERR_INTS]) {
    for (int i = 0; i < SPIN_IDS_ERR_INTS; i++)
        rec[i] = 0;
    rec[SPIN_IDS_ERR_LAUNCH] = SPIN_IDS_NONE;
}

static int64_t record_i64(const int32_t *w) {
    return (int64_t)(((uint64_t)(uint32_t)w[1] << 32) | (uint32_t)w[0]);
}

spin_status spin_ids_record_error(const int32_t rec[SPIN_IDS_ERR_INTS]) {
    const int32_t id = rec[SPIN_IDS_ERR_ID];
    const int64_t pos = rec[SPIN_IDS_ERR_POS], v = record_i64(rec + SPIN_IDS_ERR_V),
                  ignore = record_i64(rec + SPIN_IDS_ERR_IGNORE);
    switch ((spin_ids_kernel)rec[SPIN_IDS_ERR_KERNEL]) {
    case SPIN_IDS_EMBEDDING: return spin_bad_id_error("embedding", id, pos, v);
    case SPIN_IDS_EMBEDDING_BACK: return spin_bad_id_error("embedding backward", id, pos, v);
    case SPIN_IDS_CE_ROWS: return spin_bad_target_error("CE_ROWS", id, pos, v, ignore);
    case SPIN_IDS_CE_ROWS_BACK: return spin_bad_target_error("CE_ROWS_BACK", id, pos, v, ignore);
    }
    if (rec[SPIN_IDS_ERR_KERNEL] == 0)
        return SPIN_OK;
    return spin_fail(SPIN_ERR_DEVICE, "the device's id error record names kernel %d, which no check writes",
                     (int)rec[SPIN_IDS_ERR_KERNEL]);
}
