/* Causal grouped-query attention on the CPU, flash-style: blocks of query rows meet tiles of keys
 * through BLAS sgemm, with an online softmax that keeps only the log-sum-exp per query row; the
 * backward recomputes the probabilities from it.
 *
 * Determinism: the forward's tasks (b, query head, query block) and the backward's tasks
 * (b, kv head), or (b, query head) with partial dk, dv sums added in head order, each own disjoint
 * output rows and do their work in an order fixed by the shapes alone; row sums use a fixed lane
 * order (lanes_fold), so neither vectorisation nor buffer alignment changes them; and every sgemm
 * runs single-threaded (inside an active OpenMP region, on a one-thread run where OpenBLAS has
 * one thread too, or too small for OpenBLAS to split). So the results do not depend on the OpenMP
 * thread count or schedule. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/attn_shape.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/cpu_math.h"

/* Calls with less work than this run on one thread: thread start-up would cost more. It is also
 * below OpenBLAS's own threading threshold for one sgemm (m n k <= 262144), so the serial path
 * never gets a multi-threaded sgemm either. */
#define ATTN_PAR_WORK 32768

/* The exp loops dominate the non-BLAS time: they use cpu_expf and per-ISA clones
 * (CPU_VECTOR_CLONES, cpu_math.h), whose variants agree bit for bit. */

/* Query rows per block: enough rows for sgemm to reach its speed, few enough that causal blocks
 * skip most masked keys. Keys per tile: bounds the score scratch (BQ x BK floats, which stays in
 * L2 with the K and V tiles) for any Tk. */
#define ATTN_BQ 64
#define ATTN_BK 256

/* The backward splits a kv head's work by query head while there are fewer (b, kv head) tasks
 * than this, if the partial dk, dv sums fit in ATTN_BACK_PART_BYTES. */
#define ATTN_BACK_KV_TASKS 16
#define ATTN_BACK_PART_BYTES (64 << 20)

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };

typedef struct {
    int64_t B, Hq, Hkv, Tq, Tk, D, group, window;
    float scale;
    const int32_t *qpos;
    const float *kmask; /* NULL: every key valid */
} attn_dims;

/* The shapes come from the ops layer, which has validated them; the kernel re-checks only what
 * would make it read out of bounds if another caller got them wrong. */
static spin_status attn_setup(const spin_kcall *c, int qpos_slot, int n_fixed, const char *name,
                              attn_dims *d) {
    spin_attn_shape sh;
    spin_status st = spin_attn_shape_check(c, qpos_slot, name, &sh);
    if (st != SPIN_OK)
        return st;
    d->B = sh.B, d->Hq = sh.Hq, d->Tq = sh.Tq, d->D = sh.D, d->Hkv = sh.Hkv, d->Tk = sh.Tk;
    d->group = d->Hq / d->Hkv;
    d->scale = c->p.f[0];
    d->window = c->p.i[0];
    d->qpos = cpu_i32(&c->in[qpos_slot]);
    d->kmask = c->n_in > n_fixed ? cpu_f32(&c->in[n_fixed]) : NULL;
    return SPIN_OK;
}

/* The visible keys of a query at slot qp form the range [lo, hi] (then filtered by the mask);
 * lo > hi when it sees none. */
static inline void attn_range(const attn_dims *d, int32_t qp, int64_t *lo, int64_t *hi) {
    *hi = (int64_t)qp < d->Tk - 1 ? (int64_t)qp : d->Tk - 1;
    *lo = d->window > 0 && (int64_t)qp - d->window + 1 > 0 ? (int64_t)qp - d->window + 1 : 0;
}

/* Row ranges of one query block and the key span [*jlo, *jhi] that covers them all: keys outside
 * it are invisible to every row, so the block never computes their scores. live[r] = 0 drops a row
 * (the backward drops rows whose forward saw no key). Returns false when no row sees any key. */
static bool block_ranges(const attn_dims *d, int64_t b, int64_t i0, int64_t n, const float *lse_blk,
                         int64_t *lo, int64_t *hi, int64_t *jlo, int64_t *jhi) {
    *jlo = INT64_MAX, *jhi = -1;
    for (int64_t r = 0; r < n; r++) {
        attn_range(d, d->qpos[b * d->Tq + i0 + r], &lo[r], &hi[r]);
        if (lse_blk && lse_blk[r] == -INFINITY)
            lo[r] = 1, hi[r] = 0;
        if (lo[r] > hi[r])
            continue;
        if (lo[r] < *jlo)
            *jlo = lo[r];
        if (hi[r] > *jhi)
            *jhi = hi[r];
    }
    return *jhi >= 0;
}

