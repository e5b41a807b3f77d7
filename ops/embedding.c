/* Embedding lookup y[.., :] = w[ids[..], :] and its backward dw[v, :] = sum_{ids[n] = v} g[n, :]
 * (ids are integers: only w is differentiated), except dw[padding_idx, :] = 0 when a padding index
 * is given, as torch.nn.Embedding(padding_idx=) and so every transformers model whose config sets
 * pad_token_id. */
#include "ops/op_util.h"

/* x as a contiguous tensor, without recording a copy node: the op's own node covers it. */
static spin_tensor *contig(spin_tensor *x) {
    spin_no_grad_begin();
    spin_tensor *c = spin_contiguous(x);
    spin_no_grad_end();
    return c;
}

/* A contiguous tensor t seen with a new contiguous shape (no graph). */
static spin_tensor *reshaped(spin_tensor *t, int nd, const int64_t *sh) {
    int64_t st[SPIN_MAX_DIMS], s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        st[i] = s;
        s *= sh[i];
    }
    return spin_tensor_view_of(t, nd, sh, st, spin_tensor_offset(t));
}

static spin_status embedding_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *ids = n->saved[0], *gc = contig(g);
    int64_t tokens = spin_tensor_numel(ids), v = n->p.i[0], cols = n->p.i[1];
    spin_tensor *in[2] = {gc ? reshaped(ids, 1, &tokens) : NULL,
                          gc ? reshaped(gc, 2, (const int64_t[]){tokens, cols}) : NULL};
    spin_tensor *dw = NULL;
    if (in[0] && in[1])
        dw = op_launch(SPIN_K_EMBEDDING_BACK, 2, in,
                       op_new(g, op_grad_dtype(n->in[0]), 2, (const int64_t[]){v, cols}), &n->p);
    spin_tensor_release(in[0]);
    spin_tensor_release(in[1]);
    spin_tensor_release(gc);
    int64_t pad = n->p.i[2];
    if (dw && pad >= 0) {
        spin_tensor *row = spin_narrow(dw, 0, pad, 1);
        spin_status s = row ? spin_fill_(row, 0.0f) : SPIN_ERR_INVALID;
        spin_tensor_release(row);
        if (s != SPIN_OK) {
            spin_tensor_release(dw);
            dw = NULL;
        }
    }
    gin[0] = dw;
    return dw ? SPIN_OK : SPIN_ERR_INVALID;
}

spin_tensor *spin_embedding(spin_tensor *w, spin_tensor *ids) {
    return spin_embedding_pad(w, ids, -1);
}

spin_tensor *spin_embedding_pad(spin_tensor *w, spin_tensor *ids, int64_t padding_idx) {
    op_begin();
    char sw[64], si[64];
    OP_REQUIRE(w && ids, "embedding: w and ids are required");
    spin_shape_str(w, sw, sizeof sw);
    spin_shape_str(ids, si, sizeof si);
    OP_REQUIRE(spin_tensor_ndim(w) == 2 && op_float(w), "embedding: w must be f32 or bf16 [V, C] (got %s %s)",
               spin_dtype_name(spin_tensor_dtype(w)), sw);
    OP_REQUIRE(spin_tensor_dtype(ids) == SPIN_I32, "embedding: ids must be i32 (got %s %s)",
               spin_dtype_name(spin_tensor_dtype(ids)), si);
    int nd = spin_tensor_ndim(ids);
    OP_REQUIRE(nd < SPIN_MAX_DIMS, "embedding: ids %s leave no room for the embedding dim (max %d dims)", si,
               SPIN_MAX_DIMS);
    int64_t v = spin_tensor_dim(w, 0), cols = spin_tensor_dim(w, 1), tokens = spin_tensor_numel(ids);
    OP_REQUIRE(padding_idx < v, "embedding: padding_idx %lld is outside the %lld rows of w",
               (long long)padding_idx, (long long)v);
    int64_t sh[SPIN_MAX_DIMS];
    for (int i = 0; i < nd; i++)
        sh[i] = spin_tensor_dim(ids, i);
    sh[nd] = cols;
    spin_tensor *wc = contig(w), *ic = contig(ids);
    spin_tensor *y = op_new(w, spin_tensor_dtype(w), nd + 1, sh);
    spin_tensor *in[2] = {wc, ic ? reshaped(ic, 1, &tokens) : NULL};
    spin_tensor *yv = y ? reshaped(y, 2, (const int64_t[]){tokens, cols}) : NULL;
    /* the kernel rejects ids outside [0, V) before reading through them */
    if (!in[0] || !in[1] || !yv || spin_launch(SPIN_K_EMBEDDING, 2, in, 1, &yv, NULL) != SPIN_OK) {
        spin_tensor_release(y);
        y = NULL;
    }
    spin_node *n = spin_autograd_record(y, "embedding", embedding_backward, 1, &w);
    if (n) {
        n->p.i[0] = v;
        n->p.i[1] = cols;
        n->p.i[2] = padding_idx < 0 ? -1 : padding_idx;
        spin_node_save(n, ic);
    }
    spin_tensor_release(yv);
    spin_tensor_release(in[1]);
    spin_tensor_release(ic);
    spin_tensor_release(wc);
    return op_end(y);
}
