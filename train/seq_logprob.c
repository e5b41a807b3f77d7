#include "train/seq_logprob.h"

#include <stdlib.h>

#include "core/scope.h"

spin_status spin_seq_logprob(spin_llama *m, const spin_collated *c, bool average, spin_seq_logprobs *out) {
    out->logps = out->logit_sum = NULL;
    int64_t rows = 2 * c->batch, t = c->len, n = rows * t;
    int32_t *targets = malloc((size_t)(n > 0 ? n : 1) * sizeof *targets);
    if (!targets)
        return spin_fail(SPIN_ERR_OOM, "seq_logprob: out of host memory for %lld targets", (long long)n);
    spin_llama_shift_labels(c->labels, rows, t, -100, targets);

    spin_status s = SPIN_OK;
    spin_tensor *logps = NULL, *lsum = NULL;
    spin_scope_begin();
    int64_t shape[2] = {rows, t};
    spin_tensor *ids = spin_from_host(m->dev, SPIN_I32, 2, shape, c->ids);
    spin_tensor *mask = spin_from_host(m->dev, SPIN_F32, 2, shape, c->key_mask);
    spin_tensor *tg = spin_from_host(m->dev, SPIN_I32, 1, &n, targets);
    spin_tensor *hidden = ids && mask && tg ? spin_llama_forward(m, ids, NULL, mask, NULL) : NULL;
    spin_tensor *logit_rows = NULL;
    spin_tensor *tok = hidden ? spin_llama_logprob(m, hidden, tg, -100, &logit_rows, NULL) : NULL;
    spin_tensor *sum = tok ? spin_sum(spin_reshape(tok, 2, shape), 1, false) : NULL;
    if (sum && average) {
        spin_tensor *cnt = spin_from_host(m->dev, SPIN_F32, 1, &rows, c->n_response);
        /* max(count, 1): a row whose response was cut away entirely averages to 0, not NaN */
        sum = cnt ? spin_div(sum, spin_clamp(cnt, 1.0f, 1e30f)) : NULL;
    }
    spin_tensor *ls = NULL;
    if (sum && logit_rows) {
        spin_no_grad_begin();
        ls = spin_sum(spin_reshape(logit_rows, 2, shape), 1, false);
        spin_no_grad_end();
    }
    if (sum && ls) {
        logps = spin_scope_keep(sum);
        lsum = spin_scope_keep(ls);
    } else {
        s = SPIN_ERR_INVALID;
    }
    spin_scope_end();
    free(targets);
    if (s != SPIN_OK)
        return spin_last_error()[0] ? SPIN_ERR_INVALID : spin_fail(SPIN_ERR_INVALID, "seq_logprob failed");
    out->logps = spin_scope_adopt(logps);
    out->logit_sum = spin_scope_adopt(lsum);
    return SPIN_OK;
}
