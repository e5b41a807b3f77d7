/* GGUF reader: memory-map, validate everything once, then serve metadata and tensors. */
#define _POSIX_C_SOURCE 200809L
#include "models/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/gguf_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define GGUF_MAX_DEPTH 8

/* ---- arena: every parsed string and value array lives here, freed at close ---- */
typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
} arena_block;

static void *arena_alloc(arena_block **head, size_t n) {
    n = (n + 15) & ~(size_t)15;
    arena_block *b = *head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > ((size_t)1 << 20) ? n : ((size_t)1 << 20);
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = *head;
        b->cap = cap;
        b->used = 0;
        *head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

static void arena_free(arena_block *b) {
    while (b) {
        arena_block *n = b->next;
        free(b);
        b = n;
    }
}

/* ---- hash index (open addressing, FNV-1a) ---- */
static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

typedef struct {
    int64_t *slots; /* index + 1, 0 = empty */
    uint64_t mask;
} name_index;

static bool index_init(name_index *ix, int64_t n) {
    uint64_t cap = 16;
    while (cap < (uint64_t)n * 2)
        cap <<= 1;
    ix->slots = calloc(cap, sizeof *ix->slots);
    ix->mask = cap - 1;
    return ix->slots != NULL;
}

/* Inserts idx under name unless present; returns the existing index or -1. */
static int64_t index_put(name_index *ix, const char *name, int64_t idx,
                         const char *(*name_of)(const void *, int64_t), const void *ctx) {
    for (uint64_t h = fnv1a(name) & ix->mask;; h = (h + 1) & ix->mask) {
        if (!ix->slots[h]) {
            ix->slots[h] = idx + 1;
            return -1;
        }
        if (strcmp(name_of(ctx, ix->slots[h] - 1), name) == 0)
            return ix->slots[h] - 1;
    }
}

static int64_t index_get(const name_index *ix, const char *name,
                         const char *(*name_of)(const void *, int64_t), const void *ctx) {
    if (!ix->slots)
        return -1;
    for (uint64_t h = fnv1a(name) & ix->mask;; h = (h + 1) & ix->mask) {
        if (!ix->slots[h])
            return -1;
        if (strcmp(name_of(ctx, ix->slots[h] - 1), name) == 0)
            return ix->slots[h] - 1;
    }
}

/* ---- the open file ---- */
typedef struct {
    const char *key;
    spin_gguf_value value;
} gguf_kv;

struct spin_gguf {
    char *path;
    const uint8_t *map;
    uint64_t size;
    uint32_t version, alignment;
    uint64_t data_offset;
    int64_t n_kv, n_tensors;
    gguf_kv *kv;
    spin_gguf_tensor *tensors;
    name_index kv_index, tensor_index;
    arena_block *arena;
};

static const char *kv_name_of(const void *ctx, int64_t i) {
    return ((const spin_gguf *)ctx)->kv[i].key;
}
static const char *tensor_name_of(const void *ctx, int64_t i) {
    return ((const spin_gguf *)ctx)->tensors[i].name;
}

/* ---- cursor over the mapping; every read is bounds-checked ---- */
typedef struct {
    spin_gguf *g;
    uint64_t pos;
    const char *what; /* what is being read, for messages */
} cursor;

static spin_status truncated(cursor *c, uint64_t need) {
    return spin_fail(
        SPIN_ERR_INVALID,
        "%s: truncated or corrupt GGUF: %s needs %llu bytes at offset %llu but the file has %llu", c->g->path,
        c->what, (unsigned long long)need, (unsigned long long)c->pos, (unsigned long long)c->g->size);
}

static spin_status rd(cursor *c, void *dst, uint64_t n) {
    if (n > c->g->size - c->pos)
        return truncated(c, n);
    memcpy(dst, c->g->map + c->pos, n);
    c->pos += n;
    return SPIN_OK;
}

static spin_status rd_u32(cursor *c, uint32_t *v) {
    return rd(c, v, 4);
}
static spin_status rd_u64(cursor *c, uint64_t *v) {
    return rd(c, v, 8);
}

static uint64_t remaining(const cursor *c) {
    return c->g->size - c->pos;
}

static spin_status rd_str(cursor *c, spin_gguf_str *out) {
    uint64_t len = 0;
    SPIN_TRY(rd_u64(c, &len));
    if (len > remaining(c))
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: corrupt GGUF: %s has a string of %llu bytes at offset %llu, past the end of "
                         "the file (%llu bytes)",
                         c->g->path, c->what, (unsigned long long)len, (unsigned long long)(c->pos - 8),
                         (unsigned long long)c->g->size);
    char *s = arena_alloc(&c->g->arena, len + 1);
    if (!s)
        return spin_fail(SPIN_ERR_OOM, "%s: out of memory reading %s", c->g->path, c->what);
    memcpy(s, c->g->map + c->pos, len);
    s[len] = 0;
    c->pos += len;
    out->s = s;
    out->len = len;
    return SPIN_OK;
}

