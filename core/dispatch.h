/* Runs a kernel on the device that holds the tensors. When that device's backend cannot run it
 * for these dtypes, the CPU backend runs it on copies (logged once per kernel, counted per device). */
#ifndef SPIN_CORE_DISPATCH_H
#define SPIN_CORE_DISPATCH_H

#include "core/backend.h"
#include "core/tensor.h"

spin_status spin_launch(spin_kernel k, int n_in, spin_tensor *const *in, int n_out, spin_tensor *const *out,
                        const spin_kparams *p);

/* Total CPU fallbacks on a device since start. */
uint64_t spin_fallback_total(const spin_device *dev);

#endif
