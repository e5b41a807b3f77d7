/* Dequantization of the ggml block formats we load (layouts as ggml-common.h / ggml-quants.c):
 *   Q4_0: { f16 d; u8 qs[16] }        y[j] = ((qs[j] & 15) - 8) * d, y[j+16] = ((qs[j] >> 4) - 8) * d
 *   Q4_1: { f16 d; f16 m; u8 qs[16] } y[j] = (qs[j] & 15) * d + m,   y[j+16] = (qs[j] >> 4) * d + m
 *   Q8_0: { f16 d; i8 qs[32] }        y[j] = qs[j] * d
 * Each product and sum is one rounded f32 operation (ISO C mode: no FMA contraction), as numpy
 * computes them in gguf.quants.dequantize, so results are bit-identical to it. */
#include <string.h>

#include "core/dtype.h"
#include "models/gguf.h"

static float half_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return spin_f16_to_f32(h);
}

spin_status spin_ggml_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    const char *name = spin_ggml_type_name(type);
    int64_t blck, bsz;
    if (!spin_ggml_type_block(type, &blck, &bsz))
        return spin_fail(SPIN_ERR_INVALID, "unknown ggml type id %u", type);
    if (n < 0 || n % blck != 0)
        return spin_fail(SPIN_ERR_INVALID, "%lld elements of %s: not a multiple of the block size %lld",
                         (long long)n, name, (long long)blck);
    switch (type) {
    case SPIN_GGML_F32: memcpy(dst, s, (size_t)n * 4); return SPIN_OK;
    case SPIN_GGML_F16:
        for (int64_t i = 0; i < n; i++)
            dst[i] = half_at(s + 2 * i);
        return SPIN_OK;
    case SPIN_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = spin_bf16_to_f32(h);
        }
        return SPIN_OK;
    case SPIN_GGML_Q8_0:
        for (int64_t b = 0; b < n / 32; b++) {
            const uint8_t *blk = s + b * 34;
            float d = half_at(blk);
            float *y = dst + b * 32;
            for (int j = 0; j < 32; j++)
                y[j] = (float)(int8_t)blk[2 + j] * d;
        }
        return SPIN_OK;
    case SPIN_GGML_Q4_0:
        for (int64_t b = 0; b < n / 32; b++) {
            const uint8_t *blk = s + b * 18;
            float d = half_at(blk);
            float *y = dst + b * 32;
            for (int j = 0; j < 16; j++) {
                uint8_t q = blk[2 + j];
                y[j] = (float)((int)(q & 15) - 8) * d;
                y[j + 16] = (float)((int)(q >> 4) - 8) * d;
            }
        }
        return SPIN_OK;
    case SPIN_GGML_Q4_1:
        for (int64_t b = 0; b < n / 32; b++) {
            const uint8_t *blk = s + b * 20;
            float d = half_at(blk), m = half_at(blk + 2);
            float *y = dst + b * 32;
            for (int j = 0; j < 16; j++) {
                uint8_t q = blk[4 + j];
                float lo = (float)(q & 15) * d, hi = (float)(q >> 4) * d;
                y[j] = lo + m;
                y[j + 16] = hi + m;
            }
        }
        return SPIN_OK;
    default:
        return spin_fail(SPIN_ERR_UNSUPPORTED,
                         "ggml type %s cannot be loaded (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1)", name);
    }
}
