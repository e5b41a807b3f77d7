/* Why the tolerances (parity_step.h): both devices compute in f32 with different summation orders
 * (CLBlast vs OpenBLAS GEMM blocking, work-group vs OpenMP reductions), so results agree to a few
 * f32 ulps amplified by the depth of the graph. Measured on PoCL: loss 2e-7, gradients <= 8e-7.
 * RMSProp's first update is lr * g / (sqrt(1 - alpha) |g| + eps): about 10 lr * sign(g) whatever
 * |g|, so elements whose gradient is a millionth of the largest (where f32 cancellation leaves a
 * relative error of ~1e-2 between the devices) move as much as the large ones, and near
 * |g| ~ eps / sqrt(1 - alpha) that relative error passes into the update with a factor up to 1/3.
 * Measured: update 6e-5 (25 such elements of 40k), parameters after the step 5e-6. The bounds
 * leave >= 10x room for rounding and stay far below a real mistake (a wrong mask, scale, sign or
 * missing term moves these by 1e-2 or more). */
#include "tests/parity/parity_step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/scope.h"
#include "ops/ops.h"
#include "train/optim.h"
#include "train/pref_step.h"

static const char *const model_json =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 48, \"intermediate_size\": 96, "
    "\"num_hidden_layers\": 3, \"num_attention_heads\": 6, \"num_key_value_heads\": 2, "
    "\"vocab_size\": 64, \"max_position_embeddings\": 256, \"rms_norm_eps\": 1e-5, "
    "\"rope_theta\": 10000.0, \"tie_word_embeddings\": false, \"bos_token_id\": 1, "
    "\"eos_token_id\": 2, \"pad_token_id\": 2}";

typedef struct {
    spin_device *dev;
    uint64_t seed;
} init_ctx;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform weights with std 1/sqrt(fan_in) (embedding: std 1, so hidden states start at unit RMS;
 * lm head: x3, so logits are spread and greedy steps are decisive), norms 1 +- 0.1. The same
 * (seed, name) gives the same host values, whatever the device. */
static spin_tensor *init_param(void *p, const char *name, int ndim, const int64_t *shape) {
    init_ctx *c = p;
    int64_t n = shape[0] * (ndim == 2 ? shape[1] : 1);
    uint64_t s = c->seed;
    for (const char *q = name; *q; q++)
        s = s * 131 + (unsigned char)*q;
    double std = ndim == 1                      ? 0.1
                 : strstr(name, "embed_tokens") ? 1.0
                 : strstr(name, "lm_head")      ? 3.0 / sqrt((double)shape[1])
                                                : 1.0 / sqrt((double)shape[1]);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) {
        spin_fail(SPIN_ERR_OOM, "parity model: out of host memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        double u = (double)(splitmix(&s) >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* [-1, 1) */
        v[i] = (float)((ndim == 1 ? 1.0 : 0.0) + u * std * sqrt(3.0));
    }
    spin_tensor *t = spin_from_host(c->dev, SPIN_F32, ndim, shape, v);
    free(v);
    return t;
}

spin_status spin_parity_model(spin_device *dev, uint64_t seed, spin_llama **out) {
    spin_llama_config cfg;
    SPIN_TRY(spin_llama_config_parse(model_json, "parity model", &cfg));
    init_ctx c = {dev, seed};
    spin_status s = spin_llama_build(&cfg, dev, init_param, &c, out);
    spin_llama_config_free(&cfg);
    return s;
}

static float *read_all(spin_tensor *t, spin_status *s) {
    int64_t n = spin_tensor_numel(t);
    float *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (*s == SPIN_OK)
        *s = !v ? SPIN_ERR_OOM : spin_tensor_read_f32(t, v, n);
    return v;
}

