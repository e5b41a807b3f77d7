/* safetensors reading and writing: round trips (f32, bf16, f16, sharded) and corrupt or truncated
 * files built here, each of which must give an error naming the file and the tensor, not a crash. */
#define _POSIX_C_SOURCE 200809L
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
#include "models/safetensors.h"
#include "ops/ops.h"

static spin_device *dev;
static char dir[256];

static const char *path_in(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* A file from a header text and a data buffer; hlen_override != 0 replaces the length field. */
static const char *write_raw(const char *name, const char *header, const void *data, size_t nbytes,
                             uint64_t hlen_override, size_t drop) {
    const char *p = path_in(name);
    size_t hl = strlen(header);
    size_t total = 8 + hl + nbytes;
    uint8_t *buf = malloc(total);
    uint64_t h = hlen_override ? hlen_override : hl;
    for (int i = 0; i < 8; i++)
        buf[i] = (uint8_t)(h >> (8 * i));
    memcpy(buf + 8, header, hl);
    if (nbytes)
        memcpy(buf + 8 + hl, data, nbytes);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fwrite(buf, 1, total - drop, f);
    fclose(f);
    free(buf);
    return p;
}

/* Opening must fail with a message containing each of the given fragments. */
static void expect_open_error(const char *p, const char *frag1, const char *frag2) {
    spin_safetensors *st = (spin_safetensors *)1;
    spin_clear_error();
    assert_int_not_equal(spin_st_open(p, &st), SPIN_OK);
    assert_null(st);
    const char *e = spin_last_error();
    printf("    %s\n", e);
    assert_non_null(strstr(e, p));
    if (frag1)
        assert_non_null(strstr(e, frag1));
    if (frag2)
        assert_non_null(strstr(e, frag2));
}

static spin_tensor *make(int nd, const int64_t *shape, float base) {
    int64_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++)
        v[i] = base + 0.37f * (float)i - 0.011f * (float)(i * i % 7);
    spin_tensor *t = spin_from_host(dev, SPIN_F32, nd, shape, v);
    free(v);
    return t;
}

static void read_all(spin_tensor *t, float *out) {
    assert_int_equal(spin_tensor_read_f32(t, out, spin_tensor_numel(t)), SPIN_OK);
}

