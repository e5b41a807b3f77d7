/* The op library: tensor operations with their shape rules and backward rules. Every function
 * returns a new tensor (the caller's reference, or the enclosing scope's) or NULL with
 * spin_last_error set. Inputs are never modified except by the *_into functions. */
#ifndef SPIN_OPS_OPS_H
#define SPIN_OPS_OPS_H

#include "core/autograd.h"
#include "core/tensor.h"

/* ---- creation (ops/create.c) ---- */
spin_tensor *spin_full(spin_device *dev, spin_dtype dt, int ndim, const int64_t *shape, float value);
spin_tensor *spin_zeros(spin_device *dev, spin_dtype dt, int ndim, const int64_t *shape);
spin_tensor *spin_zeros_like(const spin_tensor *t);
spin_tensor *spin_arange(spin_device *dev, spin_dtype dt, int64_t n, float start, float step);
/* Deterministic in (seed, offset): element i gets stream value offset + i. */
spin_tensor *spin_rand_uniform(spin_device *dev, int ndim, const int64_t *shape, uint64_t seed,
                               uint64_t offset, float lo, float hi);
spin_tensor *spin_rand_normal(spin_device *dev, int ndim, const int64_t *shape, uint64_t seed,
                              uint64_t offset, float mean, float std);
spin_tensor *spin_from_host(spin_device *dev, spin_dtype dt, int ndim, const int64_t *shape,
                            const void *data);
spin_status spin_fill_(spin_tensor *t, float value); /* in place, not recorded */

/* ---- views and copies (ops/view.c) ---- */
spin_tensor *spin_reshape(spin_tensor *x, int ndim, const int64_t *shape); /* -1 infers one dim */
spin_tensor *spin_permute(spin_tensor *x, const int *perm);
spin_tensor *spin_transpose(spin_tensor *x, int d0, int d1);
spin_tensor *spin_narrow(spin_tensor *x, int dim, int64_t start, int64_t len);
/* Broadcast view (stride 0) of x to shape; x's dims align to the right. */
spin_tensor *spin_expand(spin_tensor *x, int ndim, const int64_t *shape);
spin_tensor *spin_contiguous(spin_tensor *x); /* returns x itself (new ref) if already contiguous */
spin_tensor *spin_copy(spin_tensor *x);       /* always a new contiguous tensor */
spin_tensor *spin_cast(spin_tensor *x, spin_dtype dt);
/* Copies src into the view dst (e.g. a KV-cache slot): not recorded; dst must not require grad. */
spin_status spin_copy_into(spin_tensor *dst, spin_tensor *src);
spin_tensor *spin_concat(spin_tensor *const *xs, int n, int dim);
/* Splits x along dim into n views of the given sizes (written to out[]). */
spin_status spin_split(spin_tensor *x, int dim, int n, const int64_t *sizes, spin_tensor **out);

/* ---- elementwise (ops/elementwise.c); binary ops broadcast numpy-style ---- */
spin_tensor *spin_add(spin_tensor *a, spin_tensor *b);
spin_tensor *spin_sub(spin_tensor *a, spin_tensor *b);
spin_tensor *spin_mul(spin_tensor *a, spin_tensor *b);
spin_tensor *spin_div(spin_tensor *a, spin_tensor *b);
spin_tensor *spin_scale(spin_tensor *x, float s);           /* s * x */
spin_tensor *spin_affine(spin_tensor *x, float s, float b); /* s * x + b */
spin_tensor *spin_exp(spin_tensor *x);
spin_tensor *spin_log(spin_tensor *x);
spin_tensor *spin_sqrt(spin_tensor *x);
spin_tensor *spin_rsqrt(spin_tensor *x);
spin_tensor *spin_neg(spin_tensor *x);
spin_tensor *spin_clamp(spin_tensor *x, float lo, float hi);
spin_tensor *spin_silu(spin_tensor *x);
spin_tensor *spin_gelu(spin_tensor *x); /* tanh form */
spin_tensor *spin_relu(spin_tensor *x);
spin_tensor *spin_logsigmoid(spin_tensor *x);
/* cond != 0 ? a : b; cond is not differentiated. */
spin_tensor *spin_where(spin_tensor *cond, spin_tensor *a, spin_tensor *b);

