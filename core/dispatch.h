/* Runs a kernel on the device that holds the tensors. When that device's backend cannot run it
 * for these dtypes, the CPU backend runs it on copies (logged once per kernel, counted per device).
 * A CPU kernel that exists only in f32 runs on bf16 / f16 tensors through f32 copies: inputs widened
 * exactly, outputs rounded to nearest even (counted per device in widened[]), so every kernel
 * computes and accumulates in f32 whatever the storage type (docs/training.md, Mixed precision). */
#ifndef SPIN_CORE_DISPATCH_H
#define SPIN_CORE_DISPATCH_H

#include "core/backend.h"
#include "core/tensor.h"

spin_status spin_launch(spin_kernel k, int n_in, spin_tensor *const *in, int n_out, spin_tensor *const *out,
                        const spin_kparams *p);

/* Total CPU fallbacks on a device since start. */
uint64_t spin_fallback_total(const spin_device *dev);
/* Total kernels run through f32 copies of bf16/f16 tensors on a device since start. */
uint64_t spin_widened_total(const spin_device *dev);

#endif