static void test_round_trip(void **state) {
    (void)state;
    spin_scope_begin();
    spin_tensor *a = make(2, (int64_t[]){3, 5}, 1.0f), *b = make(1, (int64_t[]){7}, -2.0f);
    spin_tensor *c = make(4, (int64_t[]){2, 1, 3, 2}, 0.5f);
    spin_tensor *ts[3] = {a, b, c};
    const char *names[3] = {"model.a.weight", "b", "c.weight"};
    const spin_dtype dts[3] = {SPIN_F32, SPIN_BF16, SPIN_F16};
    const char *files[3] = {"rt_f32.safetensors", "rt_bf16.safetensors", "rt_f16.safetensors"};
    for (int k = 0; k < 3; k++) {
        const char *p = path_in(files[k]);
        assert_int_equal(spin_st_save(p, 3, names, ts, dts[k], false), SPIN_OK);
        /* header: 8-byte aligned, with __metadata__ {"format":"pt"} */
        FILE *f = fopen(p, "rb");
        uint8_t len8[8];
        assert_int_equal(fread(len8, 1, 8, f), 8);
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--)
            hl = hl << 8 | len8[i];
        assert_int_equal(hl % 8, 0);
        char *hdr = calloc(1, hl + 1);
        assert_int_equal(fread(hdr, 1, hl, f), hl);
        fclose(f);
        assert_non_null(strstr(hdr, "\"__metadata__\":{\"format\":\"pt\"}"));
        free(hdr);
        assert_int_not_equal(access(path_in("rt_f32.safetensors.tmp"), F_OK), 0);

        spin_safetensors *st;
        assert_int_equal(spin_st_open(p, &st), SPIN_OK);
        assert_int_equal(spin_st_count(st), 3);
        const spin_st_info *in = spin_st_find(st, "c.weight");
        assert_non_null(in);
        assert_string_equal(in->dtype, k == 0 ? "F32" : k == 1 ? "BF16" : "F16");
        assert_int_equal(in->ndim, 4);
        assert_int_equal(in->shape[2], 3);
        for (int i = 0; i < 3; i++) {
            spin_tensor *t =
                spin_st_load(st, names[i], dev, spin_tensor_ndim(ts[i]), spin_tensor_shape(ts[i]));
            assert_non_null(t);
            int64_t n = spin_tensor_numel(t);
            float *x = malloc((size_t)n * 4), *y = malloc((size_t)n * 4);
            read_all(ts[i], x);
            read_all(t, y);
            for (int64_t j = 0; j < n; j++) {
                float want = k == 0   ? x[j]
                             : k == 1 ? spin_bf16_to_f32(spin_f32_to_bf16(x[j]))
                                      : spin_f16_to_f32(spin_f32_to_f16(x[j]));
                assert_true(want == y[j]);
            }
            free(x);
            free(y);
        }
        /* wrong expected shape, missing tensor */
        spin_clear_error();
        assert_null(spin_st_load(st, "b", dev, 2, (int64_t[]){7, 1}));
        assert_non_null(strstr(spin_last_error(), "'b' has shape [7], expected [7, 1]"));
        assert_non_null(strstr(spin_last_error(), p));
        assert_null(spin_st_load(st, "nope", dev, -1, NULL));
        assert_non_null(strstr(spin_last_error(), "missing tensor 'nope'"));
        spin_st_close(st);
    }
    /* no clobber unless asked */
    const char *p = path_in("rt_f32.safetensors");
    assert_int_not_equal(spin_st_save(p, 1, names, ts, SPIN_F32, false), SPIN_OK);
    assert_non_null(strstr(spin_last_error(), "already exists"));
    assert_int_equal(spin_st_save(p, 1, names, ts, SPIN_F32, true), SPIN_OK);
    spin_safetensors *st;
    assert_int_equal(spin_st_open(p, &st), SPIN_OK);
    assert_int_equal(spin_st_count(st), 1);
    spin_st_close(st);
    /* duplicate names are refused when writing */
    const char *dup[2] = {"x", "x"};
    assert_int_not_equal(spin_st_save(path_in("dup_w.safetensors"), 2, dup, ts, SPIN_F32, false), SPIN_OK);
    assert_non_null(strstr(spin_last_error(), "duplicate tensor name 'x'"));
    spin_scope_end();
}

static void test_sharded(void **state) {
    (void)state;
    spin_scope_begin();
    char sd[300];
    snprintf(sd, sizeof sd, "%s/sharded", dir);
    assert_int_equal(mkdir(sd, 0755), 0);
    spin_tensor *a = make(2, (int64_t[]){4, 3}, 0.0f), *b = make(1, (int64_t[]){5}, 3.0f);
    char p1[400], p2[400], idx[400];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", sd);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", sd);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", sd);
    assert_int_equal(spin_st_save(p1, 1, (const char *[]){"w.a"}, &a, SPIN_F32, false), SPIN_OK);
    assert_int_equal(spin_st_save(p2, 1, (const char *[]){"w.b"}, &b, SPIN_BF16, false), SPIN_OK);
    const char *good =
        "{\"metadata\": {\"total_size\": 72}, \"weight_map\": {\"w.a\": "
        "\"model-00001-of-00002.safetensors\", \"w.b\": \"model-00002-of-00002.safetensors\"}}";
    assert_int_equal(spin_write_file_atomic(idx, good, strlen(good), false), SPIN_OK);
    spin_safetensors *st;
    assert_int_equal(spin_st_open(sd, &st), SPIN_OK); /* the directory finds the index */
    assert_int_equal(spin_st_count(st), 2);
    assert_non_null(strstr(spin_st_find(st, "w.b")->file, "00002"));
    spin_tensor *lb = spin_st_load(st, "w.b", dev, 1, (int64_t[]){5});
    assert_non_null(lb);
    float x[5], y[5];
    read_all(b, x);
    read_all(lb, y);
    for (int i = 0; i < 5; i++)
        assert_true(y[i] == spin_bf16_to_f32(spin_f32_to_bf16(x[i])));
    spin_st_close(st);

    /* the index maps a tensor to a shard that does not hold it */
    const char *wrong =
        "{\"weight_map\": {\"w.a\": \"model-00001-of-00002.safetensors\", \"w.b\": "
        "\"model-00001-of-00002.safetensors\", \"w.c\": \"model-00002-of-00002.safetensors\"}}";
    assert_int_equal(spin_write_file_atomic(idx, wrong, strlen(wrong), true), SPIN_OK);
    expect_open_error(idx, "'w.b'", "does not contain it");
    /* the same tensor in two shards */
    assert_int_equal(
        spin_st_save(p2, 2, (const char *[]){"w.b", "w.a"}, (spin_tensor *[]){b, a}, SPIN_F32, true),
        SPIN_OK);
    assert_int_equal(spin_write_file_atomic(idx, good, strlen(good), true), SPIN_OK);
    expect_open_error(idx, "duplicate tensor name 'w.a'", "00001");
    /* a missing shard */
    unlink(p2);
    st = NULL;
    assert_int_not_equal(spin_st_open(idx, &st), SPIN_OK);
    assert_null(st);
    assert_non_null(strstr(spin_last_error(), p2));
    assert_non_null(strstr(spin_last_error(), "cannot open"));
    spin_scope_end();
}

