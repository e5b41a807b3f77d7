/* safetensors reading (mmap + json-c) and writing. See models/safetensors.h. */
#define _POSIX_C_SOURCE 200809L
#include "models/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/scope.h"

/* Largest header we accept (the Rust implementation's limit is 100 MB). */
#define ST_MAX_HEADER ((uint64_t)100 << 20)

typedef struct {
    char *path;
    uint8_t *map;
    size_t size;
} st_file;

struct spin_safetensors {
    char *path;
    st_file *files;
    int n_files;
    spin_st_info *infos; /* sorted by name */
    int n, cap;
};

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {{"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
                 {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
                 {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};

static size_t st_dtype_size(const char *s) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(st_dtypes[i].name, s))
            return st_dtypes[i].size;
    return 0;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void spin_st_close(spin_safetensors *st) {
    if (!st)
        return;
    for (int i = 0; i < st->n; i++) {
        free((char *)st->infos[i].name);
        free((char *)st->infos[i].dtype);
    }
    free(st->infos);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map)
            munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->files);
    free(st->path);
    free(st);
}

/* Occurrences of the key "name" (a quoted string followed by optional blanks and ':') in the
 * header text. json-c keeps only the last of duplicate keys, so duplicates are found here. */
static int count_key(const char *text, size_t len, const char *name) {
    size_t nl = strlen(name);
    int count = 0;
    for (size_t i = 0; i + nl + 2 <= len; i++) {
        if (text[i] != '"' || (i > 0 && text[i - 1] == '\\') || memcmp(text + i + 1, name, nl) ||
            text[i + 1 + nl] != '"')
            continue;
        size_t j = i + nl + 2;
        while (j < len && (text[j] == ' ' || text[j] == '\t' || text[j] == '\n' || text[j] == '\r'))
            j++;
        if (j < len && text[j] == ':')
            count++;
    }
    return count;
}

static int cmp_offset(const void *a, const void *b) {
    const spin_st_info *x = *(const spin_st_info *const *)a, *y = *(const spin_st_info *const *)b;
    const uint8_t *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const spin_st_info *)a)->name, ((const spin_st_info *)b)->name);
}

static bool get_i64(json_object *o, int64_t *v) {
    if (!o || !json_object_is_type(o, json_type_int))
        return false;
    errno = 0;
    *v = json_object_get_int64(o);
    return errno == 0;
}

/* Parses one tensor entry of file f into info (strings owned by info). */
static spin_status parse_entry(const char *fpath, const char *name, json_object *e, const uint8_t *data,
                               uint64_t data_len, spin_st_info *info) {
    memset(info, 0, sizeof *info);
    if (!json_object_is_type(e, json_type_object))
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': header entry is not an object", fpath, name);
    json_object *jd, *js, *jo;
    if (!json_object_object_get_ex(e, "dtype", &jd) || !json_object_is_type(jd, json_type_string))
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': missing or non-string \"dtype\"", fpath, name);
    const char *dts = json_object_get_string(jd);
    size_t esize = st_dtype_size(dts);
    if (!esize)
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': unknown dtype \"%s\"", fpath, name, dts);
    if (!json_object_object_get_ex(e, "shape", &js) || !json_object_is_type(js, json_type_array))
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': missing or non-array \"shape\"", fpath, name);
    size_t nd = json_object_array_length(js);
    if (nd > SPIN_ST_MAX_DIMS)
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': %zu dims (at most %d supported)", fpath, name,
                         nd, SPIN_ST_MAX_DIMS);
    uint64_t numel = 1;
    bool overflow = false;
    for (size_t i = 0; i < nd; i++) {
        int64_t d;
        if (!get_i64(json_object_array_get_idx(js, i), &d) || d < 0)
            return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': shape[%zu] is not a non-negative integer",
                             fpath, name, i);
        info->shape[i] = d;
        if (d && numel > UINT64_MAX / 16 / (uint64_t)d)
            overflow = true;
        numel *= (uint64_t)d;
    }
    info->ndim = (int)nd;
    if (!json_object_object_get_ex(e, "data_offsets", &jo) || !json_object_is_type(jo, json_type_array) ||
        json_object_array_length(jo) != 2)
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': \"data_offsets\" must be [begin, end]", fpath,
                         name);
    int64_t b, en;
    if (!get_i64(json_object_array_get_idx(jo, 0), &b) || !get_i64(json_object_array_get_idx(jo, 1), &en) ||
        b < 0 || en < b)
        return spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s': bad data_offsets (need 0 <= begin <= end)",
                         fpath, name);
    if ((uint64_t)en > data_len)
        return spin_fail(
            SPIN_ERR_INVALID,
            "%s: tensor '%s': data_offsets [%lld, %lld] out of range (data buffer is %llu bytes)", fpath,
            name, (long long)b, (long long)en, (unsigned long long)data_len);
    if (overflow || numel * esize != (uint64_t)(en - b))
        return spin_fail(
            SPIN_ERR_INVALID,
            "%s: tensor '%s': byte size %lld does not match dtype %s and its shape (%llu elements)", fpath,
            name, (long long)(en - b), dts, (unsigned long long)numel);
    info->name = dupstr(name);
    info->dtype = dupstr(dts);
    info->data = data + b;
    info->nbytes = (size_t)(en - b);
    if (!info->name || !info->dtype)
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", fpath);
    return SPIN_OK;
}

