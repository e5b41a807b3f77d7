/* Op cases: the kernels that index with ids (EMBEDDING, EMBEDDING_BACK, CE_ROWS, CE_ROWS_BACK) given
 * ids outside their range must fail with the CPU's message naming the first bad position, on every
 * device (the CPU at the call; the device backends check the ids on the device and fail the next
 * read, opcheck.c); and
 * EMBEDDING_BACK launched directly (repeated ids, vocabulary rows nobody uses) against its sums.
 *
 * Tolerance: the direct EMBEDDING_BACK sums at most three f32 values per element in id order;
 * normalised error 1e-6 against the double sums. */
#include <stdint.h>

#include "core/dispatch.h"
#include "tests/harness/opcheck.h"

#define V 11
#define COLS 5

/* Ids in [0, V) with repeats (3 three times, 7 twice), except what `bad` puts at positions 2, 4:
 * p.i[1] = 1: id V at position 4; 2: -1 at position 2 and V at 4 (the first one is reported). */
static void init_ids(const opcase *c, int idx, double *v, int64_t n) {
    (void)idx;
    static const double ids[] = {3, 0, 7, 3, 10, 1, 3, 5, 7, 2, 9, 4};
    for (int64_t i = 0; i < n; i++)
        v[i] = ids[i % 12];
    if (c->p.i[1] >= 1 && n > 4)
        v[4] = V;
    if (c->p.i[1] == 2 && n > 2)
        v[2] = -1;
}

/* Targets for [rows, V] logits: the ignore index -100 at row 1, V at row 3. */
static void init_targets(const opcase *c, int idx, double *v, int64_t n) {
    (void)c, (void)idx;
    for (int64_t i = 0; i < n; i++)
        v[i] = i == 1 ? -100 : i == 3 ? V : (double)((i * 5 + 2) % V);
}

static spin_tensor *run_embedding(const opcase *c, spin_tensor *const *in) {
    (void)c;
    return spin_embedding(in[0], in[1]);
}

/* EMBEDDING_BACK on its own: dw [V, COLS] from ids [N] and dy [N, COLS]. */
static spin_tensor *run_embedding_back(const opcase *c, spin_tensor *const *in) {
    (void)c;
    spin_tensor *dw = spin_tensor_new(opc_device(), SPIN_F32, 2, (const int64_t[]){V, COLS});
    spin_tensor *ins[2] = {in[0], in[1]};
    if (!dw || spin_launch(SPIN_K_EMBEDDING_BACK, 2, ins, 1, &dw, &(spin_kparams){.i = {V}}) != SPIN_OK)
        return NULL; /* dw belongs to the harness's scope */
    return dw;
}

static void ref_embedding_back(const opcase *c, const double *const *in, double *out) {
    int64_t n = c->in[0].shape[0];
    for (int64_t i = 0; i < V * COLS; i++)
        out[i] = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < COLS; j++)
            out[(int64_t)in[0][i] * COLS + j] += in[1][i * COLS + j];
}

static spin_tensor *run_gather(const opcase *c, spin_tensor *const *in) {
    (void)c;
    spin_tensor *ls = NULL;
    return spin_logprob_gather(in[0], in[1], -100, &ls);
}

/* CE_ROWS_BACK on its own (the forward would stop at the same target first). */
static spin_tensor *run_ce_back(const opcase *c, spin_tensor *const *in) {
    (void)c;
    int64_t n = spin_tensor_dim(in[0], 0);
    spin_tensor *dx = spin_tensor_new(opc_device(), SPIN_F32, 2, (const int64_t[]){n, V});
    spin_tensor *ins[4] = {in[0], in[1], in[2], in[3]};
    if (!dx || spin_launch(SPIN_K_CE_ROWS_BACK, 4, ins, 1, &dx, &(spin_kparams){.i = {-100}}) != SPIN_OK)
        return NULL;
    return dx;
}

#define F(...) __VA_ARGS__
#define IDS(n) \
    { .ndim = 1, .shape = {n}, .dtype = SPIN_I32, .init = init_ids }
#define TGT(n) \
    { .ndim = 1, .shape = {n}, .dtype = SPIN_I32, .init = init_targets }
#define ERR(name, desc, nin, ins, prm, runf, msg) \
    { .op = name, .params = desc, .n_in = nin, .in = ins, .p = prm, .run = runf, .error = msg }

const opcase opc_cases_ids[] = {
    {.op = "embedding_back",
     .params = "EMBEDDING_BACK ids[9] dy[9,5] V=11 (repeats, unused rows)",
     .n_in = 2,
     .in = {IDS(9), {.ndim = 2, .shape = {9, COLS}}},
     .run = run_embedding_back,
     .ref = ref_embedding_back,
     .tol = 1e-6},
    ERR("embedding", "id 11 of V=11 at position 4", 2, F({{.ndim = 2, .shape = {V, COLS}}, IDS(7)}),
        F({.i = {0, 1}}), run_embedding, "embedding: token id 11 at position 4 outside the vocabulary of 11"),
    ERR("embedding", "ids -1 at 2 and 11 at 4: the first is reported", 2,
        F({{.ndim = 2, .shape = {V, COLS}}, IDS(7)}), F({.i = {0, 2}}), run_embedding,
        "embedding: token id -1 at position 2 outside the vocabulary of 11"),
    ERR("embedding_back", "EMBEDDING_BACK id 11 of V=11 at position 4", 2,
        F({IDS(9), {.ndim = 2, .shape = {9, COLS}}}), F({.i = {0, 1}}), run_embedding_back,
        "embedding backward: token id 11 at position 4 outside the vocabulary of 11"),
    ERR("logprob_gather", "CE_ROWS target 11 of V=11 at row 3 (row 1 ignored)", 2,
        F({{.ndim = 2, .shape = {5, V}}, TGT(5)}), F({.i = {0}}), run_gather,
        "CE_ROWS: target 11 at row 3 is outside [0, 11) and is not the ignore index -100"),
    ERR("ce_rows_back", "CE_ROWS_BACK target 11 of V=11 at row 3", 4,
        F({{.ndim = 2, .shape = {5, V}}, TGT(5), {.ndim = 1, .shape = {5}}, {.ndim = 1, .shape = {5}}}),
        F({.i = {0}}), run_ce_back,
        "CE_ROWS_BACK: target 11 at row 3 is outside [0, 11) and is not the ignore index -100"),
};
const int opc_n_ids = sizeof opc_cases_ids / sizeof opc_cases_ids[0];
