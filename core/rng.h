/* Counter-based RNG (Philox4x32-10): the value at (seed, counter) does not depend on how the
 * work is split across threads, devices or backends. */
#ifndef SPIN_CORE_RNG_H
#define SPIN_CORE_RNG_H

#include <stdint.h>

typedef struct {
    uint32_t v[4];
} spin_philox_out;

spin_philox_out spin_philox(uint64_t seed, uint64_t counter);
/* Uniform in [0, 1) from 24 random bits; standard normal by Box-Muller over two uniforms.
 * Element i of a stream uses counter (offset + i) / 2 and word (i % 2) pairs. */
float spin_rng_uniform(uint64_t seed, uint64_t index);
float spin_rng_normal(uint64_t seed, uint64_t index);

/* Host-side sequential generator on the same function (data shuffling, sampling). */
typedef struct {
    uint64_t seed, counter;
} spin_rng;
uint32_t spin_rng_next_u32(spin_rng *r);
double spin_rng_next_double(spin_rng *r);

#endif
