/* Id checks for the kernels that index with ids (EMBEDDING, EMBEDDING_BACK, CE_ROWS, CE_ROWS_BACK).
 * The host sets *bad = n, launches check_ids_i32, reads *bad back and fails with the CPU's message
 * when it is below n: the device never reads or writes through an id outside [0, V). */
#include "spin_kernel.h"

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define IDS_ATOMIC_MIN(p, v) atomic_min((volatile GLOBAL int *)(p), (v))
#else
#define IDS_ATOMIC_MIN(p, v) atomicMin((p), (v))
#endif

/* *bad = the lowest position whose id is outside [0, v) and is not `ignore` (the CPU reports the
 * first one too); integer atomic_min gives the same answer for any schedule. n < 2^31. */
KERNEL check_ids_i32(i64 n, GLOBAL const int *ids, i64 io, i64 v, i64 ignore, GLOBAL int *bad, i64 bo) {
    const i64 i = GLOBAL_ID0;
    if (i >= n)
        return;
    const i64 id = ids[io + i];
    if (id != ignore && (id < 0 || id >= v))
        IDS_ATOMIC_MIN(bad + bo, (int)i);
}

/* head[k] = n for k < v, before embedding_heads_i32 lowers it. */
KERNEL fill_heads_i32(i64 v, GLOBAL int *head, i64 ho, int n) {
    const i64 k = GLOBAL_ID0;
    if (k < v)
        head[ho + k] = n;
}

/* For token i: head[ids[i]] = the first position holding that id (atomic_min), next[i] = the next
 * position after i holding the same id, or n. Together they chain every id's positions in order. */
KERNEL embedding_heads_i32(i64 n, GLOBAL const int *ids, i64 io, GLOBAL int *head, i64 ho, GLOBAL int *next,
                           i64 no) {
    const i64 i = GLOBAL_ID0;
    if (i >= n)
        return;
    const int id = ids[io + i];
    IDS_ATOMIC_MIN(head + ho + id, (int)i);
    i64 j = i + 1;
    while (j < n && ids[io + j] != id)
        j++;
    next[no + i] = (int)j;
}
