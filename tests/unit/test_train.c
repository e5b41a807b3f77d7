/* Autograd end to end: small models built from the ops train for a few dozen steps with SGD and
 * must reach a loss target. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "backends/backends.h"
#include <stdlib.h>

#include "models/tiny_lm.h"
#include "ops/ops.h"
#include "train/sgd.h"

static spin_device *dev;

static float read1(spin_tensor *t) {
    float v = NAN;
    assert_int_equal(spin_tensor_read_f32(t, &v, 1), SPIN_OK);
    return v;
}

static spin_tensor *param(int ndim, const int64_t *shape, uint64_t seed, float std) {
    spin_tensor *p = spin_rand_normal(dev, ndim, shape, seed, 0, 0, std);
    spin_tensor_set_requires_grad(p, true);
    return p;
}

/* A 2-layer MLP regresses y = sin(2 x0) + x1 x2 on 64 points. */
static void test_mlp_learns(void **state) {
    (void)state;
    enum { N = 64, H = 32 };
    float xs[N * 3], ys[N];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < 3; j++)
            xs[i * 3 + j] = (float)(((i * 7 + j * 13) % 17) / 8.5 - 1.0);
        ys[i] = sinf(2 * xs[i * 3]) + xs[i * 3 + 1] * xs[i * 3 + 2];
    }
    spin_tensor *x = spin_from_host(dev, SPIN_F32, 2, (int64_t[]){N, 3}, xs);
    spin_tensor *y = spin_from_host(dev, SPIN_F32, 2, (int64_t[]){N, 1}, ys);
    spin_tensor *w1 = param(2, (int64_t[]){3, H}, 1, 0.6f), *b1 = param(1, (int64_t[]){H}, 2, 0.1f);
    spin_tensor *w2 = param(2, (int64_t[]){H, 1}, 3, 0.3f);
    spin_tensor *ps[3] = {w1, b1, w2};
    float first = 0, last = 0;
    for (int step = 0; step < 200; step++) {
        spin_scope_begin();
        spin_tensor *h = spin_gelu(spin_add(spin_matmul(x, w1, false, false), b1));
        spin_tensor *err = spin_sub(spin_matmul(h, w2, false, false), y);
        spin_tensor *loss = spin_mean_all(spin_mul(err, err));
        assert_int_equal(spin_backward(loss), SPIN_OK);
        last = read1(loss);
        if (step == 0)
            first = last;
        spin_scope_end();
        assert_int_equal(spin_sgd_step(ps, 3, 0.1f), SPIN_OK);
    }
    printf("    mlp: loss %.4f -> %.4f\n", first, last);
    assert_true(last < 0.05f * first);
    for (int i = 0; i < 3; i++)
        spin_tensor_release(ps[i]);
    spin_tensor_release(x);
    spin_tensor_release(y);
}

/* The tiny causal LM (embedding, RMSNorm, RoPE, GQA attention, SwiGLU, tied head) learns to
 * continue two periodic sequences over the same tokens, 1 2 3 1 2 3 .. and 1 3 2 1 3 2 ..: the
 * token after a 1 is only known from earlier context, so the loss can only reach ~0 through
 * attention. */
static const spin_tiny_lm_config tiny_cfg = {.vocab = 11,
                                             .dim = 64,
                                             .n_layers = 2,
                                             .n_heads = 4,
                                             .n_kv_heads = 2,
                                             .head_dim = 4,
                                             .ffn = 32,
                                             .rope_theta = 10000.0f,
                                             .norm_eps = 1e-5f};

enum { B = 2, T = 12 };

static void make_batch(spin_tensor **ids, spin_tensor **targets) {
    static const int pat[B][3] = {{1, 2, 3}, {1, 3, 2}};
    int32_t in[B * T], tg[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            in[b * T + t] = pat[b][t % 3];
            /* position 0 has no context to tell the rows apart: not scored */
            tg[b * T + t] = t == 0 || t == T - 1 ? -100 : pat[b][(t + 1) % 3];
        }
    *ids = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){B, T}, in);
    *targets = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){B * T}, tg);
}

static void test_tiny_transformer_learns(void **state) {
    (void)state;
    spin_tiny_lm m;
    assert_int_equal(spin_tiny_lm_init(&m, dev, &tiny_cfg, 42), SPIN_OK);
    spin_tensor *ids, *tg;
    make_batch(&ids, &tg);
    float first = 0, last = 0;
    for (int step = 0; step < 200; step++) {
        spin_scope_begin();
        spin_tensor *loss = spin_tiny_lm_loss(&m, ids, tg);
        assert_non_null(loss);
        assert_int_equal(spin_backward(loss), SPIN_OK);
        last = read1(loss);
        if (step == 0)
            first = last;
        spin_scope_end();
        assert_int_equal(spin_sgd_step(m.params, m.n_params, 0.5f), SPIN_OK);
    }
    printf("    tiny transformer: loss %.4f -> %.4f (uniform: %.4f)\n", first, last, logf(11));
    assert_true(first > 2.0f);
    assert_true(last < 0.05f);
    spin_tensor_release(ids);
    spin_tensor_release(tg);
    spin_tiny_lm_free(&m);
}

/* Recomputing each block in backward gives bit-identical loss and gradients. */
static void test_recompute_is_exact(void **state) {
    (void)state;
    spin_tensor *ids, *tg;
    make_batch(&ids, &tg);
    float loss[2];
    float *grads[2] = {0};
    int64_t total = 0;
    for (int mode = 0; mode < 2; mode++) {
        spin_tiny_lm_config cfg = tiny_cfg;
        cfg.recompute = mode == 1;
        spin_tiny_lm m;
        assert_int_equal(spin_tiny_lm_init(&m, dev, &cfg, 7), SPIN_OK);
        spin_scope_begin();
        spin_tensor *l = spin_tiny_lm_loss(&m, ids, tg);
        assert_int_equal(spin_backward(l), SPIN_OK);
        loss[mode] = read1(l);
        spin_scope_end();
        total = 0;
        for (int i = 0; i < m.n_params; i++)
            total += spin_tensor_numel(m.params[i]);
        grads[mode] = malloc((size_t)total * sizeof(float));
        int64_t off = 0;
        for (int i = 0; i < m.n_params; i++) {
            int64_t n = spin_tensor_numel(m.params[i]);
            assert_int_equal(spin_tensor_read_f32(spin_tensor_grad(m.params[i]), grads[mode] + off, n),
                             SPIN_OK);
            off += n;
        }
        spin_tiny_lm_free(&m);
    }
    assert_true(loss[0] == loss[1]);
    assert_memory_equal(grads[0], grads[1], (size_t)total * sizeof(float));
    free(grads[0]);
    free(grads[1]);
    spin_tensor_release(ids);
    spin_tensor_release(tg);
}

int main(void) {
    dev = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp_learns),
        cmocka_unit_test(test_tiny_transformer_learns),
        cmocka_unit_test(test_recompute_is_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