static const char *const vtype_names[SPIN_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"};

const char *spin_gguf_vtype_name(spin_gguf_vtype t) {
    return (unsigned)t < SPIN_GGUF_VTYPE_COUNT ? vtype_names[t] : "unknown";
}

size_t gguf_vtype_size(spin_gguf_vtype t) {
    switch (t) {
    case SPIN_GGUF_U8:
    case SPIN_GGUF_I8:
    case SPIN_GGUF_BOOL: return 1;
    case SPIN_GGUF_U16:
    case SPIN_GGUF_I16: return 2;
    case SPIN_GGUF_U32:
    case SPIN_GGUF_I32:
    case SPIN_GGUF_F32: return 4;
    case SPIN_GGUF_U64:
    case SPIN_GGUF_I64:
    case SPIN_GGUF_F64: return 8;
    default: return 0;
    }
}

/* Decodes one scalar from little-endian bytes into a value. */
void gguf_decode_scalar(spin_gguf_vtype t, const uint8_t *p, spin_gguf_value *v) {
    v->type = t;
    switch (t) {
    case SPIN_GGUF_U8: v->v.u = p[0]; break;
    case SPIN_GGUF_I8: v->v.i = (int8_t)p[0]; break;
    case SPIN_GGUF_BOOL: v->v.b = p[0] != 0; break;
    case SPIN_GGUF_U16: {
        uint16_t x;
        memcpy(&x, p, 2);
        v->v.u = x;
        break;
    }
    case SPIN_GGUF_I16: {
        int16_t x;
        memcpy(&x, p, 2);
        v->v.i = x;
        break;
    }
    case SPIN_GGUF_U32: {
        uint32_t x;
        memcpy(&x, p, 4);
        v->v.u = x;
        break;
    }
    case SPIN_GGUF_I32: {
        int32_t x;
        memcpy(&x, p, 4);
        v->v.i = x;
        break;
    }
    case SPIN_GGUF_F32: {
        float x;
        memcpy(&x, p, 4);
        v->v.f = x;
        break;
    }
    case SPIN_GGUF_U64: memcpy(&v->v.u, p, 8); break;
    case SPIN_GGUF_I64: memcpy(&v->v.i, p, 8); break;
    case SPIN_GGUF_F64: memcpy(&v->v.f, p, 8); break;
    default: break;
    }
}

static spin_status rd_value(cursor *c, spin_gguf_vtype t, spin_gguf_value *v, int depth);

static spin_status rd_array(cursor *c, spin_gguf_value *v, int depth) {
    uint32_t elem = 0;
    uint64_t n = 0;
    SPIN_TRY(rd_u32(c, &elem));
    SPIN_TRY(rd_u64(c, &n));
    if (elem >= SPIN_GGUF_VTYPE_COUNT)
        return spin_fail(SPIN_ERR_INVALID, "%s: corrupt GGUF: %s is an array of unknown value type %u",
                         c->g->path, c->what, elem);
    if (depth >= GGUF_MAX_DEPTH)
        return spin_fail(SPIN_ERR_INVALID, "%s: corrupt GGUF: %s nests arrays deeper than %d", c->g->path,
                         c->what, GGUF_MAX_DEPTH);
    uint64_t min_size = elem == SPIN_GGUF_STRING ? 8 : elem == SPIN_GGUF_ARRAY ? 12 : gguf_vtype_size(elem);
    if (n > remaining(c) / min_size)
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: corrupt GGUF: %s is an array of %llu %s values at offset %llu, more than the "
                         "%llu bytes left in the file can hold",
                         c->g->path, c->what, (unsigned long long)n, spin_gguf_vtype_name(elem),
                         (unsigned long long)c->pos, (unsigned long long)remaining(c));
    v->type = SPIN_GGUF_ARRAY;
    v->v.arr.elem = elem;
    v->v.arr.n = n;
    v->v.arr.raw = NULL;
    v->v.arr.strs = NULL;
    v->v.arr.arrs = NULL;
    if (elem == SPIN_GGUF_STRING) {
        spin_gguf_str *s = arena_alloc(&c->g->arena, (n ? n : 1) * sizeof *s);
        if (!s)
            return spin_fail(SPIN_ERR_OOM, "%s: out of memory reading %s", c->g->path, c->what);
        for (uint64_t i = 0; i < n; i++)
            SPIN_TRY(rd_str(c, &s[i]));
        v->v.arr.strs = s;
    } else if (elem == SPIN_GGUF_ARRAY) {
        spin_gguf_value *a = arena_alloc(&c->g->arena, (n ? n : 1) * sizeof *a);
        if (!a)
            return spin_fail(SPIN_ERR_OOM, "%s: out of memory reading %s", c->g->path, c->what);
        for (uint64_t i = 0; i < n; i++)
            SPIN_TRY(rd_value(c, SPIN_GGUF_ARRAY, &a[i], depth + 1));
        v->v.arr.arrs = a;
    } else {
        if (elem == SPIN_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (c->g->map[c->pos + i] > 1)
                    return spin_fail(SPIN_ERR_INVALID,
                                     "%s: corrupt GGUF: %s holds a bool that is neither 0 nor 1", c->g->path,
                                     c->what);
        v->v.arr.raw = c->g->map + c->pos;
        c->pos += n * min_size;
    }
    return SPIN_OK;
}

static spin_status rd_value(cursor *c, spin_gguf_vtype t, spin_gguf_value *v, int depth) {
    if (t == SPIN_GGUF_STRING) {
        v->type = t;
        return rd_str(c, &v->v.str);
    }
    if (t == SPIN_GGUF_ARRAY)
        return rd_array(c, v, depth);
    size_t sz = gguf_vtype_size(t);
    if (!sz)
        return spin_fail(SPIN_ERR_INVALID, "%s: corrupt GGUF: %s has unknown value type %u", c->g->path,
                         c->what, (unsigned)t);
    if (sz > remaining(c))
        return truncated(c, sz);
    if (t == SPIN_GGUF_BOOL && c->g->map[c->pos] > 1)
        return spin_fail(SPIN_ERR_INVALID, "%s: corrupt GGUF: %s is a bool that is neither 0 nor 1",
                         c->g->path, c->what);
    gguf_decode_scalar(t, c->g->map + c->pos, v);
    c->pos += sz;
    return SPIN_OK;
}

/* ---- ggml types ---- */
typedef struct {
    const char *name;
    int64_t blck, size;
} ggml_type_info;

/* Ids, block sizes and bytes per block as in ggml.c's type_traits (removed ids stay NULL). */
static const ggml_type_info ggml_types[] = {
    [0] = {"F32", 1, 4},         [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},
    [3] = {"Q4_1", 32, 20},      [6] = {"Q5_0", 32, 22},      [7] = {"Q5_1", 32, 24},
    [8] = {"Q8_0", 32, 34},      [9] = {"Q8_1", 32, 36},      [10] = {"Q2_K", 256, 84},
    [11] = {"Q3_K", 256, 110},   [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},   [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66},
    [17] = {"IQ2_XS", 256, 74},  [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},
    [20] = {"IQ4_NL", 32, 18},   [21] = {"IQ3_S", 256, 110},  [22] = {"IQ2_S", 256, 82},
    [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},        [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},
    [29] = {"IQ1_M", 256, 56},   [30] = {"BF16", 1, 2},       [34] = {"TQ1_0", 256, 54},
    [35] = {"TQ2_0", 256, 66},   [39] = {"MXFP4", 32, 17},
};

const char *spin_ggml_type_name(uint32_t type) {
    return type < sizeof ggml_types / sizeof ggml_types[0] ? ggml_types[type].name : NULL;
}

bool spin_ggml_type_block(uint32_t type, int64_t *block_elems, int64_t *block_bytes) {
    if (!spin_ggml_type_name(type))
        return false;
    *block_elems = ggml_types[type].blck;
    *block_bytes = ggml_types[type].size;
    return true;
}

/* ---- open ---- */
static spin_status parse(spin_gguf *g) {
    cursor c = {g, 0, "the header"};
    char magic[4] = {0};
    SPIN_TRY(rd(&c, magic, 4));
    if (memcmp(magic, "GGUF", 4) != 0)
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")", g->path,
                         (unsigned char)magic[0], (unsigned char)magic[1], (unsigned char)magic[2],
                         (unsigned char)magic[3]);
    SPIN_TRY(rd_u32(&c, &g->version));
    if (g->version != 2 && g->version != 3)
        return spin_fail(
            SPIN_ERR_INVALID, "%s: GGUF version %u is not supported (2 and 3 are)%s", g->path, g->version,
            (g->version & 0xffff) == 0 ? " (a big-endian file? only little-endian is supported)" : "");
    uint64_t n_tensors = 0, n_kv = 0;
    SPIN_TRY(rd_u64(&c, &n_tensors));
    SPIN_TRY(rd_u64(&c, &n_kv));
    /* a metadata entry takes at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8 */
    if (n_kv > remaining(&c) / 13)
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: corrupt GGUF: the header says %llu metadata entries but the file has only %llu "
                         "bytes after the header",
                         g->path, (unsigned long long)n_kv, (unsigned long long)remaining(&c));
    if (n_tensors > remaining(&c) / 32)
        return spin_fail(
            SPIN_ERR_INVALID,
            "%s: corrupt GGUF: the header says %llu tensors but the file has only %llu bytes after "
            "the header",
            g->path, (unsigned long long)n_tensors, (unsigned long long)remaining(&c));
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;
    g->kv = calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors || !index_init(&g->kv_index, g->n_kv) ||
        !index_init(&g->tensor_index, g->n_tensors))
        return spin_fail(SPIN_ERR_OOM, "%s: out of memory", g->path);

    char what[96];
    for (int64_t i = 0; i < g->n_kv; i++) {
        snprintf(what, sizeof what, "metadata entry %lld's key", (long long)i);
        c.what = what;
        spin_gguf_str key = {0};
        SPIN_TRY(rd_str(&c, &key));
        if (strlen(key.s) != key.len || key.len == 0)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: corrupt GGUF: metadata entry %lld has an empty key or a NUL in it", g->path,
                             (long long)i);
        g->kv[i].key = key.s;
        snprintf(what, sizeof what, "metadata key '%.60s'", key.s);
        uint32_t t = 0;
        SPIN_TRY(rd_u32(&c, &t));
        if (t >= SPIN_GGUF_VTYPE_COUNT)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: corrupt GGUF: metadata key '%s' has unknown value type %u", g->path, key.s,
                             t);
        SPIN_TRY(rd_value(&c, (spin_gguf_vtype)t, &g->kv[i].value, 0));
        if (index_put(&g->kv_index, key.s, i, kv_name_of, g) >= 0)
            return spin_fail(SPIN_ERR_INVALID, "%s: corrupt GGUF: duplicate metadata key '%s'", g->path,
                             key.s);
    }

    g->alignment = 32;
    int64_t ai = spin_gguf_find_key(g, "general.alignment");
    if (ai >= 0) {
        const spin_gguf_value *v = &g->kv[ai].value;
        if (v->type != SPIN_GGUF_U32)
            return spin_fail(SPIN_ERR_INVALID, "%s: general.alignment has type %s, expected u32", g->path,
                             spin_gguf_vtype_name(v->type));
        if (v->v.u == 0 || (v->v.u & (v->v.u - 1)) != 0)
            return spin_fail(SPIN_ERR_INVALID, "%s: general.alignment %llu is not a power of two", g->path,
                             (unsigned long long)v->v.u);
        g->alignment = (uint32_t)v->v.u;
    }

    for (int64_t i = 0; i < g->n_tensors; i++) {
        spin_gguf_tensor *t = &g->tensors[i];
        snprintf(what, sizeof what, "tensor info %lld's name", (long long)i);
        c.what = what;
        spin_gguf_str name = {0};
        SPIN_TRY(rd_str(&c, &name));
        if (strlen(name.s) != name.len || name.len == 0)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: corrupt GGUF: tensor %lld has an empty name or a NUL in it", g->path,
                             (long long)i);
        t->name = name.s;
        snprintf(what, sizeof what, "tensor '%.60s' info", name.s);
        uint32_t n_dims = 0;
        SPIN_TRY(rd_u32(&c, &n_dims));
        if (n_dims < 1 || n_dims > 4)
            return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has %u dims (1 to 4 are valid)", g->path,
                             t->name, n_dims);
        t->n_dims = (int)n_dims;
        uint64_t numel = 1;
        bool overflow = false;
        for (int d = 0; d < 4; d++) {
            uint64_t ne = 1;
            if (d < t->n_dims)
                SPIN_TRY(rd_u64(&c, &ne));
            if (ne > (uint64_t)INT64_MAX)
                overflow = true;
            else if (ne && numel > (uint64_t)INT64_MAX / ne)
                overflow = true;
            else
                numel *= ne;
            t->ne[d] = (int64_t)ne;
        }
        if (overflow)
            return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has dims whose product overflows 64 bits",
                             g->path, t->name);
        for (int d = 0; d < t->n_dims; d++)
            t->shape[d] = t->ne[t->n_dims - 1 - d];
        for (int d = t->n_dims; d < 4; d++)
            t->shape[d] = 1;
        t->numel = (int64_t)numel;
        SPIN_TRY(rd_u32(&c, &t->type));
        SPIN_TRY(rd_u64(&c, &t->offset));
        int64_t blck = 1, bsz = 1;
        if (!spin_ggml_type_block(t->type, &blck, &bsz))
            return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has unknown ggml type id %u", g->path,
                             t->name, t->type);
        if (t->ne[0] % blck != 0)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: tensor '%s' (%s) has ne[0] = %lld, not a multiple of the block size %lld",
                             g->path, t->name, spin_ggml_type_name(t->type), (long long)t->ne[0],
                             (long long)blck);
        uint64_t blocks = numel / (uint64_t)blck;
        if (blocks > UINT64_MAX / (uint64_t)bsz || blocks * (uint64_t)bsz > g->size)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: tensor '%s' (%lld elements of %s) is larger than the file", g->path,
                             t->name, (long long)numel, spin_ggml_type_name(t->type));
        t->nbytes = blocks * (uint64_t)bsz;
        if (t->offset % g->alignment != 0)
            return spin_fail(SPIN_ERR_INVALID,
                             "%s: tensor '%s' has offset %llu, not a multiple of the alignment %u", g->path,
                             t->name, (unsigned long long)t->offset, g->alignment);
        if (index_put(&g->tensor_index, t->name, i, tensor_name_of, g) >= 0)
            return spin_fail(SPIN_ERR_INVALID, "%s: corrupt GGUF: duplicate tensor name '%s'", g->path,
                             t->name);
    }

    uint64_t a = g->alignment;
    g->data_offset = c.pos + (a - c.pos % a) % a;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        spin_gguf_tensor *t = &g->tensors[i];
        if (g->data_offset > g->size || t->offset > g->size - g->data_offset ||
            t->nbytes > g->size - g->data_offset - t->offset)
            return spin_fail(
                SPIN_ERR_INVALID,
                "%s: truncated or corrupt GGUF: tensor '%s' data (%llu bytes at data offset %llu, "
                "file offset %llu) extends past the end of the file (%llu bytes)",
                g->path, t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                (unsigned long long)(g->data_offset + t->offset), (unsigned long long)g->size);
        t->data = g->map + g->data_offset + t->offset;
    }
    return SPIN_OK;
}

