/* Kernels whose CPU implementation is being written (this file is removed when they land). */
#include "backends/cpu/cpu_kernels.h"
#define PENDING(name) \
    spin_status cpu_##name(struct spin_device *dev, const spin_kcall *c) { (void)dev; (void)c; return spin_fail(SPIN_ERR_UNSUPPORTED, #name " pending"); }
PENDING(SOFTMAX) PENDING(LOG_SOFTMAX) PENDING(SOFTMAX_BACK) PENDING(LOG_SOFTMAX_BACK)
PENDING(EMBEDDING) PENDING(EMBEDDING_BACK) PENDING(RMSNORM) PENDING(RMSNORM_BACK)
PENDING(LAYERNORM) PENDING(LAYERNORM_BACK) PENDING(ROPE) PENDING(ATTENTION) PENDING(ATTENTION_BACK)
PENDING(CE_ROWS) PENDING(CE_ROWS_BACK) PENDING(ARGMAX) PENDING(TOPK)
