#include "train/pref_step.h"

#include <math.h>
#include <stdlib.h>

#include "core/scope.h"
#include "train/seq_logprob.h"

static bool needs_reference(const spin_pref_loss_opts *lo) {
    return lo->type != SPIN_LOSS_SFT && !lo->reference_free;
}

spin_status spin_pref_ref_logps(spin_llama *ref, const spin_collated *c, bool average_logprob, float *chosen,
                                float *rejected) {
    int64_t b = c->batch;
    float *buf = malloc((size_t)(2 * b) * sizeof *buf);
    if (!buf)
        return spin_fail(SPIN_ERR_OOM, "reference log-probs: out of host memory");
    spin_status s;
    spin_no_grad_begin();
    spin_scope_begin();
    spin_seq_logprobs lp;
    s = spin_seq_logprob(ref, c, average_logprob, &lp);
    if (s == SPIN_OK)
        s = spin_tensor_read(lp.logps, buf, (size_t)(2 * b) * sizeof *buf);
    spin_scope_end();
    spin_no_grad_end();
    for (int64_t i = 0; s == SPIN_OK && i < b; i++) {
        chosen[i] = buf[i];
        rejected[i] = buf[b + i];
    }
    free(buf);
    return s;
}

static spin_tensor *host_vec(spin_device *dev, const float *v, int64_t n) {
    return v ? spin_from_host(dev, SPIN_F32, 1, &n, v) : NULL;
}

/* Fills m from one host read of [loss, chosen rewards B, rejected rewards B, policy logps 2B,
 * logit sums 2B]. */
static spin_status read_metrics(const spin_collated *c, spin_tensor *loss, const spin_pref_outputs *po,
                                spin_tensor *logps, spin_tensor *logit_sum, float loss_scale, int64_t vocab,
                                spin_pref_metrics *m) {
    int64_t b = c->batch, one = 1;
    spin_tensor *parts[5] = {spin_reshape(spin_detach(loss), 1, &one), po->chosen_rewards,
                             po->rejected_rewards, spin_detach(logps), logit_sum};
    for (int i = 0; i < 5; i++)
        if (!parts[i])
            return SPIN_ERR_INVALID;
    spin_tensor *all = spin_concat(parts, 5, 0);
    if (!all)
        return SPIN_ERR_INVALID;
    int64_t n = 1 + 6 * b;
    float *h = malloc((size_t)n * sizeof *h);
    if (!h)
        return spin_fail(SPIN_ERR_OOM, "metrics: out of host memory");
    spin_status s = spin_tensor_read(all, h, (size_t)n * sizeof *h);
    if (s == SPIN_OK) {
        const float *rc = h + 1, *rr = h + 1 + b, *lp = h + 1 + 2 * b, *ls = h + 1 + 4 * b;
        double sum[5] = {0};
        for (int64_t i = 0; i < b; i++) {
            sum[0] += rc[i];
            sum[1] += rr[i];
            sum[2] += rc[i] > rr[i];
            sum[3] += lp[i];
            sum[4] += lp[b + i];
        }
        double lc = 0, lr = 0;
        for (int64_t i = 0; i < b; i++) {
            lc += ls[i];
            lr += ls[b + i];
        }
        double per_side = (double)b * (double)c->len * (double)vocab;
        m->loss = h[0] / loss_scale;
        m->rewards_chosen = sum[0] / b;
        m->rewards_rejected = sum[1] / b;
        m->accuracies = sum[2] / b;
        m->margins = (sum[0] - sum[1]) / b;
        m->logps_chosen = sum[3] / b;
        m->logps_rejected = sum[4] / b;
        m->logits_chosen = per_side > 0 ? lc / per_side : 0;
        m->logits_rejected = per_side > 0 ? lr / per_side : 0;
        m->batch = b;
        int64_t tokens = 0;
        for (int64_t i = 0; i < 2 * b * c->len; i++)
            tokens += c->key_mask[i] != 0.0f;
        m->tokens = tokens;
    }
    free(h);
    return s;
}

spin_status spin_pref_forward(spin_llama *policy, const spin_pref_ref *ref, const spin_pref_probs *probs,
                              const spin_collated *c, const spin_pref_loss_opts *lo, bool average_logprob,
                              float loss_scale, spin_tensor **loss, spin_pref_metrics *m) {
    *loss = NULL;
    int64_t b = c->batch;
    bool want_ref = needs_reference(lo);
    if (want_ref && (!ref || (!ref->model && !(ref->chosen && ref->rejected))))
        return spin_fail(
            SPIN_ERR_INVALID,
            "loss_type %s needs reference log-probs: a reference model or stored opponent scores "
            "(or reference_free)",
            spin_loss_type_name(lo->type));
    float *refbuf = NULL;
    const float *rc = NULL, *rr = NULL;
    if (want_ref && ref->model) {
        refbuf = malloc((size_t)(2 * b) * sizeof *refbuf);
        if (!refbuf)
            return spin_fail(SPIN_ERR_OOM, "reference log-probs: out of host memory");
        spin_status s = spin_pref_ref_logps(ref->model, c, average_logprob, refbuf, refbuf + b);
        if (s != SPIN_OK) {
            free(refbuf);
            return s;
        }
        rc = refbuf;
        rr = refbuf + b;
    } else if (want_ref) {
        rc = ref->chosen;
        rr = ref->rejected;
    }

    spin_status s = SPIN_OK;
    spin_tensor *kept = NULL;
    spin_scope_begin();
    spin_seq_logprobs lp;
    s = spin_seq_logprob(policy, c, average_logprob, &lp);
    if (s == SPIN_OK) {
        spin_device *dev = policy->dev;
        spin_tensor *pc = spin_narrow(lp.logps, 0, 0, b), *pr = spin_narrow(lp.logps, 0, b, b);
        spin_tensor *len = host_vec(dev, c->n_response, 2 * b);
        spin_pref_inputs in = {
            .policy_chosen = pc,
            .policy_rejected = pr,
            .ref_chosen = want_ref ? host_vec(dev, rc, b) : NULL,
            .ref_rejected = want_ref ? host_vec(dev, rr, b) : NULL,
            .len_chosen = len ? spin_narrow(len, 0, 0, b) : NULL,
            .len_rejected = len ? spin_narrow(len, 0, b, b) : NULL,
            .probs_chosen = probs ? host_vec(dev, probs->chosen, b) : NULL,
            .probs_win = probs ? host_vec(dev, probs->win, b) : NULL,
            .probs_lose = probs ? host_vec(dev, probs->lose, b) : NULL,
        };
        spin_pref_outputs po;
        s = spin_pref_loss(lo, &in, &po);
        spin_tensor *scaled = s == SPIN_OK ? spin_scale(po.loss, loss_scale) : NULL;
        if (s == SPIN_OK && !scaled)
            s = SPIN_ERR_INVALID;
        if (s == SPIN_OK)
            s = read_metrics(c, scaled, &po, lp.logps, lp.logit_sum, loss_scale, policy->cfg.vocab_size, m);
        if (s == SPIN_OK)
            kept = spin_scope_keep(scaled);
    }
    spin_scope_end();
    free(refbuf);
    if (s != SPIN_OK)
        return s;
    *loss = spin_scope_adopt(kept);
    return SPIN_OK;
}
