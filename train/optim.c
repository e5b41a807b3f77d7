#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dispatch.h"
#include "core/scope.h"

#define STATE_NAME_MAX 48

typedef struct {
    spin_tensor *param;                /* the model weight (retained) */
    spin_tensor *master;               /* f32: param itself (another reference) or an owned f32 copy */
    spin_tensor *exp_avg, *exp_avg_sq; /* exp_avg only for AdamW; exp_avg_sq is RMSProp's square_avg */
    double weight_decay;
} slot;

typedef struct {
    char name[STATE_NAME_MAX];
    spin_tensor *t; /* borrowed from a slot */
} state_entry;

struct spin_optim {
    spin_optim_config cfg;
    int n;
    slot *slots;
    spin_tensor **grads; /* per step: each parameter's gradient as contiguous f32 (owned refs) */
    spin_tensor *acc;    /* f32 [2]: the sum of squares as hi + lo */
    spin_tensor *stat;   /* f32 [3]: norm, clip coef, finite */
    int64_t steps;
    int n_state;
    state_entry *state;
};

static const struct {
    const char *name;
    spin_optim_kind kind;
} optim_names[] = {
    {"rmsprop", SPIN_OPTIM_RMSPROP},
    {"adamw_torch", SPIN_OPTIM_ADAMW},
    {"adamw_torch_fused", SPIN_OPTIM_ADAMW},
    {"adamw_hf", SPIN_OPTIM_ADAMW},
    {"adamw", SPIN_OPTIM_ADAMW},
};

spin_status spin_optim_kind_from_name(const char *name, spin_optim_kind *out) {
    for (size_t i = 0; name && i < sizeof optim_names / sizeof optim_names[0]; i++)
        if (!strcmp(name, optim_names[i].name)) {
            *out = optim_names[i].kind;
            return SPIN_OK;
        }
    return spin_fail(SPIN_ERR_INVALID,
                     "optim \"%s\" is not supported; supported: rmsprop, adamw_torch, adamw_torch_fused, "
                     "adamw_hf, adamw",
                     name ? name : "(null)");
}

const char *spin_optim_kind_name(spin_optim_kind k) {
    return k == SPIN_OPTIM_RMSPROP ? "rmsprop" : k == SPIN_OPTIM_ADAMW ? "adamw" : "?";
}

spin_optim_config spin_optim_defaults(spin_optim_kind k) {
    return (spin_optim_config){.kind = k,
                               .alpha = 0.99,
                               .eps = 1e-8,
                               .beta1 = 0.9,
                               .beta2 = 0.999,
                               .weight_decay = 0.0,
                               .max_grad_norm = 1.0};
}

/* torch's constructor checks (ValueError there). */
static spin_status check_config(const spin_optim_config *c) {
    if (c->kind != SPIN_OPTIM_RMSPROP && c->kind != SPIN_OPTIM_ADAMW)
        return spin_fail(SPIN_ERR_INVALID, "optim: unknown kind %d", (int)c->kind);
    if (!(c->eps >= 0))
        return spin_fail(SPIN_ERR_INVALID, "optim: eps %g < 0", c->eps);
    if (!(c->weight_decay >= 0))
        return spin_fail(SPIN_ERR_INVALID, "optim: weight_decay %g < 0", c->weight_decay);
    if (c->kind == SPIN_OPTIM_RMSPROP && !(c->alpha >= 0))
        return spin_fail(SPIN_ERR_INVALID, "optim: rmsprop alpha %g < 0", c->alpha);
    if (c->kind == SPIN_OPTIM_ADAMW && !(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1))
        return spin_fail(SPIN_ERR_INVALID, "optim: adamw betas (%g, %g) outside [0, 1)", c->beta1, c->beta2);
    if (isnan(c->max_grad_norm))
        return spin_fail(SPIN_ERR_INVALID, "optim: max_grad_norm is NaN");
    return SPIN_OK;
}

