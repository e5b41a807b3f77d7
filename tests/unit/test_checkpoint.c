/* Checkpoints (train/checkpoint.h): save/load is bit-exact for weights, state tensors and the trainer
 * state text; latest/prune/overwrite rules; damaged checkpoints give errors naming the file; and
 * SIGKILL at random moments of a save loop (in a child process) always leaves the newest reported
 * checkpoint intact and every checkpoint-* directory complete.
 *
 * Expected values never come from the code under test: every tensor of "version" key is filled
 * with hash(key, tensor, element), so the bits identify what was written, and the check recomputes
 * the hash. All comparisons are bitwise (f32 stored as F32 must round-trip exactly: no tolerance).
 *
 * With SPIN_CKPT_HF_OUT=DIR, test_round_trip also leaves DIR/checkpoint-1 and DIR/spin_logits.safetensors
 * for tests/ref/check_checkpoint_hf.py (transformers loads the model part and gives the same logits). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "backends/backends.h"
#include "models/llama.h"
#include "models/safetensors.h"
#include "train/checkpoint.h"

static spin_device *dev;

/* ---- fixtures: a tiny llama plus RMSProp-like state, filled from a hash ---- */

static float hash_value(uint64_t key, uint64_t t, uint64_t j) {
    uint64_t z = key * 0x9E3779B97F4A7C15ull + t * 0xBF58476D1CE4E5B9ull + j * 0x94D049BB133111EBull + 1;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    /* 24 random bits as an exactly representable float in [-1, 1) */
    return (float)((int32_t)(z >> 40) - (1 << 23)) / (float)(1 << 23);
}

typedef struct {
    spin_llama *m;
    int n; /* state tensors: one square_avg per parameter, and "step" */
    char **names;
    spin_tensor **ts;
} fixture;

static spin_llama *tiny_llama(uint64_t seed, int64_t hidden) {
    char json[512];
    snprintf(json, sizeof json,
             "{\"architectures\": [\"LlamaForCausalLM\"], \"hidden_size\": %lld, \"intermediate_size\": 64, "
             "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
             "\"vocab_size\": 16, \"tie_word_embeddings\": false, \"rms_norm_eps\": 1e-05}",
             (long long)hidden);
    spin_llama_config cfg;
    assert_int_equal(spin_llama_config_parse(json, "inline", &cfg), SPIN_OK);
    spin_llama *m;
    assert_int_equal(spin_llama_init(&cfg, dev, seed, &m), SPIN_OK);
    spin_llama_config_free(&cfg);
    return m;
}

static void fixture_new(fixture *f, uint64_t seed) {
    f->m = tiny_llama(seed, 32);
    f->n = f->m->n_params + 1;
    f->names = calloc((size_t)f->n, sizeof *f->names);
    f->ts = calloc((size_t)f->n, sizeof *f->ts);
    for (int i = 0; i < f->m->n_params; i++) {
        f->names[i] = malloc(strlen(f->m->names[i]) + 16);
        sprintf(f->names[i], "square_avg.%s", f->m->names[i]);
        f->ts[i] = spin_zeros_like(f->m->params[i]);
    }
    f->names[f->n - 1] = strdup("step");
    f->ts[f->n - 1] = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){1});
}

static void fixture_free(fixture *f) {
    for (int i = 0; i < f->n; i++) {
        free(f->names[i]);
        spin_tensor_release(f->ts[i]);
    }
    free(f->names);
    free(f->ts);
    spin_llama_free(f->m);
}

static spin_named_tensors fx_state(const fixture *f) {
    return (spin_named_tensors){f->n, (const char *const *)f->names, f->ts};
}

/* Tensor t of the fixture: parameters first, then the state. */
static spin_tensor *fx_tensor(const fixture *f, int t) {
    return t < f->m->n_params ? f->m->params[t] : f->ts[t - f->m->n_params];
}