spin_gguf *spin_gguf_open(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        spin_fail(SPIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        spin_fail(SPIN_ERR_IO, "%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    spin_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        close(fd);
        spin_fail(SPIN_ERR_OOM, "%s: out of memory", path);
        return NULL;
    }
    g->size = (uint64_t)st.st_size;
    if (g->size > 0) {
        void *m = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            spin_fail(SPIN_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
            close(fd);
            spin_gguf_close(g);
            return NULL;
        }
        g->map = m;
    } else {
        g->map = (const uint8_t *)"";
    }
    close(fd);
    if (parse(g) != SPIN_OK) {
        spin_gguf_close(g);
        return NULL;
    }
    return g;
}

void spin_gguf_close(spin_gguf *g) {
    if (!g)
        return;
    if (g->map && g->size)
        munmap((void *)g->map, g->size);
    free(g->kv);
    free(g->tensors);
    free(g->kv_index.slots);
    free(g->tensor_index.slots);
    arena_free(g->arena);
    free(g->path);
    free(g);
}

const char *spin_gguf_path(const spin_gguf *g) {
    return g->path;
}
uint32_t spin_gguf_version(const spin_gguf *g) {
    return g->version;
}
uint32_t spin_gguf_alignment(const spin_gguf *g) {
    return g->alignment;
}
uint64_t spin_gguf_data_offset(const spin_gguf *g) {
    return g->data_offset;
}
int64_t spin_gguf_n_kv(const spin_gguf *g) {
    return g->n_kv;
}
const char *spin_gguf_kv_key(const spin_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}
const spin_gguf_value *spin_gguf_kv_value(const spin_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kv[i].value : NULL;
}
int64_t spin_gguf_find_key(const spin_gguf *g, const char *key) {
    return index_get(&g->kv_index, key, kv_name_of, g);
}
const spin_gguf_value *spin_gguf_get(const spin_gguf *g, const char *key) {
    int64_t i = spin_gguf_find_key(g, key);
    if (i < 0) {
        spin_fail(SPIN_ERR_INVALID, "%s: metadata key '%s' is missing", g->path, key);
        return NULL;
    }
    return &g->kv[i].value;
}

/* ---- typed getters ---- */
static spin_status wrong_type(const spin_gguf *g, const char *key, const spin_gguf_value *v,
                              const char *want) {
    return spin_fail(SPIN_ERR_INVALID, "%s: metadata key '%s' has type %s, expected %s", g->path, key,
                     spin_gguf_vtype_name(v->type), want);
}

static bool is_unsigned(spin_gguf_vtype t) {
    return t == SPIN_GGUF_U8 || t == SPIN_GGUF_U16 || t == SPIN_GGUF_U32 || t == SPIN_GGUF_U64;
}
static bool is_signed(spin_gguf_vtype t) {
    return t == SPIN_GGUF_I8 || t == SPIN_GGUF_I16 || t == SPIN_GGUF_I32 || t == SPIN_GGUF_I64;
}

/* An integer value as (sign, magnitude-ish) checked against [lo, hi]. */
static spin_status get_int(const spin_gguf *g, const char *key, int64_t lo, uint64_t hi, const char *want,
                           bool *neg, uint64_t *mag) {
    const spin_gguf_value *v = spin_gguf_get(g, key);
    if (!v)
        return SPIN_ERR_INVALID;
    if (is_unsigned(v->type)) {
        *neg = false;
        *mag = v->v.u;
        if (v->v.u > hi)
            goto range;
        return SPIN_OK;
    }
    if (is_signed(v->type)) {
        *neg = v->v.i < 0;
        *mag = (uint64_t)v->v.i;
        if (v->v.i < lo || (v->v.i >= 0 && (uint64_t)v->v.i > hi))
            goto range;
        return SPIN_OK;
    }
    return wrong_type(g, key, v, want);
range:
    return spin_fail(SPIN_ERR_INVALID, "%s: metadata key '%s' (%s) is out of range for %s", g->path, key,
                     spin_gguf_vtype_name(v->type), want);
}

spin_status spin_gguf_get_u32(const spin_gguf *g, const char *key, uint32_t *out) {
    bool neg = false;
    uint64_t m = 0;
    SPIN_TRY(get_int(g, key, 0, UINT32_MAX, "u32", &neg, &m));
    *out = (uint32_t)m;
    return SPIN_OK;
}
spin_status spin_gguf_get_i32(const spin_gguf *g, const char *key, int32_t *out) {
    bool neg = false;
    uint64_t m = 0;
    SPIN_TRY(get_int(g, key, INT32_MIN, INT32_MAX, "i32", &neg, &m));
    *out = (int32_t)(int64_t)m;
    return SPIN_OK;
}
spin_status spin_gguf_get_u64(const spin_gguf *g, const char *key, uint64_t *out) {
    bool neg = false;
    uint64_t m = 0;
    SPIN_TRY(get_int(g, key, 0, UINT64_MAX, "u64", &neg, &m));
    *out = m;
    return SPIN_OK;
}
spin_status spin_gguf_get_i64(const spin_gguf *g, const char *key, int64_t *out) {
    bool neg = false;
    uint64_t m = 0;
    SPIN_TRY(get_int(g, key, INT64_MIN, INT64_MAX, "i64", &neg, &m));
    *out = (int64_t)m;
    return SPIN_OK;
}
spin_status spin_gguf_get_f64(const spin_gguf *g, const char *key, double *out) {
    const spin_gguf_value *v = spin_gguf_get(g, key);
    if (!v)
        return SPIN_ERR_INVALID;
    if (v->type != SPIN_GGUF_F32 && v->type != SPIN_GGUF_F64)
        return wrong_type(g, key, v, "f32 or f64");
    *out = v->v.f;
    return SPIN_OK;
}
spin_status spin_gguf_get_f32(const spin_gguf *g, const char *key, float *out) {
    double d = 0;
    SPIN_TRY(spin_gguf_get_f64(g, key, &d));
    *out = (float)d;
    return SPIN_OK;
}
spin_status spin_gguf_get_bool(const spin_gguf *g, const char *key, bool *out) {
    const spin_gguf_value *v = spin_gguf_get(g, key);
    if (!v)
        return SPIN_ERR_INVALID;
    if (v->type != SPIN_GGUF_BOOL)
        return wrong_type(g, key, v, "bool");
    *out = v->v.b;
    return SPIN_OK;
}
spin_status spin_gguf_get_string(const spin_gguf *g, const char *key, const char **out) {
    const spin_gguf_value *v = spin_gguf_get(g, key);
    if (!v)
        return SPIN_ERR_INVALID;
    if (v->type != SPIN_GGUF_STRING)
        return wrong_type(g, key, v, "string");
    *out = v->v.str.s;
    return SPIN_OK;
}

static const spin_gguf_value *get_arr(const spin_gguf *g, const char *key) {
    const spin_gguf_value *v = spin_gguf_get(g, key);
    if (v && v->type != SPIN_GGUF_ARRAY) {
        wrong_type(g, key, v, "array");
        return NULL;
    }
    return v;
}

spin_status spin_gguf_get_arr_len(const spin_gguf *g, const char *key, spin_gguf_vtype *elem, int64_t *n) {
    const spin_gguf_value *v = get_arr(g, key);
    if (!v)
        return SPIN_ERR_INVALID;
    if (elem)
        *elem = v->v.arr.elem;
    *n = (int64_t)v->v.arr.n;
    return SPIN_OK;
}

spin_status spin_gguf_get_arr_str(const spin_gguf *g, const char *key, const spin_gguf_str **items,
                                  int64_t *n) {
    const spin_gguf_value *v = get_arr(g, key);
    if (!v)
        return SPIN_ERR_INVALID;
    if (v->v.arr.elem != SPIN_GGUF_STRING)
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: metadata key '%s' is an array of %s, expected an array of string", g->path, key,
                         spin_gguf_vtype_name(v->v.arr.elem));
    *items = v->v.arr.strs;
    *n = (int64_t)v->v.arr.n;
    return SPIN_OK;
}