/* sgemm, except that a zero inner dimension (which BLAS rejects through its leading-dimension
 * checks) gives beta * C as the product of empty sums would. */
static void gemm(cpu_sgemm_fn f, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                 int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        for (int64_t r = 0; r < m; r++)
            for (int64_t j = 0; j < n; j++)
                c[r * ldc + j] = beta == 0.0f ? 0.0f : beta * c[r * ldc + j];
        return;
    }
    f(ROW_MAJOR, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* Sums are kept in ATTN_LANES partial sums, lane l taking elements l, l + ATTN_LANES, ..., and
 * folded in a fixed tree: C semantics then fix the order of every addition whatever the compiler
 * vectorises, peels for alignment or targets, so a row's sum never depends on where its buffer
 * happens to lie (scratch and tensors move with the thread count and the allocator). */
#define ATTN_LANES 16

static inline float lanes_fold(float *acc) {
    for (int w = ATTN_LANES / 2; w >= 1; w /= 2)
        for (int l = 0; l < w; l++)
            acc[l] += acc[l + w];
    return acc[0];
}

/* s[j] = e^(s[j] - shift) over a row; returns their sum. */
CPU_VECTOR_CLONES static float exp_shift(float *s, int64_t n, float shift) {
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        s[j] = cpu_expf(s[j] - shift);
    float acc[ATTN_LANES] = {0};
    int64_t j = 0;
    for (; j + ATTN_LANES <= n; j += ATTN_LANES)
        for (int l = 0; l < ATTN_LANES; l++)
            acc[l] += s[j + l];
    for (int l = 0; j + l < n; l++)
        acc[l] += s[j + l];
    return lanes_fold(acc);
}

/* a . b with the lane order of exp_shift. */
static float dot_lanes(const float *a, const float *b, int64_t n) {
    float acc[ATTN_LANES] = {0};
    int64_t j = 0;
    for (; j + ATTN_LANES <= n; j += ATTN_LANES)
        for (int l = 0; l < ATTN_LANES; l++)
            acc[l] += a[j + l] * b[j + l];
    for (int l = 0; j + l < n; l++)
        acc[l] += a[j + l] * b[j + l];
    return lanes_fold(acc);
}

/* Sets s[0, a) and s[e, n) to 0 (keys outside every visible range of the row) and the masked keys
 * in between to -INFINITY, which cpu_expf turns into 0. mask points at the key of column 0. */
static inline void clip_row(float *s, int64_t n, int64_t a, int64_t e, const float *mask) {
    for (int64_t j = 0; j < a; j++)
        s[j] = 0.0f;
    for (int64_t j = e; j < n; j++)
        s[j] = 0.0f;
    if (mask) {
#pragma omp simd
        for (int64_t j = a; j < e; j++)
            s[j] = mask[j] == 0.0f ? -INFINITY : s[j];
    }
}

/* Per-thread scratch of one kernel call, carved from a single allocation. */
typedef struct {
    float *s, *dp;       /* [ATTN_BQ][ATTN_BK] */
    float *m, *l, *rowd; /* [ATTN_BQ] */
    int64_t *lo, *hi;    /* [ATTN_BQ] */
} attn_scratch;

static size_t scratch_bytes(void) {
    return (2 * ATTN_BQ * ATTN_BK + 3 * ATTN_BQ) * sizeof(float) + 2 * ATTN_BQ * sizeof(int64_t);
}

static attn_scratch scratch_at(char *base, int t) {
    char *p = base + (size_t)t * scratch_bytes();
    attn_scratch s;
    s.lo = (int64_t *)p;
    s.hi = s.lo + ATTN_BQ;
    s.s = (float *)(s.hi + ATTN_BQ);
    s.dp = s.s + ATTN_BQ * ATTN_BK;
    s.m = s.dp + ATTN_BQ * ATTN_BK;
    s.l = s.m + ATTN_BQ;
    s.rowd = s.l + ATTN_BQ;
    return s;
}

/* One block of n query rows [i0, i0 + n) of head h: o and lse for those rows. */
static void fwd_block(const attn_dims *d, cpu_sgemm_fn f, const float *q, const float *k, const float *v,
                      float *o, float *lse, int64_t b, int64_t h, int64_t i0, int64_t n, attn_scratch *w) {
    const int64_t D = d->D, Tk = d->Tk, ld = D > 0 ? D : 1;
    const int64_t row0 = (b * d->Hq + h) * d->Tq + i0;
    const int64_t kvbase = (b * d->Hkv + h / d->group) * Tk;
    const float *qb = q + row0 * D, *kb = k + kvbase * D, *vb = v + kvbase * D;
    const float *mrow = d->kmask ? d->kmask + b * Tk : NULL;
    float *ob = o + row0 * D, *lb = lse + row0;
    memset(ob, 0, (size_t)(n * D) * sizeof *ob);
    int64_t jlo, jhi;
    if (!block_ranges(d, b, i0, n, NULL, w->lo, w->hi, &jlo, &jhi)) {
        for (int64_t r = 0; r < n; r++)
            lb[r] = -INFINITY;
        return;
    }
    for (int64_t r = 0; r < n; r++)
        w->m[r] = -INFINITY, w->l[r] = 0;
    for (int64_t j0 = jlo; j0 <= jhi; j0 += ATTN_BK) {
        const int64_t nk = jhi + 1 - j0 < ATTN_BK ? jhi + 1 - j0 : ATTN_BK;
        gemm(f, NO_TRANS, TRANS, n, nk, D, d->scale, qb, ld, kb + j0 * D, ld, 0.0f, w->s, ATTN_BK);
        for (int64_t r = 0; r < n; r++) {
            float *s = w->s + r * ATTN_BK;
            int64_t a = w->lo[r] - j0, e = w->hi[r] + 1 - j0;
            a = a < 0 ? 0 : a > nk ? nk : a;
            e = e < a ? a : e > nk ? nk : e;
            clip_row(s, nk, a, e, mrow ? mrow + j0 : NULL);
            float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
            for (int64_t j = a; j < e; j++)
                mx = s[j] > mx ? s[j] : mx;
            if (mx == -INFINITY) {
                /* nothing visible in this tile: it adds nothing (and exp(-inf - -inf) is NaN) */
                for (int64_t j = a; j < e; j++)
                    s[j] = 0.0f;
                continue;
            }
            /* Online softmax: the o row holds sum exp(s - m) v with the running max m, rescaled
             * when m grows, so no exponent exceeds 0 and nothing overflows. */
            const float mnew = mx > w->m[r] ? mx : w->m[r];
            const float alpha = expf(w->m[r] - mnew); /* 0 on the first visible tile */
            const float sum = exp_shift(s + a, e - a, mnew);
            w->l[r] = w->l[r] * alpha + sum;
            w->m[r] = mnew;
            if (alpha != 1.0f) {
                float *orow = ob + r * D;
                for (int64_t e2 = 0; e2 < D; e2++)
                    orow[e2] *= alpha;
            }
        }
        gemm(f, NO_TRANS, NO_TRANS, n, D, nk, 1.0f, w->s, ATTN_BK, vb + j0 * D, ld, 1.0f, ob, ld);
    }
    for (int64_t r = 0; r < n; r++) {
        if (w->l[r] > 0) {
            const float inv = 1.0f / w->l[r];
            float *orow = ob + r * D;
            for (int64_t e = 0; e < D; e++)
                orow[e] *= inv;
            lb[r] = w->m[r] + logf(w->l[r]);
        } else {
            lb[r] = -INFINITY;
        }
    }
}

spin_status cpu_ATTENTION(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    attn_dims d;
    spin_status st = attn_setup(c, 3, 4, "ATTENTION", &d);
    if (st != SPIN_OK)
        return st;
    const float *q = cpu_f32(&c->in[0]), *k = cpu_f32(&c->in[1]), *v = cpu_f32(&c->in[2]);
    float *o = cpu_f32(&c->out[0]), *lse = cpu_f32(&c->out[1]);
    const int64_t B = d.B, Hq = d.Hq, Tq = d.Tq, Tk = d.Tk, D = d.D;
    const int64_t nqb = (Tq + ATTN_BQ - 1) / ATTN_BQ, bh = B * Hq, ntask = bh * nqb;
    if (ntask == 0)
        return SPIN_OK;
    const int64_t work = B * Hq * Tq * Tk * D;
    const int nt = work > ATTN_PAR_WORK ? cpu_threads() : 1;
    char *scratch = malloc((size_t)nt * scratch_bytes());
    if (!scratch)
        return spin_fail(SPIN_ERR_OOM, "ATTENTION: no host memory for %d scratch blocks", nt);
    cpu_sgemm_fn f = cpu_blas_sgemm();
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        attn_scratch w = scratch_at(scratch, omp_get_thread_num());
        /* Last query blocks first: under the causal mask they see the most keys, and starting the
         * longest tasks first balances the dynamic schedule. */
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntask; t++) {
            const int64_t qb = nqb - 1 - t / bh, b = (t % bh) / Hq, h = t % Hq;
            const int64_t i0 = qb * ATTN_BQ, n = Tq - i0 < ATTN_BQ ? Tq - i0 : ATTN_BQ;
            fwd_block(&d, f, q, k, v, o, lse, b, h, i0, n, &w);
        }
    }
    free(scratch);
    return SPIN_OK;
}

