/* The Llama/Mistral model against transformers (golden files from tests/ref/make_llama_golden.py
 * in tests/data/llama/<variant>/): logits, loss and every parameter gradient must match with
 * normalised error ||a - b|| / ||b|| <= 1e-5 (f32). Also: KV-cache decoding gives the full-forward
 * logits, save + load is exact, and config.json errors name the file and key. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "models/llama.h"
#include "models/safetensors.h"
#include "ops/ops.h"

#define TOL 1e-5

static spin_device *dev;
static const char *const variants[] = {"llama_gqa", "llama_tied", "mistral_window", "llama3_rope"};
enum { N_VARIANTS = 4 };

static const char *variant_dir(const char *v) {
    static char buf[1024];
    snprintf(buf, sizeof buf, "%s/llama/%s", SPIN_TEST_DATA, v);
    return buf;
}

static float *read_f32(spin_tensor *t) {
    int64_t n = spin_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    assert_int_equal(spin_tensor_read_f32(t, v, n), SPIN_OK);
    return v;
}

/* ||a - b|| / ||b|| in double. */
static double nerr(spin_tensor *a, spin_tensor *b) {
    assert_int_equal(spin_tensor_numel(a), spin_tensor_numel(b));
    float *x = read_f32(a), *y = read_f32(b);
    double d = 0, n = 0;
    for (int64_t i = 0; i < spin_tensor_numel(a); i++) {
        d += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        n += (double)y[i] * y[i];
    }
    free(x);
    free(y);
    return n > 0 ? sqrt(d / n) : sqrt(d);
}

typedef struct {
    spin_safetensors *g;
    spin_tensor *ids, *labels, *logits, *loss;
    int64_t B, T, V;
} golden;

static void golden_open(const char *v, golden *g) {
    char p[1100];
    snprintf(p, sizeof p, "%s/golden.safetensors", variant_dir(v));
    assert_int_equal(spin_st_open(p, &g->g), SPIN_OK);
    g->ids = spin_st_load(g->g, "input_ids", dev, -1, NULL);
    g->labels = spin_st_load(g->g, "labels", dev, -1, NULL);
    g->logits = spin_st_load(g->g, "logits", dev, -1, NULL);
    g->loss = spin_st_load(g->g, "loss", dev, -1, NULL);
    assert_non_null(g->ids);
    assert_non_null(g->logits);
    g->B = spin_tensor_dim(g->ids, 0);
    g->T = spin_tensor_dim(g->ids, 1);
    g->V = spin_tensor_dim(g->logits, 2);
}

static void golden_close(golden *g) {
    spin_st_close(g->g);
}

static spin_tensor *targets_of(golden *g) {
    int32_t *lab = malloc((size_t)(g->B * g->T) * sizeof *lab),
            *tg = malloc((size_t)(g->B * g->T) * sizeof *tg);
    assert_int_equal(spin_tensor_read(g->labels, lab, (size_t)(g->B * g->T) * sizeof *lab), SPIN_OK);
    spin_llama_shift_labels(lab, g->B, g->T, -100, tg);
    spin_tensor *t = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){g->B * g->T}, tg);
    free(lab);
    free(tg);
    return t;
}

/* Forward + loss + backward against the golden logits, loss and gradients. */
static void check_variant(const char *v, bool recompute) {
    spin_scope_begin();
    spin_llama *m;
    assert_int_equal(spin_llama_load(variant_dir(v), dev, &m), SPIN_OK);
    m->recompute = recompute;
    golden g;
    golden_open(v, &g);
    spin_tensor *h = spin_llama_forward(m, g.ids, NULL, NULL, NULL);
    assert_non_null(h);
    spin_tensor *logits = spin_llama_logits(m, h);
    spin_tensor *ref = spin_reshape(g.logits, 2, (int64_t[]){g.B * g.T, g.V});
    double e_logits = nerr(logits, ref);
    spin_tensor *loss = spin_llama_loss(m, h, targets_of(&g), -100);
    assert_non_null(loss);
    double e_loss = nerr(loss, g.loss);
    assert_int_equal(spin_backward(loss), SPIN_OK);
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < m->n_params; i++) {
        char name[200];
        snprintf(name, sizeof name, "grad.%s", m->names[i]);
        spin_tensor *gr =
            spin_st_load(g.g, name, dev, spin_tensor_ndim(m->params[i]), spin_tensor_shape(m->params[i]));
        assert_non_null(gr);
        assert_non_null(spin_tensor_grad(m->params[i]));
        double e = nerr(spin_tensor_grad(m->params[i]), gr);
        if (e > worst) {
            worst = e;
            worst_name = m->names[i];
        }
    }
    /* every golden gradient has a parameter */
    int n_grads = 0;
    for (int i = 0; i < spin_st_count(g.g); i++)
        n_grads += !strncmp(spin_st_at(g.g, i)->name, "grad.", 5);
    assert_int_equal(n_grads, m->n_params);
    printf("    %-15s%s logits %.2e  loss %.2e  worst grad %.2e (%s)\n", v, recompute ? " (recompute)" : "",
           e_logits, e_loss, worst, worst_name);
    assert_true(e_logits <= TOL);
    assert_true(e_loss <= TOL);
    assert_true(worst <= TOL);
    for (int i = 0; i < m->n_params; i++)
        spin_tensor_zero_grad(m->params[i]);
    golden_close(&g);
    spin_scope_end();
    spin_llama_free(m);
}

