/* Elementwise CPU kernels over strided 4-D views (stride 0 broadcasts). */
#include <math.h>
#include <string.h>

#include "backends/cpu/cpu_kernels.h"
#include "core/rng.h"

/* Walks the 4-D index space of `out`, giving each input's and the output's element offsets. The
 * innermost dimension is a plain loop so the compiler can vectorise contiguous cases. */
#define CPU_FOR4(o, ...)                                                                                  \
    do {                                                                                                  \
        const int64_t n0_ = (o).n[0], n1_ = (o).n[1], n2_ = (o).n[2], n3_ = (o).n[3];                     \
        _Pragma("omp parallel for collapse(3) schedule(static) if (n0_ * n1_ * n2_ * n3_ > 32768)") for ( \
            int64_t i0 = 0; i0 < n0_; i0++) for (int64_t i1 = 0; i1 < n1_;                                \
                                                 i1++) for (int64_t i2 = 0; i2 < n2_;                     \
                                                            i2++) for (int64_t i3 = 0; i3 < n3_; i3++) {  \
            __VA_ARGS__                                                                                   \
        }                                                                                                 \
    } while (0)

#define OFF(sh, i0, i1, i2, i3) ((i0) * (sh).s[0] + (i1) * (sh).s[1] + (i2) * (sh).s[2] + (i3) * (sh).s[3])

spin_status cpu_COPY(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const spin_view *x = &c->in[0], *y = &c->out[0];
    cpu_shape4 xs = cpu_pad4(x), ys = cpu_pad4(y);
    if (x->dtype == SPIN_F32 && y->dtype == SPIN_F32) {
        const float *xp = cpu_f32(x);
        float *yp = cpu_f32(y);
        CPU_FOR4(ys, yp[OFF(ys, i0, i1, i2, i3)] = xp[OFF(xs, i0, i1, i2, i3)];);
    } else if (x->dtype == SPIN_BF16 && y->dtype == SPIN_F32) {
        const uint16_t *xp = cpu_u16(x);
        float *yp = cpu_f32(y);
        CPU_FOR4(ys, yp[OFF(ys, i0, i1, i2, i3)] = cpu_bf16_widen(xp[OFF(xs, i0, i1, i2, i3)]););
    } else if (x->dtype == SPIN_F32 && y->dtype == SPIN_BF16) {
        const float *xp = cpu_f32(x);
        uint16_t *yp = cpu_u16(y);
        CPU_FOR4(ys, yp[OFF(ys, i0, i1, i2, i3)] = cpu_bf16_round(xp[OFF(xs, i0, i1, i2, i3)]););
    } else if (x->dtype == y->dtype) {
        size_t es = x->dtype == SPIN_I32 ? 4 : 2;
        const char *xp = (const char *)x->buf + x->offset * es;
        char *yp = (char *)y->buf + y->offset * es;
        CPU_FOR4(ys, memcpy(yp + OFF(ys, i0, i1, i2, i3) * (int64_t)es,
                            xp + OFF(xs, i0, i1, i2, i3) * (int64_t)es, es););
    } else {
        size_t xes = spin_dtype_size(x->dtype), yes = spin_dtype_size(y->dtype);
        const char *xp = (const char *)x->buf + x->offset * xes;
        char *yp = (char *)y->buf + y->offset * yes;
        CPU_FOR4(ys, spin_dtype_store(y->dtype, yp, (size_t)OFF(ys, i0, i1, i2, i3),
                                      spin_dtype_load(x->dtype, xp, (size_t)OFF(xs, i0, i1, i2, i3))););
    }
    return SPIN_OK;
}

spin_status cpu_FILL(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const spin_view *y = &c->out[0];
    cpu_shape4 ys = cpu_pad4(y);
    float v = c->p.f[0];
    if (y->dtype == SPIN_F32) {
        float *yp = cpu_f32(y);
        CPU_FOR4(ys, yp[OFF(ys, i0, i1, i2, i3)] = v;);
    } else {
        char *yp = (char *)y->buf + y->offset * spin_dtype_size(y->dtype);
        CPU_FOR4(ys, spin_dtype_store(y->dtype, yp, (size_t)OFF(ys, i0, i1, i2, i3), v););
    }
    return SPIN_OK;
}

