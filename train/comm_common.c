/* The parts of train/comm.h that do not depend on the transport. */
#include <stdio.h>

#include "core/autograd.h"
#include "train/comm.h"
#include "train/comm/comm_internal.h"

static struct {
    spin_comm_event *log;
    int cap, *n;
} g_trace;

void spin_comm_trace(spin_comm_event *log, int cap, int *n) {
    g_trace.log = log && n ? log : NULL;
    g_trace.cap = cap;
    g_trace.n = n;
    if (g_trace.log)
        *n = 0;
}

void spin_comm_log(const char *call, int64_t numel) {
    if (!g_trace.log)
        return;
    int k = (*g_trace.n)++;
    if (k < g_trace.cap)
        g_trace.log[k] = (spin_comm_event){call, numel, spin_backward_running()};
}

void spin_shard_range(int64_t n, int rank, int size, int64_t *begin, int64_t *end) {
    if (size < 1 || rank < 0 || rank >= size || n < 0) {
        *begin = *end = 0;
        return;
    }
    int64_t q = n / size, r = n % size;
    *begin = rank * q + (rank < r ? rank : r);
    *end = *begin + q + (rank < r ? 1 : 0);
}

spin_status spin_comm_check_tensor(const char *what, const spin_tensor *t, bool need_f32) {
    if (!t)
        return spin_fail(SPIN_ERR_INVALID, "%s: NULL tensor", what);
    if (!spin_tensor_is_contiguous(t))
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor %s is not contiguous", what, spin_tensor_name(t));
    if (need_f32 && spin_tensor_dtype(t) != SPIN_F32)
        return spin_fail(SPIN_ERR_INVALID, "%s: reductions take f32 tensors, got %s", what,
                         spin_dtype_name(spin_tensor_dtype(t)));
    return SPIN_OK;
}

spin_status spin_comm_check_pieces(const char *what, const spin_tensor *whole, const spin_tensor *part,
                                   const int64_t *counts, int rank, int size) {
    if (!counts)
        return spin_fail(SPIN_ERR_INVALID, "%s: no counts", what);
    int64_t total = 0;
    for (int r = 0; r < size; r++) {
        if (counts[r] < 0)
            return spin_fail(SPIN_ERR_INVALID, "%s: counts[%d] = %lld < 0", what, r, (long long)counts[r]);
        total += counts[r];
    }
    if (spin_tensor_numel(whole) != total)
        return spin_fail(SPIN_ERR_INVALID, "%s: the whole tensor has %lld elements, the counts sum to %lld",
                         what, (long long)spin_tensor_numel(whole), (long long)total);
    if (spin_tensor_numel(part) != counts[rank])
        return spin_fail(SPIN_ERR_INVALID, "%s: rank %d's piece has %lld elements, counts[%d] = %lld", what,
                         rank, (long long)spin_tensor_numel(part), rank, (long long)counts[rank]);
    if (spin_tensor_dtype(whole) != spin_tensor_dtype(part))
        return spin_fail(SPIN_ERR_INVALID, "%s: dtypes differ (%s and %s)", what,
                         spin_dtype_name(spin_tensor_dtype(whole)), spin_dtype_name(spin_tensor_dtype(part)));
    return SPIN_OK;
}
