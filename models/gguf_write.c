/* GGUF v3 writer: metadata of every value type, F32/F16 tensors, aligned data, atomic write. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/dtype.h"
#include "models/gguf.h"
#include "models/gguf_internal.h"

#define GGUF_MAX_NAME 64 /* ggml's GGML_MAX_NAME, NUL included */

typedef struct {
    char *key;
    spin_gguf_value v; /* deep copy, owned */
} wkv;

typedef struct {
    char *name;
    spin_ggml_type type;
    int ndim;
    int64_t shape[4]; /* row-major */
    int64_t numel;
    const float *host;
    spin_tensor *dev;
    uint64_t offset;
} wtensor;

struct spin_gguf_writer {
    uint32_t alignment;
    wkv *kv;
    int64_t n_kv, cap_kv;
    wtensor *t;
    int64_t n_t, cap_t;
};

static void value_free(spin_gguf_value *v) {
    if (v->type == SPIN_GGUF_STRING) {
        free((char *)v->v.str.s);
    } else if (v->type == SPIN_GGUF_ARRAY) {
        free((void *)v->v.arr.raw);
        if (v->v.arr.strs) {
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                free((char *)v->v.arr.strs[i].s);
            free((void *)v->v.arr.strs);
        }
        if (v->v.arr.arrs) {
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                value_free((spin_gguf_value *)&v->v.arr.arrs[i]);
            free((void *)v->v.arr.arrs);
        }
    }
    memset(v, 0, sizeof *v);
}

static char *memdup0(const char *s, uint64_t len) {
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = 0;
    }
    return d;
}

static spin_status value_copy(spin_gguf_value *dst, const spin_gguf_value *src, int depth) {
    memset(dst, 0, sizeof *dst);
    dst->type = src->type;
    if ((unsigned)src->type >= SPIN_GGUF_VTYPE_COUNT)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: unknown value type %d", (int)src->type);
    if (src->type == SPIN_GGUF_STRING) {
        if (!(dst->v.str.s = memdup0(src->v.str.s, src->v.str.len)))
            return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
        dst->v.str.len = src->v.str.len;
        return SPIN_OK;
    }
    if (src->type != SPIN_GGUF_ARRAY) {
        dst->v = src->v;
        return SPIN_OK;
    }
    if (depth > 8)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: arrays nested deeper than 8");
    spin_gguf_vtype e = src->v.arr.elem;
    uint64_t n = src->v.arr.n;
    dst->v.arr.elem = e;
    dst->v.arr.n = n;
    if ((unsigned)e >= SPIN_GGUF_VTYPE_COUNT)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: unknown array element type %d", (int)e);
    if (e == SPIN_GGUF_STRING) {
        spin_gguf_str *s = calloc(n ? n : 1, sizeof *s);
        dst->v.arr.strs = s;
        if (!s)
            return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
        for (uint64_t i = 0; i < n; i++) {
            if (!(s[i].s = memdup0(src->v.arr.strs[i].s, src->v.arr.strs[i].len)))
                return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
            s[i].len = src->v.arr.strs[i].len;
        }
    } else if (e == SPIN_GGUF_ARRAY) {
        spin_gguf_value *a = calloc(n ? n : 1, sizeof *a);
        dst->v.arr.arrs = a;
        if (!a)
            return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
        for (uint64_t i = 0; i < n; i++) {
            if (src->v.arr.arrs[i].type != SPIN_GGUF_ARRAY)
                return spin_fail(SPIN_ERR_INVALID, "GGUF writer: an array of arrays holds a %s",
                                 spin_gguf_vtype_name(src->v.arr.arrs[i].type));
            SPIN_TRY(value_copy(&a[i], &src->v.arr.arrs[i], depth + 1));
        }
    } else {
        size_t bytes = (size_t)n * gguf_vtype_size(e);
        void *raw = malloc(bytes ? bytes : 1);
        dst->v.arr.raw = raw;
        if (!raw)
            return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
        if (bytes)
            memcpy(raw, src->v.arr.raw, bytes);
    }
    return SPIN_OK;
}

spin_gguf_writer *spin_gguf_writer_new(void) {
    spin_gguf_writer *w = calloc(1, sizeof *w);
    if (!w) {
        spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
        return NULL;
    }
    w->alignment = 32;
    return w;
}

