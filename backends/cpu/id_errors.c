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