spin_status cpu_ARANGE(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    const spin_view *y = &c->out[0];
    int64_t n = cpu_numel(y);
    char *yp = (char *)y->buf + y->offset * spin_dtype_size(y->dtype);
    for (int64_t i = 0; i < n; i++)
        spin_dtype_store(y->dtype, yp, (size_t)(i * y->stride[0]), c->p.f[0] + (float)i * c->p.f[1]);
    return SPIN_OK;
}

spin_status cpu_RNG_UNIFORM(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    float *y = cpu_f32(&c->out[0]);
    int64_t n = cpu_numel(&c->out[0]);
    uint64_t seed = (uint64_t)c->p.i[0], off = (uint64_t)c->p.i[1];
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        y[i] = spin_rng_uniform(seed, off + (uint64_t)i);
    return SPIN_OK;
}

spin_status cpu_RNG_NORMAL(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    float *y = cpu_f32(&c->out[0]);
    int64_t n = cpu_numel(&c->out[0]);
    uint64_t seed = (uint64_t)c->p.i[0], off = (uint64_t)c->p.i[1];
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++)
        y[i] = spin_rng_normal(seed, off + (uint64_t)i);
    return SPIN_OK;
}

#define BINARY_KERNEL(NAME, EXPR)                                                                 \
    spin_status cpu_##NAME(struct spin_device *dev, const spin_kcall *c) {                        \
        (void)dev;                                                                                \
        cpu_shape4 as = cpu_pad4(&c->in[0]), bs = cpu_pad4(&c->in[1]), ys = cpu_pad4(&c->out[0]); \
        const float *ap = cpu_f32(&c->in[0]), *bp = cpu_f32(&c->in[1]);                           \
        float *yp = cpu_f32(&c->out[0]);                                                          \
        CPU_FOR4(ys, {                                                                            \
            float a = ap[OFF(as, i0, i1, i2, i3)], b = bp[OFF(bs, i0, i1, i2, i3)];               \
            yp[OFF(ys, i0, i1, i2, i3)] = (EXPR);                                                 \
        });                                                                                       \
        return SPIN_OK;                                                                           \
    }

BINARY_KERNEL(ADD, a + b)
BINARY_KERNEL(SUB, a - b)
BINARY_KERNEL(MUL, a *b)
BINARY_KERNEL(DIV, a / b)

static inline float gelu_f(float x) {
    const float k = 0.7978845608028654f; /* sqrt(2/pi) */
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

static inline float logsigmoid_f(float x) {
    return x < 0 ? x - log1pf(expf(x)) : -log1pf(expf(-x));
}

#define UNARY_KERNEL(NAME, EXPR)                                           \
    spin_status cpu_##NAME(struct spin_device *dev, const spin_kcall *c) { \
        (void)dev;                                                         \
        cpu_shape4 xs = cpu_pad4(&c->in[0]), ys = cpu_pad4(&c->out[0]);    \
        const float *xp = cpu_f32(&c->in[0]);                              \
        float *yp = cpu_f32(&c->out[0]);                                   \
        const float p0 = c->p.f[0], p1 = c->p.f[1];                        \
        (void)p0, (void)p1;                                                \
        CPU_FOR4(ys, {                                                     \
            float x = xp[OFF(xs, i0, i1, i2, i3)];                         \
            yp[OFF(ys, i0, i1, i2, i3)] = (EXPR);                          \
        });                                                                \
        return SPIN_OK;                                                    \
    }