static void fill(fixture *f, uint64_t key) {
    for (int t = 0; t < f->m->n_params + f->n; t++) {
        spin_tensor *x = fx_tensor(f, t);
        int64_t n = spin_tensor_numel(x);
        float *v = malloc((size_t)n * sizeof *v);
        for (int64_t j = 0; j < n; j++)
            v[j] = hash_value(key, (uint64_t)t, (uint64_t)j);
        if (spin_tensor_write_f32(x, v, n) != SPIN_OK)
            abort();
        free(v);
    }
}

/* Number of tensors whose bits differ from what fill(key) wrote. */
static int mismatches(const fixture *f, uint64_t key) {
    int bad = 0;
    for (int t = 0; t < f->m->n_params + f->n; t++) {
        spin_tensor *x = fx_tensor(f, t);
        int64_t n = spin_tensor_numel(x);
        float *v = malloc((size_t)n * sizeof *v), *w = malloc((size_t)n * sizeof *w);
        if (spin_tensor_read_f32(x, v, n) != SPIN_OK)
            abort();
        for (int64_t j = 0; j < n; j++)
            w[j] = hash_value(key, (uint64_t)t, (uint64_t)j);
        bad += memcmp(v, w, (size_t)n * sizeof *v) != 0;
        free(v);
        free(w);
    }
    return bad;
}

static void state_json(char *buf, size_t cap, int64_t step, int version) {
    snprintf(buf, cap,
             "{\"global_step\": %lld, \"version\": %d, \"epoch\": 0.25,\n \"rng_state\": [%llu, 12345], "
             "\"data_position\": %lld}\n",
             (long long)step, version, (unsigned long long)(step * 2654435761u), (long long)step * 8);
}

/* ---- file system helpers ---- */

