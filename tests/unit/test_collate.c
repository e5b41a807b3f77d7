/* Token rows and batches against tests/data/train/collate_golden.json, which
 * tests/ref/make_collate_golden.py builds by re-implementing uclaml/SPIN's collator
 * (DataCollatorWithPadding, TRL-0.7.4's decoder-only path) and SPINTrainer.concatenated_inputs in
 * Python with torch and the `tokenizers` library. Everything here is integers (and 0/1 masks), so
 * every comparison is exact equality.
 *
 *   - batches: the golden token rows of each example, collated in C, must give the golden ids,
 *     attention mask, labels and response counts (no tokenizer needed);
 *   - hashes: FNV-1a of the golden rows, computed independently in Python;
 *   - tokenisation: the fixture files read by spin_pref_data_read and tokenised by
 *     spin_collate_tokenize with the committed tiny SentencePiece tokenizer and, when ../shared is
 *     present, the real Mistral/zephyr tokenizer.json (SKIPPED with the path otherwise), must give
 *     the golden rows; then the whole pipeline's batches must match too;
 *   - option and argument errors. */
#include <json-c/json.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "train/collate.h"

#define TRAIN_DATA SPIN_TEST_DATA "/train"

static json_object *golden;

static json_object *get(json_object *o, const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        fail_msg("fixture: missing key \"%s\"", key);
    return v;
}

static const char *str(json_object *o, const char *key) {
    return json_object_get_string(get(o, key));
}

static int setup(void **state) {
    (void)state;
    golden = json_object_from_file(TRAIN_DATA "/collate_golden.json");
    if (!golden)
        print_error("cannot read %s: %s\n", TRAIN_DATA "/collate_golden.json", json_util_get_last_err());
    return golden ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    json_object_put(golden);
    return 0;
}

static spin_collate_opts opts_named(const char *name) {
    json_object *all = get(golden, "opts");
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *o = json_object_array_get_idx(all, i);
        if (!strcmp(str(o, "name"), name))
            return (spin_collate_opts){.max_length = json_object_get_int64(get(o, "max_length")),
                                       .max_prompt_length =
                                           json_object_get_int64(get(o, "max_prompt_length")),
                                       .keep_start = json_object_get_boolean(get(o, "keep_start")),
                                       .eos_id = 2, /* "</s>" in both tokenizers (checked by the script) */
                                       .pad_id = (int32_t)json_object_get_int(get(o, "pad_id"))};
    }
    fail_msg("fixture: no options \"%s\"", name);
    return (spin_collate_opts){0};
}

/* The golden "tokens" entry for (tokenizer, file, opts). */
static json_object *token_rows(const char *tok, const char *file, const char *opts) {
    json_object *all = get(golden, "tokens");
    for (size_t i = 0; i < json_object_array_length(all); i++) {
        json_object *t = json_object_array_get_idx(all, i);
        if (!strcmp(str(t, "tokenizer"), tok) && !strcmp(str(t, "file"), file) &&
            !strcmp(str(t, "opts"), opts))
            return get(t, "rows");
    }
    fail_msg("fixture: no token rows for %s / %s / %s", tok, file, opts);
    return NULL;
}

static int64_t read_ints(json_object *arr, int32_t **ids) {
    size_t n = json_object_array_length(arr);
    *ids = malloc((n ? n : 1) * sizeof **ids);
    assert_non_null(*ids);
    for (size_t i = 0; i < n; i++)
        (*ids)[i] = json_object_get_int(json_object_array_get_idx(arr, i));
    return (int64_t)n;
}

static int64_t read_bits(json_object *arr, uint8_t **bits) {
    size_t n = json_object_array_length(arr);
    *bits = malloc(n ? n : 1);
    assert_non_null(*bits);
    for (size_t i = 0; i < n; i++)
        (*bits)[i] = (uint8_t)json_object_get_int(json_object_array_get_idx(arr, i));
    return (int64_t)n;
}

