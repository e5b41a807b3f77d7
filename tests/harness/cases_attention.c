/* Op cases: causal grouped-query attention (positions, sliding window, key mask, decode). */
#include <math.h>
#include <stdint.h>

#include "tests/harness/opcheck.h"

/* Parameters: f[0] scale (0: 1/sqrt(D)), i[0] window, i[1] kv_offset (used when qpos is absent).
 * Inputs: q, k, v, qpos (i32 [B, Tq], may be absent), kmask (f32 [B, Tk], may be absent). */

static spin_tensor *run_attention(const opcase *c, spin_tensor *const *in) {
    spin_attn_opts o = {.scale = c->p.f[0], .window = c->p.i[0], .kv_offset = c->p.i[1]};
    return spin_attention(in[0], in[1], in[2], in[3], in[4], &o);
}

/* Plain two-pass softmax over an explicit visibility test, in double. */
static void ref_attention(const opcase *c, const double *const *in, double *out) {
    const int64_t B = c->in[0].shape[0], Hq = c->in[0].shape[1], Tq = c->in[0].shape[2],
                  D = c->in[0].shape[3];
    const int64_t Hkv = c->in[1].shape[1], Tk = c->in[1].shape[2];
    const int64_t window = c->p.i[0], kv_offset = c->p.i[1];
    const double scale = c->p.f[0] != 0 ? (double)c->p.f[0] : 1.0 / sqrt((double)D);
    const double *q = in[0], *k = in[1], *v = in[2], *qpos = in[3], *kmask = in[4];
    double s[160]; /* scores of one row: the cases keep Tk <= 160 */
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < Tq; i++) {
                int64_t kh = h / (Hq / Hkv);
                int64_t pos = qpos ? (int64_t)qpos[b * Tq + i] : kv_offset + i;
                const double *qi = q + ((b * Hq + h) * Tq + i) * D;
                double *oi = out + ((b * Hq + h) * Tq + i) * D;
                double mx = -INFINITY;
                for (int64_t j = 0; j < Tk; j++) {
                    bool vis =
                        j <= pos && (window == 0 || j > pos - window) && (!kmask || kmask[b * Tk + j] != 0);
                    s[j] = -INFINITY;
                    if (!vis)
                        continue;
                    const double *kj = k + ((b * Hkv + kh) * Tk + j) * D;
                    double d = 0;
                    for (int64_t e = 0; e < D; e++)
                        d += qi[e] * kj[e];
                    s[j] = scale * d;
                    if (s[j] > mx)
                        mx = s[j];
                }
                for (int64_t e = 0; e < D; e++)
                    oi[e] = 0;
                if (mx == -INFINITY)
                    continue; /* nothing visible: output 0 */
                double z = 0;
                for (int64_t j = 0; j < Tk; j++)
                    z += s[j] == -INFINITY ? 0 : exp(s[j] - mx);
                for (int64_t j = 0; j < Tk; j++) {
                    if (s[j] == -INFINITY)
                        continue;
                    double p = exp(s[j] - mx) / z;
                    const double *vj = v + ((b * Hkv + kh) * Tk + j) * D;
                    for (int64_t e = 0; e < D; e++)
                        oi[e] += p * vj[e];
                }
            }
}

/* Tk of the case (k's third dim). */
static int64_t case_tk(const opcase *c) {
    return c->in[1].shape[2];
}

/* Positions out of order, including -1 (sees nothing) and Tk (past the cache: sees every key). */
static void init_qpos_scrambled(const opcase *c, int idx, double *v, int64_t n) {
    int64_t Tq = c->in[idx].shape[1], Tk = case_tk(c);
    for (int64_t f = 0; f < n; f++) {
        int64_t b = f / Tq, i = f % Tq;
        v[f] = (double)((i * 3 + b * 2) % (Tk + 2) - 1);
    }
}

/* Queries at the end of the cache, batch row b lagging by b slots (as after uneven prompts). */
static void init_qpos_tail(const opcase *c, int idx, double *v, int64_t n) {
    int64_t Tq = c->in[idx].shape[1], Tk = case_tk(c);
    for (int64_t f = 0; f < n; f++) {
        int64_t b = f / Tq, i = f % Tq;
        v[f] = (double)(Tk - Tq + i - b);
    }
}