typedef struct {
    const float *q, *k, *v, *o, *lse, *dout;
    float *dq, *dk, *dv;
} attn_back_io;

/* One query block of head h against its kv head: writes its dq rows, accumulates into dkb, dvb
 * ([Tk, D] each: the kv head's dk, dv or a partial sum of them). */
static void back_block(const attn_dims *d, cpu_sgemm_fn f, const attn_back_io *io, int64_t b, int64_t h,
                       int64_t i0, int64_t n, float *dkb, float *dvb, attn_scratch *w) {
    const int64_t D = d->D, Tk = d->Tk, ld = D > 0 ? D : 1;
    const int64_t row0 = (b * d->Hq + h) * d->Tq + i0;
    const int64_t kvbase = (b * d->Hkv + h / d->group) * Tk;
    const float *qb = io->q + row0 * D, *dob = io->dout + row0 * D, *ob = io->o + row0 * D;
    const float *kb = io->k + kvbase * D, *vb = io->v + kvbase * D, *lb = io->lse + row0;
    const float *mrow = d->kmask ? d->kmask + b * Tk : NULL;
    float *dqb = io->dq + row0 * D;
    memset(dqb, 0, (size_t)(n * D) * sizeof *dqb);
    int64_t jlo, jhi;
    /* rows whose lse is -inf saw no key: their output was a constant 0 */
    if (!block_ranges(d, b, i0, n, lb, w->lo, w->hi, &jlo, &jhi))
        return;
    /* rowd[r] = do_r . o_r, the softmax-backward correction shared by dq and dk. */
    for (int64_t r = 0; r < n; r++)
        w->rowd[r] = dot_lanes(dob + r * D, ob + r * D, D);
    for (int64_t j0 = jlo; j0 <= jhi; j0 += ATTN_BK) {
        const int64_t nk = jhi + 1 - j0 < ATTN_BK ? jhi + 1 - j0 : ATTN_BK;
        float *p = w->s, *ds = w->dp;
        gemm(f, NO_TRANS, TRANS, n, nk, D, d->scale, qb, ld, kb + j0 * D, ld, 0.0f, p, ATTN_BK);
        gemm(f, NO_TRANS, TRANS, n, nk, D, 1.0f, dob, ld, vb + j0 * D, ld, 0.0f, ds, ATTN_BK);
        for (int64_t r = 0; r < n; r++) {
            float *pr = p + r * ATTN_BK, *dsr = ds + r * ATTN_BK;
            int64_t a = w->lo[r] - j0, e = w->hi[r] + 1 - j0;
            a = a < 0 ? 0 : a > nk ? nk : a;
            e = e < a ? a : e > nk ? nk : e;
            const float L = lb[r], Dr = w->rowd[r];
            clip_row(pr, nk, a, e, mrow ? mrow + j0 : NULL);
            for (int64_t j = 0; j < a; j++)
                dsr[j] = 0.0f;
            for (int64_t j = e; j < nk; j++)
                dsr[j] = 0.0f;
            /* L >= every visible score of a live row, so p <= 1 (up to rounding) */
            exp_shift(pr + a, e - a, L);
#pragma omp simd
            for (int64_t j = a; j < e; j++)
                dsr[j] = pr[j] * (dsr[j] - Dr);
        }
        gemm(f, TRANS, NO_TRANS, nk, D, n, 1.0f, p, ATTN_BK, dob, ld, 1.0f, dvb + j0 * D, ld);
        gemm(f, NO_TRANS, NO_TRANS, n, D, nk, d->scale, ds, ATTN_BK, kb + j0 * D, ld, 1.0f, dqb, ld);
        gemm(f, TRANS, NO_TRANS, nk, D, n, d->scale, ds, ATTN_BK, qb, ld, 1.0f, dkb + j0 * D, ld);
    }
}

