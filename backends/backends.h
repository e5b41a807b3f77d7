/* Start-up: registers the CPU backend and the accelerator backend this build was configured with. */
#ifndef SPIN_BACKENDS_BACKENDS_H
#define SPIN_BACKENDS_BACKENDS_H

#include "core/device.h"

/* Idempotent. Returns the default device: SPIN_DEVICE (e.g. "cpu", "opencl:1") when set, else the
 * configured accelerator's device 0 when it has one, else the CPU. NULL (with spin_last_error)
 * when SPIN_DEVICE names a device that does not exist. */
spin_device *spin_init(void);

/* The accelerator backend chosen at configure time ("cpu" when none). */
const char *spin_build_backend(void);

#endif
