#include "models/tiny_lm.h"

#include <math.h>
#include <string.h>

#include "core/scope.h"

enum { ATTN_NORM, WQ, WK, WV, WO, MLP_NORM, W_GATE_UP, W_DOWN };

static spin_tensor *new_param(spin_tiny_lm *m, spin_device *dev, int nd, const int64_t *sh, uint64_t seed,
                              float std, bool ones) {
    spin_tensor *p =
        ones ? spin_full(dev, SPIN_F32, nd, sh, 1.0f) : spin_rand_normal(dev, nd, sh, seed, 0, 0, std);
    if (p) {
        spin_tensor_set_requires_grad(p, true);
        m->params[m->n_params++] = p;
    }
    return p;
}

spin_status spin_tiny_lm_init(spin_tiny_lm *m, spin_device *dev, const spin_tiny_lm_config *cfg,
                              uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const spin_tiny_lm_config *c = cfg;
    if (c->n_layers < 1 || c->n_layers > SPIN_TINY_LM_MAX_LAYERS || c->n_heads % c->n_kv_heads ||
        c->head_dim % 2)
        return spin_fail(SPIN_ERR_INVALID,
                         "tiny_lm: bad config (layers 1..%d, kv heads dividing heads, even head_dim)",
                         SPIN_TINY_LM_MAX_LAYERS);
    spin_scope_manual_begin();
    float std = 0.02f * 5, res_std = std / sqrtf(2.0f * (float)c->n_layers);
    int64_t q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    m->emb = new_param(m, dev, 2, (int64_t[]){c->vocab, c->dim}, seed, std, false);
    for (int l = 0; l < c->n_layers; l++) {
        uint64_t s = seed + 100 * (uint64_t)(l + 1);
        spin_tensor **L = m->layer[l];
        L[ATTN_NORM] = new_param(m, dev, 1, (int64_t[]){c->dim}, 0, 0, true);
        L[WQ] = new_param(m, dev, 2, (int64_t[]){c->dim, q}, s + 1, std, false);
        L[WK] = new_param(m, dev, 2, (int64_t[]){c->dim, kv}, s + 2, std, false);
        L[WV] = new_param(m, dev, 2, (int64_t[]){c->dim, kv}, s + 3, std, false);
        L[WO] = new_param(m, dev, 2, (int64_t[]){q, c->dim}, s + 4, res_std, false);
        L[MLP_NORM] = new_param(m, dev, 1, (int64_t[]){c->dim}, 0, 0, true);
        L[W_GATE_UP] = new_param(m, dev, 2, (int64_t[]){c->dim, 2 * (int64_t)c->ffn}, s + 5, std, false);
        L[W_DOWN] = new_param(m, dev, 2, (int64_t[]){c->ffn, c->dim}, s + 6, res_std, false);
    }
    m->final_norm = new_param(m, dev, 1, (int64_t[]){c->dim}, 0, 0, true);
    m->inv_freq = spin_rope_inv_freq(dev, c->head_dim, c->rope_theta);
    spin_scope_manual_end();
    for (int i = 0; i < m->n_params; i++)
        if (!m->params[i])
            return SPIN_ERR_OOM;
    return m->inv_freq ? SPIN_OK : SPIN_ERR_OOM;
}

void spin_tiny_lm_free(spin_tiny_lm *m) {
    for (int i = 0; i < m->n_params; i++)
        spin_tensor_release(m->params[i]);
    spin_tensor_release(m->inv_freq);
    memset(m, 0, sizeof *m);
}

typedef struct {
    spin_tiny_lm *m;
    int layer;
    int64_t b, t;
} block_ctx;

/* [B*T, h*D] -> [B, h, T, D] */
static spin_tensor *to_heads(spin_tensor *x, int64_t b, int64_t t, int h, int d) {
    spin_tensor *r = spin_reshape(x, 4, (int64_t[]){b, t, h, d});
    spin_tensor *p = r ? spin_transpose(r, 1, 2) : NULL;
    spin_tensor_release(r);
    return p;
}

/* Temporaries of a block, released together at its end. */
typedef struct {
    spin_tensor *t[32];
    int n;
} temps;

static spin_tensor *tmp(temps *l, spin_tensor *t) {
    SPIN_ASSERT(l->n < 32, "too many temporaries");
    return l->t[l->n++] = t;
}

