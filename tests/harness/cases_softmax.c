/* Op cases: softmax / log-softmax, the log-prob gather, the chunked linear + log-prob and mean
 * cross-entropy, argmax and top-k.
 *
 * Tolerances (normalised errors, see opcheck.h): forward 1e-5 for everything computed from
 * exponentials and logits (f32 kernels against a double reference); gradients 1e-3 against
 * central differences with eps 1e-3; argmax and top-k indices must match exactly; top-k values are
 * copies of inputs, 1e-7. */
#include <math.h>
#include <stdint.h>

#include "tests/harness/opcheck.h"

#define IGNORE (-100)

/* Parameters: i[0] ignore index (or k for top-k), i[1] chunk, i[2] which output, i[3] V (for the
 * targets' init), i[4] whether some targets are ignored. */
enum { OUT_LOGP = 0, OUT_LOGIT_SUM = 1, OUT_LSE = 2 };
enum { OUT_VALUES = 0, OUT_INDICES = 1 };

/* Row r of [rows, cols] data: log-sum-exp in double. */
static double ref_lse(const double *x, int64_t cols) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < cols; j++)
        m = x[j] > m ? x[j] : m;
    for (int64_t j = 0; j < cols; j++)
        s += exp(x[j] - m);
    return m + log(s);
}

static int64_t rows_of(const opc_input *in, int64_t *cols) {
    *cols = in->shape[in->ndim - 1];
    return opc_numel(in) / *cols;
}

/* ---- softmax / log_softmax: y = exp(x - lse(x)) or x - lse(x) over the last axis ---- */

static spin_tensor *run_softmax(const opcase *c, spin_tensor *const *in) {
    return c->p.i[0] ? spin_log_softmax(in[0]) : spin_softmax(in[0]);
}

static void ref_softmax(const opcase *c, const double *const *in, double *out) {
    int64_t cols, rows = rows_of(&c->in[0], &cols);
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0] + r * cols;
        double l = ref_lse(x, cols);
        for (int64_t j = 0; j < cols; j++)
            out[r * cols + j] = c->p.i[0] ? x[j] - l : exp(x[j] - l);
    }
}

/* ---- targets: ids in [0, V), every third one (from row 1) ignored when asked ---- */

static void init_targets(const opcase *c, int idx, double *v, int64_t n) {
    (void)idx;
    for (int64_t i = 0; i < n; i++)
        v[i] = c->p.i[4] && i % 3 == 1 ? IGNORE : (double)((i * 5 + 2) % c->p.i[3]);
}

/* logp, lse and logit sum of one row of logits for target t. */
static double ce_row(const opcase *c, const double *x, int64_t v, double t) {
    switch (c->p.i[2]) {
    case OUT_LOGIT_SUM: {
        double s = 0;
        for (int64_t j = 0; j < v; j++)
            s += x[j];
        return s;
    }
    case OUT_LSE: return ref_lse(x, v);
    default: return t == (double)c->p.i[0] ? 0.0 : x[(int64_t)t] - ref_lse(x, v);
    }
}

/* ---- logprob_gather: logp[r] = log softmax(logits[r])[t_r], 0 for ignored rows ---- */

static spin_tensor *run_gather(const opcase *c, spin_tensor *const *in) {
    spin_tensor *ls = NULL;
    spin_tensor *logp = spin_logprob_gather(in[0], in[1], (int32_t)c->p.i[0], &ls);
    return c->p.i[2] == OUT_LOGIT_SUM ? ls : logp;
}

static void ref_gather(const opcase *c, const double *const *in, double *out) {
    int64_t n = c->in[0].shape[0], v = c->in[0].shape[1];
    for (int64_t r = 0; r < n; r++)
        out[r] = ce_row(c, in[0] + r * v, v, in[1][r]);
}

/* ---- linear_logprob: the same from logits = h w^T, h [N, C], w [V, C] ---- */

