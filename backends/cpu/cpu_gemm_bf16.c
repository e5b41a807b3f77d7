/* bf16 x bf16 -> f32 GEMM on AVX-512 BF16 (VDPBF16PS), for bf16 training: Debian's OpenBLAS 0.3.21
 * is built without cblas_sbgemm, and widening both operands to f32 for sgemm would cost more than
 * the bf16 storage saves.
 *
 * VDPBF16PS adds two bf16 x bf16 products (exact in f32) into an f32 lane, rounding each addition
 * to nearest even: an f32 accumulation like sgemm's, in another order. It treats bf16 subnormal
 * inputs (below 1.2e-38) as 0 and flushes subnormal results.
 *
 * Layout: B is packed once per call into panels of NR = 64 columns holding, per pair of k, the 64
 * column pairs (b[k][j], b[k+1][j]) as four vectors; A into panels of MR = 6 rows holding, per pair
 * of k, six 32-bit pairs (a[i][k], a[i][k+1]) to broadcast. A 6 x 64 tile keeps 24 accumulators in
 * registers over the whole K (the B panel streams from L1/L2: 4 loads per 24 VDPBF16PS). Tiles
 * are spread over the OpenMP threads column panel first, so a thread reuses its B panel. Any
 * strides: the packing reads A and B through (row, column) strides, so transposed views cost
 * nothing extra. */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/cpu_kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define HAVE_BF16_GEMM 1
#define TARGET __attribute__((target("avx512f,avx512bw,avx512bf16")))
#else
#define HAVE_BF16_GEMM 0
#endif

enum { MR = 6, NR = 64 };

bool cpu_gemm_bf16_available(void) {
#if HAVE_BF16_GEMM
    static int avail = -1;
    if (avail < 0) {
        /* SPIN_BF16_GEMM=0 turns it off (bf16 matmuls are then widened to sgemm): for comparisons
         * and for testing that path on CPUs that have the instructions */
        const char *env = getenv("SPIN_BF16_GEMM");
        __builtin_cpu_init();
        avail = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
                !(env && !strcmp(env, "0"));
    }
    return avail;
#else
    return false;
#endif
}

#if HAVE_BF16_GEMM

/* A panel: rows [i0, i0 + MR) as kp pairs of MR 32-bit values (zero beyond m and k). */
static void pack_a(uint32_t *dst, const uint16_t *a, int64_t rs, int64_t cs, int64_t m, int64_t k, int64_t i0,
                   int64_t kp) {
    for (int64_t q = 0; q < kp; q++)
        for (int r = 0; r < MR; r++) {
            int64_t i = i0 + r;
            uint32_t lo = 0, hi = 0;
            if (i < m) {
                lo = a[i * rs + 2 * q * cs];
                hi = 2 * q + 1 < k ? a[i * rs + (2 * q + 1) * cs] : 0;
            }
            dst[q * MR + r] = lo | hi << 16;
        }
}

/* A B panel: columns [j0, j0 + NR) as kp pairs of NR (lo, hi) bf16 pairs (zero beyond n and k). */
static void pack_b(uint16_t *dst, const uint16_t *b, int64_t rs, int64_t cs, int64_t n, int64_t k, int64_t j0,
                   int64_t kp) {
    for (int64_t q = 0; q < kp; q++) {
        uint16_t *d = dst + q * 2 * NR;
        const uint16_t *r0 = b + 2 * q * rs, *r1 = r0 + rs;
        bool has_hi = 2 * q + 1 < k;
        for (int c = 0; c < NR; c++) {
            int64_t j = j0 + c;
            d[2 * c] = j < n ? r0[j * cs] : 0;
            d[2 * c + 1] = j < n && has_hi ? r1[j * cs] : 0;
        }
    }
}

/* One MR x NR tile over all kp pairs: out = alpha * acc + beta * out (out not read when beta == 0),
 * rows < mr and columns < nr only. */
TARGET static void tile(const uint32_t *ap, const uint16_t *bp, int64_t kp, float alpha, float beta, float *c,
                        int64_t ldc, int mr, int nr) {
    /* fully unrolled, so the 24 accumulators live in registers */
    __m512 acc[MR][4];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[r][v] = _mm512_setzero_ps();
    for (int64_t q = 0; q < kp; q++) {
        const uint16_t *b = bp + q * 2 * NR;
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 32),
                 b2 = (__m512bh)_mm512_loadu_si512(b + 64), b3 = (__m512bh)_mm512_loadu_si512(b + 96);
        const uint32_t *a = ap + q * MR;
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], av, b2);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], av, b3);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < 4; v++) {
            int cols = nr - 16 * v;
            if (cols <= 0)
                break;
            __mmask16 mask = cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1);
            float *p = c + r * ldc + 16 * v;
            __m512 y = _mm512_mul_ps(va, acc[r][v]);
            if (beta != 0.0f)
                y = _mm512_add_ps(y, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(mask, p)));
            _mm512_mask_storeu_ps(p, mask, y);
        }
}

spin_status cpu_gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, const uint16_t *a, int64_t rsa,
                          int64_t csa, const uint16_t *b, int64_t rsb, int64_t csb, float beta, float *c,
                          int64_t ldc) {
    if (m <= 0 || n <= 0)
        return SPIN_OK;
    int64_t kp = (k + 1) / 2, mp = (m + MR - 1) / MR, np = (n + NR - 1) / NR;
    size_t abytes = (size_t)(mp * kp * MR) * sizeof(uint32_t),
           bbytes = (size_t)(np * kp * 2 * NR) * sizeof(uint16_t);
    uint32_t *ap = aligned_alloc(64, (abytes + 63) / 64 * 64 + 64);
    uint16_t *bp = aligned_alloc(64, (bbytes + 63) / 64 * 64 + 64);
    if (!ap || !bp) {
        free(ap);
        free(bp);
        return spin_fail(SPIN_ERR_OOM, "MATMUL (bf16): cannot allocate %zu bytes of packing",
                         abytes + bbytes);
    }
#pragma omp parallel
    {
#pragma omp for schedule(static) nowait
        for (int64_t i = 0; i < mp; i++)
            pack_a(ap + i * kp * MR, a, rsa, csa, m, k, i * MR, kp);
#pragma omp for schedule(static)
        for (int64_t j = 0; j < np; j++)
            pack_b(bp + j * kp * 2 * NR, b, rsb, csb, n, k, j * NR, kp);
#pragma omp for collapse(2) schedule(static)
        for (int64_t j = 0; j < np; j++)
            for (int64_t i = 0; i < mp; i++) {
                int mr = m - i * MR < MR ? (int)(m - i * MR) : MR;
                int nr = n - j * NR < NR ? (int)(n - j * NR) : NR;
                tile(ap + i * kp * MR, bp + j * kp * 2 * NR, kp, alpha, beta, c + i * MR * ldc + j * NR, ldc,
                     mr, nr);
            }
    }
    free(ap);
    free(bp);
    return SPIN_OK;
}

#else

spin_status cpu_gemm_bf16(int64_t m, int64_t n, int64_t k, float alpha, const uint16_t *a, int64_t rsa,
                          int64_t csa, const uint16_t *b, int64_t rsb, int64_t csb, float beta, float *c,
                          int64_t ldc) {
    (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)rsa, (void)csa, (void)b, (void)rsb, (void)csb;
    (void)beta, (void)c, (void)ldc;
    return spin_fail(SPIN_ERR_UNSUPPORTED, "MATMUL (bf16): this build has no AVX-512 BF16 kernel");
}

#endif
