#include "core/rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

spin_philox_out spin_philox(uint64_t seed, uint64_t counter) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return (spin_philox_out){{c0, c1, c2, c3}};
}

static float u24(uint32_t x) {
    return (float)(x >> 8) * (1.0f / 16777216.0f);
}

float spin_rng_uniform(uint64_t seed, uint64_t index) {
    spin_philox_out o = spin_philox(seed, index / 4);
    return u24(o.v[index % 4]);
}

float spin_rng_normal(uint64_t seed, uint64_t index) {
    spin_philox_out o = spin_philox(seed, index / 2);
    int w = (int)(index % 2);
    float u1 = u24(o.v[0]) + (1.0f / 33554432.0f); /* (0, 1]: log stays finite */
    float u2 = u24(o.v[1]);
    float r = sqrtf(-2.0f * logf(u1));
    float a = 6.28318530717958647692f * u2;
    return w ? r * sinf(a) : r * cosf(a);
}

uint32_t spin_rng_next_u32(spin_rng *r) {
    spin_philox_out o = spin_philox(r->seed, r->counter / 4);
    uint32_t v = o.v[r->counter % 4];
    r->counter++;
    return v;
}

double spin_rng_next_double(spin_rng *r) {
    uint64_t hi = spin_rng_next_u32(r) >> 5, lo = spin_rng_next_u32(r) >> 6;
    return (double)(hi * 67108864.0 + lo) * (1.0 / 9007199254740992.0);
}
