/* Embedding lookup and its gradient (core/kernels.h EMBEDDING, EMBEDDING_BACK), as
 * backends/cpu/cpu_embedding.c. check_ids_i32 (ids.cl) recorded any id outside [0, V) before these
 * run; such an id reads nothing here (a zero row) and its error reaches the host at the next read. */
#include "spin_kernel.h"

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
typedef uint emb_b32;
typedef ushort emb_b16;
#else
typedef unsigned int emb_b32;
typedef unsigned short emb_b16;
#endif

/* y[i, j] = w[ids[i], j], copied as bits: f32 tables by 32-bit words, bf16/f16 by 16-bit ones. */
#define EMBEDDING(NAME, T)                                                                        \
    KERNEL NAME(i64 cols, i64 total, GLOBAL const T *w, i64 wo, i64 v, GLOBAL const int *ids,     \
                i64 io, GLOBAL T *y, i64 yo) {                                                    \
        const i64 gid = GLOBAL_ID0;                                                               \
        if (gid >= total)                                                                         \
            return;                                                                               \
        const i64 i = gid / cols, j = gid % cols, id = ids[io + i];                               \
        y[yo + gid] = id >= 0 && id < v ? w[wo + id * cols + j] : (T)0;                           \
    }
EMBEDDING(embedding_b32, emb_b32)
EMBEDDING(embedding_b16, emb_b16)

/* dw[v, j] = sum of dy[i, j] over the positions i holding id v, in increasing i (the chain
 * head[v] -> next[] from embedding_heads_i32), added in f32 from 0 as the CPU does: the same bits,
 * no float atomics. One work-item per element of dw, so every element is written (0 for ids that
 * do not occur). */
KERNEL embedding_back_f32(i64 cols, i64 total, GLOBAL const float *dy, i64 dyo, GLOBAL const int *head, i64 ho,
                          GLOBAL const int *next, i64 no, GLOBAL float *dw, i64 dwo, int n) {
    const i64 gid = GLOBAL_ID0;
    if (gid >= total)
        return;
    const i64 v = gid / cols, j = gid % cols;
    float acc = 0.0f;
    for (int k = head[ho + v]; k < n; k = next[no + k])
        acc += dy[dyo + (i64)k * cols + j];
    dw[dwo + gid] = acc;
}