/* ---- reductions (ops/reduce.c) ---- */
spin_tensor *spin_sum(spin_tensor *x, int axis, bool keepdim);
spin_tensor *spin_mean(spin_tensor *x, int axis, bool keepdim);
spin_tensor *spin_sum_all(spin_tensor *x); /* shape [] (0-d) */
spin_tensor *spin_mean_all(spin_tensor *x);
spin_tensor *spin_sumsq(spin_tensor *x, int axis, bool keepdim);
spin_tensor *spin_sumsq_all(spin_tensor *x);
/* sum_t x[.., t] * mask[.., t] over the last axis: x [B, T], mask [B, T] -> [B]. */
spin_tensor *spin_masked_sum(spin_tensor *x, spin_tensor *mask);

/* ---- linear algebra (ops/matmul.c) ---- */
/* a [.., M, K] @ b [.., K, N] (transposed when ta/tb: a [.., K, M], b [.., N, K]); batch dims
 * must match, or b may be 2-D and shared across a's batch. */
spin_tensor *spin_matmul(spin_tensor *a, spin_tensor *b, bool ta, bool tb);

/* ---- softmax family (ops/softmax.c), over the last axis ---- */
spin_tensor *spin_softmax(spin_tensor *x);
spin_tensor *spin_log_softmax(spin_tensor *x);

/* ---- normalisation (ops/norm.c) ---- */
spin_tensor *spin_rmsnorm(spin_tensor *x, spin_tensor *w, float eps);
spin_tensor *spin_layernorm(spin_tensor *x, spin_tensor *w, spin_tensor *b, float eps);

/* ---- embedding (ops/embedding.c): w [V, C], ids i32 [..] -> [.., C] ---- */
spin_tensor *spin_embedding(spin_tensor *w, spin_tensor *ids);
/* The same with torch's padding_idx: row padding_idx (if >= 0) receives no gradient. */
spin_tensor *spin_embedding_pad(spin_tensor *w, spin_tensor *ids, int64_t padding_idx);

/* ---- rotary position embedding (ops/rope.c) ----
 * x [B, H, T, D], pos i32 [B, T]; inv_freq [D/2] f32 (from spin_rope_inv_freq or a model's
 * scaled frequencies); layout SPIN_ROPE_HALF (HF) or SPIN_ROPE_INTERLEAVED. */
spin_tensor *spin_rope(spin_tensor *x, spin_tensor *pos, spin_tensor *inv_freq, int layout);
spin_tensor *spin_rope_inv_freq(spin_device *dev, int64_t head_dim, double theta);

/* ---- attention (ops/attention.c) ----
 * Causal scaled-dot-product attention with grouped-query heads.
 * q [B, Hq, Tq, D], k and v [B, Hkv, Tk, D] with Hkv dividing Hq.
 * Query i of row b sits at cache slot qpos[b, i] (i32 [B, Tq]; NULL means kv_offset + i).
 * Key j is visible to query i iff j <= qpos, j > qpos - window (window 0: unlimited) and
 * kmask[b, j] != 0 (f32 [B, Tk]; NULL: all keys valid). Rows with no visible key give 0. */
typedef struct {
    float scale;       /* 0: 1/sqrt(D) */
    int64_t window;    /* sliding window W, 0 for none */
    int64_t kv_offset; /* used when qpos is NULL */
} spin_attn_opts;
spin_tensor *spin_attention(spin_tensor *q, spin_tensor *k, spin_tensor *v, spin_tensor *qpos,
                            spin_tensor *kmask, const spin_attn_opts *opts);

/* ---- losses (ops/cross_entropy.c) ----
 * Fused linear + log-prob gather, chunked over tokens so the [N, V] logits never exist whole:
 * h [N, C], w [V, C] (lm head), targets i32 [N]. Returns logp [N] = log softmax(h w^T)[target]
 * (0 where target == ignore_index). Optional outputs (may be NULL; not differentiated):
 * logit_sum [N] = sum over the vocabulary of the logits, lse [N]. */
spin_tensor *spin_linear_logprob(spin_tensor *h, spin_tensor *w, spin_tensor *targets, int32_t ignore_index,
                                 int64_t chunk, spin_tensor **logit_sum, spin_tensor **lse);
/* Mean cross-entropy over non-ignored targets: -mean(logp), shape []. */
spin_tensor *spin_cross_entropy(spin_tensor *h, spin_tensor *w, spin_tensor *targets, int32_t ignore_index,
                                int64_t chunk);
/* Same from materialised logits [N, V]. */
spin_tensor *spin_logprob_gather(spin_tensor *logits, spin_tensor *targets, int32_t ignore_index,
                                 spin_tensor **logit_sum);

/* ---- indexing (ops/index.c); not differentiable ---- */
spin_tensor *spin_argmax(spin_tensor *x); /* last axis -> i32 */
spin_status spin_topk(spin_tensor *x, int64_t k, spin_tensor **values, spin_tensor **indices);

#endif