UNARY_KERNEL(SCALE, p0 *x + p1)
UNARY_KERNEL(EXP, expf(x))
UNARY_KERNEL(LOG, logf(x))
UNARY_KERNEL(SQRT, sqrtf(x))
UNARY_KERNEL(RSQRT, 1.0f / sqrtf(x))
UNARY_KERNEL(NEG, -x)
UNARY_KERNEL(SILU, x / (1.0f + expf(-x)))
UNARY_KERNEL(GELU, gelu_f(x))
UNARY_KERNEL(RELU, x > 0 ? x : 0.0f)
UNARY_KERNEL(LOGSIGMOID, logsigmoid_f(x))
UNARY_KERNEL(CLAMP, x < p0 ? p0 : (x > p1 ? p1 : x))

static inline float silu_back(float x, float dy) {
    float s = 1.0f / (1.0f + expf(-x));
    return dy * s * (1.0f + x * (1.0f - s));
}

static inline float gelu_back(float x, float dy) {
    const float k = 0.7978845608028654f;
    float u = k * (x + 0.044715f * x * x * x);
    float t = tanhf(u);
    float du = k * (1.0f + 3.0f * 0.044715f * x * x);
    return dy * (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du);
}

/* d/dx log(sigmoid(x)) = sigmoid(-x) */
static inline float logsigmoid_back(float x, float dy) {
    return dy / (1.0f + expf(x));
}

#define BACK_KERNEL(NAME, EXPR)                                                                   \
    spin_status cpu_##NAME(struct spin_device *dev, const spin_kcall *c) {                        \
        (void)dev;                                                                                \
        cpu_shape4 xs = cpu_pad4(&c->in[0]), ds = cpu_pad4(&c->in[1]), ys = cpu_pad4(&c->out[0]); \
        const float *xp = cpu_f32(&c->in[0]), *dp = cpu_f32(&c->in[1]);                           \
        float *yp = cpu_f32(&c->out[0]);                                                          \
        const float p0 = c->p.f[0], p1 = c->p.f[1];                                               \
        (void)p0, (void)p1;                                                                       \
        CPU_FOR4(ys, {                                                                            \
            float x = xp[OFF(xs, i0, i1, i2, i3)], dy = dp[OFF(ds, i0, i1, i2, i3)];              \
            yp[OFF(ys, i0, i1, i2, i3)] = (EXPR);                                                 \
        });                                                                                       \
        return SPIN_OK;                                                                           \
    }

BACK_KERNEL(SILU_BACK, silu_back(x, dy))
BACK_KERNEL(GELU_BACK, gelu_back(x, dy))
BACK_KERNEL(RELU_BACK, x > 0 ? dy : 0.0f)
BACK_KERNEL(LOGSIGMOID_BACK, logsigmoid_back(x, dy))
BACK_KERNEL(CLAMP_BACK, (x >= p0 && x <= p1) ? dy : 0.0f)

spin_status cpu_WHERE(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    cpu_shape4 cs = cpu_pad4(&c->in[0]), as = cpu_pad4(&c->in[1]), bs = cpu_pad4(&c->in[2]),
               ys = cpu_pad4(&c->out[0]);
    const float *ap = cpu_f32(&c->in[1]), *bp = cpu_f32(&c->in[2]);
    float *yp = cpu_f32(&c->out[0]);
    if (c->in[0].dtype == SPIN_I32) {
        const int32_t *cp = cpu_i32(&c->in[0]);
        CPU_FOR4(ys, {
            yp[OFF(ys, i0, i1, i2, i3)] =
                cp[OFF(cs, i0, i1, i2, i3)] ? ap[OFF(as, i0, i1, i2, i3)] : bp[OFF(bs, i0, i1, i2, i3)];
        });
    } else {
        const float *cp = cpu_f32(&c->in[0]);
        CPU_FOR4(ys, {
            yp[OFF(ys, i0, i1, i2, i3)] = cp[OFF(cs, i0, i1, i2, i3)] != 0.0f ? ap[OFF(as, i0, i1, i2, i3)]
                                                                              : bp[OFF(bs, i0, i1, i2, i3)];
        });
    }
    return SPIN_OK;
}