static void add_state(spin_optim *o, spin_tensor *t, const char *fmt, int i) {
    state_entry *e = &o->state[o->n_state++];
    snprintf(e->name, sizeof e->name, fmt, i);
    e->t = t;
}

/* Creates slot i's tensors; called inside a manual frame with grad mode off. */
static spin_status make_slot(spin_optim *o, int i, spin_tensor *p) {
    slot *s = &o->slots[i];
    spin_dtype dt = spin_tensor_dtype(p);
    if (dt != SPIN_F32 && dt != SPIN_BF16 && dt != SPIN_F16)
        return spin_fail(SPIN_ERR_INVALID, "optim: parameter %d (%s) is %s, not a float type", i,
                         spin_tensor_name(p), spin_dtype_name(dt));
    if (!spin_tensor_is_contiguous(p))
        return spin_fail(SPIN_ERR_INVALID, "optim: parameter %d (%s) is not contiguous", i,
                         spin_tensor_name(p));
    s->param = spin_tensor_retain(p);
    s->master = dt == SPIN_F32 ? spin_tensor_retain(p) : spin_cast(p, SPIN_F32);
    spin_device *dev = spin_tensor_device(p);
    int nd = spin_tensor_ndim(p);
    const int64_t *sh = spin_tensor_shape(p);
    s->exp_avg_sq = spin_zeros(dev, SPIN_F32, nd, sh);
    if (o->cfg.kind == SPIN_OPTIM_ADAMW)
        s->exp_avg = spin_zeros(dev, SPIN_F32, nd, sh);
    if (!s->master || !s->exp_avg_sq || (o->cfg.kind == SPIN_OPTIM_ADAMW && !s->exp_avg))
        return SPIN_ERR_OOM;
    s->weight_decay = o->cfg.weight_decay;
    if (s->master != s->param)
        add_state(o, s->master, "master.%d", i);
    if (o->cfg.kind == SPIN_OPTIM_ADAMW) {
        add_state(o, s->exp_avg, "state.%d.exp_avg", i);
        add_state(o, s->exp_avg_sq, "state.%d.exp_avg_sq", i);
    } else {
        add_state(o, s->exp_avg_sq, "state.%d.square_avg", i);
    }
    return SPIN_OK;
}

spin_optim *spin_optim_new(const spin_optim_config *c, spin_tensor *const *params, int n) {
    if (!c || n < 0 || (n > 0 && !params)) {
        spin_fail(SPIN_ERR_INVALID, "optim: no config or parameter list");
        return NULL;
    }
    if (check_config(c) != SPIN_OK)
        return NULL;
    for (int i = 0; i < n; i++)
        if (!params[i]) {
            spin_fail(SPIN_ERR_INVALID, "optim: parameter %d is NULL", i);
            return NULL;
        }
    spin_optim *o = calloc(1, sizeof *o);
    if (o) {
        o->slots = calloc((size_t)n + 1, sizeof *o->slots);
        o->grads = calloc((size_t)n + 1, sizeof *o->grads);
        o->state = calloc(3 * (size_t)n + 1, sizeof *o->state);
    }
    if (!o || !o->slots || !o->grads || !o->state) {
        spin_optim_free(o);
        spin_fail(SPIN_ERR_OOM, "optim: host allocation for %d parameters", n);
        return NULL;
    }
    o->cfg = *c;
    o->n = n;
    spin_status s = SPIN_OK;
    spin_no_grad_begin();
    spin_scope_manual_begin();
    for (int i = 0; i < n && s == SPIN_OK; i++)
        s = make_slot(o, i, params[i]);
    if (s == SPIN_OK) {
        spin_device *dev = n > 0 ? spin_tensor_device(params[0]) : spin_cpu_device();
        o->acc = spin_tensor_new(dev, SPIN_F32, 1, (int64_t[]){2});
        o->stat = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){3});
        if (!o->acc || !o->stat)
            s = SPIN_ERR_OOM;
    }
    spin_scope_manual_end();
    spin_no_grad_end();
    if (s != SPIN_OK) {
        spin_optim_free(o);
        return NULL;
    }
    return o;
}

