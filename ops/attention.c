/* Causal attention: o_i = sum_j softmax_j(scale q_i . k_j over visible j) v_j, where key j is
 * visible to query i iff qpos_i - window < j <= qpos_i and kmask_j != 0; query head h reads kv
 * head h / (Hq / Hkv). The per-row log-sum-exp is kept so backward can rebuild the softmax. */
#include <math.h>

#include "ops/op_util.h"

/* Saved tensors, in the order ATTENTION_BACK takes them after do. */
enum { SV_Q, SV_K, SV_V, SV_O, SV_LSE, SV_QPOS, SV_KMASK };

/* dq, dk, dv from one kernel that recomputes p = exp(s - lse). */
static spin_status attention_backward(spin_node *n, spin_tensor *g, spin_tensor **gin) {
    spin_tensor *gc = spin_contiguous(g);
    if (!gc)
        return SPIN_ERR_OOM;
    spin_tensor *in[8] = {n->saved[SV_Q],    n->saved[SV_K],    n->saved[SV_V],
                          n->saved[SV_O],    n->saved[SV_LSE],  gc,
                          n->saved[SV_QPOS], n->saved[SV_KMASK]};
    int n_in = in[7] ? 8 : 7;
    spin_tensor *out[3];
    for (int i = 0; i < 3; i++)
        out[i] = op_new(in[i], op_grad_dtype(n->in[i]), spin_tensor_ndim(in[i]), spin_tensor_shape(in[i]));
    spin_status s = out[0] && out[1] && out[2] ? spin_launch(SPIN_K_ATTENTION_BACK, n_in, in, 3, out, &n->p)
                                               : SPIN_ERR_OOM;
    spin_tensor_release(gc);
    for (int i = 0; i < 3; i++) {
        if (s == SPIN_OK && n->needs[i])
            gin[i] = out[i];
        else
            spin_tensor_release(out[i]);
    }
    return s;
}

/* qpos [B, Tq] = kv_offset + i, built on q's device. */
static spin_tensor *default_qpos(const spin_tensor *q, int64_t B, int64_t Tq, int64_t kv_offset) {
    spin_tensor *r = spin_arange(spin_tensor_device(q), SPIN_I32, Tq, (float)kv_offset, 1.0f);
    spin_tensor *e = r ? spin_expand(r, 2, (const int64_t[]){B, Tq}) : NULL;
    spin_tensor *out = e ? spin_contiguous(e) : NULL;
    spin_tensor_release(r);
    spin_tensor_release(e);
    return out;
}

