/* Core: dtype conversions, RNG determinism, tensors and views, scopes, the caching allocator,
 * autograd mechanics (accumulation, no-grad, detach, freed graphs, recompute, the leaf hook) and CPU
 * fallback. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "backends/cpu/cpu_backend.h"
#include "core/dispatch.h"
#include "core/pool.h"
#include "core/rng.h"
#include "core/scope.h"
#include "ops/ops.h"

static spin_device *cpu;

static spin_tensor *vec(const float *v, int64_t n) {
    return spin_from_host(cpu, SPIN_F32, 1, &n, v);
}

static void test_dtype_roundtrip(void **state) {
    (void)state;
    /* bf16: round to nearest even on the upper 16 bits */
    assert_int_equal(spin_f32_to_bf16(1.0f), 0x3f80);
    assert_true(spin_bf16_to_f32(spin_f32_to_bf16(3.140625f)) == 3.140625f);
    /* 1 + 2^-8 is exactly halfway between two bf16 values: ties to even (1.0) */
    assert_true(spin_bf16_to_f32(spin_f32_to_bf16(1.00390625f)) == 1.0f);
    assert_true(isnan(spin_bf16_to_f32(spin_f32_to_bf16(NAN))));
    /* f16: compare with the compiler's own conversion over a sweep, subnormals included */
    for (int i = -4000; i <= 4000; i++) {
        float x = (float)i * 0.0173f + (i % 7) * 1e-6f;
        float want = (float)(_Float16)x;
        assert_true(spin_f16_to_f32(spin_f32_to_f16(x)) == want);
    }
    float tiny = 3e-7f; /* subnormal in f16 */
    assert_true(spin_f16_to_f32(spin_f32_to_f16(tiny)) == (float)(_Float16)tiny);
    assert_true(isinf(spin_f16_to_f32(spin_f32_to_f16(1e6f))));
}

static void test_rng_is_counter_based(void **state) {
    (void)state;
    /* Known-answer test for Philox4x32-10 (Random123 kat_vectors: counter 0, key 0). */
    spin_philox_out o = spin_philox(0, 0);
    assert_int_equal(o.v[0], 0x6627e8d5u);
    assert_int_equal(o.v[1], 0xe169c58du);
    assert_int_equal(o.v[2], 0xbc57ac4cu);
    assert_int_equal(o.v[3], 0x9b00dbd8u);
    /* a tensor drawn at once equals the same stream drawn in two parts */
    int64_t n = 1000, h = 400, rest = 600;
    spin_scope_begin();
    spin_tensor *all = spin_rand_normal(cpu, 1, &n, 7, 0, 0, 1);
    spin_tensor *a = spin_rand_normal(cpu, 1, &h, 7, 0, 0, 1);
    spin_tensor *b = spin_rand_normal(cpu, 1, &rest, 7, 400, 0, 1);
    float va[1000], vb[1000];
    spin_tensor_read_f32(all, va, n);
    spin_tensor_read_f32(a, vb, h);
    spin_tensor_read_f32(b, vb + h, rest);
    assert_memory_equal(va, vb, sizeof va);
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += va[i] / n;
    for (int i = 0; i < n; i++)
        var += (va[i] - mean) * (va[i] - mean) / n;
    assert_true(fabs(mean) < 0.1 && fabs(var - 1) < 0.15);
    spin_scope_end();
}

static void test_views_share_storage(void **state) {
    (void)state;
    spin_scope_begin();
    float v[6] = {0, 1, 2, 3, 4, 5};
    spin_tensor *x = spin_from_host(cpu, SPIN_F32, 2, (int64_t[]){2, 3}, v);
    spin_tensor *t = spin_transpose(x, 0, 1);
    assert_true(spin_tensor_shares_storage(x, t));
    assert_false(spin_tensor_is_contiguous(t));
    float got[6];
    spin_tensor_read_f32(t, got, 6);
    float want[6] = {0, 3, 1, 4, 2, 5};
    assert_memory_equal(got, want, sizeof got);
    /* reading a non-contiguous view raw is refused with a message */
    assert_int_equal(spin_tensor_read(t, got, sizeof got), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "contiguous"));
    spin_tensor *n = spin_narrow(x, 1, 1, 2);
    spin_tensor_read_f32(n, got, 4);
    float wn[4] = {1, 2, 4, 5};
    assert_memory_equal(got, wn, sizeof wn);
    /* bad shapes give errors, not crashes */
    assert_null(spin_reshape(x, 2, (int64_t[]){4, 2}));
    assert_non_null(strstr(spin_last_error(), "reshape"));
    assert_null(spin_add(x, vec((float[]){1, 2}, 2)));
    assert_non_null(strstr(spin_last_error(), "broadcast"));
    assert_null(spin_matmul(x, x, false, false));
    assert_non_null(strstr(spin_last_error(), "inner dimensions"));
    spin_scope_end();
}

