/* The op case table and the comparison harness: each case runs an op on any device, compares its
 * forward with a double-precision reference written in the test code, and its f32 analytic
 * gradient with central differences of that reference. Used by ctest, bench_ops and selftest. */
#ifndef SPIN_TESTS_OPCHECK_H
#define SPIN_TESTS_OPCHECK_H

#include <stdbool.h>

#include "ops/ops.h"

typedef enum {
    OPC_CONTIG = 0, /* a plain contiguous tensor */
    OPC_TRANSPOSED, /* a transposed view of a tensor stored with the last two dims swapped */
    OPC_SLICED,     /* a narrow view into a tensor whose last dim is 5 wider */
} opc_layout;

typedef struct opcase opcase;

typedef struct {
    int ndim;
    int64_t shape[4];
    spin_dtype dtype; /* F32 (default, 0) or I32 */
    float lo, hi;     /* uniform range; I32 draws integers in [lo, hi). lo == hi == 0: [-1, 1) */
    bool grad;        /* checked against numerical gradients */
    opc_layout layout;
    bool absent; /* optional input passed as NULL */
    /* Fills the n values of input `idx` (instead of the uniform draw), e.g. positions, masks. */
    void (*init)(const opcase *c, int idx, double *vals, int64_t n);
} opc_input;

struct opcase {
    const char *op;     /* op name, e.g. "rmsnorm" */
    const char *params; /* what this case covers, e.g. "x[7,13] eps=1e-5 sliced" */
    int n_in;
    opc_input in[8];
    spin_kparams p; /* op parameters read by run and ref */
    /* Runs the op under test; inputs are on the device under test (NULL where absent). */
    spin_tensor *(*run)(const opcase *c, spin_tensor *const *in);
    /* Double-precision reference: inputs in row-major order with the shapes of c->in; writes
     * every element of the output. */
    void (*ref)(const opcase *c, const double *const *in, double *out);
    double tol;      /* forward: normalised error bound ||y - ref|| / ||ref|| */
    double grad_tol; /* backward bound; 0 means the op has no gradient to check */
    double eps;      /* finite-difference step (default 1e-3) */
    bool exact;      /* integer outputs: must equal the reference exactly */
    /* Bad-input cases: the op must fail and its error contain this text (ref is not called). */
    const char *error;
};

typedef struct {
    bool skipped; /* the device cannot run it and no fallback exists */
    bool passed;
    double fwd_err, grad_err;
    double seconds; /* forward + backward wall time */
    char msg[768];  /* on failure: op, parameters, the worst element */
} opc_result;

opc_result opc_check(spin_device *dev, const opcase *c);
/* The device the running case is checked on (for ops that create tensors without inputs). */
spin_device *opc_device(void);

/* All registered cases. */
const opcase *opc_case_at(int i);
int opc_case_count(void);

/* Families of cases: each tests/harness/cases_<name>.c defines opc_cases_<name>[] and
 * opc_n_<name>; the build lists the files present in OPC_FAMILIES (opc_families.h). */
#include "opc_families.h"

#define OPC_DECLARE_(name)                  \
    extern const opcase opc_cases_##name[]; \
    extern const int opc_n_##name;
OPC_FAMILIES(OPC_DECLARE_)
#undef OPC_DECLARE_

/* Helpers for case files. */
int64_t opc_numel(const opc_input *in);
/* Row-major flat index of (i0..i3) in a shape padded on the left to 4 dims. */
static inline int64_t opc_idx4(const int64_t *n4, int64_t a, int64_t b, int64_t c, int64_t d) {
    return ((a * n4[1] + b) * n4[2] + c) * n4[3] + d;
}

#endif