static void test_golden_variants(void **state) {
    (void)state;
    for (int i = 0; i < N_VARIANTS; i++)
        check_variant(variants[i], false);
}

static void test_golden_recompute(void **state) {
    (void)state;
    check_variant("mistral_window", true);
}

/* Prefill 7 tokens, then decode the rest one at a time: the logits equal the full forward's. */
static void test_kv_cache_matches_full_forward(void **state) {
    (void)state;
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        spin_scope_begin();
        spin_llama *m;
        assert_int_equal(spin_llama_load(variant_dir(variants[vi]), dev, &m), SPIN_OK);
        golden g;
        golden_open(variants[vi], &g);
        const int64_t B = g.B, T = g.T, V = g.V, P = 7;
        int32_t *ids = malloc((size_t)(B * T) * sizeof *ids);
        assert_int_equal(spin_tensor_read(g.ids, ids, (size_t)(B * T) * sizeof *ids), SPIN_OK);
        spin_no_grad_begin();
        spin_tensor *full = spin_llama_logits(m, spin_llama_forward(m, g.ids, NULL, NULL, NULL));
        spin_llama_cache *cache = spin_llama_cache_new(m, B, T + 3);
        assert_non_null(cache);
        float *got = malloc((size_t)(B * T * V) * sizeof *got);
        int64_t t = 0;
        while (t < T) {
            int64_t n = t == 0 ? P : 1;
            int32_t *chunk = malloc((size_t)(B * n) * sizeof *chunk);
            for (int64_t b = 0; b < B; b++)
                memcpy(chunk + b * n, ids + b * T + t, (size_t)n * sizeof *chunk);
            spin_tensor *ci = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){B, n}, chunk);
            spin_tensor *h = spin_llama_forward(m, ci, NULL, NULL, cache);
            assert_non_null(h);
            float *lg = read_f32(spin_llama_logits(m, h));
            for (int64_t b = 0; b < B; b++)
                memcpy(got + (b * T + t) * V, lg + b * n * V, (size_t)(n * V) * sizeof *got);
            free(lg);
            free(chunk);
            t += n;
        }
        assert_int_equal(cache->len, T);
        spin_tensor *gt = spin_from_host(dev, SPIN_F32, 2, (int64_t[]){B * T, V}, got);
        double e = nerr(gt, full), eg = nerr(gt, spin_reshape(g.logits, 2, (int64_t[]){B * T, V}));
        printf("    %-15s cache vs full forward %.2e, vs transformers %.2e\n", variants[vi], e, eg);
        assert_true(e <= TOL);
        assert_true(eg <= TOL);
        /* a full cache refuses more tokens */
        spin_tensor *more = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){B, 4}, ids);
        assert_null(spin_llama_forward(m, more, NULL, NULL, cache));
        assert_non_null(strstr(spin_last_error(), "do not fit the cache"));
        /* reset: the same prefill again gives the same logits */
        assert_int_equal(spin_llama_cache_reset(cache), SPIN_OK);
        spin_tensor *h2 = spin_llama_forward(m, g.ids, NULL, NULL, cache);
        assert_true(nerr(spin_llama_logits(m, h2), full) <= TOL);
        spin_no_grad_end();
        spin_llama_cache_free(cache);
        free(got);
        free(ids);
        golden_close(&g);
        spin_scope_end();
        spin_llama_free(m);
    }
}

