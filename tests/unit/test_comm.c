#define _DEFAULT_SOURCE
/* The communicator as a world of one process (the default build's train/comm/comm_single.c, or MPI
 * started without mpirun in a -DSPIN_MPI=ON build): collectives are the identity, reduce-scatter and
 * all-gather copy the one piece, bad arguments are named; shard ranges; and the data-parallel
 * trainer path on one rank gives exactly the single-process updates (tests/mpi covers 2 ranks). */
#include <json-c/json.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "ops/ops.h"
#include "train/comm.h"
#include "train/trainer.h"

#define DATA SPIN_TEST_DATA "/train/"

static spin_device *dev;
static spin_comm *world;

static void test_world_of_one(void **s) {
    (void)s;
    assert_int_equal(spin_comm_size(world), 1);
    assert_int_equal(spin_comm_rank(world), 0);
    spin_scope_begin();
    float v[4] = {1.5f, -2, 3, 4}, w[4];
    spin_tensor *t = spin_from_host(dev, SPIN_F32, 2, (int64_t[]){2, 2}, v);
    for (int op = SPIN_REDUCE_SUM; op <= SPIN_REDUCE_MAX; op++) {
        assert_int_equal(spin_comm_allreduce(world, t, (spin_reduce_op)op), SPIN_OK);
        assert_int_equal(spin_tensor_read(t, w, sizeof w), SPIN_OK);
        assert_memory_equal(v, w, sizeof v);
    }
    int64_t counts[1] = {4};
    spin_tensor *part = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){4});
    assert_int_equal(spin_comm_reduce_scatter(world, t, part, counts, SPIN_REDUCE_SUM), SPIN_OK);
    assert_int_equal(spin_tensor_read(part, w, sizeof w), SPIN_OK);
    assert_memory_equal(v, w, sizeof v);
    spin_tensor *all = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){4});
    assert_int_equal(spin_comm_allgather(world, part, all, counts), SPIN_OK);
    assert_int_equal(spin_tensor_read(all, w, sizeof w), SPIN_OK);
    assert_memory_equal(v, w, sizeof v);
    assert_int_equal(spin_comm_broadcast(world, t, 0), SPIN_OK);
    assert_int_equal(spin_comm_broadcast(world, t, 1), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "root 1"));
    /* reductions take f32; pieces must add up */
    spin_tensor *h = spin_cast(t, SPIN_BF16);
    assert_int_equal(spin_comm_allreduce(world, h, SPIN_REDUCE_SUM), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "f32"));
    counts[0] = 3;
    assert_int_equal(spin_comm_reduce_scatter(world, t, part, counts, SPIN_REDUCE_SUM), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "counts sum to 3"));
    spin_scope_end();
    double d[2] = {0.25, -1};
    assert_int_equal(spin_comm_allreduce_f64(world, d, 2, SPIN_REDUCE_SUM), SPIN_OK);
    assert_true(d[0] == 0.25 && d[1] == -1);
    assert_int_equal(spin_comm_barrier(world), SPIN_OK);
}

static void test_shard_range(void **s) {
    (void)s;
    /* 10 items over 4 ranks: 3, 3, 2, 2, contiguous, covering [0, 10) in order */
    int64_t want[4][2] = {{0, 3}, {3, 6}, {6, 8}, {8, 10}}, lo, hi;
    for (int r = 0; r < 4; r++) {
        spin_shard_range(10, r, 4, &lo, &hi);
        assert_int_equal(lo, want[r][0]);
        assert_int_equal(hi, want[r][1]);
    }
    spin_shard_range(2, 3, 4, &lo, &hi); /* more ranks than items: empty */
    assert_int_equal(lo, hi);
    spin_shard_range(5, 0, 1, &lo, &hi);
    assert_true(lo == 0 && hi == 5);
    spin_shard_range(5, 1, 1, &lo, &hi); /* a rank outside the world gets nothing */
    assert_true(lo == 0 && hi == 0);
}

/* ---- the trainer's data-parallel path on one rank ---- */
static int32_t *ints(json_object *a, int64_t *n) {
    *n = (int64_t)json_object_array_length(a);
    int32_t *v = malloc((size_t)(*n ? *n : 1) * sizeof *v);
    for (int64_t i = 0; i < *n; i++)
        v[i] = json_object_get_int(json_object_array_get_idx(a, (size_t)i));
    return v;
}

static uint8_t *bits(json_object *a) {
    size_t n = json_object_array_length(a);
    uint8_t *v = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++)
        v[i] = (uint8_t)json_object_get_int(json_object_array_get_idx(a, i));
    return v;
}