/* Converts array elements; kind 0 = i32, 1 = i64, 2 = f32. */
static spin_status get_arr_num(const spin_gguf *g, const char *key, void *dst, int64_t n, int kind) {
    static const char *const want[] = {"i32", "i64", "f32"};
    const spin_gguf_value *v = get_arr(g, key);
    if (!v)
        return SPIN_ERR_INVALID;
    spin_gguf_vtype e = v->v.arr.elem;
    bool ok = kind == 2 ? (e == SPIN_GGUF_F32 || e == SPIN_GGUF_F64) : (is_signed(e) || is_unsigned(e));
    if (!ok)
        return spin_fail(SPIN_ERR_INVALID, "%s: metadata key '%s' is an array of %s, expected an array of %s",
                         g->path, key, spin_gguf_vtype_name(e), want[kind]);
    if ((uint64_t)n != v->v.arr.n)
        return spin_fail(SPIN_ERR_INVALID,
                         "%s: metadata key '%s' has %llu elements, the caller expected %lld", g->path, key,
                         (unsigned long long)v->v.arr.n, (long long)n);
    size_t sz = gguf_vtype_size(e);
    const uint8_t *raw = v->v.arr.raw;
    for (int64_t i = 0; i < n; i++) {
        spin_gguf_value x;
        gguf_decode_scalar(e, raw + (size_t)i * sz, &x);
        if (kind == 2) {
            ((float *)dst)[i] = (float)x.v.f;
            continue;
        }
        bool neg = is_signed(e) && x.v.i < 0;
        uint64_t mag = is_signed(e) ? (uint64_t)x.v.i : x.v.u;
        if (kind == 0) {
            if (neg ? x.v.i < INT32_MIN : mag > INT32_MAX)
                return spin_fail(SPIN_ERR_INVALID,
                                 "%s: metadata key '%s' element %lld is out of range for i32", g->path, key,
                                 (long long)i);
            ((int32_t *)dst)[i] = (int32_t)(int64_t)mag;
        } else {
            if (!neg && mag > INT64_MAX)
                return spin_fail(SPIN_ERR_INVALID,
                                 "%s: metadata key '%s' element %lld is out of range for i64", g->path, key,
                                 (long long)i);
            ((int64_t *)dst)[i] = (int64_t)mag;
        }
    }
    return SPIN_OK;
}

