/* The shape rules of the ATTENTION and ATTENTION_BACK kernels (core/kernels.h), checked once for the
 * CPU reference and every device backend: the same input fails the same way everywhere. */
#ifndef SPIN_BACKENDS_CPU_ATTN_SHAPE_H
#define SPIN_BACKENDS_CPU_ATTN_SHAPE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"

typedef struct {
    int64_t B, Hq, Hkv, Tq, Tk, D;
} spin_attn_shape;

/* Whether v is dense row-major (size-1 dims may have any stride). */
bool spin_view_dense(const spin_view *v);

/* q [B,Hq,Tq,D] and k [B,Hkv,Tk,D] 4-D with Hq a multiple of Hkv, qpos (input qpos_slot) 2-D, every
 * input and output dense; the shapes go to *s. The ops layer validated them already: this guards
 * the kernels against another caller. SPIN_ERR_INVALID naming `name` otherwise. */
spin_status spin_attn_shape_check(const spin_kcall *c, int qpos_slot, const char *name, spin_attn_shape *s);

#endif
