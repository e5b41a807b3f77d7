/* Preference losses composed from ops (see train/pref_loss.h for the formulas). */
#include "train/pref_loss.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/scope.h"

static const char *const loss_names[SPIN_LOSS_COUNT] = {
    [SPIN_LOSS_SIGMOID] = "sigmoid",     [SPIN_LOSS_ROBUST] = "robust",
    [SPIN_LOSS_HINGE] = "hinge",         [SPIN_LOSS_IPO] = "ipo",
    [SPIN_LOSS_SPPO] = "sppo",           [SPIN_LOSS_SPPO_SINGLE] = "sppo_single",
    [SPIN_LOSS_SPPO_HARD] = "sppo_hard", [SPIN_LOSS_SFT] = "sft",
};

spin_status spin_loss_type_from_name(const char *name, spin_loss_type *out) {
    for (int i = 0; name && i < SPIN_LOSS_COUNT; i++) {
        if (!strcmp(name, loss_names[i])) {
            *out = (spin_loss_type)i;
            return SPIN_OK;
        }
    }
    char valid[160] = "";
    for (int i = 0; i < SPIN_LOSS_COUNT; i++) {
        size_t len = strlen(valid);
        snprintf(valid + len, sizeof valid - len, "%s%s", i ? ", " : "", loss_names[i]);
    }
    return spin_fail(SPIN_ERR_INVALID, "pref_loss: unknown loss type '%s' (valid: %s)",
                     name ? name : "(null)", valid);
}

const char *spin_loss_type_name(spin_loss_type t) {
    return (int)t >= 0 && t < SPIN_LOSS_COUNT ? loss_names[t] : "unknown";
}

/* ---- validation ---- */

static spin_status check_opts(const spin_pref_loss_opts *o) {
    if ((int)o->type < 0 || o->type >= SPIN_LOSS_COUNT)
        return spin_fail(SPIN_ERR_INVALID, "pref_loss: type = %d is not a spin_loss_type", (int)o->type);
    const char *name = loss_names[o->type];
    if (!(o->beta > 0) || isinf(o->beta))
        return spin_fail(SPIN_ERR_INVALID, "pref_loss: beta = %g for loss '%s' (must be finite and > 0)",
                         (double)o->beta, name);
    /* NaN fails every comparison, so each test is written to reject it. */
    float ls = o->label_smoothing;
    if (o->type == SPIN_LOSS_SIGMOID && !(ls >= 0 && ls < 1))
        return spin_fail(SPIN_ERR_INVALID,
                         "pref_loss: label_smoothing = %g for loss 'sigmoid' (must be in [0, 1))",
                         (double)ls);
    /* 1 - 2 ls divides the robust loss. */
    if (o->type == SPIN_LOSS_ROBUST && !(ls >= 0 && ls < 0.5f))
        return spin_fail(SPIN_ERR_INVALID,
                         "pref_loss: label_smoothing = %g for loss 'robust' (must be in [0, 0.5))",
                         (double)ls);
    if (o->type != SPIN_LOSS_SIGMOID && o->type != SPIN_LOSS_ROBUST && ls != 0)
        return spin_fail(
            SPIN_ERR_INVALID,
            "pref_loss: label_smoothing = %g for loss '%s' (only sigmoid and robust use it; must be 0)",
            (double)ls, name);
    return SPIN_OK;
}

/* One input the loss needs: present, f32 [B] on dev. */
static spin_status check_input(const spin_tensor *t, const char *field, const char *loss, int64_t B,
                               spin_device *dev) {
    char sh[64];
    if (!t)
        return spin_fail(SPIN_ERR_INVALID, "pref_loss: loss '%s' needs %s (f32 [%lld]), got NULL", loss,
                         field, (long long)B);
    if (spin_tensor_dtype(t) != SPIN_F32 || spin_tensor_ndim(t) != 1 || spin_tensor_dim(t, 0) != B)
        return spin_fail(
            SPIN_ERR_INVALID, "pref_loss: %s is %s %s, expected f32 [%lld] (the length of policy_chosen)",
            field, spin_dtype_name(spin_tensor_dtype(t)), spin_shape_str(t, sh, sizeof sh), (long long)B);
    if (spin_tensor_device(t) != dev)
        return spin_fail(SPIN_ERR_INVALID, "pref_loss: %s is on another device than policy_chosen", field);
    return SPIN_OK;
}