/* Rows of one cache run at different lengths: row 1 finishes, is refilled with a prompt prefilled
 * alone in a batch-1 cache, and both rows keep decoding. Every step's logits equal the full
 * forward of that row's own sequence, so nothing of the old row leaks into the new one. */
static double max_row_err(spin_tensor *lg, int64_t row, spin_tensor *ref, int64_t t) {
    spin_tensor *a = spin_narrow(lg, 0, row, 1), *b = spin_narrow(ref, 0, t, 1);
    return nerr(a, b);
}

static void test_cache_refill(void **state) {
    (void)state;
    const char *vs[2] = {"llama_gqa", "mistral_window"};
    for (int vi = 0; vi < 2; vi++) {
        spin_scope_begin();
        spin_no_grad_begin();
        spin_llama *m;
        assert_int_equal(spin_llama_load(variant_dir(vs[vi]), dev, &m), SPIN_OK);
        enum { L = 11 };
        int32_t seq[3][L];
        spin_tensor *ref[3];
        for (int q = 0; q < 3; q++) {
            for (int t = 0; t < L; t++)
                seq[q][t] = 3 + (q * 31 + t * (7 + q) + t * t) % 90;
            spin_tensor *ids = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){1, L}, seq[q]);
            ref[q] = spin_llama_logits(m, spin_llama_forward(m, ids, NULL, NULL, NULL));
        }
        spin_llama_cache *big = spin_llama_cache_new(m, 2, 16), *one = spin_llama_cache_new(m, 1, 16);
        double worst = 0, e;
        /* prefill rows 0, 1 with A[0:4], B[0:4], then decode two steps */
        int32_t pre[8];
        for (int t = 0; t < 4; t++) {
            pre[t] = seq[0][t];
            pre[4 + t] = seq[1][t];
        }
        spin_tensor *lg = spin_llama_logits(
            m,
            spin_llama_forward(m, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 4}, pre), NULL, NULL, big));
        for (int t = 0; t < 4; t++) {
            e = max_row_err(lg, t, ref[0], t);
            worst = e > worst ? e : worst;
            e = max_row_err(lg, 4 + t, ref[1], t);
            worst = e > worst ? e : worst;
        }
        for (int t = 4; t < 6; t++) {
            int32_t step[2] = {seq[0][t], seq[1][t]};
            lg = spin_llama_logits(
                m, spin_llama_forward(m, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 1}, step), NULL,
                                      NULL, big));
            e = max_row_err(lg, 0, ref[0], t);
            worst = e > worst ? e : worst;
            e = max_row_err(lg, 1, ref[1], t);
            worst = e > worst ? e : worst;
        }
        /* row 1 is done: C's first 3 tokens are prefilled alone and moved into row 1 */
        assert_int_equal(spin_llama_cache_reset_row(big, 1), SPIN_OK);
        lg = spin_llama_logits(
            m, spin_llama_forward(m, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){1, 3}, seq[2]), NULL, NULL,
                                  one));
        assert_int_equal(spin_llama_cache_copy_row(big, 1, one, 0), SPIN_OK);
        assert_int_equal(big->row_len[0], 6);
        assert_int_equal(big->row_len[1], 3);
        assert_int_equal(big->len, 6);
        for (int i = 0; i < 5; i++) {
            int32_t step[2] = {seq[0][6 + i], seq[2][3 + i]};
            lg = spin_llama_logits(
                m, spin_llama_forward(m, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 1}, step), NULL,
                                      NULL, big));
            assert_non_null(lg);
            e = max_row_err(lg, 0, ref[0], 6 + i);
            worst = e > worst ? e : worst;
            e = max_row_err(lg, 1, ref[2], 3 + i);
            worst = e > worst ? e : worst;
        }
        printf("    %-15s refilled cache rows vs full forward: worst %.2e\n", vs[vi], worst);
        assert_true(worst <= TOL);
        spin_llama_cache_free(big);
        spin_llama_cache_free(one);
        spin_no_grad_end();
        spin_scope_end();
        spin_llama_free(m);
    }
}

/* A padded batch: row 1 is row 0 shifted right by 3 pad tokens (key mask 0, positions from the
 * first real token). Its logits at real tokens equal row 0's, with and without the cache. */