static spin_tensor *run_linear(const opcase *c, spin_tensor *const *in) {
    spin_tensor *ls = NULL, *lse = NULL;
    spin_tensor *logp = spin_linear_logprob(in[0], in[1], in[2], (int32_t)c->p.i[0], c->p.i[1], &ls, &lse);
    return c->p.i[2] == OUT_LOGIT_SUM ? ls : c->p.i[2] == OUT_LSE ? lse : logp;
}

/* logits[r, :] = h[r, :] w^T in double */
static void ref_logits_row(const opcase *c, const double *const *in, int64_t r, double *row) {
    int64_t ch = c->in[0].shape[1], v = c->in[1].shape[0];
    for (int64_t j = 0; j < v; j++) {
        double s = 0;
        for (int64_t q = 0; q < ch; q++)
            s += in[0][r * ch + q] * in[1][j * ch + q];
        row[j] = s;
    }
}

static void ref_linear(const opcase *c, const double *const *in, double *out) {
    int64_t n = c->in[0].shape[0], v = c->in[1].shape[0];
    double row[64]; /* the cases keep V <= 64 */
    for (int64_t r = 0; r < n; r++) {
        ref_logits_row(c, in, r, row);
        out[r] = ce_row(c, row, v, in[2][r]);
    }
}

/* ---- cross_entropy: -sum of logp over kept rows / number of kept rows ---- */

static spin_tensor *run_ce(const opcase *c, spin_tensor *const *in) {
    return spin_cross_entropy(in[0], in[1], in[2], (int32_t)c->p.i[0], c->p.i[1]);
}

static void ref_ce(const opcase *c, const double *const *in, double *out) {
    int64_t n = c->in[0].shape[0], v = c->in[1].shape[0], kept = 0;
    double row[64], s = 0; /* V <= 64 */
    for (int64_t r = 0; r < n; r++) {
        if (in[2][r] == (double)c->p.i[0])
            continue;
        ref_logits_row(c, in, r, row);
        s += row[(int64_t)in[2][r]] - ref_lse(row, v);
        kept++;
    }
    out[0] = -s / (double)kept;
}

/* ---- argmax / top-k ---- */

static spin_tensor *run_argmax(const opcase *c, spin_tensor *const *in) {
    (void)c;
    return spin_argmax(in[0]);
}

/* The first index of the row maximum. */
static void ref_argmax(const opcase *c, const double *const *in, double *out) {
    int64_t cols, rows = rows_of(&c->in[0], &cols);
    for (int64_t r = 0; r < rows; r++) {
        int64_t best = 0;
        for (int64_t j = 1; j < cols; j++)
            if (in[0][r * cols + j] > in[0][r * cols + best])
                best = j;
        out[r] = (double)best;
    }
}

static spin_tensor *run_topk(const opcase *c, spin_tensor *const *in) {
    spin_tensor *v = NULL, *i = NULL;
    if (spin_topk(in[0], c->p.i[0], &v, &i) != SPIN_OK)
        return NULL;
    return c->p.i[2] == OUT_INDICES ? i : v;
}

/* k rounds of "largest not yet taken, lowest index among equals". */
static void ref_topk(const opcase *c, const double *const *in, double *out) {
    int64_t cols, rows = rows_of(&c->in[0], &cols), k = c->p.i[0];
    bool taken[512]; /* the cases keep C <= 512 */
    for (int64_t r = 0; r < rows; r++) {
        const double *x = in[0] + r * cols;
        for (int64_t j = 0; j < cols; j++)
            taken[j] = false;
        for (int64_t q = 0; q < k; q++) {
            int64_t best = -1;
            for (int64_t j = 0; j < cols; j++)
                if (!taken[j] && (best < 0 || x[j] > x[best]))
                    best = j;
            taken[best] = true;
            out[r * k + q] = c->p.i[2] == OUT_INDICES ? (double)best : x[best];
        }
    }
}

/* Distinct values in [-1, 1) (37 is invertible mod 101): no ties for up to 101 elements. */
static void init_distinct(const opcase *c, int idx, double *v, int64_t n) {
    (void)c, (void)idx;
    for (int64_t i = 0; i < n; i++)
        v[i] = (double)((i * 37 + 11) % 101) / 50.5 - 1.0;
}