static void make_tmpdir(char *dir, size_t cap) {
    snprintf(dir, cap, "/tmp/spin_test_ckpt_XXXXXX");
    assert_non_null(mkdtemp(dir));
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static bool path_exists(const char *fmt, ...) {
    char p[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    struct stat sb;
    return lstat(p, &sb) == 0;
}

/* Entries of dir whose name starts with prefix (0 when dir does not exist). */
static int count_entries(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    if (!d && errno == ENOENT)
        return 0;
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += !strncmp(e->d_name, prefix, strlen(prefix));
    closedir(d);
    return n;
}

static void make_junk_dir(const char *path) {
    assert_int_equal(mkdir(path, 0755), 0);
    char f[600];
    snprintf(f, sizeof f, "%s/model.safetensors", path);
    FILE *fp = fopen(f, "wb");
    assert_non_null(fp);
    fputs("partial", fp);
    fclose(fp);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    fclose(fp);
}

static void write_text(const char *path, const char *text) {
    write_bytes(path, text, strlen(text));
}

/* A pid no process has: a child that has exited and been reaped. */
static long dead_pid(void) {
    pid_t p = fork();
    assert_true(p >= 0);
    if (p == 0)
        _exit(0);
    assert_int_equal(waitpid(p, NULL, 0), p);
    return (long)p;
}

static void save_ok(const char *dir, int64_t step, fixture *f, uint64_t key, bool overwrite) {
    char js[256];
    fill(f, key);
    state_json(js, sizeof js, step, (int)key);
    assert_int_equal(spin_ckpt_save(dir, step, f->m, fx_state(f), js, overwrite, NULL), SPIN_OK);
}

static void expect_error(spin_status s, const char *frag) {
    assert_int_not_equal(s, SPIN_OK);
    printf("    error: %s\n", spin_last_error());
    assert_non_null(strstr(spin_last_error(), frag));
}

/* ---- tests ---- */

/* Save, then load into a differently initialised model and zeroed state: every bit comes back, the
 * trainer state text byte for byte, and the model directory is an ordinary HF one spin_llama_load
 * reads. Also a non-contiguous state target. */
static void test_round_trip(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    char out[128];
    snprintf(out, sizeof out, "%s/run/out", dir); /* created (with its parent) by the save */
    fixture a, b;
    fixture_new(&a, 1);
    fixture_new(&b, 2);
    fill(&a, 7);
    char js[256], *path = NULL, *text = NULL;
    state_json(js, sizeof js, 7, 0);
    assert_int_equal(spin_ckpt_save(out, 7, a.m, fx_state(&a), js, false, &path), SPIN_OK);
    char want[160];
    snprintf(want, sizeof want, "%s/checkpoint-7", out);
    assert_string_equal(path, want);
    for (int i = 0; i < SPIN_CKPT_N_REQUIRED; i++)
        assert_true(path_exists("%s/%s", path, spin_ckpt_required_files[i]));
    assert_int_equal(count_entries(out, "."), 2); /* "." and "..": no temporary left */
    assert_int_equal(mismatches(&b, 7), b.m->n_params + b.n);
    assert_int_equal(spin_ckpt_load(path, b.m, fx_state(&b), &text), SPIN_OK);
    assert_int_equal(mismatches(&b, 7), 0);
    assert_string_equal(text, js);
    free(text);

    /* the model part on its own */
    spin_llama *m2;
    assert_int_equal(spin_llama_load(path, dev, &m2), SPIN_OK);
    assert_int_equal(m2->n_params, a.m->n_params);
    for (int i = 0; i < m2->n_params; i++) {
        int64_t n = spin_tensor_numel(a.m->params[i]);
        float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
        assert_int_equal(spin_tensor_read_f32(a.m->params[i], x, n), SPIN_OK);
        assert_int_equal(spin_tensor_read_f32(spin_llama_param(m2, a.m->names[i]), y, n), SPIN_OK);
        assert_memory_equal(x, y, (size_t)n * 4);
        free(x);
        free(y);
    }
    spin_llama_free(m2);

    /* a transposed view as the restore target: same values through its strides */
    spin_tensor *src = spin_zeros(dev, SPIN_F32, 2, (int64_t[]){3, 5});
    float sv[15], got[15];
    for (int i = 0; i < 15; i++)
        sv[i] = hash_value(99, 0, (uint64_t)i);
    assert_int_equal(spin_tensor_write_f32(src, sv, 15), SPIN_OK);
    const char *nm[] = {"w"};
    assert_int_equal(spin_ckpt_save(out, 8, a.m, (spin_named_tensors){1, nm, &src}, "{}", false, NULL),
                     SPIN_OK);
    spin_tensor *base = spin_zeros(dev, SPIN_F32, 2, (int64_t[]){5, 3});
    spin_tensor *view = spin_transpose(base, 0, 1);
    assert_false(spin_tensor_is_contiguous(view));
    snprintf(want, sizeof want, "%s/checkpoint-8", out);
    assert_int_equal(spin_ckpt_load(want, b.m, (spin_named_tensors){1, nm, &view}, NULL), SPIN_OK);
    assert_int_equal(spin_tensor_read_f32(view, got, 15), SPIN_OK);
    assert_memory_equal(got, sv, sizeof sv);
    spin_tensor_release(view);
    spin_tensor_release(base);
    spin_tensor_release(src);

    /* bad inputs are refused before anything is written */
    spin_tensor *i32 = spin_zeros(dev, SPIN_I32, 1, (int64_t[]){4});
    expect_error(spin_ckpt_save(out, 9, a.m, (spin_named_tensors){1, nm, &i32}, "{}", false, NULL),
                 "'w' is i32");
    spin_tensor_release(i32);
    expect_error(spin_ckpt_save(out, 9, a.m, fx_state(&a), "{\"global_step\": 9", false, NULL),
                 "checkpoint-9/trainer_state.json: not valid JSON");
    expect_error(spin_ckpt_save(out, 9, a.m, fx_state(&a), "[1, 2]", false, NULL), "must be a JSON object");
    expect_error(spin_ckpt_save(out, 9, a.m, fx_state(&a), "{} x", false, NULL), "unexpected text");
    const char *dup[] = {"w", "w"};
    spin_tensor *two[] = {a.ts[0], a.ts[1]};
    expect_error(spin_ckpt_save(out, 9, a.m, (spin_named_tensors){2, dup, two}, "{}", false, NULL),
                 "duplicate state tensor name 'w'");
    expect_error(spin_ckpt_save(out, -1, a.m, fx_state(&a), "{}", false, NULL), "negative");
    assert_false(path_exists("%s/checkpoint-9", out));
    assert_int_equal(count_entries(out, "."), 2);

    const char *hf = getenv("SPIN_CKPT_HF_OUT");
    if (hf && hf[0]) {
        assert_int_equal(spin_ckpt_save(hf, 1, a.m, fx_state(&a), js, true, NULL), SPIN_OK);
        int32_t ids[2 * 6];
        float fids[2 * 6];
        for (int i = 0; i < 12; i++)
            fids[i] = (float)(ids[i] = (i * 7 + 3) % 16);
        spin_scope_begin();
        spin_no_grad_begin();
        spin_tensor *ti = spin_from_host(dev, SPIN_I32, 2, (int64_t[]){2, 6}, ids);
        spin_tensor *lg = spin_llama_logits(a.m, spin_llama_forward(a.m, ti, NULL, NULL, NULL));
        spin_no_grad_end();
        spin_tensor *tf = spin_from_host(dev, SPIN_F32, 2, (int64_t[]){2, 6}, fids);
        const char *ln[] = {"ids", "logits"};
        spin_tensor *lt[] = {tf, lg};
        char lp[600];
        snprintf(lp, sizeof lp, "%s/spin_logits.safetensors", hf);
        assert_int_equal(spin_st_save(lp, 2, ln, lt, SPIN_F32, true), SPIN_OK);
        spin_scope_end();
        printf("    wrote %s/checkpoint-1 and %s for tests/ref/check_checkpoint_hf.py\n", hf, lp);
    }
    free(path);
    fixture_free(&a);
    fixture_free(&b);
    rm_rf(dir);
}

/* The highest complete step wins; hidden temporaries never count and leftovers of dead processes
 * are cleaned up (a set-aside old version whose replacement never arrived is put back). */
static void test_latest(void **state) {
    (void)state;
    char dir[64], *path = (char *)1;
    make_tmpdir(dir, sizeof dir);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/none", dir);
    assert_int_equal(spin_ckpt_latest(missing, &path), SPIN_OK);
    assert_null(path);
    assert_int_equal(spin_ckpt_latest(dir, &path), SPIN_OK);
    assert_null(path);
    fixture f;
    fixture_new(&f, 3);
    save_ok(dir, 2, &f, 2, false);
    save_ok(dir, 10, &f, 10, false);
    save_ok(dir, 9, &f, 9, false);
    long dead = dead_pid(), live = (long)getppid();
    char p[256];
    snprintf(p, sizeof p, "%s/.checkpoint-50.tmp-%ld", dir, dead); /* an unfinished write */
    make_junk_dir(p);
    snprintf(p, sizeof p, "%s/.checkpoint-60.tmp-%ld", dir, live); /* another live writer's */
    make_junk_dir(p);
    snprintf(p, sizeof p, "%s/checkpoint-011", dir); /* not a name the saver writes */
    make_junk_dir(p);
    snprintf(p, sizeof p, "%s/checkpoint-12x", dir);
    make_junk_dir(p);
    snprintf(p, sizeof p, "%s/checkpoint-99", dir); /* a file, not a directory */
    write_text(p, "x");
    assert_int_equal(spin_ckpt_latest(dir, &path), SPIN_OK);
    char want[128];
    snprintf(want, sizeof want, "%s/checkpoint-10", dir);
    assert_string_equal(path, want);
    free(path);
    assert_false(path_exists("%s/.checkpoint-50.tmp-%ld", dir, dead));
    assert_true(path_exists("%s/.checkpoint-60.tmp-%ld", dir, live));

    /* killed while replacing checkpoint-10 the slow way: old version aside, new one unfinished */
    char aside[128], tmp[128];
    snprintf(aside, sizeof aside, "%s/.checkpoint-10.old-%ld", dir, dead);
    snprintf(tmp, sizeof tmp, "%s/.checkpoint-10.tmp-%ld", dir, dead);
    assert_int_equal(rename(want, aside), 0);
    make_junk_dir(tmp);
    /* and a stale set-aside copy of checkpoint-9, whose replacement did arrive */
    snprintf(p, sizeof p, "%s/.checkpoint-9.old-%ld", dir, dead);
    make_junk_dir(p);
    assert_int_equal(spin_ckpt_latest(dir, &path), SPIN_OK);
    assert_string_equal(path, want);
    assert_false(path_exists("%s", aside));
    assert_false(path_exists("%s", tmp));
    assert_false(path_exists("%s", p));
    fill(&f, 0);
    char *text;
    assert_int_equal(spin_ckpt_load(path, f.m, fx_state(&f), &text), SPIN_OK);
    assert_int_equal(mismatches(&f, 10), 0);
    free(text);
    free(path);
    snprintf(p, sizeof p, "%s/checkpoint-9", dir);
    assert_int_equal(spin_ckpt_load(p, f.m, fx_state(&f), NULL), SPIN_OK);
    assert_int_equal(mismatches(&f, 9), 0);
    fixture_free(&f);
    rm_rf(dir);
}

static void test_prune(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    fixture f;
    fixture_new(&f, 4);
    for (int s = 1; s <= 5; s++)
        save_ok(dir, s * 10, &f, (uint64_t)s, false);
    assert_int_equal(spin_ckpt_prune(dir, 0), SPIN_OK);
    assert_int_equal(count_entries(dir, "checkpoint-"), 5);
    expect_error(spin_ckpt_prune(dir, -1), "negative");
    assert_int_equal(spin_ckpt_prune(dir, 3), SPIN_OK);
    assert_int_equal(count_entries(dir, "checkpoint-"), 3);
    assert_int_equal(count_entries(dir, "."), 2);
    for (int s = 1; s <= 5; s++)
        assert_int_equal(path_exists("%s/checkpoint-%d", dir, s * 10), s >= 3);
    assert_int_equal(spin_ckpt_prune(dir, 5), SPIN_OK);
    assert_int_equal(count_entries(dir, "checkpoint-"), 3);
    assert_int_equal(spin_ckpt_prune(dir, 1), SPIN_OK);
    assert_int_equal(count_entries(dir, "checkpoint-"), 1);
    char p[128];
    snprintf(p, sizeof p, "%s/checkpoint-50", dir);
    assert_int_equal(spin_ckpt_load(p, f.m, fx_state(&f), NULL), SPIN_OK);
    assert_int_equal(mismatches(&f, 5), 0);
    fixture_free(&f);
    rm_rf(dir);
}

/* An existing checkpoint is kept unless overwrite, which replaces all of it. */
static void test_overwrite(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    fixture f;
    fixture_new(&f, 5);
    save_ok(dir, 3, &f, 31, false);
    char js[256], p[128], *text;
    fill(&f, 32);
    state_json(js, sizeof js, 3, 32);
    expect_error(spin_ckpt_save(dir, 3, f.m, fx_state(&f), js, false, NULL), "already exists");
    snprintf(p, sizeof p, "%s/checkpoint-3", dir);
    assert_int_equal(spin_ckpt_load(p, f.m, fx_state(&f), &text), SPIN_OK);
    assert_int_equal(mismatches(&f, 31), 0);
    assert_non_null(strstr(text, "\"version\": 31,"));
    free(text);
    save_ok(dir, 3, &f, 32, true);
    fill(&f, 0);
    assert_int_equal(spin_ckpt_load(p, f.m, fx_state(&f), &text), SPIN_OK);
    assert_int_equal(mismatches(&f, 32), 0);
    assert_string_equal(text, js);
    free(text);
    assert_int_equal(count_entries(dir, "."), 2);
    assert_int_equal(count_entries(dir, "checkpoint-"), 1);
    fixture_free(&f);
    rm_rf(dir);
}

/* Damaged or mismatched checkpoints: the error names the file (and tensor), and a failed load
 * changes nothing. */
static void test_errors(void **state) {
    (void)state;
    char dir[64], p[160], ck[128], *path;
    make_tmpdir(dir, sizeof dir);
    fixture f;
    fixture_new(&f, 6);
    save_ok(dir, 1, &f, 1, false);
    save_ok(dir, 2, &f, 2, false);
    snprintf(ck, sizeof ck, "%s/checkpoint-2", dir);
    fill(&f, 77);

    /* a missing file */
    snprintf(p, sizeof p, "%s/config.json", ck);
    assert_int_equal(unlink(p), 0);
    expect_error(spin_ckpt_latest(dir, &path), p);
    assert_null(path);
    expect_error(spin_ckpt_load(ck, f.m, fx_state(&f), NULL), p);
    rm_rf(ck);
    save_ok(dir, 2, &f, 2, false);
    fill(&f, 77);

    /* a truncated model */
    snprintf(p, sizeof p, "%s/model.safetensors", ck);
    assert_int_equal(truncate(p, 1000), 0);
    expect_error(spin_ckpt_load(ck, f.m, fx_state(&f), NULL), p);
    /* garbage state */
    snprintf(ck, sizeof ck, "%s/checkpoint-1", dir);
    snprintf(p, sizeof p, "%s/optimizer.safetensors", ck);
    char saved_opt[160];
    snprintf(saved_opt, sizeof saved_opt, "%s/opt.bak", dir);
    assert_int_equal(rename(p, saved_opt), 0);
    /* a valid 16-byte header whose one entry is not a tensor description */
    static const char bad_header[] = "\x10\0\0\0\0\0\0\0{\"a\": 1}        ";
    write_bytes(p, bad_header, sizeof bad_header - 1);
    expect_error(spin_ckpt_load(ck, f.m, fx_state(&f), NULL), p);
    assert_int_equal(rename(saved_opt, p), 0);
    /* a broken trainer state */
    snprintf(p, sizeof p, "%s/trainer_state.json", ck);
    write_text(p, "{\"global_step\": 1,");
    char *text = (char *)1;
    expect_error(spin_ckpt_load(ck, f.m, fx_state(&f), &text), p);
    assert_null(text);
    assert_int_equal(mismatches(&f, 77), 0);
    write_text(p, "{\"global_step\": 1}");

    /* state names that do not match the stored ones */
    snprintf(p, sizeof p, "%s/optimizer.safetensors", ck);
    spin_named_tensors fewer = fx_state(&f);
    fewer.n--;
    expect_error(spin_ckpt_load(ck, f.m, fewer, NULL), "unexpected tensor 'step'");
    assert_non_null(strstr(spin_last_error(), p));
    const char *other[] = {"momentum"};
    expect_error(spin_ckpt_load(ck, f.m, (spin_named_tensors){1, other, f.ts}, NULL),
                 "missing tensor 'momentum'");
    spin_tensor *wrong = spin_zeros(dev, SPIN_F32, 1, (int64_t[]){2});
    const char *stepname[] = {"step"};
    expect_error(spin_ckpt_load(ck, f.m, (spin_named_tensors){1, stepname, &wrong}, NULL),
                 "'step' has shape [1], expected [2]");
    spin_tensor_release(wrong);
    assert_int_equal(mismatches(&f, 77), 0);

    /* a model of another shape */
    spin_llama *small = tiny_llama(1, 16);
    snprintf(p, sizeof p, "%s/model.safetensors", ck);
    expect_error(spin_ckpt_load(ck, small, fx_state(&f), NULL),
                 "'model.embed_tokens.weight' has shape [16, 32]");
    assert_non_null(strstr(spin_last_error(), p));
    spin_llama_free(small);

    /* the intact checkpoint still loads */
    assert_int_equal(spin_ckpt_load(ck, f.m, fx_state(&f), NULL), SPIN_OK);
    assert_int_equal(mismatches(&f, 1), 0);
    fixture_free(&f);
    rm_rf(dir);
}

/* ---- kill test ---- */

#define KILL_TRIALS 20
#define KILL_KEEP 2

/* Content key of (step, version): version 0 is the first save of a step, 1 its overwrite. */
static uint64_t kill_key(int64_t step, int version) {
    return (uint64_t)step * 2 + (uint64_t)version;
}

/* One save-loop iteration of the child: step s, then its replacement, then pruning. Returns false on
 * error. report (>= 0) gets each step once its first save has returned. */
static bool kill_cycle(const char *dir, fixture *f, int64_t s, int report) {
    char js[256];
    for (int v = 0; v < 2; v++) {
        fill(f, kill_key(s, v));
        state_json(js, sizeof js, s, v);
        if (spin_ckpt_save(dir, s, f->m, fx_state(f), js, v == 1, NULL) != SPIN_OK) {
            fprintf(stderr, "child: save %lld/%d: %s\n", (long long)s, v, spin_last_error());
            return false;
        }
        if (v == 0 && report >= 0 && write(report, &s, sizeof s) != (ssize_t)sizeof s)
            return false;
    }
    if (spin_ckpt_prune(dir, KILL_KEEP) != SPIN_OK) {
        fprintf(stderr, "child: prune: %s\n", spin_last_error());
        return false;
    }
    return true;
}

/* The child: resumes after the newest checkpoint and saves forever until killed. */
static int kill_child(const char *dir, int report) {
    dev = spin_init();
    fixture f;
    fixture_new(&f, 8);
    char *path = NULL;
    if (spin_ckpt_latest(dir, &path) != SPIN_OK) {
        fprintf(stderr, "child: latest: %s\n", spin_last_error());
        return 3;
    }
    int64_t s = path ? strtoll(strrchr(path, '-') + 1, NULL, 10) : 0;
    free(path);
    /* a predecessor killed between a save and its prune left one checkpoint too many */
    if (spin_ckpt_prune(dir, KILL_KEEP) != SPIN_OK) {
        fprintf(stderr, "child: prune: %s\n", spin_last_error());
        return 3;
    }
    int64_t ready = -1;
    if (write(report, &ready, sizeof ready) != (ssize_t)sizeof ready)
        return 4;
    for (;;)
        if (!kill_cycle(dir, &f, ++s, report))
            return 5;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Each checkpoint-* directory is complete, its contents are exactly one version of its step, and its
 * trainer state text is that version's. Returns the number of checkpoints. */
static int check_all_checkpoints(const char *dir, fixture *f) {
    DIR *d = opendir(dir);
    if (!d && errno == ENOENT)
        return 0;
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "checkpoint-", 11))
            continue;
        int64_t step = strtoll(e->d_name + 11, NULL, 10);
        char p[600], *text, js[256];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (spin_ckpt_load(p, f->m, fx_state(f), &text) != SPIN_OK)
            fail_msg("%s does not load: %s", p, spin_last_error());
        const char *vs = strstr(text, "\"version\": ");
        assert_non_null(vs);
        int version = atoi(vs + 11);
        state_json(js, sizeof js, step, version);
        assert_string_equal(text, js);
        if (mismatches(f, kill_key(step, version)))
            fail_msg("%s: contents are not those of step %lld version %d", p, (long long)step, version);
        free(text);
        n++;
    }
    closedir(d);
    return n;
}