spin_tensor *spin_attention(spin_tensor *q, spin_tensor *k, spin_tensor *v, spin_tensor *qpos,
                            spin_tensor *kmask, const spin_attn_opts *opts) {
    op_begin();
    static const spin_attn_opts defaults = {0};
    if (!opts)
        opts = &defaults;
    char sq[64], sk[64], sv[64], sp[64];
    OP_REQUIRE(q && k && v, "attention: q, k and v are required");
    spin_shape_str(q, sq, sizeof sq);
    spin_shape_str(k, sk, sizeof sk);
    spin_shape_str(v, sv, sizeof sv);
    OP_REQUIRE(spin_tensor_ndim(q) == 4 && spin_tensor_ndim(k) == 4 && spin_tensor_ndim(v) == 4,
               "attention: q %s, k %s, v %s must be 4-D [B, H, T, D]", sq, sk, sv);
    OP_REQUIRE(op_float(q) && op_float(k) && op_float(v),
               "attention: q, k, v must be f32 or bf16 (got %s, %s, %s)",
               spin_dtype_name(spin_tensor_dtype(q)), spin_dtype_name(spin_tensor_dtype(k)),
               spin_dtype_name(spin_tensor_dtype(v)));
    const int64_t B = spin_tensor_dim(q, 0), Hq = spin_tensor_dim(q, 1), Tq = spin_tensor_dim(q, 2),
                  D = spin_tensor_dim(q, 3);
    const int64_t Hkv = spin_tensor_dim(k, 1), Tk = spin_tensor_dim(k, 2);
    OP_REQUIRE(spin_tensor_same_shape(k, v), "attention: k %s and v %s differ in shape", sk, sv);
    OP_REQUIRE(spin_tensor_dim(k, 0) == B, "attention: batch of q %s and k %s differ", sq, sk);
    OP_REQUIRE(spin_tensor_dim(k, 3) == D, "attention: head dim of q %s and k %s differ", sq, sk);
    OP_REQUIRE(Hkv > 0 && Hq % Hkv == 0, "attention: kv heads of k %s must divide the query heads of q %s",
               sk, sq);
    OP_REQUIRE(D > 0, "attention: head dim of q %s is 0", sq);
    if (qpos) {
        spin_shape_str(qpos, sp, sizeof sp);
        OP_REQUIRE(spin_tensor_dtype(qpos) == SPIN_I32, "attention: qpos must be i32 (got %s)",
                   spin_dtype_name(spin_tensor_dtype(qpos)));
        OP_REQUIRE(spin_tensor_ndim(qpos) == 2 && spin_tensor_dim(qpos, 0) == B &&
                       spin_tensor_dim(qpos, 1) == Tq,
                   "attention: qpos %s must be [B, Tq] = [%lld, %lld] for q %s", sp, (long long)B,
                   (long long)Tq, sq);
    }
    if (kmask) {
        spin_shape_str(kmask, sp, sizeof sp);
        OP_REQUIRE(op_float(kmask), "attention: kmask must be f32 or bf16 (got %s)",
                   spin_dtype_name(spin_tensor_dtype(kmask)));
        OP_REQUIRE(spin_tensor_ndim(kmask) == 2 && spin_tensor_dim(kmask, 0) == B &&
                       spin_tensor_dim(kmask, 1) == Tk,
                   "attention: kmask %s must be [B, Tk] = [%lld, %lld] for k %s", sp, (long long)B,
                   (long long)Tk, sk);
    }
    OP_REQUIRE(opts->window >= 0, "attention: window %lld must be >= 0", (long long)opts->window);
    /* default positions come from an f32 arange, exact below 2^24 */
    OP_REQUIRE(qpos || (opts->kv_offset >= 0 && opts->kv_offset + Tq <= (1 << 24)),
               "attention: kv_offset %lld out of range [0, 2^24 - Tq]; pass qpos instead",
               (long long)opts->kv_offset);

    spin_kparams p = {.f = {opts->scale != 0 ? opts->scale : 1.0f / sqrtf((float)D)}, .i = {opts->window}};
    /* The copies feed only the kernel; the gradient is routed to q, k, v by this op's own node. */
    spin_no_grad_begin();
    spin_tensor *in[5] = {spin_contiguous(q), spin_contiguous(k), spin_contiguous(v),
                          qpos ? spin_contiguous(qpos) : default_qpos(q, B, Tq, opts->kv_offset),
                          kmask ? spin_contiguous(kmask) : NULL};
    spin_no_grad_end();
    int n_in = kmask ? 5 : 4;
    spin_tensor *o = NULL, *lse = NULL;
    if (in[0] && in[1] && in[2] && in[3] && (!kmask || in[4])) {
        /* o in the inputs' dtype; the row log-sum-exp stays f32 */
        spin_dtype odt = op_promote(q, k) == op_promote(q, v) ? op_promote(q, k) : SPIN_F32;
        o = op_new(q, odt, 4, spin_tensor_shape(q));
        lse = op_new(q, SPIN_F32, 3, (const int64_t[]){B, Hq, Tq});
        spin_tensor *out[2] = {o, lse};
        if (!o || !lse || spin_launch(SPIN_K_ATTENTION, n_in, in, 2, out, &p) != SPIN_OK) {
            spin_tensor_release(o);
            o = NULL;
        }
    }
    if (o) {
        spin_tensor *qkv[3] = {q, k, v};
        spin_node *n = spin_autograd_record(o, "attention", attention_backward, 3, qkv);
        if (n) {
            n->p = p;
            spin_node_save(n, in[0]);
            spin_node_save(n, in[1]);
            spin_node_save(n, in[2]);
            spin_node_save(n, o);
            spin_node_save(n, lse);
            spin_node_save(n, in[3]);
            spin_node_save(n, in[4]);
        }
    }
    spin_tensor_release(lse);
    for (int i = 0; i < 5; i++)
        spin_tensor_release(in[i]);
    return op_end(o);
}
