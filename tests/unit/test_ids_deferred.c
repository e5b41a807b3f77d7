/* Bad ids on the default device (SPIN_DEVICE, else the build's accelerator). The CPU fails the call
 * that meets one. The device backends check ids on the device without a host read
 * (backends/kernels/ids.cl) and fail the next read or synchronize instead, with the CPU's message
 * for the first failing launch (its lowest bad position), even when launches with good ids and a
 * second bad one follow it; afterwards the device works on normally (the error record is cleared).
 *
 * Tolerance: the log-probs of a [3, 7] log-softmax in f32 against double, normalised error 1e-6
 * (f32 rounding is ~1e-7 here). Embedding rows are copied as bits: exact. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "core/device.h"
#include "core/dispatch.h"
#include "core/scope.h"
#include "ops/ops.h"

#define V 7
#define C 3
#define IGNORE (-100)

static spin_device *dev;

static spin_tensor *make(spin_dtype dt, int ndim, const int64_t *shape, const float *v) {
    spin_tensor *t = spin_tensor_new(dev, dt, ndim, shape);
    assert_non_null(t);
    assert_int_equal(spin_tensor_write_f32(t, v, spin_tensor_numel(t)), SPIN_OK);
    return t;
}

static void expect_error(spin_status s, const char *msg) {
    if (s == SPIN_OK)
        fail_msg("succeeded where it must fail with \"%s\"", msg);
    if (!strstr(spin_last_error(), msg))
        fail_msg("failed with \"%s\", expected \"%s\"", spin_last_error(), msg);
}

/* w[v, j] = 10 v + j, so every row read back names its id. */
static void expect_rows(spin_tensor *y, const float *ids, int64_t n) {
    float got[16 * C];
    assert_int_equal(spin_tensor_read_f32(y, got, n * C), SPIN_OK);
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < C; j++)
            assert_true(got[i * C + j] == 10.0f * ids[i] + (float)j);
}

static const float logits_v[3 * V] = {0.5f, -1,    2,    0.25f, 0, 1.5f, -0.5f, 3,  1,    -2,   0.5f,
                                      0,    0.75f, 2.5f, -1,    0, 1,    2,     -3, 0.5f, 1.25f};

/* logp of log-softmax(logits[r])[t[r]] in double, 0 for the ignore index. */
static void ref_logp(const float *t, double *out) {
    for (int r = 0; r < 3; r++) {
        double m = -INFINITY, s = 0;
        for (int j = 0; j < V; j++)
            m = fmax(m, logits_v[r * V + j]);
        for (int j = 0; j < V; j++)
            s += exp(logits_v[r * V + j] - m);
        out[r] = t[r] == IGNORE ? 0 : logits_v[r * V + (int)t[r]] - m - log(s);
    }
}

static void test_bad_id_between_good_launches(void **state) {
    (void)state;
    const bool on_cpu = dev == spin_cpu_device();
    spin_scope_begin();
    float wv[V * C];
    for (int v = 0; v < V; v++)
        for (int j = 0; j < C; j++)
            wv[v * C + j] = (float)(10 * v + j);
    spin_tensor *w = make(SPIN_F32, 2, (const int64_t[]){V, C}, wv);
    const float good[4] = {0, 6, 3, 3}, bad[5] = {2, -2, 5, 9, 1};
    const float tgood[3] = {1, 6, IGNORE}, tbad[3] = {1, V, IGNORE};
    spin_tensor *ids_good = make(SPIN_I32, 1, (const int64_t[]){4}, good);
    spin_tensor *ids_bad = make(SPIN_I32, 1, (const int64_t[]){5}, bad);
    spin_tensor *logits = make(SPIN_F32, 2, (const int64_t[]){3, V}, logits_v);
    spin_tensor *t_good = make(SPIN_I32, 1, (const int64_t[]){3}, tgood);
    spin_tensor *t_bad = make(SPIN_I32, 1, (const int64_t[]){3}, tbad);
    const char *emb_msg = "embedding: token id -2 at position 1 outside the vocabulary of 7";
    const char *ce_msg = "CE_ROWS: target 7 at row 1 is outside [0, 7) and is not the ignore index -100";

    spin_tensor *y1 = spin_embedding(w, ids_good);
    assert_non_null(y1);
    spin_tensor *y2 = spin_embedding(w, ids_bad);
    if (on_cpu) {
        assert_null(y2);
        expect_error(SPIN_ERR_INVALID, emb_msg);
    } else {
        /* queued: nothing was read back at the launch; a second bad launch and a good one follow */
        assert_non_null(y2);
        assert_non_null(spin_logprob_gather(logits, t_bad, IGNORE, NULL));
    }
    spin_tensor *y3 = spin_embedding(w, ids_good);
    assert_non_null(y3);
    if (!on_cpu) {
        float tmp[4 * C];
        expect_error(spin_tensor_read_f32(y3, tmp, 4 * C), emb_msg);
    }
    /* reported once, then cleared: the device works on */
    expect_rows(y3, good, 4);
    expect_rows(y1, good, 4);
    spin_tensor *lp = spin_logprob_gather(logits, t_good, IGNORE, NULL);
    assert_non_null(lp);
    float got[3];
    double want[3], num = 0, den = 0;
    assert_int_equal(spin_tensor_read_f32(lp, got, 3), SPIN_OK);
    ref_logp(tgood, want);
    for (int r = 0; r < 3; r++) {
        num += (got[r] - want[r]) * (got[r] - want[r]);
        den += want[r] * want[r];
    }
    assert_true(sqrt(num / den) <= 1e-6);

    /* the other place the host waits: synchronize */
    spin_tensor *lp_bad = spin_logprob_gather(logits, t_bad, IGNORE, NULL);
    if (on_cpu) {
        assert_null(lp_bad);
        expect_error(SPIN_ERR_INVALID, ce_msg);
    } else {
        assert_non_null(lp_bad);
        expect_error(dev->backend->synchronize(dev), ce_msg);
    }
    assert_int_equal(dev->backend->synchronize(dev), SPIN_OK);
    expect_rows(y1, good, 4);
    assert_int_equal(spin_fallback_total(dev), 0);
    printf("%s: bad ids reported %s\n", dev->name,
           on_cpu ? "at the call" : "at the next read and synchronize");
    spin_scope_end();
}

int main(void) {
    dev = spin_init();
    if (!dev) {
        fprintf(stderr, "test_ids_deferred: no device: %s\n", spin_last_error());
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_id_between_good_launches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