/* spin_pref_tokens built from a golden row (not by the code under test). */
static spin_pref_tokens tokens_from_golden(json_object *row) {
    spin_pref_tokens t = {0};
    t.n_prompt = read_ints(get(row, "prompt"), &t.prompt);
    t.n_chosen = read_ints(get(row, "chosen"), &t.chosen);
    t.n_rejected = read_ints(get(row, "rejected"), &t.rejected);
    assert_int_equal(read_bits(get(row, "prompt_attn"), &t.prompt_attn), t.n_prompt);
    assert_int_equal(read_bits(get(row, "chosen_attn"), &t.chosen_attn), t.n_chosen);
    assert_int_equal(read_bits(get(row, "rejected_attn"), &t.rejected_attn), t.n_rejected);
    return t;
}

static void ints_equal(const char *what, const int32_t *got, int64_t n, json_object *want) {
    assert_int_equal(n, (int64_t)json_object_array_length(want));
    for (int64_t i = 0; i < n; i++) {
        int w = json_object_get_int(json_object_array_get_idx(want, (size_t)i));
        if (got[i] != w)
            fail_msg("%s: position %lld is %d, want %d", what, (long long)i, (int)got[i], w);
    }
}

static void bits_equal(const char *what, const uint8_t *got, int64_t n, json_object *want) {
    assert_int_equal(n, (int64_t)json_object_array_length(want));
    for (int64_t i = 0; i < n; i++) {
        int w = json_object_get_int(json_object_array_get_idx(want, (size_t)i));
        if (got[i] != w)
            fail_msg("%s: position %lld is %d, want %d", what, (long long)i, (int)got[i], w);
    }
}

static void hash_equal(const spin_pref_tokens *t, json_object *row) {
    char got[17];
    snprintf(got, sizeof got, "%016llx", (unsigned long long)spin_pref_tokens_hash(t));
    assert_string_equal(got, str(row, "hash"));
}

/* Compares a C batch with one golden batch entry; every value is an integer or 0/1, so exactly. */
static void batch_equal(const spin_collated *c, json_object *want, const char *label) {
    int64_t b = (int64_t)json_object_array_length(get(want, "examples"));
    assert_int_equal(c->batch, b);
    assert_int_equal(c->len, json_object_get_int64(get(want, "len")));
    json_object *ids = get(want, "ids"), *mask = get(want, "key_mask"), *labels = get(want, "labels"),
                *n_resp = get(want, "n_response");
    assert_int_equal(json_object_array_length(ids), (size_t)(2 * b));
    for (int64_t r = 0; r < 2 * b; r++) {
        char what[256];
        snprintf(what, sizeof what, "%s row %lld ids", label, (long long)r);
        ints_equal(what, c->ids + r * c->len, c->len, json_object_array_get_idx(ids, (size_t)r));
        snprintf(what, sizeof what, "%s row %lld labels", label, (long long)r);
        ints_equal(what, c->labels + r * c->len, c->len, json_object_array_get_idx(labels, (size_t)r));
        json_object *m = json_object_array_get_idx(mask, (size_t)r);
        for (int64_t t = 0; t < c->len; t++) {
            float w = (float)json_object_get_int(json_object_array_get_idx(m, (size_t)t));
            if (c->key_mask[r * c->len + t] != w)
                fail_msg("%s row %lld key_mask[%lld] is %g, want %g", label, (long long)r, (long long)t,
                         (double)c->key_mask[r * c->len + t], (double)w);
        }
        assert_true(c->n_response[r] ==
                    (float)json_object_get_int(json_object_array_get_idx(n_resp, (size_t)r)));
    }
}

/* Collates `rows` (one per example, indexed by the batch's "examples") and compares. */
static void check_batch(spin_pref_tokens *rows, json_object *batch, const spin_collate_opts *o,
                        const char *label) {
    json_object *idx = get(batch, "examples");
    int64_t b = (int64_t)json_object_array_length(idx);
    const spin_pref_tokens *ptrs[16];
    assert_true(b <= 16);
    for (int64_t i = 0; i < b; i++)
        ptrs[i] = &rows[json_object_get_int(json_object_array_get_idx(idx, (size_t)i))];
    spin_collated c;
    assert_int_equal(spin_collate_batch(ptrs, b, o, &c), SPIN_OK);
    batch_equal(&c, batch, label);
    spin_collated_free(&c);
    assert_null(c.ids);
}

