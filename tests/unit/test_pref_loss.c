/* Preference losses (train/pref_loss.c) against float64 torch goldens from
 * tests/ref/make_loss_golden.py (tests/data/train/loss_golden.safetensors): per-example losses,
 * batch loss, gradients of the batch loss w.r.t. the policy log-probs, rewards; plus option and
 * input validation, the name table, and ownership. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "models/safetensors.h"
#include "train/pref_loss.h"

#define B 5
#define GOLDEN SPIN_TEST_DATA "/train/loss_golden.safetensors"

/* Inputs are exact f32 values and every formula is a handful of f32 ops, each rounding by <= 6e-8
 * relative; the worst error measured is 2.1e-7 (printed per case), so 1e-6 leaves 5x room. */
#define TOL 1e-6

static spin_device *dev;

static double norm_err(const float *got, const float *want, int n) {
    double d = 0, w = 0;
    for (int i = 0; i < n; i++) {
        d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
        w += (double)want[i] * want[i];
    }
    /* An exactly-zero reference (no dependence, e.g. sft on policy_rejected) needs an exact 0. */
    return w == 0 ? (d == 0 ? 0 : INFINITY) : sqrt(d / w);
}

static void read_n(const spin_tensor *t, float *v, int n) {
    assert_non_null(t);
    assert_int_equal(spin_tensor_numel(t), n);
    assert_int_equal(spin_tensor_read_f32(t, v, n), SPIN_OK);
}

static spin_tensor *load(const spin_safetensors *st, const char *cas, const char *field, int n) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", cas, field);
    spin_tensor *t = spin_st_load(st, name, dev, 1, (int64_t[]){n});
    if (!t)
        fail_msg("%s", spin_last_error());
    return t;
}

/* ||got − golden|| / ||golden|| for `field`; got NULL stands for zeros (no gradient). */
static double compare(const spin_safetensors *st, const char *cas, const char *field, const spin_tensor *got,
                      int n) {
    float g[B] = {0}, w[B];
    if (got)
        read_n(got, g, n);
    read_n(load(st, cas, field, n), w, n);
    double e = norm_err(g, w, n);
    if (!(e <= TOL))
        fail_msg("%s: %s normalised error %.3g > %.0e", cas, field, e, TOL);
    return e;
}

static void check_case(const spin_safetensors *st, const char *cas, bool *covered) {
    char type_name[64];
    size_t len = strcspn(cas, "/");
    snprintf(type_name, sizeof type_name, "%.*s", (int)len, cas);
    spin_pref_loss_opts o = {0};
    assert_int_equal(spin_loss_type_from_name(type_name, &o.type), SPIN_OK);
    covered[o.type] = true;

    int64_t live = spin_tensor_live_count();
    spin_scope_begin();
    float opts[3];
    read_n(load(st, cas, "opts", 3), opts, 3);
    o.beta = opts[0], o.label_smoothing = opts[1], o.reference_free = opts[2] != 0;
    spin_pref_inputs in = {
        .policy_chosen = load(st, cas, "policy_chosen", B),
        .policy_rejected = load(st, cas, "policy_rejected", B),
        .ref_chosen = load(st, cas, "ref_chosen", B),
        .ref_rejected = load(st, cas, "ref_rejected", B),
        .len_chosen = load(st, cas, "len_chosen", B),
        .len_rejected = load(st, cas, "len_rejected", B),
        .probs_chosen = load(st, cas, "probs_chosen", B),
        .probs_win = load(st, cas, "probs_win", B),
        .probs_lose = load(st, cas, "probs_lose", B),
    };
    spin_tensor_set_requires_grad(in.policy_chosen, true);
    spin_tensor_set_requires_grad(in.policy_rejected, true);
    spin_pref_outputs out;
    if (spin_pref_loss(&o, &in, &out) != SPIN_OK)
        fail_msg("%s: %s", cas, spin_last_error());
    assert_int_equal(spin_tensor_ndim(out.loss), 0);
    assert_int_equal(spin_tensor_ndim(out.losses), 1);

    double e[6];
    e[0] = compare(st, cas, "losses", out.losses, B);
    e[1] = compare(st, cas, "loss", out.loss, 1);
    e[2] = compare(st, cas, "chosen_rewards", out.chosen_rewards, B);
    e[3] = compare(st, cas, "rejected_rewards", out.rejected_rewards, B);
    /* Rewards are metrics only: no graph, so backward never reaches them. */
    spin_tensor *rw[2] = {out.chosen_rewards, out.rejected_rewards};
    for (int i = 0; i < 2; i++) {
        assert_null(spin_tensor_node(rw[i]));
        assert_false(spin_tensor_requires_grad(rw[i]));
    }
    assert_int_equal(spin_backward(out.loss), SPIN_OK);
    e[4] = compare(st, cas, "grad_policy_chosen", spin_tensor_grad(in.policy_chosen), B);
    e[5] = compare(st, cas, "grad_policy_rejected", spin_tensor_grad(in.policy_rejected), B);
    printf("    %-26s losses %.1e loss %.1e rewards %.1e %.1e grads %.1e %.1e\n", cas, e[0], e[1], e[2], e[3],
           e[4], e[5]);
    spin_scope_end();
    assert_int_equal(spin_tensor_live_count(), live);
}