static void test_left_padding(void **state) {
    (void)state;
    spin_scope_begin();
    spin_llama *m;
    assert_int_equal(spin_llama_load(variant_dir("llama_gqa"), dev, &m), SPIN_OK);
    enum { T = 10, PAD = 3 };
    int32_t ids[2 * T], pos[2 * T];
    float mask[2 * T];
    for (int t = 0; t < T; t++) {
        ids[t] = 5 + 7 * t % 90;
        pos[t] = t;
        mask[t] = 1;
        ids[T + t] = t < PAD ? 0 : ids[t - PAD];
        pos[T + t] = t < PAD ? 0 : t - PAD;
        mask[T + t] = t < PAD ? 0 : 1;
    }
    spin_no_grad_begin();
    spin_tensor *ti = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, T}, ids);
    spin_tensor *tp = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, T}, pos);
    spin_tensor *tm = spin_from_host(dev, SPIN_F32, 2, (int64_t[]){2, T}, mask);
    spin_tensor *lg = spin_llama_logits(m, spin_llama_forward(m, ti, tp, tm, NULL));
    assert_non_null(lg);
    spin_tensor *a = spin_narrow(lg, 0, 0, T - PAD), *b = spin_narrow(lg, 0, T + PAD, T - PAD);
    double e = nerr(b, a);
    /* the same through the cache: prefill 6 (with padding) then decode one by one */
    spin_llama_cache *c = spin_llama_cache_new(m, 2, T);
    int64_t n0 = 6;
    int32_t ci[2 * 6], cp[2 * 6];
    float cm[2 * 6];
    for (int r = 0; r < 2; r++)
        for (int t = 0; t < n0; t++) {
            ci[r * n0 + t] = ids[r * T + t];
            cp[r * n0 + t] = pos[r * T + t];
            cm[r * n0 + t] = mask[r * T + t];
        }
    spin_tensor *h = spin_llama_forward(m, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, n0}, ci),
                                        spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, n0}, cp),
                                        spin_from_host(dev, SPIN_F32, 2, (int64_t[]){2, n0}, cm), c);
    assert_non_null(h);
    double ec = 0;
    for (int t = (int)n0; t < T; t++) {
        int32_t si[2] = {ids[t], ids[T + t]}, sp[2] = {pos[t], pos[T + t]};
        spin_tensor *hs =
            spin_llama_forward(m, spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 1}, si),
                               spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 1}, sp), NULL, c);
        spin_tensor *ls = spin_llama_logits(m, hs);
        double e1 = nerr(spin_narrow(ls, 0, 1, 1), spin_narrow(lg, 0, T + t, 1));
        ec = e1 > ec ? e1 : ec;
    }
    spin_no_grad_end();
    printf("    padded row vs unpadded %.2e, through the cache %.2e\n", e, ec);
    assert_true(e <= TOL);
    assert_true(ec <= TOL);
    spin_llama_cache_free(c);
    spin_scope_end();
    spin_llama_free(m);
}