static void test_batches_from_golden_rows(void **state) {
    (void)state;
    json_object *batches = get(golden, "batches");
    int checked = 0;
    for (size_t k = 0; k < json_object_array_length(batches); k++) {
        json_object *batch = json_object_array_get_idx(batches, k);
        json_object *rows = token_rows(str(batch, "tokenizer"), str(batch, "file"), str(batch, "opts"));
        spin_collate_opts o = opts_named(str(batch, "opts"));
        int64_t n = (int64_t)json_object_array_length(rows);
        spin_pref_tokens *t = calloc((size_t)n, sizeof *t);
        assert_non_null(t);
        for (int64_t i = 0; i < n; i++)
            t[i] = tokens_from_golden(json_object_array_get_idx(rows, (size_t)i));
        char label[256];
        snprintf(label, sizeof label, "%s/%s/%s batch %zu", str(batch, "tokenizer"), str(batch, "file"),
                 str(batch, "opts"), k);
        check_batch(t, batch, &o, label);
        for (int64_t i = 0; i < n; i++)
            spin_pref_tokens_free(&t[i]);
        free(t);
        checked++;
    }
    assert_int_equal(checked, 30);
}

static void test_hash_of_golden_rows(void **state) {
    (void)state;
    json_object *all = get(golden, "tokens");
    int checked = 0;
    for (size_t k = 0; k < json_object_array_length(all); k++) {
        json_object *rows = get(json_object_array_get_idx(all, k), "rows");
        for (size_t i = 0; i < json_object_array_length(rows); i++) {
            json_object *row = json_object_array_get_idx(rows, i);
            spin_pref_tokens t = tokens_from_golden(row);
            hash_equal(&t, row);
            /* any change to the rows changes the hash: flip one attention bit */
            uint64_t h = spin_pref_tokens_hash(&t);
            t.chosen_attn[0] ^= 1;
            assert_true(spin_pref_tokens_hash(&t) != h);
            spin_pref_tokens_free(&t);
            checked++;
        }
    }
    assert_int_equal(checked, 102);
}