/* Every case in the golden file, and at least one per loss type. */
static void test_matches_torch_golden(void **state) {
    (void)state;
    spin_safetensors *st = NULL;
    if (spin_st_open(GOLDEN, &st) != SPIN_OK)
        fail_msg("%s", spin_last_error());
    bool covered[SPIN_LOSS_COUNT] = {0};
    int cases = 0;
    for (int i = 0; i < spin_st_count(st); i++) {
        const char *name = spin_st_at(st, i)->name;
        size_t n = strlen(name);
        if (n > 5 && !strcmp(name + n - 5, ".opts")) {
            char cas[96];
            snprintf(cas, sizeof cas, "%.*s", (int)(n - 5), name);
            check_case(st, cas, covered);
            cases++;
        }
    }
    spin_st_close(st);
    for (int t = 0; t < SPIN_LOSS_COUNT; t++)
        if (!covered[t])
            fail_msg("no golden case for loss '%s'", spin_loss_type_name((spin_loss_type)t));
    printf("    %d cases\n", cases);
}

static void test_names_round_trip(void **state) {
    (void)state;
    const char *names[SPIN_LOSS_COUNT] = {"sigmoid", "robust",      "hinge",     "ipo",
                                          "sppo",    "sppo_single", "sppo_hard", "sft"};
    for (int t = 0; t < SPIN_LOSS_COUNT; t++) {
        spin_loss_type got = SPIN_LOSS_COUNT;
        assert_int_equal(spin_loss_type_from_name(names[t], &got), SPIN_OK);
        assert_int_equal(got, t);
        assert_string_equal(spin_loss_type_name(got), names[t]);
    }
    assert_string_equal(spin_loss_type_name(SPIN_LOSS_COUNT), "unknown");
    spin_loss_type keep = SPIN_LOSS_HINGE;
    assert_int_equal(spin_loss_type_from_name("dpo", &keep), SPIN_ERR_INVALID);
    assert_int_equal(keep, SPIN_LOSS_HINGE);
    assert_non_null(strstr(spin_last_error(), "'dpo'"));
    assert_non_null(
        strstr(spin_last_error(), "sigmoid, robust, hinge, ipo, sppo, sppo_single, sppo_hard, sft"));
    assert_int_equal(spin_loss_type_from_name("Sigmoid", &keep), SPIN_ERR_INVALID);
    assert_int_equal(spin_loss_type_from_name(NULL, &keep), SPIN_ERR_INVALID);
}

/* A full set of valid inputs of length n (held by the caller's scope). */
static spin_pref_inputs valid_inputs(int n) {
    float pc[B] = {-10, -20, -5, -7, -30}, pr[B] = {-12, -15, -9, -7.5f, -28}, len[B] = {4, 8, 2, 3, 12},
          p[B] = {0.2f, 0.5f, 0.7f, 0.9f, 0.4f};
    int64_t sh[1] = {n};
    spin_pref_inputs in = {
        .policy_chosen = spin_from_host(dev, SPIN_F32, 1, sh, pc),
        .policy_rejected = spin_from_host(dev, SPIN_F32, 1, sh, pr),
        .ref_chosen = spin_from_host(dev, SPIN_F32, 1, sh, pr),
        .ref_rejected = spin_from_host(dev, SPIN_F32, 1, sh, pc),
        .len_chosen = spin_from_host(dev, SPIN_F32, 1, sh, len),
        .len_rejected = spin_from_host(dev, SPIN_F32, 1, sh, len),
        .probs_chosen = spin_from_host(dev, SPIN_F32, 1, sh, p),
        .probs_win = spin_from_host(dev, SPIN_F32, 1, sh, p),
        .probs_lose = spin_from_host(dev, SPIN_F32, 1, sh, p),
    };
    return in;
}

/* Expects SPIN_ERR_INVALID with every `words` (NULL-terminated) in the message, no outputs, and no
 * tensor made. */
