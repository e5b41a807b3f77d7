/* Op cases: spin_rand_uniform / spin_rand_normal (RNG_UNIFORM, RNG_NORMAL) against the stream that
 * core/rng.h specifies, computed here from a Philox4x32-10 of the test's own (the Random123
 * round; test_core checks core's against the known-answer vector): element i uses counter
 * (offset + i) / 4 and word (offset + i) % 4 for uniforms, counter (offset + i) / 2 and words 0, 1
 * (cos for even i, sin for odd) for normals.
 *
 * Tolerances: uniforms are 24-bit integers scaled by 2^-24, so they must match exactly; normals
 * go through f32 log, sqrt, sin and cos on the device (a few ulp each) against double here:
 * normalised error 2e-6. */
#include <math.h>
#include <stdint.h>

#include "tests/harness/opcheck.h"

static void philox(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    uint32_t c[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0, 0};
    uint32_t k[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    for (int r = 0; r < 10; r++) {
        uint64_t a = (uint64_t)0xD2511F53u * c[0], b = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t d[4] = {(uint32_t)(b >> 32) ^ c[1] ^ k[0], (uint32_t)b, (uint32_t)(a >> 32) ^ c[3] ^ k[1],
                         (uint32_t)a};
        for (int i = 0; i < 4; i++)
            c[i] = d[i];
        k[0] += 0x9E3779B9u;
        k[1] += 0xBB67AE85u;
    }
    for (int i = 0; i < 4; i++)
        out[i] = c[i];
}

/* p.i: [0] normal?, [1] seed, [2] offset, [3] n */
static spin_tensor *run_rng(const opcase *c, spin_tensor *const *in) {
    (void)in;
    const int64_t n = c->p.i[3];
    if (c->p.i[0])
        return spin_rand_normal(opc_device(), 1, &n, (uint64_t)c->p.i[1], (uint64_t)c->p.i[2], 0.0f, 1.0f);
    return spin_rand_uniform(opc_device(), 1, &n, (uint64_t)c->p.i[1], (uint64_t)c->p.i[2], 0.0f, 1.0f);
}

static void ref_rng(const opcase *c, const double *const *in, double *out) {
    (void)in;
    const uint64_t seed = (uint64_t)c->p.i[1], off = (uint64_t)c->p.i[2];
    for (int64_t i = 0; i < c->p.i[3]; i++) {
        uint64_t idx = off + (uint64_t)i;
        uint32_t w[4];
        if (!c->p.i[0]) {
            philox(seed, idx / 4, w);
            out[i] = (double)(w[idx % 4] >> 8) / 16777216.0;
            continue;
        }
        philox(seed, idx / 2, w);
        /* u1 in (0, 1] as the spec forms it in f32: 24 bits + 2^-25, rounded to f32 */
        float u1 = (float)((double)(w[0] >> 8) / 16777216.0) + (1.0f / 33554432.0f);
        double u2 = (double)(w[1] >> 8) / 16777216.0, r = sqrt(-2.0 * log((double)u1));
        out[i] = idx % 2 ? r * sin(6.283185307179586476925 * u2) : r * cos(6.283185307179586476925 * u2);
    }
}

#define RNG(desc, normal, seed, off, n, tol_, exact_)                                                    \
    {                                                                                                    \
        .op = normal ? "rand_normal" : "rand_uniform", .params = desc, .n_in = 0,                        \
        .p = {.i = {normal, seed, off, n}}, .run = run_rng, .ref = ref_rng, .tol = tol_, .exact = exact_ \
    }

const opcase opc_cases_rng[] = {
    RNG("[1000] seed 12345 offset 0", 0, 12345, 0, 1000, 0, true),
    RNG("[37] seed 7 offset 5 (mid-counter start)", 0, 7, 5, 37, 0, true),
    RNG("[1000] seed 12345 offset 0", 1, 12345, 0, 1000, 2e-6, false),
    RNG("[37] seed 2^40+3 offset 3 (odd start, 64-bit seed)", 1, (1ll << 40) + 3, 3, 37, 2e-6, false),
};
const int opc_n_rng = sizeof opc_cases_rng / sizeof opc_cases_rng[0];