static void test_scope_releases_everything(void **state) {
    (void)state;
    int64_t before = spin_tensor_live_count();
    spin_scope_begin();
    spin_tensor *a = vec((float[]){1, 2, 3}, 3);
    spin_tensor *b = spin_exp(spin_add(a, a));
    spin_tensor *kept = spin_scope_keep(b);
    spin_scope_end();
    assert_int_equal(spin_tensor_live_count(), before + 1);
    float v[3];
    spin_tensor_read_f32(kept, v, 3);
    assert_true(fabsf(v[0] - expf(2)) < 1e-5f && fabsf(v[2] - expf(6)) < 1e-3f);
    spin_tensor_release(kept);
    assert_int_equal(spin_tensor_live_count(), before);
}

/* After a warm-up step, a training step must be served entirely from the caching allocator and
 * the host struct pools. */
static void test_steady_state_makes_no_raw_allocations(void **state) {
    (void)state;
    int64_t shw[2] = {16, 8};
    spin_tensor *w = spin_rand_normal(cpu, 2, shw, 1, 0, 0, 0.1f);
    spin_tensor_set_requires_grad(w, true);
    spin_alloc_stats s0 = {0};
    uint64_t host0 = 0;
    for (int step = 0; step < 3; step++) {
        spin_scope_begin();
        spin_tensor *x = spin_rand_uniform(cpu, 2, (int64_t[]){4, 16}, 2, (uint64_t)step * 64, -1, 1);
        spin_tensor *loss = spin_mean_all(spin_silu(spin_matmul(x, w, false, false)));
        assert_int_equal(spin_backward(loss), SPIN_OK);
        spin_tensor_zero_grad(w);
        spin_scope_end();
        if (step == 1) {
            s0 = spin_device_alloc_stats(cpu);
            host0 = spin_pool_system_allocs();
        }
    }
    spin_alloc_stats s1 = spin_device_alloc_stats(cpu);
    assert_int_equal(s1.raw_allocs, s0.raw_allocs);
    assert_int_equal(spin_pool_system_allocs(), host0);
    assert_true(s1.requests > s0.requests);
    spin_tensor_release(w);
}

static void test_grad_accumulates_and_zeroes(void **state) {
    (void)state;
    spin_tensor *x = vec((float[]){1, 2, 3}, 3);
    spin_tensor_set_requires_grad(x, true);
    for (int i = 0; i < 2; i++) {
        spin_scope_begin();
        assert_int_equal(spin_backward(spin_sum_all(spin_mul(x, x))), SPIN_OK);
        spin_scope_end();
    }
    float g[3];
    spin_tensor_read_f32(spin_tensor_grad(x), g, 3);
    assert_true(g[0] == 4 && g[1] == 8 && g[2] == 12); /* 2 * (2x) */
    spin_tensor_zero_grad(x);
    assert_null(spin_tensor_grad(x));
    spin_tensor_release(x);
}

/* torch.nn.Embedding(padding_idx=p): row p gets no gradient, the other rows the plain sums; the
 * forward is the plain lookup. */