static void test_corrupt_files(void **state) {
    (void)state;
    float data[6] = {1, 2, 3, 4, 5, 6};
    const char *p;
    /* shorter than the length field */
    p = write_raw("short.safetensors", "", NULL, 0, 0, 3);
    expect_open_error(p, "too short", NULL);
    /* header length beyond the file */
    p = write_raw("hlen.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  data, 8, 1000, 0);
    expect_open_error(p, "header length 1000", "beyond the file");
    /* truncated: the data is cut short, so the offsets leave the buffer */
    p = write_raw("trunc.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}",
                  data, 24, 0, 14);
    expect_open_error(p, "'a'", "out of range");
    /* header JSON cut in the middle */
    p = write_raw("json.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],", NULL, 0, 0, 0);
    expect_open_error(p, "header JSON", NULL);
    /* offsets out of range */
    p = write_raw("range.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,4000000000]}}",
                  data, 16, 0, 0);
    expect_open_error(p, "'b'", "out of range");
    /* overlapping tensors */
    p = write_raw("overlap.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[8,20]}}",
                  data, 20, 0, 0);
    expect_open_error(p, "'b'", "overlaps tensor 'a'");
    /* a hole in the data buffer */
    p = write_raw("hole.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  data, 12, 0, 0);
    expect_open_error(p, "'b'", "belong to no tensor");
    /* shape and byte size disagree */
    p = write_raw("size.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
                  data, 12, 0, 0);
    expect_open_error(p, "'a'", "byte size 12");
    /* dtype and byte size disagree */
    p = write_raw("dtype.safetensors", "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  data, 8, 0, 0);
    expect_open_error(p, "'a'", "BF16");
    /* unknown dtype */
    p = write_raw("udtype.safetensors", "{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                  data, 8, 0, 0);
    expect_open_error(p, "'a'", "unknown dtype");
    /* negative dimension */
    p = write_raw("neg.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
                  data, 8, 0, 0);
    expect_open_error(p, "'a'", "shape[0]");
    /* duplicate names (json-c would keep only the last) */
    p = write_raw("dup.safetensors",
                  "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\" :{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  data, 8, 0, 0);
    expect_open_error(p, "duplicate tensor name 'a'", NULL);
    /* not an object */
    p = write_raw("arr.safetensors", "[1, 2]", NULL, 0, 0, 0);
    expect_open_error(p, "not an object", NULL);
    /* garbage after the JSON */
    p = write_raw("tail.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}xx",
                  data, 4, 0, 0);
    expect_open_error(p, "after the header", NULL);
    /* a valid file (header padded with blanks) with an integer tensor of a dtype we do not load */
    p = write_raw("i64.safetensors",
                  "{\"__metadata__\":{\"format\":\"pt\"},"
                  "\"n\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}  ",
                  data, 8, 0, 0);
    spin_safetensors *st;
    assert_int_equal(spin_st_open(p, &st), SPIN_OK);
    assert_null(spin_st_load(st, "n", dev, -1, NULL));
    assert_non_null(strstr(spin_last_error(), "'n' has dtype I64"));
    spin_st_close(st);
    /* a missing file */
    expect_open_error(path_in("absent.safetensors"), "absent", NULL);
}

int main(void) {
    dev = spin_init();
    snprintf(dir, sizeof dir, "/tmp/spin_test_st_XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_sharded),
        cmocka_unit_test(test_corrupt_files),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        r = r ? r : 1;
    return r;
}