/* Save (f32) and load again: identical logits; config and generation config survive; no clobber. */
static void test_save_load(void **state) {
    (void)state;
    char dir[] = "/tmp/spin_test_llama_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char out[200];
    snprintf(out, sizeof out, "%s/saved", dir);
    for (int vi = 0; vi < N_VARIANTS; vi++) {
        spin_scope_begin();
        spin_llama *m, *m2;
        assert_int_equal(spin_llama_load(variant_dir(variants[vi]), dev, &m), SPIN_OK);
        assert_int_equal(spin_llama_save(m, out, vi > 0), SPIN_OK);
        if (vi == 0) {
            assert_int_not_equal(spin_llama_save(m, out, false), SPIN_OK);
            assert_non_null(strstr(spin_last_error(), "already exists"));
        }
        assert_int_equal(spin_llama_load(out, dev, &m2), SPIN_OK);
        assert_int_equal(m2->n_params, m->n_params);
        assert_int_equal(m2->cfg.tie_word_embeddings, m->cfg.tie_word_embeddings);
        assert_int_equal(m2->cfg.sliding_window, m->cfg.sliding_window);
        assert_int_equal(m2->cfg.rope_scaling, m->cfg.rope_scaling);
        assert_int_equal(m2->cfg.head_dim, m->cfg.head_dim);
        assert_int_equal(m2->cfg.n_eos, m->cfg.n_eos);
        assert_true(m2->cfg.rms_norm_eps == m->cfg.rms_norm_eps);
        assert_true(m2->cfg.gen.present && m2->cfg.gen.do_sample && m2->cfg.gen.top_k == 20);
        assert_true(m2->cfg.gen.temperature == 0.7 && m2->cfg.gen.max_new_tokens == 64);
        golden g;
        golden_open(variants[vi], &g);
        spin_no_grad_begin();
        float *a = read_f32(spin_llama_logits(m, spin_llama_forward(m, g.ids, NULL, NULL, NULL)));
        float *b = read_f32(spin_llama_logits(m2, spin_llama_forward(m2, g.ids, NULL, NULL, NULL)));
        spin_no_grad_end();
        assert_memory_equal(a, b, (size_t)(g.B * g.T * g.V) * sizeof(float));
        free(a);
        free(b);
        /* bf16 weights load back within bf16 rounding */
        char bdir[240];
        snprintf(bdir, sizeof bdir, "%s/bf16", dir);
        assert_int_equal(spin_llama_save_as(m, bdir, SPIN_BF16, true), SPIN_OK);
        spin_llama *m3;
        assert_int_equal(spin_llama_load(bdir, dev, &m3), SPIN_OK);
        assert_true(nerr(m3->params[1], m->params[1]) < 4e-3);
        spin_llama_free(m3);
        golden_close(&g);
        spin_scope_end();
        spin_llama_free(m);
        spin_llama_free(m2);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void expect_config_error(const char *json, const char *frag) {
    spin_llama_config c;
    spin_clear_error();
    assert_int_not_equal(spin_llama_config_parse(json, "x/config.json", &c), SPIN_OK);
    printf("    %s\n", spin_last_error());
    assert_non_null(strstr(spin_last_error(), "x/config.json"));
    assert_non_null(strstr(spin_last_error(), frag));
}

#define BASE                                                                                               \
    "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 2, \"num_attention_heads\": " \
    "4, "                                                                                                  \
    "\"vocab_size\": 100"

static void test_config(void **state) {
    (void)state;
    spin_llama_config c;
    assert_int_equal(
        spin_llama_config_parse("{\"architectures\": [\"MistralForCausalLM\"], " BASE
                                ", \"sliding_window\": 4096, \"eos_token_id\": [2, 7], "
                                "\"bos_token_id\": 1, \"pad_token_id\": null, \"rope_scaling\": null}",
                                "x/config.json", &c),
        SPIN_OK);
    assert_true(c.mistral);
    assert_int_equal(c.num_key_value_heads, 4);
    assert_int_equal(c.head_dim, 16);
    assert_int_equal(c.sliding_window, 4096);
    assert_int_equal(c.n_eos, 2);
    assert_int_equal(c.eos_token_ids[1], 7);
    assert_int_equal(c.pad_token_id, -1);
    assert_true(c.rope_theta == 10000.0);
    spin_llama_config_free(&c);
    assert_int_equal(spin_llama_config_parse("{\"architectures\": [\"LlamaForCausalLM\"], " BASE
                                             ", \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 32, "
                                             "\"low_freq_factor\": 1, \"high_freq_factor\": 4, "
                                             "\"original_max_position_embeddings\": 8192}}",
                                             "x/config.json", &c),
                     SPIN_OK);
    assert_int_equal(c.rope_scaling, SPIN_ROPE_SCALING_LLAMA3);
    assert_true(c.rope_factor == 32.0);
    spin_llama_config_free(&c);

    /* the configs of the two models the project targets, as published */
    assert_int_equal(
        spin_llama_config_parse(
            "{\"_name_or_path\": \"mistralai/Mistral-7B-v0.1\", \"architectures\": [\"MistralForCausalLM\"], "
            "\"bos_token_id\": 1, \"eos_token_id\": 2, \"hidden_act\": \"silu\", \"hidden_size\": 4096, "
            "\"initializer_range\": 0.02, \"intermediate_size\": 14336, \"max_position_embeddings\": 32768, "
            "\"model_type\": \"mistral\", \"num_attention_heads\": 32, \"num_hidden_layers\": 32, "
            "\"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
            "\"sliding_window\": 4096, "
            "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"transformers_version\": "
            "\"4.35.0\", "
            "\"use_cache\": false, \"vocab_size\": 32000}",
            "zephyr-7b-sft-full/config.json", &c),
        SPIN_OK);
    assert_true(c.mistral && c.head_dim == 128 && c.num_key_value_heads == 8 && c.sliding_window == 4096);
    assert_string_equal(c.torch_dtype, "bfloat16");
    spin_llama_config_free(&c);
    assert_int_equal(
        spin_llama_config_parse(
            "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": "
            "0.0, "
            "\"bos_token_id\": 1, \"eos_token_id\": 2, \"hidden_act\": \"silu\", \"hidden_size\": 576, "
            "\"initializer_range\": 0.041666666666666664, \"intermediate_size\": 1536, \"is_llama_config\": "
            "true, "
            "\"max_position_embeddings\": 8192, \"mlp_bias\": false, \"model_type\": \"llama\", "
            "\"num_attention_heads\": 9, \"num_hidden_layers\": 30, \"num_key_value_heads\": 3, "
            "\"pad_token_id\": 2, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, \"rope_interleaved\": "
            "false, "
            "\"rope_scaling\": null, \"rope_theta\": 100000, \"tie_word_embeddings\": true, "
            "\"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.42.3\", \"use_cache\": true, "
            "\"vocab_size\": 49152}",
            "SmolLM2-135M-Instruct/config.json", &c),
        SPIN_OK);
    assert_true(!c.mistral && c.head_dim == 64 && c.num_key_value_heads == 3 && c.tie_word_embeddings);
    assert_true(c.rope_theta == 100000.0 && c.sliding_window == 0 && c.pad_token_id == 2);
    spin_llama_config_free(&c);

    expect_config_error("{\"architectures\": [\"GPT2LMHeadModel\"], " BASE "}", "GPT2LMHeadModel");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"hidden_act\": \"gelu\"}",
                        "hidden_act");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"attention_bias\": true}",
                        "attention_bias");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"mlp_bias\": true}",
                        "mlp_bias");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE
                        ", \"rope_scaling\": {\"type\": \"linear\", \"factor\": 2}}",
                        "rope_scaling");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE
                        ", \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8}}",
                        "low_freq_factor");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 64}",
                        "intermediate_size");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"num_key_value_heads\": 3}",
                        "num_key_value_heads");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"rms_norm_eps\": \"small\"}",
                        "rms_norm_eps");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE ", \"eos_token_id\": \"</s>\"}",
                        "eos_token_id");
    expect_config_error("{\"architectures\": [\"LlamaForCausalLM\"], " BASE, "JSON");

    spin_generation_config g;
    assert_int_equal(spin_generation_config_parse("{\"eos_token_id\": [2, 32000], \"temperature\": 0.6, "
                                                  "\"do_sample\": true}",
                                                  "x/generation_config.json", &g),
                     SPIN_OK);
    assert_true(g.present && g.do_sample && g.temperature == 0.6 && g.top_k == 50 && g.top_p == 1.0);
    assert_int_equal(g.n_eos, 2);
    assert_int_equal(g.eos_token_ids[1], 32000);
    assert_int_not_equal(spin_generation_config_parse("{\"top_k\": 1.5}", "x/generation_config.json", &g),
                         SPIN_OK);
    assert_non_null(strstr(spin_last_error(), "top_k"));
}