/* Left padding: batch row b has its first 2b keys masked, so with qpos = i its first 2b queries
 * see no key at all. */
static void init_kmask_leftpad(const opcase *c, int idx, double *v, int64_t n) {
    int64_t Tk = c->in[idx].shape[1];
    for (int64_t f = 0; f < n; f++)
        v[f] = f % Tk >= 2 * (f / Tk);
}

/* Scattered holes, and non-unit nonzero values (only != 0 counts). */
static void init_kmask_holes(const opcase *c, int idx, double *v, int64_t n) {
    int64_t Tk = c->in[idx].shape[1];
    for (int64_t f = 0; f < n; f++) {
        int64_t b = f / Tk, j = f % Tk;
        v[f] = (j * 7 + b * 3) % 5 == 1 ? 0.0 : (j % 2 ? 1.0 : 0.5);
    }
}

#define F(...) __VA_ARGS__
#define T4(B, H, T, D) \
    { .ndim = 4, .shape = {B, H, T, D}, .grad = true }
#define T4R(lo_, hi_, B, H, T, D) \
    { .ndim = 4, .shape = {B, H, T, D}, .grad = true, .lo = lo_, .hi = hi_ }
#define T4L(layout_, B, H, T, D) \
    { .ndim = 4, .shape = {B, H, T, D}, .grad = true, .layout = layout_ }
#define NOPOS \
    { .absent = true }
#define NOMASK \
    { .absent = true }
#define POS(fn, B, T) \
    { .ndim = 2, .shape = {B, T}, .dtype = SPIN_I32, .init = fn }
#define MASK(fn, B, T) \
    { .ndim = 2, .shape = {B, T}, .init = fn }
/* forward 1e-5, gradient 1e-3 (normalised), finite-difference step 1e-3 */
#define ATT(desc, q, k, v, pos, mask, scale_, window_, offset_)                                    \
    {                                                                                              \
        .op = "attention", .params = desc, .n_in = 5, .in = {q, k, v, pos, mask},                  \
        .p = {.f = {scale_}, .i = {window_, offset_}}, .run = run_attention, .ref = ref_attention, \
        .tol = 1e-5, .grad_tol = 1e-3, .eps = 1e-3                                                 \
    }

