/* A portable tiled GEMM for devices without a vendor BLAS (ROCm without rocBLAS; selectable on
 * every backend with SPIN_GEMM=tiled): c = alpha * a @ b + beta * c over strided 4-D views
 * (core/kernels.h MATMUL), any strides, stride 0 broadcasting a batch dim.
 *
 * One work-group of GEMM_THREADS work-items per GEMM_TILE x GEMM_TILE block of c; each work-item
 * owns a 4 x 4 grid of outputs spaced GEMM_TILE / 4 apart (so neighbouring work-items touch
 * neighbouring addresses). a and b tiles of GEMM_BK along k are staged in local memory. Every output
 * is one f32 fused multiply-add chain over k in increasing order: deterministic, and no operand
 * beyond K is read (the padding is 0 * 0). beta == 0 never reads c, which may hold NaN. */
#include "spin_kernel.h"

#define GEMM_TILE 64
#define GEMM_BK 16
#define GEMM_SUB (GEMM_TILE / 4) /* 16 work-items along each side, 4 outputs each */
#define GEMM_THREADS (GEMM_SUB * GEMM_SUB)

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define GEMM_FMA(x, y, z) fma(x, y, z)
#else
#define GEMM_FMA(x, y, z) fmaf(x, y, z)
#endif

/* Batch index = (i0, i1) with i1 < nb1; tiles_mn = tiles_m * tiles_n blocks per batch. Views: element
 * offset, the strides of the two batch dims, then of rows and columns. */
KERNEL gemm_tiled_f32(i64 M, i64 N, i64 K, i64 nb1, i64 tiles_n, i64 tiles_mn, GLOBAL const float *a, i64 ao,
                      i64 as0, i64 as1, i64 asr, i64 asc, GLOBAL const float *b, i64 bo, i64 bs0, i64 bs1,
                      i64 bsr, i64 bsc, GLOBAL float *c, i64 co, i64 cs0, i64 cs1, i64 csr, i64 csc, float alpha,
                      float beta) {
    LOCAL float ta[GEMM_BK][GEMM_TILE]; /* ta[k][row] */
    LOCAL float tb[GEMM_BK][GEMM_TILE]; /* tb[k][col] */
    const i64 g = GROUP_ID0, batch = g / tiles_mn, t = g % tiles_mn;
    const i64 row0 = (t / tiles_n) * GEMM_TILE, col0 = (t % tiles_n) * GEMM_TILE;
    const i64 i0 = batch / nb1, i1 = batch % nb1;
    const i64 abase = ao + i0 * as0 + i1 * as1, bbase = bo + i0 * bs0 + i1 * bs1, cbase = co + i0 * cs0 + i1 * cs1;
    const int lid = LOCAL_ID0, tx = lid % GEMM_SUB, ty = lid / GEMM_SUB;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            acc[i][j] = 0.0f;
    for (i64 k0 = 0; k0 < K; k0 += GEMM_BK) {
        for (int e = lid; e < GEMM_BK * GEMM_TILE; e += GEMM_THREADS) {
            const int ar = e / GEMM_BK, ak = e % GEMM_BK; /* consecutive work-items walk k of one row */
            const i64 r = row0 + ar, ka = k0 + ak;
            ta[ak][ar] = r < M && ka < K ? a[abase + r * asr + ka * asc] : 0.0f;
            const int bk = e / GEMM_TILE, bc = e % GEMM_TILE; /* ... and columns of one k */
            const i64 kb = k0 + bk, cc = col0 + bc;
            tb[bk][bc] = kb < K && cc < N ? b[bbase + kb * bsr + cc * bsc] : 0.0f;
        }
        BARRIER();
        for (int kk = 0; kk < GEMM_BK; kk++) {
            float av[4], bv[4];
            for (int i = 0; i < 4; i++)
                av[i] = ta[kk][ty + i * GEMM_SUB];
            for (int j = 0; j < 4; j++)
                bv[j] = tb[kk][tx + j * GEMM_SUB];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i][j] = GEMM_FMA(av[i], bv[j], acc[i][j]);
        }
        BARRIER();
    }
    for (int i = 0; i < 4; i++) {
        const i64 r = row0 + ty + i * GEMM_SUB;
        if (r >= M)
            continue;
        for (int j = 0; j < 4; j++) {
            const i64 cc = col0 + tx + j * GEMM_SUB;
            if (cc >= N)
                continue;
            const i64 at = cbase + r * csr + cc * csc;
            c[at] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * c[at];
        }
    }
}
