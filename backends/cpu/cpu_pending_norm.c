/* Placeholder until the norm kernels land; this file is deleted then. */
#include "backends/cpu/cpu_kernels.h"
spin_status cpu_EMBEDDING(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "EMBEDDING: not implemented yet"); }
spin_status cpu_EMBEDDING_BACK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "EMBEDDING_BACK: not implemented yet"); }
spin_status cpu_RMSNORM(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "RMSNORM: not implemented yet"); }
spin_status cpu_RMSNORM_BACK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "RMSNORM_BACK: not implemented yet"); }
spin_status cpu_LAYERNORM(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "LAYERNORM: not implemented yet"); }
spin_status cpu_LAYERNORM_BACK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "LAYERNORM_BACK: not implemented yet"); }
spin_status cpu_ROPE(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "ROPE: not implemented yet"); }