void spin_gguf_writer_free(spin_gguf_writer *w) {
    if (!w)
        return;
    for (int64_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        value_free(&w->kv[i].v);
    }
    for (int64_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        if (w->t[i].dev)
            spin_tensor_release(w->t[i].dev);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

spin_status spin_gguf_writer_set_value(spin_gguf_writer *w, const char *key, const spin_gguf_value *v) {
    if (!key || !*key || strlen(key) > 65535)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: metadata key '%s' is empty or too long",
                         key ? key : "");
    spin_gguf_value copy;
    spin_status s = value_copy(&copy, v, 0);
    if (s != SPIN_OK) {
        char why[256]; /* spin_fail formats into the buffer spin_last_error returns */
        snprintf(why, sizeof why, "%s", spin_last_error());
        value_free(&copy);
        return spin_fail(s, "GGUF writer: metadata key '%s': %s", key, why);
    }
    for (int64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            value_free(&w->kv[i].v);
            w->kv[i].v = copy;
            return SPIN_OK;
        }
    if (w->n_kv == w->cap_kv) {
        int64_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *kv = realloc(w->kv, (size_t)cap * sizeof *kv);
        if (!kv) {
            value_free(&copy);
            return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        value_free(&copy);
        return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
    }
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].v = copy;
    w->n_kv++;
    return SPIN_OK;
}

spin_status spin_gguf_writer_set_alignment(spin_gguf_writer *w, uint32_t alignment) {
    if (alignment < 8 || (alignment & (alignment - 1)) != 0)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: alignment %u is not a power of two >= 8", alignment);
    w->alignment = alignment;
    return spin_gguf_writer_set_u32(w, "general.alignment", alignment);
}

#define SETTER(fn, ctype, vt, field)                                \
    spin_status fn(spin_gguf_writer *w, const char *key, ctype x) { \
        spin_gguf_value v = {.type = vt};                           \
        v.v.field = x;                                              \
        return spin_gguf_writer_set_value(w, key, &v);              \
    }
SETTER(spin_gguf_writer_set_u32, uint32_t, SPIN_GGUF_U32, u)
SETTER(spin_gguf_writer_set_i32, int32_t, SPIN_GGUF_I32, i)
SETTER(spin_gguf_writer_set_u64, uint64_t, SPIN_GGUF_U64, u)
SETTER(spin_gguf_writer_set_i64, int64_t, SPIN_GGUF_I64, i)
SETTER(spin_gguf_writer_set_f32, float, SPIN_GGUF_F32, f)
SETTER(spin_gguf_writer_set_f64, double, SPIN_GGUF_F64, f)
SETTER(spin_gguf_writer_set_bool, bool, SPIN_GGUF_BOOL, b)
#undef SETTER

spin_status spin_gguf_writer_set_string(spin_gguf_writer *w, const char *key, const char *s) {
    spin_gguf_value v = {.type = SPIN_GGUF_STRING};
    v.v.str.s = s;
    v.v.str.len = strlen(s);
    return spin_gguf_writer_set_value(w, key, &v);
}

spin_status spin_gguf_writer_set_arr(spin_gguf_writer *w, const char *key, spin_gguf_vtype elem, int64_t n,
                                     const void *data) {
    if (!gguf_vtype_size(elem) || n < 0)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: metadata key '%s': numeric arrays cannot hold %s",
                         key, spin_gguf_vtype_name(elem));
    spin_gguf_value v = {.type = SPIN_GGUF_ARRAY};
    v.v.arr.elem = elem;
    v.v.arr.n = (uint64_t)n;
    v.v.arr.raw = data;
    return spin_gguf_writer_set_value(w, key, &v);
}

spin_status spin_gguf_writer_set_arr_str(spin_gguf_writer *w, const char *key, int64_t n,
                                         const char *const *strs) {
    if (n < 0)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: metadata key '%s': negative length", key);
    spin_gguf_str *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s)
        return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
    for (int64_t i = 0; i < n; i++) {
        s[i].s = strs[i];
        s[i].len = strlen(strs[i]);
    }
    spin_gguf_value v = {.type = SPIN_GGUF_ARRAY};
    v.v.arr.elem = SPIN_GGUF_STRING;
    v.v.arr.n = (uint64_t)n;
    v.v.arr.strs = s;
    spin_status st = spin_gguf_writer_set_value(w, key, &v);
    free(s);
    return st;
}

