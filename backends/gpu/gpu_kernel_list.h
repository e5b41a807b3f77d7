/* The kernels of the shared text (backends/kernels, the .cl files) that the CUDA and ROCm backends load: one
 * line per kernel. gpu_kernels.cu takes each one's address (a name missing from the text fails the
 * build); gpu_backend.c launches them by index. A kernel added to the text needs its line here and
 * a launch wrapper in gpu_backend.c. */
#ifndef SPIN_BACKENDS_GPU_KERNEL_LIST_H
#define SPIN_BACKENDS_GPU_KERNEL_LIST_H

/* clang-format off */
#define SPIN_GPU_KERNELS(X)                                                                         \
    X(copy_f32) X(copy_i32) X(copy_f32_i32) X(copy_i32_f32) X(fill_f32) X(fill_i32)                 \
    X(copy_f32_bf16) X(copy_bf16_f32) X(copy_f32_f16) X(copy_f16_f32) X(copy_b16)                   \
    X(check_ids_i32) X(check_ids_note) X(fill_heads_i32) X(embedding_heads_i32)                     \
    X(embedding_b32) X(embedding_b16)                                                               \
    X(embedding_back_f32) X(ce_rows_f32) X(ce_rows_back_f32) X(topk_rounds_f32) X(topk_rank_f32)    \
    X(rng_uniform_f32) X(rng_normal_f32)                                                            \
    X(arange_f32) X(arange_i32) X(where_f32) X(where_i32) X(reduce_axis_f32)                        \
    X(add_f32) X(sub_f32) X(mul_f32) X(div_f32)                                                     \
    X(scale_f32) X(exp_f32) X(log_f32) X(sqrt_f32) X(rsqrt_f32) X(neg_f32) X(silu_f32) X(gelu_f32)  \
    X(relu_f32) X(logsigmoid_f32) X(clamp_f32)                                                      \
    X(silu_back_f32) X(gelu_back_f32) X(relu_back_f32) X(logsigmoid_back_f32) X(clamp_back_f32)     \
    X(softmax_rows_f32) X(softmax_back_rows_f32)                                                    \
    X(rmsnorm_rows_f32) X(rmsnorm_back_rows_f32) X(rmsnorm_dw_f32)                                  \
    X(layernorm_rows_f32) X(layernorm_back_rows_f32) X(layernorm_dwdb_f32) X(rope_f32)              \
    X(argmax_rows_f32)                                                                              \
    X(attention_fwd_f32) X(attention_back_dq_f32) X(attention_back_dkdv_f32)                        \
    X(grad_sumsq_blocks_f32) X(grad_sumsq_combine_f32) X(grad_clip_stat_f32) X(rmsprop_step_f32)    \
    X(adamw_step_f32)                                                                               \
    X(gemm_tiled_f32)
/* clang-format on */

typedef enum {
#define GK_ENUM_(n) GK_##n,
    SPIN_GPU_KERNELS(GK_ENUM_)
#undef GK_ENUM_
        GK_COUNT
} spin_gpu_kid;

#endif
