#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/autograd.h"
#include "core/pool.h"
#include "core/scope.h"
#include "core/tensor_impl.h"

static atomic_llong live_tensors;
static _Thread_local spin_pool tensor_pool = {sizeof(spin_tensor), NULL};
static _Thread_local spin_pool storage_pool = {sizeof(spin_storage), NULL};

/* ---- scopes ---- */

typedef struct {
    bool collecting;
    spin_tensor **items;
    size_t n, cap;
} scope_frame;

#define MAX_SCOPE_DEPTH 64
static _Thread_local scope_frame frames[MAX_SCOPE_DEPTH];
static _Thread_local int depth;

static void push_frame(bool collecting) {
    SPIN_ASSERT(depth < MAX_SCOPE_DEPTH, "scopes nested deeper than %d", MAX_SCOPE_DEPTH);
    frames[depth].collecting = collecting;
    frames[depth].n = 0;
    depth++;
}

static void scope_register(spin_tensor *t) {
    if (depth == 0 || !frames[depth - 1].collecting)
        return;
    scope_frame *f = &frames[depth - 1];
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 256;
        f->items = realloc(f->items, f->cap * sizeof *f->items);
        SPIN_ASSERT(f->items, "out of host memory");
    }
    f->items[f->n++] = t;
}

void spin_scope_begin(void) {
    push_frame(true);
}

void spin_scope_end(void) {
    SPIN_ASSERT(depth > 0 && frames[depth - 1].collecting, "spin_scope_end without spin_scope_begin");
    scope_frame *f = &frames[depth - 1];
    /* Newest first, so results drop before the inputs they were computed from. */
    for (size_t i = f->n; i-- > 0;)
        spin_tensor_release(f->items[i]);
    f->n = 0;
    depth--;
}

void spin_scope_manual_begin(void) {
    push_frame(false);
}

void spin_scope_manual_end(void) {
    SPIN_ASSERT(depth > 0 && !frames[depth - 1].collecting, "unbalanced manual scope");
    depth--;
}

spin_tensor *spin_scope_adopt(spin_tensor *t) {
    if (t)
        scope_register(t);
    return t;
}

spin_tensor *spin_scope_keep(spin_tensor *t) {
    return spin_tensor_retain(t);
}

int spin_scope_depth(void) {
    return depth;
}

/* ---- creation ---- */

static spin_tensor *tensor_struct(void) {
    spin_tensor *t = spin_pool_get(&tensor_pool);
    t->refcount = 1;
    atomic_fetch_add(&live_tensors, 1);
    return t;
}

static void set_contiguous_strides(spin_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

spin_tensor *spin_tensor_new(spin_device *dev, spin_dtype dtype, int ndim, const int64_t *shape) {
    SPIN_ASSERT(dev, "no device");
    SPIN_ASSERT(ndim >= 0 && ndim <= SPIN_MAX_DIMS, "ndim %d out of range 0..%d", ndim, SPIN_MAX_DIMS);
    SPIN_ASSERT((unsigned)dtype < SPIN_DTYPE_COUNT, "bad dtype %d", (int)dtype);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        SPIN_ASSERT(shape[i] >= 0, "negative dimension %lld", (long long)shape[i]);
        n *= shape[i];
    }
    size_t bytes = (size_t)n * spin_dtype_size(dtype);
    void *buf = spin_device_alloc(dev, bytes);
    if (!buf) {
        spin_fail(SPIN_ERR_OOM, "%s: cannot allocate %zu bytes", dev->name, bytes);
        return NULL;
    }
    spin_storage *st = spin_pool_get(&storage_pool);
    *st = (spin_storage){.refcount = 1, .dev = dev, .buf = buf, .bytes = bytes};
    spin_tensor *t = tensor_struct();
    t->st = st;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    set_contiguous_strides(t);
    scope_register(t);
    return t;
}

spin_tensor *spin_tensor_new_like(const spin_tensor *t) {
    return spin_tensor_new(t->st->dev, t->dtype, t->ndim, t->shape);
}

