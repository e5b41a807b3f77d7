/* RNG_UNIFORM / RNG_NORMAL (core/kernels.h) with core/rng.c's counter-based generator
 * (Philox4x32-10): element i of a stream depends only on (seed, offset + i), so the device draws
 * the CPU's bits. Uniforms match bit for bit; normals go through the device's log/sqrt/sin/cos,
 * which may differ from the host libm by a few ulp. */
#include "spin_kernel.h"

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
typedef uint rng_u32;
typedef ulong rng_u64;
#define RNG_LOGF(x) log(x)
#define RNG_SINF(x) sin(x)
#define RNG_COSF(x) cos(x)
#define RNG_SQRTF(x) sqrt(x)
#else
typedef unsigned int rng_u32;
typedef unsigned long long rng_u64;
#define RNG_LOGF(x) logf(x)
#define RNG_SINF(x) sinf(x)
#define RNG_COSF(x) cosf(x)
#define RNG_SQRTF(x) sqrtf(x)
#endif

/* Word w (0..3) of Philox4x32-10 at (seed, counter), as spin_philox. */
DEVICE_FN rng_u32 rng_philox_word(rng_u64 seed, rng_u64 counter, int w) {
    rng_u32 c0 = (rng_u32)counter, c1 = (rng_u32)(counter >> 32), c2 = 0, c3 = 0;
    rng_u32 k0 = (rng_u32)seed, k1 = (rng_u32)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        const rng_u64 p0 = (rng_u64)0xD2511F53u * c0, p1 = (rng_u64)0xCD9E8D57u * c2;
        const rng_u32 n0 = (rng_u32)(p1 >> 32) ^ c1 ^ k0, n1 = (rng_u32)p1;
        const rng_u32 n2 = (rng_u32)(p0 >> 32) ^ c3 ^ k1, n3 = (rng_u32)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return w == 0 ? c0 : w == 1 ? c1 : w == 2 ? c2 : c3;
}

DEVICE_FN float rng_u24(rng_u32 x) {
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

/* y[i] = uniform [0, 1) from 24 bits of word (offset + i) % 4 of counter (offset + i) / 4 */
KERNEL rng_uniform_f32(i64 total, GLOBAL float *y, i64 yo, i64 seed, i64 offset) {
    const i64 i = GLOBAL_ID0;
    if (i >= total)
        return;
    const rng_u64 idx = (rng_u64)offset + (rng_u64)i;
    y[yo + i] = rng_u24(rng_philox_word((rng_u64)seed, idx / 4, (int)(idx % 4)));
}

/* y[i] = Box-Muller over words 0 and 1 of counter (offset + i) / 2: cos for even, sin for odd */
KERNEL rng_normal_f32(i64 total, GLOBAL float *y, i64 yo, i64 seed, i64 offset) {
    const i64 i = GLOBAL_ID0;
    if (i >= total)
        return;
    const rng_u64 idx = (rng_u64)offset + (rng_u64)i;
    const float u1 = rng_u24(rng_philox_word((rng_u64)seed, idx / 2, 0)) + (1.0f / 33554432.0f);
    const float u2 = rng_u24(rng_philox_word((rng_u64)seed, idx / 2, 1));
    const float rr = RNG_SQRTF(-2.0f * RNG_LOGF(u1)), a = 6.28318530717958647692f * u2;
    y[yo + i] = (idx % 2) ? rr * RNG_SINF(a) : rr * RNG_COSF(a);
}