/* The hash of one hand-written serialisation (pins the byte layout documented in collate.h). */
static void test_hash_definition(void **state) {
    (void)state;
    int32_t p = 1;
    uint8_t bit = 1;
    spin_pref_tokens t = {.prompt = &p, .prompt_attn = &bit, .n_prompt = 1};
    /* bytes: 01 00 00 00 00 00 00 00 | 01 00 00 00 | 01 | 8 zero bytes | 8 zero bytes; the value was
     * computed with Python: fnv1a64(bytes([1,0,0,0,0,0,0,0, 1,0,0,0, 1] + [0] * 16)) */
    assert_true(spin_pref_tokens_hash(&t) == 0xf63251775ac5e41cull);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Reads every fixture file, tokenises each example with `name`'s tokenizer under every option set,
 * and compares rows, hashes and batches. Returns false when the tokenizer file is absent. */
static bool check_tokenizer(const char *name) {
    const char *src = str(get(golden, "tokenizers"), name);
    char path[512];
    if (!strncmp(src, "shared:", 7))
        snprintf(path, sizeof path, SPIN_SHARED_DIR "/%s", src + 7);
    else
        snprintf(path, sizeof path, SPIN_TEST_DATA "/%s", src + 5);
    if (!exists(path)) {
        printf("SKIPPED %s: %s is absent (the shared data beside the checkout)\n", name, path);
        return false;
    }
    spin_tokenizer *tok = spin_tokenizer_load(path);
    if (!tok)
        fail_msg("%s", spin_last_error());
    assert_int_equal(spin_tokenizer_token_to_id(tok, "</s>"), 2);
    json_object *files = get(golden, "files"), *opts = get(golden, "opts"), *batches = get(golden, "batches");
    int rows_checked = 0, batches_checked = 0;
    for (size_t f = 0; f < json_object_array_length(files); f++) {
        const char *file = str(json_object_array_get_idx(files, f), "file");
        char fpath[512];
        snprintf(fpath, sizeof fpath, TRAIN_DATA "/%s", file);
        spin_pref_data d;
        if (spin_pref_data_read(fpath, SPIN_CHAT_ZEPHYR, "<s>", "</s>", &d) != SPIN_OK)
            fail_msg("%s", spin_last_error());
        for (size_t k = 0; k < json_object_array_length(opts); k++) {
            const char *oname = str(json_object_array_get_idx(opts, k), "name");
            spin_collate_opts o = opts_named(oname);
            json_object *rows = token_rows(name, file, oname);
            assert_int_equal(json_object_array_length(rows), (size_t)d.n);
            spin_pref_tokens *t = calloc((size_t)d.n, sizeof *t);
            assert_non_null(t);
            for (int64_t i = 0; i < d.n; i++) {
                json_object *row = json_object_array_get_idx(rows, (size_t)i);
                if (spin_collate_tokenize(tok, &d.ex[i], &o, &t[i]) != SPIN_OK)
                    fail_msg("%s", spin_last_error());
                char what[256];
                snprintf(what, sizeof what, "%s %s %s example %lld prompt", name, file, oname, (long long)i);
                ints_equal(what, t[i].prompt, t[i].n_prompt, get(row, "prompt"));
                bits_equal(what, t[i].prompt_attn, t[i].n_prompt, get(row, "prompt_attn"));
                snprintf(what, sizeof what, "%s %s %s example %lld chosen", name, file, oname, (long long)i);
                ints_equal(what, t[i].chosen, t[i].n_chosen, get(row, "chosen"));
                bits_equal(what, t[i].chosen_attn, t[i].n_chosen, get(row, "chosen_attn"));
                snprintf(what, sizeof what, "%s %s %s example %lld rejected", name, file, oname,
                         (long long)i);
                ints_equal(what, t[i].rejected, t[i].n_rejected, get(row, "rejected"));
                bits_equal(what, t[i].rejected_attn, t[i].n_rejected, get(row, "rejected_attn"));
                hash_equal(&t[i], row);
                rows_checked++;
            }
            for (size_t bi = 0; bi < json_object_array_length(batches); bi++) {
                json_object *batch = json_object_array_get_idx(batches, bi);
                if (strcmp(str(batch, "tokenizer"), name) || strcmp(str(batch, "file"), file) ||
                    strcmp(str(batch, "opts"), oname))
                    continue;
                check_batch(t, batch, &o, file);
                batches_checked++;
            }
            for (int64_t i = 0; i < d.n; i++)
                spin_pref_tokens_free(&t[i]);
            free(t);
        }
        spin_pref_data_free(&d);
    }
    assert_int_equal(rows_checked, 51);
    assert_int_equal(batches_checked, 15);
    spin_tokenizer_free(tok);
    return true;
}

static void test_tokenize_tiny(void **state) {
    (void)state;
    assert_true(check_tokenizer("tiny")); /* committed: never skipped */
}

static void test_tokenize_mistral(void **state) {
    (void)state;
    if (!check_tokenizer("mistral"))
        skip();
}

/* ---- errors ------------------------------------------------------------------------------------ */

static spin_tokenizer *tiny(void) {
    spin_tokenizer *tok = spin_tokenizer_load(SPIN_TEST_DATA "/tokenizer/tiny-sp-normalizer.json");
    if (!tok)
        fail_msg("%s", spin_last_error());
    return tok;
}

static void expect_tokenize_error(spin_tokenizer *tok, const spin_pref_example *ex, spin_collate_opts o,
                                  const char *want) {
    spin_pref_tokens t = {.n_prompt = 5};
    assert_int_equal(spin_collate_tokenize(tok, ex, &o, &t), SPIN_ERR_INVALID);
    assert_string_equal(spin_last_error(), want);
    assert_null(t.prompt);
    assert_int_equal(t.n_prompt, 0);
}

static void test_tokenize_errors(void **state) {
    (void)state;
    spin_tokenizer *tok = tiny();
    spin_pref_example ex = {.prompt = "Hi", .chosen = "a", .rejected = "b"};
    spin_collate_opts o = {.max_length = 48, .max_prompt_length = 24, .eos_id = 2, .pad_id = 2};
    spin_collate_opts bad = o;
    bad.max_prompt_length = 0;
    expect_tokenize_error(
        tok, &ex, bad,
        "spin_collate_tokenize: max_prompt_length is 0; it must be in [1, max_length - 1 = 47]");
    bad.max_prompt_length = 48;
    expect_tokenize_error(
        tok, &ex, bad,
        "spin_collate_tokenize: max_prompt_length is 48; it must be in [1, max_length - 1 = 47]");
    bad = o;
    bad.max_length = 1;
    expect_tokenize_error(tok, &ex, bad, "spin_collate_tokenize: max_length is 1; it must be at least 2");
    bad = o;
    bad.eos_id = -1;
    expect_tokenize_error(tok, &ex, bad,
                          "spin_collate_tokenize: eos_id (-1) and pad_id (2) must be token ids >= 0");
    spin_pref_example empty = {.prompt = "", .chosen = "a", .rejected = "b"};
    expect_tokenize_error(
        tok, &empty, o,
        "spin_collate_tokenize: the prompt tokenises to no tokens; the first response token "
        "would have nothing to be predicted from (TRL scores labels[1:] only)");
    spin_pref_example bad_utf8 = {.prompt = "Hi", .chosen = "a\xff", .rejected = "b"};
    expect_tokenize_error(
        tok, &bad_utf8, o,
        "spin_collate_tokenize: chosen: tokenizer encode: input is not valid UTF-8 (byte 1)");
    spin_pref_example null_text = {.prompt = "Hi", .chosen = "a", .rejected = NULL};
    expect_tokenize_error(tok, &null_text, o, "spin_collate_tokenize: rejected is NULL");
    spin_pref_tokens t;
    assert_int_equal(spin_collate_tokenize(NULL, &ex, &o, &t), SPIN_ERR_INVALID);
    assert_int_equal(spin_collate_tokenize(tok, &ex, NULL, &t), SPIN_ERR_INVALID);
    spin_pref_tokens_free(NULL);
    spin_tokenizer_free(tok);
}

static void test_batch_errors(void **state) {
    (void)state;
    spin_collate_opts o = {.max_length = 48, .max_prompt_length = 24, .eos_id = 2, .pad_id = 2};
    int32_t id = 5;
    uint8_t bit = 1;
    spin_pref_tokens ok = {.prompt = &id,
                           .prompt_attn = &bit,
                           .n_prompt = 1,
                           .chosen = &id,
                           .chosen_attn = &bit,
                           .n_chosen = 1,
                           .rejected = &id,
                           .rejected_attn = &bit,
                           .n_rejected = 1};
    spin_pref_tokens no_prompt = ok, null_array = ok;
    no_prompt.n_prompt = 0;
    null_array.chosen = NULL;
    const spin_pref_tokens *one[1] = {&ok};
    spin_collated c = {.batch = 3};
    assert_int_equal(spin_collate_batch(one, 0, &o, &c), SPIN_ERR_INVALID);
    assert_string_equal(spin_last_error(), "spin_collate_batch: batch size 0; it must be at least 1");
    assert_int_equal(c.batch, 0);
    assert_null(c.ids);
    one[0] = &no_prompt;
    assert_int_equal(spin_collate_batch(one, 1, &o, &c), SPIN_ERR_INVALID);
    assert_string_equal(spin_last_error(), "spin_collate_batch: example 0 has no prompt tokens");
    one[0] = &null_array;
    assert_int_equal(spin_collate_batch(one, 1, &o, &c), SPIN_ERR_INVALID);
    assert_string_equal(spin_last_error(),
                        "spin_collate_batch: example 0 is NULL or has a negative length or a NULL "
                        "array behind a non-zero length");
    assert_int_equal(spin_collate_batch(NULL, 1, &o, &c), SPIN_ERR_INVALID);
    spin_collated_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batches_from_golden_rows),
        cmocka_unit_test(test_hash_of_golden_rows),
        cmocka_unit_test(test_hash_definition),
        cmocka_unit_test(test_tokenize_tiny),
        cmocka_unit_test(test_tokenize_mistral),
        cmocka_unit_test(test_tokenize_errors),
        cmocka_unit_test(test_batch_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