/* A checkpoint that does not fit the config is an error naming the file and tensor. */
static void test_load_errors(void **state) {
    (void)state;
    char dir[] = "/tmp/spin_test_llama_XXXXXX";
    assert_non_null(mkdtemp(dir));
    spin_scope_begin();
    spin_llama *m;
    assert_int_equal(spin_llama_load(variant_dir("llama_gqa"), dev, &m), SPIN_OK);
    assert_int_equal(spin_llama_save(m, dir, false), SPIN_OK);
    char st[300];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    /* drop the last layer's down projection */
    const char *names[64];
    spin_tensor *ts[64];
    int n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->names[i], "model.layers.1.mlp.down_proj.weight")) {
            names[n] = m->names[i];
            ts[n++] = m->params[i];
        }
    assert_int_equal(spin_st_save(st, n, names, ts, SPIN_F32, true), SPIN_OK);
    spin_llama *bad = NULL;
    assert_int_not_equal(spin_llama_load(dir, dev, &bad), SPIN_OK);
    assert_null(bad);
    printf("    %s\n", spin_last_error());
    assert_non_null(strstr(spin_last_error(), "missing tensor 'model.layers.1.mlp.down_proj.weight'"));
    /* a transposed projection */
    for (int i = 0; i < m->n_params; i++) {
        names[i] = m->names[i];
        ts[i] = !strcmp(m->names[i], "model.layers.0.self_attn.k_proj.weight")
                    ? spin_transpose(m->params[i], 0, 1)
                    : m->params[i];
    }
    assert_int_equal(spin_st_save(st, m->n_params, names, ts, SPIN_F32, true), SPIN_OK);
    assert_int_not_equal(spin_llama_load(dir, dev, &bad), SPIN_OK);
    printf("    %s\n", spin_last_error());
    assert_non_null(strstr(spin_last_error(), "'model.layers.0.self_attn.k_proj.weight' has shape [32, 16]"));
    assert_non_null(strstr(spin_last_error(), st));
    /* an unexpected tensor (a bias the config does not have) */
    for (int i = 0; i < m->n_params; i++)
        ts[i] = m->params[i];
    names[m->n_params] = "model.layers.0.self_attn.q_proj.bias";
    ts[m->n_params] = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){32});
    assert_int_equal(spin_st_save(st, m->n_params + 1, names, ts, SPIN_F32, true), SPIN_OK);
    assert_int_not_equal(spin_llama_load(dir, dev, &bad), SPIN_OK);
    printf("    %s\n", spin_last_error());
    assert_non_null(strstr(spin_last_error(), "unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"));
    spin_scope_end();
    spin_llama_free(m);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A randomly initialised model trains: the loss falls over a few SGD steps. */
