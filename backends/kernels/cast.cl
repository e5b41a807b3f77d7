/* COPY between f32 and the 16-bit float types over strided 4-D views, bit for bit as the CPU
 * (backends/cpu/cpu_kernels.h cpu_bf16_round/widen, core/dtype.c spin_f32_to_f16/spin_f16_to_f32):
 * round to nearest even, NaN kept quiet, f16 overflow to inf and subnormals. */
#include "spin_kernel.h"

#if defined(__OPENCL_VERSION__) || defined(__OPENCL_C_VERSION__)
#define CAST_F32_BITS(x) as_uint(x)
#define CAST_BITS_F32(x) as_float(x)
#define CAST_RINT(x) rint(x)
typedef uint cast_u32;
typedef ushort cast_u16;
#else
#define CAST_F32_BITS(x) __float_as_uint(x)
#define CAST_BITS_F32(x) __uint_as_float(x)
#define CAST_RINT(x) rintf(x)
typedef unsigned int cast_u32;
typedef unsigned short cast_u16;
#endif

DEVICE_FN cast_u16 cast_to_bf16(float f) {
    const cast_u32 u = CAST_F32_BITS(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (cast_u16)((u >> 16) | 0x40u); /* quiet NaN */
    return (cast_u16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

DEVICE_FN float cast_from_bf16(cast_u16 h) {
    return CAST_BITS_F32((cast_u32)h << 16);
}

DEVICE_FN cast_u16 cast_to_f16(float f) {
    const cast_u32 x = CAST_F32_BITS(f);
    const cast_u32 sign = (x >> 16) & 0x8000u, absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u)
        return (cast_u16)(sign | 0x7e00u);
    if (absx >= 0x477ff000u)
        return (cast_u16)(sign | 0x7c00u); /* overflow to inf */
    if (absx < 0x38800000u) /* subnormal or zero: the step 2^-24 scaled to 1, rounded to even */
        return (cast_u16)(sign | (cast_u32)CAST_RINT(CAST_BITS_F32(absx) * 16777216.0f));
    const cast_u32 mant = absx & 0x7fffffu, rest = mant & 0x1fffu;
    cast_u32 h = (((absx >> 23) - 127u + 15u) << 10) | (mant >> 13);
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (cast_u16)(sign | h);
}

DEVICE_FN float cast_from_f16(cast_u16 h) {
    const cast_u32 sign = (cast_u32)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    if (e == 0) /* mant * 2^-24: exact, a normal f32 */
        return CAST_BITS_F32(CAST_F32_BITS((float)mant * 5.9604644775390625e-8f) | sign);
    return CAST_BITS_F32(e == 31 ? (sign | 0x7f800000u | (mant << 13)) : (sign | ((e + 112u) << 23) | (mant << 13)));
}

#define CAST(NAME, XT, YT, EXPR)                                                                   \
    KERNEL NAME(SHAPE_ARGS, GLOBAL const XT *x, VIEW_ARGS(x), GLOBAL YT *y, VIEW_ARGS(y)) {       \
        INDEX4();                                                                                  \
        y[AT(y)] = EXPR(x[AT(x)]);                                                                 \
    }
#define CAST_SAME_(v) (v)

CAST(copy_f32_bf16, float, cast_u16, cast_to_bf16)
CAST(copy_bf16_f32, cast_u16, float, cast_from_bf16)
CAST(copy_f32_f16, float, cast_u16, cast_to_f16)
CAST(copy_f16_f32, cast_u16, float, cast_from_f16)
CAST(copy_b16, cast_u16, cast_u16, CAST_SAME_) /* bf16 -> bf16, f16 -> f16 */