static spin_status add_tensor(spin_gguf_writer *w, const char *name, spin_ggml_type type, int ndim,
                              const int64_t *shape, const float *host, spin_tensor *dev) {
    if (!name || !*name || strlen(name) >= GGUF_MAX_NAME)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: tensor name '%s' is empty or longer than %d bytes",
                         name ? name : "", GGUF_MAX_NAME - 1);
    if (type != SPIN_GGML_F32 && type != SPIN_GGML_F16)
        return spin_fail(SPIN_ERR_UNSUPPORTED, "GGUF writer: tensor '%s': only F32 and F16 can be written",
                         name);
    if (ndim < 1 || ndim > 4)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: tensor '%s' has %d dims (1 to 4 are valid)", name,
                         ndim);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] <= 0 || numel > INT64_MAX / 8 / shape[d])
            return spin_fail(SPIN_ERR_INVALID, "GGUF writer: tensor '%s' has a bad dim %lld", name,
                             (long long)shape[d]);
        numel *= shape[d];
    }
    for (int64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return spin_fail(SPIN_ERR_INVALID, "GGUF writer: duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        int64_t cap = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t)
            return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
        w->t = t;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return spin_fail(SPIN_ERR_OOM, "GGUF writer: out of memory");
    t->type = type;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++)
        t->shape[d] = shape[d];
    t->numel = numel;
    t->host = host;
    t->dev = dev ? spin_tensor_retain(dev) : NULL;
    w->n_t++;
    return SPIN_OK;
}

spin_status spin_gguf_writer_add_tensor(spin_gguf_writer *w, const char *name, spin_ggml_type type, int ndim,
                                        const int64_t *shape, const float *data) {
    if (!data)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: tensor '%s' has no data", name ? name : "");
    return add_tensor(w, name, type, ndim, shape, data, NULL);
}

spin_status spin_gguf_writer_add_device_tensor(spin_gguf_writer *w, const char *name, spin_ggml_type type,
                                               spin_tensor *t) {
    if (!t)
        return spin_fail(SPIN_ERR_INVALID, "GGUF writer: tensor '%s' is NULL", name ? name : "");
    return add_tensor(w, name, type, spin_tensor_ndim(t), spin_tensor_shape(t), NULL, t);
}

/* ---- serialisation ---- */
typedef struct {
    FILE *f;
    const char *path;
    bool failed;
    uint64_t pos;
} out_file;

static void put_bytes(out_file *o, const void *p, size_t n) {
    if (o->failed || n == 0)
        return;
    if (fwrite(p, 1, n, o->f) != n)
        o->failed = true;
    o->pos += n;
}
static void put_u32(out_file *o, uint32_t v) {
    put_bytes(o, &v, 4);
}
static void put_u64(out_file *o, uint64_t v) {
    put_bytes(o, &v, 8);
}
static void put_str(out_file *o, const char *s, uint64_t len) {
    put_u64(o, len);
    put_bytes(o, s, len);
}

static void put_scalar(out_file *o, const spin_gguf_value *v) {
    uint8_t b[8];
    switch (v->type) {
    case SPIN_GGUF_U8:
    case SPIN_GGUF_I8:
        b[0] = (uint8_t)v->v.u;
        put_bytes(o, b, 1);
        break;
    case SPIN_GGUF_BOOL:
        b[0] = v->v.b ? 1 : 0;
        put_bytes(o, b, 1);
        break;
    case SPIN_GGUF_U16:
    case SPIN_GGUF_I16: {
        uint16_t x = (uint16_t)v->v.u;
        put_bytes(o, &x, 2);
        break;
    }
    case SPIN_GGUF_U32:
    case SPIN_GGUF_I32: {
        uint32_t x = (uint32_t)v->v.u;
        put_bytes(o, &x, 4);
        break;
    }
    case SPIN_GGUF_F32: {
        float x = (float)v->v.f;
        put_bytes(o, &x, 4);
        break;
    }
    case SPIN_GGUF_U64:
    case SPIN_GGUF_I64: put_bytes(o, &v->v.u, 8); break;
    case SPIN_GGUF_F64: put_bytes(o, &v->v.f, 8); break;
    default: break;
    }
}

static void put_value(out_file *o, const spin_gguf_value *v, bool with_type) {
    if (with_type)
        put_u32(o, (uint32_t)v->type);
    if (v->type == SPIN_GGUF_STRING) {
        put_str(o, v->v.str.s, v->v.str.len);
    } else if (v->type == SPIN_GGUF_ARRAY) {
        put_u32(o, (uint32_t)v->v.arr.elem);
        put_u64(o, v->v.arr.n);
        if (v->v.arr.elem == SPIN_GGUF_STRING)
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                put_str(o, v->v.arr.strs[i].s, v->v.arr.strs[i].len);
        else if (v->v.arr.elem == SPIN_GGUF_ARRAY)
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                put_value(o, &v->v.arr.arrs[i], false);
        else
            put_bytes(o, v->v.arr.raw, (size_t)v->v.arr.n * gguf_vtype_size(v->v.arr.elem));
    } else {
        put_scalar(o, v);
    }
}

static void put_pad(out_file *o, uint32_t a) {
    static const uint8_t zeros[256];
    uint64_t pad = (a - o->pos % a) % a;
    while (pad) {
        uint64_t n = pad < sizeof zeros ? pad : sizeof zeros;
        put_bytes(o, zeros, (size_t)n);
        pad -= n;
    }
}

