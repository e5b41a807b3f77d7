/* Losses over a vocabulary: the fused, chunked linear + log-prob gather (the [N, V] logits and
 * their gradient only ever exist one chunk of rows at a time), mean cross-entropy composed from
 * it, and the log-prob gather from materialised logits. */
#include <float.h>
#include <stdio.h>
#include <string.h>

#include "ops/op_util.h"

/* Rows per chunk when the caller passes chunk <= 0: two [chunk, V] f32 buffers live in backward,
 * 256 MB at V = 128k. */
#define DEFAULT_CHUNK 256

/* Rows [r0, r0 + n) of a contiguous 1-D or 2-D tensor: a view, never recorded. */
static spin_tensor *rows_of(spin_tensor *t, int64_t r0, int64_t n) {
    int64_t sh[SPIN_MAX_DIMS];
    memcpy(sh, spin_tensor_shape(t), sizeof sh);
    sh[0] = n;
    return spin_tensor_view_of(t, spin_tensor_ndim(t), sh, spin_tensor_strides(t),
                               spin_tensor_offset(t) + (size_t)(r0 * spin_tensor_stride(t, 0)));
}

/* The transpose of a 2-D tensor as a view, which the MATMUL kernel reads in place. */
static spin_tensor *transposed(spin_tensor *t) {
    int64_t sh[2] = {spin_tensor_dim(t, 1), spin_tensor_dim(t, 0)};
    int64_t st[2] = {spin_tensor_stride(t, 1), spin_tensor_stride(t, 0)};
    return spin_tensor_view_of(t, 2, sh, st, spin_tensor_offset(t));
}

/* c = a @ b + beta c through the kernel (no graph). */
static spin_status mm(spin_tensor *a, spin_tensor *b, spin_tensor *c, float beta) {
    spin_tensor *in[2] = {a, b};
    return spin_launch(SPIN_K_MATMUL, 2, in, 1, &c, &(spin_kparams){.f = {1.0f, beta}});
}

static void release_all(spin_tensor **ts, int n) {
    for (int i = 0; i < n; i++)
        spin_tensor_release(ts[i]);
}

/* The head in f32 for the chunk loop: a bf16 head is widened once per call rather than once per
 * chunk by the dispatcher (the products are the same: bf16 -> f32 is exact). Owned ref. */
static spin_tensor *head_f32(spin_tensor *w) {
    spin_no_grad_begin();
    spin_tensor *r = spin_tensor_dtype(w) == SPIN_F32 ? spin_tensor_retain(w) : spin_cast(w, SPIN_F32);
    spin_no_grad_end();
    return r;
}

/* ---- linear_logprob: logp[r] = log softmax(h w^T)[r, t_r] (0 where t_r == ignore) ---- */

/* One chunk of rows: logits = h[r0:r0+n] w^T into lbuf, then CE_ROWS into the outputs' rows. */
static spin_status forward_chunk(spin_tensor *h, spin_tensor *wt, spin_tensor *t, spin_tensor *lbuf,
                                 spin_tensor *const *outs, int64_t r0, int64_t n, int32_t ignore) {
    spin_tensor *hv = rows_of(h, r0, n), *lv = rows_of(lbuf, 0, n), *tv = rows_of(t, r0, n);
    spin_tensor *ov[3] = {rows_of(outs[0], r0, n), rows_of(outs[1], r0, n), rows_of(outs[2], r0, n)};
    spin_status s = mm(hv, wt, lv, 0.0f);
    spin_tensor *in[2] = {lv, tv};
    if (s == SPIN_OK)
        s = spin_launch(SPIN_K_CE_ROWS, 2, in, 3, ov, &(spin_kparams){.i = {ignore}});
    if (s != SPIN_OK) {
        /* the kernel numbers rows within the chunk: say where the chunk starts */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", spin_last_error());
        spin_fail(s, "linear_logprob: chunk of rows [%lld, %lld): %s", (long long)r0, (long long)(r0 + n),
                  msg);
    }
    spin_tensor *tmp[6] = {hv, lv, tv, ov[0], ov[1], ov[2]};
    release_all(tmp, 6);
    return s;
}

/* Per chunk: recompute the logits, dlogits = CE_ROWS_BACK(logits, t, lse, g), then
 * dh[rows] = dlogits w and dw += dlogits^T h[rows]. */
