/* Element types. f16/bf16 are storage types (compute is f32); i32 carries token ids and positions.
 * Append only: the numeric values are written into checkpoints. */
#ifndef SPIN_CORE_DTYPE_H
#define SPIN_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SPIN_F32 = 0, SPIN_F16 = 1, SPIN_BF16 = 2, SPIN_I32 = 3, SPIN_DTYPE_COUNT } spin_dtype;

size_t spin_dtype_size(spin_dtype t);
const char *spin_dtype_name(spin_dtype t);

/* Round-to-nearest-even conversions, NaN preserved. */
uint16_t spin_f32_to_bf16(float f);
float spin_bf16_to_f32(uint16_t h);
uint16_t spin_f32_to_f16(float f);
float spin_f16_to_f32(uint16_t h);

/* Element i of a buffer of type t, as float (and back). */
float spin_dtype_load(spin_dtype t, const void *base, size_t i);
void spin_dtype_store(spin_dtype t, void *base, size_t i, float v);

#endif
