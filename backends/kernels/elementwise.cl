/* Elementwise kernels over strided 4-D views (stride 0 broadcasts): the same formulas as
 * backends/cpu/cpu_elementwise.c. */
#include "spin_kernel.h"

KERNEL copy_f32(SHAPE_ARGS, GLOBAL const float *x, VIEW_ARGS(x), GLOBAL float *y, VIEW_ARGS(y)) {
    INDEX4();
    y[AT(y)] = x[AT(x)];
}

KERNEL copy_i32(SHAPE_ARGS, GLOBAL const int *x, VIEW_ARGS(x), GLOBAL int *y, VIEW_ARGS(y)) {
    INDEX4();
    y[AT(y)] = x[AT(x)];
}

KERNEL copy_f32_i32(SHAPE_ARGS, GLOBAL const float *x, VIEW_ARGS(x), GLOBAL int *y, VIEW_ARGS(y)) {
    INDEX4();
    y[AT(y)] = F2I_RTE(x[AT(x)]);
}

KERNEL copy_i32_f32(SHAPE_ARGS, GLOBAL const int *x, VIEW_ARGS(x), GLOBAL float *y, VIEW_ARGS(y)) {
    INDEX4();
    y[AT(y)] = (float)x[AT(x)];
}

KERNEL fill_i32(SHAPE_ARGS, GLOBAL int *y, VIEW_ARGS(y), float v) {
    INDEX4();
    y[AT(y)] = F2I_RTE(v);
}

/* y[i] = start + i * step over a 1-D view. */
KERNEL arange_f32(i64 total, GLOBAL float *y, i64 yo, i64 ys, float start, float step) {
    const i64 i = GLOBAL_ID0;
    if (i < total)
        y[yo + i * ys] = start + (float)i * step;
}

KERNEL arange_i32(i64 total, GLOBAL int *y, i64 yo, i64 ys, float start, float step) {
    const i64 i = GLOBAL_ID0;
    if (i < total)
        y[yo + i * ys] = F2I_RTE(start + (float)i * step);
}

#define WHERE(NAME, CT, TEST)                                                                      \
    KERNEL NAME(SHAPE_ARGS, GLOBAL const CT *cnd, VIEW_ARGS(cnd), GLOBAL const float *a,           \
                VIEW_ARGS(a), GLOBAL const float *b, VIEW_ARGS(b), GLOBAL float *y, VIEW_ARGS(y)) { \
        INDEX4();                                                                                  \
        y[AT(y)] = (TEST) ? a[AT(a)] : b[AT(b)];                                                   \
    }

WHERE(where_f32, float, cnd[AT(cnd)] != 0.0f)
WHERE(where_i32, int, cnd[AT(cnd)] != 0)

/* Sum (or sum of squares) over one axis: one work-item per output element, accumulating in acc_t
 * in index order like the CPU reference. The output's shape drives the index space; x's view
 * starts at the same position and walks the axis with stride `step`. */
KERNEL reduce_axis_f32(SHAPE_ARGS, GLOBAL const float *x, VIEW_ARGS(x), GLOBAL float *y, VIEW_ARGS(y),
                       i64 len, i64 step, int square) {
    INDEX4();
    const i64 base = AT(x);
    acc_t acc = 0;
    for (i64 j = 0; j < len; j++) {
        const acc_t v = (acc_t)x[base + j * step];
        acc += square ? v * v : v;
    }
    y[AT(y)] = (float)acc;
}

KERNEL fill_f32(SHAPE_ARGS, GLOBAL float *y, VIEW_ARGS(y), float v) {
    INDEX4();
    y[AT(y)] = v;
}

#define BINARY(NAME, EXPR)                                                                         \
    KERNEL NAME(SHAPE_ARGS, GLOBAL const float *a, VIEW_ARGS(a), GLOBAL const float *b,            \
                VIEW_ARGS(b), GLOBAL float *y, VIEW_ARGS(y)) {                                     \
        INDEX4();                                                                                  \
        const float av = a[AT(a)], bv = b[AT(b)];                                                  \
        y[AT(y)] = (EXPR);                                                                         \
    }

BINARY(add_f32, av + bv)
BINARY(sub_f32, av - bv)
BINARY(mul_f32, av * bv)
BINARY(div_f32, av / bv)

DEVICE_FN float gelu_f(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + M_TANH(k * (x + 0.044715f * x * x * x)));
}

DEVICE_FN float logsigmoid_f(float x) {
    return x < 0.0f ? x - M_LOG1P(M_EXP(x)) : -M_LOG1P(M_EXP(-x));
}

DEVICE_FN float silu_back_f(float x, float dy) {
    const float s = 1.0f / (1.0f + M_EXP(-x));
    return dy * s * (1.0f + x * (1.0f - s));
}

DEVICE_FN float gelu_back_f(float x, float dy) {
    const float k = 0.7978845608028654f;
    const float u = k * (x + 0.044715f * x * x * x);
    const float t = M_TANH(u);
    const float du = k * (1.0f + 3.0f * 0.044715f * x * x);
    return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
}

/* Unary kernels: y = f(x; p0, p1). */
#define UNARY(NAME, EXPR)                                                                          \
    KERNEL NAME(SHAPE_ARGS, GLOBAL const float *x, VIEW_ARGS(x), GLOBAL float *y, VIEW_ARGS(y),    \
                float p0, float p1) {                                                              \
        INDEX4();                                                                                  \
        const float xv = x[AT(x)];                                                                 \
        y[AT(y)] = (EXPR);                                                                         \
    }

UNARY(scale_f32, p0 * xv + p1)
UNARY(exp_f32, M_EXP(xv))
UNARY(log_f32, M_LOG(xv))
UNARY(sqrt_f32, M_SQRT(xv))
UNARY(rsqrt_f32, 1.0f / M_SQRT(xv))
UNARY(neg_f32, -xv)
UNARY(silu_f32, xv / (1.0f + M_EXP(-xv)))
UNARY(gelu_f32, gelu_f(xv))
UNARY(relu_f32, xv > 0.0f ? xv : 0.0f)
UNARY(logsigmoid_f32, logsigmoid_f(xv))
UNARY(clamp_f32, xv < p0 ? p0 : (xv > p1 ? p1 : xv))

/* Backward kernels: dx = f'(x) * dy, from x and dy. */
#define BACK(NAME, EXPR)                                                                           \
    KERNEL NAME(SHAPE_ARGS, GLOBAL const float *x, VIEW_ARGS(x), GLOBAL const float *g,            \
                VIEW_ARGS(g), GLOBAL float *y, VIEW_ARGS(y), float p0, float p1) {                 \
        INDEX4();                                                                                  \
        const float xv = x[AT(x)], dy = g[AT(g)];                                                  \
        y[AT(y)] = (EXPR);                                                                         \
    }

BACK(silu_back_f32, silu_back_f(xv, dy))
BACK(gelu_back_f32, gelu_back_f(xv, dy))
BACK(relu_back_f32, xv > 0.0f ? dy : 0.0f)
BACK(logsigmoid_back_f32, dy / (1.0f + M_EXP(xv)))
BACK(clamp_back_f32, (xv >= p0 && xv <= p1) ? dy : 0.0f)