/* Few distinct values: many ties, to check the lower-index-first rule. */
static void init_ties(const opcase *c, int idx, double *v, int64_t n) {
    (void)c, (void)idx;
    for (int64_t i = 0; i < n; i++)
        v[i] = (double)((i * 13 + 5) % 5) / 4.0;
}

#define F(...) __VA_ARGS__
#define X(nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .grad = true, .lo = -3.0f, .hi = 3.0f }
#define XL(layout_, nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .grad = true, .lo = -3.0f, .hi = 3.0f, .layout = layout_ }
#define TGT(n) \
    { .ndim = 1, .shape = {n}, .dtype = SPIN_I32, .init = init_targets }
#define FIXED(initf, nd, ...) \
    { .ndim = nd, .shape = {__VA_ARGS__}, .init = initf }
#define CASE(name, desc, nin, ins, prm, runf, reff, tol_, gtol)                                              \
    {                                                                                                        \
        .op = name, .params = desc, .n_in = nin, .in = ins, .p = prm, .run = runf, .ref = reff, .tol = tol_, \
        .grad_tol = gtol, .eps = 1e-3                                                                        \
    }
#define EXACT(name, desc, ins, prm, runf, reff) \
    { .op = name, .params = desc, .n_in = 1, .in = ins, .p = prm, .run = runf, .ref = reff, .exact = true }

