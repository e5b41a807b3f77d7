#include "backends/cpu/attn_shape.h"

bool spin_view_dense(const spin_view *v) {
    int64_t s = 1;
    for (int i = v->ndim - 1; i >= 0; i--) {
        if (v->shape[i] != 1 && v->stride[i] != s)
            return false;
        s *= v->shape[i];
    }
    return true;
}

spin_status spin_attn_shape_check(const spin_kcall *c, int qpos_slot, const char *name, spin_attn_shape *s) {
    const spin_view *q = &c->in[0], *k = &c->in[1];
    if (q->ndim != 4 || k->ndim != 4 || c->in[qpos_slot].ndim != 2)
        return spin_fail(SPIN_ERR_INVALID, "%s: q and k must be 4-D and qpos 2-D", name);
    for (int i = 0; i < c->n_in; i++)
        if (!spin_view_dense(&c->in[i]))
            return spin_fail(SPIN_ERR_INVALID, "%s: input %d is not contiguous", name, i);
    for (int i = 0; i < c->n_out; i++)
        if (!spin_view_dense(&c->out[i]))
            return spin_fail(SPIN_ERR_INVALID, "%s: output %d is not contiguous", name, i);
    *s = (spin_attn_shape){.B = q->shape[0],
                           .Hq = q->shape[1],
                           .Tq = q->shape[2],
                           .D = q->shape[3],
                           .Hkv = k->shape[1],
                           .Tk = k->shape[2]};
    if (s->Hkv <= 0 || s->Hq % s->Hkv != 0 || k->shape[0] != s->B || k->shape[3] != s->D)
        return spin_fail(SPIN_ERR_INVALID, "%s: q and k shapes disagree", name);
    return SPIN_OK;
}