static spin_status linear_logprob_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_scope_manual_begin();
    spin_tensor *h = n->saved[0], *w = head_f32(n->saved[1]), *t = n->saved[2], *lse = n->saved[3];
    int64_t N = spin_tensor_dim(h, 0), C = spin_tensor_dim(h, 1), V = spin_tensor_dim(n->saved[1], 0),
            chunk = n->p.i[1];
    int32_t ignore = (int32_t)n->p.i[0];
    spin_tensor *gc = spin_contiguous(g);
    /* dh in h's dtype; dw sums every chunk's rows (beta 1): always f32 */
    spin_tensor *dh = n->needs[0] ? op_new(h, op_grad_dtype(n->in[0]), 2, (int64_t[]){N, C}) : NULL;
    spin_tensor *dw = n->needs[1] ? op_new(h, SPIN_F32, 2, (int64_t[]){V, C}) : NULL;
    spin_tensor *lbuf = op_new(h, SPIN_F32, 2, (int64_t[]){chunk, V});
    spin_tensor *dbuf = op_new(h, SPIN_F32, 2, (int64_t[]){chunk, V});
    spin_tensor *wt = w ? transposed(w) : NULL;
    spin_status s = w && wt && gc && lbuf && dbuf && (dh || !n->needs[0]) && (dw || !n->needs[1])
                        ? SPIN_OK
                        : SPIN_ERR_OOM;
    for (int64_t r0 = 0; r0 < N && s == SPIN_OK; r0 += chunk) {
        int64_t m = N - r0 < chunk ? N - r0 : chunk;
        spin_tensor *hv = rows_of(h, r0, m), *tv = rows_of(t, r0, m), *lsev = rows_of(lse, r0, m),
                    *gv = rows_of(gc, r0, m), *lv = rows_of(lbuf, 0, m), *dv = rows_of(dbuf, 0, m);
        s = mm(hv, wt, lv, 0.0f);
        spin_tensor *in[4] = {lv, tv, lsev, gv};
        if (s == SPIN_OK)
            s = spin_launch(SPIN_K_CE_ROWS_BACK, 4, in, 1, &dv, &(spin_kparams){.i = {ignore}});
        if (s == SPIN_OK && dh) {
            spin_tensor *dhv = rows_of(dh, r0, m);
            s = mm(dv, w, dhv, 0.0f);
            spin_tensor_release(dhv);
        }
        if (s == SPIN_OK && dw) {
            /* beta 0 on the first chunk overwrites dw's uninitialised memory */
            spin_tensor *dvt = transposed(dv);
            s = mm(dvt, hv, dw, r0 == 0 ? 0.0f : 1.0f);
            spin_tensor_release(dvt);
        }
        spin_tensor *tmp[6] = {hv, tv, lsev, gv, lv, dv};
        release_all(tmp, 6);
    }
    if (s == SPIN_OK && dw && N == 0)
        s = spin_fill_(dw, 0.0f); /* no chunk ran */
    spin_tensor *tmp[5] = {gc, lbuf, dbuf, wt, w};
    release_all(tmp, 5);
    if (s != SPIN_OK) {
        spin_tensor_release(dh);
        spin_tensor_release(dw);
        dh = dw = NULL;
    }
    gin[0] = dh;
    gin[1] = dw;
    spin_scope_manual_end();
    return s;
}