static void test_embedding_padding_idx(void **state) {
    (void)state;
    float w[4 * 2] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ws[2] = {4, 2}, n = 5;
    spin_tensor *wt = spin_from_host(cpu, SPIN_F32, 2, ws, w);
    spin_tensor *ids = spin_from_host(cpu, SPIN_I32, 1, &n, (int32_t[]){2, 0, 2, 3, 0});
    spin_tensor_set_requires_grad(wt, true);
    float y[10], g[8];
    for (int pad = -1; pad <= 2; pad += 3) {
        spin_scope_begin();
        spin_tensor *e = spin_embedding_pad(wt, ids, pad);
        assert_int_equal(spin_tensor_read_f32(e, y, 10), SPIN_OK);
        assert_true(y[0] == 5 && y[1] == 6 && y[2] == 1 && y[8] == 1 && y[9] == 2);
        /* d/dw of sum(e * e) = 2 e, summed per id */
        assert_int_equal(spin_backward(spin_sum_all(spin_mul(e, e))), SPIN_OK);
        spin_scope_end();
        assert_int_equal(spin_tensor_read_f32(spin_tensor_grad(wt), g, 8), SPIN_OK);
        const float want_pad[8] = {4, 8, 0, 0, 0, 0, 14, 16};
        const float want_all[8] = {4, 8, 0, 0, 20, 24, 14, 16};
        assert_memory_equal(g, pad < 0 ? want_all : want_pad, sizeof g);
        spin_tensor_zero_grad(wt);
    }
    assert_null(spin_embedding_pad(wt, ids, 4)); /* outside the table */
    spin_tensor_release(ids);
    spin_tensor_release(wt);
}

static void test_no_grad_and_detach(void **state) {
    (void)state;
    spin_scope_begin();
    spin_tensor *x = vec((float[]){1, 2}, 2);
    spin_tensor_set_requires_grad(x, true);
    spin_no_grad_begin();
    spin_tensor *y = spin_mul(x, x);
    spin_no_grad_end();
    assert_false(spin_tensor_requires_grad(y));
    assert_null(spin_tensor_node(y));
    spin_tensor *z = spin_mul(x, x);
    assert_non_null(spin_tensor_node(z));
    spin_tensor *d = spin_detach(z);
    assert_null(spin_tensor_node(d));
    assert_true(spin_tensor_shares_storage(d, z));
    /* backward through a detached value reaches nothing */
    assert_int_equal(spin_backward(spin_sum_all(spin_mul(d, x))), SPIN_OK);
    float g[2];
    spin_tensor_read_f32(spin_tensor_grad(x), g, 2);
    assert_true(g[0] == 1 && g[1] == 4); /* d/dx (d * x) with d fixed = d = x^2 */
    spin_scope_end();
}

static void test_graph_is_freed_by_backward(void **state) {
    (void)state;
    spin_scope_begin();
    spin_tensor *x = vec((float[]){1, 2}, 2);
    spin_tensor_set_requires_grad(x, true);
    spin_tensor *loss = spin_sum_all(spin_exp(x));
    assert_int_equal(spin_backward(loss), SPIN_OK);
    assert_int_equal(spin_backward(loss), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "freed"));
    /* backward from a non-scalar needs a seed */
    assert_int_equal(spin_backward(spin_exp(x)), SPIN_ERR_INVALID);
    spin_scope_end();
}

typedef struct {
    spin_tensor *w;
} block_ctx;

static int block_calls;

static spin_tensor *block(void *vctx, spin_tensor *const *in, int n) {
    (void)n;
    block_ctx *c = vctx;
    block_calls++;
    spin_tensor *h = spin_matmul(in[0], c->w, false, false);
    spin_tensor *a = spin_gelu(h);
    spin_tensor *y = spin_mul(a, in[0]);
    spin_tensor_release(h);
    spin_tensor_release(a);
    return y;
}