static void expect_invalid(const spin_pref_loss_opts *o, const spin_pref_inputs *in, ...) {
    int64_t live = spin_tensor_live_count();
    spin_pref_outputs out;
    memset(&out, 0xff, sizeof out);
    assert_int_equal(spin_pref_loss(o, in, &out), SPIN_ERR_INVALID);
    assert_null(out.loss);
    assert_null(out.losses);
    assert_null(out.chosen_rewards);
    assert_null(out.rejected_rewards);
    assert_int_equal(spin_tensor_live_count(), live);
    va_list ap;
    va_start(ap, in);
    for (const char *w; (w = va_arg(ap, const char *));)
        if (!strstr(spin_last_error(), w))
            fail_msg("message \"%s\" lacks \"%s\"", spin_last_error(), w);
    va_end(ap);
}

static void expect_ok(const spin_pref_loss_opts *o, const spin_pref_inputs *in) {
    spin_pref_outputs out;
    if (spin_pref_loss(o, in, &out) != SPIN_OK)
        fail_msg("%s: %s", spin_loss_type_name(o->type), spin_last_error());
}

static void test_rejects_bad_opts(void **state) {
    (void)state;
    spin_scope_begin();
    spin_pref_inputs in = valid_inputs(B);
    typedef spin_pref_loss_opts O;
    expect_invalid(&(O){SPIN_LOSS_SIGMOID, 0, 0, false}, &in, "beta = 0", "> 0", NULL);
    expect_invalid(&(O){SPIN_LOSS_SPPO_HARD, -0.1f, 0, false}, &in, "beta = -0.1", NULL);
    expect_invalid(&(O){SPIN_LOSS_HINGE, NAN, 0, false}, &in, "beta = nan", NULL);
    expect_invalid(&(O){SPIN_LOSS_HINGE, INFINITY, 0, false}, &in, "beta = inf", NULL);
    expect_invalid(&(O){SPIN_LOSS_ROBUST, 0.1f, 0.5f, false}, &in, "label_smoothing = 0.5", "'robust'",
                   "[0, 0.5)", NULL);
    expect_invalid(&(O){SPIN_LOSS_ROBUST, 0.1f, -0.1f, false}, &in, "label_smoothing", NULL);
    expect_invalid(&(O){SPIN_LOSS_SIGMOID, 0.1f, 1.0f, false}, &in, "label_smoothing = 1", "[0, 1)", NULL);
    expect_invalid(&(O){SPIN_LOSS_SIGMOID, 0.1f, NAN, false}, &in, "label_smoothing = nan", NULL);
    const spin_loss_type no_smoothing[] = {SPIN_LOSS_HINGE,       SPIN_LOSS_IPO,       SPIN_LOSS_SPPO,
                                           SPIN_LOSS_SPPO_SINGLE, SPIN_LOSS_SPPO_HARD, SPIN_LOSS_SFT};
    for (size_t i = 0; i < sizeof no_smoothing / sizeof no_smoothing[0]; i++) {
        char quoted[32];
        snprintf(quoted, sizeof quoted, "'%s'", spin_loss_type_name(no_smoothing[i]));
        expect_invalid(&(O){no_smoothing[i], 0.1f, 0.1f, false}, &in, "label_smoothing = 0.1", quoted,
                       "must be 0", NULL);
    }
    expect_invalid(&(O){SPIN_LOSS_COUNT, 0.1f, 0, false}, &in, "type = 8", NULL);
    /* The edges of the valid ranges are accepted. */
    expect_ok(&(O){SPIN_LOSS_SIGMOID, 0.1f, 0.99f, false}, &in);
    expect_ok(&(O){SPIN_LOSS_ROBUST, 0.1f, 0.49f, false}, &in);
    expect_ok(&(O){SPIN_LOSS_ROBUST, 1e-4f, 0, false}, &in);
    spin_scope_end();
}