void spin_optim_free(spin_optim *o) {
    if (!o)
        return;
    for (int i = 0; o->slots && i < o->n; i++) {
        spin_tensor_release(o->slots[i].param);
        spin_tensor_release(o->slots[i].master);
        spin_tensor_release(o->slots[i].exp_avg);
        spin_tensor_release(o->slots[i].exp_avg_sq);
    }
    spin_tensor_release(o->acc);
    spin_tensor_release(o->stat);
    free(o->slots);
    free(o->grads);
    free(o->state);
    free(o);
}

spin_status spin_optim_set_weight_decay(spin_optim *o, int i, double weight_decay) {
    if (i < 0 || i >= o->n)
        return spin_fail(SPIN_ERR_INVALID, "optim: parameter index %d outside [0, %d)", i, o->n);
    if (!(weight_decay >= 0))
        return spin_fail(SPIN_ERR_INVALID, "optim: weight_decay %g for parameter %d < 0", weight_decay, i);
    o->slots[i].weight_decay = weight_decay;
    return SPIN_OK;
}

/* Parameter i's gradient as contiguous f32 (an owned reference; the gradient itself when it already
 * is), NULL without a gradient or on failure (*s set). */
static spin_tensor *grad_f32(spin_optim *o, int i, spin_status *s) {
    spin_tensor *g = spin_tensor_grad(o->slots[i].param);
    if (!g)
        return NULL;
    spin_tensor *r = spin_tensor_dtype(g) != SPIN_F32 ? spin_cast(g, SPIN_F32)
                     : !spin_tensor_is_contiguous(g)  ? spin_contiguous(g)
                                                      : spin_tensor_retain(g);
    if (!r)
        *s = SPIN_ERR_OOM;
    return r;
}

static spin_status launch_step(spin_optim *o, int i, double lr) {
    slot *sl = &o->slots[i];
    const spin_optim_config *c = &o->cfg;
    spin_tensor *in[2] = {o->grads[i], o->stat};
    spin_tensor *out[4];
    int n_out = 0;
    spin_kparams p = {0};
    spin_kernel k;
    out[n_out++] = sl->master;
    if (c->kind == SPIN_OPTIM_RMSPROP) {
        k = SPIN_K_RMSPROP_STEP;
        out[n_out++] = sl->exp_avg_sq;
        p.f[0] = (float)-lr;
        p.f[1] = (float)c->alpha;
        p.f[2] = (float)(1.0 - c->alpha);
        p.f[3] = (float)c->eps;
        p.f[4] = (float)sl->weight_decay;
    } else {
        k = SPIN_K_ADAMW_STEP;
        out[n_out++] = sl->exp_avg;
        out[n_out++] = sl->exp_avg_sq;
        /* torch computes these on the host in double (Python floats) from the step count the
         * update will have */
        double t = (double)(o->steps + 1);
        double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
        p.f[0] = (float)(1.0 - lr * sl->weight_decay);
        p.f[1] = (float)(1.0 - c->beta1);
        p.f[2] = (float)c->beta2;
        p.f[3] = (float)(1.0 - c->beta2);
        p.f[4] = (float)-(lr / bc1);
        p.f[5] = (float)sqrt(bc2);
        p.f[6] = (float)c->eps;
    }
    if (sl->master != sl->param)
        out[n_out++] = sl->param;
    return spin_launch(k, 2, in, n_out, out, &p);
}

/* The host reads exactly once: every call below except spin_tensor_read is either a kernel launch
 * (spin_launch queues work and returns), a tensor made from a launch (spin_cast / spin_contiguous
 * of a gradient) or a reference release (spin_tensor_zero_grad), and none of them waits for the
 * device; the clip coefficient and the finite flag are consumed on the device by the step kernels,
 * so only the stat's 12 bytes come back, once, after the last launch. (On a backend that lacks
 * these kernels the dispatcher's CPU fallback moves each launch's buffers itself.) */