/* Recomputing a block in backward gives the same gradients as storing its activations. */
static void test_checkpoint_recompute_matches(void **state) {
    (void)state;
    int64_t sh[2] = {5, 5};
    float gx[2][25], gw[2][25];
    for (int mode = 0; mode < 2; mode++) {
        spin_scope_begin();
        block_ctx c = {spin_rand_normal(cpu, 2, sh, 3, 0, 0, 0.5f)};
        block_calls = 0;
        spin_tensor_set_requires_grad(c.w, true);
        spin_tensor *x = spin_rand_normal(cpu, 2, sh, 4, 0, 0, 1);
        spin_tensor_set_requires_grad(x, true);
        spin_tensor *y;
        spin_scope_begin();
        if (mode == 0) {
            /* block() manages its references itself, as spin_checkpoint expects */
            spin_scope_manual_begin();
            y = block(&c, &x, 1);
            spin_scope_manual_end();
            spin_scope_adopt(y);
        } else
            y = spin_checkpoint(block, &c, sizeof c, 1, &x);
        y = spin_scope_keep(y);
        spin_scope_end();
        assert_int_equal(block_calls, 1);
        spin_tensor *loss = spin_sum_all(spin_sumsq_all(y));
        assert_int_equal(spin_backward(loss), SPIN_OK);
        assert_int_equal(block_calls, mode == 0 ? 1 : 2);
        spin_tensor_read_f32(spin_tensor_grad(x), gx[mode], 25);
        spin_tensor_read_f32(spin_tensor_grad(c.w), gw[mode], 25);
        spin_tensor_release(y);
        spin_scope_end();
    }
    assert_memory_equal(gx[0], gx[1], sizeof gx[0]);
    assert_memory_equal(gw[0], gw[1], sizeof gw[0]);
}

/* The leaf hook reports each leaf once, as soon as its gradient is complete: w3 (read twice) before
 * the recomputed block's w2 (a hidden leaf of the checkpoint node) and w2 before w1, each while the
 * leaves below it have no gradient yet, with the gradient it ends with; unset, nothing is called. */
typedef struct {
    spin_tensor *w[3];
    int order[8], n;
    bool below_empty[3]; /* at its report, the leaves differentiated after it had no gradient */
    float snap[3][25];
    spin_status fail;
} hook_log;

static spin_status log_leaf(void *ctx, spin_tensor *leaf) {
    hook_log *h = ctx;
    assert_true(spin_backward_running());
    int k = 0;
    while (k < 3 && h->w[k] != leaf)
        k++;
    assert_true(k < 3);
    if (h->n < 8)
        h->order[h->n++] = k;
    h->below_empty[k] = true;
    for (int j = 0; j < k; j++)
        h->below_empty[k] &= spin_tensor_grad(h->w[j]) == NULL;
    spin_tensor_read_f32(spin_tensor_grad(leaf), h->snap[k], 25);
    return h->fail;
}

static void test_leaf_hook_reports_finished_gradients(void **state) {
    (void)state;
    int64_t sh[2] = {5, 5};
    hook_log h = {0};
    spin_scope_begin();
    for (int k = 0; k < 3; k++) {
        h.w[k] = spin_rand_normal(cpu, 2, sh, 10 + (uint64_t)k, 0, 0, 0.5f);
        spin_tensor_set_requires_grad(h.w[k], true);
    }
    spin_tensor *x = spin_rand_normal(cpu, 2, sh, 4, 0, 0, 1); /* no grad: never reported */
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 3; k++)
            spin_tensor_zero_grad(h.w[k]);
        h.n = 0;
        h.fail = round == 2 ? SPIN_ERR_IO : SPIN_OK;
        block_ctx c = {h.w[1]};
        spin_tensor *a = spin_silu(spin_matmul(x, h.w[0], false, false));
        spin_scope_begin();
        spin_tensor *y = spin_scope_keep(spin_checkpoint(block, &c, sizeof c, 1, &a));
        spin_scope_end();
        spin_tensor *loss = spin_add(spin_sum_all(spin_sumsq_all(spin_matmul(y, h.w[2], false, false))),
                                     spin_sum_all(spin_matmul(a, h.w[2], false, true)));
        if (round > 0)
            spin_autograd_set_leaf_hook(log_leaf, &h);
        spin_status s = spin_backward(loss);
        spin_autograd_set_leaf_hook(NULL, NULL);
        spin_tensor_release(y);
        assert_false(spin_backward_running());
        if (round == 0) {
            assert_int_equal(s, SPIN_OK);
            assert_int_equal(h.n, 0);
        } else if (round == 1) {
            assert_int_equal(s, SPIN_OK);
            assert_int_equal(h.n, 3);
            assert_true(h.order[0] == 2 && h.order[1] == 1 && h.order[2] == 0);
            for (int k = 0; k < 3; k++) {
                float fin[25];
                spin_tensor_read_f32(spin_tensor_grad(h.w[k]), fin, 25);
                assert_memory_equal(h.snap[k], fin, sizeof fin);
                assert_true(h.below_empty[k]);
            }
        } else {
            assert_int_equal(s, SPIN_ERR_IO); /* the hook's error ends the walk */
            assert_int_equal(h.n, 1);
        }
    }
    spin_scope_end();
}