void spin_parity_step_free(spin_parity_step *r) {
    for (int i = 0; i < r->n; i++) {
        if (r->grad)
            free(r->grad[i]);
        if (r->before)
            free(r->before[i]);
        if (r->after)
            free(r->after[i]);
    }
    free(r->numel);
    free(r->grad);
    free(r->before);
    free(r->after);
    memset(r, 0, sizeof *r);
}

spin_status spin_parity_train_step(spin_device *dev, const spin_collated *batch, spin_parity_step *r) {
    memset(r, 0, sizeof *r);
    spin_llama *policy = NULL, *opponent = NULL;
    spin_status s = spin_parity_model(dev, 1, &policy);
    if (s == SPIN_OK)
        s = spin_parity_model(dev, 2, &opponent);
    if (s == SPIN_OK) {
        r->n = policy->n_params;
        r->numel = calloc((size_t)r->n, sizeof *r->numel);
        r->grad = calloc((size_t)r->n, sizeof *r->grad);
        r->before = calloc((size_t)r->n, sizeof *r->before);
        r->after = calloc((size_t)r->n, sizeof *r->after);
        if (!r->numel || !r->grad || !r->before || !r->after)
            s = spin_fail(SPIN_ERR_OOM, "parity step: out of host memory");
    }
    for (int i = 0; s == SPIN_OK && i < r->n; i++) {
        r->numel[i] = spin_tensor_numel(policy->params[i]);
        r->before[i] = read_all(policy->params[i], &s);
    }
    if (s == SPIN_OK) {
        spin_pref_loss_opts lo = {.type = SPIN_LOSS_SIGMOID, .beta = 0.1f};
        spin_pref_ref ref = {.model = opponent};
        spin_pref_metrics m;
        spin_scope_begin();
        spin_tensor *loss = NULL;
        float lv = 0;
        s = spin_pref_forward(policy, &ref, NULL, batch, &lo, false, 1.0f, &loss, &m);
        if (s == SPIN_OK)
            s = spin_tensor_read_f32(loss, &lv, 1);
        if (s == SPIN_OK)
            s = spin_backward(loss);
        spin_scope_end();
        r->loss = lv;
        r->rewards_chosen = m.rewards_chosen;
        r->rewards_rejected = m.rewards_rejected;
    }
    for (int i = 0; s == SPIN_OK && i < r->n; i++) {
        spin_tensor *g = spin_tensor_grad(policy->params[i]);
        s = g ? SPIN_OK : spin_fail(SPIN_ERR_INVALID, "%s: no gradient for %s", dev->name, policy->names[i]);
        if (s == SPIN_OK)
            r->grad[i] = read_all(g, &s);
    }
    if (s == SPIN_OK) {
        spin_optim_config oc = spin_optim_defaults(SPIN_OPTIM_RMSPROP);
        spin_optim *o = spin_optim_new(&oc, policy->params, policy->n_params);
        spin_optim_result res;
        s = o ? spin_optim_step(o, 1e-3, &res) : SPIN_ERR_INVALID;
        if (s == SPIN_OK && !res.finite)
            s = spin_fail(SPIN_ERR_INVALID, "%s: non-finite gradient in the parity step", dev->name);
        r->grad_norm = s == SPIN_OK ? res.grad_norm : 0;
        spin_optim_free(o);
    }
    for (int i = 0; s == SPIN_OK && i < r->n; i++)
        r->after[i] = read_all(policy->params[i], &s);
    spin_llama_free(policy);
    spin_llama_free(opponent);
    if (s != SPIN_OK)
        spin_parity_step_free(r);
    return s;
}