static void test_rejects_missing_or_bad_inputs(void **state) {
    (void)state;
    spin_scope_begin();
    spin_pref_inputs good = valid_inputs(B), in;
    typedef spin_pref_loss_opts O;
    O sppo = {SPIN_LOSS_SPPO, 0.1f, 0, false};
    in = good, in.probs_win = NULL;
    expect_invalid(&sppo, &in, "'sppo' needs probs_win", NULL);
    in = good, in.probs_lose = NULL;
    expect_invalid(&sppo, &in, "'sppo' needs probs_lose", NULL);
    in = good, in.probs_chosen = NULL;
    expect_invalid(&(O){SPIN_LOSS_SPPO_SINGLE, 0.1f, 0, false}, &in, "'sppo_single' needs probs_chosen",
                   NULL);
    in = good, in.len_rejected = NULL;
    expect_invalid(&(O){SPIN_LOSS_IPO, 0.1f, 0, false}, &in, "'ipo' needs len_rejected", NULL);
    in = good, in.len_chosen = NULL;
    expect_invalid(&(O){SPIN_LOSS_SFT, 0.1f, 0, false}, &in, "'sft' needs len_chosen", NULL);
    in = good, in.ref_rejected = NULL;
    expect_invalid(&(O){SPIN_LOSS_SIGMOID, 0.1f, 0, false}, &in, "needs ref_rejected", NULL);
    in = good, in.policy_rejected = NULL;
    expect_invalid(&(O){SPIN_LOSS_HINGE, 0.1f, 0, false}, &in, "needs policy_rejected", NULL);
    in = good, in.policy_chosen = NULL;
    expect_invalid(&(O){SPIN_LOSS_HINGE, 0.1f, 0, false}, &in, "needs policy_chosen", NULL);

    spin_pref_inputs four = valid_inputs(4);
    in = good, in.ref_chosen = four.ref_chosen;
    expect_invalid(&(O){SPIN_LOSS_SIGMOID, 0.1f, 0, false}, &in, "ref_chosen is f32 [4]", "expected f32 [5]",
                   NULL);
    in = good, in.probs_win = spin_reshape(good.probs_win, 2, (int64_t[]){5, 1});
    expect_invalid(&sppo, &in, "probs_win is f32 [5, 1]", NULL);
    in = good, in.policy_chosen = spin_reshape(good.policy_chosen, 2, (int64_t[]){1, 5});
    expect_invalid(&sppo, &in, "policy_chosen is [1, 5]", NULL);
    in = good, in.len_chosen = spin_cast(good.len_chosen, SPIN_I32);
    expect_invalid(&(O){SPIN_LOSS_IPO, 0.1f, 0, false}, &in, "len_chosen is i32", NULL);
    /* A reference that requires grad would train the frozen opponent. */
    in = good, in.ref_rejected = spin_copy(good.ref_rejected);
    spin_tensor_set_requires_grad(in.ref_rejected, true);
    expect_invalid(&(O){SPIN_LOSS_SIGMOID, 0.1f, 0, false}, &in, "ref_rejected requires grad", NULL);

    /* reference_free needs no ref, and a type ignores inputs it does not use. */
    in = (spin_pref_inputs){.policy_chosen = good.policy_chosen, .policy_rejected = good.policy_rejected};
    expect_ok(&(O){SPIN_LOSS_SIGMOID, 0.1f, 0, true}, &in);
    expect_ok(&(O){SPIN_LOSS_SPPO_HARD, 0.1f, 0, true}, &in);
    in = good, in.probs_win = in.probs_lose = in.probs_chosen = in.len_chosen = in.len_rejected = NULL;
    expect_ok(&(O){SPIN_LOSS_ROBUST, 0.1f, 0.2f, false}, &in);
    spin_scope_end();
}

/* Without a collecting scope the four outputs are the caller's references. */
static void test_outputs_are_owned(void **state) {
    (void)state;
    int64_t live = spin_tensor_live_count();
    float pc[B] = {-10, -20, -5, -7, -30}, pr[B] = {-12, -15, -9, -7.5f, -28};
    int64_t sh[1] = {B};
    spin_tensor *x = spin_from_host(dev, SPIN_F32, 1, sh, pc), *y = spin_from_host(dev, SPIN_F32, 1, sh, pr);
    spin_tensor_set_requires_grad(x, true);
    spin_pref_inputs in = {.policy_chosen = x, .policy_rejected = y};
    spin_pref_outputs out;
    assert_int_equal(spin_pref_loss(&(spin_pref_loss_opts){SPIN_LOSS_SIGMOID, 0.1f, 0, true}, &in, &out),
                     SPIN_OK);
    assert_int_equal(spin_backward(out.loss), SPIN_OK);
    assert_non_null(spin_tensor_grad(x));
    spin_tensor_release(out.loss);
    spin_tensor_release(out.losses);
    spin_tensor_release(out.chosen_rewards);
    spin_tensor_release(out.rejected_rewards);
    spin_tensor_release(x);
    spin_tensor_release(y);
    assert_int_equal(spin_tensor_live_count(), live);
}

int main(void) {
    dev = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_torch_golden), cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_rejects_bad_opts),     cmocka_unit_test(test_rejects_missing_or_bad_inputs),
        cmocka_unit_test(test_outputs_are_owned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
