/* tokenizer.json -> GGUF tokenizer.ggml.* (spin_tokenizer_to_gguf) -> spin_tokenizer_from_gguf gives
 * the ids of the original tokenizer.json on the tokenizer corpus, with and without special tokens:
 * exactly, for every string that holds no added token whose lstrip/rstrip/single_word/normalized flags
 * GGUF cannot store (counted and reported). Tiny tokenizers of tests/data/tokenizer and the real GPT-2,
 * Llama 2 and Mistral ones of ../shared (SKIPPED with the path when absent); pipelines llama.cpp cannot
 * name are errors naming the file; spin_llama_save_gguf converts the source directory's tokenizer. */
#define _POSIX_C_SOURCE 200809L
#include <json-c/json.h>
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
#include "models/gguf.h"
#include "models/llama.h"
#include "models/tokenizer.h"
#include "ops/ops.h"

#define DATA SPIN_TEST_DATA "/tokenizer"
#define SHARED_TOK SPIN_SHARED_DIR "/data/tokenizers"

static json_object *corpus;
static spin_device *dev;
static char tmpdir[] = "/tmp/spin_gguf_vocab_XXXXXX";

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Writes the converted vocabulary of tokenizer `path` to a metadata-only GGUF; SPIN_OK or the error. */
static spin_status to_gguf(const char *path, const char *out) {
    spin_gguf_writer *w = spin_gguf_writer_new();
    assert_int_equal(spin_gguf_writer_set_string(w, "general.architecture", "llama"), SPIN_OK);
    spin_status s = spin_tokenizer_to_gguf(path, 0, w);
    if (s == SPIN_OK)
        s = spin_gguf_writer_write(w, out, true);
    spin_gguf_writer_free(w);
    return s;
}

