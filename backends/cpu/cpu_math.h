/* Vectorisable float math for the CPU kernels. glibc's expf is a scalar call (about 4 ns here),
 * which made softmax and the cross-entropy rows exp-bound; these inline versions let the
 * compiler vectorise the row loops. */
#ifndef SPIN_BACKENDS_CPU_MATH_H
#define SPIN_BACKENDS_CPU_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Row functions marked with this are compiled for AVX-512, AVX2 and baseline x86-64, and the
 * best one the CPU supports is picked at load time (the build targets baseline x86-64 so the
 * binary runs anywhere). The ISO C mode the project builds in keeps -ffp-contract=off, so every
 * variant performs the same IEEE operations and gives bit-identical results. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CPU_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CPU_VECTOR_CLONES
#endif

/* exp(x) = 2^n * e^r with n = round(x / ln2), r = x - n ln2 in [-ln2/2, ln2/2] (ln2 split in two
 * parts so r is exact), e^r by its degree-7 Taylor polynomial (truncation < 1e-8 relative).
 * Relative error under 2e-7 over the whole range; exp(-inf) and x below the f32 range give 0,
 * large x gives inf, NaN stays NaN (tests/unit/test_cpu_math.c). */
static inline float cpu_expf(float x) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693145751953125f, ln2_lo = 1.42860682030941723e-6f;
    float xc = x < -87.5f ? -87.5f : (x > 88.7228f ? 88.7228f : x);
    xc = x != x ? 0.0f : xc; /* NaN is returned below; keep the integer path defined */
    /* round to nearest by the 1.5 * 2^23 trick: nearbyintf is a library call and blocks
     * vectorisation (|xc * log2e| < 2^22, so the trick is exact) */
    const float magic = 12582912.0f;
    float n = (xc * log2e + magic) - magic;
    float r = (xc - n * ln2_hi) - n * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* 2^n as two normal factors: n reaches 128 near the top of the range */
    int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
    uint32_t b1 = (uint32_t)(n1 + 127) << 23, b2 = (uint32_t)(n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &b1, sizeof s1);
    memcpy(&s2, &b2, sizeof s2);
    float y = p * s1 * s2;
    y = x < -87.3365f ? 0.0f : y; /* below FLT_MIN: flush (softmax masks give exact zeros) */
    y = x > 88.7228f ? INFINITY : y;
    return x != x ? x : y;
}

/* sum_j exp(x[j] - shift) in double, in a fixed order of 8 interleaved partial sums: the same
 * result for any thread count, and a loop the compiler can vectorise. */
static inline double cpu_sum_exp(const float *x, int64_t n, float shift) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += (double)cpu_expf(x[j + k] - shift);
    for (int k = 0; j < n && k < 8; j++, k++)
        acc[k] += (double)cpu_expf(x[j] - shift);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

#endif