static spin_status add_info(spin_safetensors *st, spin_st_info *info) {
    if (st->n == st->cap) {
        int cap = st->cap ? 2 * st->cap : 64;
        spin_st_info *p = realloc(st->infos, (size_t)cap * sizeof *p);
        if (!p)
            return spin_fail(SPIN_ERR_OOM, "safetensors: out of host memory");
        st->infos = p;
        st->cap = cap;
    }
    st->infos[st->n++] = *info;
    return SPIN_OK;
}

/* Maps and validates one file, appending its tensors to st. */
static spin_status open_file(spin_safetensors *st, const char *path) {
    st_file *fs = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *fs);
    if (!fs)
        return spin_fail(SPIN_ERR_OOM, "safetensors: out of host memory");
    st->files = fs;
    st_file *f = &st->files[st->n_files++];
    memset(f, 0, sizeof *f);
    f->path = dupstr(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return spin_fail(SPIN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return spin_fail(SPIN_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return spin_fail(SPIN_ERR_INVALID, "%s: %lld bytes is too short for a safetensors header", path,
                         (long long)sb.st_size);
    }
    f->size = (size_t)sb.st_size;
    void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return spin_fail(SPIN_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    f->map = m;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | f->map[i];
    if (hlen > f->size - 8 || hlen > ST_MAX_HEADER)
        return spin_fail(SPIN_ERR_INVALID, "%s: header length %llu goes beyond the file (%zu bytes)", path,
                         (unsigned long long)hlen, f->size);
    const char *text = (const char *)f->map + 8;
    json_tokener *tok = json_tokener_new();
    if (!tok)
        return spin_fail(SPIN_ERR_OOM, "safetensors: out of host memory");
    json_object *root = json_tokener_parse_ex(tok, text, (int)hlen);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root) {
        return spin_fail(SPIN_ERR_INVALID, "%s: header JSON is %s", path,
                         jerr == json_tokener_continue ? "truncated" : json_tokener_error_desc(jerr));
    }
    spin_status s = SPIN_OK;
    for (size_t i = end; i < hlen && s == SPIN_OK; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\n' && text[i] != '\r')
            s = spin_fail(SPIN_ERR_INVALID, "%s: unexpected bytes after the header JSON (offset %zu)", path,
                          8 + i);
    if (s == SPIN_OK && !json_object_is_type(root, json_type_object))
        s = spin_fail(SPIN_ERR_INVALID, "%s: header JSON is not an object", path);
    const uint8_t *data = f->map + 8 + hlen;
    uint64_t data_len = f->size - 8 - hlen;
    int first = st->n;
    if (s == SPIN_OK) {
        json_object_object_foreach(root, key, val) {
            if (!strcmp(key, "__metadata__"))
                continue;
            if (count_key(text, hlen, key) > 1) {
                s = spin_fail(SPIN_ERR_INVALID, "%s: duplicate tensor name '%s' in the header", path, key);
                break;
            }
            spin_st_info info;
            s = parse_entry(path, key, val, data, data_len, &info);
            info.file = f->path;
            if (s == SPIN_OK)
                s = add_info(st, &info);
            if (s != SPIN_OK) {
                free((char *)info.name);
                free((char *)info.dtype);
                break;
            }
        }
    }
    json_object_put(root);
    if (s != SPIN_OK)
        return s;
    /* the tensors must tile the data buffer: no overlap, no hole, nothing after the last */
    int nf = st->n - first;
    const spin_st_info **by = malloc((size_t)(nf ? nf : 1) * sizeof *by);
    if (!by)
        return spin_fail(SPIN_ERR_OOM, "safetensors: out of host memory");
    for (int i = 0; i < nf; i++)
        by[i] = &st->infos[first + i];
    qsort(by, (size_t)nf, sizeof *by, cmp_offset);
    uint64_t pos = 0;
    for (int i = 0; i < nf && s == SPIN_OK; i++) {
        uint64_t b = (uint64_t)((const uint8_t *)by[i]->data - data);
        if (b < pos)
            s = spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' (bytes %llu..%llu) overlaps tensor '%s'", path,
                          by[i]->name, (unsigned long long)b, (unsigned long long)(b + by[i]->nbytes),
                          by[i - 1]->name);
        else if (b > pos)
            s = spin_fail(SPIN_ERR_INVALID,
                          "%s: data bytes %llu..%llu before tensor '%s' belong to no tensor", path,
                          (unsigned long long)pos, (unsigned long long)b, by[i]->name);
        pos = b + by[i]->nbytes;
    }
    if (s == SPIN_OK && pos != data_len)
        s = spin_fail(SPIN_ERR_INVALID, "%s: data buffer has %llu bytes but its tensors cover %llu", path,
                      (unsigned long long)data_len, (unsigned long long)pos);
    free(by);
    return s;
}

static bool has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Sorts the tensors by name; a name held by two files is an error. */
static spin_status sort_and_check(spin_safetensors *st, const char *path) {
    qsort(st->infos, (size_t)st->n, sizeof *st->infos, cmp_name);
    for (int i = 1; i < st->n; i++)
        if (!strcmp(st->infos[i].name, st->infos[i - 1].name))
            return spin_fail(SPIN_ERR_INVALID, "%s: duplicate tensor name '%s' (in %s and %s)", path,
                             st->infos[i].name, st->infos[i - 1].file, st->infos[i].file);
    return SPIN_OK;
}

static spin_status open_index(spin_safetensors *st, const char *index) {
    json_object *root = json_object_from_file(index);
    if (!root)
        return spin_fail(SPIN_ERR_INVALID, "%s: cannot read index JSON: %s", index, json_util_get_last_err());
    spin_status s = SPIN_OK;
    json_object *wm;
    if (!json_object_is_type(root, json_type_object) || !json_object_object_get_ex(root, "weight_map", &wm) ||
        !json_object_is_type(wm, json_type_object)) {
        json_object_put(root);
        return spin_fail(SPIN_ERR_INVALID, "%s: missing \"weight_map\" object", index);
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", index);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = 0;
    else
        dir[0] = 0;
    /* open each distinct shard once, in order of first mention */
    json_object_object_foreach(wm, name, jf) {
        if (!json_object_is_type(jf, json_type_string)) {
            s = spin_fail(SPIN_ERR_INVALID, "%s: weight_map[\"%s\"] is not a file name", index, name);
            break;
        }
        const char *fn = json_object_get_string(jf);
        if (fn[0] == '/' || strstr(fn, "..") || !fn[0]) {
            s = spin_fail(SPIN_ERR_INVALID, "%s: weight_map[\"%s\"] = \"%s\" is not a file beside the index",
                          index, name, fn);
            break;
        }
        char path[4096 + 256];
        snprintf(path, sizeof path, "%s%s", dir, fn);
        bool seen = false;
        for (int i = 0; i < st->n_files && !seen; i++)
            seen = !strcmp(st->files[i].path, path);
        if (!seen && (s = open_file(st, path)) != SPIN_OK)
            break;
    }
    if (s == SPIN_OK)
        s = sort_and_check(st, index);
    if (s == SPIN_OK) {
        json_object_object_foreach(wm, name2, jf2) {
            const spin_st_info *in = spin_st_find(st, name2);
            const char *fn = json_object_get_string(jf2);
            if (!in || !has_suffix(in->file, fn) ||
                (strlen(in->file) > strlen(fn) && in->file[strlen(in->file) - strlen(fn) - 1] != '/')) {
                s = spin_fail(SPIN_ERR_INVALID,
                              "%s: tensor '%s' is mapped to %s%s, which does not contain it", index, name2,
                              dir, fn);
                break;
            }
        }
    }
    json_object_put(root);
    return s;
}

spin_status spin_st_open(const char *path, spin_safetensors **out) {
    *out = NULL;
    spin_safetensors *st = calloc(1, sizeof *st);
    if (!st)
        return spin_fail(SPIN_ERR_OOM, "safetensors: out of host memory");
    st->path = dupstr(path);
    struct stat sb;
    spin_status s;
    char buf[4096 + 64];
    if (stat(path, &sb) != 0) {
        s = spin_fail(SPIN_ERR_IO, "%s: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        snprintf(buf, sizeof buf, "%s/model.safetensors.index.json", path);
        if (is_file(buf)) {
            s = open_index(st, buf);
        } else {
            snprintf(buf, sizeof buf, "%s/model.safetensors", path);
            s = is_file(buf)
                    ? open_file(st, buf)
                    : spin_fail(SPIN_ERR_IO,
                                "%s: no model.safetensors or model.safetensors.index.json in the directory",
                                path);
        }
    } else if (has_suffix(path, ".json")) {
        s = open_index(st, path);
    } else {
        s = open_file(st, path);
    }
    if (s == SPIN_OK)
        s = sort_and_check(st, path);
    if (s != SPIN_OK) {
        spin_st_close(st);
        return s;
    }
    *out = st;
    return SPIN_OK;
}

int spin_st_count(const spin_safetensors *st) {
    return st->n;
}

const spin_st_info *spin_st_at(const spin_safetensors *st, int i) {
    return i >= 0 && i < st->n ? &st->infos[i] : NULL;
}

const char *spin_st_path(const spin_safetensors *st) {
    return st->path;
}

const spin_st_info *spin_st_find(const spin_safetensors *st, const char *name) {
    spin_st_info key = {.name = name};
    return bsearch(&key, st->infos, (size_t)st->n, sizeof key, cmp_name);
}

static void shape_text(char *buf, size_t size, int nd, const int64_t *sh) {
    size_t o = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < nd && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%lld", i ? ", " : "", (long long)sh[i]);
    if (o < size)
        snprintf(buf + o, size - o, "]");
}

spin_tensor *spin_st_load(const spin_safetensors *st, const char *name, spin_device *dev, int ndim,
                          const int64_t *shape) {
    const spin_st_info *in = spin_st_find(st, name);
    if (!in) {
        spin_fail(SPIN_ERR_INVALID, "%s: missing tensor '%s'",
                  st->n_files == 1 ? st->files[0].path : st->path, name);
        return NULL;
    }
    char a[128], b[128];
    shape_text(a, sizeof a, in->ndim, in->shape);
    if (ndim >= 0) {
        bool ok = ndim == in->ndim;
        for (int i = 0; ok && i < ndim; i++)
            ok = shape[i] == in->shape[i];
        if (!ok) {
            shape_text(b, sizeof b, ndim, shape);
            spin_fail(SPIN_ERR_INVALID, "%s: tensor '%s' has shape %s, expected %s", in->file, name, a, b);
            return NULL;
        }
    }
    if (in->ndim > SPIN_MAX_DIMS) {
        spin_fail(SPIN_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dims (tensors hold at most %d)", in->file,
                  name, in->ndim, SPIN_MAX_DIMS);
        return NULL;
    }
    bool f32 = !strcmp(in->dtype, "F32"), bf16 = !strcmp(in->dtype, "BF16"), f16 = !strcmp(in->dtype, "F16");
    if (!strcmp(in->dtype, "I32"))
        return spin_from_host(dev, SPIN_I32, in->ndim, in->shape, in->data);
    if (!f32 && !bf16 && !f16) {
        spin_fail(SPIN_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16 and I32 can be loaded)",
                  in->file, name, in->dtype);
        return NULL;
    }
    if (f32)
        return spin_from_host(dev, SPIN_F32, in->ndim, in->shape, in->data);
    size_t n = in->nbytes / 2;
    float *buf = malloc((n ? n : 1) * sizeof(float));
    if (!buf) {
        spin_fail(SPIN_ERR_OOM, "%s: out of host memory loading tensor '%s'", in->file, name);
        return NULL;
    }
    const uint8_t *p = in->data;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
        buf[i] = bf16 ? spin_bf16_to_f32(h) : spin_f16_to_f32(h);
    }
    spin_tensor *t = spin_from_host(dev, SPIN_F32, in->ndim, in->shape, buf);
    free(buf);
    return t;
}

/* ---- writing ---- */

typedef struct {
    char path[4096], tmp[4096 + 8];
    FILE *f;
    bool overwrite;
} atomic_out;

static spin_status atomic_open(atomic_out *o, const char *path, bool overwrite) {
    memset(o, 0, sizeof *o);
    if (strlen(path) >= sizeof o->path)
        return spin_fail(SPIN_ERR_INVALID, "%s: path too long", path);
    snprintf(o->path, sizeof o->path, "%s", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp", path);
    o->overwrite = overwrite;
    if (!overwrite && access(path, F_OK) == 0)
        return spin_fail(SPIN_ERR_IO, "%s: already exists (not overwritten unless asked)", path);
    o->f = fopen(o->tmp, "wb");
    if (!o->f)
        return spin_fail(SPIN_ERR_IO, "%s: cannot create: %s", o->tmp, strerror(errno));
    return SPIN_OK;
}

static void atomic_abort(atomic_out *o) {
    if (o->f)
        fclose(o->f);
    o->f = NULL;
    unlink(o->tmp);
}

static spin_status atomic_commit(atomic_out *o) {
    spin_status s = SPIN_OK;
    if (fflush(o->f) != 0 || fsync(fileno(o->f)) != 0)
        s = spin_fail(SPIN_ERR_IO, "%s: write failed: %s", o->tmp, strerror(errno));
    if (fclose(o->f) != 0 && s == SPIN_OK)
        s = spin_fail(SPIN_ERR_IO, "%s: close failed: %s", o->tmp, strerror(errno));
    o->f = NULL;
    if (s == SPIN_OK) {
        if (o->overwrite) {
            if (rename(o->tmp, o->path) != 0)
                s = spin_fail(SPIN_ERR_IO, "%s: rename failed: %s", o->path, strerror(errno));
        } else if (link(o->tmp, o->path) != 0) { /* fails rather than replace a file created meanwhile */
            s = spin_fail(SPIN_ERR_IO, "%s: %s", o->path,
                          errno == EEXIST ? "already exists (not overwritten unless asked)"
                                          : strerror(errno));
        }
    }
    unlink(o->tmp);
    if (s == SPIN_OK) { /* make the new directory entry durable */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", o->path);
        char *sl = strrchr(dir, '/');
        if (sl)
            *sl = 0;
        int dfd = open(sl ? dir : ".", O_RDONLY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return s;
}

spin_status spin_write_file_atomic(const char *path, const void *data, size_t size, bool overwrite) {
    atomic_out o;
    SPIN_TRY(atomic_open(&o, path, overwrite));
    if (fwrite(data, 1, size, o.f) != size) {
        spin_status s = spin_fail(SPIN_ERR_IO, "%s: write failed: %s", o.tmp, strerror(errno));
        atomic_abort(&o);
        return s;
    }
    return atomic_commit(&o);
}

spin_status spin_st_save(const char *path, int n, const char *const *names, spin_tensor *const *tensors,
                         spin_dtype dtype, bool overwrite) {
    if (dtype != SPIN_F32 && dtype != SPIN_BF16 && dtype != SPIN_F16)
        return spin_fail(SPIN_ERR_INVALID, "%s: safetensors are written as f32, bf16 or f16 (not %s)", path,
                         spin_dtype_name(dtype));
    const char *dts = dtype == SPIN_F32 ? "F32" : dtype == SPIN_BF16 ? "BF16" : "F16";
    size_t esize = spin_dtype_size(dtype);
    json_object *root = json_object_new_object(), *meta = json_object_new_object();
    json_object_object_add(meta, "format", json_object_new_string("pt"));
    json_object_object_add(root, "__metadata__", meta);
    uint64_t off = 0;
    spin_status s = SPIN_OK;
    for (int i = 0; i < n && s == SPIN_OK; i++) {
        if (!names[i] || !names[i][0] || !strcmp(names[i], "__metadata__") || !tensors[i]) {
            s = spin_fail(SPIN_ERR_INVALID, "%s: tensor %d has no valid name or is NULL", path, i);
            break;
        }
        if (json_object_object_get_ex(root, names[i], NULL)) {
            s = spin_fail(SPIN_ERR_INVALID, "%s: duplicate tensor name '%s'", path, names[i]);
            break;
        }
        json_object *e = json_object_new_object(), *sh = json_object_new_array(),
                    *of = json_object_new_array();
        int nd = spin_tensor_ndim(tensors[i]);
        for (int d = 0; d < nd; d++)
            json_object_array_add(sh, json_object_new_int64(spin_tensor_dim(tensors[i], d)));
        uint64_t bytes = (uint64_t)spin_tensor_numel(tensors[i]) * esize;
        json_object_array_add(of, json_object_new_int64((int64_t)off));
        json_object_array_add(of, json_object_new_int64((int64_t)(off + bytes)));
        off += bytes;
        json_object_object_add(e, "dtype", json_object_new_string(dts));
        json_object_object_add(e, "shape", sh);
        json_object_object_add(e, "data_offsets", of);
        json_object_object_add(root, names[i], e);
    }
    if (s != SPIN_OK) {
        json_object_put(root);
        return s;
    }
    const char *hj =
        json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t hl = strlen(hj), padded = (hl + 7) / 8 * 8;
    char *header = malloc(8 + padded);
    if (!header) {
        json_object_put(root);
        return spin_fail(SPIN_ERR_OOM, "%s: out of host memory", path);
    }
    for (int i = 0; i < 8; i++)
        header[i] = (char)((uint64_t)padded >> (8 * i) & 0xff);
    memcpy(header + 8, hj, hl);
    memset(header + 8 + hl, ' ', padded - hl);
    json_object_put(root);
    atomic_out o;
    s = atomic_open(&o, path, overwrite);
    if (s != SPIN_OK) {
        free(header);
        return s;
    }
    if (fwrite(header, 1, 8 + padded, o.f) != 8 + padded)
        s = spin_fail(SPIN_ERR_IO, "%s: write failed: %s", o.tmp, strerror(errno));
    free(header);
    for (int i = 0; i < n && s == SPIN_OK; i++) {
        int64_t ne = spin_tensor_numel(tensors[i]);
        float *buf = malloc((size_t)(ne ? ne : 1) * sizeof(float));
        if (!buf) {
            s = spin_fail(SPIN_ERR_OOM, "%s: out of host memory writing tensor '%s'", path, names[i]);
            break;
        }
        s = spin_tensor_read_f32(tensors[i], buf, ne);
        if (s == SPIN_OK && dtype != SPIN_F32) { /* convert in place to little-endian 16-bit */
            uint8_t *p = (uint8_t *)buf;
            for (int64_t j = 0; j < ne; j++) {
                uint16_t h = dtype == SPIN_BF16 ? spin_f32_to_bf16(buf[j]) : spin_f32_to_f16(buf[j]);
                p[2 * j] = (uint8_t)(h & 0xff);
                p[2 * j + 1] = (uint8_t)(h >> 8);
            }
        }
        if (s == SPIN_OK && fwrite(buf, esize, (size_t)ne, o.f) != (size_t)ne)
            s = spin_fail(SPIN_ERR_IO, "%s: write failed for tensor '%s': %s", o.tmp, names[i],
                          strerror(errno));
        free(buf);
    }
    if (s != SPIN_OK) {
        atomic_abort(&o);
        return s;
    }
    return atomic_commit(&o);
}
