/* Placeholder until the attention kernels land; this file is deleted then. */
#include "backends/cpu/cpu_kernels.h"
spin_status cpu_ATTENTION(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "ATTENTION: not implemented yet"); }
spin_status cpu_ATTENTION_BACK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "ATTENTION_BACK: not implemented yet"); }
