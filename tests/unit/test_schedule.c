/* Learning-rate schedules (train/schedule.c) against transformers.get_scheduler (golden lrs from
 * tests/ref/make_optim_golden.py, steps 0..T+1), and the transformers 4.37.0 Trainer step
 * arithmetic against hand-derived values. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "models/safetensors.h"
#include "train/schedule.h"

/* The same double formula as transformers' lambdas; only libm's cos could differ by an ulp. */
#define TOL_LR 1e-15

static spin_safetensors *gold;

static void test_matches_transformers(void **state) {
    (void)state;
    static const struct {
        const char *type;
        int64_t warmup, total;
    } cases[] = {
        {"linear", 0, 10},     {"linear", 3, 10},  {"linear", 4, 30},
        {"linear", 467, 4668}, {"cosine", 0, 10},  {"cosine", 3, 10},
        {"cosine", 2, 7},      {"constant", 0, 5}, {"constant_with_warmup", 3, 8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char name[96];
        snprintf(name, sizeof name, "sched.%s.%lld.%lld", cases[c].type, (long long)cases[c].warmup,
                 (long long)cases[c].total);
        const spin_st_info *in = spin_st_find(gold, name);
        assert_non_null(in);
        assert_string_equal(in->dtype, "F64");
        int64_t n = cases[c].total + 2;
        assert_int_equal(in->nbytes, (size_t)n * sizeof(double));
        double *want = malloc(in->nbytes);
        memcpy(want, in->data, in->nbytes);
        spin_schedule s = {.lr = 5e-7, .warmup = cases[c].warmup, .total = cases[c].total};
        assert_int_equal(spin_sched_kind_from_name(cases[c].type, &s.kind), SPIN_OK);
        double d = 0, nn = 0;
        for (int64_t k = 0; k < n; k++) {
            double got = spin_sched_lr(&s, k);
            d += (got - want[k]) * (got - want[k]);
            nn += want[k] * want[k];
        }
        double e = sqrt(d / nn);
        printf("    %-32s rel err %.1e (tol %.0e)\n", name, e, TOL_LR);
        assert_true(e <= TOL_LR);
        /* the first update of a warmed-up schedule runs at lr 0 */
        if (cases[c].warmup > 0)
            assert_true(spin_sched_lr(&s, 0) == 0.0);
        free(want);
    }
}

/* transformers 4.37.0 Trainer._inner_training_loop:
 *   len_dataloader    = ceil(N / (bs * world))        (accelerate shards ceil(N / bs) batches over
 *                                                      the processes, even_batches)
 *   updates_per_epoch = max(len_dataloader // grad_accum, 1)
 *   total             = max_steps > 0 ? max_steps : ceil(epochs * updates_per_epoch)
 *   warmup            = warmup_steps > 0 ? warmup_steps : ceil(total * warmup_ratio) */
static void test_total_steps(void **state) {
    (void)state;
    /* SPIN iter0 (spin-reference.md 2.5.7): 778 updates per epoch at global batch 8 x 8 = 64, so
     * 777 * 64 < N <= 778 * 64 = 49792. N = 49792: ceil(49792 / 64) = 778 exactly; 778 // 1 = 778;
     * ceil(6 * 778) = 4668. N = 49729 = 777 * 64 + 1 also gives 778 batches, hence 4668. */
    assert_int_equal(spin_sched_total_steps(6.0, 49792, 8, 8, 1, 0), 4668);
    assert_int_equal(spin_sched_total_steps(6.0, 49729, 8, 8, 1, 0), 4668);
    /* one more example past 778 * 64: 779 batches, 6 * 779 = 4674 */
    assert_int_equal(spin_sched_total_steps(6.0, 49793, 8, 8, 1, 0), 4674);
    /* warmup_ratio 0.1: ceil(4668 * 0.1) = ceil(466.8) = 467 */
    assert_int_equal(spin_sched_warmup_steps(0.1, 0, 4668), 467);

    /* grad_accum, floor vs ceil: N = 80, bs 8, world 1: 10 batches; 10 // 3 = 3 updates per epoch
     * (newer transformers: ceil(10 / 3) = 4); 2 epochs: 6 (not 8). */
    assert_int_equal(spin_sched_total_steps(2.0, 80, 8, 1, 3, 0), 6);
    /* with several processes: N = 1000, bs 3, world 4: ceil(1000 / 12) = 84 batches (83.3);
     * 84 // 5 = 16 (ceil: 17); 1 epoch: 16 */
    assert_int_equal(spin_sched_total_steps(1.0, 1000, 3, 4, 5, 0), 16);
    /* fewer batches than grad_accum: 16 / 8 = 2 batches, 2 // 4 = 0 -> max(0, 1) = 1; 3 epochs: 3 */
    assert_int_equal(spin_sched_total_steps(3.0, 16, 8, 1, 4, 0), 3);
    /* fractional epochs: N = 100, bs 4, world 2: ceil(100 / 8) = 13; ceil(2.5 * 13) = ceil(32.5) = 33 */
    assert_int_equal(spin_sched_total_steps(2.5, 100, 4, 2, 1, 0), 33);
    /* max_steps wins */
    assert_int_equal(spin_sched_total_steps(6.0, 49792, 8, 8, 1, 50), 50);

    /* the product is taken in double, as Python does: 100 * 0.07 = 7.000000000000001 -> 8 */
    assert_int_equal(spin_sched_warmup_steps(0.07, 0, 100), 8);
    assert_int_equal(spin_sched_warmup_steps(0.1, 0, 10), 1); /* 10 * 0.1 == 1.0 exactly */
    assert_int_equal(spin_sched_warmup_steps(0.1, 5, 4668), 5);
    assert_int_equal(spin_sched_warmup_steps(0.0, 0, 4668), 0);

    assert_int_equal(spin_sched_total_steps(6.0, 100, 0, 8, 1, 0), -1);
    assert_non_null(strstr(spin_last_error(), "per_device_bs"));
    assert_int_equal(spin_sched_total_steps(0.0, 100, 8, 8, 1, 0), -1);
    assert_non_null(strstr(spin_last_error(), "epochs"));
}

static void test_names(void **state) {
    (void)state;
    static const char *names[] = {"linear", "cosine", "constant", "constant_with_warmup"};
    static const spin_sched_kind kinds[] = {SPIN_SCHED_LINEAR, SPIN_SCHED_COSINE, SPIN_SCHED_CONSTANT,
                                            SPIN_SCHED_CONSTANT_WITH_WARMUP};
    for (int i = 0; i < 4; i++) {
        spin_sched_kind k = (spin_sched_kind)-1;
        assert_int_equal(spin_sched_kind_from_name(names[i], &k), SPIN_OK);
        assert_int_equal(k, kinds[i]);
        assert_string_equal(spin_sched_kind_name(k), names[i]);
    }
    spin_sched_kind k;
    assert_int_equal(spin_sched_kind_from_name("cosine_with_restarts", &k), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "cosine_with_restarts"));
    assert_non_null(strstr(spin_last_error(), "linear"));
}

static int setup(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/train/optim_golden.safetensors", SPIN_TEST_DATA);
    if (spin_st_open(path, &gold) != SPIN_OK) {
        fprintf(stderr, "%s\n", spin_last_error());
        return -1;
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    spin_st_close(gold);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_transformers),
        cmocka_unit_test(test_total_steps),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
