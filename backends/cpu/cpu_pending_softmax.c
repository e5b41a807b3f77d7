/* Placeholder until the softmax kernels land; this file is deleted then. */
#include "backends/cpu/cpu_kernels.h"
spin_status cpu_SOFTMAX(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "SOFTMAX: not implemented yet"); }
spin_status cpu_LOG_SOFTMAX(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "LOG_SOFTMAX: not implemented yet"); }
spin_status cpu_SOFTMAX_BACK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "SOFTMAX_BACK: not implemented yet"); }
spin_status cpu_LOG_SOFTMAX_BACK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "LOG_SOFTMAX_BACK: not implemented yet"); }
spin_status cpu_CE_ROWS(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "CE_ROWS: not implemented yet"); }
spin_status cpu_CE_ROWS_BACK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "CE_ROWS_BACK: not implemented yet"); }
spin_status cpu_ARGMAX(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "ARGMAX: not implemented yet"); }
spin_status cpu_TOPK(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, "TOPK: not implemented yet"); }