spin_tensor *spin_linear_logprob(spin_tensor *h, spin_tensor *w, spin_tensor *targets, int32_t ignore_index,
                                 int64_t chunk, spin_tensor **logit_sum, spin_tensor **lse) {
    if (logit_sum)
        *logit_sum = NULL;
    if (lse)
        *lse = NULL;
    op_begin();
    char sh[64], sw[64], st[64];
    OP_REQUIRE(spin_tensor_ndim(h) == 2 && spin_tensor_ndim(w) == 2 && spin_tensor_ndim(targets) == 1 &&
                   spin_tensor_dim(h, 1) == spin_tensor_dim(w, 1) &&
                   spin_tensor_dim(h, 0) == spin_tensor_dim(targets, 0),
               "linear_logprob: needs h [N, C], w [V, C], targets [N] (got h %s, w %s, targets %s)",
               spin_shape_str(h, sh, sizeof sh), spin_shape_str(w, sw, sizeof sw),
               spin_shape_str(targets, st, sizeof st));
    OP_REQUIRE(op_float(h) && op_float(w) && spin_tensor_dtype(targets) == SPIN_I32,
               "linear_logprob: h and w must be f32 or bf16 and targets i32 (got %s, %s, %s)",
               spin_dtype_name(spin_tensor_dtype(h)), spin_dtype_name(spin_tensor_dtype(w)),
               spin_dtype_name(spin_tensor_dtype(targets)));
    int64_t N = spin_tensor_dim(h, 0), V = spin_tensor_dim(w, 0);
    if (chunk <= 0)
        chunk = DEFAULT_CHUNK;
    if (chunk > N)
        chunk = N > 0 ? N : 1;
    /* Inputs made contiguous without recording: the op's one node covers them. */
    spin_no_grad_begin();
    spin_tensor *hc = spin_contiguous(h), *wc = spin_contiguous(w), *tc = spin_contiguous(targets);
    spin_no_grad_end();
    spin_tensor *outs[3] = {op_new(h, SPIN_F32, 1, &N), op_new(h, SPIN_F32, 1, &N),
                            op_new(h, SPIN_F32, 1, &N)};
    spin_tensor *lbuf = op_new(h, SPIN_F32, 2, (int64_t[]){chunk, V});
    spin_tensor *wf = wc ? head_f32(wc) : NULL;
    spin_tensor *wt = wf ? transposed(wf) : NULL;
    spin_tensor_release(wf);
    spin_status s = hc && wc && tc && outs[0] && outs[1] && outs[2] && lbuf && wt ? SPIN_OK : SPIN_ERR_OOM;
    for (int64_t r0 = 0; r0 < N && s == SPIN_OK; r0 += chunk)
        s = forward_chunk(hc, wt, tc, lbuf, outs, r0, N - r0 < chunk ? N - r0 : chunk, ignore_index);
    spin_tensor_release(lbuf);
    spin_tensor_release(wt);
    if (s != SPIN_OK) {
        spin_tensor *tmp[6] = {hc, wc, tc, outs[0], outs[1], outs[2]};
        release_all(tmp, 6);
        return op_end(NULL);
    }
    spin_tensor *in[3] = {h, w, targets};
    spin_node *n = spin_autograd_record(outs[0], "linear_logprob", linear_logprob_backward, 3, in);
    if (n) {
        n->needs[2] = false; /* ids have no gradient */
        n->p.i[0] = ignore_index;
        n->p.i[1] = chunk;
        spin_node_save(n, hc);
        spin_node_save(n, wc);
        spin_node_save(n, tc);
        spin_node_save(n, outs[1]);
    }
    spin_tensor *tmp[3] = {hc, wc, tc};
    release_all(tmp, 3);
    spin_tensor *logp = op_end(outs[0]);
    if (lse)
        *lse = spin_scope_adopt(outs[1]);
    else
        spin_tensor_release(outs[1]);
    if (logit_sum)
        *logit_sum = spin_scope_adopt(outs[2]);
    else
        spin_tensor_release(outs[2]);
    return logp;
}

/* ---- cross_entropy: loss = -sum_{t_r != ignore} logp[r] / max(1, #{t_r != ignore}) ---- */

/* 1 where targets != ignore, else 0 (f32 [N]), on the device: (f32)t - ignore is exact for
 * |t| < 2^24, so it is 0 exactly when t == ignore; WHERE turns it into 0/1. Not differentiated. */
static spin_tensor *valid_mask(spin_tensor *targets, int32_t ignore) {
    op_begin();
    spin_device *dev = spin_tensor_device(targets);
    spin_tensor *tf = spin_cast(targets, SPIN_F32);
    spin_tensor *d = tf ? spin_affine(tf, 1.0f, -(float)ignore) : NULL;
    spin_tensor *one = spin_full(dev, SPIN_F32, 0, NULL, 1.0f),
                *zero = spin_full(dev, SPIN_F32, 0, NULL, 0.0f);
    spin_tensor *mask = d && one && zero ? spin_where(d, one, zero) : NULL;
    spin_tensor *tmp[4] = {tf, d, one, zero};
    release_all(tmp, 4);
    return op_end(mask);
}

