#include "train/sgd.h"

spin_status spin_sgd_step(spin_tensor *const *params, int n, float lr) {
    spin_status s = SPIN_OK;
    spin_no_grad_begin();
    spin_scope_begin();
    for (int i = 0; i < n && s == SPIN_OK; i++) {
        spin_tensor *g = spin_tensor_grad(params[i]);
        if (!g)
            continue;
        spin_tensor *step = spin_scale(g, lr);
        spin_tensor *upd = step ? spin_sub(params[i], step) : NULL;
        s = upd ? spin_copy_into(params[i], upd) : SPIN_ERR_OOM;
        spin_tensor_zero_grad(params[i]);
    }
    spin_scope_end();
    spin_no_grad_end();
    return s;
}