static uint64_t tensor_bytes(const wtensor *t) {
    return (uint64_t)t->numel * (t->type == SPIN_GGML_F32 ? 4u : 2u);
}

static spin_status put_tensor_data(out_file *o, wtensor *t) {
    const float *src = t->host;
    float *owned = NULL;
    if (t->dev) {
        owned = malloc((size_t)t->numel * sizeof *owned);
        if (!owned)
            return spin_fail(SPIN_ERR_OOM, "%s: out of memory for tensor '%s'", o->path, t->name);
        spin_status s = spin_tensor_read_f32(t->dev, owned, t->numel);
        if (s != SPIN_OK) {
            char why[256]; /* spin_fail formats into the buffer spin_last_error returns */
            snprintf(why, sizeof why, "%s", spin_last_error());
            free(owned);
            return spin_fail(s, "%s: reading tensor '%s' from its device: %s", o->path, t->name, why);
        }
        src = owned;
    }
    if (t->type == SPIN_GGML_F32) {
        put_bytes(o, src, (size_t)t->numel * 4);
    } else {
        uint16_t buf[4096];
        for (int64_t i = 0; i < t->numel; i += 4096) {
            int64_t n = t->numel - i < 4096 ? t->numel - i : 4096;
            for (int64_t j = 0; j < n; j++)
                buf[j] = spin_f32_to_f16(src[i + j]);
            put_bytes(o, buf, (size_t)n * 2);
        }
    }
    free(owned);
    return SPIN_OK;
}

static spin_status write_all(spin_gguf_writer *w, out_file *o) {
    put_bytes(o, "GGUF", 4);
    put_u32(o, 3);
    put_u64(o, (uint64_t)w->n_t);
    put_u64(o, (uint64_t)w->n_kv);
    for (int64_t i = 0; i < w->n_kv; i++) {
        put_str(o, w->kv[i].key, strlen(w->kv[i].key));
        put_value(o, &w->kv[i].v, true);
    }
    uint64_t off = 0, a = w->alignment;
    for (int64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        put_str(o, t->name, strlen(t->name));
        put_u32(o, (uint32_t)t->ndim);
        for (int d = t->ndim - 1; d >= 0; d--) /* ggml order: fastest dim first */
            put_u64(o, (uint64_t)t->shape[d]);
        put_u32(o, (uint32_t)t->type);
        put_u64(o, off);
        t->offset = off;
        off += tensor_bytes(t);
        off += (a - off % a) % a;
    }
    put_pad(o, w->alignment);
    for (int64_t i = 0; i < w->n_t; i++) {
        SPIN_TRY(put_tensor_data(o, &w->t[i]));
        put_pad(o, w->alignment);
    }
    return SPIN_OK;
}

static void fsync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

spin_status spin_gguf_writer_write(spin_gguf_writer *w, const char *path, bool overwrite) {
    struct stat st;
    if (!overwrite && stat(path, &st) == 0)
        return spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten)", path);
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 5);
    if (!tmp)
        return spin_fail(SPIN_ERR_OOM, "%s: out of memory", path);
    memcpy(tmp, path, pl);
    memcpy(tmp + pl, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        spin_status s = spin_fail(SPIN_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return s;
    }
    out_file o = {fdopen(fd, "wb"), path, false, 0};
    if (!o.f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        return spin_fail(SPIN_ERR_IO, "%s: fdopen failed", path);
    }
    spin_status s = write_all(w, &o);
    if (s == SPIN_OK && (o.failed || fflush(o.f) != 0 || fsync(fileno(o.f)) != 0))
        s = spin_fail(SPIN_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    if (fclose(o.f) != 0 && s == SPIN_OK)
        s = spin_fail(SPIN_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (s == SPIN_OK) {
        if (overwrite) {
            if (rename(tmp, path) != 0)
                s = spin_fail(SPIN_ERR_IO, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        } else if (link(tmp, path) != 0) {
            /* link refuses to replace a file atomically; filesystems without hard links fall back
             * to check-then-rename */
            if (errno == EEXIST)
                s = spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten)", path);
            else if (stat(path, &st) == 0)
                s = spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten)", path);
            else if (rename(tmp, path) != 0)
                s = spin_fail(SPIN_ERR_IO, "%s: rename from %s failed: %s", path, tmp, strerror(errno));
        }
    }
    unlink(tmp); /* after link (or a failure); harmless after rename */
    free(tmp);
    if (s == SPIN_OK)
        fsync_dir_of(path);
    return s;
}