spin_status spin_gguf_get_arr_i32(const spin_gguf *g, const char *key, int32_t *dst, int64_t n) {
    return get_arr_num(g, key, dst, n, 0);
}
spin_status spin_gguf_get_arr_i64(const spin_gguf *g, const char *key, int64_t *dst, int64_t n) {
    return get_arr_num(g, key, dst, n, 1);
}
spin_status spin_gguf_get_arr_f32(const spin_gguf *g, const char *key, float *dst, int64_t n) {
    return get_arr_num(g, key, dst, n, 2);
}

/* ---- tensors ---- */
int64_t spin_gguf_n_tensors(const spin_gguf *g) {
    return g->n_tensors;
}
const spin_gguf_tensor *spin_gguf_tensor_at(const spin_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
const spin_gguf_tensor *spin_gguf_find_tensor(const spin_gguf *g, const char *name) {
    int64_t i = index_get(&g->tensor_index, name, tensor_name_of, g);
    if (i < 0) {
        spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' is missing", g->path, name);
        return NULL;
    }
    return &g->tensors[i];
}

spin_status spin_gguf_tensor_to_f32(const spin_gguf *g, const spin_gguf_tensor *t, float *dst, int64_t n) {
    if (n != t->numel)
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has %lld elements, the caller expected %lld",
                         g->path, t->name, (long long)t->numel, (long long)n);
    spin_status s = spin_ggml_dequantize(t->type, t->data, dst, n);
    if (s != SPIN_OK) {
        char why[256]; /* spin_fail formats into the buffer spin_last_error returns */
        snprintf(why, sizeof why, "%s", spin_last_error());
        return spin_fail(s, "%s: tensor '%s': %s", g->path, t->name, why);
    }
    return SPIN_OK;
}

spin_tensor *spin_gguf_load_f32(const spin_gguf *g, spin_device *dev, const char *name) {
    const spin_gguf_tensor *t = spin_gguf_find_tensor(g, name);
    if (!t)
        return NULL;
    if ((uint64_t)t->numel > SIZE_MAX / sizeof(float)) {
        spin_fail(SPIN_ERR_OOM, "%s: tensor '%s' is too large", g->path, name);
        return NULL;
    }
    float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof *buf);
    if (!buf) {
        spin_fail(SPIN_ERR_OOM, "%s: out of host memory for tensor '%s' (%lld elements)", g->path, name,
                  (long long)t->numel);
        return NULL;
    }
    spin_tensor *out = NULL;
    if (spin_gguf_tensor_to_f32(g, t, buf, t->numel) == SPIN_OK) {
        out = spin_from_host(dev, SPIN_F32, t->n_dims, t->shape, buf);
        if (out)
            spin_tensor_set_name(out, name);
    }
    free(buf);
    return out;
}