spin_status spin_optim_step(spin_optim *o, double lr, spin_optim_result *res) {
    if (!o || !res)
        return spin_fail(SPIN_ERR_INVALID, "optim_step: NULL optimizer or result");
    if (!(lr >= 0))
        return spin_fail(SPIN_ERR_INVALID, "optim_step: learning rate %g < 0", lr);
    *res = (spin_optim_result){0.0f, true};
    spin_status s = SPIN_OK;
    int active = 0;
    spin_no_grad_begin();
    spin_scope_manual_begin();
    for (int i = 0; i < o->n && s == SPIN_OK; i++) {
        o->grads[i] = grad_f32(o, i, &s);
        active += o->grads[i] != NULL;
    }
    if (s == SPIN_OK && active > 0) {
        s = spin_fill_(o->acc, 0.0f);
        for (int i = 0; i < o->n && s == SPIN_OK; i++)
            if (o->grads[i])
                s = spin_launch(SPIN_K_GRAD_SUMSQ, 1, &o->grads[i], 1, &o->acc, NULL);
        spin_kparams cp = {.f = {(float)o->cfg.max_grad_norm}};
        if (s == SPIN_OK)
            s = spin_launch(SPIN_K_GRAD_CLIP_STAT, 1, &o->acc, 1, &o->stat, &cp);
        for (int i = 0; i < o->n && s == SPIN_OK; i++)
            if (o->grads[i])
                s = launch_step(o, i, lr);
        float stat[3];
        if (s == SPIN_OK)
            s = spin_tensor_read(o->stat, stat, sizeof stat);
        if (s == SPIN_OK) {
            res->grad_norm = stat[0];
            res->finite = stat[2] != 0.0f;
            o->steps += res->finite;
        }
    }
    for (int i = 0; i < o->n; i++) {
        spin_tensor_release(o->grads[i]);
        o->grads[i] = NULL;
        if (s == SPIN_OK)
            spin_tensor_zero_grad(o->slots[i].param);
    }
    spin_scope_manual_end();
    spin_no_grad_end();
    return s;
}

int64_t spin_optim_steps(const spin_optim *o) {
    return o->steps;
}

void spin_optim_set_steps(spin_optim *o, int64_t steps) {
    o->steps = steps;
}

int spin_optim_state_count(const spin_optim *o) {
    return o->n_state;
}

spin_status spin_optim_state_at(const spin_optim *o, int i, const char **name, spin_tensor **t) {
    if (i < 0 || i >= o->n_state)
        return spin_fail(SPIN_ERR_INVALID, "optim: state index %d outside [0, %d)", i, o->n_state);
    if (name)
        *name = o->state[i].name;
    if (t)
        *t = o->state[i].t;
    return SPIN_OK;
}

spin_status spin_optim_state_load(spin_optim *o, const char *name, spin_tensor *src) {
    for (int i = 0; i < o->n_state; i++) {
        if (strcmp(o->state[i].name, name))
            continue;
        spin_tensor *dst = o->state[i].t;
        if (!spin_tensor_same_shape(dst, src)) {
            char a[64], b[64];
            return spin_fail(SPIN_ERR_INVALID, "optim state %s: checkpoint shape %s, optimizer has %s", name,
                             spin_shape_str(src, a, sizeof a), spin_shape_str(dst, b, sizeof b));
        }
        spin_dtype dt = spin_tensor_dtype(src);
        if (dt != SPIN_F32 && dt != SPIN_BF16 && dt != SPIN_F16)
            return spin_fail(SPIN_ERR_INVALID, "optim state %s: checkpoint dtype %s is not a float type",
                             name, spin_dtype_name(dt));
        spin_no_grad_begin();
        spin_status s = spin_copy_into(dst, src);
        spin_no_grad_end();
        return s;
    }
    return spin_fail(SPIN_ERR_INVALID, "optim state %s: no such tensor in this %s optimizer of %d parameters",
                     name, spin_optim_kind_name(o->cfg.kind), o->n);
}
