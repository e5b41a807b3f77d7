/* Id checks for the kernels that index with ids (EMBEDDING, EMBEDDING_BACK, CE_ROWS, CE_ROWS_BACK),
 * deferred: nothing is read back at the launch. Each check records its first bad id in the device's
 * error record and the kernels that follow skip or zero what a bad id would index, so they never
 * read or write out of bounds; the host reads the record where it blocks anyway (to_host,
 * synchronize) and fails there with the CPU's message. */
#include "spin_kernel.h"

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define IDS_ATOMIC_MIN(p, v) atomic_min((volatile GLOBAL int *)(p), (v))
#else
#define IDS_ATOMIC_MIN(p, v) atomicMin((p), (v))
#endif

/* The error record, IDS_ERR_INTS ints; the host's copy of the layout is in the backends. [KERNEL]:
 * 0 while no check failed, else the host's code of the kernel whose check failed first; POS and ID
 * its lowest bad position and the id there; V and IGNORE (lo, hi words) the check's range. [LAUNCH]
 * is the running check's lowest bad position, IDS_NONE between checks. */
#define IDS_ERR_KERNEL 0
#define IDS_ERR_POS 1
#define IDS_ERR_ID 2
#define IDS_ERR_V 3
#define IDS_ERR_IGNORE 5
#define IDS_ERR_LAUNCH 7
#define IDS_NONE 0x7fffffff

/* err[LAUNCH] = the lowest position whose id is outside [0, v) and is not `ignore` (the CPU reports
 * the first one too); integer atomic_min gives the same answer for any schedule. n < 2^31. */
KERNEL check_ids_i32(i64 n, GLOBAL const int *ids, i64 io, i64 v, i64 ignore, GLOBAL int *err, i64 eo) {
    const i64 i = GLOBAL_ID0;
    if (i >= n)
        return;
    const i64 id = ids[io + i];
    if (id != ignore && (id < 0 || id >= v))
        IDS_ATOMIC_MIN(err + eo + IDS_ERR_LAUNCH, (int)i);
}

/* One work-item, after check_ids_i32: a bad id found by that check becomes the record unless an
 * earlier check's is there (the first failing kernel is reported, as the CPU stops at it); the
 * check's slot is reset for the next one. */
KERNEL check_ids_note(i64 n, GLOBAL const int *ids, i64 io, i64 v, i64 ignore, GLOBAL int *err, i64 eo,
                      int code) {
    if (GLOBAL_ID0 != 0)
        return;
    GLOBAL int *e = err + eo;
    const int p = e[IDS_ERR_LAUNCH];
    if ((i64)p >= n)
        return;
    if (e[IDS_ERR_KERNEL] == 0) {
        e[IDS_ERR_KERNEL] = code;
        e[IDS_ERR_POS] = p;
        e[IDS_ERR_ID] = ids[io + p];
        e[IDS_ERR_V] = (int)(v & 0xffffffff);
        e[IDS_ERR_V + 1] = (int)(v >> 32);
        e[IDS_ERR_IGNORE] = (int)(ignore & 0xffffffff);
        e[IDS_ERR_IGNORE + 1] = (int)(ignore >> 32);
    }
    e[IDS_ERR_LAUNCH] = IDS_NONE;
}

/* head[k] = n for k < v, before embedding_heads_i32 lowers it. */
KERNEL fill_heads_i32(i64 v, GLOBAL int *head, i64 ho, int n) {
    const i64 k = GLOBAL_ID0;
    if (k < v)
        head[ho + k] = n;
}

/* For token i: head[ids[i]] = the first position holding that id (atomic_min), next[i] = the next
 * position after i holding the same id, or n. Together they chain every id's positions in order.
 * An id outside [0, v) (already recorded by the check) joins no chain, so it adds to no row. */
KERNEL embedding_heads_i32(i64 n, GLOBAL const int *ids, i64 io, i64 v, GLOBAL int *head, i64 ho,
                           GLOBAL int *next, i64 no) {
    const i64 i = GLOBAL_ID0;
    if (i >= n)
        return;
    const int id = ids[io + i];
    if (id < 0 || (i64)id >= v) {
        next[no + i] = (int)n;
        return;
    }
    IDS_ATOMIC_MIN(head + ho + id, (int)i);
    i64 j = i + 1;
    while (j < n && ids[io + j] != id)
        j++;
    next[no + i] = (int)j;
}