/* ---- a backend that only knows FILL, COPY and ADD: everything else falls back to the CPU ---- */

static int partial_count(void) {
    return 1;
}
static spin_status partial_open(spin_device *d, int i) {
    (void)i;
    snprintf(d->name, sizeof d->name, "partial:0");
    return SPIN_OK;
}
static bool partial_supports(spin_device *d, spin_kernel k, const spin_dtype *in, int n_in,
                             const spin_dtype *out, int n_out) {
    (void)d, (void)in, (void)n_in, (void)out, (void)n_out;
    return k == SPIN_K_FILL || k == SPIN_K_COPY || k == SPIN_K_ADD;
}
static spin_backend partial;

static void test_fallback_to_cpu(void **state) {
    (void)state;
    const spin_backend *c = spin_cpu_backend();
    partial = *c;
    partial.name = "partial";
    partial.device_count = partial_count;
    partial.device_open = partial_open;
    partial.supports = partial_supports;
    partial.describe = NULL;
    memset(partial.kernels, 0, sizeof partial.kernels);
    partial.kernels[SPIN_K_FILL] = c->kernels[SPIN_K_FILL];
    partial.kernels[SPIN_K_COPY] = c->kernels[SPIN_K_COPY];
    partial.kernels[SPIN_K_ADD] = c->kernels[SPIN_K_ADD];
    assert_int_equal(spin_backend_register(&partial), SPIN_OK);
    spin_device *d = spin_device_from_spec("partial:0");
    assert_non_null(d);
    assert_null(spin_device_from_spec("partial:3"));
    assert_non_null(strstr(spin_last_error(), "1 device"));
    assert_null(spin_device_from_spec("nosuch"));
    /* the message lists the compiled backends (cpu, the build's accelerator, then this one) */
    assert_non_null(strstr(spin_last_error(), "compiled: cpu, "));
    assert_non_null(strstr(spin_last_error(), ", partial"));
    spin_scope_begin();
    int64_t n = 3;
    spin_tensor *a = spin_from_host(d, SPIN_F32, 1, &n, (float[]){1, 2, 3});
    spin_tensor *s = spin_add(a, a);
    assert_int_equal(spin_fallback_total(d), 0);
    spin_tensor *m = spin_mul(s, a); /* MUL is not on the partial device */
    assert_int_equal(d->fallbacks[SPIN_K_MUL], 1);
    float got[3];
    spin_tensor_read_f32(m, got, 3);
    assert_true(got[0] == 2 && got[1] == 8 && got[2] == 18);
    assert_true(spin_tensor_device(m) == d);
    /* tensors on different devices are refused */
    spin_tensor *onc = spin_from_host(cpu, SPIN_F32, 1, &n, (float[]){1, 2, 3});
    assert_null(spin_add(a, onc));
    assert_non_null(strstr(spin_last_error(), "partial:0"));
    spin_scope_end();
}

int main(void) {
    cpu = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_roundtrip),
        cmocka_unit_test(test_rng_is_counter_based),
        cmocka_unit_test(test_views_share_storage),
        cmocka_unit_test(test_scope_releases_everything),
        cmocka_unit_test(test_steady_state_makes_no_raw_allocations),
        cmocka_unit_test(test_grad_accumulates_and_zeroes),
        cmocka_unit_test(test_no_grad_and_detach),
        cmocka_unit_test(test_graph_is_freed_by_backward),
        cmocka_unit_test(test_embedding_padding_idx),
        cmocka_unit_test(test_checkpoint_recompute_matches),
        cmocka_unit_test(test_leaf_hook_reports_finished_gradients),
        cmocka_unit_test(test_fallback_to_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