spin_status cpu_ATTENTION_BACK(struct spin_device *dev, const spin_kcall *c) {
    (void)dev;
    attn_dims d;
    spin_status st = attn_setup(c, 6, 7, "ATTENTION_BACK", &d);
    if (st != SPIN_OK)
        return st;
    attn_back_io io = {cpu_f32(&c->in[0]),  cpu_f32(&c->in[1]),  cpu_f32(&c->in[2]),
                       cpu_f32(&c->in[3]),  cpu_f32(&c->in[4]),  cpu_f32(&c->in[5]),
                       cpu_f32(&c->out[0]), cpu_f32(&c->out[1]), cpu_f32(&c->out[2])};
    const int64_t B = d.B, Hq = d.Hq, Hkv = d.Hkv, Tq = d.Tq, Tk = d.Tk, D = d.D, G = d.group;
    const int64_t nqb = (Tq + ATTN_BQ - 1) / ATTN_BQ, kvn = Tk * D;
    if (B * Hkv == 0)
        return SPIN_OK;
    /* With few kv heads (B = 1, GQA) the (b, kv head) tasks cannot load the cores, so each query
     * head becomes a task: the first head of a group accumulates into dk, dv, the others into
     * partial sums that are then added in head order. Decided by the shapes alone, so a given
     * shape always sums in the same order. */
    const int64_t part_floats = (G - 1) * B * Hkv * 2 * kvn;
    const bool by_head =
        G > 1 && B * Hkv < ATTN_BACK_KV_TASKS && part_floats <= ATTN_BACK_PART_BYTES / (int64_t)sizeof(float);
    const int64_t ntask = by_head ? B * Hq : B * Hkv;
    const int64_t work = B * Hq * Tq * Tk * D;
    const int nt = work > ATTN_PAR_WORK ? cpu_threads() : 1;
    char *scratch = malloc((size_t)nt * scratch_bytes());
    float *part = by_head ? malloc((size_t)part_floats * sizeof(float)) : NULL;
    if (!scratch || (by_head && !part)) {
        free(scratch);
        return spin_fail(SPIN_ERR_OOM, "ATTENTION_BACK: no host memory for %d scratch blocks", nt);
    }
    cpu_sgemm_fn f = cpu_blas_sgemm();
    /* dk and dv of a kv head gather over the query heads of its group and their query blocks in
     * a fixed order, instead of tasks scattering into shared keys; the task of a query head owns
     * its dq rows. */
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        attn_scratch w = scratch_at(scratch, omp_get_thread_num());
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntask; t++) {
            const int64_t b = by_head ? t / Hq : t / Hkv;
            const int64_t h0 = by_head ? t % Hq : t % Hkv * G, h1 = by_head ? h0 + 1 : h0 + G;
            const int64_t g = h0 / G, slot = h0 - g * G;
            float *dkb = io.dk + (b * Hkv + g) * kvn, *dvb = io.dv + (b * Hkv + g) * kvn;
            if (slot > 0) {
                dkb = part + (((b * Hkv + g) * (G - 1) + slot - 1) * 2) * kvn;
                dvb = dkb + kvn;
            }
            memset(dkb, 0, (size_t)kvn * sizeof(float));
            memset(dvb, 0, (size_t)kvn * sizeof(float));
            for (int64_t h = h0; h < h1; h++)
                for (int64_t qb = 0; qb < nqb; qb++) {
                    const int64_t i0 = qb * ATTN_BQ, n = Tq - i0 < ATTN_BQ ? Tq - i0 : ATTN_BQ;
                    back_block(&d, f, &io, b, h, i0, n, dkb, dvb, &w);
                }
        }
        if (by_head) {
#pragma omp for schedule(static)
            for (int64_t x = 0; x < B * Hkv * kvn; x++) {
                const float *px = part + (x / kvn) * (G - 1) * 2 * kvn + x % kvn;
                float sk = io.dk[x], sv = io.dv[x];
                for (int64_t s = 0; s < G - 1; s++)
                    sk += px[2 * s * kvn], sv += px[(2 * s + 1) * kvn];
                io.dk[x] = sk, io.dv[x] = sv;
            }
        }
    }
    free(part);
    free(scratch);
    return SPIN_OK;
}