const opcase opc_cases_softmax[] = {
    CASE("softmax", "[7,13]", 1, F({X(2, 7, 13)}), {.i = {0}}, run_softmax, ref_softmax, 1e-5, 1e-3),
    CASE("softmax", "[2,3,5]", 1, F({X(3, 2, 3, 5)}), {.i = {0}}, run_softmax, ref_softmax, 1e-5, 1e-3),
    CASE("softmax", "[7,13] sliced", 1, F({XL(OPC_SLICED, 2, 7, 13)}), {.i = {0}}, run_softmax, ref_softmax,
         1e-5, 1e-3),
    CASE("log_softmax", "[7,13]", 1, F({X(2, 7, 13)}), {.i = {1}}, run_softmax, ref_softmax, 1e-5, 1e-3),
    CASE("log_softmax", "[2,3,5]", 1, F({X(3, 2, 3, 5)}), {.i = {1}}, run_softmax, ref_softmax, 1e-5, 1e-3),
    CASE("softmax", "[3,300] (rows wider than a work-group)", 1, F({X(2, 3, 300)}), {.i = {0}}, run_softmax,
         ref_softmax, 1e-5, 1e-3),
    CASE("log_softmax", "[3,300] (rows wider than a work-group)", 1, F({X(2, 3, 300)}), {.i = {1}},
         run_softmax, ref_softmax, 1e-5, 1e-3),
    CASE("log_softmax", "[7,13] transposed", 1, F({XL(OPC_TRANSPOSED, 2, 7, 13)}), {.i = {1}}, run_softmax,
         ref_softmax, 1e-5, 1e-3),
    CASE("logprob_gather", "logits[5,11] ignore -100", 2, F({X(2, 5, 11), TGT(5)}),
         F({.i = {IGNORE, 0, OUT_LOGP, 11, 1}}), run_gather, ref_gather, 1e-5, 1e-3),
    CASE("logprob_gather", "logits[5,11] sliced, logit_sum", 2, F({XL(OPC_SLICED, 2, 5, 11), TGT(5)}),
         F({.i = {IGNORE, 0, OUT_LOGIT_SUM, 11, 1}}), run_gather, ref_gather, 1e-5, 0),
    CASE("linear_logprob", "h[7,5] w[13,5] chunk 3", 3, F({X(2, 7, 5), X(2, 13, 5), TGT(7)}),
         F({.i = {IGNORE, 3, OUT_LOGP, 13, 0}}), run_linear, ref_linear, 1e-5, 1e-3),
    CASE("linear_logprob", "h[7,5] w[13,5] chunk 3, logit_sum", 3, F({X(2, 7, 5), X(2, 13, 5), TGT(7)}),
         F({.i = {IGNORE, 3, OUT_LOGIT_SUM, 13, 0}}), run_linear, ref_linear, 1e-5, 0),
    CASE("linear_logprob", "h[7,5] w[13,5] chunk 3, lse", 3, F({X(2, 7, 5), X(2, 13, 5), TGT(7)}),
         F({.i = {IGNORE, 3, OUT_LSE, 13, 0}}), run_linear, ref_linear, 1e-5, 0),
    CASE("linear_logprob", "h[7,5] w[13,5] chunk 3, ignore -100", 3, F({X(2, 7, 5), X(2, 13, 5), TGT(7)}),
         F({.i = {IGNORE, 3, OUT_LOGP, 13, 1}}), run_linear, ref_linear, 1e-5, 1e-3),
    CASE("linear_logprob", "transposed h[7,5] w[13,5] default chunk", 3,
         F({XL(OPC_TRANSPOSED, 2, 7, 5), X(2, 13, 5), TGT(7)}), F({.i = {IGNORE, 0, OUT_LOGP, 13, 1}}),
         run_linear, ref_linear, 1e-5, 1e-3),
    CASE("cross_entropy", "h[7,5] w[13,5] chunk 3, ignore -100", 3, F({X(2, 7, 5), X(2, 13, 5), TGT(7)}),
         F({.i = {IGNORE, 3, OUT_LOGP, 13, 1}}), run_ce, ref_ce, 1e-5, 1e-3),
    CASE("cross_entropy", "h[7,5] w[13,5] chunk 2, no ignored", 3, F({X(2, 7, 5), X(2, 13, 5), TGT(7)}),
         F({.i = {IGNORE, 2, OUT_LOGP, 13, 0}}), run_ce, ref_ce, 1e-5, 1e-3),
    EXACT("argmax", "[5,13] distinct", F({FIXED(init_distinct, 2, 5, 13)}), {.i = {0}}, run_argmax,
          ref_argmax),
    EXACT("argmax", "[2,3,9] ties", F({FIXED(init_ties, 3, 2, 3, 9)}), {.i = {0}}, run_argmax, ref_argmax),
    EXACT("argmax", "[3,300] ties (rows wider than a work-group)", F({FIXED(init_ties, 2, 3, 300)}),
          {.i = {0}}, run_argmax, ref_argmax),
    CASE("topk", "values [3,13] k=4", 1, F({FIXED(init_distinct, 2, 3, 13)}), F({.i = {4, 0, OUT_VALUES}}),
         run_topk, ref_topk, 1e-7, 0),
    EXACT("topk", "indices [3,13] k=4", F({FIXED(init_distinct, 2, 3, 13)}), F({.i = {4, 0, OUT_INDICES}}),
          run_topk, ref_topk),
    EXACT("topk", "indices [3,13] k=6 ties", F({FIXED(init_ties, 2, 3, 13)}), F({.i = {6, 0, OUT_INDICES}}),
          run_topk, ref_topk),
    EXACT("topk", "indices [3,300] k=9 ties (rows wider than a work-group)", F({FIXED(init_ties, 2, 3, 300)}),
          F({.i = {9, 0, OUT_INDICES}}), run_topk, ref_topk),
    CASE("topk", "values [3,300] k=9 ties (rows wider than a work-group)", 1,
         F({FIXED(init_ties, 2, 3, 300)}), F({.i = {9, 0, OUT_VALUES}}), run_topk, ref_topk, 1e-7, 0),
    EXACT("topk", "indices [2,100] k=100 ties (all of it)", F({FIXED(init_ties, 2, 2, 100)}),
          F({.i = {100, 0, OUT_INDICES}}), run_topk, ref_topk),
    EXACT("topk", "indices [2,100] k=70 ties (sorting path)", F({FIXED(init_ties, 2, 2, 100)}),
          F({.i = {70, 0, OUT_INDICES}}), run_topk, ref_topk),
};
const int opc_n_softmax = sizeof opc_cases_softmax / sizeof opc_cases_softmax[0];