static void test_kill_during_save(void **state) {
    (void)state;
    char dir[64];
    make_tmpdir(dir, sizeof dir);
    fixture f;
    fixture_new(&f, 9);
    /* how long one loop iteration takes here, to aim the kills inside it */
    char scratch[128];
    snprintf(scratch, sizeof scratch, "%s/scratch", dir);
    double t0 = now_s();
    for (int s = 1; s <= 3; s++)
        assert_true(kill_cycle(scratch, &f, s, -1));
    double cycle = (now_s() - t0) / 3;
    rm_rf(scratch);
    char out[128];
    snprintf(out, sizeof out, "%s/out", dir);
    unsigned seed = 12345;
    int64_t newest_reported = 0, newest_found = 0;
    int inside = 0;
    for (int trial = 0; trial < KILL_TRIALS; trial++) {
        /* every fifth kill is almost immediate; the others land anywhere in the first 3 iterations */
        double delay = trial % 5 == 0 ? trial * 20e-6 : 3 * cycle * (rand_r(&seed) / (RAND_MAX + 1.0));
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            char fd[16];
            snprintf(fd, sizeof fd, "%d", fds[1]);
            execl("/proc/self/exe", "test_checkpoint", "--kill-child", out, fd, (char *)NULL);
            _exit(127);
        }
        close(fds[1]);
        int64_t msg;
        assert_int_equal(read(fds[0], &msg, sizeof msg), (ssize_t)sizeof msg);
        assert_int_equal(msg, -1); /* the child has resumed and is about to save */
        struct timespec ts = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
        assert_int_equal(kill(pid, SIGKILL), 0);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("trial %d: the child stopped by itself (status %d)", trial, status);
        while (read(fds[0], &msg, sizeof msg) == (ssize_t)sizeof msg)
            newest_reported = msg > newest_reported ? msg : newest_reported;
        close(fds[0]);
        inside += count_entries(out, ".checkpoint-") > 0;

        char *path;
        assert_int_equal(spin_ckpt_latest(out, &path), SPIN_OK);
        assert_int_equal(count_entries(out, ".checkpoint-"), 0); /* leftovers removed */
        int64_t step = path ? strtoll(strrchr(path, '-') + 1, NULL, 10) : 0;
        free(path);
        /* nothing reported as saved is lost; at most the save in flight is there besides */
        if (step < newest_reported || step > newest_reported + 1)
            fail_msg("trial %d: latest step %lld, last reported %lld", trial, (long long)step,
                     (long long)newest_reported);
        assert_true(step >= newest_found);
        newest_found = step;
        int n = check_all_checkpoints(out, &f);
        assert_true(n <= KILL_KEEP + 1);
        assert_true(n >= (step > 0));
        printf("    kill %2d after %6.2f ms: latest checkpoint-%lld, %d present\n", trial, delay * 1e3,
               (long long)step, n);
    }
    printf("    one save cycle %.2f ms; %d/%d kills left an unfinished write behind\n", cycle * 1e3, inside,
           KILL_TRIALS);
    assert_true(newest_found >= 3);
    /* kills that land mid-write are what this test is about; at least one of 20 must have */
    assert_true(inside >= 1);
    fixture_free(&f);
    rm_rf(dir);
}

static int64_t live_at_start;
static void test_no_leaks(void **state) {
    (void)state;
    assert_int_equal(spin_tensor_live_count(), live_at_start);
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--kill-child"))
        return kill_child(argv[2], atoi(argv[3]));
    dev = spin_init();
    live_at_start = spin_tensor_live_count();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_latest),
        cmocka_unit_test(test_prune),      cmocka_unit_test(test_overwrite),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_kill_during_save),
        cmocka_unit_test(test_no_leaks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
