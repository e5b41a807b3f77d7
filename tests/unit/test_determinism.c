/* Results do not depend on the thread count: a tiny LM's loss and every parameter gradient are
 * bit-identical with 1, 2 and 3 OpenMP threads (attention with GQA, embedding scatter-add, norm
 * weight gradients and the chunked cross-entropy all reduce across rows). */
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "models/tiny_lm.h"

static spin_device *dev;

/* Loss followed by all gradients, flattened; caller frees. */
static float *run(int threads, int64_t *n_out) {
    omp_set_num_threads(threads);
    spin_tiny_lm_config cfg = {.vocab = 301,
                               .dim = 64,
                               .n_layers = 2,
                               .n_heads = 6,
                               .n_kv_heads = 2,
                               .head_dim = 8,
                               .ffn = 96,
                               .rope_theta = 10000.0f,
                               .norm_eps = 1e-5f};
    spin_tiny_lm m;
    assert_int_equal(spin_tiny_lm_init(&m, dev, &cfg, 5), SPIN_OK);
    enum { B = 3, T = 64 };
    int32_t ids[B * T], tg[B * T];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (i * 7 + i / 5) % 301;
        tg[i] = i % 9 == 4 ? -100 : (i * 11 + 3) % 301;
    }
    int64_t total = 1;
    for (int i = 0; i < m.n_params; i++)
        total += spin_tensor_numel(m.params[i]);
    float *out = malloc((size_t)total * sizeof *out);
    spin_scope_begin();
    spin_tensor *tid = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){B, T}, ids);
    spin_tensor *ttg = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){B * T}, tg);
    spin_tensor *loss = spin_tiny_lm_loss(&m, tid, ttg);
    assert_int_equal(spin_backward(loss), SPIN_OK);
    assert_int_equal(spin_tensor_read_f32(loss, out, 1), SPIN_OK);
    spin_scope_end();
    int64_t off = 1;
    for (int i = 0; i < m.n_params; i++) {
        int64_t n = spin_tensor_numel(m.params[i]);
        assert_int_equal(spin_tensor_read_f32(spin_tensor_grad(m.params[i]), out + off, n), SPIN_OK);
        off += n;
    }
    spin_tiny_lm_free(&m);
    *n_out = total;
    return out;
}

static void test_same_bits_for_any_thread_count(void **state) {
    (void)state;
    int saved = omp_get_max_threads();
    int64_t n1, n2, n3;
    float *a = run(1, &n1), *b = run(2, &n2), *c = run(3, &n3);
    omp_set_num_threads(saved);
    assert_int_equal(n1, n2);
    assert_int_equal(n1, n3);
    assert_memory_equal(a, b, (size_t)n1 * sizeof *a);
    assert_memory_equal(a, c, (size_t)n1 * sizeof *a);
    free(a);
    free(b);
    free(c);
}

int main(void) {
    dev = spin_init();
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_same_bits_for_any_thread_count)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