static void test_init_and_train(void **state) {
    (void)state;
    spin_llama_config cfg;
    assert_int_equal(
        spin_llama_config_parse("{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": 32, "
                                "\"intermediate_size\": 64, \"num_hidden_layers\": 2, "
                                "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                                "\"vocab_size\": 16, \"tie_word_embeddings\": true}",
                                "inline", &cfg),
        SPIN_OK);
    spin_llama *m;
    assert_int_equal(spin_llama_init(&cfg, dev, 3, &m), SPIN_OK);
    spin_llama_config_free(&cfg);
    int32_t ids[2 * 8], tg[2 * 8];
    for (int i = 0; i < 16; i++)
        ids[i] = (i * 5) % 16;
    spin_llama_shift_labels(ids, 2, 8, -100, tg);
    spin_tensor *ti = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 8}, ids);
    spin_tensor *tt = spin_from_host(dev, SPIN_I32, 1, (int64_t[]){16}, tg);
    float first = 0, last = 0;
    for (int step = 0; step < 30; step++) {
        spin_scope_begin();
        spin_tensor *loss = spin_llama_loss(m, spin_llama_forward(m, ti, NULL, NULL, NULL), tt, -100);
        assert_int_equal(spin_backward(loss), SPIN_OK);
        assert_int_equal(spin_tensor_read_f32(loss, &last, 1), SPIN_OK);
        if (step == 0)
            first = last;
        spin_scope_end();
        spin_no_grad_begin();
        for (int i = 0; i < m->n_params; i++) {
            spin_scope_begin();
            spin_tensor *upd = spin_add(m->params[i], spin_scale(spin_tensor_grad(m->params[i]), -0.5f));
            assert_int_equal(spin_copy_into(m->params[i], upd), SPIN_OK);
            spin_scope_end();
            spin_tensor_zero_grad(m->params[i]);
        }
        spin_no_grad_end();
    }
    printf("    random init: loss %.4f -> %.4f\n", first, last);
    assert_true(last < 0.5f * first);
    spin_tensor_release(ti);
    spin_tensor_release(tt);
    spin_llama_free(m);
}

/* Every test released what it made: models, caches, activations. */
static int64_t live_at_start;
static void test_no_leaks(void **state) {
    (void)state;
    assert_int_equal(spin_tensor_live_count(), live_at_start);
}

int main(void) {
    dev = spin_init();
    live_at_start = spin_tensor_live_count();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_variants),
        cmocka_unit_test(test_golden_recompute),
        cmocka_unit_test(test_kv_cache_matches_full_forward),
        cmocka_unit_test(test_left_padding),
        cmocka_unit_test(test_cache_refill),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_init_and_train),
        cmocka_unit_test(test_no_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