static bool same_ids(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

/* Added tokens whose flags GGUF cannot carry (lstrip, rstrip, single_word, normalized and not special). */
static int flagged_tokens(const char *path, char ***out) {
    json_object *root = json_object_from_file(path), *added = json_object_object_get(root, "added_tokens");
    int n = 0;
    *out = calloc(json_object_array_length(added) + 1, sizeof **out);
    for (size_t i = 0; i < json_object_array_length(added); i++) {
        json_object *a = json_object_array_get_idx(added, i);
        bool special = json_object_get_boolean(json_object_object_get(a, "special"));
        bool f = json_object_get_boolean(json_object_object_get(a, "lstrip")) ||
                 json_object_get_boolean(json_object_object_get(a, "rstrip")) ||
                 json_object_get_boolean(json_object_object_get(a, "single_word")) ||
                 (!special && json_object_get_boolean(json_object_object_get(a, "normalized")));
        if (f)
            (*out)[n++] = strdup(json_object_get_string(json_object_object_get(a, "content")));
    }
    json_object_put(root);
    return n;
}

/* Converts `path`, loads the GGUF back and compares with the tokenizer.json on the corpus. */
/* exact: every such string must match (else the differences are counted and reported). */
static void check_parity(const char *name, const char *path, const char *model, const char *pre,
                         bool exact_req) {
    char out[256];
    snprintf(out, sizeof out, "%s/%s.gguf", tmpdir, name);
    spin_status s = to_gguf(path, out);
    if (s != SPIN_OK)
        print_error("%s\n", spin_last_error());
    assert_int_equal(s, SPIN_OK);
    /* the keys llama.cpp reads */
    spin_gguf *g = spin_gguf_open(out);
    assert_non_null(g);
    spin_gguf_vocab v;
    assert_int_equal(spin_gguf_vocab_read(g, &v), SPIN_OK);
    assert_string_equal(v.model, model);
    if (pre)
        assert_string_equal(v.pre, pre);
    else
        assert_null(v.pre);
    assert_true((v.scores != NULL) == !strcmp(model, "llama"));
    assert_true((v.merges != NULL) == !strcmp(model, "gpt2"));
    assert_non_null(v.token_type);
    spin_tokenizer *orig = spin_tokenizer_load(path), *back = spin_tokenizer_load(out);
    if (!back)
        print_error("%s\n", spin_last_error());
    assert_non_null(orig);
    assert_non_null(back);
    assert_int_equal(spin_tokenizer_vocab_size(back), v.n_tokens);
    assert_int_equal(spin_tokenizer_vocab_size(orig), v.n_tokens);
    for (int32_t i = 0; i < v.n_tokens; i++) {
        const char *a = spin_tokenizer_id_to_token(orig, i);
        assert_string_equal(a, v.tokens[i].s);
        if (v.token_type[i] == 3)
            assert_true(spin_tokenizer_is_special(orig, i));
    }
    assert_int_equal(spin_tokenizer_bos_id(back), spin_tokenizer_bos_id(orig));
    assert_int_equal(spin_tokenizer_eos_id(back), spin_tokenizer_eos_id(orig));
    spin_gguf_vocab_free(&v);
    spin_gguf_close(g);

    char **flagged;
    int nf = flagged_tokens(path, &flagged);
    int exact = 0, skipped = 0, decoded = 0, differ = 0;
    size_t nc = json_object_array_length(corpus);
    for (size_t i = 0; i < nc; i++) {
        json_object *t = json_object_array_get_idx(corpus, i);
        const char *text = json_object_get_string(t);
        size_t len = (size_t)json_object_get_string_len(t);
        bool skip = false;
        for (int k = 0; k < nf; k++)
            skip = skip || strstr(text, flagged[k]);
        if (skip) {
            skipped++;
            continue;
        }
        bool same = true;
        for (int special = 0; special < 2; special++) {
            int32_t *a, *b;
            size_t na, nb;
            assert_int_equal(spin_tokenizer_encode(orig, text, len, special, &a, &na), SPIN_OK);
            assert_int_equal(spin_tokenizer_encode(back, text, len, special, &b, &nb), SPIN_OK);
            same = same && same_ids(a, na, b, nb);
            if ((exact_req || getenv("SPIN_TEST_VERBOSE")) && !same_ids(a, na, b, nb)) {
                json_object *js = json_object_new_string(text);
                print_error(
                    "%s: string %zu %s (add_special %d): %zu ids from tokenizer.json, %zu from GGUF\n", name,
                    i, json_object_to_json_string(js), special, na, nb);
                json_object_put(js);
            }
            assert_true(!exact_req || same_ids(a, na, b, nb));
            if (special) {
                char *da, *db;
                assert_int_equal(spin_tokenizer_decode(orig, a, na, false, &da, NULL), SPIN_OK);
                assert_int_equal(spin_tokenizer_decode(back, a, na, false, &db, NULL), SPIN_OK);
                decoded += !strcmp(da, db);
                free(da);
                free(db);
            }
            free(a);
            free(b);
        }
        exact += same;
        differ += !same;
    }
    printf("%-16s -> GGUF %s/%s: %d of %zu strings exact with and without special tokens (%d left out: "
           "added tokens with flags GGUF cannot store), %d differ; decode equal on %d\n",
           name, model, pre ? pre : "-", exact, nc, skipped, differ, decoded);
    for (int k = 0; k < nf; k++)
        free(flagged[k]);
    free(flagged);
    spin_tokenizer_free(orig);
    spin_tokenizer_free(back);
    unlink(out);
}

static void test_tiny(void **state) {
    (void)state;
    check_parity("tiny-bytelevel", DATA "/tiny-bytelevel.json", "gpt2", "smollm", true);
    check_parity("tiny-llama3", DATA "/tiny-llama3.json", "gpt2", "llama-bpe", true);
    check_parity("tiny-sp", DATA "/tiny-sp.json", "llama", NULL, false);
    check_parity("tiny-sp-always", DATA "/tiny-sp-always.json", "llama", NULL, false);
}

static void test_real(void **state) {
    (void)state;
    static const char *const names[] = {"gpt2", "llama2", "mistral"};
    static const char *const models[] = {"gpt2", "llama", "llama"};
    static const char *const pres[] = {"gpt-2", NULL, NULL};
    for (int k = 0; k < 3; k++) {
        char p[512];
        snprintf(p, sizeof p, SHARED_TOK "/%s-tokenizer.json", names[k]);
        if (!exists(p)) {
            printf("SKIPPED %s: %s is absent\n", names[k], p);
            continue;
        }
        check_parity(names[k], p, models[k], pres[k], true);
    }
}

static void test_unsupported(void **state) {
    (void)state;
    static const char *const names[] = {"tiny-split-removed",    "tiny-split-prev", "tiny-split-next-invert",
                                        "tiny-split-contiguous", "tiny-suffix",     "tiny-prefix",
                                        "tiny-sp-normalizer"};
    for (int k = 0; k < 7; k++) {
        char p[512], out[256];
        snprintf(p, sizeof p, DATA "/%s.json", names[k]);
        snprintf(out, sizeof out, "%s/bad.gguf", tmpdir);
        assert_int_not_equal(to_gguf(p, out), SPIN_OK);
        assert_non_null(strstr(spin_last_error(), p));
        assert_false(exists(out));
    }
    assert_int_not_equal(to_gguf(DATA "/nonexistent.json", tmpdir), SPIN_OK);
    assert_non_null(strstr(spin_last_error(), "nonexistent.json"));
}

static void copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        assert_int_equal(fwrite(buf, 1, n, b), n);
    fclose(a);
    fclose(b);
}