/* ||a - b|| / ||b|| in double (||a - b|| when b is all zero). */
static double nerr(const float *a, const float *b, int64_t n) {
    double d = 0, r = 0;
    for (int64_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static double rel(double a, double b) {
    return fabs(a - b) / fmax(fabs(b), 1e-30);
}

void spin_parity_compare(const spin_parity_step *dv, const spin_parity_step *cp, char *const *names,
                         spin_parity_errors *e) {
    memset(e, 0, sizeof *e);
    e->loss = rel(dv->loss, cp->loss);
    e->grad_norm = rel(dv->grad_norm, cp->grad_norm);
    e->rewards =
        fmax(rel(dv->rewards_chosen, cp->rewards_chosen), rel(dv->rewards_rejected, cp->rewards_rejected));
    for (int i = 0; i < cp->n && i < dv->n; i++) {
        int64_t n = cp->numel[i];
        double d = 0, r = 0, gsum = 0;
        for (int64_t j = 0; j < n; j++) {
            double ud = (double)dv->after[i][j] - dv->before[i][j],
                   uc = (double)cp->after[i][j] - cp->before[i][j];
            d += (ud - uc) * (ud - uc);
            r += uc * uc;
            gsum += fabs(cp->grad[i][j]);
        }
        double eg = nerr(dv->grad[i], cp->grad[i], n), ep = nerr(dv->after[i], cp->after[i], n),
               eu = r > 0 ? sqrt(d / r) : sqrt(d);
        bool same_start = !memcmp(dv->before[i], cp->before[i], (size_t)n * sizeof(float));
        if (!same_start || gsum == 0 || eg > SPIN_PARITY_TOL_GRAD || ep > SPIN_PARITY_TOL_PARAM ||
            eu > SPIN_PARITY_TOL_UPDATE) {
            if (!e->bad++)
                e->first_bad = names ? names[i] : NULL;
        }
        e->grad = fmax(e->grad, eg);
        e->param = fmax(e->param, ep);
        e->update = fmax(e->update, eu);
    }
    if (dv->n != cp->n && !e->bad++)
        e->first_bad = "(parameter count)";
}

bool spin_parity_ok(const spin_parity_errors *e) {
    return e->bad == 0 && e->loss <= SPIN_PARITY_TOL_LOSS && e->grad_norm <= SPIN_PARITY_TOL_LOSS &&
           e->rewards <= SPIN_PARITY_TOL_LOSS;
}

spin_status spin_parity_synthetic_batch(spin_collated *out) {
    enum { B = 4 };
    spin_pref_tokens t[B];
    const spin_pref_tokens *rows[B];
    memset(t, 0, sizeof t);
    uint64_t st = 2024;
    spin_status s = SPIN_OK;
    for (int i = 0; i < B && s == SPIN_OK; i++) {
        int64_t n[3] = {7 + i, 5 + 2 * i, 12 - i};
        int32_t **ids[3] = {&t[i].prompt, &t[i].chosen, &t[i].rejected};
        uint8_t **attn[3] = {&t[i].prompt_attn, &t[i].chosen_attn, &t[i].rejected_attn};
        for (int k = 0; k < 3 && s == SPIN_OK; k++) {
            *ids[k] = malloc((size_t)n[k] * sizeof **ids[k]);
            *attn[k] = malloc((size_t)n[k]);
            if (!*ids[k] || !*attn[k]) {
                s = spin_fail(SPIN_ERR_OOM, "parity batch: out of host memory");
                break;
            }
            for (int64_t j = 0; j < n[k]; j++) {
                (*ids[k])[j] = 3 + (int32_t)(splitmix(&st) % 61);
                (*attn[k])[j] = 1;
            }
            (*ids[k])[n[k] - 1] = k ? 2 : (*ids[k])[n[k] - 1]; /* responses end with EOS, as collated */
        }
        t[i].n_prompt = n[0], t[i].n_chosen = n[1], t[i].n_rejected = n[2];
        rows[i] = &t[i];
    }
    spin_collate_opts co = {.max_length = 64, .max_prompt_length = 32, .eos_id = 2, .pad_id = 2};
    if (s == SPIN_OK)
        s = spin_collate_batch(rows, B, &co, out);
    for (int i = 0; i < B; i++)
        spin_pref_tokens_free(&t[i]);
    return s;
}