const opcase opc_cases_attention[] = {
    ATT("q,kv[1,2,5,3] causal", T4(1, 2, 5, 3), T4(1, 2, 5, 3), T4(1, 2, 5, 3), NOPOS, NOMASK, 0, 0, 0),
    ATT("q,kv[2,2,7,8] scale=0.9 q,k in [-2,2]", T4R(-2, 2, 2, 2, 7, 8), T4R(-2, 2, 2, 2, 7, 8),
        T4(2, 2, 7, 8), NOPOS, NOMASK, 0.9f, 0, 0),
    ATT("GQA q[1,6,5,5] kv[1,2,5,5]", T4(1, 6, 5, 5), T4(1, 2, 5, 5), T4(1, 2, 5, 5), NOPOS, NOMASK, 0, 0, 0),
    ATT("MQA q[2,4,7,3] kv[2,1,7,3]", T4R(-2, 2, 2, 4, 7, 3), T4R(-2, 2, 2, 1, 7, 3), T4(2, 1, 7, 3), NOPOS,
        NOMASK, 0, 0, 0),
    ATT("window 3 q,kv[1,2,7,5]", T4(1, 2, 7, 5), T4(1, 2, 7, 5), T4(1, 2, 7, 5), NOPOS, NOMASK, 0, 3, 0),
    ATT("window 3 GQA q[2,4,7,4] kv[2,2,7,4]", T4(2, 4, 7, 4), T4(2, 2, 7, 4), T4(2, 2, 7, 4), NOPOS, NOMASK,
        0, 3, 0),
    ATT("decode q[2,4,1,8] kv[2,2,7,8] offset 6", T4(2, 4, 1, 8), T4(2, 2, 7, 8), T4(2, 2, 7, 8), NOPOS,
        NOMASK, 0, 0, 6),
    ATT("decode q[1,2,2,5] kv[1,2,7,5] offset 5", T4(1, 2, 2, 5), T4(1, 2, 7, 5), T4(1, 2, 7, 5), NOPOS,
        NOMASK, 0, 0, 5),
    ATT("decode window 3 q[1,2,2,5] kv[1,1,7,5] offset 5", T4(1, 2, 2, 5), T4(1, 1, 7, 5), T4(1, 1, 7, 5),
        NOPOS, NOMASK, 0, 3, 5),
    ATT("qpos tail q[2,2,3,5] kv[2,2,7,5]", T4(2, 2, 3, 5), T4(2, 2, 7, 5), T4(2, 2, 7, 5),
        POS(init_qpos_tail, 2, 3), NOMASK, 0, 0, 0),
    ATT("qpos scrambled in [-1,Tk] q[2,2,5,3] kv[2,2,7,3]", T4(2, 2, 5, 3), T4(2, 2, 7, 3), T4(2, 2, 7, 3),
        POS(init_qpos_scrambled, 2, 5), NOMASK, 0, 0, 0),
    ATT("kmask left-pad (empty rows) q,kv[2,2,5,4]", T4(2, 2, 5, 4), T4(2, 2, 5, 4), T4(2, 2, 5, 4), NOPOS,
        MASK(init_kmask_leftpad, 2, 5), 0, 0, 0),
    ATT("kmask holes + qpos tail + window 4 GQA q[2,4,5,3] kv[2,2,7,3]", T4(2, 4, 5, 3), T4(2, 2, 7, 3),
        T4(2, 2, 7, 3), POS(init_qpos_tail, 2, 5), MASK(init_kmask_holes, 2, 7), 0, 4, 0),
    ATT("transposed q[1,2,5,3]", T4L(OPC_TRANSPOSED, 1, 2, 5, 3), T4(1, 2, 5, 3), T4(1, 2, 5, 3), NOPOS,
        NOMASK, 0, 0, 0),
    ATT("sliced q,k, transposed v [2,2,7,5] GQA kv[2,1,7,5]", T4L(OPC_SLICED, 2, 2, 7, 5),
        T4L(OPC_SLICED, 2, 1, 7, 5), T4L(OPC_TRANSPOSED, 2, 1, 7, 5), NOPOS, NOMASK, 0, 0, 0),
    ATT("D=1 q,kv[1,1,7,1]", T4R(-3, 3, 1, 1, 7, 1), T4R(-3, 3, 1, 1, 7, 1), T4(1, 1, 7, 1), NOPOS, NOMASK, 0,
        0, 0),
    /* large enough that the kernels run on several threads */
    ATT("threaded q[2,4,24,16] kv[2,2,24,16] window 9 kmask", T4(2, 4, 24, 16), T4(2, 2, 24, 16),
        T4(2, 2, 24, 16), NOPOS, MASK(init_kmask_holes, 2, 24), 0, 9, 0),
    /* more than one tile of 64 keys and of 64 queries (the device kernels' tile), lengths not a
     * multiple of it: tiles skipped whole by the window, a visible range starting mid-tile */
    ATT("tiles q[1,4,70,4] kv[1,2,70,4] window 40 kmask", T4(1, 4, 70, 4), T4(1, 2, 70, 4), T4(1, 2, 70, 4),
        NOPOS, MASK(init_kmask_holes, 1, 70), 0, 40, 0),
    ATT("tiles decode q[2,2,3,6] kv[2,1,131,6] qpos tail window 70", T4(2, 2, 3, 6), T4(2, 1, 131, 6),
        T4(2, 1, 131, 6), POS(init_qpos_tail, 2, 3), NOMASK, 0, 70, 0),
    ATT("tiles causal q,kv[1,1,129,3]", T4(1, 1, 129, 3), T4(1, 1, 129, 3), T4(1, 1, 129, 3), NOPOS, NOMASK,
        0, 0, 0),
    /* D > 64: each work-item of the device kernels owns several dims of a row */
    ATT("D=67 GQA q[1,2,5,67] kv[1,1,9,67] qpos tail kmask", T4(1, 2, 5, 67), T4(1, 1, 9, 67),
        T4(1, 1, 9, 67), POS(init_qpos_tail, 1, 5), MASK(init_kmask_holes, 1, 9), 0, 0, 0),
};
const int opc_n_attention = sizeof opc_cases_attention / sizeof opc_cases_attention[0];