/* One transformer block: x + attn(norm(x)), then + mlp(norm(.)). Manual ownership. */
static spin_tensor *block(void *vctx, spin_tensor *const *in, int n_in) {
    (void)n_in;
    block_ctx *bc = vctx;
    const spin_tiny_lm_config *c = &bc->m->cfg;
    spin_tensor **L = bc->m->layer[bc->layer];
    spin_tensor *x = in[0], *pos = in[1];
    temps l = {0};
    spin_tensor *h = tmp(&l, spin_rmsnorm(x, L[ATTN_NORM], c->norm_eps));
    spin_tensor *q = tmp(
        &l, to_heads(tmp(&l, spin_matmul(h, L[WQ], false, false)), bc->b, bc->t, c->n_heads, c->head_dim));
    spin_tensor *k = tmp(
        &l, to_heads(tmp(&l, spin_matmul(h, L[WK], false, false)), bc->b, bc->t, c->n_kv_heads, c->head_dim));
    spin_tensor *v = tmp(
        &l, to_heads(tmp(&l, spin_matmul(h, L[WV], false, false)), bc->b, bc->t, c->n_kv_heads, c->head_dim));
    spin_tensor *qr = tmp(&l, spin_rope(q, pos, bc->m->inv_freq, SPIN_ROPE_HALF));
    spin_tensor *kr = tmp(&l, spin_rope(k, pos, bc->m->inv_freq, SPIN_ROPE_HALF));
    spin_attn_opts o = {0};
    spin_tensor *a = tmp(&l, spin_attention(qr, kr, v, NULL, NULL, &o));
    spin_tensor *merged =
        tmp(&l, spin_reshape(tmp(&l, spin_transpose(a, 1, 2)), 2,
                             (int64_t[]){bc->b * bc->t, (int64_t)c->n_heads * c->head_dim}));
    spin_tensor *x1 = tmp(&l, spin_add(x, tmp(&l, spin_matmul(merged, L[WO], false, false))));
    spin_tensor *h2 = tmp(&l, spin_rmsnorm(x1, L[MLP_NORM], c->norm_eps));
    spin_tensor *gu = tmp(&l, spin_matmul(h2, L[W_GATE_UP], false, false));
    spin_tensor *g = tmp(&l, spin_narrow(gu, 1, 0, c->ffn)), *u = tmp(&l, spin_narrow(gu, 1, c->ffn, c->ffn));
    spin_tensor *act = tmp(&l, spin_mul(tmp(&l, spin_silu(g)), u));
    spin_tensor *out = spin_add(x1, tmp(&l, spin_matmul(act, L[W_DOWN], false, false)));
    for (int i = 0; i < l.n; i++)
        spin_tensor_release(l.t[i]);
    return out;
}

spin_tensor *spin_tiny_lm_hidden(spin_tiny_lm *m, spin_tensor *ids) {
    spin_scope_manual_begin();
    int64_t b = spin_tensor_dim(ids, 0), t = spin_tensor_dim(ids, 1);
    int64_t n = b * t;
    spin_tensor *flat = spin_reshape(ids, 1, &n);
    spin_tensor *x = flat ? spin_embedding(m->emb, flat) : NULL;
    spin_tensor_release(flat);
    /* positions 0..T-1 for every row */
    spin_tensor *ar = spin_arange(spin_tensor_device(ids), SPIN_I32, t, 0, 1);
    spin_tensor *ex = ar ? spin_expand(ar, 2, (int64_t[]){b, t}) : NULL;
    spin_tensor *pos = ex ? spin_contiguous(ex) : NULL;
    spin_tensor_release(ar);
    spin_tensor_release(ex);
    for (int l = 0; l < m->cfg.n_layers && x && pos; l++) {
        block_ctx bc = {m, l, b, t};
        spin_tensor *in[2] = {x, pos};
        spin_tensor *y = m->cfg.recompute ? spin_checkpoint(block, &bc, sizeof bc, 2, in) : block(&bc, in, 2);
        spin_tensor_release(x);
        x = y;
    }
    spin_tensor *h = x ? spin_rmsnorm(x, m->final_norm, m->cfg.norm_eps) : NULL;
    spin_tensor_release(x);
    spin_tensor_release(pos);
    spin_scope_manual_end();
    return spin_scope_adopt(h);
}

spin_tensor *spin_tiny_lm_loss(spin_tiny_lm *m, spin_tensor *ids, spin_tensor *targets) {
    spin_scope_manual_begin();
    spin_tensor *h = spin_tiny_lm_hidden(m, ids);
    spin_tensor *loss = h ? spin_cross_entropy(h, m->emb, targets, -100, 256) : NULL;
    spin_tensor_release(h);
    spin_scope_manual_end();
    return spin_scope_adopt(loss);
}

spin_status spin_tiny_lm_greedy(spin_tiny_lm *m, int32_t *tokens, int n, int total) {
    spin_device *dev = spin_tensor_device(m->emb);
    spin_no_grad_begin();
    spin_status s = SPIN_OK;
    for (int len = n; len < total && s == SPIN_OK; len++) {
        spin_scope_begin();
        spin_tensor *ids = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){1, len}, tokens);
        spin_tensor *h = ids ? spin_tiny_lm_hidden(m, ids) : NULL;
        spin_tensor *last = h ? spin_narrow(h, 0, len - 1, 1) : NULL;
        spin_tensor *logits = last ? spin_matmul(last, m->emb, false, true) : NULL;
        spin_tensor *am = logits ? spin_argmax(logits) : NULL;
        s = am ? spin_tensor_read(am, &tokens[len], sizeof(int32_t)) : SPIN_ERR_INVALID;
        spin_scope_end();
    }
    spin_no_grad_end();
    return s;
}