spin_tensor *spin_tensor_view_of(spin_tensor *base, int ndim, const int64_t *shape, const int64_t *stride,
                                 size_t offset) {
    SPIN_ASSERT(ndim >= 0 && ndim <= SPIN_MAX_DIMS, "ndim %d out of range", ndim);
    /* The view must stay inside the storage. */
    int64_t lo = (int64_t)offset, hi = (int64_t)offset;
    bool empty = false;
    for (int i = 0; i < ndim; i++) {
        SPIN_ASSERT(shape[i] >= 0, "negative dimension");
        if (shape[i] == 0)
            empty = true;
        int64_t span = (shape[i] - 1) * stride[i];
        if (span < 0)
            lo += span;
        else
            hi += span;
    }
    size_t cap = base->st->bytes / spin_dtype_size(base->dtype);
    SPIN_ASSERT(empty || (lo >= 0 && (size_t)hi < cap), "view [%lld, %lld] outside storage of %zu",
                (long long)lo, (long long)hi, cap);
    spin_tensor *t = tensor_struct();
    t->st = base->st;
    t->st->refcount++;
    t->offset = offset;
    t->dtype = base->dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->stride[i] = stride[i];
    }
    scope_register(t);
    return t;
}

spin_tensor *spin_tensor_retain(spin_tensor *t) {
    if (t)
        t->refcount++;
    return t;
}

void spin_tensor_release(spin_tensor *t) {
    if (!t)
        return;
    SPIN_ASSERT(t->refcount > 0, "tensor released more often than retained");
    if (--t->refcount > 0)
        return;
    if (t->node)
        spin_node_free(t->node);
    spin_tensor_release(t->grad);
    if (--t->st->refcount == 0) {
        spin_device_free(t->st->dev, t->st->buf, t->st->bytes);
        spin_pool_put(&storage_pool, t->st);
    }
    atomic_fetch_sub(&live_tensors, 1);
    spin_pool_put(&tensor_pool, t);
}

/* ---- queries ---- */

/* A NULL tensor reaching an accessor means an earlier op failed and its result was not checked:
 * stop with that failure's message rather than crash. */
#define CHECK_T(t) \
    SPIN_ASSERT((t) != NULL, "NULL tensor (an earlier operation failed: %s)", spin_last_error())

int spin_tensor_ndim(const spin_tensor *t) {
    CHECK_T(t);
    return t->ndim;
}

int64_t spin_tensor_dim(const spin_tensor *t, int i) {
    CHECK_T(t);
    if (i < 0)
        i += t->ndim;
    SPIN_ASSERT(i >= 0 && i < t->ndim, "dim %d of a %d-d tensor", i, t->ndim);
    return t->shape[i];
}

int64_t spin_tensor_stride(const spin_tensor *t, int i) {
    CHECK_T(t);
    if (i < 0)
        i += t->ndim;
    SPIN_ASSERT(i >= 0 && i < t->ndim, "dim %d of a %d-d tensor", i, t->ndim);
    return t->stride[i];
}

const int64_t *spin_tensor_shape(const spin_tensor *t) {
    CHECK_T(t);
    return t->shape;
}
const int64_t *spin_tensor_strides(const spin_tensor *t) {
    return t->stride;
}
size_t spin_tensor_offset(const spin_tensor *t) {
    return t->offset;
}