spin_tensor *spin_cross_entropy(spin_tensor *h, spin_tensor *w, spin_tensor *targets, int32_t ignore_index,
                                int64_t chunk) {
    op_begin();
    spin_tensor *logp = spin_linear_logprob(h, w, targets, ignore_index, chunk, NULL, NULL);
    if (!logp)
        return op_end(NULL);
    /* The count is computed without a host round trip; clamping it to 1 makes an all-ignored
     * batch a loss of 0 (sum of nothing) instead of 0/0. */
    spin_no_grad_begin();
    spin_tensor *mask = valid_mask(targets, ignore_index);
    spin_tensor *cnt = mask ? spin_sum_all(mask) : NULL;
    spin_tensor *count = cnt ? spin_clamp(cnt, 1.0f, FLT_MAX) : NULL;
    spin_no_grad_end();
    spin_tensor *s = count ? spin_sum_all(logp) : NULL; /* ignored rows hold logp = 0 */
    spin_tensor *ns = s ? spin_neg(s) : NULL;
    spin_tensor *loss = ns ? spin_div(ns, count) : NULL;
    spin_tensor *tmp[6] = {logp, mask, cnt, count, s, ns};
    release_all(tmp, 6);
    return op_end(loss);
}

/* ---- logprob_gather: logp[r] = log softmax(logits)[r, t_r] (0 where t_r == ignore) ---- */

/* dlogits = CE_ROWS_BACK(logits, t, lse, g) = g (onehot(t) - softmax(logits)) */
static spin_status logprob_gather_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_scope_manual_begin();
    spin_tensor *x = n->saved[0];
    spin_tensor *gc = spin_contiguous(g);
    spin_tensor *dx = spin_tensor_new(spin_tensor_device(x), op_grad_dtype(n->in[0]), spin_tensor_ndim(x),
                                      spin_tensor_shape(x));
    spin_tensor *in[4] = {x, n->saved[1], n->saved[2], gc};
    spin_status s = gc && dx ? spin_launch(SPIN_K_CE_ROWS_BACK, 4, in, 1, &dx, &n->p) : SPIN_ERR_OOM;
    spin_tensor_release(gc);
    if (s != SPIN_OK) {
        spin_tensor_release(dx);
        dx = NULL;
    }
    gin[0] = dx;
    spin_scope_manual_end();
    return s;
}

spin_tensor *spin_logprob_gather(spin_tensor *logits, spin_tensor *targets, int32_t ignore_index,
                                 spin_tensor **logit_sum) {
    if (logit_sum)
        *logit_sum = NULL;
    op_begin();
    char sl[64], st[64];
    OP_REQUIRE(spin_tensor_ndim(logits) == 2 && spin_tensor_ndim(targets) == 1 &&
                   spin_tensor_dim(logits, 0) == spin_tensor_dim(targets, 0),
               "logprob_gather: needs logits [N, V] and targets [N] (got %s and %s)",
               spin_shape_str(logits, sl, sizeof sl), spin_shape_str(targets, st, sizeof st));
    OP_REQUIRE(op_float(logits) && spin_tensor_dtype(targets) == SPIN_I32,
               "logprob_gather: logits must be f32 or bf16 and targets i32 (got %s and %s)",
               spin_dtype_name(spin_tensor_dtype(logits)), spin_dtype_name(spin_tensor_dtype(targets)));
    int64_t N = spin_tensor_dim(logits, 0);
    spin_no_grad_begin();
    spin_tensor *lc = spin_contiguous(logits), *tc = spin_contiguous(targets);
    spin_no_grad_end();
    spin_tensor *outs[3] = {op_new(logits, SPIN_F32, 1, &N), op_new(logits, SPIN_F32, 1, &N),
                            op_new(logits, SPIN_F32, 1, &N)};
    spin_kparams p = {.i = {ignore_index}};
    spin_tensor *in[2] = {lc, tc};
    spin_status s = lc && tc && outs[0] && outs[1] && outs[2]
                        ? spin_launch(SPIN_K_CE_ROWS, 2, in, 3, outs, &p)
                        : SPIN_ERR_OOM;
    if (s != SPIN_OK) {
        spin_tensor *tmp[5] = {lc, tc, outs[0], outs[1], outs[2]};
        release_all(tmp, 5);
        return op_end(NULL);
    }
    spin_tensor *ab[2] = {logits, targets};
    spin_node *n = spin_autograd_record(outs[0], "logprob_gather", logprob_gather_backward, 2, ab);
    if (n) {
        n->needs[1] = false;
        n->p = p;
        spin_node_save(n, lc);
        spin_node_save(n, tc);
        spin_node_save(n, outs[1]);
    }
    spin_tensor *tmp[3] = {lc, tc, outs[1]};
    release_all(tmp, 3);
    spin_tensor *logp = op_end(outs[0]);
    if (logit_sum)
        *logit_sum = spin_scope_adopt(outs[2]);
    else
        spin_tensor_release(outs[2]);
    return logp;
}
