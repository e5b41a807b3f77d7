#include "core/dtype.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

size_t spin_dtype_size(spin_dtype t) {
    switch (t) {
    case SPIN_F32: return 4;
    case SPIN_F16: return 2;
    case SPIN_BF16: return 2;
    case SPIN_I32: return 4;
    case SPIN_DTYPE_COUNT: break;
    }
    SPIN_ABORT("bad dtype %d", (int)t);
}

const char *spin_dtype_name(spin_dtype t) {
    switch (t) {
    case SPIN_F32: return "f32";
    case SPIN_F16: return "f16";
    case SPIN_BF16: return "bf16";
    case SPIN_I32: return "i32";
    case SPIN_DTYPE_COUNT: break;
    }
    return "?";
}

uint16_t spin_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float spin_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t spin_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u);
    if (absx >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u); /* overflow to inf */
    if (absx < 0x38800000u) {              /* subnormal or zero */
        float a;
        memcpy(&a, &absx, 4);
        /* scale so the subnormal step (2^-24) becomes 1, then round to nearest even */
        float r = nearbyintf(a * 16777216.0f);
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant = absx & 0x7fffffu;
    uint32_t exp = (absx >> 23) - 127 + 15;
    uint32_t h = (exp << 10) | (mant >> 13);
    uint32_t rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (uint16_t)(sign | h);
}

float spin_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    float f;
    if (exp == 0) {
        f = ldexpf((float)mant, -24);
        uint32_t u;
        memcpy(&u, &f, 4);
        u |= sign;
        memcpy(&f, &u, 4);
        return f;
    }
    uint32_t u =
        exp == 31 ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((exp + 112) << 23) | (mant << 13));
    memcpy(&f, &u, 4);
    return f;
}

float spin_dtype_load(spin_dtype t, const void *base, size_t i) {
    switch (t) {
    case SPIN_F32: return ((const float *)base)[i];
    case SPIN_F16: return spin_f16_to_f32(((const uint16_t *)base)[i]);
    case SPIN_BF16: return spin_bf16_to_f32(((const uint16_t *)base)[i]);
    case SPIN_I32: return (float)((const int32_t *)base)[i];
    case SPIN_DTYPE_COUNT: break;
    }
    SPIN_ABORT("bad dtype %d", (int)t);
}

void spin_dtype_store(spin_dtype t, void *base, size_t i, float v) {
    switch (t) {
    case SPIN_F32: ((float *)base)[i] = v; return;
    case SPIN_F16: ((uint16_t *)base)[i] = spin_f32_to_f16(v); return;
    case SPIN_BF16: ((uint16_t *)base)[i] = spin_f32_to_bf16(v); return;
    case SPIN_I32: ((int32_t *)base)[i] = (int32_t)lrintf(v); return;
    case SPIN_DTYPE_COUNT: break;
    }
    SPIN_ABORT("bad dtype %d", (int)t);
}