static spin_status check_inputs(const spin_pref_loss_opts *o, const spin_pref_inputs *in) {
    const char *loss = loss_names[o->type];
    const spin_tensor *pc = in->policy_chosen;
    if (!pc)
        return spin_fail(SPIN_ERR_INVALID, "pref_loss: loss '%s' needs policy_chosen (f32 [B]), got NULL",
                         loss);
    int64_t B = spin_tensor_ndim(pc) == 1 ? spin_tensor_dim(pc, 0) : -1;
    if (B < 1) {
        char sh[64];
        return spin_fail(SPIN_ERR_INVALID, "pref_loss: policy_chosen is %s, expected [B] with B >= 1",
                         spin_shape_str(pc, sh, sizeof sh));
    }
    spin_device *dev = spin_tensor_device(pc);
    const bool ipo = o->type == SPIN_LOSS_IPO;
    const struct {
        const spin_tensor *t;
        const char *field;
        bool needed;
    } want[] = {
        {pc, "policy_chosen", true},
        {in->policy_rejected, "policy_rejected", true},
        {in->ref_chosen, "ref_chosen", !o->reference_free},
        {in->ref_rejected, "ref_rejected", !o->reference_free},
        {in->len_chosen, "len_chosen", ipo || o->type == SPIN_LOSS_SFT},
        {in->len_rejected, "len_rejected", ipo},
        {in->probs_win, "probs_win", o->type == SPIN_LOSS_SPPO},
        {in->probs_lose, "probs_lose", o->type == SPIN_LOSS_SPPO},
        {in->probs_chosen, "probs_chosen", o->type == SPIN_LOSS_SPPO_SINGLE},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (want[i].needed)
            SPIN_TRY(check_input(want[i].t, want[i].field, loss, B, dev));
    /* A reference that requires grad would send gradients into the frozen opponent model. */
    if (!o->reference_free &&
        (spin_tensor_requires_grad(in->ref_chosen) || spin_tensor_requires_grad(in->ref_rejected)))
        return spin_fail(SPIN_ERR_INVALID,
                         "pref_loss: %s requires grad (reference log-probs must come from a "
                         "no-grad forward)",
                         spin_tensor_requires_grad(in->ref_chosen) ? "ref_chosen" : "ref_rejected");
    return SPIN_OK;
}

/* ---- NULL-propagating op wrappers: the build runs in a collecting scope, so a failed op only needs
 * to stop the chain; the scope frees whatever was made. ---- */

static spin_tensor *sub_(spin_tensor *a, spin_tensor *b) {
    return a && b ? spin_sub(a, b) : NULL;
}
static spin_tensor *add_(spin_tensor *a, spin_tensor *b) {
    return a && b ? spin_add(a, b) : NULL;
}
static spin_tensor *div_(spin_tensor *a, spin_tensor *b) {
    return a && b ? spin_div(a, b) : NULL;
}
static spin_tensor *affine_(spin_tensor *x, float s, float b) {
    return x ? spin_affine(x, s, b) : NULL;
}
static spin_tensor *scale_(spin_tensor *x, float s) {
    return x ? spin_scale(x, s) : NULL;
}
static spin_tensor *square_(spin_tensor *x) {
    return x ? spin_mul(x, x) : NULL;
}
static spin_tensor *logsigmoid_(spin_tensor *x) {
    return x ? spin_logsigmoid(x) : NULL;
}
static spin_tensor *relu_(spin_tensor *x) {
    return x ? spin_relu(x) : NULL;
}

/* −w1·logσ(z) − w2·logσ(−z); the second term is skipped when w2 = 0 (plain DPO/SPIN). */
static spin_tensor *two_sided_logistic(spin_tensor *z, float w1, float w2) {
    spin_tensor *l = scale_(logsigmoid_(z), -w1);
    if (w2 == 0)
        return l;
    return add_(l, scale_(logsigmoid_(scale_(z, -1)), -w2));
}

/* The per-example losses of the pair kinds, from a = πc − rc and b = πr − rr (ipo: already
 * divided by the lengths). */
static spin_tensor *pair_losses(const spin_pref_loss_opts *o, const spin_pref_inputs *in, spin_tensor *a,
                                spin_tensor *b) {
    const float beta = o->beta, ls = o->label_smoothing;
    switch (o->type) {
    case SPIN_LOSS_SIGMOID: return two_sided_logistic(scale_(sub_(a, b), beta), 1 - ls, ls);
    case SPIN_LOSS_ROBUST:
        return two_sided_logistic(scale_(sub_(a, b), beta), (1 - ls) / (1 - 2 * ls), -ls / (1 - 2 * ls));
    case SPIN_LOSS_HINGE: return relu_(affine_(sub_(a, b), -beta, 1));
    case SPIN_LOSS_IPO: return square_(affine_(sub_(a, b), 1, -1 / (2 * beta)));
    /* uclaml/SPPO sppo/trainer.py dpo_loss (read at 2c5eb7f; spin-reference §3.1 cites lines
     * 824-919 at 5e61c4e): loss_w = (logits_w - (1 / self.beta)*(chosen_probs_win - 0.5)) ** 2,
     * loss_l likewise with chosen_probs_lose, `losses = (loss_w + loss_l)/2`, and the batch loss is
     * losses.mean() (get_batch_loss_metrics). */
    case SPIN_LOSS_SPPO: {
        spin_tensor *ew = sub_(a, affine_(in->probs_win, 1 / beta, -0.5f / beta));
        spin_tensor *el = sub_(b, affine_(in->probs_lose, 1 / beta, -0.5f / beta));
        return scale_(add_(square_(ew), square_(el)), 0.5f);
    }
    /* Same source: loss_w = (logits_w - (1/beta)*(chosen_probs - 0.5))**2,
     * loss_l = (logits_l + (1/beta)*(chosen_probs - 0.5))**2, losses = (loss_w + loss_l)/2. */
    case SPIN_LOSS_SPPO_SINGLE: {
        spin_tensor *target = affine_(in->probs_chosen, 1 / beta, -0.5f / beta);
        return scale_(add_(square_(sub_(a, target)), square_(add_(b, target))), 0.5f);
    }
    /* TRL 0.12.2 dpo_trainer.py dpo_loss: `losses = (a - 0.5 / self.beta) ** 2 + (b + 0.5 / self.beta) ** 2`,
     * no ½ (it is 2x sppo_single at P = 1). */
    case SPIN_LOSS_SPPO_HARD:
        return add_(square_(affine_(a, 1, -0.5f / beta)), square_(affine_(b, 1, 0.5f / beta)));
    default: return NULL;
    }
}

/* β·x with no graph and requires_grad off. */
static spin_tensor *reward(spin_tensor *x, float beta) {
    spin_no_grad_begin();
    spin_tensor *r = scale_(x, beta);
    spin_no_grad_end();
    return r;
}

spin_status spin_pref_loss(const spin_pref_loss_opts *o, const spin_pref_inputs *in, spin_pref_outputs *out) {
    *out = (spin_pref_outputs){0};
    SPIN_TRY(check_opts(o));
    SPIN_TRY(check_inputs(o, in));

    spin_scope_begin();
    spin_tensor *a = o->reference_free ? in->policy_chosen : sub_(in->policy_chosen, in->ref_chosen);
    spin_tensor *b = o->reference_free ? in->policy_rejected : sub_(in->policy_rejected, in->ref_rejected);
    spin_tensor *loss = NULL, *losses = NULL;
    if (o->type == SPIN_LOSS_SFT) {
        losses = scale_(div_(in->policy_chosen, in->len_chosen), -1);
        /* Token mean over the whole batch, not the mean of per-example means. */
        loss = scale_(div_(spin_sum_all(in->policy_chosen), spin_sum_all(in->len_chosen)), -1);
    } else {
        /* TRL 0.12 normalises every logp (policy and ref) by its completion length for ipo, in
         * concatenated_forward; (π − r)/|y| is the same difference. */
        if (o->type == SPIN_LOSS_IPO) {
            a = div_(a, in->len_chosen);
            b = div_(b, in->len_rejected);
        }
        losses = pair_losses(o, in, a, b);
        loss = losses ? spin_mean_all(losses) : NULL;
    }
    spin_tensor *rc = reward(a, o->beta), *rr = reward(b, o->beta);
    spin_status s = loss && losses && rc && rr ? SPIN_OK : SPIN_ERR_OOM;
    if (s == SPIN_OK) {
        out->loss = spin_scope_keep(loss);
        out->losses = spin_scope_keep(losses);
        out->chosen_rewards = spin_scope_keep(rc);
        out->rejected_rewards = spin_scope_keep(rr);
    }
    spin_scope_end();
    spin_scope_adopt(out->loss);
    spin_scope_adopt(out->losses);
    spin_scope_adopt(out->chosen_rewards);
    spin_scope_adopt(out->rejected_rewards);
    return s;
}