/* A model directory with tokenizer.json + tokenizer_config.json saved as GGUF carries the vocabulary;
 * a tokenizer with more ids than the model's vocab_size is an error. */
static void test_save_gguf_converts(void **state) {
    (void)state;
    char dir[300], p[400], out[300];
    snprintf(dir, sizeof dir, "%s/model", tmpdir);
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    copy_file(DATA "/tiny-bytelevel.json", p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"bos_token\": \"<|im_start|>\", \"eos_token\": {\"content\": \"<|im_end|>\"}, \"pad_token\": "
          "\"<|endoftext|>\", \"add_bos_token\": false, \"chat_template\": \"{% for m in messages %}{{ "
          "m['content'] }}{% endfor %}\"}",
          f);
    fclose(f);

    spin_scope_begin();
    spin_no_grad_begin();
    spin_llama *m = NULL;
    spin_llama_config cfg;
    assert_int_equal(spin_llama_config_load(SPIN_TEST_DATA "/llama/llama_gqa", &cfg), SPIN_OK);
    snprintf(out, sizeof out, "%s/model.gguf", tmpdir);
    /* vocab_size 97 < 803 ids */
    assert_int_equal(spin_llama_load(SPIN_TEST_DATA "/llama/llama_gqa", dev, &m), SPIN_OK);
    free(m->source);
    m->source = strdup(dir);
    assert_int_not_equal(spin_llama_save_gguf(m, out, SPIN_GGML_F32, true), SPIN_OK);
    assert_non_null(strstr(spin_last_error(), "vocab_size"));
    spin_llama_free(m);
    /* vocab_size 810: 803 ids + 7 [PADn] */
    cfg.vocab_size = 810;
    assert_int_equal(spin_llama_init(&cfg, dev, 1, &m), SPIN_OK);
    spin_llama_config_free(&cfg);
    m->source = strdup(dir);
    assert_int_equal(spin_llama_save_gguf(m, out, SPIN_GGML_F32, true), SPIN_OK);
    spin_llama_free(m);
    spin_gguf *g = spin_gguf_open(out);
    assert_non_null(g);
    spin_gguf_vocab v;
    assert_int_equal(spin_gguf_vocab_read(g, &v), SPIN_OK);
    assert_int_equal(v.n_tokens, 810);
    assert_string_equal(v.tokens[809].s, "[PAD809]");
    assert_int_equal(v.token_type[809], 5);
    assert_int_equal(v.bos_id, 1);
    assert_int_equal(v.eos_id, 2);
    assert_int_equal(v.pad_id, 0);
    assert_int_equal(v.add_bos, 0);
    assert_non_null(v.chat_template);
    assert_non_null(strstr(v.chat_template, "m['content']"));
    spin_gguf_vocab_free(&v);
    spin_gguf_close(g);
    assert_int_equal(spin_llama_load(out, dev, &m), SPIN_OK);
    assert_int_equal(m->cfg.vocab_size, 810);
    spin_llama_free(m);
    spin_tokenizer *tok = spin_tokenizer_load(out);
    assert_non_null(tok);
    int32_t *ids;
    size_t n;
    assert_int_equal(spin_tokenizer_encode(tok, "Hello 123 world", 15, false, &ids, &n), SPIN_OK);
    assert_true(n > 3);
    free(ids);
    spin_tokenizer_free(tok);
    spin_no_grad_end();
    spin_scope_end();
    unlink(out);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    unlink(p);
    rmdir(dir);
}

int main(void) {
    corpus = json_object_from_file(DATA "/corpus.json");
    if (!corpus || !mkdtemp(tmpdir))
        return 1;
    dev = spin_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny),
        cmocka_unit_test(test_real),
        cmocka_unit_test(test_unsupported),
        cmocka_unit_test(test_save_gguf_converts),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_object_put(corpus);
    rmdir(tmpdir);
    return rc;
}
