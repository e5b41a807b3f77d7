#ifndef SPIN_BACKENDS_CPU_BACKEND_H
#define SPIN_BACKENDS_CPU_BACKEND_H

#include "core/backend.h"

/* The reference backend: every kernel, f32 compute, OpenMP + BLAS. */
const spin_backend *spin_cpu_backend(void);

#endif
