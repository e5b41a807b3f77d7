/* The kernel list: every computation a backend can be asked to run. One X-macro drives the enum,
 * the name table, each backend's table and the coverage report. Append only.
 *
 * Conventions (spin_kcall): in[] and out[] are strided views of up to 4 dims; f[] and i[] are
 * scalar parameters. Kernels marked "contig" receive contiguous views (the ops layer ensures it);
 * the others honour strides, including stride 0 (broadcast). Ids and positions are i32.
 *
 *  name              inputs                       outputs               params
 */
#ifndef SPIN_CORE_KERNELS_H
#define SPIN_CORE_KERNELS_H

#define SPIN_KERNELS(X)                                                                            \
    X(COPY)        /* x                        y (any dtype: cast)                        */       \
    X(FILL)        /* -                        y                     f0 value            */        \
    X(ARANGE)      /* -                        y (contig, 1-D)       f0 start, f1 step   */        \
    X(RNG_UNIFORM) /* -                        y (contig)            i0 seed, i1 offset  */        \
    X(RNG_NORMAL)  /* -                        y (contig)            i0 seed, i1 offset  */        \
    X(ADD)         /* a, b (broadcast views)   y                                         */        \
    X(SUB)                                                                                         \
    X(MUL)                                                                                         \
    X(DIV)                                                                                         \
    X(SCALE) /* x                        y = f0*x + f1                             */              \
    X(EXP)                                                                                         \
    X(LOG)                                                                                         \
    X(SQRT)                                                                                        \
    X(RSQRT)                                                                                       \
    X(NEG)                                                                                         \
    X(SILU)                                                                                        \
    X(GELU) /* tanh approximation                                                 */               \
    X(RELU)                                                                                        \
    X(LOGSIGMOID)                                                                                  \
    X(CLAMP)            /* x                        y                     f0 lo, f1 hi        */   \
    X(SILU_BACK)        /* x, dy                    dx                                        */   \
    X(GELU_BACK)        /* x, dy                    dx                                        */   \
    X(RELU_BACK)        /* x, dy                    dx                                        */   \
    X(LOGSIGMOID_BACK)  /* x, dy                    dx                                        */   \
    X(CLAMP_BACK)       /* x, dy                    dx                    f0 lo, f1 hi        */   \
    X(WHERE)            /* cond, a, b (broadcast)   y = cond != 0 ? a : b                     */   \
    X(SUM_AXIS)         /* x                        y (axis kept, size 1) i0 axis             */   \
    X(SUMSQ_AXIS)       /* x                        y (axis kept, size 1) i0 axis             */   \
    X(MATMUL)           /* a [.., M, K], b [.., K, N] (either may be a transposed view)            \
                                                    c [.., M, N]          c = f0*a@b + f1*c   */   \
    X(SOFTMAX)          /* x contig [.., C]         y                                         */   \
    X(LOG_SOFTMAX)      /* x contig [.., C]         y                                         */   \
    X(SOFTMAX_BACK)     /* y, dy contig             dx                                        */   \
    X(LOG_SOFTMAX_BACK) /* y, dy contig             dx                                        */   \
    X(EMBEDDING)        /* w [V, C], ids [N]        y [N, C]                                  */   \
    X(EMBEDDING_BACK)   /* ids [N], dy [N, C]       dw [V, C] (overwritten) i0 V              */   \
    X(RMSNORM)          /* x [N, C], w [C]          y, rstd [N]           f0 eps              */   \
    X(RMSNORM_BACK)     /* x, w, rstd, dy           dx, dw                                    */   \
    X(LAYERNORM)        /* x [N, C], w [C], b [C]   y, mean [N], rstd [N] f0 eps              */   \
    X(LAYERNORM_BACK)   /* x, w, mean, rstd, dy     dx, dw, db                                */   \
    X(ROPE)             /* x [B, H, T, D], pos [B, T], inv_freq [D/2]                              \
                                                    y                     i0 layout, i1 inverse */ \
    X(ATTENTION)        /* q [B,Hq,Tq,D], k, v [B,Hkv,Tk,D], qpos [B,Tq], (kmask [B,Tk])           \
                                                    o [B,Hq,Tq,D], lse [B,Hq,Tq]                   \
                                                                          f0 scale, i0 window */   \
    X(ATTENTION_BACK)   /* q, k, v, o, lse, do, qpos, (kmask)                                      \
                                                    dq, dk, dv            f0 scale, i0 window */   \
    X(CE_ROWS)          /* logits [N, V], targets [N]  logp, lse, logit_sum [N]  i0 ignore    */   \
    X(CE_ROWS_BACK)     /* logits, targets, lse, dlogp [N]  dlogits [N, V]      i0 ignore     */   \
    X(ARGMAX)           /* x contig [.., C]         idx [..] (i32)                            */   \
    X(TOPK)             /* x contig [.., C]         val [.., k], idx [.., k]  i0 k            */   \
    X(GRAD_SUMSQ)       /* g contig                 acc [2] (rw): acc[0] + acc[1] += sum g^2       \
                           (a double kept as hi + lo floats; 4096-element blocks summed in         \
                           double, then in block order: the same bits for any thread count) */     \
    X(GRAD_CLIP_STAT)   /* acc [2]                  stat [3] {norm, coef, finite 1/0}              \
                                                                          f0 max_norm              \
                           coef = min(1, max_norm / (norm + 1e-6)) (torch clip_grad_norm_);        \
                           max_norm <= 0: coef 1                                           */      \
    X(RMSPROP_STEP)     /* g contig, stat           p, v (rw, f32 contig), (p copy: bf16/f16/f32)  \
                           f0 -lr, f1 alpha, f2 1-alpha, f3 eps, f4 weight_decay; nothing          \
                           when stat.finite == 0; torch.optim.RMSprop's f32 operation order */     \
    X(ADAMW_STEP)       /* g contig, stat           p, m, v (rw, f32 contig), (p copy, as above)   \
                           f0 1-lr*wd, f1 1-beta1, f2 beta2, f3 1-beta2, f4 -lr/(1-beta1^t),       \
                           f5 sqrt(1-beta2^t), f6 eps; nothing when stat.finite == 0;              \
                           torch.optim.AdamW's f32 operation order                         */

typedef enum {
#define SPIN_KERNEL_ENUM_(name) SPIN_K_##name,
    SPIN_KERNELS(SPIN_KERNEL_ENUM_)
#undef SPIN_KERNEL_ENUM_
        SPIN_KERNEL_COUNT
} spin_kernel;

const char *spin_kernel_name(spin_kernel k);

/* ROPE layouts: HF "rotate half" pairs (j, j + D/2); interleaved pairs (2j, 2j + 1). */
enum { SPIN_ROPE_HALF = 0, SPIN_ROPE_INTERLEAVED = 1 };

#endif