static json_object *key(json_object *o, const char *k) {
    json_object *v = NULL;
    assert_true(json_object_object_get_ex(o, k, &v));
    return v;
}

static float *train(bool dist, int zero, spin_optim_kind k, int64_t *n) {
    json_object *root = json_object_from_file(DATA "trajectory_examples.json");
    assert_non_null(root);
    int ne = (int)json_object_array_length(root);
    spin_pref_tokens *ex = calloc((size_t)ne, sizeof *ex);
    for (int i = 0; i < ne; i++) {
        json_object *o = json_object_array_get_idx(root, (size_t)i);
        ex[i].prompt = ints(key(o, "prompt"), &ex[i].n_prompt);
        ex[i].chosen = ints(key(o, "chosen"), &ex[i].n_chosen);
        ex[i].rejected = ints(key(o, "rejected"), &ex[i].n_rejected);
        ex[i].prompt_attn = bits(key(o, "prompt_attn"));
        ex[i].chosen_attn = bits(key(o, "chosen_attn"));
        ex[i].rejected_attn = bits(key(o, "rejected_attn"));
    }
    json_object_put(root);
    spin_llama *p = NULL, *ref = NULL;
    assert_int_equal(spin_llama_load(DATA "tiny", dev, &p), SPIN_OK);
    assert_int_equal(spin_llama_load(DATA "tiny", dev, &ref), SPIN_OK);
    spin_train_config c = spin_train_defaults();
    c.optim = spin_optim_defaults(k);
    c.learning_rate = 1e-3;
    c.warmup_steps = 1;
    c.num_train_epochs = 2;
    c.per_device_train_batch_size = 3;
    c.gradient_accumulation_steps = 2;
    c.comm = dist ? world : NULL;
    c.zero_stage = zero;
    spin_train_data d = {.policy = p,
                         .reference = ref,
                         .examples = ex,
                         .n = ne,
                         .collate = {.max_length = 64, .max_prompt_length = 32, .eos_id = 2, .pad_id = 2}};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_OK);
    assert_true(r.global_step >= 2);
    int64_t total = 0, o = 0;
    for (int i = 0; i < p->n_params; i++)
        total += spin_tensor_numel(p->params[i]);
    float *v = malloc((size_t)total * sizeof *v);
    for (int i = 0; i < p->n_params; i++) {
        assert_int_equal(spin_tensor_read_f32(p->params[i], v + o, spin_tensor_numel(p->params[i])), SPIN_OK);
        o += spin_tensor_numel(p->params[i]);
    }
    *n = total;
    for (int i = 0; i < ne; i++)
        spin_pref_tokens_free(&ex[i]);
    free(ex);
    spin_llama_free(p);
    spin_llama_free(ref);
    return v;
}

/* One rank: the same loss scale, the gradients copied through the buckets, the same optimizer
 * kernels; ZeRO-1's clip (the global norm formed on the host from the same hi/lo sum, the
 * coefficient applied before a step with clipping off) is the same f32 arithmetic: bit-identical. */
static void test_one_rank_equals_plain(void **s) {
    (void)s;
    for (int zero = 0; zero <= 1; zero++) {
        spin_optim_kind k = zero ? SPIN_OPTIM_ADAMW : SPIN_OPTIM_RMSPROP;
        int64_t na, nb;
        float *a = train(false, 0, k, &na), *b = train(true, zero, k, &nb);
        assert_int_equal(na, nb);
        assert_memory_equal(a, b, (size_t)na * sizeof *a);
        free(a);
        free(b);
    }
}

/* ZeRO-2/3 are not implemented: refused by name. */
static void test_bad_zero_stage(void **s) {
    (void)s;
    spin_llama *p = NULL;
    assert_int_equal(spin_llama_load(DATA "tiny", dev, &p), SPIN_OK);
    spin_pref_tokens ex = {0};
    spin_train_config c = spin_train_defaults();
    c.comm = world;
    c.zero_stage = 2;
    c.loss.reference_free = true;
    spin_train_data d = {.policy = p, .examples = &ex, .n = 1};
    spin_train_result r;
    assert_int_equal(spin_train_run(&c, &d, &r), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "zero_stage must be 0 or 1 (got 2)"));
    spin_llama_free(p);
}

int main(int argc, char **argv) {
    if (spin_comm_world(&argc, &argv, &world) != SPIN_OK) {
        fprintf(stderr, "%s\n", spin_last_error());
        return 1;
    }
    dev = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_world_of_one),
        cmocka_unit_test(test_shard_range),
        cmocka_unit_test(test_one_rank_equals_plain),
        cmocka_unit_test(test_bad_zero_stage),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    spin_comm_free(world);
    return rc;
}