int64_t spin_tensor_numel(const spin_tensor *t) {
    CHECK_T(t);
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

spin_dtype spin_tensor_dtype(const spin_tensor *t) {
    CHECK_T(t);
    return t->dtype;
}
spin_device *spin_tensor_device(const spin_tensor *t) {
    CHECK_T(t);
    return t->st->dev;
}

bool spin_tensor_is_contiguous(const spin_tensor *t) {
    CHECK_T(t);
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

bool spin_tensor_same_shape(const spin_tensor *a, const spin_tensor *b) {
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

bool spin_tensor_shares_storage(const spin_tensor *a, const spin_tensor *b) {
    return a->st == b->st;
}

void spin_tensor_set_name(spin_tensor *t, const char *name) {
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

const char *spin_tensor_name(const spin_tensor *t) {
    return t->name;
}

const char *spin_shape_str(const spin_tensor *t, char *buf, size_t size) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < t->ndim && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < size)
        snprintf(buf + k, size - k, "]");
    return buf;
}

spin_view spin_tensor_kview(const spin_tensor *t) {
    spin_view v = {.buf = t->st->buf, .offset = t->offset, .dtype = t->dtype, .ndim = t->ndim};
    for (int i = 0; i < t->ndim; i++) {
        v.shape[i] = t->shape[i];
        v.stride[i] = t->stride[i];
    }
    return v;
}

/* ---- host transfer ---- */

static spin_status check_host_transfer(const spin_tensor *t, size_t bytes, const char *what) {
    if (!spin_tensor_is_contiguous(t))
        return spin_fail(SPIN_ERR_INVALID, "%s needs a contiguous tensor", what);
    size_t want = (size_t)spin_tensor_numel(t) * spin_dtype_size(t->dtype);
    if (bytes != want)
        return spin_fail(SPIN_ERR_INVALID, "%s of %zu bytes, tensor holds %zu", what, bytes, want);
    return SPIN_OK;
}

spin_status spin_tensor_write(spin_tensor *t, const void *src, size_t bytes) {
    SPIN_TRY(check_host_transfer(t, bytes, "write"));
    if (!bytes)
        return SPIN_OK;
    return t->st->dev->backend->from_host(t->st->dev, t->st->buf, t->offset * spin_dtype_size(t->dtype), src,
                                          bytes);
}

spin_status spin_tensor_read(const spin_tensor *t, void *dst, size_t bytes) {
    SPIN_TRY(check_host_transfer(t, bytes, "read"));
    if (!bytes)
        return SPIN_OK;
    return t->st->dev->backend->to_host(t->st->dev, dst, t->st->buf, t->offset * spin_dtype_size(t->dtype),
                                        bytes);
}

/* Host span of the view in elements: [lo, hi]. */
static void view_span(const spin_tensor *t, int64_t *lo, int64_t *hi) {
    *lo = *hi = (int64_t)t->offset;
    for (int i = 0; i < t->ndim; i++) {
        int64_t span = (t->shape[i] - 1) * t->stride[i];
        if (span < 0)
            *lo += span;
        else
            *hi += span;
    }
}

static int64_t element_offset(const spin_tensor *t, int64_t flat) {
    int64_t off = (int64_t)t->offset;
    for (int i = t->ndim - 1; i >= 0; i--) {
        off += (flat % t->shape[i]) * t->stride[i];
        flat /= t->shape[i];
    }
    return off;
}

spin_status spin_tensor_read_f32(const spin_tensor *t, float *dst, int64_t n) {
    if (n != spin_tensor_numel(t))
        return spin_fail(SPIN_ERR_INVALID, "read_f32 of %lld elements, tensor has %lld", (long long)n,
                         (long long)spin_tensor_numel(t));
    if (n == 0)
        return SPIN_OK;
    int64_t lo, hi;
    view_span(t, &lo, &hi);
    size_t es = spin_dtype_size(t->dtype);
    char *tmp = malloc((size_t)(hi - lo + 1) * es);
    SPIN_ASSERT(tmp, "out of host memory");
    spin_status s = t->st->dev->backend->to_host(t->st->dev, tmp, t->st->buf, (size_t)lo * es,
                                                 (size_t)(hi - lo + 1) * es);
    if (s == SPIN_OK)
        for (int64_t i = 0; i < n; i++)
            dst[i] = spin_dtype_load(t->dtype, tmp, (size_t)(element_offset(t, i) - lo));
    free(tmp);
    return s;
}

spin_status spin_tensor_write_f32(spin_tensor *t, const float *src, int64_t n) {
    if (n != spin_tensor_numel(t))
        return spin_fail(SPIN_ERR_INVALID, "write_f32 of %lld elements, tensor has %lld", (long long)n,
                         (long long)spin_tensor_numel(t));
    if (n == 0)
        return SPIN_OK;
    int64_t lo, hi;
    view_span(t, &lo, &hi);
    size_t es = spin_dtype_size(t->dtype);
    size_t bytes = (size_t)(hi - lo + 1) * es;
    char *tmp = malloc(bytes);
    SPIN_ASSERT(tmp, "out of host memory");
    /* Read-modify-write so gaps between strided elements keep their contents. */
    spin_status s = t->st->dev->backend->to_host(t->st->dev, tmp, t->st->buf, (size_t)lo * es, bytes);
    if (s == SPIN_OK) {
        for (int64_t i = 0; i < n; i++)
            spin_dtype_store(t->dtype, tmp, (size_t)(element_offset(t, i) - lo), src[i]);
        s = t->st->dev->backend->from_host(t->st->dev, t->st->buf, (size_t)lo * es, tmp, bytes);
    }
    free(tmp);
    return s;
}

/* ---- autograd fields ---- */

bool spin_tensor_requires_grad(const spin_tensor *t) {
    return t->requires_grad;
}

void spin_tensor_set_requires_grad(spin_tensor *t, bool on) {
    t->requires_grad = on;
}

spin_tensor *spin_tensor_grad(const spin_tensor *t) {
    return t->grad;
}

void spin_tensor_zero_grad(spin_tensor *t) {
    spin_tensor_release(t->grad);
    t->grad = NULL;
}

struct spin_node *spin_tensor_node(const spin_tensor *t) {
    return t->node;
}

spin_dtype spin_tensor_grad_dtype(const spin_tensor *t) {
    return t->node || t->grad_as_interior ? t->dtype : SPIN_F32;
}

int64_t spin_tensor_live_count(void) {
    return atomic_load(&live_tensors);
}
